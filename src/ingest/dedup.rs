//! Deduplication keys: what makes a provider's retry of an event the same event.

use sha2::{Digest, Sha256};

use super::body::outside_strings;
use crate::event::Event;

/// Returns the dedup key of an event: the provider's event id when it has one that is
/// unique per event, else a hash of the single event's JSON with insignificant whitespace
/// removed; always combined with source, kind (with the provider's event name and the
/// bounce class) and recipient (so a batch split per
/// recipient yields distinct keys); 4 bytes of the event's second (see [`time_prefix`]),
/// then 12 of the digest.
/// The event time goes in with the id as well: a retry
/// repeats both, while a provider (or its documentation sample) that reuses an id for
/// different events at different times does not lose any of them.
pub fn dedup_key(event: &Event) -> [u8; 16] {
    let mut hasher = Sha256::new();
    hasher.update(event.source.as_bytes());
    hasher.update([0]);
    hasher.update([event.kind.code()]);
    // The provider's own name for the event: a retry repeats it, while two events of one
    // kind that a provider names differently (SendGrid's `unsubscribe` and
    // `group_unsubscribe`) stay apart.
    hasher.update(event.provider_event.as_bytes());
    hasher.update([0]);
    // A bounce's class is part of what it is: SendGrid's documented `bounce` and
    // `blocked` samples share one event id.
    if let Some(class) = event.bounce_class {
        hasher.update([b'b', class.code()]);
    }
    hasher.update(event.recipient.as_str().as_bytes());
    hasher.update([0]);
    match &event.provider_event_id {
        Some(id) => {
            hasher.update(b"id\0");
            hasher.update(id.as_bytes());
            hasher.update([0]);
            if let Some(at) = event.occurred_at {
                hasher.update(at.as_nanosecond().to_be_bytes());
            }
        }
        None => {
            hasher.update(b"json\0");
            hash_compact_json(&mut hasher, event.raw.get());
        }
    }
    let digest = hasher.finalize();
    let mut key = [0; 16];
    key[..4].copy_from_slice(&time_prefix(event.occurred_at));
    key[4..].copy_from_slice(&digest[..12]);
    key
}

/// The first 4 bytes of a dedup key: the second the event occurred (plus one, so that 0
/// means no time), big-endian. A retry repeats the time, and the events of one batch
/// have nearly the same time, so their keys sit next to each other at the end of the
/// dedup tree instead of all over it, which keeps inserting them cheap. Times outside
/// 1970..2106 count as no time.
pub fn time_prefix(occurred_at: Option<jiff::Timestamp>) -> [u8; 4] {
    occurred_at
        .and_then(|at| u32::try_from(at.as_second().checked_add(1)?).ok())
        .unwrap_or(0)
        .to_be_bytes()
}

/// Feeds `json` to the hasher without the whitespace between tokens, so a provider that
/// re-serializes a retry with other indentation still gets the same key.
fn hash_compact_json(hasher: &mut Sha256, json: &str) {
    let bytes = json.as_bytes();
    let mut start = 0;
    outside_strings(bytes, |index, byte| {
        if byte.is_ascii_whitespace() {
            hasher.update(&bytes[start..index]);
            start = index + 1;
        }
    });
    hasher.update(&bytes[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_hash_ignores_formatting_but_not_content() {
        let hash = |text: &str| {
            let mut hasher = Sha256::new();
            hash_compact_json(&mut hasher, text);
            hasher.finalize()
        };
        assert_eq!(
            hash("{\"a\": 1,\n \"b\": \"x y\"}"),
            hash("{\"a\":1,\"b\":\"x y\"}")
        );
        assert_ne!(hash("{\"b\": \"x y\"}"), hash("{\"b\": \"xy\"}"));
        assert_ne!(hash("{\"b\": \"x\\\" y\"}"), hash("{\"b\": \"x\\\"y\"}"));
    }
}
