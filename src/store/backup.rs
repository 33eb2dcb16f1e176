//! Backups: a running store copied into one stream, and a data directory rebuilt from it.
//!
//! # Format
//!
//! ```text
//! "MWBACKUP" | u32 format (1) | u32 header length | header JSON
//! then frames, each a tag byte:
//!   1 TREE   u16 name length, name          the entries that follow belong to this tree
//!   2 ENTRY  u32 key length, key, u32 value length, value
//!   3 END    u64 number of entries, then the SHA-256 of every byte before it
//! ```
//!
//! Integers are big-endian. A file without its END frame, or whose digest does not match,
//! is refused whole: a backup cut off by a dropped connection can never be restored by
//! mistake.
//!
//! # Consistency
//!
//! sled has no snapshots, so a backup reads the trees one after the other while the
//! service keeps running, in an order chosen so that what was acknowledged before the
//! backup began is complete in it:
//!
//! - `events` first: every block acknowledged before the start is in it.
//! - `pending` next: a block still waiting for the rules is restored as waiting, and is
//!   evaluated after the restore. Its actions may also have been queued (and copied with
//!   the outbox, read later), so actions are delivered at least once, as after a crash.
//!   Pending entries of blocks that arrived after `events` was read are dropped on
//!   restore.
//! - then the request bodies (the events' raw JSON points into them; a purge never runs
//!   during a backup, so none of an included block's goes missing), and the rest.
//!
//! The dedup keys, the recipient index and the event count are not copied: the restore
//! rebuilds them from the events, so they match exactly what was restored.

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::events::{Block, BodyCache, block_id};
use super::{Store, StoreError, StoreOptions, keys, open_db, upgrade};
use crate::event::EventId;

/// First bytes of every backup.
pub const MAGIC: &[u8; 8] = b"MWBACKUP";
/// Version of the framing described above.
pub const FORMAT: u32 = 1;

const TREE: u8 = 1;
const ENTRY: u8 = 2;
const END: u8 = 3;

/// Trees a backup carries, in the order it reads them (see the module docs for why).
const COPIED: [&str; 14] = [
    keys::EVENTS,
    keys::PENDING,
    keys::BODIES,
    keys::QUARANTINE,
    keys::STATS,
    keys::EVALUATIONS,
    keys::OUTBOX,
    keys::OUTBOX_DEAD,
    keys::ALERTS,
    keys::ALERT_THROTTLE,
    keys::SUPPRESSIONS,
    keys::SOURCES,
    keys::CERTIFICATES,
    keys::META,
];

/// `meta` keys the restore writes itself rather than copying.
const REBUILT_META: [&[u8]; 2] = [keys::META_SCHEMA_VERSION, keys::META_EVENT_COUNT];

/// Longest key or value a backup may hold: sled's own limits are far below this, so a
/// larger length means a damaged file, not data.
const MAX_FIELD: usize = 1 << 30;

/// Errors from taking, checking or restoring a backup.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Reading or writing the stream failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stream is not a complete, intact mailwarden backup.
    #[error("not a usable mailwarden backup: {0}")]
    Format(String),
    /// The target directory already holds a store.
    #[error("{0} already holds a store; restore into a new directory")]
    Exists(PathBuf),
}

impl From<sled::Error> for BackupError {
    fn from(error: sled::Error) -> Self {
        BackupError::Store(error.into())
    }
}

/// What a backup's header says about it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupHeader {
    /// Store schema version of the copied trees.
    pub schema_version: u32,
    /// When the backup began.
    pub created_at: Timestamp,
    /// Version of the mailwarden that wrote it.
    pub mailwarden: String,
}

/// What was in a backup.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BackupSummary {
    /// Entries of every tree.
    pub entries: u64,
    /// Bytes of the stream.
    pub bytes: u64,
}

/// What a restore rebuilt.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreSummary {
    /// When the backup began.
    pub created_at: Timestamp,
    /// Entries copied.
    pub entries: u64,
    /// Events restored.
    pub events: u64,
    /// Events restored as still waiting for the rules.
    pub pending_events: u64,
    /// Suppression entries restored.
    pub suppressions: usize,
    /// Actions waiting in the outbox.
    pub outbox: usize,
}

impl Store {
    /// Writes a backup of the store to `out`, reading it while the service runs (see the
    /// module docs). Purges wait until it is done.
    pub fn write_backup(&self, out: impl Write) -> Result<BackupSummary, BackupError> {
        let _no_purge = self.hold_purges();
        let mut out = Hashed::new(BufWriter::with_capacity(256 * 1024, out));
        let header = BackupHeader {
            schema_version: keys::SCHEMA_VERSION,
            created_at: Timestamp::now(),
            mailwarden: env!("CARGO_PKG_VERSION").to_owned(),
        };
        let header = serde_json::to_vec(&header).expect("backup header serializes");
        out.put(MAGIC)?;
        out.put(&FORMAT.to_be_bytes())?;
        out.put_field(&header)?;
        let mut entries = 0u64;
        for name in COPIED {
            let tree = self.inner.db.open_tree(name)?;
            out.put(&[TREE])?;
            out.put(&(name.len() as u16).to_be_bytes())?;
            out.put(name.as_bytes())?;
            for entry in tree.iter() {
                let (key, value) = entry?;
                if name == keys::META && REBUILT_META.contains(&&*key) {
                    continue;
                }
                out.put(&[ENTRY])?;
                out.put_field(&key)?;
                out.put_field(&value)?;
                entries += 1;
            }
        }
        out.put(&[END])?;
        out.put(&entries.to_be_bytes())?;
        let (mut inner, digest, bytes) = out.finish();
        inner.write_all(&digest)?;
        inner.flush()?;
        Ok(BackupSummary {
            entries,
            bytes: bytes + digest.len() as u64,
        })
    }
}

/// One frame of a backup, as read.
enum Frame<'a> {
    Tree(&'a str),
    Entry(&'a [u8], &'a [u8]),
}

/// Reads a whole backup, handing each frame to `visit`, and checks its end and digest.
/// `progress` is told how many bytes have been read so far.
fn read_frames(
    input: impl Read,
    progress: &dyn Fn(u64),
    mut visit: impl FnMut(Frame<'_>) -> Result<(), BackupError>,
) -> Result<(BackupHeader, BackupSummary), BackupError> {
    let mut input = Hashed::new(BufReader::with_capacity(256 * 1024, input));
    let mut magic = [0u8; 8];
    input.take(&mut magic)?;
    if &magic != MAGIC {
        return Err(BackupError::Format(
            "it does not start like one (was it written by `mailwarden backup`?)".into(),
        ));
    }
    let format = u32::from_be_bytes(input.array()?);
    if format != FORMAT {
        return Err(BackupError::Format(format!(
            "framing version {format}; this build reads version {FORMAT}"
        )));
    }
    let header: BackupHeader = serde_json::from_slice(&input.field()?)
        .map_err(|error| BackupError::Format(format!("header: {error}")))?;
    if header.schema_version > keys::SCHEMA_VERSION {
        return Err(BackupError::Format(format!(
            "it holds store schema {}, written by a newer mailwarden ({}); this build reads \
             schemas up to {}: restore it with that version",
            header.schema_version,
            header.mailwarden,
            keys::SCHEMA_VERSION
        )));
    }
    let mut entries = 0u64;
    let mut in_tree = false;
    let mut key = Vec::new();
    let mut value = Vec::new();
    loop {
        let [tag] = input.array()?;
        match tag {
            TREE => {
                let len = u16::from_be_bytes(input.array()?) as usize;
                let mut name = vec![0; len];
                input.take(&mut name)?;
                let name = std::str::from_utf8(&name)
                    .ok()
                    .filter(|name| COPIED.contains(name))
                    .ok_or_else(|| BackupError::Format("unknown tree".into()))?;
                visit(Frame::Tree(name))?;
                in_tree = true;
            }
            ENTRY if in_tree => {
                input.field_into(&mut key)?;
                input.field_into(&mut value)?;
                visit(Frame::Entry(&key, &value))?;
                entries += 1;
                if entries % 4096 == 0 {
                    progress(input.bytes);
                }
            }
            END => {
                let counted = u64::from_be_bytes(input.array()?);
                let (mut rest, digest, bytes) = input.finish();
                let mut stored = [0u8; 32];
                rest.read_exact(&mut stored).map_err(truncated)?;
                if counted != entries || stored[..] != digest[..] {
                    return Err(BackupError::Format(
                        "its digest does not match: the file is damaged".into(),
                    ));
                }
                if rest.read(&mut [0u8; 1])? != 0 {
                    return Err(BackupError::Format("bytes after its end".into()));
                }
                let bytes = bytes + 32;
                progress(bytes);
                return Ok((header, BackupSummary { entries, bytes }));
            }
            _ => return Err(BackupError::Format(format!("unexpected frame tag {tag}"))),
        }
    }
}

/// Checks that `input` is a complete, intact backup, without restoring it.
pub fn verify(
    input: impl Read,
    progress: &dyn Fn(u64),
) -> Result<(BackupHeader, BackupSummary), BackupError> {
    read_frames(input, progress, |_| Ok(()))
}

/// Builds the store directory `db` (a data directory's `db`) from the backup in `input`.
/// The store is written next to it and moved into place only once the whole backup has
/// been read and its digest checked, so a failed restore leaves nothing behind.
pub fn restore(
    input: impl Read,
    db: &Path,
    options: &StoreOptions,
    progress: &dyn Fn(u64),
) -> Result<RestoreSummary, BackupError> {
    if db.exists() && std::fs::read_dir(db)?.next().is_some() {
        return Err(BackupError::Exists(db.to_owned()));
    }
    let mut partial = db.as_os_str().to_owned();
    partial.push(".restoring");
    let partial = PathBuf::from(partial);
    if partial.exists() {
        std::fs::remove_dir_all(&partial)?;
    }
    let result = restore_into(input, &partial, options, progress);
    match result {
        Ok(summary) => {
            if db.exists() {
                std::fs::remove_dir(db)?;
            }
            std::fs::rename(&partial, db)?;
            Ok(summary)
        }
        Err(error) => {
            let _ = std::fs::remove_dir_all(&partial);
            Err(error)
        }
    }
}

fn restore_into(
    input: impl Read,
    path: &Path,
    options: &StoreOptions,
    progress: &dyn Fn(u64),
) -> Result<RestoreSummary, BackupError> {
    /// Entries written per sled batch.
    const BATCH: usize = 4096;
    let db = open_db(path, options)?;
    let mut tree: Option<sled::Tree> = None;
    let mut batch = sled::Batch::default();
    let mut batched = 0;
    let flush = |tree: &Option<sled::Tree>, batch: &mut sled::Batch, batched: &mut usize| {
        if let Some(tree) = tree {
            tree.apply_batch(std::mem::take(batch))?;
        }
        *batched = 0;
        Ok::<_, StoreError>(())
    };
    let (header, summary) = read_frames(input, progress, |frame| {
        match frame {
            Frame::Tree(name) => {
                flush(&tree, &mut batch, &mut batched)?;
                tree = Some(db.open_tree(name)?);
            }
            Frame::Entry(key, value) => {
                batch.insert(key, value);
                batched += 1;
                if batched >= BATCH {
                    flush(&tree, &mut batch, &mut batched)?;
                }
            }
        }
        Ok(())
    })?;
    flush(&tree, &mut batch, &mut batched)?;
    let (events, pending_events) = rebuild_indexes(&db)?;
    let meta = db.open_tree(keys::META)?;
    meta.insert(keys::META_EVENT_COUNT, &events.to_be_bytes())?;
    // An older schema is migrated by the first `serve`, as any store of that version is.
    upgrade::record_version(&meta, header.schema_version)?;
    let suppressions = db.open_tree(keys::SUPPRESSIONS)?.len();
    let outbox = db.open_tree(keys::OUTBOX)?.len();
    db.flush()?;
    Ok(RestoreSummary {
        created_at: header.created_at,
        entries: summary.entries,
        events,
        pending_events,
        suppressions,
        outbox,
    })
}

/// Rebuilds the dedup keys and the recipient index from the restored events and drops
/// pending entries whose block is not in the backup. Returns the numbers of events and of
/// pending events.
fn rebuild_indexes(db: &sled::Db) -> Result<(u64, u64), StoreError> {
    let events = db.open_tree(keys::EVENTS)?;
    let pending = db.open_tree(keys::PENDING)?;
    let dedup = db.open_tree(keys::DEDUP)?;
    let mut bodies = BodyCache::detached();
    let mut count = 0u64;
    for entry in events.iter() {
        let (key, value) = entry?;
        let base = block_id(&key)?;
        let block = Block::parse(&value)?;
        let mut dedup_batch = sled::Batch::default();
        for (index, entry) in block.entries().enumerate() {
            let id = EventId(base.0 + index as u64);
            let summary = block.summary(entry)?;
            let key = match summary.dedup {
                Some(key) => key,
                None => crate::ingest::dedup_key(&block.decode(id, entry, &mut bodies)?),
            };
            dedup_batch.insert(&key, &id.to_be_bytes());
            count += 1;
        }
        dedup.apply_batch(dedup_batch)?;
    }
    super::recipients::rebuild(db)?;
    let mut pending_events = 0u64;
    for entry in pending.iter() {
        let (key, value) = entry?;
        if events.contains_key(&key)? {
            pending_events += u64::from(keys::decode_u32(&value));
        } else {
            pending.remove(&key)?;
        }
    }
    Ok((count, pending_events))
}

/// A reader or writer that keeps the SHA-256 of what went through it.
struct Hashed<T> {
    inner: T,
    hasher: Sha256,
    bytes: u64,
}

impl<T> Hashed<T> {
    fn new(inner: T) -> Self {
        Hashed {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// Returns the inner reader or writer, the digest so far and the bytes counted.
    fn finish(self) -> (T, [u8; 32], u64) {
        (self.inner, self.hasher.finalize().into(), self.bytes)
    }
}

impl<W: Write> Hashed<W> {
    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.hasher.update(bytes);
        self.bytes += bytes.len() as u64;
        self.inner.write_all(bytes)
    }

    fn put_field(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let len = u32::try_from(bytes.len()).expect("sled values are below 4 GiB");
        self.put(&len.to_be_bytes())?;
        self.put(bytes)
    }
}

impl<R: Read> Hashed<R> {
    fn take(&mut self, buf: &mut [u8]) -> Result<(), BackupError> {
        self.inner.read_exact(buf).map_err(truncated)?;
        self.hasher.update(&*buf);
        self.bytes += buf.len() as u64;
        Ok(())
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], BackupError> {
        let mut buf = [0u8; N];
        self.take(&mut buf)?;
        Ok(buf)
    }

    fn field_into(&mut self, buf: &mut Vec<u8>) -> Result<(), BackupError> {
        let len = u32::from_be_bytes(self.array()?) as usize;
        if len > MAX_FIELD {
            return Err(BackupError::Format(format!("a field of {len} bytes")));
        }
        buf.resize(len, 0);
        self.take(buf)
    }

    fn field(&mut self) -> Result<Vec<u8>, BackupError> {
        let mut buf = Vec::new();
        self.field_into(&mut buf)?;
        Ok(buf)
    }
}

fn truncated(error: std::io::Error) -> BackupError {
    if error.kind() == std::io::ErrorKind::UnexpectedEof {
        BackupError::Format("it ends early: the backup was cut off".into())
    } else {
        BackupError::Io(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with_data(dir: &Path) -> Store {
        let store = Store::open(&dir.join("db"), &StoreOptions::default()).unwrap();
        let t = store.trees();
        t.suppressions.insert("a@example.com", b"{}").unwrap();
        t.outbox
            .insert(store.next_id().to_be_bytes(), b"{}")
            .unwrap();
        store
    }

    #[test]
    fn a_backup_restores_and_damage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_data(dir.path());
        let mut backup = Vec::new();
        let written = store.write_backup(&mut backup).unwrap();
        assert_eq!(written.bytes, backup.len() as u64);
        let (_, checked) = verify(&backup[..], &|_| ()).unwrap();
        assert_eq!(checked.entries, written.entries);

        let target = dir.path().join("restored").join("db");
        let restored = restore(&backup[..], &target, &StoreOptions::default(), &|_| ()).unwrap();
        assert_eq!((restored.suppressions, restored.outbox), (1, 1));
        let reopened = Store::open(&target, &StoreOptions::default()).unwrap();
        assert!(
            reopened
                .trees()
                .suppressions
                .contains_key("a@example.com")
                .unwrap()
        );
        drop(reopened);
        let again = restore(&backup[..], &target, &StoreOptions::default(), &|_| ());
        assert!(matches!(again, Err(BackupError::Exists(_))), "{again:?}");

        let cut = &backup[..backup.len() - 10];
        let elsewhere = dir.path().join("cut").join("db");
        let error = restore(cut, &elsewhere, &StoreOptions::default(), &|_| ()).unwrap_err();
        assert!(error.to_string().contains("cut off"), "{error}");
        assert!(!elsewhere.exists() && !dir.path().join("cut/db.restoring").exists());

        let mut flipped = backup.clone();
        let middle = flipped.len() / 2;
        flipped[middle] ^= 0x40;
        assert!(verify(&flipped[..], &|_| ()).is_err());
        assert!(verify(&b"PK\x03\x04 a zip file"[..], &|_| ()).is_err());
    }
}
