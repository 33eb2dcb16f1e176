//! Reads for the console's overview: counts over a period without scanning events.
//!
//! - Event counts come from the `stats` buckets (per source, kind and minute, hour or
//!   day, with hard and soft bounces split out), read bucket by bucket.
//! - Bounces and complaints per recipient domain come from per-day domain counters
//!   written at commit time; a view reads at most [`MAX_DOMAIN_KEYS`] of them.
//! - Suppressions added per hour are counted when an entry is added (not for entries
//!   added before this counter existed).
//! - Alerts, dead letters and quarantine entries are keyed by time-ordered ids, so a
//!   period is a key range; those counts (and the outbox backlog, which has no time
//!   order that matters) stop at a cap and say so, instead of walking a huge tree.

use jiff::Timestamp;

use super::keys::{self, Resolution, StatCounts};
use super::{Store, StoreError};
use crate::event::EventId;

/// Most domain counters one top-domains query reads (one per domain and day).
pub const MAX_DOMAIN_KEYS: usize = 20_000;

/// One stats bucket of one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatBucket {
    /// Bucket start, in minutes since the epoch.
    pub start_minute: u64,
    /// Source the events were posted to.
    pub source: String,
    /// Counts per kind, then hard and soft bounces.
    pub counts: StatCounts,
}

/// Bounces and complaints of one recipient domain over a period.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DomainCounts {
    /// The recipient domain.
    pub domain: String,
    /// Every bounce.
    pub bounces: u64,
    /// Bounces classed hard.
    pub hard: u64,
    /// Bounces classed soft.
    pub soft: u64,
    /// Complaints.
    pub complaints: u64,
}

/// The domains with the most bounces in a period.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopDomains {
    /// Most bounces first (then by name).
    pub domains: Vec<DomainCounts>,
    /// Set when [`MAX_DOMAIN_KEYS`] counters were read and some days were left out.
    pub partial: bool,
}

/// A count that stops at a cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounded {
    /// What was counted (at most the cap).
    pub count: u64,
    /// Whether counting stopped at the cap (there may be more).
    pub capped: bool,
}

/// The id-keyed trees whose entries the overview counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// Alert records (sent, logged or folded).
    Alerts,
    /// Dead-lettered actions, by the time they were queued.
    DeadLetters,
    /// Quarantine entries.
    Quarantine,
}

impl Store {
    /// Returns the `resolution` buckets of every source whose start lies in
    /// `from_minute..to_minute` (minutes since the epoch), in time order.
    pub fn stat_buckets(
        &self,
        resolution: Resolution,
        from_minute: u64,
        to_minute: u64,
    ) -> Result<Vec<StatBucket>, StoreError> {
        let start = keys::stats_prefix(resolution, resolution.bucket(from_minute));
        let end = keys::stats_prefix(resolution, to_minute);
        let mut buckets = Vec::new();
        for entry in self.trees().stats.range(start..end) {
            let (key, value) = entry?;
            let Some((start_minute, source)) = keys::parse_stats_key(&key) else {
                continue;
            };
            buckets.push(StatBucket {
                start_minute,
                source: source.to_owned(),
                counts: keys::decode_slots(&value),
            });
        }
        Ok(buckets)
    }

    /// Returns the `limit` recipient domains with the most bounces on the UTC days
    /// starting in `from_minute..to_minute`.
    pub fn top_bounce_domains(
        &self,
        from_minute: u64,
        to_minute: u64,
        limit: usize,
    ) -> Result<TopDomains, StoreError> {
        let start = keys::domain_day_prefix(Resolution::Day.bucket(from_minute));
        let end = keys::domain_day_prefix(to_minute);
        let mut sums: std::collections::HashMap<String, [u64; keys::DOMAIN_SLOTS]> =
            std::collections::HashMap::new();
        let mut partial = false;
        // Newest days first: if the cap is reached, the days left out are the oldest.
        for (read, entry) in self.trees().stats.range(start..end).rev().enumerate() {
            if read >= MAX_DOMAIN_KEYS {
                partial = true;
                break;
            }
            let (key, value) = entry?;
            let domain = String::from_utf8_lossy(key.get(9..).unwrap_or_default());
            let counts: [u64; keys::DOMAIN_SLOTS] = keys::decode_slots(&value);
            let sum = sums.entry(domain.into_owned()).or_default();
            for (total, add) in sum.iter_mut().zip(counts) {
                *total += add;
            }
        }
        let mut domains: Vec<DomainCounts> = sums
            .into_iter()
            .filter(|(_, counts)| counts[keys::DOMAIN_BOUNCES] > 0)
            .map(|(domain, counts)| DomainCounts {
                domain,
                bounces: counts[keys::DOMAIN_BOUNCES],
                hard: counts[keys::DOMAIN_HARD],
                soft: counts[keys::DOMAIN_SOFT],
                complaints: counts[keys::DOMAIN_COMPLAINTS],
            })
            .collect();
        domains.sort_by(|a, b| b.bounces.cmp(&a.bounces).then(a.domain.cmp(&b.domain)));
        domains.truncate(limit);
        Ok(TopDomains { domains, partial })
    }

    /// Returns how many suppressions were added in the hours starting in
    /// `from_minute..to_minute`.
    pub fn suppressions_added(&self, from_minute: u64, to_minute: u64) -> Result<u64, StoreError> {
        let start = keys::suppressions_hour_key(Resolution::Hour.bucket(from_minute));
        let end = keys::suppressions_hour_key(to_minute);
        let mut total = 0;
        for entry in self.trees().stats.range(start..end) {
            let (_, value) = entry?;
            total += keys::decode_count(Some(&value));
        }
        Ok(total)
    }

    /// Counts one suppression added at `at` (in its hour's counter).
    pub(crate) fn count_suppression_added(&self, at: Timestamp) -> Result<(), StoreError> {
        let minute = (at.as_second().max(0) / 60) as u64;
        let key = keys::suppressions_hour_key(Resolution::Hour.bucket(minute));
        self.trees().stats.update_and_fetch(key, |old| {
            let count = keys::decode_count(old) + 1;
            Some(count.to_be_bytes().to_vec())
        })?;
        Ok(())
    }

    /// Counts the entries of `which` created in `from..to`, stopping at `cap`.
    pub fn count_created_between(
        &self,
        which: Counted,
        from: Timestamp,
        to: Timestamp,
        cap: u64,
    ) -> Result<Bounded, StoreError> {
        let trees = self.trees();
        let tree = match which {
            Counted::Alerts => &trees.alerts,
            Counted::DeadLetters => &trees.outbox_dead,
            Counted::Quarantine => &trees.quarantine,
        };
        let range = EventId::floor_at(from).to_be_bytes()..EventId::floor_at(to).to_be_bytes();
        bounded(tree.range(range).keys(), cap)
    }

    /// Counts the actions waiting in the outbox (pending or retrying), stopping at `cap`.
    pub fn count_outbox_pending(&self, cap: u64) -> Result<Bounded, StoreError> {
        bounded(self.trees().outbox.iter().keys(), cap)
    }
}

fn bounded(
    keys: impl Iterator<Item = sled::Result<sled::IVec>>,
    cap: u64,
) -> Result<Bounded, StoreError> {
    let mut count = 0;
    for key in keys {
        key?;
        if count >= cap {
            return Ok(Bounded {
                count,
                capped: true,
            });
        }
        count += 1;
    }
    Ok(Bounded {
        count,
        capped: false,
    })
}
