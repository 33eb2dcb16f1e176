//! The normalized event model: what every provider adapter produces and every later stage
//! (store, rules, actions, API) consumes.
//!
//! Invariants:
//! - one [`Event`] is one provider event for one recipient (batches and multi-recipient
//!   events are split by the adapters);
//! - `recipient` is always a valid [`EmailAddress`];
//! - `raw` holds the provider's JSON for that single event, byte for byte;
//! - identifiers that providers send (message ids, event ids) are kept as strings and never
//!   pass through floating point.

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// Identifier of a stored event (and of the other stored records: bodies, quarantine
/// entries, actions). Time-ordered: the high bits are milliseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId(pub u64);

/// Prefix used when an [`EventId`] is shown to people (`evt_…`).
pub const EVENT_ID_PREFIX: &str = "evt_";

/// Bits of an id below the millisecond timestamp: a sequence number within the millisecond.
pub const ID_SEQUENCE_BITS: u32 = 16;

impl EventId {
    /// Returns the smallest id that can be allocated at `at` (used for time-range scans).
    pub fn floor_at(at: Timestamp) -> EventId {
        let ms = u64::try_from(at.as_millisecond()).unwrap_or(0);
        EventId(ms << ID_SEQUENCE_BITS)
    }

    /// Returns the moment this id was allocated, to the millisecond.
    pub fn timestamp(self) -> Timestamp {
        let ms = i64::try_from(self.0 >> ID_SEQUENCE_BITS).unwrap_or(i64::MAX);
        Timestamp::from_millisecond(ms).unwrap_or(Timestamp::MAX)
    }

    /// Returns the big-endian key bytes of this id (sled keys sort bytewise).
    pub fn to_be_bytes(self) -> [u8; 8] {
        self.0.to_be_bytes()
    }

    /// Reads an id from its big-endian key bytes.
    pub fn from_be_slice(bytes: &[u8]) -> Option<EventId> {
        let array: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
        Some(EventId(u64::from_be_bytes(array)))
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{EVENT_ID_PREFIX}{}", self.0)
    }
}

/// Error returned when a string is not an event id.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not an event id (expected evt_<digits>)")]
pub struct BadEventId(String);

impl FromStr for EventId {
    type Err = BadEventId;

    /// Parses `evt_123` or a bare `123`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits = s.strip_prefix(EVENT_ID_PREFIX).unwrap_or(s);
        digits
            .parse::<u64>()
            .map(EventId)
            .map_err(|_| BadEventId(s.chars().take(64).collect()))
    }
}

impl Serialize for EventId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EventId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// What happened to a message, in the provider-neutral vocabulary.
///
/// The discriminants are stored in index keys: never renumber a variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum EventKind {
    /// Accepted by the provider, not yet attempted.
    Queued = 1,
    /// Handed over by the provider (campaign sends).
    Sent = 2,
    /// Accepted by the receiving server.
    Delivered = 3,
    /// Temporarily refused; the provider will try again.
    Deferred = 4,
    /// Refused by the receiving side; see `bounce_class`.
    Bounce = 5,
    /// Not attempted by the provider (its own suppression list, policy).
    Dropped = 6,
    /// Not delivered, without the provider classifying it as a bounce.
    Failed = 7,
    /// Opened by the recipient.
    Open = 8,
    /// A link was followed.
    Click = 9,
    /// The recipient reported the message as spam.
    Complaint = 10,
    /// The recipient unsubscribed.
    Unsubscribe = 11,
    /// The recipient subscribed or re-subscribed.
    Subscribe = 12,
    /// An automatic reply (out of office) came back.
    Autoreply = 13,
    /// An event this adapter does not know; `provider_event` has its name.
    Other = 14,
}

impl EventKind {
    /// Every kind, in discriminant order.
    pub const ALL: [EventKind; 14] = [
        EventKind::Queued,
        EventKind::Sent,
        EventKind::Delivered,
        EventKind::Deferred,
        EventKind::Bounce,
        EventKind::Dropped,
        EventKind::Failed,
        EventKind::Open,
        EventKind::Click,
        EventKind::Complaint,
        EventKind::Unsubscribe,
        EventKind::Subscribe,
        EventKind::Autoreply,
        EventKind::Other,
    ];

    /// Returns the name used in JSON, the API and rules.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Queued => "queued",
            EventKind::Sent => "sent",
            EventKind::Delivered => "delivered",
            EventKind::Deferred => "deferred",
            EventKind::Bounce => "bounce",
            EventKind::Dropped => "dropped",
            EventKind::Failed => "failed",
            EventKind::Open => "open",
            EventKind::Click => "click",
            EventKind::Complaint => "complaint",
            EventKind::Unsubscribe => "unsubscribe",
            EventKind::Subscribe => "subscribe",
            EventKind::Autoreply => "autoreply",
            EventKind::Other => "other",
        }
    }

    /// Returns the one-byte code stored in index entries.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// Returns the kind stored under `code`, if any.
    pub fn from_code(code: u8) -> Option<EventKind> {
        EventKind::ALL
            .get(usize::from(code).checked_sub(1)?)
            .copied()
    }

    /// Returns the position of this kind in [`EventKind::ALL`].
    pub fn index(self) -> usize {
        usize::from(self.code() - 1)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error returned when a string names no event kind.
#[derive(Debug, thiserror::Error)]
#[error("unknown event kind `{0}`")]
pub struct UnknownKind(pub String);

impl FromStr for EventKind {
    type Err = UnknownKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| UnknownKind(s.chars().take(64).collect()))
    }
}

/// Whether a bounce says something permanent about the address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BounceClass {
    /// Permanent: the address does not work.
    Hard,
    /// Temporary: full mailbox, greylisting, a server down.
    Soft,
    /// The provider did not say and the reply does not tell.
    Undetermined,
}

impl BounceClass {
    /// Returns the one-byte code that goes into dedup keys: never renumber.
    pub fn code(self) -> u8 {
        match self {
            BounceClass::Hard => 1,
            BounceClass::Soft => 2,
            BounceClass::Undetermined => 3,
        }
    }

    /// Returns the name used in JSON, the API and rules.
    pub fn as_str(self) -> &'static str {
        match self {
            BounceClass::Hard => "hard",
            BounceClass::Soft => "soft",
            BounceClass::Undetermined => "undetermined",
        }
    }
}

/// Why a message was not delivered or why the recipient acted, where known.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The address or its domain does not exist.
    Invalid,
    /// A bounce without a more specific cause (full mailbox, server error).
    Bounced,
    /// Delivery gave up after retrying, or the connection timed out.
    TimedOut,
    /// Refused for policy or reputation: says nothing about the address itself.
    Blocked,
    /// Judged or reported as spam.
    Spam,
    /// The recipient unsubscribed.
    Unsubscribed,
    /// Anything else.
    Other,
}

impl Reason {
    /// Returns the name used in JSON, the API and rules.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Invalid => "invalid",
            Reason::Bounced => "bounced",
            Reason::TimedOut => "timed_out",
            Reason::Blocked => "blocked",
            Reason::Spam => "spam",
            Reason::Unsubscribed => "unsubscribed",
            Reason::Other => "other",
        }
    }
}

/// How much `occurred_at` can be trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeQuality {
    /// The provider sent an instant (Unix time or a time with an offset).
    Exact,
    /// The provider sent local time without an offset; the source's zone was assumed.
    AssumedTz,
    /// No usable time was sent.
    Missing,
}

impl TimeQuality {
    /// Returns the name used in JSON, the API and rules.
    pub fn as_str(self) -> &'static str {
        match self {
            TimeQuality::Exact => "exact",
            TimeQuality::AssumedTz => "assumed_tz",
            TimeQuality::Missing => "missing",
        }
    }
}

/// One normalized delivery event.
///
/// Stored as JSON without its id (the id is the key); optional fields are left out when
/// absent.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Event {
    /// Set from the store key when read back; the stored value never holds it (events
    /// are written with `None`), API answers do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<EventId>,
    /// Configured source name the event was posted to (`/webhooks/{source}`).
    pub source: String,
    /// Provider adapter that normalized it.
    pub provider: String,
    /// The event name as the provider sent it.
    pub provider_event: String,
    /// Normalized kind.
    pub kind: EventKind,
    /// Hard, soft or undetermined; bounces only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bounce_class: Option<BounceClass>,
    /// Why, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    /// Bare address of the recipient.
    pub recipient: EmailAddress,
    /// When it happened, in UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<Timestamp>,
    /// How `occurred_at` was obtained.
    pub time_quality: TimeQuality,
    /// When mailwarden received it.
    pub received_at: Timestamp,
    /// The provider's message id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// The provider's id for this one event, when it has a unique one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_event_id: Option<String>,
    /// Basic SMTP reply code (`550`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_code: Option<u16>,
    /// Enhanced status code (`5.1.1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_enhanced: Option<String>,
    /// The receiving server's reply text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_response: Option<String>,
    /// Message subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Sender address as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    /// Campaign name or id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
    /// Link followed (clicks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub click_url: Option<String>,
    /// Recipient's user agent (opens, clicks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// Reader's IP address on opens and clicks, as the provider gives it. (Where a provider
    /// reports the IP that submitted the message, it is kept in `metadata`.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// Provider tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Provider fields that have no normalized home, under their original names.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
    /// What the adapter had to guess, fix or ignore.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The provider's JSON for this single event, untouched.
    pub raw: Box<RawValue>,
}

impl Event {
    /// Returns an event with the required fields set and every optional field empty.
    pub fn new(
        source: &str,
        provider: &str,
        provider_event: &str,
        kind: EventKind,
        recipient: EmailAddress,
        received_at: Timestamp,
        raw: Box<RawValue>,
    ) -> Event {
        Event {
            id: None,
            source: source.to_owned(),
            provider: provider.to_owned(),
            provider_event: provider_event.to_owned(),
            kind,
            bounce_class: None,
            reason: None,
            recipient,
            occurred_at: None,
            time_quality: TimeQuality::Missing,
            received_at,
            message_id: None,
            provider_event_id: None,
            smtp_code: None,
            smtp_enhanced: None,
            smtp_response: None,
            subject: None,
            sender: None,
            campaign: None,
            click_url: None,
            user_agent: None,
            ip: None,
            tags: Vec::new(),
            metadata: Map::new(),
            warnings: Vec::new(),
            raw,
        }
    }
}

/// Longest address accepted (RFC 5321 path limit).
const MAX_ADDRESS_LEN: usize = 254;
/// Longest local part accepted (RFC 5321).
const MAX_LOCAL_LEN: usize = 64;

/// A bare e-mail address: display name dropped, surrounding space and angle brackets
/// removed, domain lower-cased. The local part keeps its case (RFC 5321 says it may matter).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct EmailAddress(String);

/// Error returned when text is not a usable e-mail address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// Nothing left after trimming.
    #[error("address is empty")]
    Empty,
    /// No `@`, or nothing on one side of it.
    #[error("address has no local part and domain")]
    NoAt,
    /// Longer than the SMTP limits.
    #[error("address is too long")]
    TooLong,
    /// Whitespace, control characters or brackets inside the address.
    #[error("address contains a character that is not allowed")]
    BadCharacter,
    /// The domain is not a plausible host name.
    #[error("address domain is not valid")]
    BadDomain,
}

impl EmailAddress {
    /// Parses `user@Example.COM`, `<user@example.com>` or `Name <user@example.com>`.
    pub fn parse(text: &str) -> Result<EmailAddress, AddressError> {
        let mut bare = text.trim();
        // "Name <addr>": the address is inside the last pair of angle brackets.
        if let Some(open) = bare.rfind('<') {
            let inner = &bare[open + 1..];
            bare = inner.strip_suffix('>').unwrap_or(inner).trim();
        }
        // Every `mailto:`, so that parsing a parsed address gives it back unchanged.
        while let Some(rest) = bare.strip_prefix("mailto:") {
            bare = rest;
        }
        if bare.is_empty() {
            return Err(AddressError::Empty);
        }
        if bare.len() > MAX_ADDRESS_LEN {
            return Err(AddressError::TooLong);
        }
        if bare
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';'))
        {
            return Err(AddressError::BadCharacter);
        }
        let (local, domain) = bare.rsplit_once('@').ok_or(AddressError::NoAt)?;
        if local.is_empty() || domain.is_empty() {
            return Err(AddressError::NoAt);
        }
        if local.len() > MAX_LOCAL_LEN {
            return Err(AddressError::TooLong);
        }
        let domain = domain.strip_suffix('.').unwrap_or(domain);
        let literal = domain.starts_with('[') && domain.ends_with(']');
        let host_ok = !domain.is_empty()
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && !domain.contains(['@', '"', '\\', '(', ')', '[', ']']);
        let domain_ok = host_ok || literal;
        if !domain_ok {
            return Err(AddressError::BadDomain);
        }
        Ok(EmailAddress(format!("{local}@{}", domain.to_lowercase())))
    }

    /// Returns the address as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Returns the part after the `@`, lower-cased.
    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map_or("", |(_, domain)| domain)
    }

    /// Returns the part before the `@`, as sent.
    pub fn local_part(&self) -> &str {
        self.0.rsplit_once('@').map_or("", |(local, _)| local)
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for EmailAddress {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        EmailAddress::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parsed_address_parses_to_itself() {
        for text in [
            "a@b.com..",
            "mailto:mailto:x@y.com",
            "N <mailto:A@B.com.>",
            "a@b.c",
        ] {
            if let Ok(once) = EmailAddress::parse(text) {
                assert_eq!(
                    EmailAddress::parse(once.as_str()),
                    Ok(once.clone()),
                    "{text}"
                );
            }
        }
        assert_eq!(
            EmailAddress::parse("a@b.com.."),
            Err(AddressError::BadDomain)
        );
        assert_eq!(
            EmailAddress::parse("mailto:mailto:x@y.com")
                .unwrap()
                .as_str(),
            "x@y.com"
        );
    }

    proptest::proptest! {
        /// `suppress(event.recipient)` parses an address that was parsed already: it must
        /// suppress that same address.
        #[test]
        fn parsing_is_idempotent(text in "[ a-zA-Z<>@.:\\[\\]\"mailto]{0,40}") {
            if let Ok(once) = EmailAddress::parse(&text) {
                proptest::prop_assert_eq!(EmailAddress::parse(once.as_str()), Ok(once));
            }
        }
    }

    #[test]
    fn address_drops_display_name_and_lowercases_domain() {
        let parsed = EmailAddress::parse("  Aaditya Chakravarty <Dummy@Example.COM> ").unwrap();
        assert_eq!(parsed.as_str(), "Dummy@example.com");
        assert_eq!(parsed.domain(), "example.com");
        assert_eq!(parsed.local_part(), "Dummy");
    }

    #[test]
    fn address_accepts_quoted_display_name_and_trailing_dot() {
        let parsed = EmailAddress::parse("\"Doe, John\" <john@mail.example.org.>").unwrap();
        assert_eq!(parsed.as_str(), "john@mail.example.org");
    }

    #[test]
    fn address_rejects_garbage() {
        assert_eq!(EmailAddress::parse(""), Err(AddressError::Empty));
        assert_eq!(EmailAddress::parse("   "), Err(AddressError::Empty));
        assert_eq!(EmailAddress::parse("no-at-sign"), Err(AddressError::NoAt));
        assert_eq!(EmailAddress::parse("@example.com"), Err(AddressError::NoAt));
        assert_eq!(EmailAddress::parse("user@"), Err(AddressError::NoAt));
        assert_eq!(
            EmailAddress::parse("a b@example.com"),
            Err(AddressError::BadCharacter)
        );
        assert_eq!(
            EmailAddress::parse("a@b.com, c@d.com"),
            Err(AddressError::BadCharacter)
        );
        assert_eq!(
            EmailAddress::parse("user\u{0}@example.com"),
            Err(AddressError::BadCharacter)
        );
        assert_eq!(
            EmailAddress::parse("user@exa..mple.com"),
            Err(AddressError::BadDomain)
        );
        let long_local = format!("{}@example.com", "a".repeat(65));
        assert_eq!(EmailAddress::parse(&long_local), Err(AddressError::TooLong));
    }

    #[test]
    fn address_keeps_unicode() {
        let parsed = EmailAddress::parse("josé@Bücher.DE").unwrap();
        assert_eq!(parsed.as_str(), "josé@bücher.de");
    }

    #[test]
    fn event_id_round_trips_through_text() {
        let id = EventId(123_456);
        assert_eq!(id.to_string(), "evt_123456");
        assert_eq!("evt_123456".parse::<EventId>().unwrap(), id);
        assert_eq!("123456".parse::<EventId>().unwrap(), id);
        assert!("evt_x".parse::<EventId>().is_err());
    }

    #[test]
    fn event_id_is_time_ordered() {
        let earlier = EventId::floor_at("2024-01-01T00:00:00Z".parse().unwrap());
        let later = EventId::floor_at("2024-01-01T00:00:00.001Z".parse().unwrap());
        assert!(earlier < later);
        assert_eq!(
            earlier.timestamp(),
            "2024-01-01T00:00:00Z".parse::<Timestamp>().unwrap()
        );
    }

    #[test]
    fn kind_codes_round_trip() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::from_code(kind.code()), Some(kind));
            assert_eq!(kind.as_str().parse::<EventKind>().unwrap(), kind);
            assert_eq!(EventKind::ALL[kind.index()], kind);
        }
        assert_eq!(EventKind::from_code(0), None);
        assert_eq!(EventKind::from_code(15), None);
    }
}
