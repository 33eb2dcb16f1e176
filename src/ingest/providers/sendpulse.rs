//! SendPulse: a JSON array of up to 500 events, sent every 30 seconds or when 500 are
//! collected.
//!
//! SMTP (transactional) events: `delivered`, `undelivered`, `opened`, `clicked`,
//! `unsubscribed` (no timestamp), `spam_by_user`, `soft_bounces`, `hard_bounces` (the
//! address is in `email`, not `recipient`; the event name, not the SMTP code, says hard or
//! soft: SendPulse sends a 550 with `soft_bounces`), `resubscribed`.
//! Bulk-mail (campaign) events: `open`, `redirect` (a click, link in `link_url`/`url`),
//! `spam`, `unsubscribe`, with every number sent as a string.
//! `smtp_server_response_code` arrives as `"250"` or `550`; an empty
//! `smtp_server_response_subcode` means none.

use super::{Element, ElementError, MAX_FIELD_CHARS, Provider, emit, recipients, set_time};
use crate::event::{BounceClass, Event, EventKind, Reason};
use crate::ingest::fields::clip;
use crate::ingest::smtp::{self, Reply};
use serde_json::Value;

/// The SendPulse adapter.
pub struct SendPulse;

impl Provider for SendPulse {
    fn name(&self) -> &'static str {
        "sendpulse"
    }

    fn normalize(&self, element: &Element<'_>, out: &mut Vec<Event>) -> Result<(), ElementError> {
        let mut fields = element.fields()?;
        let name = fields
            .text("event")
            .ok_or(ElementError::MissingEventName("event"))?;
        let (kind, class) = kind_of(&name);
        let recipients = recipients(&mut fields, &["recipient", "email"])?;
        let first = recipients[0].clone();
        let mut event = element.event(&name, kind, first, &fields);
        // `unsubscribed` is documented without a timestamp: no warning for it.
        let read = element.time(&mut fields, "timestamp", kind != EventKind::Unsubscribe);
        set_time(&mut event, read);

        event.message_id = fields.text("message_id");
        event.sender = fields.text("sender");
        event.subject = fields
            .text("subject")
            .map(|s| clip(&s, MAX_FIELD_CHARS).to_owned());
        event.campaign = fields.text_of(&["task_id", "campaign_id"]);
        event.click_url = fields
            .text_of(&["link_url", "url", "link"])
            .map(|url| clip(&url, MAX_FIELD_CHARS).to_owned());
        event.user_agent = fields.text_of(&["user_agent", "useragent"]);
        event.ip = fields.text("ip");

        let mut reply = Reply {
            code: fields
                .integer("smtp_server_response_code")
                .and_then(smtp::reply_code),
            enhanced: fields
                .text("smtp_server_response_subcode")
                .and_then(|code| smtp::enhanced_code(&code)),
        };
        let response = fields
            .text("smtp_server_response")
            .map(|text| clip(text.trim(), MAX_FIELD_CHARS).to_owned());
        if let Some(text) = &response {
            reply.complete_from_text(text);
        }
        event.smtp_code = reply.code;
        event.smtp_enhanced = reply.enhanced.clone();
        event.smtp_response = response;

        match kind {
            EventKind::Bounce | EventKind::Failed => {
                let reason = smtp::classify(&reply, event.smtp_response.as_deref());
                event.reason = reason;
                if kind == EventKind::Bounce {
                    event.bounce_class =
                        Some(class.unwrap_or_else(|| smtp::class_from_reply(&reply, reason)));
                }
            }
            EventKind::Complaint => event.reason = Some(Reason::Spam),
            EventKind::Unsubscribe => event.reason = Some(Reason::Unsubscribed),
            _ => {}
        }
        // Campaign identifiers are numbers in one event and strings in the next.
        for key in ["book_id", "task_id"] {
            if let Some(id) = fields.text(key) {
                event.metadata.insert(key.to_owned(), Value::String(id));
            }
        }
        fields.rest_into(&mut event.metadata);
        emit(event, recipients, fields.warnings(), out);
        Ok(())
    }
}

/// Maps an event name to a kind and, for bounces, the class the name states.
fn kind_of(name: &str) -> (EventKind, Option<BounceClass>) {
    match name.trim().to_lowercase().as_str() {
        "delivered" => (EventKind::Delivered, None),
        "sent" => (EventKind::Sent, None),
        "undelivered" => (EventKind::Failed, None),
        "opened" | "open" => (EventKind::Open, None),
        "clicked" | "redirect" | "click" => (EventKind::Click, None),
        "unsubscribed" | "unsubscribe" => (EventKind::Unsubscribe, None),
        "spam_by_user" | "spam" => (EventKind::Complaint, None),
        "soft_bounces" | "soft_bounce" => (EventKind::Bounce, Some(BounceClass::Soft)),
        "hard_bounces" | "hard_bounce" => (EventKind::Bounce, Some(BounceClass::Hard)),
        "bounce" | "bounced" => (EventKind::Bounce, None),
        "resubscribed" | "subscribe" | "subscribed" => (EventKind::Subscribe, None),
        _ => (EventKind::Other, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_decide_bounce_class() {
        assert_eq!(
            kind_of("soft_bounces"),
            (EventKind::Bounce, Some(BounceClass::Soft))
        );
        assert_eq!(
            kind_of("hard_bounces"),
            (EventKind::Bounce, Some(BounceClass::Hard))
        );
        assert_eq!(kind_of("redirect").0, EventKind::Click);
        assert_eq!(kind_of("spam_by_user").0, EventKind::Complaint);
        assert_eq!(kind_of("resubscribed").0, EventKind::Subscribe);
        assert_eq!(kind_of("exotic").0, EventKind::Other);
    }
}
