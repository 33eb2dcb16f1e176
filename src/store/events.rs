//! Reading stored events back: by id, and pages of events newest first, filtered by
//! recipient (through the recipient index), kind, source and time.

use jiff::Timestamp;

use super::{Store, StoreError, keys};
use crate::event::{EmailAddress, Event, EventId, EventKind};

/// Most stored entries one page request looks at before it returns what it found with a
/// cursor, so a filter that matches rarely cannot make one request scan the whole store.
pub const MAX_SCAN: usize = 20_000;

/// A filter over stored events, newest first.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    /// Only events for this address.
    pub recipient: Option<EmailAddress>,
    /// Only events of this kind.
    pub kind: Option<EventKind>,
    /// Only events posted to this source.
    pub source: Option<String>,
    /// Only events received at or after this time.
    pub since: Option<Timestamp>,
    /// Only events received before this time.
    pub until: Option<Timestamp>,
    /// Only events older than this id (the cursor of the previous page).
    pub before: Option<EventId>,
    /// Most events returned.
    pub limit: usize,
}

/// One page of events.
#[derive(Debug)]
pub struct EventPage {
    /// Matching events, newest first.
    pub events: Vec<Event>,
    /// Where the next page starts, if there may be more.
    pub next_cursor: Option<EventId>,
}

impl Store {
    /// Returns the event stored under `id`.
    pub fn event(&self, id: EventId) -> Result<Option<Event>, StoreError> {
        self.trees()
            .events
            .get(id.to_be_bytes())?
            .map(|value| decode_event(id, &value))
            .transpose()
    }

    /// Returns one page of events matching `query`, newest first.
    pub fn events_page(&self, query: &EventQuery) -> Result<EventPage, StoreError> {
        let lower = query.since.map_or(EventId(0), EventId::floor_at);
        let mut upper = query.until.map_or(EventId(u64::MAX), EventId::floor_at);
        if let Some(before) = query.before {
            upper = upper.min(before);
        }
        let limit = query.limit.max(1);
        let mut page = EventPage {
            events: Vec::with_capacity(limit.min(256)),
            next_cursor: None,
        };
        if lower >= upper {
            return Ok(page);
        }
        let mut scanned = 0;
        let mut last_seen = None;
        let keep = |event: &Event| {
            query.kind.is_none_or(|kind| kind == event.kind)
                && query
                    .source
                    .as_deref()
                    .is_none_or(|source| source == event.source)
        };
        if let Some(recipient) = &query.recipient {
            let start = keys::recipient_key(recipient.as_str(), lower);
            let end = keys::recipient_key(recipient.as_str(), upper);
            for entry in self.trees().by_recipient.range(start..end).rev() {
                let (key, kind_code) = entry?;
                let id = keys::id_from_recipient_key(&key)
                    .ok_or_else(|| corrupt(keys::BY_RECIPIENT, "key without an event id"))?;
                scanned += 1;
                last_seen = Some(id);
                // The index value holds the kind: skip other kinds without reading events.
                let kind_matches = query
                    .kind
                    .is_none_or(|kind| kind_code.first() == Some(&kind.code()));
                if kind_matches {
                    if let Some(event) = self.event(id)?.filter(keep) {
                        page.events.push(event);
                    }
                }
                if page.events.len() >= limit || scanned >= MAX_SCAN {
                    break;
                }
            }
        } else {
            let range = lower.to_be_bytes()..upper.to_be_bytes();
            for entry in self.trees().events.range(range).rev() {
                let (key, value) = entry?;
                let id = EventId::from_be_slice(&key)
                    .ok_or_else(|| corrupt(keys::EVENTS, "key is not an event id"))?;
                scanned += 1;
                last_seen = Some(id);
                let event = decode_event(id, &value)?;
                if keep(&event) {
                    page.events.push(event);
                }
                if page.events.len() >= limit || scanned >= MAX_SCAN {
                    break;
                }
            }
        }
        let exhausted_budget = scanned >= MAX_SCAN;
        if page.events.len() >= limit || exhausted_budget {
            page.next_cursor = last_seen;
        }
        Ok(page)
    }

    /// Counts events for `recipient` of `kind` with ids in `from..=to`, from the recipient
    /// index alone.
    pub fn count_recipient_events(
        &self,
        recipient: &str,
        kind: EventKind,
        from: EventId,
        to: EventId,
    ) -> Result<u64, StoreError> {
        let start = keys::recipient_key(recipient, from);
        let end = keys::recipient_key(recipient, to);
        let mut count = 0;
        for entry in self.trees().by_recipient.range(start..=end) {
            let (_, kind_code) = entry?;
            if kind_code.first() == Some(&kind.code()) {
                count += 1;
            }
        }
        Ok(count)
    }
}

/// Decodes a stored event value, setting its id from the key.
pub(crate) fn decode_event(id: EventId, value: &[u8]) -> Result<Event, StoreError> {
    let mut event: Event = serde_json::from_slice(value).map_err(|error| StoreError::Corrupt {
        tree: keys::EVENTS,
        reason: format!("{id}: {error}"),
    })?;
    event.id = Some(id);
    Ok(event)
}

fn corrupt(tree: &'static str, reason: &str) -> StoreError {
    StoreError::Corrupt {
        tree,
        reason: reason.to_owned(),
    }
}
