//! Mailjet: one object (Version 1 callbacks) or an array (Version 2, "Group events") on the
//! same URL, Unix seconds, `MessageID` above 2^53, reasons from Mailjet's error table.

use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::{Expected, assert_fixture, check};
use crate::helpers::{TestApp, read_fixture, spawn_app, spawn_app_with};
use mailwarden::config::{Secret, SourceConfig};

/// The placeholder `Message_GUID` of the documentation's samples (not a valid UUID).
const GUID: &str = "1ab23cd4-e567-8901-2345-6789f0gh1i2j";
/// The user agent of the documentation's `click` sample.
const MAC_AGENT: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_10_0) AppleWebKit/537.36";

/// A Mailjet event as documented: Unix seconds (exact), the `MessageID` as a string.
fn mailjet(
    event: &'static str,
    kind: &'static str,
    recipient: &'static str,
    utc: &'static str,
    message_id: &'static str,
) -> Expected {
    Expected {
        provider_event: event,
        kind,
        recipient,
        occurred_at: Some(utc),
        time_quality: "exact",
        message_id: Some(message_id),
        ..Expected::default()
    }
}

/// The docs' `sent` sample: delivered; the reply inside `sent (…)`; campaign 7257 stands
/// in for the empty `customcampaign`; `mj_message_id` repeats `MessageID` and is dropped.
fn sent() -> Expected {
    Expected {
        smtp_code: Some(250),
        smtp_enhanced: Some("2.0.0"),
        smtp_response: Some("250 2.0.0 OK 1433333948 fa5si855896wjc.199 - gsmtp"),
        campaign: Some("7257"),
        metadata: json!({
            "Message_GUID": GUID,
            "CustomID": "helloworld",
            "mj_campaign_id": "7257",
            "mj_contact_id": "4"
        }),
        ..mailjet(
            "sent",
            "delivered",
            "api@mailjet.com",
            "2015-06-03T12:19:09Z",
            "19421777835146490",
        )
    }
}

/// The docs' `open` sample: the reader's IP and user agent, the country in metadata.
fn open() -> Expected {
    Expected {
        ip: Some("127.0.0.1"),
        user_agent: Some("Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0"),
        campaign: Some("7173"),
        metadata: json!({
            "Message_GUID": GUID,
            "CustomID": "helloworld",
            "mj_campaign_id": "7173",
            "mj_contact_id": "320",
            "geo": "US"
        }),
        ..mailjet(
            "open",
            "open",
            "api@mailjet.com",
            "2015-05-31T20:18:39Z",
            "19421777396190490",
        )
    }
}

/// The docs' `click` sample.
fn click() -> Expected {
    Expected {
        click_url: Some("https://mailjet.com"),
        ip: Some("127.0.0.1"),
        user_agent: Some(MAC_AGENT),
        campaign: Some("7272"),
        metadata: json!({
            "Message_GUID": GUID,
            "CustomID": "helloworld",
            "mj_campaign_id": "7272",
            "mj_contact_id": "4",
            "geo": "FR"
        }),
        ..mailjet(
            "click",
            "click",
            "api@mailjet.com",
            "2015-06-03T12:30:53Z",
            "19421777836302490",
        )
    }
}

/// The docs' bounce sample (comma fixed): `hard_bounce: true` is hard; `user unknown`
/// decides the reason (invalid), not the DNS text of `comment`, which has no SMTP code;
/// campaign and contact ids `0` mean none.
fn bounce_hard() -> Expected {
    Expected {
        bounce_class: Some("hard"),
        reason: Some("invalid"),
        smtp_response: Some(
            "Host or domain name not found. Name service error for \
             name=lbjsnrftlsiuvbsren.com type=A: Host not found",
        ),
        metadata: json!({
            "Message_GUID": GUID,
            "CustomID": "helloworld",
            "blocked": false,
            "hard_bounce": true,
            "error_related_to": "recipient",
            "error": "user unknown"
        }),
        ..mailjet(
            "bounce",
            "bounce",
            "bounce@mailjet.com",
            "2015-05-05T07:49:55Z",
            "13792286917004336",
        )
    }
}

/// The docs' `blocked` sample: Mailjet did not try (dropped), the address is unknown.
fn blocked() -> Expected {
    Expected {
        reason: Some("invalid"),
        metadata: json!({
            "Message_GUID": GUID,
            "CustomID": "helloworld",
            "error_related_to": "recipient",
            "error": "user unknown"
        }),
        ..mailjet(
            "blocked",
            "dropped",
            "bounce@mailjet.com",
            "2015-05-05T07:49:55Z",
            "13792286917004336",
        )
    }
}

/// The docs' `spam` sample: a feedback-loop complaint, its program in metadata.
fn spam() -> Expected {
    Expected {
        reason: Some("spam"),
        metadata: json!({
            "Message_GUID": GUID,
            "CustomID": "helloworld",
            "source": "JMRPP"
        }),
        ..mailjet(
            "spam",
            "complaint",
            "bounce@mailjet.com",
            "2015-05-05T07:49:55Z",
            "13792286917004336",
        )
    }
}

/// The docs' `unsub` sample: the reader's IP and agent, the list in metadata.
fn unsub() -> Expected {
    Expected {
        reason: Some("unsubscribed"),
        ip: Some("127.0.0.1"),
        user_agent: Some(
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_10_0) AppleWebKit/537.36 \
             (KHTML, like Gecko) Chrome/42.0.2311.135 Safari/537.36",
        ),
        campaign: Some("7276"),
        metadata: json!({
            "Message_GUID": GUID,
            "CustomID": "helloworld",
            "mj_campaign_id": "7276",
            "mj_contact_id": "126",
            "mj_list_id": "1",
            "geo": "FR"
        }),
        ..mailjet(
            "unsub",
            "unsubscribe",
            "api@mailjet.com",
            "2015-06-03T12:35:41Z",
            "20547674933128000",
        )
    }
}

/// The second of `grouped.json`: every event in it happened then, as a group holds "all
/// the events of the last second".
const GROUP_SECOND: &str = "2015-06-03T12:19:09Z";

/// What `grouped.json` holds, in order. It is assembled, not a verbatim sample: the
/// docs' grouped sample is two `sent` events, the first identical to the `sent` sample
/// (`sent.json`), so only the second is kept, verbatim (MessageID 19421777835146491,
/// odd: no f64 can hold it); then each other documented sample moved to that second
/// (`time` 1433333949: a second open, click, ... of the same messages). Every element
/// is thus an event no other fixture holds.
fn grouped() -> Vec<Expected> {
    let in_group = |expected: Expected| Expected {
        occurred_at: Some(GROUP_SECOND),
        ..expected
    };
    vec![
        Expected {
            message_id: Some("19421777835146491"),
            metadata: json!({
                "Message_GUID": "j2i1hg0-f987-6543-2109-8765e4dc32ba1",
                "CustomID": "helloworld",
                "mj_campaign_id": "7257",
                "mj_contact_id": "4"
            }),
            ..sent()
        },
        in_group(open()),
        in_group(click()),
        in_group(bounce_hard()),
        in_group(blocked()),
        in_group(spam()),
        in_group(unsub()),
    ]
}

/// Reads a Mailjet fixture as JSON.
fn fixture(name: &str) -> Value {
    serde_json::from_slice(&read_fixture(&format!("mailjet/{name}"))).expect("fixture is JSON")
}

/// Posts `body` to the `mailjet` source; returns the report and the stored events.
async fn post_and_read(app: &TestApp, body: String) -> (Value, Vec<Value>) {
    app.post_and_read("mailjet", body).await
}

/// Posts each element as its own request and checks it against `expected`.
async fn assert_each(app: &TestApp, elements: &[Value], expected: &[Expected]) {
    assert_eq!(elements.len(), expected.len());
    for (element, expected) in elements.iter().zip(expected) {
        let (report, events) = post_and_read(app, element.to_string()).await;
        assert_eq!(report["accepted"], 1, "{element}: {report}");
        check("mailjet", &events[0], element, expected);
    }
}

#[tokio::test]
async fn mailjet_sent_is_delivered_with_the_code_from_inside_the_wrapper() {
    assert_fixture("mailjet/sent.json", &[sent()]).await;
}

#[tokio::test]
async fn mailjet_open_has_the_readers_ip_and_agent() {
    assert_fixture("mailjet/open.json", &[open()]).await;
}

#[tokio::test]
async fn mailjet_click_has_the_link() {
    assert_fixture("mailjet/click.json", &[click()]).await;
}

#[tokio::test]
async fn mailjet_hard_bounce_is_hard_and_invalid_from_its_error() {
    assert_fixture("mailjet/bounce_hard.json", &[bounce_hard()]).await;
}

#[tokio::test]
async fn mailjet_soft_bounce_over_quota_is_soft_and_bounced() {
    // Built from the field list (the docs have one bounce sample): `hard_bounce: false`,
    // `quota exceeded`, which the table calls "a non-permanent error".
    assert_fixture(
        "mailjet/bounce_soft.json",
        &[Expected {
            bounce_class: Some("soft"),
            reason: Some("bounced"),
            smtp_response: None,
            metadata: json!({
                "Message_GUID": GUID,
                "CustomID": "helloworld",
                "blocked": false,
                "hard_bounce": false,
                "error_related_to": "recipient",
                "error": "quota exceeded"
            }),
            ..bounce_hard()
        }],
    )
    .await;
}

#[tokio::test]
async fn mailjet_blocked_is_dropped() {
    assert_fixture("mailjet/blocked.json", &[blocked()]).await;
}

#[tokio::test]
async fn mailjet_spam_is_a_complaint() {
    assert_fixture("mailjet/spam.json", &[spam()]).await;
}

#[tokio::test]
async fn mailjet_unsub_is_an_unsubscribe() {
    assert_fixture("mailjet/unsub.json", &[unsub()]).await;
}

#[tokio::test]
async fn mailjet_grouped_array_and_the_same_events_one_object_each_read_alike() {
    // Version 2 ("Group events"): one array of mixed types.
    assert_fixture("mailjet/grouped.json", &grouped()).await;

    // Version 1: the same events one bare object per request, on the same URL. Each
    // element is posted as its own text, exactly as it stands in the array.
    let app = spawn_app().await;
    let body = read_fixture("mailjet/grouped.json");
    let texts: Vec<&RawValue> = serde_json::from_slice(&body).expect("an array");
    let expected = grouped();
    assert_eq!(texts.len(), expected.len());
    for (text, expected) in texts.iter().zip(&expected) {
        let element: Value = serde_json::from_str(text.get()).expect("element");
        let (report, events) = post_and_read(&app, text.get().to_owned()).await;
        assert_eq!(report["accepted"], 1, "{report}");
        check("mailjet", &events[0], &element, expected);
    }
    // A retry of the whole batch (Mailjet retries every 30 s) stores nothing new.
    let (status, report) = app.post("mailjet", body.clone()).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["accepted"], 0, "{report}");
    assert_eq!(report["duplicates"], 7, "{report}");
    // An empty group is a valid, empty delivery.
    let (status, report) = app.post("mailjet", "[]").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["accepted"], 0, "{report}");
    assert_eq!(app.events("limit=100").await.len(), 7);
}

#[tokio::test]
async fn mailjet_documented_errors_decide_kind_and_reason() {
    // Variants of the docs' bounce and blocked samples with other rows of the error
    // table ("Possible values for errors").
    let app = spawn_app().await;
    let bounce = |hard: Value, related: &str, error: &str| {
        let mut body = fixture("bounce_hard.json");
        body["hard_bounce"] = hard;
        body["error_related_to"] = json!(related);
        body["error"] = json!(error);
        body.as_object_mut().expect("object").remove("comment");
        body
    };
    let blocked_with = |related: &str, error: &str| {
        let mut body = fixture("blocked.json");
        body["error_related_to"] = json!(related);
        body["error"] = json!(error);
        body
    };
    let metadata = |hard: Option<bool>, related: &str, error: &str| {
        let mut metadata = json!({
            "Message_GUID": GUID,
            "CustomID": "helloworld",
            "error_related_to": related,
            "error": error
        });
        if let Some(hard) = hard {
            metadata["blocked"] = json!(false);
            metadata["hard_bounce"] = json!(hard);
        }
        metadata
    };
    let elements = vec![
        bounce(json!(false), "domain", "greylisted"),
        bounce(json!(true), "domain", "greylisted"),
        bounce(json!(false), "domain", "no mail host"),
        bounce(json!(true), "domain", "no mail host"),
        bounce(json!(true), "domain", "relay/access denied"),
        bounce(json!(false), "spam", "content blocked"),
        bounce(json!(true), "recipient", "mailbox inactive"),
        blocked_with("mailjet", "preblocked"),
        blocked_with("mailjet", "duplicate in campaign"),
        blocked_with("recipient", "spam reporter"),
        blocked_with("content", "error in template language"),
        blocked_with("system", "connection issue"),
    ];
    let as_bounce = |class: Option<&'static str>, reason, metadata| Expected {
        bounce_class: class,
        reason: Some(reason),
        smtp_response: None,
        metadata,
        ..bounce_hard()
    };
    let as_blocked = |kind, reason, metadata| Expected {
        kind,
        reason: Some(reason),
        metadata,
        ..blocked()
    };
    let expected = vec![
        // "Delivery will be re-attempted": a deferral, not a bounce.
        Expected {
            kind: "deferred",
            ..as_bounce(None, "other", metadata(Some(false), "domain", "greylisted"))
        },
        // Final after all: a hard bounce.
        as_bounce(
            Some("hard"),
            "other",
            metadata(Some(true), "domain", "greylisted"),
        ),
        // A host that did not answer this time says nothing final about the domain.
        as_bounce(
            Some("soft"),
            "timed_out",
            metadata(Some(false), "domain", "no mail host"),
        ),
        as_bounce(
            Some("hard"),
            "invalid",
            metadata(Some(true), "domain", "no mail host"),
        ),
        as_bounce(
            Some("hard"),
            "blocked",
            metadata(Some(true), "domain", "relay/access denied"),
        ),
        as_bounce(
            Some("soft"),
            "spam",
            metadata(Some(false), "spam", "content blocked"),
        ),
        as_bounce(
            Some("hard"),
            "invalid",
            metadata(Some(true), "recipient", "mailbox inactive"),
        ),
        as_blocked(
            "dropped",
            "bounced",
            metadata(None, "mailjet", "preblocked"),
        ),
        as_blocked(
            "dropped",
            "other",
            metadata(None, "mailjet", "duplicate in campaign"),
        ),
        as_blocked(
            "dropped",
            "spam",
            metadata(None, "recipient", "spam reporter"),
        ),
        // Mailjet could not build or send the message: not a suppression.
        as_blocked(
            "failed",
            "other",
            metadata(None, "content", "error in template language"),
        ),
        as_blocked(
            "failed",
            "other",
            metadata(None, "system", "connection issue"),
        ),
    ];
    assert_each(&app, &elements, &expected).await;
}

#[tokio::test]
async fn mailjet_without_a_known_error_the_smtp_text_decides_with_a_warning() {
    let app = spawn_app().await;
    // A Postfix-style comment: the code follows `said:`; the error is not in the table.
    let mut unknown = fixture("bounce_hard.json");
    unknown["error"] = json!("mailbox full");
    unknown["comment"] = json!(
        "host mx.example.com[192.0.2.1] said: 552 5.2.2 <bounce@mailjet.com>: \
         Mailbox full (in reply to RCPT TO command)"
    );
    // No `error`, no `hard_bounce`: the reply decides the reason and the class.
    let mut bare = fixture("bounce_hard.json");
    for key in ["error", "error_related_to", "hard_bounce"] {
        bare.as_object_mut().expect("object").remove(key);
    }
    bare["comment"] = json!("550 5.1.1 <bounce@mailjet.com>: Recipient address rejected");
    // An unknown error in the `system` group: still Mailjet's own failure.
    let mut system = fixture("blocked.json");
    system["error_related_to"] = json!("system");
    system["error"] = json!("disk on fire");

    let expected = vec![
        Expected {
            reason: Some("bounced"),
            smtp_code: Some(552),
            smtp_enhanced: Some("5.2.2"),
            smtp_response: Some(
                "host mx.example.com[192.0.2.1] said: 552 5.2.2 <bounce@mailjet.com>: \
                 Mailbox full (in reply to RCPT TO command)",
            ),
            metadata: json!({
                "Message_GUID": GUID,
                "CustomID": "helloworld",
                "blocked": false,
                "hard_bounce": true,
                "error_related_to": "recipient",
                "error": "mailbox full"
            }),
            warnings: &[
                "field `error`: `mailbox full` is not in Mailjet's error table; reason `bounced` inferred",
            ],
            ..bounce_hard()
        },
        Expected {
            bounce_class: Some("hard"),
            reason: Some("invalid"),
            smtp_code: Some(550),
            smtp_enhanced: Some("5.1.1"),
            smtp_response: Some("550 5.1.1 <bounce@mailjet.com>: Recipient address rejected"),
            metadata: json!({
                "Message_GUID": GUID,
                "CustomID": "helloworld",
                "blocked": false
            }),
            warnings: &[
                "field `error`: missing; reason `invalid` inferred",
                "field `hard_bounce`: no boolean; class `hard` inferred from the reply",
            ],
            ..bounce_hard()
        },
        Expected {
            kind: "failed",
            reason: Some("other"),
            metadata: json!({
                "Message_GUID": GUID,
                "CustomID": "helloworld",
                "error_related_to": "system",
                "error": "disk on fire"
            }),
            warnings: &[
                "field `error`: `disk on fire` is not in Mailjet's error table; reason `other` inferred",
            ],
            ..blocked()
        },
    ];
    assert_each(&app, &[unknown, bare, system], &expected).await;
}

#[tokio::test]
async fn mailjet_numbers_as_strings_and_wrong_types() {
    let app = spawn_app().await;
    // Every number as a string, the boolean as text: read the same, no warnings.
    let strings = r#"{"event": "bounce", "time": "1430812195", "MessageID": "13792286917004336",
        "Message_GUID": "1ab23cd4-e567-8901-2345-6789f0gh1i2j", "email": "bounce@mailjet.com",
        "mj_campaign_id": "0", "mj_contact_id": "0", "customcampaign": "", "CustomID": "helloworld",
        "Payload": "", "blocked": "false", "hard_bounce": "true", "error_related_to": "recipient",
        "error": "user unknown",
        "comment": "Host or domain name not found. Name service error for name=lbjsnrftlsiuvbsren.com type=A: Host not found"}"#;
    // Wrong types: an object for the reply, a word for the boolean, a list for the link,
    // an object for the campaign, a number for `Payload` (kept as sent).
    let wrong = r#"{"event": "sent", "time": 1433333949, "MessageID": 19421777835146490,
        "email": "api@mailjet.com", "mj_campaign_id": 7257, "customcampaign": {"name": "x"},
        "smtp_reply": {"code": 250}, "hard_bounce": "maybe", "url": ["https://a.example"],
        "Payload": 42}"#;
    let expected = [
        Expected {
            metadata: json!({
                "Message_GUID": GUID,
                "CustomID": "helloworld",
                "blocked": "false",
                "hard_bounce": "true",
                "error_related_to": "recipient",
                "error": "user unknown"
            }),
            ..bounce_hard()
        },
        Expected {
            smtp_code: None,
            smtp_enhanced: None,
            smtp_response: None,
            metadata: json!({
                "mj_campaign_id": "7257",
                "hard_bounce": "maybe",
                "url": ["https://a.example"],
                "Payload": 42
            }),
            warnings: &[
                "field `hard_bounce`: expected a boolean; ignored",
                "field `customcampaign`: expected text, found an object; ignored",
                "field `smtp_reply`: expected text, found an object; ignored",
            ],
            ..sent()
        },
    ];
    for (text, expected) in [strings, wrong].into_iter().zip(&expected) {
        let element: Value = serde_json::from_str(text).expect("test body is JSON");
        let (report, events) = post_and_read(&app, text.to_owned()).await;
        assert_eq!(report["accepted"], 1, "{report}");
        check("mailjet", &events[0], &element, expected);
    }
}

#[tokio::test]
async fn mailjet_elements_without_a_recipient_are_quarantined_and_the_rest_kept() {
    let app = spawn_app().await;
    let good = fixture("open.json");
    let mut no_email = fixture("open.json");
    no_email.as_object_mut().expect("object").remove("email");
    let mut bad_email = fixture("click.json");
    bad_email["email"] = json!("not-an-address");
    let mut object_email = fixture("spam.json");
    object_email["email"] = json!({"address": "a@example.com"});
    let mut no_name = fixture("sent.json");
    no_name.as_object_mut().expect("object").remove("event");
    let body = json!([no_email, good, bad_email, "sent", object_email, no_name]);
    let (report, events) = post_and_read(&app, body.to_string()).await;
    assert_eq!(report["accepted"], 1, "{report}");
    assert_eq!(report["quarantined"], 5, "{report}");
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
        [
            (
                0,
                "no valid recipient address: none of `email` is present".to_owned()
            ),
            (
                2,
                "no valid recipient address: `email`: `not-an-address`: address has no local \
                 part and domain"
                    .to_owned()
            ),
            (3, "expected an event object, found a string".to_owned()),
            (
                4,
                "no valid recipient address: none of `email` is present".to_owned()
            ),
            (5, "missing event name (`event`)".to_owned()),
        ]
    );
    check("mailjet", &events[0], &good, &open());
    let (status, page) = app.get("/api/quarantine?limit=100").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["entries"].as_array().expect("entries").len(), 5);
}

#[tokio::test]
async fn mailjet_unknown_event_is_kept_as_other_with_a_warning() {
    // `typofix` is an event in Mailjet's old plugins, no longer in the Event API.
    let app = spawn_app().await;
    let element = json!({
        "event": "typofix",
        "time": 1433334941,
        "MessageID": 20547674933128000_u64,
        "email": "api@mailjet.com",
        "mj_campaign_id": 0,
        "mj_contact_id": 126,
        "original_address": "api@mailjet.cmo",
        "new_address": "api@mailjet.com",
        "ip": "192.0.2.7"
    });
    let (_, events) = post_and_read(&app, element.to_string()).await;
    check(
        "mailjet",
        &events[0],
        &element,
        &Expected {
            metadata: json!({
                "mj_contact_id": "126",
                "original_address": "api@mailjet.cmo",
                "new_address": "api@mailjet.com",
                "ip": "192.0.2.7"
            }),
            warnings: &["unknown event `typofix`; stored as `other`"],
            ..mailjet(
                "typofix",
                "other",
                "api@mailjet.com",
                "2015-06-03T12:35:41Z",
                "20547674933128000",
            )
        },
    );
}

#[tokio::test]
async fn mailjet_hostile_strings_are_clipped_or_refused() {
    let app = spawn_app().await;
    let long_agent = format!("Mozilla/5.0 {}", "A".repeat(5000));
    let control = "camp\u{0}aign\u{1b}[31m\r\nX-Injected: 1";
    let long_name = format!("open{}", "x".repeat(300));
    let mut hostile = fixture("open.json");
    hostile["agent"] = json!(long_agent);
    hostile["customcampaign"] = json!(control);
    hostile["Payload"] = json!("p".repeat(5000));
    hostile["time"] = json!("tomorrow");
    let mut control_email = fixture("open.json");
    control_email["email"] = json!("api\u{7}@mailjet.com");
    let mut unknown = fixture("spam.json");
    unknown["event"] = json!(long_name);
    let long_error = "e".repeat(10_000);
    let mut blocked_long = fixture("blocked.json");
    blocked_long["error"] = json!(long_error);
    let body = json!([hostile, control_email, unknown, blocked_long]);
    let (report, events) = post_and_read(&app, body.to_string()).await;
    assert_eq!(report["accepted"], 3, "{report}");
    assert_eq!(report["quarantined"], 1, "{report}");
    assert_eq!(report["errors"][0]["index"], 1, "{report}");
    assert_eq!(
        report["errors"][0]["error"],
        "no valid recipient address: `email`: `api\u{7}@mailjet.com`: address contains a \
         character that is not allowed"
    );

    // The agent is clipped to 2000 characters (raw keeps it whole); control characters
    // are data, kept exactly and escaped by JSON; the oversized Payload stays in raw.
    let event = &events[0];
    let agent = event["user_agent"].as_str().expect("user_agent");
    assert_eq!(agent.chars().count(), 2000);
    assert!(long_agent.starts_with(agent));
    assert_eq!(event["campaign"], control);
    assert!(event["metadata"].get("Payload").is_none(), "{event}");
    assert!(event.get("occurred_at").is_none(), "{event}");
    assert_eq!(event["time_quality"], "missing");
    assert_eq!(
        event["warnings"],
        json!([
            "field `time`: `tomorrow` is not a recognised time; time left empty",
            "field `Payload`: 5002 bytes, too large for metadata; kept in raw only"
        ])
    );
    assert_eq!(event["raw"], body[0]);

    // A 304-character event name: stored clipped to 200, named in the warning by 64.
    let event = &events[1];
    assert_eq!(event["kind"], "other");
    assert_eq!(event["provider_event"], &long_name[..200]);
    assert_eq!(
        event["warnings"],
        json!([format!(
            "unknown event `{}`; stored as `other`",
            &long_name[..64]
        )])
    );
    assert_eq!(event["raw"], body[2]);

    // A 10 000-character error: no reason from the table, and clipped in metadata.
    let event = &events[2];
    assert_eq!(event["kind"], "dropped");
    assert_eq!(event["reason"], "other");
    let error = event["metadata"]["error"].as_str().expect("error");
    assert_eq!(error.len(), 2000);
    assert_eq!(
        event["warnings"],
        json!([format!(
            "field `error`: `{}` is not in Mailjet's error table; reason `other` inferred",
            &long_error[..64]
        )])
    );
    assert_eq!(event["raw"]["error"], long_error.as_str());
}

#[tokio::test]
async fn mailjet_huge_ids_are_kept_exactly() {
    // Beyond u64 too: every digit survives, as text, in message_id and metadata.
    let app = spawn_app().await;
    let body = r#"[
        {"event": "sent", "time": 1433333949, "MessageID": 123456789012345678901234567890,
         "email": "api@mailjet.com", "mj_campaign_id": 98765432109876543210,
         "mj_contact_id": 18446744073709551615,
         "smtp_reply": "sent (250 OK)"},
        {"event": "open", "time": 1433333950, "MessageID": 9007199254740993,
         "email": "api@mailjet.com"}
    ]"#;
    let (status, report) = app.post("mailjet", body).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["accepted"], 2, "{report}");
    let ids = report["event_ids"].as_array().expect("event_ids");
    let text = |id: &Value| {
        let url = app.url(&format!("/api/events/{}", id.as_str().expect("id")));
        let client = app.client.clone();
        async move {
            let response = client.get(url).send().await.expect("request is sent");
            response.text().await.expect("body")
        }
    };
    let first = text(&ids[0]).await;
    for fragment in [
        r#""message_id":"123456789012345678901234567890""#,
        r#""campaign":"98765432109876543210""#,
        r#""mj_campaign_id":"98765432109876543210""#,
        r#""mj_contact_id":"18446744073709551615""#,
        r#""MessageID": 123456789012345678901234567890"#,
        r#""smtp_code":250"#,
    ] {
        assert!(first.contains(fragment), "{fragment} not in {first}");
    }
    // 2^53 + 1: the first integer a float cannot hold.
    let second = text(&ids[1]).await;
    assert!(
        second.contains(r#""message_id":"9007199254740993""#),
        "{second}"
    );
}

#[tokio::test]
async fn mailjet_basic_auth_in_the_callback_url_is_checked() {
    // Mailjet's only documented protection: `https://user:password@host/...`, sent as
    // basic auth; a source token works as the password too.
    let app = spawn_app_with(|config| {
        config.sources.insert(
            "mj".into(),
            SourceConfig {
                username: Some("mailjet".into()),
                password: Some(Secret::new("hunter2-but-longer")),
                ..SourceConfig::new("mailjet")
            },
        );
        config.sources.insert(
            "mj-token".into(),
            SourceConfig {
                token: Some(Secret::new("t0ken-for-mailjet")),
                ..SourceConfig::new("mailjet")
            },
        );
    })
    .await;
    let body = read_fixture("mailjet/grouped.json");
    let post = |source: &str, user: Option<(&str, &str)>| {
        let mut request = app
            .client
            .post(app.url(&format!("/webhooks/{source}")))
            .body(body.clone());
        if let Some((user, password)) = user {
            request = request.basic_auth(user, Some(password));
        }
        async move {
            let response = request.send().await.expect("request is sent");
            response.status().as_u16()
        }
    };
    assert_eq!(post("mj", None).await, 401);
    assert_eq!(post("mj", Some(("mailjet", "wrong"))).await, 401);
    assert_eq!(post("mj", Some(("other", "hunter2-but-longer"))).await, 401);
    assert_eq!(post("mj-token", Some(("mailwarden", "nope"))).await, 401);
    assert!(app.events("limit=100").await.is_empty());
    // No Content-Type header: Mailjet does not document one, the body is read anyway.
    assert_eq!(
        post("mj", Some(("mailjet", "hunter2-but-longer"))).await,
        200
    );
    assert_eq!(
        post("mj-token", Some(("mailwarden", "t0ken-for-mailjet"))).await,
        200
    );
    assert_eq!(app.events("limit=100").await.len(), 14);
}
