//! Work shared by several nodes: events waiting for the rules are claimed by one node at
//! a time, whole recipients at once, under a lease (see `mw_claim_pending` in the schema).
//!
//! A node claims, evaluates its events in id order, and finishes them; a node that dies
//! holding a claim holds it only until the lease runs out, and the next node to claim
//! takes the events over. Finishing only removes events the node still holds, so a node
//! that was too slow (its lease ran out and another node took over) cannot drop work it
//! no longer owns.

use std::time::Duration;

use super::events::{from_sql_id, to_sql_id};
use super::{PgError, PgStore, sql_error};
use crate::event::EventId;

/// Events claimed for one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The claimed events, oldest first (so each recipient's in order).
    pub events: Vec<EventId>,
}

impl PgStore {
    /// Claims up to about `max_events` waiting events (whole recipients, so a little
    /// more is possible) for `node`, for `lease`.
    pub async fn claim_pending(
        &self,
        node: &str,
        max_events: i32,
        lease: Duration,
    ) -> Result<Claim, PgError> {
        let client = self.client().await?;
        let lease_text = format!("{} milliseconds", lease.as_millis());
        let rows = client
            .query(
                "SELECT event_id FROM mw_claim_pending($1, $2, $3::text::interval)",
                &[&node, &max_events, &lease_text],
            )
            .await
            .map_err(|e| sql_error("claiming events for the rules", e))?;
        let mut events: Vec<EventId> = rows.iter().map(|row| from_sql_id(row.get(0))).collect();
        events.sort_unstable();
        Ok(Claim { events })
    }

    /// Marks `events` evaluated by `node`; returns how many it still held (the others
    /// were taken over after its lease ran out, and stay for their new owner).
    pub async fn finish_pending(&self, node: &str, events: &[EventId]) -> Result<u64, PgError> {
        let client = self.client().await?;
        let ids: Vec<i64> = events.iter().copied().map(to_sql_id).collect();
        client
            .execute(
                "DELETE FROM mw_pending WHERE event_id = ANY($1) AND claimed_by = $2",
                &[&ids, &node],
            )
            .await
            .map_err(|e| sql_error("finishing evaluated events", e))
    }

    /// Events waiting for the rules, claimed or not.
    pub async fn pending_count(&self) -> Result<i64, PgError> {
        let client = self.client().await?;
        Ok(client
            .query_one("SELECT count(*) FROM mw_pending", &[])
            .await
            .map_err(|e| sql_error("counting waiting events", e))?
            .get(0))
    }
}
