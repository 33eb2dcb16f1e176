//! Mandrill (Mailchimp Transactional) webhooks: an `application/x-www-form-urlencoded`
//! POST with one field, `mandrill_events`, holding a JSON array of up to 1 000 events
//! (<https://mailchimp.com/developer/transactional/docs/webhooks/>, "Webhook format" in
//! Mandrill's help center). Spaces travel as `+`; the field is decoded to bytes and the
//! JSON is read as sent (never re-encoded: Mandrill escapes `/` as `\/`). The array posted
//! as a raw JSON body is accepted too (a replayed export).
//!
//! URL check: when a webhook is added, Mandrill sends `HEAD` to the URL, which the webhook
//! route answers with `200`; only when that fails does it POST `mandrill_events=[]`,
//! signed with the generic key `test-webhook` ("Why can't my webhook or inbound route URL
//! be verified"). That POST is answered `200` with nothing stored, also on a source that
//! has the webhook's own key (see the signature below).
//!
//! Message events (`event`, `ts`, `_id`, `msg`), per "Message event webhook format":
//! - `send` → sent ("message has been sent successfully": handed on, not confirmed),
//!   `delivered` → delivered (newer docs only, "received a response from the recipient's
//!   mail server indicating successful delivery");
//! - `deferral` → deferred, no bounce class. The reply is `msg.diag` or, as in Mandrill's
//!   sample, the `diag` of the last `msg.smtp_events` entry that is not a `sent` one. The
//!   reason is set only when the reply says something specific (timed out, blocked,
//!   invalid, spam): a deferral is not a bounce, so the generic `bounced` is not used.
//! - `hard_bounce` / `soft_bounce` → bounce, hard / soft. The reason comes from
//!   `msg.bounce_description` when it names a cause (`bad_mailbox`, `invalid_domain`,
//!   `invalid` → invalid; `mailbox_full` → bounced; `policy_related`, `spam_related` →
//!   blocked), otherwise (`general`, absent, unknown) from the reply in `msg.diag`
//!   (without its `smtp;` type), otherwise `bounced`. Mandrill's docs list no values:
//!   `bad_mailbox` and `mailbox_full` are the ones in its samples. `msg.smtp_events` of a
//!   bounce records the attempts, whose last may be the `250` that accepted the message
//!   (an asynchronous bounce): only non-`sent` entries stand in for a missing `diag`.
//! - `open`, `click` → open, click: `ip`, `user_agent` (and `url` for clicks) are at the
//!   event level; `location` and `user_agent_parsed` stay in metadata.
//! - `spam` → complaint / spam, `unsub` → unsubscribe / unsubscribed.
//! - `reject` → dropped: Mandrill refused to send (deny list, rules, unverified sender).
//!   The sample has no cause; the reason comes from `msg.reject.reason` (the messages
//!   API's `reject_reason` values: `hard-bounce`/`invalid` → invalid, `soft-bounce` →
//!   bounced, `spam` → spam, `unsub` → unsubscribed, `rule`/`unsigned` → blocked) or from
//!   `msg.bounce_description` ("description of bounce/rejection reason" in the API), else
//!   `other`.
//! - `inbound` (inbound routes, "Inbound webhook format") → `other` without a warning:
//!   recipient `msg.email` (where Mandrill received it), sender `msg.from_email`. The
//!   message itself (`raw_msg`, `html`, `text`, `headers`, `attachments`, `images`) stays in
//!   raw only; the rest (`to`, `from_name`, `spam_report`, `dkim`, `spf`...) is metadata.
//! - any other name → `other` with a warning (Mandrill adds fields and events without
//!   notice).
//!
//! Sync events ("Sync event webhook format") have no `event`: `type` is the list
//! (`blacklist`/`whitelist` in the samples, denylist/allowlist/safelist in newer docs),
//! `action` is `add`, `remove` or `change`, and the entry is under `reject` (deny list) or
//! `entry` (allow list samples). They are list maintenance, not message events: stored as
//! `other`, named `<type>.<action>`, recipient `reject.email`/`entry.email`, `type`,
//! `action` and the entry's fields (`reason`, `detail`, `created_at`, `expires_at`...) in
//! metadata. Its dates have no offset and are kept as text.
//!
//! Fields: `occurred_at` = top-level `ts` (Unix seconds; `msg.ts` is when the message was
//! sent and is kept as `msg_ts`). `message_id` = `_id` (else `msg._id`): the message's id,
//! shared by all its events, so there is no per-event id and dedup hashes the event (two
//! identical events of one batch, as in Mandrill's signed test capture, are one).
//! `subject` = `msg.subject`, `sender` = `msg.sender` (bare address when it parses),
//! `tags` = `msg.tags`. The custom `msg.metadata` is merged into metadata key by key; a key
//! that is also one of Mandrill's fields keeps Mandrill's and is warned about. Everything
//! else of `msg` and of the event goes to metadata under its own name.
//!
//! Signature ("How to authenticate webhook requests"): `X-Mandrill-Signature` is the
//! base64 HMAC-SHA1, keyed with the webhook's key, of the webhook URL exactly as registered
//! (`url`) followed by each POST field's name and (form-decoded) value, sorted by name.
//! Mandrill signs no timestamp: replays repeat events, which dedup folds.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::{Element, ElementError, MAX_FIELD_CHARS, Provider, emit, recipients, set_time};
use crate::config::SourceConfig;
use crate::event::{BounceClass, EmailAddress, Event, EventKind, Reason};
use crate::ingest::body::BodyError;
use crate::ingest::fields::{Fields, MAX_METADATA_FIELD_BYTES, clip, exact_value};
use crate::ingest::smtp::{self, Reply};
use crate::ingest::sources::SourceContext;
use crate::ingest::verify::crypto::{Mac, MacKey, base64_decode};
use crate::ingest::verify::{self, AuthError, Request, Verified, Verify};

/// The Mandrill adapter.
pub struct Mandrill;

/// The form field that carries the events.
pub const EVENTS_FIELD: &str = "mandrill_events";
/// Header carrying the signature.
pub const SIGNATURE_HEADER: &str = "x-mandrill-signature";
/// The key Mandrill signs its URL-check POST (`mandrill_events=[]`) with.
const TEST_WEBHOOK_KEY: &[u8] = b"test-webhook";
/// Longest reader IP kept (an IPv6 address with a zone fits).
const MAX_IP_CHARS: usize = 64;
/// Longest sync list or action name, or bounce description, kept in metadata (as
/// `provider_event` is clipped).
const MAX_NAME_CHARS: usize = 200;
/// Longest sender kept when it is not a plain address.
const MAX_SENDER_CHARS: usize = 320;
/// Parts of an inbound `msg` that are the message itself: kept in raw only, as they are
/// large (a whole MIME message) and say nothing a rule could use.
const INBOUND_CONTENT: [&str; 6] = [
    "raw_msg",
    "html",
    "text",
    "headers",
    "attachments",
    "images",
];

impl Provider for Mandrill {
    fn name(&self) -> &str {
        "mandrill"
    }

    fn checks(
        &self,
        settings: &SourceConfig,
        _context: &SourceContext,
    ) -> Result<Vec<Box<dyn Verify>>, String> {
        let mut checks = verify::credential_checks(self.name(), settings, &["webhook_key", "url"])?;
        let key = verify::required(
            settings.webhook_key.as_ref().map(|k| k.expose()),
            "webhook_key",
        )?;
        let url = verify::required(settings.url.as_deref(), "url")?;
        match (key, url) {
            (Some(key), Some(url)) => checks.push(Box::new(MandrillSignature {
                key: MacKey::new(Mac::Sha1, key.as_bytes()),
                url: url.to_owned(),
            })),
            (None, None) => {}
            _ => {
                return Err(
                    "the signature needs both `webhook_key` and `url` (the webhook URL \
                     exactly as registered in Mandrill)"
                        .to_owned(),
                );
            }
        }
        Ok(checks)
    }

    fn document<'b>(&self, body: &'b [u8]) -> Result<Cow<'b, [u8]>, BodyError> {
        let text = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
        match text.iter().find(|b| !b.is_ascii_whitespace()) {
            // Blank: `parse_body` says the body is empty. JSON: the array posted as it is
            // (a user replaying an export).
            None | Some(b'[' | b'{') => Ok(Cow::Borrowed(body)),
            Some(_) => form_value(body, EVENTS_FIELD)
                .map(Cow::Owned)
                .ok_or(BodyError::MissingFormField(EVENTS_FIELD)),
        }
    }

    fn normalize(&self, element: &Element<'_>, out: &mut Vec<Event>) -> Result<(), ElementError> {
        let mut fields = element.fields()?;
        let Some(name) = fields.text("event") else {
            return normalize_sync(element, fields, out);
        };
        let kind_name = name.trim().to_lowercase();
        let inbound = kind_name == "inbound";
        let (kind, class) = kind_of(&kind_name);
        let mut msg = fields.object("msg").ok_or_else(|| {
            ElementError::Malformed("a message event without a `msg` object".to_owned())
        })?;
        let recipients =
            recipients(&mut msg, &["email"]).map_err(|error| in_object(error, "msg"))?;
        let first = recipients[0].clone();
        let mut event = if inbound {
            element.documented_event(&name, EventKind::Other, first)
        } else {
            element.event(&name, kind, first, &fields)
        };
        let read = element.time(&mut fields, "ts", true);
        set_time(&mut event, read);
        event.message_id = fields.text("_id").or_else(|| msg.text("_id"));
        msg.raw("_id");
        event.subject = msg
            .text("subject")
            .map(|subject| clip(&subject, MAX_FIELD_CHARS).to_owned());
        event.sender = if inbound {
            msg.text_of(&["from_email", "sender"])
        } else {
            msg.text("sender")
        }
        .map(|sender| bare_address(&sender));
        event.tags = msg
            .texts("tags")
            .iter()
            .map(|tag| clip(tag.trim(), MAX_FIELD_CHARS).to_owned())
            .filter(|tag| !tag.is_empty())
            .collect();
        if matches!(kind, EventKind::Open | EventKind::Click) {
            event.ip = fields
                .text("ip")
                .map(|ip| clip(ip.trim(), MAX_IP_CHARS).to_owned());
            event.user_agent = fields
                .text("user_agent")
                .map(|agent| clip(agent.trim(), MAX_FIELD_CHARS).to_owned());
        }
        if kind == EventKind::Click {
            event.click_url = fields
                .text("url")
                .map(|url| clip(url.trim(), MAX_FIELD_CHARS).to_owned());
        }
        msg.copy_into("ts", "msg_ts", &mut event.metadata);
        if inbound {
            for key in INBOUND_CONTENT {
                msg.raw(key);
            }
        }

        let smtp_events = keep(&mut msg, "smtp_events", &mut event.metadata);
        let description = msg.text("bounce_description");
        if matches!(kind, EventKind::Bounce | EventKind::Deferred) {
            let diagnostic = msg
                .text("diag")
                .or_else(|| last_failed_attempt(smtp_events.as_ref()));
            let mut reply = Reply::default();
            if let Some(text) = &diagnostic {
                let text = smtp::strip_diagnostic_type(text);
                reply.complete_from_text(text);
                event.smtp_response = Some(clip(text, MAX_FIELD_CHARS).to_owned());
            }
            event.smtp_code = reply.code;
            event.smtp_enhanced = reply.enhanced.clone();
            let classified = smtp::classify(&reply, event.smtp_response.as_deref());
            event.reason = if kind == EventKind::Bounce {
                description
                    .as_deref()
                    .and_then(reason_of_description)
                    .or(classified)
                    .or(Some(Reason::Bounced))
            } else {
                classified.filter(|reason| *reason != Reason::Bounced)
            };
        }
        event.reason = match kind {
            EventKind::Dropped => {
                let reject = keep(&mut msg, "reject", &mut event.metadata);
                let cause = match &reject {
                    Some(Value::Object(reject)) => reject.get("reason").and_then(Value::as_str),
                    Some(Value::String(reason)) => Some(reason.as_str()),
                    _ => None,
                };
                Some(
                    cause
                        .and_then(reason_of_reject)
                        .or_else(|| description.as_deref().and_then(reason_of_reject))
                        .or_else(|| description.as_deref().and_then(reason_of_description))
                        .unwrap_or(Reason::Other),
                )
            }
            EventKind::Complaint => Some(Reason::Spam),
            EventKind::Unsubscribe => Some(Reason::Unsubscribed),
            _ => event.reason,
        };
        event.bounce_class = class;
        if let Some(description) = description {
            let description = clip(&description, MAX_NAME_CHARS).to_owned();
            event
                .metadata
                .insert("bounce_description".to_owned(), Value::String(description));
        }
        let custom = msg.object("metadata");
        msg.rest_into(&mut event.metadata);
        fields.rest_into(&mut event.metadata);
        if let Some(custom) = custom {
            merge_custom_metadata(&custom, &mut event.metadata);
        }
        emit(event, recipients, fields.warnings(), out);
        Ok(())
    }
}

/// Normalizes a sync event (`type` + `action`): a change of Mandrill's deny or allow list.
fn normalize_sync(
    element: &Element<'_>,
    mut fields: Fields<'_>,
    out: &mut Vec<Event>,
) -> Result<(), ElementError> {
    let (list, action) = match (fields.text("type"), fields.text("action")) {
        (Some(list), Some(action)) => (list, action),
        (None, None) => return Err(ElementError::MissingEventName("event")),
        _ => {
            return Err(ElementError::Malformed(
                "a sync event (no `event`) needs both `type` and `action`".to_owned(),
            ));
        }
    };
    let (mut entry, key) = match fields.object("reject") {
        Some(entry) => (entry, "reject"),
        None => (
            fields.object("entry").ok_or_else(|| {
                ElementError::Malformed(format!(
                    "a `{}` sync event without a `reject` or `entry` object",
                    clip(&list, 40)
                ))
            })?,
            "entry",
        ),
    };
    let recipients = recipients(&mut entry, &["email"]).map_err(|error| in_object(error, key))?;
    let name = format!("{list}.{action}");
    let documented = matches!(
        list.trim().to_lowercase().as_str(),
        "blacklist" | "whitelist" | "denylist" | "allowlist" | "safelist"
    ) && matches!(
        action.trim().to_lowercase().as_str(),
        "add" | "remove" | "change"
    );
    let mut event = if documented {
        element.documented_event(&name, EventKind::Other, recipients[0].clone())
    } else {
        element.event(&name, EventKind::Other, recipients[0].clone(), &fields)
    };
    let read = element.time(&mut fields, "ts", true);
    set_time(&mut event, read);
    for (key, value) in [("type", &list), ("action", &action)] {
        let value = clip(value, MAX_NAME_CHARS).to_owned();
        event.metadata.insert(key.to_owned(), Value::String(value));
    }
    entry.rest_into(&mut event.metadata);
    fields.rest_into(&mut event.metadata);
    emit(event, recipients, fields.warnings(), out);
    Ok(())
}

/// Names the object a recipient was looked for in (`msg.email`, not `email`).
fn in_object(error: ElementError, object: &str) -> ElementError {
    match error {
        ElementError::NoRecipient(text) => {
            ElementError::NoRecipient(text.replacen("`email`", &format!("`{object}.email`"), 1))
        }
        other => other,
    }
}

/// Reads `key` as sent and keeps it in `metadata` under its name (when small enough, as
/// `rest_into` would); returns its value for the caller to read.
fn keep(fields: &mut Fields<'_>, key: &str, metadata: &mut Map<String, Value>) -> Option<Value> {
    let raw = fields.raw(key)?;
    let value = exact_value(raw);
    if raw.get().len() <= MAX_METADATA_FIELD_BYTES {
        metadata.insert(key.to_owned(), value.clone());
    } else {
        fields.warn(
            key,
            format_args!(
                "{} bytes, too large for metadata; kept in raw only",
                raw.get().len()
            ),
        );
    }
    Some(value)
}

/// Returns the reply of the last attempt in `msg.smtp_events` that did not succeed: a
/// bounce's list can end with the `sent` attempt the receiver first accepted.
fn last_failed_attempt(smtp_events: Option<&Value>) -> Option<String> {
    smtp_events?
        .as_array()?
        .iter()
        .rev()
        .filter(|attempt| {
            !attempt["type"]
                .as_str()
                .is_some_and(|kind| kind.trim().eq_ignore_ascii_case("sent"))
        })
        .find_map(|attempt| attempt["diag"].as_str().filter(|d| !d.trim().is_empty()))
        .map(str::to_owned)
}

/// Merges the custom `msg.metadata` into `metadata`, key by key, values as sent. A key
/// that Mandrill's own fields already use keeps Mandrill's value.
fn merge_custom_metadata(custom: &Fields<'_>, metadata: &mut Map<String, Value>) {
    let mut values = Map::new();
    custom.rest_into(&mut values);
    for (key, value) in values {
        if metadata.contains_key(&key) {
            custom.warn(
                &key,
                "same name as a Mandrill field; the custom value is kept in raw only",
            );
        } else {
            metadata.insert(key, value);
        }
    }
}

/// The bare address of a sender when it parses, else the text (clipped).
fn bare_address(text: &str) -> String {
    match EmailAddress::parse(text) {
        Ok(address) => address.as_str().to_owned(),
        Err(_) => clip(text.trim(), MAX_SENDER_CHARS).to_owned(),
    }
}

/// Returns the value of form field `name` (the first if it repeats), `+` and `%XX`
/// decoded to bytes. Bytes, not text: a value that is not UTF-8 is then refused as such
/// by `parse_body` instead of being silently repaired.
fn form_value(body: &[u8], name: &str) -> Option<Vec<u8>> {
    body.split(|b| *b == b'&').find_map(|pair| {
        let (key, value) = match pair.iter().position(|b| *b == b'=') {
            Some(at) => (&pair[..at], &pair[at + 1..]),
            None => (pair, &[][..]),
        };
        (form_decode(key) == name.as_bytes()).then(|| form_decode(value))
    })
}

/// Decodes one `application/x-www-form-urlencoded` name or value; a `%` not followed by
/// two hex digits stays as it is.
fn form_decode(bytes: &[u8]) -> Vec<u8> {
    let hex = |b: u8| char::from(b).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        index += 1;
        match byte {
            b'+' => out.push(b' '),
            b'%' => match (
                bytes.get(index).copied().and_then(hex),
                bytes.get(index + 1).copied().and_then(hex),
            ) {
                (Some(high), Some(low)) => {
                    // Two hex digits are at most 0xff.
                    out.push((high * 16 + low) as u8);
                    index += 2;
                }
                _ => out.push(b'%'),
            },
            other => out.push(other),
        }
    }
    out
}

/// Maps an event name (lower case) to a kind and, for bounces, its class.
fn kind_of(name: &str) -> (EventKind, Option<BounceClass>) {
    match name {
        "send" => (EventKind::Sent, None),
        "delivered" => (EventKind::Delivered, None),
        "deferral" => (EventKind::Deferred, None),
        "hard_bounce" => (EventKind::Bounce, Some(BounceClass::Hard)),
        "soft_bounce" => (EventKind::Bounce, Some(BounceClass::Soft)),
        "open" => (EventKind::Open, None),
        "click" => (EventKind::Click, None),
        "spam" => (EventKind::Complaint, None),
        "unsub" => (EventKind::Unsubscribe, None),
        "reject" => (EventKind::Dropped, None),
        _ => (EventKind::Other, None),
    }
}

/// Reason from Mandrill's `bounce_description`, when it names a cause. `general` (and
/// anything unknown) says nothing: the reply decides.
fn reason_of_description(description: &str) -> Option<Reason> {
    match description.trim().to_lowercase().as_str() {
        "bad_mailbox" | "invalid_domain" | "invalid" => Some(Reason::Invalid),
        "mailbox_full" => Some(Reason::Bounced),
        "policy_related" | "spam_related" => Some(Reason::Blocked),
        _ => None,
    }
}

/// Reason from a rejection's cause (the messages API's `reject_reason` values, which are
/// also the deny list's reasons). `custom`, `invalid-sender`, `test-mode-limit` say
/// nothing about the recipient: `other`.
fn reason_of_reject(reason: &str) -> Option<Reason> {
    match reason.trim().to_lowercase().as_str() {
        "hard-bounce" | "invalid" => Some(Reason::Invalid),
        "soft-bounce" => Some(Reason::Bounced),
        "spam" => Some(Reason::Spam),
        "unsub" => Some(Reason::Unsubscribed),
        "rule" | "unsigned" => Some(Reason::Blocked),
        "custom" | "invalid-sender" | "test-mode-limit" => Some(Reason::Other),
        _ => None,
    }
}

/// Mandrill's HMAC over the registered URL and the sorted form fields.
struct MandrillSignature {
    key: MacKey,
    url: String,
}

impl Verify for MandrillSignature {
    fn method(&self) -> &'static str {
        "hmac_sha1"
    }

    fn verify(&self, request: &Request<'_>) -> Result<Verified, AuthError> {
        let signature = request.header(SIGNATURE_HEADER).ok_or_else(|| {
            AuthError::MissingSignature(format!("no `{SIGNATURE_HEADER}` header"))
        })?;
        let tag = base64_decode(signature)
            .ok_or_else(|| AuthError::BadSignature("the signature is not base64".to_owned()))?;
        let mut fields: Vec<(Cow<'_, str>, Cow<'_, str>)> =
            form_urlencoded::parse(request.body).collect();
        fields.sort_by(|a, b| a.0.cmp(&b.0));
        let mut signed: Vec<&[u8]> = Vec::with_capacity(1 + 2 * fields.len());
        signed.push(self.url.as_bytes());
        for (name, value) in &fields {
            signed.push(name.as_bytes());
            signed.push(value.as_bytes());
        }
        if self.key.verify(&signed, &tag) {
            return Ok(Verified::default());
        }
        // The URL check's POST carries no events and is signed with the generic key
        // ("Why can't my webhook or inbound route URL be verified"): it must get its 200.
        let url_check = matches!(fields.as_slice(), [(name, value)]
            if name == EVENTS_FIELD && value.trim() == "[]");
        if url_check && MacKey::new(Mac::Sha1, TEST_WEBHOOK_KEY).verify(&signed, &tag) {
            return Ok(Verified::default());
        }
        Err(AuthError::BadSignature(
            "HMAC-SHA1 of the URL and the form does not match the webhook key (is `url` \
             exactly the URL registered in Mandrill?)"
                .to_owned(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::verify::crypto::base64_encode;
    use axum::http::{HeaderMap, HeaderValue};
    use serde_json::json;

    fn check(key: &str, url: &str, signature: &str, body: &[u8]) -> Result<(), AuthError> {
        let check = MandrillSignature {
            key: MacKey::new(Mac::Sha1, key.as_bytes()),
            url: url.to_owned(),
        };
        let mut headers = HeaderMap::new();
        headers.insert(SIGNATURE_HEADER, HeaderValue::from_str(signature).unwrap());
        check
            .verify(&Request {
                headers: &headers,
                query: None,
                body,
                now: jiff::Timestamp::UNIX_EPOCH,
            })
            .map(Verified::keep)
    }

    /// A captured signed request (key, registered URL, events, signature), as published in
    /// the mandrill-rails test suite; the body form-encodes `+` for spaces, as browsers and
    /// Mandrill do.
    #[test]
    fn a_captured_signed_request_verifies() {
        let events = include_str!("../../../fixtures/mandrill/set_aside/click_signed.json");
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair(EVENTS_FIELD, events)
            .finish();
        assert!(body.contains('+'), "spaces travel as `+`");
        let (key, url) = ("ntynTMaFpM_octE5R1DKAw", "http://requestb.in/q9a918q9");
        assert_eq!(
            check(key, url, "7rUa4lNJitlb178MgGOcHO6T4Bg=", body.as_bytes()),
            Ok(())
        );
        assert!(
            check(
                key,
                &format!("{url}/"),
                "7rUa4lNJitlb178MgGOcHO6T4Bg=",
                body.as_bytes()
            )
            .is_err()
        );
        assert!(
            check(
                "other",
                url,
                "7rUa4lNJitlb178MgGOcHO6T4Bg=",
                body.as_bytes()
            )
            .is_err()
        );
    }

    /// The URL check's POST, signed with `test-webhook` (vector computed with Python's
    /// hmac for this URL), passes a source keyed with the webhook's own key; the generic
    /// key signs nothing else.
    #[test]
    fn the_url_check_post_passes_with_the_generic_key_only_when_empty() {
        let url = "https://mailwarden.example.com/webhooks/mandrill";
        let empty = b"mandrill_events=%5B%5D";
        assert_eq!(
            check("own-key", url, "r3Qzso15D8EBTmmNHYZrXy4YIbg=", empty),
            Ok(())
        );
        assert!(
            check(
                "own-key",
                url,
                "r3Qzso15D8EBTmmNHYZrXy4YIbg=",
                b"mandrill_events=%5B%5D&x=1"
            )
            .is_err()
        );
        let events = br#"[{"event":"send"}]"#;
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair(EVENTS_FIELD, std::str::from_utf8(events).unwrap())
            .finish();
        let generic = base64_encode(&MacKey::new(Mac::Sha1, TEST_WEBHOOK_KEY).sign(&[
            url.as_bytes(),
            EVENTS_FIELD.as_bytes(),
            events,
        ]));
        assert!(check("own-key", url, &generic, body.as_bytes()).is_err());
    }

    #[test]
    fn events_come_out_of_the_form() {
        let body = b"mandrill_events=%5B%7B%22event%22%3A%22send%22%7D%5D";
        assert_eq!(
            Mandrill.document(body).unwrap().as_ref(),
            br#"[{"event":"send"}]"#
        );
        assert_eq!(
            Mandrill.document(b"other=1"),
            Err(BodyError::MissingFormField(EVENTS_FIELD))
        );
        assert_eq!(Mandrill.document(b" [] ").unwrap().as_ref(), b" [] ");
        assert_eq!(Mandrill.document(b"").unwrap().as_ref(), b"");
        assert_eq!(
            Mandrill.document(b"\xEF\xBB\xBF{}").unwrap().as_ref(),
            b"\xEF\xBB\xBF{}"
        );
        // `+` is a space, bad escapes stay, the first field of that name wins, and bytes
        // that are not UTF-8 come out as they are (for `parse_body` to refuse).
        assert_eq!(
            Mandrill
                .document(b"a=1&mandrill_events=%5B+%22x%2By%22%25%zz%5D&mandrill_events=2")
                .unwrap()
                .as_ref(),
            b"[ \"x+y\"%%zz]"
        );
        assert_eq!(
            Mandrill
                .document(b"mandrill_events=%FF%FE")
                .unwrap()
                .as_ref(),
            b"\xFF\xFE"
        );
        assert_eq!(Mandrill.document(b"mandrill_events").unwrap().as_ref(), b"");
        assert_eq!(form_decode(b"%-f%4%"), b"%-f%4%");
    }

    #[test]
    fn every_documented_event_name_is_mapped() {
        use EventKind as K;
        let table = [
            ("send", K::Sent, None),
            ("delivered", K::Delivered, None),
            ("deferral", K::Deferred, None),
            ("hard_bounce", K::Bounce, Some(BounceClass::Hard)),
            ("soft_bounce", K::Bounce, Some(BounceClass::Soft)),
            ("open", K::Open, None),
            ("click", K::Click, None),
            ("spam", K::Complaint, None),
            ("unsub", K::Unsubscribe, None),
            ("reject", K::Dropped, None),
            ("hard-bounce", K::Other, None),
        ];
        for (name, kind, class) in table {
            assert_eq!(kind_of(name), (kind, class), "{name}");
        }
    }

    #[test]
    fn bounce_descriptions_and_reject_reasons_map_to_reasons() {
        assert_eq!(reason_of_description("bad_mailbox"), Some(Reason::Invalid));
        assert_eq!(
            reason_of_description("invalid_domain"),
            Some(Reason::Invalid)
        );
        assert_eq!(reason_of_description("mailbox_full"), Some(Reason::Bounced));
        assert_eq!(reason_of_description("spam_related"), Some(Reason::Blocked));
        assert_eq!(
            reason_of_description("policy_related"),
            Some(Reason::Blocked)
        );
        assert_eq!(reason_of_description("general"), None);
        assert_eq!(reason_of_description("something_new"), None);
        assert_eq!(reason_of_reject("hard-bounce"), Some(Reason::Invalid));
        assert_eq!(reason_of_reject("soft-bounce"), Some(Reason::Bounced));
        assert_eq!(reason_of_reject("spam"), Some(Reason::Spam));
        assert_eq!(reason_of_reject("unsub"), Some(Reason::Unsubscribed));
        assert_eq!(reason_of_reject("unsigned"), Some(Reason::Blocked));
        assert_eq!(reason_of_reject("rule"), Some(Reason::Blocked));
        assert_eq!(reason_of_reject("custom"), Some(Reason::Other));
        assert_eq!(reason_of_reject("bad_mailbox"), None);
    }

    #[test]
    fn the_reply_is_the_last_attempt_that_failed() {
        let attempts = json!([
            {"type": "deferred", "diag": "451 4.3.5 later"},
            {"type": "sent", "diag": "250 2.0.0 OK"}
        ]);
        assert_eq!(
            last_failed_attempt(Some(&attempts)).as_deref(),
            Some("451 4.3.5 later")
        );
        let attempts =
            json!([{"type": "sent", "diag": "250 OK"}, {"type": "deferred", "diag": " "}]);
        assert_eq!(last_failed_attempt(Some(&attempts)), None);
        assert_eq!(last_failed_attempt(Some(&json!("x"))), None);
        assert_eq!(last_failed_attempt(None), None);
    }
}
