//! Every sled tree mailwarden keeps, and how its keys and values are laid out.
//!
//! Integers in keys are big-endian so that sled's bytewise order is numeric order.
//! Ids ([`EventId`](crate::event::EventId)) are time-ordered, so a key range over ids is a time range.
//!
//! The events of one request are stored together in blocks (of up to 32) under the first
//! of their consecutive ids: one write per block instead of one per event, which is what
//! makes batched ingestion fast, while reading one event loads only its small block.
//! Dedup keys start with the event's second, so that the keys of one batch land next to
//! each other at the end of the tree rather than all over it; the recipient index is
//! written in sorted runs for the same reason (see `recipients`).
//!
//! | tree | key | value |
//! |---|---|---|
//! | `events` | first event id of a block | block: the events of one request (see `codec`) |
//! | `recipients` | run catalog, and per run: recipient, `0x00`, chunk id | postings (see `recipients`); written by the rules runner |
//! | `dedup` | second of the event (u32, 0 without a time), 12 bytes of a digest of source, kind, recipient and event identity | event id |
//! | `pending` | first event id of a block | number of events (u32): waiting for the rules |
//! | `bodies` | body id | header length (u32), header JSON, request body (events' raw JSON points into it) |
//! | `quarantine` | entry id | quarantine JSON |
//! | `stats` | resolution (1 byte), bucket start in minutes (u64), source | 14 × u64 counts, one per kind |
//! | `evaluations` | event id | evaluation JSON: which rules ran, matched, queued what |
//! | `outbox` | action id | action JSON with its delivery state |
//! | `outbox_dead` | action id | action JSON, dead-lettered |
//! | `alerts` | alert id | alert JSON (sent, logged or folded) |
//! | `alert_throttle` | throttle key | throttle window JSON |
//! | `suppressions` | bare address | suppression JSON |
//! | `suppression_domains` | domain, `0x00`, bare address (and an empty marker key: built) | empty; not backed up, rebuilt when missing |
//! | `sources` | source name | source record JSON: last receive time, SNS subscriptions |
//! | `certificates` | certificate URL | PEM signing certificate fetched from it |
//! | `meta` | name | schema version, event count (u64), last purge (JSON) |

use crate::event::EventKind;

/// Normalized events.
pub const EVENTS: &str = "events";
/// Index of events by recipient, in runs (see `recipients`).
pub const RECIPIENTS: &str = "recipients";
/// The recipient index of schema 2 (one key per event), dropped by the migration to 3.
pub const BY_RECIPIENT_V2: &str = "by_recipient";
/// Deduplication keys of accepted events.
pub const DEDUP: &str = "dedup";
/// Events stored but not yet evaluated by the rules.
pub const PENDING: &str = "pending";
/// Raw request bodies as received.
pub const BODIES: &str = "bodies";
/// Bodies and elements that could not be normalized.
pub const QUARANTINE: &str = "quarantine";
/// Event counts per time bucket, source and kind.
pub const STATS: &str = "stats";
/// Rule evaluation results per event.
pub const EVALUATIONS: &str = "evaluations";
/// Actions queued by rules, with their delivery state.
pub const OUTBOX: &str = "outbox";
/// Actions that will not be retried.
pub const OUTBOX_DEAD: &str = "outbox_dead";
/// Alerts, as sent or logged.
pub const ALERTS: &str = "alerts";
/// Open throttling windows of alerts.
pub const ALERT_THROTTLE: &str = "alert_throttle";
/// Suppressed addresses.
pub const SUPPRESSIONS: &str = "suppressions";
/// Index of suppressed addresses by domain (see `suppressions`).
pub const SUPPRESSION_DOMAINS: &str = "suppression_domains";
/// Per-source bookkeeping (see `sources::SourceRecord`).
pub const SOURCES: &str = "sources";
/// Signing certificates fetched for SNS verification.
pub const CERTIFICATES: &str = "certificates";
/// Store-wide settings such as the schema version.
pub const META: &str = "meta";

/// Key in [`META`] holding the schema version (ASCII digits).
pub const META_SCHEMA_VERSION: &[u8] = b"schema_version";
/// Schema version written by this build: 2 added the compact event encoding (see
/// `codec`), the event count and the purge record; 3 the recipient index in runs and
/// dedup keys that start with the event's second.
pub const SCHEMA_VERSION: u32 = 3;
/// Key in [`META`] holding the number of stored events (u64).
pub const META_EVENT_COUNT: &[u8] = b"event_count";
/// Key in [`META`] holding the last purge (JSON, see `retention::PurgeRecord`).
pub const META_LAST_PURGE: &[u8] = b"last_purge";

/// Decodes a big-endian u32 (a [`PENDING`] value); malformed counts zero.
pub fn decode_u32(value: &[u8]) -> u32 {
    value.get(..4).map_or(0, |bytes| {
        u32::from_be_bytes(bytes.try_into().expect("4 bytes"))
    })
}

/// Decodes a big-endian u64 counter; absent or malformed counts zero.
pub fn decode_count(value: Option<&[u8]>) -> u64 {
    value
        .and_then(|bytes| bytes.try_into().ok())
        .map_or(0, u64::from_be_bytes)
}

/// Time resolution of a [`STATS`] bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Resolution {
    /// One-minute buckets.
    Minute = 1,
    /// One-hour buckets.
    Hour = 2,
    /// One-day buckets (UTC days).
    Day = 3,
}

impl Resolution {
    /// Every resolution, finest first.
    pub const ALL: [Resolution; 3] = [Resolution::Minute, Resolution::Hour, Resolution::Day];

    /// Returns the bucket length in minutes.
    pub fn minutes(self) -> u64 {
        match self {
            Resolution::Minute => 1,
            Resolution::Hour => 60,
            Resolution::Day => 24 * 60,
        }
    }

    /// Returns the start of the bucket holding `minute`.
    pub fn bucket(self, minute: u64) -> u64 {
        minute - minute % self.minutes()
    }
}

/// Returns the [`STATS`] key of one bucket of one source.
pub fn stats_key(resolution: Resolution, bucket_start: u64, source: &str) -> Vec<u8> {
    let mut key = stats_prefix(resolution, bucket_start);
    key.extend_from_slice(source.as_bytes());
    key
}

/// Returns the prefix of every source's key for one bucket.
pub fn stats_prefix(resolution: Resolution, bucket_start: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(9 + 32);
    key.push(resolution as u8);
    key.extend_from_slice(&bucket_start.to_be_bytes());
    key
}

/// Splits a [`STATS`] key into its bucket start and source.
pub fn parse_stats_key(key: &[u8]) -> Option<(u64, &str)> {
    let start = u64::from_be_bytes(key.get(1..9)?.try_into().ok()?);
    let source = std::str::from_utf8(key.get(9..)?).ok()?;
    Some((start, source))
}

/// Per-kind counts of one stats bucket.
pub type KindCounts = [u64; EventKind::ALL.len()];

/// Encodes bucket counts as a stats value.
pub fn encode_counts(counts: &KindCounts) -> Vec<u8> {
    counts
        .iter()
        .flat_map(|count| count.to_be_bytes())
        .collect()
}

/// Decodes a stats value; missing trailing kinds count zero.
pub fn decode_counts(bytes: &[u8]) -> KindCounts {
    let mut counts = [0; EventKind::ALL.len()];
    for (slot, chunk) in counts.iter_mut().zip(bytes.chunks_exact(8)) {
        *slot = u64::from_be_bytes(chunk.try_into().expect("chunks_exact yields 8 bytes"));
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_keys_round_trip() {
        let key = stats_key(Resolution::Hour, Resolution::Hour.bucket(125), "sendpulse");
        assert_eq!(parse_stats_key(&key), Some((120, "sendpulse")));
        let mut counts = [0; EventKind::ALL.len()];
        counts[EventKind::Bounce.index()] = 7;
        assert_eq!(decode_counts(&encode_counts(&counts)), counts);
    }
}
