//! The recipient index: every event of one address, newest first, for the events API,
//! the recipient's history and the rules' `count_events`.
//!
//! One sled key per event would make each batch of 500 events touch 500 leaves spread
//! over the whole tree (keys that begin with the recipient scatter), and sled copies every
//! node it touches. So the index is written in sorted **runs** instead, the way an LSM
//! tree is:
//! - New events collect in memory (the *tail*, at most about [`RUN_EVENTS`] of them,
//!   grouped by recipient). Queries read the tail together with the runs.
//! - A full tail is written as one run: one key per recipient (chunks of at most
//!   [`CHUNK_POSTINGS`] postings), all under the run's sequence number, which is larger
//!   than any before it. So a run's keys are appended at the end of the tree in order and
//!   touch only the leaves they fill.
//! - [`FANOUT`] runs of one level are merged into one run of the next level, so a query
//!   reads a few dozen runs at most (one range scan each), and each recipient's postings
//!   of a merged run sit together. A merge drops postings of purged events.
//! - The tail is not written to disk: after a restart the rules runner indexes again the
//!   blocks after the newest run, exactly as it indexes new blocks.
//!
//! Keys of the `recipients` tree:
//!
//! | key | value |
//! |---|---|
//! | 8 zero bytes, run sequence (u64) | run catalog entry: state, level, first and last block (see [`Run`]) |
//! | run sequence (u64, from 1), recipient, `0x00`, first event id of the chunk (u64) | postings: postcard `Vec<(u64, u8)>` of (id delta, kind code), oldest first |
//!
//! A run is *building* while a merge writes it, *live* once queries read it and
//! *dropping* while its keys are deleted after a merge or a purge; opening the store
//! finishes what a crash left in the first and last state.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::{Mutex, RwLock};

use super::StoreError;
use super::events::Block;
use crate::event::{EventId, EventKind};

/// Events the tail holds before it is written as a run.
pub const RUN_EVENTS: usize = 8_192;
/// Runs of one level merged into one of the next.
pub const FANOUT: usize = 8;
/// Most postings under one key.
pub const CHUNK_POSTINGS: usize = 1_024;
/// Keys written per sled batch while a merge builds a run.
const MERGE_BATCH: usize = 4_096;
/// First bytes of every catalog key.
const CATALOG: [u8; 8] = [0; 8];
/// Separator between the recipient and the chunk id. Addresses never contain it
/// (control characters are refused by `EmailAddress::parse`).
const SEPARATOR: u8 = 0;

/// One event in the index: its id and kind code.
type Posting = (u64, u8);

/// State of a run in the catalog.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum RunState {
    Building = 0,
    Live = 1,
    Dropping = 2,
}

/// One run: which blocks it covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Run {
    seq: u64,
    state: RunState,
    level: u8,
    /// First id of its oldest block.
    first: u64,
    /// First id of its newest block.
    last: u64,
}

impl Run {
    fn catalog_key(seq: u64) -> [u8; 16] {
        let mut key = [0; 16];
        key[8..].copy_from_slice(&seq.to_be_bytes());
        key
    }

    fn encode(&self) -> [u8; 18] {
        let mut value = [0; 18];
        value[0] = self.state as u8;
        value[1] = self.level;
        value[2..10].copy_from_slice(&self.first.to_be_bytes());
        value[10..].copy_from_slice(&self.last.to_be_bytes());
        value
    }

    fn decode(key: &[u8], value: &[u8]) -> Result<Run, StoreError> {
        let malformed = || StoreError::Corrupt {
            tree: super::keys::RECIPIENTS,
            reason: "malformed run catalog entry".into(),
        };
        let seq = key
            .get(8..16)
            .and_then(|bytes| bytes.try_into().ok())
            .map(u64::from_be_bytes)
            .ok_or_else(malformed)?;
        if value.len() != 18 {
            return Err(malformed());
        }
        let state = match value[0] {
            0 => RunState::Building,
            1 => RunState::Live,
            2 => RunState::Dropping,
            _ => return Err(malformed()),
        };
        let word = |at: usize| u64::from_be_bytes(value[at..at + 8].try_into().expect("8 bytes"));
        Ok(Run {
            seq,
            state,
            level: value[1],
            first: word(2),
            last: word(10),
        })
    }

    /// Adds this run's catalog entry, in `state`, to `batch`; returns the run so.
    fn put(&self, batch: &mut sled::Batch, state: RunState) -> Run {
        let run = Run { state, ..*self };
        batch.insert(&Run::catalog_key(run.seq), &run.encode());
        run
    }

    /// The prefix of every data key of this run.
    fn prefix(&self) -> [u8; 8] {
        self.seq.to_be_bytes()
    }
}

/// What queries read: the live runs (oldest first) and the tail.
#[derive(Default)]
struct View {
    runs: Vec<Run>,
    tail: HashMap<Box<str>, Vec<Posting>>,
    tail_events: usize,
    /// First id of the oldest block in the tail.
    tail_first: u64,
    /// First id of the newest block indexed (in the tail or a run); 0 for none.
    through: u64,
}

/// The recipient index of one store.
pub(crate) struct RecipientIndex {
    tree: sled::Tree,
    view: RwLock<View>,
    /// Serializes writers (the rules runner, a restore, a purge); queries only read.
    writer: Mutex<u64>,
}

impl RecipientIndex {
    /// Opens the index, finishing merges and drops a crash interrupted.
    pub(crate) fn open(tree: sled::Tree) -> Result<RecipientIndex, StoreError> {
        let mut runs = Vec::new();
        let mut next_seq = 1;
        for entry in tree.scan_prefix(CATALOG) {
            let (key, value) = entry?;
            let run = Run::decode(&key, &value)?;
            next_seq = next_seq.max(run.seq + 1);
            match run.state {
                RunState::Live => runs.push(run),
                RunState::Building | RunState::Dropping => remove_run(&tree, &run)?,
            }
        }
        runs.sort_by_key(|run| run.first);
        let through = runs.last().map_or(0, |run| run.last);
        Ok(RecipientIndex {
            tree,
            view: RwLock::new(View {
                runs,
                through,
                ..View::default()
            }),
            writer: Mutex::new(next_seq),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, View> {
        self.view
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, View> {
        self.view
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// First id of the newest block in the index (0: none).
    pub(crate) fn through(&self) -> EventId {
        EventId(self.read().through)
    }

    /// Number of live runs (for tests and the storage report).
    pub(crate) fn run_count(&self) -> usize {
        self.read().runs.len()
    }

    /// Adds the events of blocks newer than [`Self::through`], oldest first; older blocks
    /// are skipped, so indexing a block twice is harmless. Writes a run when the tail is
    /// full and merges runs as needed; `floor` is the oldest stored event id (postings
    /// below it are dropped by merges). Returns how many events were added.
    pub(crate) fn add_blocks<'a>(
        &self,
        blocks: impl IntoIterator<Item = (EventId, &'a [u8])>,
        floor: EventId,
    ) -> Result<usize, StoreError> {
        let mut next_seq = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut added = 0;
        for (base, value) in blocks {
            let block = Block::parse(value)?;
            let mut postings = Vec::with_capacity(block.len());
            for (index, entry) in block.entries().enumerate() {
                // Only the two indexed fields are needed; an unreadable entry is left out
                // of the index (reads report it where it is read whole).
                if let Ok(fields) = block.summary(entry) {
                    postings.push((
                        fields.recipient.into_owned().into_boxed_str(),
                        (base.0 + index as u64, fields.kind.code()),
                    ));
                }
            }
            let mut view = self.write();
            if base.0 <= view.through {
                continue;
            }
            if view.tail_events == 0 {
                view.tail_first = base.0;
            }
            view.through = base.0;
            view.tail_events += postings.len();
            added += postings.len();
            for (recipient, posting) in postings {
                view.tail.entry(recipient).or_default().push(posting);
            }
            let full = view.tail_events >= RUN_EVENTS;
            drop(view);
            if full {
                self.write_tail(&mut next_seq)?;
                self.merge(&mut next_seq, floor)?;
            }
        }
        Ok(added)
    }

    /// Writes the tail as a level-0 run.
    fn write_tail(&self, next_seq: &mut u64) -> Result<(), StoreError> {
        // Only this (serialized) writer changes the tail, so it can be read without
        // blocking queries while the run is written.
        let (mut recipients, first, last) = {
            let view = self.read();
            if view.tail.is_empty() {
                return Ok(());
            }
            let recipients: Vec<(Box<str>, Vec<Posting>)> = view
                .tail
                .iter()
                .map(|(recipient, postings)| (recipient.clone(), postings.clone()))
                .collect();
            (recipients, view.tail_first, view.through)
        };
        recipients.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let run = Run {
            seq: take_seq(next_seq),
            state: RunState::Live,
            level: 0,
            first,
            last,
        };
        let mut batch = sled::Batch::default();
        for (recipient, postings) in &recipients {
            write_postings(&mut batch, &run, recipient.as_bytes(), postings);
        }
        run.put(&mut batch, RunState::Live);
        self.tree.apply_batch(batch)?;
        let mut view = self.write();
        view.runs.push(run);
        view.tail.clear();
        view.tail_events = 0;
        Ok(())
    }

    /// Merges the newest runs while [`FANOUT`] of them share a level.
    fn merge(&self, next_seq: &mut u64, floor: EventId) -> Result<(), StoreError> {
        loop {
            let sources: Vec<Run> = {
                let view = self.read();
                let Some(level) = view.runs.last().map(|run| run.level) else {
                    return Ok(());
                };
                let same = view
                    .runs
                    .iter()
                    .rev()
                    .take_while(|run| run.level == level)
                    .count();
                if same < FANOUT {
                    return Ok(());
                }
                view.runs[view.runs.len() - same..].to_vec()
            };
            let merged = Run {
                seq: take_seq(next_seq),
                state: RunState::Building,
                level: sources[0].level.saturating_add(1),
                first: sources[0].first,
                last: sources[sources.len() - 1].last,
            };
            self.tree
                .insert(Run::catalog_key(merged.seq), &merged.encode())?;
            self.write_merged(&sources, &merged, floor.0)?;
            // Live and the sources dropping in one atomic batch.
            let mut batch = sled::Batch::default();
            let live = merged.put(&mut batch, RunState::Live);
            for source in &sources {
                source.put(&mut batch, RunState::Dropping);
            }
            self.tree.apply_batch(batch)?;
            {
                // Queries hold the read lock while they scan, so once this returns none is
                // still reading the sources.
                let mut view = self.write();
                let keep = view.runs.len() - sources.len();
                view.runs.truncate(keep);
                view.runs.push(live);
            }
            for source in &sources {
                remove_run(&self.tree, source)?;
            }
        }
    }

    /// Writes the postings of `sources` (adjacent runs, oldest first) as `merged`.
    fn write_merged(&self, sources: &[Run], merged: &Run, floor: u64) -> Result<(), StoreError> {
        // Each source is sorted by recipient and then by id; the sources cover disjoint,
        // increasing id ranges. So merging them by (recipient, chunk id) keeps every
        // recipient's postings in id order.
        let mut cursors = Vec::with_capacity(sources.len());
        for source in sources {
            let mut iter = self.tree.scan_prefix(source.prefix());
            let head = next_chunk(&mut iter)?;
            cursors.push((iter, head));
        }
        let mut batch = sled::Batch::default();
        let mut in_batch = 0;
        let mut current: Option<(Vec<u8>, Vec<Posting>)> = None;
        loop {
            let smallest = cursors
                .iter()
                .enumerate()
                .filter_map(|(index, (_, head))| head.as_ref().map(|chunk| (index, chunk)))
                .min_by(|a, b| {
                    (a.1.recipient(), a.1.first_id()).cmp(&(b.1.recipient(), b.1.first_id()))
                })
                .map(|(index, _)| index);
            let Some(index) = smallest else {
                break;
            };
            let (iter, head) = &mut cursors[index];
            let chunk = head.take().expect("the smallest head exists");
            *head = next_chunk(iter)?;
            let recipient = chunk.recipient().to_vec();
            if current.as_ref().is_some_and(|(name, _)| *name != recipient) {
                let (name, postings) = current.take().expect("checked above");
                in_batch += write_postings(&mut batch, merged, &name, &postings);
            }
            let postings = &mut current.get_or_insert_with(|| (recipient, Vec::new())).1;
            postings.extend(chunk.postings()?.into_iter().filter(|p| p.0 >= floor));
            if in_batch >= MERGE_BATCH {
                self.tree.apply_batch(std::mem::take(&mut batch))?;
                in_batch = 0;
            }
        }
        if let Some((name, postings)) = current {
            write_postings(&mut batch, merged, &name, &postings);
        }
        self.tree.apply_batch(batch)?;
        Ok(())
    }

    /// Drops the runs whose every block is older than `floor` (the oldest stored event).
    pub(crate) fn drop_expired(&self, floor: EventId) -> Result<usize, StoreError> {
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let expired: Vec<Run> = self
            .read()
            .runs
            .iter()
            .filter(|run| run.last < floor.0)
            .copied()
            .collect();
        if expired.is_empty() {
            return Ok(0);
        }
        let mut batch = sled::Batch::default();
        for run in &expired {
            run.put(&mut batch, RunState::Dropping);
        }
        self.tree.apply_batch(batch)?;
        self.write()
            .runs
            .retain(|run| !expired.iter().any(|gone| gone.seq == run.seq));
        for run in &expired {
            remove_run(&self.tree, run)?;
        }
        Ok(expired.len())
    }

    /// Calls `visit` with the id and kind of each indexed event of `recipient` with an id
    /// in `lower..=upper`, newest first, until it breaks or fails (its error is returned).
    pub(crate) fn visit(
        &self,
        recipient: &str,
        lower: EventId,
        upper: EventId,
        mut visit: impl FnMut(EventId, EventKind) -> Result<ControlFlow<()>, StoreError>,
    ) -> Result<(), StoreError> {
        let in_range = |id: u64| lower.0 <= id && id <= upper.0;
        // Held while scanning: a merge waits for it before deleting the runs read here.
        let view = self.read();
        let mut emit = |posting: &Posting| match EventKind::from_code(posting.1) {
            Some(kind) if in_range(posting.0) => visit(EventId(posting.0), kind),
            _ => Ok(ControlFlow::Continue(())),
        };
        if let Some(postings) = view.tail.get(recipient) {
            for posting in postings.iter().rev() {
                if emit(posting)?.is_break() {
                    return Ok(());
                }
            }
        }
        let mut start = Vec::with_capacity(8 + recipient.len() + 1);
        for run in view.runs.iter().rev() {
            if run.first > upper.0 {
                continue;
            }
            start.clear();
            start.extend_from_slice(&run.prefix());
            start.extend_from_slice(recipient.as_bytes());
            start.push(SEPARATOR);
            for entry in self.tree.scan_prefix(&start).rev() {
                let (key, value) = entry?;
                let chunk = Chunk { key, value };
                for posting in chunk.postings()?.iter().rev() {
                    if emit(posting)?.is_break() {
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }
}

fn take_seq(next_seq: &mut u64) -> u64 {
    let seq = *next_seq;
    *next_seq += 1;
    seq
}

/// Deletes a run's keys and then its catalog entry.
fn remove_run(tree: &sled::Tree, run: &Run) -> Result<(), StoreError> {
    let mut batch = sled::Batch::default();
    let mut in_batch = 0;
    for key in tree.scan_prefix(run.prefix()).keys() {
        batch.remove(key?);
        in_batch += 1;
        if in_batch >= MERGE_BATCH {
            tree.apply_batch(std::mem::take(&mut batch))?;
            in_batch = 0;
        }
    }
    batch.remove(&Run::catalog_key(run.seq));
    tree.apply_batch(batch)?;
    Ok(())
}

/// Adds one recipient's postings (oldest first) to `batch` as chunks of at most
/// [`CHUNK_POSTINGS`]; returns the number of keys.
fn write_postings(
    batch: &mut sled::Batch,
    run: &Run,
    recipient: &[u8],
    postings: &[Posting],
) -> usize {
    let mut keys = 0;
    for chunk in postings.chunks(CHUNK_POSTINGS) {
        let first = chunk[0].0;
        let mut key = Vec::with_capacity(8 + recipient.len() + 9);
        key.extend_from_slice(&run.prefix());
        key.extend_from_slice(recipient);
        key.push(SEPARATOR);
        key.extend_from_slice(&first.to_be_bytes());
        let mut previous = first;
        let deltas: Vec<Posting> = chunk
            .iter()
            .map(|&(id, kind)| {
                let delta = id - previous;
                previous = id;
                (delta, kind)
            })
            .collect();
        batch.insert(
            key,
            postcard::to_allocvec(&deltas).expect("postings encode"),
        );
        keys += 1;
    }
    keys
}

/// One stored chunk of postings.
struct Chunk {
    key: sled::IVec,
    value: sled::IVec,
}

impl Chunk {
    /// The recipient (between the run prefix and the separator).
    fn recipient(&self) -> &[u8] {
        &self.key[8..self.key.len().saturating_sub(9)]
    }

    /// Id of the chunk's first posting (the end of its key).
    fn first_id(&self) -> u64 {
        let at = self.key.len().saturating_sub(8);
        self.key
            .get(at..)
            .and_then(|bytes| bytes.try_into().ok())
            .map_or(0, u64::from_be_bytes)
    }

    fn postings(&self) -> Result<Vec<Posting>, StoreError> {
        let deltas: Vec<Posting> =
            postcard::from_bytes(&self.value).map_err(|error| StoreError::Corrupt {
                tree: super::keys::RECIPIENTS,
                reason: format!("postings: {error}"),
            })?;
        let mut id = self.first_id();
        Ok(deltas
            .into_iter()
            .map(|(delta, kind)| {
                id += delta;
                (id, kind)
            })
            .collect())
    }
}

fn next_chunk(iter: &mut sled::Iter) -> Result<Option<Chunk>, StoreError> {
    match iter.next() {
        Some(entry) => {
            let (key, value) = entry?;
            Ok(Some(Chunk { key, value }))
        }
        None => Ok(None),
    }
}

/// Builds the recipient index of `db` again from its events (after a restore or a
/// migration). The last partial run stays unwritten: the rules runner indexes those blocks
/// again when the store opens.
pub(crate) fn rebuild(db: &sled::Db) -> Result<(), StoreError> {
    let tree = db.open_tree(super::keys::RECIPIENTS)?;
    tree.clear()?;
    let index = RecipientIndex::open(tree)?;
    let events = db.open_tree(super::keys::EVENTS)?;
    let Some(floor) = super::events::oldest_block(&events)? else {
        return Ok(());
    };
    let mut blocks = Vec::with_capacity(REBUILD_BLOCKS);
    for entry in events.iter() {
        let (key, value) = entry?;
        blocks.push((super::events::block_id(&key)?, value));
        if blocks.len() == REBUILD_BLOCKS {
            index.add_blocks(blocks.iter().map(|(id, v)| (*id, v.as_ref())), floor)?;
            blocks.clear();
        }
    }
    index.add_blocks(blocks.iter().map(|(id, v)| (*id, v.as_ref())), floor)?;
    Ok(())
}

/// Blocks read per step of [`rebuild`].
const REBUILD_BLOCKS: usize = 256;

#[cfg(test)]
mod tests {
    use serde_json::value::RawValue;

    use super::*;
    use crate::event::{EmailAddress, Event};
    use crate::store::codec::{self, BlockHeader, Record};

    /// A block of events `base..base + recipients.len()`, one per recipient (all bounces
    /// but every third, a delivery).
    fn block(recipients: &[&str]) -> Vec<u8> {
        let at = "2026-12-03T10:00:00Z".parse().unwrap();
        let records: Vec<Vec<u8>> = recipients
            .iter()
            .enumerate()
            .map(|(index, recipient)| {
                let kind = if index % 3 == 2 {
                    EventKind::Delivered
                } else {
                    EventKind::Bounce
                };
                let raw = RawValue::from_string("{}".into()).unwrap();
                let event = Event::new(
                    "sp",
                    "sendpulse",
                    "x",
                    kind,
                    EmailAddress::parse(recipient).unwrap(),
                    at,
                    raw,
                );
                Record::of_inline(&event, [0; 16]).encode()
            })
            .collect();
        let header = BlockHeader::new(EventId(0), "sp", "sendpulse", at).encode();
        codec::encode_block(&header, records.iter().map(Vec::as_slice))
    }

    fn ids_of(index: &RecipientIndex, recipient: &str, lower: u64, upper: u64) -> Vec<u64> {
        let mut ids = Vec::new();
        index
            .visit(recipient, EventId(lower), EventId(upper), |id, _| {
                ids.push(id.0);
                Ok(ControlFlow::Continue(()))
            })
            .unwrap();
        ids
    }

    /// Indexes `blocks` blocks of 32 events over `addresses` addresses (event `i` goes to
    /// address `i % addresses`), block `b` at id `1000 + 32 b`.
    fn fill(index: &RecipientIndex, blocks: u64, addresses: u64, floor: u64) {
        fill_from(index, 0, blocks, addresses, floor);
    }

    #[test]
    fn every_event_is_found_newest_first_across_tail_runs_and_merges() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let index = RecipientIndex::open(db.open_tree("recipients").unwrap()).unwrap();
        // 600 blocks: 19 200 events, two level-0 runs and a tail; then enough for a merge.
        fill(&index, 600, 97, 0);
        assert_eq!(index.run_count(), 2);
        let expected: Vec<u64> = (0..600 * 32)
            .filter(|i| i % 97 == 5)
            .map(|i| 1000 + i)
            .rev()
            .collect();
        assert_eq!(ids_of(&index, "user5@x.com", 0, u64::MAX), expected);
        // A range and the kind: event i is a delivery when (i % 32) % 3 == 2.
        let mut kinds = Vec::new();
        index
            .visit("user5@x.com", EventId(2000), EventId(5000), |id, kind| {
                kinds.push((id.0, kind));
                Ok(ControlFlow::Continue(()))
            })
            .unwrap();
        let wanted: Vec<(u64, EventKind)> = expected
            .iter()
            .filter(|id| (2000..=5000).contains(*id))
            .map(|&id| {
                let delivered = ((id - 1000) % 32) % 3 == 2;
                let kind = if delivered {
                    EventKind::Delivered
                } else {
                    EventKind::Bounce
                };
                (id, kind)
            })
            .collect();
        assert_eq!(kinds, wanted);
        assert!(ids_of(&index, "nobody@x.com", 0, u64::MAX).is_empty());
        // Blocks already indexed are skipped when offered again.
        fill(&index, 600, 97, 0);
        assert_eq!(ids_of(&index, "user5@x.com", 0, u64::MAX), expected);

        // 8 runs of level 0 merge into one of level 1.
        let more: Vec<(EventId, Vec<u8>)> = (600..2200)
            .map(|b| {
                let name = format!("user{}@x.com", b % 7);
                (EventId(1000 + 32 * b), block(&[name.as_str(); 32]))
            })
            .collect();
        index
            .add_blocks(more.iter().map(|(id, v)| (*id, v.as_slice())), EventId(0))
            .unwrap();
        let levels: Vec<u8> = index.read().runs.iter().map(|run| run.level).collect();
        assert_eq!(levels, vec![1], "8 level-0 runs merged into one");
        let user5 = ids_of(&index, "user5@x.com", 0, u64::MAX);
        let mut all = (600..2200u64)
            .filter(|b| b % 7 == 5)
            .flat_map(|b| (0..32).map(move |i| 1000 + 32 * b + i))
            .collect::<Vec<_>>();
        all.reverse();
        all.extend(expected.iter().copied());
        assert_eq!(user5, all);

        // Reopened: the runs are read back, the tail is gone and is indexed again.
        let through = index.through();
        drop(index);
        let index = RecipientIndex::open(db.open_tree("recipients").unwrap()).unwrap();
        assert!(index.through() < through);
        index
            .add_blocks(more.iter().map(|(id, v)| (*id, v.as_slice())), EventId(0))
            .unwrap();
        assert_eq!(index.through(), through);
        assert_eq!(ids_of(&index, "user5@x.com", 0, u64::MAX), all);
    }

    #[test]
    fn purged_runs_are_dropped_and_merges_drop_purged_postings() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let tree = db.open_tree("recipients").unwrap();
        let index = RecipientIndex::open(tree.clone()).unwrap();
        fill(&index, 1200, 50, 0);
        assert_eq!(index.run_count(), 4);
        let first_run = index.read().runs[0];
        // Everything before the second run's first block is gone.
        let second = index.read().runs[1].first;
        assert_eq!(index.drop_expired(EventId(second)).unwrap(), 1);
        assert_eq!(index.run_count(), 3);
        assert_eq!(tree.scan_prefix(first_run.prefix()).count(), 0);
        assert!(
            ids_of(&index, "user1@x.com", 0, u64::MAX)
                .iter()
                .all(|&id| id >= second)
        );
        // A merge with a floor keeps only postings at or above it.
        let floor = 1000 + 32 * 1500;
        fill_from(&index, 1200, 4000, 50, floor);
        let found = ids_of(&index, "user1@x.com", 0, u64::MAX);
        assert!(
            found.iter().all(|&id| id >= floor),
            "merged runs dropped purged postings"
        );
        assert_eq!(found.first(), Some(&(1000 + 32 * 4000 - 49)));
    }

    /// Like [`fill`] for blocks `from..to`.
    fn fill_from(index: &RecipientIndex, from: u64, to: u64, addresses: u64, floor: u64) {
        let names: Vec<String> = (0..addresses).map(|n| format!("user{n}@x.com")).collect();
        let values: Vec<(EventId, Vec<u8>)> = (from..to)
            .map(|b| {
                let recipients: Vec<&str> = (0..32)
                    .map(|i| names[((b * 32 + i) % addresses) as usize].as_str())
                    .collect();
                (EventId(1000 + 32 * b), block(&recipients))
            })
            .collect();
        index
            .add_blocks(
                values.iter().map(|(id, v)| (*id, v.as_slice())),
                EventId(floor),
            )
            .unwrap();
    }

    #[test]
    fn a_crash_mid_merge_leaves_the_sources_readable() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let tree = db.open_tree("recipients").unwrap();
        let index = RecipientIndex::open(tree.clone()).unwrap();
        fill(&index, 600, 97, 0);
        let before = ids_of(&index, "user5@x.com", 0, 1000 + 32 * 512);
        // What a merge leaves when killed while writing its run: a building entry and
        // some of its keys.
        let building = Run {
            seq: 99,
            state: RunState::Building,
            level: 1,
            first: 1000,
            last: 2000,
        };
        let mut batch = sled::Batch::default();
        write_postings(&mut batch, &building, b"user5@x.com", &[(1500, 1)]);
        building.put(&mut batch, RunState::Building);
        tree.apply_batch(batch).unwrap();
        drop(index);
        let index = RecipientIndex::open(tree.clone()).unwrap();
        assert_eq!(tree.scan_prefix(building.prefix()).count(), 0);
        assert_eq!(ids_of(&index, "user5@x.com", 0, 1000 + 32 * 512), before);
    }
}
