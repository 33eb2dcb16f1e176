//! Events in PostgreSQL: the group commit of ingested requests, and reading events back.
//!
//! Requests queue for a node's writer tasks; each takes every request waiting and writes
//! them in one transaction: one multi-row `INSERT ... SELECT FROM unnest(...)` per table,
//! however many requests and events the group holds, and one commit. A request is answered once
//! that commit is done, so a `2xx` still means stored.
//!
//! Deduplication is the unique key of `mw_event_keys`: `ON CONFLICT DO NOTHING
//! RETURNING` says which keys are new. A key that another node is inserting at the same
//! moment waits for that node's transaction, then counts as a duplicate of its event, so
//! a retry sent to two nodes at once is still stored once.

use std::collections::{HashMap, HashSet};

use jiff::Timestamp;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use super::{PgError, PgStore, sql_error};
use crate::event::{Event, EventId};
use crate::store::codec::{BlockHeader, Record};
use crate::store::commit::{IngestBatch, IngestOutcome, Stored};
use crate::store::suppressions::domain_of;
use crate::store::{IdGenerator, StoreError};

/// Requests waiting for the writer at most; further ones wait to be queued.
const QUEUE_DEPTH: usize = 1024;

/// One request for the writer.
pub(super) struct Job {
    batch: IngestBatch,
    reply: oneshot::Sender<Result<IngestOutcome, StoreError>>,
}

impl PgStore {
    /// Gives a body its id (see [`crate::ingest::prepare_batch`]).
    pub fn next_id(&self) -> EventId {
        self.shared.ids.next()
    }

    /// Stores one request's body, events and quarantine entries; returns, per event,
    /// whether it is new or a retry of a stored one. Returns once committed.
    pub async fn commit(&self, batch: IngestBatch) -> Result<IngestOutcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.shared
            .writer
            .send(Job { batch, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Returns the stored event `id`.
    pub async fn event(&self, id: EventId) -> Result<Option<Event>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT e.header, e.record, b.stored FROM mw_events e
                 LEFT JOIN mw_bodies b ON b.id = e.body_id
                 WHERE e.id = $1",
                &[&to_sql_id(id)],
            )
            .await
            .map_err(|e| sql_error("reading an event", e))?;
        let Some(row) = row else { return Ok(None) };
        let header: Vec<u8> = row.get(0);
        let record: Vec<u8> = row.get(1);
        let stored: Option<Vec<u8>> = row.get(2);
        let corrupt = |reason: String| StoreError::Corrupt {
            tree: "mw_events",
            reason: format!("{id}: {reason}"),
        };
        let header: BlockHeader<'_> =
            postcard::from_bytes(&header).map_err(|e| corrupt(e.to_string()))?;
        let record = Record::decode(&record).map_err(|e| corrupt(e.to_string()))?;
        let body = match (&stored, record.needs_body()) {
            (Some(stored), true) => {
                Some(crate::store::bodies::decode_body(EventId(header.body), stored)?.1)
            }
            _ => None,
        };
        record
            .into_event(id, &header, body.as_deref())
            .map(Some)
            .map_err(|e| corrupt(e.to_string()))
    }

    /// Ids of the events of `recipient` (bare address), newest first, at most `limit`.
    pub async fn event_ids_of(
        &self,
        recipient: &str,
        limit: i64,
    ) -> Result<Vec<EventId>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id FROM mw_events WHERE recipient = $1 ORDER BY id DESC LIMIT $2",
                &[&recipient, &limit],
            )
            .await
            .map_err(|e| sql_error("reading a recipient's events", e))?;
        Ok(rows.iter().map(|row| from_sql_id(row.get(0))).collect())
    }
}

/// Writer tasks per node. Each writes one group at a time; several let one group's
/// transaction be built and sent while another commits. Duplicates across groups in
/// flight together are still caught: the second insert of a key waits for the first
/// transaction, then conflicts.
const WRITERS: usize = 4;

/// Starts the writer tasks of a store; they end when every sender is gone.
pub(super) fn start_writer(
    pool: deadpool_postgres::Pool,
    ids: std::sync::Arc<IdGenerator>,
    max_group: usize,
) -> mpsc::Sender<Job> {
    let (sender, receiver) = mpsc::channel::<Job>(QUEUE_DEPTH);
    let receiver = std::sync::Arc::new(tokio::sync::Mutex::new(receiver));
    for _ in 0..WRITERS {
        let (pool, ids, receiver) = (pool.clone(), ids.clone(), receiver.clone());
        tokio::spawn(async move {
            loop {
                let group = {
                    let mut receiver = receiver.lock().await;
                    let Some(first) = receiver.recv().await else {
                        return;
                    };
                    let mut group = vec![first];
                    while group.len() < max_group {
                        match receiver.try_recv() {
                            Ok(job) => group.push(job),
                            Err(_) => break,
                        }
                    }
                    group
                };
                write_and_answer(&pool, &ids, group).await;
            }
        });
    }
    sender
}

/// Writes one group and answers each of its requests.
async fn write_and_answer(pool: &deadpool_postgres::Pool, ids: &IdGenerator, group: Vec<Job>) {
    let (batches, replies): (Vec<IngestBatch>, Vec<_>) =
        group.into_iter().map(|job| (job.batch, job.reply)).unzip();
    match write_group(pool, ids, &batches).await {
        Ok(outcomes) => {
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(Ok(outcome));
            }
        }
        Err(error) => {
            let message = error.to_string();
            tracing::error!(error = %message, "PostgreSQL group commit failed");
            for reply in replies {
                let _ = reply.send(Err(StoreError::Commit(message.clone())));
            }
        }
    }
}

/// Rows to write in one transaction, one vector per column (each table is then one
/// multi-row `INSERT ... SELECT FROM unnest(...)`).
#[derive(Default)]
pub(super) struct Rows {
    ids: Vec<i64>,
    received_at: Vec<Timestamp>,
    occurred_at: Vec<Option<Timestamp>>,
    sources: Vec<String>,
    providers: Vec<String>,
    kinds: Vec<&'static str>,
    recipients: Vec<String>,
    domains: Vec<String>,
    body_ids: Vec<Option<i64>>,
    headers: Vec<Vec<u8>>,
    records: Vec<Vec<u8>>,
    pending_ids: Vec<i64>,
    pending_hashes: Vec<i32>,
    pub(super) stored_body_ids: Vec<i64>,
    pub(super) stored_bodies: Vec<Vec<u8>>,
    pub(super) quarantine_ids: Vec<i64>,
    pub(super) quarantine: Vec<Vec<u8>>,
}

impl Rows {
    /// Adds event `id` of a request whose encoded block header is `header_bytes`;
    /// `pending`: it still waits for the rules.
    pub(super) fn push_event(
        &mut self,
        id: EventId,
        header_bytes: &[u8],
        header: &BlockHeader<'_>,
        record_bytes: &[u8],
        pending: bool,
    ) -> Result<(), PgError> {
        let unreadable = |error: crate::store::codec::CodecError| PgError::Sql {
            context: format!("storing event {id}"),
            reason: error.to_string(),
        };
        let record = Record::decode(record_bytes).map_err(unreadable)?;
        let kind = record.kind().map_err(unreadable)?;
        let recipient = record.recipient().to_owned();
        self.ids.push(to_sql_id(id));
        self.received_at.push(
            Timestamp::new(header.received_at.0, header.received_at.1)
                .unwrap_or(Timestamp::UNIX_EPOCH),
        );
        self.occurred_at.push(record.occurred_at().ok().flatten());
        self.sources.push(header.source.to_string());
        self.providers.push(header.provider.to_string());
        self.kinds.push(kind.as_str());
        self.domains.push(domain_of(&recipient));
        self.body_ids
            .push((header.body != 0).then(|| to_sql_id(EventId(header.body))));
        self.headers.push(header_bytes.to_vec());
        self.records.push(record_bytes.to_vec());
        if pending {
            self.pending_ids.push(to_sql_id(id));
            self.pending_hashes.push(recipient_hash(&recipient));
        }
        self.recipients.push(recipient);
        Ok(())
    }

    /// Events added so far.
    pub(super) fn event_count(&self) -> usize {
        self.ids.len()
    }

    /// Writes the rows; rows already there (by id) are left as they are, so writing the
    /// same rows twice is harmless.
    pub(super) async fn write(
        &self,
        transaction: &tokio_postgres::Transaction<'_>,
    ) -> Result<(), PgError> {
        if !self.stored_bodies.is_empty() {
            transaction
                .execute(
                    "INSERT INTO mw_bodies (id, stored)
                     SELECT * FROM unnest($1::int8[], $2::bytea[]) ON CONFLICT (id) DO NOTHING",
                    &[&self.stored_body_ids, &self.stored_bodies],
                )
                .await
                .map_err(|e| sql_error("writing request bodies", e))?;
        }
        if !self.ids.is_empty() {
            transaction
                .execute(
                    "INSERT INTO mw_events (id, received_at, occurred_at, source, provider, kind,
                         recipient, recipient_domain, body_id, header, record)
                     SELECT * FROM unnest($1::int8[], $2::timestamptz[], $3::timestamptz[],
                         $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::int8[],
                         $10::bytea[], $11::bytea[])
                     ON CONFLICT (id) DO NOTHING",
                    &[
                        &self.ids,
                        &self.received_at,
                        &self.occurred_at,
                        &self.sources,
                        &self.providers,
                        &self.kinds,
                        &self.recipients,
                        &self.domains,
                        &self.body_ids,
                        &self.headers,
                        &self.records,
                    ],
                )
                .await
                .map_err(|e| sql_error("writing events", e))?;
        }
        if !self.pending_ids.is_empty() {
            transaction
                .execute(
                    "INSERT INTO mw_pending (event_id, recipient_hash)
                     SELECT * FROM unnest($1::int8[], $2::int4[]) ON CONFLICT (event_id) DO NOTHING",
                    &[&self.pending_ids, &self.pending_hashes],
                )
                .await
                .map_err(|e| sql_error("queueing events for the rules", e))?;
        }
        if !self.quarantine.is_empty() {
            transaction
                .execute(
                    "INSERT INTO mw_quarantine (id, entry)
                     SELECT * FROM unnest($1::int8[], $2::bytea[]) ON CONFLICT (id) DO NOTHING",
                    &[&self.quarantine_ids, &self.quarantine],
                )
                .await
                .map_err(|e| sql_error("writing quarantine entries", e))?;
        }
        Ok(())
    }
}

/// Inserts dedup keys (with their events' ids) unless present; returns the ones that
/// were new.
pub(super) async fn insert_keys(
    transaction: &tokio_postgres::Transaction<'_>,
    keys: &[Vec<u8>],
    ids: &[i64],
) -> Result<HashSet<Vec<u8>>, PgError> {
    let inserted = transaction
        .query(
            "INSERT INTO mw_event_keys (key, event_id)
             SELECT * FROM unnest($1::bytea[], $2::int8[])
             ON CONFLICT (key) DO NOTHING RETURNING key",
            &[&keys, &ids],
        )
        .await
        .map_err(|e| sql_error("writing dedup keys", e))?;
    Ok(inserted.iter().map(|row| row.get(0)).collect())
}

/// Writes a group of requests in one transaction; returns each request's outcome.
async fn write_group(
    pool: &deadpool_postgres::Pool,
    ids: &IdGenerator,
    batches: &[IngestBatch],
) -> Result<Vec<IngestOutcome>, PgError> {
    // Candidate ids, and duplicates within the group resolved to their first copy.
    let mut first_of: HashMap<[u8; 16], EventId> = HashMap::new();
    let mut candidate_keys: Vec<Vec<u8>> = Vec::new();
    let mut candidate_ids: Vec<i64> = Vec::new();
    for batch in batches {
        for event in &batch.events {
            first_of.entry(event.dedup).or_insert_with(|| {
                let id = ids.next();
                candidate_keys.push(event.dedup.to_vec());
                candidate_ids.push(to_sql_id(id));
                id
            });
        }
    }

    let mut client = pool.get().await.map_err(|error| PgError::Sql {
        context: "getting a connection for a commit".into(),
        reason: error.to_string(),
    })?;
    let transaction = client
        .transaction()
        .await
        .map_err(|e| sql_error("starting a commit", e))?;
    let new_keys = insert_keys(&transaction, &candidate_keys, &candidate_ids).await?;
    let stored_keys: Vec<&Vec<u8>> = candidate_keys
        .iter()
        .filter(|key| !new_keys.contains(*key))
        .collect();
    let mut existing: HashMap<Vec<u8>, EventId> = HashMap::new();
    if !stored_keys.is_empty() {
        let rows = transaction
            .query(
                "SELECT key, event_id FROM mw_event_keys WHERE key = ANY($1::bytea[])",
                &[&stored_keys],
            )
            .await
            .map_err(|e| sql_error("reading dedup keys", e))?;
        for row in rows {
            existing.insert(row.get(0), from_sql_id(row.get(1)));
        }
    }

    let mut outcomes = Vec::with_capacity(batches.len());
    let mut rows = Rows::default();
    let mut written: HashSet<[u8; 16]> = HashSet::new();
    for batch in batches {
        let mut outcome = IngestOutcome::default();
        if let Some((id, stored)) = &batch.body {
            rows.stored_body_ids.push(to_sql_id(*id));
            rows.stored_bodies.push(stored.clone());
        }
        let header: Option<BlockHeader<'_>> = postcard::from_bytes(&batch.block_header).ok();
        for event in &batch.events {
            let key = event.dedup.to_vec();
            let first = first_of[&event.dedup];
            if !new_keys.contains(&key) {
                let id = existing.get(&key).copied().unwrap_or(first);
                outcome.events.push(Stored::Duplicate(id));
                continue;
            }
            if !written.insert(event.dedup) {
                outcome.events.push(Stored::Duplicate(first));
                continue;
            }
            let header = header.as_ref().ok_or_else(|| PgError::Sql {
                context: "storing events".into(),
                reason: "a batch with events has no block header".into(),
            })?;
            rows.push_event(first, &batch.block_header, header, &event.record, true)?;
            outcome.events.push(Stored::New(first));
        }
        for entry in &batch.quarantine {
            let id = ids.next();
            rows.quarantine_ids.push(to_sql_id(id));
            rows.quarantine.push(entry.clone());
            outcome.quarantined.push(id);
        }
        outcomes.push(outcome);
    }
    rows.write(&transaction).await?;
    transaction
        .commit()
        .await
        .map_err(|e| sql_error("committing", e))?;
    Ok(outcomes)
}

/// An id as PostgreSQL's bigint (ids stay below 2^63 until the year 6429).
pub(super) fn to_sql_id(id: EventId) -> i64 {
    i64::try_from(id.0).unwrap_or(i64::MAX)
}

/// A bigint read back as an id.
pub(super) fn from_sql_id(id: i64) -> EventId {
    EventId(u64::try_from(id).unwrap_or(0))
}

/// The claim bucket of a recipient: the rules take each recipient's events in order by
/// claiming whole buckets.
fn recipient_hash(recipient: &str) -> i32 {
    let digest = Sha256::digest(recipient.as_bytes());
    i32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}
