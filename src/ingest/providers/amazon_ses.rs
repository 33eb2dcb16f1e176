//! Amazon SES notifications delivered by an Amazon SNS HTTPS subscription.
//!
//! SNS posts its JSON envelope as `text/plain` (<https://docs.aws.amazon.com/sns/latest/dg/sns-message-and-json-formats.html>):
//! `SubscriptionConfirmation` (confirmed by the webhook handler once the signature
//! verifies, see [`Provider::control`]), `UnsubscribeConfirmation`, and `Notification`,
//! whose `Message` is the SES JSON as a string. The signature is checked by
//! `verify::sns` (on by default; `verify_signature = false` only for raw message
//! delivery behind a token), with the optional `topic_arns` allow-list. A body that is not
//! an envelope is read as a bare SES message (raw message delivery, which carries no
//! signature: <https://docs.aws.amazon.com/sns/latest/dg/sns-large-payload-raw-message-delivery.html>).
//! A `Message` that is plain text (an SNS console test, SES's "Successfully validated SNS
//! topic for Amazon SES event publishing.") or a bare JSON scalar is a notice, not an
//! event: nothing is stored. A `Message` that is a JSON array, or an envelope whose
//! `Message` is not a string or whose `Type` SNS does not document, is quarantined.
//!
//! Two SES formats (<https://docs.aws.amazon.com/ses/latest/dg/notification-contents.html>,
//! <https://docs.aws.amazon.com/ses/latest/dg/event-publishing-retrieving-sns-contents.html>):
//! classic notifications (`notificationType`: Bounce, Complaint, Delivery) and event
//! publishing (`eventType`: Send, Reject, Delivery, Bounce, Complaint, Open, Click,
//! DeliveryDelay, `Rendering Failure` (with a space), Subscription). One event per
//! recipient: bounces per `bouncedRecipients` (each with its own status and diagnostic,
//! `smtp;` stripped), complaints per `complainedRecipients`, deliveries per
//! `delivery.recipients`, delays per `delayedRecipients`; the others per
//! `mail.destination`. `mail.destination` lists every original recipient, not only those
//! a bounce or complaint is about, so it never replaces a missing or unusable list: such a
//! notification is quarantined. Open, Click and Subscription are one reader's action, but
//! SES names only the message: with several destinations each gets the event, with a
//! warning.
//!
//! Mapping:
//! - Bounce: `bounceType` Permanent → hard, Transient → soft (SES has stopped retrying),
//!   Undetermined → undetermined. The subtype is SES's own classification and decides the
//!   reason first (NoEmail → invalid, MailboxFull → bounced, MessageTooLarge → other,
//!   ContentRejected / AttachmentRejected → blocked); General and Undetermined take it from
//!   the reply. `Permanent/Suppressed` and `Permanent/OnAccountSuppressionList` were never
//!   attempted (SES's suppression lists): dropped.
//! - Complaint → complaint (spam); feedback type `not-spam` or `auth-failure` is no
//!   complaint by the recipient: other; subtype OnAccountSuppressionList: dropped.
//! - Delivery → delivered; Send → queued; Reject (virus) → dropped, blocked, its `reason`
//!   as the response; Rendering Failure → failed, its `errorMessage` as the response;
//!   DeliveryDelay → deferred (reason from `delayType`); Open, Click (`linkTags` become
//!   tags too); Subscription → unsubscribe when the recipient opted out (of all, or of a
//!   topic), subscribe when a topic changed to opt-in.
//!
//! The fields the kind is decided from (`bounceType`, `bounceSubType`,
//! `complaintFeedbackType`, `complaintSubType`, `delayType`, the topic preferences) stay in
//! metadata under SES's names. The SNS `MessageId` is the provider event id: SNS repeats it
//! on every retry, and the dedup key adds kind and recipient, which tells apart the
//! recipients of one notification (raw deliveries carry it only in a header, so their
//! events have none). `mail.messageId` is the message id, `mail.source` the sender, custom
//! `mail.tags` become `key=value` tags (`ses:*` tags go to metadata as `ses_tags`). Times
//! are ISO 8601 with a zone: exact. `raw` is the SES message, not the envelope.

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::{
    Control, Element, ElementError, MAX_FIELD_CHARS, MAX_RECIPIENTS_PER_EVENT, Provider, emit,
    emit_each, recipients, set_time,
};
use crate::config::SourceConfig;
use crate::event::{BounceClass, EmailAddress, Event, EventKind, Reason};
use crate::ingest::fields::{Fields, JsonType, clip};
use crate::ingest::smtp::{self, Reply};
use crate::ingest::sources::SourceContext;
use crate::ingest::verify::sns::{self, Message, SnsCheck};
use crate::ingest::verify::{self, Verify};

/// The Amazon SES adapter.
pub struct AmazonSes;

impl Provider for AmazonSes {
    fn name(&self) -> &str {
        "amazon_ses"
    }

    fn checks(
        &self,
        settings: &SourceConfig,
        context: &SourceContext,
    ) -> Result<Vec<Box<dyn Verify>>, String> {
        let mut checks =
            verify::credential_checks(self.name(), settings, &["topic_arns", "verify_signature"])?;
        if settings.verify_signature == Some(false) {
            if !settings.topic_arns.is_empty() {
                return Err("`topic_arns` are checked on verified SNS messages only: \
                     it needs `verify_signature` on"
                    .to_owned());
            }
            if checks.is_empty() {
                return Err(
                    "`verify_signature = false` needs another check: set `token` (or \
                     `username` and `password`)"
                        .to_owned(),
                );
            }
        } else {
            checks.push(Box::new(SnsCheck::new(
                context.certificates.clone(),
                settings.topic_arns.clone(),
            )));
        }
        Ok(checks)
    }

    fn control(&self, body: &[u8]) -> Option<Control> {
        let message = Message::parse(body)?;
        match message.kind.as_str() {
            sns::SUBSCRIPTION_CONFIRMATION => Some(Control::SubscriptionConfirmation {
                topic_arn: message.topic_arn,
                subscribe_url: message.subscribe_url?,
            }),
            sns::UNSUBSCRIBE_CONFIRMATION => Some(Control::UnsubscribeConfirmation {
                topic_arn: message.topic_arn,
            }),
            _ => None,
        }
    }

    fn normalize(&self, element: &Element<'_>, out: &mut Vec<Event>) -> Result<(), ElementError> {
        let mut envelope = element.fields()?;
        if !(envelope.has("Type") && envelope.has("Message")) {
            // Raw message delivery: the body is the SES message itself.
            return normalize_ses(element, None, out);
        }
        let kind = envelope.text("Type").unwrap_or_default();
        match kind.as_str() {
            sns::NOTIFICATION => {}
            // Confirmations are handled before the body is ingested; nothing to store.
            sns::SUBSCRIPTION_CONFIRMATION | sns::UNSUBSCRIBE_CONFIRMATION => return Ok(()),
            other => {
                return Err(ElementError::Malformed(format!(
                    "unknown SNS message type `{}`",
                    clip(other, 64)
                )));
            }
        }
        let message = envelope.raw("Message").map(JsonType::of);
        if message != Some(JsonType::String) {
            return Err(ElementError::Malformed(format!(
                "the SNS `Message` is {}: SNS sends the SES notification as a JSON string",
                message.unwrap_or(JsonType::Null)
            )));
        }
        let text = envelope.text("Message").unwrap_or_default();
        let inner = match RawValue::from_string(text.clone()) {
            Ok(inner) if JsonType::of(&inner) == JsonType::Object => inner,
            Ok(inner) if JsonType::of(&inner) == JsonType::Array => {
                return Err(ElementError::Malformed(
                    "the SNS `Message` is a JSON array, not an SES notification object".to_owned(),
                ));
            }
            // Plain text (an SNS console test, SES's "Successfully validated SNS topic")
            // or a bare JSON scalar: a notice to whoever reads the topic, not an event.
            _ => {
                tracing::info!(
                    source = %element.source.name,
                    message = %clip(&text, 120),
                    "sns notification without an SES message; nothing stored"
                );
                return Ok(());
            }
        };
        let mut sns = Map::new();
        for (key, name) in [
            ("MessageId", "sns_message_id"),
            ("TopicArn", "sns_topic_arn"),
        ] {
            if let Some(value) = envelope.text(key) {
                sns.insert(name.to_owned(), Value::String(value));
            }
        }
        let ses = Element {
            raw: &inner,
            source: element.source,
            received_at: element.received_at,
        };
        normalize_ses(&ses, Some(sns), out)
    }
}

/// Normalizes one SES message; `sns` holds the envelope's id and topic.
fn normalize_ses(
    element: &Element<'_>,
    sns: Option<Map<String, Value>>,
    out: &mut Vec<Event>,
) -> Result<(), ElementError> {
    let mut fields = element.fields()?;
    let name = fields.text_of(&["notificationType", "eventType"]).ok_or(
        ElementError::MissingEventName("notificationType` or `eventType"),
    )?;
    let mut mail = fields.object("mail");
    let key = name.to_lowercase().replace(' ', "");
    // The object that describes the event; Send's is always empty, unknown types have none.
    let detail_key = match key.as_str() {
        "bounce" => Some("bounce"),
        "complaint" => Some("complaint"),
        "delivery" => Some("delivery"),
        "deliverydelay" => Some("deliveryDelay"),
        "send" => Some("send"),
        "reject" => Some("reject"),
        "open" => Some("open"),
        "click" => Some("click"),
        "renderingfailure" => Some("failure"),
        "subscription" => Some("subscription"),
        _ => None,
    };
    let mut detail = detail_key.and_then(|key| fields.object(key));

    // Recipients: bounces, complaints and delays name the recipients they are about, each
    // with details of its own; deliveries list theirs; everything else is about the
    // message, so about all of `mail.destination`. `mail.destination` lists every original
    // recipient, so it never stands in for a list SES did not send (it would bounce
    // recipients that did not bounce).
    let per_recipient = match key.as_str() {
        "bounce" => Some(("bounce", "bouncedRecipients")),
        "complaint" => Some(("complaint", "complainedRecipients")),
        "deliverydelay" => Some(("deliveryDelay", "delayedRecipients")),
        _ => None,
    };
    let targets: Vec<Target<'_>> = if let Some((object, list)) = per_recipient {
        recipient_targets(detail.as_mut(), object, list)?
    } else {
        let addresses = match (key.as_str(), detail.as_mut(), mail.as_mut()) {
            ("delivery", Some(detail), _) => recipients(detail, &["recipients"])?,
            ("delivery", None, _) => {
                return Err(ElementError::NoRecipient(
                    "no `delivery` object with `recipients`".to_owned(),
                ));
            }
            (_, _, Some(mail)) => recipients(mail, &["destination"])?,
            (_, _, None) => {
                return Err(ElementError::NoRecipient(
                    "no `mail` object with `destination`".to_owned(),
                ));
            }
        };
        if matches!(key.as_str(), "open" | "click" | "subscription") && addresses.len() > 1 {
            // SES reports the reader's action per message, not per recipient.
            fields.warnings().push(format!(
                "`mail.destination` lists {} recipients and SES does not say which one this \
                 `{}` is from; stored for each",
                addresses.len(),
                clip(&name, 64)
            ));
        }
        addresses
            .into_iter()
            .map(|address| Target {
                address,
                details: None,
            })
            .collect()
    };

    let meaning = meaning(&key, detail.as_mut());
    let first = targets[0].address.clone();
    let mut base = if meaning.documented {
        element.documented_event(&name, meaning.kind, first)
    } else {
        element.event(&name, meaning.kind, first, &fields)
    };
    let read = match detail.as_mut().filter(|d| d.has("timestamp")) {
        Some(detail) => element.time(detail, "timestamp", true),
        None => match mail.as_mut() {
            Some(mail) => element.time(mail, "timestamp", true),
            None => element.time(&mut fields, "timestamp", true),
        },
    };
    set_time(&mut base, read);
    base.bounce_class = meaning.class;
    if let Some(sns) = sns {
        base.provider_event_id = sns
            .get("sns_message_id")
            .and_then(Value::as_str)
            .map(str::to_owned);
        base.metadata.extend(sns);
    }
    if let Some(mail) = mail.as_mut() {
        read_mail(mail, &mut base);
    }
    let mut shared_reply = Reply::default();
    if let Some(detail) = detail.as_mut() {
        match key.as_str() {
            "delivery" => {
                if let Some(text) = detail.text("smtpResponse") {
                    shared_reply.complete_from_text(&text);
                    base.smtp_response = Some(clip(text.trim(), MAX_FIELD_CHARS).to_owned());
                }
            }
            "open" | "click" => {
                let bounded = |text: String| clip(&text, MAX_FIELD_CHARS).to_owned();
                base.ip = detail.text("ipAddress").map(bounded);
                base.user_agent = detail.text("userAgent").map(bounded);
                base.click_url = detail.text("link").map(bounded);
                let link_tags = flat_tags(detail, "linkTags", |_| true);
                base.tags.extend(link_tags);
            }
            "reject" => {
                base.smtp_response = detail
                    .text("reason")
                    .map(|reason| clip(&reason, MAX_FIELD_CHARS).to_owned());
            }
            "renderingfailure" => {
                base.smtp_response = detail
                    .text("errorMessage")
                    .map(|text| clip(&text, MAX_FIELD_CHARS).to_owned());
            }
            _ => {}
        }
        // Read to decide the kind; kept for rules and people, under SES's names.
        for field in CLASSIFYING_FIELDS {
            detail.copy_into(field, field, &mut base.metadata);
        }
        detail.rest_into(&mut base.metadata);
    }
    base.smtp_code = shared_reply.code;
    base.smtp_enhanced = shared_reply.enhanced.clone();
    base.reason = meaning.reason;
    fields.rest_into(&mut base.metadata);

    if targets.iter().all(|target| target.details.is_none()) {
        let addresses = targets.into_iter().map(|target| target.address).collect();
        finish_reason(&mut base, &meaning, &shared_reply);
        emit(base, addresses, fields.warnings(), out);
        return Ok(());
    }
    let mut events = Vec::with_capacity(targets.len());
    for target in targets {
        let mut event = base.clone();
        event.recipient = target.address;
        let mut reply = Reply::default();
        if let Some(mut details) = target.details {
            if let Some(status) = details.text("status") {
                reply.enhanced = smtp::enhanced_code(&status);
                if reply.enhanced.is_none() {
                    details.warn(
                        "status",
                        format_args!(
                            "`{}` is not an enhanced status code; ignored",
                            clip(&status, 40)
                        ),
                    );
                }
            }
            if let Some(diagnostic) = details.text("diagnosticCode") {
                let text = smtp::strip_diagnostic_type(&diagnostic);
                reply.complete_from_text(text);
                event.smtp_response = Some(clip(text, MAX_FIELD_CHARS).to_owned());
            }
            details.rest_into(&mut event.metadata);
        }
        event.smtp_code = reply.code;
        event.smtp_enhanced = reply.enhanced.clone();
        finish_reason(&mut event, &meaning, &reply);
        events.push(event);
    }
    emit_each(events, fields.warnings(), out);
    Ok(())
}

/// Fields the kind is decided from, which stay in metadata as well.
const CLASSIFYING_FIELDS: [&str; 7] = [
    "bounceType",
    "bounceSubType",
    "complaintFeedbackType",
    "complaintSubType",
    "delayType",
    "newTopicPreferences",
    "oldTopicPreferences",
];

/// One recipient of a notification, with SES's details about it where it gives them.
struct Target<'a> {
    address: EmailAddress,
    details: Option<Fields<'a>>,
}

/// What an SES message means, before its recipients' replies are read.
struct Meaning {
    kind: EventKind,
    class: Option<BounceClass>,
    /// Reason SES states (its subtype); `None` leaves it to the reply.
    reason: Option<Reason>,
    /// Whether the reply may decide the reason when SES states none.
    reason_from_reply: bool,
    /// A documented message deliberately stored as `other`.
    documented: bool,
}

fn meaning(key: &str, detail: Option<&mut Fields<'_>>) -> Meaning {
    let plain = |kind: EventKind, reason: Option<Reason>| Meaning {
        kind,
        class: None,
        reason,
        reason_from_reply: false,
        documented: false,
    };
    let mut detail = detail;
    let mut text = |name: &str| detail.as_mut().and_then(|d| d.text(name));
    match key {
        "bounce" => {
            let bounce_type = text("bounceType");
            let subtype = text("bounceSubType");
            let (bounce, problems) = classify_bounce(bounce_type.as_deref(), subtype.as_deref());
            if let Some(detail) = detail.as_ref() {
                for problem in problems {
                    problem.warn(detail, "bounceType", "bounceSubType");
                }
            }
            Meaning {
                kind: bounce.kind,
                class: bounce.class,
                reason: bounce.reason,
                reason_from_reply: bounce.kind == EventKind::Bounce,
                documented: false,
            }
        }
        "complaint" => {
            if text("complaintSubType").as_deref() == Some("OnAccountSuppressionList") {
                return plain(EventKind::Dropped, None);
            }
            match text("complaintFeedbackType").as_deref() {
                Some("not-spam" | "auth-failure") => Meaning {
                    documented: true,
                    ..plain(EventKind::Other, None)
                },
                _ => plain(EventKind::Complaint, Some(Reason::Spam)),
            }
        }
        "delivery" => plain(EventKind::Delivered, None),
        "send" => plain(EventKind::Queued, None),
        "reject" => plain(EventKind::Dropped, Some(Reason::Blocked)),
        "open" => plain(EventKind::Open, None),
        "click" => plain(EventKind::Click, None),
        "renderingfailure" => plain(EventKind::Failed, Some(Reason::Other)),
        "deliverydelay" => {
            let reason = match text("delayType").as_deref() {
                Some("MailboxFull") => Some(Reason::Bounced),
                Some("SpamDetected") => Some(Reason::Spam),
                Some("IPFailure") => Some(Reason::Blocked),
                Some("TransientCommunicationFailure") => Some(Reason::TimedOut),
                Some(
                    "InternalFailure"
                    | "RecipientServerError"
                    | "BYOIPHostNameLookupUnavailable"
                    | "SendingDeferral",
                ) => Some(Reason::Other),
                _ => None,
            };
            Meaning {
                reason_from_reply: true,
                ..plain(EventKind::Deferred, reason)
            }
        }
        "subscription" => {
            let mut preferences = |name: &str| {
                let detail = detail.as_mut()?;
                let raw = detail.raw(name)?;
                if JsonType::of(raw) != JsonType::Object {
                    detail.warn(
                        name,
                        format_args!("expected an object, found {}; ignored", JsonType::of(raw)),
                    );
                    return None;
                }
                serde_json::from_str::<Value>(raw.get()).ok()
            };
            let (new, old) = (
                preferences("newTopicPreferences"),
                preferences("oldTopicPreferences"),
            );
            match subscription_change(new.as_ref(), old.as_ref()) {
                Some(EventKind::Unsubscribe) => {
                    plain(EventKind::Unsubscribe, Some(Reason::Unsubscribed))
                }
                Some(kind) => plain(kind, None),
                None => Meaning {
                    documented: true,
                    ..plain(EventKind::Other, None)
                },
            }
        }
        _ => plain(EventKind::Other, None),
    }
}

/// Sets the reason from the reply where SES stated none.
fn finish_reason(event: &mut Event, meaning: &Meaning, reply: &Reply) {
    if meaning.reason.is_none() && meaning.reason_from_reply {
        event.reason = smtp::classify(reply, event.smtp_response.as_deref());
        if event.reason.is_none() && meaning.kind == EventKind::Bounce {
            event.reason = Some(Reason::Bounced);
        }
    }
    if meaning.kind == EventKind::Bounce && meaning.class.is_none() {
        event.bounce_class = Some(smtp::class_from_reply(reply, event.reason));
    }
}

/// What an SES bounce is, from its type and subtype. Resend sends through SES and reports
/// bounces in the same words, so its adapter uses this too.
pub(super) struct SesBounce {
    /// `bounce`, or `dropped` for SES's own suppression lists (never attempted).
    pub kind: EventKind,
    /// From the type; `None` when the type is missing or unknown (read the reply).
    pub class: Option<BounceClass>,
    /// From the subtype; `None` leaves it to the reply.
    pub reason: Option<Reason>,
}

/// Something about a bounce's type or subtype worth a warning.
pub(super) enum BounceProblem {
    MissingType,
    UnknownType(String),
    UnknownSubtype(String),
}

impl BounceProblem {
    /// Warns about it on `fields`, whose type and subtype are named `type_key` and
    /// `subtype_key`.
    pub fn warn(&self, fields: &Fields<'_>, type_key: &str, subtype_key: &str) {
        match self {
            BounceProblem::MissingType => {
                fields.warn(type_key, "missing; class read from the reply")
            }
            BounceProblem::UnknownType(value) => fields.warn(
                type_key,
                format_args!(
                    "`{}` is not a documented type; class read from the reply",
                    clip(value, 40)
                ),
            ),
            BounceProblem::UnknownSubtype(value) => fields.warn(
                subtype_key,
                format_args!(
                    "`{}` is not a documented subtype; reason read from the reply",
                    clip(value, 40)
                ),
            ),
        }
    }
}

/// Classifies an SES bounce (<https://docs.aws.amazon.com/ses/latest/dg/notification-contents.html#bounce-types>):
/// Permanent → hard, Transient (Resend's prose also says Temporary) → soft, Undetermined →
/// undetermined; the subtype gives the reason where it names one; Suppressed and
/// OnAccountSuppressionList were never attempted. Names are compared case-insensitively.
pub(super) fn classify_bounce(
    bounce_type: Option<&str>,
    subtype: Option<&str>,
) -> (SesBounce, Vec<BounceProblem>) {
    let mut problems = Vec::new();
    let subtype_lower = subtype.map(|s| s.trim().to_ascii_lowercase());
    match subtype_lower.as_deref() {
        // The global list holds addresses with "a recent history of producing hard
        // bounces": reason `bounced`, as for every provider's suppression of a bounced
        // address; the account-level list may hold complaints too, so no reason.
        Some("suppressed") => {
            let dropped = SesBounce {
                kind: EventKind::Dropped,
                class: None,
                reason: Some(Reason::Bounced),
            };
            return (dropped, problems);
        }
        Some("onaccountsuppressionlist") => {
            let dropped = SesBounce {
                kind: EventKind::Dropped,
                class: None,
                reason: None,
            };
            return (dropped, problems);
        }
        _ => {}
    }
    let class = match bounce_type
        .map(|t| t.trim().to_ascii_lowercase())
        .as_deref()
    {
        Some("permanent") => Some(BounceClass::Hard),
        Some("transient" | "temporary") => Some(BounceClass::Soft),
        Some("undetermined") => Some(BounceClass::Undetermined),
        Some(_) => {
            problems.push(BounceProblem::UnknownType(
                bounce_type.unwrap_or_default().to_owned(),
            ));
            None
        }
        None => {
            problems.push(BounceProblem::MissingType);
            None
        }
    };
    let reason = match subtype_lower.as_deref() {
        Some("noemail") => Some(Reason::Invalid),
        Some("mailboxfull") => Some(Reason::Bounced),
        Some("messagetoolarge") => Some(Reason::Other),
        Some("contentrejected" | "attachmentrejected") => Some(Reason::Blocked),
        Some("general" | "undetermined" | "messagerejected") | None => None,
        Some(_) => {
            problems.push(BounceProblem::UnknownSubtype(
                subtype.unwrap_or_default().to_owned(),
            ));
            None
        }
    };
    (
        SesBounce {
            kind: EventKind::Bounce,
            class,
            reason,
        },
        problems,
    )
}

/// Whether a Subscription event is an opt-out (of all mail, or of a topic that was
/// opted in) or an opt-in; `None` when nothing changed that way.
fn subscription_change(new: Option<&Value>, old: Option<&Value>) -> Option<EventKind> {
    let new = new?;
    let all = |prefs: Option<&Value>| prefs.and_then(|p| p["unsubscribeAll"].as_bool());
    if all(Some(new)) == Some(true) && all(old) != Some(true) {
        return Some(EventKind::Unsubscribe);
    }
    let status = |prefs: Option<&Value>, topic: &str| {
        prefs
            .and_then(|p| p["topicSubscriptionStatus"].as_array())
            .and_then(|topics| {
                topics
                    .iter()
                    .find(|t| t["topicName"].as_str() == Some(topic))
                    .and_then(|t| t["subscriptionStatus"].as_str().map(str::to_owned))
            })
    };
    let mut opted_in = false;
    for topic in new["topicSubscriptionStatus"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let Some(name) = topic["topicName"].as_str() else {
            continue;
        };
        let now = topic["subscriptionStatus"].as_str();
        let before = status(old, name);
        if now == Some("OptOut") && before.as_deref() != Some("OptOut") {
            return Some(EventKind::Unsubscribe);
        }
        opted_in |= now == Some("OptIn") && before.as_deref() != Some("OptIn");
    }
    if all(old) == Some(true) && all(Some(new)) == Some(false) {
        opted_in = true;
    }
    opted_in.then_some(EventKind::Subscribe)
}

/// Reads the `mail` object: message id, sender, subject, tags; the rest to metadata
/// (`headers` stays in `raw` only: it repeats the message's headers in full).
fn read_mail(mail: &mut Fields<'_>, event: &mut Event) {
    event.message_id = mail.text("messageId").map(|id| id.trim().to_owned());
    event.sender = mail
        .text("source")
        .map(|source| match EmailAddress::parse(&source) {
            Ok(address) => address.as_str().to_owned(),
            Err(_) => clip(&source, 320).to_owned(),
        });
    if let Some(mut headers) = mail.object("commonHeaders") {
        event.subject = headers
            .text("subject")
            .map(|subject| clip(&subject, MAX_FIELD_CHARS).to_owned());
        headers.copy_into("messageId", "header_message_id", &mut event.metadata);
    }
    event.tags = flat_tags(mail, "tags", |name| !name.starts_with("ses:"));
    if let Some(raw) = mail.raw("tags") {
        let ses_tags: Map<String, Value> = serde_json::from_str::<Map<String, Value>>(raw.get())
            .unwrap_or_default()
            .into_iter()
            .filter(|(name, _)| name.starts_with("ses:"))
            .collect();
        if !ses_tags.is_empty() {
            event
                .metadata
                .insert("ses_tags".to_owned(), Value::Object(ses_tags));
        }
    }
    for key in ["destination", "headers", "timestamp"] {
        mail.raw(key);
    }
    mail.rest_into(&mut event.metadata);
}

/// Flattens the SES tag map in `key` (`{"name": ["value", ...]}`) into `name=value` tags,
/// for the names `keep` accepts; other shapes are warned about and left in `raw`.
fn flat_tags(fields: &mut Fields<'_>, key: &str, keep: impl Fn(&str) -> bool) -> Vec<String> {
    let Some(raw) = fields.raw(key) else {
        return Vec::new();
    };
    let Ok(map) = serde_json::from_str::<Map<String, Value>>(raw.get()) else {
        fields.warn(
            key,
            format_args!(
                "expected an object of tag lists, found {}; ignored",
                JsonType::of(raw)
            ),
        );
        return Vec::new();
    };
    let mut tags = Vec::new();
    let mut tag = |name: &str, value: &Value| {
        let text = match value {
            Value::String(text) => text.clone(),
            Value::Number(_) | Value::Bool(_) => value.to_string(),
            _ => return false,
        };
        tags.push(clip(&format!("{name}={text}"), MAX_FIELD_CHARS).to_owned());
        true
    };
    for (name, values) in &map {
        if !keep(name) {
            continue;
        }
        let read = match values {
            // Every item is tried: one bad value does not hide the good ones.
            Value::Array(items) => items.iter().filter(|item| !tag(name, item)).count() == 0,
            Value::Null => true,
            other => tag(name, other),
        };
        if !read {
            fields.warn(
                key,
                format_args!(
                    "tag `{}`: expected a list of texts; other values ignored",
                    clip(name, 64)
                ),
            );
        }
    }
    tags
}

/// Reads the recipients a bounce, complaint or delay is about: the objects of
/// `<object>.<list>`, each with an `emailAddress`. Entries without a valid one are
/// skipped with a warning; none valid is an error.
fn recipient_targets<'a>(
    detail: Option<&mut Fields<'a>>,
    object: &str,
    list: &str,
) -> Result<Vec<Target<'a>>, ElementError> {
    let Some(detail) = detail else {
        return Err(ElementError::NoRecipient(format!(
            "no `{object}` object with `{list}`"
        )));
    };
    let path = format!("{object}.{list}");
    let Some(raw) = detail.raw(list) else {
        return Err(ElementError::NoRecipient(format!("`{path}` is missing")));
    };
    let Ok(items) = serde_json::from_str::<Vec<&'a RawValue>>(raw.get()) else {
        return Err(ElementError::NoRecipient(format!(
            "`{path}` is {}, expected a list of recipients",
            JsonType::of(raw)
        )));
    };
    let mut targets: Vec<Target<'a>> = Vec::new();
    let mut problems = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        let Some(mut entry) = Fields::parse(item, detail.warnings().clone()) else {
            problems.push(format!("{index} is {}, not an object", JsonType::of(item)));
            continue;
        };
        let Some(text) = entry.text("emailAddress") else {
            problems.push(format!("{index} has no `emailAddress`"));
            continue;
        };
        match EmailAddress::parse(&text) {
            Ok(address) if targets.iter().any(|t| t.address == address) => {}
            Ok(address) => targets.push(Target {
                address,
                details: Some(entry),
            }),
            Err(error) => problems.push(format!("{index} `{}`: {error}", clip(&text, 80))),
        }
    }
    if targets.is_empty() {
        return Err(ElementError::NoRecipient(format!(
            "`{path}`: {}",
            problems
                .first()
                .map_or_else(|| "empty".to_owned(), |p| format!("recipient {p}"))
        )));
    }
    for problem in problems.iter().take(5) {
        detail.warn(list, format_args!("skipped recipient {problem}"));
    }
    if targets.len() > MAX_RECIPIENTS_PER_EVENT {
        detail.warn(
            list,
            format_args!(
                "{} recipients; only the first {MAX_RECIPIENTS_PER_EVENT} are stored",
                targets.len()
            ),
        );
        targets.truncate(MAX_RECIPIENTS_PER_EVENT);
    }
    Ok(targets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn subscription_changes() {
        let prefs = |all: bool, status: &str| {
            json!({"unsubscribeAll": all, "topicSubscriptionStatus": [
                {"topicName": "news", "subscriptionStatus": status}]})
        };
        let change = |new: Value, old: Value| subscription_change(Some(&new), Some(&old));
        assert_eq!(
            change(prefs(true, "OptOut"), prefs(false, "OptOut")),
            Some(EventKind::Unsubscribe)
        );
        assert_eq!(
            change(prefs(false, "OptOut"), prefs(false, "OptIn")),
            Some(EventKind::Unsubscribe)
        );
        assert_eq!(
            change(prefs(false, "OptIn"), prefs(false, "OptOut")),
            Some(EventKind::Subscribe)
        );
        assert_eq!(change(prefs(false, "OptIn"), prefs(false, "OptIn")), None);
    }
}
