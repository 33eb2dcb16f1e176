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

/// The events of one request, stored as one value: a u32 count, then for each event a
/// u32 length and the event's JSON. Event `i` has the block's first id plus `i`.
#[derive(Clone, Copy)]
pub struct Block<'a> {
    bytes: &'a [u8],
}

impl<'a> Block<'a> {
    /// Reads a stored block.
    pub fn new(bytes: &'a [u8]) -> Block<'a> {
        Block { bytes }
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.bytes.get(..4).map_or(0, |b| {
            u32::from_be_bytes(b.try_into().expect("4 bytes")) as usize
        })
    }

    /// Whether the block holds no event.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The JSON of every event, in order.
    pub fn entries(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let bytes = self.bytes;
        let count = self.len();
        let mut offset = 4;
        (0..count).map_while(move |_| {
            let len = bytes.get(offset..offset + 4)?;
            let len = u32::from_be_bytes(len.try_into().ok()?) as usize;
            let entry = bytes.get(offset + 4..offset + 4 + len)?;
            offset += 4 + len;
            Some(entry)
        })
    }

    /// The JSON of event `index`.
    pub fn get(&self, index: usize) -> Option<&'a [u8]> {
        self.entries().nth(index)
    }

    /// Encodes events' JSON as a block.
    pub fn encode<'e>(events: impl ExactSizeIterator<Item = &'e [u8]>) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + events.len() * 700);
        out.extend_from_slice(&(events.len() as u32).to_be_bytes());
        for event in events {
            out.extend_from_slice(&(event.len() as u32).to_be_bytes());
            out.extend_from_slice(event);
        }
        out
    }
}

impl Store {
    /// Returns the event stored under `id`.
    pub fn event(&self, id: EventId) -> Result<Option<Event>, StoreError> {
        let Some((key, block)) = self
            .trees()
            .events
            .range(..=id.to_be_bytes())
            .next_back()
            .transpose()?
        else {
            return Ok(None);
        };
        let base = block_id(&key)?;
        let index = (id.0 - base.0) as usize;
        match Block::new(&block).get(index) {
            Some(json) => decode_event(id, json).map(Some),
            None => Ok(None),
        }
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
        let full =
            |page: &EventPage, scanned: usize| page.events.len() >= limit || scanned >= MAX_SCAN;
        if let Some(recipient) = &query.recipient {
            // Newest first: blocks the rules runner has not indexed yet (always the newest),
            // then the recipient index.
            let mut seen = std::collections::HashSet::new();
            let needle = format!(
                "\"recipient\":{}",
                serde_json::to_string(recipient.as_str()).unwrap_or_default()
            );
            // Only blocks past the indexed watermark need a scan.
            let after = self.indexed_through();
            let unindexed = (
                std::ops::Bound::Excluded(after.to_be_bytes()),
                std::ops::Bound::Unbounded,
            );
            let pending: Vec<EventId> = self
                .trees()
                .pending
                .range::<[u8; 8], _>(unindexed)
                .keys()
                .rev()
                .map(|key| key.map_err(StoreError::from).and_then(|k| block_id(&k)))
                .collect::<Result<_, _>>()?;
            'blocks: for base in pending {
                let Some(block) = self.trees().events.get(base.to_be_bytes())? else {
                    continue;
                };
                let entries: Vec<&[u8]> = Block::new(&block).entries().collect();
                for (index, json) in entries.iter().enumerate().rev() {
                    let id = EventId(base.0 + index as u64);
                    if id >= upper || id < lower {
                        continue;
                    }
                    scanned += 1;
                    last_seen = Some(id);
                    if contains(json, needle.as_bytes()) {
                        let event = decode_event(id, json)?;
                        if event.recipient == *recipient {
                            seen.insert(id);
                            if keep(&event) {
                                page.events.push(event);
                            }
                        }
                    }
                    if full(&page, scanned) {
                        break 'blocks;
                    }
                }
            }
            if !full(&page, scanned) {
                let start = keys::recipient_key(recipient.as_str(), lower);
                let end = keys::recipient_key(recipient.as_str(), upper);
                for entry in self.trees().by_recipient.range(start..end).rev() {
                    let (key, kind_code) = entry?;
                    let id = keys::id_from_recipient_key(&key)
                        .ok_or_else(|| corrupt(keys::BY_RECIPIENT, "key without an event id"))?;
                    if seen.contains(&id) {
                        continue;
                    }
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
                    if full(&page, scanned) {
                        break;
                    }
                }
            }
        } else {
            'scan: for entry in self.trees().events.range(..upper.to_be_bytes()).rev() {
                let (key, block) = entry?;
                let base = block_id(&key)?;
                let entries: Vec<&[u8]> = Block::new(&block).entries().collect();
                if base.0 + (entries.len() as u64) <= lower.0 {
                    break;
                }
                for (index, json) in entries.iter().enumerate().rev() {
                    let id = EventId(base.0 + index as u64);
                    if id >= upper || id < lower {
                        continue;
                    }
                    scanned += 1;
                    last_seen = Some(id);
                    let event = decode_event(id, json)?;
                    if keep(&event) {
                        page.events.push(event);
                    }
                    if full(&page, scanned) {
                        break 'scan;
                    }
                }
            }
        }
        if full(&page, scanned) {
            page.next_cursor = last_seen;
        }
        Ok(page)
    }

    /// Returns the events with ids in `from..=to`, oldest first, at most about `limit`
    /// (whole blocks).
    pub fn events_between(
        &self,
        from: EventId,
        to: EventId,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let mut events = Vec::new();
        // The block holding `from` may start before it.
        let start = match self
            .trees()
            .events
            .range(..=from.to_be_bytes())
            .next_back()
            .transpose()?
        {
            Some((key, _)) => block_id(&key)?,
            None => from,
        };
        for entry in self
            .trees()
            .events
            .range(start.to_be_bytes()..=to.to_be_bytes())
        {
            let (key, block) = entry?;
            let base = block_id(&key)?;
            for (index, json) in Block::new(&block).entries().enumerate() {
                let id = EventId(base.0 + index as u64);
                if id >= from && id <= to {
                    events.push(decode_event(id, json)?);
                }
            }
            if events.len() >= limit {
                break;
            }
        }
        Ok(events)
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && haystack
            .windows(needle.len())
            .any(|window| window == needle)
}

/// Reads a block key.
pub(crate) fn block_id(key: &[u8]) -> Result<EventId, StoreError> {
    EventId::from_be_slice(key).ok_or_else(|| corrupt(keys::EVENTS, "key is not an event id"))
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
