//! LeadConnector: an LCEmailStats wrapper around a Mailgun event.

use serde_json::json;

use super::{Expected, assert_fixture};

const LOCATION: &str = "ve9EPM428h8vShlRW1KT";
const COMPANY: &str = "Xo2kq8B1cW0mZr7Tn4Ya";

/// A LeadConnector event with its Mailgun id and Unix time.
fn leadconnector(
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

#[tokio::test]
async fn leadconnector_delivered_documented_sample() {
    assert_fixture(
        "leadconnector/delivered.json",
        &[Expected {
            recipient: "test@example.com",
            message_id: Some("message-id"),
            sender: Some("dummy@example.com"),
            smtp_code: Some(250),
            smtp_response: Some("OK"),
            tags: &[
                "loc_ve9EPM428h8vShlRW1KT",
                "com_ve9EPM428h8vShlRW1KT",
                "et_other",
            ],
            metadata: json!({
                "locationId": LOCATION,
                "companyId": LOCATION,
                "flags": {
                    "is-authenticated": true,
                    "is-routed": false,
                    "is-big": false,
                    "is-system-test": false,
                    "is-test-mode": false
                },
                "message-size": 1725,
                "log-level": "info",
                "recipient-domain": "example.com",
                "recipient-provider": "Other",
                "delivery-status": {
                    "attempt-no": 1,
                    "code": 250,
                    "message": "OK",
                    "description": "",
                    "session-seconds": 0.087,
                    "enhanced-code": "",
                    "mx-host": "mail.example.com",
                    "utf8": true,
                    "i-first-delivery-attempt-seconds": 0.047
                },
                "envelope": {
                    "sender": "<sender-id>",
                    "targets": "test@example.com",
                    "transport": "smtp",
                    "sending-ip": "127.0.0.1",
                    "i-ip-pool-id": "65cc66e77a4d4f63649d394c",
                    "i-ip-pool-name": "<pool-name>"
                }
            }),
            ..leadconnector(
                "delivered",
                "delivered",
                "ve9EPM428h8vShlRW1KT",
                "2024-04-25T08:07:21Z",
            )
        }],
    )
    .await;
}

#[tokio::test]
async fn leadconnector_permanent_failure_is_a_hard_bounce() {
    assert_fixture(
        "leadconnector/failed_permanent.json",
        &[Expected {
            bounce_class: Some("hard"),
            reason: Some("invalid"),
            recipient: "nobody@example.com",
            message_id: Some("20240425081501.1.ABCDEF@mg.example.com"),
            smtp_code: Some(550),
            smtp_enhanced: Some("5.1.1"),
            smtp_response: Some("5.1.1 The email account that you tried to reach does not exist."),
            subject: Some("Your quote"),
            sender: Some("sales@example.com"),
            tags: &["loc_ve9EPM428h8vShlRW1KT", "et_campaign"],
            metadata: json!({
                "severity": "permanent",
                "reason": "bounce",
                "locationId": LOCATION,
                "companyId": COMPANY,
                "message-size": 2310,
                "log-level": "error",
                "recipient-domain": "example.com",
                "delivery-status": {
                    "attempt-no": 1,
                    "code": 550,
                    "message": "5.1.1 The email account that you tried to reach does not exist.",
                    "description": "",
                    "enhanced-code": "5.1.1",
                    "mx-host": "aspmx.l.google.com",
                    "session-seconds": 0.41
                },
                "envelope": {
                    "sender": "bounce@mg.example.com",
                    "targets": "nobody@example.com",
                    "transport": "smtp",
                    "sending-ip": "198.51.100.7"
                }
            }),
            ..leadconnector(
                "failed",
                "bounce",
                "G9Bn5sL0SfKw3tE8hWd4Qa",
                "2024-04-25T08:08:21.372416Z",
            )
        }],
    )
    .await;
}

#[tokio::test]
async fn leadconnector_temporary_failure_is_a_deferral() {
    assert_fixture(
        "leadconnector/failed_temporary.json",
        &[Expected {
            reason: Some("blocked"),
            recipient: "busy@example.org",
            message_id: Some("20240425081501.2.ABCDEF@mg.example.com"),
            smtp_code: Some(421),
            smtp_enhanced: Some("4.7.0"),
            smtp_response: Some("4.7.0 Try again later, closing connection."),
            subject: Some("Your quote"),
            sender: Some("sales@example.com"),
            metadata: json!({
                "severity": "temporary",
                "reason": "generic",
                "locationId": LOCATION,
                "companyId": COMPANY,
                "delivery-status": {
                    "attempt-no": 2,
                    "code": 421,
                    "message": "4.7.0 Try again later, closing connection.",
                    "description": "",
                    "enhanced-code": "4.7.0",
                    "retry-seconds": 600
                }
            }),
            ..leadconnector(
                "failed",
                "deferred",
                "Hk3Jm9Qp2RsT5uVw7XyZ1a",
                "2024-04-25T08:10:01.5Z",
            )
        }],
    )
    .await;
}

#[tokio::test]
async fn leadconnector_suppressed_failure_is_dropped() {
    // Never attempted: Mailgun's 605 is no SMTP code; the description is the reply text.
    assert_fixture(
        "leadconnector/failed_suppressed.json",
        &[Expected {
            reason: Some("bounced"),
            recipient: "nobody@example.com",
            smtp_response: Some("Not delivering to previously bounced address"),
            metadata: json!({
                "severity": "permanent",
                "reason": "suppress-bounce",
                "locationId": LOCATION,
                "companyId": COMPANY,
                "delivery-status": {
                    "code": 605,
                    "message": "",
                    "description": "Not delivering to previously bounced address",
                    "enhanced-code": ""
                }
            }),
            ..leadconnector(
                "failed",
                "dropped",
                "Supr3ss3dId0000000001",
                "2024-04-25T10:46:40Z",
            )
        }],
    )
    .await;
}

#[tokio::test]
async fn leadconnector_opened() {
    assert_fixture(
        "leadconnector/opened.json",
        &[Expected {
            recipient: "test@example.com",
            message_id: Some("20240425081501.3.ABCDEF@mg.example.com"),
            ip: Some("203.0.113.45"),
            user_agent: Some(
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 \
                 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
            ),
            tags: &["loc_ve9EPM428h8vShlRW1KT"],
            metadata: json!({
                "locationId": LOCATION,
                "companyId": COMPANY,
                "geolocation": {"country": "US", "region": "CA", "city": "San Francisco"},
                "client-type": "browser",
                "client-os": "Windows",
                "device-type": "desktop",
                "client-name": "Chrome"
            }),
            ..leadconnector(
                "opened",
                "open",
                "Op3nEv3ntId0000000001",
                "2024-04-25T09:07:21.117Z",
            )
        }],
    )
    .await;
}

#[tokio::test]
async fn leadconnector_clicked() {
    assert_fixture(
        "leadconnector/clicked.json",
        &[Expected {
            recipient: "test@example.com",
            message_id: Some("20240425081501.3.ABCDEF@mg.example.com"),
            click_url: Some("https://example.com/pricing?ref=mail"),
            ip: Some("203.0.113.45"),
            user_agent: Some("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X)"),
            metadata: json!({
                "locationId": LOCATION,
                "companyId": COMPANY,
                "client-type": "mobile browser"
            }),
            ..leadconnector(
                "clicked",
                "click",
                "Cl1ckEv3ntId000000001",
                "2024-04-25T09:08:20Z",
            )
        }],
    )
    .await;
}

#[tokio::test]
async fn leadconnector_complained_with_display_name_recipient() {
    assert_fixture(
        "leadconnector/complained.json",
        &[Expected {
            reason: Some("spam"),
            recipient: "annoyed@example.net",
            message_id: Some("20240425081501.4.ABCDEF@mg.example.com"),
            subject: Some("Weekly digest"),
            metadata: json!({"locationId": LOCATION, "companyId": COMPANY}),
            ..leadconnector(
                "complained",
                "complaint",
                "C0mpla1ntId0000000001",
                "2024-04-25T10:13:20Z",
            )
        }],
    )
    .await;
}

#[tokio::test]
async fn leadconnector_unsubscribed() {
    assert_fixture(
        "leadconnector/unsubscribed.json",
        &[Expected {
            reason: Some("unsubscribed"),
            recipient: "leaving@example.com",
            message_id: Some("20240425081501.5.ABCDEF@mg.example.com"),
            ip: Some("198.51.100.20"),
            metadata: json!({"locationId": LOCATION, "companyId": COMPANY}),
            ..leadconnector(
                "unsubscribed",
                "unsubscribe",
                "Un5ubId00000000000001",
                "2024-04-25T10:30:00Z",
            )
        }],
    )
    .await;
}
