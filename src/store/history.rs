//! History queries for rules: how often something happened to an address, and counts per
//! kind over a time window from the stats buckets (no event scans).

use std::ops::ControlFlow;

use jiff::Timestamp;

use super::keys::{self, KindCounts, Resolution};
use super::{Store, StoreError};
use crate::event::{EventId, EventKind};

/// Most matching events `count_events` reads for one address (newest first).
pub const MAX_HISTORY_SCAN: usize = 2_000;

impl Store {
    /// Counts events of `kind` for `recipient` that were stored no later than `up_to` and
    /// occurred (or, without a provider time, were received) inside `from..=to`.
    pub fn count_events_in_window(
        &self,
        recipient: &str,
        kind: EventKind,
        up_to: EventId,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<u64, StoreError> {
        let mut count = 0;
        let mut read = 0;
        // The index holds each event's kind, so other kinds are skipped without reading
        // events; only reads of matching events are capped.
        self.recipients()
            .visit(recipient, EventId(0), up_to, |id, found| {
                if found != kind {
                    return Ok(ControlFlow::Continue(()));
                }
                read += 1;
                if read > MAX_HISTORY_SCAN {
                    return Ok(ControlFlow::Break(()));
                }
                if let Some(event) = self.event(id)? {
                    let at = event.occurred_at.unwrap_or(event.received_at);
                    if from <= at && at <= to {
                        count += 1;
                    }
                }
                Ok(ControlFlow::Continue(()))
            })?;
        Ok(count)
    }

    /// Sums the per-kind counts of events received in `from..=to`, for one source or all.
    /// The window is widened to whole buckets: minutes for windows up to 3 hours, hours up
    /// to 7 days, days beyond.
    pub fn stats_between(
        &self,
        source: Option<&str>,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<KindCounts, StoreError> {
        let from_minute = (from.as_second().max(0) / 60) as u64;
        let to_minute = (to.as_second().max(0) / 60) as u64;
        let span = to_minute.saturating_sub(from_minute);
        let resolution = if span <= 3 * 60 {
            Resolution::Minute
        } else if span <= 7 * 24 * 60 {
            Resolution::Hour
        } else {
            Resolution::Day
        };
        let start = keys::stats_prefix(resolution, resolution.bucket(from_minute));
        let end = keys::stats_prefix(resolution, resolution.bucket(to_minute) + 1);
        let mut total = [0; EventKind::ALL.len()];
        for entry in self.trees().stats.range(start..end) {
            let (key, value) = entry?;
            let Some((_, key_source)) = keys::parse_stats_key(&key) else {
                continue;
            };
            if source.is_some_and(|wanted| wanted != key_source) {
                continue;
            }
            for (sum, add) in total.iter_mut().zip(keys::decode_counts(&value)) {
                *sum += add;
            }
        }
        Ok(total)
    }
}
