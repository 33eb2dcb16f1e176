//! Resend webhooks: one JSON object per request, `{type, created_at, data}`
//! (<https://resend.com/docs/webhooks/event-types>), signed by Svix.
//!
//! | `type` | kind |
//! |---|---|
//! | `email.scheduled`, `email.sent` | `queued`: accepted; Resend "will attempt to deliver" |
//! | `email.delivered` | `delivered` |
//! | `email.delivery_delayed` | `deferred` |
//! | `email.bounced` | `bounce`, class and reason from `data.bounce` (below) |
//! | `email.bounced`, `subType` `Suppressed` / `OnAccountSuppressionList` | `dropped` |
//! | `email.complained` | `complaint`, reason `spam` |
//! | `email.opened` | `open` (Resend sends no reader IP or user agent) |
//! | `email.clicked` | `click`, from `data.click` |
//! | `email.failed` | `failed`, reason `other` (`failed.reason` in metadata) |
//! | `email.suppressed` | `dropped`; `previous_bounce` → `bounced`, `previous_complaint` → `spam` |
//! | `email.received` | `other`: an inbound e-mail, for each `to` address |
//! | `contact.created` / `updated` / `deleted`, `contact.topics.updated` | `other`, for `data.email` |
//! | `suppression.added` / `removed` | `other`, for `data.email`; `source_id` is the message id |
//! | `domain.*`, `topic.*` | no e-mail recipient: quarantined, saying so |
//! | anything else | `other`, with the unknown-event warning |
//!
//! Bounces, per <https://resend.com/docs/dashboard/emails/email-bounces> and the OpenAPI
//! enums: `bounce.type` Permanent → `hard`, Transient → `soft` (Temporary too, as the
//! field's description spells it), Undetermined → `undetermined`; another type or none →
//! the class the reply implies, with a warning. `bounce.subType` decides the reason first:
//! NoEmail → `invalid`, MailboxFull → `bounced`, MessageTooLarge → `other`,
//! ContentRejected / AttachmentRejected → `blocked` (the message was refused, not the
//! address); General, Undetermined and MessageRejected (the field's description names it)
//! take the reason from the reply; an unlisted subtype does too, with a warning. The reply
//! is `bounce.diagnosticCode` (an array, "one entry per recipient", `smtp; 550 5.1.1 …`;
//! the `smtp;` type is dropped), else `bounce.message`.
//!
//! Decisions where the documentation leaves room:
//! - **The documented `email.bounced` sample is `dropped`.** Its `subType` is `Suppressed`
//!   and its message says the address "is on the suppression list because it has a recent
//!   history of producing hard bounces": Resend never tried, so it is no second bounce
//!   (and must not feed the bounce rules). Reason `bounced`, as for `email.suppressed`
//!   with `previous_bounce`; `OnAccountSuppressionList` (the account's own list: bounces,
//!   complaints or manual) leaves the reason empty. A dropped event has no SMTP fields:
//!   the message is Resend's, not a server's, and stays in `metadata.bounce`.
//! - **`email.sent` is `queued`**, like Amazon SES's `Send` (Resend sends through it): the
//!   API call succeeded and delivery has not been tried yet.
//! - **Times.** The top-level `created_at` is when the event happened (RFC 3339 with `Z`
//!   or an offset, any number of fraction digits): `exact`. A click prefers
//!   `click.timestamp`, when the click occurred; an unreadable one falls back to
//!   `created_at` with a warning. `data.created_at` is when the e-mail (or contact) was
//!   created and stays in metadata as sent.
//! - **Ids.** `data.email_id` is the message id; `data.message_id`, the RFC Message-ID
//!   header, stays in metadata. Nothing in the body is unique per event (`email_id` is
//!   shared by every event of an e-mail; the `svix-id` header is unique, but adapters do
//!   not see headers), so there is no provider event id: dedup hashes the event's JSON,
//!   which a retry repeats.
//! - **Recipients.** `data.to` lists the "impacted" addresses: one event each. When
//!   `diagnosticCode` has exactly one entry per listed address, each event gets its own;
//!   otherwise each gets the first, and the whole list stays in metadata with a warning.
//! - **Tags** are an object (`Record<string, string>`): `key=value`, in key order. An
//!   array of `{name, value}` (the shape the send API takes) or of strings is read too.
//! - **Metadata** keeps the unmapped `data` fields under their names, and the
//!   event-specific objects nested under theirs: `bounce` (with `type` and `subType`, the
//!   provider's own classification), `suppressed`, `failed`, unknown `click` fields.
//! - `contact.updated` says the contact's `unsubscribed` state, not that it changed, and
//!   `contact.topics.updated` may be the sender's own API call: both stay `other`.
//!
//! Signature (Svix, <https://docs.svix.com/receiving/verifying-payloads/how-manual>):
//! `svix-signature` holds space-separated `v1,<base64>` entries, each an HMAC-SHA256 of
//! `{svix-id}.{svix-timestamp}.{raw body}` keyed with the base64 part of the
//! `whsec_...` secret; any entry may match (secret rotation). The unbranded
//! `webhook-id` / `webhook-timestamp` / `webhook-signature` headers are read too.
//! Timestamps more than 5 minutes away are refused: Svix signs every attempt anew.

use std::collections::BTreeMap;

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::amazon_ses::classify_bounce;
use super::{Element, ElementError, MAX_FIELD_CHARS, Provider, emit_each, recipients, set_time};
use crate::config::SourceConfig;
use crate::event::{BounceClass, EmailAddress, Event, EventKind, Reason};
use crate::ingest::fields::{Fields, JsonType, clip, scalar_text};
use crate::ingest::smtp::{self, Reply};
use crate::ingest::sources::SourceContext;
use crate::ingest::time::{self, ReadTime};
use crate::ingest::verify::crypto::{Mac, MacKey, base64_decode};
use crate::ingest::verify::{self, AuthError, Request, Verified, Verify};

/// The Resend adapter.
pub struct Resend;

/// Svix's tolerance for the signed timestamp.
const DEFAULT_MAX_AGE_SECS: u64 = 300;

impl Provider for Resend {
    fn name(&self) -> &str {
        "resend"
    }

    fn checks(
        &self,
        settings: &SourceConfig,
        _context: &SourceContext,
    ) -> Result<Vec<Box<dyn Verify>>, String> {
        verify::timed_signature_checks(
            self.name(),
            settings,
            "signing_secret",
            settings.signing_secret.as_ref().map(|s| s.expose()),
            DEFAULT_MAX_AGE_SECS,
            |secret, max_age_secs| Ok(Box::new(SvixSignature::new(secret, max_age_secs)?)),
        )
    }

    fn normalize(&self, element: &Element<'_>, out: &mut Vec<Event>) -> Result<(), ElementError> {
        let mut fields = element.fields()?;
        let name = fields
            .text("type")
            .ok_or(ElementError::MissingEventName("type"))?;
        let lower = name.trim().to_ascii_lowercase();
        let family = Family::of(&lower);
        if let Some(about) = family.without_recipient() {
            return Err(ElementError::NoRecipient(format!(
                "`{}` is about {about} and names no e-mail recipient; deselect the {} events \
                 of the Resend webhook if they are not wanted",
                clip(&name, 40),
                family.label()
            )));
        }
        let mut data = match fields.object("data") {
            Some(data) => data,
            None => {
                return Err(ElementError::Malformed(match fields.raw("data") {
                    Some(raw) => format!("`data` is {}, not an object", JsonType::of(raw)),
                    None => "missing `data` object".to_owned(),
                }));
            }
        };
        let listed = data.raw("to").map_or(0, count_items);
        let recipients = recipients(&mut data, family.recipient_keys())?;

        let mut bounce = data.object("bounce");
        let mut suppressed = data.object("suppressed");
        let meaning = meaning(&lower, &data, bounce.as_mut(), suppressed.as_mut());
        let first = recipients[0].clone();
        let mut event = if meaning.documented {
            element.documented_event(&name, meaning.kind, first)
        } else {
            element.event(&name, meaning.kind, first, &fields)
        };

        let mut click = data.object("click");
        let clicked_at = click.as_mut().and_then(|click| click_time(element, click));
        let read = match clicked_at {
            Some(read) => {
                // Read, so that it does not land in metadata: `raw` keeps it.
                fields.raw("created_at");
                Some(read)
            }
            None => element.time(&mut fields, "created_at", true),
        };
        set_time(&mut event, read);
        event.bounce_class = meaning.class;
        event.reason = meaning.reason;

        event.message_id = match family {
            Family::Suppression => data.text("source_id"),
            _ => data.text("email_id"),
        };
        event.subject = data
            .text("subject")
            .map(|subject| clip(&subject, MAX_FIELD_CHARS).to_owned());
        event.sender = data
            .text("from")
            .map(|from| match EmailAddress::parse(&from) {
                Ok(address) => address.as_str().to_owned(),
                Err(_) => clip(&from, 320).to_owned(),
            });
        event.campaign = data.text("broadcast_id");
        event.tags = tags(&mut data);
        if let Some(click) = click.as_mut() {
            event.ip = click
                .text("ipAddress")
                .map(|ip| clip(&ip, MAX_IP_CHARS).to_owned());
            event.user_agent = click
                .text("userAgent")
                .map(|agent| clip(&agent, MAX_FIELD_CHARS).to_owned());
            event.click_url = click
                .text("link")
                .map(|url| clip(&url, MAX_FIELD_CHARS).to_owned());
            nest("click", click, &mut event.metadata);
        }

        let replies = match bounce.as_mut() {
            Some(bounce) => {
                let (replies, keep_codes) = if event.kind == EventKind::Bounce {
                    replies(bounce, recipients.len(), listed)
                } else {
                    (Vec::new(), false)
                };
                let mut rest = Map::new();
                for key in ["type", "subType"] {
                    bounce.copy_into(key, key, &mut rest);
                }
                if keep_codes {
                    bounce.copy_into("diagnosticCode", "diagnosticCode", &mut rest);
                }
                bounce.rest_into(&mut rest);
                if !rest.is_empty() {
                    event
                        .metadata
                        .insert("bounce".to_owned(), Value::Object(rest));
                }
                replies
            }
            None => Vec::new(),
        };
        if let Some(suppressed) = suppressed.as_mut() {
            let mut rest = Map::new();
            for key in ["type", "reason"] {
                suppressed.copy_into(key, key, &mut rest);
            }
            suppressed.rest_into(&mut rest);
            if !rest.is_empty() {
                event
                    .metadata
                    .insert("suppressed".to_owned(), Value::Object(rest));
            }
        }
        data.rest_into(&mut event.metadata);
        fields.rest_into(&mut event.metadata);

        let mut events = Vec::with_capacity(recipients.len());
        for (index, recipient) in recipients.into_iter().enumerate() {
            let mut copy = event.clone();
            copy.recipient = recipient;
            // One reply for everyone, or one each (`replies` then has one per recipient).
            if let Some(reply) = replies.get(index).or_else(|| replies.first()) {
                reply.apply(&mut copy, &meaning);
            }
            if copy.kind == EventKind::Bounce && copy.bounce_class.is_none() {
                copy.bounce_class = Some(BounceClass::Undetermined);
            }
            events.push(copy);
        }
        emit_each(events, fields.warnings(), out);
        Ok(())
    }
}

/// The groups of Resend event types, by the prefix of their name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    /// `email.*`: about one e-mail, for the addresses in `data.to`.
    Email,
    /// `contact.*`: about an audience contact, `data.email`.
    Contact,
    /// `suppression.*`: an address added to or removed from the suppression list.
    Suppression,
    /// `domain.*`: a sending domain.
    Domain,
    /// `topic.*`: a subscription topic.
    Topic,
    /// Anything else.
    Unknown,
}

impl Family {
    fn of(lower: &str) -> Family {
        match lower.split_once('.').map_or(lower, |(prefix, _)| prefix) {
            "email" => Family::Email,
            "contact" => Family::Contact,
            "suppression" => Family::Suppression,
            "domain" => Family::Domain,
            "topic" => Family::Topic,
            _ => Family::Unknown,
        }
    }

    /// What the events of this family are about, when that is no e-mail recipient.
    fn without_recipient(self) -> Option<&'static str> {
        match self {
            Family::Domain => Some("a sending domain"),
            Family::Topic => Some("a subscription topic"),
            _ => None,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Family::Email => "email",
            Family::Contact => "contact",
            Family::Suppression => "suppression",
            Family::Domain => "domain",
            Family::Topic => "topic",
            Family::Unknown => "unknown",
        }
    }

    /// Where the recipient is: the e-mail's `to`, the contact's or suppression's `email`.
    fn recipient_keys(self) -> &'static [&'static str] {
        match self {
            Family::Email => &["to"],
            Family::Contact | Family::Suppression => &["email"],
            _ => &["to", "email"],
        }
    }
}

/// What a Resend event type means.
#[derive(Debug, PartialEq, Eq)]
struct Meaning {
    kind: EventKind,
    /// `None` on a bounce: the class the reply implies.
    class: Option<BounceClass>,
    reason: Option<Reason>,
    /// Whether the reply decides the reason when the type does not.
    reason_from_reply: bool,
    /// A documented event deliberately stored as `other`.
    documented: bool,
}

impl Meaning {
    fn plain(kind: EventKind, reason: Option<Reason>) -> Meaning {
        Meaning {
            kind,
            class: None,
            reason,
            reason_from_reply: false,
            documented: false,
        }
    }

    fn documented_other() -> Meaning {
        Meaning {
            documented: true,
            ..Meaning::plain(EventKind::Other, None)
        }
    }
}

fn meaning(
    name: &str,
    data: &Fields<'_>,
    bounce: Option<&mut Fields<'_>>,
    suppressed: Option<&mut Fields<'_>>,
) -> Meaning {
    match name {
        "email.scheduled" | "email.sent" => Meaning::plain(EventKind::Queued, None),
        "email.delivered" => Meaning::plain(EventKind::Delivered, None),
        "email.delivery_delayed" => Meaning::plain(EventKind::Deferred, None),
        "email.complained" => Meaning::plain(EventKind::Complaint, Some(Reason::Spam)),
        "email.opened" => Meaning::plain(EventKind::Open, None),
        "email.clicked" => Meaning::plain(EventKind::Click, None),
        "email.failed" => Meaning::plain(EventKind::Failed, Some(Reason::Other)),
        "email.suppressed" => {
            let reason = suppressed.and_then(|suppressed| {
                let reason = suppressed.text("reason")?;
                match reason.trim().to_ascii_lowercase().as_str() {
                    "previous_bounce" => Some(Reason::Bounced),
                    "previous_complaint" => Some(Reason::Spam),
                    _ => {
                        suppressed.warn(
                            "reason",
                            format_args!(
                                "`{}` not recognised; reason left empty",
                                clip(&reason, 40)
                            ),
                        );
                        None
                    }
                }
            });
            Meaning::plain(EventKind::Dropped, reason)
        }
        "email.bounced" => match bounce {
            Some(bounce) => {
                let bounce_type = bounce.text("type");
                let subtype = bounce.text("subType");
                bounce_meaning(bounce, bounce_type.as_deref(), subtype.as_deref())
            }
            None => {
                if !data.has("bounce") {
                    data.warn("bounce", "missing; bounce class undetermined");
                }
                Meaning {
                    class: Some(BounceClass::Undetermined),
                    ..Meaning::plain(EventKind::Bounce, None)
                }
            }
        },
        "email.received"
        | "contact.created"
        | "contact.updated"
        | "contact.deleted"
        | "contact.topics.updated"
        | "suppression.added"
        | "suppression.removed" => Meaning::documented_other(),
        _ => Meaning::plain(EventKind::Other, None),
    }
}

/// What a bounce is, in SES's words (Resend sends through SES): see
/// `amazon_ses::classify_bounce`.
fn bounce_meaning(
    bounce: &Fields<'_>,
    bounce_type: Option<&str>,
    subtype: Option<&str>,
) -> Meaning {
    let (ses, problems) = classify_bounce(bounce_type, subtype);
    for problem in problems {
        problem.warn(bounce, "type", "subType");
    }
    Meaning {
        kind: ses.kind,
        class: ses.class,
        reason: ses.reason,
        reason_from_reply: ses.kind == EventKind::Bounce,
        documented: false,
    }
}

/// One SMTP reply of a bounce.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BounceReply {
    reply: Reply,
    text: String,
}

impl BounceReply {
    fn new(text: &str) -> BounceReply {
        let text = smtp::strip_diagnostic_type(text);
        let mut reply = Reply::default();
        reply.complete_from_text(text);
        BounceReply {
            reply,
            text: clip(text, MAX_FIELD_CHARS).to_owned(),
        }
    }

    /// Sets the SMTP fields of a bounce, and the reason and class where the type left
    /// them to the reply.
    fn apply(&self, event: &mut Event, meaning: &Meaning) {
        event.smtp_code = self.reply.code;
        event.smtp_enhanced = self.reply.enhanced.clone();
        event.smtp_response = Some(self.text.clone());
        if meaning.reason.is_none() && meaning.reason_from_reply {
            event.reason = smtp::classify(&self.reply, Some(&self.text));
        }
        if event.kind == EventKind::Bounce && meaning.class.is_none() {
            event.bounce_class = Some(smtp::class_from_reply(&self.reply, event.reason));
        }
    }
}

/// Reads a bounce's replies: one per recipient when `diagnosticCode` has one per listed
/// address, else one for everybody (`diagnosticCode`'s first, or `message`), or none.
/// The flag says whether the list has to stay in metadata (it did not pair up).
fn replies(bounce: &mut Fields<'_>, recipients: usize, listed: usize) -> (Vec<BounceReply>, bool) {
    let codes = bounce.texts("diagnosticCode");
    if codes.is_empty() {
        let message = bounce
            .text("message")
            .map(|message| BounceReply::new(&message));
        return (message.into_iter().collect(), false);
    }
    if codes.len() > 1 && (codes.len() != recipients || codes.len() != listed) {
        bounce.warn(
            "diagnosticCode",
            format_args!(
                "{} entries for {listed} listed recipients; the first is used for each",
                codes.len()
            ),
        );
        return (vec![BounceReply::new(&codes[0])], true);
    }
    (
        codes.iter().map(|code| BounceReply::new(code)).collect(),
        false,
    )
}

/// Reads `click.timestamp`, when the click happened; `None` (with a warning if it was
/// there but unreadable) lets the caller use the event's `created_at`.
fn click_time(element: &Element<'_>, click: &mut Fields<'_>) -> Option<ReadTime> {
    let raw = click.raw("timestamp")?;
    match time::read_time(raw, &element.source.zone) {
        Ok(read) => {
            if let Some(warning) = time::future_warning(read.at, element.received_at) {
                click.warn("timestamp", warning);
            }
            Some(read)
        }
        Err(problem) => {
            click.warn(
                "timestamp",
                format_args!("{problem}; the event's `created_at` used instead"),
            );
            None
        }
    }
}

/// Number of entries of a JSON array (1 for anything else).
fn count_items(raw: &RawValue) -> usize {
    match JsonType::of(raw) {
        JsonType::Array => {
            serde_json::from_str::<Vec<&RawValue>>(raw.get()).map_or(0, |items| items.len())
        }
        _ => 1,
    }
}

/// Puts the fields of `object` nobody read into `metadata[name]`, if there are any.
fn nest(name: &str, object: &Fields<'_>, metadata: &mut Map<String, Value>) {
    let mut rest = Map::new();
    object.rest_into(&mut rest);
    if !rest.is_empty() {
        metadata.insert(name.to_owned(), Value::Object(rest));
    }
}

/// Longest reader IP kept (an IPv6 address with a zone fits).
const MAX_IP_CHARS: usize = 64;

/// Longest tag kept (`key=value`).
const MAX_TAG_CHARS: usize = 200;

/// Reads `data.tags`: an object of `key: value` → `key=value` (a null value → `key`), or
/// an array of `{name, value}` objects or of strings. Anything else is warned about.
fn tags(data: &mut Fields<'_>) -> Vec<String> {
    let Some(raw) = data.raw("tags") else {
        return Vec::new();
    };
    let mut tags = Vec::new();
    let mut push = |tag: String| tags.push(clip(&tag, MAX_TAG_CHARS).to_owned());
    match JsonType::of(raw) {
        JsonType::Object => {
            let entries: BTreeMap<String, &RawValue> =
                serde_json::from_str(raw.get()).unwrap_or_default();
            for (key, value) in entries {
                match scalar_text(value) {
                    Ok(Some(value)) => push(format!("{key}={value}")),
                    Ok(None) => push(key),
                    Err(found) => data.warn(
                        "tags",
                        format_args!("`{}` is {found}, not text; ignored", clip(&key, 40)),
                    ),
                }
            }
        }
        JsonType::Array => {
            let items: Vec<&RawValue> = serde_json::from_str(raw.get()).unwrap_or_default();
            for item in items {
                let tag = match JsonType::of(item) {
                    JsonType::Object => {
                        Fields::parse(item, Default::default()).and_then(|mut tag| {
                            let name = tag.text("name")?;
                            Some(match tag.text("value") {
                                Some(value) => format!("{name}={value}"),
                                None => name,
                            })
                        })
                    }
                    _ => scalar_text(item)
                        .ok()
                        .flatten()
                        .map(|text| text.into_owned()),
                };
                match tag {
                    Some(tag) if !tag.trim().is_empty() => push(tag),
                    _ => data.warn(
                        "tags",
                        format_args!("item is {}, not a tag; ignored", JsonType::of(item)),
                    ),
                }
            }
        }
        found => data.warn(
            "tags",
            format_args!("expected an object, found {found}; ignored"),
        ),
    }
    tags
}

/// Svix's signature over id, timestamp and body.
struct SvixSignature {
    key: MacKey,
    max_age_secs: u64,
}

impl SvixSignature {
    fn new(secret: &str, max_age_secs: u64) -> Result<SvixSignature, String> {
        let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
        let key = base64_decode(encoded)
            .filter(|key| !key.is_empty())
            .ok_or("`signing_secret` is not a Svix secret (whsec_<base64>)")?;
        Ok(SvixSignature {
            key: MacKey::new(Mac::Sha256, &key),
            max_age_secs,
        })
    }
}

/// Returns the first of the Svix-branded or unbranded header `name`.
fn svix_header<'a>(request: &'a Request<'_>, name: &str) -> Option<&'a str> {
    request
        .header(&format!("svix-{name}"))
        .or_else(|| request.header(&format!("webhook-{name}")))
}

impl Verify for SvixSignature {
    fn method(&self) -> &'static str {
        "svix"
    }

    fn verify(&self, request: &Request<'_>) -> Result<Verified, AuthError> {
        let missing = |name: &str| AuthError::MissingSignature(format!("no `svix-{name}` header"));
        let id = svix_header(request, "id").ok_or_else(|| missing("id"))?;
        let timestamp = svix_header(request, "timestamp").ok_or_else(|| missing("timestamp"))?;
        let signatures = svix_header(request, "signature").ok_or_else(|| missing("signature"))?;
        let mut matched = false;
        for entry in signatures.split(' ') {
            let Some(("v1", encoded)) = entry.split_once(',') else {
                continue;
            };
            if let Some(tag) = base64_decode(encoded) {
                // Every entry is checked: timing does not tell which one matched.
                matched |= self.key.verify(
                    &[
                        id.as_bytes(),
                        b".",
                        timestamp.as_bytes(),
                        b".",
                        request.body,
                    ],
                    &tag,
                );
            }
        }
        if !matched {
            return Err(AuthError::BadSignature(
                "no `v1` signature matches the body and the signing secret".to_owned(),
            ));
        }
        let signed_at: i64 = timestamp.parse().map_err(|_| {
            AuthError::BadSignature("`svix-timestamp` is not Unix seconds".to_owned())
        })?;
        verify::check_age(signed_at, request.now, self.max_age_secs)?;
        Ok(Verified::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderValue};

    fn check(secret: &str, signature: &str, body: &[u8], now: i64) -> Result<(), AuthError> {
        let check = SvixSignature::new(secret, 300).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            "svix-id",
            HeaderValue::from_static("msg_p5jXN8AQM9LWM0D4loKWxJek"),
        );
        headers.insert("svix-timestamp", HeaderValue::from_static("1614265330"));
        headers.insert("svix-signature", HeaderValue::from_str(signature).unwrap());
        check
            .verify(&Request {
                headers: &headers,
                query: None,
                body,
                now: jiff::Timestamp::from_second(now).unwrap(),
            })
            .map(Verified::keep)
    }

    /// Svix's published vector (its JavaScript, Go and Java tests; Resend's docs use it).
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const GOOD: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    const AT: i64 = 1_614_265_330;

    #[test]
    fn svixs_published_vector_verifies() {
        assert_eq!(check(SECRET, GOOD, BODY, AT), Ok(()));
        // Several entries, other versions among them: any v1 match passes.
        let multi = format!("v2,abc v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= {GOOD}");
        assert_eq!(check(SECRET, &multi, BODY, AT), Ok(()));
        let bad = |result| matches!(result, Err(AuthError::BadSignature(_)));
        assert!(bad(check(
            SECRET,
            "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
            BODY,
            AT
        )));
        assert!(bad(check(SECRET, GOOD, br#"{"test": 2432232315}"#, AT)));
        assert!(bad(check(
            "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
            GOOD,
            BODY,
            AT
        )));
        assert!(bad(check(SECRET, &GOOD.replace("v1,", "v2,"), BODY, AT)));
        // A byte-order mark is part of what was signed: it is not stripped first.
        let mut with_bom = b"\xEF\xBB\xBF".to_vec();
        with_bom.extend_from_slice(BODY);
        assert!(bad(check(SECRET, GOOD, &with_bom, AT)));
        assert!(matches!(
            check(SECRET, GOOD, BODY, AT + 301),
            Err(AuthError::StaleTimestamp { .. })
        ));
        assert!(matches!(
            check(SECRET, GOOD, BODY, AT - 301),
            Err(AuthError::StaleTimestamp { .. })
        ));
    }

    #[test]
    fn secrets_must_be_svix_secrets() {
        assert!(SvixSignature::new("whsec_", 300).is_err());
        assert!(SvixSignature::new("whsec_!!!", 300).is_err());
        assert!(SvixSignature::new("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", 300).is_ok());
    }
    fn fields(text: &str) -> (Box<RawValue>, crate::ingest::fields::Warnings) {
        (
            RawValue::from_string(text.to_owned()).unwrap(),
            crate::ingest::fields::Warnings::default(),
        )
    }

    #[test]
    fn bounce_types_and_subtypes_follow_resends_table() {
        let (raw, warnings) = fields("{}");
        let bounce = Fields::parse(&raw, warnings.clone()).unwrap();
        let map = |t: &str, s: &str| {
            let m = bounce_meaning(&bounce, Some(t), Some(s));
            (m.kind, m.class, m.reason)
        };
        use BounceClass::*;
        use EventKind::{Bounce, Dropped};
        let hard = Some(Hard);
        let soft = Some(Soft);
        assert_eq!(map("Permanent", "General"), (Bounce, hard, None));
        assert_eq!(
            map("Permanent", "NoEmail"),
            (Bounce, hard, Some(Reason::Invalid))
        );
        assert_eq!(map("Transient", "General"), (Bounce, soft, None));
        assert_eq!(
            map("Transient", "MailboxFull"),
            (Bounce, soft, Some(Reason::Bounced))
        );
        assert_eq!(
            map("Transient", "MessageTooLarge"),
            (Bounce, soft, Some(Reason::Other))
        );
        assert_eq!(
            map("Transient", "ContentRejected"),
            (Bounce, soft, Some(Reason::Blocked))
        );
        assert_eq!(
            map("Transient", "AttachmentRejected"),
            (Bounce, soft, Some(Reason::Blocked))
        );
        assert_eq!(map("Temporary", "General"), (Bounce, soft, None));
        assert_eq!(
            map("Undetermined", "Undetermined"),
            (Bounce, Some(Undetermined), None)
        );
        assert_eq!(map("Permanent", "MessageRejected"), (Bounce, hard, None));
        assert_eq!(
            map("permanent", "noemail"),
            (Bounce, hard, Some(Reason::Invalid))
        );
        assert_eq!(
            map("Permanent", "Suppressed"),
            (Dropped, None, Some(Reason::Bounced))
        );
        assert_eq!(
            map("Permanent", "OnAccountSuppressionList"),
            (Dropped, None, None)
        );
        assert!(warnings.take().is_empty());
        assert_eq!(map("Quantum", "Fizz"), (Bounce, None, None));
        assert_eq!(
            warnings.take(),
            vec![
                "field `type`: `Quantum` is not a documented type; class read from the reply",
                "field `subType`: `Fizz` is not a documented subtype; reason read from the reply",
            ]
        );
    }

    #[test]
    fn event_families_come_from_the_name_prefix() {
        assert_eq!(Family::of("email.bounced"), Family::Email);
        assert_eq!(Family::of("contact.topics.updated"), Family::Contact);
        assert_eq!(Family::of("suppression.added"), Family::Suppression);
        assert_eq!(Family::of("domain.created"), Family::Domain);
        assert_eq!(Family::of("topic.deleted"), Family::Topic);
        assert_eq!(Family::of("inbox.thread.created"), Family::Unknown);
        assert_eq!(Family::of("email"), Family::Email);
        assert!(Family::Domain.without_recipient().is_some());
        assert!(Family::Email.without_recipient().is_none());
    }

    #[test]
    fn tags_are_key_value_pairs_in_key_order() {
        let read = |text: &str| {
            let (raw, warnings) = fields(text);
            let mut data = Fields::parse(&raw, warnings.clone()).unwrap();
            (tags(&mut data), warnings.take())
        };
        assert_eq!(
            read(r#"{"tags": {"user_id": "1234567890", "category": "welcome"}}"#),
            (
                vec![
                    "category=welcome".to_owned(),
                    "user_id=1234567890".to_owned()
                ],
                vec![]
            )
        );
        assert_eq!(
            read(r#"{"tags": {"n": 12345678901234567890123, "flag": null, "o": {}}}"#),
            (
                vec!["flag".to_owned(), "n=12345678901234567890123".to_owned()],
                vec!["field `tags`: `o` is an object, not text; ignored".to_owned()]
            )
        );
        assert_eq!(
            read(r#"{"tags": [{"name": "category", "value": "welcome"}, "vip", 7, []]}"#),
            (
                vec![
                    "category=welcome".to_owned(),
                    "vip".to_owned(),
                    "7".to_owned()
                ],
                vec!["field `tags`: item is an array, not a tag; ignored".to_owned()]
            )
        );
        assert_eq!(
            read(r#"{"tags": "category=welcome"}"#),
            (
                vec![],
                vec!["field `tags`: expected an object, found a string; ignored".to_owned()]
            )
        );
    }
}
