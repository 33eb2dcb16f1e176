//! Reading stored events back: by id, and pages of events newest first, filtered by
//! recipient (through the recipient index), kind, source and time.

use std::ops::ControlFlow;

use jiff::Timestamp;

use super::codec::{self, BlockHeader, CodecError, Record, RecordHead};
use super::{Store, StoreError, bodies, keys};
use crate::event::{EmailAddress, Event, EventId, EventKind};

/// Most stored entries one page request looks at before it returns what it found with a
/// cursor, so a filter that matches rarely cannot make one request scan the whole store.
/// Entries are judged by their head (kind, recipient) without decoding: 100 000 of them
/// take about 10 ms (the console benchmark's "@domain never seen" row reads 20 000 in 2 ms).
pub const MAX_SCAN: usize = 100_000;

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

/// A stored block: the events of one request, in the schema-2 encoding (see [`codec`])
/// or, for blocks written before it, schema 1 (a u32 count, then a u32 length and the
/// event's JSON per event). Event `i` has the block's first id plus `i`.
pub struct Block<'a> {
    header: Option<BlockHeader<'a>>,
    count: usize,
    entries: &'a [u8],
}

impl<'a> Block<'a> {
    /// Reads a stored block.
    pub fn parse(bytes: &'a [u8]) -> Result<Block<'a>, StoreError> {
        let malformed = || corrupt(keys::EVENTS, "truncated block");
        let u32_at = |at: usize| -> Result<usize, StoreError> {
            let word = bytes.get(at..at + 4).ok_or_else(malformed)?;
            Ok(u32::from_be_bytes(word.try_into().expect("4 bytes")) as usize)
        };
        if bytes.first() == Some(&codec::BLOCK_V2) {
            let count = u32_at(1)?;
            let header_len = u32_at(5)?;
            let header_bytes = bytes.get(9..9 + header_len).ok_or_else(malformed)?;
            let header = postcard::from_bytes(header_bytes)
                .map_err(|error| corrupt(keys::EVENTS, &format!("block header: {error}")))?;
            Ok(Block {
                header: Some(header),
                count,
                entries: &bytes[9 + header_len..],
            })
        } else {
            Ok(Block {
                header: None,
                count: u32_at(0)?,
                entries: &bytes[4..],
            })
        }
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the block holds no event.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The header the events share (schema 2 and later).
    pub(crate) fn header(&self) -> Option<&BlockHeader<'a>> {
        self.header.as_ref()
    }

    /// Whether the block has the schema-1 encoding.
    pub fn is_schema_1(&self) -> bool {
        self.header.is_none()
    }

    /// Id of the request body the events' raw JSON refers to.
    pub fn body_id(&self) -> Option<EventId> {
        self.header
            .as_ref()
            .map(|header| EventId(header.body))
            .filter(|id| id.0 != 0)
    }

    /// The encoded events, in order.
    pub fn entries(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let bytes = self.entries;
        let mut offset = 0;
        (0..self.count).map_while(move |_| {
            let len = bytes.get(offset..offset + 4)?;
            let len = u32::from_be_bytes(len.try_into().ok()?) as usize;
            let entry = bytes.get(offset + 4..offset + 4 + len)?;
            offset += 4 + len;
            Some(entry)
        })
    }

    /// Decodes one entry as event `id`, reading the request body from `bodies` when its
    /// raw JSON is there.
    pub(crate) fn decode(
        &self,
        id: EventId,
        entry: &[u8],
        bodies: &mut BodyCache<'_>,
    ) -> Result<Event, StoreError> {
        let Some(header) = &self.header else {
            return decode_event(id, entry);
        };
        let unreadable = |error: CodecError| StoreError::Corrupt {
            tree: keys::EVENTS,
            reason: format!("{id}: {error}"),
        };
        let record = Record::decode(entry).map_err(unreadable)?;
        let body = if record.needs_body() {
            bodies.get(EventId(header.body))?
        } else {
            None
        };
        record.into_event(id, header, body).map_err(unreadable)
    }

    /// Returns what the indexes need of one entry: recipient, kind and, for schema 2,
    /// the dedup key (schema-1 entries do not hold it).
    pub(crate) fn summary(&self, entry: &'a [u8]) -> Result<EntrySummary<'a>, StoreError> {
        let unreadable = |reason: String| StoreError::Corrupt {
            tree: keys::EVENTS,
            reason,
        };
        if self.header.is_some() {
            let head = RecordHead::decode(entry).map_err(|error| unreadable(error.to_string()))?;
            let kind = head.kind().map_err(|error| unreadable(error.to_string()))?;
            Ok(EntrySummary {
                dedup: Some(head.dedup),
                kind,
                recipient: std::borrow::Cow::Borrowed(head.recipient),
            })
        } else {
            #[derive(serde::Deserialize)]
            struct Fields<'a> {
                #[serde(borrow)]
                recipient: std::borrow::Cow<'a, str>,
                kind: EventKind,
            }
            let fields: Fields<'a> =
                serde_json::from_slice(entry).map_err(|error| unreadable(error.to_string()))?;
            Ok(EntrySummary {
                dedup: None,
                kind: fields.kind,
                recipient: fields.recipient,
            })
        }
    }
}

/// What the indexes need of one stored event.
pub(crate) struct EntrySummary<'a> {
    /// Dedup key (schema 2 only).
    pub(crate) dedup: Option<[u8; 16]>,
    /// Kind.
    pub(crate) kind: EventKind,
    /// Bare recipient.
    pub(crate) recipient: std::borrow::Cow<'a, str>,
}

/// Request bodies read while decoding events, the last one kept: the events of one block
/// (and of neighbouring blocks) share their body.
pub(crate) struct BodyCache<'s> {
    store: Option<&'s Store>,
    current: Option<(EventId, Option<Vec<u8>>)>,
}

impl<'s> BodyCache<'s> {
    pub(crate) fn new(store: &'s Store) -> BodyCache<'s> {
        BodyCache {
            store: Some(store),
            current: None,
        }
    }

    /// A cache that finds no body (for schema-1 blocks, which need none).
    pub(crate) fn detached() -> BodyCache<'static> {
        BodyCache {
            store: None,
            current: None,
        }
    }

    /// Returns the bytes of body `id` as received.
    fn get(&mut self, id: EventId) -> Result<Option<&[u8]>, StoreError> {
        if self
            .current
            .as_ref()
            .is_none_or(|(current, _)| *current != id)
        {
            let value = match self.store {
                Some(store) => store.trees().bodies.get(id.to_be_bytes())?,
                None => None,
            };
            let body = value
                .map(|value| bodies::decode_body(id, &value).map(|(_, body)| body))
                .transpose()?;
            self.current = Some((id, body));
        }
        Ok(self.current.as_ref().and_then(|(_, body)| body.as_deref()))
    }
}

impl Store {
    /// Returns the event stored under `id`.
    pub fn event(&self, id: EventId) -> Result<Option<Event>, StoreError> {
        self.event_with(id, &mut BodyCache::new(self))
    }

    fn event_with(
        &self,
        id: EventId,
        bodies: &mut BodyCache<'_>,
    ) -> Result<Option<Event>, StoreError> {
        let Some((key, value)) = self
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
        let block = Block::parse(&value)?;
        match block.entries().nth(index) {
            Some(entry) => block.decode(id, entry, bodies).map(Some),
            None => Ok(None),
        }
    }

    /// Returns one page of events matching `query`, newest first.
    pub fn events_page(&self, query: &EventQuery) -> Result<EventPage, StoreError> {
        self.page_of(query, None)
    }

    /// Returns one page of the events to addresses at `domain` (lower-case, without the
    /// `@`; exactly that domain, not its subdomains) that match the rest of `query` (its
    /// recipient is ignored), newest first.
    ///
    /// The recipient index is keyed by whole address, so a domain (the end of the key)
    /// cannot be a prefix scan of it. This reads the events newest first instead, looking
    /// at each entry's head only (recipient and kind, no body) and decoding the matches,
    /// at most [`MAX_SCAN`] entries per page: bounded work, with a cursor to go on.
    pub fn events_page_in_domain(
        &self,
        domain: &str,
        query: &EventQuery,
    ) -> Result<EventPage, StoreError> {
        let query = EventQuery {
            recipient: None,
            ..query.clone()
        };
        self.page_of(&query, Some(domain))
    }

    fn page_of(&self, query: &EventQuery, domain: Option<&str>) -> Result<EventPage, StoreError> {
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
        let mut bodies = BodyCache::new(self);
        if let Some(recipient) = &query.recipient {
            // Newest first: blocks the rules runner has not indexed yet (always the newest),
            // then the recipient index.
            let mut seen = std::collections::HashSet::new();
            let after = self.indexed_through();
            let unindexed = (
                std::ops::Bound::Excluded(after.to_be_bytes()),
                std::ops::Bound::Unbounded,
            );
            'blocks: for entry in self.trees().events.range::<[u8; 8], _>(unindexed).rev() {
                let (key, value) = entry?;
                let base = block_id(&key)?;
                let block = Block::parse(&value)?;
                let entries: Vec<&[u8]> = block.entries().collect();
                for (index, entry) in entries.iter().enumerate().rev() {
                    let id = EventId(base.0 + index as u64);
                    if id >= upper || id < lower {
                        continue;
                    }
                    scanned += 1;
                    last_seen = Some(id);
                    if block.summary(entry)?.recipient == recipient.as_str() {
                        let event = block.decode(id, entry, &mut bodies)?;
                        seen.insert(id);
                        if keep(&event) {
                            page.events.push(event);
                        }
                    }
                    if full(&page, scanned) {
                        break 'blocks;
                    }
                }
            }
            if !full(&page, scanned) && upper.0 > lower.0 {
                self.recipients().visit(
                    recipient.as_str(),
                    lower,
                    EventId(upper.0 - 1),
                    |id, kind| {
                        if seen.contains(&id) {
                            return Ok(ControlFlow::Continue(()));
                        }
                        scanned += 1;
                        last_seen = Some(id);
                        // The index holds the kind: skip other kinds without reading events.
                        if query.kind.is_none_or(|wanted| wanted == kind) {
                            if let Some(event) = self.event_with(id, &mut bodies)?.filter(keep) {
                                page.events.push(event);
                            }
                        }
                        Ok(if full(&page, scanned) {
                            ControlFlow::Break(())
                        } else {
                            ControlFlow::Continue(())
                        })
                    },
                )?;
            }
        } else {
            let at_domain = domain.map(|domain| format!("@{domain}"));
            'scan: for entry in self.trees().events.range(..upper.to_be_bytes()).rev() {
                let (key, value) = entry?;
                let base = block_id(&key)?;
                let block = Block::parse(&value)?;
                let entries: Vec<&[u8]> = block.entries().collect();
                if base.0 + (entries.len() as u64) <= lower.0 {
                    break;
                }
                // A block holds the events of one request, to one source: a block of
                // another source is passed over without decoding its events.
                let other_source = match (&query.source, block.header()) {
                    (Some(source), Some(header)) => header.source != source.as_str(),
                    _ => false,
                };
                for (index, entry) in entries.iter().enumerate().rev() {
                    let id = EventId(base.0 + index as u64);
                    if id >= upper || id < lower {
                        continue;
                    }
                    scanned += 1;
                    last_seen = Some(id);
                    // Kind and domain are read from the entry's head, so events that do not
                    // match are never decoded whole.
                    let wanted = !other_source
                        && (query.kind.is_none() && at_domain.is_none() || {
                            let head = block.summary(entry)?;
                            query.kind.is_none_or(|kind| kind == head.kind)
                                && at_domain
                                    .as_deref()
                                    .is_none_or(|suffix| head.recipient.ends_with(suffix))
                        });
                    if wanted {
                        let event = block.decode(id, entry, &mut bodies)?;
                        if keep(&event) {
                            page.events.push(event);
                        }
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
        let mut bodies = BodyCache::new(self);
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
            let (key, value) = entry?;
            let base = block_id(&key)?;
            let block = Block::parse(&value)?;
            for (index, entry) in block.entries().enumerate() {
                let id = EventId(base.0 + index as u64);
                if id >= from && id <= to {
                    events.push(block.decode(id, entry, &mut bodies)?);
                }
            }
            if events.len() >= limit {
                break;
            }
        }
        Ok(events)
    }
}

/// What the actions of some events left in the store, as far as it can tell: actions
/// still waiting or dead-lettered, and alerts logged. Done actions leave the outbox, so an
/// action asked for and not found here ran (when `complete`).
#[derive(Debug, Default)]
pub struct Consequences {
    /// Actions waiting in the outbox or dead-lettered, oldest first.
    pub actions: Vec<(crate::rules::QueuedAction, super::outbox::OutboxStatus)>,
    /// Alert log records (stored JSON with its `id`), oldest first.
    pub alerts: Vec<serde_json::Value>,
    /// Whether every outbox, dead-letter and alert entry after the oldest event was looked
    /// at; false when a scan stopped at its bound.
    pub complete: bool,
}

impl Store {
    /// Finds what the actions of `events` left in the outbox, the dead letters and the alert
    /// log. None of them is indexed by event, but their ids are given after the event's
    /// (when the rules run and when the alert is sent), so each tree is read forward from
    /// the oldest event, at most `max_scan` entries each.
    pub fn consequences(
        &self,
        events: &[EventId],
        max_scan: usize,
    ) -> Result<Consequences, StoreError> {
        let mut found = Consequences {
            complete: true,
            ..Consequences::default()
        };
        let Some(oldest) = events.iter().min() else {
            return Ok(found);
        };
        let wanted: std::collections::HashSet<EventId> = events.iter().copied().collect();
        #[derive(serde::Deserialize)]
        struct Cause {
            #[serde(default)]
            event_id: Option<EventId>,
        }
        let trees = [
            (
                &self.trees().outbox,
                keys::OUTBOX,
                Some(super::outbox::OutboxStatus::Pending),
            ),
            (
                &self.trees().outbox_dead,
                keys::OUTBOX_DEAD,
                Some(super::outbox::OutboxStatus::Dead),
            ),
            (&self.trees().alerts, keys::ALERTS, None),
        ];
        for (tree, name, status) in trees {
            for (seen, item) in tree.range(oldest.to_be_bytes()..).enumerate() {
                if seen >= max_scan {
                    found.complete = false;
                    break;
                }
                let (key, value) = item?;
                let unreadable = |error: serde_json::Error| corrupt(name, &error.to_string());
                let cause: Cause = serde_json::from_slice(&value).map_err(unreadable)?;
                if !cause.event_id.is_some_and(|id| wanted.contains(&id)) {
                    continue;
                }
                let id = block_id(&key)?;
                match status {
                    Some(status) => {
                        let mut action: crate::rules::QueuedAction =
                            serde_json::from_slice(&value).map_err(unreadable)?;
                        action.id = Some(id);
                        found.actions.push((action, status));
                    }
                    None => {
                        let mut record: serde_json::Value =
                            serde_json::from_slice(&value).map_err(unreadable)?;
                        if let serde_json::Value::Object(map) = &mut record {
                            map.insert("id".into(), serde_json::json!(id));
                        }
                        found.alerts.push(record);
                    }
                }
            }
        }
        Ok(found)
    }
}

/// Reads a block key.
pub(crate) fn block_id(key: &[u8]) -> Result<EventId, StoreError> {
    EventId::from_be_slice(key).ok_or_else(|| corrupt(keys::EVENTS, "key is not an event id"))
}

/// Returns the first id of the oldest block in an `events` tree, if any.
pub(crate) fn oldest_block(events: &sled::Tree) -> Result<Option<EventId>, StoreError> {
    events.first()?.map(|(key, _)| block_id(&key)).transpose()
}

/// Decodes a stored event value, setting its id from the key.
fn decode_event(id: EventId, value: &[u8]) -> Result<Event, StoreError> {
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
