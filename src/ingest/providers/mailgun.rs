//! Mailgun webhooks: one JSON object, one event, per request:
//! `{"signature": {...}, "event-data": {...}}`
//! (<https://documentation.mailgun.com/docs/mailgun/user-manual/webhooks/webhook-payloads>).
//! `event-data` is an Events API event document
//! (<https://documentation.mailgun.com/docs/mailgun/user-manual/events/event-types>). The
//! format is shared with LeadConnector, which wraps it in its own object and reads it with
//! [`normalize_payload`].
//!
//! # Events
//!
//! The webhook types (`accepted`, `delivered`, `temporary_fail`, `permanent_fail`, `opened`,
//! `clicked`, `unsubscribed`, `complained`) send these `event` values:
//!
//! | `event` | kind | notes |
//! | --- | --- | --- |
//! | `accepted` | queued | "placed in queue"; routed copies too (`flags.is-routed`) |
//! | `delivered` | delivered | not retried by Mailgun if we fail to answer 200 |
//! | `failed`, `severity: temporary` | deferred | Mailgun "will re-attempt delivery"; reason from the reply (`greylisted`: other; `espblock`: blocked) |
//! | `failed`, `reason: bounce` | bounce | class from `delivery-status.bounce-type`, else hard (Mailgun lists these addresses as bounced) |
//! | `failed`, `reason: espblock` | bounce, undetermined, blocked | the receiving side refused on policy |
//! | `failed`, `reason: suppress-bounce` / `suppress-unsubscribe` / `suppress-complaint` | dropped; bounced / unsubscribed / spam | never attempted: Mailgun's own lists (code 605 is Mailgun's, not SMTP) |
//! | `failed`, `reason: hardfail` (legacy) | dropped, other | "previously bounced, unsubscribed, or complained": which one is not said |
//! | `failed`, `reason: old` | failed, timed out | Mailgun gave up retrying (legacy docs: "for more than 8 hours"); no receiving server refused it permanently |
//! | `failed`, `reason: blacklisted` | failed, blocked | undocumented value; whose list is not said |
//! | `failed`, any other reason (`generic`...) | bounce when there is a refusal: a stated `bounce-type`, a delayed bounce (`flags.is-delayed-bounce`) or a 5xx reply (class from the reply); else failed | "addresses rejected by an ESP" land here |
//! | `opened`, `clicked` | open, click | reader's `ip`, `client-info.user-agent`, `url`; bot opens (`client-info.bot`) are kept, flagged in metadata |
//! | `unsubscribed` | unsubscribe, unsubscribed | |
//! | `complained` | complaint, spam | |
//!
//! Event types of the Events API that no webhook sends, read in case they arrive:
//! `rejected` (dropped: Mailgun refused the request; no `recipient`, so the message's
//! `recipients` or `To`; reason blocked for the sandbox refusal, else from the text, never
//! "bounced"), `stored` (other; recipients as for `rejected`), `list_member_uploaded`
//! (subscribe when `member.subscribed`, else other; recipient `member.address`).
//! `list_member_upload_error` and `list_uploaded` are reports about a mailing list and name
//! no recipient: they are quarantined with that reason. Any other `event` (the legacy
//! `dropped`, `bounced`...) is `other` with a warning. For LeadConnector only the events it
//! documents are known: the Events-API-only `stored` and list events are unknown there.
//!
//! # Fields
//!
//! `timestamp` is Unix seconds with a fraction, UTC (`exact`). `id` is "unique within a
//! day": it is the provider event id, which the dedup key combines with the event time, so
//! a retry (same id, same time) is a duplicate whatever its signature block, and two events
//! that share an id (the docs' list samples do) are both kept.
//! `message.headers.message-id` loses its angle brackets (the send API returns it with
//! them); `from` gives the sender, `subject` the subject; `campaigns[0]` (name, else id) the
//! campaign. `delivery-status.code` is an SMTP code or one of Mailgun's own (605
//! suppressed, 498 no MX): only 200-599 become `smtp_code`; a legacy enhanced code in `code`
//! (`"5.1.1"`) is read as one. `enhanced-code` (else the delayed bounce's `bounce-code`)
//! gives `smtp_enhanced`. `message` is the remote reply (its RFC 3464 diagnostic type
//! `smtp;` dropped) and is `smtp_response`; Mailgun's own `description` stands in only when
//! `message` is empty (suppressions), since for delayed bounces it is NDR prose. The whole
//! `delivery-status`, `envelope` (with the sending IP) and `flags` go to metadata, as do
//! `severity` and `reason`.
//!
//! Decisions where the docs say nothing: a deferral's reason is what its reply says, even
//! when that is the cause rather than a verdict (498 "No MX for [example.com]" is invalid:
//! the domain takes no mail now, and Mailgun still retries); `failed` without `severity` is
//! read as permanent; `bounce-type` other than hard or soft is ignored.
//! `user-variables` and `storage` are objects, but current payloads send an empty one as
//! `[]`: an empty one is left out; `user-variables` can also be Mailgun's own string "Could
//! not load user-variables..." (kept, with a warning).
//!
//! # Signature
//!
//! (<https://documentation.mailgun.com/docs/mailgun/user-manual/webhooks/securing-webhooks>)
//! `signature.signature` is the hex HMAC-SHA256 of `timestamp` followed by `token`, keyed
//! with the HTTP webhook signing key; for a subaccount's event `parent-signature` is the
//! same made with the primary account's key ("so that the receiving server does not have to
//! account for each individual subaccount signature"): either one matching the configured
//! key is accepted. The signature does not cover the body, so a token is accepted once
//! ([`ReplayCache`]) and timestamps older than `max_signature_age_secs` are refused.
//! Mailgun retries for 8 hours, apparently with the original signature, and asks not to
//! be "too aggressive" with the age check: the default of one hour covers a service
//! outage of half an hour (the first three retries come 5, 15 and 30 minutes after the
//! event) while keeping the replay window short.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{Element, ElementError, MAX_FIELD_CHARS, Provider, emit, recipients, set_time};
use crate::config::SourceConfig;
use crate::event::{BounceClass, EmailAddress, Event, EventKind, Reason};
use crate::ingest::fields::{Fields, JsonType, MAX_METADATA_FIELD_BYTES, clip};
use crate::ingest::smtp::{self, Reply};
use crate::ingest::sources::SourceContext;
use crate::ingest::verify::crypto::{Mac, MacKey, hex_decode};
use crate::ingest::verify::replay::ReplayCache;
use crate::ingest::verify::{self, AuthError, Request, Verified, Verify};

/// The Mailgun adapter.
pub struct Mailgun;

/// Default tolerance for the signed timestamp (see the module documentation).
const DEFAULT_MAX_AGE_SECS: u64 = 3_600;

impl Provider for Mailgun {
    fn name(&self) -> &str {
        "mailgun"
    }

    fn checks(
        &self,
        settings: &SourceConfig,
        _context: &SourceContext,
    ) -> Result<Vec<Box<dyn Verify>>, String> {
        verify::timed_signature_checks(
            self.name(),
            settings,
            "signing_key",
            settings.signing_key.as_ref().map(|k| k.expose()),
            DEFAULT_MAX_AGE_SECS,
            |key, max_age_secs| {
                Ok(Box::new(MailgunSignature {
                    key: MacKey::new(Mac::Sha256, key.as_bytes()),
                    max_age_secs,
                    seen: Arc::new(ReplayCache::default()),
                }))
            },
        )
    }

    fn normalize(&self, element: &Element<'_>, out: &mut Vec<Event>) -> Result<(), ElementError> {
        let mut body = element.fields()?;
        // Transport, not event data: checked by the signature check, kept in `raw`.
        body.raw("signature");
        if !body.has("event-data") {
            return Err(ElementError::Malformed(
                "missing `event-data` (expected a Mailgun webhook body \
                 `{\"signature\": {...}, \"event-data\": {...}}`)"
                    .to_owned(),
            ));
        }
        let payload = body
            .object("event-data")
            .ok_or_else(|| ElementError::Malformed("`event-data` is not an object".to_owned()))?;
        normalize_event_data(
            element,
            payload,
            &mut body,
            "event-data.event",
            Catalogue::Mailgun,
            out,
        )
    }
}

/// Whose documentation says which event names exist.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Catalogue {
    /// Mailgun's: the webhook types and the Events API types.
    Mailgun,
    /// A service that wraps Mailgun's events (LeadConnector): the webhook types and
    /// `rejected`; the Events-API-only types are unknown there.
    Wrapped,
}

/// Event names only Mailgun's Events API documents (no webhook sends them).
const EVENTS_API_ONLY: [&str; 4] = [
    "stored",
    "list_member_uploaded",
    "list_member_upload_error",
    "list_uploaded",
];

/// Normalizes one Mailgun `event-data` object wrapped by another service (LeadConnector);
/// fields of `wrapper` nobody read go to metadata too. `event_path` names where the event
/// name is, for errors.
pub(super) fn normalize_payload(
    element: &Element<'_>,
    payload: Fields<'_>,
    wrapper: &mut Fields<'_>,
    event_path: &'static str,
    out: &mut Vec<Event>,
) -> Result<(), ElementError> {
    normalize_event_data(
        element,
        payload,
        wrapper,
        event_path,
        Catalogue::Wrapped,
        out,
    )
}

fn normalize_event_data(
    element: &Element<'_>,
    mut payload: Fields<'_>,
    wrapper: &mut Fields<'_>,
    event_path: &'static str,
    catalogue: Catalogue,
    out: &mut Vec<Event>,
) -> Result<(), ElementError> {
    let name = payload
        .text("event")
        .ok_or(ElementError::MissingEventName(event_path))?;
    let lower = name.trim().to_lowercase();
    let known = catalogue == Catalogue::Mailgun || !EVENTS_API_ONLY.contains(&lower.as_str());
    let mut message = payload.object("message");
    let mut headers = message.as_mut().and_then(|m| m.object("headers"));
    let mut member = payload.object("member");
    let recipients = event_recipients(
        if known { &lower } else { "" },
        &mut payload,
        message.as_mut(),
        headers.as_mut(),
        member.as_mut(),
    )?;

    let mut status = payload.object("delivery-status");
    let delayed = payload
        .object("flags")
        .and_then(|mut flags| flags.boolean("is-delayed-bounce"))
        == Some(true);
    let failure = Failure {
        severity: payload.text("severity"),
        reason: payload.text("reason"),
        bounce_type: status.as_mut().and_then(|s| s.text("bounce-type")),
        delayed,
    };
    let subscribed = member.as_mut().and_then(|m| m.boolean("subscribed"));
    let (reply, mut text) = match status.as_mut() {
        Some(status) => read_status(status),
        None => (Reply::default(), None),
    };
    let mapped = if known {
        kind_of(&lower, &failure, &reply, subscribed)
    } else {
        None
    };
    let (kind, class) = mapped.unwrap_or((EventKind::Other, None));
    let first = recipients[0].clone();
    let mut event = if mapped.is_some() && kind == EventKind::Other {
        // Documented, just not about delivery: no "unknown event" warning or count.
        element.documented_event(&name, kind, first)
    } else {
        element.event(&name, kind, first, &payload)
    };
    let read = element.time(&mut payload, "timestamp", true);
    set_time(&mut event, read);
    // Unique per event within a day; the dedup key adds the event time.
    event.provider_event_id = payload.text("id");

    if let Some(headers) = headers.as_mut() {
        event.message_id = headers.text("message-id").map(|id| {
            id.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_owned()
        });
        event.subject = headers
            .text("subject")
            .map(|s| clip(&s, MAX_FIELD_CHARS).to_owned());
        event.sender = headers
            .text("from")
            .map(|from| match EmailAddress::parse(&from) {
                Ok(address) => address.as_str().to_owned(),
                Err(_) => clip(&from, 320).to_owned(),
            });
    }
    event.tags = payload.texts("tags");
    event.campaign = campaign(&mut payload);
    // The reader's address; the sending IP is `envelope.sending-ip` (metadata).
    if matches!(
        kind,
        EventKind::Open | EventKind::Click | EventKind::Unsubscribe
    ) {
        event.ip = payload.text("ip");
    }
    if kind == EventKind::Click {
        event.click_url = payload
            .text("url")
            .map(|url| clip(&url, MAX_FIELD_CHARS).to_owned());
    }
    if let Some(mut client) = payload.object("client-info") {
        event.user_agent = client.text("user-agent");
        client.rest_into(&mut event.metadata);
    }
    if lower == "rejected" && text.is_none() {
        // `rejected` says why in `reject`, not in `delivery-status`.
        if let Some(mut reject) = payload.object("reject") {
            text = reject.text_of(&["reason", "description"]);
            reject.rest_into(&mut event.metadata);
        }
    }
    event.smtp_code = reply.code;
    event.smtp_enhanced = reply.enhanced.clone();
    event.smtp_response = text.map(|t| clip(t.trim(), MAX_FIELD_CHARS).to_owned());

    event.reason = reason_of(
        &lower,
        kind,
        failure.reason.as_deref(),
        &reply,
        event.smtp_response.as_deref(),
    );
    if kind == EventKind::Bounce {
        event.bounce_class =
            Some(class.unwrap_or_else(|| smtp::class_from_reply(&reply, event.reason)));
    }
    for (key, value) in [("severity", failure.severity), ("reason", failure.reason)] {
        if let Some(value) = value {
            event.metadata.insert(key.to_owned(), Value::String(value));
        }
    }
    for key in ["delivery-status", "envelope", "flags", "member"] {
        payload.copy_into(key, key, &mut event.metadata);
    }
    for key in ["user-variables", "storage"] {
        copy_map(&mut payload, key, &mut event.metadata);
    }
    if let Some(message) = message.as_mut() {
        message.copy_into("size", "message-size", &mut event.metadata);
    }
    payload.rest_into(&mut event.metadata);
    wrapper.rest_into(&mut event.metadata);
    let warnings = payload.warnings().clone();
    emit(event, recipients, &warnings, out);
    Ok(())
}

/// Reads whom an event is about: `recipient`, which every event about one message and
/// one recipient has. The events that have none by design say it elsewhere; `event` is the
/// lower-case name of a known event, or empty for an unknown one.
fn event_recipients(
    event: &str,
    payload: &mut Fields<'_>,
    message: Option<&mut Fields<'_>>,
    headers: Option<&mut Fields<'_>>,
    member: Option<&mut Fields<'_>>,
) -> Result<Vec<EmailAddress>, ElementError> {
    if payload.has("recipient") {
        return recipients(payload, &["recipient"]);
    }
    match event {
        // The message's envelope recipients (`stored`), else its `To` header.
        "rejected" | "stored" => {
            if let Some(Ok(list)) = message.map(|m| recipients(m, &["recipients"])) {
                return Ok(list);
            }
            if let Some(Ok(list)) = headers.map(|h| recipients(h, &["to"])) {
                return Ok(list);
            }
            Err(ElementError::NoRecipient(
                "none of `recipient`, `message.recipients`, `message.headers.to` holds an \
                 address"
                    .to_owned(),
            ))
        }
        "list_member_uploaded" => match member {
            Some(member) => recipients(member, &["address"]).map_err(|_| {
                ElementError::NoRecipient(
                    "none of `recipient`, `member.address` holds an address".to_owned(),
                )
            }),
            None => Err(ElementError::NoRecipient(
                "none of `recipient`, `member.address` is present".to_owned(),
            )),
        },
        "list_member_upload_error" | "list_uploaded" => Err(ElementError::NoRecipient(format!(
            "`{event}` is a report about a mailing list and names no recipient (Mailgun \
             sends no webhook for it)"
        ))),
        _ => recipients(payload, &["recipient"]),
    }
}

/// Reads `delivery-status`: the reply codes and the reply text.
fn read_status(status: &mut Fields<'_>) -> (Reply, Option<String>) {
    let mut reply = Reply::default();
    let mut enhanced_in_code = None;
    if let Some(code) = status.text("code") {
        let code = code.trim();
        match code.parse::<i64>() {
            // Mailgun's own codes (605) are no SMTP replies: they stay in metadata.
            Ok(value) => reply.code = smtp::reply_code(value),
            // The legacy webhooks put the enhanced code here.
            Err(_) => match smtp::enhanced_code(code) {
                Some(enhanced) => enhanced_in_code = Some(enhanced),
                None => status.warn(
                    "code",
                    format_args!("`{}` is not an SMTP code; ignored", clip(code, 40)),
                ),
            },
        }
    }
    let stated: Vec<String> = ["enhanced-code", "bounce-code"]
        .iter()
        .filter_map(|key| status.text(key))
        .collect();
    reply.enhanced = stated
        .iter()
        .find_map(|code| smtp::enhanced_code(code))
        .or(enhanced_in_code);
    let remote = status
        .text("message")
        .map(|m| smtp::strip_diagnostic_type(&m).to_owned())
        .filter(|m| !m.is_empty());
    let description = status.text("description");
    let text = remote.or(description);
    if let Some(text) = &text {
        reply.complete_from_text(text);
    }
    (reply, text)
}

/// Copies an object field into metadata unless it is empty. Current payloads send an
/// empty `user-variables` or `storage` as `[]` (PHP's empty array); anything but an object
/// is kept as sent, with a warning (`user-variables` is Mailgun's own error text when the
/// variables were truncated or invalid JSON). An object's values are copied one by one, so
/// that an id beyond 64 bits among the user's variables keeps every digit.
fn copy_map(fields: &mut Fields<'_>, key: &str, metadata: &mut Map<String, Value>) {
    let Some(raw) = fields.raw(key) else {
        return;
    };
    let found = JsonType::of(raw);
    let text = raw.get();
    let empty = matches!(found, JsonType::Object | JsonType::Array)
        && text[1..text.len() - 1].trim().is_empty();
    if empty {
        return;
    }
    if found != JsonType::Object {
        fields.warn(
            key,
            format_args!("expected an object, found {found}; kept in metadata as sent"),
        );
        fields.copy_into(key, key, metadata);
        return;
    }
    if text.len() > MAX_METADATA_FIELD_BYTES {
        fields.warn(
            key,
            format_args!(
                "{} bytes, too large for metadata; kept in raw only",
                text.len()
            ),
        );
        return;
    }
    if let Some(object) = fields.object(key) {
        let mut values = Map::new();
        object.rest_into(&mut values);
        metadata.insert(key.to_owned(), Value::Object(values));
    }
}

/// What a `failed` event says about itself.
struct Failure {
    severity: Option<String>,
    reason: Option<String>,
    bounce_type: Option<String>,
    /// `flags.is-delayed-bounce`: a bounce message came back after the 250.
    delayed: bool,
}

/// Maps a known Mailgun event (lower-case name) to a kind and, for bounces, the class it
/// states (`None`: infer from the reply). `None` for an unknown event.
fn kind_of(
    name: &str,
    failure: &Failure,
    reply: &Reply,
    subscribed: Option<bool>,
) -> Option<(EventKind, Option<BounceClass>)> {
    let kind = match name {
        "accepted" => EventKind::Queued,
        "delivered" => EventKind::Delivered,
        "opened" => EventKind::Open,
        "clicked" => EventKind::Click,
        "complained" => EventKind::Complaint,
        "unsubscribed" => EventKind::Unsubscribe,
        "rejected" => EventKind::Dropped,
        "list_member_uploaded" if subscribed == Some(true) => EventKind::Subscribe,
        "stored" | "list_member_uploaded" | "list_member_upload_error" | "list_uploaded" => {
            EventKind::Other
        }
        "failed" => return Some(failed_kind(failure, reply)),
        _ => return None,
    };
    Some((kind, None))
}

/// Maps a `failed` event (see the module documentation's table).
fn failed_kind(failure: &Failure, reply: &Reply) -> (EventKind, Option<BounceClass>) {
    let lower = |value: &Option<String>| value.as_deref().map(|v| v.trim().to_lowercase());
    let reason = lower(&failure.reason).unwrap_or_default();
    let stated = match lower(&failure.bounce_type).as_deref() {
        Some("hard") => Some(BounceClass::Hard),
        Some("soft") => Some(BounceClass::Soft),
        _ => None,
    };
    if reason.starts_with("suppress") || reason == "hardfail" {
        return (EventKind::Dropped, None);
    }
    if lower(&failure.severity).as_deref() == Some("temporary") {
        return (EventKind::Deferred, None);
    }
    // Permanent, or a severity Mailgun does not document (`internal`, `unknown`).
    let refused = reply.code.is_some_and(|code| (500..600).contains(&code))
        || reply
            .enhanced
            .as_deref()
            .is_some_and(|e| e.starts_with("5."));
    match reason.as_str() {
        "old" | "blacklisted" => (EventKind::Failed, None),
        "bounce" => (EventKind::Bounce, Some(stated.unwrap_or(BounceClass::Hard))),
        "espblock" => (
            EventKind::Bounce,
            Some(stated.unwrap_or(BounceClass::Undetermined)),
        ),
        _ if stated.is_some() || failure.delayed || refused => (EventKind::Bounce, stated),
        _ => (EventKind::Failed, None),
    }
}

/// Why: Mailgun's own `reason` where it is telling, else the reply.
fn reason_of(
    name: &str,
    kind: EventKind,
    failure_reason: Option<&str>,
    reply: &Reply,
    text: Option<&str>,
) -> Option<Reason> {
    match kind {
        EventKind::Complaint => return Some(Reason::Spam),
        EventKind::Unsubscribe => return Some(Reason::Unsubscribed),
        EventKind::Bounce | EventKind::Deferred | EventKind::Failed | EventKind::Dropped => {}
        _ => return None,
    }
    if name == "rejected" {
        return Some(rejected_reason(reply, text));
    }
    let reason = failure_reason.map(|r| r.trim().to_lowercase());
    Some(match reason.as_deref() {
        Some("old") => Reason::TimedOut,
        Some("suppress-bounce") => Reason::Bounced,
        Some("suppress-unsubscribe") => Reason::Unsubscribed,
        Some("suppress-complaint") => Reason::Spam,
        Some("espblock" | "blacklisted") => Reason::Blocked,
        // Greylisting is a deliberate "try later", not a verdict on us or the address.
        Some("greylisted" | "hardfail") => Reason::Other,
        Some(other) if other.starts_with("suppress") => Reason::Other,
        _ => return smtp::classify(reply, text),
    })
}

/// Why Mailgun refused a sending request. Nothing bounced, so never "bounced"; the sandbox
/// refusal ("Sandbox subdomains are for test purposes only...") is Mailgun's policy.
fn rejected_reason(reply: &Reply, text: Option<&str>) -> Reason {
    let Some(text) = text else {
        return Reason::Other;
    };
    let lower = text.to_lowercase();
    if lower.contains("sandbox") || lower.contains("authorized recipients") {
        return Reason::Blocked;
    }
    match smtp::classify(reply, Some(text)) {
        Some(Reason::Bounced) | None => Reason::Other,
        Some(reason) => reason,
    }
}

/// The first campaign's name or id, if any.
fn campaign(payload: &mut Fields<'_>) -> Option<String> {
    let raw = payload.raw("campaigns")?;
    let list: Vec<&serde_json::value::RawValue> = serde_json::from_str(raw.get()).ok()?;
    let first = list.first()?;
    let mut fields = Fields::parse(first, payload.warnings().clone())?;
    fields.text_of(&["name", "id"])
}

/// The `signature` object of a Mailgun body. `timestamp` is documented as an integer and
/// sent as a string: either is read, and the decimal text is what is signed.
#[derive(Deserialize)]
struct SignatureBlock {
    signature: Option<SignatureFields>,
}

#[derive(Deserialize)]
struct SignatureFields {
    timestamp: Option<Value>,
    token: Option<String>,
    signature: Option<String>,
    /// A subaccount's event, signed again with the primary account's key.
    #[serde(rename = "parent-signature")]
    parent_signature: Option<String>,
}

/// Mailgun's HMAC over timestamp and token, with replay protection.
struct MailgunSignature {
    key: MacKey,
    max_age_secs: u64,
    seen: Arc<ReplayCache>,
}

impl Verify for MailgunSignature {
    fn method(&self) -> &'static str {
        "hmac_sha256"
    }

    fn verify(&self, request: &Request<'_>) -> Result<Verified, AuthError> {
        let missing = |what: &str| AuthError::MissingSignature(format!("no `signature.{what}`"));
        let block: SignatureBlock = serde_json::from_slice(request.body).map_err(|_| {
            AuthError::MissingSignature("the body is not a signed Mailgun JSON body".to_owned())
        })?;
        let fields = block.signature.ok_or_else(|| missing("*"))?;
        let timestamp = match fields.timestamp {
            Some(Value::String(text)) => text,
            Some(Value::Number(number)) => number.to_string(),
            _ => return Err(missing("timestamp")),
        };
        let token = fields.token.ok_or_else(|| missing("token"))?;
        let signature = fields.signature.ok_or_else(|| missing("signature"))?;
        let tag = hex_decode(&signature)
            .ok_or_else(|| AuthError::BadSignature("`signature.signature` is not hex".into()))?;
        let signed = [timestamp.as_bytes(), token.as_bytes()];
        let matches = self.key.verify(&signed, &tag)
            || fields
                .parent_signature
                .as_deref()
                .and_then(hex_decode)
                .is_some_and(|parent| self.key.verify(&signed, &parent));
        if !matches {
            return Err(AuthError::BadSignature(
                "HMAC-SHA256 of timestamp and token does not match the signing key".to_owned(),
            ));
        }
        let signed_at: i64 = timestamp.trim().parse().map_err(|_| {
            AuthError::BadSignature("`signature.timestamp` is not Unix seconds".to_owned())
        })?;
        verify::check_age(signed_at, request.now, self.max_age_secs)?;
        let expires =
            jiff::Timestamp::from_second(signed_at.saturating_add(self.max_age_secs as i64 + 1))
                .unwrap_or(jiff::Timestamp::MAX);
        let reservation = self
            .seen
            .reserve(&token, expires, request.now)
            .ok_or(AuthError::ReplayedToken)?;
        Ok(Verified::reserving(reservation))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;

    fn failure(severity: &str, reason: &str) -> Failure {
        Failure {
            severity: Some(severity.to_owned()),
            reason: Some(reason.to_owned()),
            bounce_type: None,
            delayed: false,
        }
    }

    fn reply(code: u16, enhanced: &str) -> Reply {
        Reply {
            code: Some(code),
            enhanced: smtp::enhanced_code(enhanced),
        }
    }

    #[test]
    fn failed_events_split_by_severity_and_reason() {
        let none = Reply::default();
        let kind = |f: Failure, r: &Reply| failed_kind(&f, r);
        assert_eq!(
            kind(failure("permanent", "bounce"), &none),
            (EventKind::Bounce, Some(BounceClass::Hard))
        );
        assert_eq!(
            kind(failure("temporary", "generic"), &reply(421, "")),
            (EventKind::Deferred, None)
        );
        for suppressed in [
            "suppress-bounce",
            "suppress-unsubscribe",
            "suppress-complaint",
        ] {
            assert_eq!(
                kind(failure("permanent", suppressed), &none),
                (EventKind::Dropped, None)
            );
        }
        assert_eq!(
            kind(failure("permanent", "old"), &none),
            (EventKind::Failed, None)
        );
        assert_eq!(
            kind(failure("permanent", "espblock"), &reply(554, "5.7.1")),
            (EventKind::Bounce, Some(BounceClass::Undetermined))
        );
        // A generic permanent failure is a bounce only when something refused it.
        assert_eq!(
            kind(failure("permanent", "generic"), &reply(550, "5.1.1")),
            (EventKind::Bounce, None)
        );
        assert_eq!(
            kind(failure("permanent", "generic"), &none),
            (EventKind::Failed, None)
        );
        assert_eq!(
            kind(
                Failure {
                    delayed: true,
                    ..failure("permanent", "generic")
                },
                &none
            ),
            (EventKind::Bounce, None)
        );
        assert_eq!(
            kind(
                Failure {
                    severity: None,
                    reason: None,
                    bounce_type: Some("soft".to_owned()),
                    delayed: false,
                },
                &none
            ),
            (EventKind::Bounce, Some(BounceClass::Soft))
        );
    }

    #[test]
    fn other_events_map_by_name() {
        let none = Reply::default();
        let kind = |name: &str, subscribed| {
            kind_of(name, &failure("", ""), &none, subscribed).map(|(kind, _)| kind)
        };
        assert_eq!(kind("accepted", None), Some(EventKind::Queued));
        assert_eq!(kind("rejected", None), Some(EventKind::Dropped));
        assert_eq!(
            kind("list_member_uploaded", Some(true)),
            Some(EventKind::Subscribe)
        );
        assert_eq!(
            kind("list_member_uploaded", Some(false)),
            Some(EventKind::Other)
        );
        assert_eq!(kind("stored", None), Some(EventKind::Other));
        assert_eq!(kind("dropped", None), None);
    }

    #[test]
    fn reasons_come_from_mailgun_first() {
        let none = Reply::default();
        let reason = |kind, r: &str, text| reason_of("failed", kind, Some(r), &none, text);
        assert_eq!(
            reason(EventKind::Failed, "old", None),
            Some(Reason::TimedOut)
        );
        assert_eq!(
            reason(
                EventKind::Deferred,
                "greylisted",
                Some("451 4.7.1 greylisted")
            ),
            Some(Reason::Other)
        );
        assert_eq!(
            reason(EventKind::Dropped, "suppress-complaint", None),
            Some(Reason::Spam)
        );
        assert_eq!(
            reason_of(
                "rejected",
                EventKind::Dropped,
                None,
                &none,
                Some("Sandbox subdomains are for test purposes only.")
            ),
            Some(Reason::Blocked)
        );
        assert_eq!(
            reason_of("rejected", EventKind::Dropped, None, &none, Some("nope")),
            Some(Reason::Other)
        );
    }

    fn check(key: &str, body: &str, now: i64) -> Result<(), AuthError> {
        let check = MailgunSignature {
            key: MacKey::new(Mac::Sha256, key.as_bytes()),
            max_age_secs: 300,
            seen: Arc::new(ReplayCache::default()),
        };
        let headers = HeaderMap::new();
        let request = Request {
            headers: &headers,
            query: None,
            body: body.as_bytes(),
            now: jiff::Timestamp::from_second(now).unwrap(),
        };
        check.verify(&request).map(Verified::keep)
    }

    /// Mailgun's own vector (mailgun-php's webhook test): key, timestamp, token, signature.
    const KEY: &str = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0";
    const VECTOR: &str = r#"{"signature": {"timestamp": "1403645220",
        "token": "5egbgr1vjgqxtrnp65xfznchgdccwh5d6i09vijqi3whgowmn6",
        "signature": "9cfc5c41582e51246e73c88d34db3af0a3a2692a76fbab81492842f000256d33"}}"#;

    #[test]
    fn mailguns_published_vector_verifies() {
        assert_eq!(check(KEY, VECTOR, 1_403_645_220), Ok(()));
        assert!(matches!(
            check("key-other", VECTOR, 1_403_645_220),
            Err(AuthError::BadSignature(_))
        ));
        assert!(matches!(
            check(KEY, VECTOR, 1_403_645_220 + 301),
            Err(AuthError::StaleTimestamp { .. })
        ));
        assert!(matches!(
            check(KEY, &VECTOR.replace("5egb", "6egb"), 1_403_645_220),
            Err(AuthError::BadSignature(_))
        ));
        assert!(matches!(
            check(KEY, r#"{"event-data": {}}"#, 1_403_645_220),
            Err(AuthError::MissingSignature(_))
        ));
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn a_subaccount_event_verifies_with_the_primary_accounts_key() {
        let (timestamp, token) = (
            "1770920772",
            "e0b5477167110d68991efc6b9f89f0a11066af27834600e123",
        );
        let sign = |key: &str| {
            hex(&MacKey::new(Mac::Sha256, key.as_bytes())
                .sign(&[timestamp.as_bytes(), token.as_bytes()]))
        };
        let body = format!(
            r#"{{"signature": {{"timestamp": "{timestamp}", "token": "{token}",
                "signature": "{}", "parent-signature": "{}"}}}}"#,
            sign("key-subaccount"),
            sign("key-primary")
        );
        let now = 1_770_920_772;
        assert_eq!(check("key-primary", &body, now), Ok(()));
        assert_eq!(check("key-subaccount", &body, now), Ok(()));
        assert!(matches!(
            check("key-third", &body, now),
            Err(AuthError::BadSignature(_))
        ));
    }
}
