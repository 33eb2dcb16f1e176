//! Durable storage on sled: the only module that touches the database.
//!
//! [`Store`] owns the sled handle, its trees (laid out in [`keys`]), the id generator and
//! the group-commit writer ([`commit`]). Ingestion goes through the writer, which applies
//! each group of requests as one transaction and then flushes once, so an acknowledgement
//! always means "on disk" without paying one fsync per request. Reads go straight to sled.

pub mod backend;
pub mod backup;
pub mod bodies;
pub mod codec;
pub mod commit;
pub mod events;
pub mod history;
pub mod keys;
pub mod outbox;
pub mod overview;
pub mod postgres;
pub mod quarantine;
pub(crate) mod recipients;
pub mod retention;
pub mod rules;
pub mod sources;
pub mod suppressions;
pub mod upgrade;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use jiff::Timestamp;

use crate::event::{EventId, ID_SEQUENCE_BITS};
pub use commit::{IngestBatch, IngestOutcome, PreparedEvent, Stored};
pub use events::{EventPage, EventQuery};
pub use quarantine::QuarantineEntry;

/// Errors from the store. Every variant is a server-side problem, never the client's.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled reported an I/O or corruption error.
    #[error("storage failure: {0}")]
    Sled(#[from] sled::Error),
    /// A group commit failed; every request in the group gets this.
    #[error("commit failed: {0}")]
    Commit(String),
    /// A stored record could not be decoded.
    #[error("stored record in `{tree}` is unreadable: {reason}")]
    Corrupt {
        /// Tree holding the record.
        tree: &'static str,
        /// What was wrong with it.
        reason: String,
    },
    /// The writer thread has stopped (shutdown in progress).
    #[error("the store is shutting down")]
    Closed,
    /// The data directory is locked by another process.
    #[error("data directory {0} is in use by another mailwarden process")]
    Locked(PathBuf),
    /// The store was written by a newer build, in a format this one does not know.
    #[error(
        "the store in {path} has schema version {found}, written by a newer mailwarden; this \
         build reads versions up to {supported}: run the newer build, or restore a backup \
         taken before the upgrade (`mailwarden restore --from FILE --data DIR`)"
    )]
    NewerSchema {
        /// Store directory.
        path: PathBuf,
        /// Version recorded in it.
        found: u32,
        /// Newest version this build knows.
        supported: u32,
    },
    /// Migrating the store to this build's format failed; the store was left at its old
    /// version and the migration is tried again on the next start.
    #[error("store upgrade failed: {0}")]
    Upgrade(String),
    /// A write to disk failed (a full disk, an I/O error): the store takes no more
    /// writes until the service reopens it (see [`Store::fault`]).
    #[error("storage cannot write: {0}")]
    Degraded(String),
    /// The PostgreSQL store reported an error (boxed: it is large and rare).
    #[error("{0}")]
    Postgres(Box<postgres::PgError>),
    /// The group commit's queue is full: nothing was written, the request should be
    /// retried later (see `ingest.max_queued_requests`).
    #[error("{queued} requests are already waiting for the group commit")]
    Overloaded {
        /// Requests waiting when this one was refused.
        queued: usize,
    },
}

impl From<postgres::PgError> for StoreError {
    fn from(error: postgres::PgError) -> Self {
        StoreError::Postgres(Box::new(error))
    }
}

/// How to open the store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Upper bound of sled's page cache, in bytes.
    pub cache_capacity: u64,
    /// Most requests applied and flushed together by the writer.
    pub max_group: usize,
    /// Match suppressed addresses' local parts case-insensitively (`User@x` = `user@x`).
    pub fold_local_parts: bool,
    /// Most ingest requests waiting for (or in) a group commit; further ones get
    /// [`StoreError::Overloaded`] at once.
    pub max_queued_requests: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            cache_capacity: 64 * 1024 * 1024,
            max_group: 512,
            fold_local_parts: false,
            max_queued_requests: 1024,
        }
    }
}

/// Bytes a space probe writes: room for a few of sled's segments and a group commit.
pub const SPACE_PROBE_BYTES: usize = 8 * 1024 * 1024;

/// The trees of the database, opened once.
#[derive(Clone)]
pub(crate) struct Trees {
    pub(crate) meta: sled::Tree,
    pub(crate) events: sled::Tree,
    pub(crate) dedup: sled::Tree,
    pub(crate) pending: sled::Tree,
    pub(crate) bodies: sled::Tree,
    pub(crate) quarantine: sled::Tree,
    pub(crate) stats: sled::Tree,
    pub(crate) evaluations: sled::Tree,
    pub(crate) outbox: sled::Tree,
    pub(crate) suppressions: sled::Tree,
    pub(crate) outbox_dead: sled::Tree,
    pub(crate) alerts: sled::Tree,
    pub(crate) alert_throttle: sled::Tree,
    pub(crate) sources: sled::Tree,
    pub(crate) certificates: sled::Tree,
}

/// Handle to the store; cheap to clone, shared by every part of the service.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

/// The first write failure of a store, shared by the handle and its writer thread.
/// Once set it stays: after a failed flush sled keeps the unflushed writes in memory
/// (dedup keys among them), so answering from it could acknowledge what is not on disk.
#[derive(Debug, Default)]
pub(crate) struct Fault(Mutex<Option<String>>);

impl Fault {
    pub(crate) fn set(&self, reason: &str) {
        let mut fault = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if fault.is_none() {
            tracing::error!(reason, "storage cannot write; refusing writes until it can");
            metrics::gauge!(crate::telemetry::names::STORE_DEGRADED).set(1.0);
            *fault = Some(reason.to_owned());
        }
    }

    pub(crate) fn get(&self) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

struct Inner {
    db: sled::Db,
    /// Set by the first failed flush.
    fault: Arc<Fault>,
    trees: Trees,
    ids: Arc<IdGenerator>,
    writer: commit::Writer,
    path: PathBuf,
    fold_local_parts: bool,
    /// The recipient index (its runs in sled, its tail in memory).
    recipients: recipients::RecipientIndex,
    /// Held (shared) by running backups; a purge slice takes it exclusively, so nothing is
    /// purged while a backup reads the trees.
    purge_lock: RwLock<()>,
}

impl Store {
    /// Opens (or creates) the store in `path` and starts its writer thread.
    pub fn open(path: &Path, options: &StoreOptions) -> Result<Store, StoreError> {
        let mut db = open_db(path, options)?;
        let mut meta = db.open_tree(keys::META)?;
        let found = upgrade::recorded_version(&meta)?;
        match upgrade::plan(path, found)? {
            upgrade::Plan::Current => {
                if found.is_none() {
                    upgrade::record_version(&meta, keys::SCHEMA_VERSION)?;
                }
            }
            upgrade::Plan::Migrate(version) => {
                // The copy needs the files at rest: close the database first.
                drop(meta);
                db.flush()?;
                drop(db);
                let backup = upgrade::back_up(path, version)?;
                tracing::warn!(
                    from = version,
                    to = keys::SCHEMA_VERSION,
                    backup = %backup.display(),
                    "migrating the store to this build's format; the copy can be deleted once the service runs well"
                );
                db = open_db(path, options)?;
                upgrade::migrate(&db, version)?;
                meta = db.open_tree(keys::META)?;
            }
        }
        let trees = Trees {
            meta,
            events: db.open_tree(keys::EVENTS)?,
            dedup: db.open_tree(keys::DEDUP)?,
            pending: db.open_tree(keys::PENDING)?,
            bodies: db.open_tree(keys::BODIES)?,
            quarantine: db.open_tree(keys::QUARANTINE)?,
            stats: db.open_tree(keys::STATS)?,
            evaluations: db.open_tree(keys::EVALUATIONS)?,
            outbox: db.open_tree(keys::OUTBOX)?,
            suppressions: db.open_tree(keys::SUPPRESSIONS)?,
            outbox_dead: db.open_tree(keys::OUTBOX_DEAD)?,
            alerts: db.open_tree(keys::ALERTS)?,
            alert_throttle: db.open_tree(keys::ALERT_THROTTLE)?,
            sources: db.open_tree(keys::SOURCES)?,
            certificates: db.open_tree(keys::CERTIFICATES)?,
        };
        // The newest event block ends at its first id plus its length.
        let mut last = match trees.events.last()? {
            Some((key, block)) => {
                let len = events::Block::parse(&block)?.len() as u64;
                EventId::from_be_slice(&key).map_or(0, |base| base.0 + len.saturating_sub(1))
            }
            None => 0,
        };
        for tree in [
            &trees.bodies,
            &trees.quarantine,
            &trees.outbox,
            &trees.outbox_dead,
            &trees.alerts,
        ] {
            if let Some((key, _)) = tree.last()? {
                last = last.max(EventId::from_be_slice(&key).map_or(0, |id| id.0));
            }
        }
        let ids = Arc::new(IdGenerator::starting_after(last));
        let recipients = recipients::RecipientIndex::open(db.open_tree(keys::RECIPIENTS)?)?;
        let fault = Arc::new(Fault::default());
        metrics::gauge!(crate::telemetry::names::STORE_DEGRADED).set(0.0);
        let writer = commit::Writer::start(
            db.clone(),
            trees.clone(),
            ids.clone(),
            fault.clone(),
            options,
        )?;
        Ok(Store {
            inner: Arc::new(Inner {
                db,
                fault,
                trees,
                ids,
                writer,
                path: path.to_owned(),
                fold_local_parts: options.fold_local_parts,
                recipients,
                purge_lock: RwLock::new(()),
            }),
        })
    }

    pub(crate) fn trees(&self) -> &Trees {
        &self.inner.trees
    }

    /// Returns why the store cannot write, once a flush has failed (a full disk, an I/O
    /// error); it then refuses writes until it is opened again.
    pub fn fault(&self) -> Option<String> {
        self.inner.fault.get()
    }

    /// Checks that the store's filesystem takes writes again: writes, syncs and removes a
    /// file of [`SPACE_PROBE_BYTES`] beside the store.
    pub fn probe_space(&self) -> std::io::Result<()> {
        use std::io::Write as _;
        let mut name = self.inner.path.as_os_str().to_owned();
        name.push(".space-probe");
        let probe = PathBuf::from(name);
        let result = (|| {
            let mut file = std::fs::File::create(&probe)?;
            let chunk = vec![0u8; 64 * 1024];
            for _ in 0..SPACE_PROBE_BYTES / chunk.len() {
                file.write_all(&chunk)?;
            }
            file.sync_all()
        })();
        let _ = std::fs::remove_file(&probe);
        result
    }

    /// Returns a new time-ordered id, unique within this store.
    pub fn next_id(&self) -> EventId {
        self.inner.ids.next()
    }

    /// First id of the newest block in the recipient index; newer blocks are read
    /// directly by recipient queries.
    pub(crate) fn indexed_through(&self) -> EventId {
        self.inner.recipients.through()
    }

    pub(crate) fn recipients(&self) -> &recipients::RecipientIndex {
        &self.inner.recipients
    }

    /// Whether suppressions match local parts case-insensitively.
    pub fn fold_local_parts(&self) -> bool {
        self.inner.fold_local_parts
    }

    /// Keeps purges from running until the guard is dropped (a backup holds it).
    pub(crate) fn hold_purges(&self) -> RwLockReadGuard<'_, ()> {
        self.inner
            .purge_lock
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Lets one purge slice run, unless a backup is running.
    pub(crate) fn try_purge_slice(&self) -> Option<RwLockWriteGuard<'_, ()>> {
        match self.inner.purge_lock.try_write() {
            Ok(guard) => Some(guard),
            Err(std::sync::TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    /// Returns the directory the store lives in.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Applies one request's writes through the group-commit writer and waits until they
    /// are on disk.
    pub async fn commit(&self, batch: IngestBatch) -> Result<IngestOutcome, StoreError> {
        self.inner.writer.commit(batch).await
    }

    /// Waits until everything written before this call is on disk, sharing the writer's
    /// next flush.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.inner.writer.flush().await
    }

    /// Like [`Store::flush`], for threads outside the async runtime.
    pub fn flush_blocking(&self) -> Result<(), StoreError> {
        self.inner.writer.flush_blocking()
    }

    /// Returns the number of fsyncs the writer has made since the store was opened.
    pub fn flush_count(&self) -> u64 {
        self.inner.writer.flush_count()
    }

    /// Returns the approximate size of the database on disk, in bytes.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.inner.db.size_on_disk()?)
    }
}

/// How long opening waits for a lock held in this process: sled's background threads
/// keep the file open for a moment after the last handle of a closed store is dropped
/// (a restore, a reopen after a write failure).
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Opens the sled database in `path`; a lock still held after [`LOCK_WAIT`] is another
/// process's.
#[expect(
    clippy::disallowed_methods,
    reason = "opening a store is blocking work already (sled reads its log); the wait only happens while this process closes the store it reopens"
)]
fn open_db(path: &Path, options: &StoreOptions) -> Result<sled::Db, StoreError> {
    let started = std::time::Instant::now();
    loop {
        let opened = sled::Config::new()
            .path(path)
            .cache_capacity(options.cache_capacity)
            .mode(sled::Mode::HighThroughput)
            .open();
        match opened {
            Ok(db) => return Ok(db),
            // sled reports a held file lock only through this message.
            Err(sled::Error::Io(ref io)) if io.to_string().contains("could not acquire lock") => {
                if started.elapsed() >= LOCK_WAIT {
                    return Err(StoreError::Locked(path.to_owned()));
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(other) => return Err(StoreError::Sled(other)),
        }
    }
}

/// A handle to the store that does not keep it open (for caches that outlive a service
/// run, such as the SNS certificates a test keeps).
#[derive(Clone)]
pub struct WeakStore(std::sync::Weak<Inner>);

impl Store {
    /// Returns a handle that does not keep the store open.
    pub fn downgrade(&self) -> WeakStore {
        WeakStore(Arc::downgrade(&self.inner))
    }
}

impl WeakStore {
    /// Returns the store, if it is still open.
    pub fn upgrade(&self) -> Option<Store> {
        self.0.upgrade().map(|inner| Store { inner })
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.writer.stop();
        if self.fault.get().is_some() {
            // What is unflushed was never acknowledged; sled would only fail again.
            return;
        }
        if let Err(error) = self.db.flush() {
            tracing::error!(%error, "final flush failed");
        }
    }
}

/// Hands out time-ordered ids: milliseconds since the epoch in the high bits, a sequence
/// in the low [`ID_SEQUENCE_BITS`]. Ids never repeat or go backwards, also across restarts
/// (the generator starts after the largest stored id) and clock steps back.
pub struct IdGenerator {
    last: AtomicU64,
}

impl IdGenerator {
    /// Returns a generator whose first id is greater than `last`.
    pub fn starting_after(last: u64) -> IdGenerator {
        IdGenerator {
            last: AtomicU64::new(last),
        }
    }

    /// Makes every later id greater than `last` (ids stored before a restart).
    pub fn advance_past(&self, last: u64) {
        self.last.fetch_max(last, Ordering::Relaxed);
    }

    /// Returns the next id.
    pub fn next(&self) -> EventId {
        self.reserve(1)
    }

    /// Reserves `count` consecutive ids and returns the first.
    pub fn reserve(&self, count: u64) -> EventId {
        let now = u64::try_from(Timestamp::now().as_millisecond()).unwrap_or(0) << ID_SEQUENCE_BITS;
        let mut previous = self.last.load(Ordering::Relaxed);
        loop {
            let first = now.max(previous + 1);
            let last = first + count.max(1) - 1;
            match self.last.compare_exchange_weak(
                previous,
                last,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return EventId(first),
                Err(actual) => previous = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_increase_even_after_a_later_stored_id() {
        let future = EventId::floor_at("2999-01-01T00:00:00Z".parse().unwrap()).0;
        let ids = IdGenerator::starting_after(future);
        let first = ids.next();
        let second = ids.next();
        assert_eq!(first.0, future + 1);
        assert_eq!(second.0, future + 2);
    }

    #[test]
    fn reserved_ids_are_consecutive_and_never_reused() {
        let ids = IdGenerator::starting_after(0);
        let first = ids.reserve(500);
        let next = ids.next();
        assert_eq!(next.0, first.0 + 500);
    }

    #[test]
    fn ids_follow_the_clock() {
        let ids = IdGenerator::starting_after(0);
        let id = ids.next();
        let age = Timestamp::now().duration_since(id.timestamp());
        assert!(age.as_secs() < 5, "id time {} is not now", id.timestamp());
    }
}
