//! What a rule can ask for. Scripts never do IO: each call records an [`Action`], and the
//! actions of one event are queued in the outbox together with its evaluation record.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::event::EventId;

/// One requested action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    /// Put an address on the suppression list.
    Suppress {
        /// Bare address.
        address: String,
        /// Why.
        reason: String,
        /// How long, in seconds; `None` is permanent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ttl_seconds: Option<i64>,
    },
    /// Take an address off the suppression list.
    Unsuppress {
        /// Bare address.
        address: String,
        /// Why.
        reason: String,
    },
    /// Send an alert e-mail.
    Alert {
        /// Recipients; empty means the configured default recipients.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        to: Vec<String>,
        /// Subject (prefixed with `[mailwarden]` when sent).
        subject: String,
        /// Plain-text body.
        body: String,
        /// Throttling key: alerts with the same key inside `once_per_seconds` are folded.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
        /// Throttling window, in seconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        once_per_seconds: Option<i64>,
    },
    /// POST JSON to a URL.
    HttpPost {
        /// Target URL.
        url: String,
        /// JSON body.
        body: Value,
        /// Extra request headers.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        headers: BTreeMap<String, String>,
    },
}

impl Action {
    /// Short name of the action type.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Suppress { .. } => "suppress",
            Action::Unsuppress { .. } => "unsuppress",
            Action::Alert { .. } => "alert",
            Action::HttpPost { .. } => "http_post",
        }
    }
}

/// An action as queued in the outbox, with where it came from and its delivery state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueuedAction {
    /// Set from the key when read back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<EventId>,
    /// Event whose evaluation asked for it (none for manual retries of replays).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<EventId>,
    /// Rule that asked for it.
    pub rule: String,
    /// What to do.
    pub action: Action,
    /// When it was queued.
    pub created_at: Timestamp,
    /// `pending`, `done` or `dead`.
    pub status: String,
    /// Attempts so far.
    #[serde(default)]
    pub attempts: u32,
    /// Earliest time of the next attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<Timestamp>,
    /// Result of the last attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// For alerts: the throttling decision was made (to send), so retries do not count
    /// the alert again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub throttle_checked: bool,
}

impl QueuedAction {
    /// A new pending action.
    pub fn new(
        event_id: Option<EventId>,
        rule: &str,
        action: Action,
        now: Timestamp,
    ) -> QueuedAction {
        QueuedAction {
            id: None,
            event_id,
            rule: rule.to_owned(),
            action,
            created_at: now,
            status: "pending".to_owned(),
            attempts: 0,
            next_attempt_at: None,
            last_error: None,
            throttle_checked: false,
        }
    }
}
