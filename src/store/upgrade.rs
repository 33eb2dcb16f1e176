//! Store format versions: what `Store::open` does with a data directory written by
//! another build.
//!
//! The `meta` tree records the schema version ([`keys::SCHEMA_VERSION`]). Opening
//! - a new directory records this build's version;
//! - a directory of this version opens as is;
//! - a directory of an older version is first copied next to itself
//!   (`<dir>.schema<N>-backup-<time>`), then migrated in place, then marked with the new
//!   version: a crash during the migration leaves the old version recorded, and the next
//!   start redoes it (each step can run twice);
//! - a directory of a newer version is refused with a message naming both versions, so
//!   that a downgrade never reads a format it does not know.
//!
//! Migrations:
//! - 1 → 2: event blocks re-encoded from JSON to `codec`'s records (their raw JSON inline,
//!   as schema 1 kept no reference into the body), each with its dedup key; the event
//!   count recorded.
//! - 2 → 3: dedup keys begin with the event's second instead of its day (the records'
//!   copies rewritten, the dedup tree built again); the recipient index of one key per
//!   event (`by_recipient`) replaced by runs (`recipients`), built from the events.

use std::path::{Path, PathBuf};

use super::codec::{self, BlockHeader, Record};
use super::events::Block;
use super::{StoreError, keys};
use crate::event::EventId;

/// Blocks re-encoded per sled batch during a migration.
const MIGRATION_BATCH: usize = 256;

/// Reads the recorded schema version; `None` for a new store.
pub(crate) fn recorded_version(meta: &sled::Tree) -> Result<Option<u32>, StoreError> {
    let Some(value) = meta.get(keys::META_SCHEMA_VERSION)? else {
        return Ok(None);
    };
    std::str::from_utf8(&value)
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .map(Some)
        .ok_or_else(|| StoreError::Corrupt {
            tree: keys::META,
            reason: "schema version is not a number".into(),
        })
}

/// Records `version` as the store's schema version.
pub(crate) fn record_version(meta: &sled::Tree, version: u32) -> Result<(), StoreError> {
    meta.insert(keys::META_SCHEMA_VERSION, version.to_string().as_bytes())?;
    Ok(())
}

/// What opening a store of `found` needs.
pub(crate) enum Plan {
    /// Nothing: new or current.
    Current,
    /// Back up, then migrate from this version.
    Migrate(u32),
}

/// Decides what to do with a store that records `found`.
pub(crate) fn plan(path: &Path, found: Option<u32>) -> Result<Plan, StoreError> {
    match found {
        None => Ok(Plan::Current),
        Some(version) if version == keys::SCHEMA_VERSION => Ok(Plan::Current),
        Some(version) if version > keys::SCHEMA_VERSION => Err(StoreError::NewerSchema {
            path: path.to_owned(),
            found: version,
            supported: keys::SCHEMA_VERSION,
        }),
        Some(version) => Ok(Plan::Migrate(version)),
    }
}

/// Copies the (closed) store directory next to itself and returns the copy's path.
pub(crate) fn back_up(path: &Path, version: u32) -> Result<PathBuf, StoreError> {
    let stamp = jiff::Timestamp::now()
        .strftime("%Y%m%dT%H%M%SZ")
        .to_string();
    let name = path
        .file_name()
        .map_or_else(|| "db".into(), |name| name.to_string_lossy().into_owned());
    let target = path.with_file_name(format!("{name}.schema{version}-backup-{stamp}"));
    copy_dir(path, &target).map_err(|error| {
        StoreError::Upgrade(format!(
            "could not back up {} to {} before migrating: {error}",
            path.display(),
            target.display()
        ))
    })?;
    Ok(target)
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    // The copy is only a backup once it is on disk.
    std::fs::File::open(to)?.sync_all()
}

/// Migrates an open database from `version` to the current schema, step by step.
pub(crate) fn migrate(db: &sled::Db, version: u32) -> Result<(), StoreError> {
    let meta = db.open_tree(keys::META)?;
    let mut version = version;
    while version < keys::SCHEMA_VERSION {
        match version {
            1 => schema_1_to_2(db)?,
            2 => schema_2_to_3(db)?,
            other => {
                return Err(StoreError::Upgrade(format!(
                    "no migration from schema {other}"
                )));
            }
        }
        version += 1;
        db.flush()?;
        record_version(&meta, version)?;
        db.flush()?;
        tracing::info!(version, "store migrated");
    }
    Ok(())
}

/// Re-encodes schema-1 blocks and records the event count.
fn schema_1_to_2(db: &sled::Db) -> Result<(), StoreError> {
    let events = db.open_tree(keys::EVENTS)?;
    let mut count: u64 = 0;
    let mut rewritten: u64 = 0;
    let mut batch = sled::Batch::default();
    let mut in_batch = 0;
    for entry in events.iter() {
        let (key, value) = entry?;
        let block = Block::parse(&value)?;
        count += block.len() as u64;
        if !block.is_schema_1() {
            continue;
        }
        let base = EventId::from_be_slice(&key).ok_or_else(|| StoreError::Corrupt {
            tree: keys::EVENTS,
            reason: "key is not an event id".into(),
        })?;
        if let Some(encoded) = reencode(base, &block)? {
            batch.insert(key, encoded);
            in_batch += 1;
            rewritten += 1;
        }
        if in_batch >= MIGRATION_BATCH {
            events.apply_batch(std::mem::take(&mut batch))?;
            in_batch = 0;
            tracing::info!(blocks = rewritten, "migrating event blocks");
        }
    }
    events.apply_batch(batch)?;
    let meta = db.open_tree(keys::META)?;
    meta.insert(keys::META_EVENT_COUNT, &count.to_be_bytes())?;
    tracing::info!(
        blocks = rewritten,
        events = count,
        "event blocks re-encoded"
    );
    Ok(())
}

/// Gives dedup keys their schema-3 form (in the records and the dedup tree) and builds the
/// recipient index in runs.
fn schema_2_to_3(db: &sled::Db) -> Result<(), StoreError> {
    let events = db.open_tree(keys::EVENTS)?;
    let dedup = db.open_tree(keys::DEDUP)?;
    // Rebuilt whole from the records: the old keys cannot be mapped to the new ones
    // without their event's time.
    dedup.clear()?;
    let mut events_batch = sled::Batch::default();
    let mut dedup_batch = sled::Batch::default();
    let mut in_batch = 0;
    let mut rewritten: u64 = 0;
    let mut bodies = super::events::BodyCache::detached();
    for entry in events.iter() {
        let (key, value) = entry?;
        let base = super::events::block_id(&key)?;
        let block = Block::parse(&value)?;
        let mut records = Vec::with_capacity(block.len());
        for (index, entry) in block.entries().enumerate() {
            let id = EventId(base.0 + index as u64);
            let new_key = match block.header() {
                Some(_) => {
                    let mut record =
                        Record::decode(entry).map_err(|error| StoreError::Corrupt {
                            tree: keys::EVENTS,
                            reason: format!("{id}: {error}"),
                        })?;
                    let time = record.occurred_at().map_err(|error| StoreError::Corrupt {
                        tree: keys::EVENTS,
                        reason: format!("{id}: {error}"),
                    })?;
                    record.dedup[..4].copy_from_slice(&crate::ingest::dedup::time_prefix(time));
                    records.push(record.encode());
                    record.dedup
                }
                // Schema-1 blocks kept as they were hold no key: computed afresh.
                None => crate::ingest::dedup_key(&block.decode(id, entry, &mut bodies)?),
            };
            dedup_batch.insert(&new_key, &id.to_be_bytes());
        }
        if let Some(header) = block.header() {
            events_batch.insert(
                key,
                codec::encode_block(&header.encode(), records.iter().map(Vec::as_slice)),
            );
            rewritten += 1;
        }
        in_batch += 1;
        if in_batch >= MIGRATION_BATCH {
            events.apply_batch(std::mem::take(&mut events_batch))?;
            dedup.apply_batch(std::mem::take(&mut dedup_batch))?;
            in_batch = 0;
            tracing::info!(blocks = rewritten, "migrating dedup keys");
        }
    }
    events.apply_batch(events_batch)?;
    dedup.apply_batch(dedup_batch)?;
    db.drop_tree(keys::BY_RECIPIENT_V2)?;
    super::recipients::rebuild(db)?;
    tracing::info!(
        blocks = rewritten,
        "dedup keys and recipient index migrated"
    );
    Ok(())
}

/// Returns the schema-2 form of a schema-1 block, or `None` when its events do not share
/// one source, provider and receipt time (never written so; such a block stays as it is,
/// still readable).
fn reencode(base: EventId, block: &Block<'_>) -> Result<Option<Vec<u8>>, StoreError> {
    let mut decoded = Vec::with_capacity(block.len());
    let mut no_bodies = super::events::BodyCache::detached();
    for (index, entry) in block.entries().enumerate() {
        decoded.push(block.decode(EventId(base.0 + index as u64), entry, &mut no_bodies)?);
    }
    let Some(first) = decoded.first() else {
        return Ok(None);
    };
    if decoded.iter().any(|event| {
        event.source != first.source
            || event.provider != first.provider
            || event.received_at != first.received_at
    }) {
        tracing::warn!(block = %base, "schema-1 block of mixed requests kept as it is");
        return Ok(None);
    }
    let header = BlockHeader::new(
        EventId(0),
        &first.source,
        &first.provider,
        first.received_at,
    );
    let records: Vec<Vec<u8>> = decoded
        .iter()
        .map(|event| Record::of_inline(event, crate::ingest::dedup_key(event)).encode())
        .collect();
    Ok(Some(codec::encode_block(
        &header.encode(),
        records.iter().map(Vec::as_slice),
    )))
}
