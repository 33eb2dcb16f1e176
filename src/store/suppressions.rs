//! The suppression list: one entry per address, with where it came from, when it expires
//! and a history of changes. Addresses are keyed in their normalized form (domain
//! lower-cased, local part exact), so lookups are a single point read.
//!
//! A second tree ([`keys::SUPPRESSION_DOMAINS`]) indexes the keys by domain, so that a
//! domain's entries are a prefix scan. It is a superset of the entries: an entry and its
//! index key are written, and removed by the purge, in one sled transaction over both
//! trees (so neither a crash nor a concurrent writer can leave an entry unindexed), and the
//! index is built once from the entries when missing (an older store, a restored backup),
//! which its marker key records.

use std::convert::Infallible;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sled::IVec;
use sled::Transactional as _;
use sled::transaction::TransactionError;

use super::{Store, StoreError, keys};
use crate::event::EventId;

/// Most history entries kept per address (the oldest are dropped).
pub const MAX_HISTORY: usize = 50;

/// Most expired entries the purge holds (key and judged bytes) before removing them.
const PURGE_CHUNK: usize = 1_024;

/// One suppressed (or formerly suppressed) address.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Suppression {
    /// Normalized address.
    pub address: String,
    /// Why it is suppressed.
    pub reason: String,
    /// Source of the event that caused it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Event that caused it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<EventId>,
    /// Rule that caused it, or `manual` / `import`.
    pub rule: String,
    /// When it was first suppressed.
    pub created_at: Timestamp,
    /// When it was last changed.
    pub updated_at: Timestamp,
    /// When it stops counting; `None` is permanent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    /// Whether it is in force (false after `unsuppress`; kept for its history).
    pub active: bool,
    /// Changes, oldest first.
    #[serde(default)]
    pub history: Vec<Change>,
}

/// One change to a suppression.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Change {
    /// When.
    pub at: Timestamp,
    /// `suppress`, `extend`, `upgrade`, `unsuppress`.
    pub change: String,
    /// Rule name, `manual`, `import` or the API caller.
    pub by: String,
    /// Reason given.
    pub reason: String,
}

impl Suppression {
    /// Returns whether the entry suppresses its address at `now`.
    pub fn in_force(&self, now: Timestamp) -> bool {
        self.active && self.expires_at.is_none_or(|expires| expires > now)
    }
}

/// The fields of an entry that decide whether it suppresses, read without its history
/// (the cheap form used by bulk checks before sending).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct SuppressionStatus {
    /// Why it is suppressed.
    pub reason: String,
    /// Rule that caused it, or `manual` / `import`.
    pub rule: String,
    /// When it stops counting; `None` is permanent.
    #[serde(default)]
    pub expires_at: Option<Timestamp>,
    /// Whether it is in force.
    pub active: bool,
}

impl SuppressionStatus {
    /// Returns whether the entry suppresses its address at `now`.
    pub fn in_force(&self, now: Timestamp) -> bool {
        self.active && self.expires_at.is_none_or(|expires| expires > now)
    }
}

impl Store {
    /// The key an address is suppressed under (see [`suppression_key`]).
    pub fn suppression_key<'a>(&self, address: &'a str) -> std::borrow::Cow<'a, str> {
        suppression_key(address, self.fold_local_parts())
    }

    /// Returns what decides whether `address` (normalized) is suppressed, without decoding
    /// its history: one point read.
    pub fn suppression_status(
        &self,
        address: &str,
    ) -> Result<Option<SuppressionStatus>, StoreError> {
        self.read_suppression(address)
    }

    /// Returns the entry for `address` (normalized), in force or not.
    pub fn suppression(&self, address: &str) -> Result<Option<Suppression>, StoreError> {
        self.read_suppression(address)
    }

    /// One point read of an entry, decoded as `T` (the whole entry or only its status).
    fn read_suppression<T: serde::de::DeserializeOwned>(
        &self,
        address: &str,
    ) -> Result<Option<T>, StoreError> {
        let address = &*self.suppression_key(address);
        let Some(value) = self.trees().suppressions.get(address.as_bytes())? else {
            return Ok(None);
        };
        serde_json::from_slice(&value)
            .map(Some)
            .map_err(|error| StoreError::Corrupt {
                tree: keys::SUPPRESSIONS,
                reason: format!("{address}: {error}"),
            })
    }

    /// Returns whether `address` (normalized) is suppressed at `now`.
    pub fn is_suppressed(&self, address: &str, now: Timestamp) -> Result<bool, StoreError> {
        Ok(self
            .suppression(address)?
            .is_some_and(|entry| entry.in_force(now)))
    }
}

/// A request to suppress an address.
#[derive(Debug, Clone)]
pub struct SuppressRequest {
    /// Normalized address.
    pub address: String,
    /// Why.
    pub reason: String,
    /// Source of the causing event.
    pub source: Option<String>,
    /// Causing event.
    pub event_id: Option<EventId>,
    /// Rule name, `manual` or `import`.
    pub rule: String,
    /// Expiry; `None` is permanent.
    pub expires_at: Option<Timestamp>,
}

/// What a suppress request changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SuppressOutcome {
    /// The address was not suppressed; now it is.
    Added,
    /// It was suppressed until an earlier time; the expiry moved later.
    Extended,
    /// It was suppressed until some time; now it is permanent.
    Upgraded,
    /// It was already suppressed at least as long; nothing changed.
    Unchanged,
}

impl Store {
    /// Suppresses an address, keeping one entry per address: an existing entry is extended
    /// or upgraded (permanent beats expiring), never shortened.
    pub fn suppress(
        &self,
        request: &SuppressRequest,
        now: Timestamp,
    ) -> Result<(Suppression, SuppressOutcome), StoreError> {
        self.suppress_since(request, None, now)
    }

    /// Like [`Store::suppress`], but a newly added entry records `created_at` (clamped to
    /// `now`) as the time it was first suppressed: used by imports to keep the dates of an
    /// exported list. An entry already in force keeps its own `created_at`.
    pub fn suppress_since(
        &self,
        request: &SuppressRequest,
        created_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<(Suppression, SuppressOutcome), StoreError> {
        let key = self.suppression_key(&request.address).into_owned();
        let result = self
            .update_suppression(&key, |existing| {
                Some(suppressed(request, &key, existing, created_at, now))
            })?
            .expect("suppress always writes");
        if result.1 == SuppressOutcome::Added {
            // For the overview's "suppressions added": entries have no time index.
            self.count_suppression_added(now)?;
        }
        Ok(result)
    }

    /// Lifts the suppression of `address`, recording who and why. Returns the entry if the
    /// address was suppressed.
    pub fn unsuppress(
        &self,
        address: &str,
        by: &str,
        reason: &str,
        now: Timestamp,
    ) -> Result<Option<Suppression>, StoreError> {
        let key = self.suppression_key(address).into_owned();
        self.update_suppression(&key, |existing| {
            lifted(existing, by, reason, now).map(|entry| (entry, ()))
        })
        .map(|result| result.map(|(entry, ())| entry))
    }

    /// Read-modify-write of one entry, atomic against concurrent writers and the purge.
    /// `change` returns the new entry (and a result) or `None` to leave it as it is.
    ///
    /// The entry is written, and its domain index key inserted when missing, in one
    /// transaction over both trees that first checks the entry still holds what `change`
    /// saw; otherwise the entry is read again and the change redone. So an entry is never
    /// stored without its index key, whatever runs concurrently (a purge removing the old
    /// entry and its key in between cannot strip the key from the new one), and an entry a
    /// former build left unindexed gets its key back on its next change.
    fn update_suppression<T>(
        &self,
        address: &str,
        change: impl Fn(Option<Suppression>) -> Option<(Suppression, T)>,
    ) -> Result<Option<(Suppression, T)>, StoreError> {
        let tree = &self.trees().suppressions;
        // Built first (once per store), so the marker is set while the tree is small and a
        // later domain search never pays for it.
        let index = self.ensure_domain_index()?;
        let index_key = domain_key(address);
        loop {
            let current = tree.get(address.as_bytes())?;
            let existing = match &current {
                Some(bytes) => Some(decode_entry::<Suppression>(address.as_bytes(), bytes)?),
                None => None,
            };
            let Some((entry, result)) = change(existing) else {
                return Ok(None);
            };
            let bytes = serde_json::to_vec(&entry).expect("suppression serializes");
            // sled runs a transaction under its global write lock, so reading the entry
            // here and writing it is a compare-and-swap that covers the index key too.
            let written = (tree, &index)
                .transaction(|(entries, index)| {
                    if entries.get(address.as_bytes())? != current {
                        return Ok(false);
                    }
                    if index.get(index_key.as_slice())?.is_none() {
                        index.insert(index_key.as_slice(), &[] as &[u8])?;
                    }
                    entries.insert(address.as_bytes(), bytes.as_slice())?;
                    Ok(true)
                })
                .map_err(storage_error)?;
            if written {
                return Ok(Some((entry, result)));
            }
            // Someone else changed it in between: read again and redo the change.
        }
    }

    /// Iterates entries in address order starting after `after`, calling `visit` until it
    /// returns false.
    pub fn scan_suppressions(
        &self,
        after: Option<&str>,
        mut visit: impl FnMut(Suppression) -> bool,
    ) -> Result<(), StoreError> {
        let tree = &self.trees().suppressions;
        let iter = match after {
            Some(after) => tree.range::<&[u8], _>((
                std::ops::Bound::Excluded(after.as_bytes()),
                std::ops::Bound::Unbounded,
            )),
            None => tree.iter(),
        };
        for item in iter {
            let (key, value) = item?;
            let entry: Suppression =
                serde_json::from_slice(&value).map_err(|error| StoreError::Corrupt {
                    tree: keys::SUPPRESSIONS,
                    reason: format!("{}: {error}", String::from_utf8_lossy(&key)),
                })?;
            if !visit(entry) {
                break;
            }
        }
        Ok(())
    }

    /// Deletes the entries that expired by `now` (active, with an expiry not after it);
    /// returns how many it deleted. Lifted entries stay, for their history.
    ///
    /// Each entry is judged and then removed only if it still holds the exact bytes that
    /// were judged, with its index key in the same transaction: an entry a rule, an import
    /// or the API re-suppressed (or lifted) in between is a new state and stays, with its
    /// history and its index key. The count is of the entries actually removed.
    pub fn purge_expired_suppressions(&self, now: Timestamp) -> Result<usize, StoreError> {
        let mut purged = 0;
        let mut after: Option<IVec> = None;
        loop {
            let (expired, more) = self.expired_suppressions(after.as_deref(), now)?;
            for (key, judged) in &expired {
                if self.remove_suppression_if_unchanged(key, judged)? {
                    purged += 1;
                }
            }
            if !more {
                return Ok(purged);
            }
            after = expired.last().map(|(key, _)| key.clone());
        }
    }

    /// The judge step of the purge: in key order after `after`, up to [`PURGE_CHUNK`]
    /// entries expired at `now`, each with the bytes it was judged by; and whether the scan
    /// stopped at the chunk size (more may follow the last key returned).
    fn expired_suppressions(
        &self,
        after: Option<&[u8]>,
        now: Timestamp,
    ) -> Result<(Vec<(IVec, IVec)>, bool), StoreError> {
        let tree = &self.trees().suppressions;
        let iter = match after {
            Some(after) => tree
                .range::<&[u8], _>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded)),
            None => tree.iter(),
        };
        let mut expired = Vec::new();
        for item in iter {
            let (key, value) = item?;
            // The status alone decides; the history is not decoded.
            let status: SuppressionStatus = decode_entry(&key, &value)?;
            if status.active && status.expires_at.is_some_and(|at| at <= now) {
                expired.push((key, value));
                if expired.len() == PURGE_CHUNK {
                    return Ok((expired, true));
                }
            }
        }
        Ok((expired, false))
    }

    /// The remove step of the purge: deletes the entry at `key` and its domain index key,
    /// in one transaction, if the entry still holds exactly `judged`. Returns whether it
    /// did.
    fn remove_suppression_if_unchanged(
        &self,
        key: &[u8],
        judged: &[u8],
    ) -> Result<bool, StoreError> {
        let index = self.domain_index()?;
        // Keys are written from addresses, so they are UTF-8; one that is not has no index
        // key to remove.
        let index_key = std::str::from_utf8(key).ok().map(domain_key);
        (&self.trees().suppressions, &index)
            .transaction(|(entries, index)| {
                // Under sled's transaction lock: a compare-and-swap to nothing that also
                // covers the index key.
                if entries.get(key)?.as_deref() != Some(judged) {
                    return Ok(false);
                }
                entries.remove(key)?;
                if let Some(index_key) = &index_key {
                    index.remove(index_key.as_slice())?;
                }
                Ok(true)
            })
            .map_err(storage_error)
    }
}

impl Store {
    /// The domain index tree (sled hands back the tree it already opened).
    fn domain_index(&self) -> Result<sled::Tree, StoreError> {
        Ok(self.inner.db.open_tree(keys::SUPPRESSION_DOMAINS)?)
    }

    /// Builds the domain index from the entries unless its marker says it is complete:
    /// one scan of the keys, once per store.
    fn ensure_domain_index(&self) -> Result<sled::Tree, StoreError> {
        let index = self.domain_index()?;
        if index.contains_key(DOMAIN_INDEX_BUILT)? {
            return Ok(index);
        }
        let mut batch = sled::Batch::default();
        let mut indexed = 0usize;
        for key in self.trees().suppressions.iter().keys() {
            let key = key?;
            if let Ok(address) = std::str::from_utf8(&key) {
                batch.insert(domain_key(address), &[] as &[u8]);
                indexed += 1;
                if indexed % 4096 == 0 {
                    index.apply_batch(std::mem::take(&mut batch))?;
                }
            }
        }
        index.apply_batch(batch)?;
        index.insert(DOMAIN_INDEX_BUILT, &[] as &[u8])?;
        tracing::info!(entries = indexed, "built the suppression domain index");
        Ok(index)
    }

    /// Iterates the entries whose domain is `domain` (lower-case), in address order
    /// starting after `after`, calling `visit` with each address the domain index names and
    /// its entry until it returns false: a prefix scan of the domain index and one point
    /// read per key, never a scan of the whole list.
    ///
    /// The entry is `None` when the index names an address that is not stored (never
    /// written, or purged while its key was kept): `visit` still sees it, so that a caller
    /// bounding its reads counts every key read. A cursor `after` of another domain starts
    /// the scan at the domain's first key (or past its last one), never in another domain.
    pub fn scan_suppressions_in_domain(
        &self,
        domain: &str,
        after: Option<&str>,
        mut visit: impl FnMut(&str, Option<Suppression>) -> bool,
    ) -> Result<(), StoreError> {
        let index = self.ensure_domain_index()?;
        let mut prefix = domain.as_bytes().to_vec();
        prefix.push(0);
        // The later of the domain's first key and the key after the cursor.
        let start = match after.map(domain_key) {
            Some(after) if after >= prefix => std::ops::Bound::Excluded(after),
            _ => std::ops::Bound::Included(prefix.clone()),
        };
        for key in index.range((start, std::ops::Bound::Unbounded)) {
            let (key, _) = key?;
            let Some(rest) = key.strip_prefix(prefix.as_slice()) else {
                // Past the domain (or a cursor beyond it): every later key is too.
                break;
            };
            let (address, entry) = match std::str::from_utf8(rest) {
                // The index may name an entry that was never written or was purged.
                Ok(address) => (address, self.read_suppression::<Suppression>(address)?),
                Err(_) => ("", None),
            };
            if !visit(address, entry) {
                break;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
impl Store {
    /// Writes a domain index key for `address` without an entry: what an older build left
    /// behind when it crashed between the two writes, or purged an entry while a writer
    /// re-added its key.
    pub(crate) fn index_without_entry(&self, address: &str) {
        self.ensure_domain_index()
            .expect("the domain index opens")
            .insert(domain_key(address), &[] as &[u8])
            .expect("the index key is written");
    }
}

/// Key of the domain index's marker: it sorts before every domain.
const DOMAIN_INDEX_BUILT: &[u8] = b"";

/// The domain index key of a stored address: its domain, `0x00`, the address.
fn domain_key(address: &str) -> Vec<u8> {
    let domain = domain_of(address);
    let mut key = Vec::with_capacity(domain.len() + 1 + address.len());
    key.extend_from_slice(domain.as_bytes());
    key.push(0);
    key.extend_from_slice(address.as_bytes());
    key
}

/// Decodes a stored entry (whole or only its status), naming its key when it is unreadable.
fn decode_entry<T: serde::de::DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|error| StoreError::Corrupt {
        tree: keys::SUPPRESSIONS,
        reason: format!("{}: {error}", String::from_utf8_lossy(key)),
    })
}

/// The error of a transaction that never aborts: sled's own.
fn storage_error(error: TransactionError<Infallible>) -> StoreError {
    match error {
        TransactionError::Abort(never) => match never {},
        TransactionError::Storage(error) => StoreError::Sled(error),
    }
}

/// What suppressing `key` (the stored form of the request's address) does to its entry:
/// an entry in force is extended or upgraded (permanent beats expiring), never
/// shortened; otherwise a new entry is added, keeping the old one's history. A new entry
/// records `created_at` (clamped to `now`) as when it was first suppressed. Both backends
/// decide with this.
pub fn suppressed(
    request: &SuppressRequest,
    key: &str,
    existing: Option<Suppression>,
    created_at: Option<Timestamp>,
    now: Timestamp,
) -> (Suppression, SuppressOutcome) {
    let created_at = created_at.map_or(now, |at| at.min(now));
    let change = |change: &str| Change {
        at: now,
        change: change.to_owned(),
        by: request.rule.clone(),
        reason: request.reason.clone(),
    };
    match existing {
        Some(mut entry) if entry.in_force(now) => {
            let outcome = match (entry.expires_at, request.expires_at) {
                (None, _) => SuppressOutcome::Unchanged,
                (Some(_), None) => SuppressOutcome::Upgraded,
                (Some(old), Some(new)) if new > old => SuppressOutcome::Extended,
                (Some(_), Some(_)) => SuppressOutcome::Unchanged,
            };
            if outcome != SuppressOutcome::Unchanged {
                entry.expires_at = request.expires_at;
                entry.reason = request.reason.clone();
                entry.rule = request.rule.clone();
                entry.source = request.source.clone();
                entry.event_id = request.event_id;
                entry.updated_at = now;
                let name = if outcome == SuppressOutcome::Upgraded {
                    "upgrade"
                } else {
                    "extend"
                };
                push_history(&mut entry, change(name));
            }
            (entry, outcome)
        }
        previous => {
            let mut history = previous.map(|p| p.history).unwrap_or_default();
            history.push(change("suppress"));
            let mut entry = Suppression {
                address: key.to_owned(),
                reason: request.reason.clone(),
                source: request.source.clone(),
                event_id: request.event_id,
                rule: request.rule.clone(),
                created_at,
                updated_at: now,
                expires_at: request.expires_at,
                active: true,
                history: Vec::new(),
            };
            for item in history {
                push_history(&mut entry, item);
            }
            (entry, SuppressOutcome::Added)
        }
    }
}

/// What lifting a suppression does to its entry: an entry in force becomes inactive with
/// the change recorded; anything else is left alone (`None`). Both backends decide with
/// this.
pub fn lifted(
    existing: Option<Suppression>,
    by: &str,
    reason: &str,
    now: Timestamp,
) -> Option<Suppression> {
    let mut entry = existing.filter(|entry| entry.in_force(now))?;
    entry.active = false;
    entry.updated_at = now;
    push_history(
        &mut entry,
        Change {
            at: now,
            change: "unsuppress".to_owned(),
            by: by.to_owned(),
            reason: reason.to_owned(),
        },
    );
    Some(entry)
}

/// The key an address is suppressed under: as given (domain already lower-cased by
/// `EmailAddress::parse`), or wholly lower-cased when local parts match
/// case-insensitively (`fold_local_parts`).
pub fn suppression_key(address: &str, fold_local_parts: bool) -> std::borrow::Cow<'_, str> {
    if fold_local_parts && address.chars().any(char::is_uppercase) {
        std::borrow::Cow::Owned(address.to_lowercase())
    } else {
        std::borrow::Cow::Borrowed(address)
    }
}

/// The domain of a stored address, lower-cased ("" without an `@`).
pub fn domain_of(address: &str) -> String {
    address
        .rsplit_once('@')
        .map_or("", |(_, domain)| domain)
        .to_lowercase()
}

fn push_history(entry: &mut Suppression, change: Change) {
    entry.history.push(change);
    if entry.history.len() > MAX_HISTORY {
        let excess = entry.history.len() - MAX_HISTORY;
        entry.history.drain(..excess);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;

    fn request(address: &str, expires_at: Option<Timestamp>) -> SuppressRequest {
        SuppressRequest {
            address: address.to_owned(),
            reason: "test".to_owned(),
            source: None,
            event_id: None,
            rule: "manual".to_owned(),
            expires_at,
        }
    }

    #[test]
    fn one_entry_per_address_extended_or_upgraded_never_shortened() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let day = jiff::SignedDuration::from_hours(24);
        let (_, first) = store
            .suppress(&request("a@x.com", Some(now + day)), now)
            .unwrap();
        let (_, longer) = store
            .suppress(&request("a@x.com", Some(now + day * 2)), now)
            .unwrap();
        let (_, shorter) = store
            .suppress(&request("a@x.com", Some(now + day)), now)
            .unwrap();
        let (_, permanent) = store.suppress(&request("a@x.com", None), now).unwrap();
        let (entry, again) = store
            .suppress(&request("a@x.com", Some(now + day)), now)
            .unwrap();
        assert_eq!(
            [first, longer, shorter, permanent, again],
            [
                SuppressOutcome::Added,
                SuppressOutcome::Extended,
                SuppressOutcome::Unchanged,
                SuppressOutcome::Upgraded,
                SuppressOutcome::Unchanged
            ]
        );
        assert_eq!(entry.expires_at, None);
        assert!(
            !store.is_suppressed("A@x.com", now).unwrap(),
            "local part is exact by default"
        );
        assert!(
            store
                .unsuppress("a@x.com", "manual", "test", now)
                .unwrap()
                .is_some()
        );
        assert!(!store.is_suppressed("a@x.com", now).unwrap());
        let history = store.suppression("a@x.com").unwrap().unwrap().history;
        assert_eq!(history.last().unwrap().change, "unsuppress");
    }

    #[test]
    fn local_parts_can_be_matched_case_insensitively() {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions {
            fold_local_parts: true,
            ..StoreOptions::default()
        };
        let store = Store::open(dir.path(), &options).unwrap();
        let now = Timestamp::now();
        store
            .suppress(&request("John.Doe@x.com", None), now)
            .unwrap();
        assert!(store.is_suppressed("john.doe@x.com", now).unwrap());
        assert!(store.is_suppressed("JOHN.DOE@x.com", now).unwrap());
    }

    #[test]
    fn a_domain_is_a_prefix_scan_and_the_index_is_rebuilt_when_missing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        let now = Timestamp::now();
        for address in ["b@x.com", "a@x.com", "c@x.com.au", "d@y.org", "e@xx.com"] {
            store.suppress(&request(address, None), now).unwrap();
        }
        let domain = |after: Option<&str>| {
            let mut found = Vec::new();
            store
                .scan_suppressions_in_domain("x.com", after, |_, entry| {
                    found.extend(entry.map(|entry| entry.address));
                    true
                })
                .unwrap();
            found
        };
        assert_eq!(domain(None), ["a@x.com", "b@x.com"]);
        assert_eq!(domain(Some("a@x.com")), ["b@x.com"]);
        // A store without the index (an older build, a restored backup) builds it once.
        store.domain_index().unwrap().clear().unwrap();
        store
            .trees()
            .suppressions
            .insert(
                "z@x.com",
                serde_json::to_vec(&Suppression {
                    address: "z@x.com".into(),
                    reason: "old".into(),
                    source: None,
                    event_id: None,
                    rule: "manual".into(),
                    created_at: now,
                    updated_at: now,
                    expires_at: None,
                    active: true,
                    history: Vec::new(),
                })
                .unwrap(),
            )
            .unwrap();
        assert_eq!(domain(None), ["a@x.com", "b@x.com", "z@x.com"]);
        // Purged entries leave the index with them.
        let soon = now + jiff::SignedDuration::from_secs(1);
        store
            .suppress(&request("p@x.com", Some(soon)), now)
            .unwrap();
        store
            .purge_expired_suppressions(soon + jiff::SignedDuration::from_secs(1))
            .unwrap();
        assert_eq!(domain(None), ["a@x.com", "b@x.com", "z@x.com"]);
        assert!(
            !store
                .domain_index()
                .unwrap()
                .contains_key(domain_key("p@x.com"))
                .unwrap()
        );
    }

    /// Whether the domain index holds `address`'s key.
    fn indexed(store: &Store, address: &str) -> bool {
        store
            .domain_index()
            .unwrap()
            .contains_key(domain_key(address))
            .unwrap()
    }

    /// The addresses a domain scan visits after `after`, each with whether it has an entry.
    fn in_domain(store: &Store, domain: &str, after: Option<&str>) -> Vec<(String, bool)> {
        let mut found = Vec::new();
        store
            .scan_suppressions_in_domain(domain, after, |address, entry| {
                if let Some(entry) = &entry {
                    assert_eq!(entry.address, address);
                }
                found.push((address.to_owned(), entry.is_some()));
                true
            })
            .unwrap();
        found
    }

    #[test]
    fn a_purge_keeps_an_entry_re_suppressed_after_it_was_judged_expired() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let second = jiff::SignedDuration::from_secs(1);
        for address in ["a@x.com", "b@x.com"] {
            store
                .suppress(&request(address, Some(now + second)), now)
                .unwrap();
        }
        let later = now + second * 2;
        // The judge step sees both expired ...
        let (expired, more) = store.expired_suppressions(None, later).unwrap();
        assert_eq!(expired.len(), 2);
        assert!(!more);
        // ... then a complaint re-suppresses one before the remove step.
        let complaint = SuppressRequest {
            reason: "spam complaint".into(),
            rule: "complaints".into(),
            ..request("a@x.com", None)
        };
        let (_, outcome) = store.suppress(&complaint, later).unwrap();
        assert_eq!(outcome, SuppressOutcome::Added);
        let removed: Vec<bool> = expired
            .iter()
            .map(|(key, judged)| store.remove_suppression_if_unchanged(key, judged).unwrap())
            .collect();
        assert_eq!(removed, [false, true], "only the unchanged entry goes");

        // The complaint stands, with its history and its index key.
        let entry = store.suppression("a@x.com").unwrap().expect("a@x.com kept");
        assert!(entry.in_force(later));
        assert_eq!(entry.rule, "complaints");
        let changes: Vec<&str> = entry.history.iter().map(|c| c.by.as_str()).collect();
        assert_eq!(changes, ["manual", "complaints"]);
        assert!(indexed(&store, "a@x.com"));
        assert_eq!(in_domain(&store, "x.com", None), [("a@x.com".into(), true)]);
        // The other left with its index key.
        assert_eq!(store.suppression("b@x.com").unwrap(), None);
        assert!(!indexed(&store, "b@x.com"));
        // A later purge has nothing left to remove.
        assert_eq!(store.purge_expired_suppressions(later).unwrap(), 0);
        assert!(store.is_suppressed("a@x.com", later).unwrap());
    }

    #[test]
    fn a_purge_removes_every_expired_entry_in_chunks_and_counts_what_it_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        let now = Timestamp::now();
        let second = jiff::SignedDuration::from_secs(1);
        let expiring = PURGE_CHUNK * 2 + 3;
        for i in 0..expiring {
            store
                .suppress(&request(&format!("e{i:05}@x.com"), Some(now + second)), now)
                .unwrap();
        }
        store.suppress(&request("keep@x.com", None), now).unwrap();
        store
            .suppress(&request("lifted@x.com", Some(now + second)), now)
            .unwrap();
        store
            .unsuppress("lifted@x.com", "manual", "test", now)
            .unwrap();
        let later = now + second * 2;
        assert_eq!(store.purge_expired_suppressions(later).unwrap(), expiring);
        assert_eq!(
            in_domain(&store, "x.com", None),
            [("keep@x.com".into(), true), ("lifted@x.com".into(), true)],
            "a lifted entry is kept for its history"
        );
        assert_eq!(store.purge_expired_suppressions(later).unwrap(), 0);
    }

    #[test]
    fn an_entry_without_its_index_key_gets_it_back_on_its_next_change() {
        // What the former purge could leave: an entry re-added between its removal and the
        // removal of its index key kept the entry and lost the key.
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        let now = Timestamp::now();
        let day = jiff::SignedDuration::from_hours(24);
        store
            .suppress(&request("a@x.com", Some(now + day)), now)
            .unwrap();
        store
            .domain_index()
            .unwrap()
            .remove(domain_key("a@x.com"))
            .unwrap();
        assert!(in_domain(&store, "x.com", None).is_empty());
        let (_, outcome) = store.suppress(&request("a@x.com", None), now).unwrap();
        assert_eq!(outcome, SuppressOutcome::Upgraded);
        assert!(indexed(&store, "a@x.com"));
        assert_eq!(in_domain(&store, "x.com", None), [("a@x.com".into(), true)]);
    }

    #[test]
    fn a_concurrent_purge_never_removes_a_live_entry_or_its_index_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let second = jiff::SignedDuration::from_secs(1);
        let later = now + second * 2;
        let count = 300;
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                while !done.load(std::sync::atomic::Ordering::Acquire) {
                    store.purge_expired_suppressions(later).unwrap();
                }
            });
            // Each address expires (the purge may take it), then is made permanent.
            for i in 0..count {
                let address = format!("u{i:04}@x.com");
                store
                    .suppress(&request(&address, Some(now + second)), later - second * 3)
                    .unwrap();
                store.suppress(&request(&address, None), later).unwrap();
            }
            done.store(true, std::sync::atomic::Ordering::Release);
        });
        store.purge_expired_suppressions(later).unwrap();
        for i in 0..count {
            let address = format!("u{i:04}@x.com");
            assert!(store.is_suppressed(&address, later).unwrap(), "{address}");
            assert!(indexed(&store, &address), "{address}");
        }
        assert_eq!(in_domain(&store, "x.com", None).len(), count);
    }

    #[test]
    fn a_cursor_of_another_domain_never_lists_that_domains_entries() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        let now = Timestamp::now();
        // b.com and c.com have as many bytes as x.com; zz.com sorts after it.
        for address in [
            "u@b.com", "v@b.com", "w@c.com", "a@x.com", "b@x.com", "z@zz.com",
        ] {
            store.suppress(&request(address, None), now).unwrap();
        }
        let addresses = |after: Option<&str>| -> Vec<String> {
            in_domain(&store, "x.com", after)
                .into_iter()
                .map(|(address, _)| address)
                .collect()
        };
        assert_eq!(addresses(Some("u@b.com")), ["a@x.com", "b@x.com"]);
        assert_eq!(addresses(Some("a@a.org")), ["a@x.com", "b@x.com"]);
        assert_eq!(addresses(Some("a@x.com")), ["b@x.com"]);
        assert!(addresses(Some("c@x.com")).is_empty());
        assert!(addresses(Some("a@zz.com")).is_empty());
        assert!(addresses(Some("y@y.com")).is_empty());
        assert_eq!(addresses(None), ["a@x.com", "b@x.com"]);
    }

    #[test]
    fn a_domain_scan_visits_index_keys_without_entries() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        let now = Timestamp::now();
        store.suppress(&request("b@x.com", None), now).unwrap();
        store.index_without_entry("a@x.com");
        store.index_without_entry("c@x.com");
        assert_eq!(
            in_domain(&store, "x.com", None),
            [
                ("a@x.com".into(), false),
                ("b@x.com".into(), true),
                ("c@x.com".into(), false)
            ],
            "a caller bounding its reads sees every key read"
        );
        // A visit that stops at a key without an entry stops the scan there.
        let mut seen = 0;
        store
            .scan_suppressions_in_domain("x.com", None, |_, _| {
                seen += 1;
                false
            })
            .unwrap();
        assert_eq!(seen, 1);
    }
}
