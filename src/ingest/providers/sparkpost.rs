//! SparkPost event webhooks: a JSON array per batch (1 to 350 or more events, posted
//! several times a minute), each element a wrapper `{"msys": {"<class>": {...event...}}}`
//! ([webhooks API](https://developers.sparkpost.com/api/webhooks/),
//! [data streams](https://www.sparkpost.com/docs/tech-resources/webhook-data-streams/)).
//!
//! The wrapper key is the event class (`message_event`, `track_event`, `gen_event`,
//! `unsubscribe_event`, `relay_event`, `ab_test_event`, ...); the event's `type` decides
//! the kind. Fields are those of the documentation endpoint
//! (`GET /api/v1/webhooks/events/documentation`):
//!
//! | `type` | kind |
//! |---|---|
//! | `injection` | `queued` |
//! | `delivery` | `delivered` |
//! | `bounce`, `out_of_band` | from `bounce_class` (table below) |
//! | `delay` | `deferred` (reason from `bounce_class` where it says why, else the reply) |
//! | `spam_complaint` | `complaint`, reason `spam` (`fbtype` in metadata) |
//! | `policy_rejection`, `generation_rejection` | `dropped`: SparkPost refused it by policy |
//! | `generation_failure` | `failed`: the message could not be built, never attempted |
//! | `open`, `initial_open`, `amp_open`, `amp_initial_open` | `open` (bottom/top pixel, AMP) |
//! | `click`, `amp_click` | `click` |
//! | `list_unsubscribe`, `link_unsubscribe` | `unsubscribe`, reason `unsubscribed` |
//! | `relay_injection`, `relay_rejection`, `relay_delivery`, `relay_tempfail`, `relay_permfail` | `other`: inbound relay, not outbound delivery |
//! | `sms_status`, `ab_test_completed`, `ab_test_cancelled`, Events Ingest `success`/`error` | no e-mail recipient: quarantined |
//! | anything else | `other`, with the unknown-event warning |
//!
//! `bounce_class` follows SparkPost's
//! [classification table](https://www.sparkpost.com/docs/deliverability/bounce-classification-codes/):
//! Hard (10 invalid recipient → `hard`/`invalid`; 30 no RCPT → `hard`, reason from the
//! reply), Soft (20, 21, 22, 23, 24, 40, 70 → `soft`), Undetermined (1 → `undetermined`),
//! Block (50, 51, 53, 54 → `soft`/`blocked`; 52 spam content → `soft`/`spam`), Admin (25 →
//! `dropped`, SparkPost's own policy; 80 → `subscribe`), 60 auto-reply and 100
//! challenge-response → `autoreply`, 90 unsubscribe request → `unsubscribe`. A code not in
//! the table (26 is seen but undocumented) or none gives `bounce` with the class the reply
//! implies, and a warning. The raw code stays in `metadata.bounce_class`.
//!
//! Decisions where the documentation leaves room:
//! - **Block is `soft`.** SparkPost says "soft, block and undetermined are usually
//!   temporary" and only hard and admin are suppression-level: a block says nothing
//!   about the address, so it must not count as hard; `reason` (`blocked`/`spam`) keeps
//!   what kind of refusal it was. `undetermined` would claim SparkPost did not say.
//! - **`event_id` is not the dedup id.** It is documented unique per event, but every
//!   documented sample uses `92356927693813856`, and the samples batch holds pairs that
//!   share kind, recipient, time and id (`bounce`/`out_of_band`,
//!   `policy_rejection`/`generation_rejection`, `list_`/`link_unsubscribe`, the relay
//!   events): keyed on the id they would collapse. Events dedup on their JSON instead;
//!   SparkPost retries a batch as it was (`X-MessageSystems-Batch-ID` names it), so a
//!   retry still matches. `event_id` is kept in `metadata` as a string.
//! - **Recipient**: `raw_rcpt_to` (the envelope address as sent) before `rcpt_to` (its
//!   lower-cased copy), because mailwarden keeps the local part as sent.
//! - **`ip_address`** is the receiving MX on message events and the reader on
//!   engagement events: it becomes `ip` only on opens, clicks and `link_unsubscribe` (a
//!   person following a link); elsewhere it stays in `metadata` (`list_unsubscribe` comes
//!   from the mailbox provider, not the reader).
//! - **Sender** is `friendly_from` (the From header) as a bare address; without it,
//!   `msg_from` (the envelope sender: often SparkPost's bounce address, so second).
//! - **SMTP**: `error_code` is the basic code, `raw_reason` the reply as received (with
//!   the enhanced code inside); `reason` (IP-masked) is used only without `raw_reason`.
//! - **Test batches**: `POST /webhooks/{id}/validate` sends `[{"msys": {}}]`; an empty
//!   `msys` is a ping and yields nothing, neither event nor quarantine. (The app's Test
//!   button sends the documented `delivery` sample instead, which is stored like any
//!   delivery to `recipient@example.com`.)
//! - `timestamp` is Unix seconds, a string in current samples and a number in older ones.
//!   Numbers are strings throughout (`bounce_class`, `error_code`, ...); both are read.
//!   Identifiers (`event_id`, `transmission_id`, ...) are kept in metadata as strings.

use std::collections::BTreeMap;

use serde_json::Value;
use serde_json::value::RawValue;

use super::{Element, ElementError, MAX_FIELD_CHARS, Provider, emit, recipients, set_time};
use crate::event::{BounceClass, EmailAddress, Event, EventKind, Reason};
use crate::ingest::fields::{Fields, JsonType, clip};
use crate::ingest::smtp::{self, Reply};

/// The SparkPost adapter.
pub struct SparkPost;

/// Event classes SparkPost documents as wrapper keys (the Events Ingest API lists the
/// groupings); another key is read the same way, with a warning.
const CLASSES: [&str; 8] = [
    "message_event",
    "track_event",
    "gen_event",
    "unsubscribe_event",
    "relay_event",
    "ab_test_event",
    "adaptive_event",
    "ingest_event",
];

/// Identifiers kept in metadata as strings, whatever JSON type they arrive as (SparkPost
/// writes them as strings of digits today; a number would lose digits in JavaScript).
const ID_FIELDS: [&str; 9] = [
    "event_id",
    "transmission_id",
    "customer_id",
    "subaccount_id",
    "template_id",
    "template_version",
    "ab_test_id",
    "ab_test_version",
    "relay_id",
];

/// How an event `type` maps to the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mapping {
    /// The type alone decides the kind.
    Kind(EventKind),
    /// `bounce` and `out_of_band`: kind and class come from `bounce_class`.
    Bounce,
    /// A documented event that is not about outbound delivery; stored as `other`
    /// without the unknown-event warning. The text says what it is.
    Documented(&'static str),
    /// Not a documented type.
    Unknown,
}

/// What a `bounce_class` code means on a `bounce` or `out_of_band` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Outcome {
    kind: EventKind,
    class: Option<BounceClass>,
    /// The reason the class itself states; `None` lets the reply decide.
    reason: Option<Reason>,
}

impl Provider for SparkPost {
    fn name(&self) -> &'static str {
        "sparkpost"
    }

    fn normalize(&self, element: &Element<'_>, out: &mut Vec<Event>) -> Result<(), ElementError> {
        let mut wrapper = element.fields()?;
        let Some(msys_raw) = wrapper.raw("msys") else {
            return Err(ElementError::Malformed(
                "missing `msys` (expected a SparkPost `{\"msys\": {\"<class>\": {...}}}` wrapper)"
                    .to_owned(),
            ));
        };
        let Some(wrapper_key) = event_class(msys_raw)? else {
            // `[{"msys": {}}]` is SparkPost's test batch: nothing to store, nothing wrong.
            return Ok(());
        };
        let mut msys = wrapper
            .object("msys")
            .expect("`msys` was checked to be an object");
        if !CLASSES.contains(&wrapper_key.as_str()) {
            msys.warn(
                &wrapper_key,
                "not a documented SparkPost event class; read as one",
            );
        }
        let mut fields = msys
            .object(&wrapper_key)
            .expect("the event class was checked to hold an object");

        let name = fields
            .text("type")
            .ok_or(ElementError::MissingEventName("type"))?;
        let mapping = kind_of(&name);
        let recipients = match (mapping, has_recipient(&fields)) {
            (Mapping::Documented(what), false) => {
                return Err(ElementError::NoRecipient(format!(
                    "`{}` is {what} and names no e-mail recipient (`rcpt_to`); \
                     deselect it in the SparkPost webhook's events if it is not wanted",
                    clip(&name, 64)
                )));
            }
            _ => read_recipients(&mut fields)?,
        };

        // The reply first: a bounce without a known class takes its class from it.
        let code = fields.integer("error_code").and_then(smtp::reply_code);
        let text = fields.text("raw_reason").or_else(|| fields.text("reason"));
        let mut reply = Reply {
            code,
            enhanced: None,
        };
        if let Some(text) = &text {
            reply.complete_from_text(text);
        }
        let response = text.map(|t| clip(t.trim(), MAX_FIELD_CHARS).to_owned());
        let classified = smtp::classify(&reply, response.as_deref());

        let present = fields.has("bounce_class");
        let bounce_class = fields.integer("bounce_class");
        let (kind, class, reason) = match mapping {
            Mapping::Kind(kind) => {
                let reason = match kind {
                    EventKind::Complaint => Some(Reason::Spam),
                    EventKind::Unsubscribe => Some(Reason::Unsubscribed),
                    EventKind::Deferred => bounce_class.and_then(class_reason).or(classified),
                    EventKind::Dropped | EventKind::Failed => classified,
                    _ => None,
                };
                (kind, None, reason)
            }
            Mapping::Bounce => match bounce_class.and_then(outcome_of) {
                Some(outcome) => (
                    outcome.kind,
                    outcome.class,
                    match outcome.kind {
                        EventKind::Bounce | EventKind::Dropped => outcome.reason.or(classified),
                        _ => outcome.reason,
                    },
                ),
                None => {
                    let inferred = smtp::class_from_reply(&reply, classified);
                    let problem = match bounce_class {
                        Some(code) => {
                            format!("`{code}` is not in SparkPost's classification table")
                        }
                        None if present => "unreadable".to_owned(),
                        None => "missing".to_owned(),
                    };
                    fields.warn(
                        "bounce_class",
                        format_args!(
                            "{problem}; class `{}` inferred from the reply",
                            inferred.as_str()
                        ),
                    );
                    (EventKind::Bounce, Some(inferred), classified)
                }
            },
            Mapping::Documented(_) | Mapping::Unknown => (EventKind::Other, None, None),
        };

        let first = recipients[0].clone();
        let mut event = match mapping {
            // Known, just not delivery: no "unknown event" warning or count.
            Mapping::Documented(_) => element.documented_event(&name, EventKind::Other, first),
            _ => element.event(&name, kind, first, &fields),
        };
        let read = element.time(&mut fields, "timestamp", true);
        set_time(&mut event, read);
        event.bounce_class = class;
        event.reason = reason;
        event.smtp_code = reply.code;
        event.smtp_enhanced = reply.enhanced;
        event.smtp_response = response;

        event.message_id = fields.text("message_id");
        event.subject = fields
            .text("subject")
            .map(|s| clip(&s, MAX_FIELD_CHARS).to_owned());
        event.sender = fields
            .text("friendly_from")
            .or_else(|| fields.text("msg_from"))
            .map(|from| match EmailAddress::parse(&from) {
                Ok(address) => address.as_str().to_owned(),
                Err(_) => clip(&from, 320).to_owned(),
            });
        event.campaign = fields
            .text("campaign_id")
            .map(|c| clip(&c, MAX_FIELD_CHARS).to_owned());
        event.click_url = fields
            .text("target_link_url")
            .map(|url| clip(&url, MAX_FIELD_CHARS).to_owned());
        event.user_agent = fields
            .text("user_agent")
            .map(|agent| clip(&agent, MAX_FIELD_CHARS).to_owned());
        if ip_is_reader(&name) {
            event.ip = fields.text("ip_address");
        }
        event.tags = fields.texts("rcpt_tags");

        event
            .metadata
            .insert("event_class".to_owned(), Value::String(wrapper_key));
        fields.copy_into("bounce_class", "bounce_class", &mut event.metadata);
        for key in ID_FIELDS {
            if let Some(id) = fields.text(key) {
                event.metadata.insert(key.to_owned(), Value::String(id));
            }
        }
        fields.rest_into(&mut event.metadata);
        msys.rest_into(&mut event.metadata);
        wrapper.rest_into(&mut event.metadata);
        let warnings = fields.warnings().clone();
        emit(event, recipients, &warnings, out);
        Ok(())
    }
}

/// Returns the one event class key of `msys`, or `None` for an empty `msys` (a ping).
fn event_class(msys: &RawValue) -> Result<Option<String>, ElementError> {
    let found = JsonType::of(msys);
    if found != JsonType::Object {
        return Err(ElementError::Malformed(format!(
            "`msys` is {found}, expected an object holding one event class"
        )));
    }
    let classes: BTreeMap<String, &RawValue> = serde_json::from_str(msys.get())
        .map_err(|error| ElementError::Malformed(format!("`msys` cannot be read: {error}")))?;
    if classes.len() > 1 {
        let names: Vec<String> = classes
            .keys()
            .take(5)
            .map(|name| format!("`{}`", clip(name, 40)))
            .collect();
        return Err(ElementError::Malformed(format!(
            "`msys` holds {} event classes ({}); SparkPost sends one per element",
            classes.len(),
            names.join(", ")
        )));
    }
    let Some((class, event)) = classes.into_iter().next() else {
        return Ok(None);
    };
    let found = JsonType::of(event);
    if found != JsonType::Object {
        return Err(ElementError::Malformed(format!(
            "`msys.{}` is {found}, expected an event object",
            clip(&class, 40)
        )));
    }
    Ok(Some(class))
}

/// Whether the event names a recipient at all (without reading it).
fn has_recipient(fields: &Fields<'_>) -> bool {
    fields.has("raw_rcpt_to") || fields.has("rcpt_to")
}

/// Reads the recipient: `raw_rcpt_to` (as sent), else `rcpt_to` (its lower-cased copy).
fn read_recipients(fields: &mut Fields<'_>) -> Result<Vec<EmailAddress>, ElementError> {
    if !fields.has("raw_rcpt_to") {
        // Names both keys when neither is there.
        return recipients(fields, &["raw_rcpt_to", "rcpt_to"]);
    }
    match recipients(fields, &["raw_rcpt_to"]) {
        Ok(list) => {
            // The lower-cased copy says nothing more; it stays in `raw`.
            let _ = fields.raw("rcpt_to");
            Ok(list)
        }
        Err(error) if fields.has("rcpt_to") => {
            let list = recipients(fields, &["rcpt_to"]).map_err(|_| error.clone())?;
            fields.warn("raw_rcpt_to", format_args!("{error}; `rcpt_to` used"));
            Ok(list)
        }
        Err(error) => Err(error),
    }
}

/// Maps an event `type` to how it is normalized.
fn kind_of(name: &str) -> Mapping {
    match name.trim().to_lowercase().as_str() {
        "injection" => Mapping::Kind(EventKind::Queued),
        "delivery" => Mapping::Kind(EventKind::Delivered),
        "bounce" | "out_of_band" => Mapping::Bounce,
        "delay" => Mapping::Kind(EventKind::Deferred),
        "spam_complaint" => Mapping::Kind(EventKind::Complaint),
        "policy_rejection" | "generation_rejection" => Mapping::Kind(EventKind::Dropped),
        "generation_failure" => Mapping::Kind(EventKind::Failed),
        "open" | "initial_open" | "amp_open" | "amp_initial_open" => Mapping::Kind(EventKind::Open),
        "click" | "amp_click" => Mapping::Kind(EventKind::Click),
        "list_unsubscribe" | "link_unsubscribe" => Mapping::Kind(EventKind::Unsubscribe),
        "relay_injection" | "relay_rejection" | "relay_delivery" | "relay_tempfail"
        | "relay_permfail" => Mapping::Documented("an inbound relay event"),
        "sms_status" => Mapping::Documented("an SMS status report"),
        "ab_test_completed" | "ab_test_cancelled" => Mapping::Documented("an A/B test report"),
        "success" | "error" => Mapping::Documented("an Events Ingest API report"),
        _ => Mapping::Unknown,
    }
}

/// Whether `ip_address` is the reader's address on this event type: engagement events,
/// where a person's client made the request.
fn ip_is_reader(name: &str) -> bool {
    matches!(
        name.trim().to_lowercase().as_str(),
        "open"
            | "initial_open"
            | "amp_open"
            | "amp_initial_open"
            | "click"
            | "amp_click"
            | "link_unsubscribe"
    )
}

/// What a bounce with classification `code` is, per SparkPost's table; `None` for a code
/// the table does not have.
fn outcome_of(code: i64) -> Option<Outcome> {
    let bounce = |class, reason| Outcome {
        kind: EventKind::Bounce,
        class: Some(class),
        reason,
    };
    let other = |kind, reason| Outcome {
        kind,
        class: None,
        reason,
    };
    Some(match code {
        1 => bounce(BounceClass::Undetermined, None),
        10 => bounce(BounceClass::Hard, Some(Reason::Invalid)),
        // "No recipient could be determined": hard for SparkPost, the reply says why.
        30 => bounce(BounceClass::Hard, None),
        20 | 21 | 40 | 70 => bounce(BounceClass::Soft, None),
        // Mailbox full, too large, timeout; and Block (50-54): the class says why.
        22..=24 | 50..=54 => bounce(BounceClass::Soft, class_reason(code)),
        // Admin: failed by SparkPost's own policies, never a receiver's answer.
        25 => other(EventKind::Dropped, None),
        60 | 100 => other(EventKind::Autoreply, None),
        80 => other(EventKind::Subscribe, None),
        90 => other(EventKind::Unsubscribe, Some(Reason::Unsubscribed)),
        _ => return None,
    })
}

/// The reason a classification code states by itself (also used on `delay` events,
/// which carry a `bounce_class` too); `None` where only the reply can tell.
fn class_reason(code: i64) -> Option<Reason> {
    match code {
        10 => Some(Reason::Invalid),
        22 => Some(Reason::Bounced),
        // Too large: neither the address nor a policy; the model has no closer reason.
        23 => Some(Reason::Other),
        24 => Some(Reason::TimedOut),
        50 | 51 | 53 | 54 => Some(Reason::Blocked),
        52 => Some(Reason::Spam),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_map_to_kinds() {
        assert_eq!(kind_of("injection"), Mapping::Kind(EventKind::Queued));
        assert_eq!(kind_of("delivery"), Mapping::Kind(EventKind::Delivered));
        assert_eq!(kind_of("bounce"), Mapping::Bounce);
        assert_eq!(kind_of("out_of_band"), Mapping::Bounce);
        assert_eq!(kind_of("delay"), Mapping::Kind(EventKind::Deferred));
        assert_eq!(
            kind_of("policy_rejection"),
            Mapping::Kind(EventKind::Dropped)
        );
        assert_eq!(
            kind_of("generation_rejection"),
            Mapping::Kind(EventKind::Dropped)
        );
        assert_eq!(
            kind_of("generation_failure"),
            Mapping::Kind(EventKind::Failed)
        );
        for open in ["open", "initial_open", "amp_open", "amp_initial_open"] {
            assert_eq!(kind_of(open), Mapping::Kind(EventKind::Open), "{open}");
            assert!(ip_is_reader(open));
        }
        assert_eq!(kind_of("AMP_CLICK "), Mapping::Kind(EventKind::Click));
        assert_eq!(
            kind_of("list_unsubscribe"),
            Mapping::Kind(EventKind::Unsubscribe)
        );
        assert!(ip_is_reader("link_unsubscribe"));
        assert!(!ip_is_reader("list_unsubscribe"));
        assert!(!ip_is_reader("delivery"));
        assert!(matches!(kind_of("relay_tempfail"), Mapping::Documented(_)));
        assert!(matches!(kind_of("sms_status"), Mapping::Documented(_)));
        assert!(matches!(
            kind_of("ab_test_cancelled"),
            Mapping::Documented(_)
        ));
        assert_eq!(kind_of("engagement_digest"), Mapping::Unknown);
    }

    #[test]
    fn bounce_classes_follow_sparkposts_table() {
        let of = |code| outcome_of(code).map(|o| (o.kind, o.class, o.reason));
        use BounceClass::{Hard, Soft, Undetermined};
        use EventKind::{Autoreply, Bounce, Dropped, Subscribe, Unsubscribe};
        assert_eq!(of(1), Some((Bounce, Some(Undetermined), None)));
        assert_eq!(of(10), Some((Bounce, Some(Hard), Some(Reason::Invalid))));
        assert_eq!(of(30), Some((Bounce, Some(Hard), None)));
        for soft in [20, 21, 40, 70] {
            assert_eq!(of(soft), Some((Bounce, Some(Soft), None)), "{soft}");
        }
        assert_eq!(of(22), Some((Bounce, Some(Soft), Some(Reason::Bounced))));
        assert_eq!(of(23), Some((Bounce, Some(Soft), Some(Reason::Other))));
        assert_eq!(of(24), Some((Bounce, Some(Soft), Some(Reason::TimedOut))));
        for block in [50, 51, 53, 54] {
            assert_eq!(
                of(block),
                Some((Bounce, Some(Soft), Some(Reason::Blocked))),
                "{block}"
            );
        }
        assert_eq!(of(52), Some((Bounce, Some(Soft), Some(Reason::Spam))));
        assert_eq!(of(25), Some((Dropped, None, None)));
        assert_eq!(of(60), Some((Autoreply, None, None)));
        assert_eq!(of(100), Some((Autoreply, None, None)));
        assert_eq!(of(80), Some((Subscribe, None, None)));
        assert_eq!(
            of(90),
            Some((Unsubscribe, None, Some(Reason::Unsubscribed)))
        );
        for unknown in [0, 26, 55, 99, -1, 1000] {
            assert_eq!(of(unknown), None, "{unknown}");
        }
    }

    #[test]
    fn pings_and_malformed_wrappers() {
        let raw = |text: &str| RawValue::from_string(text.to_owned()).unwrap();
        assert_eq!(event_class(&raw("{}")), Ok(None));
        assert_eq!(
            event_class(&raw(r#"{"track_event": {"type": "open"}}"#)),
            Ok(Some("track_event".to_owned()))
        );
        let error = |text: &str| match event_class(&raw(text)) {
            Err(ElementError::Malformed(message)) => message,
            other => panic!("{text}: {other:?}"),
        };
        assert!(error("[]").starts_with("`msys` is an array"));
        assert!(
            error(r#"{"message_event": "bounce"}"#).starts_with("`msys.message_event` is a string")
        );
        assert!(error(r#"{"message_event": null}"#).starts_with("`msys.message_event` is null"));
        assert!(
            error(r#"{"message_event": {}, "track_event": {}}"#)
                .contains("(`message_event`, `track_event`)")
        );
    }
}
