//! The one Rhai engine: sandbox limits and the functions rules can call.
//!
//! Scripts run with no file access (`import` resolves nothing), no `eval`, strict
//! variables, and limits on operations, call depth, expression depth, string, array and map
//! sizes, plus a wall-clock deadline checked from the progress callback. Functions that ask
//! for something (`suppress`, `alert`, `http_post`, ...) only record an [`Action`] in the
//! evaluation's [`CallState`]; history functions read the store.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use rhai::{Dynamic, Engine, EvalAltResult, ImmutableString, Map, Position};
use serde_json::Value;

use super::action::Action;
use crate::event::{EmailAddress, EventId, EventKind};
use crate::store::Store;

/// Limits every evaluation runs under.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Most Rhai operations per rule evaluation.
    pub max_operations: u64,
    /// Wall-clock limit per rule evaluation.
    pub timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_operations: 200_000,
            timeout: Duration::from_millis(250),
        }
    }
}

/// Longest string a script may build.
const MAX_STRING: usize = 64 * 1024;
/// Largest array or map a script may build.
const MAX_COLLECTION: usize = 10_000;
/// Most actions one rule may record for one event.
pub const MAX_ACTIONS_PER_RULE: usize = 100;

/// What a running script can reach; set for the duration of one rule evaluation.
pub struct CallState {
    /// Rule being evaluated (for logs).
    pub rule: String,
    /// Actions recorded so far.
    pub actions: Vec<Action>,
    /// Tags added to the event.
    pub tags: Vec<String>,
    /// When to stop the script.
    pub deadline: Instant,
    /// History access, if the evaluation has a store.
    pub history: Option<History>,
    /// The evaluation's notion of now: when the event was received, so a replay sees
    /// what a live run saw.
    pub now: Timestamp,
}

/// The store and the event a rule's history questions are about.
#[derive(Clone)]
pub struct History {
    /// Store to read.
    pub store: Store,
    /// The event being evaluated: later events are invisible to it.
    pub event_id: EventId,
    /// The moment windows end at (the event's time).
    pub at: Timestamp,
}

thread_local! {
    static CURRENT: RefCell<Option<CallState>> = const { RefCell::new(None) };
    /// The running script's deadline and name (rules and user-defined providers alike).
    static RUNNING: RefCell<Option<(Instant, String)>> = const { RefCell::new(None) };
}

/// Runs `f` with `state` installed as the current evaluation, and returns the state.
pub fn with_state<T>(state: CallState, f: impl FnOnce() -> T) -> (T, CallState) {
    let (deadline, name) = (state.deadline, state.rule.clone());
    CURRENT.with(|cell| *cell.borrow_mut() = Some(state));
    let result = with_deadline(deadline, &name, f);
    let state = CURRENT
        .with(|cell| cell.borrow_mut().take())
        .expect("state installed above");
    (result, state)
}

/// Runs `f` (a script run by an engine from [`sandbox`]) with a wall-clock `deadline`;
/// `name` labels the script's `print` and `debug` lines.
pub fn with_deadline<T>(deadline: Instant, name: &str, f: impl FnOnce() -> T) -> T {
    RUNNING.with(|cell| *cell.borrow_mut() = Some((deadline, name.to_owned())));
    let result = f();
    RUNNING.with(|cell| cell.borrow_mut().take());
    result
}

fn current<T>(f: impl FnOnce(&mut CallState) -> T) -> Result<T, Box<EvalAltResult>> {
    CURRENT.with(|cell| match cell.borrow_mut().as_mut() {
        Some(state) => Ok(f(state)),
        None => Err(runtime("no evaluation in progress")),
    })
}

fn runtime(message: impl Into<String>) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorRuntime(
        Dynamic::from(message.into()),
        Position::NONE,
    ))
}

fn record(action: Action) -> Result<(), Box<EvalAltResult>> {
    current(|state| {
        if state.actions.len() >= MAX_ACTIONS_PER_RULE {
            Err(runtime(format!(
                "more than {MAX_ACTIONS_PER_RULE} actions for one event"
            )))
        } else {
            state.actions.push(action);
            Ok(())
        }
    })?
}

fn address(function: &str, text: &str) -> Result<String, Box<EvalAltResult>> {
    EmailAddress::parse(text)
        .map(|address| address.as_str().to_owned())
        .map_err(|error| runtime(format!("{function}: `{text}`: {error}")))
}

/// Text of any value; `()` reads as the empty string.
fn text(value: &Dynamic) -> String {
    if value.is_unit() {
        String::new()
    } else {
        value.to_string()
    }
}

/// Builds the engine with its limits and every rule function.
pub fn build(limits: &Limits) -> Engine {
    let mut engine = sandbox(limits);
    register_actions(&mut engine);
    register_history(&mut engine);
    register_time(&mut engine);
    engine
}

/// Builds an engine with the sandbox and its limits only, for scripts that compute
/// rather than act (user-defined providers). Run its scripts inside [`with_deadline`].
pub fn sandbox(limits: &Limits) -> Engine {
    #[expect(
        clippy::disallowed_methods,
        reason = "this is the one place the engine is built"
    )]
    let mut engine = Engine::new();
    engine
        .set_module_resolver(rhai::module_resolvers::DummyModuleResolver::new())
        .set_strict_variables(true)
        .set_max_operations(limits.max_operations)
        .set_max_call_levels(32)
        .set_max_expr_depths(64, 32)
        .set_max_string_size(MAX_STRING)
        .set_max_array_size(MAX_COLLECTION)
        .set_max_map_size(MAX_COLLECTION)
        .set_max_modules(0)
        .set_fail_on_invalid_map_property(false);
    engine.disable_symbol("eval");
    engine.on_progress(|operations| {
        // Reading the clock on every operation would cost more than most rules; every
        // 1024 operations bounds the overrun to microseconds.
        if operations % 1024 != 0 {
            return None;
        }
        RUNNING.with(|cell| {
            let expired = cell
                .borrow()
                .as_ref()
                .is_some_and(|(deadline, _)| Instant::now() >= *deadline);
            expired.then(|| Dynamic::from("wall-clock limit exceeded"))
        })
    });
    engine.on_print(log_line);
    engine.on_debug(|message, _, _| log_line(message));
    engine
}

fn log_line(message: &str) {
    let rule = RUNNING
        .with(|cell| cell.borrow().as_ref().map(|(_, name)| name.clone()))
        .unwrap_or_default();
    tracing::info!(target: "mailwarden::rules", rule = %rule, "{message}");
}

fn register_actions(engine: &mut Engine) {
    engine.register_fn(
        "suppress",
        |target: &str, reason: Dynamic| -> Result<(), Box<EvalAltResult>> {
            record(Action::Suppress {
                address: address("suppress", target)?,
                reason: text(&reason),
                ttl_seconds: None,
            })
        },
    );
    engine.register_fn(
        "suppress",
        |target: &str, reason: Dynamic, ttl: i64| -> Result<(), Box<EvalAltResult>> {
            if ttl <= 0 {
                return Err(runtime("suppress: the duration must be positive"));
            }
            record(Action::Suppress {
                address: address("suppress", target)?,
                reason: text(&reason),
                ttl_seconds: Some(ttl),
            })
        },
    );
    engine.register_fn(
        "unsuppress",
        |target: &str, reason: Dynamic| -> Result<(), Box<EvalAltResult>> {
            record(Action::Unsuppress {
                address: address("unsuppress", target)?,
                reason: text(&reason),
            })
        },
    );
    engine.register_fn(
        "is_suppressed",
        |target: &str| -> Result<bool, Box<EvalAltResult>> {
            let address = address("is_suppressed", target)?;
            let (history, now) = current(|state| (state.history.clone(), state.now))?;
            match history {
                Some(history) => history
                    .store
                    .is_suppressed(&address, now)
                    .map_err(|error| runtime(format!("is_suppressed: {error}"))),
                None => Ok(false),
            }
        },
    );
    engine.register_fn(
        "suppression",
        |target: &str| -> Result<Dynamic, Box<EvalAltResult>> {
            let address = address("suppression", target)?;
            let (history, now) = current(|state| (state.history.clone(), state.now))?;
            let Some(history) = history else {
                return Ok(Dynamic::UNIT);
            };
            let entry = history
                .store
                .suppression(&address)
                .map_err(|error| runtime(format!("suppression: {error}")))?;
            Ok(match entry.filter(|entry| entry.in_force(now)) {
                Some(entry) => {
                    let mut value = serde_json::to_value(&entry).unwrap_or(Value::Null);
                    if let Value::Object(map) = &mut value {
                        map.remove("history");
                    }
                    to_dynamic(&value)
                }
                None => Dynamic::UNIT,
            })
        },
    );
    engine.register_fn(
        "alert",
        |subject: Dynamic, body: Dynamic| -> Result<(), Box<EvalAltResult>> {
            record(Action::Alert {
                to: Vec::new(),
                subject: text(&subject),
                body: text(&body),
                key: None,
                once_per_seconds: None,
            })
        },
    );
    engine.register_fn("alert", |options: Map| -> Result<(), Box<EvalAltResult>> {
        let get = |name: &str| options.get(name).filter(|value| !value.is_unit());
        let to = match get("to") {
            None => Vec::new(),
            Some(value) if value.is_array() => value
                .clone()
                .into_array()
                .unwrap_or_default()
                .iter()
                .map(text)
                .collect(),
            Some(value) => vec![text(value)],
        };
        for recipient in &to {
            address("alert", recipient)?;
        }
        let once_per = match get("once_per") {
            None => None,
            Some(value) => Some(
                value
                    .as_int()
                    .map_err(|_| runtime("alert: once_per must be a duration such as hours(1)"))?,
            ),
        };
        record(Action::Alert {
            to,
            subject: get("subject").map(text).unwrap_or_default(),
            body: get("body").map(text).unwrap_or_default(),
            key: get("key").map(text),
            once_per_seconds: once_per,
        })
    });
    engine.register_fn(
        "http_post",
        |url: &str, body: Dynamic| -> Result<(), Box<EvalAltResult>> {
            http_post(url, &body, &Map::new())
        },
    );
    engine.register_fn(
        "http_post",
        |url: &str, body: Dynamic, headers: Map| -> Result<(), Box<EvalAltResult>> {
            http_post(url, &body, &headers)
        },
    );
    engine.register_fn("tag", |name: &str| -> Result<(), Box<EvalAltResult>> {
        let name = name.trim();
        if name.is_empty() || name.len() > 100 {
            return Err(runtime("tag: a tag is 1 to 100 characters"));
        }
        current(|state| {
            if !state.tags.iter().any(|tag| tag == name) {
                state.tags.push(name.to_owned());
            }
        })
    });
    engine.register_fn("log", |message: Dynamic| log_line(&text(&message)));
}

fn http_post(url: &str, body: &Dynamic, headers: &Map) -> Result<(), Box<EvalAltResult>> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|error| runtime(format!("http_post: `{url}`: {error}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(runtime("http_post: only http and https URLs"));
    }
    let headers = headers
        .iter()
        .map(|(name, value)| (name.to_string(), text(value)))
        .collect();
    record(Action::HttpPost {
        url: url.to_owned(),
        body: to_json(body),
        headers,
    })
}

fn register_history(engine: &mut Engine) {
    engine.register_fn(
        "count_events",
        |recipient: &str, kind: &str, within: i64| -> Result<i64, Box<EvalAltResult>> {
            let recipient = address("count_events", recipient)?;
            let kind: EventKind = kind
                .parse()
                .map_err(|error| runtime(format!("count_events: {error}")))?;
            let Some(history) = current(|state| state.history.clone())? else {
                return Ok(0);
            };
            // Either side of this event's time: providers deliver out of order, and an
            // earlier-stored event may have happened after this one.
            let window = SignedDuration::from_secs(within.max(0));
            history
                .store
                .count_events_in_window(
                    &recipient,
                    kind,
                    history.event_id,
                    history.at - window,
                    history.at + window,
                )
                .map(|count| count as i64)
                .map_err(|error| runtime(format!("count_events: {error}")))
        },
    );
    engine.register_fn("stats", |within: i64| stats(None, within));
    engine.register_fn("stats", |source: &str, within: i64| {
        stats(Some(source.to_owned()), within)
    });
}

fn stats(source: Option<String>, within: i64) -> Result<Map, Box<EvalAltResult>> {
    let (history, now) = current(|state| (state.history.clone(), state.now))?;
    let mut map = Map::new();
    let counts = match history {
        Some(history) => {
            let from = now - SignedDuration::from_secs(within.max(0));
            history
                .store
                .stats_between(source.as_deref(), from, now)
                .map_err(|error| runtime(format!("stats: {error}")))?
        }
        None => [0; EventKind::ALL.len()],
    };
    let mut total = 0;
    for kind in EventKind::ALL {
        let count = counts[kind.index()];
        total += count;
        map.insert(kind.as_str().into(), Dynamic::from_int(count as i64));
    }
    map.insert("total".into(), Dynamic::from_int(total as i64));
    Ok(map)
}

/// Registers `minutes`, `hours` and `days`, which turn counts into seconds (also used by
/// `mailwarden check` to read rules' windows).
pub(crate) fn register_durations(engine: &mut Engine) {
    engine.register_fn("minutes", |n: i64| n.saturating_mul(60));
    engine.register_fn("hours", |n: i64| n.saturating_mul(3_600));
    engine.register_fn("days", |n: i64| n.saturating_mul(86_400));
}

fn register_time(engine: &mut Engine) {
    register_durations(engine);
    engine.register_fn("now", || -> Result<i64, Box<EvalAltResult>> {
        current(|state| state.now.as_second())
    });
}

/// Converts JSON to a script value: objects to maps, arrays to arrays, numbers to integers
/// where exact, else floats.
pub fn to_dynamic(value: &Value) -> Dynamic {
    match value {
        Value::Null => Dynamic::UNIT,
        Value::Bool(b) => Dynamic::from_bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Dynamic::from_int(i),
            None => Dynamic::from_float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Dynamic::from(ImmutableString::from(s.as_str())),
        Value::Array(items) => Dynamic::from_array(items.iter().map(to_dynamic).collect()),
        Value::Object(map) => Dynamic::from_map(
            map.iter()
                .map(|(key, value)| (key.as_str().into(), to_dynamic(value)))
                .collect(),
        ),
    }
}

/// Converts a script value to JSON.
pub fn to_json(value: &Dynamic) -> Value {
    // Shared values (the event view) are read through a copy.
    let value = &value.clone().flatten();
    if value.is_unit() {
        Value::Null
    } else if let Ok(b) = value.as_bool() {
        Value::Bool(b)
    } else if let Ok(i) = value.as_int() {
        Value::from(i)
    } else if let Ok(f) = value.as_float() {
        serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
    } else if value.is_string() {
        Value::String(value.to_string())
    } else if value.is_array() {
        let items = value.clone().into_array().unwrap_or_default();
        Value::Array(items.iter().map(to_json).collect())
    } else if value.is_map() {
        let map = value.clone().cast::<Map>();
        Value::Object(
            map.iter()
                .map(|(key, value)| (key.to_string(), to_json(value)))
                .collect(),
        )
    } else {
        Value::String(value.to_string())
    }
}
