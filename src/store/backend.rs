//! The store's operations as both backends provide them: the embedded sled store
//! ([`Store`]) and PostgreSQL ([`PgStore`]), so that one conformance suite
//! (`tests/e2e/conformance.rs`) holds every behaviour to both.
//!
//! It grows one group of operations at a time as the PostgreSQL backend does (issue 15);
//! the service itself still calls [`Store`] directly until every group is here. Today:
//! the suppression list, and storing and reading events.

use std::collections::HashMap;
use std::future::Future;

use jiff::Timestamp;

use super::postgres::PgStore;
use super::suppressions::{SuppressOutcome, SuppressRequest, Suppression, SuppressionStatus};
use super::{IngestBatch, IngestOutcome, Store, StoreError};
use crate::event::{Event, EventId};

/// Stored events: a request's batch committed at once (a `2xx` only after it is
/// durable), its retries recognized as duplicates, each event read back as stored.
pub trait EventLog: Send + Sync {
    /// A new id, for the body of a request about to be committed.
    fn next_id(&self) -> EventId;

    /// Stores a request's body, events and quarantine entries; returns once durable.
    fn commit(
        &self,
        batch: IngestBatch,
    ) -> impl Future<Output = Result<IngestOutcome, StoreError>> + Send;

    /// The stored event `id`.
    fn event(&self, id: EventId) -> impl Future<Output = Result<Option<Event>, StoreError>> + Send;
}

impl EventLog for Store {
    fn next_id(&self) -> EventId {
        Store::next_id(self)
    }

    async fn commit(&self, batch: IngestBatch) -> Result<IngestOutcome, StoreError> {
        Store::commit(self, batch).await
    }

    async fn event(&self, id: EventId) -> Result<Option<Event>, StoreError> {
        Store::event(self, id)
    }
}

impl EventLog for PgStore {
    fn next_id(&self) -> EventId {
        PgStore::next_id(self)
    }

    async fn commit(&self, batch: IngestBatch) -> Result<IngestOutcome, StoreError> {
        PgStore::commit(self, batch).await
    }

    async fn event(&self, id: EventId) -> Result<Option<Event>, StoreError> {
        PgStore::event(self, id).await
    }
}

/// The suppression list: one entry per address, extended or upgraded but never
/// shortened by a new suppression, lifted with a reason, its changes kept.
pub trait SuppressionList: Send + Sync {
    /// The entry of `address` (normalized), in force or not.
    fn suppression(
        &self,
        address: &str,
    ) -> impl Future<Output = Result<Option<Suppression>, StoreError>> + Send;

    /// Suppresses an address; a newly added entry records `created_at` (clamped to
    /// `now`) as when it was first suppressed.
    fn suppress_since(
        &self,
        request: &SuppressRequest,
        created_at: Option<Timestamp>,
        now: Timestamp,
    ) -> impl Future<Output = Result<(Suppression, SuppressOutcome), StoreError>> + Send;

    /// What decides whether each of `addresses` is suppressed (the bulk check before
    /// sending); addresses without an entry are left out.
    fn statuses(
        &self,
        addresses: &[String],
    ) -> impl Future<Output = Result<HashMap<String, SuppressionStatus>, StoreError>> + Send;

    /// Lifts the suppression of `address`; returns the entry if it was in force.
    fn unsuppress(
        &self,
        address: &str,
        by: &str,
        reason: &str,
        now: Timestamp,
    ) -> impl Future<Output = Result<Option<Suppression>, StoreError>> + Send;
}

impl SuppressionList for Store {
    async fn suppression(&self, address: &str) -> Result<Option<Suppression>, StoreError> {
        Store::suppression(self, address)
    }

    async fn statuses(
        &self,
        addresses: &[String],
    ) -> Result<HashMap<String, SuppressionStatus>, StoreError> {
        let mut found = HashMap::new();
        for address in addresses {
            let key = self.suppression_key(address).into_owned();
            if let Some(status) = self.suppression_status(&key)? {
                found.insert(key, status);
            }
        }
        Ok(found)
    }

    async fn suppress_since(
        &self,
        request: &SuppressRequest,
        created_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<(Suppression, SuppressOutcome), StoreError> {
        Store::suppress_since(self, request, created_at, now)
    }

    async fn unsuppress(
        &self,
        address: &str,
        by: &str,
        reason: &str,
        now: Timestamp,
    ) -> Result<Option<Suppression>, StoreError> {
        Store::unsuppress(self, address, by, reason, now)
    }
}

impl SuppressionList for PgStore {
    async fn suppression(&self, address: &str) -> Result<Option<Suppression>, StoreError> {
        Ok(PgStore::suppression(self, address).await?)
    }

    async fn statuses(
        &self,
        addresses: &[String],
    ) -> Result<HashMap<String, SuppressionStatus>, StoreError> {
        Ok(PgStore::suppression_statuses(self, addresses).await?)
    }

    async fn suppress_since(
        &self,
        request: &SuppressRequest,
        created_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<(Suppression, SuppressOutcome), StoreError> {
        Ok(PgStore::suppress_since(self, request, created_at, now).await?)
    }

    async fn unsuppress(
        &self,
        address: &str,
        by: &str,
        reason: &str,
        now: Timestamp,
    ) -> Result<Option<Suppression>, StoreError> {
        Ok(PgStore::unsuppress(self, address, by, reason, now).await?)
    }
}
