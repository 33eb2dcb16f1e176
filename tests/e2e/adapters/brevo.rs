//! Brevo: one flat object per event, transactional and marketing on the same adapter.
//!
//! Expected values come from Brevo's documentation
//! (<https://developers.brevo.com/docs/transactional-webhooks>,
//! <https://developers.brevo.com/docs/marketing-webhooks>): `ts_event` is seconds UTC and
//! wins over `date` (local time); `id` is the webhook's id (`metadata.webhook_id`), never
//! the event's; `sending_ip` is Brevo's own and stays in metadata. The 2020 samples' `date`
//! (`2020-10-09 00:00:00`) does not match their epochs: placeholders.
//! `ts_event` 1604933654 is 2020-11-09T14:54:14Z, marketing 1604933737 is 14:55:37Z,
//! contact events' `ts` 1604937111 is 15:51:51Z, the 2024 sample's 1724322809 is
//! 2024-08-22T10:33:29Z.

use mailwarden::config::SourceConfig;
use serde_json::{Map, Value, json};

use super::{Expected, assert_fixture, check};
use crate::helpers::{TestApp, read_fixture, spawn_app, spawn_app_with};

const RECIPIENT: &str = "example@domain.com";
const MESSAGE_ID: &str = "201798300811.5787683@relay.domain.com";
const SUBJECT: &str = "My first Transactional";
const PREVIEW: &str = "https://app-smtp.brevo.com/log/preview/1a2000f4-4e33-23aa-ab68-900dxxx9152c";
const GOOGLE_PROXY: &str =
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)";

/// `base` with the keys of `extra` added.
fn merged(base: Value, extra: Value) -> Value {
    let mut map: Map<String, Value> = base.as_object().cloned().unwrap_or_default();
    if let Value::Object(extra) = extra {
        map.extend(extra);
    }
    Value::Object(map)
}

/// Metadata every 2020 transactional sample leaves: webhook id, custom header, `ts` and
/// `date` (`ts_event` was used).
fn transactional_metadata(extra: Value) -> Value {
    merged(
        json!({
            "webhook_id": "12345",
            "webhook_type": "transactional",
            "X-Mailin-custom": "some_custom_header",
            "ts": 1604933619,
            "date": "2020-10-09 00:00:00"
        }),
        extra,
    )
}

/// A 2020 transactional sample: message 201798300811.5787683@relay.domain.com to
/// example@domain.com, tagged `transac_messages`.
fn transactional(event: &'static str, kind: &'static str, extra: Value) -> Expected {
    Expected {
        provider_event: event,
        kind,
        recipient: RECIPIENT,
        occurred_at: Some("2020-11-09T14:54:14Z"),
        time_quality: "exact",
        message_id: Some(MESSAGE_ID),
        subject: Some(SUBJECT),
        tags: &["transac_messages"],
        metadata: transactional_metadata(extra),
        ..Expected::default()
    }
}

/// A campaign event of "My First Campaign" (campaign 12, webhook 123456); `ts` (3600 s
/// after `ts_event`) and the local dates stay in metadata; `tag: ""` is no tag.
fn campaign(event: &'static str, kind: &'static str, extra: Value) -> Expected {
    Expected {
        provider_event: event,
        kind,
        recipient: RECIPIENT,
        occurred_at: Some("2020-11-09T14:55:37Z"),
        time_quality: "exact",
        campaign: Some("My First Campaign"),
        metadata: merged(
            json!({
                "webhook_id": "123456",
                "webhook_type": "marketing",
                "camp_id": "12",
                "date_sent": "2020-10-09 00:00:00",
                "date_event": "2020-10-09 00:00:00",
                "ts_sent": 1604933619,
                "ts": 1604937337
            }),
            extra,
        ),
        ..Expected::default()
    }
}

/// A contact event: only `ts` (taken as exact) and `date`.
fn contact(event: &'static str, kind: &'static str, extra: Value) -> Expected {
    Expected {
        provider_event: event,
        kind,
        recipient: RECIPIENT,
        occurred_at: Some("2020-11-09T15:51:51Z"),
        time_quality: "exact",
        metadata: merged(
            json!({
                "webhook_id": "123456",
                "webhook_type": "marketing",
                "key": "xxxxxxxxxxxxxxxxxx",
                "date": "2020-10-09 00:00:00"
            }),
            extra,
        ),
        ..Expected::default()
    }
}

/// The 2024 proxy-open sample (recipient filled in, see the fixture note in the report).
fn proxy_open(event: &'static str, extra: Value) -> Expected {
    Expected {
        provider_event: event,
        kind: "open",
        recipient: RECIPIENT,
        occurred_at: Some("2024-08-22T10:33:29Z"),
        time_quality: "exact",
        message_id: Some("an#2705147202202651768"),
        subject: Some("this is required subject"),
        sender: Some("abc@sendinblue.com"),
        user_agent: Some("Mozilla/5.0"),
        tags: &["this_tag", "tag_thos"],
        metadata: merged(
            json!({
                "webhook_id": "25290",
                "webhook_type": "transactional",
                "date": "2024-08-22 16:03:29",
                "sending_ip": "::",
                "ts": 1724322809,
                "template_id": "660",
                "ts_epoch": 1724322809710_u64,
                "mirror_link": "https://app-smtp.brevo.com/log/preview/...",
                "device_used": "DESKTOP",
                "contact_id": "4816445214646337536",
                "proxy": true
            }),
            extra,
        ),
        ..Expected::default()
    }
}

// ---------------------------------------------------------------------------------------
// Transactional fixtures.

#[tokio::test]
async fn brevo_request_is_queued_not_yet_attempted() {
    // "pushed for delivery": the attempt is reported by delivered/deferred/bounce events.
    assert_fixture(
        "brevo/transactional_request.json",
        &[transactional(
            "request",
            "queued",
            json!({
                "sending_ip": "xxx.xxx.xxx.xxx",
                "ts_epoch": 1604933654,
                "template_id": "22",
                "mirror_link": PREVIEW,
                "contact_id": "8"
            }),
        )],
    )
    .await;
}

#[tokio::test]
async fn brevo_transactional_delivered() {
    assert_fixture(
        "brevo/transactional_delivered.json",
        &[transactional(
            "delivered",
            "delivered",
            json!({"sending_ip": "xxx.xxx.xxx.xxx", "template_id": "22"}),
        )],
    )
    .await;
}

#[tokio::test]
async fn brevo_deferred_takes_its_reason_text_as_the_reply() {
    // The sample's `reason` is "spam": free text, classified like a reply.
    assert_fixture(
        "brevo/transactional_deferred.json",
        &[Expected {
            reason: Some("spam"),
            smtp_response: Some("spam"),
            ..transactional(
                "deferred",
                "deferred",
                json!({
                    "sending_ip": "xxx.xxx.xxx.xxx",
                    "ts_epoch": 1604933654,
                    "template_id": "22"
                }),
            )
        }],
    )
    .await;
}

#[tokio::test]
async fn brevo_soft_bounce_is_soft_and_bounced() {
    assert_fixture(
        "brevo/transactional_soft_bounce.json",
        &[Expected {
            bounce_class: Some("soft"),
            reason: Some("bounced"),
            smtp_response: Some("server is down"),
            ..transactional(
                "soft_bounce",
                "bounce",
                json!({"sending_ip": "xxx.xxx.xxx.xxx", "template_id": "22"}),
            )
        }],
    )
    .await;
}

#[tokio::test]
async fn brevo_hard_bounce_is_hard_but_not_called_invalid() {
    // "server is down" says nothing about the address: bounced, not invalid.
    assert_fixture(
        "brevo/transactional_hard_bounce.json",
        &[Expected {
            bounce_class: Some("hard"),
            reason: Some("bounced"),
            smtp_response: Some("server is down"),
            ..transactional(
                "hard_bounce",
                "bounce",
                json!({
                    "sending_ip": "xxx.xxx.xxx.xxx",
                    "template_id": "22",
                    "ts_epoch": 1604933653
                }),
            )
        }],
    )
    .await;
}

#[tokio::test]
async fn brevo_transactional_spam_is_a_complaint_without_subject() {
    assert_fixture(
        "brevo/transactional_spam.json",
        &[Expected {
            reason: Some("spam"),
            subject: None,
            ..transactional("spam", "complaint", json!({}))
        }],
    )
    .await;
}

#[tokio::test]
async fn brevo_complaint_of_the_older_docs_is_the_same_complaint() {
    assert_fixture(
        "brevo/transactional_complaint.json",
        &[Expected {
            reason: Some("spam"),
            subject: None,
            ..transactional("complaint", "complaint", json!({}))
        }],
    )
    .await;
}

#[tokio::test]
async fn brevo_unique_opened_is_a_first_open() {
    assert_fixture(
        "brevo/transactional_unique_opened.json",
        &[Expected {
            user_agent: Some(GOOGLE_PROXY),
            ..transactional(
                "unique_opened",
                "open",
                json!({
                    "sending_ip": "xxx.xxx.xxx.xxx",
                    "template_id": "22",
                    "device_used": "DESKTOP",
                    "mirror_link": PREVIEW,
                    "contact_id": "8",
                    "ts_epoch": 1604933623,
                    "first_open": true
                }),
            )
        }],
    )
    .await;
}

#[tokio::test]
async fn brevo_opened_keeps_the_proxy_user_agent_and_no_reader_ip() {
    // `sending_ip` is Brevo's outbound address, not the reader's: `ip` stays empty.
    assert_fixture(
        "brevo/transactional_opened.json",
        &[Expected {
            user_agent: Some(GOOGLE_PROXY),
            ip: None,
            ..transactional(
                "opened",
                "open",
                json!({
                    "sending_ip": "xxx.xxx.xxx.xxx",
                    "template_id": "22",
                    "device_used": "DESKTOP",
                    "mirror_link": PREVIEW,
                    "contact_id": "8",
                    "ts_epoch": 1604933623
                }),
            )
        }],
    )
    .await;
}

#[tokio::test]
async fn brevo_click_takes_its_link() {
    assert_fixture(
        "brevo/transactional_click.json",
        &[Expected {
            click_url: Some("https://domain.com/product"),
            ..transactional(
                "click",
                "click",
                json!({
                    "sending_ip": "xxx.xxx.xxx.xxx",
                    "ts_epoch": 1604933654,
                    "template_id": "22"
                }),
            )
        }],
    )
    .await;
}

#[tokio::test]
async fn brevo_invalid_email_is_dropped_as_invalid() {
    // Brevo refuses the address itself; no SMTP attempt is reported.
    assert_fixture(
        "brevo/transactional_invalid_email.json",
        &[Expected {
            reason: Some("invalid"),
            ..transactional(
                "invalid_email",
                "dropped",
                json!({"template_id": "22", "ts_epoch": 1604933623}),
            )
        }],
    )
    .await;
}

#[tokio::test]
async fn brevo_blocked_is_dropped_as_blocked() {
    assert_fixture(
        "brevo/transactional_blocked.json",
        &[Expected {
            reason: Some("blocked"),
            ..transactional(
                "blocked",
                "dropped",
                json!({"template_id": "22", "ts_epoch": 1604933623}),
            )
        }],
    )
    .await;
}

#[tokio::test]
async fn brevo_error_is_a_failure_of_unknown_cause() {
    assert_fixture(
        "brevo/transactional_error.json",
        &[Expected {
            reason: Some("other"),
            ..transactional(
                "error",
                "failed",
                json!({"template_id": "22", "ts_epoch": 1604933623}),
            )
        }],
    )
    .await;
}

#[tokio::test]
async fn brevo_unsubscribed_reads_its_tag_written_as_a_json_string() {
    // No `tags`; `tag` is "[\"transactionalTag\"]".
    assert_fixture(
        "brevo/transactional_unsubscribed.json",
        &[Expected {
            reason: Some("unsubscribed"),
            tags: &["transactionalTag"],
            user_agent: Some(GOOGLE_PROXY),
            ..transactional(
                "unsubscribed",
                "unsubscribe",
                json!({
                    "template_id": "22",
                    "device_used": "MOBILE",
                    "mirror_link": PREVIEW,
                    "contact_id": "8",
                    "ts_epoch": 1604933623,
                    "sending_ip": "xxx.xxx.xxx.xxx"
                }),
            )
        }],
    )
    .await;
}

#[tokio::test]
async fn brevo_proxy_open_is_an_open_flagged_as_proxy() {
    // `tags` and `tag` hold the same list: no repeats. `ts_epoch` is milliseconds here,
    // `ts_event` seconds: `ts_event` wins. The 19-digit `contact_id` is kept exactly.
    assert_fixture(
        "brevo/transactional_proxy_open.json",
        &[proxy_open("proxy_open", json!({}))],
    )
    .await;
}

#[tokio::test]
async fn brevo_unique_proxy_open_is_a_first_proxy_open() {
    assert_fixture(
        "brevo/transactional_unique_proxy_open.json",
        &[proxy_open("unique_proxy_open", json!({"first_open": true}))],
    )
    .await;
}

// ---------------------------------------------------------------------------------------
// Marketing fixtures.

#[tokio::test]
async fn brevo_marketing_spam_keeps_its_reason_and_trims_the_campaign() {
    // "campaign name" is "My First Campaign " in the official sample.
    assert_fixture(
        "brevo/marketing_spam.json",
        &[Expected {
            reason: Some("spam"),
            ..campaign("spam", "complaint", json!({"reason": "undesired"}))
        }],
    )
    .await;
}

#[tokio::test]
async fn brevo_marketing_opened() {
    assert_fixture(
        "brevo/marketing_opened.json",
        &[campaign("opened", "open", json!({}))],
    )
    .await;
}

#[tokio::test]
async fn brevo_marketing_click_takes_its_upper_case_url() {
    assert_fixture(
        "brevo/marketing_click.json",
        &[Expected {
            click_url: Some("https://myCampaignUrl.net"),
            ..campaign("click", "click", json!({}))
        }],
    )
    .await;
}

#[tokio::test]
async fn brevo_marketing_hard_bounced_is_hard() {
    assert_fixture(
        "brevo/marketing_hard_bounced.json",
        &[Expected {
            bounce_class: Some("hard"),
            reason: Some("bounced"),
            smtp_response: Some("deferred"),
            ..campaign(
                "hard_bounced",
                "bounce",
                json!({"sending_ip": "xxx.xxx.xxx.xxx"}),
            )
        }],
    )
    .await;
}

#[tokio::test]
async fn brevo_marketing_soft_bounced_is_soft() {
    assert_fixture(
        "brevo/marketing_soft_bounced.json",
        &[Expected {
            bounce_class: Some("soft"),
            reason: Some("bounced"),
            smtp_response: Some("deferred"),
            ..campaign(
                "soft_bounced",
                "bounce",
                json!({"sending_ip": "xxx.xxx.xxx.xxx"}),
            )
        }],
    )
    .await;
}

#[tokio::test]
async fn brevo_marketing_delivered() {
    assert_fixture(
        "brevo/marketing_delivered.json",
        &[campaign(
            "delivered",
            "delivered",
            json!({"sending_ip": "xxx.xxx.xxx.xxx"}),
        )],
    )
    .await;
}

#[tokio::test]
async fn brevo_marketing_unsubscribed_keeps_its_lists() {
    assert_fixture(
        "brevo/marketing_unsubscribed.json",
        &[Expected {
            reason: Some("unsubscribed"),
            ..campaign(
                "unsubscribed",
                "unsubscribe",
                json!({"sending_ip": "xxx.xxx.xxx.xxx", "list_id": [3, 42]}),
            )
        }],
    )
    .await;
}

#[tokio::test]
async fn brevo_list_addition_is_a_subscribe() {
    assert_fixture(
        "brevo/marketing_list_addition.json",
        &[contact(
            "list_addition",
            "subscribe",
            json!({"list_id": [34, 12]}),
        )],
    )
    .await;
}

#[tokio::test]
async fn brevo_contact_updated_is_other_without_a_warning() {
    // A documented event with no kind of its own: `other`, but not "unknown".
    assert_fixture(
        "brevo/marketing_contact_updated.json",
        &[contact(
            "contact_updated",
            "other",
            json!({"content": {"name": "John", "lastname": "Doe", "work_phone": "+506 2220 2307"}}),
        )],
    )
    .await;
}

#[tokio::test]
async fn brevo_contact_deleted_is_other_not_an_unsubscribe() {
    assert_fixture(
        "brevo/marketing_contact_deleted.json",
        &[contact(
            "contact_deleted",
            "other",
            json!({"list_id": [35]}),
        )],
    )
    .await;
}

#[tokio::test]
async fn brevo_batched_body_mixes_both_families() {
    // Constructed variant (the batched shape is undocumented): a bare array, one
    // transactional event with a bracketed message id, one campaign event with a plain tag.
    assert_fixture(
        "brevo/variant_batch_array.json",
        &[
            Expected {
                recipient: "first@example.com",
                ..transactional(
                    "delivered",
                    "delivered",
                    json!({"sending_ip": "xxx.xxx.xxx.xxx", "template_id": "22"}),
                )
            },
            Expected {
                recipient: "second@example.com",
                tags: &["newsletter"],
                ..campaign("opened", "open", json!({}))
            },
        ],
    )
    .await;
}

// ---------------------------------------------------------------------------------------
// Time, ids and odd input.

/// Posts `body` to the `brevo` source and returns the report and the stored events.
async fn post(app: &TestApp, body: &Value) -> (Value, Vec<Value>) {
    app.post_and_read("brevo", body.to_string()).await
}

/// Posts one element and checks the one event it gives.
async fn assert_one(app: &TestApp, element: Value, expected: &Expected) {
    let (report, events) = post(app, &element).await;
    assert_eq!(report["accepted"], 1, "{report}");
    check("brevo", &events[0], &element, expected);
}

/// A fixture as JSON, to vary.
fn fixture(name: &str) -> Value {
    serde_json::from_slice(&read_fixture(&format!("brevo/{name}.json"))).expect("fixture is JSON")
}

/// `value` without the keys `remove`.
fn without(mut value: Value, remove: &[&str]) -> Value {
    let map = value.as_object_mut().expect("an object");
    for key in remove {
        map.remove(*key);
    }
    value
}

#[tokio::test]
async fn brevo_date_alone_is_read_in_paris_time_by_default() {
    // Documented as CET/CEST: 2020-10-09 00:00:00 CEST is 2020-10-08T22:00:00Z.
    let app = spawn_app().await;
    let element = without(fixture("transactional_delivered"), &["ts", "ts_event"]);
    let expected = Expected {
        occurred_at: Some("2020-10-08T22:00:00Z"),
        time_quality: "assumed_tz",
        metadata: json!({
            "webhook_id": "12345",
            "webhook_type": "transactional",
            "X-Mailin-custom": "some_custom_header",
            "sending_ip": "xxx.xxx.xxx.xxx",
            "template_id": "22"
        }),
        ..transactional("delivered", "delivered", json!({}))
    };
    assert_one(&app, element, &expected).await;
}

#[tokio::test]
async fn brevo_date_alone_follows_the_configured_account_zone() {
    // The 2024 sample's `date` 16:03:29 against `ts` 10:33:29Z is UTC+05:30: the account's
    // zone. With `timezone = "Asia/Kolkata"` the date alone gives the same instant.
    let app = spawn_app_with(|config| {
        config.sources.insert(
            "brevo".into(),
            SourceConfig {
                timezone: Some("Asia/Kolkata".into()),
                ..SourceConfig::new("brevo")
            },
        );
    })
    .await;
    let element = without(
        fixture("transactional_unique_proxy_open"),
        &["ts", "ts_event", "ts_epoch"],
    );
    let mut expected = proxy_open("unique_proxy_open", json!({"first_open": true}));
    expected.time_quality = "assumed_tz";
    for key in ["date", "ts", "ts_epoch"] {
        expected.metadata.as_object_mut().unwrap().remove(key);
    }
    assert_one(&app, element, &expected).await;
}

#[tokio::test]
async fn brevo_ts_epoch_in_milliseconds_stands_in_for_ts_event() {
    let app = spawn_app().await;
    let element = without(fixture("transactional_proxy_open"), &["ts_event"]);
    let mut expected = proxy_open("proxy_open", json!({}));
    expected.occurred_at = Some("2024-08-22T10:33:29.710Z");
    expected
        .metadata
        .as_object_mut()
        .unwrap()
        .remove("ts_epoch");
    assert_one(&app, element, &expected).await;
}

#[tokio::test]
async fn brevo_event_without_any_time_is_missing_with_a_warning() {
    let app = spawn_app().await;
    let element = without(fixture("transactional_spam"), &["ts", "ts_event", "date"]);
    let expected = Expected {
        reason: Some("spam"),
        subject: None,
        occurred_at: None,
        time_quality: "missing",
        metadata: json!({
            "webhook_id": "12345",
            "webhook_type": "transactional",
            "X-Mailin-custom": "some_custom_header"
        }),
        warnings: &[
            "field `ts_event`: missing, as are `ts_epoch`, `ts`, `date_event` and `date`; time left empty",
        ],
        ..transactional("spam", "complaint", json!({}))
    };
    assert_one(&app, element, &expected).await;
}

#[tokio::test]
async fn brevo_numbers_as_strings_read_like_numbers() {
    // Every number of the delivered sample as a string, and `tags` as one string.
    let app = spawn_app().await;
    let element = json!({
        "event": "delivered",
        "email": "example@domain.com",
        "id": "12345",
        "date": "2020-10-09 00:00:00",
        "ts": "1604933619",
        "message-id": "201798300811.5787683@relay.domain.com",
        "ts_event": "1604933654",
        "subject": "My first Transactional",
        "X-Mailin-custom": "some_custom_header",
        "template_id": "22",
        "contact_id": "8",
        "tags": "transac_messages"
    });
    let expected = Expected {
        metadata: transactional_metadata(json!({
            "ts": "1604933619",
            "template_id": "22",
            "contact_id": "8"
        })),
        ..transactional("delivered", "delivered", json!({}))
    };
    assert_one(&app, element, &expected).await;
}

#[tokio::test]
async fn brevo_wrong_types_become_warnings_and_the_next_time_is_used() {
    // An object for `ts_event` and `subject`, a number for `message-id`, an array of
    // lists for `tags`: each is warned about; `ts_epoch` (milliseconds) gives the time.
    let app = spawn_app().await;
    let element = json!({
        "event": "click",
        "email": "example@domain.com",
        "id": 12345,
        "message-id": 201798300811_u64,
        "ts_event": {"seconds": 1604933654},
        "ts_epoch": 1604933654123_u64,
        "subject": {"text": "My first Transactional"},
        "tags": [["nested"], "transac_messages"],
        "link": "https://domain.com/product"
    });
    let expected = Expected {
        provider_event: "click",
        kind: "click",
        recipient: RECIPIENT,
        occurred_at: Some("2020-11-09T14:54:14.123Z"),
        time_quality: "exact",
        message_id: Some("201798300811"),
        click_url: Some("https://domain.com/product"),
        tags: &["transac_messages"],
        metadata: json!({"webhook_id": "12345", "webhook_type": "transactional"}),
        warnings: &[
            "field `ts_event`: expected a time, found an object; `ts_epoch` used instead",
            "field `subject`: expected text, found an object; ignored",
            "field `tags`: item is an array; ignored",
        ],
        ..Expected::default()
    };
    assert_one(&app, element, &expected).await;
}

#[tokio::test]
async fn brevo_missing_recipients_are_quarantined_and_the_rest_kept() {
    // The 2024 doc sample exactly as documented (`"email": ""`), one without `email`, one
    // with no address in it, one with a number: all quarantined; the good one is stored.
    let app = spawn_app().await;
    let good = fixture("transactional_delivered");
    let mut documented = fixture("transactional_unique_proxy_open");
    documented["email"] = json!("");
    let body = json!([
        good.clone(),
        documented,
        without(fixture("marketing_opened"), &["email"]),
        merged(
            fixture("marketing_click"),
            json!({"email": "not-an-address"})
        ),
        merged(fixture("transactional_spam"), json!({"email": 42})),
    ]);
    let (report, events) = post(&app, &body).await;
    assert_eq!(report["accepted"], 1, "{report}");
    assert_eq!(report["quarantined"], 4, "{report}");
    let errors: Vec<(u64, String)> = report["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| {
            (
                e["index"].as_u64().unwrap(),
                e["error"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        errors,
        [
            (1, "no valid recipient address: `email` is empty".to_owned()),
            (
                2,
                "no valid recipient address: none of `email` is present".to_owned()
            ),
            (
                3,
                "no valid recipient address: `email`: `not-an-address`: address has no local part and domain"
                    .to_owned()
            ),
            (
                4,
                "no valid recipient address: `email`: `42`: address has no local part and domain"
                    .to_owned()
            ),
        ]
    );
    check(
        "brevo",
        &events[0],
        &good,
        &transactional(
            "delivered",
            "delivered",
            json!({"sending_ip": "xxx.xxx.xxx.xxx", "template_id": "22"}),
        ),
    );
    let (status, page) = app.get("/api/quarantine?limit=100").await;
    assert_eq!(status, 200, "{page}");
    let entries = page["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 4, "{page}");
    for entry in entries {
        let index = entry["index"].as_u64().expect("index") as usize;
        assert_eq!(entry["element"], body[index], "{entry}");
    }
}

#[tokio::test]
async fn brevo_unknown_event_is_stored_as_other_with_a_warning() {
    // `reply` is an inbound webhook event, not an e-mail delivery event.
    let app = spawn_app().await;
    let element = merged(
        fixture("transactional_delivered"),
        json!({"event": "reply"}),
    );
    let expected = Expected {
        warnings: &["unknown event `reply`; stored as `other`"],
        ..transactional(
            "reply",
            "other",
            json!({"sending_ip": "xxx.xxx.xxx.xxx", "template_id": "22"}),
        )
    };
    assert_one(&app, element, &expected).await;
}

#[tokio::test]
async fn brevo_subscription_names_are_read_like_payload_names() {
    // Names used to subscribe (`hardBounce`, `uniqueOpened`, `listAddition`), should a
    // payload ever carry them.
    let app = spawn_app().await;
    let element = merged(
        fixture("transactional_hard_bounce"),
        json!({"event": "hardBounce"}),
    );
    let (_, events) = post(&app, &element).await;
    assert_eq!(events[0]["kind"], "bounce", "{}", events[0]);
    assert_eq!(events[0]["bounce_class"], "hard", "{}", events[0]);
    let element = merged(
        fixture("transactional_unique_opened"),
        json!({"event": "uniqueOpened"}),
    );
    let (_, events) = post(&app, &element).await;
    assert_eq!(events[0]["kind"], "open", "{}", events[0]);
    assert_eq!(events[0]["metadata"]["first_open"], true, "{}", events[0]);
    let element = merged(
        fixture("marketing_list_addition"),
        json!({"event": "listAddition"}),
    );
    let (_, events) = post(&app, &element).await;
    assert_eq!(events[0]["kind"], "subscribe", "{}", events[0]);
    assert!(events[0].get("warnings").is_none(), "{}", events[0]);
}

#[tokio::test]
async fn brevo_bracketed_message_id_and_every_tag_shape_are_normalized() {
    // The send API's `<…>` form, `tags` beside a `tag` JSON string with one repeat and
    // one new tag.
    let app = spawn_app().await;
    let element = merged(
        fixture("transactional_delivered"),
        json!({
            "message-id": "<201798300811.5787683@relay.domain.com>",
            "tags": ["transac_messages", "welcome"],
            "tag": "[\"welcome\", \"onboarding\"]"
        }),
    );
    let expected = Expected {
        tags: &["transac_messages", "welcome", "onboarding"],
        ..transactional(
            "delivered",
            "delivered",
            json!({"sending_ip": "xxx.xxx.xxx.xxx", "template_id": "22"}),
        )
    };
    assert_one(&app, element, &expected).await;
}

#[tokio::test]
async fn brevo_hostile_strings_are_clipped_or_kept_as_sent() {
    // A 5,000-character subject is cut to 2,000 with a warning; control characters in the
    // user agent are kept as sent (the JSON answer escapes them); a 300-character event
    // name is unknown and clipped to 200.
    let app = spawn_app().await;
    let subject = "S".repeat(5_000);
    let agent = "Mozilla/5.0\u{0}\u{1b}[31m\r\nX-Injected: yes";
    let element = merged(
        fixture("transactional_opened"),
        json!({"subject": subject, "user_agent": agent}),
    );
    let (report, events) = post(&app, &element).await;
    assert_eq!(report["warnings"], 1, "{report}");
    let event = &events[0];
    assert_eq!(event["subject"], json!("S".repeat(2_000)), "{event}");
    assert_eq!(event["user_agent"], agent, "{event}");
    assert_eq!(
        event["warnings"],
        json!(["field `subject`: 5000 characters; only the first 2000 are kept (raw has all)"]),
    );
    assert_eq!(event["raw"], element);

    let name = "x".repeat(300);
    let element = merged(fixture("transactional_delivered"), json!({"event": name}));
    let (_, events) = post(&app, &element).await;
    let event = &events[0];
    assert_eq!(event["kind"], "other", "{event}");
    assert_eq!(event["provider_event"], json!("x".repeat(200)), "{event}");
    assert_eq!(
        event["warnings"],
        json!([format!(
            "unknown event `{}`; stored as `other`",
            "x".repeat(64)
        )]),
    );
}

#[tokio::test]
async fn brevo_huge_ids_are_kept_exactly() {
    // Larger than any 64-bit integer: strings with every digit, never through floats.
    let app = spawn_app().await;
    // Posted as text: a `Value` would already have rounded them.
    let body = r#"{
        "event": "delivered",
        "email": "example@domain.com",
        "id": 123456789012345678901234567890,
        "ts_event": 1604933654,
        "message-id": "<98765432109876543210987654321@relay.domain.com>",
        "template_id": 18446744073709551616,
        "contact_id": 4816445214646337536
    }"#;
    let (status, report) = app.post("brevo", body).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["accepted"], 1, "{report}");
    let id = report["event_ids"][0].as_str().expect("id");
    let (status, events) = app.get(&format!("/api/events/{id}")).await;
    assert_eq!(status, 200, "{events}");
    let events = [events];
    let event = &events[0];
    assert_eq!(
        event["message_id"], "98765432109876543210987654321@relay.domain.com",
        "{event}"
    );
    assert_eq!(
        event["metadata"],
        json!({
            "webhook_id": "123456789012345678901234567890",
            "webhook_type": "transactional",
            "template_id": "18446744073709551616",
            "contact_id": "4816445214646337536"
        }),
        "{event}"
    );
    assert!(event.get("provider_event_id").is_none(), "{event}");
}

#[tokio::test]
async fn brevo_webhook_id_is_not_an_event_id() {
    // Every event of a webhook carries the same `id`: two events of webhook 12345 are both
    // stored, and only a repeat of the very same event is a duplicate.
    let app = spawn_app().await;
    let body = json!([
        fixture("transactional_request"),
        fixture("transactional_delivered")
    ]);
    let (report, _) = post(&app, &body).await;
    assert_eq!(report["accepted"], 2, "{report}");
    let (report, _) = post(&app, &fixture("transactional_delivered")).await;
    assert_eq!(report["accepted"], 0, "{report}");
    assert_eq!(report["duplicates"], 1, "{report}");
}

#[tokio::test]
async fn brevo_storage_failures_answer_429_so_brevo_retries() {
    // https://developers.brevo.com/docs/retry-mechanism: any 5xx, and every 4xx but 429,
    // makes Brevo discard the webhook for good.
    let provider = mailwarden::ingest::providers::find("brevo").expect("brevo is built in");
    assert_eq!(provider.retry_status().as_u16(), 429);
}
