//! Configuration: built-in defaults, overridden by an optional TOML file, overridden by
//! `MAILWARDEN_*` environment variables, overridden by command-line flags.
//!
//! With no file at all the service runs: it listens on loopback, stores in `./data`, reads
//! rules from `./rules`, and every built-in provider is a source under its own name.
//! [`Config::validate`] refuses settings that would be unsafe or cannot work, with a
//! message that says what to change.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::ingest;

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
    /// Address people reach this server at, for links in alerts.
    pub public_url: Option<String>,
    /// Token required by `/api/...` (as `Authorization: Bearer`).
    pub admin_token: Option<Secret>,
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
    /// Seconds for the whole call.
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
            public_url: None,
            admin_token: None,
            ingest: IngestConfig::default(),
            storage: StorageConfig::default(),
            sources: BTreeMap::new(),
            rules: RulesConfig::default(),
            alerts: AlertsConfig::default(),
            outbound: OutboundConfig::default(),
            suppressions: SuppressionsConfig::default(),
        }
    }
}

/// Webhook intake settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Largest request body accepted, in bytes; larger ones get 413.
    pub max_body_bytes: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            max_body_bytes: 5 * 1024 * 1024,
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
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            cache_capacity_mb: 64,
            max_group: 512,
        }
    }
}

/// One webhook source: a name in the URL bound to a provider adapter.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Adapter name: `opptima`, `sendpulse` or `leadconnector`.
    pub provider: String,
    /// Token the provider must present (Bearer, basic-auth password or `?token=`).
    #[serde(default)]
    pub token: Option<Secret>,
    /// Zone of times the provider sends without an offset (IANA name or `-05:00`).
    #[serde(default)]
    pub timezone: Option<String>,
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
        config.apply_env(|name| std::env::var(name).ok())?;
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

    /// Applies `MAILWARDEN_*` overrides read through `var`.
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
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
        if let Some(url) = var("MAILWARDEN_PUBLIC_URL") {
            self.public_url = Some(url);
        }
        if let Some(token) = var("MAILWARDEN_ADMIN_TOKEN") {
            self.admin_token = Some(Secret(token));
        }
        if let Some(bytes) = var("MAILWARDEN_MAX_BODY_BYTES") {
            self.ingest.max_body_bytes = bytes
                .parse()
                .with_context(|| format!("MAILWARDEN_MAX_BODY_BYTES `{bytes}` is not a number"))?;
        }
        for (name, source) in &mut self.sources {
            let variable = format!("MAILWARDEN_SOURCE_{}_TOKEN", env_name(name));
            if let Some(token) = var(&variable) {
                source.token = Some(Secret(token));
            }
        }
        Ok(())
    }

    /// Returns the configured sources, or one per built-in provider when none are.
    pub fn effective_sources(&self) -> BTreeMap<String, SourceConfig> {
        if !self.sources.is_empty() {
            return self.sources.clone();
        }
        ingest::providers()
            .into_iter()
            .map(|provider| {
                let source = SourceConfig {
                    provider: provider.name().to_owned(),
                    token: None,
                    timezone: None,
                };
                (provider.name().to_owned(), source)
            })
            .collect()
    }

    /// Checks that the settings can work and are safe.
    pub fn validate(&self) -> anyhow::Result<()> {
        if !(1024..=1 << 30).contains(&self.ingest.max_body_bytes) {
            bail!("ingest.max_body_bytes must be between 1 KiB and 1 GiB");
        }
        if !(8..=16 * 1024).contains(&self.storage.cache_capacity_mb) {
            bail!("storage.cache_capacity_mb must be between 8 and 16384");
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
            if ingest::provider(&source.provider).is_none() {
                let known: Vec<_> = ingest::providers().iter().map(|p| p.name()).collect();
                bail!(
                    "source `{name}`: unknown provider `{}` (known: {})",
                    source.provider,
                    known.join(", ")
                );
            }
            if let Some(zone) = &source.timezone {
                ingest::time::parse_zone(zone)
                    .map_err(|e| anyhow::anyhow!("source `{name}`: {e}"))?;
            }
            if source.token.as_ref().is_some_and(|t| t.0.trim().is_empty()) {
                bail!("source `{name}`: token is empty");
            }
        }
        if !self.listen.ip().is_loopback() {
            let mut open = Vec::new();
            if self.admin_token.is_none() {
                open.push("the admin API (set admin_token or MAILWARDEN_ADMIN_TOKEN)".to_owned());
            }
            for (name, source) in self.effective_sources() {
                if source.token.is_none() {
                    open.push(format!(
                        "source `{name}` (set sources.{name}.token or MAILWARDEN_SOURCE_{}_TOKEN)",
                        env_name(&name)
                    ));
                }
            }
            if !open.is_empty() {
                bail!(
                    "refusing to listen on {} without authentication: anyone who can reach it \
                     could post events or change suppressions. Unprotected: {}. Configure the \
                     tokens, or listen on 127.0.0.1.",
                    self.listen,
                    open.join("; ")
                );
            }
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

    #[test]
    fn defaults_validate_and_expose_every_provider() {
        let config = Config::default();
        config.validate().unwrap();
        let sources = config.effective_sources();
        assert!(sources.contains_key("opptima"));
        assert!(sources.contains_key("sendpulse"));
        assert!(sources.contains_key("leadconnector"));
    }

    #[test]
    fn public_listen_without_tokens_is_refused_with_the_reason() {
        let config = Config {
            listen: "0.0.0.0:8080".parse().unwrap(),
            ..Config::default()
        };
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("refusing to listen"), "{error}");
        assert!(error.contains("admin_token"), "{error}");
        assert!(
            error.contains("MAILWARDEN_SOURCE_SENDPULSE_TOKEN"),
            "{error}"
        );
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
        config.apply_env(|_| None).unwrap();
        assert_eq!(format!("{:?}", config.admin_token), "Some([redacted])");
    }

    #[test]
    fn unknown_settings_and_providers_are_refused() {
        assert!(Config::from_toml("lisen = \"127.0.0.1:1\"").is_err());
        let config = Config::from_toml("[sources.x]\nprovider = \"mailchimp\"").unwrap();
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("unknown provider `mailchimp`"), "{error}");
        let config = Config::from_toml("[sources.Bad]\nprovider = \"opptima\"").unwrap();
        assert!(config.validate().is_err());
        let config =
            Config::from_toml("[sources.co]\nprovider = \"opptima\"\ntimezone = \"Mars/Base\"")
                .unwrap();
        assert!(config.validate().is_err());
    }

    #[test]
    fn environment_overrides_file() {
        let mut config = Config::from_toml(
            "[sources.opptima-co]\nprovider = \"opptima\"\ntoken = \"from-file\"",
        )
        .unwrap();
        config
            .apply_env(|name| match name {
                "MAILWARDEN_SOURCE_OPPTIMA_CO_TOKEN" => Some("from-env".into()),
                "MAILWARDEN_LISTEN" => Some("127.0.0.1:9999".into()),
                _ => None,
            })
            .unwrap();
        assert_eq!(
            config.sources["opptima-co"]
                .token
                .as_ref()
                .unwrap()
                .expose(),
            "from-env"
        );
        assert_eq!(config.listen.port(), 9999);
    }

    #[test]
    fn the_example_file_documents_valid_settings() {
        let text = include_str!("../mailwarden.example.toml");
        let config = Config::from_toml(text).expect("example parses");
        config.validate().expect("example validates");
        assert_eq!(config.rules.vars["min_volume"], 1000);
    }
}
