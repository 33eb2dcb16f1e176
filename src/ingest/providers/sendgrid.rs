//! SendGrid (Twilio) Event Webhook: a JSON array of events per request, batched every ~30 s
//! or 768 KB (<https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/event>).
//!
//! Events and what they become:
//! - `processed` → queued; `deferred` → deferred; `delivered` → delivered (its `ip` is
//!   SendGrid's sending IP: metadata). A deferral's reason is only given when the reply
//!   says something specific (a timeout, a block): SendGrid retries it, so "bounced"
//!   would be wrong.
//! - `bounce` with `type: bounce` → bounce, hard ("Twilio refers to this Bounce event type
//!   as a hard bounce"); `type: blocked` → bounce, soft ("a soft bounce … might accept the
//!   blocked message at a later time"; SendGrid's Blocks page: "an issue with the message
//!   itself rather than an issue with the recipient's address", and blocked addresses are
//!   not suppressed). It stays a bounce, not a deferral: SendGrid reports its own retries
//!   as `deferred`. Without `type` (the 2021 all-events sample) or with a value SendGrid
//!   does not list, the class is read from the reply. `bounce_classification` gives the
//!   reason (<https://www.twilio.com/docs/sendgrid/ui/analytics-and-reporting/bounce-and-block-classifications>):
//!   Invalid Address → invalid, Mailbox Unavailable → bounced, Reputation / Content /
//!   Frequency → blocked (a refusal of the sender, which the hard-bounce rule spares),
//!   Technical → other; Unclassified, absent or unknown → the SMTP reply decides, and a
//!   block with no reply at all is `blocked`. The webhook and the Bounces API spell two
//!   of them differently ("Technical" / "Technical Failure"): prefixes are compared.
//! - `dropped` → dropped; its `reason` is SendGrid's own label, every documented one
//!   mapped: Bounced Address → bounced, Unsubscribed Address → unsubscribed, Spam
//!   Reporting Address and Spam Content → spam, Invalid / Invalid Address (the 2021 page
//!   and the current one) → invalid, Invalid SMTPAPI header and Recipient List over
//!   Package Quota → other; an unlisted label → other with a warning. The label is the
//!   event's `smtp_response` (the only explanation there is); its `status` (`5.0.0`) is
//!   synthetic, no SMTP exchange took place, so it stays in metadata.
//! - `open` (`sg_machine_open`, true for Apple Mail Privacy Protection, in metadata),
//!   `click`, `spamreport` (also spelled "spam report" in the property table and
//!   `spam_report` in the settings API) → complaint, `unsubscribe` and `group_unsubscribe`
//!   → unsubscribe, `group_resubscribe` → subscribe. Event names are compared without
//!   case: the reserved-keys sample sends `Processed`.
//! - `account_status_change` concerns the account, not a recipient: it cannot be an event
//!   of this model and is quarantined with that explanation, for an operator to see.
//!
//! Fields:
//! - `timestamp` is Unix seconds, as a number or a string; the Single Send sample has
//!   milliseconds (`1591726752372`), which the time reader tells apart by size.
//! - `sg_event_id` is SendGrid's per-event id, "use this ID for deduplication": the
//!   event id (dedup combines it with kind, bounce class, recipient and time, since the
//!   documented bounce and blocked samples share one). The documentation's placeholders
//!   (`sg_event_id`, `sendgrid_internal_event_id`, and the same for `sg_message_id`) are
//!   no ids: the 2021 all-events sample gives all its eleven events `"sg_event_id":
//!   "sg_event_id"`, and its `unsubscribe` and `group_unsubscribe` are the same kind for
//!   the same address at the same second. They are warned about and kept in metadata;
//!   such an event dedups on its JSON. An id longer than [`MAX_FIELD_CHARS`] is not
//!   SendGrid's either (warned, raw only).
//! - `message_id` is `sg_message_id`, trimmed (the deferred sample has a leading space):
//!   it is on every event of a message, opens and clicks included, except asynchronous
//!   bounces; `smtp-id` (the RFC Message-ID, angle brackets removed) is the fallback,
//!   since the documented open, click and unsubscribe samples have none and the
//!   Marketing Campaigns ones send `""`. Whichever is not the message id stays in
//!   metadata as sent.
//! - `category` is a string or an array ("If you send single categories as an array,
//!   the webhook returns them as an array"), possibly empty: tags.
//! - `campaign` is `marketing_campaign_name` or `singlesend_name`, else the campaign's or
//!   Single Send's id; the ids stay in metadata either way.
//! - `ip` and `useragent`: `ip` is "IP address used to send the email. For open and click
//!   events, the IP address of the recipient", so it is the reader's `ip` on opens and
//!   clicks only and metadata elsewhere; `url` is the click's link (metadata on the group
//!   (un)subscribe events, which carry one too).
//! - `status` ("X.Y.Z") is the enhanced code of bounces; `response` (deliveries,
//!   deferrals) or `reason` (bounces) the reply text, whose leading code is `smtp_code`.
//! - Custom and unique arguments arrive as top-level keys, indistinguishable from
//!   SendGrid's own: everything not mapped (`attempt`, `tls`, `pool`, `asm_group_id`,
//!   `url_offset`, `newsletter`, `marketing_*`, `singlesend_*`, template ids, `type`,
//!   `bounce_classification`, …) goes to metadata as sent.
//!
//! Signature (<https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/getting-started-event-webhook-security-features>):
//! `X-Twilio-Email-Event-Webhook-Signature` is a base64 ASN.1 ECDSA P-256 / SHA-256
//! signature of the `X-Twilio-Email-Event-Webhook-Timestamp` header's bytes followed by the
//! raw body; the verification key is shown in the dashboard as base64 DER. SendGrid
//! documents no timestamp tolerance and retries for 24 hours without saying whether a
//! retry is signed anew, so the default tolerance is 25 hours: a replay can only repeat
//! signed events, which dedup folds.

use serde_json::{Map, Value};

use super::{Element, ElementError, MAX_FIELD_CHARS, Provider, emit, recipients, set_time};
use crate::config::SourceConfig;
use crate::event::{BounceClass, EmailAddress, Event, EventKind, Reason};
use crate::ingest::fields::{Fields, clip};
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
/// Longest reader IP kept (an IPv6 address with a zone fits easily).
const MAX_IP_CHARS: usize = 64;
/// Longest address text kept for a sender that does not parse as an address.
const MAX_SENDER_CHARS: usize = 320;
/// Values the documentation's samples put where an id belongs: never a real id.
const PLACEHOLDER_IDS: [&str; 4] = [
    "sg_event_id",
    "sg_message_id",
    "sendgrid_internal_event_id",
    "sendgrid_internal_message_id",
];

impl Provider for SendGrid {
    fn name(&self) -> &str {
        "sendgrid"
    }

    fn checks(
        &self,
        settings: &SourceConfig,
        _context: &SourceContext,
    ) -> Result<Vec<Box<dyn Verify>>, String> {
        verify::timed_signature_checks(
            self.name(),
            settings,
            "public_key",
            settings.public_key.as_deref(),
            DEFAULT_MAX_AGE_SECS,
            |key, max_age_secs| {
                let key = P256Key::parse(key).map_err(|error| format!("`public_key`: {error}"))?;
                Ok(Box::new(SendGridSignature { key, max_age_secs }))
            },
        )
    }

    fn normalize(&self, element: &Element<'_>, out: &mut Vec<Event>) -> Result<(), ElementError> {
        let mut fields = element.fields()?;
        let name = fields
            .text("event")
            .ok_or(ElementError::MissingEventName("event"))?;
        let lower = name.trim().to_lowercase();
        if lower == "account_status_change" {
            return Err(account_notice(&mut fields));
        }
        let kind = kind_of(&lower);
        let recipients = recipients(&mut fields, &["email"])?;
        let first = recipients[0].clone();
        let mut event = element.event(&name, kind, first, &fields);
        let read = element.time(&mut fields, "timestamp", true);
        set_time(&mut event, read);
        event.provider_event_id = read_id(&mut fields, "sg_event_id", &mut event.metadata);

        let sg_message_id = read_id(&mut fields, "sg_message_id", &mut event.metadata);
        let smtp_id = fields.text("smtp-id");
        match sg_message_id {
            Some(id) => {
                event.message_id = Some(id);
                fields.copy_into("smtp-id", "smtp-id", &mut event.metadata);
            }
            None => {
                event.message_id = smtp_id
                    .as_deref()
                    .map(|id| id.trim().trim_start_matches('<').trim_end_matches('>'))
                    .filter(|id| !id.trim().is_empty())
                    .map(|id| clip(id.trim(), MAX_FIELD_CHARS).to_owned());
                if event.message_id.is_none() {
                    fields.copy_into("smtp-id", "smtp-id", &mut event.metadata);
                }
            }
        }

        event.tags = fields
            .texts("category")
            .iter()
            .map(|tag| clip(tag, MAX_FIELD_CHARS).to_owned())
            .collect();
        event.campaign = campaign(&mut fields, &mut event.metadata);
        event.sender = fields
            .text("from")
            .map(|from| match EmailAddress::parse(&from) {
                Ok(address) => address.as_str().to_owned(),
                Err(_) => clip(from.trim(), MAX_SENDER_CHARS).to_owned(),
            });
        if matches!(kind, EventKind::Open | EventKind::Click) {
            event.ip = fields
                .text("ip")
                .map(|ip| clip(ip.trim(), MAX_IP_CHARS).to_owned());
        }
        if kind == EventKind::Click {
            event.click_url = fields
                .text("url")
                .map(|url| clip(url.trim(), MAX_FIELD_CHARS).to_owned());
        }
        event.user_agent = fields
            .text("useragent")
            .map(|agent| clip(agent.trim(), MAX_FIELD_CHARS).to_owned());

        match kind {
            // The label is SendGrid's, not a server's: no codes, `status` to metadata.
            EventKind::Dropped => {
                if let Some(label) = fields.text("reason") {
                    event.reason = Some(reason_of_drop(&label).unwrap_or_else(|| {
                        fields.warn(
                            "reason",
                            format_args!(
                                "drop reason `{}` not recognised; reason `other`",
                                clip(label.trim(), 80)
                            ),
                        );
                        Reason::Other
                    }));
                    event.smtp_response = Some(clip(label.trim(), MAX_FIELD_CHARS).to_owned());
                }
            }
            EventKind::Complaint => event.reason = Some(Reason::Spam),
            EventKind::Unsubscribe => event.reason = Some(Reason::Unsubscribed),
            _ => read_reply(kind, &mut fields, &mut event),
        }
        fields.rest_into(&mut event.metadata);
        emit(event, recipients, fields.warnings(), out);
        Ok(())
    }
}

/// The quarantine message of an `account_status_change`: a notice about the account
/// (a compliance action or a reactivation), for a person to read.
fn account_notice(fields: &mut Fields<'_>) -> ElementError {
    let detail = fields
        .text("type")
        .map(|kind| format!(" of type `{}`", clip(kind.trim(), 40)))
        .unwrap_or_default();
    ElementError::Malformed(format!(
        "`account_status_change`{detail} is a notice about the SendGrid account itself \
         (compliance action or reactivation) and names no recipient; set aside for an \
         operator to read"
    ))
}

/// Reads an id field: trimmed text, or `None` (with a warning) for the documentation's
/// placeholders, which go to metadata, and for text too long to be SendGrid's.
fn read_id(
    fields: &mut Fields<'_>,
    key: &str,
    metadata: &mut Map<String, Value>,
) -> Option<String> {
    let text = fields.text(key)?;
    let id = text.trim();
    if PLACEHOLDER_IDS.contains(&id) {
        fields.warn(
            key,
            format_args!(
                "`{id}` is a placeholder of SendGrid's samples, not an id; kept in metadata"
            ),
        );
        metadata.insert(key.to_owned(), Value::String(text));
        return None;
    }
    if id.chars().nth(MAX_FIELD_CHARS).is_some() {
        fields.warn(
            key,
            format_args!(
                "longer than {MAX_FIELD_CHARS} characters, not a SendGrid id; kept in raw only"
            ),
        );
        return None;
    }
    Some(id.to_owned())
}

/// The campaign's or Single Send's name, else its id; the ids stay in metadata.
fn campaign(fields: &mut Fields<'_>, metadata: &mut Map<String, Value>) -> Option<String> {
    let name = fields
        .text("marketing_campaign_name")
        .or_else(|| fields.text("singlesend_name"));
    let mut id = None;
    for key in ["marketing_campaign_id", "singlesend_id"] {
        let text = fields.text(key);
        id = id.or(text);
        fields.copy_into(key, key, metadata);
    }
    name.or(id)
        .map(|campaign| clip(campaign.trim(), MAX_FIELD_CHARS).to_owned())
}

/// Fills the SMTP reply, bounce class and reason of a delivery-side event from
/// `status`, `response` / `reason` and, for bounces, `type` and `bounce_classification`.
fn read_reply(kind: EventKind, fields: &mut Fields<'_>, event: &mut Event) {
    // A bounce's text is in `reason`, a delivery's or deferral's in `response`; the
    // property table lists `reason` for deferrals too.
    let keys = if kind == EventKind::Bounce {
        ["reason", "response"]
    } else {
        ["response", "reason"]
    };
    let text = keys
        .into_iter()
        .find(|key| fields.has(key))
        .and_then(|key| fields.text(key));
    let mut reply = Reply::default();
    if let Some(status) = fields.text("status") {
        reply.enhanced = smtp::enhanced_code(&status);
        if reply.enhanced.is_none() {
            fields.copy_into("status", "status", &mut event.metadata);
        }
    }
    if let Some(text) = &text {
        reply.complete_from_text(text);
        event.smtp_response = Some(clip(text.trim(), MAX_FIELD_CHARS).to_owned());
    }
    event.smtp_code = reply.code;
    event.smtp_enhanced = reply.enhanced.clone();
    let classified = smtp::classify(&reply, text.as_deref());
    match kind {
        EventKind::Bounce => {
            let bounce_type = fields.text("type");
            fields.copy_into("type", "type", &mut event.metadata);
            let classification = fields.text("bounce_classification");
            fields.copy_into(
                "bounce_classification",
                "bounce_classification",
                &mut event.metadata,
            );
            let from_classification = classification.as_deref().and_then(|label| {
                let reason = reason_of_classification(label);
                if reason.is_none() && !label.trim().eq_ignore_ascii_case("unclassified") {
                    fields.warn(
                        "bounce_classification",
                        format_args!(
                            "`{}` not recognised; reason read from the reply",
                            clip(label.trim(), 80)
                        ),
                    );
                }
                reason
            });
            let lower = bounce_type.as_deref().map(|t| t.trim().to_lowercase());
            event.reason = from_classification.or(classified);
            event.bounce_class = Some(match lower.as_deref() {
                Some("bounce") => BounceClass::Hard,
                Some("blocked") => {
                    // A block with nothing to say still says the server refused us.
                    event.reason = event.reason.or(Some(Reason::Blocked));
                    BounceClass::Soft
                }
                other => {
                    if let Some(other) = other {
                        fields.warn(
                            "type",
                            format_args!(
                                "`{}` is neither `bounce` nor `blocked`; class read from the reply",
                                clip(other, 40)
                            ),
                        );
                    }
                    smtp::class_from_reply(&reply, event.reason)
                }
            });
        }
        // SendGrid retries a deferral: only a specific cause is a reason.
        EventKind::Deferred => event.reason = classified.filter(|r| *r != Reason::Bounced),
        _ => {}
    }
}

/// Maps an event name (lower case) to a kind.
fn kind_of(name: &str) -> EventKind {
    match name {
        "processed" => EventKind::Queued,
        "deferred" => EventKind::Deferred,
        "delivered" => EventKind::Delivered,
        "bounce" => EventKind::Bounce,
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

/// Reason from a `dropped` event's label (the list on the Event Webhook reference, with
/// its 2021 spelling "Invalid"); `None` for a label SendGrid does not list.
fn reason_of_drop(label: &str) -> Option<Reason> {
    let lower = label.trim().to_lowercase();
    if lower.starts_with("bounced address") {
        Some(Reason::Bounced)
    } else if lower.starts_with("unsubscribed address") {
        Some(Reason::Unsubscribed)
    } else if lower.starts_with("spam reporting address") || lower.starts_with("spam content") {
        Some(Reason::Spam)
    } else if lower == "invalid" || lower.starts_with("invalid address") {
        Some(Reason::Invalid)
    } else if lower.starts_with("invalid smtpapi header")
        || lower.starts_with("recipient list over package quota")
    {
        Some(Reason::Other)
    } else {
        None
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
    fn sendgrids_multi_event_vector_verifies_with_its_crlf_between_events() {
        // The Node SDK's second vector: two events joined by `},\r\n{`, then `\r\n`.
        const PUBLIC_KEY_MULTIPLE: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEQ4LIFtWztlsF7skFqOncjD1lun4H5w8XOhyOArHW9RcIx/FfEzx6cikC/yPfUvwaX/JScE7Fc9CJD2afQ9Ok3Q==";
        const SIGNATURE_MULTIPLE: &str = "MEYCIQC/I4o6vCgqRYrTljjoVWB/GRWNtxeePlLMHr3x9ETeRQIhAIpV+03nREPTTHWSW0wIOA0EoMPdcNgXa70yCaqDJlu5";
        let body = include_bytes!("../../../fixtures/sendgrid/signature_vector_multi.json");
        let at = 1_619_651_159;
        assert_eq!(
            check(
                PUBLIC_KEY_MULTIPLE,
                SIGNATURE_MULTIPLE,
                "1619651159",
                body,
                at
            ),
            Ok(())
        );
        // The same events without the CRLF between them were not what SendGrid signed.
        let text = std::str::from_utf8(body).unwrap().replace("},\r\n{", "},{");
        assert!(matches!(
            check(
                PUBLIC_KEY_MULTIPLE,
                SIGNATURE_MULTIPLE,
                "1619651159",
                text.as_bytes(),
                at
            ),
            Err(AuthError::BadSignature(_))
        ));
        assert!(matches!(
            check(PUBLIC_KEY, SIGNATURE_MULTIPLE, "1619651159", body, at),
            Err(AuthError::BadSignature(_))
        ));
    }

    #[test]
    fn every_documented_drop_label_has_its_reason() {
        for (label, reason) in [
            ("Bounced Address", Reason::Bounced),
            ("Unsubscribed Address", Reason::Unsubscribed),
            ("Spam Reporting Address", Reason::Spam),
            ("Spam Content", Reason::Spam),
            (
                "Spam Content (if you turned on the Spam Checker app)",
                Reason::Spam,
            ),
            ("Invalid", Reason::Invalid),
            ("Invalid Address", Reason::Invalid),
            ("invalid address ", Reason::Invalid),
            ("Invalid SMTPAPI header", Reason::Other),
            ("Recipient List over Package Quota", Reason::Other),
        ] {
            assert_eq!(reason_of_drop(label), Some(reason), "{label}");
        }
        assert_eq!(reason_of_drop("Invalid Domain"), None);
        assert_eq!(reason_of_drop("Spam"), None);
        assert_eq!(reason_of_drop(""), None);
    }

    #[test]
    fn bounce_classifications_in_both_spellings() {
        for (label, reason) in [
            ("Invalid Address", Some(Reason::Invalid)),
            ("Mailbox Unavailable", Some(Reason::Bounced)),
            ("Reputation", Some(Reason::Blocked)),
            ("Content", Some(Reason::Blocked)),
            ("Frequency/Volume", Some(Reason::Blocked)),
            ("Frequency or Volume Too High", Some(Reason::Blocked)),
            ("Technical", Some(Reason::Other)),
            ("Technical Failure", Some(Reason::Other)),
            ("Unclassified", None),
            ("Something New", None),
        ] {
            assert_eq!(reason_of_classification(label), reason, "{label}");
        }
    }

    #[test]
    fn event_names_map_to_kinds() {
        for (name, kind) in [
            ("processed", EventKind::Queued),
            ("deferred", EventKind::Deferred),
            ("delivered", EventKind::Delivered),
            ("bounce", EventKind::Bounce),
            ("dropped", EventKind::Dropped),
            ("open", EventKind::Open),
            ("click", EventKind::Click),
            ("spamreport", EventKind::Complaint),
            ("spam report", EventKind::Complaint),
            ("spam_report", EventKind::Complaint),
            ("unsubscribe", EventKind::Unsubscribe),
            ("group_unsubscribe", EventKind::Unsubscribe),
            ("group_resubscribe", EventKind::Subscribe),
            // `blocked` is a bounce's `type`, never an event name.
            ("blocked", EventKind::Other),
            ("machine_open", EventKind::Other),
        ] {
            assert_eq!(kind_of(name), kind, "{name}");
        }
    }
}
