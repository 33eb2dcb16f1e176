//! Brevo (formerly Sendinblue): one flat JSON object per event (a bare array of them when
//! the webhook is `batched`, whose body shape Brevo does not document; the pipeline reads
//! both), from two webhook families that share one adapter.
//!
//! - **Transactional** (<https://developers.brevo.com/docs/transactional-webhooks>): carries
//!   `message-id` (and `ts_epoch`, `X-Mailin-custom`, `template_id`, `tags`).
//! - **Marketing** (<https://developers.brevo.com/docs/marketing-webhooks>): campaign events
//!   carry `camp_id`, `"campaign name"` (a key with a space), `ts_sent`/`date_sent`/
//!   `date_event` and no `message-id`; contact events carry `key` with `list_id` or `content`.
//!
//! The same `event` values (`spam`, `opened`, `click`, `delivered`, `unsubscribed`) exist in
//! both, so the family is told from the keys (`message-id` first, then the marketing keys,
//! then the transactional ones, then names only one family uses) and kept as
//! `metadata.webhook_type` (`transactional` or `marketing`, Brevo's own `type` values).
//!
//! | `event` (every spelling the doc versions and subscription names use) | kind | class / reason |
//! |---|---|---|
//! | `request` (subscribed as `sent`) | `queued` | "pushed for delivery": the attempt is reported by the later events |
//! | `delivered` | `delivered` | |
//! | `deferred` | `deferred` | reason from the `reason` text when it names one |
//! | `soft_bounce`, `soft_bounced`, `softBounce` | `bounce` | soft; reason from `reason`, else `bounced` |
//! | `hard_bounce`, `hard_bounced`, `hardBounce` | `bounce` | hard; reason from `reason`, else `bounced` |
//! | `blocked` | `dropped` | `blocked`: Brevo refused to send ("blacklisted sender etc.") |
//! | `invalid_email`, `invalid` | `dropped` | `invalid`: Brevo refused the address, no SMTP attempt |
//! | `error` | `failed` | from `reason` when it names one, else `other` |
//! | `spam`, `complaint` (older docs) | `complaint` | `spam` |
//! | `opened`, `open` | `open` | |
//! | `unique_opened`, `uniqueOpened` (first opening) | `open` | `metadata.first_open: true` |
//! | `proxy_open` | `open` | `metadata.proxy: true` (machine or privacy-proxy open) |
//! | `unique_proxy_open` | `open` | `metadata.proxy: true`, `metadata.first_open: true` |
//! | `click` | `click` | link in `link` (transactional) or `URL` (marketing) |
//! | `unsubscribed`, `unsubscribe` | `unsubscribe` | `unsubscribed` |
//! | `list_addition`, `listAddition` | `subscribe` | contact added to list(s), not proof of opt-in |
//! | `contact_updated`, `contact_deleted`, `unique_coupon_sent` | `other` | known, so no warning |
//!
//! Names are compared without case, `_`, `-` or spaces, so the subscription names
//! (`hardBounce`, `uniqueOpened`, `listAddition`) read like the payload ones.
//!
//! Fields:
//! - recipient: `email`. The recent proxy-open sample has `"email": ""`; such an element has
//!   no recipient and is quarantined (the model requires one).
//! - time: `date` is local time without an offset and the docs contradict themselves about
//!   its zone ("CET/CEST" in the box, "your timezone" in the table; the 2024 sample is
//!   UTC+05:30, the account's zone), so the epoch fields come first and are `exact`:
//!   `ts_event` (seconds UTC, "when the event occurred") → `ts_epoch` (documented as
//!   milliseconds "of when message was sent" but seconds in most samples: the time module
//!   tells them apart by size) → `ts` (seconds; on marketing samples exactly 3600 s after
//!   `ts_event`, hence last of the three; the only epoch on contact events) →
//!   `date_event` / `date`, read in the source's zone (default `Europe/Paris`, the
//!   documented CET/CEST; set `timezone` to the Brevo account's zone) and `assumed_tz`.
//!   The time fields not used stay in `metadata`.
//! - `id` is "webhook id" (transactional) / "Internal id of webhook" (marketing): the same
//!   for every event of a webhook, so it is `metadata.webhook_id`, never
//!   `provider_event_id`. No field is unique per event: dedup hashes the event's JSON.
//! - `message-id` is stored without angle brackets (webhook samples have none, the send
//!   API answers `<…>`); `an#2705147202202651768`-style ids are kept as they are.
//! - `reason` is free text (`"server is down"`, `"deferred"`, `"spam"`), not an enum; on
//!   bounces, deferrals and errors it is the `smtp_response` (codes are taken from it when
//!   it holds any, no sample does); on other events (marketing spam's `"undesired"`) it
//!   stays in `metadata.reason`.
//! - `tags` (an array) and `tag` (a plain string, often `""`, or a JSON array written as a
//!   string, `"[\"transactionalTag\"]"`) are merged into `tags`, without repeats.
//! - `sending_ip` is Brevo's outbound IP (`"::"` in a sample), not the reader's: it stays in
//!   metadata and `ip` is left empty (no reader IP is documented).
//! - `sender_email` → `sender`; `subject`; `user_agent` (often a proxy's: GoogleImageProxy);
//!   `"campaign name"` (trimmed; the spam sample ends with a space) or else `camp_id` →
//!   `campaign`.
//! - `id`, `contact_id` (up to 19 digits in a sample), `template_id` and `camp_id` are kept
//!   in metadata as strings.
//!
//! Retries: "4xx response codes, except for 429, and any 5xx response code stop all retry
//! attempts and discard the webhook" (<https://developers.brevo.com/docs/retry-mechanism>),
//! so a storage failure answers 429, the one status Brevo retries (10 min, 1 h, 2 h, 8 h).
//!
//! Authentication: Brevo does not sign. It sends a Bearer token (`auth` on create-webhook)
//! or basic auth from `https://user:password@…` in the URL
//! (<https://developers.brevo.com/docs/username-and-password-authentication>); the default
//! token and basic-auth checks apply.

use axum::http::StatusCode;
use serde_json::Value;
use serde_json::value::RawValue;

use super::{Element, ElementError, MAX_FIELD_CHARS, Provider, emit, recipients, set_time};
use crate::event::{BounceClass, EmailAddress, Event, EventKind, Reason};
use crate::ingest::fields::{Fields, clip, scalar_text};
use crate::ingest::smtp::{self, Reply};
use crate::ingest::time::{self, ReadTime};

/// The Brevo adapter.
pub struct Brevo;

/// Time fields, most trusted first (see the module doc).
const TIME_FIELDS: [&str; 5] = ["ts_event", "ts_epoch", "ts", "date_event", "date"];

/// Identifiers kept in metadata as strings, under their own names.
const ID_FIELDS: [&str; 3] = ["contact_id", "template_id", "camp_id"];

/// Keys only marketing events carry (campaign events, then contact events).
const MARKETING_KEYS: [&str; 8] = [
    "camp_id",
    "campaign name",
    "ts_sent",
    "date_sent",
    "date_event",
    "list_id",
    "key",
    "content",
];

/// Keys only transactional events carry, besides `message-id`.
const TRANSACTIONAL_KEYS: [&str; 4] = ["X-Mailin-custom", "template_id", "ts_epoch", "mirror_link"];

/// Longest sender text kept when it is not a parseable address.
const MAX_SENDER_CHARS: usize = 320;

impl Provider for Brevo {
    fn name(&self) -> &'static str {
        "brevo"
    }

    /// `date` is documented as CET/CEST; accounts elsewhere set their own zone.
    fn default_timezone(&self) -> &'static str {
        "Europe/Paris"
    }

    /// Brevo discards an event for good on any 5xx and on every 4xx but 429
    /// (<https://developers.brevo.com/docs/retry-mechanism>): 429 is the only way to have a
    /// request sent again after a storage failure.
    fn retry_status(&self) -> StatusCode {
        StatusCode::TOO_MANY_REQUESTS
    }

    fn normalize(&self, element: &Element<'_>, out: &mut Vec<Event>) -> Result<(), ElementError> {
        let mut fields = element.fields()?;
        let name = fields
            .text("event")
            .ok_or(ElementError::MissingEventName("event"))?;
        let meaning = meaning_of(&name);
        let family = family_of(&fields, meaning.and_then(|m| m.family));
        let blank_email = fields.raw("email").is_some_and(
            |raw| matches!(scalar_text(raw), Ok(Some(text)) if text.trim().is_empty()),
        );
        let recipients = recipients(&mut fields, &["email"]).map_err(|error| {
            if blank_email {
                ElementError::NoRecipient("`email` is empty".to_owned())
            } else {
                error
            }
        })?;
        let kind = meaning.map_or(EventKind::Other, |m| m.kind);
        let mut event = match meaning {
            // A documented event without a kind of its own: no "unknown event" warning.
            Some(known) if known.kind == EventKind::Other => {
                element.documented_event(&name, EventKind::Other, recipients[0].clone())
            }
            _ => element.event(&name, kind, recipients[0].clone(), &fields),
        };
        let read = occurred_at(element, &mut fields);
        set_time(&mut event, read);

        event.message_id = fields
            .text("message-id")
            .map(|id| strip_brackets(&id).to_owned())
            .filter(|id| !id.is_empty())
            .map(|id| bounded(&fields, "message-id", id, MAX_FIELD_CHARS));
        event.subject = bounded_text(&mut fields, "subject", MAX_FIELD_CHARS);
        event.sender =
            fields
                .text("sender_email")
                .map(|sender| match EmailAddress::parse(&sender) {
                    Ok(address) => address.as_str().to_owned(),
                    Err(_) => bounded(&fields, "sender_email", sender, MAX_SENDER_CHARS),
                });
        let camp_id = fields.text("camp_id");
        event.campaign = fields
            .text("campaign name")
            .map(|name| name.trim().to_owned())
            .map(|name| bounded(&fields, "campaign name", name, MAX_FIELD_CHARS))
            .or_else(|| camp_id.clone());
        // Opens carry `"link": ""`: an empty link says nothing; a link on anything but a
        // click is no followed link, so it stays in metadata.
        for key in ["link", "URL"] {
            if let Some(link) = fields.text(key) {
                let link = bounded(&fields, key, link, MAX_FIELD_CHARS);
                if kind == EventKind::Click && event.click_url.is_none() {
                    event.click_url = Some(link);
                } else {
                    event.metadata.insert(key.to_owned(), Value::String(link));
                }
            }
        }
        event.user_agent = bounded_text(&mut fields, "user_agent", MAX_FIELD_CHARS);
        event.tags = tags(&mut fields);

        let mut reply = Reply::default();
        if matches!(
            kind,
            EventKind::Bounce | EventKind::Deferred | EventKind::Failed
        ) {
            if let Some(text) = fields.text("reason") {
                let text = bounded(&fields, "reason", text.trim().to_owned(), MAX_FIELD_CHARS);
                reply.complete_from_text(&text);
                event.smtp_response = Some(text);
            }
        }
        event.smtp_code = reply.code;
        event.smtp_enhanced = reply.enhanced.clone();
        let stated = smtp::classify(&reply, event.smtp_response.as_deref());
        event.reason = match kind {
            EventKind::Bounce => Some(stated.unwrap_or(Reason::Bounced)),
            // `classify` calls any unrecognised text `bounced`: not a cause for a deferral.
            EventKind::Deferred => stated.filter(|reason| *reason != Reason::Bounced),
            EventKind::Failed => Some(
                stated
                    .filter(|reason| *reason != Reason::Bounced)
                    .unwrap_or(Reason::Other),
            ),
            _ => meaning.and_then(|m| m.reason),
        };
        if kind == EventKind::Bounce {
            event.bounce_class = meaning.and_then(|m| m.class);
        }

        if let Some(id) = fields.text("id") {
            event
                .metadata
                .insert("webhook_id".to_owned(), Value::String(id));
        }
        if let Some(family) = family {
            event.metadata.insert(
                "webhook_type".to_owned(),
                Value::String(family.as_str().to_owned()),
            );
        }
        if let Some(known) = meaning {
            if known.proxy {
                event.metadata.insert("proxy".to_owned(), Value::Bool(true));
            }
            if known.first_open {
                event
                    .metadata
                    .insert("first_open".to_owned(), Value::Bool(true));
            }
        }
        for key in ID_FIELDS {
            if let Some(id) = fields.text(key) {
                event.metadata.insert(key.to_owned(), Value::String(id));
            }
        }
        fields.rest_into(&mut event.metadata);
        emit(event, recipients, fields.warnings(), out);
        Ok(())
    }
}

/// Which of Brevo's webhook types sent an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Transactional,
    Marketing,
}

impl Family {
    fn as_str(self) -> &'static str {
        match self {
            Family::Transactional => "transactional",
            Family::Marketing => "marketing",
        }
    }
}

/// What one of Brevo's event names means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Meaning {
    kind: EventKind,
    /// Bounce class the name states.
    class: Option<BounceClass>,
    /// Reason the name itself states (not used for bounces, deferrals and errors).
    reason: Option<Reason>,
    /// A first ("unique") open.
    first_open: bool,
    /// An open reported by a proxy (Apple Mail Privacy Protection and the like).
    proxy: bool,
    /// The family that alone uses this name.
    family: Option<Family>,
}

impl Meaning {
    const fn of(kind: EventKind) -> Meaning {
        Meaning {
            kind,
            class: None,
            reason: None,
            first_open: false,
            proxy: false,
            family: None,
        }
    }

    const fn class(mut self, class: BounceClass) -> Meaning {
        self.class = Some(class);
        self
    }

    const fn reason(mut self, reason: Reason) -> Meaning {
        self.reason = Some(reason);
        self
    }

    const fn only(mut self, family: Family) -> Meaning {
        self.family = Some(family);
        self
    }

    const fn first(mut self) -> Meaning {
        self.first_open = true;
        self
    }

    const fn proxy(mut self) -> Meaning {
        self.proxy = true;
        self
    }
}

/// Maps an event name, in any of its documented spellings, to what it means; `None` for a
/// name Brevo does not document.
fn meaning_of(name: &str) -> Option<Meaning> {
    use EventKind as K;
    use Family::{Marketing as M, Transactional as T};
    let key: String = name
        .trim()
        .chars()
        .filter(|c| !matches!(c, '_' | '-' | ' '))
        .flat_map(char::to_lowercase)
        .collect();
    let meaning = match key.as_str() {
        "request" | "sent" => Meaning::of(K::Queued).only(T),
        "delivered" => Meaning::of(K::Delivered),
        "deferred" => Meaning::of(K::Deferred).only(T),
        "softbounce" => Meaning::of(K::Bounce).class(BounceClass::Soft),
        "softbounced" => Meaning::of(K::Bounce).class(BounceClass::Soft).only(M),
        "hardbounce" => Meaning::of(K::Bounce).class(BounceClass::Hard),
        "hardbounced" => Meaning::of(K::Bounce).class(BounceClass::Hard).only(M),
        "blocked" => Meaning::of(K::Dropped).reason(Reason::Blocked).only(T),
        "invalidemail" | "invalid" => Meaning::of(K::Dropped).reason(Reason::Invalid).only(T),
        "error" => Meaning::of(K::Failed).only(T),
        "spam" => Meaning::of(K::Complaint).reason(Reason::Spam),
        "complaint" => Meaning::of(K::Complaint).reason(Reason::Spam).only(T),
        "opened" | "open" => Meaning::of(K::Open),
        "uniqueopened" | "firstopening" => Meaning::of(K::Open).first().only(T),
        "proxyopen" => Meaning::of(K::Open).proxy(),
        "uniqueproxyopen" => Meaning::of(K::Open).proxy().first().only(T),
        "click" | "clicked" => Meaning::of(K::Click),
        "unsubscribed" | "unsubscribe" => Meaning::of(K::Unsubscribe).reason(Reason::Unsubscribed),
        "listaddition" => Meaning::of(K::Subscribe).only(M),
        "contactupdated" | "contactdeleted" | "uniquecouponsent" => Meaning::of(K::Other).only(M),
        _ => return None,
    };
    Some(meaning)
}

/// Tells the family from the keys present, else from a name only one family uses.
fn family_of(fields: &Fields<'_>, by_name: Option<Family>) -> Option<Family> {
    if fields.has("message-id") {
        Some(Family::Transactional)
    } else if MARKETING_KEYS.iter().any(|key| fields.has(key)) {
        Some(Family::Marketing)
    } else if TRANSACTIONAL_KEYS.iter().any(|key| fields.has(key)) {
        Some(Family::Transactional)
    } else {
        by_name
    }
}

/// Reads the first usable time of [`TIME_FIELDS`]; a field that is present but unreadable
/// is warned about, saying which one was used instead.
fn occurred_at(element: &Element<'_>, fields: &mut Fields<'_>) -> Option<ReadTime> {
    let mut unreadable: Vec<(&str, String)> = Vec::new();
    for key in TIME_FIELDS {
        let Some(raw) = fields.raw(key) else {
            continue;
        };
        match time::read_time(raw, &element.source.zone) {
            Ok(read) => {
                for (bad, problem) in &unreadable {
                    fields.warn(bad, format_args!("{problem}; `{key}` used instead"));
                }
                if let Some(warning) = time::future_warning(read.at, element.received_at) {
                    fields.warn(key, warning);
                }
                return Some(read);
            }
            Err(problem) => unreadable.push((key, problem)),
        }
    }
    if unreadable.is_empty() {
        fields.warn(
            "ts_event",
            "missing, as are `ts_epoch`, `ts`, `date_event` and `date`; time left empty",
        );
    }
    for (bad, problem) in &unreadable {
        fields.warn(bad, format_args!("{problem}; time left empty"));
    }
    None
}

/// Removes the angle brackets the send API puts around a Message-ID.
fn strip_brackets(id: &str) -> &str {
    id.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim()
}

/// Reads `key` as text of at most `max` characters.
fn bounded_text(fields: &mut Fields<'_>, key: &str, max: usize) -> Option<String> {
    let text = fields.text(key)?;
    Some(bounded(fields, key, text, max))
}

/// Cuts `text` to `max` characters, with a warning when it was longer.
fn bounded(fields: &Fields<'_>, key: &str, text: String, max: usize) -> String {
    if text.chars().nth(max).is_none() {
        return text;
    }
    fields.warn(
        key,
        format_args!(
            "{} characters; only the first {max} are kept (raw has all)",
            text.chars().count()
        ),
    );
    clip(&text, max).to_owned()
}

/// Merges `tags` and `tag` into one list without repeats: each may be an array, a plain
/// string, or a JSON array written as a string.
fn tags(fields: &mut Fields<'_>) -> Vec<String> {
    let mut tags: Vec<String> = Vec::new();
    for key in ["tags", "tag"] {
        for text in fields.texts(key) {
            for tag in expand_tag(fields, key, &text) {
                let tag = bounded(fields, key, tag, MAX_FIELD_CHARS);
                if !tags.contains(&tag) {
                    tags.push(tag);
                }
            }
        }
    }
    tags
}

/// Reads one tag text: `"[\"a\", \"b\"]"` is the list `a`, `b`; anything else is one tag.
fn expand_tag(fields: &Fields<'_>, key: &str, text: &str) -> Vec<String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Vec::new();
    }
    if !trimmed.starts_with('[') {
        return vec![trimmed.to_owned()];
    }
    match serde_json::from_str::<Vec<&RawValue>>(trimmed) {
        Ok(items) => items
            .into_iter()
            .filter_map(|item| match scalar_text(item) {
                Ok(Some(tag)) => Some(tag.trim().to_owned()),
                _ => None,
            })
            .filter(|tag| !tag.is_empty())
            .collect(),
        Err(_) => {
            fields.warn(
                key,
                format_args!(
                    "`{}` looks like a JSON list but is not one; kept as one tag",
                    clip(trimmed, 40)
                ),
            );
            vec![trimmed.to_owned()]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::fields::Warnings;

    fn fields(raw: &RawValue) -> Fields<'_> {
        Fields::parse(raw, Warnings::default()).expect("an object")
    }

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).expect("valid JSON")
    }

    #[test]
    fn every_documented_spelling_maps() {
        let kind = |name| meaning_of(name).map(|m| (m.kind, m.class));
        for name in ["request", "sent"] {
            assert_eq!(kind(name), Some((EventKind::Queued, None)), "{name}");
        }
        for name in ["hard_bounce", "hard_bounced", "hardBounce"] {
            assert_eq!(
                kind(name),
                Some((EventKind::Bounce, Some(BounceClass::Hard))),
                "{name}"
            );
        }
        for name in ["soft_bounce", "soft_bounced", "softBounce"] {
            assert_eq!(
                kind(name),
                Some((EventKind::Bounce, Some(BounceClass::Soft))),
                "{name}"
            );
        }
        for name in ["spam", "complaint"] {
            assert_eq!(kind(name), Some((EventKind::Complaint, None)), "{name}");
        }
        for name in ["unsubscribed", "unsubscribe"] {
            assert_eq!(kind(name), Some((EventKind::Unsubscribe, None)), "{name}");
        }
        for name in ["invalid_email", "invalid"] {
            let meaning = meaning_of(name).expect(name);
            assert_eq!(meaning.kind, EventKind::Dropped);
            assert_eq!(meaning.reason, Some(Reason::Invalid));
        }
        let blocked = meaning_of("blocked").expect("blocked");
        assert_eq!(
            (blocked.kind, blocked.reason),
            (EventKind::Dropped, Some(Reason::Blocked))
        );
        assert_eq!(kind("error"), Some((EventKind::Failed, None)));
        assert_eq!(kind("listAddition"), Some((EventKind::Subscribe, None)));
        assert_eq!(kind("contact_deleted"), Some((EventKind::Other, None)));
        assert_eq!(kind("reply"), None);
    }

    #[test]
    fn open_flags_follow_the_name() {
        let flags = |name| meaning_of(name).map(|m| (m.kind, m.first_open, m.proxy));
        assert_eq!(flags("opened"), Some((EventKind::Open, false, false)));
        assert_eq!(flags("unique_opened"), Some((EventKind::Open, true, false)));
        assert_eq!(flags("uniqueOpened"), Some((EventKind::Open, true, false)));
        assert_eq!(flags("proxy_open"), Some((EventKind::Open, false, true)));
        assert_eq!(
            flags("unique_proxy_open"),
            Some((EventKind::Open, true, true))
        );
    }

    #[test]
    fn family_comes_from_the_keys_first() {
        let body = raw(r#"{"event": "spam", "message-id": "x@y"}"#);
        assert_eq!(family_of(&fields(&body), None), Some(Family::Transactional));
        let body = raw(r#"{"event": "spam", "camp_id": 12}"#);
        assert_eq!(
            family_of(&fields(&body), Some(Family::Transactional)),
            Some(Family::Marketing)
        );
        let body = raw(r#"{"event": "list_addition", "key": "k", "list_id": [1]}"#);
        assert_eq!(family_of(&fields(&body), None), Some(Family::Marketing));
        let body = raw(r#"{"event": "blocked", "template_id": 22}"#);
        assert_eq!(family_of(&fields(&body), None), Some(Family::Transactional));
        let body = raw(r#"{"event": "delivered"}"#);
        assert_eq!(family_of(&fields(&body), None), None);
    }

    #[test]
    fn message_ids_lose_their_brackets() {
        assert_eq!(
            strip_brackets(" <201798300811.5787683@relay.domain.com> "),
            "201798300811.5787683@relay.domain.com"
        );
        assert_eq!(
            strip_brackets("an#2705147202202651768"),
            "an#2705147202202651768"
        );
    }

    #[test]
    fn tags_merge_every_shape() {
        let body = raw(r#"{"tags": ["a", "b"], "tag": "[\"b\", \"c\", 7]"}"#);
        let mut reader = fields(&body);
        assert_eq!(tags(&mut reader), vec!["a", "b", "c", "7"]);
        let body = raw(r#"{"tag": "newsletter"}"#);
        assert_eq!(tags(&mut fields(&body)), vec!["newsletter"]);
        let body = raw(r#"{"tag": ""}"#);
        assert!(tags(&mut fields(&body)).is_empty());
        let body = raw(r#"{"tag": "[not json"}"#);
        let mut reader = fields(&body);
        assert_eq!(tags(&mut reader), vec!["[not json"]);
        assert_eq!(reader.warnings().take().len(), 1);
    }

    #[test]
    fn storage_failures_ask_brevo_to_retry() {
        // Any 5xx would make Brevo discard the event.
        assert_eq!(Brevo.retry_status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(Brevo.default_timezone(), "Europe/Paris");
    }
}
