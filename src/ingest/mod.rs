//! Ingestion: from a provider's request body to normalized events on disk.
//!
//! The path of one request:
//! 1. the raw body is kept as received and written first, in the same transaction as the
//!    events it holds (an adapter that panics quarantines its element, never the body);
//! 2. [`parse_body`] checks it is UTF-8 JSON holding an object or an array of objects;
//! 3. each element goes through its provider's adapter ([`Provider::normalize`]), which
//!    yields one [`Event`] per recipient, or an [`ElementError`] that quarantines the element
//!    without affecting the others;
//! 4. the events get their dedup keys ([`dedup_key`]) and are committed through the store's
//!    group-commit writer, which answers once they are flushed.
//!
//! Everything a client can send ends in a 200 with counts or a 4xx with a reason; every
//! body that is read is kept (bodies over the size limit are refused unread, with 413).
//! Only storage failures are 5xx.

pub mod auth;
pub mod fields;
mod leadconnector;
mod opptima;
mod sendpulse;
pub mod smtp;
pub mod time;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::Serialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::event::{EmailAddress, Event, EventId, EventKind, TimeQuality};
use crate::store::{
    IngestBatch, IngestOutcome, PreparedEvent, QuarantineEntry, Store, StoreError, Stored,
};
use crate::telemetry::names;
use auth::Token;
use fields::{Fields, JsonType, Warnings, clip};

pub use leadconnector::LeadConnector;
pub use opptima::Opptima;
pub use sendpulse::SendPulse;

/// Most recipients one provider event may fan out to; the rest are dropped with a warning.
pub const MAX_RECIPIENTS_PER_EVENT: usize = 1_000;
/// Bodies up to this size are normalized on the runtime thread that received them.
const INLINE_BODY_BYTES: usize = 16 * 1024;
/// Most warnings kept on one event.
const MAX_WARNINGS: usize = 32;
/// Longest text kept in a normalized field (the raw event keeps everything).
pub const MAX_FIELD_CHARS: usize = 2_000;

/// An e-mail provider's webhook format.
pub trait Provider: Send + Sync + 'static {
    /// Name used in configuration and in the `provider` field of events.
    fn name(&self) -> &'static str;

    /// Zone assumed for times sent without an offset, unless the source sets one.
    fn default_timezone(&self) -> &'static str {
        "UTC"
    }

    /// Turns one element of a request (one provider event) into normalized events, one
    /// per recipient, appended to `out`.
    fn normalize(&self, element: &Element<'_>, out: &mut Vec<Event>) -> Result<(), ElementError>;
}

/// Every built-in provider.
pub fn providers() -> Vec<&'static dyn Provider> {
    vec![&Opptima, &SendPulse, &LeadConnector]
}

/// Returns the built-in provider called `name`.
pub fn provider(name: &str) -> Option<&'static dyn Provider> {
    providers().into_iter().find(|p| p.name() == name)
}

/// A configured source: a name in the URL bound to a provider, with its settings.
pub struct Source {
    /// Name in `/webhooks/{name}`.
    pub name: String,
    /// Adapter for its payloads.
    pub provider: &'static dyn Provider,
    /// Token a request must carry, if any.
    pub token: Option<Token>,
    /// Zone for local times without an offset.
    pub zone: TimeZone,
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Source")
            .field("name", &self.name)
            .field("provider", &self.provider.name())
            .field("token", &self.token)
            .finish()
    }
}

/// One provider event as it arrived, with what an adapter needs around it.
pub struct Element<'a> {
    /// The element's JSON, untouched.
    pub raw: &'a RawValue,
    /// Source it was posted to.
    pub source: &'a Source,
    /// When the request arrived.
    pub received_at: Timestamp,
}

impl<'a> Element<'a> {
    /// Returns a field reader over the element, or an error if it is not an object.
    pub fn fields(&self) -> Result<Fields<'a>, ElementError> {
        Fields::parse(self.raw, Warnings::default())
            .ok_or_else(|| ElementError::NotAnObject(JsonType::of(self.raw)))
    }

    /// Reads a time field: exact, assumed in the source's zone, or missing with a warning
    /// when `expected` and absent or unreadable.
    pub fn time(&self, fields: &mut Fields<'_>, key: &str, expected: bool) -> Option<ReadTime> {
        match fields.raw(key) {
            Some(raw) => match time::read_time(raw, &self.source.zone) {
                Ok(read) => {
                    if let Some(warning) = time::future_warning(read.at, self.received_at) {
                        fields.warn(key, warning);
                    }
                    Some(read)
                }
                Err(problem) => {
                    fields.warn(key, format_args!("{problem}; time left empty"));
                    None
                }
            },
            None => {
                if expected {
                    fields.warn(key, "missing; time left empty");
                }
                None
            }
        }
    }

    /// Starts an event for this element; an unknown event name (kind `other`) is warned
    /// about and counted.
    pub fn event(
        &self,
        provider_event: &str,
        kind: EventKind,
        recipient: EmailAddress,
        fields: &Fields<'_>,
    ) -> Event {
        if kind == EventKind::Other {
            fields.warnings().push(format!(
                "unknown event `{}`; stored as `other`",
                clip(provider_event, 64)
            ));
            metrics::counter!(names::UNKNOWN_EVENTS, "provider" => self.source.provider.name())
                .increment(1);
        }
        Event::new(
            &self.source.name,
            self.source.provider.name(),
            clip(provider_event, 200),
            kind,
            recipient,
            self.received_at,
            self.raw.to_owned(),
        )
    }
}

pub use time::ReadTime;

/// Sets an event's time from what [`Element::time`] read.
pub fn set_time(event: &mut Event, read: Option<ReadTime>) {
    match read {
        Some(read) => {
            event.occurred_at = Some(read.at);
            event.time_quality = read.quality;
        }
        None => {
            event.occurred_at = None;
            event.time_quality = TimeQuality::Missing;
        }
    }
}

/// Why one element of a request could not become an event. The element is quarantined;
/// the rest of the request is unaffected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ElementError {
    /// The element is a string, number, array...
    #[error("expected an event object, found {0}")]
    NotAnObject(JsonType),
    /// No event name where the provider puts it.
    #[error("missing event name (`{0}`)")]
    MissingEventName(&'static str),
    /// No usable recipient address.
    #[error("no valid recipient address: {0}")]
    NoRecipient(String),
    /// A required part of the provider's format is missing or has the wrong type.
    #[error("{0}")]
    Malformed(String),
}

/// Reads the recipients of an event from the first of `keys` that holds any: a string
/// (possibly a comma- or semicolon-separated list) or an array of strings. Invalid
/// addresses are dropped with a warning; none valid is an error.
pub fn recipients(
    fields: &mut Fields<'_>,
    keys: &[&str],
) -> Result<Vec<EmailAddress>, ElementError> {
    let mut texts = Vec::new();
    let mut found_key = None;
    for key in keys {
        let values = fields.texts(key);
        if found_key.is_none() && !values.is_empty() {
            found_key = Some(*key);
            texts = values;
        }
    }
    let Some(key) = found_key else {
        return Err(ElementError::NoRecipient(format!(
            "none of {} is present",
            keys.iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    };
    let mut addresses: Vec<EmailAddress> = Vec::new();
    let mut problems = Vec::new();
    for text in &texts {
        for part in split_addresses(text) {
            match EmailAddress::parse(part) {
                Ok(address) if !addresses.contains(&address) => addresses.push(address),
                Ok(_) => {}
                Err(error) => problems.push(format!("`{}`: {error}", clip(part.trim(), 80))),
            }
        }
    }
    if addresses.is_empty() {
        return Err(ElementError::NoRecipient(format!(
            "`{key}`: {}",
            problems.first().map_or("empty", String::as_str)
        )));
    }
    for problem in problems.iter().take(5) {
        fields.warn(key, format_args!("skipped recipient {problem}"));
    }
    if addresses.len() > MAX_RECIPIENTS_PER_EVENT {
        fields.warn(
            key,
            format_args!(
                "{} recipients; only the first {MAX_RECIPIENTS_PER_EVENT} are stored",
                addresses.len()
            ),
        );
        addresses.truncate(MAX_RECIPIENTS_PER_EVENT);
    }
    Ok(addresses)
}

/// Splits an address list on `,` and `;` outside double quotes and angle brackets.
fn split_addresses(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut quoted, mut angle, mut start) = (false, false, 0);
    for (index, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' | ';' if !quoted && !angle => {
                parts.push(&text[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts.retain(|p| !p.trim().is_empty());
    parts
}

/// Copies `event` once per extra recipient and appends them all to `out`, with the
/// element's warnings attached.
pub fn emit(
    mut event: Event,
    recipients: Vec<EmailAddress>,
    warnings: &Warnings,
    out: &mut Vec<Event>,
) {
    let mut list = warnings.take();
    list.truncate(MAX_WARNINGS);
    event.warnings = list;
    let mut rest = recipients.into_iter();
    if let Some(first) = rest.next() {
        event.recipient = first;
    }
    // The original goes first so the batch keeps the provider's order.
    let original = out.len();
    out.push(event);
    for recipient in rest {
        let mut copy = out[original].clone();
        copy.recipient = recipient;
        out.push(copy);
    }
}

/// Returns the dedup key of an event: the provider's event id when it has one that is
/// unique per event, else a hash of the single event's JSON with insignificant whitespace
/// removed; always combined with source, kind and recipient (so a batch split per
/// recipient yields distinct keys); 4 bytes of the event's day, then 12 of the digest.
/// The event time goes in with the id as well: a retry
/// repeats both, while a provider (or its documentation sample) that reuses an id for
/// different events at different times does not lose any of them.
pub fn dedup_key(event: &Event) -> [u8; 16] {
    let mut hasher = Sha256::new();
    hasher.update(event.source.as_bytes());
    hasher.update([0]);
    hasher.update([event.kind.code()]);
    hasher.update(event.recipient.as_str().as_bytes());
    hasher.update([0]);
    match &event.provider_event_id {
        Some(id) => {
            hasher.update(b"id\0");
            hasher.update(id.as_bytes());
            hasher.update([0]);
            if let Some(at) = event.occurred_at {
                hasher.update(at.as_nanosecond().to_be_bytes());
            }
        }
        None => {
            hasher.update(b"json\0");
            hash_compact_json(&mut hasher, event.raw.get());
        }
    }
    let digest = hasher.finalize();
    // The event's day first (0 without a time): the keys of one batch then sit together
    // in the dedup tree, which keeps inserting them cheap. A retry repeats the time.
    let day = event.occurred_at.map_or(0, |at| {
        u32::try_from(at.as_second().div_euclid(86_400) + 1).unwrap_or(0)
    });
    let mut key = [0; 16];
    key[..4].copy_from_slice(&day.to_be_bytes());
    key[4..].copy_from_slice(&digest[..12]);
    key
}

/// Feeds `json` to the hasher without the whitespace between tokens, so a provider that
/// re-serializes a retry with other indentation still gets the same key.
fn hash_compact_json(hasher: &mut Sha256, json: &str) {
    let bytes = json.as_bytes();
    let mut start = 0;
    outside_strings(bytes, |index, byte| {
        if byte.is_ascii_whitespace() {
            hasher.update(&bytes[start..index]);
            start = index + 1;
        }
    });
    hasher.update(&bytes[start..]);
}

/// Calls `visit` with every byte of `json` that is not inside a string (the quotes
/// themselves included), with its index.
fn outside_strings(json: &[u8], mut visit: impl FnMut(usize, u8)) {
    let (mut in_string, mut escaped) = (false, false);
    for (index, &byte) in json.iter().enumerate() {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else {
            if byte == b'"' {
                in_string = true;
            }
            visit(index, byte);
        }
    }
}

/// Why a whole body was refused. The body is kept in quarantine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// Zero bytes, or only whitespace.
    #[error("the body is empty")]
    Empty,
    /// Not UTF-8 (JSON must be).
    #[error("the body is not valid UTF-8 (first bad byte at offset {offset})")]
    InvalidUtf8 {
        /// Byte offset of the first invalid sequence.
        offset: usize,
    },
    /// Not JSON.
    #[error("malformed JSON at line {line}, column {column}: {message}")]
    Malformed {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the parser found.
        message: String,
    },
    /// Arrays and objects nested deeper than [`MAX_JSON_DEPTH`].
    #[error("JSON nested deeper than {MAX_JSON_DEPTH} levels")]
    TooDeep,
    /// JSON, but a string or number rather than an event or a list of events.
    #[error("expected a JSON object or array of objects, found {0}")]
    UnexpectedType(JsonType),
}

impl BodyError {
    /// Short machine-readable name for API errors.
    pub fn code(&self) -> &'static str {
        match self {
            BodyError::Empty => "empty_body",
            BodyError::InvalidUtf8 { .. } => "invalid_utf8",
            BodyError::Malformed { .. } => "malformed_json",
            BodyError::UnexpectedType(_) => "unexpected_json_type",
            BodyError::TooDeep => "json_too_deep",
        }
    }
}

/// Checks a body and splits it into elements: the object itself, or the array's items.
pub fn parse_body(body: &[u8]) -> Result<Vec<&RawValue>, BodyError> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let text = std::str::from_utf8(body).map_err(|error| BodyError::InvalidUtf8 {
        offset: error.valid_up_to(),
    })?;
    if text.trim().is_empty() {
        return Err(BodyError::Empty);
    }
    // Checked before parsing: stored events must always be readable back, and readers
    // (serde_json's default limit) stop at 128 levels.
    if json_depth(text.as_bytes()) > MAX_JSON_DEPTH {
        return Err(BodyError::TooDeep);
    }
    let malformed = |error: serde_json::Error| BodyError::Malformed {
        line: error.line(),
        column: error.column(),
        message: clean_parser_message(&error),
    };
    let document: &RawValue = serde_json::from_str(text).map_err(malformed)?;
    match JsonType::of(document) {
        JsonType::Array => serde_json::from_str(document.get()).map_err(malformed),
        JsonType::Object => Ok(vec![document]),
        other => Err(BodyError::UnexpectedType(other)),
    }
}

/// Deepest nesting of arrays and objects accepted in a body. Provider payloads use a
/// handful of levels; stored events add two (the event and its metadata).
pub const MAX_JSON_DEPTH: usize = 64;

/// Returns the deepest nesting of `[` and `{` outside strings.
fn json_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    outside_strings(bytes, |_, byte| match byte {
        b'[' | b'{' => {
            depth += 1;
            deepest = deepest.max(depth);
        }
        b']' | b'}' => depth = depth.saturating_sub(1),
        _ => {}
    });
    deepest
}

/// serde_json appends " at line L column C"; the position is reported separately.
fn clean_parser_message(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(cut) => text[..cut].to_owned(),
        None => text,
    }
}

/// What one request produced, before it is committed.
struct Prepared {
    batch: IngestBatch,
    /// Index in the request of each prepared event, for error reporting.
    errors: Vec<ElementFailure>,
    /// Warnings across the request's events.
    warnings: usize,
    kinds: Vec<EventKind>,
    body_error: Option<BodyError>,
}

/// One element that was quarantined.
#[derive(Debug, Clone, Serialize)]
pub struct ElementFailure {
    /// Position in the request's array (0 for a single object).
    pub index: usize,
    /// What was wrong.
    pub error: String,
}

/// The answer to one accepted request.
#[derive(Debug, Clone, Serialize)]
pub struct IngestReport {
    /// Events stored now.
    pub accepted: usize,
    /// Events that were already stored (provider retries).
    pub duplicates: usize,
    /// Elements (or whole bodies) set aside in quarantine.
    pub quarantined: usize,
    /// Ids of the events stored now, in request order.
    pub event_ids: Vec<EventId>,
    /// Events stored with warnings (see each event's `warnings`).
    pub warnings: usize,
    /// Elements that were quarantined and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ElementFailure>,
}

/// Why a request was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The body cannot be read as events; it is kept in quarantine under `quarantine_id`.
    #[error("{error}")]
    Body {
        /// What is wrong.
        error: BodyError,
        /// Quarantine entry holding it.
        quarantine_id: Option<EventId>,
    },
    /// Storage failed; the client should retry.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Turns request bodies into stored events for every configured source.
#[derive(Clone)]
pub struct Ingestor {
    store: Store,
    sources: Arc<HashMap<String, Arc<Source>>>,
    waker: Option<crate::rules::runner::Waker>,
}

impl Ingestor {
    /// Builds the sources from the configuration.
    pub fn new(store: Store, config: &Config) -> anyhow::Result<Ingestor> {
        let mut sources = HashMap::new();
        for (name, settings) in config.effective_sources() {
            let provider = provider(&settings.provider)
                .ok_or_else(|| anyhow::anyhow!("source `{name}`: unknown provider"))?;
            let zone_name = settings
                .timezone
                .as_deref()
                .unwrap_or(provider.default_timezone());
            let zone = time::parse_zone(zone_name)
                .map_err(|error| anyhow::anyhow!("source `{name}`: {error}"))?;
            let source = Source {
                name: name.clone(),
                provider,
                token: settings.token.as_ref().map(|t| Token::new(t.expose())),
                zone,
            };
            sources.insert(name, Arc::new(source));
        }
        Ok(Ingestor {
            store,
            sources: Arc::new(sources),
            waker: None,
        })
    }

    /// Wakes the rules runner whenever new events are stored.
    pub fn with_waker(mut self, waker: crate::rules::runner::Waker) -> Ingestor {
        self.waker = Some(waker);
        self
    }

    /// Returns the source called `name`.
    pub fn source(&self, name: &str) -> Option<Arc<Source>> {
        self.sources.get(name).cloned()
    }

    /// Returns the store events are written to.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Stores `body` as posted to `source`, normalizes it and commits the events. Returns
    /// once everything is on disk.
    pub async fn ingest(
        &self,
        source: Arc<Source>,
        body: axum::body::Bytes,
    ) -> Result<IngestReport, IngestError> {
        let received_at = Timestamp::now();
        // Normalizing is CPU work without IO: small bodies (single events) are cheaper to
        // handle in place than to hand to another thread; batches go to the blocking pool
        // so they never hold up the runtime.
        let prepared = if body.len() <= INLINE_BODY_BYTES {
            prepare_request(&self.store, &source, &body, received_at)
        } else {
            let store = self.store.clone();
            tokio::task::spawn_blocking(move || {
                prepare_request(&store, &source, &body, received_at)
            })
            .await
            .map_err(|error| StoreError::Commit(format!("ingest task failed: {error}")))?
        };
        self.commit(prepared?).await
    }

    async fn commit(&self, prepared: Prepared) -> Result<IngestReport, IngestError> {
        let Prepared {
            batch,
            errors,
            warnings,
            kinds,
            body_error,
        } = prepared;
        let provider_source = batch.source.clone();
        let outcome: IngestOutcome = self.store.commit(batch).await?;
        if let Some(error) = body_error {
            metrics::counter!(names::REJECTED, "reason" => error.code()).increment(1);
            metrics::counter!(names::QUARANTINED).increment(outcome.quarantined.len() as u64);
            return Err(IngestError::Body {
                error,
                quarantine_id: outcome.quarantined.first().copied(),
            });
        }
        let provider = self
            .sources
            .get(&provider_source)
            .map_or("unknown", |s| s.provider.name());
        for (stored, kind) in outcome.events.iter().zip(&kinds) {
            if matches!(stored, Stored::New(_)) {
                metrics::counter!(names::EVENTS, "provider" => provider, "kind" => kind.as_str())
                    .increment(1);
            }
        }
        let duplicates = outcome.duplicate_count();
        metrics::counter!(names::DUPLICATES).increment(duplicates as u64);
        metrics::counter!(names::QUARANTINED).increment(outcome.quarantined.len() as u64);
        let event_ids: Vec<EventId> = outcome.accepted().collect();
        if !event_ids.is_empty() {
            if let Some(waker) = &self.waker {
                waker.wake();
            }
        }
        Ok(IngestReport {
            accepted: event_ids.len(),
            duplicates,
            quarantined: outcome.quarantined.len(),
            event_ids,
            warnings,
            errors,
        })
    }
}

/// Stores the raw body, then normalizes it into a batch. Runs on a blocking thread: it
/// does sled writes and CPU-bound parsing.
fn prepare_request(
    store: &Store,
    source: &Source,
    body: &[u8],
    received_at: Timestamp,
) -> Result<Prepared, StoreError> {
    let header = crate::store::bodies::BodyHeader {
        source: source.name.clone(),
        received_at,
    };
    let (body_id, stored_body) = store.encode_body(&header, body);
    let quarantine_entry = |error: String, index: Option<usize>, element: Option<&RawValue>| {
        let entry = QuarantineEntry {
            id: None,
            source: source.name.clone(),
            received_at,
            error,
            body_id,
            index,
            element: element.map(RawValue::to_owned),
        };
        serde_json::to_vec(&entry).expect("quarantine entry serializes")
    };
    let mut batch = IngestBatch {
        source: source.name.clone(),
        body: Some((body_id, stored_body)),
        ..IngestBatch::default()
    };
    let elements = match parse_body(body) {
        Ok(elements) => elements,
        Err(error) => {
            batch
                .quarantine
                .push(quarantine_entry(error.to_string(), None, None));
            return Ok(Prepared {
                batch,
                errors: Vec::new(),
                warnings: 0,
                kinds: Vec::new(),
                body_error: Some(error),
            });
        }
    };
    let mut events = Vec::with_capacity(elements.len());
    let mut errors = Vec::new();
    for (index, raw) in elements.into_iter().enumerate() {
        let element = Element {
            raw,
            source,
            received_at,
        };
        let before = events.len();
        // A bug in an adapter must not lose the request: its element is quarantined.
        let normalized = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            source.provider.normalize(&element, &mut events)
        }))
        .unwrap_or_else(|_| {
            Err(ElementError::Malformed(
                "the adapter failed on this element (a bug); kept for replay".to_owned(),
            ))
        });
        if let Err(error) = normalized {
            events.truncate(before);
            let message = error.to_string();
            tracing::warn!(source = %source.name, index, error = %message, "element quarantined");
            batch
                .quarantine
                .push(quarantine_entry(message.clone(), Some(index), Some(raw)));
            errors.push(ElementFailure {
                index,
                error: message,
            });
        }
    }
    let received_minute = (received_at.as_second().max(0) / 60) as u64;
    let mut warnings = 0;
    let mut kinds = Vec::with_capacity(events.len());
    batch.events.reserve(events.len());
    for event in &events {
        if !event.warnings.is_empty() {
            warnings += 1;
        }
        kinds.push(event.kind);
        batch.events.push(PreparedEvent {
            dedup: dedup_key(event),
            kind: event.kind,
            recipient: event.recipient.as_str().to_owned(),
            received_minute,
            json: serde_json::to_vec(event).expect("event serializes"),
        });
    }
    Ok(Prepared {
        batch,
        errors,
        warnings,
        kinds,
        body_error: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_errors_say_what_is_wrong() {
        let error = |body: &[u8]| parse_body(body).err();
        assert_eq!(error(b""), Some(BodyError::Empty));
        assert_eq!(error(b" \n "), Some(BodyError::Empty));
        assert_eq!(
            error(b"{\"a\":\xff}"),
            Some(BodyError::InvalidUtf8 { offset: 5 })
        );
        assert_eq!(
            error(b"42"),
            Some(BodyError::UnexpectedType(JsonType::Number))
        );
        let deep = format!("[{{\"a\":{}{}}}]", "[".repeat(70), "]".repeat(70));
        assert_eq!(error(deep.as_bytes()), Some(BodyError::TooDeep));
        let fine = format!(
            "[{{\"a\":{}{}, \"s\": \"[[[[\"}}]",
            "[".repeat(20),
            "]".repeat(20)
        );
        assert!(parse_body(fine.as_bytes()).is_ok());
        match parse_body(b"[\n {\"a\": 1},\n]") {
            Err(BodyError::Malformed { line, column, .. }) => assert_eq!((line, column), (3, 1)),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn bodies_split_into_elements() {
        assert_eq!(parse_body(b"{\"a\":1}").unwrap().len(), 1);
        assert_eq!(parse_body(b"[{\"a\":1}, 2, \"x\"]").unwrap().len(), 3);
        assert_eq!(parse_body(b"\xEF\xBB\xBF[]").unwrap().len(), 0);
    }

    #[test]
    fn address_lists_split_outside_quotes() {
        assert_eq!(
            split_addresses("a@x.com, \"Doe, J\" <j@x.com>; b@y.org"),
            vec!["a@x.com", " \"Doe, J\" <j@x.com>", " b@y.org"]
        );
    }

    #[test]
    fn compact_hash_ignores_formatting_but_not_content() {
        let hash = |text: &str| {
            let mut hasher = Sha256::new();
            hash_compact_json(&mut hasher, text);
            hasher.finalize()
        };
        assert_eq!(
            hash("{\"a\": 1,\n \"b\": \"x y\"}"),
            hash("{\"a\":1,\"b\":\"x y\"}")
        );
        assert_ne!(hash("{\"b\": \"x y\"}"), hash("{\"b\": \"xy\"}"));
        assert_ne!(hash("{\"b\": \"x\\\" y\"}"), hash("{\"b\": \"x\\\"y\"}"));
    }
}
