//! What the rules runner reads and writes: the pending blocks, the recipient index,
//! evaluation records and the outbox of actions.
//!
//! The runner takes pending blocks oldest first. It first indexes a block's events by
//! recipient (idempotent, so redoing it after a crash is harmless), then evaluates them,
//! then in one transaction takes the block off the pending queue, stores the evaluation
//! records and queues the actions. A crash before that transaction leaves the block
//! pending (evaluated after restart), after it never evaluates it again.

use sled::Transactional;
use sled::transaction::TransactionError;

use super::events::{Block, BodyCache, block_id, oldest_block};
use super::{Store, StoreError, keys};
use crate::event::{Event, EventId};

/// One evaluated block, ready to be recorded.
#[derive(Debug, Clone)]
pub struct EvaluatedBlock {
    /// First id of the block (its pending key).
    pub block: EventId,
    /// Evaluation records (JSON) of the events some rule matched or failed on.
    pub records: Vec<(EventId, Vec<u8>)>,
    /// Actions to queue (JSON each).
    pub actions: Vec<Vec<u8>>,
}

/// A block waiting for the rules.
#[derive(Debug)]
pub struct PendingBlock {
    /// First id.
    pub block: EventId,
    /// Its events (readable ones; an unreadable event is logged and skipped).
    pub events: Vec<Event>,
}

impl Store {
    /// Returns the oldest pending blocks, up to about `max_events` events in all.
    pub fn pending_blocks(&self, max_events: usize) -> Result<Vec<PendingBlock>, StoreError> {
        let mut blocks = Vec::new();
        let mut total = 0;
        let mut bodies = BodyCache::new(self);
        for entry in self.trees().pending.iter() {
            let (key, _) = entry?;
            let base = block_id(&key)?;
            let mut events = Vec::new();
            if let Some(value) = self.trees().events.get(&key)? {
                let block = Block::parse(&value)?;
                for (index, entry) in block.entries().enumerate() {
                    let id = EventId(base.0 + index as u64);
                    match block.decode(id, entry, &mut bodies) {
                        Ok(event) => events.push(event),
                        Err(error) => {
                            tracing::error!(event = %id, %error, "stored event unreadable; not evaluated")
                        }
                    }
                }
            }
            total += events.len().max(1);
            blocks.push(PendingBlock {
                block: base,
                events,
            });
            if total >= max_events {
                break;
            }
        }
        Ok(blocks)
    }

    /// Returns how many events wait for the rules.
    pub fn pending_count(&self) -> u64 {
        self.trees()
            .pending
            .iter()
            .values()
            .filter_map(Result::ok)
            .map(|count| u64::from(keys::decode_u32(&count)))
            .sum()
    }

    /// Returns whether `id` waits for the rules.
    pub fn is_pending(&self, id: EventId) -> Result<bool, StoreError> {
        let Some((key, _)) = self
            .trees()
            .pending
            .range(..=id.to_be_bytes())
            .next_back()
            .transpose()?
        else {
            return Ok(false);
        };
        let base = block_id(&key)?;
        let Some(block) = self.trees().events.get(&key)? else {
            return Ok(false);
        };
        Ok(id.0 < base.0 + Block::parse(&block)?.len() as u64)
    }

    /// Adds the blocks not yet in the recipient index to it, oldest first, up to about
    /// `max_events`; returns how many events were indexed. Runs ahead of rule evaluation,
    /// so recipient queries find new events even when rules lag behind.
    pub fn index_pending(&self, max_events: usize) -> Result<usize, StoreError> {
        let t = self.trees();
        let after = self.indexed_through();
        let range = (
            std::ops::Bound::Excluded(after.to_be_bytes()),
            std::ops::Bound::Unbounded,
        );
        let mut blocks = Vec::new();
        let mut events = 0;
        for entry in t.events.range::<[u8; 8], _>(range) {
            let (key, value) = entry?;
            events += Block::parse(&value)?.len();
            blocks.push((block_id(&key)?, value));
            if events >= max_events {
                break;
            }
        }
        if blocks.is_empty() {
            return Ok(0);
        }
        let floor = oldest_block(&t.events)?.unwrap_or(EventId(0));
        self.recipients().add_blocks(
            blocks.iter().map(|(base, value)| (*base, value.as_ref())),
            floor,
        )
    }

    /// Records evaluations: takes each block off the pending queue, stores the records and
    /// queues the actions, all in one transaction. Returns the ids given to the actions.
    pub fn record_evaluations(&self, items: &[EvaluatedBlock]) -> Result<Vec<EventId>, StoreError> {
        let t = self.trees();
        let result = (&t.pending, &t.evaluations, &t.outbox).transaction(
            |(pending, evaluations, outbox)| {
                let mut action_ids = Vec::new();
                for item in items {
                    // Already evaluated (a concurrent replay of the queue): skip it whole.
                    if pending.remove(&item.block.to_be_bytes())?.is_none() {
                        continue;
                    }
                    for (id, record) in &item.records {
                        evaluations.insert(&id.to_be_bytes(), record.as_slice())?;
                    }
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

    /// Queues actions outside an evaluation (replays, digests).
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

    /// Returns the evaluation record of `id`, if some rule matched or failed on it.
    pub fn evaluation(&self, id: EventId) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .trees()
            .evaluations
            .get(id.to_be_bytes())?
            .map(|value| value.to_vec()))
    }
}
