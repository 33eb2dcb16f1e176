//! What the service remembers about each webhook source between restarts: when it last
//! received a request, the SNS subscriptions it was asked to confirm, and the SNS signing
//! certificates it fetched (so that an outage of the certificate host after a restart
//! does not stop verification).
//!
//! One small JSON record per source name, rewritten whenever it changes (at most about
//! once a second for the receive time). It is bookkeeping for `GET /api/sources`, never
//! part of an acknowledgement, so it is written outside the group commit and reaches the
//! disk with the next flush.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{Store, StoreError, keys};

/// The record of one source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRecord {
    /// When a verified request last arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_received_at: Option<Timestamp>,
    /// SNS subscriptions, newest state per topic.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscriptions: Vec<Subscription>,
}

/// An SNS subscription a source was asked to confirm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    /// The topic.
    pub topic_arn: String,
    /// The URL that confirms it (also shown so that it can be confirmed by hand).
    pub subscribe_url: String,
    /// `confirming`, `confirmed`, `failed` or `unsubscribed`.
    pub status: String,
    /// Why confirming failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When the status last changed.
    pub updated_at: Timestamp,
}

impl Store {
    /// Returns every signing certificate kept (URL, PEM).
    pub fn certificates(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut list = Vec::new();
        for entry in self.trees().certificates.iter() {
            let (url, pem) = entry?;
            list.push((String::from_utf8_lossy(&url).into_owned(), pem.to_vec()));
        }
        Ok(list)
    }

    /// Keeps the signing certificate fetched from `url`.
    pub fn put_certificate(&self, url: &str, pem: &[u8]) -> Result<(), StoreError> {
        self.trees().certificates.insert(url.as_bytes(), pem)?;
        Ok(())
    }

    /// Returns the record of `source`, empty if it has none.
    pub fn source_record(&self, source: &str) -> Result<SourceRecord, StoreError> {
        match self.trees().sources.get(source.as_bytes())? {
            Some(value) => serde_json::from_slice(&value).map_err(|error| StoreError::Corrupt {
                tree: keys::SOURCES,
                reason: format!("{source}: {error}"),
            }),
            None => Ok(SourceRecord::default()),
        }
    }

    /// Changes the record of `source` with `change`, atomically.
    pub fn update_source_record(
        &self,
        source: &str,
        change: impl Fn(&mut SourceRecord),
    ) -> Result<(), StoreError> {
        self.trees()
            .sources
            .fetch_and_update(source.as_bytes(), |old| {
                let mut record: SourceRecord = old
                    .and_then(|bytes| serde_json::from_slice(bytes).ok())
                    .unwrap_or_default();
                change(&mut record);
                Some(serde_json::to_vec(&record).expect("source record serializes"))
            })?;
        Ok(())
    }
}
