//! Retention: what is purged when, in slices small enough that ingestion never waits long.
//!
//! - Events older than `retain_days` (by time of receipt, which their ids encode) go with
//!   their dedup keys, in slices of [`SLICE_BLOCKS`] blocks
//!   handed to the group-commit writer (which owns the event count), with a pause after
//!   each slice as long as the slice took. A block still waiting for the rules is never
//!   purged: the purge stops there and says so. Runs of the recipient index whose every
//!   block is gone are dropped next (merges drop the postings of purged events earlier).
//! - Evaluation records and the minute and hour stats buckets follow the events' cutoff;
//!   day buckets are kept (one small entry per source and day).
//! - Request bodies go once they are older, by an hour of margin, than every remaining
//!   event block and than the quarantine's cutoff: the events' raw JSON points into them.
//! - Quarantine entries after `quarantine_retain_days`; dead-lettered actions and alert
//!   records after `outbox_retain_days`. Pending actions and suppressions are never
//!   purged by age.
//!
//! A crash mid-purge is harmless: every slice is idempotent and the next purge carries on.

use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::commit::Removal;
use super::events::{Block, BodyCache, block_id, oldest_block};
use super::keys::{self, Resolution};
use super::{Store, StoreError};
use crate::event::EventId;

/// Event blocks (of up to 32 events) removed per slice.
pub const SLICE_BLOCKS: usize = 16;
/// Keys removed per slice from the other trees.
const SLICE_KEYS: usize = 1_000;
/// Margin between the oldest kept event block and the newest purged body.
const BODY_MARGIN: SignedDuration = SignedDuration::from_hours(1);

/// How long each kind of record is kept.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Events and what belongs to them.
    pub events: SignedDuration,
    /// Dead-lettered actions and alert records.
    pub outbox: SignedDuration,
    /// Quarantine entries.
    pub quarantine: SignedDuration,
}

/// What the last purge did; kept in the `meta` tree and shown by `GET /api/storage`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PurgeRecord {
    /// When it started.
    pub started_at: Option<Timestamp>,
    /// When it finished (absent while it runs).
    pub finished_at: Option<Timestamp>,
    /// Whether it is running now.
    pub running: bool,
    /// Events received before this were due.
    pub events_cutoff: Option<Timestamp>,
    /// Events removed.
    pub events_purged: u64,
    /// Request bodies removed.
    pub bodies_purged: u64,
    /// Evaluation records removed.
    pub evaluations_purged: u64,
    /// Stats buckets removed.
    pub stats_purged: u64,
    /// Quarantine entries removed.
    pub quarantine_purged: u64,
    /// Dead-lettered actions removed.
    pub dead_actions_purged: u64,
    /// Alert records removed.
    pub alerts_purged: u64,
    /// Set when expired events still wait for the rules, so were kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_back: Option<String>,
    /// Set when the purge failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What `GET /api/storage` reports.
#[derive(Debug, Clone, Serialize)]
pub struct StorageSummary {
    /// Bytes the data directory takes on disk (sled's estimate).
    pub size_on_disk_bytes: u64,
    /// Events stored.
    pub events: u64,
    /// Receipt time of the oldest stored event.
    pub oldest_event: Option<Timestamp>,
    /// Events waiting for the rules.
    pub pending_events: u64,
    /// Suppression entries (active or not).
    pub suppressions: usize,
    /// Runs the recipient index is written in (a few dozen at most; see `recipients`).
    pub recipient_index_runs: usize,
    /// The store's schema version.
    pub schema_version: u32,
    /// The last (or the running) purge.
    pub last_purge: Option<PurgeRecord>,
}

/// Why a purge ended early.
enum Stop {
    /// A backup began: nothing is purged while it reads the trees.
    Backup,
    /// The store failed.
    Failed(StoreError),
}

impl<E: Into<StoreError>> From<E> for Stop {
    fn from(error: E) -> Self {
        Stop::Failed(error.into())
    }
}

/// One slice of expired events.
struct EventSlice {
    events: u64,
    more: bool,
    held_back: Option<EventId>,
}

impl Store {
    /// Returns the sizes and dates `GET /api/storage` shows.
    pub fn storage_summary(&self) -> Result<StorageSummary, StoreError> {
        let t = self.trees();
        let oldest_event = oldest_block(&t.events)?.map(EventId::timestamp);
        Ok(StorageSummary {
            size_on_disk_bytes: self.size_on_disk()?,
            events: self.event_count()?,
            oldest_event,
            pending_events: self.pending_count(),
            suppressions: t.suppressions.len(),
            recipient_index_runs: self.recipients().run_count(),
            schema_version: keys::SCHEMA_VERSION,
            last_purge: self.last_purge()?,
        })
    }

    /// Returns the number of stored events.
    pub fn event_count(&self) -> Result<u64, StoreError> {
        let value = self.trees().meta.get(keys::META_EVENT_COUNT)?;
        Ok(keys::decode_count(value.as_deref()))
    }

    /// Returns the record of the last purge.
    pub fn last_purge(&self) -> Result<Option<PurgeRecord>, StoreError> {
        let Some(value) = self.trees().meta.get(keys::META_LAST_PURGE)? else {
            return Ok(None);
        };
        serde_json::from_slice(&value)
            .map(Some)
            .map_err(|error| StoreError::Corrupt {
                tree: keys::META,
                reason: format!("last purge: {error}"),
            })
    }

    fn save_purge(&self, record: &PurgeRecord) -> Result<(), StoreError> {
        let json = serde_json::to_vec(record).expect("purge record serializes");
        self.trees().meta.insert(keys::META_LAST_PURGE, json)?;
        Ok(())
    }

    /// Purges everything `retention` says is expired at `now`, slice by slice, pausing
    /// after each slice for as long as it took (so at most half of one core goes to
    /// purging, in steps of a few milliseconds). `pause` waits that long and returns
    /// whether to stop.
    pub fn purge(
        &self,
        retention: &Retention,
        now: Timestamp,
        pause: &dyn Fn(Duration) -> bool,
    ) -> PurgeRecord {
        let mut record = PurgeRecord {
            started_at: Some(now),
            running: true,
            events_cutoff: Some(now - retention.events),
            ..PurgeRecord::default()
        };
        if let Err(error) = self.save_purge(&record) {
            tracing::warn!(%error, "cannot record the purge start");
        }
        match self.purge_all(retention, now, pause, &mut record) {
            Ok(()) => {}
            Err(Stop::Backup) => {
                tracing::info!("purge paused for a backup; the next one carries on");
                record.held_back = Some("a backup began; the next purge carries on".into());
            }
            Err(Stop::Failed(error)) => {
                tracing::error!(%error, "purge failed; the next one carries on");
                record.error = Some(error.to_string());
            }
        }
        record.running = false;
        record.finished_at = Some(Timestamp::now());
        if let Err(error) = self.save_purge(&record) {
            tracing::warn!(%error, "cannot record the purge");
        }
        record
    }

    fn purge_all(
        &self,
        retention: &Retention,
        now: Timestamp,
        pause: &dyn Fn(Duration) -> bool,
        record: &mut PurgeRecord,
    ) -> Result<(), Stop> {
        let t = self.trees();
        let events_cutoff = EventId::floor_at(now - retention.events);
        let paced = |work: &mut dyn FnMut() -> Result<bool, StoreError>| -> Result<(), Stop> {
            loop {
                let started = Instant::now();
                let more = {
                    let _slice = self.try_purge_slice().ok_or(Stop::Backup)?;
                    work()?
                };
                if !more || pause(started.elapsed().max(Duration::from_millis(1))) {
                    return Ok(());
                }
            }
        };
        paced(&mut || {
            let slice = self.purge_event_slice(events_cutoff)?;
            record.events_purged += slice.events;
            if let Some(block) = slice.held_back {
                record.held_back = Some(format!(
                    "events from {} on still wait for the rules and were kept",
                    block.timestamp()
                ));
            }
            Ok(slice.more)
        })?;
        // Nothing below adds or removes events: this stays the oldest block.
        let oldest_block = oldest_block(&t.events)?.unwrap_or(EventId(u64::MAX));
        self.recipients().drop_expired(oldest_block)?;
        paced(&mut || {
            let (removed, more) = purge_range(&t.evaluations, events_cutoff)?;
            record.evaluations_purged += removed;
            Ok(more)
        })?;
        let cutoff_minute = events_cutoff.timestamp().as_second().max(0) as u64 / 60;
        // Minute and hour buckets and the per-domain day counters go with the events;
        // day buckets per source stay (a few bytes a day) for long-range charts.
        let day = Resolution::Day.bucket(cutoff_minute);
        let expired = [
            (
                keys::stats_prefix(Resolution::Minute, 0),
                keys::stats_prefix(Resolution::Minute, cutoff_minute),
            ),
            (
                keys::stats_prefix(Resolution::Hour, 0),
                keys::stats_prefix(Resolution::Hour, Resolution::Hour.bucket(cutoff_minute)),
            ),
            (keys::domain_day_prefix(0), keys::domain_day_prefix(day)),
        ];
        for (start, end) in &expired {
            paced(&mut || {
                let removed = purge_keys(&t.stats, start, end)?;
                record.stats_purged += removed;
                Ok(removed as usize >= SLICE_KEYS)
            })?;
        }
        let quarantine_cutoff = EventId::floor_at(now - retention.quarantine);
        paced(&mut || {
            let (removed, more) = purge_range(&t.quarantine, quarantine_cutoff)?;
            record.quarantine_purged += removed;
            Ok(more)
        })?;
        let bodies_cutoff = EventId::floor_at(
            oldest_block
                .min(events_cutoff)
                .min(quarantine_cutoff)
                .timestamp()
                - BODY_MARGIN,
        );
        paced(&mut || {
            let (removed, more) = purge_range(&t.bodies, bodies_cutoff)?;
            record.bodies_purged += removed;
            Ok(more)
        })?;
        let outbox_cutoff = EventId::floor_at(now - retention.outbox);
        paced(&mut || {
            let (removed, more) = purge_range(&t.outbox_dead, outbox_cutoff)?;
            record.dead_actions_purged += removed;
            Ok(more)
        })?;
        paced(&mut || {
            let (removed, more) = purge_range(&t.alerts, outbox_cutoff)?;
            record.alerts_purged += removed;
            Ok(more)
        })?;
        Ok(())
    }

    /// Removes up to [`SLICE_BLOCKS`] expired event blocks with their index entries.
    fn purge_event_slice(&self, cutoff: EventId) -> Result<EventSlice, StoreError> {
        let t = self.trees();
        let mut removal = Removal::default();
        let mut held_back = None;
        let mut more = false;
        let mut bodies = BodyCache::new(self);
        for entry in t.events.range(..cutoff.to_be_bytes()) {
            let (key, value) = entry?;
            if removal.blocks.len() >= SLICE_BLOCKS {
                more = true;
                break;
            }
            let base = block_id(&key)?;
            if t.pending.contains_key(&key)? {
                held_back = Some(base);
                break;
            }
            let block = Block::parse(&value)?;
            for (index, entry) in block.entries().enumerate() {
                let id = EventId(base.0 + index as u64);
                let summary = block.summary(entry)?;
                let dedup = match summary.dedup {
                    Some(dedup) => dedup,
                    // Schema-1 blocks left by an interrupted migration hold no key.
                    None => crate::ingest::dedup_key(&block.decode(id, entry, &mut bodies)?),
                };
                removal.dedup.push(dedup);
            }
            removal.events += block.len() as u64;
            removal.blocks.push(base);
        }
        let events = removal.events;
        if !removal.blocks.is_empty() {
            self.inner.writer.purge(removal)?;
        }
        Ok(EventSlice {
            events,
            more,
            held_back,
        })
    }
}

/// Removes up to [`SLICE_KEYS`] keys of `tree` below `cutoff` (id-keyed trees); returns
/// how many, and whether more remain.
fn purge_range(tree: &sled::Tree, cutoff: EventId) -> Result<(u64, bool), StoreError> {
    let mut batch = sled::Batch::default();
    let mut removed = 0;
    let mut more = false;
    for key in tree.range(..cutoff.to_be_bytes()).keys() {
        let key = key?;
        if removed as usize >= SLICE_KEYS {
            more = true;
            break;
        }
        batch.remove(key);
        removed += 1;
    }
    tree.apply_batch(batch)?;
    Ok((removed, more))
}

/// Removes up to [`SLICE_KEYS`] keys of `tree` in `start..end` (stats buckets and
/// counters that start before the cutoff).
fn purge_keys(tree: &sled::Tree, start: &[u8], end: &[u8]) -> Result<u64, StoreError> {
    let mut batch = sled::Batch::default();
    let mut removed = 0;
    for key in tree.range(start..end).keys().take(SLICE_KEYS) {
        batch.remove(key?);
        removed += 1;
    }
    tree.apply_batch(batch)?;
    Ok(removed)
}

/// The background purge: runs at start, then every interval, on its own thread.
pub struct Purger {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Purger {
    /// Starts purging `store` by `retention` every `interval`.
    pub fn start(
        store: Store,
        retention: Retention,
        interval: Duration,
    ) -> std::io::Result<Purger> {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("mailwarden-purge".into())
            .spawn(move || {
                // Waits, and says whether the purge was told to stop (or its owner is gone).
                let pause = |wait: Duration| {
                    !matches!(
                        stopped.recv_timeout(wait),
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout)
                    )
                };
                loop {
                    let record = store.purge(&retention, Timestamp::now(), &pause);
                    let removed = record.events_purged
                        + record.bodies_purged
                        + record.quarantine_purged
                        + record.dead_actions_purged
                        + record.alerts_purged;
                    if removed > 0 || record.held_back.is_some() {
                        tracing::info!(
                            events = record.events_purged,
                            bodies = record.bodies_purged,
                            quarantine = record.quarantine_purged,
                            dead_actions = record.dead_actions_purged,
                            alerts = record.alerts_purged,
                            held_back = record.held_back.as_deref().unwrap_or(""),
                            "purge finished"
                        );
                    }
                    if pause(interval) {
                        break;
                    }
                }
            })?;
        Ok(Purger {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Stops the purge (between two slices) and waits for its thread.
    pub fn stop(&mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("purge thread panicked");
            }
        }
    }
}

impl Drop for Purger {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;

    #[test]
    fn counters_older_than_the_retention_go_and_day_buckets_stay() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db"), &StoreOptions::default()).unwrap();
        let now: Timestamp = "2026-12-03T12:00:00Z".parse().unwrap();
        let minute = |at: Timestamp| at.as_second() as u64 / 60;
        let old = minute(now) - 40 * 24 * 60;
        let recent = minute(now) - 60;
        let stats = &store.trees().stats;
        let day = |m| Resolution::Day.bucket(m);
        for m in [old, recent] {
            let counts = keys::encode_counts(&[1]);
            stats
                .insert(
                    keys::stats_key(Resolution::Hour, Resolution::Hour.bucket(m), "s"),
                    counts.clone(),
                )
                .unwrap();
            stats
                .insert(
                    keys::stats_key(Resolution::Day, day(m), "s"),
                    counts.clone(),
                )
                .unwrap();
            stats
                .insert(keys::domain_day_key(day(m), "example.com"), counts)
                .unwrap();
        }
        let retention = Retention {
            events: SignedDuration::from_hours(30 * 24),
            outbox: SignedDuration::from_hours(30 * 24),
            quarantine: SignedDuration::from_hours(30 * 24),
        };
        let record = store.purge(&retention, now, &|_| false);
        assert_eq!(record.stats_purged, 2, "{record:?}");
        let left: Vec<_> = stats.iter().keys().map(|k| k.unwrap().to_vec()).collect();
        assert!(left.contains(&keys::domain_day_key(day(recent), "example.com")));
        assert!(!left.contains(&keys::domain_day_key(day(old), "example.com")));
        assert!(left.contains(&keys::stats_key(Resolution::Day, day(old), "s")));
        assert!(!left.contains(&keys::stats_key(
            Resolution::Hour,
            Resolution::Hour.bucket(old),
            "s"
        )));
    }
}
