//! Mailgun webhooks: one JSON object per request, `{"signature": {...}, "event-data": {...}}`
//! (<https://documentation.mailgun.com/docs/mailgun/user-manual/webhooks/webhook-payloads>).
//! The `event-data` format is shared with LeadConnector, which wraps it; both use
//! [`normalize_payload`].
//!
//! Events: `accepted` (queued), `delivered`, `failed` (see below), `opened`, `clicked`,
//! `unsubscribed`, `complained`; the Events-API-only `rejected` (dropped), `stored` and the
//! mailing-list events (`list_member_uploaded` → subscribe when the member is subscribed,
//! others → other) are read too in case they arrive.
//! `failed` carries `severity`: `temporary` means Mailgun will try again (deferred);
//! `permanent` is a bounce, classed by `delivery-status.bounce-type` when present, else
//! hard for `reason: bounce` and from the reply otherwise (`espblock` is a policy block,
//! class undetermined). `reason: suppress-bounce | suppress-unsubscribe |
//! suppress-complaint` (and the legacy `hardfail`) mean Mailgun never attempted the message
//! because of its own lists (dropped); `old` means retries ran out (a soft bounce that gave
//! up, reason timed out). `delivery-status.code` is an SMTP code or one of Mailgun's own
//! (605 suppressed): only 200-599 become `smtp_code`.
//! `timestamp` is Unix seconds with a fraction; `id` is unique per event (within a day,
//! which the dedup key's time covers); `message.headers.message-id` loses its angle brackets.
//!
//! Signature (<https://documentation.mailgun.com/docs/mailgun/user-manual/webhooks/securing-webhooks>):
//! `signature.signature` is the hex HMAC-SHA256 of `timestamp` followed by `token`, keyed
//! with the HTTP webhook signing key. It does not cover the body, so a token is accepted
//! once ([`ReplayCache`]) and timestamps older than `max_signature_age_secs` are refused.
//! Mailgun retries for 8 hours, apparently with the original signature, and asks not to
//! be "too aggressive" with the age check: the default of one hour covers a service
//! outage of half an hour (the first retries) while keeping the replay window short.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use super::{Element, ElementError, MAX_FIELD_CHARS, Provider, emit, recipients, set_time};
use crate::config::SourceConfig;
use crate::event::{BounceClass, EmailAddress, Event, EventKind, Reason};
use crate::ingest::fields::{Fields, clip};
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
        let mut checks = verify::credential_checks(
            self.name(),
            settings,
            &["signing_key", "max_signature_age_secs"],
        )?;
        if let Some(key) = verify::required(
            settings.signing_key.as_ref().map(|k| k.expose()),
            "signing_key",
        )? {
            checks.push(Box::new(MailgunSignature {
                key: MacKey::new(Mac::Sha256, key.as_bytes()),
                max_age_secs: settings
                    .max_signature_age_secs
                    .unwrap_or(DEFAULT_MAX_AGE_SECS),
                seen: Arc::new(ReplayCache::default()),
            }));
        } else if settings.max_signature_age_secs.is_some() {
            return Err("`max_signature_age_secs` needs `signing_key`".to_owned());
        }
        Ok(checks)
    }

    fn normalize(&self, element: &Element<'_>, out: &mut Vec<Event>) -> Result<(), ElementError> {
        let mut body = element.fields()?;
        // Transport, not event data: checked by the signature check, kept in `raw`.
        body.raw("signature");
        let payload = if body.has("event-data") {
            body.object("event-data").ok_or_else(|| {
                ElementError::Malformed("`event-data` is not an object".to_owned())
            })?
        } else {
            return Err(ElementError::Malformed(
                "missing `event-data` (expected a Mailgun webhook body)".to_owned(),
            ));
        };
        normalize_payload(element, payload, &mut body, "event-data.event", out)
    }
}

/// Normalizes one Mailgun `event-data` object; fields of `wrapper` nobody read go to
/// metadata too. `event_path` names where the event name is, for errors.
pub(super) fn normalize_payload(
    element: &Element<'_>,
    mut payload: Fields<'_>,
    wrapper: &mut Fields<'_>,
    event_path: &'static str,
    out: &mut Vec<Event>,
) -> Result<(), ElementError> {
    let name = payload
        .text("event")
        .ok_or(ElementError::MissingEventName(event_path))?;
    let mut message = payload.object("message");
    let mut headers = message.as_mut().and_then(|m| m.object("headers"));
    let mut member = payload.object("member");
    let recipients = match recipients(&mut payload, &["recipient"]) {
        Ok(list) => list,
        Err(first_error) => {
            let from_headers = headers.as_mut().map(|h| recipients(h, &["to"]));
            let from_member = member.as_mut().map(|m| recipients(m, &["address"]));
            match (from_headers, from_member) {
                (Some(Ok(list)), _) | (_, Some(Ok(list))) => list,
                _ => return Err(first_error),
            }
        }
    };

    let mut status = payload.object("delivery-status");
    let severity = payload.text("severity");
    let failure_reason = payload.text("reason");
    let bounce_type = status.as_mut().and_then(|s| s.text("bounce-type"));
    let subscribed = member.as_mut().and_then(|m| m.boolean("subscribed"));
    let mut reply = Reply::default();
    let mut text = None;
    if let Some(status) = status.as_mut() {
        reply.code = status.integer("code").and_then(smtp::reply_code);
        reply.enhanced = status
            .text_of(&["enhanced-code", "bounce-code"])
            .and_then(|code| smtp::enhanced_code(&code));
        let message_text = status.text("message");
        let description = status.text("description");
        text = match (message_text, description) {
            (Some(m), Some(d)) if m != d => Some(format!("{m} {d}")),
            (Some(m), _) => Some(m),
            (None, d) => d,
        };
    }
    if let Some(text) = &text {
        reply.complete_from_text(text);
    }
    let failure = Failure {
        severity: severity.as_deref(),
        reason: failure_reason.as_deref(),
        bounce_type: bounce_type.as_deref(),
    };
    let (kind, class) = kind_of(&name, &failure, subscribed);
    let first = recipients[0].clone();
    let mut event = element.event(&name, kind, first, &payload);
    let read = element.time(&mut payload, "timestamp", true);
    set_time(&mut event, read);
    // Unique per event (Mailgun: "within a day"; the dedup key adds the event time).
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
    if matches!(
        kind,
        EventKind::Open | EventKind::Click | EventKind::Unsubscribe | EventKind::Complaint
    ) {
        event.ip = payload.text("ip");
    }
    event.click_url = payload
        .text("url")
        .map(|url| clip(&url, MAX_FIELD_CHARS).to_owned());
    if let Some(mut client) = payload.object("client-info") {
        event.user_agent = client.text("user-agent");
        client.rest_into(&mut event.metadata);
    }
    if kind == EventKind::Dropped && text.is_none() {
        // `rejected` says why in `reject.reason`.
        if let Some(mut reject) = payload.object("reject") {
            text = reject.text_of(&["reason", "description"]);
            reject.rest_into(&mut event.metadata);
        }
    }
    event.smtp_code = reply.code;
    event.smtp_enhanced = reply.enhanced.clone();
    event.smtp_response = text.map(|t| clip(t.trim(), MAX_FIELD_CHARS).to_owned());

    event.reason = match kind {
        EventKind::Bounce | EventKind::Deferred | EventKind::Failed | EventKind::Dropped => {
            reason_of(&failure, &reply, event.smtp_response.as_deref())
        }
        EventKind::Complaint => Some(Reason::Spam),
        EventKind::Unsubscribe => Some(Reason::Unsubscribed),
        _ => None,
    };
    if kind == EventKind::Bounce {
        event.bounce_class =
            Some(class.unwrap_or_else(|| smtp::class_from_reply(&reply, event.reason)));
    }
    for (key, value) in [("severity", severity), ("reason", failure_reason)] {
        if let Some(value) = value {
            event.metadata.insert(key.to_owned(), Value::String(value));
        }
    }
    for key in ["delivery-status", "envelope", "flags", "user-variables"] {
        payload.copy_into(key, key, &mut event.metadata);
    }
    if let Some(message) = message.as_mut() {
        message.copy_into("size", "message-size", &mut event.metadata);
    }
    if let Some(member) = member.as_mut() {
        member.rest_into(&mut event.metadata);
    }
    payload.rest_into(&mut event.metadata);
    wrapper.rest_into(&mut event.metadata);
    let warnings = payload.warnings().clone();
    emit(event, recipients, &warnings, out);
    Ok(())
}

/// What a `failed` event says about itself.
struct Failure<'a> {
    severity: Option<&'a str>,
    reason: Option<&'a str>,
    bounce_type: Option<&'a str>,
}

/// Maps a Mailgun event to a kind and, for bounces, the class it states (`None`: infer
/// from the reply).
fn kind_of(
    name: &str,
    failure: &Failure<'_>,
    subscribed: Option<bool>,
) -> (EventKind, Option<BounceClass>) {
    let stated = match failure.bounce_type.map(str::to_lowercase).as_deref() {
        Some("hard") => Some(BounceClass::Hard),
        Some("soft") => Some(BounceClass::Soft),
        _ => None,
    };
    match name.trim().to_lowercase().as_str() {
        "accepted" => (EventKind::Queued, None),
        "delivered" => (EventKind::Delivered, None),
        "opened" => (EventKind::Open, None),
        "clicked" => (EventKind::Click, None),
        "complained" => (EventKind::Complaint, None),
        "unsubscribed" => (EventKind::Unsubscribe, None),
        "rejected" => (EventKind::Dropped, None),
        "list_member_uploaded" if subscribed == Some(true) => (EventKind::Subscribe, None),
        "failed" | "bounced" => {
            let reason = failure.reason.map(str::to_lowercase);
            if reason
                .as_deref()
                .is_some_and(|r| r.starts_with("suppress") || r == "hardfail")
            {
                return (EventKind::Dropped, None);
            }
            match failure.severity.map(str::to_lowercase).as_deref() {
                Some("temporary") => (EventKind::Deferred, None),
                _ => match reason.as_deref() {
                    Some("old") => (EventKind::Bounce, Some(stated.unwrap_or(BounceClass::Soft))),
                    Some("bounce") => {
                        (EventKind::Bounce, Some(stated.unwrap_or(BounceClass::Hard)))
                    }
                    Some("espblock") => (
                        EventKind::Bounce,
                        Some(stated.unwrap_or(BounceClass::Undetermined)),
                    ),
                    _ => (EventKind::Bounce, stated),
                },
            }
        }
        _ => (EventKind::Other, None),
    }
}

/// Reason for a failure: Mailgun's own `reason` where it is telling, else the reply.
fn reason_of(failure: &Failure<'_>, reply: &Reply, text: Option<&str>) -> Option<Reason> {
    match failure.reason {
        Some("old") => Some(Reason::TimedOut),
        Some("suppress-unsubscribe") => Some(Reason::Unsubscribed),
        Some("suppress-complaint") => Some(Reason::Spam),
        Some("suppress-bounce") => Some(Reason::Bounced),
        Some("espblock") => Some(Reason::Blocked),
        Some("hardfail") => Some(Reason::Other),
        _ => smtp::classify(reply, text),
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
        if !self
            .key
            .verify(&[timestamp.as_bytes(), token.as_bytes()], &tag)
        {
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

    fn failure<'a>(severity: &'a str, reason: &'a str) -> Failure<'a> {
        Failure {
            severity: Some(severity),
            reason: Some(reason),
            bounce_type: None,
        }
    }

    #[test]
    fn failed_events_split_by_severity_and_reason() {
        let kind = |f: Failure<'_>| kind_of("failed", &f, None);
        assert_eq!(
            kind(failure("permanent", "bounce")),
            (EventKind::Bounce, Some(BounceClass::Hard))
        );
        assert_eq!(
            kind(failure("temporary", "generic")),
            (EventKind::Deferred, None)
        );
        assert_eq!(
            kind(failure("permanent", "suppress-bounce")),
            (EventKind::Dropped, None)
        );
        assert_eq!(
            kind(failure("permanent", "old")),
            (EventKind::Bounce, Some(BounceClass::Soft))
        );
        assert_eq!(
            kind(failure("permanent", "espblock")),
            (EventKind::Bounce, Some(BounceClass::Undetermined))
        );
        assert_eq!(
            kind(Failure {
                severity: None,
                reason: None,
                bounce_type: Some("soft")
            }),
            (EventKind::Bounce, Some(BounceClass::Soft))
        );
        assert_eq!(
            kind_of("list_member_uploaded", &failure("", ""), Some(true)).0,
            EventKind::Subscribe
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
}
