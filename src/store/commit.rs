//! Group commit: one writer thread applies many requests' writes as one sled transaction,
//! then flushes once and answers them all.
//!
//! Requests queue on a bounded channel while the previous group is being flushed, so the
//! busier the service, the more requests share one fsync. A single writer also makes
//! deduplication race-free: the check and the insert of a dedup key happen in one
//! transaction that nothing else writes to concurrently. (`flush_async` is not used: under
//! concurrency it can deadlock in sled 0.34.)

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use tokio::sync::{mpsc, oneshot};

use super::codec;
use super::keys::{self, Resolution, StatCounts};
use super::{Fault, IdGenerator, StoreError, StoreOptions, Trees};
use crate::event::{BounceClass, EventId, EventKind};
use crate::telemetry::names;

/// Jobs the channel holds. Ingest requests are bounded before they are sent (see
/// [`Writer::commit`]), so this only has to leave room for flushes and purges.
const QUEUE_DEPTH: usize = 4096;
/// Most events in one stored block (one request's events may span several blocks).
const MAX_BLOCK_EVENTS: usize = 32;
/// Longest wait for more requests before a flush (see `WriterThread::run`).
const MAX_LINGER: Duration = Duration::from_millis(2);
/// Most events applied in one transaction, to bound its memory.
const MAX_GROUP_EVENTS: usize = 50_000;

/// One normalized event, serialized off the writer thread.
#[derive(Debug, Clone)]
pub struct PreparedEvent {
    /// Deduplication digest (see `ingest::dedup_key`).
    pub dedup: [u8; 16],
    /// Kind, for the recipient index and the stats.
    pub kind: EventKind,
    /// Hard, soft or undetermined (bounces only), for the stats.
    pub bounce_class: Option<BounceClass>,
    /// Bare recipient address.
    pub recipient: String,
    /// Minute (since the epoch) the event was received in, for the stats.
    pub received_minute: u64,
    /// The event as stored: its encoded [`Record`](super::codec::Record).
    pub record: Vec<u8>,
}

/// Everything one request writes.
#[derive(Debug, Clone, Default)]
pub struct IngestBatch {
    /// Source the events were posted to.
    pub source: String,
    /// Encoded [`BlockHeader`](super::codec::BlockHeader) of the request's blocks.
    pub block_header: Vec<u8>,
    /// Events to store unless already stored.
    pub events: Vec<PreparedEvent>,
    /// Quarantine entries, serialized.
    pub quarantine: Vec<Vec<u8>>,
    /// The request body as stored (see `Store::encode_body`), written first in the same
    /// transaction as the events.
    pub body: Option<(EventId, Vec<u8>)>,
}

/// What became of one prepared event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Newly stored under this id.
    New(EventId),
    /// Already stored under this id (a retry); nothing was written.
    Duplicate(EventId),
}

/// What became of one request's writes.
#[derive(Debug, Clone, Default)]
pub struct IngestOutcome {
    /// One entry per prepared event, in request order.
    pub events: Vec<Stored>,
    /// Ids of new quarantine entries.
    pub quarantined: Vec<EventId>,
}

impl IngestOutcome {
    /// Returns the ids of newly stored events.
    pub fn accepted(&self) -> impl Iterator<Item = EventId> + '_ {
        self.events.iter().filter_map(|stored| match stored {
            Stored::New(id) => Some(*id),
            Stored::Duplicate(_) => None,
        })
    }

    /// Returns how many events were already stored.
    pub fn duplicate_count(&self) -> usize {
        self.events
            .iter()
            .filter(|stored| matches!(stored, Stored::Duplicate(_)))
            .count()
    }
}

enum Job {
    Ingest {
        batch: IngestBatch,
        reply: oneshot::Sender<Result<IngestOutcome, StoreError>>,
        /// Held until the writer is done with the request.
        _slot: QueueSlot,
    },
    Flush {
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    Purge {
        removal: Removal,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
}

/// Expired event blocks and their dedup keys, removed by the writer (which owns the
/// event count) in one transaction.
#[derive(Debug, Default)]
pub struct Removal {
    /// First ids of the blocks.
    pub blocks: Vec<EventId>,
    /// Number of events in them.
    pub events: u64,
    /// Their dedup keys.
    pub dedup: Vec<[u8; 16]>,
}

/// One ingest request's place in the group commit's queue, given back when dropped.
struct QueueSlot(Arc<AtomicUsize>);

impl Drop for QueueSlot {
    fn drop(&mut self) {
        let left = self.0.fetch_sub(1, Ordering::AcqRel) - 1;
        metrics::gauge!(names::COMMIT_QUEUE).set(left as f64);
    }
}

/// The sending side of the writer; owned by the store.
pub(crate) struct Writer {
    sender: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    flushes: Arc<AtomicU64>,
    /// Ingest requests sent and not yet answered.
    queued: Arc<AtomicUsize>,
    max_queued: usize,
}

impl Writer {
    /// Starts the writer thread.
    pub(crate) fn start(
        db: sled::Db,
        trees: Trees,
        ids: Arc<IdGenerator>,
        fault: Arc<Fault>,
        options: &StoreOptions,
    ) -> Result<Writer, StoreError> {
        let (sender, receiver) = mpsc::channel(QUEUE_DEPTH);
        let flushes = Arc::new(AtomicU64::new(0));
        let state = WriterThread {
            db,
            trees,
            ids,
            max_group: options.max_group.max(1),
            flushes: flushes.clone(),
            fault,
        };
        let thread = std::thread::Builder::new()
            .name("mailwarden-writer".into())
            .spawn(move || state.run(receiver))
            .map_err(|error| StoreError::Commit(format!("cannot start writer: {error}")))?;
        Ok(Writer {
            sender: Some(sender),
            thread: Some(thread),
            flushes,
            queued: Arc::new(AtomicUsize::new(0)),
            max_queued: options.max_queued_requests.max(1),
        })
    }

    /// Queues `batch` for the next group commit and waits for its outcome; refuses it at
    /// once when `max_queued_requests` are already waiting, so that under overload
    /// latency and memory stay bounded and the client (a provider) retries later.
    pub(crate) async fn commit(&self, batch: IngestBatch) -> Result<IngestOutcome, StoreError> {
        let sender = self.sender.as_ref().ok_or(StoreError::Closed)?;
        let queued = self.queued.fetch_add(1, Ordering::AcqRel);
        let slot = QueueSlot(self.queued.clone());
        if queued >= self.max_queued {
            drop(slot);
            return Err(StoreError::Overloaded { queued });
        }
        metrics::gauge!(names::COMMIT_QUEUE).set((queued + 1) as f64);
        let (reply, answer) = oneshot::channel();
        sender
            .send(Job::Ingest {
                batch,
                reply,
                _slot: slot,
            })
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    pub(crate) async fn flush(&self) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        let sender = self.sender.as_ref().ok_or(StoreError::Closed)?;
        sender
            .send(Job::Flush { reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    pub(crate) fn purge(&self, removal: Removal) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        let sender = self.sender.as_ref().ok_or(StoreError::Closed)?;
        sender
            .blocking_send(Job::Purge { removal, reply })
            .map_err(|_| StoreError::Closed)?;
        answer.blocking_recv().map_err(|_| StoreError::Closed)?
    }

    pub(crate) fn flush_blocking(&self) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        let sender = self.sender.as_ref().ok_or(StoreError::Closed)?;
        sender
            .blocking_send(Job::Flush { reply })
            .map_err(|_| StoreError::Closed)?;
        answer.blocking_recv().map_err(|_| StoreError::Closed)?
    }

    pub(crate) fn flush_count(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }

    /// Lets the writer finish what is queued, then waits for its thread to end.
    pub(crate) fn stop(&mut self) {
        self.sender.take();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("writer thread panicked");
            }
        }
    }
}

struct WriterThread {
    db: sled::Db,
    trees: Trees,
    ids: Arc<IdGenerator>,
    max_group: usize,
    flushes: Arc<AtomicU64>,
    fault: Arc<Fault>,
}

impl WriterThread {
    fn run(self, mut receiver: mpsc::Receiver<Job>) {
        // A timer for lingering; the writer itself stays a plain thread.
        let timer = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("writer timer");
        let mut jobs = Vec::with_capacity(self.max_group);
        let mut linger = Duration::ZERO;
        while let Some(first) = receiver.blocking_recv() {
            let mut events = job_events(&first);
            jobs.push(first);
            let deadline = Instant::now() + linger;
            while jobs.len() < self.max_group && events < MAX_GROUP_EVENTS {
                let next = match receiver.try_recv() {
                    Ok(job) => Some(job),
                    Err(mpsc::error::TryRecvError::Disconnected) => None,
                    Err(mpsc::error::TryRecvError::Empty) => {
                        let left = deadline.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            None
                        } else {
                            timer
                                .block_on(async {
                                    tokio::time::timeout(left, receiver.recv()).await
                                })
                                .ok()
                                .flatten()
                        }
                    }
                };
                match next {
                    Some(job) => {
                        events += job_events(&job);
                        jobs.push(job);
                    }
                    None => break,
                }
            }
            let grouped = jobs.len();
            let flush_time = self.commit_group(&mut jobs);
            // Under concurrency, wait a little for more requests before the next flush: a
            // fraction of what a flush costs, so fewer, fuller flushes serve the same load.
            // A lone request (nothing else was waiting) never waits.
            linger = if grouped > 1 {
                (flush_time / 4).min(MAX_LINGER)
            } else {
                Duration::ZERO
            };
        }
    }

    /// Applies and flushes a group; returns how long the flush took.
    fn commit_group(&self, jobs: &mut Vec<Job>) -> Duration {
        if let Some(reason) = self.fault.get() {
            // Nothing reaches sled once a flush failed; see `Fault`.
            for job in jobs.drain(..) {
                let error = || StoreError::Degraded(reason.clone());
                match job {
                    Job::Ingest { reply, .. } => drop(reply.send(Err(error()))),
                    Job::Flush { reply } => drop(reply.send(Err(error()))),
                    Job::Purge { reply, .. } => drop(reply.send(Err(error()))),
                }
            }
            return Duration::ZERO;
        }
        let batches: Vec<&IngestBatch> = jobs
            .iter()
            .filter_map(|job| match job {
                Job::Ingest { batch, .. } => Some(batch),
                Job::Flush { .. } | Job::Purge { .. } => None,
            })
            .collect();
        let applied = if batches.is_empty() {
            Ok(Vec::new())
        } else {
            self.apply(&batches)
        };
        let purged: Vec<Result<(), String>> = jobs
            .iter()
            .filter_map(|job| match job {
                Job::Purge { removal, .. } => Some(self.remove(removal)),
                _ => None,
            })
            .collect();
        let mut purged = purged.into_iter();
        let started = Instant::now();
        let flushed = self.db.flush().map(drop).map_err(|error| match error {
            // "No space left on device (os error 28)", not sled's debug form.
            sled::Error::Io(io) => io.to_string(),
            other => other.to_string(),
        });
        let flush_time = started.elapsed();
        self.flushes.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(names::STORE_FLUSHES).increment(1);
        metrics::histogram!(names::STORE_FLUSH_SECONDS).record(started.elapsed().as_secs_f64());
        metrics::histogram!(names::STORE_GROUP_REQUESTS).record(jobs.len() as f64);
        if let Err(error) = &flushed {
            self.fault.set(error);
        }
        let mut outcomes = match applied {
            Ok(outcomes) => Ok(outcomes.into_iter()),
            Err(error) => {
                tracing::error!(%error, requests = batches.len(), "group commit failed");
                Err(error)
            }
        };
        for job in jobs.drain(..) {
            match job {
                Job::Ingest { reply, .. } => {
                    let result = match (&mut outcomes, &flushed) {
                        (Ok(outcomes), Ok(())) => outcomes
                            .next()
                            .ok_or_else(|| StoreError::Commit("missing outcome".into())),
                        (_, Err(error)) => Err(StoreError::Degraded(error.clone())),
                        (Err(error), _) => Err(StoreError::Commit(error.clone())),
                    };
                    // A requester that went away (client disconnected) needs no answer.
                    let _ = reply.send(result);
                }
                Job::Flush { reply } => {
                    let _ = reply.send(flushed.clone().map_err(StoreError::Degraded));
                }
                Job::Purge { reply, .. } => {
                    let result = purged
                        .next()
                        .unwrap_or_else(|| Err("missing purge outcome".into()))
                        .and(flushed.clone())
                        .map_err(StoreError::Commit);
                    let _ = reply.send(result);
                }
            }
        }
        flush_time
    }

    /// Removes one slice of expired blocks with their index entries, and takes them off
    /// the event count.
    fn remove(&self, removal: &Removal) -> Result<(), String> {
        let t = &self.trees;
        let result = (&t.events, &t.dedup, &t.meta).transaction(|(events, dedup, meta)| {
            for block in &removal.blocks {
                events.remove(&block.to_be_bytes())?;
            }
            for key in &removal.dedup {
                dedup.remove(key)?;
            }
            let count = keys::decode_count(meta.get(keys::META_EVENT_COUNT)?.as_deref());
            meta.insert(
                keys::META_EVENT_COUNT,
                &count.saturating_sub(removal.events).to_be_bytes(),
            )?;
            Ok(())
        });
        result.map_err(|error: TransactionError<()>| match error {
            TransactionError::Abort(()) => "purge aborted".to_owned(),
            TransactionError::Storage(error) => error.to_string(),
        })
    }

    /// Applies every batch in one transaction; returns one outcome per batch. Each
    /// batch's new events get consecutive ids and are stored in blocks of up to
    /// [`MAX_BLOCK_EVENTS`]: one `events` and one `pending` write per block, plus a dedup
    /// key per event.
    fn apply(&self, batches: &[&IngestBatch]) -> Result<Vec<IngestOutcome>, String> {
        let t = &self.trees;
        let trees = (
            &t.events,
            &t.dedup,
            &t.pending,
            &t.quarantine,
            &t.stats,
            &t.bodies,
            &t.meta,
        );
        let result = trees.transaction(
            |(events, dedup, pending, quarantine, stats, bodies, meta)| {
                let mut outcomes = Vec::with_capacity(batches.len());
                let mut stored = 0;
                let mut counts: HashMap<(Resolution, u64, &str), StatCounts> = HashMap::new();
                // Bounces and complaints per recipient domain and day (the overview's
                // top domains), counted here so that no view scans events.
                let mut domains: HashMap<(u64, &str), [u64; keys::DOMAIN_SLOTS]> = HashMap::new();
                for batch in batches {
                    let mut outcome = IngestOutcome::default();
                    if let Some((id, body)) = &batch.body {
                        bodies.insert(&id.to_be_bytes(), body.as_slice())?;
                    }
                    // First pass: which events are new. Dedup keys written earlier in this
                    // transaction are visible, so a batch repeating an event stores it once.
                    let mut fresh: Vec<&PreparedEvent> = Vec::with_capacity(batch.events.len());
                    let mut slots = Vec::with_capacity(batch.events.len());
                    let mut pending_keys: HashMap<[u8; 16], usize> = HashMap::new();
                    for event in &batch.events {
                        if let Some(existing) = dedup.get(event.dedup)? {
                            let id = EventId::from_be_slice(&existing).ok_or_else(|| {
                                ConflictableTransactionError::Abort(
                                    "corrupt dedup entry".to_owned(),
                                )
                            })?;
                            slots.push(Slot::Old(id));
                        } else if let Some(&index) = pending_keys.get(&event.dedup) {
                            slots.push(Slot::Repeat(index));
                        } else {
                            pending_keys.insert(event.dedup, fresh.len());
                            slots.push(Slot::New(fresh.len()));
                            fresh.push(event);
                        }
                    }
                    if !fresh.is_empty() {
                        stored += fresh.len() as u64;
                        let base = self.ids.reserve(fresh.len() as u64);
                        // Blocks of at most MAX_BLOCK_EVENTS: reading one event loads its
                        // block, so blocks stay small enough for point reads to be cheap.
                        for (chunk_index, chunk) in fresh.chunks(MAX_BLOCK_EVENTS).enumerate() {
                            let first = EventId(base.0 + (chunk_index * MAX_BLOCK_EVENTS) as u64);
                            let block = codec::encode_block(
                                &batch.block_header,
                                chunk.iter().map(|event| event.record.as_slice()),
                            );
                            events.insert(&first.to_be_bytes(), block)?;
                            pending.insert(
                                &first.to_be_bytes(),
                                &(chunk.len() as u32).to_be_bytes(),
                            )?;
                        }
                        for (index, event) in fresh.iter().enumerate() {
                            let id = EventId(base.0 + index as u64);
                            dedup.insert(&event.dedup, &id.to_be_bytes())?;
                            let split = match event.bounce_class {
                                _ if event.kind != EventKind::Bounce => None,
                                Some(BounceClass::Hard) => Some(keys::HARD_BOUNCE_SLOT),
                                Some(BounceClass::Soft) => Some(keys::SOFT_BOUNCE_SLOT),
                                _ => None,
                            };
                            for resolution in Resolution::ALL {
                                let bucket = resolution.bucket(event.received_minute);
                                let slot = counts
                                    .entry((resolution, bucket, batch.source.as_str()))
                                    .or_insert([0; keys::STAT_SLOTS]);
                                slot[event.kind.index()] += 1;
                                if let Some(split) = split {
                                    slot[split] += 1;
                                }
                            }
                            if matches!(event.kind, EventKind::Bounce | EventKind::Complaint) {
                                let domain = event
                                    .recipient
                                    .rsplit_once('@')
                                    .map_or("", |(_, domain)| domain);
                                let day = Resolution::Day.bucket(event.received_minute);
                                let slot = domains.entry((day, domain)).or_default();
                                if event.kind == EventKind::Complaint {
                                    slot[keys::DOMAIN_COMPLAINTS] += 1;
                                } else {
                                    slot[keys::DOMAIN_BOUNCES] += 1;
                                    match split {
                                        Some(keys::HARD_BOUNCE_SLOT) => {
                                            slot[keys::DOMAIN_HARD] += 1;
                                        }
                                        Some(_) => slot[keys::DOMAIN_SOFT] += 1,
                                        None => {}
                                    }
                                }
                            }
                        }
                        for slot in slots {
                            outcome.events.push(match slot {
                                Slot::Old(id) => Stored::Duplicate(id),
                                Slot::New(index) => Stored::New(EventId(base.0 + index as u64)),
                                Slot::Repeat(index) => {
                                    Stored::Duplicate(EventId(base.0 + index as u64))
                                }
                            });
                        }
                    } else {
                        for slot in slots {
                            if let Slot::Old(id) = slot {
                                outcome.events.push(Stored::Duplicate(id));
                            }
                        }
                    }
                    for entry in &batch.quarantine {
                        let id = self.ids.next();
                        quarantine.insert(&id.to_be_bytes(), entry.as_slice())?;
                        outcome.quarantined.push(id);
                    }
                    outcomes.push(outcome);
                }
                for ((resolution, bucket, source), added) in counts {
                    let key = keys::stats_key(resolution, bucket, source);
                    let mut total: StatCounts = stats
                        .get(&key)?
                        .map(|value| keys::decode_slots(&value))
                        .unwrap_or([0; keys::STAT_SLOTS]);
                    for (sum, add) in total.iter_mut().zip(added) {
                        *sum += add;
                    }
                    stats.insert(key, keys::encode_counts(&total))?;
                }
                for ((day, domain), added) in domains {
                    let key = keys::domain_day_key(day, domain);
                    let mut total: [u64; keys::DOMAIN_SLOTS] = stats
                        .get(&key)?
                        .map(|value| keys::decode_slots(&value))
                        .unwrap_or_default();
                    for (sum, add) in total.iter_mut().zip(added) {
                        *sum += add;
                    }
                    stats.insert(key, keys::encode_counts(&total))?;
                }
                if stored > 0 {
                    let count = keys::decode_count(meta.get(keys::META_EVENT_COUNT)?.as_deref());
                    meta.insert(keys::META_EVENT_COUNT, &(count + stored).to_be_bytes())?;
                }
                Ok(outcomes)
            },
        );
        result.map_err(|error| match error {
            TransactionError::Abort(reason) => reason,
            TransactionError::Storage(error) => error.to_string(),
        })
    }
}

/// Where one prepared event went.
enum Slot {
    /// Stored by an earlier request.
    Old(EventId),
    /// New, at this index of the request's block.
    New(usize),
    /// Repeats an earlier event of the same request (at this index of the block).
    Repeat(usize),
}

fn job_events(job: &Job) -> usize {
    match job {
        Job::Ingest { batch, .. } => batch.events.len() + batch.quarantine.len(),
        Job::Flush { .. } => 0,
        Job::Purge { removal, .. } => removal.events as usize,
    }
}
