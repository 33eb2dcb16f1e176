//! The suppression list: one entry per address, with where it came from, when it expires
//! and a history of changes. Addresses are keyed in their normalized form (domain
//! lower-cased, local part exact), so lookups are a single point read.

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

impl Store {
    /// Returns the entry for `address` (normalized), in force or not.
    pub fn suppression(&self, address: &str) -> Result<Option<Suppression>, StoreError> {
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
