//! Resend: one `{type, created_at, data}` object per POST, one event per address of
//! `data.to`, ISO 8601 times (milliseconds and `Z` on the event pages, microseconds and
//! `+00:00` on the create-webhook page), tags as an object, the documented bounce sample a
//! suppression (never attempted: `dropped`).
//!
//! Fixtures named `email_*`, `contact_*`, `suppression_*` (and `set_aside/domain_*`,
//! `set_aside/topic_*`) are the `<ResponseExample>` bodies of Resend's webhook pages,
//! verbatim; `email_bounced_create_webhook_page.json` is the example of the create-webhook
//! page. The `variant_bounced_<type>_<subtype>.json` fixtures are the documented
//! `email.bounced` sample with its `bounce` object replaced by one of each type/subtype of
//! Resend's bounce table (https://resend.com/docs/dashboard/emails/email-bounces), shaped as
//! the OpenAPI schema requires (`diagnosticCode` array, `message`, `subType`, `type`): the
//! messages are the table's descriptions, the SMTP replies made up to match. The
//! `variant_suppressed_*` ones are the `email.suppressed` sample with the fields the
//! OpenAPI schema adds (`reason`, `diagnosticCode`).

use serde_json::{Value, json};

use super::{Expected, assert_fixture, check};
use crate::helpers::{TestApp, all_fixtures, read_fixture, spawn_app};

/// `data.email_id` of every e-mail sample: the message id.
const EMAIL_ID: &str = "56761188-7520-42d8-8898-ff6fc54ce618";
/// `data.broadcast_id`: the campaign.
const BROADCAST: &str = "8b146471-e88e-4322-86af-016cd36fd216";
const TEMPLATE: &str = "43f68331-0622-4e15-8202-246a0388854b";
/// `data.message_id`, the RFC Message-ID header: metadata.
const RFC_MESSAGE_ID: &str = "<111-222-333@email.example.com>";
const RECIPIENT: &str = "delivered@resend.dev";
/// `from` is `Acme <onboarding@resend.dev>`: the bare address.
const SENDER: &str = "onboarding@resend.dev";
const SUBJECT: &str = "Sending this example";
const TAGS: &[&str] = &["category=confirm_email"];
/// Top-level `created_at` of the February samples (sent, delivered, opened...) and the
/// e-mail's own `data.created_at`.
const FEB_AT: &str = "2026-02-22T23:41:12.126Z";
const FEB_CREATED: &str = "2026-02-22T23:41:11.894Z";
/// The same for the November samples (bounced, clicked, failed, suppressed).
const NOV_AT: &str = "2026-11-22T23:41:12.126Z";
const NOV_CREATED: &str = "2026-11-22T23:41:11.894Z";
const CONTACT: &str = "steve.wozniak@gmail.com";
const CONTACT_ID: &str = "e169aa45-1ecf-4183-9955-b1499d5701d3";
const AUDIENCE: &str = "78261eea-8f8b-4381-83c6-79fa7120f1cf";

/// The metadata every outbound e-mail sample has: the unmapped `data` fields, `extra`
/// merged in.
fn outbound_metadata(created: &str, extra: Value) -> Value {
    let mut metadata = json!({
        "created_at": created,
        "message_id": RFC_MESSAGE_ID,
        "template_id": TEMPLATE
    });
    if let Value::Object(extra) = extra {
        metadata.as_object_mut().unwrap().extend(extra);
    }
    metadata
}

/// An outbound e-mail event of the documented samples' shape.
fn outbound(
    event: &'static str,
    kind: &'static str,
    at: &'static str,
    metadata: Value,
) -> Expected {
    Expected {
        provider_event: event,
        kind,
        recipient: RECIPIENT,
        occurred_at: Some(at),
        time_quality: "exact",
        message_id: Some(EMAIL_ID),
        subject: Some(SUBJECT),
        sender: Some(SENDER),
        campaign: Some(BROADCAST),
        tags: TAGS,
        metadata,
        ..Expected::default()
    }
}

/// A February sample with nothing event-specific.
fn february(event: &'static str, kind: &'static str) -> Expected {
    outbound(
        event,
        kind,
        FEB_AT,
        outbound_metadata(FEB_CREATED, Value::Null),
    )
}

/// A November sample with its event-specific metadata.
fn november(event: &'static str, kind: &'static str, extra: Value) -> Expected {
    outbound(event, kind, NOV_AT, outbound_metadata(NOV_CREATED, extra))
}

// ---------------------------------------------------------------------------------------
// Documented e-mail samples.

#[tokio::test]
async fn resend_email_sent_is_queued_not_yet_attempted() {
    // "The API request was successful. Resend will attempt to deliver the message."
    assert_fixture(
        "resend/email_sent.json",
        &[february("email.sent", "queued")],
    )
    .await;
}

#[tokio::test]
async fn resend_email_scheduled_is_queued() {
    assert_fixture(
        "resend/email_scheduled.json",
        &[february("email.scheduled", "queued")],
    )
    .await;
}

#[tokio::test]
async fn resend_email_delivered_is_delivered() {
    assert_fixture(
        "resend/email_delivered.json",
        &[february("email.delivered", "delivered")],
    )
    .await;
}

#[tokio::test]
async fn resend_email_delivery_delayed_is_deferred_without_a_reason() {
    // The docs give no cause in the payload (full inbox or a transient server issue).
    assert_fixture(
        "resend/email_delivery_delayed.json",
        &[february("email.delivery_delayed", "deferred")],
    )
    .await;
}

#[tokio::test]
async fn resend_email_complained_is_a_spam_complaint() {
    assert_fixture(
        "resend/email_complained.json",
        &[Expected {
            reason: Some("spam"),
            ..february("email.complained", "complaint")
        }],
    )
    .await;
}

#[tokio::test]
async fn resend_email_opened_has_no_reader_ip_or_agent() {
    // Resend's open events carry only the common fields.
    assert_fixture(
        "resend/email_opened.json",
        &[february("email.opened", "open")],
    )
    .await;
}

#[tokio::test]
async fn resend_email_clicked_happened_at_the_click_timestamp() {
    // `click.timestamp` (2026-11-24) is when the click occurred; the top-level
    // `created_at` (2026-11-22) is kept in raw only.
    assert_fixture(
        "resend/email_clicked.json",
        &[Expected {
            occurred_at: Some("2026-11-24T05:00:57.163Z"),
            click_url: Some("https://resend.com"),
            user_agent: Some(
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.1 Safari/605.1.15",
            ),
            ip: Some("122.115.53.11"),
            ..november("email.clicked", "click", Value::Null)
        }],
    )
    .await;
}

#[tokio::test]
async fn resend_email_failed_is_failed_with_its_reason_in_metadata() {
    assert_fixture(
        "resend/email_failed.json",
        &[Expected {
            reason: Some("other"),
            ..november(
                "email.failed",
                "failed",
                json!({"failed": {"reason": "reached_daily_quota"}}),
            )
        }],
    )
    .await;
}

#[tokio::test]
async fn resend_email_suppressed_on_the_account_list_is_dropped_without_a_known_reason() {
    // The sample names the list but not why the address is on it.
    assert_fixture(
        "resend/email_suppressed.json",
        &[november(
            "email.suppressed",
            "dropped",
            json!({"suppressed": {
                "message": "Resend has suppressed sending to this address because it is on the account-level suppression list. This does not count toward your bounce rate metric",
                "type": "OnAccountSuppressionList"
            }}),
        )],
    )
    .await;
}

/// `metadata.bounce` of the documented bounced sample.
fn suppressed_bounce() -> Value {
    json!({"bounce": {
        "message": "The recipient's email address is on the suppression list because it has a recent history of producing hard bounces.",
        "subType": "Suppressed",
        "type": "Permanent"
    }})
}

#[tokio::test]
async fn resend_email_bounced_sample_is_a_suppression_so_dropped_not_a_bounce() {
    // `subType: Suppressed`: Resend did not attempt delivery (the address produced hard
    // bounces before). No bounce class, no SMTP reply: the message is Resend's own.
    assert_fixture(
        "resend/email_bounced.json",
        &[Expected {
            reason: Some("bounced"),
            ..november("email.bounced", "dropped", suppressed_bounce())
        }],
    )
    .await;
}

#[tokio::test]
async fn resend_email_bounced_of_the_create_webhook_page_keeps_its_microsecond_time() {
    // That page's example has `data.created_at` with microseconds and `+00:00`; it is
    // kept as sent.
    assert_fixture(
        "resend/email_bounced_create_webhook_page.json",
        &[Expected {
            reason: Some("bounced"),
            ..outbound(
                "email.bounced",
                "dropped",
                NOV_AT,
                outbound_metadata("2026-11-22T23:41:11.894719+00:00", suppressed_bounce()),
            )
        }],
    )
    .await;
}

#[tokio::test]
async fn resend_email_received_is_other_without_an_unknown_event_warning() {
    // Inbound mail: `from` is already bare; no broadcast, template or tags.
    assert_fixture(
        "resend/email_received.json",
        &[Expected {
            provider_event: "email.received",
            kind: "other",
            recipient: RECIPIENT,
            occurred_at: Some(FEB_AT),
            time_quality: "exact",
            message_id: Some(EMAIL_ID),
            subject: Some(SUBJECT),
            sender: Some(SENDER),
            metadata: json!({
                "created_at": FEB_CREATED,
                "bcc": [],
                "cc": [],
                "received_for": ["forwarded@example.com"],
                "message_id": RFC_MESSAGE_ID,
                "attachments": [{
                    "id": "2a0c9ce0-3112-4728-976e-47ddcd16a318",
                    "filename": "avatar.png",
                    "content_type": "image/png",
                    "content_disposition": "inline",
                    "content_id": "img001"
                }]
            }),
            ..Expected::default()
        }],
    )
    .await;
}

// ---------------------------------------------------------------------------------------
// Contact and suppression-list samples: `other`, for `data.email`, without a warning.

/// A contact event of the documented samples' shape.
fn contact(event: &'static str, at: &'static str, metadata: Value) -> Expected {
    Expected {
        provider_event: event,
        kind: "other",
        recipient: CONTACT,
        occurred_at: Some(at),
        time_quality: "exact",
        metadata,
        ..Expected::default()
    }
}

#[tokio::test]
async fn resend_contact_created_is_other_for_the_contact() {
    // `first_name` and `last_name` are null: absent from metadata.
    assert_fixture(
        "resend/contact_created.json",
        &[contact(
            "contact.created",
            "2026-11-17T19:32:22.980Z",
            json!({
                "id": CONTACT_ID,
                "audience_id": AUDIENCE,
                "segment_ids": [AUDIENCE],
                "created_at": "2026-11-17T19:32:22.980Z",
                "updated_at": "2026-11-17T19:32:22.980Z",
                "unsubscribed": false
            }),
        )],
    )
    .await;
}

#[tokio::test]
async fn resend_contact_updated_is_other_not_a_subscription_change() {
    // `unsubscribed` is the contact's state, not a change of it.
    assert_fixture(
        "resend/contact_updated.json",
        &[contact(
            "contact.updated",
            "2026-10-11T23:47:56.678Z",
            json!({
                "id": CONTACT_ID,
                "audience_id": AUDIENCE,
                "segment_ids": [AUDIENCE],
                "created_at": "2026-10-10T15:11:54.110Z",
                "updated_at": "2026-10-11T23:47:56.678Z",
                "first_name": "Steve",
                "last_name": "Wozniak",
                "unsubscribed": false
            }),
        )],
    )
    .await;
}

#[tokio::test]
async fn resend_contact_deleted_is_other_for_the_contact() {
    assert_fixture(
        "resend/contact_deleted.json",
        &[contact(
            "contact.deleted",
            "2026-11-17T19:32:22.980Z",
            json!({
                "id": CONTACT_ID,
                "audience_id": AUDIENCE,
                "segment_ids": [AUDIENCE],
                "created_at": "2026-11-10T15:11:59.110Z",
                "updated_at": "2026-11-17T19:32:22.980Z",
                "first_name": "Steve",
                "last_name": "Wozniak",
                "unsubscribed": false
            }),
        )],
    )
    .await;
}

#[tokio::test]
async fn resend_contact_topics_updated_is_other_with_the_topics_in_metadata() {
    assert_fixture(
        "resend/contact_topics_updated.json",
        &[contact(
            "contact.topics.updated",
            "2026-02-12T10:00:00Z",
            json!({"topics": [
                {"id": "b6d24b8e-af0b-4c3c-be0c-359bbd97381e", "subscription": "opt_in"},
                {"id": "07d84122-7224-4881-9c31-1c048e204602", "subscription": "opt_out"}
            ]}),
        )],
    )
    .await;
}

#[tokio::test]
async fn resend_suppression_added_is_other_with_the_causing_email_as_message_id() {
    // `source_id` is "ID of the email that triggered the suppression".
    assert_fixture(
        "resend/suppression_added.json",
        &[Expected {
            message_id: Some("4ef9a417-02e9-4d39-ad75-9611e0fcc33c"),
            ..contact(
                "suppression.added",
                "2026-11-17T19:32:22.980Z",
                json!({
                    "id": CONTACT_ID,
                    "origin": "bounce",
                    "created_at": "2026-11-17T19:32:22.980Z"
                }),
            )
        }],
    )
    .await;
}

#[tokio::test]
async fn resend_manual_suppression_removed_has_no_message_id() {
    // `source_id` is null for manual suppressions.
    assert_fixture(
        "resend/suppression_removed.json",
        &[contact(
            "suppression.removed",
            "2026-11-17T19:32:22.980Z",
            json!({
                "id": CONTACT_ID,
                "origin": "manual",
                "created_at": "2026-11-15T08:12:45.120Z"
            }),
        )],
    )
    .await;
}

// ---------------------------------------------------------------------------------------
// Bounce variants: one per type/subtype of Resend's bounce table.

/// `metadata.bounce` of a variant: `type`, `subType` and `message` (the reply used is
/// `diagnosticCode`, so it is not repeated).
fn bounce_metadata(bounce_type: &str, subtype: &str, message: &str) -> Value {
    json!({"bounce": {"type": bounce_type, "subType": subtype, "message": message}})
}

/// A bounce variant with its class, reason and reply.
fn bounce(
    class: &'static str,
    reason: &'static str,
    code: Option<u16>,
    enhanced: Option<&'static str>,
    response: &'static str,
    metadata: Value,
) -> Expected {
    Expected {
        bounce_class: Some(class),
        reason: Some(reason),
        smtp_code: code,
        smtp_enhanced: enhanced,
        smtp_response: Some(response),
        ..november("email.bounced", "bounce", metadata)
    }
}

#[tokio::test]
async fn resend_permanent_general_bounce_is_hard_with_the_reason_from_the_reply() {
    // General says nothing more than "hard bounce": 5.1.1 says the address is unknown.
    assert_fixture(
        "resend/variant_bounced_permanent_general.json",
        &[bounce(
            "hard",
            "invalid",
            Some(550),
            Some("5.1.1"),
            "550 5.1.1 user unknown",
            bounce_metadata(
                "Permanent",
                "General",
                "The recipient's email provider sent a hard bounce message.",
            ),
        )],
    )
    .await;
}

#[tokio::test]
async fn resend_permanent_no_email_bounce_is_hard_and_invalid() {
    assert_fixture(
        "resend/variant_bounced_permanent_no_email.json",
        &[bounce(
            "hard",
            "invalid",
            Some(550),
            Some("5.5.0"),
            "550 5.5.0 Requested action not taken: mailbox unavailable",
            bounce_metadata(
                "Permanent",
                "NoEmail",
                "It was not possible to retrieve the recipient email address from the bounce message.",
            ),
        )],
    )
    .await;
}

#[tokio::test]
async fn resend_transient_general_bounce_is_soft() {
    assert_fixture(
        "resend/variant_bounced_transient_general.json",
        &[bounce(
            "soft",
            "bounced",
            Some(451),
            Some("4.3.0"),
            "451 4.3.0 Temporary server error. Please try again later",
            bounce_metadata(
                "Transient",
                "General",
                "The recipient's email provider sent a general bounce message.",
            ),
        )],
    )
    .await;
}

#[tokio::test]
async fn resend_transient_mailbox_full_bounce_is_soft_and_bounced() {
    assert_fixture(
        "resend/variant_bounced_transient_mailbox_full.json",
        &[bounce(
            "soft",
            "bounced",
            Some(452),
            Some("4.2.2"),
            "452 4.2.2 The email account that you tried to reach is over quota",
            bounce_metadata(
                "Transient",
                "MailboxFull",
                "The recipient's email provider sent a bounce message because the recipient's inbox was full.",
            ),
        )],
    )
    .await;
}

#[tokio::test]
async fn resend_transient_message_too_large_bounce_is_soft_whatever_the_5xx_reply() {
    // Resend's type decides the class: a 552 here is still a soft bounce, reason other.
    assert_fixture(
        "resend/variant_bounced_transient_message_too_large.json",
        &[bounce(
            "soft",
            "other",
            Some(552),
            Some("5.3.4"),
            "552 5.3.4 Message size exceeds fixed maximum message size",
            bounce_metadata(
                "Transient",
                "MessageTooLarge",
                "The recipient's email provider sent a bounce message because message you sent was too large.",
            ),
        )],
    )
    .await;
}

#[tokio::test]
async fn resend_transient_content_rejected_bounce_is_a_soft_block() {
    assert_fixture(
        "resend/variant_bounced_transient_content_rejected.json",
        &[bounce(
            "soft",
            "blocked",
            Some(554),
            Some("5.7.1"),
            "554 5.7.1 Message rejected because of unacceptable content",
            bounce_metadata(
                "Transient",
                "ContentRejected",
                "The recipient's email provider sent a bounce message because the message you sent contains content that the provider doesn't allow.",
            ),
        )],
    )
    .await;
}

#[tokio::test]
async fn resend_transient_attachment_rejected_bounce_is_a_soft_block() {
    assert_fixture(
        "resend/variant_bounced_transient_attachment_rejected.json",
        &[bounce(
            "soft",
            "blocked",
            Some(552),
            Some("5.7.0"),
            "552 5.7.0 This message was blocked because its content presents a potential security issue",
            bounce_metadata(
                "Transient",
                "AttachmentRejected",
                "The recipient's email provider sent a bounce message because the message contained an unacceptable attachment.",
            ),
        )],
    )
    .await;
}

#[tokio::test]
async fn resend_undetermined_bounce_without_diagnostics_uses_its_message() {
    // `diagnosticCode` is empty: the message is the only reply text; it has no codes.
    let message = "The recipient's email provider sent a bounce message. The bounce message didn't contain enough information for Resend to determine the reason for the bounce.";
    let metadata = json!({"bounce": {"type": "Undetermined", "subType": "Undetermined"}});
    assert_fixture(
        "resend/variant_bounced_undetermined.json",
        &[bounce(
            "undetermined",
            "bounced",
            None,
            None,
            message,
            metadata,
        )],
    )
    .await;
}

/// `metadata.suppressed` of the OpenAPI-shaped suppressed variants.
fn suppressed_metadata(reason: &str, codes: Value) -> Value {
    json!({"suppressed": {
        "diagnosticCode": codes,
        "message": "Resend has suppressed sending to this address because it is on the account-level suppression list. This does not count toward your bounce rate metric",
        "reason": reason,
        "type": "OnAccountSuppressionList"
    }})
}

#[tokio::test]
async fn resend_suppressed_after_a_previous_bounce_is_dropped_as_bounced() {
    // The old reply stays in metadata: this event had no SMTP conversation of its own.
    assert_fixture(
        "resend/variant_suppressed_previous_bounce.json",
        &[Expected {
            reason: Some("bounced"),
            ..november(
                "email.suppressed",
                "dropped",
                suppressed_metadata("previous_bounce", json!(["smtp; 550 5.1.1 user unknown"])),
            )
        }],
    )
    .await;
}

#[tokio::test]
async fn resend_suppressed_after_a_previous_complaint_is_dropped_as_spam() {
    assert_fixture(
        "resend/variant_suppressed_previous_complaint.json",
        &[Expected {
            reason: Some("spam"),
            ..november(
                "email.suppressed",
                "dropped",
                suppressed_metadata("previous_complaint", json!([])),
            )
        }],
    )
    .await;
}

// ---------------------------------------------------------------------------------------
// Events without an e-mail recipient: set aside.

/// Posts a `set_aside/` fixture and checks it is answered 200, stores nothing, and is
/// quarantined with `error`, kept as posted.
async fn assert_set_aside(fixture: &str, error: &str) {
    let app = spawn_app().await;
    let (status, report) = app.post_fixture("resend", fixture).await;
    assert_eq!(status, 200, "{fixture}: {report}");
    assert_eq!(report["accepted"], 0, "{fixture}: {report}");
    assert_eq!(report["quarantined"], 1, "{fixture}: {report}");
    assert_eq!(
        report["errors"],
        json!([{"index": 0, "error": error}]),
        "{fixture}"
    );
    let entries = quarantine(&app).await;
    assert_eq!(entries.len(), 1, "{entries:#?}");
    assert_eq!(entries[0]["source"], "resend");
    assert_eq!(entries[0]["error"], error);
    let element: Value = serde_json::from_slice(&read_fixture(fixture)).expect("JSON");
    assert_eq!(entries[0]["element"], element);
    assert!(app.events("").await.is_empty());
}

fn domain_error(event: &str) -> String {
    format!(
        "no valid recipient address: `{event}` is about a sending domain and names no e-mail \
         recipient; deselect the domain events of the Resend webhook if they are not wanted"
    )
}

fn topic_error(event: &str) -> String {
    format!(
        "no valid recipient address: `{event}` is about a subscription topic and names no \
         e-mail recipient; deselect the topic events of the Resend webhook if they are not \
         wanted"
    )
}

#[tokio::test]
async fn resend_domain_created_names_no_recipient_and_is_quarantined() {
    assert_set_aside(
        "resend/set_aside/domain_created.json",
        &domain_error("domain.created"),
    )
    .await;
}

#[tokio::test]
async fn resend_domain_updated_names_no_recipient_and_is_quarantined() {
    assert_set_aside(
        "resend/set_aside/domain_updated.json",
        &domain_error("domain.updated"),
    )
    .await;
}

#[tokio::test]
async fn resend_domain_deleted_names_no_recipient_and_is_quarantined() {
    assert_set_aside(
        "resend/set_aside/domain_deleted.json",
        &domain_error("domain.deleted"),
    )
    .await;
}

#[tokio::test]
async fn resend_topic_created_names_no_recipient_and_is_quarantined() {
    assert_set_aside(
        "resend/set_aside/topic_created.json",
        &topic_error("topic.created"),
    )
    .await;
}

#[tokio::test]
async fn resend_topic_updated_names_no_recipient_and_is_quarantined() {
    assert_set_aside(
        "resend/set_aside/topic_updated.json",
        &topic_error("topic.updated"),
    )
    .await;
}

#[tokio::test]
async fn resend_topic_deleted_names_no_recipient_and_is_quarantined() {
    assert_set_aside(
        "resend/set_aside/topic_deleted.json",
        &topic_error("topic.deleted"),
    )
    .await;
}

// ---------------------------------------------------------------------------------------
// Every fixture together, retries.

#[tokio::test]
async fn resend_fixtures_are_distinct_events_and_their_retries_duplicates() {
    let app = spawn_app().await;
    let fixtures: Vec<String> = all_fixtures()
        .into_iter()
        .filter(|fixture| fixture.starts_with("resend/"))
        .collect();
    assert_eq!(fixtures.len(), 28, "{fixtures:?}");
    for fixture in &fixtures {
        let (status, report) = app.post_fixture("resend", fixture).await;
        assert_eq!(status, 200, "{fixture}: {report}");
        assert_eq!(report["accepted"], 1, "{fixture} is new: {report}");
        assert_eq!(report["quarantined"], 0, "{fixture}: {report}");
    }
    // Svix retries the same body (with a new signature): the same event.
    for fixture in &fixtures {
        let (status, report) = app.post_fixture("resend", fixture).await;
        assert_eq!(status, 200, "{fixture}: {report}");
        assert_eq!(report["accepted"], 0, "{fixture} retried: {report}");
        assert_eq!(report["duplicates"], 1, "{fixture} retried: {report}");
    }
    assert_eq!(app.events("limit=1000").await.len(), fixtures.len());
}

// ---------------------------------------------------------------------------------------
// Bad and hostile input.

/// Every quarantine entry.
async fn quarantine(app: &TestApp) -> Vec<Value> {
    let (status, page) = app.get("/api/quarantine?limit=1000").await;
    assert_eq!(status, 200, "{page}");
    page["entries"].as_array().expect("entries").clone()
}

/// Posts `body` to the `resend` source; returns the answer and the events it stored,
/// read back one by one.
async fn post(app: &TestApp, body: impl Into<reqwest::Body>) -> (Value, Vec<Value>) {
    app.post_and_read("resend", body).await
}

/// Posts one element that must become exactly one event, and checks it.
async fn assert_element(app: &TestApp, element: Value, expected: &Expected) {
    let (report, events) = post(app, element.to_string()).await;
    assert_eq!(report["accepted"], 1, "{report}");
    check("resend", &events[0], &element, expected);
}

/// A fixture as JSON, to vary.
fn sample(name: &str) -> Value {
    serde_json::from_slice(&read_fixture(&format!("resend/{name}.json"))).expect("JSON")
}

#[tokio::test]
async fn resend_every_address_of_to_is_one_event() {
    let app = spawn_app().await;
    let mut element = sample("email_delivered");
    element["data"]["to"] = json!([
        "delivered@resend.dev",
        "Carol <Carol@Example.COM>",
        "delivered@resend.dev",
        "not-an-address"
    ]);
    let (report, events) = post(&app, element.to_string()).await;
    assert_eq!(report["accepted"], 2, "{report}");
    const SKIPPED: &str =
        "field `data.to`: skipped recipient `not-an-address`: address has no local part and domain";
    let expected = Expected {
        warnings: &[SKIPPED],
        ..february("email.delivered", "delivered")
    };
    check("resend", &events[0], &element, &expected);
    check(
        "resend",
        &events[1],
        &element,
        &Expected {
            recipient: "Carol@example.com",
            ..expected.clone()
        },
    );
}

#[tokio::test]
async fn resend_bounce_diagnostics_pair_with_their_recipients() {
    let app = spawn_app().await;
    let mut element = sample("variant_bounced_permanent_general");
    element["data"]["to"] = json!(["a@example.com", "b@example.org"]);
    element["data"]["bounce"]["diagnosticCode"] = json!([
        "smtp; 550 5.1.1 user unknown",
        "smtp; 554 5.7.1 Service unavailable; client host blocked using Spamhaus"
    ]);
    let (report, events) = post(&app, element.to_string()).await;
    assert_eq!(report["accepted"], 2, "{report}");
    let metadata = bounce_metadata(
        "Permanent",
        "General",
        "The recipient's email provider sent a hard bounce message.",
    );
    check(
        "resend",
        &events[0],
        &element,
        &Expected {
            recipient: "a@example.com",
            ..bounce(
                "hard",
                "invalid",
                Some(550),
                Some("5.1.1"),
                "550 5.1.1 user unknown",
                metadata.clone(),
            )
        },
    );
    // A policy block says nothing about the address: the hard-bounce rule spares it.
    check(
        "resend",
        &events[1],
        &element,
        &Expected {
            recipient: "b@example.org",
            ..bounce(
                "hard",
                "blocked",
                Some(554),
                Some("5.7.1"),
                "554 5.7.1 Service unavailable; client host blocked using Spamhaus",
                metadata.clone(),
            )
        },
    );

    // Two replies for three addresses do not pair: the first is everyone's, the list
    // stays in metadata, with a warning.
    element["data"]["to"] = json!(["a@example.com", "b@example.org", "c@example.net"]);
    let (report, events) = post(&app, element.to_string()).await;
    assert_eq!(report["accepted"], 3, "{report}");
    let mut metadata = metadata;
    metadata["bounce"]["diagnosticCode"] = element["data"]["bounce"]["diagnosticCode"].clone();
    for (event, recipient) in events
        .iter()
        .zip(["a@example.com", "b@example.org", "c@example.net"])
    {
        check(
            "resend",
            event,
            &element,
            &Expected {
                recipient,
                warnings: &[
                    "field `data.bounce.diagnosticCode`: 2 entries for 3 listed recipients; the first is used for each",
                ],
                ..bounce(
                    "hard",
                    "invalid",
                    Some(550),
                    Some("5.1.1"),
                    "550 5.1.1 user unknown",
                    metadata.clone(),
                )
            },
        );
    }
}

#[tokio::test]
async fn resend_tags_object_becomes_key_value_tags_and_the_send_api_shape_is_read_too() {
    let app = spawn_app().await;
    let mut element = sample("email_delivered");
    element["data"]["tags"] = json!({"user_id": "1234567890", "category": "welcome"});
    assert_element(
        &app,
        element,
        &Expected {
            tags: &["category=welcome", "user_id=1234567890"],
            ..february("email.delivered", "delivered")
        },
    )
    .await;

    let mut element = sample("email_opened");
    element["data"]["tags"] = json!([{"name": "category", "value": "welcome"}, {"name": "vip"}]);
    assert_element(
        &app,
        element,
        &Expected {
            tags: &["category=welcome", "vip"],
            ..february("email.opened", "open")
        },
    )
    .await;
}

#[tokio::test]
async fn resend_click_time_falls_back_to_created_at() {
    let app = spawn_app().await;
    let agent = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.1 Safari/605.1.15";
    let clicked = |warnings: &'static [&'static str]| Expected {
        click_url: Some("https://resend.com"),
        user_agent: Some(agent),
        ip: Some("122.115.53.11"),
        warnings,
        ..november("email.clicked", "click", Value::Null)
    };
    let mut element = sample("email_clicked");
    element["data"]["click"]["timestamp"] = json!("yesterday");
    assert_element(
        &app,
        element,
        &clicked(&[
            "field `data.click.timestamp`: `yesterday` is not a recognised time; the event's `created_at` used instead",
        ]),
    )
    .await;

    let mut element = sample("email_clicked");
    element["data"]["click"]
        .as_object_mut()
        .unwrap()
        .remove("timestamp");
    assert_element(&app, element, &clicked(&[])).await;
}

#[tokio::test]
async fn resend_created_at_with_microseconds_and_an_offset_is_exact() {
    let app = spawn_app().await;
    for (sent, utc) in [
        (
            "2026-02-22T23:41:12.126719+00:00",
            "2026-02-22T23:41:12.126719Z",
        ),
        ("2026-02-23T01:41:12.126+02:00", FEB_AT),
        ("2026-02-22T23:41:12Z", "2026-02-22T23:41:12Z"),
    ] {
        let mut element = sample("email_delivered");
        element["created_at"] = json!(sent);
        let utc: &'static str = utc.to_owned().leak();
        assert_element(
            &app,
            element,
            &Expected {
                occurred_at: Some(utc),
                ..february("email.delivered", "delivered")
            },
        )
        .await;
    }
}

#[tokio::test]
async fn resend_body_with_a_byte_order_mark_is_accepted_unsigned() {
    // Without a signing secret nothing is verified over the bytes; the BOM is skipped.
    let app = spawn_app().await;
    let mut body = b"\xEF\xBB\xBF".to_vec();
    body.extend_from_slice(&read_fixture("resend/email_delivered.json"));
    let (report, events) = post(&app, body).await;
    assert_eq!(report["accepted"], 1, "{report}");
    check(
        "resend",
        &events[0],
        &sample("email_delivered"),
        &february("email.delivered", "delivered"),
    );
}

#[tokio::test]
async fn resend_wrong_types_are_read_leniently_or_warned_about() {
    let app = spawn_app().await;
    // `to` as a comma-separated string, the subject and the broadcast id numbers, tags a
    // string: read as text where they can be.
    let mut element = sample("email_delivered");
    element["data"]["to"] = json!("delivered@resend.dev, other@resend.dev");
    element["data"]["subject"] = json!(42);
    element["data"]["tags"] = json!("category=confirm_email");
    element["data"]["broadcast_id"] = json!(12345);
    let (report, events) = post(&app, element.to_string()).await;
    assert_eq!(report["accepted"], 2, "{report}");
    let expected = Expected {
        subject: Some("42"),
        campaign: Some("12345"),
        tags: &[],
        warnings: &["field `data.tags`: expected an object, found a string; ignored"],
        ..february("email.delivered", "delivered")
    };
    check("resend", &events[0], &element, &expected);
    check(
        "resend",
        &events[1],
        &element,
        &Expected {
            recipient: "other@resend.dev",
            ..expected
        },
    );

    // A bounce object that is a string: a bounce of unknown class, warned about.
    let mut element = sample("email_bounced");
    element["data"]["bounce"] = json!("Permanent");
    assert_element(
        &app,
        element,
        &Expected {
            bounce_class: Some("undetermined"),
            warnings: &["field `data.bounce`: expected an object, found a string; ignored"],
            ..november("email.bounced", "bounce", Value::Null)
        },
    )
    .await;

    // No bounce object at all.
    let mut element = sample("email_bounced");
    element["data"].as_object_mut().unwrap().remove("bounce");
    assert_element(
        &app,
        element,
        &Expected {
            bounce_class: Some("undetermined"),
            warnings: &["field `data.bounce`: missing; bounce class undetermined"],
            ..november("email.bounced", "bounce", Value::Null)
        },
    )
    .await;

    // A click that is an array: no click details, the event time.
    let mut element = sample("email_clicked");
    element["data"]["click"] = json!(["https://resend.com"]);
    assert_element(
        &app,
        element,
        &Expected {
            warnings: &["field `data.click`: expected an object, found an array; ignored"],
            ..november("email.clicked", "click", Value::Null)
        },
    )
    .await;

    // An unreadable event time: missing, with a warning.
    let mut element = sample("email_opened");
    element["created_at"] = json!({"at": "now"});
    assert_element(
        &app,
        element,
        &Expected {
            occurred_at: None,
            time_quality: "missing",
            warnings: &["field `created_at`: expected a time, found an object; time left empty"],
            ..february("email.opened", "open")
        },
    )
    .await;
}

#[tokio::test]
async fn resend_unknown_bounce_type_and_subtype_take_the_class_and_reason_from_the_reply() {
    let app = spawn_app().await;
    let mut element = sample("variant_bounced_transient_mailbox_full");
    element["data"]["bounce"]["type"] = json!("Quantum");
    element["data"]["bounce"]["subType"] = json!("Entangled");
    assert_element(
        &app,
        element,
        &Expected {
            warnings: &[
                "field `data.bounce.type`: `Quantum` is not a documented type; class read from the reply",
                "field `data.bounce.subType`: `Entangled` is not a documented subtype; reason read from the reply",
            ],
            ..bounce(
                "soft",
                "bounced",
                Some(452),
                Some("4.2.2"),
                "452 4.2.2 The email account that you tried to reach is over quota",
                bounce_metadata(
                    "Quantum",
                    "Entangled",
                    "The recipient's email provider sent a bounce message because the recipient's inbox was full.",
                ),
            )
        },
    )
    .await;

    // `Temporary` (the field's description) is `Transient`; `MessageRejected` (named there
    // as an example subtype) leaves the reason to the reply, without a warning.
    let mut element = sample("variant_bounced_permanent_general");
    element["data"]["bounce"]["type"] = json!("Temporary");
    element["data"]["bounce"]["subType"] = json!("MessageRejected");
    assert_element(
        &app,
        element,
        &bounce(
            "soft",
            "invalid",
            Some(550),
            Some("5.1.1"),
            "550 5.1.1 user unknown",
            bounce_metadata(
                "Temporary",
                "MessageRejected",
                "The recipient's email provider sent a hard bounce message.",
            ),
        ),
    )
    .await;

    // An unknown reason for a suppression.
    let mut element = sample("variant_suppressed_previous_bounce");
    element["data"]["suppressed"]["reason"] = json!("manual");
    assert_element(
        &app,
        element,
        &Expected {
            warnings: &[
                "field `data.suppressed.reason`: `manual` not recognised; reason left empty",
            ],
            ..november(
                "email.suppressed",
                "dropped",
                suppressed_metadata("manual", json!(["smtp; 550 5.1.1 user unknown"])),
            )
        },
    )
    .await;
}

#[tokio::test]
async fn resend_unknown_event_is_other_with_a_warning() {
    let app = spawn_app().await;
    let mut element = sample("email_delivered");
    element["type"] = json!("email.teleported");
    assert_element(
        &app,
        element,
        &Expected {
            warnings: &["unknown event `email.teleported`; stored as `other`"],
            ..february("email.teleported", "other")
        },
    )
    .await;

    // An event of a family Resend has not documented: the recipient from `to` or
    // `email`, whichever it has.
    let element = json!({
        "type": "inbox.thread.created",
        "created_at": "2026-02-12T10:00:00.000Z",
        "data": {"email": "agent@example.com", "thread_id": "t_1"}
    });
    assert_element(
        &app,
        element,
        &Expected {
            provider_event: "inbox.thread.created",
            kind: "other",
            recipient: "agent@example.com",
            occurred_at: Some("2026-02-12T10:00:00Z"),
            time_quality: "exact",
            metadata: json!({"thread_id": "t_1"}),
            warnings: &["unknown event `inbox.thread.created`; stored as `other`"],
            ..Expected::default()
        },
    )
    .await;
}

#[tokio::test]
async fn resend_elements_without_a_recipient_are_quarantined_and_the_rest_kept() {
    // Resend posts one object at a time; a batch shows each bad one is set aside alone.
    let app = spawn_app().await;
    let delivered = sample("email_delivered");
    let mut no_to = delivered.clone();
    no_to["data"].as_object_mut().unwrap().remove("to");
    let mut empty_to = delivered.clone();
    empty_to["data"]["to"] = json!([]);
    let mut bad_address = delivered.clone();
    bad_address["data"]["to"] = json!(["not-an-address"]);
    let mut injected = delivered.clone();
    injected["data"]["to"] = json!(["delivered@resend.dev\r\nBcc: all@example.com"]);
    let mut contact = sample("contact_created");
    contact["data"].as_object_mut().unwrap().remove("email");
    // An e-mail event's recipient is in `to`, never in `email`.
    let mut wrong_key = delivered.clone();
    wrong_key["data"].as_object_mut().unwrap().remove("to");
    wrong_key["data"]["email"] = json!("delivered@resend.dev");
    let mut no_type = delivered.clone();
    no_type.as_object_mut().unwrap().remove("type");
    let mut data_string = delivered.clone();
    data_string["data"] = json!("delivered@resend.dev");
    let mut no_data = delivered.clone();
    no_data.as_object_mut().unwrap().remove("data");
    let body = json!([
        delivered,
        no_to,
        empty_to,
        bad_address,
        injected,
        contact,
        wrong_key,
        no_type,
        data_string,
        no_data,
        "email.delivered",
        sample("email_opened")
    ]);
    let (report, events) = post(&app, body.to_string()).await;
    assert_eq!(report["accepted"], 2, "{report}");
    assert_eq!(report["quarantined"], 10, "{report}");
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
    let none_of_to = "no valid recipient address: none of `to` is present".to_owned();
    assert_eq!(
        errors,
        vec![
            (1, none_of_to.clone()),
            (2, none_of_to.clone()),
            (
                3,
                "no valid recipient address: `to`: `not-an-address`: address has no local part and domain"
                    .to_owned()
            ),
            (
                4,
                "no valid recipient address: `to`: `delivered@resend.dev\r\nBcc: all@example.com`: address contains a character that is not allowed"
                    .to_owned()
            ),
            (
                5,
                "no valid recipient address: none of `email` is present".to_owned()
            ),
            (6, none_of_to),
            (7, "missing event name (`type`)".to_owned()),
            (8, "`data` is a string, not an object".to_owned()),
            (9, "missing `data` object".to_owned()),
            (10, "expected an event object, found a string".to_owned()),
        ]
    );
    assert_eq!(events[0]["provider_event"], "email.delivered");
    assert_eq!(events[1]["provider_event"], "email.opened");
    let entries = quarantine(&app).await;
    assert_eq!(entries.len(), 10, "{entries:#?}");
    for index in 1..=10 {
        let entry = entries
            .iter()
            .find(|entry| entry["index"] == index)
            .unwrap_or_else(|| panic!("element {index} not in quarantine"));
        assert_eq!(entry["element"], body[index as usize], "{entry}");
    }
}

#[tokio::test]
async fn resend_hostile_strings_are_clipped_and_kept_in_raw() {
    let app = spawn_app().await;
    let mut element = sample("email_clicked");
    let subject = format!("{}\u{0}\u{1b}[31m", "S".repeat(10_000));
    element["data"]["subject"] = json!(subject);
    element["data"]["click"]["link"] = json!(format!("https://x.test/{}", "p".repeat(5_000)));
    element["data"]["tags"] = json!({"k": "v".repeat(1_000), "color": "red\u{1b}[31m\u{7}"});
    element["data"]["template_id"] = json!("t".repeat(5_000));
    let expected_subject: &'static str = "S".repeat(2_000).leak();
    let expected_link: &'static str = format!("https://x.test/{}", "p".repeat(1_985)).leak();
    let long_tag: &'static str = format!("k={}", "v".repeat(198)).leak();
    let tags: &'static [&'static str] = vec!["color=red\u{1b}[31m\u{7}", long_tag].leak();
    let (report, events) = post(&app, element.to_string()).await;
    assert_eq!(report["accepted"], 1, "{report}");
    check(
        "resend",
        &events[0],
        &element,
        &Expected {
            occurred_at: Some("2026-11-24T05:00:57.163Z"),
            subject: Some(expected_subject),
            click_url: Some(expected_link),
            user_agent: Some(
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.1 Safari/605.1.15",
            ),
            ip: Some("122.115.53.11"),
            tags,
            metadata: json!({"created_at": NOV_CREATED, "message_id": RFC_MESSAGE_ID}),
            warnings: &[
                "field `data.template_id`: 5002 bytes, too large for metadata; kept in raw only",
            ],
            ..november("email.clicked", "click", Value::Null)
        },
    );

    // An event name of 10 000 characters is clipped in the event and in its warning.
    let mut element = sample("email_delivered");
    element["type"] = json!("R".repeat(10_000));
    let (report, events) = post(&app, element.to_string()).await;
    assert_eq!(report["accepted"], 1, "{report}");
    assert_eq!(events[0]["provider_event"], "R".repeat(200));
    assert_eq!(
        events[0]["warnings"],
        json!([format!(
            "unknown event `{}`; stored as `other`",
            "R".repeat(64)
        )])
    );
}

#[tokio::test]
async fn resend_huge_ids_are_kept_exactly() {
    // Ids written as numbers beyond 2^53 (and beyond 64 bits) keep every digit.
    let app = spawn_app().await;
    let body = String::from_utf8(read_fixture("resend/email_delivered.json"))
        .expect("UTF-8")
        .replace(
            "\"56761188-7520-42d8-8898-ff6fc54ce618\"",
            "123456789012345678901234567890",
        )
        .replace(
            "\"8b146471-e88e-4322-86af-016cd36fd216\"",
            "9007199254740993",
        )
        .replace(
            "\"43f68331-0622-4e15-8202-246a0388854b\"",
            "98765432109876543210",
        );
    let (report, events) = post(&app, body).await;
    assert_eq!(report["accepted"], 1, "{report}");
    assert_eq!(events[0]["message_id"], "123456789012345678901234567890");
    assert_eq!(events[0]["campaign"], "9007199254740993");
    assert_eq!(events[0]["metadata"]["template_id"], "98765432109876543210");
    // Raw keeps the numbers as written (read as text: a JSON client would round them).
    let id = events[0]["id"].as_str().expect("id");
    let text = app
        .client
        .get(app.url(&format!("/api/events/{id}")))
        .send()
        .await
        .expect("request is sent")
        .text()
        .await
        .expect("text answer");
    assert!(
        text.contains("\"email_id\": 123456789012345678901234567890"),
        "{text}"
    );
}
