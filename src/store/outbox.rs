//! The outbox of actions queued by rules, the dead letters, and the alert log with its
//! throttling windows. Workers read due actions, run them, then remove them (done),
//! rewrite them (rescheduled) or move them to `outbox_dead`, so a crash at any point
//! leaves the action pending and it runs again later: at least once, never lost.

use jiff::Timestamp;
use serde::{Serialize, de::DeserializeOwned};
use sled::Transactional;
use sled::transaction::TransactionError;

use super::{Store, StoreError, keys};
use crate::event::EventId;
use crate::rules::QueuedAction;

fn decode<T: DeserializeOwned>(
    tree: &'static str,
    key: &[u8],
    value: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(value).map_err(|error| StoreError::Corrupt {
        tree,
        reason: format!("{}: {error}", String::from_utf8_lossy(key)),
    })
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("record serializes")
}

fn id_of(tree: &'static str, key: &[u8]) -> Result<EventId, StoreError> {
    EventId::from_be_slice(key).ok_or_else(|| StoreError::Corrupt {
        tree,
        reason: "key is not an id".into(),
    })
}

/// Most records one filtered page of actions reads.
pub const MAX_SCAN: usize = 5_000;
/// Most records a count (or a "retry all") of matching actions reads.
pub const MAX_COUNT_SCAN: usize = 20_000;
/// Dead letters moved back per transaction by [`Store::requeue_dead`].
pub const REQUEUE_CHUNK: usize = 128;

/// How many actions matched a filter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MatchCount {
    /// Matches among the records read.
    pub count: usize,
    /// The newest match.
    pub newest: Option<EventId>,
    /// Whether every record was read (false: the count is a lower bound).
    pub complete: bool,
}

/// What [`Store::requeue_dead`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Requeued {
    /// Dead letters moved back to pending.
    pub requeued: usize,
    /// Whether more dead letters match than were moved.
    pub more: bool,
}

/// The cursor that continues a newest-first walk with record `id` itself.
fn id_after(id: EventId) -> EventId {
    EventId(id.0.saturating_add(1))
}

/// Which list of actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxStatus {
    /// Waiting for (another) attempt.
    Pending,
    /// Given up on.
    Dead,
}

impl Store {
    fn outbox_tree(&self, status: OutboxStatus) -> (&sled::Tree, &'static str) {
        match status {
            OutboxStatus::Pending => (&self.trees().outbox, keys::OUTBOX),
            OutboxStatus::Dead => (&self.trees().outbox_dead, keys::OUTBOX_DEAD),
        }
    }

    /// Returns up to `limit` pending actions due at `now`, oldest first, leaving out those
    /// `skip` names (the ones already running).
    pub fn due_actions(
        &self,
        now: Timestamp,
        limit: usize,
        skip: impl Fn(EventId) -> bool,
    ) -> Result<Vec<QueuedAction>, StoreError> {
        let mut due = Vec::new();
        for item in self.trees().outbox.iter() {
            let (key, value) = item?;
            let id = id_of(keys::OUTBOX, &key)?;
            // Skipped ones (already running) do not count: a backlog of calls waiting for
            // a slow host must not hide what was queued after it.
            if skip(id) {
                continue;
            }
            let mut action: QueuedAction = decode(keys::OUTBOX, &key, &value)?;
            if action.next_attempt_at.is_none_or(|at| at <= now) {
                action.id = Some(id);
                due.push(action);
                if due.len() >= limit {
                    break;
                }
            }
        }
        Ok(due)
    }

    /// Returns how many actions are pending.
    pub fn pending_actions(&self) -> usize {
        self.trees().outbox.len()
    }

    /// Removes a finished action.
    pub fn finish_action(&self, id: EventId) -> Result<(), StoreError> {
        self.trees().outbox.remove(id.to_be_bytes())?;
        Ok(())
    }

    /// Rewrites a pending action (after a failed attempt), only if it is still pending:
    /// checked and written in one atomic step, so an action finished or dead-lettered
    /// meanwhile is never brought back. Returns whether it was written.
    pub fn update_action(&self, action: &QueuedAction) -> Result<bool, StoreError> {
        let id = action.id.expect("a stored action has an id");
        let value = encode(action);
        let before = self
            .trees()
            .outbox
            .fetch_and_update(id.to_be_bytes(), |old| old.map(|_| value.clone()))?;
        Ok(before.is_some())
    }

    /// Changes pending action `id` with `change` and returns it as written, or `None`
    /// when it is not pending (never was, or finished or dead-lettered meanwhile).
    ///
    /// `change` applies to the record as stored and the result is written only if the
    /// record is still exactly what was read (compare-and-swap; on a conflict it is read
    /// again and `change` runs again): a "Try now" racing the worker neither re-inserts
    /// an action the worker just finished nor overwrites its attempt count.
    pub fn change_action(
        &self,
        id: EventId,
        mut change: impl FnMut(&mut QueuedAction),
    ) -> Result<Option<QueuedAction>, StoreError> {
        let tree = &self.trees().outbox;
        let key = id.to_be_bytes();
        loop {
            let Some(old) = tree.get(key)? else {
                return Ok(None);
            };
            let mut action: QueuedAction = decode(keys::OUTBOX, &key, &old)?;
            action.id = Some(id);
            change(&mut action);
            match tree.compare_and_swap(key, Some(&old), Some(encode(&action)))? {
                Ok(()) => return Ok(Some(action)),
                // Changed or removed since it was read: look again.
                Err(_) => continue,
            }
        }
    }

    /// Moves pending actions' next attempt to a later time, leaving everything else as it
    /// is (a call held by its destination's circuit breaker was not attempted). Actions
    /// no longer pending, or already due later, are left alone.
    pub fn postpone_actions(&self, actions: &[(EventId, Timestamp)]) -> Result<(), StoreError> {
        let tree = &self.trees().outbox;
        for (id, until) in actions {
            let key = id.to_be_bytes();
            tree.fetch_and_update(key, |old| {
                let old = old?;
                let Ok(mut action) = serde_json::from_slice::<QueuedAction>(old) else {
                    // Unreadable records are reported where they are read; keep them.
                    return Some(old.to_vec());
                };
                if action.next_attempt_at.is_some_and(|at| at >= *until) {
                    return Some(old.to_vec());
                }
                action.next_attempt_at = Some(*until);
                Some(encode(&action))
            })?;
        }
        Ok(())
    }

    /// Moves an action between pending and dead, atomically.
    pub fn move_action(&self, action: &QueuedAction, to: OutboxStatus) -> Result<bool, StoreError> {
        let id = action.id.expect("a stored action has an id");
        let key = id.to_be_bytes();
        let value = encode(action);
        let (pending, dead) = (&self.trees().outbox, &self.trees().outbox_dead);
        let (from_tree, to_tree) = match to {
            OutboxStatus::Dead => (pending, dead),
            OutboxStatus::Pending => (dead, pending),
        };
        (from_tree, to_tree)
            .transaction(|(from, to)| {
                if from.remove(&key)?.is_none() {
                    return Ok(false);
                }
                to.insert(&key, value.as_slice())?;
                Ok(true)
            })
            .map_err(|error: TransactionError<()>| match error {
                TransactionError::Abort(()) => StoreError::Commit("move aborted".into()),
                TransactionError::Storage(error) => StoreError::Sled(error),
            })
    }

    /// Returns one action.
    pub fn action(
        &self,
        id: EventId,
        status: OutboxStatus,
    ) -> Result<Option<QueuedAction>, StoreError> {
        let (tree, name) = self.outbox_tree(status);
        let Some(value) = tree.get(id.to_be_bytes())? else {
            return Ok(None);
        };
        let mut action: QueuedAction = decode(name, &id.to_be_bytes(), &value)?;
        action.id = Some(id);
        Ok(Some(action))
    }

    /// Returns a page of actions, newest first.
    pub fn actions_page(
        &self,
        status: OutboxStatus,
        before: Option<EventId>,
        limit: usize,
    ) -> Result<(Vec<QueuedAction>, Option<EventId>), StoreError> {
        let (tree, name) = self.outbox_tree(status);
        let upper = before.unwrap_or(EventId(u64::MAX)).to_be_bytes();
        let mut page = Vec::new();
        for item in tree.range(..upper).rev() {
            let (key, value) = item?;
            let mut action: QueuedAction = decode(name, &key, &value)?;
            let id = id_of(name, &key)?;
            action.id = Some(id);
            page.push(action);
            if page.len() >= limit.max(1) {
                return Ok((page, Some(id)));
            }
        }
        Ok((page, None))
    }

    /// Returns up to `limit` actions of `status` older than `before` that `matches`
    /// accepts, newest first, reading at most [`MAX_SCAN`] records: a filter that matches
    /// little cannot make a page walk the whole list. The cursor continues after the last
    /// record read (so a page can hold fewer than `limit` when the budget ran out).
    pub fn actions_matching(
        &self,
        status: OutboxStatus,
        before: Option<EventId>,
        limit: usize,
        matches: impl Fn(&QueuedAction) -> bool,
    ) -> Result<(Vec<QueuedAction>, Option<EventId>), StoreError> {
        let (tree, name) = self.outbox_tree(status);
        let upper = before.unwrap_or(EventId(u64::MAX)).to_be_bytes();
        let mut page = Vec::new();
        for (read, item) in tree.range(..upper).rev().enumerate() {
            let (key, value) = item?;
            let id = id_of(name, &key)?;
            if read >= MAX_SCAN {
                return Ok((page, Some(id_after(id))));
            }
            let mut action: QueuedAction = decode(name, &key, &value)?;
            action.id = Some(id);
            if matches(&action) {
                page.push(action);
                if page.len() >= limit.max(1) {
                    return Ok((page, Some(id)));
                }
            }
        }
        Ok((page, None))
    }

    /// Counts the actions of `status` that `matches` accepts, newest first, reading at
    /// most [`MAX_COUNT_SCAN`] records; also returns the newest match (the bound of a
    /// "retry all" that should touch only what was counted).
    pub fn count_matching(
        &self,
        status: OutboxStatus,
        matches: impl Fn(&QueuedAction) -> bool,
    ) -> Result<MatchCount, StoreError> {
        let (tree, name) = self.outbox_tree(status);
        let mut count = MatchCount::default();
        for (read, item) in tree.iter().rev().enumerate() {
            if read >= MAX_COUNT_SCAN {
                count.complete = false;
                return Ok(count);
            }
            let (key, value) = item?;
            let action: QueuedAction = decode(name, &key, &value)?;
            if matches(&action) {
                count.count += 1;
                count.newest.get_or_insert(id_of(name, &key)?);
            }
        }
        count.complete = true;
        Ok(count)
    }

    /// Moves up to `max` dead letters with ids up to `through` that `matches` accepts
    /// back to pending, each rewritten by `revive`, in transactions of
    /// [`REQUEUE_CHUNK`]; reads at most [`MAX_COUNT_SCAN`] records. Says how many moved
    /// and whether more match (the caller asks again for those).
    pub fn requeue_dead(
        &self,
        through: EventId,
        max: usize,
        matches: impl Fn(&QueuedAction) -> bool,
        revive: impl Fn(&mut QueuedAction),
    ) -> Result<Requeued, StoreError> {
        let (pending, dead) = (&self.trees().outbox, &self.trees().outbox_dead);
        let upper = EventId(through.0.saturating_add(1)).to_be_bytes();
        let mut chosen: Vec<(sled::IVec, Vec<u8>)> = Vec::new();
        let mut more = false;
        for (read, item) in dead.range(..upper).rev().enumerate() {
            if read >= MAX_COUNT_SCAN {
                more = true;
                break;
            }
            let (key, value) = item?;
            let mut action: QueuedAction = decode(keys::OUTBOX_DEAD, &key, &value)?;
            if !matches(&action) {
                continue;
            }
            if chosen.len() >= max {
                more = true;
                break;
            }
            action.id = None;
            revive(&mut action);
            chosen.push((key, encode(&action)));
        }
        let mut requeued = 0;
        for chunk in chosen.chunks(REQUEUE_CHUNK) {
            requeued += (dead, pending)
                .transaction(|(from, to)| {
                    let mut moved = 0;
                    for (key, value) in chunk {
                        // A letter retried meanwhile (one by one) is not moved twice.
                        if from.remove(key)?.is_some() {
                            to.insert(key, value.as_slice())?;
                            moved += 1;
                        }
                    }
                    Ok(moved)
                })
                .map_err(|error: TransactionError<()>| match error {
                    TransactionError::Abort(()) => StoreError::Commit("requeue aborted".into()),
                    TransactionError::Storage(error) => StoreError::Sled(error),
                })?;
        }
        Ok(Requeued { requeued, more })
    }

    /// Appends a record to the alert log; returns its id.
    pub fn log_alert<T: Serialize>(&self, record: &T) -> Result<EventId, StoreError> {
        let id = self.next_id();
        self.trees()
            .alerts
            .insert(id.to_be_bytes(), encode(record))?;
        Ok(id)
    }

    /// Returns a page of the alert log, newest first, as stored JSON values.
    pub fn alerts_page(
        &self,
        before: Option<EventId>,
        limit: usize,
    ) -> Result<(Vec<serde_json::Value>, Option<EventId>), StoreError> {
        let upper = before.unwrap_or(EventId(u64::MAX)).to_be_bytes();
        let mut page = Vec::new();
        for item in self.trees().alerts.range(..upper).rev() {
            let (key, value) = item?;
            let mut record: serde_json::Value = decode(keys::ALERTS, &key, &value)?;
            let id = id_of(keys::ALERTS, &key)?;
            if let serde_json::Value::Object(map) = &mut record {
                map.insert("id".into(), serde_json::json!(id));
            }
            page.push(record);
            if page.len() >= limit.max(1) {
                return Ok((page, Some(id)));
            }
        }
        Ok((page, None))
    }

    /// Reads and rewrites the throttle window of `key` atomically; `change` returns the
    /// new window (or `None` to delete it) and a result.
    pub fn update_throttle<W, R>(
        &self,
        key: &str,
        change: impl Fn(Option<W>) -> (Option<W>, R),
    ) -> Result<R, StoreError>
    where
        W: Serialize + DeserializeOwned,
    {
        let tree = &self.trees().alert_throttle;
        loop {
            let current = tree.get(key.as_bytes())?;
            let window = match &current {
                Some(bytes) => Some(decode(keys::ALERT_THROTTLE, key.as_bytes(), bytes)?),
                None => None,
            };
            let (next, result) = change(window);
            let next = next.map(|window| encode(&window));
            if tree
                .compare_and_swap(key.as_bytes(), current, next)?
                .is_ok()
            {
                return Ok(result);
            }
        }
    }

    /// Returns every throttle window, by key.
    pub fn throttle_windows<W: DeserializeOwned>(&self) -> Result<Vec<(String, W)>, StoreError> {
        let mut windows = Vec::new();
        for item in self.trees().alert_throttle.iter() {
            let (key, value) = item?;
            windows.push((
                String::from_utf8_lossy(&key).into_owned(),
                decode(keys::ALERT_THROTTLE, &key, &value)?,
            ));
        }
        Ok(windows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::Action;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &super::super::StoreOptions::default()).unwrap();
        (dir, store)
    }

    /// Queues `n` calls to `url` and dead-letters them; returns their ids, oldest first.
    fn dead_calls(store: &Store, url: &str, n: usize) -> Vec<EventId> {
        let now = Timestamp::now();
        let action = QueuedAction::new(
            None,
            "hook",
            Action::HttpPost {
                url: url.into(),
                body: serde_json::json!({}),
                headers: Default::default(),
            },
            now,
        );
        let queued = vec![encode(&action); n];
        let ids = store.queue_actions(&queued).unwrap();
        for id in &ids {
            let mut action = store.action(*id, OutboxStatus::Pending).unwrap().unwrap();
            action.status = "dead".into();
            action.attempts = 3;
            assert!(store.move_action(&action, OutboxStatus::Dead).unwrap());
        }
        ids
    }

    /// Queues one call; returns its id.
    fn pending_call(store: &Store) -> EventId {
        let action = QueuedAction::new(
            None,
            "hook",
            Action::HttpPost {
                url: "https://crm.example.com/hook".into(),
                body: serde_json::json!({}),
                headers: Default::default(),
            },
            Timestamp::now(),
        );
        store.queue_actions(&[encode(&action)]).unwrap()[0]
    }

    #[test]
    fn a_change_racing_the_worker_finishing_does_not_bring_the_action_back() {
        let (_dir, store) = store();
        let id = pending_call(&store);
        let mut calls = 0;
        let changed = store
            .change_action(id, |action| {
                calls += 1;
                // The worker finishes the action between the read and the write.
                if calls == 1 {
                    store.finish_action(id).unwrap();
                }
                action.next_attempt_at = Some(Timestamp::now());
            })
            .unwrap();
        assert!(changed.is_none(), "gone meanwhile");
        assert_eq!(calls, 1);
        assert!(store.action(id, OutboxStatus::Pending).unwrap().is_none());
        assert_eq!(store.pending_actions(), 0);
    }

    #[test]
    fn a_change_racing_a_worker_update_keeps_the_attempt_count() {
        let (_dir, store) = store();
        let id = pending_call(&store);
        let now = Timestamp::now();
        let mut calls = 0;
        let changed = store
            .change_action(id, |action| {
                calls += 1;
                // The worker records a failed attempt between the read and the write.
                if calls == 1 {
                    let mut failed = store.action(id, OutboxStatus::Pending).unwrap().unwrap();
                    failed.attempts = 2;
                    failed.last_error = Some("HTTP 503".into());
                    assert!(store.update_action(&failed).unwrap());
                }
                action.next_attempt_at = Some(now);
            })
            .unwrap()
            .expect("still pending");
        assert_eq!(calls, 2, "read again after the conflict");
        let stored = store.action(id, OutboxStatus::Pending).unwrap().unwrap();
        assert_eq!(
            (changed.attempts, changed.next_attempt_at),
            (stored.attempts, stored.next_attempt_at)
        );
        assert_eq!(stored.attempts, 2);
        assert_eq!(stored.last_error.as_deref(), Some("HTTP 503"));
        assert_eq!(stored.next_attempt_at, Some(now));
    }

    #[test]
    fn updating_a_finished_action_does_not_bring_it_back() {
        let (_dir, store) = store();
        let id = pending_call(&store);
        let mut action = store.action(id, OutboxStatus::Pending).unwrap().unwrap();
        action.attempts = 1;
        assert!(store.update_action(&action).unwrap());
        store.finish_action(id).unwrap();
        action.attempts = 2;
        assert!(!store.update_action(&action).unwrap());
        assert!(store.action(id, OutboxStatus::Pending).unwrap().is_none());
        assert!(store.change_action(id, |_| {}).unwrap().is_none());
    }

    fn is_crm(action: &QueuedAction) -> bool {
        matches!(&action.action, Action::HttpPost { url, .. } if url.contains("crm"))
    }

    #[test]
    fn requeueing_moves_only_matching_dead_letters_up_to_the_bound_and_the_count() {
        let (_dir, store) = store();
        let crm = dead_calls(&store, "https://crm.example.com/hook", 5);
        dead_calls(&store, "https://other.example.com/hook", 2);
        let count = store.count_matching(OutboxStatus::Dead, is_crm).unwrap();
        assert_eq!(count.count, 5);
        assert!(count.complete);
        assert_eq!(count.newest, crm.last().copied());
        // Queued after the count: left alone.
        let later = dead_calls(&store, "https://crm.example.com/late", 1);

        let revive = |action: &mut QueuedAction| {
            action.status = "pending".into();
            action.attempts = 0;
        };
        let first = store.requeue_dead(crm[4], 3, is_crm, revive).unwrap();
        assert_eq!(
            first,
            Requeued {
                requeued: 3,
                more: true
            }
        );
        let second = store.requeue_dead(crm[4], 3, is_crm, revive).unwrap();
        assert_eq!(
            second,
            Requeued {
                requeued: 2,
                more: false
            }
        );
        for id in &crm {
            let action = store.action(*id, OutboxStatus::Pending).unwrap().unwrap();
            assert_eq!((action.attempts, action.status.as_str()), (0, "pending"));
        }
        assert!(
            store
                .action(later[0], OutboxStatus::Dead)
                .unwrap()
                .is_some()
        );
        assert_eq!(
            store
                .count_matching(OutboxStatus::Dead, |_| true)
                .unwrap()
                .count,
            3
        );
    }

    #[test]
    fn a_filtered_page_walks_on_from_where_it_stopped() {
        let (_dir, store) = store();
        let ids = dead_calls(&store, "https://crm.example.com/hook", 4);
        let (page, next) = store
            .actions_matching(OutboxStatus::Dead, None, 3, is_crm)
            .unwrap();
        assert_eq!(page.len(), 3);
        assert_eq!(page[0].id, Some(ids[3]), "newest first");
        let (rest, next) = store
            .actions_matching(OutboxStatus::Dead, next, 3, is_crm)
            .unwrap();
        assert_eq!(
            rest.iter().map(|a| a.id).collect::<Vec<_>>(),
            [Some(ids[0])]
        );
        assert_eq!(next, None);
        let (none, _) = store
            .actions_matching(OutboxStatus::Dead, None, 3, |_| false)
            .unwrap();
        assert!(none.is_empty());
    }
}
