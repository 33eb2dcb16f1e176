//! What the rules runner reads and writes: the pending queue, evaluation records and the
//! outbox of actions.
//!
//! Marking an event evaluated, recording what the rules did and queueing their actions
//! happen in one transaction, so a crash leaves either all of it or none of it (and the
//! event still pending, to be evaluated again after restart, once).

use sled::Transactional;
use sled::transaction::TransactionError;

use super::{Store, StoreError, keys};
use crate::event::EventId;

/// One evaluated event, ready to be recorded.
#[derive(Debug, Clone)]
pub struct EvaluatedEvent {
    /// The event.
    pub id: EventId,
    /// Evaluation record (JSON).
    pub record: Vec<u8>,
    /// Actions to queue (JSON each).
    pub actions: Vec<Vec<u8>>,
}

impl Store {
    /// Returns up to `limit` ids of events waiting for the rules, oldest first.
    pub fn pending(&self, limit: usize) -> Result<Vec<EventId>, StoreError> {
        let mut ids = Vec::with_capacity(limit.min(1024));
        for entry in self.trees().pending.iter().keys().take(limit) {
            let key = entry?;
            ids.push(
                EventId::from_be_slice(&key).ok_or_else(|| StoreError::Corrupt {
                    tree: keys::PENDING,
                    reason: "key is not an event id".into(),
                })?,
            );
        }
        Ok(ids)
    }

    /// Returns how many events wait for the rules.
    pub fn pending_count(&self) -> usize {
        self.trees().pending.len()
    }

    /// Returns whether `id` waits for the rules.
    pub fn is_pending(&self, id: EventId) -> Result<bool, StoreError> {
        Ok(self.trees().pending.contains_key(id.to_be_bytes())?)
    }

    /// Records evaluations: removes each event from the pending queue, stores its record
    /// and queues its actions, all in one transaction. Returns the ids given to the actions.
    pub fn record_evaluations(&self, items: &[EvaluatedEvent]) -> Result<Vec<EventId>, StoreError> {
        let t = self.trees();
        let result = (&t.pending, &t.evaluations, &t.outbox).transaction(
            |(pending, evaluations, outbox)| {
                let mut action_ids = Vec::new();
                for item in items {
                    let key = item.id.to_be_bytes();
                    // Already evaluated (another runner or a replayed batch): skip it whole.
                    if pending.remove(&key)?.is_none() {
                        continue;
                    }
                    evaluations.insert(&key, item.record.as_slice())?;
                    for action in &item.actions {
                        let id = self.next_id();
                        outbox.insert(&id.to_be_bytes(), action.as_slice())?;
                        action_ids.push(id);
                    }
                }
                Ok(action_ids)
            },
        );
        result.map_err(|error| match error {
            TransactionError::Abort(()) => StoreError::Commit("evaluation aborted".into()),
            TransactionError::Storage(error) => StoreError::Sled(error),
        })
    }

    /// Queues actions outside an evaluation (replays, manual retries).
    pub fn queue_actions(&self, actions: &[Vec<u8>]) -> Result<Vec<EventId>, StoreError> {
        let mut batch = sled::Batch::default();
        let mut ids = Vec::with_capacity(actions.len());
        for action in actions {
            let id = self.next_id();
            batch.insert(&id.to_be_bytes(), action.as_slice());
            ids.push(id);
        }
        self.trees().outbox.apply_batch(batch)?;
        Ok(ids)
    }

    /// Returns the evaluation record of `id`, if it was evaluated.
    pub fn evaluation(&self, id: EventId) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .trees()
            .evaluations
            .get(id.to_be_bytes())?
            .map(|value| value.to_vec()))
    }

    /// Returns the ids of stored events between `from` and `to` (inclusive), oldest
    /// first, at most `limit`.
    pub fn event_ids_between(
        &self,
        from: EventId,
        to: EventId,
        limit: usize,
    ) -> Result<Vec<EventId>, StoreError> {
        let mut ids = Vec::new();
        for entry in self
            .trees()
            .events
            .range(from.to_be_bytes()..=to.to_be_bytes())
            .keys()
            .take(limit)
        {
            let key = entry?;
            if let Some(id) = EventId::from_be_slice(&key) {
                ids.push(id);
            }
        }
        Ok(ids)
    }
}
