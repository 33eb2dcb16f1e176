//! Mailjet Event API ("event tracking", webhooks): one JSON object per event, or a JSON
//! array of them on the same URL.
//!
//! Format ([guide](https://dev.mailjet.com/email/guides/webhooks/), markdown source
//! [`_event-api.md`](https://github.com/mailjet/api-documentation/blob/3a446e6488a7a9dbcfd4f6fd7ba364576f99f284/guides/_event-api.md)):
//! - Each event type has its own callback URL setting with a `Version`: 1 posts one bare
//!   object per event, 2 ("Group events") posts an array of mixed types, "all the events
//!   of the last second". The current guide only shows arrays; Version 1 objects still
//!   arrive ([2015 guide](https://github.com/mailjet/api-documentation/blob/c0b092fb47a4bd7162a38104afd2b49ad7f216e2/guides/_event-api.md#L394),
//!   [Mailjet's PrestaShop receiver](https://github.com/mailjet/prestashop-mailjet-plugin-apiv3/blob/48dfcd47978555339f907a0c05d88f00aba63e4e/events.php#L64-L70)),
//!   so one source receives both; the pipeline splits either.
//! - Every event has `event`, `time` (Unix seconds, UTC: `exact`), `email` (the
//!   recipient), `MessageID`, `Message_GUID`, `mj_campaign_id`, `mj_contact_id`,
//!   `customcampaign`, `CustomID` and `Payload`.
//! - Mailjet answers anything but 200 with retries every 30 s for 24 h, and has no per-event
//!   id, so `provider_event_id` stays empty and retries are recognised by the event's JSON.
//! - No signature: Mailjet only documents basic auth written into the callback URL, which
//!   the default checks (token as basic-auth password, or username and password) cover.
//!
//! Events and their mapping:
//! - `sent`: "the destination SMTP server … has accepted the message" → `delivered` (not
//!   `sent`, which in mailwarden is the provider handing a message over). `smtp_reply` is
//!   `sent (250 2.0.0 OK … - gsmtp)`: the `sent (…)` wrapper is Mailjet's, the receiving
//!   server's reply is inside, and that inner text is `smtp_response` (codes parsed from it).
//! - `open` → `open`, `click` → `click` (`url` → `click_url`): `ip` and `agent` are the
//!   reader's; `geo` goes to metadata.
//! - `bounce` → `bounce`, `hard_bounce: true` hard, `false` soft; without a usable
//!   `hard_bounce` the class is inferred from the reply, with a warning. `comment`, "the
//!   raw SMTP error", is `smtp_response`. Exception: `greylisted` ("Delivery will be
//!   re-attempted") that is not hard is `deferred`.
//! - `blocked` (Mailjet did not try to send) → `dropped`, except the errors that say
//!   Mailjet could not build or send the message (`content` and `system` groups:
//!   templates, "something went wrong on our server-side") → `failed`.
//! - `spam` (a feedback-loop report; `source` to metadata) → `complaint`, reason `spam`.
//! - `unsub` → `unsubscribe`, reason `unsubscribed`; its `ip`/`agent` are the reader's too
//!   ("IP address … that triggered the event"), so they fill `ip`/`user_agent` as on opens;
//!   `mj_list_id` (the unsubscribe is per list) goes to metadata.
//! - Anything else (the retired `typofix`, future types) → `other` with a warning.
//!
//! Reasons of `bounce` and `blocked` come from Mailjet's documented `error` table
//! ([guide, "Possible values for errors"](https://github.com/mailjet/api-documentation/blob/3a446e6488a7a9dbcfd4f6fd7ba364576f99f284/guides/_event-api.md#L504-L527)),
//! see [`documented_error`]; only an unknown or missing `error` falls back to the SMTP
//! text. The docs' own bounce sample pairs `user unknown` with a "Host or domain name not
//! found" comment, so the error, not the comment, decides.
//!
//! Ids: `MessageID` is an integer above 2^53 in every documented sample
//! (19421777835146491 is not a float); it is taken from the raw JSON text, never through a
//! float, and stored as the decimal string. `mj_message_id` (`sent` only, "deprecated, see
//! MessageID") is the same value as a string: the fallback, kept in metadata only when it
//! disagrees. `mj_campaign_id`, `mj_contact_id`, `mj_list_id` go to metadata as strings;
//! `0` there, like `""` in `customcampaign`, `CustomID` or `Payload`, means "not provided"
//! (every documented transactional sample has them) and is left out.
//! `campaign` is `customcampaign` (the `X-Mailjet-Campaign` header), else `mj_campaign_id`.
//! `Payload` is the sender's free-form string (the docs' example is CSV): kept as sent.
//! Mailjet sends no subject, sender or tags; `CustomID` (a per-message reference) is not
//! made a tag.
//!
//! Decisions where the docs are silent or ambiguous (research note `mailjet.md`):
//! - `mailbox inactive` ("likely that it doesn't exist anymore") is `invalid`, as the
//!   shared SMTP classifier reads 5.2.1 "mailbox disabled".
//! - `no mail host` ("Nobody answers when we knock at the door") is `invalid` when hard but
//!   `timed_out` when soft: a temporary DNS or connection failure says nothing final
//!   about the address, and rules suppress on `invalid`.
//! - `greylisted` has reason `other`: greylisting is routine first-contact filtering, not a
//!   verdict on the sender (`blocked`) or the address.
//! - `blacklisted` (the account's own exclusion list, cause unknown) and `duplicate in
//!   campaign` (per-campaign dedup that "says nothing" about the address) are `other`;
//!   `preblocked` (not sent because the address "recently (or repeatedly) bounced") is
//!   `bounced`.
//! - A bounce `comment` in Postfix form (`host … said: 550 5.1.1 …`) has its code after
//!   `said:`; Mailjet's comments are Postfix texts (the sample's "Name service error for
//!   name=… type=A" is one), so the code is looked for there too.

use serde_json::{Map, Value};

use super::{Element, ElementError, MAX_FIELD_CHARS, Provider, emit, recipients, set_time};
use crate::event::{BounceClass, Event, EventKind, Reason};
use crate::ingest::fields::{
    Fields, JsonType, MAX_METADATA_FIELD_BYTES, clip, exact_value, scalar_text,
};
use crate::ingest::smtp::{self, Reply};

/// The Mailjet adapter.
pub struct Mailjet;

/// Longest message id kept; longer ones stay in `raw` only (a `MessageID` is 17 digits).
const MAX_ID_CHARS: usize = 200;

/// Mailjet's numeric ids of other objects, kept in metadata as strings when not `0`.
const OBJECT_IDS: [&str; 3] = ["mj_campaign_id", "mj_contact_id", "mj_list_id"];

/// Fields where an empty string means "not provided": left out of metadata.
const OPTIONAL_TEXTS: [&str; 5] = ["Message_GUID", "CustomID", "Payload", "geo", "source"];

impl Provider for Mailjet {
    fn name(&self) -> &'static str {
        "mailjet"
    }

    fn normalize(&self, element: &Element<'_>, out: &mut Vec<Event>) -> Result<(), ElementError> {
        let mut fields = element.fields()?;
        let name = fields
            .text("event")
            .ok_or(ElementError::MissingEventName("event"))?;
        let recipients = recipients(&mut fields, &["email"])?;

        let family = kind_of(&name);
        let related = fields.text("error_related_to");
        let error = fields.text("error");
        let hard_bounce = fields.boolean("hard_bounce");
        let documented = error.as_deref().and_then(documented_error);
        let group = documented
            .map(|(group, _)| group)
            .or_else(|| related.as_deref().and_then(group_of));
        let kind = match family {
            EventKind::Bounce => bounce_kind(error.as_deref(), hard_bounce),
            EventKind::Dropped => blocked_kind(group),
            other => other,
        };

        let first = recipients[0].clone();
        let mut event = element.event(&name, kind, first, &fields);
        let read = element.time(&mut fields, "time", true);
        set_time(&mut event, read);
        event.message_id = message_id(&mut fields, &mut event.metadata);
        event.campaign = fields
            .text("customcampaign")
            .map(|c| clip(c.trim(), MAX_FIELD_CHARS).to_owned());
        let object_ids = object_ids(&mut fields);
        if event.campaign.is_none() {
            event.campaign = object_ids
                .iter()
                .find(|(key, _)| *key == "mj_campaign_id")
                .map(|(_, id)| id.clone());
        }
        for (key, id) in object_ids {
            event.metadata.insert(key.to_owned(), Value::String(id));
        }
        // `ip` and `agent` are documented on the reader's own actions only; elsewhere
        // their meaning is unknown and they stay in metadata.
        if matches!(
            kind,
            EventKind::Open | EventKind::Click | EventKind::Unsubscribe
        ) {
            event.ip = fields.text("ip").map(|ip| short(&ip));
            event.user_agent = fields.text("agent").map(|agent| short(&agent));
        }
        if kind == EventKind::Click {
            event.click_url = fields.text("url").map(|url| short(&url));
        }

        // A failure's reply is in `comment`, a delivery's in `smtp_reply`; when both are
        // sent, the other one stays in metadata.
        let failure = matches!(family, EventKind::Bounce | EventKind::Dropped);
        let keys = if failure {
            ["comment", "smtp_reply"]
        } else {
            ["smtp_reply", "comment"]
        };
        let response = keys
            .iter()
            .find_map(|key| fields.text(key))
            .map(|text| short(reply_text(&text)));
        let mut reply = Reply::default();
        if let Some(text) = &response {
            complete_reply(&mut reply, text);
        }
        event.smtp_code = reply.code;
        event.smtp_enhanced = reply.enhanced.clone();
        event.smtp_response = response;

        event.reason = match family {
            EventKind::Bounce | EventKind::Dropped => {
                let documented_reason = error
                    .as_deref()
                    .and_then(|e| documented_reason(e, hard_bounce));
                documented_reason.or_else(|| {
                    let inferred = smtp::classify(&reply, event.smtp_response.as_deref())
                        .unwrap_or(Reason::Other);
                    let what = match &error {
                        Some(error) => {
                            format!("`{}` is not in Mailjet's error table", clip(error, 64))
                        }
                        None => "missing".to_owned(),
                    };
                    fields.warn(
                        "error",
                        format_args!("{what}; reason `{}` inferred", inferred.as_str()),
                    );
                    Some(inferred)
                })
            }
            EventKind::Complaint => Some(Reason::Spam),
            EventKind::Unsubscribe => Some(Reason::Unsubscribed),
            _ => None,
        };
        if kind == EventKind::Bounce {
            event.bounce_class = Some(match hard_bounce {
                Some(true) => BounceClass::Hard,
                Some(false) => BounceClass::Soft,
                None => {
                    let class = smtp::class_from_reply(&reply, event.reason);
                    fields.warn(
                        "hard_bounce",
                        format_args!(
                            "no boolean; class `{}` inferred from the reply",
                            class.as_str()
                        ),
                    );
                    class
                }
            });
        }

        // What Mailjet says rules should look at ("take into account the value of the
        // `hard_bounce` and `error` property") stays visible in metadata.
        for (key, value) in [("error_related_to", related), ("error", error)] {
            if let Some(value) = value {
                event
                    .metadata
                    .insert(key.to_owned(), Value::String(short(&value)));
            }
        }
        fields.copy_into("hard_bounce", "hard_bounce", &mut event.metadata);
        optional_texts(&mut fields, &mut event.metadata);
        fields.rest_into(&mut event.metadata);
        emit(event, recipients, fields.warnings(), out);
        Ok(())
    }
}

/// Maps an event name to a kind: `bounce` and `blocked` (as `dropped`) are refined by
/// their error.
fn kind_of(name: &str) -> EventKind {
    match name.trim().to_lowercase().as_str() {
        "sent" => EventKind::Delivered,
        "open" => EventKind::Open,
        "click" => EventKind::Click,
        "bounce" => EventKind::Bounce,
        "blocked" => EventKind::Dropped,
        "spam" => EventKind::Complaint,
        "unsub" => EventKind::Unsubscribe,
        _ => EventKind::Other,
    }
}

/// The documented `error_related_to` groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Group {
    Recipient,
    Domain,
    Content,
    Spam,
    System,
    Mailjet,
}

/// Reads an `error_related_to` value.
fn group_of(related: &str) -> Option<Group> {
    match related.trim().to_lowercase().as_str() {
        "recipient" => Some(Group::Recipient),
        "domain" => Some(Group::Domain),
        "content" => Some(Group::Content),
        "spam" => Some(Group::Spam),
        "system" => Some(Group::System),
        "mailjet" => Some(Group::Mailjet),
        _ => None,
    }
}

/// Mailjet's documented errors: their group and the reason they give (for a permanent
/// failure; see [`documented_reason`]).
fn documented_error(error: &str) -> Option<(Group, Reason)> {
    use Group::*;
    let entry = match error.trim().to_lowercase().as_str() {
        // "Email address doesn't exist".
        "user unknown" => (Recipient, Reason::Invalid),
        // "likely that it doesn't exist anymore" (5.2.1 reads as invalid too).
        "mailbox inactive" => (Recipient, Reason::Invalid),
        // A full mailbox: the generic bounce.
        "quota exceeded" => (Recipient, Reason::Bounced),
        // On the account's own exclusion list; why is unknown.
        "blacklisted" => (Recipient, Reason::Other),
        // Complained about an earlier message.
        "spam reporter" => (Recipient, Reason::Spam),
        // "typo in the domain name … or … its domain has expired".
        "invalid domain" => (Domain, Reason::Invalid),
        // "Nobody answers when we knock at the door."
        "no mail host" => (Domain, Reason::Invalid),
        // "The destination mail server is refusing to talk to us": not about the address.
        "relay/access denied" => (Domain, Reason::Blocked),
        // Temporary first-contact filtering.
        "greylisted" => (Domain, Reason::Other),
        // "The domain part of your recipient email address was not valid."
        "typofix" => (Domain, Reason::Invalid),
        "bad or empty template" | "error in template language" => (Content, Reason::Other),
        "sender blocked" | "policy issue" => (Spam, Reason::Blocked),
        // "triggered an anti-spam filter and your email was rejected".
        "content blocked" => (Spam, Reason::Spam),
        // Mailjet-side faults, "never … permanent".
        "system issue" | "protocol issue" | "connection issue" => (System, Reason::Other),
        // Not sent because the address "recently (or repeatedly) bounced".
        "preblocked" => (Mailjet, Reason::Bounced),
        // Per-campaign dedup: "says nothing" about the address.
        "duplicate in campaign" => (Mailjet, Reason::Other),
        _ => return None,
    };
    Some(entry)
}

/// The reason a documented error gives, knowing whether the failure was permanent.
fn documented_reason(error: &str, hard_bounce: Option<bool>) -> Option<Reason> {
    let (_, reason) = documented_error(error)?;
    // A soft `no mail host` is a host that did not answer this time, not a domain
    // known to take no mail.
    if hard_bounce == Some(false) && error.trim().eq_ignore_ascii_case("no mail host") {
        return Some(Reason::TimedOut);
    }
    Some(reason)
}

/// Kind of a `bounce`: a greylisting that is not final is a deferral.
fn bounce_kind(error: Option<&str>, hard_bounce: Option<bool>) -> EventKind {
    let greylisted = error.is_some_and(|e| e.trim().eq_ignore_ascii_case("greylisted"));
    if greylisted && hard_bounce != Some(true) {
        EventKind::Deferred
    } else {
        EventKind::Bounce
    }
}

/// Kind of a `blocked`: Mailjet chose not to send (dropped), unless it could not build or
/// send the message (failed).
fn blocked_kind(group: Option<Group>) -> EventKind {
    match group {
        Some(Group::Content | Group::System) => EventKind::Failed,
        _ => EventKind::Dropped,
    }
}

/// Returns the receiving server's reply inside Mailjet's `sent (…)` wrapper, or the text.
fn reply_text(text: &str) -> &str {
    let text = text.trim();
    const WRAPPER: &str = "sent (";
    match text.get(..WRAPPER.len()) {
        Some(start) if start.eq_ignore_ascii_case(WRAPPER) => {
            let inner = &text[WRAPPER.len()..];
            inner.strip_suffix(')').unwrap_or(inner).trim()
        }
        _ => text,
    }
}

/// Fills `reply` from a reply text, also after a Postfix `said:` (`host … said: 550 …`).
fn complete_reply(reply: &mut Reply, text: &str) {
    reply.complete_from_text(text);
    if reply.code.is_none() {
        if let Some((_, said)) = text.split_once(" said: ") {
            reply.complete_from_text(said);
        }
    }
}

/// Returns at most [`MAX_FIELD_CHARS`] characters of `text`, trimmed.
fn short(text: &str) -> String {
    clip(text.trim(), MAX_FIELD_CHARS).to_owned()
}

/// Whether `id` is a decimal integer, as `MessageID` is documented.
fn is_decimal(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_CHARS && id.bytes().all(|b| b.is_ascii_digit())
}

/// Reads the message id: `MessageID`, else the deprecated `mj_message_id`, each from its
/// raw text. A decimal integer wins over any other text; a candidate that disagrees with
/// the one chosen goes to `metadata` with a warning.
fn message_id(fields: &mut Fields<'_>, metadata: &mut Map<String, Value>) -> Option<String> {
    let candidates: Vec<(&str, String)> = ["MessageID", "mj_message_id"]
        .into_iter()
        .filter_map(|key| fields.text(key).map(|id| (key, id.trim().to_owned())))
        .collect();
    if candidates.is_empty() {
        fields.warn("MessageID", "missing; message id left empty");
        return None;
    }
    let chosen = candidates
        .iter()
        .position(|(_, id)| is_decimal(id))
        .or_else(|| {
            candidates
                .iter()
                .position(|(_, id)| id.len() <= MAX_ID_CHARS)
        });
    let Some(chosen) = chosen else {
        fields.warn(
            candidates[0].0,
            format_args!("longer than {MAX_ID_CHARS} characters; kept in raw only"),
        );
        return None;
    };
    let (key, id) = &candidates[chosen];
    if !is_decimal(id) {
        fields.warn(
            key,
            format_args!(
                "`{}` is not a decimal integer as documented; kept as sent",
                clip(id, 40)
            ),
        );
    }
    for (other_key, other) in &candidates {
        if other_key != key && other != id {
            fields.warn(
                other_key,
                format_args!("differs from `{key}`; kept in metadata"),
            );
            if other.len() <= MAX_ID_CHARS {
                metadata.insert((*other_key).to_owned(), Value::String(other.clone()));
            }
        }
    }
    Some(id.clone())
}

/// Reads [`OBJECT_IDS`] as strings, leaving out `0` ("none").
fn object_ids(fields: &mut Fields<'_>) -> Vec<(&'static str, String)> {
    OBJECT_IDS
        .into_iter()
        .filter_map(|key| {
            let id = fields.text(key)?.trim().to_owned();
            let zero = id.bytes().all(|b| b == b'0');
            (!zero).then(|| (key, clip(&id, MAX_ID_CHARS).to_owned()))
        })
        .collect()
}

/// Copies [`OPTIONAL_TEXTS`] into `metadata` as sent, leaving out blank strings ("not
/// provided") and, like `rest_into`, values too large for metadata.
fn optional_texts(fields: &mut Fields<'_>, metadata: &mut Map<String, Value>) {
    for key in OPTIONAL_TEXTS {
        let Some(raw) = fields.raw(key) else {
            continue;
        };
        let blank = JsonType::of(raw) == JsonType::String
            && scalar_text(raw)
                .ok()
                .flatten()
                .is_none_or(|text| text.trim().is_empty());
        if blank {
            continue;
        }
        if raw.get().len() > MAX_METADATA_FIELD_BYTES {
            fields.warn(
                key,
                format_args!(
                    "{} bytes, too large for metadata; kept in raw only",
                    raw.get().len()
                ),
            );
            continue;
        }
        metadata.insert(key.to_owned(), exact_value(raw));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names() {
        assert_eq!(kind_of("sent"), EventKind::Delivered);
        assert_eq!(kind_of("open"), EventKind::Open);
        assert_eq!(kind_of("click"), EventKind::Click);
        assert_eq!(kind_of("bounce"), EventKind::Bounce);
        assert_eq!(kind_of("blocked"), EventKind::Dropped);
        assert_eq!(kind_of("spam"), EventKind::Complaint);
        assert_eq!(kind_of("unsub"), EventKind::Unsubscribe);
        assert_eq!(kind_of(" Sent "), EventKind::Delivered);
        assert_eq!(kind_of("typofix"), EventKind::Other);
        assert_eq!(kind_of("unsubscribe"), EventKind::Other);
    }

    #[test]
    fn every_documented_error_has_a_group_and_reason() {
        // The guide's table, row by row: (error_related_to, error).
        let table = [
            ("recipient", "user unknown", Reason::Invalid),
            ("recipient", "mailbox inactive", Reason::Invalid),
            ("recipient", "quota exceeded", Reason::Bounced),
            ("recipient", "blacklisted", Reason::Other),
            ("recipient", "spam reporter", Reason::Spam),
            ("domain", "invalid domain", Reason::Invalid),
            ("domain", "no mail host", Reason::Invalid),
            ("domain", "relay/access denied", Reason::Blocked),
            ("domain", "greylisted", Reason::Other),
            ("domain", "typofix", Reason::Invalid),
            ("content", "bad or empty template", Reason::Other),
            ("content", "error in template language", Reason::Other),
            ("spam", "sender blocked", Reason::Blocked),
            ("spam", "content blocked", Reason::Spam),
            ("spam", "policy issue", Reason::Blocked),
            ("system", "system issue", Reason::Other),
            ("system", "protocol issue", Reason::Other),
            ("system", "connection issue", Reason::Other),
            ("mailjet", "preblocked", Reason::Bounced),
            ("mailjet", "duplicate in campaign", Reason::Other),
        ];
        for (related, error, reason) in table {
            let (group, found) = documented_error(error).expect(error);
            assert_eq!(Some(group), group_of(related), "{error}");
            assert_eq!(found, reason, "{error}");
        }
        assert_eq!(
            documented_error(" User Unknown "),
            documented_error("user unknown")
        );
        assert_eq!(documented_error("mailbox full"), None);
        assert_eq!(group_of("elsewhere"), None);
    }

    #[test]
    fn a_soft_no_mail_host_is_a_timeout_not_an_invalid_domain() {
        assert_eq!(
            documented_reason("no mail host", Some(true)),
            Some(Reason::Invalid)
        );
        assert_eq!(
            documented_reason("no mail host", Some(false)),
            Some(Reason::TimedOut)
        );
        assert_eq!(
            documented_reason("no mail host", None),
            Some(Reason::Invalid)
        );
        assert_eq!(
            documented_reason("quota exceeded", Some(false)),
            Some(Reason::Bounced)
        );
        assert_eq!(documented_reason("strange", Some(true)), None);
    }

    #[test]
    fn greylisting_defers_unless_final() {
        assert_eq!(
            bounce_kind(Some("greylisted"), Some(false)),
            EventKind::Deferred
        );
        assert_eq!(bounce_kind(Some("Greylisted"), None), EventKind::Deferred);
        assert_eq!(
            bounce_kind(Some("greylisted"), Some(true)),
            EventKind::Bounce
        );
        assert_eq!(
            bounce_kind(Some("quota exceeded"), Some(false)),
            EventKind::Bounce
        );
        assert_eq!(bounce_kind(None, None), EventKind::Bounce);
    }

    #[test]
    fn blocked_is_dropped_unless_mailjet_could_not_send() {
        assert_eq!(blocked_kind(Some(Group::Recipient)), EventKind::Dropped);
        assert_eq!(blocked_kind(Some(Group::Mailjet)), EventKind::Dropped);
        assert_eq!(blocked_kind(Some(Group::Spam)), EventKind::Dropped);
        assert_eq!(blocked_kind(Some(Group::Content)), EventKind::Failed);
        assert_eq!(blocked_kind(Some(Group::System)), EventKind::Failed);
        assert_eq!(blocked_kind(None), EventKind::Dropped);
    }

    #[test]
    fn sent_wrapper_is_removed_before_codes_are_read() {
        let text = reply_text("sent (250 2.0.0 OK 1433333948 fa5si855896wjc.199 - gsmtp)");
        assert_eq!(text, "250 2.0.0 OK 1433333948 fa5si855896wjc.199 - gsmtp");
        let mut reply = Reply::default();
        complete_reply(&mut reply, text);
        assert_eq!(reply.code, Some(250));
        assert_eq!(reply.enhanced.as_deref(), Some("2.0.0"));
        assert_eq!(reply_text("  SENT (250 OK"), "250 OK");
        assert_eq!(reply_text("550 5.1.1 unknown"), "550 5.1.1 unknown");
        assert_eq!(reply_text("sentinel (x)"), "sentinel (x)");
        assert_eq!(reply_text("sent"), "sent");
        // Multi-byte text near the cut must not panic.
        assert_eq!(reply_text("sé (x)"), "sé (x)");
    }

    #[test]
    fn postfix_comments_have_their_code_after_said() {
        let mut reply = Reply::default();
        complete_reply(
            &mut reply,
            "host mx.example.com[192.0.2.1] said: 550 5.1.1 <a@example.com>: Recipient \
             address rejected: User unknown (in reply to RCPT TO command)",
        );
        assert_eq!(reply.code, Some(550));
        assert_eq!(reply.enhanced.as_deref(), Some("5.1.1"));
        let mut none = Reply::default();
        complete_reply(
            &mut none,
            "Host or domain name not found. Name service error for \
             name=lbjsnrftlsiuvbsren.com type=A: Host not found",
        );
        assert_eq!(none, Reply::default());
    }

    fn read_ids(json: &str) -> (Option<String>, Map<String, Value>, Vec<String>) {
        let raw = serde_json::value::RawValue::from_string(json.to_owned()).unwrap();
        let warnings = crate::ingest::fields::Warnings::default();
        let mut fields = Fields::parse(&raw, warnings.clone()).unwrap();
        let mut metadata = Map::new();
        let id = message_id(&mut fields, &mut metadata);
        (id, metadata, warnings.take())
    }

    #[test]
    fn message_ids_keep_every_digit() {
        let (id, metadata, warnings) =
            read_ids(r#"{"MessageID": 19421777835146491, "mj_message_id": "19421777835146491"}"#);
        assert_eq!(id.as_deref(), Some("19421777835146491"));
        assert!(
            metadata.is_empty() && warnings.is_empty(),
            "{metadata:?} {warnings:?}"
        );

        let (id, _, warnings) = read_ids(r#"{"MessageID": "123456789012345678901234567890"}"#);
        assert_eq!(id.as_deref(), Some("123456789012345678901234567890"));
        assert!(warnings.is_empty());

        // Through a float somewhere: the string copy is exact, so it wins.
        let (id, metadata, warnings) = read_ids(
            r#"{"MessageID": 1.9421777835146492e16, "mj_message_id": "19421777835146491"}"#,
        );
        assert_eq!(id.as_deref(), Some("19421777835146491"));
        assert_eq!(metadata["MessageID"], "1.9421777835146492e16");
        assert_eq!(
            warnings,
            ["field `MessageID`: differs from `mj_message_id`; kept in metadata"]
        );

        let (id, _, warnings) = read_ids(r#"{"MessageID": "abc-1"}"#);
        assert_eq!(id.as_deref(), Some("abc-1"));
        assert_eq!(
            warnings,
            ["field `MessageID`: `abc-1` is not a decimal integer as documented; kept as sent"]
        );

        let (id, _, warnings) = read_ids(r#"{"CustomID": "x"}"#);
        assert_eq!(id, None);
        assert_eq!(
            warnings,
            ["field `MessageID`: missing; message id left empty"]
        );

        let long = format!(r#"{{"MessageID": {}}}"#, "9".repeat(300));
        let (id, _, warnings) = read_ids(&long);
        assert_eq!(id, None);
        assert_eq!(
            warnings,
            ["field `MessageID`: longer than 200 characters; kept in raw only"]
        );
    }
}
