//! User-written Rhai rules, run on every stored event.
//!
//! A rule is a `*.rhai` file in the rules directory, named after the file. It runs as a
//! plain script with the event in scope as `event` (read-only) and the `[rules.vars]`
//! table as `config`. A leading comment `// on: bounce, complaint` limits it to those
//! kinds, so events are dispatched by kind ([`RuleSet::for_kind`]).
//!
//! - [`engine`]: the sandboxed engine and the functions rules call.
//! - [`action`]: what a rule can ask for; recorded, never executed inside a script.
//! - [`draft`]: dry runs of a rule that is not saved yet, over stored events.
//! - [`runner`]: the background evaluator over the store's pending queue, hot reload and
//!   per-rule counters.
//! - [`testing`]: rule test cases for `mailwarden test`.
//! - [`windows`]: the history windows rules use, for `mailwarden check`.

pub mod action;
pub mod draft;
pub mod engine;
pub mod replay;
pub mod runner;
pub mod testing;
pub mod windows;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use jiff::Timestamp;
use rhai::{AST, Dynamic, Engine, Scope};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::event::{Event, EventKind};
use crate::store::Store;
use crate::telemetry::names;
pub use action::{Action, QueuedAction};
use engine::{CallState, History, Limits};

/// One compiled rule.
pub struct Rule {
    /// File name without `.rhai`.
    pub name: String,
    /// The file it came from.
    pub path: PathBuf,
    /// Kinds it runs on; `None` means every kind.
    pub kinds: Option<Vec<EventKind>>,
    /// Compiled script.
    pub ast: AST,
    /// When this version was compiled.
    pub loaded_at: Timestamp,
}

impl fmt::Debug for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rule")
            .field("name", &self.name)
            .field("kinds", &self.kinds)
            .finish()
    }
}

/// A rule that does not compile, with where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CompileError {
    /// File.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for CompileError {}

/// The rules in force, indexed by the kinds they run on.
#[derive(Debug, Default)]
pub struct RuleSet {
    rules: Vec<Arc<Rule>>,
    by_kind: Vec<Vec<usize>>,
}

impl RuleSet {
    /// Builds the set (sorted by name, so evaluation order is stable).
    pub fn new(mut rules: Vec<Arc<Rule>>) -> RuleSet {
        rules.sort_by(|a, b| a.name.cmp(&b.name));
        let mut by_kind = vec![Vec::new(); EventKind::ALL.len()];
        for (index, rule) in rules.iter().enumerate() {
            for kind in EventKind::ALL {
                if rule
                    .kinds
                    .as_ref()
                    .is_none_or(|kinds| kinds.contains(&kind))
                {
                    by_kind[kind.index()].push(index);
                }
            }
        }
        RuleSet { rules, by_kind }
    }

    /// Every rule.
    pub fn rules(&self) -> &[Arc<Rule>] {
        &self.rules
    }

    /// The rules that run on `kind`.
    pub fn for_kind(&self, kind: EventKind) -> impl Iterator<Item = &Arc<Rule>> {
        self.by_kind[kind.index()]
            .iter()
            .map(|&index| &self.rules[index])
    }

    /// Returns the rule called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Rule>> {
        self.rules.iter().find(|rule| rule.name == name)
    }
}

/// What one rule did with one event.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RuleOutcome {
    /// Rule name.
    pub rule: String,
    /// Whether it asked for anything (an action or a tag).
    pub matched: bool,
    /// Actions it asked for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<Action>,
    /// Tags it added.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Why it stopped, if it failed (its actions are then discarded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What the rules did with one event, as recorded next to it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Evaluation {
    /// When it was evaluated.
    pub evaluated_at: Timestamp,
    /// How many rules ran on it.
    pub ran: usize,
    /// The rules that matched or failed (the others did nothing).
    pub rules: Vec<RuleOutcome>,
}

impl Evaluation {
    /// Tags added by the rules.
    pub fn tags(&self) -> impl Iterator<Item = &String> {
        self.rules.iter().flat_map(|outcome| &outcome.tags)
    }
}

/// The engine, its limits and the `config` map: compiles and evaluates rules.
pub struct Rules {
    engine: Engine,
    limits: Limits,
    vars: Dynamic,
}

impl Rules {
    /// An evaluator with `limits` and `vars` as the scripts' `config` map.
    pub fn new(limits: Limits, vars: &Map<String, Value>) -> Rules {
        Rules {
            engine: engine::build(&limits),
            vars: engine::to_dynamic(&Value::Object(vars.clone())).into_shared(),
            limits,
        }
    }

    fn scope(&self, event: Dynamic) -> Scope<'static> {
        let mut scope = Scope::new();
        scope.push_constant_dynamic("event", event);
        scope.push_constant_dynamic("config", self.vars.clone());
        scope
    }

    /// Compiles one rule from its source text.
    pub fn compile(&self, path: &Path, source: &str) -> Result<Rule, CompileError> {
        let name = path
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .unwrap_or_default();
        let error = |line: Option<usize>, column: Option<usize>, message: String| CompileError {
            file: path.to_owned(),
            line,
            column,
            message,
        };
        let kinds =
            parse_header(source).map_err(|(line, message)| error(Some(line), None, message))?;
        // `event` is declared as a plain variable here, a constant only when the rule runs:
        // the optimizer inlines a constant's compile-time value, and `type_of(event)` or
        // `http_post(url, event)` would see `()` instead of the event.
        let mut declared = Scope::new();
        declared.push_dynamic("event", Dynamic::UNIT);
        declared.push_constant_dynamic("config", self.vars.clone());
        let ast = self
            .engine
            .compile_with_scope(&declared, source)
            .map_err(|parse| {
                let position = parse.position();
                error(
                    position.line(),
                    position.position(),
                    parse.err_type().to_string(),
                )
            })?;
        Ok(Rule {
            name,
            path: path.to_owned(),
            kinds,
            ast,
            loaded_at: Timestamp::now(),
        })
    }

    /// Compiles a rule file.
    pub fn compile_file(&self, path: &Path) -> Result<Rule, CompileError> {
        let source = std::fs::read_to_string(path).map_err(|io| CompileError {
            file: path.to_owned(),
            line: None,
            column: None,
            message: format!("cannot read: {io}"),
        })?;
        self.compile(path, &source)
    }

    /// Compiles every `*.rhai` file in `dir` (a missing directory has no rules).
    pub fn load_dir(&self, dir: &Path) -> (Vec<Rule>, Vec<CompileError>) {
        let (mut rules, mut errors) = (Vec::new(), Vec::new());
        for path in rule_files(dir) {
            match self.compile_file(&path) {
                Ok(rule) => rules.push(rule),
                Err(error) => errors.push(error),
            }
        }
        (rules, errors)
    }

    /// Runs the rules for `event`'s kind (or only `only`) and returns what they did.
    /// With a store, history functions read it as of this event.
    pub fn evaluate(
        &self,
        set: &RuleSet,
        event: &Event,
        store: Option<&Store>,
        only: Option<&str>,
    ) -> Evaluation {
        let view = event_view(event);
        let history = history_of(event, store);
        let mut evaluation = Evaluation {
            evaluated_at: Timestamp::now(),
            ran: 0,
            rules: Vec::new(),
        };
        // One scope per event: `event` and `config` stay, each rule's own variables are
        // dropped after it ran (`rewind`).
        let mut scope = self.scope(view);
        let base = scope.len();
        for rule in set.for_kind(event.kind) {
            if only.is_some_and(|name| name != rule.name) {
                continue;
            }
            evaluation.ran += 1;
            let outcome = self.run_rule(rule, &mut scope, history.clone(), event.received_at, true);
            scope.rewind(base);
            if outcome.matched || outcome.error.is_some() {
                evaluation.rules.push(outcome);
            }
        }
        evaluation
    }

    /// Runs `rule` alone on `event` as [`Rules::evaluate`] would, without counting the run
    /// in the metrics: a dry run leaves no trace. Returns `None` when the rule does not run
    /// on the event's kind.
    pub fn try_rule(
        &self,
        rule: &Rule,
        event: &Event,
        store: Option<&Store>,
    ) -> Option<RuleOutcome> {
        if rule
            .kinds
            .as_ref()
            .is_some_and(|kinds| !kinds.contains(&event.kind))
        {
            return None;
        }
        let mut scope = self.scope(event_view(event));
        Some(self.run_rule(
            rule,
            &mut scope,
            history_of(event, store),
            event.received_at,
            false,
        ))
    }

    fn run_rule(
        &self,
        rule: &Rule,
        scope: &mut Scope<'static>,
        history: Option<History>,
        now: Timestamp,
        counted: bool,
    ) -> RuleOutcome {
        let state = CallState {
            rule: rule.name.clone(),
            actions: Vec::new(),
            tags: Vec::new(),
            deadline: Instant::now() + self.limits.timeout,
            history,
            now,
        };
        let (result, state) =
            engine::with_state(state, || self.engine.run_ast_with_scope(scope, &rule.ast));
        if counted {
            metrics::counter!(names::RULE_RUNS).increment(1);
        }
        match result {
            Ok(()) => RuleOutcome {
                rule: rule.name.clone(),
                matched: !state.actions.is_empty() || !state.tags.is_empty(),
                actions: state.actions,
                tags: state.tags,
                error: None,
            },
            Err(error) => {
                if counted {
                    metrics::counter!(names::RULE_ERRORS, "rule" => rule.name.clone()).increment(1);
                }
                RuleOutcome {
                    rule: rule.name.clone(),
                    matched: false,
                    actions: Vec::new(),
                    tags: Vec::new(),
                    error: Some(describe_error(&error)),
                }
            }
        }
    }
}

/// What history functions read for `event`: the store as of the event (none without a
/// store or an id).
fn history_of(event: &Event, store: Option<&Store>) -> Option<History> {
    match (store, event.id) {
        (Some(store), Some(id)) => Some(History {
            store: store.clone(),
            event_id: id,
            at: event.occurred_at.unwrap_or(event.received_at),
        }),
        _ => None,
    }
}

/// Describes a script failure in words a rule author can act on.
pub(crate) fn describe_error(error: &rhai::EvalAltResult) -> String {
    use rhai::EvalAltResult as E;
    let text = match error {
        E::ErrorTerminated(reason, _) => format!("stopped: {reason}"),
        E::ErrorTooManyOperations(_) => {
            "stopped: operation limit exceeded (endless loop?)".to_owned()
        }
        other => other.to_string(),
    };
    let position = error.position();
    match (position.line(), position.position()) {
        (Some(line), Some(column)) if !matches!(error, E::ErrorTerminated(..)) => {
            format!("{text} (line {line}, column {column})")
        }
        _ => text,
    }
}

/// Returns the event as a read-only script value, built once per event and shared by
/// every rule (cloning a shared value copies a pointer). `raw` is left out: provider
/// fields not in the model are in `metadata`.
pub fn event_view(event: &Event) -> Dynamic {
    // Built field by field (not through serde_json::Value): this runs for every event.
    let mut map = rhai::Map::new();
    let mut put = |name: &str, value: Dynamic| {
        if !value.is_unit() {
            map.insert(name.into(), value);
        }
    };
    let text = |value: &str| Dynamic::from(rhai::ImmutableString::from(value));
    let optional = |value: &Option<String>| value.as_deref().map_or(Dynamic::UNIT, text);
    put(
        "id",
        event.id.map_or(Dynamic::UNIT, |id| text(&id.to_string())),
    );
    put("source", text(&event.source));
    put("provider", text(&event.provider));
    put("provider_event", text(&event.provider_event));
    put("kind", text(event.kind.as_str()));
    put(
        "bounce_class",
        event
            .bounce_class
            .map_or(Dynamic::UNIT, |c| text(c.as_str())),
    );
    put(
        "reason",
        event.reason.map_or(Dynamic::UNIT, |r| text(r.as_str())),
    );
    put("recipient", text(event.recipient.as_str()));
    put(
        "occurred_at",
        event
            .occurred_at
            .map_or(Dynamic::UNIT, |at| text(&at.to_string())),
    );
    put("time_quality", text(event.time_quality.as_str()));
    put("received_at", text(&event.received_at.to_string()));
    put("message_id", optional(&event.message_id));
    put("provider_event_id", optional(&event.provider_event_id));
    put(
        "smtp_code",
        event
            .smtp_code
            .map_or(Dynamic::UNIT, |code| Dynamic::from_int(code.into())),
    );
    put("smtp_enhanced", optional(&event.smtp_enhanced));
    put("smtp_response", optional(&event.smtp_response));
    put("subject", optional(&event.subject));
    put("sender", optional(&event.sender));
    put("campaign", optional(&event.campaign));
    put("click_url", optional(&event.click_url));
    put("user_agent", optional(&event.user_agent));
    put("ip", optional(&event.ip));
    put(
        "tags",
        Dynamic::from_array(event.tags.iter().map(|t| text(t)).collect()),
    );
    put(
        "metadata",
        Dynamic::from_map(
            event
                .metadata
                .iter()
                .map(|(key, value)| (key.as_str().into(), engine::to_dynamic(value)))
                .collect(),
        ),
    );
    put(
        "warnings",
        Dynamic::from_array(event.warnings.iter().map(|w| text(w)).collect()),
    );
    Dynamic::from_map(map).into_read_only().into_shared()
}

/// Reads `// on: kind, kind` from the leading comment lines. Returns the line of a bad
/// kind on error.
fn parse_header(source: &str) -> Result<Option<Vec<EventKind>>, (usize, String)> {
    for (index, line) in source.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let Some(comment) = line.strip_prefix("//") else {
            break;
        };
        let Some(list) = comment.trim().strip_prefix("on:") else {
            continue;
        };
        let mut kinds = Vec::new();
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let kind = name.parse::<EventKind>().map_err(|_| {
                let known: Vec<_> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
                (
                    index + 1,
                    format!(
                        "`// on:` names unknown kind `{name}` (known: {})",
                        known.join(", ")
                    ),
                )
            })?;
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
        if kinds.is_empty() {
            return Err((index + 1, "`// on:` lists no kinds".to_owned()));
        }
        return Ok(Some(kinds));
    }
    Ok(None)
}

/// Returns the `*.rhai` files of `dir`, sorted.
pub fn rule_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.is_file() && path.extension().is_some_and(|ext| ext == "rhai"))
        .collect();
    files.sort();
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_view_has_the_event_model_fields() {
        let raw = serde_json::value::RawValue::from_string("{}".into()).unwrap();
        let mut event = Event::new(
            "sp",
            "sendpulse",
            "hard_bounces",
            EventKind::Bounce,
            crate::event::EmailAddress::parse("a@example.com").unwrap(),
            "2026-01-02T03:04:05Z".parse().unwrap(),
            raw,
        );
        event.smtp_code = Some(550);
        event
            .metadata
            .insert("campaign".into(), serde_json::json!("spring"));
        let view = event_view(&event).flatten().cast::<rhai::Map>();
        assert_eq!(view["kind"].to_string(), "bounce");
        assert_eq!(view["recipient"].to_string(), "a@example.com");
        assert_eq!(view["smtp_code"].as_int(), Ok(550));
        assert_eq!(view["received_at"].to_string(), "2026-01-02T03:04:05Z");
        let metadata = view["metadata"].clone().cast::<rhai::Map>();
        assert_eq!(metadata["campaign"].to_string(), "spring");
        assert!(!view.contains_key("bounce_class") && !view.contains_key("raw"));
    }

    #[test]
    fn header_lists_kinds() {
        assert_eq!(
            parse_header("// on: bounce, complaint\nlet x = 1;"),
            Ok(Some(vec![EventKind::Bounce, EventKind::Complaint]))
        );
        assert_eq!(
            parse_header("// Suppress things.\n// on: open\n"),
            Ok(Some(vec![EventKind::Open]))
        );
        assert_eq!(parse_header("let x = 1;\n// on: open"), Ok(None));
        assert!(parse_header("// on: bouncy").is_err());
    }
}

/// Property tests of the script view ([`event_view`], [`engine::to_dynamic`],
/// [`engine::to_json`]): arbitrary events (hostile text, extreme numbers and times,
/// metadata nested to the body parser's limit, every kind) are read by a rule that
/// touches every field, through the real engine and its limits. No panic; the rule
/// finishes, or fails only where it throws on purpose; what it sees is the event.
///
/// `PROPTEST_CASES` sets the number of cases (64 by default); for a long run:
/// `PROPTEST_CASES=250000 cargo test --release --lib fuzz` (see tests/e2e/fuzz.rs).
#[cfg(test)]
mod fuzz_tests {
    use super::*;
    use crate::event::{BounceClass, EmailAddress, EventId, Reason, TimeQuality};
    use crate::ingest::body::MAX_JSON_DEPTH;
    use proptest::prelude::*;
    use proptest::test_runner::{Config as ProptestConfig, TestRunner};
    use serde_json::json;

    /// Reads every field of `event` (and `config`) the way rules do, works on the text,
    /// walks the metadata without recursion (call depth is limited, data depth is not),
    /// suppresses hard bounces, and throws only when the event says `provoke: true`.
    const READS_EVERYTHING: &str = concat!(
        include_str!("../../tests/data/reads_every_field.rhai"),
        "http_post(\"https://hooks.example.com/fuzz\", event);\n"
    );

    /// Text that breaks naive code: control characters, NUL, bidirectional overrides,
    /// combining marks, astral characters, case mappings that change length, numbers.
    const HOSTILE: &[&str] = &[
        "",
        " ",
        "\0",
        "\u{0}\u{1}\u{1b}[31m\u{7f}",
        "\u{202e}gnp.exe",
        "\u{200f}\u{200e}\u{2066}",
        "\u{feff}",
        "e\u{301}\u{301}\u{301}",
        "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 👩\u{200d}👩\u{200d}👧",
        "\r\n\t\u{2028}",
        "\"'`\\",
        "${event}",
        "#{a: 1}",
        "(); throw \"x\";",
        "550 5.1.1 user unknown",
        "5.1.1",
        "hard",
        "bounce",
        "İıßΐŉ",
        "\u{10ffff}",
        "-9223372036854775808",
        "9223372036854775807",
        "1e400",
        "NaN",
    ];

    /// Characters repeated into long fields: one byte, two, four, and ones whose upper
    /// case is longer.
    const UNITS: &[&str] = &["a", "é", "\0", "\u{202e}", "𝔘", "ß", "ΐ", " "];

    fn cases() -> u32 {
        std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(64)
    }

    fn runner() -> TestRunner {
        TestRunner::new(ProptestConfig {
            cases: cases(),
            failure_persistence: None,
            ..ProptestConfig::default()
        })
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => ".{0,24}",
            2 => prop::sample::select(HOSTILE).prop_map(str::to_owned),
            // Longer than adapters keep (2,000 characters), as a script provider may send.
            1 => (prop::sample::select(UNITS), 1..4_000usize).prop_map(|(unit, n)| unit.repeat(n)),
        ]
    }

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            prop::sample::select(vec![i64::MIN, i64::MAX, 0, -1]).prop_map(Value::from),
            any::<f64>()
                .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            text().prop_map(Value::String),
        ]
    }

    /// Metadata values: small trees, and chains as deep as a body may nest them.
    fn value() -> impl Strategy<Value = Value> {
        let tree = leaf().prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(text(), inner, 0..6)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        });
        prop_oneof![
            4 => tree,
            1 => (0..=MAX_JSON_DEPTH, leaf()).prop_map(|(depth, leaf)| {
                (0..depth).fold(leaf, |inner, level| {
                    if level % 2 == 0 { json!({ "nested": inner }) } else { json!([inner]) }
                })
            }),
        ]
    }

    fn address() -> impl Strategy<Value = EmailAddress> {
        let fallback = || EmailAddress::parse("fallback@example.com").expect("valid");
        prop_oneof![
            prop::sample::select(vec![
                "a@example.com",
                "josé@bücher.de",
                "\"quoted\"@example.com",
                "user+tag@[127.0.0.1]",
                "x@xn--bcher-kva.example",
                "UPPER@example.com",
            ])
            .prop_map(move |text| EmailAddress::parse(text).unwrap_or_else(|_| fallback())),
            (".{1,20}", "[a-zA-Z0-9.-]{1,20}").prop_map(move |(local, domain)| {
                EmailAddress::parse(&format!("{local}@{domain}.com")).unwrap_or_else(|_| fallback())
            }),
        ]
    }

    fn timestamp() -> impl Strategy<Value = Timestamp> {
        prop_oneof![
            prop::sample::select(vec![Timestamp::MIN, Timestamp::MAX, Timestamp::UNIX_EPOCH]),
            (
                Timestamp::MIN.as_second()..=Timestamp::MAX.as_second(),
                0..1_000_000_000i32
            )
                .prop_map(|(second, nanos)| {
                    Timestamp::new(second, nanos).unwrap_or(Timestamp::UNIX_EPOCH)
                }),
        ]
    }

    fn kind() -> impl Strategy<Value = EventKind> {
        prop::sample::select(EventKind::ALL.to_vec())
    }

    /// Fills every field of an event; `provoke` asks the rule to throw.
    fn event() -> impl Strategy<Value = Event> {
        let names = (text(), text(), text(), kind(), address());
        let classes = (
            prop::option::of(prop::sample::select(vec![
                BounceClass::Hard,
                BounceClass::Soft,
                BounceClass::Undetermined,
            ])),
            prop::option::of(prop::sample::select(vec![
                Reason::Invalid,
                Reason::Bounced,
                Reason::TimedOut,
                Reason::Blocked,
                Reason::Spam,
                Reason::Unsubscribed,
                Reason::Other,
            ])),
            prop::sample::select(vec![
                TimeQuality::Exact,
                TimeQuality::AssumedTz,
                TimeQuality::Missing,
            ]),
            prop::option::of(timestamp()),
            timestamp(),
            prop::option::of(any::<u64>()),
            prop::option::of(any::<u16>()),
        );
        let texts = prop::collection::vec(prop::option::of(text()), 10);
        let lists = (
            prop::collection::vec(text(), 0..4),
            prop::collection::vec(text(), 0..4),
            prop::collection::btree_map(text(), value(), 0..6),
            prop::bool::weighted(0.1),
        );
        (names, classes, texts, lists).prop_map(
            |(
                (source, provider, provider_event, kind, recipient),
                (bounce_class, reason, time_quality, occurred_at, received_at, id, smtp_code),
                texts,
                (tags, warnings, metadata, provoke),
            )| {
                let raw = serde_json::value::RawValue::from_string("{}".into()).expect("JSON");
                let mut event = Event::new(
                    &source,
                    &provider,
                    &provider_event,
                    kind,
                    recipient,
                    received_at,
                    raw,
                );
                event.id = id.map(EventId);
                event.bounce_class = bounce_class;
                event.reason = reason;
                event.time_quality = time_quality;
                event.occurred_at = occurred_at;
                event.smtp_code = smtp_code;
                let mut texts = texts.into_iter();
                for field in [
                    &mut event.message_id,
                    &mut event.provider_event_id,
                    &mut event.smtp_enhanced,
                    &mut event.smtp_response,
                    &mut event.subject,
                    &mut event.sender,
                    &mut event.campaign,
                    &mut event.click_url,
                    &mut event.user_agent,
                    &mut event.ip,
                ] {
                    *field = texts.next().flatten();
                }
                event.tags = tags;
                event.warnings = warnings;
                event.metadata = metadata.into_iter().collect();
                if provoke {
                    event.metadata.insert("provoke".into(), Value::Bool(true));
                } else if event.metadata.get("provoke") == Some(&Value::Bool(true)) {
                    event.metadata.remove("provoke");
                }
                event
            },
        )
    }

    #[test]
    fn a_rule_reading_every_field_of_arbitrary_events_finishes_and_sees_the_event() {
        let vars = json!({ "threshold": 3, "crm_url": "https://crm.example.com", "": null });
        let limits = Limits {
            // The wall clock is not under test, and debug builds on a shared machine are slow.
            timeout: std::time::Duration::from_secs(30),
            ..Limits::default()
        };
        let rules = Rules::new(limits, vars.as_object().expect("object"));
        let rule = rules
            .compile(Path::new("reads_everything.rhai"), READS_EVERYTHING)
            .expect("the rule compiles");
        let set = RuleSet::new(vec![Arc::new(rule)]);
        let result = runner().run(&event(), |event| {
            let evaluation = rules.evaluate(&set, &event, None, None);
            prop_assert_eq!(evaluation.ran, 1);
            prop_assert_eq!(evaluation.rules.len(), 1, "the rule tags every event");
            let outcome = &evaluation.rules[0];
            if event.metadata.get("provoke") == Some(&Value::Bool(true)) {
                let error = outcome.error.as_deref().unwrap_or_default();
                prop_assert!(error.contains("provoked by the event"), "{}", error);
                prop_assert!(outcome.actions.is_empty() && outcome.tags.is_empty());
                return Ok(());
            }
            prop_assert_eq!(&outcome.error, &None);
            let tags = [
                "fuzzed".to_owned(),
                format!("kind:{}", event.kind),
                format!("metadata:{}", event.metadata.len()),
            ];
            prop_assert_eq!(&outcome.tags[..], &tags[..]);
            let hard = event.kind == EventKind::Bounce
                && event.bounce_class == Some(BounceClass::Hard)
                && event.reason != Some(Reason::Blocked);
            let mut actions = outcome.actions.iter();
            if hard {
                let Some(Action::Suppress { address, .. }) = actions.next() else {
                    return Err(TestCaseError::fail("a hard bounce is suppressed"));
                };
                prop_assert_eq!(address.as_str(), event.recipient.as_str());
            }
            let Some(Action::HttpPost { body, .. }) = actions.next() else {
                return Err(TestCaseError::fail("the event is posted"));
            };
            prop_assert!(actions.next().is_none());
            // What the script saw, back as JSON, is the event (without `raw`).
            let mut expected = serde_json::to_value(&event).expect("an event serializes");
            let object = expected.as_object_mut().expect("an object");
            object.remove("raw");
            for key in ["tags", "warnings"] {
                object.entry(key).or_insert_with(|| json!([]));
            }
            object.entry("metadata").or_insert_with(|| json!({}));
            prop_assert_eq!(body, &expected);
            Ok(())
        });
        if let Err(error) = result {
            panic!("{error}");
        }
    }

    #[test]
    fn json_survives_the_trip_through_a_script_value() {
        let result = runner().run(&value(), |value| {
            let back = engine::to_json(&engine::to_dynamic(&value));
            prop_assert_eq!(back, value);
            Ok(())
        });
        if let Err(error) = result {
            panic!("{error}");
        }
    }
}

/// Regression tests of the script view, found by the properties in `fuzz_tests`.
#[cfg(test)]
mod view_tests {
    use super::*;
    use crate::event::EmailAddress;

    fn plain_event() -> Event {
        let raw = serde_json::value::RawValue::from_string("{}".into()).expect("JSON");
        Event::new(
            "sp",
            "sendpulse",
            "hard_bounces",
            EventKind::Bounce,
            EmailAddress::parse("a@example.com").expect("valid"),
            Timestamp::UNIX_EPOCH,
            raw,
        )
    }

    fn rule(rules: &Rules, name: &str, source: &str) -> Arc<Rule> {
        Arc::new(
            rules
                .compile(Path::new(name), source)
                .expect("the rule compiles"),
        )
    }

    /// `event` was a constant at compile time, and the optimizer put its compile-time
    /// value, `()`, wherever the whole event was used (`http_post(url, event)` posted
    /// `null`).
    #[test]
    fn a_rule_passing_the_whole_event_to_a_function_passes_the_event() {
        let rules = Rules::new(Limits::default(), &Map::new());
        let set = RuleSet::new(vec![rule(
            &rules,
            "whole.rhai",
            "tag(type_of(event));\nhttp_post(\"https://crm.example.com/\", event);",
        )]);
        let evaluation = rules.evaluate(&set, &plain_event(), None, None);
        let outcome = &evaluation.rules[0];
        assert_eq!(outcome.tags, ["map"], "{outcome:?}");
        let Action::HttpPost { body, .. } = &outcome.actions[0] else {
            panic!("{outcome:?}");
        };
        assert_eq!(body["recipient"], "a@example.com", "{body}");
    }

    /// The shared view was writable, so one rule
    /// could change the event every later rule saw. (Still open: a new key added to a map,
    /// `event.metadata.x = 1`, gets through; Rhai checks the values it changes, not the
    /// maps it adds to.)
    #[test]
    fn a_rule_cannot_change_the_event_the_next_rule_sees() {
        let rules = Rules::new(Limits::default(), &Map::new());
        let set = RuleSet::new(vec![
            rule(&rules, "a_kind.rhai", "event.kind = \"click\";"),
            rule(&rules, "b_tags.rhai", "event.tags.push(\"x\");"),
            rule(
                &rules,
                "d_copy.rhai",
                "let tags = event.tags; tags.push(\"copy\"); tag(\"copied\");",
            ),
            rule(
                &rules,
                "e_reader.rhai",
                "tag(event.kind + \" \" + event.tags.len() + \" \" + event.metadata.len());",
            ),
        ]);
        let evaluation = rules.evaluate(&set, &plain_event(), None, None);
        let outcome = |name: &str| {
            evaluation
                .rules
                .iter()
                .find(|outcome| outcome.rule == name)
                .unwrap_or_else(|| panic!("{name}: {evaluation:?}"))
        };
        for writer in ["a_kind", "b_tags"] {
            let error = outcome(writer).error.as_deref().unwrap_or_default();
            assert!(error.contains("constant"), "{writer}: {error}");
        }
        assert_eq!(
            outcome("d_copy").tags,
            ["copied"],
            "a copy is the rule's own"
        );
        assert_eq!(outcome("e_reader").tags, ["bounce 0 0"], "{evaluation:?}");
    }
}
