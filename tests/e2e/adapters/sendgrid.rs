//! SendGrid: JSON arrays of events, `bounce` split by `type` (bounce = hard, blocked =
//! soft), SendGrid's own `dropped` labels, `category` as a string or an array, custom
//! arguments as top-level keys, `sg_event_id` as the event id.
//!
//! Most fixtures are the Event Webhook reference's samples (the 2017 ones: `alex@example.com`
//! at 1513299569 = 2017-12-15T00:59:29Z, message `14c5d75ce93…`). Built from the field list
//! (no sample exists), each labelled by an `sg_event_id` that decodes (base64url) to what it
//! is: the `dropped_*` variants other than `dropped_bounced_address.json` (the documented
//! sample with only `reason` changed) and `open_machine.json` (the open sample with
//! `sg_machine_open: true`). They once shared their model's id; distinct events never do
//! ("unique for every event"), and with one id dedup would fold them.
//!
//! The samples' placeholders (`"sg_event_id": "sg_event_id"`, `sendgrid_internal_…`) are no
//! ids: warned about and kept in metadata; those events dedup on their JSON.

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::{Expected, assert_fixture, check, merged};
use crate::helpers::{TestApp, all_fixtures, read_fixture, spawn_app};

/// `timestamp` 1513299569 of the 2017 reference samples.
const AT_2017: &str = "2017-12-15T00:59:29Z";
/// `sg_message_id` of the 2017 reference samples.
const MESSAGE: &str = "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0";
/// Their `smtp-id`, as sent.
const SMTP_ID: &str = "<14c5d75ce93.dfd.64b469@ismtpd-555>";
const ALEX: &str = "alex@example.com";
const MSIE: &str =
    "Mozilla/4.0 (compatible; MSIE 6.1; Windows XP; .NET CLR 1.1.4322; .NET CLR 2.0.50727)";
const CAT_FACTS: &[&str] = &["cat facts"];
/// The warnings of the samples' placeholder ids.
const PLACEHOLDER_EVENT_ID: &str = "field `sg_event_id`: `sg_event_id` is a placeholder of SendGrid's samples, not an id; kept in metadata";
const PLACEHOLDER_MESSAGE_ID: &str = "field `sg_message_id`: `sg_message_id` is a placeholder of SendGrid's samples, not an id; kept in metadata";
const INTERNAL_EVENT_ID: &str = "field `sg_event_id`: `sendgrid_internal_event_id` is a placeholder of SendGrid's samples, not an id; kept in metadata";
const INTERNAL_MESSAGE_ID: &str = "field `sg_message_id`: `sendgrid_internal_message_id` is a placeholder of SendGrid's samples, not an id; kept in metadata";

/// An event of the 2017 reference samples: alex, its time, its message, `cat facts`.
fn sample(event: &'static str, kind: &'static str, id: &'static str) -> Expected {
    Expected {
        provider_event: event,
        kind,
        recipient: ALEX,
        occurred_at: Some(AT_2017),
        time_quality: "exact",
        message_id: Some(MESSAGE),
        provider_event_id: Some(id),
        tags: CAT_FACTS,
        ..Expected::default()
    }
}

/// The documented `dropped` sample (or a variant of it with another label and id).
fn dropped(label: &'static str, reason: &'static str, id: &'static str) -> Expected {
    Expected {
        reason: Some(reason),
        smtp_response: Some(label),
        // SendGrid's `5.0.0` on a drop is synthetic: metadata, not `smtp_enhanced`.
        metadata: json!({"smtp-id": SMTP_ID, "status": "5.0.0"}),
        ..sample("dropped", "dropped", id)
    }
}

/// An event of the 2021 all-events sample: placeholder ids, so the message id is the
/// `smtp-id` without its brackets and the ids stay in metadata.
fn all_events(event: &'static str, kind: &'static str, extra: Value) -> Expected {
    Expected {
        provider_event: event,
        kind,
        recipient: "example@example.com",
        occurred_at: Some(AT_2017),
        time_quality: "exact",
        message_id: Some("14c5d75ce93.dfd.64b469@ismtpd-555"),
        tags: CAT_FACTS,
        metadata: merged(&[
            json!({"sg_event_id": "sg_event_id", "sg_message_id": "sg_message_id"}),
            extra,
        ]),
        warnings: &[PLACEHOLDER_EVENT_ID, PLACEHOLDER_MESSAGE_ID],
        ..Expected::default()
    }
}

// ---------------------------------------------------------------------------------------
// Delivery events of the reference.

#[tokio::test]
async fn sendgrid_processed_is_queued_with_its_ip_pool_in_metadata() {
    assert_fixture(
        "sendgrid/processed.json",
        &[Expected {
            // The sample's message id ends in `.000000000000000000000`: kept as sent.
            message_id: Some(
                "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.000000000000000000000",
            ),
            metadata: json!({
                "pool": {"name": "new_MY_test", "id": 210},
                "smtp-id": SMTP_ID
            }),
            ..sample("processed", "queued", "rbtnWrG1DVDGGGFHFyun0A==")
        }],
    )
    .await;
}

#[tokio::test]
async fn sendgrid_processed_pool_property_sample() {
    assert_fixture(
        "sendgrid/processed_pool.json",
        &[Expected {
            provider_event: "processed",
            kind: "queued",
            recipient: ALEX,
            occurred_at: Some("2015-03-26T22:39:38Z"),
            time_quality: "exact",
            message_id: Some("14c583da911.2c36.1c804d.filter-406.22375.55148AA99.0"),
            provider_event_id: Some("RHFZB1IrTD2Y9Q7bUdZxUw"),
            metadata: json!({
                "smtp-id": "<14c583da911.2c36.1c804d@ismtpd-073>",
                "pool": {"name": "new_MY_test", "id": 210}
            }),
            ..Expected::default()
        }],
    )
    .await;
}

#[tokio::test]
async fn sendgrid_deferred_trims_the_leading_space_of_its_message_id_and_gives_no_reason() {
    // `" 14c5d75ce93…"` in the sample; `attempt` is the string "5"; `from` and `domain`
    // appear in no property table. A generic 400 says nothing specific: SendGrid retries.
    assert_fixture(
        "sendgrid/deferred.json",
        &[Expected {
            sender: Some("test@example.com"),
            smtp_code: Some(400),
            smtp_response: Some("400 try again later"),
            metadata: json!({
                "domain": "example.com",
                "smtp-id": SMTP_ID,
                "attempt": "5"
            }),
            ..sample("deferred", "deferred", "t7LEShmowp86DTdUW8M-GQ==")
        }],
    )
    .await;
}

#[tokio::test]
async fn sendgrid_delivered_has_its_reply() {
    assert_fixture(
        "sendgrid/delivered.json",
        &[Expected {
            smtp_code: Some(250),
            smtp_response: Some("250 OK"),
            metadata: json!({"smtp-id": SMTP_ID}),
            ..sample("delivered", "delivered", "rWVYmVk90MjZJ9iohOBa3w==")
        }],
    )
    .await;
}

#[tokio::test]
async fn sendgrid_bounce_of_type_bounce_is_hard_and_invalid() {
    // "Twilio refers to this Bounce event type as a hard bounce"; the classification
    // Invalid Address gives the reason, `status` the enhanced code.
    assert_fixture(
        "sendgrid/bounce.json",
        &[Expected {
            bounce_class: Some("hard"),
            reason: Some("invalid"),
            smtp_code: Some(500),
            smtp_enhanced: Some("5.0.0"),
            smtp_response: Some("500 unknown recipient"),
            metadata: json!({
                "smtp-id": SMTP_ID,
                "bounce_classification": "Invalid Address",
                "type": "bounce"
            }),
            ..sample("bounce", "bounce", "6g4ZI7SA-xmRDv57GoPIPw==")
        }],
    )
    .await;
}

#[tokio::test]
async fn sendgrid_bounce_of_type_blocked_is_soft() {
    // "Twilio refers to this Bounce event type as a soft bounce"; still a bounce, not a
    // deferral. The sample shares its `sg_event_id` with the bounce sample.
    assert_fixture(
        "sendgrid/blocked.json",
        &[Expected {
            bounce_class: Some("soft"),
            reason: Some("invalid"),
            smtp_code: Some(500),
            smtp_enhanced: Some("5.0.0"),
            smtp_response: Some("500 unknown recipient"),
            metadata: json!({
                "smtp-id": SMTP_ID,
                "bounce_classification": "Invalid Address",
                "type": "blocked"
            }),
            ..sample("bounce", "bounce", "6g4ZI7SA-xmRDv57GoPIPw==")
        }],
    )
    .await;
}

#[tokio::test]
async fn sendgrid_dropped_bounced_address_is_dropped_as_bounced() {
    assert_fixture(
        "sendgrid/dropped_bounced_address.json",
        &[dropped(
            "Bounced Address",
            "bounced",
            "zmzJhfJgAfUSOW80yEbPyw==",
        )],
    )
    .await;
}

#[tokio::test]
async fn sendgrid_dropped_unsubscribed_address_is_dropped_as_unsubscribed() {
    assert_fixture(
        "sendgrid/dropped_unsubscribed_address.json",
        &[dropped(
            "Unsubscribed Address",
            "unsubscribed",
            "ZHJvcHBlZC12YXJpYW50LXVuc3Vic2NyaWJlZC1hZGRyZXNz",
        )],
    )
    .await;
}

#[tokio::test]
async fn sendgrid_dropped_spam_reporting_address_is_dropped_as_spam() {
    assert_fixture(
        "sendgrid/dropped_spam_reporting_address.json",
        &[dropped(
            "Spam Reporting Address",
            "spam",
            "ZHJvcHBlZC12YXJpYW50LXNwYW0tcmVwb3J0aW5nLWFkZHJlc3M",
        )],
    )
    .await;
}

#[tokio::test]
async fn sendgrid_dropped_spam_content_is_dropped_as_spam() {
    assert_fixture(
        "sendgrid/dropped_spam_content.json",
        &[dropped(
            "Spam Content",
            "spam",
            "ZHJvcHBlZC12YXJpYW50LXNwYW0tY29udGVudA",
        )],
    )
    .await;
}

#[tokio::test]
async fn sendgrid_dropped_invalid_address_is_dropped_as_invalid() {
    // The current reference's wording.
    assert_fixture(
        "sendgrid/dropped_invalid_address.json",
        &[dropped(
            "Invalid Address",
            "invalid",
            "ZHJvcHBlZC12YXJpYW50LWludmFsaWQtYWRkcmVzcw",
        )],
    )
    .await;
}

#[tokio::test]
async fn sendgrid_dropped_invalid_is_dropped_as_invalid() {
    // The 2021 reference's and the settings API's wording.
    assert_fixture(
        "sendgrid/dropped_invalid.json",
        &[dropped(
            "Invalid",
            "invalid",
            "ZHJvcHBlZC12YXJpYW50LWludmFsaWQ",
        )],
    )
    .await;
}

#[tokio::test]
async fn sendgrid_dropped_invalid_smtpapi_header_is_dropped_as_other() {
    // The sender's own error, nothing about the address.
    assert_fixture(
        "sendgrid/dropped_invalid_smtpapi_header.json",
        &[dropped(
            "Invalid SMTPAPI header",
            "other",
            "ZHJvcHBlZC12YXJpYW50LWludmFsaWQtc210cGFwaS1oZWFkZXI",
        )],
    )
    .await;
}

#[tokio::test]
async fn sendgrid_dropped_over_package_quota_is_dropped_as_other() {
    assert_fixture(
        "sendgrid/dropped_recipient_list_over_package_quota.json",
        &[dropped(
            "Recipient List over Package Quota",
            "other",
            "ZHJvcHBlZC12YXJpYW50LXJlY2lwaWVudC1saXN0LW92ZXItcGFja2FnZS1xdW90YQ",
        )],
    )
    .await;
}

// ---------------------------------------------------------------------------------------
// Engagement events of the reference.

#[tokio::test]
async fn sendgrid_open_has_the_readers_ip_and_agent_and_no_smtp_id() {
    assert_fixture(
        "sendgrid/open.json",
        &[Expected {
            ip: Some("255.255.255.255"),
            user_agent: Some(MSIE),
            metadata: json!({"sg_machine_open": false}),
            ..sample("open", "open", "FOTFFO0ecsBE-zxFXfs6WA==")
        }],
    )
    .await;
}

#[tokio::test]
async fn sendgrid_machine_open_is_an_open_flagged_in_metadata() {
    // Apple Mail Privacy Protection: `sg_machine_open: true` on a plain `open` event.
    assert_fixture(
        "sendgrid/open_machine.json",
        &[Expected {
            ip: Some("255.255.255.255"),
            user_agent: Some(MSIE),
            metadata: json!({"sg_machine_open": true}),
            ..sample("open", "open", "b3Blbi12YXJpYW50LW1hY2hpbmUtb3Blbg")
        }],
    )
    .await;
}

#[tokio::test]
async fn sendgrid_click_keeps_its_link_offset_unique_args_and_newsletter_in_metadata() {
    // Placeholder ids and no `smtp-id`: no event id, no message id.
    assert_fixture(
        "sendgrid/click.json",
        &[Expected {
            provider_event: "click",
            kind: "click",
            recipient: "email@example.com",
            occurred_at: Some("2009-08-11T00:00:00Z"),
            time_quality: "exact",
            click_url: Some("http://example.com/blog/news.html"),
            ip: Some("255.255.255.255"),
            user_agent: Some(
                "Mozilla/5.0 (iPhone; CPU iPhone OS 7_1_2 like Mac OS X) AppleWebKit/537.51.2 \
                 (KHTML, like Gecko) Version/7.0 Mobile/11D257 Safari/9537.53",
            ),
            tags: &["category1", "category2"],
            metadata: json!({
                "sg_event_id": "sendgrid_internal_event_id",
                "sg_message_id": "sendgrid_internal_message_id",
                "url_offset": {"index": 0, "type": "html"},
                "unique_arg_key": "unique_arg_value",
                "newsletter": {
                    "newsletter_user_list_id": "10557865",
                    "newsletter_id": "1943530",
                    "newsletter_send_id": "2308608"
                },
                "asm_group_id": 1
            }),
            warnings: &[INTERNAL_EVENT_ID, INTERNAL_MESSAGE_ID],
            ..Expected::default()
        }],
    )
    .await;
}

#[tokio::test]
async fn sendgrid_spamreport_is_a_complaint() {
    assert_fixture(
        "sendgrid/spamreport.json",
        &[Expected {
            reason: Some("spam"),
            tags: &[],
            metadata: json!({"smtp-id": SMTP_ID}),
            ..sample("spamreport", "complaint", "37nvH5QBz858KGVYCM4uOA==")
        }],
    )
    .await;
}

#[tokio::test]
async fn sendgrid_unsubscribe_is_an_unsubscribe() {
    assert_fixture(
        "sendgrid/unsubscribe.json",
        &[Expected {
            reason: Some("unsubscribed"),
            ..sample("unsubscribe", "unsubscribe", "zz_BjPgU_5pS-J8vlfB1sg==")
        }],
    )
    .await;
}

/// Metadata of the group (un)subscribe samples: `ip` ("IP address used to send the
/// email" except on opens and clicks) and the page's `url` are not mapped.
fn group_metadata() -> Value {
    json!({
        "smtp-id": SMTP_ID,
        "ip": "255.255.255.255",
        "url": "http://www.example.com/",
        "asm_group_id": 10
    })
}

#[tokio::test]
async fn sendgrid_group_unsubscribe_is_an_unsubscribe_with_its_group_in_metadata() {
    assert_fixture(
        "sendgrid/group_unsubscribe.json",
        &[Expected {
            reason: Some("unsubscribed"),
            user_agent: Some(MSIE),
            metadata: group_metadata(),
            ..sample(
                "group_unsubscribe",
                "unsubscribe",
                "ahSCB7xYcXFb-hEaawsPRw==",
            )
        }],
    )
    .await;
}

#[tokio::test]
async fn sendgrid_group_resubscribe_is_a_subscribe() {
    assert_fixture(
        "sendgrid/group_resubscribe.json",
        &[Expected {
            user_agent: Some(MSIE),
            metadata: group_metadata(),
            ..sample("group_resubscribe", "subscribe", "w_u0vJhLT-OFfprar5N93g==")
        }],
    )
    .await;
}

// ---------------------------------------------------------------------------------------
// Categories, custom arguments, campaigns.

/// An open of the category samples (1337966815), without ids.
fn category_open(recipient: &'static str, tags: &'static [&'static str]) -> Expected {
    Expected {
        provider_event: "open",
        kind: "open",
        recipient,
        occurred_at: Some("2012-05-25T17:26:55Z"),
        time_quality: "exact",
        tags,
        ..Expected::default()
    }
}

#[tokio::test]
async fn sendgrid_category_as_a_string_is_one_tag() {
    assert_fixture(
        "sendgrid/category_string.json",
        &[
            category_open(ALEX, &["newuser"]),
            category_open("bobby@example.com", &["olduser"]),
        ],
    )
    .await;
}

#[tokio::test]
async fn sendgrid_category_as_an_array_is_several_tags() {
    assert_fixture(
        "sendgrid/category_array.json",
        &[
            category_open(ALEX, &["newuser", "transactional"]),
            category_open("bobby@example.com", &["olduser"]),
        ],
    )
    .await;
}

#[tokio::test]
async fn sendgrid_unique_args_are_top_level_keys_kept_in_metadata() {
    assert_fixture(
        "sendgrid/unique_args.json",
        &[Expected {
            provider_event: "click",
            kind: "click",
            recipient: ALEX,
            occurred_at: Some("2012-05-25T17:26:55Z"),
            time_quality: "exact",
            click_url: Some("https://example.com"),
            metadata: json!({
                "sg_message_id": "sendgrid_internal_message_id",
                "userid": "1123",
                "template": "welcome"
            }),
            warnings: &[INTERNAL_MESSAGE_ID],
            ..Expected::default()
        }],
    )
    .await;
}

#[tokio::test]
async fn sendgrid_reserved_keys_sample_has_a_capitalised_name_and_a_string_timestamp() {
    // `"Processed"` and `"123456789"` (1973) as the reference prints them; no ids.
    assert_fixture(
        "sendgrid/unique_args_reserved_keys.json",
        &[Expected {
            provider_event: "Processed",
            kind: "queued",
            recipient: ALEX,
            occurred_at: Some("1973-11-29T21:33:09Z"),
            time_quality: "exact",
            metadata: json!({
                "customerAccountNumber": "55555",
                "activationAttempt": "1",
                "New Argument 1": "New Value 1"
            }),
            ..Expected::default()
        }],
    )
    .await;
}

#[tokio::test]
async fn sendgrid_marketing_campaign_processed_has_its_campaign_name_and_empty_smtp_id() {
    assert_fixture(
        "sendgrid/marketing_campaign_processed.json",
        &[Expected {
            provider_event: "processed",
            kind: "queued",
            recipient: ALEX,
            occurred_at: Some("2015-09-15T20:37:08Z"),
            time_quality: "exact",
            campaign: Some("campaign name"),
            metadata: json!({
                "marketing_campaign_id": 12345,
                "post_type": "event",
                "sg_event_id": "sendgrid_internal_event_id",
                "sg_message_id": "sendgrid_internal_message_id",
                "sg_user_id": 12345,
                "smtp-id": ""
            }),
            warnings: &[INTERNAL_EVENT_ID, INTERNAL_MESSAGE_ID],
            ..Expected::default()
        }],
    )
    .await;
}

#[tokio::test]
async fn sendgrid_ab_test_processed_keeps_version_and_split_in_metadata() {
    assert_fixture(
        "sendgrid/ab_test_processed.json",
        &[Expected {
            provider_event: "processed",
            kind: "queued",
            recipient: "tadpole_0010@stbase-018.sjc1.sendgrid.net",
            occurred_at: Some("2015-09-15T20:44:08Z"),
            time_quality: "exact",
            message_id: Some("5lFl7Fr1Rjme_EyzNNB_5A.stfilter-015.5185.55F883172.0"),
            provider_event_id: Some("qNOzbkTuTNCdxa1eXEpnXg"),
            campaign: Some("unique args ab"),
            metadata: json!({
                "marketing_campaign_id": 23314,
                "marketing_campaign_version": "B",
                "marketing_campaign_split_id": 13471,
                "post_type": "event",
                "sg_user_id": 939115,
                "smtp-id": "<5lFl7Fr1Rjme_EyzNNB_5A@stismtpd-006.sjc1.sendgrid.net>"
            }),
            ..Expected::default()
        }],
    )
    .await;
}

#[tokio::test]
async fn sendgrid_ab_test_winner_delivered() {
    assert_fixture(
        "sendgrid/ab_test_winner_delivered.json",
        &[Expected {
            provider_event: "delivered",
            kind: "delivered",
            recipient: "tadpole_0001@stbase-018.sjc1.sendgrid.net",
            occurred_at: Some("2015-09-15T20:45:11Z"),
            time_quality: "exact",
            message_id: Some("fPJrJPIRTxC_obpgfTy74w.stfilter-015.5185.55F883564.0"),
            provider_event_id: Some("X2M1IUfMRhuAhWM0CbmFqQ"),
            smtp_code: Some(250),
            smtp_response: Some("250 Ok"),
            campaign: Some("unique args ab"),
            metadata: json!({
                "marketing_campaign_id": 23314,
                "post_type": "event",
                "sg_user_id": 12345,
                "smtp-id": ""
            }),
            ..Expected::default()
        }],
    )
    .await;
}

#[tokio::test]
async fn sendgrid_single_send_open_has_a_millisecond_timestamp() {
    // `timestamp` 1591726752372 is milliseconds (2020-06-09), not seconds (year 52409).
    assert_fixture(
        "sendgrid/singlesend_open.json",
        &[Expected {
            provider_event: "open",
            kind: "open",
            recipient: ALEX,
            occurred_at: Some("2020-06-09T18:19:12.372Z"),
            time_quality: "exact",
            campaign: Some("Example Single Send"),
            ip: Some("127.0.0.1"),
            user_agent: Some(MSIE),
            metadata: json!({
                "mc_stats": "singlesend",
                "phase_id": "send",
                "send_at": "1591726752372",
                "sg_content_type": "html",
                "sg_event_id": "sendgrid_internal_event_id",
                "sg_message_id": "sendgrid_internal_message_id",
                "sg_template_id": "sendgrid_template_id",
                "sg_template_name": "sendgrid_template_name",
                "singlesend_id": "sendgrid_singlesend_id",
                "template_hash": "sendgrid_template_hash",
                "template_id": "sendgrid_template_id",
                "template_version_id": "sendgrid_template_version_id"
            }),
            warnings: &[INTERNAL_EVENT_ID, INTERNAL_MESSAGE_ID],
            ..Expected::default()
        }],
    )
    .await;
}

#[tokio::test]
async fn sendgrid_legacy_newsletter_unsubscribe() {
    assert_fixture(
        "sendgrid/legacy_newsletter_unsubscribe.json",
        &[Expected {
            provider_event: "unsubscribe",
            kind: "unsubscribe",
            reason: Some("unsubscribed"),
            recipient: "nick@sendgrid.com",
            occurred_at: Some("2013-10-03T17:47:17Z"),
            time_quality: "exact",
            tags: &["Tests", "Newsletter"],
            metadata: json!({
                "newsletter": {
                    "newsletter_user_list_id": "10557865",
                    "newsletter_id": "1943530",
                    "newsletter_send_id": "2308608"
                }
            }),
            ..Expected::default()
        }],
    )
    .await;
}

// ---------------------------------------------------------------------------------------
// Batches.

#[tokio::test]
async fn sendgrid_troubleshooting_curl_batch_uses_smtp_ids_without_brackets() {
    // No `sg_message_id`: the `smtp-id` is the message id, angle brackets removed.
    let event = |event: &'static str, kind: &'static str, at: &'static str| Expected {
        provider_event: event,
        kind,
        recipient: ALEX,
        occurred_at: Some(at),
        time_quality: "exact",
        ..Expected::default()
    };
    assert_fixture(
        "sendgrid/troubleshooting_curl_batch.json",
        &[
            Expected {
                message_id: Some("4FB4041F.6080505@example.com"),
                ..event("processed", "queued", "2012-05-16T19:46:40Z")
            },
            Expected {
                click_url: Some("https://example.com"),
                tags: &["newuser"],
                ..event("click", "click", "2012-05-25T17:26:55Z")
            },
            Expected {
                message_id: Some("20120525181309.C1A9B40405B3@Example-Mac.local"),
                ..event("processed", "queued", "2012-05-25T18:13:12Z")
            },
        ],
    )
    .await;
}

#[tokio::test]
async fn sendgrid_all_events_sample_keeps_its_eleven_events_apart() {
    // Every event has `"sg_event_id": "sg_event_id"`; `unsubscribe` and
    // `group_unsubscribe` are the same kind for the same address at the same second, so
    // keyed on that id they would be one. The bounce has no `type` (older payloads).
    assert_fixture(
        "sendgrid/all_events.json",
        &[
            all_events("processed", "queued", json!({})),
            Expected {
                smtp_code: Some(400),
                smtp_response: Some("400 try again later"),
                ..all_events("deferred", "deferred", json!({"attempt": "5"}))
            },
            Expected {
                smtp_code: Some(250),
                smtp_response: Some("250 OK"),
                ..all_events("delivered", "delivered", json!({}))
            },
            Expected {
                ip: Some("255.255.255.255"),
                user_agent: Some(MSIE),
                ..all_events("open", "open", json!({}))
            },
            Expected {
                ip: Some("255.255.255.255"),
                user_agent: Some(MSIE),
                click_url: Some("http://www.sendgrid.com/"),
                ..all_events("click", "click", json!({}))
            },
            Expected {
                // No `type`, no classification: the reply decides, and "unknown
                // recipient" says the address does not exist: hard, invalid.
                bounce_class: Some("hard"),
                reason: Some("invalid"),
                smtp_code: Some(500),
                smtp_enhanced: Some("5.0.0"),
                smtp_response: Some("500 unknown recipient"),
                ..all_events("bounce", "bounce", json!({}))
            },
            Expected {
                reason: Some("bounced"),
                smtp_response: Some("Bounced Address"),
                ..all_events("dropped", "dropped", json!({"status": "5.0.0"}))
            },
            Expected {
                reason: Some("spam"),
                ..all_events("spamreport", "complaint", json!({}))
            },
            Expected {
                reason: Some("unsubscribed"),
                ..all_events("unsubscribe", "unsubscribe", json!({}))
            },
            Expected {
                reason: Some("unsubscribed"),
                user_agent: Some(MSIE),
                ..all_events(
                    "group_unsubscribe",
                    "unsubscribe",
                    json!({
                        "ip": "255.255.255.255",
                        "url": "http://www.sendgrid.com/",
                        "asm_group_id": 10
                    }),
                )
            },
            Expected {
                user_agent: Some(MSIE),
                ..all_events(
                    "group_resubscribe",
                    "subscribe",
                    json!({
                        "ip": "000.000.000.000",
                        "url": "http://www.sendgrid.com/",
                        "asm_group_id": 10
                    }),
                )
            },
        ],
    )
    .await;
}

// ---------------------------------------------------------------------------------------
// The SDKs' signature vectors, posted unsigned to the default source.

#[tokio::test]
async fn sendgrid_signature_vector_single_is_a_drop_of_a_bounced_address() {
    assert_fixture(
        "sendgrid/signature_vector_single.json",
        &[Expected {
            provider_event: "dropped",
            kind: "dropped",
            reason: Some("bounced"),
            recipient: "hello@world.com",
            occurred_at: Some("2020-09-14T19:41:32Z"),
            time_quality: "exact",
            message_id: Some(
                "LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0",
            ),
            provider_event_id: Some("ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA"),
            smtp_response: Some("Bounced Address"),
            metadata: json!({
                "smtp-id": "<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>"
            }),
            ..Expected::default()
        }],
    )
    .await;
}

#[tokio::test]
async fn sendgrid_signature_vector_multi_has_a_soft_block_with_a_5xx_reply() {
    // SendGrid calls it `blocked` (soft) although the reply is a permanent-looking 552
    // 5.2.2 "over quota and inactive": the class is SendGrid's, the reason the reply's.
    // `ip` on a bounce is SendGrid's sending IP; `tls` is the integer 1.
    let smtp_id = "<qNwBLgPQQjW6DJvKQwSAbw@ismtpd0178p1mdw1.sendgrid.net>";
    assert_fixture(
        "sendgrid/signature_vector_multi.json",
        &[
            Expected {
                provider_event: "processed",
                kind: "queued",
                recipient: "invalid@gmail.com",
                occurred_at: Some("2021-04-28T23:05:46Z"),
                time_quality: "exact",
                message_id: Some(
                    "qNwBLgPQQjW6DJvKQwSAbw.filterdrecv-canary-547b64655b-cw6zx-1-6089EA4A-56.0",
                ),
                provider_event_id: Some(
                    "cHJvY2Vzc2VkLTE5OTQyMTEyLXFOd0JMZ1BRUWpXNkRKdktRd1NBYnctMA",
                ),
                metadata: json!({"send_at": 0, "smtp-id": smtp_id}),
                ..Expected::default()
            },
            Expected {
                provider_event: "bounce",
                kind: "bounce",
                bounce_class: Some("soft"),
                reason: Some("bounced"),
                recipient: "invalid@gmail.com",
                occurred_at: Some("2021-04-28T23:05:47Z"),
                time_quality: "exact",
                message_id: Some(
                    "qNwBLgPQQjW6DJvKQwSAbw.filterdrecv-canary-547b64655b-cw6zx-1-6089EA4A-56.0",
                ),
                provider_event_id: Some("Ym91bmNlLTAtMTk5NDIxMTItcU53QkxnUFFRalc2REp2S1F3U0Fidy0w"),
                smtp_code: Some(552),
                smtp_enhanced: Some("5.2.2"),
                smtp_response: Some(
                    "552 5.2.2 The email account that you tried to reach is over quota and \
                     inactive. Please direct the recipient to \
                     https://support.google.com/mail/?p=OverQuotaPerm c17si1130468pgv.34 - gsmtp",
                ),
                metadata: json!({
                    "ip": "167.89.101.76",
                    "smtp-id": smtp_id,
                    "tls": 1,
                    "type": "blocked"
                }),
                ..Expected::default()
            },
        ],
    )
    .await;
}

#[test]
fn sendgrid_signature_vectors_are_byte_for_byte_the_sdks_payloads() {
    // SendGrid signs the raw bytes, CRLFs included; `.gitattributes` marks these -text.
    for (fixture, length, digest, crlfs) in [
        (
            "sendgrid/signature_vector_single.json",
            327,
            "ef3e4606385ea6adbc55fceb6117cf2784040cf145a010e5ef4afc2bc7c70452",
            1,
        ),
        (
            "sendgrid/signature_vector_multi.json",
            889,
            "fb73c7e6c15dd29e59ec6669322fab6b0e022d1e73cc60172807bca38e337822",
            2,
        ),
    ] {
        let body = read_fixture(fixture);
        assert_eq!(body.len(), length, "{fixture}");
        let hex: String = Sha256::digest(&body)
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        assert_eq!(hex, digest, "{fixture}");
        assert!(body.ends_with(b"]\r\n"), "{fixture}");
        // Every line break is a CRLF: one at the end, one between the events.
        assert_eq!(body.windows(2).filter(|w| w == b"\r\n").count(), crlfs);
        assert_eq!(body.iter().filter(|b| **b == b'\n').count(), crlfs);
    }
}

// ---------------------------------------------------------------------------------------
// Set aside: the account notice.

/// Every quarantine entry.
async fn quarantine(app: &TestApp) -> Vec<Value> {
    let (status, page) = app.get("/api/quarantine?limit=1000").await;
    assert_eq!(status, 200, "{page}");
    page["entries"].as_array().expect("entries").clone()
}

#[tokio::test]
async fn sendgrid_account_status_change_is_quarantined_with_an_explanation() {
    // It names no `email`: it is about the account (here suspended for compliance).
    let app = spawn_app().await;
    let fixture = "sendgrid/set_aside/account_status_change.json";
    let (status, report) = app.post_fixture("sendgrid", fixture).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["accepted"], 0, "{report}");
    assert_eq!(report["duplicates"], 0, "{report}");
    assert_eq!(report["quarantined"], 1, "{report}");
    let error = "`account_status_change` of type `compliance_suspend` is a notice about the \
                 SendGrid account itself (compliance action or reactivation) and names no \
                 recipient; set aside for an operator to read";
    assert_eq!(report["errors"], json!([{"index": 0, "error": error}]));
    let entries = quarantine(&app).await;
    assert_eq!(entries.len(), 1, "{entries:#?}");
    assert_eq!(entries[0]["source"], "sendgrid");
    assert_eq!(entries[0]["index"], 0);
    assert_eq!(entries[0]["error"], error);
    let elements: Vec<Value> = serde_json::from_slice(&read_fixture(fixture)).expect("JSON");
    assert_eq!(entries[0]["element"], elements[0]);
    assert!(app.events("").await.is_empty());
}

// ---------------------------------------------------------------------------------------
// Every fixture together, retries, dedup.

/// The top-level SendGrid fixtures (the one under `set_aside/` is meant to be set aside).
fn sendgrid_fixtures() -> Vec<String> {
    all_fixtures()
        .into_iter()
        .filter(|fixture| fixture.starts_with("sendgrid/"))
        .collect()
}

/// The number of elements of a fixture.
fn elements(fixture: &str) -> usize {
    let body: Value = serde_json::from_slice(&read_fixture(fixture)).expect("JSON");
    body.as_array().map_or(1, Vec::len)
}

#[tokio::test]
async fn sendgrid_fixtures_are_distinct_events_and_their_retries_duplicates() {
    let app = spawn_app().await;
    let fixtures = sendgrid_fixtures();
    assert_eq!(fixtures.len(), 34, "{fixtures:?}");
    let mut total = 0;
    for fixture in &fixtures {
        let (status, report) = app.post_fixture("sendgrid", fixture).await;
        assert_eq!(status, 200, "{fixture}: {report}");
        assert_eq!(report["quarantined"], 0, "{fixture}: {report}");
        // The category samples both end with bobby's identical `olduser` open: the
        // second copy is the same event.
        let repeated = usize::from(fixture == "sendgrid/category_string.json");
        assert_eq!(report["duplicates"], repeated, "{fixture}: {report}");
        assert_eq!(
            report["accepted"],
            elements(fixture) - repeated,
            "{fixture} is new: {report}"
        );
        total += elements(fixture) - repeated;
    }
    // SendGrid retries a batch it got no 2xx for: every event is then a duplicate, by
    // its `sg_event_id` where it has a real one and by its JSON otherwise.
    for fixture in &fixtures {
        let (status, report) = app.post_fixture("sendgrid", fixture).await;
        assert_eq!(status, 200, "{fixture}: {report}");
        assert_eq!(report["accepted"], 0, "{fixture} retried: {report}");
        assert_eq!(
            report["duplicates"],
            elements(fixture),
            "{fixture} retried: {report}"
        );
    }
    assert_eq!(app.events("limit=1000").await.len(), total);
}

/// Posts `body` to the `sendgrid` source; returns the answer and the events it stored,
/// read back one by one.
async fn post(app: &TestApp, body: &Value) -> (Value, Vec<Value>) {
    app.post_and_read("sendgrid", body.to_string()).await
}

/// Posts one element that must become exactly one event, and checks it.
async fn assert_element(app: &TestApp, element: Value, expected: &Expected) {
    let (report, events) = post(app, &json!([element.clone()])).await;
    assert_eq!(report["accepted"], 1, "{report}");
    check("sendgrid", &events[0], &element, expected);
}

/// The first element of a fixture, to vary.
fn first(fixture: &str) -> Value {
    let body: Value = serde_json::from_slice(&read_fixture(fixture)).expect("JSON");
    body[0].clone()
}

#[tokio::test]
async fn sendgrid_the_same_id_for_a_bounce_and_a_block_keeps_both_but_a_reserialized_retry_is_one()
{
    let app = spawn_app().await;
    let (report, _) = post(&app, &json!([first("sendgrid/bounce.json")])).await;
    assert_eq!(report["accepted"], 1, "{report}");
    let (report, _) = post(&app, &json!([first("sendgrid/blocked.json")])).await;
    assert_eq!(report["accepted"], 1, "{report}");
    // The documented id is the event's identity: the same bounce with its fields in
    // another order and another spacing is SendGrid's retry.
    let mut reordered = Map::new();
    let bounce = first("sendgrid/bounce.json");
    for (key, value) in bounce.as_object().expect("object").iter().rev() {
        reordered.insert(key.clone(), value.clone());
    }
    let (status, report) = app
        .post(
            "sendgrid",
            serde_json::to_string_pretty(&json!([reordered])).expect("JSON"),
        )
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["accepted"], 0, "{report}");
    assert_eq!(report["duplicates"], 1, "{report}");
    // The all-events sample, twice: the second time is all duplicates.
    for duplicates in [0, 11] {
        let (status, report) = app
            .post_fixture("sendgrid", "sendgrid/all_events.json")
            .await;
        assert_eq!(status, 200, "{report}");
        assert_eq!(report["duplicates"], duplicates, "{report}");
        assert_eq!(report["accepted"], 11 - duplicates, "{report}");
    }
    assert_eq!(app.events("limit=100").await.len(), 13);
}

// ---------------------------------------------------------------------------------------
// Bad and hostile input.

#[tokio::test]
async fn sendgrid_numbers_and_booleans_as_strings_are_read_alike() {
    let app = spawn_app().await;
    let mut open = first("sendgrid/open.json");
    open["timestamp"] = json!("1513299569");
    open["sg_machine_open"] = json!("true");
    open["asm_group_id"] = json!("10");
    open["email"] = json!("Alex <alex@EXAMPLE.com>");
    open["category"] = json!(["cat facts", 7]);
    assert_element(
        &app,
        open,
        &Expected {
            ip: Some("255.255.255.255"),
            user_agent: Some(MSIE),
            tags: &["cat facts", "7"],
            // Not mapped: kept as sent.
            metadata: json!({"sg_machine_open": "true", "asm_group_id": "10"}),
            ..sample("open", "open", "FOTFFO0ecsBE-zxFXfs6WA==")
        },
    )
    .await;

    // A bounce whose `status` and `type` come with other spellings.
    let mut bounce = first("sendgrid/bounce.json");
    bounce["type"] = json!(" Blocked ");
    bounce["bounce_classification"] = json!("technical failure");
    bounce["sg_event_id"] = json!(987654321);
    assert_element(
        &app,
        bounce,
        &Expected {
            bounce_class: Some("soft"),
            reason: Some("other"),
            smtp_code: Some(500),
            smtp_enhanced: Some("5.0.0"),
            smtp_response: Some("500 unknown recipient"),
            metadata: json!({
                "smtp-id": SMTP_ID,
                "bounce_classification": "technical failure",
                "type": " Blocked "
            }),
            ..sample("bounce", "bounce", "987654321")
        },
    )
    .await;
}

#[tokio::test]
async fn sendgrid_wrong_types_become_warnings_not_failures() {
    let app = spawn_app().await;
    let mut click = first("sendgrid/click.json");
    click["timestamp"] = json!("yesterday");
    click["category"] = json!({"name": "category1"});
    click["sg_event_id"] = json!({"id": "x"});
    click["sg_message_id"] = json!(["a", "b"]);
    click["useragent"] = json!(42);
    click["url"] = json!(["http://example.com/"]);
    // Nested objects of the wrong shape are passed through: nothing reads them.
    click["url_offset"] = json!("0");
    click["newsletter"] = json!("1943530");
    assert_element(
        &app,
        click,
        &Expected {
            provider_event: "click",
            kind: "click",
            recipient: "email@example.com",
            occurred_at: None,
            time_quality: "missing",
            ip: Some("255.255.255.255"),
            user_agent: Some("42"),
            metadata: json!({
                "url_offset": "0",
                "unique_arg_key": "unique_arg_value",
                "newsletter": "1943530",
                "asm_group_id": 1
            }),
            warnings: &[
                "field `timestamp`: `yesterday` is not a recognised time; time left empty",
                "field `sg_event_id`: expected text, found an object; ignored",
                "field `sg_message_id`: expected text, found an array; ignored",
                "field `category`: expected text, found an object; ignored",
                "field `url`: expected text, found an array; ignored",
            ],
            ..Expected::default()
        },
    )
    .await;

    // A bounce whose `type` is not SendGrid's, `status` not an X.Y.Z code and
    // classification unknown: class and reason come from the reply, all in metadata.
    let mut bounce = first("sendgrid/bounce.json");
    bounce["type"] = json!("softbounce");
    bounce["status"] = json!("bounced");
    bounce["bounce_classification"] = json!("Quantum");
    bounce["reason"] = json!("452 4.2.2 Mailbox full, try again later");
    assert_element(
        &app,
        bounce,
        &Expected {
            bounce_class: Some("soft"),
            reason: Some("bounced"),
            smtp_code: Some(452),
            smtp_enhanced: Some("4.2.2"),
            smtp_response: Some("452 4.2.2 Mailbox full, try again later"),
            metadata: json!({
                "smtp-id": SMTP_ID,
                "status": "bounced",
                "type": "softbounce",
                "bounce_classification": "Quantum"
            }),
            warnings: &[
                "field `bounce_classification`: `Quantum` not recognised; reason read from the reply",
                "field `type`: `softbounce` is neither `bounce` nor `blocked`; class read from the reply",
            ],
            ..sample("bounce", "bounce", "6g4ZI7SA-xmRDv57GoPIPw==")
        },
    )
    .await;

    // A drop for a reason SendGrid does not list is still a drop.
    let mut drop = first("sendgrid/dropped_bounced_address.json");
    drop["reason"] = json!("Expired");
    drop["sg_event_id"] = json!("ZHJvcC1leHBpcmVk");
    assert_element(
        &app,
        drop,
        &Expected {
            warnings: &["field `reason`: drop reason `Expired` not recognised; reason `other`"],
            ..dropped("Expired", "other", "ZHJvcC1leHBpcmVk")
        },
    )
    .await;
}

#[tokio::test]
async fn sendgrid_bounce_and_block_reasons_without_a_classification() {
    let app = spawn_app().await;
    // A block with no reply text at all is still a refusal of the sender.
    let mut block = first("sendgrid/blocked.json");
    let object = block.as_object_mut().expect("object");
    for key in ["bounce_classification", "reason", "status"] {
        object.remove(key);
    }
    assert_element(
        &app,
        block,
        &Expected {
            bounce_class: Some("soft"),
            reason: Some("blocked"),
            metadata: json!({"smtp-id": SMTP_ID, "type": "blocked"}),
            ..sample("bounce", "bounce", "6g4ZI7SA-xmRDv57GoPIPw==")
        },
    )
    .await;

    // An Unclassified hard bounce: the reply decides (5.1.1 → invalid).
    let mut bounce = first("sendgrid/bounce.json");
    bounce["bounce_classification"] = json!("Unclassified");
    bounce["reason"] = json!("550 5.1.1 <alex@example.com>: user unknown");
    bounce["status"] = json!("5.1.1");
    assert_element(
        &app,
        bounce,
        &Expected {
            bounce_class: Some("hard"),
            reason: Some("invalid"),
            smtp_code: Some(550),
            smtp_enhanced: Some("5.1.1"),
            smtp_response: Some("550 5.1.1 <alex@example.com>: user unknown"),
            metadata: json!({
                "smtp-id": SMTP_ID,
                "bounce_classification": "Unclassified",
                "type": "bounce"
            }),
            ..sample("bounce", "bounce", "6g4ZI7SA-xmRDv57GoPIPw==")
        },
    )
    .await;

    // A hard bounce classified Reputation is a block: the hard-bounce rule spares it.
    let mut bounce = first("sendgrid/bounce.json");
    bounce["bounce_classification"] = json!("Reputation");
    bounce["sg_event_id"] = json!("cmVwdXRhdGlvbg");
    assert_element(
        &app,
        bounce,
        &Expected {
            bounce_class: Some("hard"),
            reason: Some("blocked"),
            smtp_code: Some(500),
            smtp_enhanced: Some("5.0.0"),
            smtp_response: Some("500 unknown recipient"),
            metadata: json!({
                "smtp-id": SMTP_ID,
                "bounce_classification": "Reputation",
                "type": "bounce"
            }),
            ..sample("bounce", "bounce", "cmVwdXRhdGlvbg")
        },
    )
    .await;

    // A deferral that timed out says so.
    let mut deferred = first("sendgrid/deferred.json");
    deferred["response"] = json!("421 4.4.2 Connection timed out");
    assert_element(
        &app,
        deferred,
        &Expected {
            reason: Some("timed_out"),
            sender: Some("test@example.com"),
            smtp_code: Some(421),
            smtp_enhanced: Some("4.4.2"),
            smtp_response: Some("421 4.4.2 Connection timed out"),
            metadata: json!({"domain": "example.com", "smtp-id": SMTP_ID, "attempt": "5"}),
            ..sample("deferred", "deferred", "t7LEShmowp86DTdUW8M-GQ==")
        },
    )
    .await;
}

#[tokio::test]
async fn sendgrid_asynchronous_bounce_without_sg_message_id_uses_the_smtp_id() {
    // "The events include the message ID except in delayed or asynchronous bounces."
    let app = spawn_app().await;
    let mut bounce = first("sendgrid/bounce.json");
    bounce
        .as_object_mut()
        .expect("object")
        .remove("sg_message_id");
    assert_element(
        &app,
        bounce,
        &Expected {
            bounce_class: Some("hard"),
            reason: Some("invalid"),
            message_id: Some("14c5d75ce93.dfd.64b469@ismtpd-555"),
            smtp_code: Some(500),
            smtp_enhanced: Some("5.0.0"),
            smtp_response: Some("500 unknown recipient"),
            metadata: json!({"bounce_classification": "Invalid Address", "type": "bounce"}),
            ..sample("bounce", "bounce", "6g4ZI7SA-xmRDv57GoPIPw==")
        },
    )
    .await;

    // An empty `smtp-id` and no `sg_message_id`: no message id, the empty value kept.
    let mut delivered = first("sendgrid/delivered.json");
    delivered
        .as_object_mut()
        .expect("object")
        .remove("sg_message_id");
    delivered["smtp-id"] = json!("");
    assert_element(
        &app,
        delivered,
        &Expected {
            message_id: None,
            smtp_code: Some(250),
            smtp_response: Some("250 OK"),
            metadata: json!({"smtp-id": ""}),
            ..sample("delivered", "delivered", "rWVYmVk90MjZJ9iohOBa3w==")
        },
    )
    .await;
}

#[tokio::test]
async fn sendgrid_elements_without_a_recipient_are_quarantined_and_the_rest_kept() {
    let app = spawn_app().await;
    let delivered = first("sendgrid/delivered.json");
    let mut no_email = first("sendgrid/open.json");
    no_email.as_object_mut().expect("object").remove("email");
    let mut empty = first("sendgrid/bounce.json");
    empty["email"] = json!("");
    let mut bad = first("sendgrid/click.json");
    bad["email"] = json!("not-an-address");
    let mut injected = first("sendgrid/spamreport.json");
    injected["email"] = json!("alex@example.com\r\nBcc: all@example.com");
    let no_event = json!({"email": ALEX, "timestamp": 1513299569});
    let account = first("sendgrid/set_aside/account_status_change.json");
    let body = json!([
        delivered,
        no_email,
        empty,
        bad,
        injected,
        no_event,
        account,
        "processed",
        42,
        [first("sendgrid/open.json")],
        first("sendgrid/unsubscribe.json")
    ]);
    let (report, events) = post(&app, &body).await;
    assert_eq!(report["accepted"], 2, "{report}");
    assert_eq!(report["quarantined"], 9, "{report}");
    let errors: Vec<(u64, String)> = report["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| {
            (
                e["index"].as_u64().expect("index"),
                e["error"].as_str().expect("error").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        errors,
        vec![
            (1, "no valid recipient address: none of `email` is present".to_owned()),
            (2, "no valid recipient address: none of `email` is present".to_owned()),
            (
                3,
                "no valid recipient address: `email`: `not-an-address`: address has no local part and domain"
                    .to_owned()
            ),
            (
                4,
                "no valid recipient address: `email`: `alex@example.com\r\nBcc: all@example.com`: address contains a character that is not allowed"
                    .to_owned()
            ),
            (5, "missing event name (`event`)".to_owned()),
            (
                6,
                "`account_status_change` of type `compliance_suspend` is a notice about the \
                 SendGrid account itself (compliance action or reactivation) and names no \
                 recipient; set aside for an operator to read"
                    .to_owned()
            ),
            (7, "expected an event object, found a string".to_owned()),
            (8, "expected an event object, found a number".to_owned()),
            (9, "expected an event object, found an array".to_owned()),
        ]
    );
    assert_eq!(events[0]["provider_event"], "delivered");
    assert_eq!(events[1]["provider_event"], "unsubscribe");
    let entries = quarantine(&app).await;
    assert_eq!(entries.len(), 9, "{entries:#?}");
    for index in 1..=9 {
        let entry = entries
            .iter()
            .find(|entry| entry["index"] == index)
            .unwrap_or_else(|| panic!("element {index} not in quarantine"));
        assert_eq!(entry["element"], body[index as usize], "{entry}");
    }
}

#[tokio::test]
async fn sendgrid_unknown_events_are_kept_as_other_with_a_warning() {
    let app = spawn_app().await;
    // `blocked` is a bounce's `type`, never an event name; `ip` is then nobody's reader.
    let mut element = first("sendgrid/delivered.json");
    element["event"] = json!("blocked");
    element["ip"] = json!("203.0.113.9");
    assert_element(
        &app,
        element,
        &Expected {
            smtp_code: Some(250),
            smtp_response: Some("250 OK"),
            metadata: json!({"smtp-id": SMTP_ID, "ip": "203.0.113.9"}),
            warnings: &["unknown event `blocked`; stored as `other`"],
            ..sample("blocked", "other", "rWVYmVk90MjZJ9iohOBa3w==")
        },
    )
    .await;
    // Case does not matter for documented names.
    let mut element = first("sendgrid/spamreport.json");
    element["event"] = json!("SpamReport");
    assert_element(
        &app,
        element,
        &Expected {
            reason: Some("spam"),
            tags: &[],
            metadata: json!({"smtp-id": SMTP_ID}),
            ..sample("SpamReport", "complaint", "37nvH5QBz858KGVYCM4uOA==")
        },
    )
    .await;
}

#[tokio::test]
async fn sendgrid_a_single_object_body_is_one_event() {
    // SendGrid always posts an array; a lone object is read the same way.
    let app = spawn_app().await;
    let element = first("sendgrid/delivered.json");
    let (status, report) = app.post("sendgrid", element.to_string()).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["accepted"], 1, "{report}");
    let id = report["event_ids"][0].as_str().expect("stored");
    let (_, event) = app.get(&format!("/api/events/{id}")).await;
    check(
        "sendgrid",
        &event,
        &element,
        &Expected {
            smtp_code: Some(250),
            smtp_response: Some("250 OK"),
            metadata: json!({"smtp-id": SMTP_ID}),
            ..sample("delivered", "delivered", "rWVYmVk90MjZJ9iohOBa3w==")
        },
    );
}

#[tokio::test]
async fn sendgrid_hostile_strings_are_clipped_and_kept_in_raw() {
    let app = spawn_app().await;
    let mut open = first("sendgrid/open.json");
    open["useragent"] = json!(format!("{}\u{0}\u{1b}[31m", "U".repeat(10_000)));
    open["ip"] = json!("9".repeat(500));
    open["category"] = json!(["red\u{1b}[31m\u{7}", "x".repeat(3_000)]);
    open["big_custom_arg"] = json!("b".repeat(5_000));
    // `Expected` holds static text; one leaked string per test run is harmless.
    let agent: &'static str = "U".repeat(2_000).leak();
    let ip: &'static str = "9".repeat(64).leak();
    let long_tag: &'static str = "x".repeat(2_000).leak();
    let tags: &'static [&'static str] = vec!["red\u{1b}[31m\u{7}", long_tag].leak();
    assert_element(
        &app,
        open,
        &Expected {
            ip: Some(ip),
            user_agent: Some(agent),
            tags,
            metadata: json!({"sg_machine_open": false}),
            warnings: &[
                "field `big_custom_arg`: 5002 bytes, too large for metadata; kept in raw only",
            ],
            ..sample("open", "open", "FOTFFO0ecsBE-zxFXfs6WA==")
        },
    )
    .await;

    // A bounce reply of 10 000 characters is clipped.
    let mut bounce = first("sendgrid/bounce.json");
    let reply = format!("550 5.1.1 {}", "z".repeat(10_000));
    bounce["reason"] = json!(reply);
    bounce["bounce_classification"] = json!("Invalid Address");
    let (report, events) = post(&app, &json!([bounce])).await;
    assert_eq!(report["accepted"], 1, "{report}");
    assert_eq!(
        events[0]["smtp_response"]
            .as_str()
            .expect("reply")
            .chars()
            .count(),
        2_000
    );
    assert_eq!(events[0]["smtp_code"], 550);

    // An event name of 10 000 characters is clipped in the event and in its warning.
    let (report, events) = post(
        &app,
        &json!([{"event": "E".repeat(10_000), "email": ALEX, "timestamp": 1513299569}]),
    )
    .await;
    assert_eq!(report["accepted"], 1, "{report}");
    assert_eq!(events[0]["provider_event"], "E".repeat(200));
    assert_eq!(
        events[0]["warnings"],
        json!([format!(
            "unknown event `{}`; stored as `other`",
            "E".repeat(64)
        )])
    );
}

#[tokio::test]
async fn sendgrid_huge_and_long_ids_are_kept_exactly_and_never_merged() {
    let app = spawn_app().await;
    // 2^53 and 2^53 + 1 are the same double: through a float these two events would be
    // one, the second lost as its duplicate.
    for id in [
        "9007199254740992",
        "9007199254740993",
        "123456789012345678901234567890",
    ] {
        let body = String::from_utf8(read_fixture("sendgrid/delivered.json"))
            .expect("UTF-8")
            .replace("\"rWVYmVk90MjZJ9iohOBa3w==\"", id);
        let (status, report) = app.post("sendgrid", body).await;
        assert_eq!(status, 200, "{report}");
        assert_eq!(report["accepted"], 1, "{id}: {report}");
        let stored = report["event_ids"][0].as_str().expect("stored");
        let (_, event) = app.get(&format!("/api/events/{stored}")).await;
        assert_eq!(event["provider_event_id"], id);
        // Raw keeps the number as written (this test's JSON reader holds 64 bits).
        if id.parse::<u64>().is_ok() {
            assert!(
                event["raw"]
                    .to_string()
                    .contains(&format!("\"sg_event_id\":{id}")),
                "{}",
                event["raw"]
            );
        }
    }
    // "These URL-safe IDs can exceed 100 characters": 150 are kept as they are.
    let long: &'static str = "A".repeat(150).leak();
    let mut element = first("sendgrid/delivered.json");
    element["sg_event_id"] = json!(long);
    // A custom number beyond 64 bits keeps its digits in metadata.
    element["asm_group_id"] = json!("HUGE");
    let body = json!([element])
        .to_string()
        .replace("\"HUGE\"", "98765432109876543210");
    let (status, report) = app.post("sendgrid", body).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["accepted"], 1, "{report}");
    let stored = report["event_ids"][0].as_str().expect("stored");
    let (_, event) = app.get(&format!("/api/events/{stored}")).await;
    let events = [event];
    assert_eq!(events[0]["provider_event_id"], long);
    assert_eq!(
        events[0]["metadata"]["asm_group_id"],
        "98765432109876543210"
    );

    // Beyond 2 000 characters it is no SendGrid id: warned, dedup on the JSON.
    let mut element = first("sendgrid/delivered.json");
    element["sg_event_id"] = json!("B".repeat(2_001));
    let (report, events) = post(&app, &json!([element])).await;
    assert_eq!(report["accepted"], 1, "{report}");
    assert!(
        events[0].get("provider_event_id").is_none(),
        "{}",
        events[0]
    );
    assert_eq!(
        events[0]["warnings"],
        json!([
            "field `sg_event_id`: longer than 2000 characters, not a SendGrid id; kept in raw only"
        ])
    );
}
