//! The stored form of events: compact, versioned, and with each event's raw JSON kept once.
//!
//! A block (the events of one request, see [`keys`](super::keys)) is, since schema 2:
//!
//! | bytes | what |
//! |---|---|
//! | 1 | [`BLOCK_V2`] |
//! | 4 | number of events (u32, big-endian) |
//! | 4 + n | length and postcard encoding of the [`BlockHeader`]: what the events share |
//! | per event: 4 + n | length and postcard encoding of a [`Record`] |
//!
//! A record holds the normalized fields (kinds, classes and reasons as their one-byte
//! codes, times as seconds and nanoseconds, metadata as compact JSON) and the event's
//! raw JSON as a *reference* into the request body it came from (stored once, in
//! `bodies`), or inline when the raw JSON is not a byte range of the body (bodies that
//! were decoded or repaired before parsing). Schema-1 blocks, whose first byte is always
//! 0 (the high byte of their u32 count), are still read; see `upgrade`.

use std::borrow::Cow;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::event::{BounceClass, EmailAddress, Event, EventId, EventKind, Reason, TimeQuality};

/// First byte of a schema-2 block.
pub const BLOCK_V2: u8 = 2;

/// Why a stored value could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The bytes end early or are not a valid encoding.
    #[error("malformed: {0}")]
    Malformed(String),
    /// A field holds a value this build does not know.
    #[error("unknown {field} code {code}")]
    UnknownCode {
        /// Field name.
        field: &'static str,
        /// The code found.
        code: u8,
    },
    /// The raw JSON refers to a body that is gone or does not cover the range.
    #[error("raw JSON not found in body {0}")]
    MissingBody(EventId),
}

impl From<postcard::Error> for CodecError {
    fn from(error: postcard::Error) -> Self {
        CodecError::Malformed(error.to_string())
    }
}

/// What every event of one block shares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockHeader<'a> {
    /// Id of the request body in `bodies` (0: none).
    pub body: u64,
    /// Source the request was posted to.
    #[serde(borrow)]
    pub source: Cow<'a, str>,
    /// Provider adapter that normalized it.
    #[serde(borrow)]
    pub provider: Cow<'a, str>,
    /// When the request was received: seconds and nanoseconds since the epoch.
    pub received_at: (i64, i32),
}

/// Where an event's raw JSON is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RawRef<'a> {
    /// Bytes `offset..offset + len` of the block's body.
    Body {
        /// Start in the body.
        offset: u32,
        /// Length.
        len: u32,
    },
    /// Here, because it is not a byte range of the body.
    Inline(#[serde(borrow)] Cow<'a, str>),
}

/// One stored event, without what its block header holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record<'a> {
    /// Its dedup key, so that the purge can delete it.
    pub dedup: [u8; 16],
    #[serde(borrow)]
    provider_event: Cow<'a, str>,
    kind: u8,
    bounce_class: Option<u8>,
    reason: Option<u8>,
    #[serde(borrow)]
    recipient: Cow<'a, str>,
    occurred_at: Option<(i64, i32)>,
    time_quality: u8,
    #[serde(borrow)]
    message_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    provider_event_id: Option<Cow<'a, str>>,
    smtp_code: Option<u16>,
    #[serde(borrow)]
    smtp_enhanced: Option<Cow<'a, str>>,
    #[serde(borrow)]
    smtp_response: Option<Cow<'a, str>>,
    #[serde(borrow)]
    subject: Option<Cow<'a, str>>,
    #[serde(borrow)]
    sender: Option<Cow<'a, str>>,
    #[serde(borrow)]
    campaign: Option<Cow<'a, str>>,
    #[serde(borrow)]
    click_url: Option<Cow<'a, str>>,
    #[serde(borrow)]
    user_agent: Option<Cow<'a, str>>,
    #[serde(borrow)]
    ip: Option<Cow<'a, str>>,
    #[serde(borrow)]
    tags: Vec<Cow<'a, str>>,
    /// The metadata object as compact JSON (absent when empty).
    #[serde(borrow)]
    metadata: Option<Cow<'a, str>>,
    #[serde(borrow)]
    warnings: Vec<Cow<'a, str>>,
    #[serde(borrow)]
    raw: RawRef<'a>,
}

/// The first fields of a [`Record`], read without decoding the rest: what the indexes
/// and the purge need of an event. The field order must stay [`Record`]'s.
#[derive(Debug, Deserialize)]
pub struct RecordHead<'a> {
    /// The record's dedup key.
    pub dedup: [u8; 16],
    #[serde(borrow)]
    _provider_event: &'a str,
    kind: u8,
    _bounce_class: Option<u8>,
    _reason: Option<u8>,
    /// The bare recipient address.
    #[serde(borrow)]
    pub recipient: &'a str,
}

impl<'a> RecordHead<'a> {
    /// Reads the head of an encoded record.
    pub fn decode(bytes: &'a [u8]) -> Result<RecordHead<'a>, CodecError> {
        Ok(postcard::take_from_bytes(bytes)?.0)
    }

    /// Returns the event's kind.
    pub fn kind(&self) -> Result<EventKind, CodecError> {
        EventKind::from_code(self.kind).ok_or(CodecError::UnknownCode {
            field: "kind",
            code: self.kind,
        })
    }
}

fn seconds(at: Timestamp) -> (i64, i32) {
    (at.as_second(), at.subsec_nanosecond())
}

fn timestamp((second, nanosecond): (i64, i32)) -> Result<Timestamp, CodecError> {
    Timestamp::new(second, nanosecond).map_err(|error| CodecError::Malformed(error.to_string()))
}

fn borrowed(text: &Option<String>) -> Option<Cow<'_, str>> {
    text.as_deref().map(Cow::Borrowed)
}

fn owned(text: Option<Cow<'_, str>>) -> Option<String> {
    text.map(Cow::into_owned)
}

/// Finds raw JSON in a request body, starting at `from` (elements come in body order, so
/// each search starts where the previous match ended), then from the start.
pub struct RawLocator<'b> {
    body: &'b [u8],
    from: usize,
}

impl<'b> RawLocator<'b> {
    /// Returns a locator over `body`.
    pub fn new(body: &'b [u8]) -> RawLocator<'b> {
        RawLocator { body, from: 0 }
    }

    /// Returns where `raw` is in the body, or `None`.
    pub fn locate(&mut self, raw: &str) -> Option<(u32, u32)> {
        let needle = raw.as_bytes();
        if needle.is_empty() {
            return None;
        }
        let found = memchr::memmem::find(&self.body[self.from.min(self.body.len())..], needle)
            .map(|at| at + self.from)
            .or_else(|| memchr::memmem::find(self.body, needle))?;
        self.from = found + needle.len();
        Some((
            u32::try_from(found).ok()?,
            u32::try_from(needle.len()).ok()?,
        ))
    }
}

impl<'a> Record<'a> {
    /// Returns the record of `event`, its raw JSON located in the request body where it
    /// can be.
    pub fn of(event: &'a Event, dedup: [u8; 16], locator: &mut RawLocator<'_>) -> Record<'a> {
        let raw = match locator.locate(event.raw.get()) {
            Some((offset, len)) => RawRef::Body { offset, len },
            None => RawRef::Inline(Cow::Borrowed(event.raw.get())),
        };
        Record {
            dedup,
            provider_event: Cow::Borrowed(&event.provider_event),
            kind: event.kind.code(),
            bounce_class: event.bounce_class.map(BounceClass::code),
            reason: event.reason.map(reason_code),
            recipient: Cow::Borrowed(event.recipient.as_str()),
            occurred_at: event.occurred_at.map(seconds),
            time_quality: time_quality_code(event.time_quality),
            message_id: borrowed(&event.message_id),
            provider_event_id: borrowed(&event.provider_event_id),
            smtp_code: event.smtp_code,
            smtp_enhanced: borrowed(&event.smtp_enhanced),
            smtp_response: borrowed(&event.smtp_response),
            subject: borrowed(&event.subject),
            sender: borrowed(&event.sender),
            campaign: borrowed(&event.campaign),
            click_url: borrowed(&event.click_url),
            user_agent: borrowed(&event.user_agent),
            ip: borrowed(&event.ip),
            tags: event
                .tags
                .iter()
                .map(|t| Cow::Borrowed(t.as_str()))
                .collect(),
            metadata: (!event.metadata.is_empty()).then(|| {
                Cow::Owned(serde_json::to_string(&event.metadata).expect("metadata serializes"))
            }),
            warnings: event
                .warnings
                .iter()
                .map(|w| Cow::Borrowed(w.as_str()))
                .collect(),
            raw,
        }
    }

    /// Returns the record of a schema-1 event (its raw JSON inline).
    pub fn of_inline(event: &'a Event, dedup: [u8; 16]) -> Record<'a> {
        let mut no_body = RawLocator::new(&[]);
        Record::of(event, dedup, &mut no_body)
    }

    /// Encodes the record.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("records serialize")
    }

    /// Decodes a record.
    pub fn decode(bytes: &'a [u8]) -> Result<Record<'a>, CodecError> {
        Ok(postcard::from_bytes(bytes)?)
    }

    /// Returns the event's kind.
    pub fn kind(&self) -> Result<EventKind, CodecError> {
        EventKind::from_code(self.kind).ok_or(CodecError::UnknownCode {
            field: "kind",
            code: self.kind,
        })
    }

    /// Returns when the event occurred, by the provider's clock.
    pub fn occurred_at(&self) -> Result<Option<Timestamp>, CodecError> {
        self.occurred_at.map(timestamp).transpose()
    }

    /// Returns the bare recipient address.
    pub fn recipient(&self) -> &str {
        &self.recipient
    }

    /// Rebuilds the event with id `id`; `body` is the block's request body, needed when
    /// the raw JSON is a reference into it.
    pub fn into_event(
        self,
        id: EventId,
        header: &BlockHeader<'_>,
        body: Option<&[u8]>,
    ) -> Result<Event, CodecError> {
        let kind = self.kind()?;
        let raw = match self.raw {
            RawRef::Inline(text) => text.into_owned(),
            RawRef::Body { offset, len } => {
                let range = offset as usize..offset as usize + len as usize;
                let bytes = body
                    .and_then(|body| body.get(range))
                    .ok_or(CodecError::MissingBody(EventId(header.body)))?;
                String::from_utf8(bytes.to_vec())
                    .map_err(|_| CodecError::MissingBody(EventId(header.body)))?
            }
        };
        let raw = RawValue::from_string(raw)
            .map_err(|error| CodecError::Malformed(format!("raw JSON: {error}")))?;
        let metadata = match self.metadata {
            Some(json) => serde_json::from_str(&json)
                .map_err(|error| CodecError::Malformed(format!("metadata: {error}")))?,
            None => serde_json::Map::new(),
        };
        Ok(Event {
            id: Some(id),
            source: header.source.to_string(),
            provider: header.provider.to_string(),
            provider_event: self.provider_event.into_owned(),
            kind,
            bounce_class: self.bounce_class.map(bounce_class).transpose()?,
            reason: self.reason.map(reason).transpose()?,
            recipient: EmailAddress::parse(&self.recipient)
                .map_err(|error| CodecError::Malformed(format!("recipient: {error}")))?,
            occurred_at: self.occurred_at.map(timestamp).transpose()?,
            time_quality: time_quality(self.time_quality)?,
            received_at: timestamp(header.received_at)?,
            message_id: owned(self.message_id),
            provider_event_id: owned(self.provider_event_id),
            smtp_code: self.smtp_code,
            smtp_enhanced: owned(self.smtp_enhanced),
            smtp_response: owned(self.smtp_response),
            subject: owned(self.subject),
            sender: owned(self.sender),
            campaign: owned(self.campaign),
            click_url: owned(self.click_url),
            user_agent: owned(self.user_agent),
            ip: owned(self.ip),
            tags: self.tags.into_iter().map(Cow::into_owned).collect(),
            metadata,
            warnings: self.warnings.into_iter().map(Cow::into_owned).collect(),
            raw,
        })
    }

    /// Whether the raw JSON is a reference into the body.
    pub fn needs_body(&self) -> bool {
        matches!(self.raw, RawRef::Body { .. })
    }
}

impl<'a> BlockHeader<'a> {
    /// Returns the header of events from one request.
    pub fn new(body: EventId, source: &'a str, provider: &'a str, received_at: Timestamp) -> Self {
        BlockHeader {
            body: body.0,
            source: Cow::Borrowed(source),
            provider: Cow::Borrowed(provider),
            received_at: seconds(received_at),
        }
    }

    /// Encodes the header.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("block headers serialize")
    }
}

/// Encodes a schema-2 block from its encoded header and records.
pub fn encode_block<'r>(
    header: &[u8],
    records: impl ExactSizeIterator<Item = &'r [u8]>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + header.len() + records.len() * 160);
    out.push(BLOCK_V2);
    out.extend_from_slice(&(records.len() as u32).to_be_bytes());
    out.extend_from_slice(&(header.len() as u32).to_be_bytes());
    out.extend_from_slice(header);
    for record in records {
        out.extend_from_slice(&(record.len() as u32).to_be_bytes());
        out.extend_from_slice(record);
    }
    out
}

fn reason_code(reason: Reason) -> u8 {
    match reason {
        Reason::Invalid => 1,
        Reason::Bounced => 2,
        Reason::TimedOut => 3,
        Reason::Blocked => 4,
        Reason::Spam => 5,
        Reason::Unsubscribed => 6,
        Reason::Other => 7,
    }
}

fn reason(code: u8) -> Result<Reason, CodecError> {
    Ok(match code {
        1 => Reason::Invalid,
        2 => Reason::Bounced,
        3 => Reason::TimedOut,
        4 => Reason::Blocked,
        5 => Reason::Spam,
        6 => Reason::Unsubscribed,
        7 => Reason::Other,
        code => {
            return Err(CodecError::UnknownCode {
                field: "reason",
                code,
            });
        }
    })
}

fn bounce_class(code: u8) -> Result<BounceClass, CodecError> {
    [
        BounceClass::Hard,
        BounceClass::Soft,
        BounceClass::Undetermined,
    ]
    .into_iter()
    .find(|class| class.code() == code)
    .ok_or(CodecError::UnknownCode {
        field: "bounce_class",
        code,
    })
}

fn time_quality_code(quality: TimeQuality) -> u8 {
    match quality {
        TimeQuality::Exact => 1,
        TimeQuality::AssumedTz => 2,
        TimeQuality::Missing => 3,
    }
}

fn time_quality(code: u8) -> Result<TimeQuality, CodecError> {
    Ok(match code {
        1 => TimeQuality::Exact,
        2 => TimeQuality::AssumedTz,
        3 => TimeQuality::Missing,
        code => {
            return Err(CodecError::UnknownCode {
                field: "time_quality",
                code,
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Event {
        let raw = RawValue::from_string(r#"{"email":"a@b.co","n":12345678901234567890123}"#.into())
            .unwrap();
        let mut event = Event::new(
            "sp",
            "sendpulse",
            "hard_bounces",
            EventKind::Bounce,
            EmailAddress::parse("a@b.co").unwrap(),
            "2026-12-02T10:00:00.123456789Z".parse().unwrap(),
            raw,
        );
        event.bounce_class = Some(BounceClass::Hard);
        event.reason = Some(Reason::Invalid);
        event.occurred_at = Some("2026-12-01T09:00:00Z".parse().unwrap());
        event.time_quality = TimeQuality::AssumedTz;
        event.smtp_code = Some(550);
        event.smtp_response = Some("5.1.1 user unknown — ñ".into());
        event.tags = vec!["t1".into()];
        event
            .metadata
            .insert("big".into(), serde_json::json!("12345678901234567890123"));
        event.warnings = vec!["guessed".into()];
        event
    }

    fn round_trip(event: &Event, body: &[u8]) -> Event {
        let header = BlockHeader::new(EventId(7), "sp", "sendpulse", event.received_at);
        let mut locator = RawLocator::new(body);
        let bytes = Record::of(event, [9; 16], &mut locator).encode();
        let record = Record::decode(&bytes).unwrap();
        assert_eq!(record.dedup, [9; 16]);
        record.into_event(EventId(8), &header, Some(body)).unwrap()
    }

    #[test]
    fn the_head_of_a_record_reads_its_key_kind_and_recipient() {
        let event = sample();
        let bytes = Record::of_inline(&event, [7; 16]).encode();
        let head = RecordHead::decode(&bytes).unwrap();
        assert_eq!(head.dedup, [7; 16]);
        assert_eq!(head.kind().unwrap(), EventKind::Bounce);
        assert_eq!(head.recipient, "a@b.co");
    }

    #[test]
    fn every_field_survives_with_the_raw_json_in_the_body() {
        let event = sample();
        let body = format!("[ {} ]", event.raw.get());
        let back = round_trip(&event, body.as_bytes());
        let mut expected = serde_json::to_value(&event).unwrap();
        expected["id"] = serde_json::json!("evt_8");
        assert_eq!(serde_json::to_value(&back).unwrap(), expected);
    }

    #[test]
    fn raw_json_outside_the_body_is_kept_inline() {
        let event = sample();
        let back = round_trip(&event, b"email=a%40b.co");
        assert_eq!(back.raw.get(), event.raw.get());
    }

    #[test]
    fn a_record_is_much_smaller_than_the_json() {
        let event = sample();
        let body = event.raw.get().as_bytes().to_vec();
        let record = Record::of(&event, [0; 16], &mut RawLocator::new(&body)).encode();
        let json = serde_json::to_vec(&event).unwrap();
        assert!(
            record.len() * 3 < json.len(),
            "record {} bytes, JSON {} bytes",
            record.len(),
            json.len()
        );
    }

    #[test]
    fn the_locator_finds_elements_in_order_and_repeated_ones() {
        let body = br#"[{"a":1},{"a":1},{"b":2}]"#;
        let mut locator = RawLocator::new(body);
        assert_eq!(locator.locate(r#"{"a":1}"#), Some((1, 7)));
        assert_eq!(locator.locate(r#"{"a":1}"#), Some((9, 7)));
        assert_eq!(locator.locate(r#"{"b":2}"#), Some((17, 7)));
        assert_eq!(locator.locate(r#"{"a":1}"#), Some((1, 7)));
        assert_eq!(locator.locate(r#"{"c":3}"#), None);
    }
}
