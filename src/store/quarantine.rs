//! Quarantine: bodies and batch elements that could not be turned into events, with the
//! reason, kept so that nothing a provider sent is lost and an operator can look at it.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{Store, StoreError, keys};
use crate::event::EventId;

/// One quarantined body or element.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QuarantineEntry {
    /// Set from the key when read back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<EventId>,
    /// Source it was posted to.
    pub source: String,
    /// When it was received.
    pub received_at: Timestamp,
    /// What was wrong.
    pub error: String,
    /// Stored request body it came from.
    pub body_id: EventId,
    /// Position of the element in the batch; absent when the whole body was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// The element's JSON; absent when the whole body was refused (see `body_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub element: Option<Box<serde_json::value::RawValue>>,
}

impl Store {
    /// Returns quarantine entry `id`, if it is still kept.
    pub fn quarantine_entry(&self, id: EventId) -> Result<Option<QuarantineEntry>, StoreError> {
        let Some(value) = self.trees().quarantine.get(id.to_be_bytes())? else {
            return Ok(None);
        };
        let mut entry: QuarantineEntry =
            serde_json::from_slice(&value).map_err(|error| StoreError::Corrupt {
                tree: keys::QUARANTINE,
                reason: format!("{id}: {error}"),
            })?;
        entry.id = Some(id);
        Ok(Some(entry))
    }

    /// Returns up to `limit` quarantine entries older than `before`, newest first.
    pub fn quarantine_page(
        &self,
        before: Option<EventId>,
        limit: usize,
    ) -> Result<(Vec<QuarantineEntry>, Option<EventId>), StoreError> {
        let upper = before.unwrap_or(EventId(u64::MAX)).to_be_bytes();
        let mut entries = Vec::new();
        for entry in self.trees().quarantine.range(..upper).rev() {
            let (key, value) = entry?;
            let id = EventId::from_be_slice(&key).ok_or_else(|| StoreError::Corrupt {
                tree: keys::QUARANTINE,
                reason: "key is not an id".into(),
            })?;
            let mut entry: QuarantineEntry =
                serde_json::from_slice(&value).map_err(|error| StoreError::Corrupt {
                    tree: keys::QUARANTINE,
                    reason: format!("{id}: {error}"),
                })?;
            entry.id = Some(id);
            entries.push(entry);
            if entries.len() >= limit.max(1) {
                let next = Some(id);
                return Ok((entries, next));
            }
        }
        Ok((entries, None))
    }
}
