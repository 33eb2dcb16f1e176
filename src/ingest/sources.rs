//! Webhook sources: a name in the URL (`/webhooks/{name}`) bound to a provider, with the
//! checks its requests must pass and its own settings.
//!
//! [`Sources::build`] turns `[sources.<name>]` into sources, asking each provider to
//! build its checks from the settings (so each provider validates what it takes). With no
//! `[sources]` at all, every provider (built-in and user-defined) is a source under its
//! own name. Secrets come from the file or from `MAILWARDEN_SOURCE_<NAME>_<SETTING>`.
//! Outside loopback every source must authenticate its requests somehow (a token, basic
//! auth or a signature), or the service refuses to start.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use jiff::Timestamp;
use jiff::tz::TimeZone;
use metrics::SharedString;
use serde::Serialize;

use super::providers::{self, Provider, script::ScriptProviders};
use super::time;
use super::verify::Verify;
use super::verify::sns::Certificates;
use crate::config::{Config, SourceConfig, source_env_name};
use crate::store::Store;
use crate::store::sources::{SourceRecord, Subscription};

/// What building a source's checks may use, shared by every source.
#[derive(Clone, Default)]
pub struct SourceContext {
    /// SNS signing certificates, fetched once and shared.
    pub certificates: Arc<Certificates>,
}

/// A configured source.
pub struct Source {
    /// Name in `/webhooks/{name}`.
    pub name: String,
    /// Adapter for its payloads.
    pub provider: Arc<dyn Provider>,
    /// The provider's name as a metrics label (cheap to clone).
    pub provider_label: SharedString,
    /// Checks every request must pass; empty means none (loopback only).
    pub checks: Vec<Box<dyn Verify>>,
    /// Zone for local times without an offset.
    pub zone: TimeZone,
    /// Largest body accepted.
    pub max_body_bytes: usize,
    /// Milliseconds since the epoch of the last verified request (0: none yet).
    last_received_ms: AtomicI64,
    /// The receive time last written to the store.
    persisted_ms: AtomicI64,
    /// SNS subscriptions (mirrors the store's record).
    subscriptions: Mutex<Vec<Subscription>>,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("name", &self.name)
            .field("provider", &self.provider.name())
            .field("checks", &self.methods())
            .finish()
    }
}

/// Receive times closer than this to the stored one are not written again.
const PERSIST_EVERY_MS: i64 = 1_000;

impl Source {
    /// Builds a source named `name` from `settings`, for `provider`.
    pub fn new(
        name: &str,
        provider: Arc<dyn Provider>,
        settings: &SourceConfig,
        default_max_body: usize,
        context: &SourceContext,
    ) -> Result<Source, String> {
        let zone_name = settings
            .timezone
            .as_deref()
            .unwrap_or(provider.default_timezone());
        let zone = time::parse_zone(zone_name)?;
        let checks = provider.checks(settings, context)?;
        Ok(Source {
            name: name.to_owned(),
            provider_label: SharedString::from(Arc::<str>::from(provider.name())),
            provider,
            checks,
            zone,
            max_body_bytes: settings.max_body_bytes.unwrap_or(default_max_body),
            last_received_ms: AtomicI64::new(0),
            persisted_ms: AtomicI64::new(0),
            subscriptions: Mutex::new(Vec::new()),
        })
    }

    /// Names the checks, for `GET /api/sources`.
    pub fn methods(&self) -> Vec<&'static str> {
        self.checks.iter().map(|check| check.method()).collect()
    }

    /// Returns whether requests must prove where they come from.
    pub fn verifies(&self) -> bool {
        !self.checks.is_empty()
    }

    /// Returns when a verified request last arrived.
    pub fn last_received_at(&self) -> Option<Timestamp> {
        match self.last_received_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Timestamp::from_millisecond(ms).ok(),
        }
    }

    /// Notes that a verified request arrived at `at`; writes it to `store` at most about
    /// once a second.
    pub fn received(&self, at: Timestamp, store: &Store) {
        let ms = at.as_millisecond();
        self.last_received_ms.fetch_max(ms, Ordering::Relaxed);
        let persisted = self.persisted_ms.load(Ordering::Relaxed);
        if ms - persisted < PERSIST_EVERY_MS
            || self
                .persisted_ms
                .compare_exchange(persisted, ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        if let Err(error) = store.update_source_record(&self.name, |record| {
            record.last_received_at = Some(record.last_received_at.map_or(at, |old| old.max(at)));
        }) {
            tracing::warn!(source = %self.name, %error, "cannot record the receive time");
        }
    }

    /// Returns the SNS subscriptions this source was asked to confirm.
    pub fn subscriptions(&self) -> Vec<Subscription> {
        self.subscriptions
            .lock()
            .expect("subscriptions lock")
            .clone()
    }

    /// Records the state of the subscription of `topic_arn`, in memory and in `store`.
    pub fn set_subscription(&self, subscription: Subscription, store: &Store) {
        let upsert = |list: &mut Vec<Subscription>| {
            list.retain(|old| old.topic_arn != subscription.topic_arn);
            list.push(subscription.clone());
        };
        upsert(&mut self.subscriptions.lock().expect("subscriptions lock"));
        if let Err(error) =
            store.update_source_record(&self.name, |record| upsert(&mut record.subscriptions))
        {
            tracing::warn!(source = %self.name, %error, "cannot record the subscription");
        }
    }

    fn restore(&self, record: SourceRecord) {
        if let Some(at) = record.last_received_at {
            let ms = at.as_millisecond();
            self.last_received_ms.fetch_max(ms, Ordering::Relaxed);
            self.persisted_ms.fetch_max(ms, Ordering::Relaxed);
        }
        *self.subscriptions.lock().expect("subscriptions lock") = record.subscriptions;
    }
}

/// What `GET /api/sources` shows of a source: never a secret.
#[derive(Debug, Serialize)]
pub struct SourceInfo {
    /// Name in the URL.
    pub name: String,
    /// Provider adapter.
    pub provider: String,
    /// Path to post to.
    pub path: String,
    /// Full URL, from `public_url` (or the listen address).
    pub url: String,
    /// Whether requests must prove where they come from.
    pub verifies: bool,
    /// How they do (`token`, `basic_auth`, `ecdsa_p256`, ...).
    pub verification: Vec<&'static str>,
    /// Zone assumed for local times.
    pub timezone: String,
    /// Largest body accepted.
    pub max_body_bytes: usize,
    /// When a verified request last arrived.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_received_at: Option<Timestamp>,
    /// SNS subscriptions and whether they were confirmed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subscriptions: Vec<Subscription>,
}

/// Every source of the service.
pub struct Sources {
    by_name: RwLock<Arc<HashMap<String, Arc<Source>>>>,
    /// No `[sources]` in the configuration: every provider is a source of its own name,
    /// also user-defined providers added while running.
    defaults: bool,
    default_max_body: usize,
    env: BTreeMap<String, crate::config::Secret>,
    context: SourceContext,
}

impl Sources {
    /// Builds the configured sources (or the default ones) and checks that each is safe
    /// to expose on `config.listen`.
    pub fn build(
        config: &Config,
        scripts: &ScriptProviders,
        context: SourceContext,
        store: Option<&Store>,
    ) -> anyhow::Result<Sources> {
        let defaults = config.sources.is_empty();
        let settings: BTreeMap<String, SourceConfig> = if defaults {
            providers::builtin()
                .iter()
                .map(|p| p.name().to_owned())
                .chain(scripts.names())
                .map(|name| (name.clone(), SourceConfig::new(&name)))
                .collect()
        } else {
            config.sources.clone()
        };
        let mut by_name = HashMap::new();
        let mut used_env = Vec::new();
        for (name, mut settings) in settings {
            used_env.extend(settings.apply_env(&name, &config.source_env));
            let provider = lookup(&settings.provider, scripts).ok_or_else(|| {
                let mut known: Vec<String> = providers::builtin()
                    .iter()
                    .map(|p| p.name().to_owned())
                    .collect();
                known.extend(scripts.names());
                anyhow::anyhow!(
                    "source `{name}`: unknown provider `{}` (known: {})",
                    crate::ingest::fields::clip(&settings.provider, 64),
                    known.join(", ")
                )
            })?;
            let source = Source::new(
                &name,
                provider,
                &settings,
                config.ingest.max_body_bytes,
                &context,
            )
            .map_err(|error| anyhow::anyhow!("source `{name}`: {error}"))?;
            if let Some(store) = store {
                source.restore(store.source_record(&name)?);
            }
            by_name.insert(name, Arc::new(source));
        }
        for variable in config.source_env.keys() {
            if !used_env.contains(variable) {
                tracing::warn!(
                    variable = %variable,
                    "environment variable names no source setting; ignored"
                );
            }
        }
        if !config.listen.ip().is_loopback() {
            let mut open: Vec<String> = by_name
                .values()
                .filter(|source| !source.verifies())
                .map(|source| {
                    format!(
                        "source `{}` (set sources.{}.token or {}, or the provider's signature key)",
                        source.name,
                        source.name,
                        source_env_name(&source.name, "TOKEN")
                    )
                })
                .collect();
            open.sort();
            if !open.is_empty() {
                anyhow::bail!(
                    "refusing to listen on {} with unauthenticated sources: anyone who can \
                     reach it could post events. Unprotected: {}. Configure the credentials, \
                     or listen on 127.0.0.1.",
                    config.listen,
                    open.join("; ")
                );
            }
        }
        Ok(Sources {
            by_name: RwLock::new(Arc::new(by_name)),
            defaults,
            default_max_body: config.ingest.max_body_bytes,
            env: config.source_env.clone(),
            context,
        })
    }

    /// Returns the source called `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Source>> {
        self.snapshot().get(name).cloned()
    }

    /// Returns every source, by name.
    pub fn all(&self) -> Vec<Arc<Source>> {
        let mut list: Vec<Arc<Source>> = self.snapshot().values().cloned().collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    fn snapshot(&self) -> Arc<HashMap<String, Arc<Source>>> {
        self.by_name.read().expect("sources lock").clone()
    }

    /// Adds a default source for a user-defined provider that appeared while running
    /// (only when sources are not configured explicitly).
    pub fn add_default(&self, provider: Arc<dyn Provider>, store: Option<&Store>) {
        if !self.defaults {
            return;
        }
        let name = provider.name().to_owned();
        if self.get(&name).is_some() {
            return;
        }
        let mut settings = SourceConfig::new(&name);
        settings.apply_env(&name, &self.env);
        match Source::new(
            &name,
            provider,
            &settings,
            self.default_max_body,
            &self.context,
        ) {
            Ok(source) => {
                if let Some(record) = store.and_then(|s| s.source_record(&name).ok()) {
                    source.restore(record);
                }
                let mut guard = self.by_name.write().expect("sources lock");
                let mut next = HashMap::clone(&guard);
                next.insert(name.clone(), Arc::new(source));
                *guard = Arc::new(next);
                tracing::info!(source = %name, "source added for a new provider");
            }
            Err(error) => tracing::error!(source = %name, %error, "cannot add source"),
        }
    }

    /// Describes every source for `GET /api/sources`; `base` is the URL the service is
    /// reached at.
    pub fn describe(&self, base: &str) -> Vec<SourceInfo> {
        let base = base.trim_end_matches('/');
        self.all()
            .iter()
            .map(|source| {
                let path = format!("/webhooks/{}", source.name);
                SourceInfo {
                    name: source.name.clone(),
                    provider: source.provider.name().to_owned(),
                    url: format!("{base}{path}"),
                    path,
                    verifies: source.verifies(),
                    verification: source.methods(),
                    timezone: source
                        .zone
                        .iana_name()
                        .map_or_else(|| format!("{:?}", source.zone), str::to_owned),
                    max_body_bytes: source.max_body_bytes,
                    last_received_at: source.last_received_at(),
                    subscriptions: source.subscriptions(),
                }
            })
            .collect()
    }
}

/// Finds a provider by name: built-in first, then user-defined.
fn lookup(name: &str, scripts: &ScriptProviders) -> Option<Arc<dyn Provider>> {
    providers::find(name).or_else(|| scripts.get(name).map(|p| p as Arc<dyn Provider>))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(text: &str) -> anyhow::Result<Sources> {
        let config = Config::from_toml(text)?;
        Sources::build(
            &config,
            &ScriptProviders::empty(),
            SourceContext::default(),
            None,
        )
    }

    #[test]
    fn without_sources_every_provider_is_one() {
        let sources = build("").unwrap();
        for provider in providers::builtin() {
            let source = sources.get(provider.name()).expect("default source");
            assert_eq!(source.provider.name(), provider.name());
        }
    }

    #[test]
    fn unknown_providers_and_bad_settings_are_refused_by_name() {
        let error = build("[sources.x]\nprovider = \"mailchimp\"")
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("unknown provider `mailchimp`"), "{error}");
        assert!(error.contains("sendgrid"), "{error}");
        let error = build("[sources.co]\nprovider = \"opptima\"\ntimezone = \"Mars/Base\"")
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("source `co`"), "{error}");
        let error = build("[sources.sp]\nprovider = \"sendpulse\"\nsigning_key = \"k\"")
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("`signing_key` does not apply"), "{error}");
    }

    #[test]
    fn public_listen_needs_every_source_authenticated() {
        let error = build(
            "listen = \"0.0.0.0:8080\"\nadmin_token = \"a\"\n[sources.sp]\nprovider = \"sendpulse\"",
        )
        .err()
        .unwrap()
        .to_string();
        assert!(error.contains("refusing to listen"), "{error}");
        assert!(error.contains("MAILWARDEN_SOURCE_SP_TOKEN"), "{error}");
        build(
            "listen = \"0.0.0.0:8080\"\nadmin_token = \"a\"\n[sources.sp]\nprovider = \"sendpulse\"\ntoken = \"t\"",
        )
        .unwrap();
        // A signature is authentication too; SES verifies SNS signatures without a key.
        let sources = build(
            "listen = \"0.0.0.0:8080\"\nadmin_token = \"a\"\n\
             [sources.sg]\nprovider = \"sendgrid\"\n\
             public_key = \"MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g==\"\n\
             [sources.ses]\nprovider = \"amazon_ses\"",
        )
        .unwrap();
        assert_eq!(sources.get("sg").unwrap().methods(), vec!["ecdsa_p256"]);
        assert_eq!(sources.get("ses").unwrap().methods(), vec!["sns_signature"]);
    }
}
