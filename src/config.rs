//! Configuration: built-in defaults, overridden by an optional TOML file, overridden by
//! `MAILWARDEN_*` environment variables, overridden by command-line flags.
//!
//! With no file at all the service runs: it listens on loopback, stores in `./data`, reads
//! rules from `./rules` and user-defined providers from `./providers`, and every provider
//! is a source under its own name.
//! [`Config::validate`] refuses settings that would be unsafe or cannot work, with a
//! message that says what to change. Configuration is plain data: what a source's
//! settings mean to its provider is checked where sources are built
//! (`ingest::sources`), by the provider itself.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

/// Environment variable naming the config file when `--config` is not given.
pub const CONFIG_ENV: &str = "MAILWARDEN_CONFIG";

/// Everything mailwarden can be told.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the HTTP server listens on.
    pub listen: SocketAddr,
    /// Directory of the sled store.
    pub data_dir: PathBuf,
    /// Directory of the `.rhai` rules.
    pub rules_dir: PathBuf,
    /// Directory of user-defined providers (`<name>.rhai`).
    pub providers_dir: PathBuf,
    /// Address people reach this server at, for links in alerts.
    pub public_url: Option<String>,
    /// Token required by `/api/...` (as `Authorization: Bearer`).
    pub admin_token: Option<Secret>,
    /// Connection limits and timeouts of the HTTP server.
    pub server: ServerConfig,
    /// Webhook intake settings.
    pub ingest: IngestConfig,
    /// Storage settings.
    pub storage: StorageConfig,
    /// Named webhook sources; empty means one per built-in provider.
    pub sources: BTreeMap<String, SourceConfig>,
    /// Rule engine settings.
    pub rules: RulesConfig,
    /// Alert e-mail settings.
    pub alerts: AlertsConfig,
    /// Outbound HTTP calls (`http_post`).
    pub outbound: OutboundConfig,
    /// Suppression list settings.
    pub suppressions: SuppressionsConfig,
    /// The web console under `/ui`.
    pub ui: UiConfig,
    /// `MAILWARDEN_SOURCE_*` variables of the environment, applied to each source as it
    /// is built (also to the default sources, which the configuration does not list).
    #[serde(skip)]
    pub source_env: BTreeMap<String, Secret>,
}

/// Suppression list settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SuppressionsConfig {
    /// Match local parts case-insensitively too (`User@x.com` = `user@x.com`). Off by
    /// default: RFC 5321 lets a mailbox depend on the case of its local part, though few do.
    pub case_insensitive_local_part: bool,
}

/// Alert e-mail settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Recipients of alerts that name none.
    pub to: Vec<String>,
    /// SMTP server; without it alerts are logged and listed in `GET /api/alerts`.
    pub smtp: Option<SmtpConfig>,
}

/// How to reach the SMTP server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// Host name.
    pub host: String,
    /// Port (default 587 for STARTTLS, 465 for TLS, 25 for none).
    pub port: Option<u16>,
    /// `none`, `starttls` or `tls`.
    #[serde(default)]
    pub tls: SmtpTls,
    /// Login, if the server wants one.
    pub username: Option<String>,
    /// Password for `username`.
    pub password: Option<Secret>,
    /// Sender address.
    pub from: String,
    /// Seconds before giving up on the server.
    #[serde(default = "default_smtp_timeout")]
    pub timeout_secs: u64,
}

fn default_smtp_timeout() -> u64 {
    15
}

/// SMTP transport security.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain text (local relays only).
    None,
    /// Upgrade with STARTTLS (required).
    #[default]
    Starttls,
    /// TLS from the first byte.
    Tls,
}

/// Outbound HTTP settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundConfig {
    /// Standard Webhooks signing secret (`whsec_<base64>`, or any text used as is).
    pub signing_secret: Option<Secret>,
    /// Seconds to connect.
    pub connect_timeout_secs: u64,
    /// Seconds for the whole call: connecting, sending, the answer's headers and its
    /// whole body. A receiver that never answers, or answers slowly, fails at this point.
    pub timeout_secs: u64,
    /// Most response bytes read.
    pub max_response_bytes: usize,
    /// Most concurrent calls to one host.
    pub per_host_concurrency: usize,
    /// Delays before each retry, in seconds (jittered by ±20%).
    pub retry_schedule_secs: Vec<u64>,
    /// Hosts and networks that may be called although they are private or local
    /// (`"127.0.0.1/32"`, `"10.0.0.0/8"`, `"crm.internal"`).
    pub allow: Vec<String>,
    /// Consecutive failed calls to one `host:port` that open its circuit breaker.
    pub breaker_failures: u32,
    /// Seconds an opened breaker holds calls to its host before one probe.
    pub breaker_open_secs: u64,
    /// Longest hold, in seconds: the interval doubles after each failed probe up to this.
    pub breaker_max_open_secs: u64,
}

impl Default for OutboundConfig {
    fn default() -> Self {
        OutboundConfig {
            signing_secret: None,
            connect_timeout_secs: 5,
            timeout_secs: 15,
            max_response_bytes: 64 * 1024,
            per_host_concurrency: 4,
            retry_schedule_secs: vec![0, 5, 300, 1_800, 7_200, 18_000, 36_000, 36_000],
            allow: Vec::new(),
            breaker_failures: 5,
            breaker_open_secs: 30,
            breaker_max_open_secs: 600,
        }
    }
}

/// Rule engine settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RulesConfig {
    /// Values rules read as `config.<name>` (URLs, thresholds), so rules hold no secrets.
    pub vars: serde_json::Map<String, serde_json::Value>,
    /// Most script operations per rule per event.
    pub max_operations: u64,
    /// Wall-clock limit per rule per event, in milliseconds.
    pub timeout_ms: u64,
    /// Seconds between checks of the rules directory for changes (0 turns reloading off).
    pub reload_interval_secs: u64,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            vars: serde_json::Map::new(),
            max_operations: 200_000,
            timeout_ms: 250,
            reload_interval_secs: 1,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./data"),
            rules_dir: PathBuf::from("./rules"),
            providers_dir: PathBuf::from("./providers"),
            public_url: None,
            admin_token: None,
            server: ServerConfig::default(),
            ingest: IngestConfig::default(),
            storage: StorageConfig::default(),
            sources: BTreeMap::new(),
            rules: RulesConfig::default(),
            alerts: AlertsConfig::default(),
            outbound: OutboundConfig::default(),
            suppressions: SuppressionsConfig::default(),
            ui: UiConfig::default(),
            source_env: BTreeMap::new(),
        }
    }
}

/// Webhook intake settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Largest request body accepted, in bytes; larger ones get 413.
    pub max_body_bytes: usize,
    /// Most webhook requests waiting for the group commit; beyond it requests are
    /// refused at once with 503 and `Retry-After` (providers retry on 5xx).
    pub max_queued_requests: usize,
    /// Most bytes of webhook bodies being received or ingested at once; beyond it
    /// requests are refused at once with 503 and `Retry-After`. Bytes count as they
    /// arrive and until the request is answered. Never below the largest body limit (see
    /// [`Config::in_flight_bytes`]).
    pub max_in_flight_bytes: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            max_body_bytes: 5 * 1024 * 1024,
            max_queued_requests: 1024,
            max_in_flight_bytes: 32 * 1024 * 1024,
        }
    }
}

/// Connection limits and timeouts of the HTTP server: what keeps slow or idle clients
/// from holding connections (and file descriptors) the providers need.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Seconds a client has to send a request's headers, counted from its first byte
    /// (or from the connection's start for its first request).
    pub header_read_timeout_secs: u64,
    /// Seconds a client has to send a request's whole body once its headers are in;
    /// slower bodies get 408 and the connection is closed.
    pub body_timeout_secs: u64,
    /// Seconds a keep-alive connection may wait for its next request.
    pub idle_timeout_secs: u64,
    /// Most connections open at once; further clients wait in the listen backlog. The
    /// server raises its file limit to the hard limit at start and lowers this when the
    /// limit cannot hold it.
    pub max_connections: usize,
    /// Seconds a shutdown (SIGTERM, Ctrl-C) waits for requests and outbound calls in
    /// flight before it closes what is left (unfinished calls return to the outbox).
    pub shutdown_grace_secs: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            header_read_timeout_secs: 10,
            body_timeout_secs: 30,
            idle_timeout_secs: 60,
            max_connections: 4096,
            shutdown_grace_secs: 30,
        }
    }
}

/// The web console under `/ui`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UiConfig {
    /// Hours a console login lasts (sessions live in memory: a restart logs everyone out).
    pub session_hours: u64,
    /// Failed logins allowed per client address per minute before further tries are
    /// refused with 429 until the minute is over.
    pub login_attempts_per_minute: u32,
}

impl Default for UiConfig {
    fn default() -> Self {
        UiConfig {
            session_hours: 12,
            login_attempts_per_minute: 5,
        }
    }
}

/// Storage settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Upper bound of sled's page cache in MiB (sled's own default is 1 GiB).
    pub cache_capacity_mb: u64,
    /// Most requests that share one group commit.
    pub max_group: usize,
    /// Days events are kept, with their bodies, index entries, evaluation records and
    /// dedup keys (fractions allowed: `0.5` is twelve hours). Suppressions are never
    /// purged by age.
    pub retain_days: f64,
    /// Days dead-lettered actions and alert records are kept.
    pub outbox_retain_days: f64,
    /// Days quarantined bodies and elements are kept.
    pub quarantine_retain_days: f64,
    /// Seconds between purges of expired records (the first runs at start).
    pub purge_interval_secs: u64,
    /// Where events and suppressions live: `sled` (embedded, in `data_dir`) or
    /// `postgres` (a database several nodes share; see `url`).
    pub backend: Backend,
    /// The PostgreSQL database of `backend = "postgres"`:
    /// `postgres://user:password@host:port/database`; also `MAILWARDEN_STORAGE_URL`.
    pub url: Option<Secret>,
    /// Connections to PostgreSQL kept open at most by this node.
    pub pool_size: usize,
}

/// The store behind the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The embedded sled store in `data_dir` (the default).
    #[default]
    Sled,
    /// A PostgreSQL database shared by several nodes.
    Postgres,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            cache_capacity_mb: 64,
            max_group: 512,
            retain_days: 90.0,
            outbox_retain_days: 90.0,
            quarantine_retain_days: 90.0,
            purge_interval_secs: 3_600,
            backend: Backend::Sled,
            url: None,
            pool_size: 16,
        }
    }
}

impl StorageConfig {
    /// Returns how long each kind of record is kept.
    pub fn retention(&self) -> crate::store::retention::Retention {
        let days = |days: f64| jiff::SignedDuration::from_secs_f64(days * 86_400.0);
        crate::store::retention::Retention {
            events: days(self.retain_days),
            outbox: days(self.outbox_retain_days),
            quarantine: days(self.quarantine_retain_days),
        }
    }
}

/// One webhook source: a name in the URL bound to a provider adapter, with the
/// credentials its provider authenticates with. Which settings apply depends on the
/// provider; the provider refuses the others when the source is built.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Adapter name: a built-in provider (`sendgrid`, `mailgun`, ...) or a user-defined
    /// one (`providers/<name>.rhai`).
    pub provider: String,
    /// Token the provider must present (Bearer, basic-auth password or `?token=`).
    #[serde(default)]
    pub token: Option<Secret>,
    /// Basic-auth user name (with `password`).
    #[serde(default)]
    pub username: Option<String>,
    /// Basic-auth password (with `username`).
    #[serde(default)]
    pub password: Option<Secret>,
    /// Mailgun: the HTTP webhook signing key.
    #[serde(default)]
    pub signing_key: Option<Secret>,
    /// SendGrid: the signed Event Webhook's verification key (base64 DER).
    #[serde(default)]
    pub public_key: Option<String>,
    /// Resend (Svix): the endpoint's signing secret, `whsec_<base64>`.
    #[serde(default)]
    pub signing_secret: Option<Secret>,
    /// Mandrill: the webhook's key.
    #[serde(default)]
    pub webhook_key: Option<Secret>,
    /// Mandrill: the webhook URL exactly as registered (it is part of what is signed).
    #[serde(default)]
    pub url: Option<String>,
    /// Amazon SES: SNS topics accepted (all verified topics when empty).
    #[serde(default)]
    pub topic_arns: Vec<String>,
    /// Amazon SES: check SNS signatures (default true; off only for raw message delivery
    /// behind another check).
    #[serde(default)]
    pub verify_signature: Option<bool>,
    /// Most seconds between a signed timestamp and now (providers that sign one).
    #[serde(default)]
    pub max_signature_age_secs: Option<u64>,
    /// Zone of times the provider sends without an offset (IANA name or `-05:00`).
    #[serde(default)]
    pub timezone: Option<String>,
    /// Largest body accepted from this source, in bytes (default `ingest.max_body_bytes`).
    #[serde(default)]
    pub max_body_bytes: Option<usize>,
}

/// Settings that can come from `MAILWARDEN_SOURCE_<NAME>_<SETTING>`, by upper-case name.
const SOURCE_ENV_SETTINGS: [&str; 8] = [
    "TOKEN",
    "USERNAME",
    "PASSWORD",
    "SIGNING_KEY",
    "PUBLIC_KEY",
    "SIGNING_SECRET",
    "WEBHOOK_KEY",
    "URL",
];

impl SourceConfig {
    /// A source of `provider` with no settings.
    pub fn new(provider: &str) -> SourceConfig {
        SourceConfig {
            provider: provider.to_owned(),
            token: None,
            username: None,
            password: None,
            signing_key: None,
            public_key: None,
            signing_secret: None,
            webhook_key: None,
            url: None,
            topic_arns: Vec::new(),
            verify_signature: None,
            max_signature_age_secs: None,
            timezone: None,
            max_body_bytes: None,
        }
    }

    /// Returns whether the provider-specific setting `name` is set.
    pub fn is_set(&self, name: &str) -> bool {
        match name {
            "signing_key" => self.signing_key.is_some(),
            "public_key" => self.public_key.is_some(),
            "signing_secret" => self.signing_secret.is_some(),
            "webhook_key" => self.webhook_key.is_some(),
            "url" => self.url.is_some(),
            "topic_arns" => !self.topic_arns.is_empty(),
            "verify_signature" => self.verify_signature.is_some(),
            "max_signature_age_secs" => self.max_signature_age_secs.is_some(),
            _ => false,
        }
    }

    /// Applies the `MAILWARDEN_SOURCE_<NAME>_<SETTING>` variables of `env` for the source
    /// called `name`; returns the variables used.
    pub fn apply_env(&mut self, name: &str, env: &BTreeMap<String, Secret>) -> Vec<String> {
        let mut used = Vec::new();
        for setting in SOURCE_ENV_SETTINGS {
            let variable = source_env_name(name, setting);
            let Some(value) = env.get(&variable) else {
                continue;
            };
            let value = value.clone();
            match setting {
                "TOKEN" => self.token = Some(value),
                "USERNAME" => self.username = Some(value.0),
                "PASSWORD" => self.password = Some(value),
                "SIGNING_KEY" => self.signing_key = Some(value),
                "PUBLIC_KEY" => self.public_key = Some(value.0),
                "SIGNING_SECRET" => self.signing_secret = Some(value),
                "WEBHOOK_KEY" => self.webhook_key = Some(value),
                _ => self.url = Some(value.0),
            }
            used.push(variable);
        }
        used
    }
}

/// Returns the variable that sets `setting` (upper case) of source `name`.
pub fn source_env_name(name: &str, setting: &str) -> String {
    format!("MAILWARDEN_SOURCE_{}_{setting}", env_name(name))
}

/// A secret setting: usable, but never shown by `Debug` or in logs.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// Returns the secret itself; call only where it is used, never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Config {
    /// Loads the configuration: defaults, then `path` (or the file named by
    /// `MAILWARDEN_CONFIG`), then the environment. Does not validate.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Config> {
        let from_env = std::env::var_os(CONFIG_ENV).map(PathBuf::from);
        let mut config = match path.map(Path::to_path_buf).or(from_env) {
            Some(path) => Config::from_file(&path)?,
            None => Config::default(),
        };
        let env: BTreeMap<String, String> = std::env::vars()
            .filter(|(name, _)| name.starts_with("MAILWARDEN_"))
            .collect();
        config.apply_env(&env)?;
        Ok(config)
    }

    /// Reads a TOML file over the defaults.
    pub fn from_file(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        Config::from_toml(&text).with_context(|| format!("invalid config file {}", path.display()))
    }

    /// Parses TOML text over the defaults.
    pub fn from_toml(text: &str) -> anyhow::Result<Config> {
        Ok(toml::from_str(text)?)
    }

    /// Applies the `MAILWARDEN_*` overrides among `env` (variable name to value).
    pub fn apply_env(&mut self, env: &BTreeMap<String, String>) -> anyhow::Result<()> {
        let var = |name: &str| env.get(name).cloned();
        if let Some(listen) = var("MAILWARDEN_LISTEN") {
            self.listen = listen
                .parse()
                .with_context(|| format!("MAILWARDEN_LISTEN `{listen}` is not an address"))?;
        }
        if let Some(dir) = var("MAILWARDEN_DATA_DIR") {
            self.data_dir = dir.into();
        }
        if let Some(dir) = var("MAILWARDEN_RULES_DIR") {
            self.rules_dir = dir.into();
        }
        if let Some(dir) = var("MAILWARDEN_PROVIDERS_DIR") {
            self.providers_dir = dir.into();
        }
        if let Some(url) = var("MAILWARDEN_PUBLIC_URL") {
            self.public_url = Some(url);
        }
        if let Some(token) = var("MAILWARDEN_ADMIN_TOKEN") {
            self.admin_token = Some(Secret(token));
        }
        if let Some(backend) = var("MAILWARDEN_STORAGE_BACKEND") {
            self.storage.backend = match backend.as_str() {
                "sled" => Backend::Sled,
                "postgres" => Backend::Postgres,
                other => {
                    bail!("MAILWARDEN_STORAGE_BACKEND `{other}` is neither `sled` nor `postgres`")
                }
            };
        }
        if let Some(url) = var("MAILWARDEN_STORAGE_URL") {
            self.storage.url = Some(Secret(url));
        }
        if let Some(bytes) = var("MAILWARDEN_MAX_BODY_BYTES") {
            self.ingest.max_body_bytes = bytes
                .parse()
                .with_context(|| format!("MAILWARDEN_MAX_BODY_BYTES `{bytes}` is not a number"))?;
        }
        self.source_env = env
            .iter()
            .filter(|(name, _)| name.starts_with("MAILWARDEN_SOURCE_"))
            .map(|(name, value)| (name.clone(), Secret(value.clone())))
            .collect();
        Ok(())
    }

    /// The PostgreSQL store's settings, when `[storage] backend = "postgres"` and a URL
    /// is set.
    pub fn postgres(&self) -> Option<crate::store::postgres::PgOptions> {
        match (self.storage.backend, &self.storage.url) {
            (Backend::Postgres, Some(url)) => Some(crate::store::postgres::PgOptions {
                url: url.clone(),
                pool_size: self.storage.pool_size,
                fold_local_parts: self.suppressions.case_insensitive_local_part,
                max_group: self.storage.max_group,
            }),
            _ => None,
        }
    }

    /// Returns the bound on webhook body bytes in flight: `ingest.max_in_flight_bytes`,
    /// raised to the largest body a source accepts so that such a body can always be
    /// received when nothing else is.
    pub fn in_flight_bytes(&self) -> usize {
        self.sources
            .values()
            .filter_map(|source| source.max_body_bytes)
            .chain([self.ingest.max_body_bytes, self.ingest.max_in_flight_bytes])
            .max()
            .unwrap_or(self.ingest.max_in_flight_bytes)
    }

    /// Checks that the settings can work and are safe.
    pub fn validate(&self) -> anyhow::Result<()> {
        if !(1024..=1 << 30).contains(&self.ingest.max_body_bytes) {
            bail!("ingest.max_body_bytes must be between 1 KiB and 1 GiB");
        }
        if self.ingest.max_queued_requests == 0 {
            bail!("ingest.max_queued_requests must be at least 1");
        }
        for (name, secs) in [
            (
                "header_read_timeout_secs",
                self.server.header_read_timeout_secs,
            ),
            ("body_timeout_secs", self.server.body_timeout_secs),
            ("idle_timeout_secs", self.server.idle_timeout_secs),
        ] {
            if !(1..=3_600).contains(&secs) {
                bail!("server.{name} must be between 1 and 3600 seconds");
            }
        }
        if !(1..=8_760).contains(&self.ui.session_hours) {
            bail!("ui.session_hours must be between 1 and 8760 (a year)");
        }
        if self.ui.login_attempts_per_minute == 0 {
            bail!("ui.login_attempts_per_minute must be at least 1");
        }
        if self.server.max_connections == 0 {
            bail!("server.max_connections must be at least 1");
        }
        if !(8..=16 * 1024).contains(&self.storage.cache_capacity_mb) {
            bail!("storage.cache_capacity_mb must be between 8 and 16384");
        }
        if !(1..=1024).contains(&self.storage.pool_size) {
            bail!("storage.pool_size must be between 1 and 1024");
        }
        if self.storage.backend == Backend::Postgres && self.storage.url.is_none() {
            bail!(
                "storage.backend = \"postgres\" needs storage.url (or MAILWARDEN_STORAGE_URL): postgres://user:password@host:port/database"
            );
        }
        for (name, days) in [
            ("retain_days", self.storage.retain_days),
            ("outbox_retain_days", self.storage.outbox_retain_days),
            (
                "quarantine_retain_days",
                self.storage.quarantine_retain_days,
            ),
        ] {
            // Up to about 270 years: beyond that the cutoff leaves the id range.
            if !(days > 0.0 && days <= 100_000.0) {
                bail!("storage.{name} must be a number of days above 0 and at most 100000");
            }
        }
        if self.storage.purge_interval_secs == 0 {
            bail!("storage.purge_interval_secs must be at least 1");
        }
        let outbound = &self.outbound;
        if outbound.timeout_secs == 0 || outbound.connect_timeout_secs == 0 {
            bail!("outbound.timeout_secs and outbound.connect_timeout_secs must be at least 1");
        }
        if outbound.breaker_failures == 0 {
            bail!("outbound.breaker_failures must be at least 1");
        }
        if outbound.breaker_open_secs == 0
            || outbound.breaker_max_open_secs < outbound.breaker_open_secs
        {
            bail!(
                "outbound.breaker_open_secs must be at least 1 and outbound.breaker_max_open_secs \
                 at least breaker_open_secs"
            );
        }
        if self.storage.max_group == 0 {
            bail!("storage.max_group must be at least 1");
        }
        if self
            .admin_token
            .as_ref()
            .is_some_and(|t| t.0.trim().is_empty())
        {
            bail!("admin_token is empty");
        }
        for (name, source) in &self.sources {
            if !is_source_name(name) {
                bail!(
                    "source name `{name}` must be 1-64 characters of a-z, 0-9, `-` and `_`, \
                     starting with a letter or digit"
                );
            }
            if let Some(limit) = source.max_body_bytes {
                if !(1024..=1 << 30).contains(&limit) {
                    bail!("source `{name}`: max_body_bytes must be between 1 KiB and 1 GiB");
                }
            }
        }
        if !self.listen.ip().is_loopback() && self.admin_token.is_none() {
            bail!(
                "refusing to listen on {} without authentication: anyone who can reach it \
                 could read events or change suppressions. Set admin_token (or \
                 MAILWARDEN_ADMIN_TOKEN), or listen on 127.0.0.1.",
                self.listen
            );
        }
        Ok(())
    }
}

/// Returns whether `name` can be a source name (a URL path segment).
pub fn is_source_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (1..=64).contains(&bytes.len())
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-' || *b == b'_')
}

/// Returns the environment-variable form of a source name (`opptima-co` → `OPPTIMA_CO`).
fn env_name(name: &str) -> String {
    name.to_ascii_uppercase().replace('-', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_validate() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn public_listen_without_admin_token_is_refused_with_the_reason() {
        let config = Config {
            listen: "0.0.0.0:8080".parse().unwrap(),
            ..Config::default()
        };
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("refusing to listen"), "{error}");
        assert!(error.contains("admin_token"), "{error}");
    }

    #[test]
    fn public_listen_with_every_token_is_allowed() {
        let mut config = Config::from_toml(
            r#"
            listen = "0.0.0.0:8080"
            admin_token = "admin-secret"
            [sources.sp]
            provider = "sendpulse"
            token = "sp-secret"
            "#,
        )
        .unwrap();
        config.validate().unwrap();
        config.apply_env(&BTreeMap::new()).unwrap();
        assert_eq!(format!("{:?}", config.admin_token), "Some([redacted])");
    }

    #[test]
    fn unknown_settings_and_bad_source_names_are_refused() {
        assert!(Config::from_toml("lisen = \"127.0.0.1:1\"").is_err());
        assert!(Config::from_toml("[sources.x]\nprovider = \"sendgrid\"\nkey = \"k\"").is_err());
        let config = Config::from_toml("[sources.Bad]\nprovider = \"opptima\"").unwrap();
        assert!(config.validate().is_err());
        let config =
            Config::from_toml("[sources.x]\nprovider = \"opptima\"\nmax_body_bytes = 10").unwrap();
        assert!(config.validate().is_err());
    }

    #[test]
    fn breaker_and_timeout_settings_must_be_usable() {
        let config = Config::default();
        assert_eq!(config.outbound.breaker_failures, 5);
        assert_eq!(config.outbound.breaker_open_secs, 30);
        assert_eq!(config.outbound.breaker_max_open_secs, 600);
        for bad in [
            "[outbound]\nbreaker_failures = 0",
            "[outbound]\nbreaker_open_secs = 0",
            "[outbound]\nbreaker_open_secs = 60\nbreaker_max_open_secs = 30",
            "[outbound]\ntimeout_secs = 0",
        ] {
            let config = Config::from_toml(bad).unwrap();
            assert!(config.validate().is_err(), "{bad}");
        }
        let config =
            Config::from_toml("[outbound]\nbreaker_failures = 2\nbreaker_open_secs = 5").unwrap();
        config.validate().unwrap();
    }

    #[test]
    fn environment_overrides_file() {
        let mut config = Config::from_toml(
            "[sources.opptima-co]\nprovider = \"opptima\"\ntoken = \"from-file\"",
        )
        .unwrap();
        config
            .apply_env(&env(&[
                ("MAILWARDEN_SOURCE_OPPTIMA_CO_TOKEN", "from-env"),
                ("MAILWARDEN_SOURCE_MG_EU_SIGNING_KEY", "key-from-env"),
                ("MAILWARDEN_LISTEN", "127.0.0.1:9999"),
            ]))
            .unwrap();
        assert_eq!(config.listen.port(), 9999);
        let mut source = config.sources["opptima-co"].clone();
        let used = source.apply_env("opptima-co", &config.source_env);
        assert_eq!(used, vec!["MAILWARDEN_SOURCE_OPPTIMA_CO_TOKEN".to_owned()]);
        assert_eq!(source.token.as_ref().unwrap().expose(), "from-env");
        let mut mailgun = SourceConfig::new("mailgun");
        mailgun.apply_env("mg-eu", &config.source_env);
        assert_eq!(mailgun.signing_key.unwrap().expose(), "key-from-env");
        assert_eq!(
            format!("{:?}", config.source_env),
            format!("{:?}", {
                let mut expected = BTreeMap::new();
                expected.insert(
                    "MAILWARDEN_SOURCE_MG_EU_SIGNING_KEY".to_owned(),
                    Secret::new("x"),
                );
                expected.insert(
                    "MAILWARDEN_SOURCE_OPPTIMA_CO_TOKEN".to_owned(),
                    Secret::new("x"),
                );
                expected
            }),
            "secrets from the environment are redacted in Debug"
        );
    }

    #[test]
    fn the_example_file_documents_valid_settings() {
        let text = include_str!("../mailwarden.example.toml");
        let config = Config::from_toml(text).expect("example parses");
        config.validate().expect("example validates");
        assert_eq!(config.rules.vars["min_volume"], 1000);
    }
}

/// Property tests of the configuration parser: arbitrary text, damaged copies of the
/// example file, and TOML documents built from the real sections and keys with values of
/// the right type (extremes included) or of any type. Parsing, validating and reading
/// the derived settings never panic; a refusal says what is wrong.
///
/// `PROPTEST_CASES` sets the number of cases (64 by default); for a long run:
/// `PROPTEST_CASES=250000 cargo test --release --lib fuzz` (see tests/e2e/fuzz.rs).
#[cfg(test)]
mod fuzz_tests {
    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::{Config as ProptestConfig, TestRunner};

    /// The type a key wants, so that most generated values reach `validate`.
    #[derive(Clone, Copy, Debug)]
    enum Kind {
        Uint,
        Float,
        Bool,
        Text,
        Address,
        Tls,
        Texts,
        Uints,
        Any,
    }

    use Kind::*;

    /// Every section, with its keys (`sources.*` names a source; `rules.vars` takes any
    /// key).
    const SECTIONS: &[(&str, &[(&str, Kind)])] = &[
        (
            "",
            &[
                ("listen", Address),
                ("data_dir", Text),
                ("rules_dir", Text),
                ("providers_dir", Text),
                ("public_url", Text),
                ("admin_token", Text),
            ],
        ),
        (
            "server",
            &[
                ("header_read_timeout_secs", Uint),
                ("body_timeout_secs", Uint),
                ("idle_timeout_secs", Uint),
                ("max_connections", Uint),
                ("shutdown_grace_secs", Uint),
            ],
        ),
        (
            "ingest",
            &[
                ("max_body_bytes", Uint),
                ("max_queued_requests", Uint),
                ("max_in_flight_bytes", Uint),
            ],
        ),
        (
            "storage",
            &[
                ("cache_capacity_mb", Uint),
                ("max_group", Uint),
                ("retain_days", Float),
                ("outbox_retain_days", Float),
                ("quarantine_retain_days", Float),
                ("purge_interval_secs", Uint),
                ("backend", Text),
                ("url", Text),
                ("pool_size", Uint),
            ],
        ),
        (
            "sources.*",
            &[
                ("provider", Text),
                ("token", Text),
                ("username", Text),
                ("password", Text),
                ("signing_key", Text),
                ("public_key", Text),
                ("signing_secret", Text),
                ("webhook_key", Text),
                ("url", Text),
                ("topic_arns", Texts),
                ("verify_signature", Bool),
                ("max_signature_age_secs", Uint),
                ("timezone", Text),
                ("max_body_bytes", Uint),
            ],
        ),
        (
            "rules",
            &[
                ("max_operations", Uint),
                ("timeout_ms", Uint),
                ("reload_interval_secs", Uint),
            ],
        ),
        (
            "rules.vars",
            &[("min_volume", Uint), ("crm_url", Text), ("x", Any)],
        ),
        ("alerts", &[("to", Texts)]),
        (
            "ui",
            &[("session_hours", Uint), ("login_attempts_per_minute", Uint)],
        ),
        (
            "alerts.smtp",
            &[
                ("host", Text),
                ("port", Uint),
                ("tls", Tls),
                ("username", Text),
                ("password", Text),
                ("from", Text),
                ("timeout_secs", Uint),
            ],
        ),
        (
            "outbound",
            &[
                ("signing_secret", Text),
                ("connect_timeout_secs", Uint),
                ("timeout_secs", Uint),
                ("max_response_bytes", Uint),
                ("per_host_concurrency", Uint),
                ("retry_schedule_secs", Uints),
                ("allow", Texts),
                ("breaker_failures", Uint),
                ("breaker_open_secs", Uint),
                ("breaker_max_open_secs", Uint),
            ],
        ),
        ("suppressions", &[("case_insensitive_local_part", Bool)]),
    ];

    /// Keys without a default: left out, they fail every document they are missing from.
    const REQUIRED: &[&str] = &["provider", "host", "from"];

    fn cases() -> u32 {
        std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(64)
    }

    fn run<T: fmt::Debug>(
        strategy: impl Strategy<Value = T>,
        test: impl Fn(T) -> Result<(), TestCaseError>,
    ) {
        let mut runner = TestRunner::new(ProptestConfig {
            cases: cases(),
            failure_persistence: None,
            ..ProptestConfig::default()
        });
        if let Err(error) = runner.run(&strategy, test) {
            panic!("{error}");
        }
    }

    /// A TOML basic string holding `text`.
    fn quote(text: &str) -> String {
        let mut quoted = String::from("\"");
        for c in text.chars() {
            match c {
                '"' => quoted.push_str("\\\""),
                '\\' => quoted.push_str("\\\\"),
                c if c.is_control() => quoted.push_str(&format!("\\u{:04X}", u32::from(c))),
                c => quoted.push(c),
            }
        }
        quoted.push('"');
        quoted
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            ".{0,16}",
            prop::sample::select(vec![
                "",
                " ",
                "sendgrid",
                "postmark",
                "no-such-provider",
                "whsec_AAAA",
                "whsec_!!",
                "Europe/Berlin",
                "-05:00",
                "Mars/Olympus",
                "https://crm.example.com/hook",
                "10.0.0.0/8",
                "127.0.0.1/33",
                "\u{0}\u{202e}",
                "a@example.com",
            ])
            .prop_map(str::to_owned),
        ]
    }

    fn uint() -> impl Strategy<Value = String> {
        prop_oneof![
            (0..100u64).prop_map(|n| n.to_string()),
            any::<u64>().prop_map(|n| n.to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            prop::sample::select(vec![
                "1023",
                "1024",
                "65535",
                "65536",
                "1073741824",
                "1073741825",
                "4294967296",
                "9223372036854775807",
                "9223372036854775808",
                "-9223372036854775808",
                "99999999999999999999",
                "0x7fffffffffffffff",
                "0o777",
                "0b1",
                "1_000",
                "+5",
                "-0",
            ])
            .prop_map(str::to_owned),
        ]
    }

    fn float() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec![
                "nan",
                "+nan",
                "-nan",
                "inf",
                "+inf",
                "-inf",
                "0.0",
                "-0.0",
                "1e-320",
                "0.5",
                "90",
                "100000",
                "100000.0",
                "100000.0001",
                "1e308",
                "1.7976931348623157e308",
            ])
            .prop_map(str::to_owned),
            // Rust's `{:?}` of a float is mostly TOML too (`1e300`, `0.1`; not `NaN`).
            any::<f64>().prop_map(|f| format!("{f:?}")),
        ]
    }

    fn scalar() -> impl Strategy<Value = String> {
        prop_oneof![
            uint(),
            float(),
            any::<bool>().prop_map(|b| b.to_string()),
            text().prop_map(|text| quote(&text)),
            prop::sample::select(vec![
                "1979-05-27T07:32:00Z",
                "1979-05-27T00:32:00.999999-07:00",
                "1979-05-27",
                "07:32:00",
                "'literal'",
                "'''multi\nline'''",
            ])
            .prop_map(str::to_owned),
        ]
    }

    /// A value of any TOML type: scalars, arrays, inline tables.
    fn anything() -> impl Strategy<Value = String> {
        scalar().prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4)
                    .prop_map(|items| format!("[{}]", items.join(", "))),
                prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4).prop_map(|map| {
                    let pairs: Vec<String> = map
                        .iter()
                        .map(|(key, value)| format!("{key} = {value}"))
                        .collect();
                    format!("{{ {} }}", pairs.join(", "))
                }),
            ]
        })
    }

    fn typed(kind: Kind) -> BoxedStrategy<String> {
        let quoted =
            |values: Vec<&'static str>| prop::sample::select(values).prop_map(quote).boxed();
        match kind {
            Uint => uint().boxed(),
            Float => float().boxed(),
            Bool => any::<bool>().prop_map(|b| b.to_string()).boxed(),
            Text => text().prop_map(|text| quote(&text)).boxed(),
            Address => quoted(vec![
                "127.0.0.1:0",
                "127.0.0.1:8080",
                "0.0.0.0:8080",
                "[::1]:65535",
                "[::]:1",
                "[::ffff:127.0.0.1]:80",
                "999.1.1.1:1",
                "127.0.0.1:99999",
                "localhost:80",
                "127.0.0.1",
                "",
            ]),
            Tls => quoted(vec!["none", "starttls", "tls", "TLS", ""]),
            Texts => prop::collection::vec(text(), 0..4)
                .prop_map(|items| {
                    let items: Vec<String> = items.iter().map(|text| quote(text)).collect();
                    format!("[{}]", items.join(", "))
                })
                .boxed(),
            Uints => prop::collection::vec(uint(), 0..10)
                .prop_map(|items| format!("[{}]", items.join(", ")))
                .boxed(),
            Any => anything().boxed(),
        }
    }

    /// Some `key = value` lines of one section, each key once: a real key with a value of
    /// its type (or, sometimes, of any type), and sometimes a key that does not exist.
    fn entries(keys: &'static [(&'static str, Kind)]) -> impl Strategy<Value = String> {
        let (required, optional): (Vec<_>, Vec<_>) =
            keys.iter().partition(|(key, _)| REQUIRED.contains(key));
        let most = optional.len().min(6);
        prop::sample::subsequence(optional, 0..=most).prop_flat_map(move |optional| {
            let lines: Vec<BoxedStrategy<String>> = required
                .iter()
                .chain(&optional)
                .map(|&(key, kind)| {
                    (0..40u8, typed(kind), anything())
                        .prop_map(move |(roll, typed, any)| match roll {
                            0 => format!("no_such_key = {typed}"),
                            1 => format!("{key} = {any}"),
                            _ => format!("{key} = {typed}"),
                        })
                        .boxed()
                })
                .collect();
            lines.prop_map(|lines| lines.join("\n"))
        })
    }

    fn source_name() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z0-9][a-z0-9_-]{0,10}",
            prop::sample::select(vec!["sendgrid", "Bad", "", "-a", "a b", "ü", "a.b"])
                .prop_map(str::to_owned),
            Just("x".repeat(65)),
        ]
    }

    /// A document: top-level keys, then some sections (each once; up to three sources)
    /// with some of their keys.
    fn document() -> impl Strategy<Value = String> {
        let titles: Vec<usize> = (1..SECTIONS.len()).collect();
        let sections = (
            prop::sample::subsequence(titles, 0..SECTIONS.len()),
            prop::collection::btree_set(source_name(), 1..4),
        )
            .prop_flat_map(|(indices, names)| {
                let mut headers = Vec::new();
                for index in indices {
                    match SECTIONS[index].0 {
                        "sources.*" => headers.extend(
                            names
                                .iter()
                                .map(|name| (format!("[sources.{}]", quote(name)), index)),
                        ),
                        title => headers.push((format!("[{title}]"), index)),
                    }
                }
                let sections: Vec<BoxedStrategy<String>> = headers
                    .into_iter()
                    .map(|(header, index)| {
                        entries(SECTIONS[index].1)
                            .prop_map(move |lines| format!("{header}\n{lines}\n"))
                            .boxed()
                    })
                    .collect();
                sections.prop_map(|sections| sections.concat())
            });
        (entries(SECTIONS[0].1), sections).prop_map(|(top, sections)| format!("{top}\n{sections}"))
    }

    /// The `MAILWARDEN_*` variables `Config::load` reads, with arbitrary values.
    fn environment() -> impl Strategy<Value = BTreeMap<String, String>> {
        let name = prop::sample::select(vec![
            "MAILWARDEN_LISTEN",
            "MAILWARDEN_DATA_DIR",
            "MAILWARDEN_ADMIN_TOKEN",
            "MAILWARDEN_MAX_BODY_BYTES",
            "MAILWARDEN_STORAGE_BACKEND",
            "MAILWARDEN_STORAGE_URL",
            "MAILWARDEN_SOURCE_SENDGRID_TOKEN",
            "MAILWARDEN_SOURCE__URL",
            "MAILWARDEN_SOURCE_",
        ]);
        let value = prop_oneof![text(), uint(), Just("0.0.0.0:80".to_owned())];
        prop::collection::btree_map(name.prop_map(str::to_owned), value, 0..3)
    }

    /// Parses, applies `env`, validates and reads the derived settings; checks that a
    /// refusal names what to change.
    fn check(text: &str, env: &BTreeMap<String, String>) -> Result<(), TestCaseError> {
        let mut config = match Config::from_toml(text) {
            Ok(config) => config,
            Err(error) => {
                let message = format!("{error:#}");
                prop_assert!(!message.trim().is_empty());
                return Ok(());
            }
        };
        if let Err(error) = config.apply_env(env) {
            let message = format!("{error:#}");
            prop_assert!(message.contains("MAILWARDEN_"), "{}", message);
            return Ok(());
        }
        match config.validate() {
            Ok(()) => {
                let _ = config.storage.retention();
                prop_assert!(config.in_flight_bytes() >= config.ingest.max_body_bytes);
                prop_assert!(config.sources.keys().all(|name| is_source_name(name)));
                for source in config.sources.values_mut() {
                    source.apply_env("x", &config.source_env);
                }
            }
            Err(error) => {
                let message = error.to_string();
                let names_a_setting = SECTIONS
                    .iter()
                    .flat_map(|(_, keys)| keys.iter())
                    .any(|(key, _)| message.contains(key))
                    || message.contains("source");
                prop_assert!(names_a_setting, "{}", message);
            }
        }
        Ok(())
    }

    #[test]
    fn arbitrary_text_is_parsed_or_refused_without_panicking() {
        run((any::<String>(), environment()), |(text, env)| {
            check(&text, &env)
        });
    }

    #[test]
    fn a_damaged_example_file_is_parsed_or_refused_without_panicking() {
        let example = include_str!("../mailwarden.example.toml");
        let damage = (any::<prop::sample::Index>(), 0..64usize, ".{0,8}");
        run(
            (prop::collection::vec(damage, 1..4), environment()),
            |(damages, env)| {
                let mut text = example.to_owned();
                for (at, cut, insert) in damages {
                    let start = text.floor_char_boundary(at.index(text.len() + 1));
                    let end = text.floor_char_boundary((start + cut).min(text.len()));
                    text.replace_range(start..end, &insert);
                }
                check(&text, &env)
            },
        );
    }

    #[test]
    fn documents_of_real_sections_and_keys_are_parsed_or_refused_without_panicking() {
        run((document(), environment()), |(text, env)| {
            check(&text, &env)
        });
    }
}
