//! SparkPost: batches of `{"msys": {"<class>": {...}}}` wrappers, Unix seconds as strings
//! (numbers in the 2016 samples), `bounce_class` codes from SparkPost's table.
//!
//! The per-event fixtures hold the documented sample values of SparkPost's documentation
//! endpoint (2020); `batch.json` is the samples endpoint's output saved in 2016;
//! `variant_bounce_classes.json` is a constructed batch (not a SparkPost sample) with one
//! bounce per classification code, its replies written to match each class.
//!
//! The documented reply `MAIL REFUSED - IP (17.99.99.99) is in black list` has no
//! enhanced code and no phrase `smtp::classify` knows ("black list" with a space), so it
//! classifies as `bounced`.

use base64::Engine as _;
use mailwarden::config::{Secret, SourceConfig};
use serde_json::{Value, json};

use super::{Expected, assert_fixture, check, merged};
use crate::helpers::{TestApp, read_fixture, spawn_app, spawn_app_with};

const RECIPIENT: &str = "recipient@example.com";
const SENDER: &str = "sender@example.com";
const SUBJECT: &str = "Summer deals are here!";
const CAMPAIGN: &str = "Example Campaign Name";
/// `timestamp` "1460989507" of the documented samples (also their `injection_time`).
const AT: &str = "2016-04-18T14:25:07Z";
const MESSAGE_ID: &str = "000443ee14578172be22";
const RAW_REASON: &str = "MAIL REFUSED - IP (17.99.99.99) is in black list";
const MASKED_REASON: &str = "MAIL REFUSED - IP (a.b.c.d) is in black list";
const USER_AGENT: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_10_3) AppleWebKit/537.36 \
                          (KHTML, like Gecko) Chrome/41.0.2272.118 Safari/537.36";
const TAGS: &[&str] = &["male", "US"];

/// A documented sample event about the sample message to `recipient@example.com`.
fn sample(event: &'static str, kind: &'static str) -> Expected {
    Expected {
        provider_event: event,
        kind,
        recipient: RECIPIENT,
        occurred_at: Some(AT),
        time_quality: "exact",
        message_id: Some(MESSAGE_ID),
        sender: Some(SENDER),
        subject: Some(SUBJECT),
        campaign: Some(CAMPAIGN),
        tags: TAGS,
        ..Expected::default()
    }
}

/// Metadata every documented e-mail sample event keeps, plus `extra`.
fn metadata(class: &str, extra: Value) -> Value {
    merged(&[
        json!({
            "event_class": class,
            "customer_id": "1",
            "event_id": "92356927693813856",
            "ip_pool": "example-ip-pool",
            "rcpt_hash": "2aae6c35c94fcfb415dbe95f408b9ce91ee846ed",
            "rcpt_meta": {"customKey": "customValue"},
            "recipient_domain": "example.com",
            "sending_ip": "127.0.0.1",
            "subaccount_id": "101",
            "template_id": "templ-1234",
            "template_version": "1",
            "transactional": "1",
            "transmission_id": "65832150921904138"
        }),
        extra,
    ])
}

/// The A/B test fields of most samples.
fn ab_test() -> Value {
    json!({"ab_test_id": "password-reset", "ab_test_version": "1"})
}

/// The tracking settings of message and engagement samples.
fn tracking() -> Value {
    json!({
        "amp_enabled": true,
        "click_tracking": true,
        "initial_pixel": true,
        "open_tracking": true
    })
}

/// The SMS fields message samples carry (SparkPost's format is shared with SMS).
fn sms() -> Value {
    json!({
        "sms_coding": "ASCII",
        "sms_dst": "7876712656",
        "sms_dst_npi": "E164",
        "sms_dst_ton": "International",
        "sms_src": "1234",
        "sms_src_npi": "E164",
        "sms_src_ton": "Unknown"
    })
}

/// Fields about the message's journey that stay in metadata.
fn journey() -> Value {
    json!({
        "injection_time": "2016-04-18T14:25:07.000Z",
        "msg_from": SENDER,
        "msg_size": "1337",
        "num_retries": "2",
        "queue_time": "12",
        "routing_domain": "example.com",
        "scheduled_time": "1588348800"
    })
}

/// `geo_ip` of the 2020 engagement samples (numbers, with zip).
fn geo_ip() -> Value {
    json!({"geo_ip": {
        "zip": 21046,
        "country": "US",
        "city": "Columbia",
        "latitude": 39.1749,
        "region": "MD",
        "postal_code": "21046",
        "longitude": -76.8375
    }})
}

// ---------------------------------------------------------------------------------------
// One test per documented sample.

#[tokio::test]
async fn sparkpost_injection_is_queued() {
    assert_fixture(
        "sparkpost/injection.json",
        &[Expected {
            metadata: metadata(
                "message_event",
                merged(&[
                    ab_test(),
                    tracking(),
                    sms(),
                    json!({
                        "injection_time": "2016-04-18T14:25:07.000Z",
                        "msg_from": SENDER,
                        "msg_size": "1337",
                        "rcpt_type": "cc",
                        "recv_method": "esmtp",
                        "routing_domain": "example.com",
                        "scheduled_time": "1588348800",
                        "sms_segments": 5,
                        "sms_text": "lol"
                    }),
                ]),
            ),
            ..sample("injection", "queued")
        }],
    )
    .await;
}

#[tokio::test]
async fn sparkpost_delivery_keeps_the_mx_address_out_of_ip() {
    // `ip_address` is the receiving MX here, not a reader: metadata only.
    assert_fixture(
        "sparkpost/delivery.json",
        &[Expected {
            metadata: metadata(
                "message_event",
                merged(&[
                    ab_test(),
                    tracking(),
                    sms(),
                    journey(),
                    json!({
                        "delv_method": "esmtp",
                        "device_token": "45c19189783f867973f6e6a5cca60061ffe4fa77c547150563a1192fa9847f8a",
                        "ip_address": "127.0.0.1",
                        "outbound_tls": "-1",
                        "rcpt_type": "cc",
                        "recv_method": "esmtp",
                        "sms_remoteids": ["0000", "0001", "0002", "0003", "0004"],
                        "sms_segments": 5
                    }),
                ]),
            ),
            ..sample("delivery", "delivered")
        }],
    )
    .await;
}

/// Fields of the `bounce` and `delay` samples that stay in metadata.
fn bounce_sample_metadata(extra: Value) -> Value {
    let mut journey = journey();
    journey.as_object_mut().unwrap().remove("queue_time");
    metadata(
        "message_event",
        merged(&[
            tracking(),
            sms(),
            journey,
            json!({
                "bounce_class": "1",
                "delv_method": "esmtp",
                "device_token": "45c19189783f867973f6e6a5cca60061ffe4fa77c547150563a1192fa9847f8a",
                "ip_address": "127.0.0.1",
                "rcpt_type": "cc",
                "reason": MASKED_REASON,
                "recv_method": "esmtp"
            }),
            extra,
        ]),
    )
}

#[tokio::test]
async fn sparkpost_bounce_class_1_is_undetermined() {
    // Class 1 "Undetermined": SparkPost could not identify the reply. `error_code` is the
    // basic code; the reply has no enhanced code.
    assert_fixture(
        "sparkpost/bounce.json",
        &[Expected {
            bounce_class: Some("undetermined"),
            reason: Some("bounced"),
            smtp_code: Some(554),
            smtp_response: Some(RAW_REASON),
            metadata: bounce_sample_metadata(json!({})),
            ..sample("bounce", "bounce")
        }],
    )
    .await;
}

#[tokio::test]
async fn sparkpost_delay_is_deferred_without_a_bounce_class() {
    // A delay carries `bounce_class` too; it says why, never that it bounced.
    assert_fixture(
        "sparkpost/delay.json",
        &[Expected {
            reason: Some("bounced"),
            smtp_code: Some(554),
            smtp_response: Some(RAW_REASON),
            metadata: bounce_sample_metadata(json!({"outbound_tls": "-1", "queue_time": "12"})),
            ..sample("delay", "deferred")
        }],
    )
    .await;
}

#[tokio::test]
async fn sparkpost_out_of_band_bounce_follows_its_class() {
    assert_fixture(
        "sparkpost/out_of_band.json",
        &[Expected {
            bounce_class: Some("undetermined"),
            reason: Some("bounced"),
            smtp_code: Some(554),
            smtp_response: Some(RAW_REASON),
            metadata: metadata(
                "message_event",
                merged(&[
                    ab_test(),
                    journey(),
                    json!({
                        "bounce_class": "1",
                        "delv_method": "esmtp",
                        "device_token": "45c19189783f867973f6e6a5cca60061ffe4fa77c547150563a1192fa9847f8a",
                        "ip_address": "127.0.0.1",
                        "reason": MASKED_REASON,
                        "recv_method": "esmtp"
                    }),
                ]),
            ),
            ..sample("out_of_band", "bounce")
        }],
    )
    .await;
}

#[tokio::test]
async fn sparkpost_spam_complaint_is_a_complaint() {
    assert_fixture(
        "sparkpost/spam_complaint.json",
        &[Expected {
            reason: Some("spam"),
            metadata: metadata(
                "message_event",
                merged(&[
                    ab_test(),
                    journey(),
                    json!({
                        "delv_method": "esmtp",
                        "fbtype": "abuse",
                        "ip_address": "127.0.0.1",
                        "rcpt_type": "cc",
                        "report_by": "server.email.com",
                        "report_to": "abuse.example.com"
                    }),
                ]),
            ),
            ..sample("spam_complaint", "complaint")
        }],
    )
    .await;
}

#[tokio::test]
async fn sparkpost_policy_rejection_is_dropped() {
    // SparkPost refused it by policy (class 25, Admin): never a bounce. No subject is
    // documented for this event.
    assert_fixture(
        "sparkpost/policy_rejection.json",
        &[Expected {
            reason: Some("bounced"),
            smtp_code: Some(554),
            smtp_response: Some(RAW_REASON),
            subject: None,
            metadata: metadata(
                "message_event",
                merged(&[
                    ab_test(),
                    json!({
                        "bounce_class": "25",
                        "injection_time": "2016-04-18T14:25:07.000Z",
                        "msg_from": SENDER,
                        "rcpt_type": "cc",
                        "reason": MASKED_REASON,
                        "recv_method": "esmtp",
                        "remote_addr": "127.0.0.1"
                    }),
                ]),
            ),
            ..sample("policy_rejection", "dropped")
        }],
    )
    .await;
}

/// Fields of the generation samples that stay in metadata.
fn generation_metadata(extra: Value) -> Value {
    metadata(
        "gen_event",
        merged(&[
            ab_test(),
            json!({
                "rcpt_subs": {"country": "US", "gender": "Female"},
                "reason": MASKED_REASON,
                "recv_method": "esmtp",
                "routing_domain": "example.com",
                "scheduled_time": "1588348800"
            }),
            extra,
        ]),
    )
}

#[tokio::test]
async fn sparkpost_generation_failure_is_failed_without_a_message_id() {
    // The message was never built: no `message_id`, no subject, no envelope sender.
    assert_fixture(
        "sparkpost/generation_failure.json",
        &[Expected {
            reason: Some("bounced"),
            message_id: None,
            subject: None,
            smtp_code: Some(554),
            smtp_response: Some(RAW_REASON),
            metadata: generation_metadata(json!({})),
            ..sample("generation_failure", "failed")
        }],
    )
    .await;
}

#[tokio::test]
async fn sparkpost_generation_rejection_is_dropped() {
    assert_fixture(
        "sparkpost/generation_rejection.json",
        &[Expected {
            reason: Some("bounced"),
            message_id: None,
            smtp_code: Some(554),
            smtp_response: Some(RAW_REASON),
            metadata: generation_metadata(json!({"bounce_class": "25"})),
            ..sample("generation_rejection", "dropped")
        }],
    )
    .await;
}

/// Fields of the engagement samples that stay in metadata.
fn engagement_metadata(extra: Value) -> Value {
    metadata(
        "track_event",
        merged(&[
            ab_test(),
            tracking(),
            journey(),
            geo_ip(),
            json!({"delv_method": "esmtp", "rcpt_type": "cc"}),
            extra,
        ]),
    )
}

/// An open sample: the reader's address and browser.
fn opened(event: &'static str) -> Expected {
    Expected {
        ip: Some("127.0.0.1"),
        user_agent: Some(USER_AGENT),
        metadata: engagement_metadata(json!({})),
        ..sample(event, "open")
    }
}

/// A click sample: what an open has, plus the link.
fn clicked(event: &'static str) -> Expected {
    Expected {
        kind: "click",
        click_url: Some("http://example.com"),
        metadata: engagement_metadata(json!({"target_link_name": "Example Link Name"})),
        ..opened(event)
    }
}

#[tokio::test]
async fn sparkpost_open_has_the_readers_ip() {
    assert_fixture("sparkpost/open.json", &[opened("open")]).await;
}

#[tokio::test]
async fn sparkpost_initial_open_is_an_open() {
    // The pixel at the top of the message: one reading may give `open` and `initial_open`.
    assert_fixture("sparkpost/initial_open.json", &[opened("initial_open")]).await;
}

#[tokio::test]
async fn sparkpost_amp_open_is_an_open() {
    assert_fixture("sparkpost/amp_open.json", &[opened("amp_open")]).await;
}

#[tokio::test]
async fn sparkpost_amp_initial_open_is_an_open() {
    assert_fixture(
        "sparkpost/amp_initial_open.json",
        &[opened("amp_initial_open")],
    )
    .await;
}

#[tokio::test]
async fn sparkpost_click_has_the_link() {
    assert_fixture("sparkpost/click.json", &[clicked("click")]).await;
}

#[tokio::test]
async fn sparkpost_amp_click_is_a_click() {
    assert_fixture("sparkpost/amp_click.json", &[clicked("amp_click")]).await;
}

/// Fields of the unsubscribe samples that stay in metadata.
fn unsubscribe_metadata(extra: Value) -> Value {
    metadata(
        "unsubscribe_event",
        merged(&[
            ab_test(),
            tracking(),
            journey(),
            json!({
                "mailfrom": RECIPIENT,
                "rcpt_type": "cc",
                "recv_method": "esmtp"
            }),
            extra,
        ]),
    )
}

#[tokio::test]
async fn sparkpost_list_unsubscribe_keeps_the_ip_in_metadata() {
    // The List-Unsubscribe request comes from the mailbox provider, not the reader.
    assert_fixture(
        "sparkpost/list_unsubscribe.json",
        &[Expected {
            reason: Some("unsubscribed"),
            metadata: unsubscribe_metadata(json!({"ip_address": "127.0.0.1"})),
            ..sample("list_unsubscribe", "unsubscribe")
        }],
    )
    .await;
}

#[tokio::test]
async fn sparkpost_link_unsubscribe_is_a_readers_click() {
    assert_fixture(
        "sparkpost/link_unsubscribe.json",
        &[Expected {
            reason: Some("unsubscribed"),
            click_url: Some("http://example.com"),
            ip: Some("127.0.0.1"),
            user_agent: Some(USER_AGENT),
            metadata: unsubscribe_metadata(json!({
                "delv_method": "esmtp",
                "target_link_name": "Example Link Name"
            })),
            ..sample("link_unsubscribe", "unsubscribe")
        }],
    )
    .await;
}

/// A documented relay (inbound) sample: `other` without the unknown-event warning; the
/// sender is the inbound message's envelope sender.
fn relay(event: &'static str, extra: Value) -> Expected {
    Expected {
        provider_event: event,
        kind: "other",
        recipient: RECIPIENT,
        occurred_at: Some(AT),
        time_quality: "exact",
        message_id: Some(MESSAGE_ID),
        sender: Some(SENDER),
        metadata: merged(&[
            json!({
                "event_class": "relay_event",
                "customer_id": "1",
                "event_id": "92356927693813856",
                "injection_time": "2016-04-18T14:25:07.000Z",
                "origination": "inbound",
                "rcpt_hash": "2aae6c35c94fcfb415dbe95f408b9ce91ee846ed",
                "recv_method": "esmtp",
                "relay_id": "123-456-789",
                "subaccount_id": "101"
            }),
            extra,
        ]),
        ..Expected::default()
    }
}

/// The delivery-side fields of the relay samples.
fn relay_delivery_fields() -> Value {
    json!({
        "delv_method": "esmtp",
        "ip_pool": "example-ip-pool",
        "num_retries": "2",
        "queue_time": "12",
        "routing_domain": "example.com",
        "sending_ip": "127.0.0.1"
    })
}

#[tokio::test]
async fn sparkpost_relay_injection_is_other_without_warning() {
    assert_fixture(
        "sparkpost/relay_injection.json",
        &[relay(
            "relay_injection",
            json!({
                "ip_pool": "example-ip-pool",
                "msg_size": "1337",
                "routing_domain": "example.com",
                "sending_ip": "127.0.0.1"
            }),
        )],
    )
    .await;
}

#[tokio::test]
async fn sparkpost_relay_rejection_is_other_with_its_reply() {
    assert_fixture(
        "sparkpost/relay_rejection.json",
        &[Expected {
            smtp_code: Some(554),
            smtp_response: Some(RAW_REASON),
            ..relay(
                "relay_rejection",
                json!({
                    "bounce_class": "25",
                    "reason": MASKED_REASON,
                    "remote_addr": "127.0.0.1"
                }),
            )
        }],
    )
    .await;
}

#[tokio::test]
async fn sparkpost_relay_delivery_is_other() {
    assert_fixture(
        "sparkpost/relay_delivery.json",
        &[relay("relay_delivery", relay_delivery_fields())],
    )
    .await;
}

#[tokio::test]
async fn sparkpost_relay_tempfail_is_other_with_its_reply() {
    assert_fixture(
        "sparkpost/relay_tempfail.json",
        &[Expected {
            smtp_code: Some(554),
            smtp_response: Some(RAW_REASON),
            ..relay(
                "relay_tempfail",
                merged(&[relay_delivery_fields(), json!({"reason": MASKED_REASON})]),
            )
        }],
    )
    .await;
}

#[tokio::test]
async fn sparkpost_relay_permfail_is_other_with_its_reply() {
    assert_fixture(
        "sparkpost/relay_permfail.json",
        &[Expected {
            smtp_code: Some(554),
            smtp_response: Some(RAW_REASON),
            ..relay(
                "relay_permfail",
                merged(&[
                    relay_delivery_fields(),
                    json!({"reason": MASKED_REASON, "outbound_tls": "-1"}),
                ]),
            )
        }],
    )
    .await;
}

/// Posts `fixture`, checks the answer's counts and the quarantine errors `(index,
/// message)`, and that each quarantined element is kept as posted. Returns the app and the
/// answer.
async fn post_expecting_quarantine(
    fixture: &str,
    accepted: usize,
    errors: &[(usize, &str)],
) -> (TestApp, Value) {
    let app = spawn_app().await;
    let (status, report) = app.post_fixture("sparkpost", fixture).await;
    assert_eq!(status, 200, "{fixture}: {report}");
    assert_eq!(report["accepted"], accepted, "{fixture}: {report}");
    assert_eq!(report["quarantined"], errors.len(), "{fixture}: {report}");
    let listed: Vec<(u64, &str)> = report["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("{fixture}: no errors in {report}"))
        .iter()
        .map(|e| (e["index"].as_u64().unwrap(), e["error"].as_str().unwrap()))
        .collect();
    let expected: Vec<(u64, &str)> = errors.iter().map(|(i, e)| (*i as u64, *e)).collect();
    assert_eq!(listed, expected, "{fixture}");

    let elements: Vec<Value> = serde_json::from_slice(&read_fixture(fixture)).unwrap();
    let (status, page) = app.get("/api/quarantine?limit=100").await;
    assert_eq!(status, 200, "{page}");
    let entries = page["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), errors.len(), "{page}");
    for (index, error) in errors {
        let entry = entries
            .iter()
            .find(|entry| entry["index"] == *index)
            .unwrap_or_else(|| panic!("{fixture}: no quarantine entry {index}: {page}"));
        assert_eq!(entry["source"], "sparkpost");
        assert_eq!(entry["error"], *error);
        assert_eq!(entry["element"], elements[*index]);
    }
    (app, report)
}

#[tokio::test]
async fn sparkpost_sms_status_has_no_email_recipient_and_is_quarantined() {
    post_expecting_quarantine(
        "sparkpost/set_aside/sms_status.json",
        0,
        &[(
            0,
            "no valid recipient address: `sms_status` is an SMS status report and names no \
             e-mail recipient (`rcpt_to`); deselect it in the SparkPost webhook's events if \
             it is not wanted",
        )],
    )
    .await;
}

#[tokio::test]
async fn sparkpost_ab_test_completed_has_no_recipient_and_is_quarantined() {
    post_expecting_quarantine(
        "sparkpost/set_aside/ab_test_completed.json",
        0,
        &[(
            0,
            "no valid recipient address: `ab_test_completed` is an A/B test report and names \
             no e-mail recipient (`rcpt_to`); deselect it in the SparkPost webhook's events if \
             it is not wanted",
        )],
    )
    .await;
}

#[tokio::test]
async fn sparkpost_ab_test_cancelled_has_no_recipient_and_is_quarantined() {
    post_expecting_quarantine(
        "sparkpost/set_aside/ab_test_cancelled.json",
        0,
        &[(
            0,
            "no valid recipient address: `ab_test_cancelled` is an A/B test report and names \
             no e-mail recipient (`rcpt_to`); deselect it in the SparkPost webhook's events if \
             it is not wanted",
        )],
    )
    .await;
}

/// Posts `body` and checks it was a ping: 200, nothing stored, nothing quarantined.
async fn assert_ping(app: &TestApp, body: Vec<u8>) {
    let shown = String::from_utf8_lossy(&body).into_owned();
    let (status, report) = app.post("sparkpost", body).await;
    assert_eq!(status, 200, "{shown}: {report}");
    assert_eq!(report["accepted"], 0, "{shown}: {report}");
    assert_eq!(report["quarantined"], 0, "{shown}: {report}");
    assert_eq!(report["duplicates"], 0, "{shown}: {report}");
    assert_eq!(report["warnings"], 0, "{shown}: {report}");
    assert!(report.get("errors").is_none(), "{shown}: {report}");
}

#[tokio::test]
async fn sparkpost_ping_is_answered_and_stores_nothing() {
    // The validate call's documented "Sample Batch"; also a bare wrapper and an empty
    // batch.
    let app = spawn_app().await;
    assert_ping(&app, read_fixture("sparkpost/set_aside/ping.json")).await;
    assert_ping(&app, br#"{"msys": {}}"#.to_vec()).await;
    assert_ping(&app, b"[]".to_vec()).await;
    assert_ping(&app, br#"[{"msys":{}},{"msys":{}}]"#.to_vec()).await;
    assert!(app.events("").await.is_empty());
    let (_, page) = app.get("/api/quarantine").await;
    assert_eq!(page["entries"], json!([]), "{page}");
}

// ---------------------------------------------------------------------------------------
// The samples batch of 2016, verbatim.

/// An event of the 2016 samples batch: numeric `timestamp`, UUID message id.
fn sample_2016(event: &'static str, kind: &'static str, class: &str, extra: Value) -> Expected {
    Expected {
        provider_event: event,
        kind,
        recipient: RECIPIENT,
        occurred_at: Some("2016-02-02T19:50:00Z"),
        time_quality: "exact",
        message_id: Some("0e0d94b7-9085-4e3c-ab30-e3f2cd9c273e"),
        sender: Some(SENDER),
        campaign: Some(CAMPAIGN),
        tags: TAGS,
        metadata: merged(&[
            json!({
                "event_class": class,
                "customer_id": "1",
                "event_id": "92356927693813856",
                "rcpt_meta": {"customKey": "customValue"},
                "subaccount_id": "101",
                "template_id": "templ-1234",
                "template_version": "1",
                "transmission_id": "65832150921904138"
            }),
            extra,
        ]),
        ..Expected::default()
    }
}

/// `geo_ip` of the 2016 samples: coordinates as strings, no zip.
fn geo_ip_2016() -> Value {
    json!({"geo_ip": {
        "country": "US",
        "region": "MD",
        "city": "Columbia",
        "latitude": "39.1749",
        "longitude": "-76.8375"
    }})
}

#[tokio::test]
async fn sparkpost_samples_batch_stores_every_distinct_event() {
    // Every element has the same `event_id` and time: keyed on the id, the bounce and the
    // out-of-band bounce (or the two rejections, the two unsubscribes) would be one event.
    // The SMS status and three relay samples of 2016 have no `rcpt_to`.
    let relay_error = |event: &str| {
        format!(
            "no valid recipient address: `{event}` is an inbound relay event and names no \
             e-mail recipient (`rcpt_to`); deselect it in the SparkPost webhook's events if \
             it is not wanted"
        )
    };
    let (relay_delivery, relay_tempfail, relay_permfail) = (
        relay_error("relay_delivery"),
        relay_error("relay_tempfail"),
        relay_error("relay_permfail"),
    );
    let (app, report) = post_expecting_quarantine(
        "sparkpost/set_aside/batch.json",
        15,
        &[
            (
                3,
                "no valid recipient address: `sms_status` is an SMS status report and names \
                 no e-mail recipient (`rcpt_to`); deselect it in the SparkPost webhook's \
                 events if it is not wanted",
            ),
            (16, &relay_delivery),
            (17, &relay_tempfail),
            (18, &relay_permfail),
        ],
    )
    .await;

    let device = "45c19189783f867973f6e6a5cca60061ffe4fa77c547150563a1192fa9847f8a";
    let failure = |event, kind, extra| Expected {
        reason: Some("bounced"),
        smtp_code: Some(554),
        smtp_response: Some(RAW_REASON),
        ..sample_2016(event, kind, "message_event", extra)
    };
    let expected = [
        (
            0,
            Expected {
                bounce_class: Some("undetermined"),
                subject: Some(SUBJECT),
                ..failure(
                    "bounce",
                    "bounce",
                    merged(&[
                        sms(),
                        json!({
                            "bounce_class": "1",
                            "delv_method": "esmtp",
                            "device_token": device,
                            "ip_address": "127.0.0.1",
                            "msg_from": SENDER,
                            "msg_size": "1337",
                            "num_retries": "2",
                            "rcpt_type": "cc",
                            "reason": MASKED_REASON,
                            "routing_domain": "example.com"
                        }),
                    ]),
                )
            },
        ),
        (
            1,
            Expected {
                subject: Some(SUBJECT),
                ..sample_2016(
                    "delivery",
                    "delivered",
                    "message_event",
                    merged(&[
                        sms(),
                        json!({
                            "delv_method": "esmtp",
                            "device_token": device,
                            "ip_address": "127.0.0.1",
                            "msg_from": SENDER,
                            "msg_size": "1337",
                            "num_retries": "2",
                            "queue_time": "12",
                            "rcpt_type": "cc",
                            "routing_domain": "example.com",
                            "sms_remoteids": ["0000", "0001", "0002", "0003", "0004"],
                            "sms_segments": 5
                        }),
                    ]),
                )
            },
        ),
        (
            2,
            Expected {
                subject: Some(SUBJECT),
                ..sample_2016(
                    "injection",
                    "queued",
                    "message_event",
                    merged(&[
                        sms(),
                        json!({
                            "msg_from": SENDER,
                            "msg_size": "1337",
                            "rcpt_type": "cc",
                            "routing_domain": "example.com",
                            "sms_segments": 5,
                            "sms_text": "lol"
                        }),
                    ]),
                )
            },
        ),
        (
            4,
            Expected {
                reason: Some("spam"),
                subject: Some(SUBJECT),
                ..sample_2016(
                    "spam_complaint",
                    "complaint",
                    "message_event",
                    json!({
                        "delv_method": "esmtp",
                        "fbtype": "abuse",
                        "rcpt_type": "cc",
                        "report_by": "server.email.com",
                        "report_to": "abuse.example.com",
                        "user_str": "Additional Example Information"
                    }),
                )
            },
        ),
        (
            5,
            // No `friendly_from`, tags or campaign here: the envelope sender stands in.
            Expected {
                bounce_class: Some("undetermined"),
                campaign: Some(CAMPAIGN),
                tags: &[],
                metadata: json!({
                    "event_class": "message_event",
                    "bounce_class": "1",
                    "customer_id": "1",
                    "delv_method": "esmtp",
                    "device_token": device,
                    "event_id": "92356927693813856",
                    "reason": MASKED_REASON,
                    "routing_domain": "example.com",
                    "subaccount_id": "101",
                    "template_id": "templ-1234",
                    "template_version": "1"
                }),
                ..failure("out_of_band", "bounce", json!({}))
            },
        ),
        (
            6,
            failure(
                "policy_rejection",
                "dropped",
                json!({
                    "msg_from": SENDER,
                    "rcpt_type": "cc",
                    "reason": MASKED_REASON,
                    "remote_addr": "127.0.0.1"
                }),
            ),
        ),
        (
            7,
            Expected {
                subject: Some(SUBJECT),
                ..failure(
                    "delay",
                    "deferred",
                    merged(&[
                        sms(),
                        json!({
                            "bounce_class": "1",
                            "delv_method": "esmtp",
                            "device_token": device,
                            "ip_address": "127.0.0.1",
                            "msg_from": SENDER,
                            "msg_size": "1337",
                            "num_retries": "2",
                            "queue_time": "12",
                            "rcpt_type": "cc",
                            "reason": MASKED_REASON,
                            "routing_domain": "example.com"
                        }),
                    ]),
                )
            },
        ),
        (
            8,
            // The 2016 engagement samples have no `friendly_from` nor `msg_from`.
            Expected {
                sender: None,
                click_url: Some("http://example.com"),
                user_agent: Some(USER_AGENT),
                ip: Some("127.0.0.1"),
                ..sample_2016(
                    "click",
                    "click",
                    "track_event",
                    merged(&[
                        geo_ip_2016(),
                        json!({
                            "delv_method": "esmtp",
                            "rcpt_type": "cc",
                            "target_link_name": "Example Link Name"
                        }),
                    ]),
                )
            },
        ),
        (
            9,
            Expected {
                sender: None,
                user_agent: Some(USER_AGENT),
                ip: Some("127.0.0.1"),
                ..sample_2016(
                    "open",
                    "open",
                    "track_event",
                    merged(&[
                        geo_ip_2016(),
                        json!({"delv_method": "esmtp", "rcpt_type": "cc"}),
                    ]),
                )
            },
        ),
        (
            10,
            Expected {
                message_id: None,
                ..failure(
                    "generation_failure",
                    "failed",
                    json!({
                        "event_class": "gen_event",
                        "rcpt_subs": {"country": "US", "gender": "Female"},
                        "reason": MASKED_REASON,
                        "routing_domain": "example.com"
                    }),
                )
            },
        ),
        (
            11,
            Expected {
                message_id: None,
                subject: Some(SUBJECT),
                ..failure(
                    "generation_rejection",
                    "dropped",
                    json!({
                        "event_class": "gen_event",
                        "rcpt_subs": {"country": "US", "gender": "Female"},
                        "reason": MASKED_REASON,
                        "routing_domain": "example.com"
                    }),
                )
            },
        ),
        (
            12,
            Expected {
                reason: Some("unsubscribed"),
                ..sample_2016(
                    "list_unsubscribe",
                    "unsubscribe",
                    "unsubscribe_event",
                    json!({"mailfrom": RECIPIENT, "rcpt_type": "cc"}),
                )
            },
        ),
        (
            13,
            // No `ip_address` in this sample: no reader's IP to show.
            Expected {
                reason: Some("unsubscribed"),
                user_agent: Some(USER_AGENT),
                ..sample_2016(
                    "link_unsubscribe",
                    "unsubscribe",
                    "unsubscribe_event",
                    json!({"mailfrom": RECIPIENT, "rcpt_type": "cc"}),
                )
            },
        ),
        (
            14,
            Expected {
                message_id: None,
                campaign: None,
                tags: &[],
                metadata: json!({
                    "event_class": "relay_event",
                    "customer_id": "1",
                    "event_id": "92356927693813856",
                    "msg_size": "1337",
                    "relay_id": "123-456-789",
                    "routing_domain": "example.com",
                    "subaccount_id": "101"
                }),
                ..sample_2016("relay_injection", "other", "relay_event", json!({}))
            },
        ),
        (
            15,
            Expected {
                message_id: None,
                campaign: None,
                tags: &[],
                smtp_code: Some(554),
                smtp_response: Some(RAW_REASON),
                metadata: json!({
                    "event_class": "relay_event",
                    "customer_id": "1",
                    "event_id": "92356927693813856",
                    "reason": MASKED_REASON,
                    "relay_id": "123-456-789",
                    "remote_addr": "127.0.0.1",
                    "subaccount_id": "101"
                }),
                ..sample_2016("relay_rejection", "other", "relay_event", json!({}))
            },
        ),
    ];
    let elements: Vec<Value> =
        serde_json::from_slice(&read_fixture("sparkpost/set_aside/batch.json")).unwrap();
    let ids = report["event_ids"].as_array().expect("event_ids");
    assert_eq!(ids.len(), expected.len(), "{report}");
    for (id, (index, expected)) in ids.iter().zip(&expected) {
        let (status, event) = app
            .get(&format!("/api/events/{}", id.as_str().unwrap()))
            .await;
        assert_eq!(status, 200, "{event}");
        check("sparkpost", &event, &elements[*index], expected);
    }

    // SparkPost retries a batch until it gets a 200: the retry adds nothing.
    let (status, again) = app
        .post_fixture("sparkpost", "sparkpost/set_aside/batch.json")
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["accepted"], 0, "{again}");
    assert_eq!(again["duplicates"], 15, "{again}");
}

// ---------------------------------------------------------------------------------------
// Every bounce classification code (a constructed batch).

#[tokio::test]
async fn sparkpost_bounce_classes_map_per_sparkposts_table() {
    let bounce = |event: &'static str,
                  kind: &'static str,
                  recipient: &'static str,
                  at: &'static str,
                  code: Option<&'static str>,
                  id: &'static str| Expected {
        provider_event: event,
        kind,
        recipient,
        occurred_at: Some(at),
        time_quality: "exact",
        message_id: Some("0004c1a5e0d4b1c2d3e4"),
        metadata: match code {
            Some(code) => {
                json!({"event_class": "message_event", "bounce_class": code, "event_id": id})
            }
            None => json!({"event_class": "message_event", "event_id": id}),
        },
        ..Expected::default()
    };
    assert_fixture(
        "sparkpost/variant_bounce_classes.json",
        &[
            Expected {
                bounce_class: Some("hard"),
                reason: Some("invalid"),
                smtp_code: Some(550),
                smtp_enhanced: Some("5.1.1"),
                smtp_response: Some(
                    "550 5.1.1 <nobody@example.com>: Recipient address rejected: User unknown \
                     in virtual mailbox table",
                ),
                ..bounce(
                    "bounce",
                    "bounce",
                    "nobody@example.com",
                    "2023-11-14T22:13:20Z",
                    Some("10"),
                    "1000000000000000001",
                )
            },
            // 30, Generic Bounce: No RCPT, is hard; the reply tells why.
            Expected {
                bounce_class: Some("hard"),
                reason: Some("invalid"),
                smtp_code: Some(550),
                smtp_enhanced: Some("5.1.1"),
                smtp_response: Some("550 5.1.1 No such recipient here"),
                ..bounce(
                    "bounce",
                    "bounce",
                    "norcpt@example.com",
                    "2023-11-14T22:14:20Z",
                    Some("30"),
                    "1000000000000000002",
                )
            },
            // 21, DNS Failure, is soft: a lookup can fail for a while.
            Expected {
                bounce_class: Some("soft"),
                reason: Some("bounced"),
                smtp_code: Some(554),
                smtp_enhanced: Some("5.4.4"),
                smtp_response: Some("554 5.4.4 [internal] Domain Lookup Failed"),
                ..bounce(
                    "bounce",
                    "bounce",
                    "dns@example.invalid",
                    "2023-11-14T22:15:20Z",
                    Some("21"),
                    "1000000000000000003",
                )
            },
            Expected {
                bounce_class: Some("soft"),
                reason: Some("bounced"),
                smtp_code: Some(452),
                smtp_enhanced: Some("4.2.2"),
                smtp_response: Some(
                    "452 4.2.2 The email account that you tried to reach is over quota",
                ),
                ..bounce(
                    "bounce",
                    "bounce",
                    "full@example.com",
                    "2023-11-14T22:16:20Z",
                    Some("22"),
                    "1000000000000000004",
                )
            },
            Expected {
                bounce_class: Some("soft"),
                reason: Some("other"),
                smtp_code: Some(552),
                smtp_enhanced: Some("5.3.4"),
                smtp_response: Some("552 5.3.4 Message size exceeds fixed limit"),
                ..bounce(
                    "bounce",
                    "bounce",
                    "small@example.com",
                    "2023-11-14T22:17:20Z",
                    Some("23"),
                    "1000000000000000005",
                )
            },
            Expected {
                bounce_class: Some("soft"),
                reason: Some("timed_out"),
                smtp_code: Some(421),
                smtp_enhanced: Some("4.4.2"),
                smtp_response: Some("421 4.4.2 Connection timed out"),
                ..bounce(
                    "bounce",
                    "bounce",
                    "slow@example.com",
                    "2023-11-14T22:18:20Z",
                    Some("24"),
                    "1000000000000000006",
                )
            },
            // Block is soft: "usually temporary", nothing about the address.
            Expected {
                bounce_class: Some("soft"),
                reason: Some("blocked"),
                smtp_code: Some(554),
                smtp_enhanced: Some("5.7.1"),
                smtp_response: Some(
                    "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using \
                     zen.spamhaus.org",
                ),
                ..bounce(
                    "bounce",
                    "bounce",
                    "blocked@example.com",
                    "2023-11-14T22:19:20Z",
                    Some("50"),
                    "1000000000000000007",
                )
            },
            Expected {
                bounce_class: Some("soft"),
                reason: Some("spam"),
                smtp_code: Some(550),
                smtp_enhanced: Some("5.7.1"),
                smtp_response: Some("550 5.7.1 Message rejected as spam by Content Filtering"),
                ..bounce(
                    "bounce",
                    "bounce",
                    "filtered@example.com",
                    "2023-11-14T22:20:20Z",
                    Some("52"),
                    "1000000000000000008",
                )
            },
            // 25, Admin Failure: SparkPost's own policy (the Events Ingest example reply).
            Expected {
                reason: Some("blocked"),
                smtp_code: Some(551),
                smtp_enhanced: Some("5.7.0"),
                smtp_response: Some("551 5.7.0 [internal] recipient blackholed"),
                ..bounce(
                    "bounce",
                    "dropped",
                    "blackholed@example.com",
                    "2023-11-14T22:21:20Z",
                    Some("25"),
                    "1000000000000000009",
                )
            },
            Expected {
                smtp_response: Some("Out of office until Monday"),
                ..bounce(
                    "out_of_band",
                    "autoreply",
                    "away@example.com",
                    "2023-11-14T22:22:20Z",
                    Some("60"),
                    "1000000000000000010",
                )
            },
            Expected {
                smtp_response: Some("Please confirm you are a person by replying to this message"),
                ..bounce(
                    "out_of_band",
                    "autoreply",
                    "challenge@example.com",
                    "2023-11-14T22:23:20Z",
                    Some("100"),
                    "1000000000000000011",
                )
            },
            Expected {
                smtp_response: Some("subscribe"),
                ..bounce(
                    "out_of_band",
                    "subscribe",
                    "joining@example.com",
                    "2023-11-14T22:24:20Z",
                    Some("80"),
                    "1000000000000000012",
                )
            },
            Expected {
                reason: Some("unsubscribed"),
                smtp_response: Some("unsubscribe"),
                ..bounce(
                    "out_of_band",
                    "unsubscribe",
                    "leaving@example.com",
                    "2023-11-14T22:25:20Z",
                    Some("90"),
                    "1000000000000000013",
                )
            },
            // Not in the table: the reply decides, with a warning.
            Expected {
                bounce_class: Some("undetermined"),
                reason: Some("bounced"),
                smtp_code: Some(550),
                smtp_enhanced: Some("5.0.0"),
                smtp_response: Some("550 5.0.0 [internal] message suppressed"),
                warnings: &[
                    "field `msys.message_event.bounce_class`: `26` is not in SparkPost's \
                     classification table; class `undetermined` inferred from the reply",
                ],
                ..bounce(
                    "bounce",
                    "bounce",
                    "quiet@example.com",
                    "2023-11-14T22:26:20Z",
                    Some("26"),
                    "1000000000000000014",
                )
            },
            Expected {
                bounce_class: Some("hard"),
                reason: Some("invalid"),
                smtp_code: Some(550),
                smtp_enhanced: Some("5.1.1"),
                smtp_response: Some("550 5.1.1 user unknown"),
                warnings: &[
                    "field `msys.message_event.bounce_class`: missing; class `hard` inferred \
                     from the reply",
                ],
                ..bounce(
                    "bounce",
                    "bounce",
                    "unclassified@example.com",
                    "2023-11-14T22:27:20Z",
                    None,
                    "1000000000000000015",
                )
            },
        ],
    )
    .await;
}

// ---------------------------------------------------------------------------------------
// Bad and strange input.

/// Posts `body` (one request) and returns the answer and every event it stored.
async fn post_and_read(app: &TestApp, body: &str) -> (Value, Vec<Value>) {
    app.post_and_read("sparkpost", body.to_owned()).await
}

#[tokio::test]
async fn sparkpost_wrong_types_are_read_leniently_and_huge_ids_kept_exactly() {
    // Numbers where SparkPost writes strings, a string where an array or object is
    // expected, an object where a string is; ids too large for 64 bits.
    let body = r#"[{"msys": {"message_event": {
        "type": "bounce",
        "bounce_class": 10,
        "error_code": 550,
        "timestamp": 1700000000,
        "raw_rcpt_to": "typed@example.com",
        "message_id": 123456789012345678901234567890,
        "event_id": 98765432109876543210,
        "transmission_id": 18446744073709551616,
        "subaccount_id": 0,
        "rcpt_tags": "solo",
        "rcpt_meta": "not-an-object",
        "subject": {"text": "hello"},
        "geo_ip": "Columbia"
    }}}]"#;
    let app = spawn_app().await;
    let (report, events) = post_and_read(&app, body).await;
    assert_eq!(report["accepted"], 1, "{report}");
    let elements: Vec<Value> = serde_json::from_str(body).unwrap();
    check(
        "sparkpost",
        &events[0],
        &elements[0],
        &Expected {
            provider_event: "bounce",
            kind: "bounce",
            bounce_class: Some("hard"),
            reason: Some("invalid"),
            recipient: "typed@example.com",
            occurred_at: Some("2023-11-14T22:13:20Z"),
            time_quality: "exact",
            message_id: Some("123456789012345678901234567890"),
            smtp_code: Some(550),
            tags: &["solo"],
            metadata: json!({
                "event_class": "message_event",
                "bounce_class": 10,
                "event_id": "98765432109876543210",
                "transmission_id": "18446744073709551616",
                "subaccount_id": "0",
                "rcpt_meta": "not-an-object",
                "geo_ip": "Columbia"
            }),
            warnings: &[
                "field `msys.message_event.subject`: expected text, found an object; ignored",
            ],
            ..Expected::default()
        },
    );
    // The raw event keeps every digit (the API answers it as it was sent).
    let (_, text) = {
        let id = events[0]["id"].as_str().unwrap();
        let response = app
            .client
            .get(app.url(&format!("/api/events/{id}")))
            .send()
            .await
            .unwrap();
        (response.status(), response.text().await.unwrap())
    };
    assert!(text.contains("123456789012345678901234567890"), "{text}");
    assert!(text.contains("98765432109876543210"), "{text}");
}

#[tokio::test]
async fn sparkpost_bad_elements_are_quarantined_and_the_rest_kept() {
    let good = |kind: &str, recipient: &str| {
        json!({"msys": {"message_event": {
            "type": kind, "rcpt_to": recipient, "timestamp": "1700000000"
        }}})
    };
    let body = json!([
        good("delivery", "first@example.com"),
        {"msys": {"message_event": {"type": "delivery", "timestamp": "1700000000"}}},
        {"msys": {"message_event": {"type": "delivery", "rcpt_to": "not-an-address"}}},
        {"msys": "message_event"},
        {"msys": {"message_event": "delivery"}},
        {"msys": {"message_event": {"type": "open", "rcpt_to": "a@example.com"},
                  "track_event": {"type": "open", "rcpt_to": "a@example.com"}}},
        {"type": "delivery", "rcpt_to": "bare@example.com"},
        {"msys": {"message_event": {"rcpt_to": "untyped@example.com"}}},
        {"msys": {"ab_test_event": {"type": "ab_test_completed", "ab_test": {"id": "x"}}}},
        42,
        good("delivery", "last@example.com"),
    ]);
    let elements = body.as_array().unwrap().clone();
    let app = spawn_app().await;
    let (report, events) = post_and_read(&app, &body.to_string()).await;
    assert_eq!(report["accepted"], 2, "{report}");
    assert_eq!(report["quarantined"], 9, "{report}");
    let recipients: Vec<&Value> = events.iter().map(|e| &e["recipient"]).collect();
    assert_eq!(
        recipients,
        [&json!("first@example.com"), &json!("last@example.com")]
    );
    let expected: [(usize, &str); 9] = [
        (
            1,
            "no valid recipient address: none of `raw_rcpt_to`, `rcpt_to` is present",
        ),
        (
            2,
            "no valid recipient address: `rcpt_to`: `not-an-address`: address has no local \
             part and domain",
        ),
        (
            3,
            "`msys` is a string, expected an object holding one event class",
        ),
        (
            4,
            "`msys.message_event` is a string, expected an event object",
        ),
        (
            5,
            "`msys` holds 2 event classes (`message_event`, `track_event`); SparkPost sends \
             one per element",
        ),
        (
            6,
            "missing `msys` (expected a SparkPost `{\"msys\": {\"<class>\": {...}}}` wrapper)",
        ),
        (7, "missing event name (`type`)"),
        (
            8,
            "no valid recipient address: `ab_test_completed` is an A/B test report and names \
             no e-mail recipient (`rcpt_to`); deselect it in the SparkPost webhook's events if \
             it is not wanted",
        ),
        (9, "expected an event object, found a number"),
    ];
    let errors = report["errors"].as_array().expect("errors");
    let listed: Vec<(usize, &str)> = errors
        .iter()
        .map(|e| {
            (
                e["index"].as_u64().unwrap() as usize,
                e["error"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(listed, expected);
    let (_, page) = app.get("/api/quarantine?limit=100").await;
    let entries = page["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 9, "{page}");
    for (index, error) in expected {
        let entry = entries
            .iter()
            .find(|entry| entry["index"] == index)
            .unwrap_or_else(|| panic!("no quarantine entry {index}: {page}"));
        assert_eq!(entry["error"], error);
        assert_eq!(entry["element"], elements[index]);
    }
}

#[tokio::test]
async fn sparkpost_unknown_event_type_and_class_are_kept_with_warnings() {
    let body = json!([
        {"msys": {"message_event": {
            "type": "engagement_digest", "rcpt_to": "who@example.com", "timestamp": "1700000000"
        }}},
        {"msys": {"future_event": {
            "type": "delivery", "rcpt_to": "who@example.com", "timestamp": "1700000060"
        }}},
        // No timestamp: stored with the time missing and said so.
        {"msys": {"message_event": {"type": "injection", "rcpt_to": "who@example.com"}}},
    ]);
    let elements = body.as_array().unwrap().clone();
    let app = spawn_app().await;
    let (report, events) = post_and_read(&app, &body.to_string()).await;
    assert_eq!(report["accepted"], 3, "{report}");
    assert_eq!(report["warnings"], 3, "{report}");
    let base = |event, kind, at, class: &str| Expected {
        provider_event: event,
        kind,
        recipient: "who@example.com",
        occurred_at: at,
        time_quality: if at.is_some() { "exact" } else { "missing" },
        metadata: json!({"event_class": class}),
        ..Expected::default()
    };
    let expected = [
        Expected {
            warnings: &["unknown event `engagement_digest`; stored as `other`"],
            ..base(
                "engagement_digest",
                "other",
                Some("2023-11-14T22:13:20Z"),
                "message_event",
            )
        },
        Expected {
            warnings: &[
                "field `msys.future_event`: not a documented SparkPost event class; read as one",
            ],
            ..base(
                "delivery",
                "delivered",
                Some("2023-11-14T22:14:20Z"),
                "future_event",
            )
        },
        Expected {
            warnings: &["field `msys.message_event.timestamp`: missing; time left empty"],
            ..base("injection", "queued", None, "message_event")
        },
    ];
    for ((event, element), expected) in events.iter().zip(&elements).zip(&expected) {
        check("sparkpost", event, element, expected);
    }
}

#[tokio::test]
async fn sparkpost_recipient_keeps_the_envelope_case_and_falls_back_to_rcpt_to() {
    let body = json!([
        {"msys": {"message_event": {
            "type": "delivery", "timestamp": "1700000000",
            "raw_rcpt_to": "John.Doe@Example.COM", "rcpt_to": "john.doe@example.com"
        }}},
        {"msys": {"message_event": {
            "type": "delivery", "timestamp": "1700000000",
            "raw_rcpt_to": "broken", "rcpt_to": "fallback@example.com"
        }}},
        {"msys": {"message_event": {
            "type": "delivery", "timestamp": "1700000000",
            "rcpt_to": "only@example.com", "friendly_from": "Shop <News@Shop.Example>"
        }}},
    ]);
    let elements = body.as_array().unwrap().clone();
    let app = spawn_app().await;
    let (report, events) = post_and_read(&app, &body.to_string()).await;
    assert_eq!(report["accepted"], 3, "{report}");
    let delivery = |recipient| Expected {
        provider_event: "delivery",
        kind: "delivered",
        recipient,
        occurred_at: Some("2023-11-14T22:13:20Z"),
        time_quality: "exact",
        metadata: json!({"event_class": "message_event"}),
        ..Expected::default()
    };
    let expected = [
        delivery("John.Doe@example.com"),
        Expected {
            warnings: &[
                "field `msys.message_event.raw_rcpt_to`: no valid recipient address: \
                 `raw_rcpt_to`: `broken`: address has no local part and domain; `rcpt_to` used",
            ],
            ..delivery("fallback@example.com")
        },
        // The From header as a bare address (domain lower-cased).
        Expected {
            sender: Some("News@shop.example"),
            ..delivery("only@example.com")
        },
    ];
    for ((event, element), expected) in events.iter().zip(&elements).zip(&expected) {
        check("sparkpost", event, element, expected);
    }
}

#[tokio::test]
async fn sparkpost_hostile_strings_are_clipped_and_kept_in_raw() {
    let long = "x".repeat(100_000);
    let controls = "a\u{0}b\u{7}c\u{1b}[31md\u{7f}e\u{2028}f\u{feff}";
    let body = json!([
        {"msys": {"track_event": {
            "type": "click", "rcpt_to": "h@example.com", "timestamp": "1700000000",
            "subject": long, "user_agent": long, "target_link_url": long,
            "raw_reason": long, "campaign_id": controls
        }}},
        {"msys": {"message_event": {
            "type": "é".repeat(10_000), "rcpt_to": "h@example.com", "timestamp": "1700000000"
        }}},
        {"msys": {"message_event": {
            "type": "delivery", "rcpt_to": format!("{}@example.com", "a".repeat(5_000)),
            "timestamp": "1700000000"
        }}},
        {"msys": {"message_event": {
            "type": "delivery", "rcpt_to": "a\u{0}b@example.com", "timestamp": "1700000000"
        }}},
    ]);
    let app = spawn_app().await;
    let (report, events) = post_and_read(&app, &body.to_string()).await;
    assert_eq!(report["accepted"], 2, "{report}");
    assert_eq!(report["quarantined"], 2, "{report}");
    let chars = |value: &Value| value.as_str().unwrap().chars().count();
    for field in ["subject", "user_agent", "click_url", "smtp_response"] {
        assert_eq!(chars(&events[0][field]), 2000, "{field}");
    }
    assert_eq!(events[0]["campaign"], controls);
    assert_eq!(
        chars(&events[0]["raw"]["msys"]["track_event"]["subject"]),
        100_000
    );
    assert_eq!(events[1]["kind"], "other");
    assert_eq!(chars(&events[1]["provider_event"]), 200);
    assert!(events[1]["warnings"][0].as_str().unwrap().len() < 300);
    let errors = report["errors"].as_array().unwrap();
    assert_eq!(errors[0]["index"], 2);
    assert!(
        errors[0]["error"]
            .as_str()
            .unwrap()
            .starts_with("no valid recipient address: `rcpt_to`: "),
        "{report}"
    );
    assert_eq!(errors[1]["index"], 3);
}

#[tokio::test]
async fn sparkpost_basic_auth_and_bearer_tokens_are_accepted() {
    // SparkPost sends basic auth (any user name, the token as password) or an OAuth
    // bearer token; a source with a user name checks it too.
    let app = spawn_app_with(|config| {
        config.sources.insert(
            "sparkpost".into(),
            SourceConfig {
                token: Some(Secret::new("t0ken")),
                ..SourceConfig::new("sparkpost")
            },
        );
        config.sources.insert(
            "sparkpost-basic".into(),
            SourceConfig {
                username: Some("sparkpost".into()),
                password: Some(Secret::new("pa55")),
                ..SourceConfig::new("sparkpost")
            },
        );
    })
    .await;
    let basic = |user: &str, password: &str| {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        format!("Basic {encoded}")
    };
    let post = |source: &'static str, authorization: Option<String>| {
        let mut request = app
            .client
            .post(app.url(&format!("/webhooks/{source}")))
            .header("content-type", "application/json")
            .body(read_fixture("sparkpost/set_aside/ping.json"));
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(post("sparkpost", None).await, 401);
    assert_eq!(post("sparkpost", Some(basic("any", "wrong"))).await, 401);
    assert_eq!(post("sparkpost", Some("Bearer wrong".into())).await, 401);
    assert_eq!(post("sparkpost", Some(basic("any", "t0ken"))).await, 200);
    assert_eq!(post("sparkpost", Some("Bearer t0ken".into())).await, 200);
    assert_eq!(post("sparkpost-basic", None).await, 401);
    assert_eq!(
        post("sparkpost-basic", Some(basic("other", "pa55"))).await,
        401
    );
    assert_eq!(
        post("sparkpost-basic", Some(basic("sparkpost", "pa55"))).await,
        200
    );
}
