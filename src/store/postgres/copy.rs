//! Copying an embedded store into PostgreSQL (`mailwarden migrate-store`).
//!
//! Each part (request bodies, events with their dedup keys and rule queue, suppressions
//! with their history, quarantine) is read in key order and written in chunks, one
//! transaction per chunk, which also records in `mw_copy_progress` the last key copied.
//! An interrupted copy therefore resumes after its last committed chunk, and since every
//! row is written with `ON CONFLICT DO NOTHING`, copying a chunk twice changes nothing.
//! Ids are kept, so an event's id (and every link to it) is the same in both stores.
//!
//! Not copied yet, because the PostgreSQL schema has no place for them so far: the
//! outbox, alert records and throttles, rule evaluation records and per-source stats.

use jiff::Timestamp;

use super::events::{Rows, insert_keys, to_sql_id};
use super::{PgStore, sql_error};
use crate::event::EventId;
use crate::store::codec::RecordHead;
use crate::store::events::Block;
use crate::store::suppressions::{Suppression, domain_of};
use crate::store::{Store, StoreError, keys};

/// Entries of the embedded store read per transaction, by part.
const BODIES_PER_CHUNK: usize = 256;
const BLOCKS_PER_CHUNK: usize = 256;
const ENTRIES_PER_CHUNK: usize = 2_048;

/// The parts a copy goes through, in order.
pub const PARTS: [&str; 4] = ["bodies", "events", "suppressions", "quarantine"];

/// How many records of one part each store holds once the copy is done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartCount {
    /// Which part.
    pub part: &'static str,
    /// Records in the embedded store.
    pub embedded: u64,
    /// Rows in PostgreSQL.
    pub postgres: u64,
}

/// Progress of a copy, for a progress bar: the part, and records copied of it so far.
pub type Progress<'a> = &'a (dyn Fn(&'static str, u64) + Sync);

impl PgStore {
    /// Copies `store` into this database (migrated first), resuming an interrupted copy;
    /// returns the counts of both stores per part. The embedded store must not be
    /// written meanwhile (the service stopped).
    pub async fn copy_from(
        &self,
        store: &Store,
        progress: Progress<'_>,
    ) -> Result<Vec<PartCount>, StoreError> {
        self.migrate().await?;
        self.partitions_for(store).await?;
        for part in PARTS {
            self.copy_part(store, part, progress).await?;
        }
        self.advance_ids().await?;
        self.counts(store).await
    }

    /// Creates the day partitions the embedded store's events fall in.
    async fn partitions_for(&self, store: &Store) -> Result<(), StoreError> {
        let events = &store.trees().events;
        let (Some(first), Some(last)) = (events.first()?, events.last()?) else {
            return Ok(());
        };
        let day = |key: &[u8]| -> Option<jiff::civil::Date> {
            let id = EventId(u64::from_be_bytes(key.try_into().ok()?));
            Some(id.timestamp().to_zoned(jiff::tz::TimeZone::UTC).date())
        };
        let (Some(first), Some(last)) = (day(&first.0), day(&last.0)) else {
            return Ok(());
        };
        let days = (last - first).get_days().saturating_add(2);
        let client = self.client().await?;
        client
            .query_one(
                "SELECT mw_ensure_event_partitions($1::text::date, $2)",
                &[&first.to_string(), &days],
            )
            .await
            .map_err(|e| sql_error("creating event partitions for the copy", e))?;
        Ok(())
    }

    /// Copies one part, chunk by chunk, from where an earlier copy stopped.
    async fn copy_part(
        &self,
        store: &Store,
        part: &'static str,
        progress: Progress<'_>,
    ) -> Result<(), StoreError> {
        let trees = store.trees();
        let (tree, per_chunk) = match part {
            "bodies" => (&trees.bodies, BODIES_PER_CHUNK),
            "events" => (&trees.events, BLOCKS_PER_CHUNK),
            "suppressions" => (&trees.suppressions, ENTRIES_PER_CHUNK),
            _ => (&trees.quarantine, ENTRIES_PER_CHUNK),
        };
        let mut client = self.client().await?;
        let resumed = client
            .query_opt(
                "SELECT last_key, copied FROM mw_copy_progress WHERE part = $1",
                &[&part],
            )
            .await
            .map_err(|e| sql_error("reading the copy's progress", e))?;
        let (mut after, mut copied): (Option<Vec<u8>>, i64) = match resumed {
            Some(row) => (Some(row.get(0)), row.get(1)),
            None => (None, 0),
        };
        progress(part, u64::try_from(copied).unwrap_or(0));
        loop {
            let range = match &after {
                Some(key) => tree.range::<&[u8], _>((
                    std::ops::Bound::Excluded(key.as_slice()),
                    std::ops::Bound::Unbounded,
                )),
                None => tree.range::<&[u8], _>(..),
            };
            let chunk: Vec<(sled::IVec, sled::IVec)> =
                range.take(per_chunk).collect::<Result<_, _>>()?;
            let Some((last_key, _)) = chunk.last() else {
                return Ok(());
            };
            let last_key = last_key.to_vec();
            let transaction = client
                .transaction()
                .await
                .map_err(|e| sql_error("starting a copy chunk", e))?;
            let records = match part {
                "bodies" => copy_bodies(&transaction, &chunk).await?,
                "events" => copy_events(store, &transaction, &chunk).await?,
                "suppressions" => copy_suppressions(&transaction, &chunk).await?,
                _ => copy_quarantine(&transaction, &chunk).await?,
            };
            copied += i64::try_from(records).unwrap_or(i64::MAX);
            transaction
                .execute(
                    "INSERT INTO mw_copy_progress (part, last_key, copied) VALUES ($1, $2, $3)
                     ON CONFLICT (part) DO UPDATE SET last_key = $2, copied = $3",
                    &[&part, &last_key, &copied],
                )
                .await
                .map_err(|e| sql_error("recording the copy's progress", e))?;
            transaction
                .commit()
                .await
                .map_err(|e| sql_error("committing a copy chunk", e))?;
            progress(part, u64::try_from(copied).unwrap_or(0));
            after = Some(last_key);
        }
    }

    /// Records per part in both stores.
    async fn counts(&self, store: &Store) -> Result<Vec<PartCount>, StoreError> {
        let embedded = store.copy_sizes()?;
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT (SELECT count(*) FROM mw_bodies), (SELECT count(*) FROM mw_events),
                        (SELECT count(*) FROM mw_suppressions), (SELECT count(*) FROM mw_quarantine)",
                &[],
            )
            .await
            .map_err(|e| sql_error("counting the copied rows", e))?;
        Ok(PARTS
            .iter()
            .zip(embedded)
            .enumerate()
            .map(|(index, (part, embedded))| PartCount {
                part,
                embedded,
                postgres: u64::try_from(row.get::<_, i64>(index)).unwrap_or(0),
            })
            .collect())
    }
}

impl Store {
    /// Records per part of [`PARTS`], as a copy counts them.
    pub fn copy_sizes(&self) -> Result<[u64; 4], StoreError> {
        let trees = self.trees();
        Ok([
            trees.bodies.len() as u64,
            self.event_count()?,
            trees.suppressions.len() as u64,
            trees.quarantine.len() as u64,
        ])
    }
}

/// The id a big-endian key names.
fn key_id(key: &[u8]) -> Result<EventId, StoreError> {
    key.try_into()
        .map(|bytes| EventId(u64::from_be_bytes(bytes)))
        .map_err(|_| StoreError::Corrupt {
            tree: keys::EVENTS,
            reason: format!("a key of {} bytes is not an id", key.len()),
        })
}

async fn copy_bodies(
    transaction: &tokio_postgres::Transaction<'_>,
    chunk: &[(sled::IVec, sled::IVec)],
) -> Result<usize, StoreError> {
    let mut rows = Rows::default();
    for (key, value) in chunk {
        rows.stored_body_ids.push(to_sql_id(key_id(key)?));
        rows.stored_bodies.push(value.to_vec());
    }
    rows.write(transaction).await?;
    Ok(chunk.len())
}

async fn copy_events(
    store: &Store,
    transaction: &tokio_postgres::Transaction<'_>,
    chunk: &[(sled::IVec, sled::IVec)],
) -> Result<usize, StoreError> {
    let mut rows = Rows::default();
    let (mut dedup_keys, mut dedup_ids) = (Vec::new(), Vec::new());
    let pending = &store.trees().pending;
    for (key, value) in chunk {
        let first = key_id(key)?;
        let block = Block::parse(value)?;
        let header = block.header().ok_or_else(|| StoreError::Corrupt {
            tree: keys::EVENTS,
            reason: format!("block {first} has the schema-1 encoding; open the store once with this build to upgrade it"),
        })?;
        let header_bytes = header.encode();
        let waiting = pending.contains_key(key)?;
        for (index, entry) in block.entries().enumerate() {
            let id = EventId(first.0 + index as u64);
            let head = RecordHead::decode(entry).map_err(|error| StoreError::Corrupt {
                tree: keys::EVENTS,
                reason: format!("{id}: {error}"),
            })?;
            dedup_keys.push(head.dedup.to_vec());
            dedup_ids.push(to_sql_id(id));
            rows.push_event(id, &header_bytes, header, entry, waiting)?;
        }
    }
    insert_keys(transaction, &dedup_keys, &dedup_ids).await?;
    rows.write(transaction).await?;
    Ok(rows.event_count())
}

async fn copy_suppressions(
    transaction: &tokio_postgres::Transaction<'_>,
    chunk: &[(sled::IVec, sled::IVec)],
) -> Result<usize, StoreError> {
    let mut addresses = Vec::with_capacity(chunk.len());
    let mut domains = Vec::with_capacity(chunk.len());
    let mut reasons = Vec::with_capacity(chunk.len());
    let mut rules = Vec::with_capacity(chunk.len());
    let mut active = Vec::with_capacity(chunk.len());
    let mut created: Vec<Timestamp> = Vec::with_capacity(chunk.len());
    let mut expires: Vec<Option<Timestamp>> = Vec::with_capacity(chunk.len());
    let mut records = Vec::with_capacity(chunk.len());
    for (key, value) in chunk {
        let entry: Suppression =
            serde_json::from_slice(value).map_err(|error| StoreError::Corrupt {
                tree: keys::SUPPRESSIONS,
                reason: format!("{}: {error}", String::from_utf8_lossy(key)),
            })?;
        domains.push(domain_of(&entry.address));
        reasons.push(entry.reason.clone());
        rules.push(entry.rule.clone());
        active.push(entry.active);
        created.push(entry.created_at);
        expires.push(entry.expires_at);
        records.push(serde_json::to_value(&entry).expect("suppression serializes"));
        addresses.push(entry.address);
    }
    transaction
        .execute(
            "INSERT INTO mw_suppressions
                 (address, domain, reason, created_at, expires_at, record, rule, active)
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[],
                 $5::timestamptz[], $6::jsonb[], $7::text[], $8::bool[])
             ON CONFLICT (address) DO NOTHING",
            &[
                &addresses, &domains, &reasons, &created, &expires, &records, &rules, &active,
            ],
        )
        .await
        .map_err(|e| sql_error("copying suppressions", e))?;
    Ok(chunk.len())
}

async fn copy_quarantine(
    transaction: &tokio_postgres::Transaction<'_>,
    chunk: &[(sled::IVec, sled::IVec)],
) -> Result<usize, StoreError> {
    let mut rows = Rows::default();
    for (key, value) in chunk {
        rows.quarantine_ids.push(to_sql_id(key_id(key)?));
        rows.quarantine.push(value.to_vec());
    }
    rows.write(transaction).await?;
    Ok(chunk.len())
}
