//! One-time tokens seen recently, for signature schemes that sign a random token with the
//! timestamp (Mailgun): a signature replayed within the timestamp tolerance is refused.
//!
//! Only digests are kept, each until its timestamp would be stale anyway, so the cache
//! holds at most what one tolerance window brings in; a hard cap bounds it against floods
//! (the oldest entries go first; a replay older than the cap is still a duplicate, which
//! dedup catches). A token is reserved when its request is verified and released again if
//! the request then fails to be stored, so the provider's retry of a failed request is
//! not taken for a replay. Tokens live in memory: after a restart, dedup alone catches
//! repeated events.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use sha2::{Digest, Sha256};

/// Most tokens remembered per source.
const MAX_TOKENS: usize = 200_000;

/// Tokens seen by one source.
#[derive(Default)]
pub struct ReplayCache {
    inner: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    /// Digest to expiry (Unix seconds).
    tokens: HashMap<[u8; 32], i64>,
    /// Insertion order, for expiry and the cap.
    order: VecDeque<([u8; 32], i64)>,
}

impl ReplayCache {
    /// Reserves `token` until `expires_at`; `None` if it is already reserved or kept.
    pub fn reserve(
        self: &Arc<Self>,
        token: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Option<Reservation> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut seen = self.inner.lock().expect("replay cache lock");
        seen.expire(now.as_second());
        if seen.tokens.contains_key(&digest) {
            return None;
        }
        while seen.tokens.len() >= MAX_TOKENS {
            let Some((oldest, _)) = seen.order.pop_front() else {
                break;
            };
            seen.tokens.remove(&oldest);
        }
        let expiry = expires_at.as_second();
        seen.tokens.insert(digest, expiry);
        seen.order.push_back((digest, expiry));
        Some(Reservation {
            cache: self.clone(),
            digest,
            kept: false,
        })
    }

    fn release(&self, digest: &[u8; 32]) {
        let mut seen = self.inner.lock().expect("replay cache lock");
        seen.tokens.remove(digest);
        // Its slot in `order` goes when it expires or is popped; a token reserved again
        // meanwhile keeps its new entry because removal goes by digest and expiry.
    }

    /// Returns how many tokens are remembered.
    pub fn len(&self) -> usize {
        self.inner.lock().expect("replay cache lock").tokens.len()
    }

    /// Returns whether no token is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Seen {
    fn expire(&mut self, now: i64) {
        while let Some(&(digest, expiry)) = self.order.front() {
            if expiry > now {
                break;
            }
            self.order.pop_front();
            if self.tokens.get(&digest) == Some(&expiry) {
                self.tokens.remove(&digest);
            }
        }
    }
}

/// A token held for one request; released on drop unless [`Reservation::keep`] is called.
pub struct Reservation {
    cache: Arc<ReplayCache>,
    digest: [u8; 32],
    kept: bool,
}

impl Reservation {
    /// Keeps the token: its request was stored, a second use is a replay.
    pub fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.kept {
            self.cache.release(&self.digest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    #[test]
    fn a_kept_token_is_refused_until_it_expires() {
        let cache = Arc::new(ReplayCache::default());
        cache.reserve("t1", at(400), at(100)).unwrap().keep();
        assert!(cache.reserve("t1", at(400), at(200)).is_none());
        assert!(cache.reserve("t2", at(400), at(200)).is_some());
        // Past its expiry the timestamp check refuses it anyway; the cache forgets it.
        assert!(cache.reserve("t1", at(900), at(401)).is_some());
    }

    #[test]
    fn a_released_token_can_be_used_again() {
        let cache = Arc::new(ReplayCache::default());
        let reservation = cache.reserve("t1", at(400), at(100)).unwrap();
        assert!(cache.reserve("t1", at(400), at(100)).is_none());
        drop(reservation);
        assert!(cache.reserve("t1", at(400), at(100)).is_some());
        assert!(cache.is_empty());
    }
}
