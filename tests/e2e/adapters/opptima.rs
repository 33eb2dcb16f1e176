//! Opptima: one object per request, Colombian local time, Spanish status.

use serde_json::json;

use super::{Expected, assert_fixture};

/// An Opptima event for `test@testdomain.com` whose Bogotá local time is `utc` in UTC.
fn opptima(event: &'static str, kind: &'static str, utc: &'static str) -> Expected {
    Expected {
        provider_event: event,
        kind,
        recipient: "test@testdomain.com",
        occurred_at: Some(utc),
        time_quality: "assumed_tz",
        ..Expected::default()
    }
}

#[tokio::test]
async fn opptima_smtp_delivered() {
    // Certified e-mail: `response` is the certifying provider's activity, not an SMTP reply.
    assert_fixture(
        "opptima/smtp_delivered.json",
        &[Expected {
            message_id: Some("010001823804f1a3-a09c363d-98c8-4609-b1f0-148736ffec6f-000000"),
            subject: Some("Test message subject"),
            metadata: json!({
                "type": "SMTP",
                "status": "Entregado",
                "relid": "123",
                "certifiedEmail": true,
                "response": [
                    {"eventType": "Send", "timestamp": "2022-07-22T01:35:33.268Z", "result": "18.234.148.6"},
                    {"eventType": "Delivery", "timestamp": "2022-07-26T01:00:25.706Z", "result": "18.234.148.6"}
                ]
            }),
            ..opptima("delivered", "delivered", "2020-10-05T22:40:54Z")
        }],
    )
    .await;
}

#[tokio::test]
async fn opptima_smtp_hard_bounce() {
    // "Rebote duro" is a hard bounce; "mailbox unavailable" says the address does not work.
    // `ip` of SMTP events is where the send request came from: metadata, not the reader's.
    assert_fixture(
        "opptima/smtp_bounce.json",
        &[Expected {
            bounce_class: Some("hard"),
            reason: Some("invalid"),
            message_id: Some("d3f26a70-075b-11eb-b547-478382137ef6"),
            smtp_code: Some(550),
            smtp_enhanced: Some("5.5.0"),
            smtp_response: Some("550 5.5.0 Requested action not taken: mailbox unavailable."),
            subject: Some("Test message subject"),
            sender: Some("test@testdomain.com"),
            metadata: json!({
                "type": "SMTP",
                "status": "Rebote duro",
                "relid": "123",
                "ip": "178.12.123.32",
                "origin": "API",
                "custom_headers": {"x-test-header": "test Value"}
            }),
            ..opptima("bounce", "bounce", "2020-10-05T22:40:54Z")
        }],
    )
    .await;
}

#[tokio::test]
async fn opptima_smtp_soft_bounce_with_display_name_and_string_relid() {
    // Display name dropped, domain lower-cased, local part kept; 23:15 in Bogotá is 04:15
    // UTC the next day.
    assert_fixture(
        "opptima/smtp_soft_bounce.json",
        &[Expected {
            bounce_class: Some("soft"),
            reason: Some("bounced"),
            recipient: "Ana.Perez@ejemplo.com.co",
            message_id: Some("e4a17b81-075b-11eb-b547-478382137ef6"),
            smtp_code: Some(452),
            smtp_enhanced: Some("4.2.2"),
            smtp_response: Some(
                "452 4.2.2 The email account that you tried to reach is over quota.",
            ),
            subject: Some("Su factura"),
            sender: Some("facturas@testdomain.com"),
            metadata: json!({
                "type": "SMTP",
                "status": "Rebote blando",
                "relid": "124",
                "ip": "178.12.123.32",
                "origin": "SMTP"
            }),
            ..opptima("bounce", "bounce", "2020-10-07T04:15:02Z")
        }],
    )
    .await;
}

#[tokio::test]
async fn opptima_marketing_click() {
    assert_fixture(
        "opptima/marketing_click.json",
        &[Expected {
            subject: Some("Test campaign subject"),
            campaign: Some("Test campaign name"),
            click_url: Some("https://www.testdomain.com/"),
            metadata: json!({
                "type": "Email marketing",
                "campid": "12345",
                "relid": "123",
                "contactId": "112528991",
                "cityName": "Bogota",
                "regionName": "Distrito Capital de Bogota",
                "countryName": "Colombia",
                "latitude": 4.60971,
                "longitude": -74.081749,
                "device_type": "mobile",
                "browser": "Chrome"
            }),
            ..opptima("click", "click", "2020-10-02T20:07:31Z")
        }],
    )
    .await;
}

#[tokio::test]
async fn opptima_marketing_open_with_numeric_ids() {
    // `campid`, `relid` and `contactId` arrive as numbers here and are kept as strings.
    assert_fixture(
        "opptima/marketing_open.json",
        &[Expected {
            subject: Some("Test campaign subject"),
            campaign: Some("Test campaign name"),
            metadata: json!({
                "type": "Email marketing",
                "campid": "12345",
                "relid": "123",
                "contactId": "112528991",
                "cityName": "Medellin",
                "regionName": "Antioquia",
                "countryName": "Colombia",
                "latitude": 6.25184,
                "longitude": -75.56359,
                "device_type": "desktop",
                "browser": "Firefox"
            }),
            ..opptima("open", "open", "2020-10-02T20:05:10Z")
        }],
    )
    .await;
}

#[tokio::test]
async fn opptima_marketing_sent_with_status_entregado_is_a_delivery() {
    // Issue 11, found when tried: the marketing `sent` webhook says "Entregado" and carries
    // the time the receiving server accepted the message. `contactid` (lower case) is kept
    // under the same name as `contactId`.
    assert_fixture(
        "opptima/marketing_sent.json",
        &[Expected {
            subject: Some("Test campaign subject"),
            campaign: Some("Test campaign name"),
            metadata: json!({
                "type": "Email marketing",
                "status": "Entregado",
                "campid": "12345",
                "relid": "124",
                "contactId": "112528991"
            }),
            ..opptima("sent", "delivered", "2020-10-02T20:01:44Z")
        }],
    )
    .await;
}

#[tokio::test]
async fn opptima_marketing_spam() {
    assert_fixture(
        "opptima/marketing_spam.json",
        &[Expected {
            reason: Some("spam"),
            subject: Some("Test campaign subject"),
            campaign: Some("Test campaign name"),
            metadata: json!({
                "type": "Email marketing",
                "campid": "12345",
                "relid": "123",
                "contactId": "112528991"
            }),
            ..opptima("spam", "complaint", "2020-10-02T21:30:00Z")
        }],
    )
    .await;
}

#[tokio::test]
async fn opptima_marketing_unsubscribe() {
    assert_fixture(
        "opptima/marketing_unsubscribe.json",
        &[Expected {
            reason: Some("unsubscribed"),
            subject: Some("Test campaign subject"),
            campaign: Some("Test campaign name"),
            metadata: json!({
                "type": "Email marketing",
                "campid": "12345",
                "relid": "123",
                "contactId": "112528991"
            }),
            ..opptima("unsubscribe", "unsubscribe", "2020-10-02T21:00:00Z")
        }],
    )
    .await;
}

#[tokio::test]
async fn opptima_unknown_event_is_kept_as_other_with_a_warning() {
    // No `campaignName`: the campaign id stands in.
    assert_fixture(
        "opptima/unknown_event.json",
        &[Expected {
            campaign: Some("12345"),
            metadata: json!({
                "type": "Email marketing",
                "campid": "12345",
                "relid": "123"
            }),
            warnings: &["unknown event `forward`; stored as `other`"],
            ..opptima("forward", "other", "2020-10-02T22:00:00Z")
        }],
    )
    .await;
}
