//! Postmark: one JSON object per POST, one event each, told apart by the string
//! `RecordType` (<https://postmarkapp.com/developer/webhooks/webhooks-overview>).
//!
//! | `RecordType` | recipient | time | kind |
//! |---|---|---|---|
//! | `Delivery` | `Recipient` | `DeliveredAt` | `delivered`; `Details` is the receiving server's reply (`smtp;250 2.0.0 OK …`) |
//! | `Bounce` | `Email` | `BouncedAt` | from `Type`, table below; `Details` is the reply text |
//! | `SpamComplaint` | `Email` | `BouncedAt` | `complaint`, reason `spam` |
//! | `Open` | `Recipient` | `ReceivedAt` | `open`; reader's IP in `Geo.IP`, `UserAgent` |
//! | `Click` | `Recipient` | `ReceivedAt` | `click`; link in `OriginalLink` |
//! | `SubscriptionChange` | `Recipient` | `ChangedAt` | from `SuppressSending`, `SuppressionReason`, `Origin` (below) |
//! | anything else | `Recipient` or `Email` | the first of the above present | `other`, warned and counted |
//!
//! Pages: <https://postmarkapp.com/developer/webhooks/delivery-webhook>, `bounce-webhook`,
//! `spam-complaint-webhook`, `open-tracking-webhook`, `click-webhook`,
//! `subscription-change-webhook` (same directory); bounce types:
//! <https://postmarkapp.com/developer/api/bounce-api#bounce-types>.
//!
//! **Routing is on `RecordType` and the `Type` string, never on `TypeCode`**: every
//! documented SpamComplaint sample has `TypeCode: 512`, which is the code of
//! `SpamNotification` (the type table gives `SpamComplaint` = 100001). `TypeCode` is kept in
//! `metadata` as sent. Names are compared without regard to ASCII case.
//!
//! Bounce `Type` (code) → kind / bounce_class / reason. A reply in `Details` that names a
//! specific cause (policy block, unknown user, spam, time-out) replaces the type's reason
//! on `bounce` and `deferred`; the class is always Postmark's, except for `Unknown` and
//! unlisted types, whose class is read from the reply (`undetermined` when it tells
//! nothing).
//!
//! | Type (code) | kind | class | reason | why |
//! |---|---|---|---|---|
//! | HardBounce (1) | bounce | hard | invalid | "unknown user, mailbox not found"; Postmark deactivates the address |
//! | Transient (2) | deferred | | | "Message delayed": a delay, not a final refusal |
//! | Unsubscribe (16) | unsubscribe | | unsubscribed | a reply asking to be removed |
//! | Subscribe (32) | subscribe | | | a reply asking to be added |
//! | AutoResponder (64) | autoreply | | | "Out of Office", "On Vacation" |
//! | AddressChange (128) | autoreply | | | an automatic "I have moved" reply; the address may still work |
//! | DnsError (256) | bounce | soft | other | "A temporary DNS error": nothing final about the address |
//! | SpamNotification (512) | complaint | | spam | "delivered, but either blocked by the user, or classified as spam" |
//! | OpenRelayTest (1024) | other | | | a relay probe, not about the message (no unknown-event warning) |
//! | Unknown (2048) | bounce | from the reply | bounced | "Unable to classify the NDR" |
//! | SoftBounce (4096) | bounce | soft | bounced | "mailbox full, account disabled, exceeds quota" |
//! | VirusNotification (8192) | bounce | soft | blocked | refused for content; the address is fine |
//! | ChallengeVerification (16384) | autoreply | | | a challenge-response robot's reply |
//! | BadEmailAddress (100000) | dropped | | invalid | not a valid address: never handed to a receiving server |
//! | SpamComplaint (100001) | complaint | | spam | normally its own `RecordType`; the same if inside a Bounce |
//! | ManuallyDeactivated (100002) | dropped | | other | the customer deactivated the address; Postmark will not send |
//! | Unconfirmed (100003) | dropped | | other | "has not clicked on the confirmation link" |
//! | Blocked (100006) | bounce | soft | blocked | "Blocked from this ISP due to content or blacklisting": says nothing about the address |
//! | SMTPApiError (100007) | failed | | other | refused by Postmark's SMTP API (documented as not webhooked; mapped anyway) |
//! | InboundError (100008) | other | | | inbound processing, not an outbound delivery (no unknown-event warning) |
//! | DMARCPolicy (100009) | bounce | soft | blocked | the sender domain's DMARC policy, not the recipient |
//! | TemplateRenderingFailed (100010) | failed | | other | never sent: the template did not render |
//! | missing or unlisted | bounce | from the reply | from the reply | forward compatibility, with a warning |
//!
//! The codes of 100000 and up are Postmark's own verdicts, made before or instead of a
//! delivery attempt, hence `dropped`/`failed` rather than `bounce`. `Inactive` is not used
//! to derive a class: it reports Postmark's action, and stays in `metadata`.
//!
//! SubscriptionChange (an address added to or removed from a stream's suppression list):
//!
//! | SuppressSending | SuppressionReason | Origin | kind / reason |
//! |---|---|---|---|
//! | false | (null) | any | subscribe: reactivated, Postmark sends to it again |
//! | true | ManualSuppression | Recipient | unsubscribe / unsubscribed ("If a recipient unsubscribes, they will be suppressed with the SuppressionReason of ManualSuppression") |
//! | true | ManualSuppression | Customer, Admin, other | dropped / other: the sender or Postmark suppressed it, the recipient did not act |
//! | true | HardBounce | any | dropped / invalid |
//! | true | SpamComplaint | any | dropped / spam |
//! | true | missing or unlisted | any | dropped, with a warning |
//! | missing | | | other, with a warning |
//!
//! Suppressions after a hard bounce or a complaint are `dropped`, not `bounce`/`complaint`:
//! on transactional streams the same bounce or complaint also arrives as its own `Bounce` or
//! `SpamComplaint` record, and counting both would double bounce and complaint rates. The
//! cost: on Broadcast streams, where Postmark reports bounces and complaints only through
//! SubscriptionChange, rules must look at `dropped` with reason `invalid`/`spam` to see them.
//! A reactivation is `subscribe`; the shipped subscription rule only lifts suppressions it
//! made itself, so an address suppressed for a hard bounce stays suppressed.
//!
//! Fields:
//! - `message_id` = `MessageID` (a UUID). It is null on manual suppressions and
//!   reactivations, and the documented samples use the all-zero GUID for "none" (Bounce's
//!   "can be Empty"): null, blank and all-zero are left empty.
//! - `provider_event_id` = `ID` on Bounce and SpamComplaint only: it names one bounce
//!   record (usable with the Bounce API), so a retried POST repeats it. It can exceed 2^53
//!   (documented sample `4323372036854775807`) and is taken from the JSON text digit for
//!   digit, never through a float. Other records have no per-event id (the event's JSON is
//!   hashed instead).
//! - `tags` = [`Tag`] (one string, null on reactivations). The custom `Metadata` object is
//!   merged into `metadata` key by key (values as sent: one documented sample has an
//!   integer); a key that is also a Postmark field name keeps the Postmark field and is
//!   warned about.
//! - `sender` = `From` (bare address when it parses), `subject` = `Subject`.
//! - `smtp_response` = `Details` of Delivery and Bounce, without the DSN's `smtp;` type
//!   prefix; `smtp_code` and `smtp_enhanced` are read from it when present (the documented
//!   samples' "Test bounce details" has none). A SpamComplaint's `Details` describes the
//!   complaint, not an SMTP reply: it stays in `metadata`.
//! - `ip` = `Geo.IP` and `user_agent` = `UserAgent` on Open and Click; the rest of `Geo`
//!   stays in `metadata.Geo`. `click_url` = `OriginalLink`.
//! - `Content` (the full bounce or abuse-report dump, sent with `IncludeContent`) is large
//!   and full of personal data: kept in `raw` only. Everything else (`ServerID` or the
//!   older `ServerId`, `MessageStream`, `Type`, `TypeCode`, `Name`, `Description`,
//!   `DumpAvailable`, `Inactive`, `CanActivate`, `FirstOpen`, `ReadSeconds`, `Platform`,
//!   `Client`, `OS`, `ClickLocation`, `Origin`, `SuppressSending`, `SuppressionReason`) goes
//!   to `metadata` under its own name. Nothing maps to `campaign`: `MessageStream` is a
//!   stream, not a campaign.
//!
//! Times are ISO 8601 with `Z` or an offset and 0, 6 or 7 fractional digits (.NET ticks):
//! `exact`. A time without an offset would be read in the source's zone (UTC by default)
//! and marked `assumed_tz`; Postmark documents none.
//!
//! Older samples (support articles, the marketing page, the spam-complaint page's curl
//! example) have no `RecordType`. These are documented payloads of the same webhooks, so
//! the record is inferred from its fields, with a warning: `DeliveredAt` is a Delivery,
//! `BouncedAt` a SpamComplaint when `Type` says so and a Bounce otherwise, `ChangedAt` or
//! `SuppressSending` a SubscriptionChange, `ReceivedAt` a Click with `OriginalLink` and an
//! Open without. Postmark's Inbound webhook (a parsed incoming e-mail: `FromFull`,
//! `ToFull`, `MailboxHash`, `TextBody`…, no `RecordType`) is no delivery event: it is
//! quarantined with a message saying so. A body with neither is quarantined as missing
//! its `RecordType`.
//!
//! Postmark does not sign its requests: it offers basic auth written into the webhook URL
//! and custom headers, so the default checks (a token, or `username` + `password`) are the
//! right ones. A refused request answers 401, which Postmark retries; it stops retrying
//! for good on 403.

use serde_json::{Map, Value};

use super::{Element, ElementError, MAX_FIELD_CHARS, Provider, emit, recipients, set_time};
use crate::event::{BounceClass, EmailAddress, Event, EventKind, Reason};
use crate::ingest::fields::{Fields, clip};
use crate::ingest::smtp::{self, Reply};

/// The Postmark adapter.
pub struct Postmark;

/// Longest bounce `ID` taken as an event id: 40 digits is far beyond Postmark's 64-bit ids;
/// longer digit strings are not ids but noise.
const MAX_ID_DIGITS: usize = 40;

/// Longest reader IP kept (an IPv6 address with a zone is under 64).
const MAX_IP_CHARS: usize = 64;

/// Fields that only Postmark's Inbound webhook (a parsed incoming e-mail) carries.
const INBOUND_FIELDS: [&str; 6] = [
    "FromFull",
    "ToFull",
    "MailboxHash",
    "StrippedTextReply",
    "TextBody",
    "HtmlBody",
];

/// The six documented webhook records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Record {
    Delivery,
    Bounce,
    SpamComplaint,
    Open,
    Click,
    SubscriptionChange,
}

impl Record {
    /// The `RecordType` value Postmark sends for this record.
    fn name(self) -> &'static str {
        match self {
            Record::Delivery => "Delivery",
            Record::Bounce => "Bounce",
            Record::SpamComplaint => "SpamComplaint",
            Record::Open => "Open",
            Record::Click => "Click",
            Record::SubscriptionChange => "SubscriptionChange",
        }
    }

    /// Reads a `RecordType` value; `None` for a record this adapter does not know.
    fn parse(name: &str) -> Option<Record> {
        match name.trim().to_ascii_lowercase().as_str() {
            "delivery" => Some(Record::Delivery),
            "bounce" => Some(Record::Bounce),
            "spamcomplaint" => Some(Record::SpamComplaint),
            "open" => Some(Record::Open),
            "click" => Some(Record::Click),
            "subscriptionchange" => Some(Record::SubscriptionChange),
            _ => None,
        }
    }

    /// The field holding the event's time.
    fn time_key(self) -> &'static str {
        match self {
            Record::Delivery => "DeliveredAt",
            Record::Bounce | Record::SpamComplaint => "BouncedAt",
            Record::Open | Record::Click => "ReceivedAt",
            Record::SubscriptionChange => "ChangedAt",
        }
    }

    /// The field holding the recipient: Bounce and SpamComplaint call it `Email`.
    fn recipient_key(self) -> &'static str {
        match self {
            Record::Bounce | Record::SpamComplaint => "Email",
            _ => "Recipient",
        }
    }
}

/// What one record means in the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Mapping {
    kind: EventKind,
    class: Option<BounceClass>,
    reason: Option<Reason>,
}

const fn mapping(kind: EventKind, class: Option<BounceClass>, reason: Option<Reason>) -> Mapping {
    Mapping {
        kind,
        class,
        reason,
    }
}

impl Provider for Postmark {
    fn name(&self) -> &'static str {
        "postmark"
    }

    fn normalize(&self, element: &Element<'_>, out: &mut Vec<Event>) -> Result<(), ElementError> {
        let mut fields = element.fields()?;
        let (name, record) = match fields.text("RecordType") {
            Some(name) => {
                let record = Record::parse(&name);
                (name, record)
            }
            None => {
                let record = infer_record(&mut fields)?;
                fields.warn(
                    "RecordType",
                    format_args!(
                        "missing; read as `{}` from the fields present (older webhook format)",
                        record.name()
                    ),
                );
                (record.name().to_owned(), Some(record))
            }
        };
        let recipient_keys: &[&str] = match record {
            Some(record) => &[record.recipient_key()],
            None => &["Recipient", "Email"],
        };
        let recipients = read_recipients(&mut fields, recipient_keys)?;

        // What the record means; `from_reply` when the class is to be read from the reply.
        let mut from_reply = false;
        let mapping = match record {
            Some(Record::Delivery) => mapping(EventKind::Delivered, None, None),
            Some(Record::Open) => mapping(EventKind::Open, None, None),
            Some(Record::Click) => mapping(EventKind::Click, None, None),
            Some(Record::SpamComplaint) => mapping(EventKind::Complaint, None, Some(Reason::Spam)),
            Some(Record::Bounce) => {
                let type_name = fields.text("Type");
                match type_name.as_deref().and_then(bounce_type) {
                    Some(found) => {
                        from_reply = found.kind == EventKind::Bounce
                            && found.class == Some(BounceClass::Undetermined);
                        found
                    }
                    None => {
                        let message = match &type_name {
                            Some(text) => format!(
                                "bounce type `{}` not recognised; class read from the reply",
                                clip(text, 64)
                            ),
                            None => "missing; bounce class read from the reply".to_owned(),
                        };
                        fields.warn("Type", message);
                        from_reply = true;
                        mapping(EventKind::Bounce, Some(BounceClass::Undetermined), None)
                    }
                }
            }
            Some(Record::SubscriptionChange) => subscription_mapping(&mut fields),
            None => mapping(EventKind::Other, None, None),
        };

        let first = recipients[0].clone();
        let mut event = if record.is_some() && mapping.kind == EventKind::Other {
            // A documented record deliberately stored as `other` (a relay probe, an
            // inbound error) is not an unknown event: no warning, not counted as one.
            element.documented_event(&name, EventKind::Other, first)
        } else {
            element.event(&name, mapping.kind, first, &fields)
        };
        let read = match record {
            Some(record) => element.time(&mut fields, record.time_key(), true),
            None => {
                let key = ["ReceivedAt", "BouncedAt", "DeliveredAt", "ChangedAt"]
                    .into_iter()
                    .find(|key| fields.has(key));
                key.and_then(|key| element.time(&mut fields, key, false))
            }
        };
        set_time(&mut event, read);

        event.message_id = fields
            .text("MessageID")
            .filter(|id| !is_empty_guid(id))
            .map(|id| clip(id.trim(), MAX_FIELD_CHARS).to_owned());
        if matches!(record, Some(Record::Bounce | Record::SpamComplaint)) {
            event.provider_event_id = bounce_id(&mut fields, &mut event.metadata);
        }
        event.sender = fields
            .text("From")
            .map(|from| match EmailAddress::parse(&from) {
                Ok(address) => address.as_str().to_owned(),
                Err(_) => clip(from.trim(), 320).to_owned(),
            });
        event.subject = fields
            .text("Subject")
            .map(|subject| clip(&subject, MAX_FIELD_CHARS).to_owned());
        event.tags = fields
            .texts("Tag")
            .iter()
            .map(|tag| clip(tag.trim(), MAX_FIELD_CHARS).to_owned())
            .filter(|tag| !tag.is_empty())
            .collect();
        event.click_url = fields
            .text("OriginalLink")
            .map(|url| clip(url.trim(), MAX_FIELD_CHARS).to_owned());
        let engagement = matches!(record, Some(Record::Open | Record::Click));
        if engagement {
            event.user_agent = fields
                .text("UserAgent")
                .map(|agent| clip(agent.trim(), MAX_FIELD_CHARS).to_owned());
        }
        if let Some(mut geo) = fields.object("Geo") {
            // Only an open's or click's `Geo.IP` is the reader's address; elsewhere it
            // stays with the rest of `Geo`.
            if engagement {
                event.ip = geo
                    .text("IP")
                    .map(|ip| clip(ip.trim(), MAX_IP_CHARS).to_owned());
            }
            let mut rest = Map::new();
            geo.rest_into(&mut rest);
            if !rest.is_empty() {
                event.metadata.insert("Geo".to_owned(), Value::Object(rest));
            }
        }

        // `Details` is the receiving side's reply on deliveries and bounces only.
        let mut reply = Reply::default();
        let mut reply_text = None;
        if matches!(record, Some(Record::Delivery | Record::Bounce)) {
            if let Some(details) = fields.text("Details") {
                let text = strip_diagnostic_type(&details);
                reply.complete_from_text(text);
                reply_text = Some(clip(text, MAX_FIELD_CHARS).to_owned());
            }
        }
        event.smtp_code = reply.code;
        event.smtp_enhanced = reply.enhanced.clone();
        event.reason = mapping.reason;
        if matches!(mapping.kind, EventKind::Bounce | EventKind::Deferred) {
            // A reply naming a specific cause says more than the type's general reason
            // (a "HardBounce" that is really a policy block must not look invalid). A
            // bounce whose type says nothing takes whatever the reply says.
            let from_text = smtp::classify(&reply, reply_text.as_deref());
            match from_text {
                Some(Reason::Bounced) | None => {
                    if mapping.kind == EventKind::Bounce && event.reason.is_none() {
                        event.reason = from_text;
                    }
                }
                Some(specific) => event.reason = Some(specific),
            }
        }
        if mapping.kind == EventKind::Bounce {
            event.bounce_class = if from_reply {
                Some(smtp::class_from_reply(&reply, event.reason))
            } else {
                mapping.class
            };
        }
        event.smtp_response = reply_text;

        // The dump is in `raw`; in `metadata` it would be large personal data, and warned
        // about as too large on every bounce that carries it.
        let _ = fields.raw("Content");
        merge_custom_metadata(&mut fields, &mut event.metadata);
        // Read above to route; kept as sent.
        for key in ["Type", "SuppressSending", "SuppressionReason", "Origin"] {
            fields.copy_into(key, key, &mut event.metadata);
        }
        fields.rest_into(&mut event.metadata);
        emit(event, recipients, fields.warnings(), out);
        Ok(())
    }
}

/// Infers the record of a body without `RecordType` (older samples) from its fields.
fn infer_record(fields: &mut Fields<'_>) -> Result<Record, ElementError> {
    if fields.has("DeliveredAt") {
        return Ok(Record::Delivery);
    }
    if fields.has("BouncedAt") {
        let complaint = fields
            .text("Type")
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("SpamComplaint"));
        return Ok(if complaint {
            Record::SpamComplaint
        } else {
            Record::Bounce
        });
    }
    if fields.has("ChangedAt") || fields.has("SuppressSending") {
        return Ok(Record::SubscriptionChange);
    }
    if fields.has("ReceivedAt") {
        return Ok(if fields.has("OriginalLink") {
            Record::Click
        } else {
            Record::Open
        });
    }
    if INBOUND_FIELDS.iter().any(|key| fields.has(key)) {
        return Err(ElementError::Malformed(
            "an inbound e-mail (Postmark's Inbound webhook), not a delivery event; \
             point the inbound stream's webhook elsewhere"
                .to_owned(),
        ));
    }
    Err(ElementError::MissingEventName("RecordType"))
}

/// Reads the recipients from `keys`, saying so plainly when the field is there but holds
/// no address (an older bounce sample sends `"Email": ""`).
fn read_recipients(
    fields: &mut Fields<'_>,
    keys: &[&str],
) -> Result<Vec<EmailAddress>, ElementError> {
    let present: Vec<&str> = keys.iter().copied().filter(|k| fields.has(k)).collect();
    recipients(fields, keys).map_err(|error| match (&error, present.first()) {
        (ElementError::NoRecipient(message), Some(key)) if message.starts_with("none of") => {
            ElementError::NoRecipient(format!("`{key}` holds no address"))
        }
        _ => error,
    })
}

/// Maps a bounce `Type` to the model; `None` for a type Postmark does not document.
fn bounce_type(name: &str) -> Option<Mapping> {
    use BounceClass::{Hard, Soft, Undetermined};
    use EventKind as K;
    let found = match name.trim().to_ascii_lowercase().as_str() {
        "hardbounce" => mapping(K::Bounce, Some(Hard), Some(Reason::Invalid)),
        "transient" => mapping(K::Deferred, None, None),
        "unsubscribe" => mapping(K::Unsubscribe, None, Some(Reason::Unsubscribed)),
        "subscribe" => mapping(K::Subscribe, None, None),
        "autoresponder" | "addresschange" | "challengeverification" => {
            mapping(K::Autoreply, None, None)
        }
        "dnserror" => mapping(K::Bounce, Some(Soft), Some(Reason::Other)),
        "spamnotification" | "spamcomplaint" => mapping(K::Complaint, None, Some(Reason::Spam)),
        "openrelaytest" | "inbounderror" => mapping(K::Other, None, None),
        "unknown" => mapping(K::Bounce, Some(Undetermined), Some(Reason::Bounced)),
        "softbounce" => mapping(K::Bounce, Some(Soft), Some(Reason::Bounced)),
        "virusnotification" | "blocked" | "dmarcpolicy" => {
            mapping(K::Bounce, Some(Soft), Some(Reason::Blocked))
        }
        "bademailaddress" => mapping(K::Dropped, None, Some(Reason::Invalid)),
        "manuallydeactivated" | "unconfirmed" => mapping(K::Dropped, None, Some(Reason::Other)),
        "smtpapierror" | "templaterenderingfailed" => mapping(K::Failed, None, Some(Reason::Other)),
        _ => return None,
    };
    Some(found)
}

/// Reads a SubscriptionChange's fields (they are copied to metadata afterwards) and maps
/// them, warning about what it cannot read.
fn subscription_mapping(fields: &mut Fields<'_>) -> Mapping {
    let suppress = fields.boolean("SuppressSending");
    let reason = fields.text("SuppressionReason");
    let origin = fields.text("Origin");
    if suppress.is_none() {
        fields.warn(
            "SuppressSending",
            "missing or unreadable; stored as `other`",
        );
    }
    let found = subscription_change(suppress, reason.as_deref(), origin.as_deref());
    if suppress == Some(true) && found.reason.is_none() {
        let message = match &reason {
            Some(text) => format!("`{}` not recognised; reason left empty", clip(text, 64)),
            None => "missing; reason left empty".to_owned(),
        };
        fields.warn("SuppressionReason", message);
    }
    found
}

/// Maps a suppression-list change (see the module documentation for why).
fn subscription_change(
    suppress: Option<bool>,
    reason: Option<&str>,
    origin: Option<&str>,
) -> Mapping {
    let Some(suppress) = suppress else {
        return mapping(EventKind::Other, None, None);
    };
    if !suppress {
        return mapping(EventKind::Subscribe, None, None);
    }
    let by_recipient = origin.is_some_and(|o| o.trim().eq_ignore_ascii_case("Recipient"));
    match reason.map(|r| r.trim().to_ascii_lowercase()).as_deref() {
        Some("hardbounce") => mapping(EventKind::Dropped, None, Some(Reason::Invalid)),
        Some("spamcomplaint") => mapping(EventKind::Dropped, None, Some(Reason::Spam)),
        Some("manualsuppression") if by_recipient => {
            mapping(EventKind::Unsubscribe, None, Some(Reason::Unsubscribed))
        }
        Some("manualsuppression") => mapping(EventKind::Dropped, None, Some(Reason::Other)),
        _ => mapping(EventKind::Dropped, None, None),
    }
}

/// Returns whether a `MessageID` means "no message": the all-zero GUID of the samples.
fn is_empty_guid(id: &str) -> bool {
    id.bytes()
        .all(|b| b == b'0' || b == b'-' || b.is_ascii_whitespace())
}

/// Reads a bounce record's `ID` as its digits. Anything else is warned about, kept in
/// `metadata` and not used as an event id.
fn bounce_id(fields: &mut Fields<'_>, metadata: &mut Map<String, Value>) -> Option<String> {
    let id = fields.text("ID")?;
    let digits = id.trim();
    if digits.len() <= MAX_ID_DIGITS && digits.bytes().all(|b| b.is_ascii_digit()) {
        return Some(digits.to_owned());
    }
    fields.warn(
        "ID",
        format_args!(
            "`{}` is not a bounce id (digits); not used as the event id",
            clip(digits, 40)
        ),
    );
    fields.copy_into("ID", "ID", metadata);
    None
}

/// Drops the DSN diagnostic type (`smtp;`) that Postmark keeps in front of the reply.
fn strip_diagnostic_type(details: &str) -> &str {
    let text = details.trim();
    match text.get(..5) {
        Some(prefix) if prefix.eq_ignore_ascii_case("smtp;") => text[5..].trim_start(),
        _ => text,
    }
}

/// Merges the custom `Metadata` object into `metadata`, key by key, values as sent. A key
/// that is also a field of the record keeps the record's field.
fn merge_custom_metadata(fields: &mut Fields<'_>, metadata: &mut Map<String, Value>) {
    let Some(custom) = fields.object("Metadata") else {
        return;
    };
    let mut values = Map::new();
    custom.rest_into(&mut values);
    for (key, value) in values {
        if fields.has(&key) || metadata.contains_key(&key) {
            custom.warn(
                &key,
                "same name as a Postmark field; the custom value is kept in raw only",
            );
        } else {
            metadata.insert(key, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind_class_reason(name: &str) -> (EventKind, Option<BounceClass>, Option<Reason>) {
        let found = bounce_type(name).unwrap_or_else(|| panic!("{name} is documented"));
        (found.kind, found.class, found.reason)
    }

    #[test]
    fn every_documented_bounce_type_is_mapped() {
        use BounceClass::{Hard, Soft, Undetermined};
        use EventKind as K;
        let table = [
            ("HardBounce", K::Bounce, Some(Hard), Some(Reason::Invalid)),
            ("Transient", K::Deferred, None, None),
            (
                "Unsubscribe",
                K::Unsubscribe,
                None,
                Some(Reason::Unsubscribed),
            ),
            ("Subscribe", K::Subscribe, None, None),
            ("AutoResponder", K::Autoreply, None, None),
            ("AddressChange", K::Autoreply, None, None),
            ("DnsError", K::Bounce, Some(Soft), Some(Reason::Other)),
            ("SpamNotification", K::Complaint, None, Some(Reason::Spam)),
            ("OpenRelayTest", K::Other, None, None),
            (
                "Unknown",
                K::Bounce,
                Some(Undetermined),
                Some(Reason::Bounced),
            ),
            ("SoftBounce", K::Bounce, Some(Soft), Some(Reason::Bounced)),
            (
                "VirusNotification",
                K::Bounce,
                Some(Soft),
                Some(Reason::Blocked),
            ),
            ("ChallengeVerification", K::Autoreply, None, None),
            ("BadEmailAddress", K::Dropped, None, Some(Reason::Invalid)),
            ("SpamComplaint", K::Complaint, None, Some(Reason::Spam)),
            ("ManuallyDeactivated", K::Dropped, None, Some(Reason::Other)),
            ("Unconfirmed", K::Dropped, None, Some(Reason::Other)),
            ("Blocked", K::Bounce, Some(Soft), Some(Reason::Blocked)),
            ("SMTPApiError", K::Failed, None, Some(Reason::Other)),
            ("InboundError", K::Other, None, None),
            ("DMARCPolicy", K::Bounce, Some(Soft), Some(Reason::Blocked)),
            (
                "TemplateRenderingFailed",
                K::Failed,
                None,
                Some(Reason::Other),
            ),
        ];
        assert_eq!(table.len(), 22, "every type of the bounce-type table");
        for (name, kind, class, reason) in table {
            assert_eq!(kind_class_reason(name), (kind, class, reason), "{name}");
        }
        // Every bounce has a class; no other kind has one.
        for (name, kind, class, _) in table {
            assert_eq!(kind == K::Bounce, class.is_some(), "{name}");
        }
    }

    #[test]
    fn bounce_types_ignore_case_and_unknown_ones_are_none() {
        assert_eq!(
            kind_class_reason(" hardbounce "),
            kind_class_reason("HardBounce")
        );
        assert_eq!(kind_class_reason("DMARCPOLICY").2, Some(Reason::Blocked));
        assert_eq!(bounce_type("QuantumBounce"), None);
        assert_eq!(bounce_type(""), None);
        // Codes are not types: the router never looks at `TypeCode`.
        assert_eq!(bounce_type("512"), None);
    }

    #[test]
    fn suppression_changes() {
        let kind_reason = |suppress, reason, origin| {
            let found = subscription_change(suppress, reason, origin);
            (found.kind, found.reason)
        };
        assert_eq!(
            kind_reason(Some(true), Some("ManualSuppression"), Some("Recipient")),
            (EventKind::Unsubscribe, Some(Reason::Unsubscribed))
        );
        assert_eq!(
            kind_reason(Some(true), Some("ManualSuppression"), Some("Customer")),
            (EventKind::Dropped, Some(Reason::Other))
        );
        assert_eq!(
            kind_reason(Some(true), Some("ManualSuppression"), Some("Admin")),
            (EventKind::Dropped, Some(Reason::Other))
        );
        assert_eq!(
            kind_reason(Some(true), Some("HardBounce"), Some("Recipient")),
            (EventKind::Dropped, Some(Reason::Invalid))
        );
        assert_eq!(
            kind_reason(Some(true), Some("SpamComplaint"), None),
            (EventKind::Dropped, Some(Reason::Spam))
        );
        assert_eq!(
            kind_reason(Some(true), Some("Mystery"), None),
            (EventKind::Dropped, None)
        );
        assert_eq!(
            kind_reason(Some(false), None, Some("Customer")),
            (EventKind::Subscribe, None)
        );
        assert_eq!(kind_reason(None, None, None), (EventKind::Other, None));
        assert!(
            subscription_change(Some(true), Some("HardBounce"), None)
                .class
                .is_none()
        );
    }

    #[test]
    fn record_types() {
        assert_eq!(Record::parse("Bounce"), Some(Record::Bounce));
        assert_eq!(Record::parse("spamcomplaint"), Some(Record::SpamComplaint));
        assert_eq!(
            Record::parse("SubscriptionChange"),
            Some(Record::SubscriptionChange)
        );
        assert_eq!(Record::parse("Inbound"), None);
        for record in [
            Record::Delivery,
            Record::Bounce,
            Record::SpamComplaint,
            Record::Open,
            Record::Click,
            Record::SubscriptionChange,
        ] {
            assert_eq!(Record::parse(record.name()), Some(record));
        }
    }

    #[test]
    fn empty_message_ids() {
        assert!(is_empty_guid("00000000-0000-0000-0000-000000000000"));
        assert!(!is_empty_guid("883953f4-6105-42a2-a16a-77a8eac79483"));
    }

    #[test]
    fn diagnostic_type_is_dropped() {
        assert_eq!(
            strip_diagnostic_type("smtp;250 2.0.0 OK 1480624905 gsmtp"),
            "250 2.0.0 OK 1480624905 gsmtp"
        );
        assert_eq!(
            strip_diagnostic_type(" SMTP; 550 5.1.1 unknown"),
            "550 5.1.1 unknown"
        );
        assert_eq!(
            strip_diagnostic_type("Test bounce details"),
            "Test bounce details"
        );
        assert_eq!(strip_diagnostic_type("é"), "é");
    }

    #[test]
    fn bounce_ids_keep_every_digit() {
        use crate::ingest::fields::Warnings;
        use serde_json::value::RawValue;
        let check = |json: &str| {
            let raw = RawValue::from_string(json.to_owned()).expect("test JSON");
            let warnings = Warnings::default();
            let mut fields = Fields::parse(&raw, warnings.clone()).expect("an object");
            let mut metadata = Map::new();
            let id = bounce_id(&mut fields, &mut metadata);
            (id, metadata, warnings.take().len())
        };
        let (id, metadata, warned) = check(r#"{"ID": 4323372036854775807}"#);
        assert_eq!(id.as_deref(), Some("4323372036854775807"));
        assert!(metadata.is_empty() && warned == 0);
        let (id, _, _) = check(r#"{"ID": 9007199254740993}"#);
        assert_eq!(id.as_deref(), Some("9007199254740993"));
        let (id, _, _) = check(r#"{"ID": "42"}"#);
        assert_eq!(id.as_deref(), Some("42"));
        let (id, metadata, warned) = check(r#"{"ID": 4.3e18}"#);
        assert_eq!(id, None);
        assert_eq!(metadata["ID"], serde_json::json!(4.3e18));
        assert_eq!(warned, 1);
        let (id, _, warned) = check(r#"{"ID": null}"#);
        assert_eq!((id, warned), (None, 0));
    }
}
