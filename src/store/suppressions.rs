//! The suppression list: one entry per address, with where it came from, when it expires
//! and a history of changes. Addresses are keyed in their normalized form (domain
//! lower-cased, local part exact), so lookups are a single point read.
//!
//! A second tree ([`keys::SUPPRESSION_DOMAINS`]) indexes the keys by domain, so that a
//! domain's entries are a prefix scan. It is a superset of the entries: its key is written
//! before a new entry (so a crash cannot leave an entry unindexed), removed after a purged
//! one, and built once from the entries when missing (an older store, a restored backup),
//! which its marker key records.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{Store, StoreError, keys};
use crate::event::EventId;

/// Most history entries kept per address (the oldest are dropped).
pub const MAX_HISTORY: usize = 50;

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
    /// The key an address is suppressed under: as given (domain already lower-cased by
    /// `EmailAddress::parse`), or wholly lower-cased when the store is configured to match
    /// local parts case-insensitively.
    pub fn suppression_key<'a>(&self, address: &'a str) -> std::borrow::Cow<'a, str> {
        if self.fold_local_parts() && address.chars().any(char::is_uppercase) {
            std::borrow::Cow::Owned(address.to_lowercase())
        } else {
            std::borrow::Cow::Borrowed(address)
        }
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
        let created_at = created_at.map_or(now, |at| at.min(now));
        let key = self.suppression_key(&request.address).into_owned();
        let result = self
            .update_suppression(&key, |existing| {
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
                        Some((entry, outcome))
                    }
                    previous => {
                        let mut history = previous.map(|p| p.history).unwrap_or_default();
                        history.push(change("suppress"));
                        let mut entry = Suppression {
                            address: key.clone(),
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
                        Some((entry, SuppressOutcome::Added))
                    }
                }
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
            Some((entry, ()))
        })
        .map(|result| result.map(|(entry, ())| entry))
    }

    /// Read-modify-write of one entry, atomic against concurrent writers. `change` returns
    /// the new entry (and a result) or `None` to leave it as it is.
    fn update_suppression<T: Clone>(
        &self,
        address: &str,
        change: impl Fn(Option<Suppression>) -> Option<(Suppression, T)>,
    ) -> Result<Option<(Suppression, T)>, StoreError> {
        let tree = &self.trees().suppressions;
        loop {
            let current = tree.get(address.as_bytes())?;
            let existing = match &current {
                Some(bytes) => Some(serde_json::from_slice::<Suppression>(bytes).map_err(
                    |error| StoreError::Corrupt {
                        tree: keys::SUPPRESSIONS,
                        reason: format!("{address}: {error}"),
                    },
                )?),
                None => None,
            };
            let Some((entry, result)) = change(existing) else {
                return Ok(None);
            };
            if current.is_none() {
                // Built first (once per store), so the marker is set while the tree is
                // small and a later domain search never pays for it.
                self.ensure_domain_index()?
                    .insert(domain_key(address), &[] as &[u8])?;
            }
            let bytes = serde_json::to_vec(&entry).expect("suppression serializes");
            match tree.compare_and_swap(address.as_bytes(), current, Some(bytes))? {
                Ok(()) => return Ok(Some((entry, result))),
                // Someone else changed it in between: read again and redo the change.
                Err(_) => continue,
            }
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

    /// Deletes entries that expired before `now`; returns how many.
    pub fn purge_expired_suppressions(&self, now: Timestamp) -> Result<usize, StoreError> {
        let mut expired = Vec::new();
        self.scan_suppressions(None, |entry| {
            if entry.active && entry.expires_at.is_some_and(|at| at <= now) {
                expired.push(entry.address);
            }
            true
        })?;
        let index = self.domain_index()?;
        for address in &expired {
            self.trees().suppressions.remove(address.as_bytes())?;
            index.remove(domain_key(address))?;
        }
        Ok(expired.len())
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
    /// starting after `after`, calling `visit` until it returns false: a prefix scan of
    /// the domain index and one point read per entry, never a scan of the whole list.
    pub fn scan_suppressions_in_domain(
        &self,
        domain: &str,
        after: Option<&str>,
        mut visit: impl FnMut(Suppression) -> bool,
    ) -> Result<(), StoreError> {
        let index = self.ensure_domain_index()?;
        let mut prefix = domain.as_bytes().to_vec();
        prefix.push(0);
        let start = match after {
            Some(after) => std::ops::Bound::Excluded(domain_key(after)),
            None => std::ops::Bound::Included(prefix.clone()),
        };
        let mut end = prefix.clone();
        // The byte after the separator: every key of the domain sorts before it.
        if let Some(last) = end.last_mut() {
            *last = 1;
        }
        for key in index.range((start, std::ops::Bound::Excluded(end))) {
            let (key, _) = key?;
            let Some(address) = key
                .get(prefix.len()..)
                .and_then(|rest| std::str::from_utf8(rest).ok())
            else {
                continue;
            };
            // The index may name an entry that was never written or was purged.
            let Some(entry) = self.read_suppression::<Suppression>(address)? else {
                continue;
            };
            if !visit(entry) {
                break;
            }
        }
        Ok(())
    }
}

/// Key of the domain index's marker: it sorts before every domain.
const DOMAIN_INDEX_BUILT: &[u8] = b"";

/// The domain index key of a stored address: its domain, `0x00`, the address.
fn domain_key(address: &str) -> Vec<u8> {
    let domain = address.rsplit_once('@').map_or("", |(_, domain)| domain);
    let mut key = Vec::with_capacity(domain.len() + 1 + address.len());
    key.extend_from_slice(domain.to_lowercase().as_bytes());
    key.push(0);
    key.extend_from_slice(address.as_bytes());
    key
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
                .scan_suppressions_in_domain("x.com", after, |entry| {
                    found.push(entry.address);
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
}
