//! Provider adapters: one module per e-mail provider, each turning that provider's
//! webhook format into normalized [`Event`]s, and the registry that lists them.
//!
//! A provider declares three things ([`Provider`]): how its requests are authenticated
//! (the checks it builds from a source's settings, see [`crate::ingest::verify`]), where its
//! events are in a body ([`Provider::document`]: JSON by default, a form field for
//! Mandrill), and how one event element maps to the model ([`Provider::normalize`]). The
//! helpers here ([`Element`], [`recipients`], [`emit`], [`set_time`]) are what every
//! adapter shares; adapters read fields through [`crate::ingest::fields::Fields`].
//!
//! Adding a provider is one new file here plus one line in [`builtin`].

mod amazon_ses;
mod brevo;
mod leadconnector;
mod mailgun;
mod mailjet;
mod mandrill;
mod opptima;
mod postmark;
mod resend;
pub mod script;
pub mod script_cases;
mod sendgrid;
mod sendpulse;
mod sparkpost;

use std::borrow::Cow;
use std::sync::Arc;

use axum::http::StatusCode;
use jiff::Timestamp;
use serde_json::value::RawValue;

use super::body::BodyError;
use super::fields::{Fields, JsonType, Warnings, clip};
use super::sources::{Source, SourceContext};
use super::time::{self, ReadTime};
use super::verify::{self, Verify};
use crate::config::SourceConfig;
use crate::event::{EmailAddress, Event, EventKind, TimeQuality};
use crate::telemetry::names;

/// Most recipients one provider event may fan out to; the rest are dropped with a warning.
pub const MAX_RECIPIENTS_PER_EVENT: usize = 1_000;
/// Most warnings kept on one event.
const MAX_WARNINGS: usize = 32;
/// Longest text kept in a normalized field (the raw event keeps everything).
pub const MAX_FIELD_CHARS: usize = 2_000;

/// An e-mail provider's webhook format.
pub trait Provider: Send + Sync + 'static {
    /// Name used in configuration and in the `provider` field of events.
    fn name(&self) -> &str;

    /// Zone assumed for times sent without an offset, unless the source sets one.
    fn default_timezone(&self) -> &'static str {
        "UTC"
    }

    /// Builds the checks a request to a source of this provider must pass, from the
    /// source's settings; refuses settings that do not apply to this provider or cannot
    /// work. By default a provider takes a shared token and basic auth.
    fn checks(
        &self,
        settings: &SourceConfig,
        context: &SourceContext,
    ) -> Result<Vec<Box<dyn Verify>>, String> {
        let _ = context;
        verify::credential_checks(self.name(), settings, &[])
    }

    /// Returns the JSON document that holds the events of a verified body: the body
    /// itself, unless the provider wraps it (a form field).
    fn document<'b>(&self, body: &'b [u8]) -> Result<Cow<'b, [u8]>, BodyError> {
        Ok(Cow::Borrowed(body))
    }

    /// Recognises a verified request that carries no events but asks the service for
    /// something (an SNS subscription to confirm). Most providers have none.
    fn control(&self, body: &[u8]) -> Option<Control> {
        let _ = body;
        None
    }

    /// Status that makes this provider retry a request later: 503 unless the provider
    /// drops events on a 5xx.
    fn retry_status(&self) -> StatusCode {
        StatusCode::SERVICE_UNAVAILABLE
    }

    /// Turns one element of a request (one provider event) into normalized events, one
    /// per recipient, appended to `out`.
    fn normalize(&self, element: &Element<'_>, out: &mut Vec<Event>) -> Result<(), ElementError>;
}

/// A request that is not events but a message to the service itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// SNS asks to confirm a subscription of `topic_arn` by calling `subscribe_url`.
    SubscriptionConfirmation {
        /// Topic the subscription is for.
        topic_arn: String,
        /// URL to call to confirm.
        subscribe_url: String,
    },
    /// SNS says the subscription of `topic_arn` was deleted.
    UnsubscribeConfirmation {
        /// Topic the subscription was for.
        topic_arn: String,
    },
}

/// Every built-in provider, one line each.
pub fn builtin() -> Vec<Arc<dyn Provider>> {
    vec![
        Arc::new(opptima::Opptima),
        Arc::new(sendpulse::SendPulse),
        Arc::new(leadconnector::LeadConnector),
        Arc::new(sendgrid::SendGrid),
        Arc::new(mailgun::Mailgun),
        Arc::new(postmark::Postmark),
        Arc::new(amazon_ses::AmazonSes),
        Arc::new(brevo::Brevo),
        Arc::new(mailjet::Mailjet),
        Arc::new(mandrill::Mandrill),
        Arc::new(sparkpost::SparkPost),
        Arc::new(resend::Resend),
    ]
}

/// Returns the built-in provider called `name`.
pub fn find(name: &str) -> Option<Arc<dyn Provider>> {
    builtin().into_iter().find(|p| p.name() == name)
}

/// One provider event as it arrived, with what an adapter needs around it.
pub struct Element<'a> {
    /// The element's JSON, untouched.
    pub raw: &'a RawValue,
    /// Source it was posted to.
    pub source: &'a Source,
    /// When the request arrived.
    pub received_at: Timestamp,
}

impl<'a> Element<'a> {
    /// Returns a field reader over the element, or an error if it is not an object.
    pub fn fields(&self) -> Result<Fields<'a>, ElementError> {
        Fields::parse(self.raw, Warnings::default())
            .ok_or_else(|| ElementError::NotAnObject(JsonType::of(self.raw)))
    }

    /// Reads a time field: exact, assumed in the source's zone, or missing with a warning
    /// when `expected` and absent or unreadable.
    pub fn time(&self, fields: &mut Fields<'_>, key: &str, expected: bool) -> Option<ReadTime> {
        match fields.raw(key) {
            Some(raw) => match time::read_time(raw, &self.source.zone) {
                Ok(read) => {
                    if let Some(warning) = time::future_warning(read.at, self.received_at) {
                        fields.warn(key, warning);
                    }
                    Some(read)
                }
                Err(problem) => {
                    fields.warn(key, format_args!("{problem}; time left empty"));
                    None
                }
            },
            None => {
                if expected {
                    fields.warn(key, "missing; time left empty");
                }
                None
            }
        }
    }

    /// Starts an event for this element; an unknown event name (kind `other`) is warned
    /// about and counted.
    pub fn event(
        &self,
        provider_event: &str,
        kind: EventKind,
        recipient: EmailAddress,
        fields: &Fields<'_>,
    ) -> Event {
        if kind == EventKind::Other {
            fields.warnings().push(format!(
                "unknown event `{}`; stored as `other`",
                clip(provider_event, 64)
            ));
            metrics::counter!(names::UNKNOWN_EVENTS, "provider" => self.source.provider_label.clone())
                .increment(1);
        }
        self.documented_event(provider_event, kind, recipient)
    }

    /// Starts an event the provider documents, whatever its kind: a documented event
    /// deliberately stored as `other` (an account notice, a relay probe) is not an unknown
    /// one, so it is neither warned about nor counted.
    pub fn documented_event(
        &self,
        provider_event: &str,
        kind: EventKind,
        recipient: EmailAddress,
    ) -> Event {
        Event::new(
            &self.source.name,
            self.source.provider.name(),
            clip(provider_event, 200),
            kind,
            recipient,
            self.received_at,
            self.raw.to_owned(),
        )
    }
}

/// Sets an event's time from what [`Element::time`] read.
pub fn set_time(event: &mut Event, read: Option<ReadTime>) {
    match read {
        Some(read) => {
            event.occurred_at = Some(read.at);
            event.time_quality = read.quality;
        }
        None => {
            event.occurred_at = None;
            event.time_quality = TimeQuality::Missing;
        }
    }
}

/// Why one element of a request could not become an event. The element is quarantined;
/// the rest of the request is unaffected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ElementError {
    /// The element is a string, number, array...
    #[error("expected an event object, found {0}")]
    NotAnObject(JsonType),
    /// No event name where the provider puts it.
    #[error("missing event name (`{0}`)")]
    MissingEventName(&'static str),
    /// No usable recipient address.
    #[error("no valid recipient address: {0}")]
    NoRecipient(String),
    /// A required part of the provider's format is missing or has the wrong type.
    #[error("{0}")]
    Malformed(String),
}

/// Reads the recipients of an event from the first of `keys` that holds any: a string
/// (possibly a comma- or semicolon-separated list) or an array of strings. Invalid
/// addresses are dropped with a warning; none valid is an error.
pub fn recipients(
    fields: &mut Fields<'_>,
    keys: &[&str],
) -> Result<Vec<EmailAddress>, ElementError> {
    let mut texts = Vec::new();
    let mut found_key = None;
    for key in keys {
        let values = fields.texts(key);
        if found_key.is_none() && !values.is_empty() {
            found_key = Some(*key);
            texts = values;
        }
    }
    let Some(key) = found_key else {
        return Err(ElementError::NoRecipient(format!(
            "none of {} is present",
            keys.iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    };
    let mut addresses: Vec<EmailAddress> = Vec::new();
    let mut problems = Vec::new();
    for text in &texts {
        for part in split_addresses(text) {
            match EmailAddress::parse(part) {
                Ok(address) if !addresses.contains(&address) => addresses.push(address),
                Ok(_) => {}
                Err(error) => problems.push(format!("`{}`: {error}", clip(part.trim(), 80))),
            }
        }
    }
    if addresses.is_empty() {
        return Err(ElementError::NoRecipient(format!(
            "`{key}`: {}",
            problems.first().map_or("empty", String::as_str)
        )));
    }
    for problem in problems.iter().take(5) {
        fields.warn(key, format_args!("skipped recipient {problem}"));
    }
    if addresses.len() > MAX_RECIPIENTS_PER_EVENT {
        fields.warn(
            key,
            format_args!(
                "{} recipients; only the first {MAX_RECIPIENTS_PER_EVENT} are stored",
                addresses.len()
            ),
        );
        addresses.truncate(MAX_RECIPIENTS_PER_EVENT);
    }
    Ok(addresses)
}

/// Splits an address list on `,` and `;` outside double quotes and angle brackets.
fn split_addresses(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut quoted, mut angle, mut start) = (false, false, 0);
    for (index, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' | ';' if !quoted && !angle => {
                parts.push(&text[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts.retain(|p| !p.trim().is_empty());
    parts
}

/// Appends events built one per recipient (each with details of its own), all with the
/// element's warnings attached.
pub fn emit_each(mut events: Vec<Event>, warnings: &Warnings, out: &mut Vec<Event>) {
    let mut list = warnings.take();
    list.truncate(MAX_WARNINGS);
    for event in &mut events {
        event.warnings = list.clone();
    }
    out.append(&mut events);
}

/// Copies `event` once per extra recipient and appends them all to `out`, with the
/// element's warnings attached.
pub fn emit(
    mut event: Event,
    recipients: Vec<EmailAddress>,
    warnings: &Warnings,
    out: &mut Vec<Event>,
) {
    let mut list = warnings.take();
    list.truncate(MAX_WARNINGS);
    event.warnings = list;
    let mut rest = recipients.into_iter();
    if let Some(first) = rest.next() {
        event.recipient = first;
    }
    // The original goes first so the batch keeps the provider's order.
    let original = out.len();
    out.push(event);
    for recipient in rest {
        let mut copy = out[original].clone();
        copy.recipient = recipient;
        out.push(copy);
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_names_are_unique_source_names() {
        let names: Vec<String> = builtin().iter().map(|p| p.name().to_owned()).collect();
        for name in &names {
            assert!(crate::config::is_source_name(name), "{name}");
            assert_eq!(names.iter().filter(|n| *n == name).count(), 1, "{name}");
        }
    }

    #[test]
    fn address_lists_split_outside_quotes() {
        assert_eq!(
            split_addresses("a@x.com, \"Doe, J\" <j@x.com>; b@y.org"),
            vec!["a@x.com", " \"Doe, J\" <j@x.com>", " b@y.org"]
        );
    }
}
