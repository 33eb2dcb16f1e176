//! Amazon SES through SNS: classic identity notifications (`notificationType`) and event
//! publishing records (`eventType`), each posted as the `Message` of a signed SNS
//! notification whose `MessageId` is `test-<file name>` (`TestApp::post_fixture`), so
//! that is every event's `provider_event_id`; `raw` is the SES message itself.
//!
//! The fixtures are the documented samples of
//! <https://docs.aws.amazon.com/ses/latest/dg/notification-examples.html> (`notification_*`)
//! and <https://docs.aws.amazon.com/ses/latest/dg/event-publishing-retrieving-sns-examples.html>
//! (`event_*`), verbatim; `notification_bounce_transient.json` is built from the field
//! list (no Transient sample is documented). `set_aside/` holds the SNS envelopes of
//! <https://docs.aws.amazon.com/sns/latest/dg/sns-message-and-json-formats.html>
//! (confirmations, and a notification whose `Message` is plain text), re-signed.
//!
//! Expected values come from the SES field descriptions: one event per bounced,
//! complained, delayed or delivered recipient; the others per `mail.destination`;
//! `mail.source` as a bare address; custom `mail.tags` as `key=value`, `ses:*` tags in
//! `metadata.ses_tags`; the fields the kind is decided from kept in metadata.

use mailwarden::config::{Secret, SourceConfig};
use serde_json::{Value, json};

use super::{Expected, check, merged};
use crate::helpers::{TestApp, read_fixture, spawn_app, spawn_app_with, test_config};
use crate::signing::{self, SNS_TOPIC};

const PROVIDER: &str = "amazon_ses";

/// The message id of the event-publishing samples.
const EVENT_MESSAGE_ID: &str = "EXAMPLE7c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000";
/// Subject of the event-publishing samples.
const EVENT_SUBJECT: &str = "Message sent from Amazon SES";
/// Time of every classic notification sample (bounce, complaint, delivery and mail).
const CLASSIC_AT: &str = "2016-01-27T14:59:38.237Z";

/// The envelope fields every SNS-delivered event keeps.
fn sns(fixture: &str) -> Value {
    json!({"sns_message_id": format!("test-{fixture}"), "sns_topic_arn": SNS_TOPIC})
}

/// `mail` fields of the classic samples that have no normalized home (identity
/// notifications carry `sourceIp` and `callerIdentity`, no tags).
fn classic_mail(with_headers: bool) -> Value {
    let mut mail = json!({
        "callerIdentity": "IAM_user_or_role_name",
        "sendingAccountId": "123456789012",
        "sourceArn": "arn:aws:ses:us-east-1:888888888888:identity/example.com",
        "sourceIp": "127.0.3.0"
    });
    if with_headers {
        mail["header_message_id"] = json!("custom-message-ID");
        mail["headersTruncated"] = json!(false);
    }
    mail
}

/// A classic notification sample's event: sent by john@example.com, subject `Hello`.
fn classic(event: &'static str, kind: &'static str, recipient: &'static str) -> Expected {
    Expected {
        provider_event: event,
        kind,
        recipient,
        occurred_at: Some(CLASSIC_AT),
        time_quality: "exact",
        sender: Some("john@example.com"),
        subject: Some("Hello"),
        ..Expected::default()
    }
}

/// The `ses:*` tags most event-publishing samples carry, plus `extra`.
fn ses_tags(caller: &str, extra: Value) -> Value {
    json!({"ses_tags": merged(&[
        json!({
            "ses:caller-identity": [caller],
            "ses:configuration-set": ["ConfigSet"],
            "ses:from-domain": ["example.com"],
            "ses:source-ip": ["192.0.2.0"]
        }),
        extra,
    ])})
}

/// `mail` fields of the event-publishing samples with headers.
fn event_mail(with_source_arn: bool) -> Value {
    let mut mail = json!({
        "header_message_id": EVENT_MESSAGE_ID,
        "headersTruncated": false,
        "sendingAccountId": "123456789012"
    });
    if with_source_arn {
        mail["sourceArn"] = json!("arn:aws:ses:us-east-1:123456789012:identity/sender@example.com");
    }
    mail
}

/// An event-publishing sample's event to recipient@example.com.
fn published(event: &'static str, kind: &'static str, at: &'static str) -> Expected {
    Expected {
        provider_event: event,
        kind,
        recipient: "recipient@example.com",
        occurred_at: Some(at),
        time_quality: "exact",
        message_id: Some(EVENT_MESSAGE_ID),
        sender: Some("sender@example.com"),
        subject: Some(EVENT_SUBJECT),
        ..Expected::default()
    }
}

/// Posts `fixture` the way SNS delivers it and checks its events, in order, against
/// `expected` (several per fixture where SES lists several recipients).
async fn assert_ses(fixture: &str, expected: &[Expected]) {
    let app = spawn_app().await;
    let events = post_and_read(&app, &format!("{PROVIDER}/{fixture}")).await;
    assert_eq!(events.len(), expected.len(), "{fixture}: {events:#?}");
    let element: Value =
        serde_json::from_slice(&read_fixture(&format!("{PROVIDER}/{fixture}"))).unwrap();
    for (event, expected) in events.iter().zip(expected) {
        check(PROVIDER, event, &element, expected);
    }
}

/// Posts a fixture, checks that nothing was quarantined or folded, and reads every event.
async fn post_and_read(app: &TestApp, fixture: &str) -> Vec<Value> {
    let (status, report) = app.post_fixture(PROVIDER, fixture).await;
    assert_eq!(status, 200, "{fixture}: {report}");
    assert_eq!(report["quarantined"], 0, "{fixture}: {report}");
    assert_eq!(report["duplicates"], 0, "{fixture}: {report}");
    assert!(report.get("errors").is_none(), "{fixture}: {report}");
    read_events(app, &report).await
}

/// Reads back every event of an ingest answer, in order; checks the warnings count.
async fn read_events(app: &TestApp, report: &Value) -> Vec<Value> {
    let ids = report["event_ids"].as_array().expect("event_ids");
    assert_eq!(report["accepted"], ids.len(), "{report}");
    let mut events = Vec::new();
    for id in ids {
        let (status, event) = app
            .get(&format!("/api/events/{}", id.as_str().unwrap()))
            .await;
        assert_eq!(status, 200, "{event}");
        events.push(event);
    }
    let warned = events
        .iter()
        .filter(|e| e.get("warnings").is_some())
        .count();
    assert_eq!(report["warnings"], warned, "{report}");
    events
}

// ---------------------------------------------------------------------------------------
// Classic identity notifications, one test per documented sample.

#[tokio::test]
async fn ses_bounce_without_dsn_is_one_hard_bounce_per_bounced_recipient() {
    // Three destinations, two bounced recipients without DSN fields: Permanent/General
    // "didn't specify the reason", so the reason is the general `bounced`.
    let metadata = merged(&[
        classic_mail(true),
        sns("notification_bounce_permanent.json"),
        json!({
            "bounceSubType": "General",
            "bounceType": "Permanent",
            "feedbackId": "00000137860315fd-869464a4-8680-4114-98d3-716fe35851f9-000000",
            "remoteMtaIp": "127.0.2.0"
        }),
    ]);
    let bounce = |recipient| Expected {
        bounce_class: Some("hard"),
        reason: Some("bounced"),
        message_id: Some("00000137860315fd-34208509-5b74-41f3-95c5-22c1edc3c924-000000"),
        provider_event_id: Some("test-notification_bounce_permanent.json"),
        metadata: metadata.clone(),
        ..classic("Bounce", "bounce", recipient)
    };
    assert_ses(
        "notification_bounce_permanent.json",
        &[bounce("jane@example.com"), bounce("richard@example.com")],
    )
    .await;
}

#[tokio::test]
async fn ses_bounce_with_dsn_is_hard_and_invalid_with_the_recipients_reply() {
    assert_ses(
        "notification_bounce_permanent_dsn.json",
        &[Expected {
            bounce_class: Some("hard"),
            reason: Some("invalid"),
            message_id: Some("00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa0680-000000"),
            provider_event_id: Some("test-notification_bounce_permanent_dsn.json"),
            smtp_code: Some(550),
            smtp_enhanced: Some("5.1.1"),
            smtp_response: Some("550 5.1.1 <jane@example.com>... User"),
            metadata: merged(&[
                classic_mail(true),
                sns("notification_bounce_permanent_dsn.json"),
                json!({
                    "action": "failed",
                    "bounceSubType": "General",
                    "bounceType": "Permanent",
                    "feedbackId": "00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa068a-000000",
                    "remoteMtaIp": "127.0.2.0",
                    "reportingMTA": "dns; email.example.com"
                }),
            ]),
            ..classic("Bounce", "bounce", "jane@example.com")
        }],
    )
    .await;
}

#[tokio::test]
async fn ses_transient_mailbox_full_bounce_is_soft_and_bounced() {
    // Built from the field list; SES sends Transient bounces once it stopped retrying, so
    // this is a (soft) bounce, not a deferral. No headers: no subject.
    assert_ses(
        "notification_bounce_transient.json",
        &[Expected {
            bounce_class: Some("soft"),
            reason: Some("bounced"),
            message_id: Some("00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa0680-000000"),
            provider_event_id: Some("test-notification_bounce_transient.json"),
            smtp_code: Some(452),
            smtp_enhanced: Some("4.2.2"),
            smtp_response: Some("452 4.2.2 Mailbox full"),
            subject: None,
            metadata: merged(&[
                classic_mail(false),
                sns("notification_bounce_transient.json"),
                json!({
                    "action": "failed",
                    "bounceSubType": "MailboxFull",
                    "bounceType": "Transient",
                    "feedbackId": "00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa068a-000000",
                    "remoteMtaIp": "127.0.2.0",
                    "reportingMTA": "dns; email.example.com"
                }),
            ]),
            ..classic("Bounce", "bounce", "jane@example.com")
        }],
    )
    .await;
}

#[tokio::test]
async fn ses_complaint_with_feedback_report_is_spam_for_the_complained_recipient() {
    // The feedback loop's `userAgent` is the reporting software, not a reader: metadata.
    assert_ses(
        "notification_complaint.json",
        &[Expected {
            reason: Some("spam"),
            message_id: Some("000001378603177f-7a5433e7-8edb-42ae-af10-f0181f34d6ee-000000"),
            provider_event_id: Some("test-notification_complaint.json"),
            metadata: merged(&[
                classic_mail(true),
                sns("notification_complaint.json"),
                json!({
                    "arrivalDate": CLASSIC_AT,
                    "complaintFeedbackType": "abuse",
                    "feedbackId": "000001378603177f-18c07c78-fa81-4a58-9dd1-fedc3cb8f49a-000000",
                    "userAgent": "AnyCompany Feedback Loop (V0.01)"
                }),
            ]),
            ..classic("Complaint", "complaint", "richard@example.com")
        }],
    )
    .await;
}

#[tokio::test]
async fn ses_complaint_without_feedback_report_is_still_spam() {
    assert_ses(
        "notification_complaint_no_feedback.json",
        &[Expected {
            reason: Some("spam"),
            message_id: Some("0000013786031775-163e3910-53eb-4c8e-a04a-f29debf88a84-000000"),
            provider_event_id: Some("test-notification_complaint_no_feedback.json"),
            metadata: merged(&[
                classic_mail(true),
                sns("notification_complaint_no_feedback.json"),
                json!({
                    "feedbackId": "0000013786031775-fea503bc-7497-49e1-881b-a0379bb037d3-000000"
                }),
            ]),
            ..classic("Complaint", "complaint", "richard@example.com")
        }],
    )
    .await;
}

#[tokio::test]
async fn ses_delivery_notification_is_delivered_with_the_remote_reply() {
    // `250 ok:  Message 64111812 accepted` has no enhanced code.
    assert_ses(
        "notification_delivery.json",
        &[Expected {
            message_id: Some("0000014644fe5ef6-9a483358-9170-4cb4-a269-f5dcdf415321-000000"),
            provider_event_id: Some("test-notification_delivery.json"),
            smtp_code: Some(250),
            smtp_response: Some("250 ok:  Message 64111812 accepted"),
            metadata: merged(&[
                classic_mail(true),
                sns("notification_delivery.json"),
                json!({
                    "processingTimeMillis": 546,
                    "remoteMtaIp": "127.0.2.0",
                    "reportingMTA": "a8-70.smtp-out.amazonses.com"
                }),
            ]),
            ..classic("Delivery", "delivered", "jane@example.com")
        }],
    )
    .await;
}

// ---------------------------------------------------------------------------------------
// Event publishing, one test per documented record.

#[tokio::test]
async fn ses_event_bounce_is_hard_and_invalid_with_a_bare_sender() {
    // `mail.source` is `Sender Name <sender@example.com>`: the sender is the bare address.
    assert_ses(
        "event_bounce.json",
        &[Expected {
            bounce_class: Some("hard"),
            reason: Some("invalid"),
            provider_event_id: Some("test-event_bounce.json"),
            smtp_code: Some(550),
            smtp_enhanced: Some("5.1.1"),
            smtp_response: Some("550 5.1.1 user unknown"),
            metadata: merged(&[
                event_mail(true),
                ses_tags("ses_user", json!({})),
                sns("event_bounce.json"),
                json!({
                    "action": "failed",
                    "bounceSubType": "General",
                    "bounceType": "Permanent",
                    "feedbackId": "01000157c44f053b-61b59c11-9236-11e6-8f96-7be8aexample-000000",
                    "reportingMTA": "dsn; mta.example.com"
                }),
            ]),
            ..published("Bounce", "bounce", "2017-08-05T00:41:02.669Z")
        }],
    )
    .await;
}

#[tokio::test]
async fn ses_event_complaint_is_spam_and_keeps_the_report_in_metadata() {
    assert_ses(
        "event_complaint.json",
        &[Expected {
            reason: Some("spam"),
            provider_event_id: Some("test-event_complaint.json"),
            metadata: merged(&[
                event_mail(true),
                ses_tags("ses_user", json!({})),
                sns("event_complaint.json"),
                json!({
                    "arrivalDate": "2017-08-05T00:41:02.669Z",
                    "complaintFeedbackType": "abuse",
                    "feedbackId": "01000157c44f053b-61b59c11-9236-11e6-8f96-7be8aexample-000000",
                    "userAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/60.0.3112.90 Safari/537.36"
                }),
            ]),
            ..published("Complaint", "complaint", "2017-08-05T00:41:02.669Z")
        }],
    )
    .await;
}

#[tokio::test]
async fn ses_event_delivery_is_delivered_with_custom_tags_flattened() {
    assert_ses(
        "event_delivery.json",
        &[Expected {
            provider_event_id: Some("test-event_delivery.json"),
            smtp_code: Some(250),
            smtp_enhanced: Some("2.6.0"),
            smtp_response: Some("250 2.6.0 Message received"),
            tags: &[
                "myCustomTag1=myCustomTagValue1",
                "myCustomTag2=myCustomTagValue2",
            ],
            metadata: merged(&[
                event_mail(true),
                ses_tags("ses_user", json!({"ses:outgoing-ip": ["192.0.2.0"]})),
                sns("event_delivery.json"),
                json!({
                    "processingTimeMillis": 11893,
                    "reportingMTA": "mta.example.com"
                }),
            ]),
            ..published("Delivery", "delivered", "2016-10-19T23:21:04.133Z")
        }],
    )
    .await;
}

#[tokio::test]
async fn ses_event_send_is_queued_at_the_mail_time() {
    // `send` is always empty: the time is when SES accepted the message.
    assert_ses(
        "event_send.json",
        &[Expected {
            provider_event_id: Some("test-event_send.json"),
            tags: &[
                "myCustomTag1=myCustomTagValue1",
                "myCustomTag2=myCustomTagValue2",
            ],
            metadata: merged(&[
                event_mail(true),
                ses_tags("ses_user", json!({})),
                sns("event_send.json"),
            ]),
            ..published("Send", "queued", "2016-10-14T05:02:16.645Z")
        }],
    )
    .await;
}

#[tokio::test]
async fn ses_event_reject_is_dropped_and_blocked_for_the_documented_destination() {
    // SES found a virus and never tried. The sample's `destination` is the sender's
    // address (its To header says otherwise): the recipient is what `destination` says.
    assert_ses(
        "event_reject.json",
        &[Expected {
            reason: Some("blocked"),
            recipient: "sender@example.com",
            provider_event_id: Some("test-event_reject.json"),
            smtp_response: Some("Bad content"),
            tags: &[
                "myCustomTag1=myCustomTagValue1",
                "myCustomTag2=myCustomTagValue2",
            ],
            metadata: merged(&[
                event_mail(true),
                ses_tags("ses_user", json!({})),
                sns("event_reject.json"),
            ]),
            ..published("Reject", "dropped", "2016-10-14T17:38:15.211Z")
        }],
    )
    .await;
}

#[tokio::test]
async fn ses_event_open_has_the_readers_ip_and_user_agent() {
    assert_ses(
        "event_open.json",
        &[Expected {
            provider_event_id: Some("test-event_open.json"),
            ip: Some("192.0.2.1"),
            user_agent: Some(
                "Mozilla/5.0 (iPhone; CPU iPhone OS 10_3_3 like Mac OS X) AppleWebKit/603.3.8 \
                 (KHTML, like Gecko) Mobile/14G60",
            ),
            tags: &["myCustomTag1=myCustomValue1", "myCustomTag2=myCustomValue2"],
            metadata: merged(&[
                event_mail(false),
                ses_tags("IAM_user_or_role_name", json!({})),
                sns("event_open.json"),
            ]),
            ..published("Open", "open", "2017-08-09T22:00:19.652Z")
        }],
    )
    .await;
}

#[tokio::test]
async fn ses_event_click_has_the_link_and_its_link_tags() {
    assert_ses(
        "event_click.json",
        &[Expected {
            provider_event_id: Some("test-event_click.json"),
            click_url: Some(
                "http://docs.aws.amazon.com/ses/latest/DeveloperGuide/send-email-smtp.html",
            ),
            ip: Some("192.0.2.1"),
            user_agent: Some(
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like \
                 Gecko) Chrome/60.0.3112.90 Safari/537.36",
            ),
            tags: &[
                "myCustomTag1=myCustomValue1",
                "myCustomTag2=myCustomValue2",
                "samplekey0=samplevalue0",
                "samplekey1=samplevalue1",
            ],
            metadata: merged(&[
                event_mail(false),
                ses_tags("ses_user", json!({})),
                sns("event_click.json"),
            ]),
            ..published("Click", "click", "2017-08-09T23:51:25.570Z")
        }],
    )
    .await;
}

#[tokio::test]
async fn ses_event_rendering_failure_with_a_space_is_failed() {
    // `Rendering Failure` is spelled with a space; the template error is the response.
    assert_ses(
        "event_rendering_failure.json",
        &[Expected {
            reason: Some("other"),
            provider_event_id: Some("test-event_rendering_failure.json"),
            smtp_response: Some("Attribute 'attributeName' is not present in the rendering data."),
            subject: None,
            metadata: merged(&[
                json!({
                    "headersTruncated": false,
                    "sendingAccountId": "123456789012",
                    "ses_tags": {"ses:configuration-set": ["ConfigSet"]},
                    "sourceArn": "arn:aws:ses:us-east-1:123456789012:identity/sender@example.com",
                    "templateName": "MyTemplate"
                }),
                sns("event_rendering_failure.json"),
            ]),
            ..published("Rendering Failure", "failed", "2018-01-22T18:43:06.197Z")
        }],
    )
    .await;
}

#[tokio::test]
async fn ses_event_delivery_delay_is_deferred_and_timed_out() {
    // TransientCommunicationFailure ("Unable to connect to remote host"): timed out; SES
    // keeps trying until `expirationTime`.
    assert_ses(
        "event_delivery_delay.json",
        &[Expected {
            reason: Some("timed_out"),
            provider_event_id: Some("test-event_delivery_delay.json"),
            smtp_code: Some(421),
            smtp_enhanced: Some("4.4.1"),
            smtp_response: Some("421 4.4.1 Unable to connect to remote host"),
            subject: None,
            metadata: merged(&[
                json!({
                    "delayType": "TransientCommunicationFailure",
                    "expirationTime": "2020-06-16T00:25:40.914Z",
                    "headersTruncated": false,
                    "sendingAccountId": "123456789012",
                    "ses_tags": {"ses:configuration-set": ["ConfigSet"]},
                    "sourceArn": "arn:aws:ses:us-east-1:123456789012:identity/sender@example.com"
                }),
                sns("event_delivery_delay.json"),
            ]),
            ..published("DeliveryDelay", "deferred", "2020-06-16T00:25:40.095Z")
        }],
    )
    .await;
}

#[tokio::test]
async fn ses_event_subscription_opting_out_of_everything_is_an_unsubscribe() {
    // `unsubscribeAll` went from false to true (the topic was already opted out).
    let preferences = |all: bool| {
        json!({
            "unsubscribeAll": all,
            "topicSubscriptionStatus": [
                {"topicName": "ExampleTopicName", "subscriptionStatus": "OptOut"}
            ]
        })
    };
    assert_ses(
        "event_subscription.json",
        &[Expected {
            reason: Some("unsubscribed"),
            message_id: Some("EXAMPLEe4bccb684-777bc8de-afa7-4970-92b0-f515137b1497-000000"),
            provider_event_id: Some("test-event_subscription.json"),
            tags: &["myCustomTag1=myCustomValue1", "myCustomTag2=myCustomValue2"],
            metadata: merged(&[
                event_mail(true),
                json!({
                    "header_message_id": "EXAMPLEe4bccb684-777bc8de-afa7-4970-92b0-f515137b1497-000000"
                }),
                ses_tags("ses_user", json!({"ses:operation": ["SendEmail"]})),
                sns("event_subscription.json"),
                json!({
                    "contactList": "ContactListName",
                    "newTopicPreferences": preferences(true),
                    "oldTopicPreferences": preferences(false),
                    "source": "UnsubscribeHeader"
                }),
            ]),
            ..published("Subscription", "unsubscribe", "2022-01-12T01:00:17.910Z")
        }],
    )
    .await;
}

// ---------------------------------------------------------------------------------------
// The SNS envelopes set aside: they carry no SES event.

/// Asserts that nothing at all was stored: no event, no quarantine entry.
async fn assert_nothing_stored(app: &TestApp) {
    assert!(app.events("").await.is_empty(), "no event is stored");
    assert!(quarantine(app).await.is_empty(), "nothing is quarantined");
}

/// The quarantine entries, newest first.
async fn quarantine(app: &TestApp) -> Vec<Value> {
    let (status, page) = app.get("/api/quarantine?limit=100").await;
    assert_eq!(status, 200, "{page}");
    page["entries"].as_array().expect("entries").clone()
}

/// Asserts an ingest answer that stored nothing and quarantined nothing.
fn assert_empty_report(report: &Value) {
    assert_eq!(report["accepted"], 0, "{report}");
    assert_eq!(report["quarantined"], 0, "{report}");
    assert_eq!(report["duplicates"], 0, "{report}");
    assert_eq!(report["warnings"], 0, "{report}");
    assert_eq!(report["event_ids"], json!([]), "{report}");
    assert!(report.get("errors").is_none(), "{report}");
}

#[tokio::test]
async fn ses_sns_notification_with_a_plain_text_message_stores_nothing() {
    // The documented SNS sample: `Message` "Hello world!", with a `Subject` (signed too).
    let app = spawn_app().await;
    let (status, report) = app
        .post_fixture(PROVIDER, "amazon_ses/set_aside/sns_notification.json")
        .await;
    assert_eq!(status, 200, "{report}");
    assert_empty_report(&report);
    assert_nothing_stored(&app).await;
}

#[tokio::test]
async fn ses_sns_subscription_confirmation_is_answered_and_stores_nothing() {
    // The confirmation is verified, then confirmed in the background (its outcome depends
    // on reaching SNS, so only the answer and the recorded subscription are checked).
    let app = spawn_app().await;
    let (status, answer) = app
        .post_fixture(
            PROVIDER,
            "amazon_ses/set_aside/sns_subscription_confirmation.json",
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let topic = "arn:aws:sns:us-west-2:123456789012:MyTopic";
    let url = "https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription&TopicArn=\
               arn:aws:sns:us-west-2:123456789012:MyTopic&Token=2336412f37...";
    assert_eq!(
        answer,
        json!({"subscription": {"topic_arn": topic, "subscribe_url": url, "status": "confirming"}})
    );
    assert_nothing_stored(&app).await;
    let (_, sources) = app.get("/api/sources").await;
    let source = sources["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == PROVIDER)
        .cloned()
        .unwrap_or_else(|| panic!("{sources}"));
    let subscription = &source["subscriptions"][0];
    assert_eq!(subscription["topic_arn"], topic, "{source}");
    assert_eq!(subscription["subscribe_url"], url, "{source}");
    assert!(
        ["confirming", "confirmed", "failed"].contains(&subscription["status"].as_str().unwrap()),
        "{source}"
    );
}

#[tokio::test]
async fn ses_sns_unsubscribe_confirmation_is_recorded_and_stores_nothing() {
    let app = spawn_app().await;
    let (status, answer) = app
        .post_fixture(
            PROVIDER,
            "amazon_ses/set_aside/sns_unsubscribe_confirmation.json",
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let topic = "arn:aws:sns:us-west-2:123456789012:MyTopic";
    assert_eq!(
        answer,
        json!({"subscription": {"topic_arn": topic, "status": "unsubscribed"}})
    );
    assert_nothing_stored(&app).await;
    let (_, sources) = app.get("/api/sources").await;
    let source = sources["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == PROVIDER)
        .cloned()
        .unwrap();
    assert_eq!(source["subscriptions"][0]["topic_arn"], topic, "{source}");
    assert_eq!(
        source["subscriptions"][0]["status"], "unsubscribed",
        "{source}"
    );
}

// ---------------------------------------------------------------------------------------
// Constructed SES messages, each posted in its own signed SNS notification.

/// Posts `body` as SNS does (text/plain) to `/webhooks/{path}`.
async fn post_text(app: &TestApp, path: &str, body: Vec<u8>) -> (u16, Value) {
    let response = app
        .client
        .post(app.url(&format!("/webhooks/{path}")))
        .header("content-type", "text/plain; charset=UTF-8")
        .body(body)
        .send()
        .await
        .expect("request is sent");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON answer"))
}

/// Posts a signed SNS notification with `MessageId` `id` carrying `message` as its text;
/// returns status, answer and the envelope posted.
async fn post_message(app: &TestApp, message: &str, id: &str) -> (u16, Value, Value) {
    app.trust_test_sns_certificate();
    let envelope = signing::sns().notification(message, id);
    let (status, report) = post_text(app, PROVIDER, envelope.to_string().into_bytes()).await;
    (status, report, envelope)
}

/// Posts `message` (an SES message) in a signed notification and reads its events back.
async fn ingest_message(app: &TestApp, message: &Value, id: &str) -> Vec<Value> {
    let (status, report, _) = post_message(app, &message.to_string(), id).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["quarantined"], 0, "{message}: {report}");
    read_events(app, &report).await
}

/// A `mail` object for constructed messages.
fn mail(destination: &[&str]) -> Value {
    json!({
        "timestamp": "2024-05-01T10:00:00.000Z",
        "messageId": "0100018f3b2a1c4d-test-000000",
        "source": "sender@example.com",
        "destination": destination
    })
}

/// The normalized verdict of an event: kind, bounce class, reason (null when absent).
fn verdict(event: &Value) -> Value {
    let field = |name: &str| event.get(name).cloned().unwrap_or(Value::Null);
    json!([field("kind"), field("bounce_class"), field("reason")])
}

#[tokio::test]
async fn ses_each_bounced_recipient_has_its_own_status_and_diagnostic() {
    // The documented `bounce` object (a `delayed` 4.0.0 recipient inside a Permanent
    // bounce) and `bouncedRecipients` entry (`X-Postfix; unknown user`), with the
    // documented `mail` object (its odd `+0000` timestamp and ` custom-message-ID`), plus
    // entries SES would not send: they are skipped with a warning, the others kept (a
    // repeat of recipient1, its domain in capitals, is the same recipient: folded).
    let message = json!({
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": "Permanent",
            "bounceSubType": "General",
            "bouncedRecipients": [
                {"status": "5.0.0", "action": "failed", "diagnosticCode": "smtp; 550 user unknown",
                 "emailAddress": "recipient1@example.com"},
                {"status": "4.0.0", "action": "delayed", "emailAddress": "recipient2@example.com"},
                {"emailAddress": "recipient@example.com", "action": "failed", "status": "5.0.0",
                 "diagnosticCode": "X-Postfix; unknown user"},
                {"action": "failed", "status": "5.1.1"},
                {"emailAddress": "not-an-address", "status": "5.1.1"},
                "someone@example.com",
                {"emailAddress": "recipient1@EXAMPLE.com", "status": "5.1.1"}
            ],
            "reportingMTA": "example.com",
            "timestamp": "2012-05-25T14:59:38.605Z",
            "feedbackId": "000001378603176d-5a4b5ad9-6f30-4198-a8c3-b1eb0c270a1d-000000",
            "remoteMtaIp": "127.0.2.0"
        },
        "mail": {
            "timestamp": "2018-10-08T14:05:45 +0000",
            "messageId": "000001378603177f-7a5433e7-8edb-42ae-af10-f0181f34d6ee-000000",
            "source": "sender@example.com",
            "sourceArn": "arn:aws:ses:us-east-1:888888888888:identity/example.com",
            "sourceIp": "127.0.3.0",
            "sendingAccountId": "123456789012",
            "destination": ["recipient@example.com"],
            "headersTruncated": false,
            "headers": [{"name": "Subject", "value": "Hello"}],
            "commonHeaders": {
                "from": ["Sender Name <sender@example.com>"],
                "date": "Mon, 08 Oct 2018 14:05:45 +0000",
                "to": ["Recipient Name <recipient@example.com>"],
                "messageId": " custom-message-ID",
                "subject": "Message sent using Amazon SES"
            }
        }
    });
    let app = spawn_app().await;
    let events = ingest_message(&app, &message, "bounce-recipients").await;
    const WARNINGS: &[&str] = &[
        "field `bounce.bouncedRecipients`: skipped recipient 3 has no `emailAddress`",
        "field `bounce.bouncedRecipients`: skipped recipient 4 `not-an-address`: address has \
         no local part and domain",
        "field `bounce.bouncedRecipients`: skipped recipient 5 is a string, not an object",
    ];
    let metadata = |action: &str| {
        json!({
            "action": action,
            "bounceSubType": "General",
            "bounceType": "Permanent",
            "feedbackId": "000001378603176d-5a4b5ad9-6f30-4198-a8c3-b1eb0c270a1d-000000",
            "header_message_id": " custom-message-ID",
            "headersTruncated": false,
            "remoteMtaIp": "127.0.2.0",
            "reportingMTA": "example.com",
            "sendingAccountId": "123456789012",
            "sns_message_id": "bounce-recipients",
            "sns_topic_arn": SNS_TOPIC,
            "sourceArn": "arn:aws:ses:us-east-1:888888888888:identity/example.com",
            "sourceIp": "127.0.3.0"
        })
    };
    let bounce = Expected {
        provider_event: "Bounce",
        kind: "bounce",
        bounce_class: Some("hard"),
        occurred_at: Some("2012-05-25T14:59:38.605Z"),
        time_quality: "exact",
        message_id: Some("000001378603177f-7a5433e7-8edb-42ae-af10-f0181f34d6ee-000000"),
        provider_event_id: Some("bounce-recipients"),
        subject: Some("Message sent using Amazon SES"),
        sender: Some("sender@example.com"),
        warnings: WARNINGS,
        ..Expected::default()
    };
    let expected = [
        Expected {
            recipient: "recipient1@example.com",
            reason: Some("invalid"),
            smtp_code: Some(550),
            smtp_enhanced: Some("5.0.0"),
            smtp_response: Some("550 user unknown"),
            metadata: metadata("failed"),
            ..bounce.clone()
        },
        // The class is the bounce's (Permanent), never the recipient's status; nothing
        // else is known about why.
        Expected {
            recipient: "recipient2@example.com",
            reason: Some("bounced"),
            smtp_enhanced: Some("4.0.0"),
            metadata: metadata("delayed"),
            ..bounce.clone()
        },
        Expected {
            recipient: "recipient@example.com",
            reason: Some("invalid"),
            smtp_enhanced: Some("5.0.0"),
            smtp_response: Some("unknown user"),
            metadata: metadata("failed"),
            ..bounce.clone()
        },
    ];
    assert_eq!(events.len(), expected.len(), "{events:#?}");
    for (event, expected) in events.iter().zip(&expected) {
        check(PROVIDER, event, &message, expected);
    }
}

/// A bounce of `bounce_type`/`subtype` for one recipient with `details`.
fn bounce_of(bounce_type: Option<&str>, subtype: &str, details: Value) -> Value {
    let mut recipient = json!({"emailAddress": "jane@example.com"});
    recipient
        .as_object_mut()
        .unwrap()
        .extend(details.as_object().unwrap().clone());
    let mut bounce = json!({
        "bounceSubType": subtype,
        "bouncedRecipients": [recipient],
        "timestamp": "2024-05-01T10:00:05.000Z",
        "feedbackId": "0100018f-feedback-000000"
    });
    if let Some(bounce_type) = bounce_type {
        bounce["bounceType"] = json!(bounce_type);
    }
    json!({"eventType": "Bounce", "bounce": bounce, "mail": mail(&["jane@example.com"])})
}

#[tokio::test]
async fn ses_bounce_types_and_subtypes_map_per_the_documented_table() {
    // The subtype is SES's own classification and decides the reason, except General and
    // Undetermined, which leave it to the reply. Suppressed and OnAccountSuppressionList
    // were never attempted: dropped, without a bounce class.
    let none = json!({});
    let suppressed = json!({
        "action": "failed",
        "status": "5.1.1",
        "diagnosticCode": "Amazon SES has suppressed sending to this address because it has a \
                           recent history of bouncing as an invalid address."
    });
    let cases: Vec<(Option<&str>, &str, Value, Value)> = vec![
        (
            Some("Undetermined"),
            "Undetermined",
            none.clone(),
            json!(["bounce", "undetermined", "bounced"]),
        ),
        (
            Some("Undetermined"),
            "Undetermined",
            json!({"status": "5.1.1", "diagnosticCode": "smtp; 550 5.1.1 no such user"}),
            json!(["bounce", "undetermined", "invalid"]),
        ),
        (
            Some("Permanent"),
            "General",
            none.clone(),
            json!(["bounce", "hard", "bounced"]),
        ),
        (
            Some("Permanent"),
            "General",
            json!({"status": "5.7.1", "diagnosticCode": "smtp; 550 5.7.1 Client host blocked using Spamhaus"}),
            json!(["bounce", "hard", "blocked"]),
        ),
        (
            Some("Permanent"),
            "NoEmail",
            none.clone(),
            json!(["bounce", "hard", "invalid"]),
        ),
        (
            Some("Permanent"),
            "Suppressed",
            suppressed.clone(),
            json!(["dropped", null, "bounced"]),
        ),
        (
            Some("Permanent"),
            "OnAccountSuppressionList",
            suppressed,
            json!(["dropped", null, null]),
        ),
        (
            Some("Transient"),
            "General",
            none.clone(),
            json!(["bounce", "soft", "bounced"]),
        ),
        (
            Some("Transient"),
            "MailboxFull",
            none.clone(),
            json!(["bounce", "soft", "bounced"]),
        ),
        (
            Some("Transient"),
            "MessageTooLarge",
            none.clone(),
            json!(["bounce", "soft", "other"]),
        ),
        (
            Some("Transient"),
            "ContentRejected",
            json!({"status": "5.7.1", "diagnosticCode": "smtp; 554 5.7.1 Message rejected as spam"}),
            json!(["bounce", "soft", "blocked"]),
        ),
        (
            Some("Transient"),
            "AttachmentRejected",
            none.clone(),
            json!(["bounce", "soft", "blocked"]),
        ),
    ];
    let app = spawn_app().await;
    for (index, (bounce_type, subtype, details, expected)) in cases.into_iter().enumerate() {
        let message = bounce_of(bounce_type, subtype, details);
        let events = ingest_message(&app, &message, &format!("bounce-{index}")).await;
        assert_eq!(events.len(), 1, "{message}");
        let event = &events[0];
        assert_eq!(
            verdict(event),
            expected,
            "{bounce_type:?}/{subtype}: {event:#}"
        );
        assert_eq!(event["provider_event"], "Bounce", "{event:#}");
        assert_eq!(event["metadata"]["bounceSubType"], subtype, "{event:#}");
        assert_eq!(
            event["metadata"]["bounceType"],
            json!(bounce_type),
            "{event:#}"
        );
        assert!(event.get("warnings").is_none(), "{event:#}");
    }
    // Suppressions keep SES's own diagnostic as the response (no SMTP code in it).
    let event = &ingest_message(
        &app,
        &bounce_of(
            Some("Permanent"),
            "Suppressed",
            json!({"status": "5.1.1",
            "diagnosticCode": "Amazon SES did not send the message to this address"}),
        ),
        "suppressed-reply",
    )
    .await[0];
    assert_eq!(event["smtp_enhanced"], "5.1.1");
    assert_eq!(event.get("smtp_code"), None);
    assert_eq!(
        event["smtp_response"],
        "Amazon SES did not send the message to this address"
    );

    // A type SES does not document, or none: the class the reply implies (5.1.1, no
    // such user: hard), with a warning.
    for (index, (bounce_type, warning)) in [
        (
            Some("Weird"),
            "field `bounce.bounceType`: `Weird` is not a documented type; class read from the reply",
        ),
        (
            None,
            "field `bounce.bounceType`: missing; class read from the reply",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let message = bounce_of(
            bounce_type,
            "General",
            json!({"diagnosticCode": "smtp; 550 5.1.1 no such user"}),
        );
        let event = &ingest_message(&app, &message, &format!("odd-type-{index}")).await[0];
        assert_eq!(
            verdict(event),
            json!(["bounce", "hard", "invalid"]),
            "{event:#}"
        );
        assert_eq!(event["warnings"], json!([warning]), "{event:#}");
    }
}

#[tokio::test]
async fn ses_complaint_feedback_types_decide_whether_it_is_a_spam_complaint() {
    // MARF feedback types: `not-spam` and `auth-failure` are no spam report by the
    // recipient (other, documented, so no warning); a complaint on the account-level
    // suppression list was never sent (dropped). Every complained recipient gets one.
    let complaint = |feedback: Value, subtype: Value| {
        let mut complaint = json!({
            "complainedRecipients": [
                {"emailAddress": "jane@example.com"},
                {"emailAddress": "richard@example.com"}
            ],
            "timestamp": "2024-05-01T11:00:00.000Z",
            "feedbackId": "0100018f-complaint-000000",
            "complaintSubType": subtype
        });
        if !feedback.is_null() {
            complaint["complaintFeedbackType"] = feedback;
            complaint["userAgent"] = json!("AnyCompany Feedback Loop (V0.01)");
        }
        json!({
            "notificationType": "Complaint",
            "complaint": complaint,
            "mail": mail(&["jane@example.com", "mary@example.com", "richard@example.com"])
        })
    };
    let spam = json!(["complaint", null, "spam"]);
    let other = json!(["other", null, null]);
    let cases = [
        (json!("abuse"), Value::Null, spam.clone()),
        (json!("fraud"), Value::Null, spam.clone()),
        (json!("virus"), Value::Null, spam.clone()),
        (json!("other"), Value::Null, spam.clone()),
        (Value::Null, Value::Null, spam.clone()),
        (json!("not-spam"), Value::Null, other.clone()),
        (json!("auth-failure"), Value::Null, other),
        (
            Value::Null,
            json!("OnAccountSuppressionList"),
            json!(["dropped", null, null]),
        ),
    ];
    let app = spawn_app().await;
    for (index, (feedback, subtype, expected)) in cases.into_iter().enumerate() {
        let message = complaint(feedback.clone(), subtype.clone());
        let events = ingest_message(&app, &message, &format!("complaint-{index}")).await;
        let recipients: Vec<&Value> = events.iter().map(|e| &e["recipient"]).collect();
        assert_eq!(
            recipients,
            [&json!("jane@example.com"), &json!("richard@example.com")]
        );
        for event in &events {
            assert_eq!(verdict(event), expected, "{feedback} {subtype}: {event:#}");
            assert_eq!(event["provider_event"], "Complaint");
            assert_eq!(
                event.get("user_agent"),
                None,
                "the feedback loop is no reader"
            );
            assert_eq!(
                event["metadata"].get("complaintFeedbackType"),
                (!feedback.is_null()).then_some(&feedback),
                "{event:#}"
            );
            assert_eq!(
                event["metadata"].get("complaintSubType"),
                (!subtype.is_null()).then_some(&subtype),
                "{event:#}"
            );
            assert!(event.get("warnings").is_none(), "{event:#}");
        }
    }
}

#[tokio::test]
async fn ses_delivery_is_for_its_recipients_not_every_destination() {
    let message = json!({
        "eventType": "Delivery",
        "mail": mail(&["jane@example.com", "mary@example.com", "richard@example.com"]),
        "delivery": {
            "timestamp": "2024-05-01T10:00:02.000Z",
            "processingTimeMillis": 2000,
            "recipients": ["jane@example.com", "richard@example.com"],
            "smtpResponse": "250 2.0.0 OK",
            "reportingMTA": "a8-70.smtp-out.amazonses.com"
        }
    });
    let app = spawn_app().await;
    let events = ingest_message(&app, &message, "delivery-two").await;
    let recipients: Vec<&str> = events
        .iter()
        .map(|e| e["recipient"].as_str().unwrap())
        .collect();
    assert_eq!(recipients, ["jane@example.com", "richard@example.com"]);
    for event in &events {
        assert_eq!(event["kind"], "delivered");
        assert_eq!(event["smtp_code"], 250);
        assert_eq!(event["smtp_enhanced"], "2.0.0");
        assert_eq!(event["smtp_response"], "250 2.0.0 OK");
        assert_eq!(event["provider_event_id"], "delivery-two");
        assert_eq!(event["occurred_at"], "2024-05-01T10:00:02Z");
        assert_eq!(event["raw"], message);
    }
}

#[tokio::test]
async fn ses_delivery_delays_are_per_recipient_with_the_reason_from_the_delay_type() {
    let delay = |delay_type: &str, recipients: Value| {
        json!({
            "eventType": "DeliveryDelay",
            "mail": mail(&["jane@example.com", "richard@example.com"]),
            "deliveryDelay": {
                "timestamp": "2024-05-01T10:30:00.000Z",
                "delayType": delay_type,
                "expirationTime": "2024-05-01T22:00:00.000Z",
                "reportingMTA": "192.0.2.10",
                "delayedRecipients": recipients
            }
        })
    };
    let app = spawn_app().await;
    // Two delayed recipients, each with its own status and diagnostic.
    let message = delay(
        "RecipientServerError",
        json!([
            {"emailAddress": "jane@example.com", "status": "4.3.0",
             "diagnosticCode": "smtp; 451 4.3.0 Temporary server error"},
            {"emailAddress": "richard@example.com", "status": "4.2.2",
             "diagnosticCode": "smtp; 452 4.2.2 Mailbox full"}
        ]),
    );
    let events = ingest_message(&app, &message, "delay-two").await;
    let replies: Vec<Value> = events
        .iter()
        .map(|e| {
            json!([
                e["recipient"],
                e["kind"],
                e["reason"],
                e["smtp_code"],
                e["smtp_enhanced"],
                e["smtp_response"]
            ])
        })
        .collect();
    assert_eq!(
        replies,
        [
            json!([
                "jane@example.com",
                "deferred",
                "other",
                451,
                "4.3.0",
                "451 4.3.0 Temporary server error"
            ]),
            json!([
                "richard@example.com",
                "deferred",
                "other",
                452,
                "4.2.2",
                "452 4.2.2 Mailbox full"
            ]),
        ]
    );
    assert_eq!(events[0]["metadata"]["delayType"], "RecipientServerError");
    assert_eq!(
        events[0]["metadata"]["expirationTime"],
        "2024-05-01T22:00:00.000Z"
    );
    assert_eq!(events[0]["metadata"]["reportingMTA"], "192.0.2.10");

    let one = |extra: Value| {
        let mut recipient = json!({"emailAddress": "jane@example.com"});
        recipient
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        json!([recipient])
    };
    let cases = [
        ("MailboxFull", json!({}), json!("bounced")),
        ("SpamDetected", json!({}), json!("spam")),
        ("IPFailure", json!({}), json!("blocked")),
        (
            "TransientCommunicationFailure",
            json!({}),
            json!("timed_out"),
        ),
        ("InternalFailure", json!({}), json!("other")),
        ("RecipientServerError", json!({}), json!("other")),
        ("BYOIPHostNameLookupUnavailable", json!({}), json!("other")),
        ("SendingDeferral", json!({}), json!("other")),
        // General and Undetermined leave the reason to the reply, if there is one.
        (
            "General",
            json!({"status": "4.7.1",
            "diagnosticCode": "smtp; 450 4.7.1 Client host rejected: blocked"}),
            json!("blocked"),
        ),
        ("General", json!({}), Value::Null),
        ("Undetermined", json!({}), Value::Null),
    ];
    for (index, (delay_type, extra, reason)) in cases.into_iter().enumerate() {
        let events = ingest_message(
            &app,
            &delay(delay_type, one(extra)),
            &format!("delay-{index}"),
        )
        .await;
        assert_eq!(events.len(), 1);
        assert_eq!(
            verdict(&events[0]),
            json!(["deferred", null, reason]),
            "{delay_type}: {:#}",
            events[0]
        );
        assert!(events[0].get("warnings").is_none(), "{:#}", events[0]);
    }
}

#[tokio::test]
async fn ses_event_type_names_include_rendering_failure_with_or_without_a_space() {
    let app = spawn_app().await;
    let failure = |name: &str| {
        json!({
            "eventType": name,
            "mail": mail(&["jane@example.com"]),
            "failure": {"templateName": "Welcome", "errorMessage": "Template missing"}
        })
    };
    for (index, name) in ["Rendering Failure", "RenderingFailure"]
        .into_iter()
        .enumerate()
    {
        let events = ingest_message(&app, &failure(name), &format!("failure-{index}")).await;
        assert_eq!(verdict(&events[0]), json!(["failed", null, "other"]));
        assert_eq!(events[0]["provider_event"], name);
        assert_eq!(events[0]["smtp_response"], "Template missing");
        assert_eq!(events[0]["metadata"]["templateName"], "Welcome");
        assert_eq!(events[0]["occurred_at"], "2024-05-01T10:00:00Z");
    }

    // An event type SES does not document: `other`, for every destination, with a warning;
    // its object stays in metadata.
    let message = json!({
        "eventType": "Teleport",
        "mail": mail(&["jane@example.com", "richard@example.com"]),
        "teleport": {"timestamp": "2024-05-01T12:00:00.000Z", "destination": "Mars"}
    });
    let events = ingest_message(&app, &message, "unknown").await;
    assert_eq!(events.len(), 2);
    for event in &events {
        assert_eq!(verdict(event), json!(["other", null, null]));
        assert_eq!(event["provider_event"], "Teleport");
        assert_eq!(
            event["warnings"],
            json!(["unknown event `Teleport`; stored as `other`"])
        );
        assert_eq!(
            event["metadata"]["teleport"],
            json!({"timestamp": "2024-05-01T12:00:00.000Z", "destination": "Mars"})
        );
        assert_eq!(
            event["occurred_at"], "2024-05-01T10:00:00Z",
            "the mail's time"
        );
    }
}

#[tokio::test]
async fn ses_subscription_changes_are_opt_outs_or_opt_ins() {
    let preferences = |all: bool, status: &str| {
        json!({"unsubscribeAll": all, "topicSubscriptionStatus": [
            {"topicName": "News", "subscriptionStatus": status}]})
    };
    let change = |new: Value, old: Value| {
        json!({
            "eventType": "Subscription",
            "mail": mail(&["jane@example.com"]),
            "subscription": {
                "contactList": "Customers",
                "timestamp": "2024-05-02T08:00:00.000Z",
                "source": "UnsubscribeHeader",
                "newTopicPreferences": new,
                "oldTopicPreferences": old
            }
        })
    };
    let cases = [
        // A topic opted out: unsubscribe.
        (
            preferences(false, "OptOut"),
            preferences(false, "OptIn"),
            json!(["unsubscribe", null, "unsubscribed"]),
        ),
        // A topic opted in: subscribe.
        (
            preferences(false, "OptIn"),
            preferences(false, "OptOut"),
            json!(["subscribe", null, null]),
        ),
        // Back from "unsubscribe from all": subscribe.
        (
            preferences(false, "OptOut"),
            preferences(true, "OptOut"),
            json!(["subscribe", null, null]),
        ),
        // Nothing changed: a documented event that is neither (no warning).
        (
            preferences(false, "OptIn"),
            preferences(false, "OptIn"),
            json!(["other", null, null]),
        ),
    ];
    let app = spawn_app().await;
    for (index, (new, old, expected)) in cases.into_iter().enumerate() {
        let events = ingest_message(
            &app,
            &change(new.clone(), old.clone()),
            &format!("sub-{index}"),
        )
        .await;
        let event = &events[0];
        assert_eq!(verdict(event), expected, "{new} from {old}: {event:#}");
        assert_eq!(event["metadata"]["newTopicPreferences"], new);
        assert_eq!(event["metadata"]["oldTopicPreferences"], old);
        assert_eq!(event["metadata"]["contactList"], "Customers");
        assert_eq!(event["occurred_at"], "2024-05-02T08:00:00Z");
        assert!(event.get("warnings").is_none(), "{event:#}");
    }
    // Preferences that are not objects: nothing can be told, and that is said.
    let events = ingest_message(&app, &change(json!("OptOut"), json!(null)), "sub-odd").await;
    assert_eq!(verdict(&events[0]), json!(["other", null, null]));
    assert_eq!(
        events[0]["warnings"],
        json!([
            "field `subscription.newTopicPreferences`: expected an object, found a string; ignored"
        ])
    );
}

#[tokio::test]
async fn ses_tags_are_flattened_and_ses_tags_go_to_metadata() {
    let app = spawn_app().await;
    let mut message = json!({
        "eventType": "Send",
        "mail": mail(&["jane@example.com"]),
        "send": {}
    });
    message["mail"]["tags"] = json!({
        "campaign": ["spring", "vip"],
        "batch": [7],
        "ses:configuration-set": ["Marketing"],
        "ses:outgoing-ip": ["192.0.2.7"],
        "odd": [{"x": 1}, "kept"]
    });
    let event = &ingest_message(&app, &message, "tags").await[0];
    assert_eq!(
        event["tags"],
        json!(["batch=7", "campaign=spring", "campaign=vip", "odd=kept"])
    );
    assert_eq!(
        event["metadata"]["ses_tags"],
        json!({"ses:configuration-set": ["Marketing"], "ses:outgoing-ip": ["192.0.2.7"]})
    );
    assert_eq!(
        event["warnings"],
        json!(["field `mail.tags`: tag `odd`: expected a list of texts; other values ignored"])
    );

    // Tags that are not a map: ignored with a warning, kept in raw.
    message["mail"]["tags"] = json!("campaign=spring");
    let event = &ingest_message(&app, &message, "tags-text").await[0];
    assert_eq!(event.get("tags"), None);
    assert_eq!(
        event["warnings"],
        json!(["field `mail.tags`: expected an object of tag lists, found a string; ignored"])
    );
    assert_eq!(event["raw"], message);
}

#[tokio::test]
async fn ses_open_of_a_message_to_several_recipients_is_stored_for_each_with_a_warning() {
    let message = json!({
        "eventType": "Open",
        "mail": mail(&["jane@example.com", "richard@example.com"]),
        "open": {"ipAddress": "198.51.100.4", "timestamp": "2024-05-01T12:00:00.000Z",
                 "userAgent": "Mail/1.0"}
    });
    let app = spawn_app().await;
    let events = ingest_message(&app, &message, "open-two").await;
    assert_eq!(events.len(), 2);
    for event in &events {
        assert_eq!(event["kind"], "open");
        assert_eq!(event["ip"], "198.51.100.4");
        assert_eq!(
            event["warnings"],
            json!([
                "`mail.destination` lists 2 recipients and SES does not say which one this \
                    `Open` is from; stored for each"
            ])
        );
    }
    // A Send to several recipients is about each of them: no warning.
    let send = json!({"eventType": "Send", "mail": mail(&["jane@example.com", "richard@example.com"]), "send": {}});
    let events = ingest_message(&app, &send, "send-two").await;
    assert_eq!(events.len(), 2);
    assert!(
        events.iter().all(|e| e.get("warnings").is_none()),
        "{events:#?}"
    );
}

// ---------------------------------------------------------------------------------------
// Messages that are no SES event, or a broken one.

#[tokio::test]
async fn ses_plain_text_and_scalar_messages_store_nothing() {
    // SES's own test message when an event destination is added, and messages published
    // by hand (text, or JSON that is only a value): notices, not events.
    let app = spawn_app().await;
    for (index, text) in [
        "Successfully validated SNS topic for Amazon SES event publishing.",
        "Hello world!",
        "42",
        "\"quoted text\"",
        "true",
        "null",
        "",
    ]
    .into_iter()
    .enumerate()
    {
        let (status, report, _) = post_message(&app, text, &format!("text-{index}")).await;
        assert_eq!(status, 200, "{text}: {report}");
        assert_empty_report(&report);
    }
    assert_nothing_stored(&app).await;
}

#[tokio::test]
async fn ses_message_that_is_a_json_array_is_quarantined_whole() {
    // Structured data that is no SES notification: kept in quarantine (the envelope) for
    // a look, not silently dropped.
    let app = spawn_app().await;
    let text =
        json!([{"eventType": "Send", "mail": mail(&["jane@example.com"]), "send": {}}]).to_string();
    let (status, report, envelope) = post_message(&app, &text, "array").await;
    assert_eq!(status, 200, "{report}");
    let error = "the SNS `Message` is a JSON array, not an SES notification object";
    assert_eq!(report["accepted"], 0, "{report}");
    assert_eq!(report["quarantined"], 1, "{report}");
    assert_eq!(report["errors"], json!([{"index": 0, "error": error}]));
    let entries = quarantine(&app).await;
    assert_eq!(entries.len(), 1, "{entries:#?}");
    assert_eq!(entries[0]["source"], PROVIDER);
    assert_eq!(entries[0]["error"], error);
    assert_eq!(entries[0]["element"], envelope);
    assert!(app.events("").await.is_empty());
}

#[tokio::test]
async fn ses_messages_without_their_recipients_are_quarantined_with_the_reason() {
    // `mail.destination` lists every original recipient: it never stands in for the
    // recipients a bounce, complaint, delay or delivery is about.
    let destination = mail(&["jane@example.com", "mary@example.com"]);
    let cases = [
        (
            json!({"notificationType": "Bounce", "mail": destination,
                   "bounce": {"bounceType": "Permanent", "bounceSubType": "General",
                              "bouncedRecipients": [{"action": "failed", "status": "5.1.1"}]}}),
            "no valid recipient address: `bounce.bouncedRecipients`: recipient 0 has no \
             `emailAddress`",
        ),
        (
            json!({"notificationType": "Bounce", "mail": destination,
                   "bounce": {"bounceType": "Permanent", "bounceSubType": "General"}}),
            "no valid recipient address: `bounce.bouncedRecipients` is missing",
        ),
        (
            json!({"notificationType": "Bounce", "mail": destination}),
            "no valid recipient address: no `bounce` object with `bouncedRecipients`",
        ),
        (
            json!({"notificationType": "Bounce", "mail": destination,
                   "bounce": {"bounceType": "Permanent", "bouncedRecipients": "jane@example.com"}}),
            "no valid recipient address: `bounce.bouncedRecipients` is a string, expected a \
             list of recipients",
        ),
        (
            json!({"notificationType": "Complaint", "mail": destination,
                   "complaint": {"complainedRecipients": []}}),
            "no valid recipient address: `complaint.complainedRecipients`: empty",
        ),
        (
            json!({"eventType": "DeliveryDelay", "mail": destination,
                   "deliveryDelay": {"delayType": "General",
                                     "delayedRecipients": [{"emailAddress": "not an address"}]}}),
            "no valid recipient address: `deliveryDelay.delayedRecipients`: recipient 0 `not an \
             address`: address contains a character that is not allowed",
        ),
        (
            json!({"notificationType": "Delivery", "mail": destination}),
            "no valid recipient address: no `delivery` object with `recipients`",
        ),
        (
            json!({"eventType": "Open", "open": {"ipAddress": "192.0.2.1"}}),
            "no valid recipient address: no `mail` object with `destination`",
        ),
        (
            json!({"eventType": "Send", "mail": mail(&["nobody"]), "send": {}}),
            "no valid recipient address: `destination`: `nobody`: address has no local part \
             and domain",
        ),
        (
            json!({"mail": destination, "bounce": {}}),
            "missing event name (`notificationType` or `eventType`)",
        ),
        (
            json!({}),
            "missing event name (`notificationType` or `eventType`)",
        ),
    ];
    let app = spawn_app().await;
    for (index, (message, error)) in cases.iter().enumerate() {
        let (status, report, envelope) =
            post_message(&app, &message.to_string(), &format!("broken-{index}")).await;
        assert_eq!(status, 200, "{message}: {report}");
        assert_eq!(report["accepted"], 0, "{message}: {report}");
        assert_eq!(report["quarantined"], 1, "{message}: {report}");
        assert_eq!(
            report["errors"],
            json!([{"index": 0, "error": error}]),
            "{message}"
        );
        let entries = quarantine(&app).await;
        let entry = entries
            .iter()
            .find(|entry| entry["element"] == envelope)
            .unwrap_or_else(|| panic!("{message}: no quarantine entry in {entries:#?}"));
        assert_eq!(entry["error"], *error);
        assert_eq!(entry["index"], 0);
    }
    assert_eq!(quarantine(&app).await.len(), cases.len());
    assert!(app.events("").await.is_empty());
}

#[tokio::test]
async fn ses_wrong_types_are_read_leniently_and_huge_ids_kept_exactly() {
    // Numbers as strings and strings as numbers, a list as one comma-separated string,
    // an integer message id beyond 64 bits, an object that is a string, a status that is no
    // enhanced code, a 300-digit SNS MessageId.
    let huge_id = "9".repeat(300);
    let message_text = r#"{
        "eventType": "Delivery",
        "mail": {
            "timestamp": "2024-05-01T10:00:00.000Z",
            "messageId": 123456789012345678901234567890,
            "source": "sender@example.com",
            "destination": ["jane@example.com", "richard@example.com"],
            "commonHeaders": "Subject: Hello",
            "sendingAccountId": 123456789012
        },
        "delivery": {
            "timestamp": "2024-05-01T10:00:02Z",
            "processingTimeMillis": "2000",
            "recipients": "jane@example.com, richard@example.com",
            "smtpResponse": 250,
            "reportingMTA": "a8-70.smtp-out.amazonses.com"
        }
    }"#;
    let app = spawn_app().await;
    let (status, report, _) = post_message(&app, message_text, &huge_id).await;
    assert_eq!(status, 200, "{report}");
    let events = read_events(&app, &report).await;
    assert_eq!(events.len(), 2, "{events:#?}");
    for (event, recipient) in events
        .iter()
        .zip(["jane@example.com", "richard@example.com"])
    {
        assert_eq!(event["recipient"], recipient);
        assert_eq!(event["kind"], "delivered");
        assert_eq!(event["message_id"], "123456789012345678901234567890");
        assert_eq!(event["provider_event_id"], huge_id.as_str());
        assert_eq!(event["metadata"]["sns_message_id"], huge_id.as_str());
        assert_eq!(event["smtp_code"], 250);
        assert_eq!(event["smtp_response"], "250");
        assert_eq!(event["metadata"]["processingTimeMillis"], "2000");
        assert_eq!(event["metadata"]["sendingAccountId"], 123456789012_u64);
        assert_eq!(event["occurred_at"], "2024-05-01T10:00:02Z");
        assert_eq!(event.get("subject"), None);
        assert_eq!(
            event["warnings"],
            json!(["field `mail.commonHeaders`: expected an object, found a string; ignored"])
        );
        // raw is the message as SES wrote it: the big id unrounded (read as text, since
        // this test's JSON parser would round it).
        let answer = app
            .client
            .get(app.url(&format!("/api/events/{}", event["id"].as_str().unwrap())))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            answer.contains(r#""messageId": 123456789012345678901234567890,"#),
            "{answer}"
        );
    }

    // A per-recipient status that is no enhanced code is ignored with a warning; the code in
    // the diagnostic still counts.
    let message = bounce_of(
        Some("Permanent"),
        "General",
        json!({"status": "5.1", "diagnosticCode": "smtp; 550 5.1.1 no such user"}),
    );
    let event = &ingest_message(&app, &message, "bad-status").await[0];
    assert_eq!(event["smtp_enhanced"], "5.1.1");
    assert_eq!(event["smtp_code"], 550);
    assert_eq!(event["reason"], "invalid");
    assert_eq!(
        event["warnings"],
        json!(["field `status`: `5.1` is not an enhanced status code; ignored"])
    );
}

#[tokio::test]
async fn ses_hostile_strings_are_clipped_and_kept_whole_in_raw() {
    let long = format!("smtp; 550 5.7.1 {}\u{0}\u{7}\u{1b}[31m", "x".repeat(10_000));
    let message = json!({
        "eventType": "Click",
        "mail": {
            "timestamp": "2024-05-01T10:00:00.000Z",
            "messageId": "0100018f-hostile",
            "source": "sender@example.com",
            "destination": ["jane@example.com"],
            "commonHeaders": {"subject": "S".repeat(5_000)},
            "tags": {"k": ["v".repeat(5_000)]}
        },
        "click": {
            "ipAddress": "1".repeat(3_000),
            "timestamp": "2024-05-01T12:00:00.000Z",
            "userAgent": format!("{}\u{0}", "A".repeat(5_000)),
            "link": format!("https://example.com/{}", "p".repeat(5_000))
        }
    });
    let bounce = bounce_of(
        Some("Permanent"),
        "General",
        json!({"status": "5.7.1", "diagnosticCode": long}),
    );
    let with_bad_recipient = json!({
        "eventType": "Send",
        "mail": mail(&["jane\u{0}@example.com", "richard@example.com"]),
        "send": {}
    });
    let app = spawn_app().await;
    let click = &ingest_message(&app, &message, "hostile-click").await[0];
    let chars = |field: &str| click[field].as_str().map(|t| t.chars().count());
    assert_eq!(chars("subject"), Some(2_000));
    assert_eq!(chars("user_agent"), Some(2_000));
    assert_eq!(chars("click_url"), Some(2_000));
    assert_eq!(chars("ip"), Some(2_000));
    assert_eq!(click["tags"][0].as_str().unwrap().chars().count(), 2_000);
    assert_eq!(click["raw"], message);

    let bounced = &ingest_message(&app, &bounce, "hostile-bounce").await[0];
    let response = bounced["smtp_response"].as_str().unwrap();
    assert_eq!(response.chars().count(), 2_000);
    assert!(response.starts_with("550 5.7.1 xxx"), "{response:.40}");
    assert_eq!(bounced["reason"], "blocked");
    assert_eq!(bounced["raw"], bounce);

    let sent = ingest_message(&app, &with_bad_recipient, "hostile-recipient").await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["recipient"], "richard@example.com");
    assert_eq!(
        sent[0]["warnings"],
        json!([
            "field `mail.destination`: skipped recipient `jane\u{0}@example.com`: address \
                contains a character that is not allowed"
        ])
    );
}

// ---------------------------------------------------------------------------------------
// Raw message delivery and the settings that allow it.

/// A service whose `amazon_ses` source takes raw message delivery: no SNS signature, a
/// token instead.
async fn raw_delivery_app() -> TestApp {
    spawn_app_with(|config| {
        config.sources.insert(
            PROVIDER.into(),
            SourceConfig {
                token: Some(Secret::new("t0ken")),
                verify_signature: Some(false),
                ..SourceConfig::new(PROVIDER)
            },
        );
    })
    .await
}

#[tokio::test]
async fn ses_raw_message_delivery_is_read_behind_a_token() {
    // With raw message delivery SNS posts the SES message itself, unsigned (its
    // MessageId is only in a header): no provider event id, no SNS metadata.
    let app = raw_delivery_app().await;
    let body = read_fixture("amazon_ses/event_delivery.json");
    let (status, refused) = post_text(&app, PROVIDER, body.clone()).await;
    assert_eq!(status, 401, "{refused}");
    assert_eq!(refused["error"]["code"], "missing_token", "{refused}");
    assert_nothing_stored(&app).await;

    let (status, report) = post_text(&app, "amazon_ses?token=t0ken", body.clone()).await;
    assert_eq!(status, 200, "{report}");
    let events = read_events(&app, &report).await;
    assert_eq!(events.len(), 1);
    let element: Value = serde_json::from_slice(&body).unwrap();
    check(
        PROVIDER,
        &events[0],
        &element,
        &Expected {
            smtp_code: Some(250),
            smtp_enhanced: Some("2.6.0"),
            smtp_response: Some("250 2.6.0 Message received"),
            tags: &[
                "myCustomTag1=myCustomTagValue1",
                "myCustomTag2=myCustomTagValue2",
            ],
            metadata: merged(&[
                event_mail(true),
                ses_tags("ses_user", json!({"ses:outgoing-ip": ["192.0.2.0"]})),
                json!({"processingTimeMillis": 11893, "reportingMTA": "mta.example.com"}),
            ]),
            ..published("Delivery", "delivered", "2016-10-19T23:21:04.133Z")
        },
    );

    // A body with several messages keeps the good ones and quarantines the other.
    let batch = json!([
        serde_json::from_slice::<Value>(&read_fixture("amazon_ses/event_open.json")).unwrap(),
        {"eventType": "Open", "open": {"ipAddress": "192.0.2.1"}},
        serde_json::from_slice::<Value>(&read_fixture("amazon_ses/event_send.json")).unwrap(),
    ]);
    let (status, report) = post_text(
        &app,
        "amazon_ses?token=t0ken",
        batch.to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["accepted"], 2, "{report}");
    assert_eq!(
        report["errors"],
        json!([{"index": 1, "error": "no valid recipient address: no `mail` object with `destination`"}])
    );
    let kinds: Vec<Value> = read_events(&app, &report)
        .await
        .iter()
        .map(|e| e["kind"].clone())
        .collect();
    assert_eq!(kinds, [json!("open"), json!("queued")]);

    // SNS envelopes still arrive on such a source (confirmations always do); the token
    // vouches for them. Envelopes SNS would not send are quarantined.
    let message = read_fixture("amazon_ses/event_send.json");
    let envelope = |message: Value, kind: &str| {
        json!({"Type": kind, "MessageId": "raw-source-1", "TopicArn": SNS_TOPIC,
               "Message": message, "Timestamp": "2026-12-01T10:00:00.000Z"})
    };
    let text = Value::String(String::from_utf8(message.clone()).unwrap());
    let (status, report) = post_text(
        &app,
        "amazon_ses?token=t0ken",
        envelope(text.clone(), "Notification")
            .to_string()
            .into_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{report}");
    let events = read_events(&app, &report).await;
    assert_eq!(events[0]["provider_event_id"], "raw-source-1");
    assert_eq!(
        events[0]["raw"],
        serde_json::from_slice::<Value>(&message).unwrap()
    );
    for (body, error) in [
        (
            envelope(serde_json::from_slice(&message).unwrap(), "Notification"),
            "the SNS `Message` is an object: SNS sends the SES notification as a JSON string",
        ),
        (
            envelope(text, "Advertisement"),
            "unknown SNS message type `Advertisement`",
        ),
    ] {
        let (status, report) = post_text(
            &app,
            "amazon_ses?token=t0ken",
            body.to_string().into_bytes(),
        )
        .await;
        assert_eq!(status, 200, "{report}");
        assert_eq!(
            report["errors"],
            json!([{"index": 0, "error": error}]),
            "{body}"
        );
    }
}

#[tokio::test]
async fn ses_raw_message_on_a_verified_source_is_refused() {
    // The default source checks SNS signatures: a bare SES message has none.
    let app = spawn_app().await;
    let (status, refused) =
        post_text(&app, PROVIDER, read_fixture("amazon_ses/event_send.json")).await;
    assert_eq!(status, 401, "{refused}");
    assert_eq!(refused["error"]["code"], "missing_signature", "{refused}");
    assert_nothing_stored(&app).await;
}

/// Starts the service with one SES source `ses` and returns why it refused to.
async fn startup_error(settings: SourceConfig) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.sources.insert("ses".into(), settings);
    match mailwarden::Application::build(config).await {
        Ok(_) => panic!("the settings must stop startup"),
        Err(error) => format!("{error:#}"),
    }
}

#[tokio::test]
async fn ses_signature_check_off_without_another_check_stops_startup() {
    let error = startup_error(SourceConfig {
        verify_signature: Some(false),
        ..SourceConfig::new(PROVIDER)
    })
    .await;
    assert!(
        error.contains("source `ses`")
            && error.contains("`verify_signature = false` needs another check"),
        "{error}"
    );
    // A topic allow-list is checked on verified messages only.
    let error = startup_error(SourceConfig {
        verify_signature: Some(false),
        token: Some(Secret::new("t0ken")),
        topic_arns: vec![SNS_TOPIC.to_owned()],
        ..SourceConfig::new(PROVIDER)
    })
    .await;
    assert!(
        error.contains("source `ses`") && error.contains("`topic_arns`"),
        "{error}"
    );
}
