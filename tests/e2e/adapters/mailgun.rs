//! Mailgun: one `{"signature", "event-data"}` object per request, Unix seconds with a
//! fraction, `failed` split by `severity` and `reason`. The default `mailgun` source has no
//! signing key, so fixtures are posted as they are (their signatures are the docs'
//! placeholders); signatures are tested in `verification.rs`.
//!
//! Current-docs samples (2026) carry `account.id` and `domain.name`; legacy-docs samples
//! (2013-2022) do not. Empty `user-variables` and `storage` (`[]` or `{}`) are left out of
//! metadata.

use serde_json::{Value, json};

use super::{Expected, assert_fixture, check};
use crate::helpers::{TestApp, read_fixture, spawn_app};

const ACCOUNT: &str = "1234567890303a4bd1f33898";
const SAMPLE_DOMAIN: &str = "sample.mailgun.com";
const SAMPLE_RECIPIENT: &str = "recipient@sample.mailgun.com";
const SAMPLE_SENDER: &str = "sender@sample.mailgun.com";
const SAMPLE_SUBJECT: &str = "Sample webhook payload";
/// The message the current docs' opened, clicked and unsubscribed samples are about.
const ENGAGED_MESSAGE: &str = "20260205213049.8e3a7bf607f78309@sample.mailgun.com";
const CHROME_ON_MAC: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) \
                             AppleWebKit/537.36 (KHTML, like Gecko) Chrome/144.0.0.0 \
                             Safari/537.36";

/// A Mailgun event with its id and time (always Unix seconds: `exact`).
fn mailgun(
    event: &'static str,
    kind: &'static str,
    id: &'static str,
    utc: &'static str,
) -> Expected {
    Expected {
        provider_event: event,
        kind,
        provider_event_id: Some(id),
        occurred_at: Some(utc),
        time_quality: "exact",
        ..Expected::default()
    }
}

/// Adds the current docs' account and domain to `metadata`.
fn current(mut metadata: Value) -> Value {
    metadata["account"] = json!({"id": ACCOUNT});
    metadata["domain"] = json!({"name": SAMPLE_DOMAIN});
    metadata
}

/// The flags of the current docs' delivered and failed samples.
fn sample_flags() -> Value {
    json!({
        "is-authenticated": true,
        "is-routed": false,
        "is-big": false,
        "is-system-test": false,
        "is-test-mode": false
    })
}

/// The legacy samples' flags (suppress-bounce, connection limit).
fn legacy_flags() -> Value {
    json!({
        "is-routed": false,
        "is-authenticated": true,
        "is-system-test": false,
        "is-test-mode": false
    })
}

/// The current docs' delivered sample (also under a subaccount signature).
fn delivered_sample() -> Expected {
    Expected {
        recipient: SAMPLE_RECIPIENT,
        message_id: Some("20260203192030.53383e583ab41f62@sample.mailgun.com"),
        smtp_code: Some(250),
        smtp_response: Some("OK"),
        subject: Some(SAMPLE_SUBJECT),
        sender: Some(SAMPLE_SENDER),
        tags: &["webhook_payload"],
        metadata: current(json!({
            "flags": sample_flags(),
            "message-size": 341,
            "storage": {
                "key": "XXXXAQVV4uE1s5YYj9ZJq7Ge6flueUXXXX",
                "url": "https://storage-us-east4.api.mailgun.net/v3/domains/mailgun.com/messages/BAABAAdzYub9ZBnyVMlI_YnQHR1rCYY1Yg"
            },
            "log-level": "info",
            "recipient-domain": "sample.mailgun.com",
            "primary-dkim": "smtp._domainkey.sample.mailgun.com",
            "recipient-provider": "Other",
            "delivery-status": {
                "attempt-no": 1,
                "code": 250,
                "message": "OK",
                "description": null,
                "session-seconds": 1.276,
                "enhanced-code": null,
                "mx-host": "mailgun-com.mail.protection.outlook.com",
                "certificate-verified": true,
                "tls": true,
                "utf8": true,
                "first-delivery-attempt-seconds": 0.062
            },
            "envelope": {
                "sender": SAMPLE_SENDER,
                "targets": SAMPLE_RECIPIENT,
                "transport": "smtp",
                "sending-ip": "161.38.194.10"
            }
        })),
        ..mailgun(
            "delivered",
            "delivered",
            "MXcc2gEpS-eN8HfkOnmK2w",
            "2026-02-03T19:20:31.6585283Z",
        )
    }
}

/// A failed event built from the legacy field list (`reason` only, no delivery-status),
/// for joan@example.com.
fn built_failure(kind: &'static str, id: &'static str, reason: &'static str) -> Expected {
    Expected {
        recipient: "joan@example.com",
        message_id: Some("20180622211249.1.2A6098970A380E12@example.org"),
        subject: Some("Test Subject"),
        sender: Some("john@example.org"),
        metadata: json!({
            "log-level": "error",
            "severity": "permanent",
            "reason": reason,
            "recipient-domain": "example.com"
        }),
        ..mailgun("failed", kind, id, "2018-06-22T21:12:49.818328Z")
    }
}

// ---------------------------------------------------------------------------------------
// One test per fixture.

#[tokio::test]
async fn mailgun_accepted_is_queued() {
    assert_fixture(
        "mailgun/accepted.json",
        &[Expected {
            recipient: SAMPLE_RECIPIENT,
            message_id: Some("20260203192638.000be97f99f8cea1@sample.mailgun.com"),
            subject: Some(SAMPLE_SUBJECT),
            sender: Some(SAMPLE_SENDER),
            tags: &["webhook_payload"],
            metadata: current(json!({
                "api-key-id": "12345678-87654321",
                "envelope": {
                    "sender": SAMPLE_SENDER,
                    "targets": SAMPLE_RECIPIENT,
                    "transport": "smtp"
                },
                "flags": {"is-authenticated": true, "is-test-mode": false},
                "log-level": "info",
                "message-size": 341,
                "method": "HTTP",
                "recipient-domain": "sample.mailgun.com",
                "storage": {
                    "key": "XXXXAQVV4uE1s5YYj9ZJq7Ge6flueUXXXX",
                    "url": "https://storage-us-west1.api.mailgun.net/v3/domains/sample.mailgun.com/messages/BAABAQcQSe_CqzXJ2_tP9JxkOh_fa1aQZA"
                }
            })),
            ..mailgun(
                "accepted",
                "queued",
                "CCXMjJ7nQi2N3BPigGOdgQ",
                "2026-02-03T19:26:38.372891Z",
            )
        }],
    )
    .await;
}

#[tokio::test]
async fn mailgun_accepted_routed_copy_is_queued_for_the_forwarding_target() {
    // The route forwards team@example.org to john@example.com: `recipient` is the target.
    assert_fixture(
        "mailgun/accepted_routed.json",
        &[Expected {
            recipient: "john@example.com",
            message_id: Some("20180622182958.1.48906CB188F1A454@exmple.org"),
            subject: Some("Test Subject"),
            sender: Some("sender@exmple.org"),
            metadata: json!({
                "log-level": "info",
                "method": "smtp",
                "routes": [{
                    "expression": "match_recipient(\"team@example.org\")",
                    "id": "5b295a4aa4764a000108508c",
                    "match": {"recipient": "team@example.org"}
                }],
                "envelope": {
                    "sender": "sender@example.org",
                    "transport": "smtp",
                    "targets": "john@example.com"
                },
                "flags": {
                    "is-routed": true,
                    "is-authenticated": false,
                    "is-system-test": false,
                    "is-test-mode": false
                },
                "message-size": 586,
                "storage": {
                    "url": "https://se.api.mailgun.net/v3/domains/example.org/messages/eyJwI...",
                    "key": "eyJwI..."
                },
                "recipient-domain": "example.com"
            }),
            ..mailgun(
                "accepted",
                "queued",
                "cWgTfzV6QQiXY4PqhlLClw",
                "2018-06-22T18:29:58.719447Z",
            )
        }],
    )
    .await;
}

#[tokio::test]
async fn mailgun_clicked_has_the_url_and_the_readers_ip_and_agent() {
    assert_fixture(
        "mailgun/clicked.json",
        &[Expected {
            recipient: SAMPLE_RECIPIENT,
            message_id: Some(ENGAGED_MESSAGE),
            click_url: Some("https://sample.mailgun.com"),
            ip: Some("9.169.124.21"),
            user_agent: Some(
                "Mozilla/5.0 (Linux; Android 9; itel A27) AppleWebKit/537.36 \
                 (KHTML, like Gecko) Chrome/133.0.6943.143 Mobile Safari/537.36",
            ),
            tags: &["webhook_payload"],
            metadata: current(json!({
                "log-level": "info",
                "delivered-at": 1770327049,
                "recipient-domain": "sample.mailgun.com",
                "recipient-provider": "Other",
                "client-name": "Chrome Mobile",
                "client-os": "Android",
                "client-type": "mobile browser",
                "device-type": "mobile",
                "geolocation": {
                    "city": "Unknown",
                    "country": "GB",
                    "region": "Unknown",
                    "timezone": "Europe/London"
                }
            })),
            ..mailgun(
                "clicked",
                "click",
                "A9dLUrCXQjK92TlnW3zkIA",
                "2026-02-05T21:31:58.6648676Z",
            )
        }],
    )
    .await;
}

#[tokio::test]
async fn mailgun_complained_is_a_spam_complaint_without_a_reader_ip() {
    // `envelope.sending-ip` is Mailgun's sending IP: metadata, not `ip`.
    assert_fixture(
        "mailgun/complained.json",
        &[Expected {
            reason: Some("spam"),
            recipient: SAMPLE_RECIPIENT,
            message_id: Some("20260212182531.0d5ed3254c319957@sample.mailgun.com"),
            subject: Some(SAMPLE_SUBJECT),
            sender: Some(SAMPLE_SENDER),
            tags: &["webhook_payload"],
            metadata: current(json!({
                "log-level": "warn",
                "message-size": 11002,
                "recipient-domain": "sample.mailgun.com",
                "recipient-provider": "Other",
                "envelope": {"sending-ip": "161.38.194.10"},
                "storage": {
                    "key": "XXXXAQVV4uE1s5YYj9ZJq7Ge6flueUXXXX",
                    "url": "https://storage-us-west1.api.mailgun.net/v3/domains/sample.mailgun.com/messages/BAABAQVV4uE1s5YYj9ZJq7Ge6flueUcDZQ"
                }
            })),
            ..mailgun(
                "complained",
                "complaint",
                "rIVDlyk8SY-mJauQoYmNFA",
                "2026-02-12T18:26:12.2684145Z",
            )
        }],
    )
    .await;
}

#[tokio::test]
async fn mailgun_delivered_keeps_the_recipient_not_the_to_header() {
    // The sample's `To` header (recipient@mailgun.com) differs from `recipient`.
    assert_fixture("mailgun/delivered.json", &[delivered_sample()]).await;
}

#[tokio::test]
async fn mailgun_delivered_under_a_subaccount_signature_is_the_same_event() {
    // Set aside: it repeats delivered.json's event-data with the subaccount signature block,
    // so after delivered.json it is a duplicate (same id, same time), as a retry would be.
    let fixture = "mailgun/set_aside/delivered_subaccount_parent_signature.json";
    assert_fixture(fixture, &[delivered_sample()]).await;

    let app = spawn_app().await;
    let (status, report) = app.post_fixture("mailgun", "mailgun/delivered.json").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["accepted"], 1, "{report}");
    let (status, report) = app.post_fixture("mailgun", fixture).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["accepted"], 0, "{report}");
    assert_eq!(report["duplicates"], 1, "{report}");
    assert_eq!(app.events("").await.len(), 1);
}

#[tokio::test]
async fn mailgun_permanent_bounce_is_hard_as_mailgun_states() {
    // bounce-type "hard"; "mailbox unavailable" is an address that does not work.
    let message = "5.5.0 Requested action not taken: mailbox unavailable (S2017062302). \
                   [BN3PEPF0000B36D.namprd21.prod.outlook.com 2026-02-12T17:42:55.527Z \
                   08DE657A58651558]";
    assert_fixture(
        "mailgun/failed_permanent_bounce.json",
        &[Expected {
            bounce_class: Some("hard"),
            reason: Some("invalid"),
            recipient: "badrecipient@sample.mailgun.com",
            message_id: Some("20260212174255.58bbb7ce85a423e5@mailgun.com"),
            smtp_code: Some(550),
            smtp_enhanced: Some("5.5.0"),
            smtp_response: Some(message),
            subject: Some(SAMPLE_SUBJECT),
            sender: Some(SAMPLE_SENDER),
            tags: &["webhook_payload"],
            metadata: current(json!({
                "severity": "permanent",
                "reason": "bounce",
                "flags": sample_flags(),
                "message-size": 384,
                "storage": {
                    "key": "XXXXAQVV4uE1s5YYj9ZJq7Ge6flueUXXXX",
                    "url": "https://storage-us-east4.api.mailgun.net/v3/domains/sample.mailgun.com/messages/BAABAAfjqLGlFIjZf6pPUoM8bTIKzkQ5Zg"
                },
                "log-level": "error",
                "recipient-domain": "sample.mailgun.com",
                "primary-dkim": "new._domainkey.sample.mailgun.com",
                "recipient-provider": "Other",
                "delivery-status": {
                    "attempt-no": 1,
                    "code": 550,
                    "message": message,
                    "description": null,
                    "session-seconds": 0.208,
                    "enhanced-code": "5.5.0",
                    "mx-host": "802679870.pamx1.hotmail.com",
                    "certificate-verified": true,
                    "tls": true,
                    "utf8": true,
                    "first-delivery-attempt-seconds": 0.066,
                    "bounce-type": "hard"
                },
                "envelope": {
                    "sender": SAMPLE_SENDER,
                    "targets": "badrecipient@sample.mailgun.com",
                    "transport": "smtp",
                    "sending-ip": "161.38.194.10"
                }
            })),
            ..mailgun(
                "failed",
                "bounce",
                "2kFItcrLQuKTdp-Ia2Xr7w",
                "2026-02-12T17:42:55.5923693Z",
            )
        }],
    )
    .await;
}

#[tokio::test]
async fn mailgun_delayed_bounce_is_a_hard_bounce_from_its_5_1_1_reply() {
    // `reason: generic` with `flags.is-delayed-bounce`: a bounce message after the 250.
    // No bounce-type: 5.1.1 (no such mailbox) makes it hard. The reply loses its DSN type
    // (`smtp;`); the description is NDR prose, kept in metadata only.
    assert_fixture(
        "mailgun/failed_permanent_delayed_bounce.json",
        &[Expected {
            bounce_class: Some("hard"),
            reason: Some("invalid"),
            recipient: "christest123@test.com",
            message_id: Some("20221019211537.93011d31ea99c5a8@test.com"),
            smtp_code: Some(550),
            smtp_enhanced: Some("5.1.1"),
            smtp_response: Some(
                "550-5.1.1 The email account that you tried to reach does not exist.",
            ),
            subject: Some("Testing delayed bounce"),
            sender: Some("test@test.com"),
            metadata: json!({
                "severity": "permanent",
                "reason": "generic",
                "storage": {
                    "url": "https://storage-us-east4.api.mailgun.net/v3/domains/...",
                    "region": "us-east4",
                    "key": "AwABB...",
                    "env": "production"
                },
                "delivery-status": {
                    "bounce-code": "5.1.1",
                    "message": "smtp; 550-5.1.1 The email account that you tried to reach does not exist.",
                    "code": 550,
                    "description": "I'm sorry to have to inform you that your message could not be delivered to one or more recipients.",
                    "enhanced-code": "5.1.1"
                },
                "log-level": "error",
                "flags": {"is-delayed-bounce": true},
                "envelope": {},
                "message-size": 275
            }),
            ..mailgun(
                "failed",
                "bounce",
                "ZDMqRgjLTDi6rQcy7K60aA",
                "2022-10-19T21:15:38.4046676Z",
            )
        }],
    )
    .await;
}

#[tokio::test]
async fn mailgun_old_failure_is_failed_and_timed_out_not_a_bounce() {
    // Mailgun gave up after retrying for hours: nobody refused the address permanently.
    assert_fixture(
        "mailgun/failed_permanent_old.json",
        &[Expected {
            reason: Some("timed_out"),
            ..built_failure("failed", "BUILTfromFIELDLIST-old", "old")
        }],
    )
    .await;
}

#[tokio::test]
async fn mailgun_suppress_bounce_is_dropped_without_an_smtp_code() {
    // Never attempted: 605 is Mailgun's own code, not SMTP; the description is the text.
    // The docs' sample says `recipient` slava@mailgun.com with `To` joan@example.com:
    // `recipient` wins.
    assert_fixture(
        "mailgun/failed_permanent_suppress_bounce.json",
        &[Expected {
            reason: Some("bounced"),
            recipient: "slava@mailgun.com",
            message_id: Some("20180622211249.1.2A6098970A380E12@example.org"),
            smtp_response: Some("Not delivering to previously bounced address"),
            subject: Some("Test Subject"),
            sender: Some("john@example.org"),
            metadata: json!({
                "log-level": "error",
                "severity": "permanent",
                "reason": "suppress-bounce",
                "envelope": {
                    "sender": "john@example.org",
                    "transport": "smtp",
                    "targets": "joan@example.com"
                },
                "flags": legacy_flags(),
                "delivery-status": {
                    "attempt-no": 1,
                    "message": "",
                    "code": 605,
                    "description": "Not delivering to previously bounced address",
                    "session-seconds": 0.0
                },
                "message-size": 867,
                "storage": {
                    "url": "https://se.api.mailgun.net/v3/domains/example.org/messages/eyJwI...",
                    "key": "eyJwI..."
                },
                "recipient-domain": "mailgun.com"
            }),
            ..mailgun(
                "failed",
                "dropped",
                "pl271FzxTTmGRW8Uj3dUWw",
                "2018-06-22T21:12:49.818328Z",
            )
        }],
    )
    .await;
}

#[tokio::test]
async fn mailgun_suppress_complaint_is_dropped_as_spam() {
    assert_fixture(
        "mailgun/failed_permanent_suppress_complaint.json",
        &[Expected {
            reason: Some("spam"),
            ..built_failure(
                "dropped",
                "BUILTfromFIELDLIST-sup-compl",
                "suppress-complaint",
            )
        }],
    )
    .await;
}

#[tokio::test]
async fn mailgun_suppress_unsubscribe_is_dropped_as_unsubscribed() {
    assert_fixture(
        "mailgun/failed_permanent_suppress_unsubscribe.json",
        &[Expected {
            reason: Some("unsubscribed"),
            ..built_failure(
                "dropped",
                "BUILTfromFIELDLIST-sup-unsub",
                "suppress-unsubscribe",
            )
        }],
    )
    .await;
}

#[tokio::test]
async fn mailgun_temporary_failure_is_deferred_and_blocked_by_a_blacklist() {
    // 421 without an enhanced code (the IP 161.38.194.10 in the text is not one); the text
    // says the sending IP is blacklisted. `recipient-domain: free.fr` is the docs' own
    // inconsistency, kept as sent.
    let message = "Your IP (161.38.194.10) is temporary blacklisted by an anti-troyan rule, \
                   retry later and/or visit http://sample.mailgun.com/";
    assert_fixture(
        "mailgun/failed_temporary.json",
        &[Expected {
            reason: Some("blocked"),
            recipient: "tempfailrecipient@sample.mailgun.com",
            message_id: Some("20260212180106.5c8f35804ae3fd54@sample.mailgun.com"),
            smtp_code: Some(421),
            smtp_response: Some(message),
            subject: Some(SAMPLE_SUBJECT),
            sender: Some(SAMPLE_SENDER),
            tags: &["webhook_payload"],
            metadata: current(json!({
                "severity": "temporary",
                "reason": "generic",
                "flags": sample_flags(),
                "message-size": 392,
                "storage": {
                    "key": "XXXXAQVV4uE1s5YYj9ZJq7Ge6flueUXXXX",
                    "url": "https://storage-us-west1.api.mailgun.net/v3/domains/sample.mailgun.com/messages/BAABAQdkRjek67WfRENNirr66rsdtk9IYg"
                },
                "log-level": "warn",
                "recipient-domain": "free.fr",
                "primary-dkim": "smtp._domainkey.sample.mailgun.com",
                "recipient-provider": "Free FR",
                "delivery-status": {
                    "attempt-no": 1,
                    "code": 421,
                    "message": message,
                    "description": null,
                    "session-seconds": 0.478,
                    "retry-seconds": 600,
                    "enhanced-code": null,
                    "mx-host": "mx1.sample.mailgun.com",
                    "first-delivery-attempt-seconds": 0.365
                },
                "envelope": {
                    "sender": "postmaster@sample.mailgun.com",
                    "targets": "tempfailrecipient@sample.mailgun.com",
                    "transport": "smtp",
                    "sending-ip": "161.38.194.10"
                }
            })),
            ..mailgun(
                "failed",
                "deferred",
                "YusK9KhoTwe2C00iRxsEqQ",
                "2026-02-12T18:01:07.4288595Z",
            )
        }],
    )
    .await;
}

#[tokio::test]
async fn mailgun_connection_limit_is_deferred_with_its_4_7_code() {
    // 4.7.x is a policy refusal (here a connection limit): blocked, retried by Mailgun.
    let message =
        "4.7.652 The mail server [xxx.xxx.xxx.xxx] has exceeded the maximum number of connections.";
    assert_fixture(
        "mailgun/failed_temporary_connection_limit.json",
        &[Expected {
            reason: Some("blocked"),
            recipient: "test@test.com",
            message_id: Some("20221006142837.1618e01bf42da9fa@test.com"),
            smtp_code: Some(451),
            smtp_enhanced: Some("4.7.652"),
            smtp_response: Some(message),
            subject: Some("Test send"),
            sender: Some("test@test.com"),
            metadata: json!({
                "severity": "temporary",
                "reason": "generic",
                "storage": {
                    "url": "https://storage-us-east4.api.mailgun.net/v3/domains/...",
                    "region": "us-east4",
                    "key": "AwABB...",
                    "env": "production"
                },
                "delivery-status": {
                    "tls": true,
                    "mx-host": "hotmail-com.olc.protection.outlook.com",
                    "code": 451,
                    "description": "",
                    "session-seconds": 0.7517080307006836,
                    "utf8": true,
                    "retry-seconds": 600,
                    "enhanced-code": "4.7.652",
                    "attempt-no": 1,
                    "message": message,
                    "certificate-verified": true
                },
                "batch": {"id": "633ee6154618b2fed628ccb0"},
                "recipient-domain": "test.com",
                "flags": legacy_flags(),
                "log-level": "warn",
                "template": {"name": "test"},
                "envelope": {
                    "transport": "smtp",
                    "sender": "test@test.com",
                    "sending-ip": "xxx.xxx.xxx.xxx",
                    "targets": "test@test.com"
                },
                "message-size": 3499
            }),
            ..mailgun(
                "failed",
                "deferred",
                "xYrATi63Rke8EC_s7EoJeA",
                "2022-10-06T14:28:43.871657Z",
            )
        }],
    )
    .await;
}

#[tokio::test]
async fn mailgun_no_mx_is_deferred_with_mailguns_498_and_an_invalid_domain() {
    // 498 is Mailgun's code for "No MX", inside the SMTP range, so it is kept; Mailgun
    // retries (the domain may resolve later), hence deferred, but the cause is the domain.
    // One event per failure: `recipient` is bar@example.com, not both addresses of `To`.
    assert_fixture(
        "mailgun/failed_temporary_no_mx.json",
        &[Expected {
            reason: Some("invalid"),
            recipient: "bar@example.com",
            message_id: Some("20130813230036.10303.40433@samples.mailgun.org"),
            smtp_code: Some(498),
            smtp_response: Some("No MX for [example.com]"),
            subject: Some("Hello"),
            sender: Some("me@samples.mailgun.org"),
            metadata: json!({
                "severity": "temporary",
                "reason": "generic",
                "envelope": {"sender": "me@samples.mailgun.org", "transport": ""},
                "delivery-status": {
                    "code": 498,
                    "message": "No MX for [example.com]",
                    "retry-seconds": 900,
                    "description": "No MX for [example.com]"
                },
                "flags": {"is-authenticated": true, "is-test-mode": false},
                "message-size": 370
            }),
            ..mailgun(
                "failed",
                "deferred",
                "czsjqFATSlC3QtAK-C80nw",
                "2013-08-13T23:11:11.10744Z",
            )
        }],
    )
    .await;
}

#[tokio::test]
async fn mailgun_list_member_uploaded_and_subscribed_is_a_subscribe() {
    assert_fixture(
        "mailgun/list_member_uploaded.json",
        &[Expected {
            recipient: "user@example.com",
            metadata: json!({
                "task-id": "235fsc00607511e9a4sa0a6d3b5f5rt6",
                "mailing-list": {"address": "list@example.com"},
                "log-level": "info",
                "member": {"name": "", "subscribed": true, "address": "user@example.com"}
            }),
            ..mailgun(
                "list_member_uploaded",
                "subscribe",
                "2342sd234asDSDsdfsd",
                "2019-04-16T18:26:38.84909Z",
            )
        }],
    )
    .await;
}

#[tokio::test]
async fn mailgun_list_member_upload_error_names_no_recipient_and_is_quarantined() {
    // `member-description` is the unreadable line of the upload, not an address.
    assert_quarantined_fixture(
        "mailgun/set_aside/list_member_upload_error.json",
        "no valid recipient address: `list_member_upload_error` is a report about a mailing \
         list and names no recipient (Mailgun sends no webhook for it)",
    )
    .await;
}

#[tokio::test]
async fn mailgun_list_uploaded_names_no_recipient_and_is_quarantined() {
    assert_quarantined_fixture(
        "mailgun/set_aside/list_uploaded.json",
        "no valid recipient address: `list_uploaded` is a report about a mailing list and \
         names no recipient (Mailgun sends no webhook for it)",
    )
    .await;
}

#[tokio::test]
async fn mailgun_opened_has_the_readers_ip_and_agent_and_its_device_in_metadata() {
    assert_fixture(
        "mailgun/opened.json",
        &[Expected {
            recipient: SAMPLE_RECIPIENT,
            message_id: Some(ENGAGED_MESSAGE),
            ip: Some("38.142.208.162"),
            user_agent: Some(CHROME_ON_MAC),
            tags: &["webhook_payload"],
            metadata: current(json!({
                "log-level": "info",
                "delivered-at": 1770327049,
                "recipient-domain": "sample.mailgun.com",
                "recipient-provider": "Other",
                "client-name": "Chrome",
                "client-os": "OS X",
                "client-type": "browser",
                "device-type": "desktop",
                "geolocation": {
                    "city": "San Antonio",
                    "country": "US",
                    "region": "TX",
                    "timezone": "America/Chicago"
                }
            })),
            ..mailgun(
                "opened",
                "open",
                "q7DMpbLFRKW1QuiLC9XV4Q",
                "2026-02-05T21:31:14.5549328Z",
            )
        }],
    )
    .await;
}

#[tokio::test]
async fn mailgun_apple_bot_open_is_kept_as_an_open_flagged_as_a_bot() {
    // The docs' fragment: no id, no message: only what it has.
    assert_fixture(
        "mailgun/opened_bot_apple.json",
        &[Expected {
            provider_event: "opened",
            kind: "open",
            recipient: "bot@apple.com",
            occurred_at: Some("2022-05-18T14:17:15.279025Z"),
            time_quality: "exact",
            user_agent: Some("Mozilla/5.0"),
            metadata: json!({
                "client-name": "unknown",
                "client-type": "unknown",
                "device-type": "unknown",
                "client-os": "unknown",
                "bot": "apple",
                "geolocation": {"region": "Unknown", "country": "US", "city": "Unknown"}
            }),
            ..Expected::default()
        }],
    )
    .await;
}

#[tokio::test]
async fn mailgun_rejected_sandbox_send_is_dropped_and_blocked_for_its_to_address() {
    // No `recipient` in a rejection: the message's `To`. The reason is Mailgun's sandbox
    // policy, not a bounce.
    assert_fixture(
        "mailgun/rejected.json",
        &[Expected {
            reason: Some("blocked"),
            recipient: "joan@example.org",
            message_id: Some(
                "20180622220256.1.B31A451A2E5422BB@sandbox55887fac92de874df5ae0023b75fd62f1d.mailgun.org",
            ),
            smtp_response: Some(
                "Sandbox subdomains are for test purposes only. Please add your own domain or \
                 add the address to authorized recipients in Account Settings.",
            ),
            subject: Some("Test Subject"),
            sender: Some("john@sandbox55887fac92de874df5ae0023b75fd62f1d.mailgun.org"),
            metadata: json!({
                "log-level": "warn",
                "flags": {"is-test-mode": false},
                "message-size": 867
            }),
            ..mailgun(
                "rejected",
                "dropped",
                "OMTXD3-sSmKIQa1gSKkYVA",
                "2018-06-22T22:02:56.104692Z",
            )
        }],
    )
    .await;
}

#[tokio::test]
async fn mailgun_stored_inbound_message_is_other_without_a_warning() {
    // A documented event, just not about delivery: no "unknown event" warning. Its
    // recipient is the stored message's envelope recipient.
    assert_fixture(
        "mailgun/stored.json",
        &[Expected {
            recipient: "team@example.org",
            message_id: Some("20180622182958.1.48906CB188F1A454@exmple.org"),
            subject: Some("Test Subject"),
            sender: Some("sender@example.org"),
            metadata: json!({
                "log-level": "info",
                "flags": {"is-test-mode": false},
                "message-size": 586,
                "storage": {
                    "url": "https://se.api.mailgun.net/v3/domains/example.org/messages/eyJwI...",
                    "key": "eyJwI..."
                }
            }),
            ..mailgun(
                "stored",
                "other",
                "WRVmVc47QYi4DHth_xpRUA",
                "2018-06-22T18:29:58.691758Z",
            )
        }],
    )
    .await;
}

#[tokio::test]
async fn mailgun_unsubscribed_keeps_its_star_tag_and_the_readers_ip() {
    // `tags: ["*"]` is what the docs show (meaning undocumented); `storage: []` is empty.
    assert_fixture(
        "mailgun/unsubscribed.json",
        &[Expected {
            reason: Some("unsubscribed"),
            recipient: SAMPLE_RECIPIENT,
            message_id: Some(ENGAGED_MESSAGE),
            ip: Some("38.142.208.162"),
            user_agent: Some(CHROME_ON_MAC),
            tags: &["*"],
            metadata: current(json!({
                "log-level": "info",
                "recipient-domain": "sample.mailgun.com",
                "recipient-provider": "Other",
                "client-name": "Chrome",
                "client-os": "OS X",
                "client-type": "browser",
                "device-type": "desktop",
                "geolocation": {
                    "city": "San Antonio",
                    "country": "US",
                    "region": "TX",
                    "timezone": "America/Chicago"
                }
            })),
            ..mailgun(
                "unsubscribed",
                "unsubscribe",
                "89QcW8YuSv6lhSeN3n4qnA",
                "2026-02-05T21:31:30.4656289Z",
            )
        }],
    )
    .await;
}

// ---------------------------------------------------------------------------------------
// Bad input specific to Mailgun.

/// Every quarantine entry, newest first.
async fn quarantine(app: &TestApp) -> Vec<Value> {
    let (status, page) = app.get("/api/quarantine?limit=1000").await;
    assert_eq!(status, 200, "{page}");
    page["entries"].as_array().expect("entries").clone()
}

/// Posts `body` (one Mailgun object) and checks that its one element was quarantined with
/// `error`: 200, nothing stored, the element kept with the reason.
async fn assert_quarantined(app: &TestApp, body: &Value, error: &str) {
    let before = quarantine(app).await.len();
    let stored = app.events("limit=1000").await.len();
    let (status, report) = app.post("mailgun", body.to_string()).await;
    assert_eq!(status, 200, "{body}: {report}");
    assert_eq!(report["accepted"], 0, "{body}: {report}");
    assert_eq!(report["quarantined"], 1, "{body}: {report}");
    assert_eq!(report["errors"][0]["index"], 0, "{report}");
    assert_eq!(report["errors"][0]["error"], error, "{body}: {report}");
    let entries = quarantine(app).await;
    assert_eq!(entries.len(), before + 1, "{entries:#?}");
    let entry = &entries[0];
    assert_eq!(entry["source"], "mailgun", "{entry}");
    assert_eq!(entry["error"], error, "{entry}");
    assert_eq!(entry["element"], *body, "{entry}");
    assert_eq!(app.events("limit=1000").await.len(), stored);
}

async fn assert_quarantined_fixture(fixture: &str, error: &str) {
    let app = spawn_app().await;
    let body: Value = serde_json::from_slice(&read_fixture(fixture)).expect("fixture is JSON");
    assert_quarantined(&app, &body, error).await;
}

/// Posts one Mailgun object that must become one event, and returns it.
async fn post_one(app: &TestApp, body: &Value) -> Value {
    post_text(app, body.to_string()).await
}

/// Posts a body written out as text (for numbers no `Value` holds), expecting one event.
async fn post_text(app: &TestApp, body: String) -> Value {
    let (status, report) = app.post("mailgun", body.clone()).await;
    assert_eq!(status, 200, "{body}: {report}");
    assert_eq!(report["accepted"], 1, "{body}: {report}");
    let id = report["event_ids"][0].as_str().expect("an event id");
    let (status, event) = app.get(&format!("/api/events/{id}")).await;
    assert_eq!(status, 200, "{event}");
    event
}

/// An unsigned body around `event_data`.
fn body(event_data: Value) -> Value {
    json!({"event-data": event_data})
}

/// A minimal delivered event for a@example.com.
fn delivered(id: &str) -> Value {
    json!({
        "event": "delivered",
        "id": id,
        "timestamp": 1770146431.5,
        "recipient": "a@example.com",
        "message": {"headers": {"message-id": "20260203192030.1@mg.example.com"}}
    })
}

/// What [`delivered`] becomes.
fn delivered_expected(id: &'static str) -> Expected {
    Expected {
        recipient: "a@example.com",
        message_id: Some("20260203192030.1@mg.example.com"),
        ..mailgun("delivered", "delivered", id, "2026-02-03T19:20:31.5Z")
    }
}

#[tokio::test]
async fn mailgun_body_without_event_data_is_quarantined() {
    let app = spawn_app().await;
    let missing = "missing `event-data` (expected a Mailgun webhook body \
                   `{\"signature\": {...}, \"event-data\": {...}}`)";
    // A signature alone, a null event-data, a bare event document (legacy or misrouted).
    for bad in [
        json!({"signature": {"timestamp": "1770920772", "token": "t", "signature": "00"}}),
        json!({"event-data": null}),
        json!({"event": "delivered", "recipient": "a@example.com"}),
    ] {
        assert_quarantined(&app, &bad, missing).await;
    }
}

#[tokio::test]
async fn mailgun_event_data_that_is_not_an_object_is_quarantined() {
    let app = spawn_app().await;
    for bad in [
        json!("delivered"),
        json!([delivered("x")]),
        json!(42),
        json!(true),
    ] {
        assert_quarantined(&app, &body(bad), "`event-data` is not an object").await;
    }
}

#[tokio::test]
async fn mailgun_bad_elements_are_quarantined_and_the_others_kept() {
    // Mailgun posts one event per request; an array of them is still read element by
    // element.
    let app = spawn_app().await;
    let batch = json!([
        body(delivered("G00dEvent0000000000001")),
        body(json!("not an object")),
        body(json!({"recipient": "b@example.com", "timestamp": 1770146431})),
        {"signature": {}},
    ]);
    let (status, report) = app.post("mailgun", batch.to_string()).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["accepted"], 1, "{report}");
    assert_eq!(report["quarantined"], 3, "{report}");
    let errors: Vec<(u64, &str)> = report["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| (e["index"].as_u64().unwrap(), e["error"].as_str().unwrap()))
        .collect();
    assert_eq!(
        errors,
        [
            (1, "`event-data` is not an object"),
            (2, "missing event name (`event-data.event`)"),
            (
                3,
                "missing `event-data` (expected a Mailgun webhook body \
                 `{\"signature\": {...}, \"event-data\": {...}}`)"
            ),
        ],
        "{report}"
    );
    let id = report["event_ids"][0].as_str().unwrap();
    let (_, event) = app.get(&format!("/api/events/{id}")).await;
    check(
        "mailgun",
        &event,
        &batch[0],
        &delivered_expected("G00dEvent0000000000001"),
    );
}

#[tokio::test]
async fn mailgun_event_without_a_recipient_anywhere_is_quarantined() {
    let app = spawn_app().await;
    // A delivery event must say `recipient`: its `To` header may list others.
    let mut data = delivered("N0Recipient00000000001");
    data.as_object_mut().unwrap().remove("recipient");
    data["message"]["headers"]["to"] = json!("someone@example.com");
    assert_quarantined(
        &app,
        &body(data),
        "no valid recipient address: none of `recipient` is present",
    )
    .await;
    let mut data = delivered("N0Recipient00000000002");
    data["recipient"] = json!("not-an-address");
    let (status, report) = app.post("mailgun", body(data).to_string()).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["quarantined"], 1, "{report}");
    let error = report["errors"][0]["error"].as_str().unwrap();
    assert!(
        error.starts_with("no valid recipient address: `recipient`: `not-an-address`"),
        "{error}"
    );
    // A rejection has no `recipient` by design, but then needs recipients or `To`.
    assert_quarantined(
        &app,
        &body(json!({
            "event": "rejected",
            "timestamp": 1529704976.104692,
            "reject": {"reason": "no recipients"},
            "message": {"headers": {"from": "john@example.org"}}
        })),
        "no valid recipient address: none of `recipient`, `message.recipients`, \
         `message.headers.to` holds an address",
    )
    .await;
}

#[tokio::test]
async fn mailgun_unknown_event_is_other_with_a_warning() {
    // `dropped` was a legacy webhook's event; current webhooks never send it.
    let app = spawn_app().await;
    let mut data = delivered("Unkn0wnEvent0000000001");
    data["event"] = json!("dropped");
    data["reason"] = json!("hardfail");
    let sent = body(data);
    let event = post_one(&app, &sent).await;
    check(
        "mailgun",
        &event,
        &sent,
        &Expected {
            provider_event: "dropped",
            kind: "other",
            metadata: json!({"reason": "hardfail"}),
            warnings: &["unknown event `dropped`; stored as `other`"],
            ..delivered_expected("Unkn0wnEvent0000000001")
        },
    );
}

#[tokio::test]
async fn mailgun_user_variables_as_an_empty_array_are_left_out() {
    let app = spawn_app().await;
    let mut data = delivered("UserVarsEmpty000000001");
    data["user-variables"] = json!([]);
    let sent = body(data);
    let event = post_one(&app, &sent).await;
    check(
        "mailgun",
        &event,
        &sent,
        &delivered_expected("UserVarsEmpty000000001"),
    );
}

#[tokio::test]
async fn mailgun_user_variables_as_an_object_are_kept() {
    let app = spawn_app().await;
    let mut data = delivered("UserVarsObject00000001");
    data["user-variables"] = json!({"order": "10042", "customer-id": "HUGE"});
    let text = body(data)
        .to_string()
        .replace("\"HUGE\"", "98765432109876543210");
    let sent: Value = serde_json::from_str(&text).expect("JSON");
    let event = post_text(&app, text).await;
    check(
        "mailgun",
        &event,
        &sent,
        &Expected {
            // An integer beyond 64 bits keeps every digit, as a string.
            metadata: json!({
                "user-variables": {"order": "10042", "customer-id": "98765432109876543210"}
            }),
            ..delivered_expected("UserVarsObject00000001")
        },
    );
}

#[tokio::test]
async fn mailgun_user_variables_as_a_string_are_kept_with_a_warning() {
    // What Mailgun sends when the variables were truncated or not JSON.
    let app = spawn_app().await;
    let text = "Could not load user-variables. They were either truncated or invalid JSON";
    let mut data = delivered("UserVarsString00000001");
    data["user-variables"] = json!(text);
    let sent = body(data);
    let event = post_one(&app, &sent).await;
    check(
        "mailgun",
        &event,
        &sent,
        &Expected {
            metadata: json!({"user-variables": text}),
            warnings: &[
                "field `event-data.user-variables`: expected an object, found a string; kept \
                 in metadata as sent",
            ],
            ..delivered_expected("UserVarsString00000001")
        },
    );
}

/// A permanent generic failure for c@example.com with `status` as its delivery-status.
fn failed_with(id: &str, status: Value) -> Value {
    json!({
        "event": "failed",
        "id": id,
        "timestamp": 1770918175,
        "severity": "permanent",
        "reason": "generic",
        "recipient": "c@example.com",
        "delivery-status": status
    })
}

/// What [`failed_with`] becomes, before its codes.
fn failed_expected(id: &'static str, kind: &'static str, status: Value) -> Expected {
    Expected {
        recipient: "c@example.com",
        metadata: json!({
            "severity": "permanent",
            "reason": "generic",
            "delivery-status": status
        }),
        ..mailgun("failed", kind, id, "2026-02-12T17:42:55Z")
    }
}

#[tokio::test]
async fn mailgun_delivery_status_code_as_a_string_is_read() {
    let app = spawn_app().await;
    // A number in a string is the code.
    let status = json!({"code": "550", "message": "5.1.1 <c@example.com>: user unknown"});
    let sent = body(failed_with("StringCode000000000001", status.clone()));
    let event = post_one(&app, &sent).await;
    check(
        "mailgun",
        &event,
        &sent,
        &Expected {
            bounce_class: Some("hard"),
            reason: Some("invalid"),
            smtp_code: Some(550),
            smtp_enhanced: Some("5.1.1"),
            smtp_response: Some("5.1.1 <c@example.com>: user unknown"),
            ..failed_expected("StringCode000000000001", "bounce", status)
        },
    );
    // The legacy webhooks put the enhanced code in `code`.
    let status = json!({"code": "5.1.1", "message": "user unknown"});
    let sent = body(failed_with("StringCode000000000002", status.clone()));
    let event = post_one(&app, &sent).await;
    check(
        "mailgun",
        &event,
        &sent,
        &Expected {
            bounce_class: Some("hard"),
            reason: Some("invalid"),
            smtp_enhanced: Some("5.1.1"),
            smtp_response: Some("user unknown"),
            ..failed_expected("StringCode000000000002", "bounce", status)
        },
    );
    // Anything else is ignored with a warning; without a refusal it is no bounce.
    let status = json!({"code": "abc", "message": ""});
    let sent = body(failed_with("StringCode000000000003", status.clone()));
    let event = post_one(&app, &sent).await;
    check(
        "mailgun",
        &event,
        &sent,
        &Expected {
            warnings: &[
                "field `event-data.delivery-status.code`: `abc` is not an SMTP code; ignored",
            ],
            ..failed_expected("StringCode000000000003", "failed", status)
        },
    );
}

#[tokio::test]
async fn mailgun_hostile_strings_and_huge_ids_are_kept_safely() {
    let app = spawn_app().await;
    let long_subject = format!("{}\u{0}\u{7}\r\n{}", "é".repeat(1_990), "x".repeat(3_000));
    let data = json!({
        "event": "delivered",
        // Replaced below by a number too large for any integer type.
        "id": "HUGE",
        // Numbers as strings are read too.
        "timestamp": "1770146431.6585283",
        "recipient": "\"Doe, Jane\" <Jane.Doe@EXAMPLE.org>",
        "message": {"headers": {
            "message-id": "<20260203192030.1\u{1b}[31m@mg.example.com>",
            "subject": long_subject,
            "from": "not an address \u{0} at all"
        }},
        "tags": ["a\u{0}b", 7, {"x": 1}]
    });
    let text = body(data)
        .to_string()
        .replace("\"HUGE\"", "123456789012345678901234567890");
    let sent: Value = serde_json::from_str(&text).expect("JSON");
    let event = post_text(&app, text).await;
    let clipped: String = long_subject.chars().take(2_000).collect();
    let clipped: &'static str = Box::leak(clipped.into_boxed_str());
    check(
        "mailgun",
        &event,
        &sent,
        &Expected {
            provider_event: "delivered",
            kind: "delivered",
            recipient: "Jane.Doe@example.org",
            occurred_at: Some("2026-02-03T19:20:31.6585283Z"),
            time_quality: "exact",
            provider_event_id: Some("123456789012345678901234567890"),
            message_id: Some("20260203192030.1\u{1b}[31m@mg.example.com"),
            subject: Some(clipped),
            sender: Some("not an address \u{0} at all"),
            tags: &["a\u{0}b", "7"],
            warnings: &["field `event-data.tags`: item is an object; ignored"],
            ..Expected::default()
        },
    );
}
