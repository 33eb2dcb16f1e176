//! Resend webhooks: one JSON object per request, `{type, created_at, data}`
//! (<https://resend.com/docs/dashboard/webhooks/event-types>), signed by Svix.
//!
//! E-mail events, one per address of `data.to`:
//! - `email.scheduled` and `email.sent` → queued (`sent` means the API accepted it and
//!   Resend "will attempt to deliver"), `email.delivered` → delivered,
//!   `email.delivery_delayed` → deferred;
//! - `email.bounced` → bounce: `bounce.type` Permanent → hard, Transient (or Temporary, as
//!   the prose says) → soft, Undetermined → undetermined; the reason from `bounce.subType`
//!   (NoEmail → invalid, MailboxFull / General → bounced, MessageTooLarge → other,
//!   ContentRejected / AttachmentRejected → blocked). `subType: Suppressed` (the documented
//!   sample) was never attempted: dropped;
//! - `email.complained` → complaint, `email.opened`, `email.clicked` (`data.click`),
//!   `email.failed` → failed (`failed.reason` in metadata), `email.suppressed` → dropped
//!   (previous bounce → bounced, previous complaint → spam), `email.received` → other.
//!
//! Contact events (`contact.*`) are stored as `other` for `data.email`. Domain events have
//! no recipient and are set aside in quarantine saying so (deselect them in Resend).
//!
//! `created_at` (top level) is when the event happened, with an offset: exact; clicks
//! prefer `data.click.timestamp`. `data.email_id` is the message id (the RFC Message-ID is
//! kept in metadata). Nothing in the body is unique per event (Svix's `svix-id` header
//! is), so dedup hashes the event: a retry repeats the body. `data.tags` is an object:
//! `key=value` tags.
//!
//! Signature (Svix, <https://docs.svix.com/receiving/verifying-payloads/how-manual>):
//! `svix-signature` holds space-separated `v1,<base64>` entries, each an HMAC-SHA256 of
//! `{svix-id}.{svix-timestamp}.{raw body}` keyed with the base64 part of the
//! `whsec_...` secret; any entry may match (secret rotation). The unbranded
//! `webhook-id` / `webhook-timestamp` / `webhook-signature` headers are read too.
//! Timestamps more than 5 minutes away are refused: Svix signs every attempt anew.

use serde_json::{Map, Value};

use super::{Element, ElementError, MAX_FIELD_CHARS, Provider, emit, recipients, set_time};
use crate::config::SourceConfig;
use crate::event::{BounceClass, EmailAddress, Event, EventKind, Reason};
use crate::ingest::fields::{Fields, clip};
use crate::ingest::smtp::{self, Reply};
use crate::ingest::sources::SourceContext;
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
        let mut checks = verify::credential_checks(
            self.name(),
            settings,
            &["signing_secret", "max_signature_age_secs"],
        )?;
        match verify::required(
            settings.signing_secret.as_ref().map(|s| s.expose()),
            "signing_secret",
        )? {
            Some(secret) => checks.push(Box::new(SvixSignature::new(
                secret,
                settings
                    .max_signature_age_secs
                    .unwrap_or(DEFAULT_MAX_AGE_SECS),
            )?)),
            None if settings.max_signature_age_secs.is_some() => {
                return Err("`max_signature_age_secs` needs `signing_secret`".to_owned());
            }
            None => {}
        }
        Ok(checks)
    }

    fn normalize(&self, element: &Element<'_>, out: &mut Vec<Event>) -> Result<(), ElementError> {
        let mut fields = element.fields()?;
        let name = fields
            .text("type")
            .ok_or(ElementError::MissingEventName("type"))?;
        let mut data = fields
            .object("data")
            .ok_or_else(|| ElementError::Malformed("missing `data` object".to_owned()))?;
        let lower = name.trim().to_lowercase();
        if lower.starts_with("domain.") {
            return Err(ElementError::Malformed(format!(
                "`{}` is about a sending domain, not a recipient; deselect domain events in \
                 Resend's webhook settings",
                clip(&name, 40)
            )));
        }
        let mut bounce = data.object("bounce");
        let mut suppressed = data.object("suppressed");
        let meaning = meaning(&lower, bounce.as_mut(), suppressed.as_mut());
        let recipients = recipients(&mut data, &["to", "email"])?;
        let first = recipients[0].clone();
        let mut event = if meaning.documented {
            element.documented_event(&name, meaning.kind, first)
        } else {
            element.event(&name, meaning.kind, first, &fields)
        };
        let mut click = data.object("click");
        let read = match click.as_mut().filter(|c| c.has("timestamp")) {
            Some(click) => element.time(click, "timestamp", true),
            None => element.time(&mut fields, "created_at", true),
        };
        set_time(&mut event, read);
        event.bounce_class = meaning.class;
        event.reason = meaning.reason;

        event.message_id = data.text("email_id");
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
        if let Some(click) = click.as_mut() {
            event.ip = click.text("ipAddress");
            event.user_agent = click.text("userAgent");
            event.click_url = click
                .text("link")
                .map(|url| clip(&url, MAX_FIELD_CHARS).to_owned());
            click.rest_into(&mut event.metadata);
        }
        if let Some(raw) = data.raw("tags") {
            let tags: Map<String, Value> = serde_json::from_str(raw.get()).unwrap_or_default();
            for (key, value) in tags {
                match value {
                    Value::String(value) => event.tags.push(format!("{key}={value}")),
                    Value::Null => event.tags.push(key),
                    other => event.tags.push(format!("{key}={other}")),
                }
            }
        }
        if let Some(bounce) = bounce.as_mut() {
            let text = bounce
                .texts("diagnosticCode")
                .into_iter()
                .next()
                .or_else(|| bounce.text("message"));
            if let Some(text) = text {
                let text = smtp::strip_diagnostic_type(&text).to_owned();
                let mut reply = Reply::default();
                reply.complete_from_text(&text);
                event.smtp_code = reply.code;
                event.smtp_enhanced = reply.enhanced.clone();
                if event.reason.is_none() && event.kind == EventKind::Bounce {
                    event.reason = smtp::classify(&reply, Some(&text)).or(Some(Reason::Bounced));
                }
                event.smtp_response = Some(clip(&text, MAX_FIELD_CHARS).to_owned());
            }
            bounce.rest_into(&mut event.metadata);
        }
        if let Some(suppressed) = suppressed.as_mut() {
            suppressed.rest_into(&mut event.metadata);
        }
        data.rest_into(&mut event.metadata);
        fields.rest_into(&mut event.metadata);
        emit(event, recipients, fields.warnings(), out);
        Ok(())
    }
}

/// What a Resend event type means.
struct Meaning {
    kind: EventKind,
    class: Option<BounceClass>,
    reason: Option<Reason>,
    documented: bool,
}

fn meaning(
    name: &str,
    bounce: Option<&mut Fields<'_>>,
    suppressed: Option<&mut Fields<'_>>,
) -> Meaning {
    let plain = |kind: EventKind, reason: Option<Reason>| Meaning {
        kind,
        class: None,
        reason,
        documented: false,
    };
    match name {
        "email.scheduled" | "email.sent" => plain(EventKind::Queued, None),
        "email.delivered" => plain(EventKind::Delivered, None),
        "email.delivery_delayed" => plain(EventKind::Deferred, None),
        "email.complained" => plain(EventKind::Complaint, Some(Reason::Spam)),
        "email.opened" => plain(EventKind::Open, None),
        "email.clicked" => plain(EventKind::Click, None),
        "email.failed" => plain(EventKind::Failed, Some(Reason::Other)),
        "email.suppressed" => {
            let reason = suppressed
                .and_then(|s| s.text_of(&["reason", "type"]))
                .map(|r| r.to_lowercase());
            let reason = match reason.as_deref() {
                Some(r) if r.contains("bounce") => Reason::Bounced,
                Some(r) if r.contains("complaint") => Reason::Spam,
                _ => Reason::Other,
            };
            plain(EventKind::Dropped, Some(reason))
        }
        "email.bounced" => {
            let mut bounce = bounce;
            let bounce_type = bounce
                .as_mut()
                .and_then(|b| b.text("type"))
                .unwrap_or_default();
            let subtype = bounce
                .as_mut()
                .and_then(|b| b.text("subType"))
                .unwrap_or_default();
            if subtype == "Suppressed" || subtype == "OnAccountSuppressionList" {
                return plain(EventKind::Dropped, Some(Reason::Bounced));
            }
            let class = match bounce_type.as_str() {
                "Permanent" => BounceClass::Hard,
                "Transient" | "Temporary" => BounceClass::Soft,
                _ => BounceClass::Undetermined,
            };
            let reason = match subtype.as_str() {
                "NoEmail" => Some(Reason::Invalid),
                "MailboxFull" | "General" => Some(Reason::Bounced),
                "MessageTooLarge" => Some(Reason::Other),
                "ContentRejected" | "AttachmentRejected" => Some(Reason::Blocked),
                _ => None,
            };
            Meaning {
                kind: EventKind::Bounce,
                class: Some(class),
                reason,
                documented: false,
            }
        }
        "email.received" | "contact.created" | "contact.updated" | "contact.deleted" => Meaning {
            documented: true,
            ..plain(EventKind::Other, None)
        },
        _ => plain(EventKind::Other, None),
    }
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
}
