//! User-defined providers: `providers/<name>.rhai` scripts that turn one element of a
//! custom JSON body into events of the same model, so that an in-house MTA, Postal,
//! Haraka or an ESP mailwarden does not ship can post to `/webhooks/<name>`.
//!
//! A script sees the element as `element` (a map; integers too large for 64 bits arrive as
//! strings, so ids keep every digit) and ends with the events: a map, an array of maps,
//! or `()` for none. Each map uses the event model's names: `kind` (required; an unknown
//! one is stored as `other` with a warning), `recipient` (an address, a list, or an array),
//! `event` (the provider's name, default the kind), `occurred_at` (Unix seconds or ms, or
//! text: with an offset it is exact, without one the source's zone is assumed),
//! `bounce_class`, `reason`, `message_id`, `provider_event_id`, `smtp_code`,
//! `smtp_enhanced`, `smtp_response`, `subject`, `sender`, `campaign`, `click_url`,
//! `user_agent`, `ip`, `tags` and `metadata` (a map). Other keys go to metadata with a
//! warning. What a script leaves out is inferred as for built-in providers: a bounce's
//! class and reason from its SMTP reply, `spam` for complaints, `unsubscribed` for
//! unsubscribes.
//!
//! Scripts run in the rules' sandbox with the rules' operation and time limits (no file
//! or network access). A script that fails, or returns something else, quarantines the
//! element with the script's message; the other elements are kept. The directory is
//! watched like the rules: a changed script is swapped in, a broken one keeps the last
//! good version, a new file becomes a provider (and a source, when sources are not
//! configured). A file named after a built-in provider is refused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, RwLock, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rhai::{AST, Dynamic, Engine, ImmutableString, Scope};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::{Element, ElementError, MAX_FIELD_CHARS, Provider, emit, recipients, set_time};
use crate::config::Config;
use crate::event::{Event, EventKind, Reason};
use crate::ingest::fields::{Fields, JsonType, Warnings, clip, scalar_text};
use crate::ingest::smtp::{self, Reply};
use crate::ingest::sources::Sources;
use crate::rules::engine::{self, Limits};
use crate::rules::runner::FileStamp;
use crate::rules::{CompileError, describe_error, rule_files};
use crate::store::Store;

/// The model fields a script's map may set.
const MODEL_FIELDS: [&str; 18] = [
    "kind",
    "recipient",
    "event",
    "occurred_at",
    "bounce_class",
    "reason",
    "message_id",
    "provider_event_id",
    "smtp_code",
    "smtp_enhanced",
    "smtp_response",
    "subject",
    "sender",
    "campaign",
    "click_url",
    "user_agent",
    "ip",
    "tags",
];

/// The user-defined providers of one directory.
pub struct ScriptProviders {
    dir: PathBuf,
    engine: Arc<Engine>,
    timeout: Duration,
    providers: RwLock<BTreeMap<String, Arc<ScriptProvider>>>,
}

impl ScriptProviders {
    /// No user-defined providers.
    pub fn empty() -> ScriptProviders {
        ScriptProviders {
            dir: PathBuf::new(),
            engine: Arc::new(engine::sandbox(&Limits::default())),
            timeout: Limits::default().timeout,
            providers: RwLock::new(BTreeMap::new()),
        }
    }

    /// Loads the providers of `config.providers_dir` (none if it does not exist); any
    /// script that does not compile stops startup with file, line and column.
    pub fn load(config: &Config) -> anyhow::Result<ScriptProviders> {
        let limits = crate::rules::testing::limits(config);
        let scripts = ScriptProviders {
            dir: config.providers_dir.clone(),
            engine: Arc::new(engine::sandbox(&limits)),
            timeout: limits.timeout,
            providers: RwLock::new(BTreeMap::new()),
        };
        let mut errors = Vec::new();
        for path in rule_files(&scripts.dir) {
            match scripts.compile(&path) {
                Ok(provider) => {
                    scripts.insert(provider);
                }
                Err(error) => errors.push(error.to_string()),
            }
        }
        if !errors.is_empty() {
            anyhow::bail!("providers do not compile:\n  {}", errors.join("\n  "));
        }
        Ok(scripts)
    }

    /// Returns the names of the providers.
    pub fn names(&self) -> Vec<String> {
        self.providers
            .read()
            .expect("providers lock")
            .keys()
            .cloned()
            .collect()
    }

    /// Returns the provider called `name`.
    pub fn get(&self, name: &str) -> Option<Arc<ScriptProvider>> {
        self.providers
            .read()
            .expect("providers lock")
            .get(name)
            .cloned()
    }

    fn insert(&self, provider: ScriptProvider) -> Arc<ScriptProvider> {
        let provider = Arc::new(provider);
        self.providers
            .write()
            .expect("providers lock")
            .insert(provider.name.clone(), provider.clone());
        provider
    }

    /// Compiles the script at `path` into a provider named after the file.
    fn compile(&self, path: &Path) -> Result<ScriptProvider, CompileError> {
        let name = provider_name(path)?;
        let ast = self.compile_ast(path)?;
        Ok(ScriptProvider {
            name,
            path: path.to_owned(),
            ast: RwLock::new(Arc::new(ast)),
            engine: self.engine.clone(),
            timeout: self.timeout,
        })
    }

    fn compile_ast(&self, path: &Path) -> Result<AST, CompileError> {
        let error = |line, column, message: String| CompileError {
            file: path.to_owned(),
            line,
            column,
            message,
        };
        let source = std::fs::read_to_string(path)
            .map_err(|io| error(None, None, format!("cannot read: {io}")))?;
        let mut scope = Scope::new();
        scope.push_constant_dynamic("element", Dynamic::UNIT);
        self.engine
            .compile_with_scope(&scope, &source)
            .map_err(|parse| {
                let position = parse.position();
                error(
                    position.line(),
                    position.position(),
                    parse.err_type().to_string(),
                )
            })
    }

    /// Recompiles the scripts that changed since `seen`; returns the providers that are
    /// new. A script that no longer compiles keeps its last good version.
    fn reload_changed(&self, seen: &mut BTreeMap<PathBuf, FileStamp>) -> Vec<Arc<ScriptProvider>> {
        let mut added = Vec::new();
        let files = rule_files(&self.dir);
        for path in &files {
            let stamp = FileStamp::of(path);
            if seen.get(path) == Some(&stamp) {
                continue;
            }
            seen.insert(path.clone(), stamp);
            let existing = provider_name(path).ok().and_then(|name| self.get(&name));
            match existing {
                Some(provider) => match self.compile_ast(path) {
                    Ok(ast) => {
                        *provider.ast.write().expect("provider script lock") = Arc::new(ast);
                        tracing::info!(provider = %provider.name, "provider script reloaded");
                    }
                    Err(error) => tracing::error!(
                        %error,
                        "provider script does not compile; previous version kept"
                    ),
                },
                None => match self.compile(path) {
                    Ok(provider) => {
                        tracing::info!(provider = %provider.name, "provider script loaded");
                        added.push(self.insert(provider));
                    }
                    Err(error) => tracing::error!(%error, "provider script does not compile"),
                },
            }
        }
        seen.retain(|path, _| files.contains(path));
        added
    }

    /// Watches the directory every `interval` (not at all if zero), reloading changed
    /// scripts and adding new providers to `sources`.
    pub fn watch(
        self: Arc<Self>,
        sources: Arc<Sources>,
        store: Store,
        interval: Duration,
    ) -> std::io::Result<Watcher> {
        let (stop, stopped) = mpsc::channel::<()>();
        if interval.is_zero() {
            return Ok(Watcher { stop, thread: None });
        }
        let mut seen: BTreeMap<PathBuf, FileStamp> = rule_files(&self.dir)
            .into_iter()
            .map(|path| {
                let stamp = FileStamp::of(&path);
                (path, stamp)
            })
            .collect();
        let thread = std::thread::Builder::new()
            .name("mailwarden-providers-watch".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    for provider in self.reload_changed(&mut seen) {
                        sources.add_default(provider, Some(&store));
                    }
                }
            })?;
        Ok(Watcher {
            stop,
            thread: Some(thread),
        })
    }
}

/// The thread watching the providers directory.
pub struct Watcher {
    stop: mpsc::Sender<()>,
    thread: Option<JoinHandle<()>>,
}

impl Watcher {
    /// Stops watching.
    pub fn stop(mut self) {
        let _ = self.stop.send(());
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("provider watcher panicked");
            }
        }
    }
}

/// Returns the provider name of a script file, refusing names that cannot be a source or
/// that a built-in provider has.
fn provider_name(path: &Path) -> Result<String, CompileError> {
    let name = path
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_default();
    let refuse = |message: String| CompileError {
        file: path.to_owned(),
        line: None,
        column: None,
        message,
    };
    if !crate::config::is_source_name(&name) {
        return Err(refuse(format!(
            "`{name}` cannot be a provider name: use 1-64 characters of a-z, 0-9, `-` and `_`"
        )));
    }
    if super::find(&name).is_some() {
        return Err(refuse(format!(
            "`{name}` is a built-in provider; name the file differently"
        )));
    }
    Ok(name)
}

/// One user-defined provider.
pub struct ScriptProvider {
    name: String,
    path: PathBuf,
    ast: RwLock<Arc<AST>>,
    engine: Arc<Engine>,
    timeout: Duration,
}

impl ScriptProvider {
    /// The script file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Provider for ScriptProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn normalize(&self, element: &Element<'_>, out: &mut Vec<Event>) -> Result<(), ElementError> {
        if JsonType::of(element.raw) != JsonType::Object {
            return Err(ElementError::NotAnObject(JsonType::of(element.raw)));
        }
        let ast = self.ast.read().expect("provider script lock").clone();
        let mut scope = Scope::new();
        scope.push_constant_dynamic("element", view(element.raw));
        let deadline = Instant::now() + self.timeout;
        let result = engine::with_deadline(deadline, &self.name, || {
            self.engine.eval_ast_with_scope::<Dynamic>(&mut scope, &ast)
        });
        let value = result.map_err(|error| {
            ElementError::Malformed(format!(
                "provider script `{}`: {}",
                self.name,
                describe_error(&error)
            ))
        })?;
        let items = if value.is_unit() {
            Vec::new()
        } else if value.is_array() {
            value.into_array().unwrap_or_default()
        } else if value.is_map() {
            vec![value]
        } else {
            return Err(ElementError::Malformed(format!(
                "provider script `{}` returned {}; expected a map, an array of maps or ()",
                self.name,
                value.type_name()
            )));
        };
        let start = out.len();
        for (index, item) in items.into_iter().enumerate() {
            if !item.is_map() {
                out.truncate(start);
                return Err(ElementError::Malformed(format!(
                    "provider script `{}`: item {index} is {}, not a map",
                    self.name,
                    item.type_name()
                )));
            }
            let json = engine::to_json(&item).to_string();
            let raw = RawValue::from_string(json).map_err(|error| {
                ElementError::Malformed(format!("provider script `{}`: {error}", self.name))
            })?;
            let fields = Fields::parse(&raw, Warnings::default())
                .expect("a script map converts to a JSON object");
            if let Err(error) = event_of(element, fields, out) {
                out.truncate(start);
                return Err(error);
            }
        }
        Ok(())
    }
}

/// Turns one map a script returned into events (one per recipient).
fn event_of(
    element: &Element<'_>,
    mut fields: Fields<'_>,
    out: &mut Vec<Event>,
) -> Result<(), ElementError> {
    let kind_text = fields.text("kind");
    let kind = match kind_text.as_deref().map(EventKind::from_str) {
        Some(Ok(kind)) => kind,
        Some(Err(_)) => {
            fields.warn(
                "kind",
                format_args!(
                    "unknown kind `{}`; stored as `other`",
                    clip(kind_text.as_deref().unwrap_or_default(), 40)
                ),
            );
            EventKind::Other
        }
        None => {
            fields.warn("kind", "missing; stored as `other`");
            EventKind::Other
        }
    };
    let recipients = recipients(&mut fields, &["recipient"])?;
    let name = fields.text("event").unwrap_or_else(|| {
        kind_text
            .clone()
            .unwrap_or_else(|| kind.as_str().to_owned())
    });
    let mut event = element.documented_event(&name, kind, recipients[0].clone());
    let read = element.time(&mut fields, "occurred_at", false);
    set_time(&mut event, read);
    let text = |fields: &mut Fields<'_>, key: &str| {
        fields
            .text(key)
            .map(|value| clip(&value, MAX_FIELD_CHARS).to_owned())
    };
    event.message_id = text(&mut fields, "message_id");
    event.provider_event_id = text(&mut fields, "provider_event_id");
    event.subject = text(&mut fields, "subject");
    event.sender = text(&mut fields, "sender");
    event.campaign = text(&mut fields, "campaign");
    event.click_url = text(&mut fields, "click_url");
    event.user_agent = text(&mut fields, "user_agent");
    event.ip = text(&mut fields, "ip");
    event.tags = fields.texts("tags");
    let response = text(&mut fields, "smtp_response");
    let mut reply = Reply {
        code: fields.integer("smtp_code").and_then(smtp::reply_code),
        enhanced: fields
            .text("smtp_enhanced")
            .and_then(|code| smtp::enhanced_code(&code)),
    };
    if let Some(response) = &response {
        reply.complete_from_text(response);
    }
    event.smtp_code = reply.code;
    event.smtp_enhanced = reply.enhanced.clone();
    event.smtp_response = response;
    event.bounce_class = named(&mut fields, "bounce_class");
    event.reason = named(&mut fields, "reason");
    if event.reason.is_none() {
        event.reason = match kind {
            EventKind::Bounce | EventKind::Deferred | EventKind::Dropped | EventKind::Failed => {
                smtp::classify(&reply, event.smtp_response.as_deref())
            }
            EventKind::Complaint => Some(Reason::Spam),
            EventKind::Unsubscribe => Some(Reason::Unsubscribed),
            _ => None,
        };
    }
    if kind == EventKind::Bounce && event.bounce_class.is_none() {
        event.bounce_class = Some(smtp::class_from_reply(&reply, event.reason));
    }
    if let Some(metadata) = fields.object("metadata") {
        metadata.rest_into(&mut event.metadata);
    }
    let mut extra = Map::new();
    fields.rest_into(&mut extra);
    for key in extra.keys() {
        if !MODEL_FIELDS.contains(&key.as_str()) {
            fields.warn(key, "not a field of the event model; kept in metadata");
        }
    }
    event.metadata.extend(extra);
    emit(event, recipients, fields.warnings(), out);
    Ok(())
}

/// Reads an enumerated model field (`bounce_class`, `reason`) by its JSON name; an unknown
/// value is left empty with a warning.
fn named<T: serde::de::DeserializeOwned>(fields: &mut Fields<'_>, key: &str) -> Option<T> {
    let text = fields.text(key)?;
    match serde_json::from_value(Value::String(text.trim().to_owned())) {
        Ok(value) => Some(value),
        Err(_) => {
            fields.warn(
                key,
                format_args!(
                    "`{}` is not one of the model's values; ignored",
                    clip(&text, 40)
                ),
            );
            None
        }
    }
}

/// The script's view of an element: maps, arrays and scalars, with integers that do not
/// fit in 64 bits kept as their digits.
fn view(raw: &RawValue) -> Dynamic {
    match JsonType::of(raw) {
        JsonType::Object => {
            let entries: BTreeMap<String, &RawValue> =
                serde_json::from_str(raw.get()).unwrap_or_default();
            Dynamic::from_map(
                entries
                    .into_iter()
                    .map(|(key, value)| (key.into(), view(value)))
                    .collect(),
            )
        }
        JsonType::Array => {
            let items: Vec<&RawValue> = serde_json::from_str(raw.get()).unwrap_or_default();
            Dynamic::from_array(items.into_iter().map(view).collect())
        }
        JsonType::Null => Dynamic::UNIT,
        JsonType::Bool => Dynamic::from_bool(raw.get() == "true"),
        JsonType::String => scalar_text(raw)
            .ok()
            .flatten()
            .map_or(Dynamic::UNIT, |text| {
                Dynamic::from(ImmutableString::from(text.as_ref()))
            }),
        JsonType::Number => {
            let text = raw.get();
            if let Ok(integer) = text.parse::<i64>() {
                Dynamic::from_int(integer)
            } else if text.contains(['.', 'e', 'E']) {
                text.parse::<f64>()
                    .map_or(Dynamic::UNIT, Dynamic::from_float)
            } else {
                Dynamic::from(ImmutableString::from(text))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_view_keeps_big_integers_exact() {
        let raw = RawValue::from_string(
            r#"{"id": 98765432109876543210, "n": 5, "f": 1.5, "s": "x\u00e9", "a": [true, null]}"#
                .to_owned(),
        )
        .unwrap();
        let map = view(&raw).cast::<rhai::Map>();
        assert_eq!(
            map["id"].clone().into_string().unwrap(),
            "98765432109876543210"
        );
        assert_eq!(map["n"].as_int().unwrap(), 5);
        assert_eq!(map["f"].as_float().unwrap(), 1.5);
        assert_eq!(map["s"].clone().into_string().unwrap(), "x\u{e9}");
        assert_eq!(map["a"].clone().into_array().unwrap().len(), 2);
    }

    #[test]
    fn built_in_names_and_bad_names_are_refused() {
        assert!(provider_name(Path::new("providers/sendgrid.rhai")).is_err());
        assert!(provider_name(Path::new("providers/My Provider.rhai")).is_err());
        assert_eq!(
            provider_name(Path::new("providers/postal.rhai")).unwrap(),
            "postal"
        );
    }
}
