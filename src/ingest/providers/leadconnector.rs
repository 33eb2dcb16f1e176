//! LeadConnector (HighLevel) `LCEmailStats`: a wrapper `{type, locationId, companyId,
//! webhookPayload}` around a Mailgun-style event.
//!
//! The payload's `event` is `accepted`, `delivered`, `opened`, `clicked`, `failed`,
//! `rejected`, `complained` or `unsubscribed`. `failed` carries `severity`: `permanent` is a
//! hard bounce, `temporary` a deferral; a `reason` of `suppress-bounce`,
//! `suppress-unsubscribe` or `suppress-complaint` means the message was never attempted
//! (dropped), and `old` means retries ran out (a soft failure that gave up: soft bounce,
//! timed out). `timestamp` is Unix seconds with a fraction; `id` is unique per event.
//! `delivery-status` has the SMTP `code`, `enhanced-code`, `message` and `description`.
//! A bare Mailgun body (`{"event-data": {...}}`) is read the same way.

use serde_json::Value;

use super::{Element, ElementError, MAX_FIELD_CHARS, Provider, emit, recipients, set_time};
use crate::event::{BounceClass, EmailAddress, Event, EventKind, Reason};
use crate::ingest::fields::{Fields, clip};
use crate::ingest::smtp::{self, Reply};

/// The LeadConnector adapter.
pub struct LeadConnector;

/// The wrapper's `type` for e-mail statistics.
const WRAPPER_TYPE: &str = "LCEmailStats";

impl Provider for LeadConnector {
    fn name(&self) -> &'static str {
        "leadconnector"
    }

    fn normalize(&self, element: &Element<'_>, out: &mut Vec<Event>) -> Result<(), ElementError> {
        let mut wrapper = element.fields()?;
        let wrapper_type = wrapper.text("type");
        let location_id = wrapper.text("locationId");
        let company_id = wrapper.text("companyId");
        let mut payload = if wrapper.has("webhookPayload") {
            wrapper.object("webhookPayload").ok_or_else(|| {
                ElementError::Malformed("`webhookPayload` is not an object".to_owned())
            })?
        } else if wrapper.has("event-data") {
            wrapper.object("event-data").ok_or_else(|| {
                ElementError::Malformed("`event-data` is not an object".to_owned())
            })?
        } else {
            return Err(ElementError::Malformed(
                "missing `webhookPayload` (expected an LCEmailStats object)".to_owned(),
            ));
        };
        if wrapper_type.as_deref().is_some_and(|t| t != WRAPPER_TYPE) {
            wrapper.warn(
                "type",
                format_args!(
                    "expected `{WRAPPER_TYPE}`, found `{}`",
                    clip(wrapper_type.as_deref().unwrap_or_default(), 40)
                ),
            );
        }

        let name = payload
            .text("event")
            .ok_or(ElementError::MissingEventName("webhookPayload.event"))?;
        let mut message = payload.object("message");
        let mut headers = message.as_mut().and_then(|m| m.object("headers"));
        let recipients = match recipients(&mut payload, &["recipient"]) {
            Ok(list) => list,
            Err(first_error) => match headers.as_mut().map(|h| recipients(h, &["to"])) {
                Some(Ok(list)) => list,
                _ => return Err(first_error),
            },
        };

        let mut status = payload.object("delivery-status");
        let severity = payload.text("severity");
        let failure_reason = payload.text("reason");
        let bounce_type = status.as_mut().and_then(|s| s.text("bounce-type"));
        let (kind, class) = kind_of(
            &name,
            severity.as_deref(),
            failure_reason.as_deref(),
            bounce_type.as_deref(),
        );
        let first = recipients[0].clone();
        let mut event = element.event(&name, kind, first, &payload);
        let read = element.time(&mut payload, "timestamp", true);
        set_time(&mut event, read);
        // Unique per event in Mailgun's format (see `dedup_key` for how it is used).
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
        event.ip = payload.text("ip");
        event.click_url = payload
            .text("url")
            .map(|url| clip(&url, MAX_FIELD_CHARS).to_owned());
        if let Some(mut client) = payload.object("client-info") {
            event.user_agent = client.text("user-agent");
            client.rest_into(&mut event.metadata);
        }

        let mut reply = Reply::default();
        let mut text = None;
        if let Some(status) = status.as_mut() {
            reply.code = status.integer("code").and_then(smtp::reply_code);
            reply.enhanced = status
                .text("enhanced-code")
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
        event.smtp_code = reply.code;
        event.smtp_enhanced = reply.enhanced.clone();
        event.smtp_response = text.map(|t| clip(t.trim(), MAX_FIELD_CHARS).to_owned());

        event.reason = match kind {
            EventKind::Bounce | EventKind::Deferred | EventKind::Failed | EventKind::Dropped => {
                reason_of(
                    failure_reason.as_deref(),
                    &reply,
                    event.smtp_response.as_deref(),
                )
            }
            EventKind::Complaint => Some(Reason::Spam),
            EventKind::Unsubscribe => Some(Reason::Unsubscribed),
            _ => None,
        };
        if kind == EventKind::Bounce {
            event.bounce_class = Some(class.unwrap_or(BounceClass::Undetermined));
        }
        if let Some(severity) = severity {
            event
                .metadata
                .insert("severity".to_owned(), Value::String(severity));
        }
        if let Some(reason) = failure_reason {
            event
                .metadata
                .insert("reason".to_owned(), Value::String(reason));
        }
        for (key, value) in [("locationId", location_id), ("companyId", company_id)] {
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
        payload.rest_into(&mut event.metadata);
        wrapper.rest_into(&mut event.metadata);
        let warnings = payload.warnings().clone();
        emit(event, recipients, &warnings, out);
        Ok(())
    }
}

/// Maps a Mailgun event to a kind and, for bounces, its class.
fn kind_of(
    name: &str,
    severity: Option<&str>,
    reason: Option<&str>,
    bounce_type: Option<&str>,
) -> (EventKind, Option<BounceClass>) {
    let stated = match bounce_type.map(str::to_lowercase).as_deref() {
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
        "failed" | "bounced" => {
            if reason.is_some_and(|r| r.starts_with("suppress")) {
                return (EventKind::Dropped, None);
            }
            match severity.map(str::to_lowercase).as_deref() {
                Some("temporary") => (EventKind::Deferred, None),
                Some("permanent") if reason == Some("old") => {
                    (EventKind::Bounce, Some(stated.unwrap_or(BounceClass::Soft)))
                }
                Some("permanent") => (EventKind::Bounce, Some(stated.unwrap_or(BounceClass::Hard))),
                _ => (EventKind::Bounce, stated),
            }
        }
        _ => (EventKind::Other, None),
    }
}

/// Reason for a failure: Mailgun's own `reason` where it is telling, else the reply.
fn reason_of(reason: Option<&str>, reply: &Reply, text: Option<&str>) -> Option<Reason> {
    match reason {
        Some("old") => Some(Reason::TimedOut),
        Some("suppress-unsubscribe") => Some(Reason::Unsubscribed),
        Some("suppress-complaint") => Some(Reason::Spam),
        Some("suppress-bounce") => Some(Reason::Bounced),
        Some("espblock") => Some(Reason::Blocked),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_events_split_by_severity_and_reason() {
        assert_eq!(
            kind_of("failed", Some("permanent"), Some("bounce"), None),
            (EventKind::Bounce, Some(BounceClass::Hard))
        );
        assert_eq!(
            kind_of("failed", Some("temporary"), None, None),
            (EventKind::Deferred, None)
        );
        assert_eq!(
            kind_of("failed", Some("permanent"), Some("suppress-bounce"), None),
            (EventKind::Dropped, None)
        );
        assert_eq!(
            kind_of("failed", Some("permanent"), Some("old"), None),
            (EventKind::Bounce, Some(BounceClass::Soft))
        );
        assert_eq!(
            kind_of("failed", None, None, Some("soft")),
            (EventKind::Bounce, Some(BounceClass::Soft))
        );
    }
}
