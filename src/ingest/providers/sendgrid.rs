//! SendGrid (Twilio) Event Webhook: a JSON array of events per request, batched every ~30 s
//! or 768 KB (<https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/event>).
//!
//! Events and what they become:
//! - `processed` → queued; `deferred` → deferred; `delivered` → delivered (its `ip` is
//!   SendGrid's sending IP: metadata).
//! - `bounce` with `type: bounce` → bounce, hard; `type: blocked` → bounce, soft (SendGrid
//!   calls it a soft bounce the receiver "might accept at a later time"); without `type`
//!   (older payloads) → undetermined. `bounce_classification` gives the reason (Invalid
//!   Address → invalid, Mailbox Unavailable → bounced, Reputation / Content /
//!   Frequency → blocked, Technical → other); otherwise the SMTP reply decides.
//! - `dropped` → dropped; its `reason` is SendGrid's own label: Bounced Address → bounced,
//!   Unsubscribed Address → unsubscribed, Spam Reporting Address and Spam Content → spam,
//!   Invalid / Invalid Address → invalid, anything else → other. Its `status` (`5.0.0`) is
//!   synthetic: no SMTP exchange took place, so it is kept in metadata only.
//! - `open` (with `sg_machine_open` for Apple Mail Privacy Protection, in metadata),
//!   `click`, `spamreport` → complaint, `unsubscribe` and `group_unsubscribe` →
//!   unsubscribe, `group_resubscribe` → subscribe.
//! - `account_status_change` concerns the account, not a recipient: it cannot be an event
//!   of this model and is quarantined with that explanation, for an operator to see.
//!
//! `timestamp` is Unix seconds (one documented sample has milliseconds; the time reader
//! tells them apart by size). `sg_event_id` is SendGrid's per-event id for deduplication.
//! `sg_message_id` (trimmed: a documented sample has a leading space) is the message id,
//! `smtp-id` (the RFC Message-ID in angle brackets) the fallback. `category` is a string or
//! an array: tags. Custom arguments arrive as top-level keys and end up in metadata.
//!
//! Signature (<https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/getting-started-event-webhook-security-features>):
//! `X-Twilio-Email-Event-Webhook-Signature` is a base64 ASN.1 ECDSA P-256 / SHA-256
//! signature of the `X-Twilio-Email-Event-Webhook-Timestamp` header's bytes followed by the
//! raw body; the verification key is shown in the dashboard as base64 DER. SendGrid
//! documents no timestamp tolerance and retries for 24 hours without saying whether a
//! retry is signed anew, so the default tolerance is 25 hours: a replay can only repeat
//! signed events, which dedup folds.

use serde_json::Value;

use super::{Element, ElementError, MAX_FIELD_CHARS, Provider, emit, recipients, set_time};
use crate::config::SourceConfig;
use crate::event::{BounceClass, Event, EventKind, Reason};
use crate::ingest::fields::clip;
use crate::ingest::smtp::{self, Reply};
use crate::ingest::sources::SourceContext;
use crate::ingest::verify::crypto::{P256Key, base64_decode};
use crate::ingest::verify::{self, AuthError, Request, Verified, Verify};

/// The SendGrid adapter.
pub struct SendGrid;

/// Header carrying the signature.
pub const SIGNATURE_HEADER: &str = "x-twilio-email-event-webhook-signature";
/// Header carrying the signed timestamp.
pub const TIMESTAMP_HEADER: &str = "x-twilio-email-event-webhook-timestamp";
/// Default tolerance for the signed timestamp (see the module documentation).
const DEFAULT_MAX_AGE_SECS: u64 = 25 * 3_600;

impl Provider for SendGrid {
    fn name(&self) -> &str {
        "sendgrid"
    }

    fn checks(
        &self,
        settings: &SourceConfig,
        _context: &SourceContext,
    ) -> Result<Vec<Box<dyn Verify>>, String> {
        let mut checks = verify::credential_checks(
            self.name(),
            settings,
            &["public_key", "max_signature_age_secs"],
        )?;
        match verify::required(settings.public_key.as_deref(), "public_key")? {
            Some(key) => checks.push(Box::new(SendGridSignature {
                key: P256Key::parse(key).map_err(|error| format!("`public_key`: {error}"))?,
                max_age_secs: settings
                    .max_signature_age_secs
                    .unwrap_or(DEFAULT_MAX_AGE_SECS),
            })),
            None if settings.max_signature_age_secs.is_some() => {
                return Err("`max_signature_age_secs` needs `public_key`".to_owned());
            }
            None => {}
        }
        Ok(checks)
    }

    fn normalize(&self, element: &Element<'_>, out: &mut Vec<Event>) -> Result<(), ElementError> {
        let mut fields = element.fields()?;
        let name = fields
            .text("event")
            .ok_or(ElementError::MissingEventName("event"))?;
        let lower = name.trim().to_lowercase();
        if lower == "account_status_change" {
            return Err(ElementError::Malformed(format!(
                "account_status_change (`{}`) concerns the SendGrid account, not a recipient; \
                 kept here for review",
                clip(&fields.text("type").unwrap_or_default(), 40)
            )));
        }
        let bounce_type = fields.text("type");
        let kind = kind_of(&lower);
        let recipients = recipients(&mut fields, &["email"])?;
        let first = recipients[0].clone();
        let mut event = element.event(&name, kind, first, &fields);
        let read = element.time(&mut fields, "timestamp", true);
        set_time(&mut event, read);
        event.provider_event_id = fields.text("sg_event_id");

        let sg_message_id = fields.text("sg_message_id").map(|id| id.trim().to_owned());
        let smtp_id = fields
            .text("smtp-id")
            .map(|id| {
                id.trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_owned()
            })
            .filter(|id| !id.is_empty());
        event.message_id = sg_message_id.clone().or_else(|| smtp_id.clone());
        if let Some(id) = smtp_id {
            event
                .metadata
                .insert("smtp-id".to_owned(), Value::String(id));
        }
        event.tags = fields.texts("category");
        event.campaign = fields.text_of(&[
            "marketing_campaign_name",
            "singlesend_name",
            "marketing_campaign_id",
            "singlesend_id",
        ]);
        event.sender = fields.text("from");
        if matches!(
            kind,
            EventKind::Open | EventKind::Click | EventKind::Unsubscribe | EventKind::Subscribe
        ) {
            event.ip = fields.text("ip");
        }
        event.user_agent = fields.text("useragent");
        event.click_url = fields
            .text("url")
            .map(|url| clip(&url, MAX_FIELD_CHARS).to_owned());

        let classification = fields.text("bounce_classification");
        let reason_text = fields.text("reason");
        let response = fields.text("response");
        let status = fields.text("status");
        let mut reply = Reply::default();
        let text = match kind {
            EventKind::Dropped => None,
            _ => response.clone().or_else(|| reason_text.clone()),
        };
        if kind != EventKind::Dropped {
            reply.enhanced = status.as_deref().and_then(smtp::enhanced_code);
        }
        if let Some(text) = &text {
            reply.complete_from_text(text);
            event.smtp_response = Some(clip(text.trim(), MAX_FIELD_CHARS).to_owned());
        }
        event.smtp_code = reply.code;
        event.smtp_enhanced = reply.enhanced.clone();
        match kind {
            EventKind::Bounce => {
                let from_class = classification.as_deref().and_then(reason_of_classification);
                event.reason = from_class.or_else(|| smtp::classify(&reply, text.as_deref()));
                event.bounce_class = Some(match bounce_type.as_deref() {
                    Some("bounce") => BounceClass::Hard,
                    Some("blocked") => BounceClass::Soft,
                    _ => BounceClass::Undetermined,
                });
                if bounce_type.as_deref() == Some("blocked") && event.reason.is_none() {
                    event.reason = Some(Reason::Blocked);
                }
            }
            EventKind::Deferred => event.reason = smtp::classify(&reply, text.as_deref()),
            EventKind::Dropped => {
                event.reason = Some(reason_of_drop(reason_text.as_deref().unwrap_or("")));
                if let Some(reason) = &reason_text {
                    event.smtp_response = Some(clip(reason, MAX_FIELD_CHARS).to_owned());
                }
            }
            EventKind::Complaint => event.reason = Some(Reason::Spam),
            EventKind::Unsubscribe => event.reason = Some(Reason::Unsubscribed),
            _ => {}
        }
        for (key, value) in [
            ("sg_message_id", sg_message_id),
            ("type", bounce_type),
            ("bounce_classification", classification),
            ("status", status),
        ] {
            if let Some(value) = value {
                event.metadata.insert(key.to_owned(), Value::String(value));
            }
        }
        fields.rest_into(&mut event.metadata);
        emit(event, recipients, fields.warnings(), out);
        Ok(())
    }
}

/// Maps an event name (lower case) to a kind.
fn kind_of(name: &str) -> EventKind {
    match name {
        "processed" => EventKind::Queued,
        "deferred" => EventKind::Deferred,
        "delivered" => EventKind::Delivered,
        "bounce" | "blocked" => EventKind::Bounce,
        "dropped" => EventKind::Dropped,
        "open" => EventKind::Open,
        "click" => EventKind::Click,
        "spamreport" | "spam report" | "spam_report" => EventKind::Complaint,
        "unsubscribe" | "group_unsubscribe" => EventKind::Unsubscribe,
        "group_resubscribe" => EventKind::Subscribe,
        _ => EventKind::Other,
    }
}

/// Reason from SendGrid's bounce classification; `None` for Unclassified and unknown
/// values (the reply decides then). The webhook and the Bounces API spell some of them
/// differently ("Technical" / "Technical Failure"): prefixes are compared.
fn reason_of_classification(classification: &str) -> Option<Reason> {
    let lower = classification.trim().to_lowercase();
    if lower.starts_with("invalid") {
        Some(Reason::Invalid)
    } else if lower.starts_with("mailbox") {
        Some(Reason::Bounced)
    } else if lower.starts_with("reputation")
        || lower.starts_with("content")
        || lower.starts_with("frequency")
    {
        Some(Reason::Blocked)
    } else if lower.starts_with("technical") {
        Some(Reason::Other)
    } else {
        None
    }
}

/// Reason from a `dropped` event's label.
fn reason_of_drop(label: &str) -> Reason {
    let lower = label.trim().to_lowercase();
    if lower.starts_with("bounced") {
        Reason::Bounced
    } else if lower.starts_with("unsubscribed") {
        Reason::Unsubscribed
    } else if lower.starts_with("spam") {
        Reason::Spam
    } else if lower == "invalid" || lower.starts_with("invalid address") {
        Reason::Invalid
    } else {
        Reason::Other
    }
}

/// SendGrid's ECDSA signature of timestamp and body.
struct SendGridSignature {
    key: P256Key,
    max_age_secs: u64,
}

impl Verify for SendGridSignature {
    fn method(&self) -> &'static str {
        "ecdsa_p256"
    }

    fn verify(&self, request: &Request<'_>) -> Result<Verified, AuthError> {
        let missing = |header: &str| AuthError::MissingSignature(format!("no `{header}` header"));
        let signature = request
            .header(SIGNATURE_HEADER)
            .ok_or_else(|| missing(SIGNATURE_HEADER))?;
        let timestamp = request
            .header(TIMESTAMP_HEADER)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| missing(TIMESTAMP_HEADER))?;
        let der = base64_decode(signature)
            .ok_or_else(|| AuthError::BadSignature("the signature is not base64".to_owned()))?;
        let mut message = Vec::with_capacity(timestamp.len() + request.body.len());
        message.extend_from_slice(timestamp.as_bytes());
        message.extend_from_slice(request.body);
        if !self.key.verify(&message, &der) {
            return Err(AuthError::BadSignature(
                "ECDSA signature of timestamp and body does not match the public key".to_owned(),
            ));
        }
        let signed_at: i64 = timestamp.parse().map_err(|_| {
            AuthError::BadSignature("the timestamp header is not Unix seconds".to_owned())
        })?;
        verify::check_age(signed_at, request.now, self.max_age_secs)?;
        Ok(Verified::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderValue};

    /// SendGrid's own vector (the Node, Python and Go SDK tests).
    const PUBLIC_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g==";
    const SIGNATURE: &str = "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15TluLtEZtM=";
    const TIMESTAMP: &str = "1600112502";
    const WRONG_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqTxd43gyp8IOEto2LdIfjRQrIbsd4SXZkLW6jDutdhXSJCWHw8REntlo7aNDthvj+y7GjUuFDb/R1NGe1OPzpA==";

    fn check(
        key: &str,
        signature: &str,
        timestamp: &str,
        body: &[u8],
        now: i64,
    ) -> Result<(), AuthError> {
        let check = SendGridSignature {
            key: P256Key::parse(key).unwrap(),
            max_age_secs: 300,
        };
        let mut headers = HeaderMap::new();
        headers.insert(SIGNATURE_HEADER, HeaderValue::from_str(signature).unwrap());
        headers.insert(TIMESTAMP_HEADER, HeaderValue::from_str(timestamp).unwrap());
        check
            .verify(&Request {
                headers: &headers,
                query: None,
                body,
                now: jiff::Timestamp::from_second(now).unwrap(),
            })
            .map(Verified::keep)
    }

    #[test]
    fn sendgrids_published_vector_verifies_and_its_negatives_fail() {
        let body = include_bytes!("../../../fixtures/sendgrid/signature_vector_single.json");
        let at = 1_600_112_502;
        assert_eq!(check(PUBLIC_KEY, SIGNATURE, TIMESTAMP, body, at), Ok(()));
        let bad = |result: Result<(), AuthError>| matches!(result, Err(AuthError::BadSignature(_)));
        assert!(bad(check(WRONG_KEY, SIGNATURE, TIMESTAMP, body, at)));
        assert!(bad(check(PUBLIC_KEY, SIGNATURE, TIMESTAMP, b"payload", at)));
        assert!(bad(check(PUBLIC_KEY, SIGNATURE, "timestamp", body, at)));
        // Without its final CRLF the body is not what was signed.
        assert!(bad(check(
            PUBLIC_KEY,
            SIGNATURE,
            TIMESTAMP,
            &body[..body.len() - 2],
            at
        )));
        assert!(matches!(
            check(PUBLIC_KEY, SIGNATURE, TIMESTAMP, body, at + 301),
            Err(AuthError::StaleTimestamp { .. })
        ));
    }

    #[test]
    fn drop_labels_and_classifications() {
        assert_eq!(reason_of_drop("Bounced Address"), Reason::Bounced);
        assert_eq!(reason_of_drop("Invalid"), Reason::Invalid);
        assert_eq!(reason_of_drop("Invalid Address"), Reason::Invalid);
        assert_eq!(reason_of_drop("Invalid SMTPAPI header"), Reason::Other);
        assert_eq!(reason_of_drop("Spam Reporting Address"), Reason::Spam);
        assert_eq!(
            reason_of_classification("Frequency or Volume Too High"),
            Some(Reason::Blocked)
        );
        assert_eq!(
            reason_of_classification("Technical Failure"),
            Some(Reason::Other)
        );
        assert_eq!(reason_of_classification("Unclassified"), None);
    }
}
