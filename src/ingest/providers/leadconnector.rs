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
//! A bare Mailgun body (`{"event-data": {...}}`) is read the same way. The payload is
//! Mailgun's format and is read by the Mailgun adapter's code (`mailgun.rs`); the wrapper's
//! fields go to metadata.

use super::mailgun::normalize_payload;
use super::{Element, ElementError, Provider};
use crate::event::Event;
use crate::ingest::fields::clip;

/// The LeadConnector adapter.
pub struct LeadConnector;

/// The wrapper's `type` for e-mail statistics.
const WRAPPER_TYPE: &str = "LCEmailStats";

impl Provider for LeadConnector {
    fn name(&self) -> &str {
        "leadconnector"
    }

    fn normalize(&self, element: &Element<'_>, out: &mut Vec<Event>) -> Result<(), ElementError> {
        let mut wrapper = element.fields()?;
        let wrapper_type = wrapper.text("type");
        let (payload, path) = if wrapper.has("webhookPayload") {
            let payload = wrapper.object("webhookPayload").ok_or_else(|| {
                ElementError::Malformed("`webhookPayload` is not an object".to_owned())
            })?;
            (payload, "webhookPayload.event")
        } else if wrapper.has("event-data") {
            let payload = wrapper.object("event-data").ok_or_else(|| {
                ElementError::Malformed("`event-data` is not an object".to_owned())
            })?;
            (payload, "event-data.event")
        } else {
            return Err(ElementError::Malformed(
                "missing `webhookPayload` (expected an LCEmailStats object)".to_owned(),
            ));
        };
        if let Some(found) = wrapper_type.as_deref().filter(|t| *t != WRAPPER_TYPE) {
            wrapper.warn(
                "type",
                format_args!("expected `{WRAPPER_TYPE}`, found `{}`", clip(found, 40)),
            );
        }
        normalize_payload(element, payload, &mut wrapper, path, out)
    }
}
