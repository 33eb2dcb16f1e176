//! LeadConnector (HighLevel) `LCEmailStats`: a wrapper `{type, locationId, companyId,
//! webhookPayload}` around a Mailgun-style event.
//!
//! The payload's `event` is `accepted`, `delivered`, `opened`, `clicked`, `failed`,
//! `rejected`, `complained` or `unsubscribed`, mapped as for Mailgun (see `mailgun.rs`):
//! `failed` with `severity: temporary` is a deferral, a permanent one a bounce when the
//! receiving side refused it; `suppress-*` reasons mean never attempted (dropped), `old`
//! that retries ran out (failed, timed out).
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
