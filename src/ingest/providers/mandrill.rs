//! Mandrill (Mailchimp Transactional) webhooks: an `application/x-www-form-urlencoded`
//! POST with one field, `mandrill_events`, holding a JSON array of up to 1 000 events
//! (<https://mailchimp.com/developer/transactional/docs/webhooks/>). When a webhook is added,
//! Mandrill checks the URL with `HEAD`, which the webhook route answers with `200`; its
//! validation POST carries `mandrill_events=[]`.
//!
//! Message events (`event`, `ts`, `_id`, `msg`):
//! - `send` → sent ("sent successfully": handed on, not confirmed delivered), `delivered`
//!   → delivered, `deferral` → deferred (reply from the last `msg.smtp_events`);
//! - `hard_bounce` / `soft_bounce` → bounce, hard / soft; the reason comes from
//!   `msg.bounce_description` (bad_mailbox / invalid_domain / invalid → invalid,
//!   mailbox_full / general → bounced, policy_related / spam_related → blocked), the
//!   reply in `msg.diag` (without its `smtp;` type) refines an unknown one;
//! - `open`, `click` (`ip`, `user_agent`, `url` at the event level), `spam` → complaint,
//!   `unsub` → unsubscribe, `reject` → dropped (Mandrill refused to send; reason from
//!   `msg.reject.reason` when present).
//!
//! Sync events (`type` blacklist/denylist or whitelist/allowlist, `action`) are list
//! maintenance, not message events: kept as `other` with the address from `reject.email`
//! or `entry.email`. `inbound` messages (inbound routes) are `other` too.
//!
//! `ts` is Unix seconds; `_id` is the message id, shared by all events of one message, so
//! there is no per-event id (dedup hashes the event). `msg.metadata` is merged into
//! metadata; `msg.tags` are tags.
//!
//! Signature (<https://mailchimp.com/developer/transactional/guides/track-respond-activity-webhooks/#authenticating-webhook-requests>):
//! `X-Mandrill-Signature` is the base64 HMAC-SHA1, keyed with the webhook's key, of the
//! webhook URL exactly as registered (`url`) followed by each POST field's name and
//! (form-decoded) value, sorted by name. Mandrill signs no timestamp: replays repeat
//! events, which dedup folds.

use std::borrow::Cow;

use serde_json::Value;

use super::{Element, ElementError, MAX_FIELD_CHARS, Provider, emit, recipients, set_time};
use crate::config::SourceConfig;
use crate::event::{BounceClass, Event, EventKind, Reason};
use crate::ingest::body::BodyError;
use crate::ingest::fields::{Fields, clip};
use crate::ingest::smtp::{self, Reply};
use crate::ingest::sources::SourceContext;
use crate::ingest::verify::crypto::{Mac, MacKey, base64_decode};
use crate::ingest::verify::{self, AuthError, Request, Verified, Verify};

/// The Mandrill adapter.
pub struct Mandrill;

/// The form field that carries the events.
pub const EVENTS_FIELD: &str = "mandrill_events";
/// Header carrying the signature.
pub const SIGNATURE_HEADER: &str = "x-mandrill-signature";

impl Provider for Mandrill {
    fn name(&self) -> &str {
        "mandrill"
    }

    fn checks(
        &self,
        settings: &SourceConfig,
        _context: &SourceContext,
    ) -> Result<Vec<Box<dyn Verify>>, String> {
        let mut checks = verify::credential_checks(self.name(), settings, &["webhook_key", "url"])?;
        let key = verify::required(
            settings.webhook_key.as_ref().map(|k| k.expose()),
            "webhook_key",
        )?;
        let url = verify::required(settings.url.as_deref(), "url")?;
        match (key, url) {
            (Some(key), Some(url)) => checks.push(Box::new(MandrillSignature {
                key: MacKey::new(Mac::Sha1, key.as_bytes()),
                url: url.to_owned(),
            })),
            (None, None) => {}
            _ => {
                return Err(
                    "the signature needs both `webhook_key` and `url` (the webhook URL \
                     exactly as registered in Mandrill)"
                        .to_owned(),
                );
            }
        }
        Ok(checks)
    }

    fn document<'b>(&self, body: &'b [u8]) -> Result<Cow<'b, [u8]>, BodyError> {
        // Tolerate the array posted as JSON (a user replaying an export).
        if body
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|b| matches!(b, b'[' | b'{'))
        {
            return Ok(Cow::Borrowed(body));
        }
        form_urlencoded::parse(body)
            .find(|(name, _)| name == EVENTS_FIELD)
            .map(|(_, value)| Cow::Owned(value.into_owned().into_bytes()))
            .ok_or(BodyError::MissingFormField(EVENTS_FIELD))
    }

    fn normalize(&self, element: &Element<'_>, out: &mut Vec<Event>) -> Result<(), ElementError> {
        let mut fields = element.fields()?;
        let Some(name) = fields.text("event") else {
            return normalize_sync(element, fields, out);
        };
        let kind_name = name.trim().to_lowercase();
        let (kind, class) = kind_of(&kind_name);
        let mut msg = fields.object("msg").ok_or_else(|| {
            ElementError::Malformed("a message event without a `msg` object".to_owned())
        })?;
        let recipients = recipients(&mut msg, &["email"])?;
        let first = recipients[0].clone();
        let mut event = if kind_name == "inbound" {
            element.documented_event(&name, EventKind::Other, first)
        } else {
            element.event(&name, kind, first, &fields)
        };
        let read = element.time(&mut fields, "ts", true);
        set_time(&mut event, read);
        event.message_id = fields.text("_id").or_else(|| msg.text("_id"));
        msg.raw("_id");
        event.subject = msg
            .text("subject")
            .map(|subject| clip(&subject, MAX_FIELD_CHARS).to_owned());
        event.sender = msg.text("sender");
        event.tags = msg.texts("tags");
        if matches!(kind, EventKind::Open | EventKind::Click) {
            event.ip = fields.text("ip");
            event.user_agent = fields.text("user_agent");
        }
        event.click_url = fields
            .text("url")
            .map(|url| clip(&url, MAX_FIELD_CHARS).to_owned());

        let description = msg.text("bounce_description");
        msg.copy_into("smtp_events", "smtp_events", &mut event.metadata);
        let diagnostic = msg
            .text("diag")
            .or_else(|| last_smtp_diag(event.metadata.get("smtp_events")));
        let mut reply = Reply::default();
        if let Some(text) = &diagnostic {
            let text = smtp::strip_diagnostic_type(text);
            reply.complete_from_text(text);
            if matches!(kind, EventKind::Bounce | EventKind::Deferred) {
                event.smtp_response = Some(clip(text, MAX_FIELD_CHARS).to_owned());
            }
        }
        if matches!(kind, EventKind::Bounce | EventKind::Deferred) {
            event.smtp_code = reply.code;
            event.smtp_enhanced = reply.enhanced.clone();
        }
        event.reason = match kind {
            EventKind::Bounce => description
                .as_deref()
                .and_then(reason_of_description)
                .or_else(|| smtp::classify(&reply, event.smtp_response.as_deref()))
                .or(Some(Reason::Bounced)),
            EventKind::Deferred => smtp::classify(&reply, event.smtp_response.as_deref()),
            EventKind::Dropped => Some(
                msg.object("reject")
                    .and_then(|mut reject| reject.text("reason"))
                    .as_deref()
                    .map_or(Reason::Other, reason_of_reject),
            ),
            EventKind::Complaint => Some(Reason::Spam),
            EventKind::Unsubscribe => Some(Reason::Unsubscribed),
            _ => None,
        };
        event.bounce_class = class;
        if let Some(description) = description {
            event
                .metadata
                .insert("bounce_description".to_owned(), Value::String(description));
        }
        if let Some(metadata) = msg.object("metadata") {
            metadata.rest_into(&mut event.metadata);
        }
        msg.rest_into(&mut event.metadata);
        fields.rest_into(&mut event.metadata);
        emit(event, recipients, fields.warnings(), out);
        Ok(())
    }
}

/// Normalizes a sync event (`type` + `action`): a change of Mandrill's deny or allow list.
fn normalize_sync(
    element: &Element<'_>,
    mut fields: Fields<'_>,
    out: &mut Vec<Event>,
) -> Result<(), ElementError> {
    let (Some(list), Some(action)) = (fields.text("type"), fields.text("action")) else {
        return Err(ElementError::MissingEventName("event"));
    };
    let mut entry = fields
        .object("reject")
        .or_else(|| fields.object("entry"))
        .ok_or_else(|| {
            ElementError::Malformed(format!(
                "a `{}` sync event without a `reject` or `entry` object",
                clip(&list, 40)
            ))
        })?;
    let recipients = recipients(&mut entry, &["email"])?;
    let name = format!("{list}.{action}");
    let mut event = element.documented_event(&name, EventKind::Other, recipients[0].clone());
    let read = element.time(&mut fields, "ts", true);
    set_time(&mut event, read);
    event
        .metadata
        .insert("type".to_owned(), Value::String(list));
    event
        .metadata
        .insert("action".to_owned(), Value::String(action));
    entry.rest_into(&mut event.metadata);
    fields.rest_into(&mut event.metadata);
    emit(event, recipients, fields.warnings(), out);
    Ok(())
}

/// Returns the reply of the last attempt in `msg.smtp_events`, if any.
fn last_smtp_diag(smtp_events: Option<&Value>) -> Option<String> {
    let last = smtp_events?.as_array()?.last()?;
    last["diag"]
        .as_str()
        .map(str::to_owned)
        .filter(|diag| !diag.trim().is_empty())
}

/// Maps an event name (lower case) to a kind and, for bounces, its class.
fn kind_of(name: &str) -> (EventKind, Option<BounceClass>) {
    match name {
        "send" => (EventKind::Sent, None),
        "delivered" => (EventKind::Delivered, None),
        "deferral" => (EventKind::Deferred, None),
        "hard_bounce" => (EventKind::Bounce, Some(BounceClass::Hard)),
        "soft_bounce" => (EventKind::Bounce, Some(BounceClass::Soft)),
        "open" => (EventKind::Open, None),
        "click" => (EventKind::Click, None),
        "spam" => (EventKind::Complaint, None),
        "unsub" => (EventKind::Unsubscribe, None),
        "reject" => (EventKind::Dropped, None),
        _ => (EventKind::Other, None),
    }
}

/// Reason from Mandrill's `bounce_description`.
fn reason_of_description(description: &str) -> Option<Reason> {
    match description {
        "bad_mailbox" | "invalid_domain" | "invalid" => Some(Reason::Invalid),
        "mailbox_full" | "general" => Some(Reason::Bounced),
        "policy_related" | "spam_related" => Some(Reason::Blocked),
        _ => None,
    }
}

/// Reason from a rejection's cause (Mandrill's deny-list reasons).
fn reason_of_reject(reason: &str) -> Reason {
    match reason {
        "hard-bounce" | "invalid" => Reason::Invalid,
        "soft-bounce" => Reason::Bounced,
        "spam" => Reason::Spam,
        "unsub" => Reason::Unsubscribed,
        "rule" | "unsigned" => Reason::Blocked,
        _ => Reason::Other,
    }
}

/// Mandrill's HMAC over the registered URL and the sorted form fields.
struct MandrillSignature {
    key: MacKey,
    url: String,
}

impl Verify for MandrillSignature {
    fn method(&self) -> &'static str {
        "hmac_sha1"
    }

    fn verify(&self, request: &Request<'_>) -> Result<Verified, AuthError> {
        let signature = request.header(SIGNATURE_HEADER).ok_or_else(|| {
            AuthError::MissingSignature(format!("no `{SIGNATURE_HEADER}` header"))
        })?;
        let tag = base64_decode(signature)
            .ok_or_else(|| AuthError::BadSignature("the signature is not base64".to_owned()))?;
        let mut fields: Vec<(Cow<'_, str>, Cow<'_, str>)> =
            form_urlencoded::parse(request.body).collect();
        fields.sort_by(|a, b| a.0.cmp(&b.0));
        let mut signed: Vec<&[u8]> = Vec::with_capacity(1 + 2 * fields.len());
        signed.push(self.url.as_bytes());
        for (name, value) in &fields {
            signed.push(name.as_bytes());
            signed.push(value.as_bytes());
        }
        if self.key.verify(&signed, &tag) {
            Ok(Verified::default())
        } else {
            Err(AuthError::BadSignature(
                "HMAC-SHA1 of the URL and the form does not match the webhook key (is `url` \
                 exactly the URL registered in Mandrill?)"
                    .to_owned(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderValue};

    fn check(key: &str, url: &str, signature: &str, body: &[u8]) -> Result<(), AuthError> {
        let check = MandrillSignature {
            key: MacKey::new(Mac::Sha1, key.as_bytes()),
            url: url.to_owned(),
        };
        let mut headers = HeaderMap::new();
        headers.insert(SIGNATURE_HEADER, HeaderValue::from_str(signature).unwrap());
        check
            .verify(&Request {
                headers: &headers,
                query: None,
                body,
                now: jiff::Timestamp::UNIX_EPOCH,
            })
            .map(Verified::keep)
    }

    /// A captured signed request (key, registered URL, events, signature), as published in
    /// the mandrill-rails test suite; the body form-encodes `+` for spaces, as browsers and
    /// Mandrill do.
    #[test]
    fn a_captured_signed_request_verifies() {
        let events = include_str!("../../../fixtures/mandrill/click_signed.json");
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair(EVENTS_FIELD, events)
            .finish();
        assert!(body.contains('+'), "spaces travel as `+`");
        let (key, url) = ("ntynTMaFpM_octE5R1DKAw", "http://requestb.in/q9a918q9");
        assert_eq!(
            check(key, url, "7rUa4lNJitlb178MgGOcHO6T4Bg=", body.as_bytes()),
            Ok(())
        );
        assert!(
            check(
                key,
                &format!("{url}/"),
                "7rUa4lNJitlb178MgGOcHO6T4Bg=",
                body.as_bytes()
            )
            .is_err()
        );
        assert!(
            check(
                "other",
                url,
                "7rUa4lNJitlb178MgGOcHO6T4Bg=",
                body.as_bytes()
            )
            .is_err()
        );
    }

    #[test]
    fn events_come_out_of_the_form() {
        let body = b"mandrill_events=%5B%7B%22event%22%3A%22send%22%7D%5D";
        assert_eq!(
            Mandrill.document(body).unwrap().as_ref(),
            br#"[{"event":"send"}]"#
        );
        assert_eq!(
            Mandrill.document(b"other=1"),
            Err(BodyError::MissingFormField(EVENTS_FIELD))
        );
        assert_eq!(Mandrill.document(b" [] ").unwrap().as_ref(), b" [] ");
    }
}
