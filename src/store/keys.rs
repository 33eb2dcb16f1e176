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
//! | `stats` | resolution (1 byte), bucket start in minutes (u64), source | 14 × u64 counts, one per kind, then hard and soft bounces (2 × u64; absent in values written before they were counted) |
//! | `stats` | [`DOMAIN_DAY`] (1 byte), day start in minutes (u64), recipient domain | bounces, hard bounces, soft bounces, complaints (4 × u64) of that domain that day |
//! | `stats` | [`SUPPRESSIONS_HOUR`] (1 byte), hour start in minutes (u64) | suppressions added that hour (u64) |
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

/// Slot of a stats value after the kinds: bounces classed hard.
pub const HARD_BOUNCE_SLOT: usize = EventKind::ALL.len();
/// Slot of a stats value after the kinds: bounces classed soft.
pub const SOFT_BOUNCE_SLOT: usize = HARD_BOUNCE_SLOT + 1;
/// Slots of a stats value: one per kind, then hard and soft bounces. Values written
/// before the bounce split are shorter and decode with zeros there; builds that know
/// only the kinds read the leading slots and ignore the rest, so no schema change is
/// needed either way.
pub const STAT_SLOTS: usize = SOFT_BOUNCE_SLOT + 1;
/// Every count of one stats bucket: per kind, then hard and soft bounces.
pub type StatCounts = [u64; STAT_SLOTS];

/// First byte of the [`STATS`] keys counting bounces and complaints per recipient domain
/// and UTC day (after the [`Resolution`] bytes, so no bucket range reaches them).
pub const DOMAIN_DAY: u8 = 0x10;
/// Slots of a [`DOMAIN_DAY`] value: bounces, hard bounces, soft bounces, complaints.
pub const DOMAIN_SLOTS: usize = 4;
/// Slot of a [`DOMAIN_DAY`] value: every bounce.
pub const DOMAIN_BOUNCES: usize = 0;
/// Slot of a [`DOMAIN_DAY`] value: bounces classed hard.
pub const DOMAIN_HARD: usize = 1;
/// Slot of a [`DOMAIN_DAY`] value: bounces classed soft.
pub const DOMAIN_SOFT: usize = 2;
/// Slot of a [`DOMAIN_DAY`] value: complaints.
pub const DOMAIN_COMPLAINTS: usize = 3;
/// First byte of the [`STATS`] keys counting suppressions added per hour.
pub const SUPPRESSIONS_HOUR: u8 = 0x11;

/// Encodes counts as a stats value (big-endian u64s).
pub fn encode_counts(counts: &[u64]) -> Vec<u8> {
    counts
        .iter()
        .flat_map(|count| count.to_be_bytes())
        .collect()
}

/// Decodes a stats value; missing trailing kinds count zero.
pub fn decode_counts(bytes: &[u8]) -> KindCounts {
    decode_slots(bytes)
}

/// Decodes a stats value into `N` slots; missing trailing slots count zero, extra ones
/// are ignored.
pub fn decode_slots<const N: usize>(bytes: &[u8]) -> [u64; N] {
    let mut counts = [0; N];
    for (slot, chunk) in counts.iter_mut().zip(bytes.chunks_exact(8)) {
        *slot = u64::from_be_bytes(chunk.try_into().expect("chunks_exact yields 8 bytes"));
    }
    counts
}

/// Returns the [`STATS`] key of one recipient domain's counts on the day starting at
/// `day_start` (minutes since the epoch).
pub fn domain_day_key(day_start: u64, domain: &str) -> Vec<u8> {
    let mut key = domain_day_prefix(day_start);
    key.extend_from_slice(domain.as_bytes());
    key
}

/// Returns the prefix of every domain's key for the day starting at `day_start`.
pub fn domain_day_prefix(day_start: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(9 + 32);
    key.push(DOMAIN_DAY);
    key.extend_from_slice(&day_start.to_be_bytes());
    key
}

/// Returns the [`STATS`] key of the suppressions added in the hour starting at
/// `hour_start` (minutes since the epoch).
pub fn suppressions_hour_key(hour_start: u64) -> [u8; 9] {
    let mut key = [SUPPRESSIONS_HOUR; 9];
    key[1..].copy_from_slice(&hour_start.to_be_bytes());
    key
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

    #[test]
    fn counts_written_before_the_bounce_split_read_as_zero_hard_and_soft() {
        let mut old = [0; EventKind::ALL.len()];
        old[EventKind::Bounce.index()] = 3;
        let wide: StatCounts = decode_slots(&encode_counts(&old));
        assert_eq!(wide[EventKind::Bounce.index()], 3);
        assert_eq!((wide[HARD_BOUNCE_SLOT], wide[SOFT_BOUNCE_SLOT]), (0, 0));
        // And a build that knows only the kinds reads a wide value's kinds unchanged.
        let mut new = wide;
        new[HARD_BOUNCE_SLOT] = 2;
        assert_eq!(decode_counts(&encode_counts(&new)), old);
    }

    #[test]
    fn domain_and_suppression_keys_sort_after_every_bucket() {
        let bucket = stats_key(Resolution::Day, u64::MAX - 1, "zzz");
        assert!(domain_day_key(0, "example.com") > bucket);
        assert!(suppressions_hour_key(0).as_slice() > domain_day_key(u64::MAX, "zzz").as_slice());
    }
}
