//! Postmark: one object per POST routed on `RecordType` (and a bounce's `Type`, never its
//! `TypeCode`), bounce ids above 2^53, ISO 8601 times with offsets, older samples without
//! `RecordType`.
//!
//! The bounce variants (`bounce_<type>.json`) are the documented HardBounce sample with
//! `Type`, `TypeCode`, `Name` and `Description` from the bounce-type table, and an `ID` of
//! their own (4323372036854700000 + the type's code): distinct bounce records never share
//! an id, and the id is what deduplicates them.

use base64::Engine as _;
use mailwarden::config::{Secret, SourceConfig};
use serde_json::{Value, json};

use super::{Expected, assert_fixture, check};
use crate::helpers::{TestApp, all_fixtures, read_fixture, spawn_app, spawn_app_with};

/// `MessageID` of the documented samples.
const MESSAGE: &str = "883953f4-6105-42a2-a16a-77a8eac79483";
/// `BouncedAt`, `DeliveredAt` and `ReceivedAt` of the current developer-page samples.
const AT_2019: &str = "2019-11-05T16:33:54.9070259Z";
/// The older samples' `-04:00` time (email-webhooks page), in UTC.
const AT_2014_UTC: &str = "2014-08-01T17:28:10.2735393Z";
/// `ChangedAt` of the SubscriptionChange sample (6 fractional digits).
const CHANGED_AT: &str = "2020-02-01T10:53:34.416071Z";
/// The recipient of the SubscriptionChange sample.
const SUPPRESSED: &str = "bounced-address@wildbit.com";

/// Metadata of a bounce built from the documented HardBounce sample: everything the
/// adapter does not map, custom `Metadata` merged in, `Content` left in raw.
fn bounce_metadata(type_name: &str, code: u32, name: &str, description: &str) -> Value {
    json!({
        "MessageStream": "outbound",
        "Type": type_name,
        "TypeCode": code,
        "Name": name,
        "ServerID": 23,
        "Description": description,
        "DumpAvailable": true,
        "Inactive": true,
        "CanActivate": true,
        "a_key": "a_value",
        "b_key": "b_value"
    })
}

/// A Bounce record of the documented sample's shape, sent to john@example.com.
fn bounce(id: &'static str, kind: &'static str, metadata: Value) -> Expected {
    Expected {
        provider_event: "Bounce",
        kind,
        recipient: "john@example.com",
        occurred_at: Some(AT_2019),
        time_quality: "exact",
        message_id: Some(MESSAGE),
        provider_event_id: Some(id),
        smtp_response: Some("Test bounce details"),
        subject: Some("Test subject"),
        sender: Some("sender@example.com"),
        tags: &["Test"],
        metadata,
        ..Expected::default()
    }
}

/// The warnings of records inferred from their fields (older samples).
const INFERRED_BOUNCE: &str =
    "field `RecordType`: missing; read as `Bounce` from the fields present (older webhook format)";
const INFERRED_COMPLAINT: &str = "field `RecordType`: missing; read as `SpamComplaint` from the fields present (older webhook format)";
const INFERRED_DELIVERY: &str = "field `RecordType`: missing; read as `Delivery` from the fields present (older webhook format)";

/// The SubscriptionChange sample's metadata with `Origin`, `SuppressSending` and
/// `SuppressionReason` as given.
fn subscription_metadata(origin: &str, suppress: bool, reason: Option<&str>) -> Value {
    let mut metadata = json!({
        "ServerID": 123456,
        "MessageStream": "outbound",
        "Origin": origin,
        "SuppressSending": suppress,
        "example": "value",
        "example_2": "value"
    });
    if let Some(reason) = reason {
        metadata["SuppressionReason"] = json!(reason);
    }
    metadata
}

/// A SubscriptionChange of the documented sample's shape.
fn subscription(kind: &'static str, reason: Option<&'static str>, metadata: Value) -> Expected {
    Expected {
        provider_event: "SubscriptionChange",
        kind,
        reason,
        recipient: SUPPRESSED,
        occurred_at: Some(CHANGED_AT),
        time_quality: "exact",
        message_id: Some(MESSAGE),
        tags: &["my-tag"],
        metadata,
        ..Expected::default()
    }
}

// ---------------------------------------------------------------------------------------
// Documented samples.

#[tokio::test]
async fn postmark_hard_bounce_is_hard_and_invalid_with_its_id_above_2_53_kept_exactly() {
    // The developer page's sample: ID 4323372036854775807 rounds to …808 through a float.
    assert_fixture(
        "postmark/bounce_hard.json",
        &[Expected {
            bounce_class: Some("hard"),
            reason: Some("invalid"),
            ..bounce(
                "4323372036854775807",
                "bounce",
                bounce_metadata(
                    "HardBounce",
                    1,
                    "Hard bounce",
                    "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
                ),
            )
        }],
    )
    .await;
}

#[tokio::test]
async fn postmark_hard_bounce_id_of_2_53_plus_1_is_not_rounded() {
    // 9007199254740993 is the first integer a double cannot hold (it becomes …992).
    assert_fixture(
        "postmark/bounce_hard_id_above_2_53.json",
        &[Expected {
            bounce_class: Some("hard"),
            reason: Some("invalid"),
            ..bounce(
                "9007199254740993",
                "bounce",
                bounce_metadata(
                    "HardBounce",
                    1,
                    "Hard bounce",
                    "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
                ),
            )
        }],
    )
    .await;
}

#[tokio::test]
async fn postmark_hard_bounce_with_a_real_reply_gives_its_smtp_codes() {
    // Details as the Postmark skill shows real ones: `smtp;` + the server's reply.
    assert_fixture(
        "postmark/bounce_hard_smtp_details.json",
        &[Expected {
            bounce_class: Some("hard"),
            reason: Some("invalid"),
            smtp_code: Some(550),
            smtp_enhanced: Some("5.1.1"),
            smtp_response: Some(
                "550 5.1.1 The email account that you tried to reach does not exist.",
            ),
            ..bounce(
                "4323372036854775001",
                "bounce",
                bounce_metadata(
                    "HardBounce",
                    1,
                    "Hard bounce",
                    "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
                ),
            )
        }],
    )
    .await;
}

#[tokio::test]
async fn postmark_hard_bounce_of_the_support_article_on_a_transactional_stream() {
    let mut metadata = bounce_metadata(
        "HardBounce",
        1,
        "Hard bounce",
        "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
    );
    metadata["MessageStream"] = json!("transactional");
    assert_fixture(
        "postmark/bounce_hard_support_article.json",
        &[Expected {
            bounce_class: Some("hard"),
            reason: Some("invalid"),
            ..bounce("42", "bounce", metadata)
        }],
    )
    .await;
}

#[tokio::test]
async fn postmark_hard_bounce_of_the_marketing_page_without_record_type_has_an_offset_time() {
    // No RecordType, ServerID, MessageStream or From; an integer in Metadata; `-04:00`.
    assert_fixture(
        "postmark/bounce_hard_marketing_page.json",
        &[Expected {
            bounce_class: Some("hard"),
            reason: Some("invalid"),
            occurred_at: Some(AT_2014_UTC),
            sender: None,
            metadata: json!({
                "Type": "HardBounce",
                "TypeCode": 1,
                "Name": "Hard bounce",
                "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
                "DumpAvailable": true,
                "Inactive": true,
                "CanActivate": true,
                "user_id": 43
            }),
            warnings: &[INFERRED_BOUNCE],
            ..bounce("42", "bounce", Value::Null)
        }],
    )
    .await;
}

#[tokio::test]
async fn postmark_legacy_bounce_with_an_empty_email_is_quarantined() {
    // The older support-article sample (braces restored) sends `"Email": ""`: there is no
    // recipient to file it under, so it is set aside with the reason, answered 200.
    let app = spawn_app().await;
    let fixture = "postmark/set_aside/bounce_hard_support_article_legacy.json";
    let (status, report) = app.post_fixture("postmark", fixture).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["accepted"], 0, "{report}");
    assert_eq!(report["quarantined"], 1, "{report}");
    assert_eq!(
        report["errors"],
        json!([{"index": 0, "error": "no valid recipient address: `Email` holds no address"}])
    );
    let entries = quarantine(&app).await;
    assert_eq!(entries.len(), 1, "{entries:#?}");
    assert_eq!(entries[0]["source"], "postmark");
    let element: Value = serde_json::from_slice(&read_fixture(fixture)).expect("JSON");
    assert_eq!(entries[0]["element"], element);
}

#[tokio::test]
async fn postmark_transient_bounce_is_a_deferral() {
    assert_fixture(
        "postmark/bounce_transient.json",
        &[bounce(
            "4323372036854700002",
            "deferred",
            bounce_metadata(
                "Transient",
                2,
                "Message delayed",
                "The server could not temporarily deliver your message (ex: Message is delayed due to network troubles).",
            ),
        )],
    )
    .await;
}

#[tokio::test]
async fn postmark_unsubscribe_request_bounce_is_an_unsubscribe() {
    assert_fixture(
        "postmark/bounce_unsubscribe.json",
        &[Expected {
            reason: Some("unsubscribed"),
            ..bounce(
                "4323372036854700016",
                "unsubscribe",
                bounce_metadata(
                    "Unsubscribe",
                    16,
                    "Unsubscribe request",
                    "Unsubscribe or Remove request.",
                ),
            )
        }],
    )
    .await;
}

#[tokio::test]
async fn postmark_subscribe_request_bounce_is_a_subscribe() {
    assert_fixture(
        "postmark/bounce_subscribe.json",
        &[bounce(
            "4323372036854700032",
            "subscribe",
            bounce_metadata(
                "Subscribe",
                32,
                "Subscribe request",
                "Subscribe request from someone wanting to get added to the mailing list.",
            ),
        )],
    )
    .await;
}

#[tokio::test]
async fn postmark_auto_responder_is_an_autoreply() {
    assert_fixture(
        "postmark/bounce_auto_responder.json",
        &[bounce(
            "4323372036854700064",
            "autoreply",
            bounce_metadata(
                "AutoResponder",
                64,
                "Auto responder",
                "Automatic email responder (ex: \"Out of Office\" or \"On Vacation\").",
            ),
        )],
    )
    .await;
}

#[tokio::test]
async fn postmark_address_change_is_an_autoreply() {
    assert_fixture(
        "postmark/bounce_address_change.json",
        &[bounce(
            "4323372036854700128",
            "autoreply",
            bounce_metadata(
                "AddressChange",
                128,
                "Address change",
                "The recipient has requested an address change.",
            ),
        )],
    )
    .await;
}

#[tokio::test]
async fn postmark_dns_error_is_a_soft_bounce() {
    assert_fixture(
        "postmark/bounce_dns_error.json",
        &[Expected {
            bounce_class: Some("soft"),
            reason: Some("other"),
            ..bounce(
                "4323372036854700256",
                "bounce",
                bounce_metadata("DnsError", 256, "DNS error", "A temporary DNS error."),
            )
        }],
    )
    .await;
}

#[tokio::test]
async fn postmark_spam_notification_is_a_complaint() {
    assert_fixture(
        "postmark/bounce_spam_notification.json",
        &[Expected {
            reason: Some("spam"),
            ..bounce(
                "4323372036854700512",
                "complaint",
                bounce_metadata(
                    "SpamNotification",
                    512,
                    "Spam notification",
                    "The message was delivered, but was either blocked by the user, or classified as spam, bulk mail, or had rejected content.",
                ),
            )
        }],
    )
    .await;
}

#[tokio::test]
async fn postmark_open_relay_test_is_other_without_an_unknown_event_warning() {
    assert_fixture(
        "postmark/bounce_open_relay_test.json",
        &[bounce(
            "4323372036854701024",
            "other",
            bounce_metadata(
                "OpenRelayTest",
                1024,
                "Open relay test",
                "The NDR is actually a test email message to see if the mail server is an open relay.",
            ),
        )],
    )
    .await;
}

#[tokio::test]
async fn postmark_unknown_bounce_is_undetermined() {
    // "Unable to classify the NDR", and "Test bounce details" tells nothing either.
    assert_fixture(
        "postmark/bounce_unknown.json",
        &[Expected {
            bounce_class: Some("undetermined"),
            reason: Some("bounced"),
            ..bounce(
                "4323372036854702048",
                "bounce",
                bounce_metadata("Unknown", 2048, "Unknown", "Unable to classify the NDR."),
            )
        }],
    )
    .await;
}

#[tokio::test]
async fn postmark_soft_bounce_is_soft() {
    // `Inactive: true` comes from the HardBounce sample it was built from: never the class.
    assert_fixture(
        "postmark/bounce_soft.json",
        &[Expected {
            bounce_class: Some("soft"),
            reason: Some("bounced"),
            ..bounce(
                "4323372036854704096",
                "bounce",
                bounce_metadata(
                    "SoftBounce",
                    4096,
                    "Soft bounce",
                    "Unable to temporarily deliver message (i.e. mailbox full, account disabled, exceeds quota, out of disk space).",
                ),
            )
        }],
    )
    .await;
}

#[tokio::test]
async fn postmark_virus_notification_is_a_soft_block() {
    assert_fixture(
        "postmark/bounce_virus_notification.json",
        &[Expected {
            bounce_class: Some("soft"),
            reason: Some("blocked"),
            ..bounce(
                "4323372036854708192",
                "bounce",
                bounce_metadata(
                    "VirusNotification",
                    8192,
                    "Virus notification",
                    "The bounce is actually a virus notification warning about a virus/code infected message.",
                ),
            )
        }],
    )
    .await;
}

#[tokio::test]
async fn postmark_challenge_verification_is_an_autoreply() {
    assert_fixture(
        "postmark/bounce_challenge_verification.json",
        &[bounce(
            "4323372036854716384",
            "autoreply",
            bounce_metadata(
                "ChallengeVerification",
                16384,
                "Spam challenge verification",
                "The bounce is a challenge asking for verification you actually sent the email. Typcial challenges are made by Spam Arrest, or MailFrontier Matador.",
            ),
        )],
    )
    .await;
}

#[tokio::test]
async fn postmark_bad_email_address_is_dropped_as_invalid() {
    assert_fixture(
        "postmark/bounce_bad_email_address.json",
        &[Expected {
            reason: Some("invalid"),
            ..bounce(
                "4323372036854800000",
                "dropped",
                bounce_metadata(
                    "BadEmailAddress",
                    100000,
                    "Invalid email address",
                    "The address is not a valid email address.",
                ),
            )
        }],
    )
    .await;
}

#[tokio::test]
async fn postmark_manually_deactivated_is_dropped() {
    assert_fixture(
        "postmark/bounce_manually_deactivated.json",
        &[Expected {
            reason: Some("other"),
            ..bounce(
                "4323372036854800002",
                "dropped",
                bounce_metadata(
                    "ManuallyDeactivated",
                    100002,
                    "Manually deactivated",
                    "The email was manually deactivated.",
                ),
            )
        }],
    )
    .await;
}

#[tokio::test]
async fn postmark_unconfirmed_is_dropped() {
    assert_fixture(
        "postmark/bounce_unconfirmed.json",
        &[Expected {
            reason: Some("other"),
            ..bounce(
                "4323372036854800003",
                "dropped",
                bounce_metadata(
                    "Unconfirmed",
                    100003,
                    "Registration not confirmed",
                    "The subscriber has not clicked on the confirmation link upon registration or import.",
                ),
            )
        }],
    )
    .await;
}

#[tokio::test]
async fn postmark_isp_block_is_a_soft_block() {
    assert_fixture(
        "postmark/bounce_blocked.json",
        &[Expected {
            bounce_class: Some("soft"),
            reason: Some("blocked"),
            ..bounce(
                "4323372036854800006",
                "bounce",
                bounce_metadata(
                    "Blocked",
                    100006,
                    "ISP block",
                    "Blocked from this ISP due to content or blacklisting.",
                ),
            )
        }],
    )
    .await;
}

#[tokio::test]
async fn postmark_smtp_api_error_is_a_failure() {
    assert_fixture(
        "postmark/bounce_smtp_api_error.json",
        &[Expected {
            reason: Some("other"),
            ..bounce(
                "4323372036854800007",
                "failed",
                bounce_metadata(
                    "SMTPApiError",
                    100007,
                    "SMTP API error",
                    "An error occurred while accepting an email through the SMTP API.",
                ),
            )
        }],
    )
    .await;
}

#[tokio::test]
async fn postmark_inbound_error_is_other_without_an_unknown_event_warning() {
    assert_fixture(
        "postmark/bounce_inbound_error.json",
        &[bounce(
            "4323372036854800008",
            "other",
            bounce_metadata(
                "InboundError",
                100008,
                "Processing failed",
                "Unable to deliver inbound message to destination inbound hook.",
            ),
        )],
    )
    .await;
}

#[tokio::test]
async fn postmark_dmarc_policy_is_a_soft_block() {
    assert_fixture(
        "postmark/bounce_dmarc_policy.json",
        &[Expected {
            bounce_class: Some("soft"),
            reason: Some("blocked"),
            ..bounce(
                "4323372036854800009",
                "bounce",
                bounce_metadata(
                    "DMARCPolicy",
                    100009,
                    "DMARC Policy",
                    "Email rejected due DMARC Policy.",
                ),
            )
        }],
    )
    .await;
}

#[tokio::test]
async fn postmark_template_rendering_failure_is_a_failure() {
    assert_fixture(
        "postmark/bounce_template_rendering_failed.json",
        &[Expected {
            reason: Some("other"),
            ..bounce(
                "4323372036854800010",
                "failed",
                bounce_metadata(
                    "TemplateRenderingFailed",
                    100010,
                    "Template rendering failed",
                    "An error occurred while attempting to render your template.",
                ),
            )
        }],
    )
    .await;
}

#[tokio::test]
async fn postmark_spam_complaint_is_a_complaint_whatever_its_type_code() {
    // TypeCode 512 is SpamNotification's code; RecordType and Type say SpamComplaint.
    // The all-zero MessageID means none; Details describes the complaint, not a reply.
    assert_fixture(
        "postmark/spam_complaint.json",
        &[Expected {
            provider_event: "SpamComplaint",
            kind: "complaint",
            reason: Some("spam"),
            recipient: "john@example.com",
            occurred_at: Some(AT_2019),
            time_quality: "exact",
            provider_event_id: Some("42"),
            subject: Some("Test subject"),
            sender: Some("sender@example.com"),
            tags: &["Test"],
            metadata: json!({
                "MessageStream": "outbound",
                "Type": "SpamComplaint",
                "TypeCode": 512,
                "Name": "Spam complaint",
                "ServerID": 1234,
                "Description": "",
                "Details": "Test spam complaint details",
                "DumpAvailable": true,
                "Inactive": true,
                "CanActivate": false,
                "a_key": "a_value",
                "b_key": "b_value"
            }),
            ..Expected::default()
        }],
    )
    .await;
}

#[tokio::test]
async fn postmark_spam_complaint_curl_example_without_record_type() {
    assert_fixture(
        "postmark/spam_complaint_curl_example.json",
        &[Expected {
            provider_event: "SpamComplaint",
            kind: "complaint",
            reason: Some("spam"),
            recipient: "john@example.com",
            // 2018-02-20T12:54:23.3396434-05:00
            occurred_at: Some("2018-02-20T17:54:23.3396434Z"),
            time_quality: "exact",
            provider_event_id: Some("42"),
            subject: Some("Test subject"),
            sender: Some("sender@example.com"),
            tags: &["Test"],
            metadata: json!({
                "Type": "SpamComplaint",
                "TypeCode": 512,
                "Name": "Spam complaint",
                "ServerID": 1234,
                "Description": "",
                "Details": "Test spam complaint details",
                "DumpAvailable": true,
                "Inactive": true,
                "CanActivate": false
            }),
            warnings: &[INFERRED_COMPLAINT],
            ..Expected::default()
        }],
    )
    .await;
}

#[tokio::test]
async fn postmark_delivery() {
    assert_fixture(
        "postmark/delivery.json",
        &[Expected {
            provider_event: "Delivery",
            kind: "delivered",
            recipient: "john@example.com",
            occurred_at: Some(AT_2019),
            time_quality: "exact",
            message_id: Some(MESSAGE),
            smtp_response: Some("Test delivery webhook details"),
            tags: &["welcome-email"],
            metadata: json!({
                "ServerID": 23,
                "MessageStream": "outbound",
                "a_key": "a_value",
                "b_key": "b_value"
            }),
            ..Expected::default()
        }],
    )
    .await;
}

#[tokio::test]
async fn postmark_delivery_of_the_support_article_has_a_real_reply_and_no_fraction() {
    // "recipeint" is the article's typo, a valid address; `-05:00`, no fractional seconds.
    assert_fixture(
        "postmark/delivery_support_article.json",
        &[Expected {
            provider_event: "Delivery",
            kind: "delivered",
            recipient: "recipeint@example.com",
            occurred_at: Some("2016-12-01T20:41:45Z"),
            time_quality: "exact",
            message_id: Some("a94dfe84-8ab9-43cf-8a1c-ac234c296e25"),
            smtp_code: Some(250),
            smtp_enhanced: Some("2.0.0"),
            smtp_response: Some("250 2.0.0 OK 1480624905 l186si10190883ite.73- gsmtp"),
            tags: &["Your Tag"],
            warnings: &[INFERRED_DELIVERY],
            ..Expected::default()
        }],
    )
    .await;
}

#[tokio::test]
async fn postmark_delivery_of_the_marketing_page_with_server_id_spelled_the_old_way() {
    assert_fixture(
        "postmark/delivery_marketing_page.json",
        &[Expected {
            provider_event: "Delivery",
            kind: "delivered",
            recipient: "john@example.com",
            occurred_at: Some(AT_2014_UTC),
            time_quality: "exact",
            message_id: Some(MESSAGE),
            smtp_response: Some("Test delivery webhook details"),
            tags: &["welcome-email"],
            metadata: json!({"ServerId": 23, "user_id": 43}),
            warnings: &[INFERRED_DELIVERY],
            ..Expected::default()
        }],
    )
    .await;
}

/// `Client` and `OS` of the Open and Click samples.
fn client_and_os() -> (Value, Value) {
    (
        json!({"Name": "Chrome 35.0.1916.153", "Company": "Google", "Family": "Chrome"}),
        json!({"Name": "OS X 10.7 Lion", "Company": "Apple Computer, Inc.", "Family": "OS X 10"}),
    )
}

/// `Geo` of the Open and Click samples, without the reader's IP (it is `ip`).
fn geo_without_ip() -> Value {
    json!({
        "CountryISOCode": "RS",
        "Country": "Serbia",
        "RegionISOCode": "VO",
        "Region": "Autonomna Pokrajina Vojvodina",
        "City": "Novi Sad",
        "Zip": "21000",
        "Coords": "45.2517,19.8369"
    })
}

const CHROME_ON_LION: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_7_5) AppleWebKit/537.36 \
                              (KHTML, like Gecko) Chrome/35.0.1916.153 Safari/537.36";

#[tokio::test]
async fn postmark_open_has_the_readers_ip_and_agent() {
    let (client, os) = client_and_os();
    assert_fixture(
        "postmark/open.json",
        &[Expected {
            provider_event: "Open",
            kind: "open",
            recipient: "john@example.com",
            occurred_at: Some(AT_2019),
            time_quality: "exact",
            message_id: Some(MESSAGE),
            user_agent: Some(CHROME_ON_LION),
            ip: Some("188.2.95.4"),
            tags: &["welcome-email"],
            metadata: json!({
                "MessageStream": "outbound",
                "FirstOpen": true,
                "Client": client,
                "OS": os,
                "Platform": "WebMail",
                "Geo": geo_without_ip(),
                "a_key": "a_value",
                "b_key": "b_value"
            }),
            ..Expected::default()
        }],
    )
    .await;
}

#[tokio::test]
async fn postmark_click_has_the_original_link() {
    // The sample's MessageID is the all-zero GUID: no message id.
    let (client, os) = client_and_os();
    assert_fixture(
        "postmark/click.json",
        &[Expected {
            provider_event: "Click",
            kind: "click",
            recipient: "john@example.com",
            occurred_at: Some("2017-10-25T15:21:11.9065619Z"),
            time_quality: "exact",
            click_url: Some("https://example.com"),
            user_agent: Some(CHROME_ON_LION),
            ip: Some("8.8.8.8"),
            tags: &["welcome-email"],
            metadata: json!({
                "MessageStream": "outbound",
                "ClickLocation": "HTML",
                "Client": client,
                "OS": os,
                "Platform": "Desktop",
                "Geo": geo_without_ip(),
                "a_key": "a_value",
                "b_key": "b_value"
            }),
            ..Expected::default()
        }],
    )
    .await;
}

#[tokio::test]
async fn postmark_suppression_after_a_hard_bounce_is_dropped_not_a_second_bounce() {
    // The documented sample. On transactional streams the bounce itself comes as a Bounce
    // record: a `bounce` here would count it twice.
    assert_fixture(
        "postmark/subscription_change.json",
        &[subscription(
            "dropped",
            Some("invalid"),
            subscription_metadata("Recipient", true, Some("HardBounce")),
        )],
    )
    .await;
}

#[tokio::test]
async fn postmark_suppression_after_a_spam_complaint_is_dropped_as_spam() {
    assert_fixture(
        "postmark/subscription_change_spam_complaint.json",
        &[subscription(
            "dropped",
            Some("spam"),
            subscription_metadata("Recipient", true, Some("SpamComplaint")),
        )],
    )
    .await;
}

#[tokio::test]
async fn postmark_manual_suppression_by_the_recipient_is_an_unsubscribe() {
    // "If a recipient unsubscribes, they will be suppressed with the SuppressionReason of
    // ManualSuppression."
    assert_fixture(
        "postmark/subscription_change_unsubscribe.json",
        &[subscription(
            "unsubscribe",
            Some("unsubscribed"),
            subscription_metadata("Recipient", true, Some("ManualSuppression")),
        )],
    )
    .await;
}

#[tokio::test]
async fn postmark_manual_suppression_by_the_customer_is_dropped() {
    // The sender suppressed the address, not the recipient; MessageID is null.
    assert_fixture(
        "postmark/subscription_change_manual_suppression.json",
        &[Expected {
            message_id: None,
            ..subscription(
                "dropped",
                Some("other"),
                subscription_metadata("Customer", true, Some("ManualSuppression")),
            )
        }],
    )
    .await;
}

#[tokio::test]
async fn postmark_reactivation_is_a_subscribe() {
    // SuppressSending false: SuppressionReason, Tag and MessageID null, Metadata empty.
    assert_fixture(
        "postmark/subscription_change_reactivation.json",
        &[Expected {
            message_id: None,
            tags: &[],
            metadata: json!({
                "ServerID": 123456,
                "MessageStream": "outbound",
                "Origin": "Customer",
                "SuppressSending": false
            }),
            ..subscription("subscribe", None, Value::Null)
        }],
    )
    .await;
}

// ---------------------------------------------------------------------------------------
// Every fixture together, retries, authentication.

/// The top-level Postmark fixtures (the ones under `set_aside/` are meant to be refused).
fn postmark_fixtures() -> Vec<String> {
    all_fixtures()
        .into_iter()
        .filter(|fixture| fixture.starts_with("postmark/"))
        .collect()
}

#[tokio::test]
async fn postmark_fixtures_are_distinct_events_and_their_retries_duplicates() {
    let app = spawn_app().await;
    let fixtures = postmark_fixtures();
    assert_eq!(fixtures.len(), 37, "{fixtures:?}");
    for fixture in &fixtures {
        let (status, report) = app.post_fixture("postmark", fixture).await;
        assert_eq!(status, 200, "{fixture}: {report}");
        assert_eq!(report["accepted"], 1, "{fixture} is new: {report}");
        assert_eq!(report["quarantined"], 0, "{fixture}: {report}");
    }
    // Postmark retries a POST it got no 200 for: the same body is the same event, by the
    // bounce `ID` where there is one and by the JSON otherwise.
    for fixture in &fixtures {
        let (status, report) = app.post_fixture("postmark", fixture).await;
        assert_eq!(status, 200, "{fixture}: {report}");
        assert_eq!(report["accepted"], 0, "{fixture} retried: {report}");
        assert_eq!(report["duplicates"], 1, "{fixture} retried: {report}");
    }
    assert_eq!(app.events("limit=1000").await.len(), fixtures.len());
}

#[tokio::test]
async fn postmark_basic_auth_in_the_webhook_url_is_checked_and_refusals_are_401_not_403() {
    // Postmark sends `https://user:password@host/...` as `Authorization: Basic`; a 403
    // would stop its retries for good, so refusals must be 401.
    let app = spawn_app_with(|config| {
        config.sources.insert(
            "pm".into(),
            SourceConfig {
                username: Some("postmark".into()),
                password: Some(Secret::new("s3cret")),
                ..SourceConfig::new("postmark")
            },
        );
    })
    .await;
    let basic = |credentials: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        )
    };
    let post = |authorization: Option<String>, fixture: &str| {
        let mut request = app
            .client
            .post(app.url("/webhooks/pm"))
            .header("content-type", "application/json")
            .body(read_fixture(fixture));
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        request.send()
    };
    for authorization in [
        None,
        Some(basic("postmark:wrong")),
        Some(basic("other:s3cret")),
        Some("Bearer s3cret".to_owned()),
    ] {
        let response = post(authorization.clone(), "postmark/delivery.json")
            .await
            .expect("request is sent");
        assert_eq!(response.status().as_u16(), 401, "{authorization:?}");
    }
    assert!(app.events("").await.is_empty());
    let response = post(Some(basic("postmark:s3cret")), "postmark/delivery.json")
        .await
        .expect("request is sent");
    assert_eq!(response.status().as_u16(), 200);
    let report: Value = response.json().await.expect("JSON answer");
    assert_eq!(report["accepted"], 1, "{report}");
    let events = app.events("").await;
    assert_eq!(events[0]["source"], "pm");
    assert_eq!(events[0]["provider"], "postmark");
}

// ---------------------------------------------------------------------------------------
// Bad and hostile input.

/// Every quarantine entry.
async fn quarantine(app: &TestApp) -> Vec<Value> {
    let (status, page) = app.get("/api/quarantine?limit=1000").await;
    assert_eq!(status, 200, "{page}");
    page["entries"].as_array().expect("entries").clone()
}

/// Posts `body` to the `postmark` source; returns the answer and the events it stored,
/// read back one by one.
async fn post(app: &TestApp, body: &Value) -> (Value, Vec<Value>) {
    app.post_and_read("postmark", body.to_string()).await
}

/// Posts one element that must become exactly one event, and checks it.
async fn assert_element(app: &TestApp, element: Value, expected: &Expected) {
    let (report, events) = post(app, &element).await;
    assert_eq!(report["accepted"], 1, "{report}");
    check("postmark", &events[0], &element, expected);
}

/// The documented HardBounce sample as JSON, to vary.
fn hard_bounce() -> Value {
    serde_json::from_slice(&read_fixture("postmark/bounce_hard.json")).expect("JSON")
}

#[tokio::test]
async fn postmark_numbers_and_booleans_as_strings_are_read_alike() {
    let app = spawn_app().await;
    let mut element = hard_bounce();
    element["ID"] = json!("4323372036854775807");
    element["TypeCode"] = json!("1");
    element["ServerID"] = json!("23");
    element["BouncedAt"] = json!(" 2019-11-05T16:33:54.9070259Z ");
    let mut metadata = bounce_metadata(
        "HardBounce",
        1,
        "Hard bounce",
        "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
    );
    // Not mapped: kept as sent.
    metadata["TypeCode"] = json!("1");
    metadata["ServerID"] = json!("23");
    assert_element(
        &app,
        element,
        &Expected {
            bounce_class: Some("hard"),
            reason: Some("invalid"),
            ..bounce("4323372036854775807", "bounce", metadata)
        },
    )
    .await;

    let mut change: Value = serde_json::from_slice(&read_fixture(
        "postmark/subscription_change_reactivation.json",
    ))
    .expect("JSON");
    change["SuppressSending"] = json!("false");
    assert_element(
        &app,
        change,
        &Expected {
            message_id: None,
            tags: &[],
            metadata: json!({
                "ServerID": 123456,
                "MessageStream": "outbound",
                "Origin": "Customer",
                "SuppressSending": "false"
            }),
            ..subscription("subscribe", None, Value::Null)
        },
    )
    .await;
}

#[tokio::test]
async fn postmark_wrong_types_become_warnings_not_failures() {
    let app = spawn_app().await;
    let mut open: Value =
        serde_json::from_slice(&read_fixture("postmark/open.json")).expect("JSON");
    open["Geo"] = json!("188.2.95.4");
    open["Metadata"] = json!("a_key=a_value");
    open["Tag"] = json!({"name": "welcome-email"});
    open["ReceivedAt"] = json!("yesterday");
    let (client, os) = client_and_os();
    assert_element(
        &app,
        open,
        &Expected {
            provider_event: "Open",
            kind: "open",
            recipient: "john@example.com",
            occurred_at: None,
            time_quality: "missing",
            message_id: Some(MESSAGE),
            user_agent: Some(CHROME_ON_LION),
            metadata: json!({
                "MessageStream": "outbound",
                "FirstOpen": true,
                "Client": client,
                "OS": os,
                "Platform": "WebMail"
            }),
            warnings: &[
                "field `ReceivedAt`: `yesterday` is not a recognised time; time left empty",
                "field `Tag`: expected text, found an object; ignored",
                "field `Geo`: expected an object, found a string; ignored",
                "field `Metadata`: expected an object, found a string; ignored",
            ],
            ..Expected::default()
        },
    )
    .await;

    // A SubscriptionChange whose SuppressSending cannot be read is kept as `other`,
    // warned about but not counted as an unknown event.
    let mut change: Value =
        serde_json::from_slice(&read_fixture("postmark/subscription_change.json")).expect("JSON");
    change["SuppressSending"] = json!({"value": true});
    change["SuppressionReason"] = json!("HardBounce");
    let mut metadata = subscription_metadata("Recipient", true, Some("HardBounce"));
    metadata["SuppressSending"] = json!({"value": true});
    assert_element(
        &app,
        change,
        &Expected {
            warnings: &[
                "field `SuppressSending`: expected a boolean; ignored",
                "field `SuppressSending`: missing or unreadable; stored as `other`",
            ],
            ..subscription("other", None, metadata)
        },
    )
    .await;

    // A suppression for a reason Postmark does not list is still a suppression.
    let mut change: Value =
        serde_json::from_slice(&read_fixture("postmark/subscription_change.json")).expect("JSON");
    change["SuppressionReason"] = json!("PolicyViolation");
    assert_element(
        &app,
        change,
        &Expected {
            warnings: &[
                "field `SuppressionReason`: `PolicyViolation` not recognised; reason left empty",
            ],
            ..subscription(
                "dropped",
                None,
                subscription_metadata("Recipient", true, Some("PolicyViolation")),
            )
        },
    )
    .await;
}

#[tokio::test]
async fn postmark_elements_without_a_recipient_are_quarantined_and_the_rest_kept() {
    // Postmark posts one object at a time; a batch shows each bad one is set aside alone.
    let app = spawn_app().await;
    let delivery: Value =
        serde_json::from_slice(&read_fixture("postmark/delivery.json")).expect("JSON");
    let mut empty_email = hard_bounce();
    empty_email["Email"] = json!("");
    let mut no_recipient: Value =
        serde_json::from_slice(&read_fixture("postmark/open.json")).expect("JSON");
    no_recipient
        .as_object_mut()
        .expect("object")
        .remove("Recipient");
    let mut bad_address = delivery.clone();
    bad_address["Recipient"] = json!("not-an-address");
    let mut injected = delivery.clone();
    injected["Recipient"] = json!("john@example.com\r\nBcc: all@example.com");
    let mut open: Value =
        serde_json::from_slice(&read_fixture("postmark/open.json")).expect("JSON");
    open["Recipient"] = json!("Reader <Reader@Example.COM>");
    let body = json!([
        delivery,
        empty_email,
        no_recipient,
        bad_address,
        injected,
        open
    ]);
    let (report, events) = post(&app, &body).await;
    assert_eq!(report["accepted"], 2, "{report}");
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
        vec![
            (1, "no valid recipient address: `Email` holds no address".to_owned()),
            (2, "no valid recipient address: none of `Recipient` is present".to_owned()),
            (
                3,
                "no valid recipient address: `Recipient`: `not-an-address`: address has no local part and domain"
                    .to_owned()
            ),
            (
                4,
                "no valid recipient address: `Recipient`: `john@example.com\r\nBcc: all@example.com`: address contains a character that is not allowed"
                    .to_owned()
            ),
        ]
    );
    assert_eq!(events[0]["recipient"], "john@example.com");
    assert_eq!(events[1]["recipient"], "Reader@example.com");
    let entries = quarantine(&app).await;
    assert_eq!(entries.len(), 4, "{entries:#?}");
    for index in 1..=4 {
        let entry = entries
            .iter()
            .find(|entry| entry["index"] == index)
            .unwrap_or_else(|| panic!("element {index} not in quarantine"));
        assert_eq!(entry["element"], body[index as usize], "{entry}");
    }
}

#[tokio::test]
async fn postmark_unknown_record_and_bounce_types_are_kept_with_a_warning() {
    let app = spawn_app().await;
    assert_element(
        &app,
        json!({
            "RecordType": "LinkPreview",
            "MessageStream": "outbound",
            "Recipient": "john@example.com",
            "ReceivedAt": "2024-05-01T10:00:00+02:00",
            "MessageID": MESSAGE,
            "Geo": {"IP": "203.0.113.9"}
        }),
        &Expected {
            provider_event: "LinkPreview",
            kind: "other",
            recipient: "john@example.com",
            occurred_at: Some("2024-05-01T08:00:00Z"),
            time_quality: "exact",
            message_id: Some(MESSAGE),
            // Not an open or click: the IP is nobody's known reader.
            metadata: json!({"MessageStream": "outbound", "Geo": {"IP": "203.0.113.9"}}),
            warnings: &["unknown event `LinkPreview`; stored as `other`"],
            ..Expected::default()
        },
    )
    .await;

    // A bounce type from the future is a bounce, its class read from the reply.
    let mut element = hard_bounce();
    element["ID"] = json!(4323372036854799999_u64);
    element["Type"] = json!("QuantumBounce");
    element["TypeCode"] = json!(1_000_000);
    element["Details"] = json!("smtp;452 4.2.2 Mailbox full, try again later");
    let mut metadata = bounce_metadata(
        "QuantumBounce",
        1_000_000,
        "Hard bounce",
        "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
    );
    metadata["TypeCode"] = json!(1_000_000);
    assert_element(
        &app,
        element,
        &Expected {
            bounce_class: Some("soft"),
            reason: Some("bounced"),
            smtp_code: Some(452),
            smtp_enhanced: Some("4.2.2"),
            smtp_response: Some("452 4.2.2 Mailbox full, try again later"),
            warnings: &[
                "field `Type`: bounce type `QuantumBounce` not recognised; class read from the reply",
            ],
            ..bounce("4323372036854799999", "bounce", metadata)
        },
    )
    .await;

    // A Bounce record whose Type is SpamComplaint is a complaint too.
    let mut element = hard_bounce();
    element["ID"] = json!(4323372036854799998_u64);
    element["Type"] = json!("SpamComplaint");
    element["TypeCode"] = json!(100001);
    assert_element(
        &app,
        element,
        &Expected {
            reason: Some("spam"),
            ..bounce(
                "4323372036854799998",
                "complaint",
                bounce_metadata(
                    "SpamComplaint",
                    100001,
                    "Hard bounce",
                    "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
                ),
            )
        },
    )
    .await;
}

#[tokio::test]
async fn postmark_a_hard_bounce_that_is_a_policy_block_says_blocked() {
    // The reply is more specific than the type: the hard-bounce rule then spares the address.
    let app = spawn_app().await;
    let mut element = hard_bounce();
    element["ID"] = json!(4323372036854799997_u64);
    element["Details"] =
        json!("smtp;554 5.7.1 Service unavailable; client host blocked using Spamhaus");
    assert_element(
        &app,
        element,
        &Expected {
            bounce_class: Some("hard"),
            reason: Some("blocked"),
            smtp_code: Some(554),
            smtp_enhanced: Some("5.7.1"),
            smtp_response: Some(
                "554 5.7.1 Service unavailable; client host blocked using Spamhaus",
            ),
            ..bounce(
                "4323372036854799997",
                "bounce",
                bounce_metadata(
                    "HardBounce",
                    1,
                    "Hard bounce",
                    "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
                ),
            )
        },
    )
    .await;
}

#[tokio::test]
async fn postmark_bodies_that_are_no_delivery_event_are_quarantined() {
    let app = spawn_app().await;
    // Postmark's Inbound webhook (built from its documented field list): an incoming
    // e-mail, posted here by mistake.
    let inbound = json!({
        "From": "myUser@theirDomain.com",
        "FromFull": {"Email": "myUser@theirDomain.com", "Name": "John Doe", "MailboxHash": ""},
        "To": "451d9b70cf9364d23ff6f9d51d870251569e+ahoy@inbound.postmarkapp.com",
        "ToFull": [{"Email": "451d9b70cf9364d23ff6f9d51d870251569e+ahoy@inbound.postmarkapp.com", "Name": "", "MailboxHash": "ahoy"}],
        "Subject": "This is an inbound message",
        "MessageID": "22c74902-a0c1-4511-804f-341342852c90",
        "MessageStream": "inbound",
        "MailboxHash": "ahoy",
        "Date": "Thu, 5 Apr 2012 16:59:01 +0200",
        "TextBody": "[ASCII]",
        "HtmlBody": "[HTML]"
    });
    for (body, error) in [
        (
            inbound,
            "an inbound e-mail (Postmark's Inbound webhook), not a delivery event; \
             point the inbound stream's webhook elsewhere",
        ),
        (
            json!({"Recipient": "john@example.com", "MessageID": MESSAGE}),
            "missing event name (`RecordType`)",
        ),
    ] {
        let (report, _) = post(&app, &body).await;
        assert_eq!(report["accepted"], 0, "{report}");
        assert_eq!(report["quarantined"], 1, "{report}");
        assert_eq!(report["errors"][0]["error"], error, "{report}");
    }
    assert_eq!(quarantine(&app).await.len(), 2);
}

#[tokio::test]
async fn postmark_hostile_strings_are_clipped_and_kept_in_raw() {
    let app = spawn_app().await;
    let mut element = hard_bounce();
    element["ID"] = json!(4323372036854799996_u64);
    let subject = format!("{}\u{0}\u{1b}[31m", "S".repeat(10_000));
    element["Subject"] = json!(subject);
    element["Tag"] = json!("red\u{1b}[31m\u{7}");
    element["Content"] = json!("<dump>".repeat(40_000));
    element["Metadata"] = json!({
        "big": "x".repeat(5_000),
        "ServerID": "spoofed",
        "plan": "pro"
    });
    // `Expected` holds static text; one leaked string per test run is harmless.
    let expected_subject: &'static str = "S".repeat(2_000).leak();
    let mut metadata = bounce_metadata(
        "HardBounce",
        1,
        "Hard bounce",
        "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
    );
    metadata["plan"] = json!("pro");
    metadata.as_object_mut().unwrap().remove("a_key");
    metadata.as_object_mut().unwrap().remove("b_key");
    assert_element(
        &app,
        element,
        &Expected {
            bounce_class: Some("hard"),
            reason: Some("invalid"),
            subject: Some(expected_subject),
            tags: &["red\u{1b}[31m\u{7}"],
            metadata,
            warnings: &[
                "field `Metadata.big`: 5002 bytes, too large for metadata; kept in raw only",
                "field `Metadata.ServerID`: same name as a Postmark field; the custom value is kept in raw only",
            ],
            ..bounce("4323372036854799996", "bounce", Value::Null)
        },
    )
    .await;

    // An event name of 10 000 characters is clipped in the event and in its warning.
    let long_name = "R".repeat(10_000);
    let (report, events) = post(
        &app,
        &json!({"RecordType": long_name, "Recipient": "john@example.com"}),
    )
    .await;
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
async fn postmark_huge_bounce_ids_are_kept_exactly_and_never_merged() {
    let app = spawn_app().await;
    // 2^53 and 2^53 + 1 are the same double: through a float these two bounces would be
    // one event, and the second lost as its duplicate.
    let mut ids = Vec::new();
    for id in ["9007199254740992", "9007199254740993"] {
        let mut element = hard_bounce();
        element["ID"] = serde_json::from_str(id).expect("a number");
        let (report, events) = post(&app, &element).await;
        assert_eq!(report["accepted"], 1, "{id}: {report}");
        assert_eq!(events[0]["provider_event_id"], id);
        // Raw keeps the number as written.
        assert!(
            events[0]["raw"]
                .to_string()
                .contains(&format!("\"ID\":{id}")),
            "{}",
            events[0]["raw"]
        );
        ids.push(id);
    }
    // Beyond 64 bits the digits are still the id.
    let body = String::from_utf8(read_fixture("postmark/bounce_hard.json"))
        .expect("UTF-8")
        .replace("4323372036854775807", "123456789012345678901234567890");
    let (status, report) = app.post("postmark", body).await;
    assert_eq!(status, 200, "{report}");
    let id = report["event_ids"][0].as_str().expect("stored");
    let (_, event) = app.get(&format!("/api/events/{id}")).await;
    assert_eq!(event["provider_event_id"], "123456789012345678901234567890");

    // An ID that is not an integer is no id: warned about, kept in metadata.
    let body = String::from_utf8(read_fixture("postmark/bounce_hard.json"))
        .expect("UTF-8")
        .replace("4323372036854775807", "4.323372036854776e18");
    let (status, report) = app.post("postmark", body).await;
    assert_eq!(status, 200, "{report}");
    let id = report["event_ids"][0].as_str().expect("stored");
    let (_, event) = app.get(&format!("/api/events/{id}")).await;
    assert!(event.get("provider_event_id").is_none(), "{event}");
    assert_eq!(event["metadata"]["ID"], json!(4.323372036854776e18));
    assert_eq!(
        event["warnings"],
        json!([
            "field `ID`: `4.323372036854776e18` is not a bounce id (digits); not used as the event id"
        ])
    );
}
