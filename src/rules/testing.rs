//! Rule test cases, run by `mailwarden test` and `mailwarden eval`.
//!
//! For `rules/<name>.rhai`, `rules/tests/<name>.toml` lists cases. Each case posts provider
//! bodies through the real ingest path into a scratch store (history first, then the
//! body under test), runs the rule on the events of the last body, and compares the
//! actions with the expected ones:
//!
//! ```toml
//! [[case]]
//! name = "an Opptima hard bounce suppresses the address"
//! source = "opptima"                          # a provider name
//! fixture = "fixtures/opptima/smtp_bounce.json"  # or: body = '''{"event": ...}'''
//! history = ["fixtures/..."]                 # optional: paths or inline JSON bodies
//! vars = { crm_url = "https://crm.example/hook" }   # optional, over [rules.vars]
//! suppressed = [{ address = "a@example.com", rule = "subscription" }]  # optional
//! expect = [{ type = "suppress", address = "test@testdomain.com" }]
//! ```
//!
//! Paths are relative to the directory that holds the rules directory (the project root).
//! An expected action matches when every field it lists equals the actual action's.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::engine::Limits;
use super::{Action, Evaluation, RuleSet, Rules};
use crate::config::Config;
use crate::event::Event;
use crate::ingest::{IngestError, Ingestor};
use crate::store::suppressions::SuppressRequest;
use crate::store::{Store, StoreOptions};

/// A test file: cases for one rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseFile {
    /// The cases.
    #[serde(rename = "case", default)]
    pub cases: Vec<Case>,
}

/// One test case.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// What it checks.
    pub name: String,
    /// Provider (source) the bodies are posted to.
    pub source: String,
    /// Body under test, as a file.
    pub fixture: Option<PathBuf>,
    /// Body under test, inline.
    pub body: Option<String>,
    /// Bodies ingested before (paths or inline JSON).
    #[serde(default)]
    pub history: Vec<String>,
    /// Addresses on the suppression list before the case runs.
    #[serde(default)]
    pub suppressed: Vec<Seed>,
    /// Extra `config` values.
    #[serde(default)]
    pub vars: Map<String, Value>,
    /// Expected actions, in order; empty means none.
    #[serde(default)]
    pub expect: Vec<Map<String, Value>>,
}

/// A suppression present before a case runs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seed {
    /// Address.
    pub address: String,
    /// Rule (or `manual`) that made it.
    #[serde(default = "manual")]
    pub rule: String,
    /// Why.
    #[serde(default)]
    pub reason: String,
}

fn manual() -> String {
    "manual".to_owned()
}

/// Result of one case.
#[derive(Debug)]
pub struct CaseResult {
    /// Rule.
    pub rule: String,
    /// Case name.
    pub case: String,
    /// `None` on success, else what differed.
    pub failure: Option<String>,
}

/// Result of running a rule on the events of one body.
#[derive(Debug)]
pub struct Trial {
    /// The normalized events of the body.
    pub events: Vec<Event>,
    /// Each event's evaluation.
    pub evaluations: Vec<Evaluation>,
}

impl Trial {
    /// Every action asked for, in order.
    pub fn actions(&self) -> Vec<&Action> {
        self.evaluations
            .iter()
            .flat_map(|e| &e.rules)
            .flat_map(|outcome| &outcome.actions)
            .collect()
    }
}

/// A store in a scratch directory, removed when dropped.
struct ScratchStore {
    store: Option<Store>,
    dir: PathBuf,
}

impl ScratchStore {
    fn new() -> anyhow::Result<ScratchStore> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "mailwarden-test-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let options = StoreOptions {
            cache_capacity: 8 * 1024 * 1024,
            max_group: 64,
            ..StoreOptions::default()
        };
        let store = Store::open(&dir, &options)?;
        Ok(ScratchStore {
            store: Some(store),
            dir,
        })
    }
}

impl Drop for ScratchStore {
    fn drop(&mut self) {
        drop(self.store.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Posts `history` and then `body` to `source` in a scratch store and runs `rule` (only)
/// on the events of `body`.
pub async fn trial(
    config: &Config,
    rule_file: &Path,
    source: &str,
    history: &[Vec<u8>],
    body: Vec<u8>,
    extra_vars: &Map<String, Value>,
    suppressed: &[Seed],
) -> anyhow::Result<Trial> {
    let mut vars = config.rules.vars.clone();
    vars.extend(extra_vars.clone());
    let rules = Rules::new(limits(config), &vars);
    let rule = rules.compile_file(rule_file)?;
    let name = rule.name.clone();
    let set = RuleSet::new(vec![std::sync::Arc::new(rule)]);
    let scratch = ScratchStore::new()?;
    let store = scratch.store.clone().expect("open");
    for seed in suppressed {
        let request = SuppressRequest {
            address: crate::event::EmailAddress::parse(&seed.address)?
                .as_str()
                .to_owned(),
            reason: seed.reason.clone(),
            source: None,
            event_id: None,
            rule: seed.rule.clone(),
            expires_at: None,
        };
        store.suppress(&request, jiff::Timestamp::now())?;
    }
    let ingestor = Ingestor::from_config(store.clone(), config)?;
    let source = ingestor
        .source(source)
        .with_context(|| format!("unknown source `{source}`"))?;
    for (index, earlier) in history.iter().enumerate() {
        ingestor
            .ingest(source.clone(), earlier.clone().into())
            .await
            .map_err(|error| describe(error).context(format!("history body {}", index + 1)))?;
        // What the runner does before evaluating: index the events by recipient.
        store.index_pending(usize::MAX)?;
    }
    let report = ingestor
        .ingest(source, body.into())
        .await
        .map_err(describe)?;
    let events = stored_events(&store, &report.event_ids)?;
    store.index_pending(usize::MAX)?;
    let evaluations = events
        .iter()
        .map(|event| rules.evaluate(&set, event, Some(&store), Some(&name)))
        .collect();
    Ok(Trial {
        events,
        evaluations,
    })
}

fn stored_events(store: &Store, ids: &[crate::event::EventId]) -> anyhow::Result<Vec<Event>> {
    ids.iter()
        .map(|id| store.event(*id)?.context("stored event"))
        .collect()
}

fn describe(error: IngestError) -> anyhow::Error {
    anyhow::anyhow!("the body was not accepted: {error}")
}

/// The limits configured for rules.
pub fn limits(config: &Config) -> Limits {
    Limits {
        max_operations: config.rules.max_operations,
        timeout: std::time::Duration::from_millis(config.rules.timeout_ms),
    }
}

/// Reads a body: a path relative to `root`, or inline JSON.
fn body_of(root: &Path, text: &str) -> anyhow::Result<Vec<u8>> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        return Ok(text.as_bytes().to_vec());
    }
    let path = root.join(text);
    std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))
}

/// Runs every case of every rule in `rules_dir` that has a test file.
pub async fn run_all(config: &Config, rules_dir: &Path) -> anyhow::Result<Vec<CaseResult>> {
    let root = rules_dir
        .canonicalize()
        .ok()
        .and_then(|dir| dir.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."));
    let mut results = Vec::new();
    for rule_file in super::rule_files(rules_dir) {
        let name = rule_file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let test_file = rules_dir.join("tests").join(format!("{name}.toml"));
        let Ok(text) = std::fs::read_to_string(&test_file) else {
            results.push(CaseResult {
                rule: name,
                case: "(no test file)".into(),
                failure: Some(format!("missing {}", test_file.display())),
            });
            continue;
        };
        let file: CaseFile = toml::from_str(&text)
            .with_context(|| format!("invalid test file {}", test_file.display()))?;
        for case in file.cases {
            let failure = match run_case(config, &root, &rule_file, &case).await {
                Ok(failure) => failure,
                Err(error) => Some(format!("{error:#}")),
            };
            results.push(CaseResult {
                rule: name.clone(),
                case: case.name,
                failure,
            });
        }
    }
    Ok(results)
}

async fn run_case(
    config: &Config,
    root: &Path,
    rule_file: &Path,
    case: &Case,
) -> anyhow::Result<Option<String>> {
    let body = match (&case.fixture, &case.body) {
        (Some(path), None) => body_of(root, &path.to_string_lossy())?,
        (None, Some(body)) => body.as_bytes().to_vec(),
        _ => anyhow::bail!("give exactly one of `fixture` and `body`"),
    };
    let history = case
        .history
        .iter()
        .map(|entry| body_of(root, entry))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let trial = trial(
        config,
        rule_file,
        &case.source,
        &history,
        body,
        &case.vars,
        &case.suppressed,
    )
    .await?;
    if let Some(error) = trial
        .evaluations
        .iter()
        .flat_map(|e| &e.rules)
        .find_map(|outcome| outcome.error.clone())
    {
        return Ok(Some(format!("the rule failed: {error}")));
    }
    let actual: Vec<Value> = trial
        .actions()
        .into_iter()
        .map(|action| serde_json::to_value(action).unwrap_or(Value::Null))
        .collect();
    let matches = actual.len() == case.expect.len()
        && case.expect.iter().zip(&actual).all(|(expected, actual)| {
            expected
                .iter()
                .all(|(key, value)| actual.get(key) == Some(value))
        });
    if matches {
        return Ok(None);
    }
    Ok(Some(format!(
        "expected {}\n     actual   {}",
        serde_json::to_string(&case.expect).unwrap_or_default(),
        serde_json::to_string(&actual).unwrap_or_default()
    )))
}

/// Guesses the provider of a body from its shape, for `mailwarden eval`.
pub fn guess_source(body: &[u8]) -> Option<&'static str> {
    if body.starts_with(b"mandrill_events=") {
        return Some("mandrill");
    }
    let value: Value = serde_json::from_slice(body).ok()?;
    let first = match &value {
        Value::Array(items) => items.first()?,
        other => other,
    };
    let Value::Object(map) = first else {
        return None;
    };
    let has = |key: &str| map.contains_key(key);
    let text = |key: &str| map.get(key).and_then(Value::as_str);
    Some(if has("webhookPayload") {
        "leadconnector"
    } else if has("event-data") {
        "mailgun"
    } else if has("msys") {
        "sparkpost"
    } else if has("sg_event_id") || has("sg_message_id") {
        "sendgrid"
    } else if has("mj_campaign_id") || has("Message_GUID") {
        "mailjet"
    } else if has("RecordType") || has("MessageID") || has("BouncedAt") {
        "postmark"
    } else if has("TopicArn") || has("notificationType") || has("eventType") {
        "amazon_ses"
    } else if has("msg") || (has("action") && (has("reject") || has("entry"))) {
        "mandrill"
    } else if text("type").is_some_and(|t| t.starts_with("email.") || t.starts_with("contact.")) {
        "resend"
    } else if has("ts_event") || has("message-id") || has("camp_id") {
        "brevo"
    } else if has("msgid")
        || has("relid")
        || matches!(text("type"), Some("SMTP" | "Email marketing"))
    {
        "opptima"
    } else if value.is_array() {
        "sendpulse"
    } else {
        return None;
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_provider_of_a_documented_sample_is_guessed() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
        for (fixture, provider) in [
            ("sendgrid/bounce.json", "sendgrid"),
            ("mailgun/delivered.json", "mailgun"),
            ("postmark/bounce_hard.json", "postmark"),
            ("postmark/delivery_marketing_page.json", "postmark"),
            ("amazon_ses/event_click.json", "amazon_ses"),
            ("amazon_ses/set_aside/sns_notification.json", "amazon_ses"),
            ("brevo/transactional_hard_bounce.json", "brevo"),
            ("mailjet/bounce_hard.json", "mailjet"),
            ("mandrill/hard_bounce.json", "mandrill"),
            ("mandrill/blacklist_add.json", "mandrill"),
            ("sparkpost/bounce.json", "sparkpost"),
            ("resend/email_bounced.json", "resend"),
            ("opptima/smtp_bounce.json", "opptima"),
            ("sendpulse/hard_bounces.json", "sendpulse"),
            ("leadconnector/delivered.json", "leadconnector"),
        ] {
            let body = std::fs::read(root.join(fixture)).expect("fixture");
            assert_eq!(guess_source(&body), Some(provider), "{fixture}");
        }
        assert_eq!(guess_source(b"mandrill_events=%5B%5D"), Some("mandrill"));
        assert_eq!(guess_source(b"\"text\""), None);
    }
}
