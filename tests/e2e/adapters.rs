//! Provider adapters end to end: every fixture is posted over HTTP to the source named after
//! its provider, every stored event is read back through `GET /api/events/{id}` and compared
//! field by field with what the provider's documentation (fixtures/, and the seed documents
//! they come from) says the event means. Expected values are written out by hand.
//!
//! Opptima sends Colombian local time (UTC-5, no daylight saving) without an offset, so
//! `2020-10-05 17:40:54` is `2020-10-05T22:40:54Z` with `time_quality: assumed_tz`;
//! SendPulse and LeadConnector send Unix seconds (`exact`).

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::helpers::{all_fixtures, read_fixture, spawn_app};

/// What one stored event must look like. Every field is compared exactly: `None`, an empty
/// list or a `Null` metadata mean "absent from the answer".
#[derive(Clone, Debug, Default)]
struct Expected {
    provider_event: &'static str,
    kind: &'static str,
    bounce_class: Option<&'static str>,
    reason: Option<&'static str>,
    recipient: &'static str,
    occurred_at: Option<&'static str>,
    time_quality: &'static str,
    message_id: Option<&'static str>,
    provider_event_id: Option<&'static str>,
    smtp_code: Option<u16>,
    smtp_enhanced: Option<&'static str>,
    smtp_response: Option<&'static str>,
    subject: Option<&'static str>,
    sender: Option<&'static str>,
    campaign: Option<&'static str>,
    click_url: Option<&'static str>,
    user_agent: Option<&'static str>,
    ip: Option<&'static str>,
    tags: &'static [&'static str],
    metadata: Value,
    warnings: &'static [&'static str],
}

/// The events one fixture produced, with the request elements they came from.
struct Ingested {
    /// Events read back one by one, in request order.
    events: Vec<Value>,
    /// The JSON elements of the request (the body itself for a single object).
    elements: Vec<Value>,
}

/// Starts a service, posts `fixture` (`provider/case.json`) to the source named after its
/// provider and reads every event of the answer back by id.
async fn ingest(fixture: &str) -> Ingested {
    let provider = fixture.split('/').next().expect("provider directory");
    let app = spawn_app().await;
    let (status, report) = app.post_fixture(provider, fixture).await;
    assert_eq!(status, 200, "{fixture}: {report}");
    let body: Value = serde_json::from_slice(&read_fixture(fixture)).expect("fixture is JSON");
    let elements = match body {
        Value::Array(items) => items,
        other => vec![other],
    };
    assert_eq!(report["quarantined"], 0, "{fixture}: {report}");
    assert_eq!(report["duplicates"], 0, "{fixture}: {report}");
    assert!(report.get("errors").is_none(), "{fixture}: {report}");
    let ids = report["event_ids"].as_array().expect("event_ids").clone();
    // Every fixture element has exactly one recipient: one event each.
    assert_eq!(ids.len(), elements.len(), "{fixture}: {report}");
    assert_eq!(report["accepted"], ids.len(), "{fixture}: {report}");
    let mut events = Vec::new();
    for id in &ids {
        let id = id.as_str().expect("ids are strings");
        assert!(id.starts_with("evt_"), "{id}");
        let (status, event) = app.get(&format!("/api/events/{id}")).await;
        assert_eq!(status, 200, "{fixture} {id}: {event}");
        assert_eq!(event["id"], id, "{fixture}: {event}");
        events.push(event);
    }
    let with_warnings = events
        .iter()
        .filter(|event| event.get("warnings").is_some())
        .count();
    assert_eq!(report["warnings"], with_warnings, "{fixture}: {report}");
    Ingested { events, elements }
}

/// Compares one stored event with what is expected of it.
fn check(provider: &str, event: &Value, element: &Value, expected: &Expected) {
    let context = format!("{provider}/{}: {event:#}", expected.provider_event);
    let field = |name: &str| event.get(name).cloned();
    let text = |value: Option<&str>| value.map(|text| json!(text));
    assert!(event.is_object(), "{context}");
    assert_eq!(field("source"), Some(json!(provider)), "source; {context}");
    assert_eq!(
        field("provider"),
        Some(json!(provider)),
        "provider; {context}"
    );
    assert_eq!(
        field("provider_event"),
        Some(json!(expected.provider_event)),
        "provider_event; {context}"
    );
    assert_eq!(field("kind"), Some(json!(expected.kind)), "kind; {context}");
    assert_eq!(
        field("bounce_class"),
        text(expected.bounce_class),
        "bounce_class; {context}"
    );
    assert_eq!(field("reason"), text(expected.reason), "reason; {context}");
    assert_eq!(
        field("recipient"),
        Some(json!(expected.recipient)),
        "recipient; {context}"
    );
    match expected.occurred_at {
        Some(at) => {
            let stored = event["occurred_at"]
                .as_str()
                .unwrap_or_else(|| panic!("occurred_at missing; {context}"));
            assert!(stored.ends_with('Z'), "occurred_at not in UTC; {context}");
            let stored: Timestamp = stored.parse().expect("occurred_at is RFC 3339");
            assert_eq!(
                stored,
                at.parse::<Timestamp>().unwrap(),
                "occurred_at; {context}"
            );
        }
        None => assert_eq!(field("occurred_at"), None, "occurred_at; {context}"),
    }
    assert_eq!(
        field("time_quality"),
        Some(json!(expected.time_quality)),
        "time_quality; {context}"
    );
    let received = event["received_at"].as_str().expect("received_at");
    received
        .parse::<Timestamp>()
        .unwrap_or_else(|error| panic!("received_at `{received}`: {error}"));
    assert_eq!(
        field("message_id"),
        text(expected.message_id),
        "message_id; {context}"
    );
    assert_eq!(
        field("provider_event_id"),
        text(expected.provider_event_id),
        "provider_event_id; {context}"
    );
    assert_eq!(
        field("smtp_code"),
        expected.smtp_code.map(|code| json!(code)),
        "smtp_code; {context}"
    );
    assert_eq!(
        field("smtp_enhanced"),
        text(expected.smtp_enhanced),
        "smtp_enhanced; {context}"
    );
    assert_eq!(
        field("smtp_response"),
        text(expected.smtp_response),
        "smtp_response; {context}"
    );
    assert_eq!(
        field("subject"),
        text(expected.subject),
        "subject; {context}"
    );
    assert_eq!(field("sender"), text(expected.sender), "sender; {context}");
    assert_eq!(
        field("campaign"),
        text(expected.campaign),
        "campaign; {context}"
    );
    assert_eq!(
        field("click_url"),
        text(expected.click_url),
        "click_url; {context}"
    );
    assert_eq!(
        field("user_agent"),
        text(expected.user_agent),
        "user_agent; {context}"
    );
    assert_eq!(field("ip"), text(expected.ip), "ip; {context}");
    let list = |items: &[&str]| (!items.is_empty()).then(|| json!(items));
    assert_eq!(field("tags"), list(expected.tags), "tags; {context}");
    let metadata = match &expected.metadata {
        Value::Null => None,
        Value::Object(map) if map.is_empty() => None,
        other => Some(other.clone()),
    };
    assert_eq!(field("metadata"), metadata, "metadata; {context}");
    assert_eq!(
        field("warnings"),
        list(expected.warnings),
        "warnings; {context}"
    );
    assert_eq!(field("raw").as_ref(), Some(element), "raw; {context}");
}

/// Posts `fixture` and checks its events, in order, against `expected`.
async fn assert_fixture(fixture: &str, expected: &[Expected]) {
    let provider = fixture.split('/').next().expect("provider directory");
    let ingested = ingest(fixture).await;
    assert_eq!(ingested.events.len(), expected.len(), "{fixture}");
    for ((event, element), expected) in ingested.events.iter().zip(&ingested.elements).zip(expected)
    {
        check(provider, event, element, expected);
    }
}

#[tokio::test]
async fn every_good_fixture_is_accepted() {
    let app = spawn_app().await;
    let fixtures = all_fixtures();
    for provider in ["opptima/", "sendpulse/", "leadconnector/"] {
        assert!(
            fixtures.iter().any(|f| f.starts_with(provider)),
            "no {provider} fixtures in {fixtures:?}"
        );
    }
    let mut total = 0;
    for fixture in &fixtures {
        if fixture.starts_with("sendpulse/broken_") {
            continue;
        }
        let provider = fixture.split('/').next().expect("provider directory");
        let (status, report) = app.post_fixture(provider, fixture).await;
        assert_eq!(status, 200, "{fixture}: {report}");
        assert_eq!(report["quarantined"], 0, "{fixture}: {report}");
        let accepted = report["accepted"].as_u64().expect("accepted");
        assert!(accepted >= 1, "{fixture}: {report}");
        total += accepted as usize;
    }
    let stored = app.events("limit=1000").await;
    assert_eq!(stored.len(), total);
}

// ---------------------------------------------------------------------------------------
// Opptima: one object per request, Colombian local time, Spanish status.

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

// ---------------------------------------------------------------------------------------
// SendPulse: arrays of events, Unix seconds, codes as strings or numbers.

/// A SendPulse transactional event for `doe.john@sendpulse.com` sent by
/// `john.doe@sendpulse.com`, message 1149317311 (numeric in the JSON).
fn sendpulse(event: &'static str, kind: &'static str, utc: &'static str) -> Expected {
    Expected {
        provider_event: event,
        kind,
        recipient: "doe.john@sendpulse.com",
        occurred_at: Some(utc),
        time_quality: "exact",
        message_id: Some("1149317311"),
        sender: Some("john.doe@sendpulse.com"),
        subject: Some("utf8_hello_world"),
        ..Expected::default()
    }
}

/// A SendPulse bounce as documented: address in `email`, task id as campaign.
fn sendpulse_bounce(event: &'static str, class: &'static str, utc: &'static str) -> Expected {
    Expected {
        provider_event: event,
        kind: "bounce",
        bounce_class: Some(class),
        recipient: "example@example.com",
        occurred_at: Some(utc),
        time_quality: "exact",
        campaign: Some("17076325"),
        metadata: json!({"task_id": "17076325"}),
        ..Expected::default()
    }
}

#[tokio::test]
async fn sendpulse_delivered() {
    // Code as the string "250", empty subcode meaning none.
    assert_fixture(
        "sendpulse/delivered.json",
        &[Expected {
            smtp_code: Some(250),
            smtp_response: Some("custom_text_response_from_recipients_server"),
            ..sendpulse("delivered", "delivered", "2017-03-31T09:52:13Z")
        }],
    )
    .await;
}

#[tokio::test]
async fn sendpulse_undelivered() {
    // 5.7.1 is a policy refusal: the address itself may be fine.
    assert_fixture(
        "sendpulse/undelivered.json",
        &[Expected {
            reason: Some("blocked"),
            smtp_code: Some(554),
            smtp_enhanced: Some("5.7.1"),
            smtp_response: Some("custom_text_response_from_recipients_server"),
            ..sendpulse("undelivered", "failed", "2017-03-31T10:28:37Z")
        }],
    )
    .await;
}

#[tokio::test]
async fn sendpulse_opened() {
    assert_fixture(
        "sendpulse/opened.json",
        &[sendpulse("opened", "open", "2017-03-31T12:19:24Z")],
    )
    .await;
}

#[tokio::test]
async fn sendpulse_clicked() {
    assert_fixture(
        "sendpulse/clicked.json",
        &[sendpulse("clicked", "click", "2017-03-31T12:55:28Z")],
    )
    .await;
}

#[tokio::test]
async fn sendpulse_spam_by_user() {
    assert_fixture(
        "sendpulse/spam_by_user.json",
        &[Expected {
            reason: Some("spam"),
            message_id: Some("1145317311"),
            ..sendpulse("spam_by_user", "complaint", "2017-03-31T12:50:07Z")
        }],
    )
    .await;
}

#[tokio::test]
async fn sendpulse_unsubscribed_has_no_time_and_no_warning() {
    assert_fixture(
        "sendpulse/unsubscribed.json",
        &[Expected {
            provider_event: "unsubscribed",
            kind: "unsubscribe",
            reason: Some("unsubscribed"),
            recipient: "john.doe@sendpulse.com",
            occurred_at: None,
            time_quality: "missing",
            sender: Some("doe.john@sendpulse.com"),
            subject: Some("hello world"),
            ..Expected::default()
        }],
    )
    .await;
}

#[tokio::test]
async fn sendpulse_resubscribed() {
    assert_fixture(
        "sendpulse/resubscribed.json",
        &[Expected {
            recipient: "john.doe@sendpulse.com",
            message_id: None,
            sender: Some("doe.john@sendpulse.com"),
            subject: Some("hello world"),
            ..sendpulse("resubscribed", "subscribe", "2017-03-31T14:20:00Z")
        }],
    )
    .await;
}

#[tokio::test]
async fn sendpulse_soft_bounce_with_a_550_stays_soft() {
    // The event name decides the class: SendPulse documents a soft bounce with 550 5.1.0.
    assert_fixture(
        "sendpulse/soft_bounces.json",
        &[Expected {
            reason: Some("bounced"),
            smtp_code: Some(550),
            smtp_enhanced: Some("5.1.0"),
            smtp_response: Some(
                "vch15@i.ua MX: mx23.i.ua RESP: Mailbox over quota. See http://mail.i.ua/err/4/",
            ),
            ..sendpulse_bounce("soft_bounces", "soft", "2022-07-28T08:49:30Z")
        }],
    )
    .await;
}

#[tokio::test]
async fn sendpulse_hard_bounce() {
    assert_fixture(
        "sendpulse/hard_bounces.json",
        &[Expected {
            reason: Some("invalid"),
            smtp_code: Some(550),
            smtp_enhanced: Some("5.1.1"),
            smtp_response: Some(
                "example@example.com MX: mx.dereck.cn.ua RESP: 5.1.1 <example@example.com>: \
                 Recipient address rejected: User unknown in local recipient table",
            ),
            ..sendpulse_bounce("hard_bounces", "hard", "2022-07-28T08:49:30Z")
        }],
    )
    .await;
}

#[tokio::test]
async fn sendpulse_mixed_codes() {
    assert_fixture(
        "sendpulse/mixed_codes.json",
        &[
            Expected {
                recipient: "first@example.org",
                subject: Some("mixed"),
                smtp_code: Some(250),
                smtp_enhanced: Some("2.0.0"),
                smtp_response: Some("250 2.0.0 OK queued"),
                ..sendpulse("delivered", "delivered", "2017-03-31T09:52:13Z")
            },
            Expected {
                recipient: "second@example.org",
                reason: Some("invalid"),
                smtp_code: Some(550),
                smtp_enhanced: Some("5.1.1"),
                smtp_response: Some("550 5.1.1 User unknown"),
                ..sendpulse_bounce("hard_bounces", "hard", "2022-07-28T08:49:30Z")
            },
            Expected {
                recipient: "third@example.org",
                reason: Some("blocked"),
                smtp_code: Some(421),
                smtp_enhanced: Some("4.7.0"),
                smtp_response: Some("421 4.7.0 Try again later"),
                ..sendpulse_bounce("soft_bounces", "soft", "2022-07-28T08:49:31Z")
            },
        ],
    )
    .await;
}

#[tokio::test]
async fn sendpulse_bulk_campaign_events() {
    // Campaign events: every number is a string, the click is `redirect` with `link_url`.
    let bulk = |event, kind, recipient, utc| Expected {
        provider_event: event,
        kind,
        recipient,
        occurred_at: Some(utc),
        time_quality: "exact",
        campaign: Some("2812405"),
        metadata: json!({"task_id": "2812405", "book_id": "1234567"}),
        ..Expected::default()
    };
    assert_fixture(
        "sendpulse/bulk_events.json",
        &[
            Expected {
                metadata: json!({
                    "task_id": "2812405",
                    "book_id": "1234567",
                    "open_device": "desktop",
                    "open_platform": "Windows",
                    "browser_name": "Chrome"
                }),
                ..bulk("open", "open", "reader@example.net", "2022-07-28T08:50:00Z")
            },
            Expected {
                click_url: Some("https://shop.example.net/offer?utm_source=sendpulse"),
                ..bulk(
                    "redirect",
                    "click",
                    "reader@example.net",
                    "2022-07-28T08:51:00Z",
                )
            },
            Expected {
                reason: Some("spam"),
                ..bulk(
                    "spam",
                    "complaint",
                    "angry@example.net",
                    "2022-07-28T08:51:40Z",
                )
            },
            Expected {
                reason: Some("unsubscribed"),
                metadata: json!({
                    "task_id": "2812405",
                    "book_id": "1234567",
                    "reason": "Too many emails"
                }),
                ..bulk(
                    "unsubscribe",
                    "unsubscribe",
                    "leaving@example.net",
                    "2022-07-28T08:53:20Z",
                )
            },
        ],
    )
    .await;
}

#[tokio::test]
async fn sendpulse_documented_batch_with_placeholder_event_names() {
    // The documentation's batch sample, without its trailing comma: `event_name` is no
    // known event, so each is kept as `other` with a warning.
    let placeholder = |utc, subject| Expected {
        recipient: "john.doe@sendpulse.com",
        sender: Some("doe.john@sendpulse.com"),
        subject: Some(subject),
        warnings: &["unknown event `event_name`; stored as `other`"],
        ..sendpulse("event_name", "other", utc)
    };
    assert_fixture(
        "sendpulse/batch_fixed.json",
        &[
            placeholder("2017-03-31T09:54:21Z", "hello world"),
            placeholder("2017-03-31T09:54:22Z", "hello world"),
            placeholder("2017-03-31T09:54:23Z", "utf8_hello_world"),
        ],
    )
    .await;
}

// ---------------------------------------------------------------------------------------
// LeadConnector: an LCEmailStats wrapper around a Mailgun event.

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
