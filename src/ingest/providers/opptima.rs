//! Opptima: one JSON object per event, in two families.
//!
//! - `type: "SMTP"` (transactional): `delivered`, `bounce`, ... with the address in `to`,
//!   the message id in `msgid`, a Spanish `status` ("Entregado", "Rebote duro",
//!   "Rebote blando"/"Rebote suave") and the raw SMTP reply in `response` (for certified
//!   e-mail, `response` is instead an array of the certifying provider's activity).
//! - `type: "Email marketing"` (campaigns): `sent`, `open`, `click`, `bounce`,
//!   `unsubscribe`, `spam`, ... with the address in `email`, the campaign in
//!   `campid`/`campaignName`, geo and device fields, and the clicked link in `destination`.
//!
//! `timestamp` is Colombian local time (UTC-5, no daylight saving) without an offset; it is
//! converted with the source's zone (default `America/Bogota`) and marked `assumed_tz`.
//! `relid`, `contactId` and `campid` arrive as numbers or strings and are kept as strings;
//! `contactId` is also spelled `contactid` and is kept under one name. The marketing `sent`
//! webhook carries status `Entregado` and the time the recipient's server accepted the
//! message: it is stored as `delivered`.

use super::{Element, ElementError, MAX_FIELD_CHARS, Provider, emit, recipients, set_time};
use crate::event::{BounceClass, Event, EventKind, Reason};
use crate::ingest::fields::{Fields, MAX_METADATA_FIELD_BYTES, clip};
use crate::ingest::smtp::{self, Reply};
use serde_json::Value;

/// The Opptima adapter.
pub struct Opptima;

/// Identifiers that arrive as numbers or strings, under one name or another; kept in
/// metadata as strings under the first name.
const ID_FIELDS: [&[&str]; 3] = [
    &["relid", "relId"],
    &["contactId", "contactid"],
    &["campid"],
];

impl Provider for Opptima {
    fn name(&self) -> &'static str {
        "opptima"
    }

    fn default_timezone(&self) -> &'static str {
        "America/Bogota"
    }

    fn normalize(&self, element: &Element<'_>, out: &mut Vec<Event>) -> Result<(), ElementError> {
        let mut fields = element.fields()?;
        let name = fields
            .text("event")
            .ok_or(ElementError::MissingEventName("event"))?;
        let family = fields.text("type");
        let status = fields.text("status");
        let kind = match kind_of(&name) {
            // The marketing `sent` webhook reports the receiving server's acceptance, with
            // status "Entregado" and the time of acceptance: a delivery.
            EventKind::Sent if status.as_deref().is_some_and(is_delivered_status) => {
                EventKind::Delivered
            }
            kind => kind,
        };
        let recipients = recipients(&mut fields, &["to", "email"])?;
        let first = recipients[0].clone();
        let mut event = element.event(&name, kind, first, &fields);
        let read = element.time(&mut fields, "timestamp", true);
        set_time(&mut event, read);

        event.message_id = fields.text("msgid");
        event.subject = fields
            .text("subject")
            .map(|s| clip(&s, MAX_FIELD_CHARS).to_owned());
        event.sender = fields.text("sender");
        event.campaign = fields.text_of(&["campaignName", "campid"]);
        if let Some(destination) = fields.text("destination") {
            event.click_url = Some(clip(&destination, MAX_FIELD_CHARS).to_owned());
        }
        // `ip` on SMTP events is where the send request came from, not the reader's
        // address; it is only the reader's on engagement events.
        if matches!(kind, EventKind::Open | EventKind::Click) {
            event.ip = fields.text("ip");
        }
        event.user_agent = fields.text_of(&["user_agent", "userAgent"]);

        let response_text = response_text(&mut fields, &mut event);
        let mut reply = Reply::default();
        if let Some(text) = &response_text {
            reply.complete_from_text(text);
            event.smtp_response = Some(clip(text.trim(), MAX_FIELD_CHARS).to_owned());
        }
        event.smtp_code = reply.code;
        event.smtp_enhanced = reply.enhanced.clone();
        if let Some(status) = &status {
            event
                .metadata
                .insert("status".to_owned(), Value::String(status.clone()));
        }
        match kind {
            EventKind::Bounce => {
                let reason = smtp::classify(&reply, response_text.as_deref().or(status.as_deref()));
                event.reason = reason;
                event.bounce_class = Some(match status.as_deref().and_then(class_from_status) {
                    Some(class) => class,
                    None => {
                        let class = smtp::class_from_reply(&reply, reason);
                        fields.warn(
                            "status",
                            format_args!(
                                "bounce type `{}` not recognised; class `{}` inferred from the reply",
                                clip(status.as_deref().unwrap_or(""), 40),
                                class.as_str()
                            ),
                        );
                        class
                    }
                });
            }
            EventKind::Complaint => event.reason = Some(Reason::Spam),
            EventKind::Unsubscribe => event.reason = Some(Reason::Unsubscribed),
            _ => {}
        }

        if let Some(family) = family {
            event
                .metadata
                .insert("type".to_owned(), Value::String(family));
        }
        for names in ID_FIELDS {
            if let Some(id) = fields.text_of(names) {
                event
                    .metadata
                    .insert(names[0].to_owned(), Value::String(id));
            }
        }
        fields.rest_into(&mut event.metadata);
        emit(event, recipients, fields.warnings(), out);
        Ok(())
    }
}

/// Reads `response`: the SMTP reply text, or (certified e-mail) an activity array kept in
/// metadata. Returns the reply text.
fn response_text(fields: &mut Fields<'_>, event: &mut Event) -> Option<String> {
    let raw = fields.raw("response")?;
    match crate::ingest::fields::JsonType::of(raw) {
        crate::ingest::fields::JsonType::Array | crate::ingest::fields::JsonType::Object => {
            if raw.get().len() <= MAX_METADATA_FIELD_BYTES {
                event.metadata.insert(
                    "response".to_owned(),
                    crate::ingest::fields::exact_value(raw),
                );
            }
            None
        }
        _ => crate::ingest::fields::scalar_text(raw)
            .ok()
            .flatten()
            .map(|text| text.into_owned())
            .filter(|text| !text.trim().is_empty()),
    }
}

/// Maps an event name (English, or the Spanish the dashboard shows) to a kind.
fn kind_of(name: &str) -> EventKind {
    match name.trim().to_lowercase().as_str() {
        "queued" | "processed" => EventKind::Queued,
        "sent" | "send" | "enviado" => EventKind::Sent,
        "delivered" | "delivery" | "entregado" => EventKind::Delivered,
        "deferred" | "delayed" | "delay" => EventKind::Deferred,
        "bounce" | "bounced" | "hard_bounce" | "soft_bounce" | "rebote" => EventKind::Bounce,
        "rejected" | "reject" | "dropped" | "blocked" => EventKind::Dropped,
        "failed" | "error" => EventKind::Failed,
        "open" | "opened" | "abierto" | "apertura" => EventKind::Open,
        "click" | "clicked" | "clic" => EventKind::Click,
        "spam" | "complaint" | "spam_report" | "abuse" => EventKind::Complaint,
        "unsubscribe" | "unsubscribed" | "baja" | "desuscrito" => EventKind::Unsubscribe,
        "subscribe" | "subscribed" | "resubscribe" => EventKind::Subscribe,
        "autoreply" | "auto_reply" => EventKind::Autoreply,
        _ => EventKind::Other,
    }
}

/// Returns whether a status text says the message was delivered.
fn is_delivered_status(status: &str) -> bool {
    let lower = status.trim().to_lowercase();
    lower == "entregado" || lower == "delivered"
}

/// Reads the bounce type from the Spanish (or English) status text.
fn class_from_status(status: &str) -> Option<BounceClass> {
    let lower = status.to_lowercase();
    if lower.contains("duro") || lower.contains("hard") || lower.contains("permanente") {
        Some(BounceClass::Hard)
    } else if lower.contains("blando")
        || lower.contains("suave")
        || lower.contains("soft")
        || lower.contains("temporal")
    {
        Some(BounceClass::Soft)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spanish_bounce_types() {
        assert_eq!(class_from_status("Rebote duro"), Some(BounceClass::Hard));
        assert_eq!(class_from_status("Rebote blando"), Some(BounceClass::Soft));
        assert_eq!(class_from_status("REBOTE SUAVE"), Some(BounceClass::Soft));
        assert_eq!(class_from_status("Rebote"), None);
    }

    #[test]
    fn event_names() {
        assert_eq!(kind_of("delivered"), EventKind::Delivered);
        assert_eq!(kind_of("Click"), EventKind::Click);
        assert_eq!(kind_of("spam"), EventKind::Complaint);
        assert_eq!(kind_of("mystery"), EventKind::Other);
    }
}
