//! Ingestion: from a provider's request body to normalized events on disk.
//!
//! The path of one request:
//! 1. the webhook handler finds the [`sources::Source`] and runs its [`verify`] checks on
//!    the raw request; a refused request is counted and stores nothing;
//! 2. the raw body is kept as received and written first, in the same transaction as the
//!    events it holds (an adapter that panics quarantines its element, never the body);
//! 3. [`body::parse_body`] checks that the provider's document ([`Provider::document`]:
//!    the body, or the form field that carries it) is UTF-8 JSON holding an object or an
//!    array of objects;
//! 4. each element goes through its provider's adapter ([`Provider::normalize`], in
//!    [`providers`]), which yields one [`Event`] per recipient, or an [`ElementError`] that
//!    quarantines the element without affecting the others;
//! 5. the events get their dedup keys ([`dedup::dedup_key`]) and are committed through the
//!    store's group-commit writer, which answers once they are flushed.
//!
//! Everything a client can send ends in a 200 with counts or a 4xx with a reason; every
//! body that passes verification and is read is kept (bodies over the size limit are
//! refused unread, with 413). Only storage failures are 5xx.

pub mod body;
pub mod dedup;
pub mod fields;
pub mod providers;
pub mod smtp;
pub mod sources;
pub mod time;
pub mod verify;

use std::sync::Arc;

use jiff::Timestamp;
use metrics::SharedString;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::config::Config;
use crate::event::{EventId, EventKind};
use crate::store::codec::{BlockHeader, RawLocator, Record};
use crate::store::{
    IngestBatch, IngestOutcome, PreparedEvent, QuarantineEntry, Store, StoreError, Stored,
};
use crate::telemetry::names;
pub use body::{BodyError, MAX_JSON_DEPTH, parse_body};
pub use dedup::dedup_key;
use providers::script::ScriptProviders;
pub use providers::{Element, ElementError, Provider};
use sources::{Source, SourceContext, Sources};

/// Bodies up to this size are normalized on the runtime thread that received them.
const INLINE_BODY_BYTES: usize = 16 * 1024;

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
    sources: Arc<Sources>,
    waker: Option<crate::rules::runner::Waker>,
}

impl Ingestor {
    /// An ingestor for `sources`, writing to `store`.
    pub fn new(store: Store, sources: Arc<Sources>) -> Ingestor {
        Ingestor {
            store,
            sources,
            waker: None,
        }
    }

    /// Builds the sources of `config` (with the user-defined providers of its providers
    /// directory) and an ingestor for them.
    pub fn from_config(store: Store, config: &Config) -> anyhow::Result<Ingestor> {
        let scripts = ScriptProviders::load(config)?;
        let sources = Sources::build(config, &scripts, SourceContext::default(), Some(&store))?;
        Ok(Ingestor::new(store, Arc::new(sources)))
    }

    /// Wakes the rules runner whenever new events are stored.
    pub fn with_waker(mut self, waker: crate::rules::runner::Waker) -> Ingestor {
        self.waker = Some(waker);
        self
    }

    /// Returns the source called `name`.
    pub fn source(&self, name: &str) -> Option<Arc<Source>> {
        self.sources.get(name)
    }

    /// Returns every source.
    pub fn sources(&self) -> &Arc<Sources> {
        &self.sources
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
        let source = self.sources.get(&batch.source);
        let outcome: IngestOutcome = self.store.commit(batch).await?;
        if let Some(error) = body_error {
            metrics::counter!(names::REJECTED, "reason" => error.code()).increment(1);
            metrics::counter!(names::QUARANTINED).increment(outcome.quarantined.len() as u64);
            return Err(IngestError::Body {
                error,
                quarantine_id: outcome.quarantined.first().copied(),
            });
        }
        let provider = source.map_or(SharedString::const_str("unknown"), |s| {
            s.provider_label.clone()
        });
        for (stored, kind) in outcome.events.iter().zip(&kinds) {
            if matches!(stored, Stored::New(_)) {
                metrics::counter!(names::EVENTS, "provider" => provider.clone(), "kind" => kind.as_str())
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
    Ok(prepare(source, body, received_at, store.next_id()))
}

/// What one request posted to `source` writes to a store (of either backend): the body
/// under `body_id`, its events and its quarantine entries.
pub fn prepare_batch(
    source: &Source,
    body: &[u8],
    received_at: Timestamp,
    body_id: EventId,
) -> IngestBatch {
    prepare(source, body, received_at, body_id).batch
}

/// Normalizes a body into a batch, its body stored under `body_id`.
fn prepare(source: &Source, body: &[u8], received_at: Timestamp, body_id: EventId) -> Prepared {
    let header = crate::store::bodies::BodyHeader {
        source: source.name.clone(),
        received_at,
        compression: None,
    };
    let stored_body = crate::store::bodies::encode_body(&header, body);
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
    let document = source.provider.document(body);
    let elements = match document
        .as_deref()
        .map_err(Clone::clone)
        .and_then(parse_body)
    {
        Ok(elements) => elements,
        Err(error) => {
            batch
                .quarantine
                .push(quarantine_entry(error.to_string(), None, None));
            return Prepared {
                batch,
                errors: Vec::new(),
                warnings: 0,
                kinds: Vec::new(),
                body_error: Some(error),
            };
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
    batch.block_header =
        BlockHeader::new(body_id, &source.name, source.provider.name(), received_at).encode();
    // The raw JSON of each event is kept once: as a byte range of the stored body where
    // it is one (not in a decoded form field, say: then it is stored with the event).
    let mut locator = RawLocator::new(body);
    for event in &events {
        if !event.warnings.is_empty() {
            warnings += 1;
        }
        debug_assert!(event.source == source.name && event.received_at == received_at);
        kinds.push(event.kind);
        let dedup = dedup_key(event);
        batch.events.push(PreparedEvent {
            dedup,
            kind: event.kind,
            bounce_class: event.bounce_class,
            recipient: event.recipient.as_str().to_owned(),
            received_minute,
            record: Record::of(event, dedup, &mut locator).encode(),
        });
    }
    Prepared {
        batch,
        errors,
        warnings,
        kinds,
        body_error: None,
    }
}
