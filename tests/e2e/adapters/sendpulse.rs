//! SendPulse: arrays of events, Unix seconds, codes as strings or numbers.

use serde_json::json;

use super::{Expected, assert_fixture};

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
