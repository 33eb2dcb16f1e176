//! Test cases for user-defined providers, run by `mailwarden test`: for
//! `providers/<name>.rhai`, `providers/tests/<name>.toml` lists bodies and the events
//! each must become.
//!
//! ```toml
//! [[case]]
//! name = "a hard fail is a hard bounce"
//! fixture = "fixtures/postal/message_delivery_failed.json"   # or: body = '''{...}'''
//! [[case.events]]                  # one table per expected event, in order
//! kind = "bounce"
//! recipient = "test@example.com"
//! bounce_class = "hard"
//! ```
//!
//! An expected event matches when every field it lists equals the normalized event's (as
//! `GET /api/events/{id}` shows it). `quarantined = ["text"]` expects elements set aside
//! with messages containing those texts; `events = []` expects none. Paths are relative
//! to the directory holding the providers directory (the project root). Nothing is
//! stored: the body goes through the same body checks and adapter as a webhook.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Deserialize;
use serde_json::Value;

use super::Element;
use super::script::ScriptProviders;
use crate::config::{Config, SourceConfig};
use crate::ingest::body::parse_body;
use crate::ingest::sources::{Source, SourceContext};

/// A test file: cases for one provider.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    #[serde(rename = "case", default)]
    cases: Vec<Case>,
}

/// One case.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    fixture: Option<PathBuf>,
    body: Option<String>,
    #[serde(default)]
    events: Vec<toml::Table>,
    #[serde(default)]
    quarantined: Vec<String>,
}

/// Result of one case.
#[derive(Debug)]
pub struct CaseResult {
    /// Provider.
    pub provider: String,
    /// Case name.
    pub case: String,
    /// `None` on success, else what differed.
    pub failure: Option<String>,
}

/// Runs the cases of every user-defined provider of `config.providers_dir`.
pub fn run_all(config: &Config) -> anyhow::Result<Vec<CaseResult>> {
    let scripts = ScriptProviders::load(config)?;
    let dir = &config.providers_dir;
    let root = dir
        .canonicalize()
        .ok()
        .and_then(|dir| dir.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."));
    let mut results = Vec::new();
    for name in scripts.names() {
        let provider = scripts.get(&name).context("provider listed")?;
        let test_file = dir.join("tests").join(format!("{name}.toml"));
        let Ok(text) = std::fs::read_to_string(&test_file) else {
            results.push(CaseResult {
                provider: name,
                case: "(no test file)".into(),
                failure: Some(format!("missing {}", test_file.display())),
            });
            continue;
        };
        let file: CaseFile = toml::from_str(&text)
            .with_context(|| format!("invalid test file {}", test_file.display()))?;
        let source = Source::new(
            &name,
            provider,
            &SourceConfig::new(&name),
            config.ingest.max_body_bytes,
            &SourceContext::default(),
        )
        .map_err(|error| anyhow::anyhow!("provider `{name}`: {error}"))?;
        for case in file.cases {
            let failure = match run_case(&source, &root, &case) {
                Ok(failure) => failure,
                Err(error) => Some(format!("{error:#}")),
            };
            results.push(CaseResult {
                provider: name.clone(),
                case: case.name,
                failure,
            });
        }
    }
    Ok(results)
}

fn run_case(source: &Source, root: &Path, case: &Case) -> anyhow::Result<Option<String>> {
    let body = match (&case.fixture, &case.body) {
        (Some(path), None) => {
            let path = root.join(path);
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?
        }
        (None, Some(body)) => body.as_bytes().to_vec(),
        _ => anyhow::bail!("give exactly one of `fixture` and `body`"),
    };
    let document = source.provider.document(&body)?;
    let elements = parse_body(&document)?;
    let (mut events, mut errors) = (Vec::new(), Vec::new());
    for raw in elements {
        let element = Element {
            raw,
            source,
            received_at: jiff::Timestamp::now(),
        };
        let before = events.len();
        if let Err(error) = source.provider.normalize(&element, &mut events) {
            events.truncate(before);
            errors.push(error.to_string());
        }
    }
    let actual: Vec<Value> = events
        .iter()
        .map(|event| serde_json::to_value(event).unwrap_or(Value::Null))
        .collect();
    let mut problems = Vec::new();
    if actual.len() != case.events.len() {
        problems.push(format!(
            "expected {} events, got {}",
            case.events.len(),
            actual.len()
        ));
    }
    for (index, (expected, actual)) in case.events.iter().zip(&actual).enumerate() {
        for (key, value) in expected {
            let want = serde_json::to_value(value)?;
            let got = actual.get(key).cloned().unwrap_or(Value::Null);
            if want != got {
                problems.push(format!("event {index}: `{key}` is {got}, expected {want}"));
            }
        }
    }
    if errors.len() != case.quarantined.len()
        || !case
            .quarantined
            .iter()
            .zip(&errors)
            .all(|(want, got)| got.contains(want.as_str()))
    {
        problems.push(format!(
            "set aside {errors:?}, expected messages containing {:?}",
            case.quarantined
        ));
    }
    Ok((!problems.is_empty()).then(|| problems.join("\n      ")))
}
