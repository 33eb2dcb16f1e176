//! Mandrill (Mailchimp Transactional): the JSON array of events travels in the
//! `mandrill_events` form field (`TestApp::post_fixture` form-encodes each fixture, `+` for
//! spaces); Unix seconds in `ts`; `_id` is the message's id, shared by all its events.
//!
//! The per-event fixtures are the events of Mandrill's own test-webhook batch (captured by
//! Mandrill.net in 2015; `set_aside/batch.json` is the whole batch, set aside because every
//! element repeats one of them), `click_signed.json` is a captured signed request of 2013
//! (two identical clicks, JSON with `\/` escapes), `inbound.json` Mandrill's example inbound
//! batch (two identical messages). Two identical events are one event: Mandrill gives no
//! per-event id, so the second is a duplicate.
//!
//! Every message event of the test batch is about one sample message: recipient
//! `example.webhook@mandrillapp.com`, `ts` 1420303407 (2015-01-03T16:43:27Z), `msg.ts`
//! 1365109999 (when it was sent; kept as `msg_ts`), custom metadata `{"user_id": 111}`.

use mailwarden::config::{Secret, SourceConfig};
use serde_json::{Value, json};

use super::{Expected, assert_fixture, check, merged};
use crate::helpers::{TestApp, all_fixtures, read_fixture, spawn_app, spawn_app_with};
use crate::signing;

const RECIPIENT: &str = "example.webhook@mandrillapp.com";
const SENDER: &str = "example.sender@mandrillapp.com";
const SUBJECT: &str = "This an example webhook message";
/// `ts` 1420303407 of the test batch.
const AT: &str = "2015-01-03T16:43:27Z";
const MESSAGE_ID: &str = "fa239ebedd0a4831a3eefa59e880d8b2";
const TAGS: &[&str] = &["webhook-example"];
const USER_AGENT: &str = "Mozilla/5.0 (Macintosh; U; Intel Mac OS X 10.6; en-US; rv:1.9.1.8) \
                          Gecko/20100317 Postbox/1.1.3";
/// `ts` 1700000000 of the constructed events.
const LATER: &str = "2023-11-14T22:13:20Z";

/// A message event of the test batch.
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
        tags: TAGS,
        ..Expected::default()
    }
}

/// Metadata of every message event of the test batch: `msg.state`, `msg._version`,
/// `msg.ts` and the custom metadata, plus `extra`.
fn metadata(state: &str, extra: Value) -> Value {
    merged(&[
        json!({
            "state": state,
            "_version": "exampleaaaaaaaaaaaaaaa",
            "msg_ts": 1365109999,
            "user_id": 111
        }),
        extra,
    ])
}

/// `msg.opens` and `msg.clicks` as most samples carry them: the message's history, not
/// the event.
fn history() -> Value {
    json!({
        "opens": [{"ts": 1365111111}],
        "clicks": [{"ts": 1365111111, "url": "http://mandrill.com"}]
    })
}

fn no_history() -> Value {
    json!({"opens": [], "clicks": []})
}

/// `location` and `user_agent_parsed` of the open and click samples.
fn reader() -> Value {
    json!({
        "location": {
            "country_short": "US",
            "country": "United States",
            "region": "Oklahoma",
            "city": "Oklahoma City",
            "latitude": 35.4675598145,
            "longitude": -97.5164337158,
            "postal_code": "73101",
            "timezone": "-05:00"
        },
        "user_agent_parsed": {
            "type": "Email Client",
            "ua_family": "Postbox",
            "ua_name": "Postbox 1.1.3",
            "ua_version": "1.1.3",
            "ua_url": "http://www.postbox-inc.com/",
            "ua_company": "Postbox, Inc.",
            "ua_company_url": "http://www.postbox-inc.com/",
            "ua_icon": "http://cdn.mandrill.com/img/email-client-icons/postbox.png",
            "os_family": "OS X",
            "os_name": "OS X 10.6 Snow Leopard",
            "os_url": "http://www.apple.com/osx/",
            "os_company": "Apple Computer, Inc.",
            "os_company_url": "http://www.apple.com/",
            "os_icon": "http://cdn.mandrill.com/img/email-client-icons/macosx.png",
            "mobile": false
        }
    })
}

fn send() -> Expected {
    Expected {
        metadata: metadata("sent", no_history()),
        ..sample("send", "sent")
    }
}

fn deferral() -> Expected {
    // The reply is the last attempt's `diag`. A 4.3.5 "temporarily unavailable" names no
    // cause, and a deferral is not a bounce: no reason.
    Expected {
        smtp_code: Some(451),
        smtp_enhanced: Some("4.3.5"),
        smtp_response: Some("451 4.3.5 Temporarily unavailable, try again later."),
        metadata: metadata(
            "deferred",
            merged(&[
                no_history(),
                json!({"smtp_events": [{
                    "destination_ip": "127.0.0.1",
                    "diag": "451 4.3.5 Temporarily unavailable, try again later.",
                    "source_ip": "127.0.0.1",
                    "ts": 1365111111,
                    "type": "deferred",
                    "size": 0
                }]}),
            ]),
        ),
        ..sample("deferral", "deferred")
    }
}

fn hard_bounce() -> Expected {
    Expected {
        bounce_class: Some("hard"),
        reason: Some("invalid"),
        smtp_code: Some(550),
        smtp_enhanced: Some("5.1.1"),
        smtp_response: Some(
            "550 5.1.1 The email account that you tried to reach does not exist. Please try \
             double-checking the recipient's email address for typos or unnecessary spaces.",
        ),
        metadata: metadata(
            "bounced",
            json!({"bounce_description": "bad_mailbox", "bgtools_code": 10}),
        ),
        ..sample("hard_bounce", "bounce")
    }
}

fn soft_bounce() -> Expected {
    Expected {
        bounce_class: Some("soft"),
        reason: Some("bounced"),
        smtp_code: Some(552),
        smtp_enhanced: Some("5.2.2"),
        smtp_response: Some("552 5.2.2 Over Quota"),
        metadata: metadata(
            "soft-bounced",
            json!({"bounce_description": "mailbox_full", "bgtools_code": 22}),
        ),
        ..sample("soft_bounce", "bounce")
    }
}

fn open() -> Expected {
    Expected {
        ip: Some("127.0.0.1"),
        user_agent: Some(USER_AGENT),
        metadata: metadata("sent", merged(&[history(), reader()])),
        ..sample("open", "open")
    }
}

fn click() -> Expected {
    Expected {
        click_url: Some("http://mandrill.com"),
        ..Expected {
            provider_event: "click",
            kind: "click",
            ..open()
        }
    }
}

fn spam() -> Expected {
    Expected {
        reason: Some("spam"),
        metadata: metadata("sent", history()),
        ..sample("spam", "complaint")
    }
}

fn unsub() -> Expected {
    Expected {
        reason: Some("unsubscribed"),
        metadata: metadata("sent", history()),
        ..sample("unsub", "unsubscribe")
    }
}

fn reject() -> Expected {
    // The sample names no cause of the rejection.
    Expected {
        reason: Some("other"),
        metadata: metadata("rejected", no_history()),
        ..sample("reject", "dropped")
    }
}

/// A deny-list sync event of the test batch: no `_id`, no `msg`; the entry's fields are
/// metadata (its dates have no offset and stay text).
fn blacklist(action: &str, name: &'static str) -> Expected {
    Expected {
        provider_event: name,
        kind: "other",
        recipient: RECIPIENT,
        occurred_at: Some(AT),
        time_quality: "exact",
        metadata: json!({
            "type": "blacklist",
            "action": action,
            "reason": "hard-bounce",
            "detail": "Example detail",
            "last_event_at": "2014-02-01 12:43:56",
            "created_at": "2014-01-15 11:32:19",
            "expires_at": "2020-04-02 12:09:18",
            "expired": false,
            "subaccount": "example_subaccount",
            "sender": SENDER
        }),
        ..Expected::default()
    }
}

/// An allow-list sync event of the test batch (entry under `entry`).
fn whitelist(action: &str, name: &'static str) -> Expected {
    Expected {
        provider_event: name,
        kind: "other",
        recipient: RECIPIENT,
        occurred_at: Some(AT),
        time_quality: "exact",
        metadata: json!({
            "type": "whitelist",
            "action": action,
            "detail": "example details",
            "created_at": "2014-01-15 12:03:19"
        }),
        ..Expected::default()
    }
}

// ---------------------------------------------------------------------------------------
// One test per fixture.

#[tokio::test]
async fn mandrill_send_is_sent_not_delivered() {
    assert_fixture("mandrill/send.json", &[send()]).await;
}

#[tokio::test]
async fn mandrill_deferral_takes_its_reply_from_the_smtp_events() {
    assert_fixture("mandrill/deferral.json", &[deferral()]).await;
}

#[tokio::test]
async fn mandrill_hard_bounce_bad_mailbox_is_hard_and_invalid() {
    assert_fixture("mandrill/hard_bounce.json", &[hard_bounce()]).await;
}

#[tokio::test]
async fn mandrill_soft_bounce_mailbox_full_is_soft_and_bounced() {
    assert_fixture("mandrill/soft_bounce.json", &[soft_bounce()]).await;
}

#[tokio::test]
async fn mandrill_open_has_the_readers_ip_and_agent() {
    assert_fixture("mandrill/open.json", &[open()]).await;
}

#[tokio::test]
async fn mandrill_click_has_the_link() {
    assert_fixture("mandrill/click.json", &[click()]).await;
}

#[tokio::test]
async fn mandrill_spam_is_a_spam_complaint() {
    assert_fixture("mandrill/spam.json", &[spam()]).await;
}

#[tokio::test]
async fn mandrill_unsub_is_an_unsubscribe() {
    assert_fixture("mandrill/unsub.json", &[unsub()]).await;
}

#[tokio::test]
async fn mandrill_reject_without_a_cause_is_dropped_for_other() {
    assert_fixture("mandrill/reject.json", &[reject()]).await;
}

#[tokio::test]
async fn mandrill_blacklist_add_is_other_with_the_entry() {
    assert_fixture(
        "mandrill/blacklist_add.json",
        &[blacklist("add", "blacklist.add")],
    )
    .await;
}

#[tokio::test]
async fn mandrill_blacklist_change_is_other_with_the_entry() {
    assert_fixture(
        "mandrill/blacklist_change.json",
        &[blacklist("change", "blacklist.change")],
    )
    .await;
}

#[tokio::test]
async fn mandrill_blacklist_remove_is_other_with_the_entry() {
    assert_fixture(
        "mandrill/blacklist_remove.json",
        &[blacklist("remove", "blacklist.remove")],
    )
    .await;
}

#[tokio::test]
async fn mandrill_whitelist_add_reads_the_entry_object() {
    assert_fixture(
        "mandrill/whitelist_add.json",
        &[whitelist("add", "whitelist.add")],
    )
    .await;
}

#[tokio::test]
async fn mandrill_whitelist_remove_reads_the_entry_object() {
    assert_fixture(
        "mandrill/whitelist_remove.json",
        &[whitelist("remove", "whitelist.remove")],
    )
    .await;
}

/// Posts a fixture whose elements are all the same event: one is stored, the others are
/// duplicates. Returns the app and the stored event.
async fn post_repeated(fixture: &str) -> (TestApp, Value, Value) {
    let app = spawn_app().await;
    let (status, report) = app.post_fixture("mandrill", fixture).await;
    assert_eq!(status, 200, "{fixture}: {report}");
    let elements: Vec<Value> = serde_json::from_slice(&read_fixture(fixture)).unwrap();
    assert!(elements.len() > 1 && elements.iter().all(|e| *e == elements[0]));
    assert_eq!(report["accepted"], 1, "{report}");
    assert_eq!(report["duplicates"], elements.len() - 1, "{report}");
    assert_eq!(report["quarantined"], 0, "{report}");
    assert_eq!(report["warnings"], 0, "{report}");
    let id = report["event_ids"][0].as_str().unwrap().to_owned();
    let (status, event) = app.get(&format!("/api/events/{id}")).await;
    assert_eq!(status, 200, "{event}");
    (app, event, elements[0].clone())
}

#[tokio::test]
async fn mandrill_inbound_is_other_with_the_message_left_in_raw() {
    let (_app, event, element) = post_repeated("mandrill/set_aside/inbound.json").await;
    check(
        "mandrill",
        &event,
        &element,
        &Expected {
            provider_event: "inbound",
            kind: "other",
            // `msg.email`: where Mandrill received the message.
            recipient: "test@inbound.example.com",
            occurred_at: Some("2013-05-10T19:28:22Z"),
            time_quality: "exact",
            subject: Some("This is an example webhook message"),
            // `msg.sender` is null on inbound; `from_email` is who sent it.
            sender: Some(SENDER),
            // `raw_msg`, `html`, `text`, `headers` stay in raw only.
            metadata: json!({
                "dkim": {"signed": true, "valid": true},
                "spf": {"detail": "sender SPF authorized", "result": "pass"},
                "text_flowed": false,
                "to": [["test@inbound.example.com", null]],
                "spam_report": element["msg"]["spam_report"].clone()
            }),
            ..Expected::default()
        },
    );
    assert_eq!(
        event["raw"]["msg"]["text"],
        "This is an example inbound message.\n"
    );
}

#[tokio::test]
async fn mandrill_signed_click_capture_keeps_its_escaped_json() {
    // A 2013 capture: its own `_id` and `ts`, no top-level `_id` (message id from
    // `msg._id`), JSON with `\/` escapes (decoded in fields, kept in raw).
    let (app, event, element) = post_repeated("mandrill/set_aside/click_signed.json").await;
    check(
        "mandrill",
        &event,
        &element,
        &Expected {
            occurred_at: Some("2013-09-15T08:32:20Z"),
            message_id: Some("exampleaaaaaaaaaaaaaaaaaaaaaaaaa"),
            ..click()
        },
    );
    let id = event["id"].as_str().unwrap();
    let text = app
        .client
        .get(app.url(&format!("/api/events/{id}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains(r#""url":"http:\/\/mandrill.com""#), "{text}");
}

#[tokio::test]
async fn mandrill_every_top_level_fixture_stores_an_event_in_one_server() {
    // What the shared fixture test asks of each fixture, for Mandrill's alone: posted one
    // after the other into one server, each stores at least one event and sets nothing
    // aside (a fixture that only repeated another's events would store none).
    let app = spawn_app().await;
    let fixtures: Vec<String> = all_fixtures()
        .into_iter()
        .filter(|f| f.starts_with("mandrill/"))
        .collect();
    assert_eq!(fixtures.len(), 14, "{fixtures:?}");
    for fixture in &fixtures {
        let (status, report) = app.post_fixture("mandrill", fixture).await;
        assert_eq!(status, 200, "{fixture}: {report}");
        assert_eq!(report["quarantined"], 0, "{fixture}: {report}");
        assert!(
            report["accepted"].as_u64().unwrap() >= 1,
            "{fixture}: {report}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Fixtures set aside.

#[tokio::test]
async fn mandrill_test_batch_stores_message_and_sync_events_in_order() {
    // Mandrill's "send test" batch: nine message events and five sync events of one
    // sample message, all with the same `_id`; each is a distinct event.
    assert_fixture(
        "mandrill/set_aside/batch.json",
        &[
            send(),
            deferral(),
            hard_bounce(),
            soft_bounce(),
            open(),
            click(),
            spam(),
            unsub(),
            reject(),
            blacklist("add", "blacklist.add"),
            blacklist("change", "blacklist.change"),
            blacklist("remove", "blacklist.remove"),
            whitelist("add", "whitelist.add"),
            whitelist("remove", "whitelist.remove"),
        ],
    )
    .await;
}

/// Checks that `app` stored no event and quarantined nothing.
async fn assert_nothing_kept(app: &TestApp) {
    assert!(app.events("").await.is_empty());
    let (_, page) = app.get("/api/quarantine").await;
    assert_eq!(page["entries"], json!([]), "{page}");
}

#[tokio::test]
async fn mandrill_url_check_post_is_answered_and_stores_nothing() {
    // `mandrill_events=[]`: what Mandrill posts when its HEAD check of a new webhook URL
    // fails.
    let app = spawn_app().await;
    let (status, report) = app
        .post_fixture("mandrill", "mandrill/set_aside/empty.json")
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        report,
        json!({"accepted": 0, "duplicates": 0, "quarantined": 0, "event_ids": [], "warnings": 0})
    );
    assert_nothing_kept(&app).await;
}

// ---------------------------------------------------------------------------------------
// The URL check, form bodies and raw JSON.

#[tokio::test]
async fn mandrill_head_probe_answers_200_and_unknown_sources_404() {
    let app = spawn_app().await;
    let head = |path: &str| {
        let request = app.client.head(app.url(path));
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(head("/webhooks/mandrill").await, 200);
    assert_eq!(head("/webhooks/no-such-source").await, 404);
    assert_nothing_kept(&app).await;
}

/// Posts `body` with `content_type` to the Mandrill source; returns status and answer.
async fn post_body(app: &TestApp, content_type: &str, body: Vec<u8>) -> (u16, Value) {
    let response = app
        .client
        .post(app.url("/webhooks/mandrill"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

const FORM: &str = "application/x-www-form-urlencoded";

/// Posts a body that is refused whole and checks the answer and its quarantine entry.
async fn assert_refused(body: Vec<u8>, code: &str, message: &str) {
    let app = spawn_app().await;
    let (status, answer) = post_body(&app, FORM, body).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["code"], code, "{answer}");
    assert_eq!(answer["error"]["message"], message, "{answer}");
    let (_, page) = app.get("/api/quarantine").await;
    let entries = page["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 1, "{page}");
    assert_eq!(entries[0]["id"], answer["error"]["quarantine_id"], "{page}");
    assert_eq!(entries[0]["source"], "mandrill");
    assert_eq!(entries[0]["error"], message);
    assert!(entries[0].get("index").is_none(), "{page}");
    assert!(entries[0].get("element").is_none(), "{page}");
    assert!(entries[0]["body_id"].is_string(), "{page}");
    assert!(app.events("").await.is_empty());
}

#[tokio::test]
async fn mandrill_form_without_the_events_field_is_refused_and_kept() {
    assert_refused(
        b"events=%5B%5D&mandrill=1".to_vec(),
        "missing_form_field",
        "the form has no `mandrill_events` field",
    )
    .await;
}

#[tokio::test]
async fn mandrill_events_field_that_is_not_json_is_refused_and_kept() {
    assert_refused(
        signing::mandrill_form("[{\"event\": \"send\",]").into_bytes(),
        "malformed_json",
        "malformed JSON at line 1, column 19: key must be a string",
    )
    .await;
}

#[tokio::test]
async fn mandrill_events_field_that_is_not_utf8_is_refused_and_kept() {
    // Decoded to bytes, not repaired: the bad byte is reported where it is.
    assert_refused(
        b"mandrill_events=%5B%22%FF%22%5D".to_vec(),
        "invalid_utf8",
        "the body is not valid UTF-8 (first bad byte at offset 2)",
    )
    .await;
}

#[tokio::test]
async fn mandrill_empty_events_field_is_refused_as_empty() {
    assert_refused(
        b"mandrill_events=".to_vec(),
        "empty_body",
        "the body is empty",
    )
    .await;
}

#[tokio::test]
async fn mandrill_events_posted_as_raw_json_are_accepted() {
    // The array as the body (a replayed export), whatever the content type says.
    let app = spawn_app().await;
    let body = read_fixture("mandrill/send.json");
    let (status, report) = post_body(&app, "application/json", body.clone()).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["accepted"], 1, "{report}");
    let id = report["event_ids"][0].as_str().unwrap();
    let (_, event) = app.get(&format!("/api/events/{id}")).await;
    let elements: Vec<Value> = serde_json::from_slice(&body).unwrap();
    check("mandrill", &event, &elements[0], &send());
    // The same events through the form are the same events: duplicates.
    let (status, report) = app.post_fixture("mandrill", "mandrill/send.json").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (report["accepted"].clone(), report["duplicates"].clone()),
        (json!(0), json!(1))
    );
    // A single object, with a byte-order mark, as a form-typed request.
    let mut single = b"\xEF\xBB\xBF".to_vec();
    single.extend_from_slice(
        br#"{"event":"open","ts":1700000000,"msg":{"email":"one@example.com"}}"#,
    );
    let (status, report) = post_body(&app, FORM, single).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["accepted"], 1, "{report}");
}

#[tokio::test]
async fn mandrill_signed_source_checks_the_signature_and_passes_the_url_check() {
    let url = "https://mailwarden.example.com/webhooks/mandrill";
    let app = spawn_app_with(|config| {
        config.sources.insert(
            "mandrill".into(),
            SourceConfig {
                webhook_key: Some(Secret::new("own-key")),
                url: Some(url.into()),
                ..SourceConfig::new("mandrill")
            },
        );
    })
    .await;
    let post = |signature: Option<String>, events: String| {
        let mut request = app
            .client
            .post(app.url("/webhooks/mandrill"))
            .header("content-type", FORM)
            .body(signing::mandrill_form(&events));
        if let Some(signature) = signature {
            request = request.header("x-mandrill-signature", signature);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let events = String::from_utf8(read_fixture("mandrill/send.json")).unwrap();
    let sign = |key: &str, events: &str| {
        Some(signing::mandrill_signature(
            key,
            url,
            &[("mandrill_events", events)],
        ))
    };
    // The webhook's key signs the URL and the decoded field.
    let (status, report) = post(sign("own-key", &events), events.clone()).await;
    assert_eq!(
        (status, report["accepted"].clone()),
        (200, json!(1)),
        "{report}"
    );
    let (status, answer) = post(None, events.clone()).await;
    assert_eq!(status, 401, "{answer}");
    let (status, answer) = post(sign("other-key", &events), events.clone()).await;
    assert_eq!(status, 401, "{answer}");
    // HEAD needs no signature.
    let status = app
        .client
        .head(app.url("/webhooks/mandrill"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    // The URL check's POST is signed with the generic `test-webhook` key (vector computed
    // with Python's hmac): accepted, nothing stored.
    let (status, report) = post(Some("r3Qzso15D8EBTmmNHYZrXy4YIbg=".into()), "[]".into()).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["accepted"], 0, "{report}");
    // ...but that key signs nothing else.
    let (status, answer) = post(sign("test-webhook", &events), events.clone()).await;
    assert_eq!(status, 401, "{answer}");
    assert_eq!(app.events("").await.len(), 1);
}

// ---------------------------------------------------------------------------------------
// Bad and strange input.

/// Posts `body` (JSON text, sent as written) as Mandrill's form; returns the answer and
/// every event it stored.
async fn post_and_read(app: &TestApp, body: &str) -> (Value, Vec<Value>) {
    let (status, report) = post_body(app, FORM, signing::mandrill_form(body).into_bytes()).await;
    assert_eq!(status, 200, "{body}: {report}");
    let events = app.stored_events(&report).await;
    (report, events)
}

/// Checks each stored event against its element and expectation, in order.
fn check_all(events: &[Value], elements: &[Value], expected: &[Expected]) {
    assert_eq!(events.len(), expected.len());
    for ((event, element), expected) in events.iter().zip(elements).zip(expected) {
        check("mandrill", event, element, expected);
    }
}

#[tokio::test]
async fn mandrill_wrong_types_are_read_leniently_and_huge_ids_kept_exactly() {
    // Strings where Mandrill sends numbers and the reverse, a string where an array or
    // object belongs, an object where text belongs; an id too large for 64 bits.
    let body = r#"[{
        "event": "hard_bounce", "ts": "1700000000", "_id": 123456789012345678901234567890,
        "msg": {
            "email": "Typed@Example.COM", "sender": "Shop <News@Shop.Example>",
            "subject": {"text": "hi"}, "tags": "solo", "metadata": "not-an-object",
            "bounce_description": "general", "bgtools_code": "10", "_version": 3,
            "ts": 1365109999, "opens": "none", "smtp_events": {"type": "sent"},
            "diag": "smtp;550 5.7.1 Service unavailable; client host blocked using Spamhaus"
        }
    }]"#;
    let elements: Value = serde_json::from_str(body).unwrap();
    let app = spawn_app().await;
    let (report, events) = post_and_read(&app, body).await;
    assert_eq!(report["accepted"], 1, "{report}");
    check_all(
        &events,
        elements.as_array().unwrap(),
        &[Expected {
            provider_event: "hard_bounce",
            kind: "bounce",
            bounce_class: Some("hard"),
            // `general` names no cause: the reply's 5.7.1 and Spamhaus say blocked.
            reason: Some("blocked"),
            recipient: "Typed@example.com",
            occurred_at: Some(LATER),
            time_quality: "exact",
            message_id: Some("123456789012345678901234567890"),
            smtp_code: Some(550),
            smtp_enhanced: Some("5.7.1"),
            smtp_response: Some(
                "550 5.7.1 Service unavailable; client host blocked using Spamhaus",
            ),
            sender: Some("News@shop.example"),
            tags: &["solo"],
            metadata: json!({
                "bounce_description": "general",
                "bgtools_code": "10",
                "_version": 3,
                "msg_ts": 1365109999,
                "opens": "none",
                "smtp_events": {"type": "sent"}
            }),
            warnings: &[
                "field `msg.subject`: expected text, found an object; ignored",
                "field `msg.metadata`: expected an object, found a string; ignored",
            ],
            ..Expected::default()
        }],
    );
    let id = events[0]["id"].as_str().unwrap();
    let text = app
        .client
        .get(app.url(&format!("/api/events/{id}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // The raw event keeps the number as it was sent, every digit.
    assert!(
        text.contains(r#""_id": 123456789012345678901234567890,"#),
        "{text}"
    );
}

#[tokio::test]
async fn mandrill_bad_elements_are_quarantined_and_the_rest_kept() {
    let good = |recipient: &str| json!({"event": "send", "ts": 1700000000, "_id": "m1", "msg": {"email": recipient}});
    let body = json!([
        good("first@example.com"),
        {"event": "send", "ts": 1700000000, "msg": {"subject": "no recipient"}},
        {"event": "send", "msg": {"email": "not-an-address"}},
        {"event": "open", "ts": 1700000000},
        {"event": "click", "msg": "example@example.com"},
        {"type": "blacklist", "action": "add", "ts": 1700000000},
        {"type": "blacklist", "reject": {"email": "x@example.com"}},
        {"ts": 1700000000, "msg": {"email": "x@example.com"}},
        {"type": "whitelist", "action": "add", "entry": {"detail": "no email"}},
        42,
        [],
        good("last@example.com"),
    ]);
    let elements = body.as_array().unwrap().clone();
    let app = spawn_app().await;
    let (report, events) = post_and_read(&app, &body.to_string()).await;
    assert_eq!(report["accepted"], 2, "{report}");
    assert_eq!(report["quarantined"], 10, "{report}");
    let recipients: Vec<&Value> = events.iter().map(|e| &e["recipient"]).collect();
    assert_eq!(
        recipients,
        [&json!("first@example.com"), &json!("last@example.com")]
    );
    let expected: [(usize, &str); 10] = [
        (
            1,
            "no valid recipient address: none of `msg.email` is present",
        ),
        (
            2,
            "no valid recipient address: `msg.email`: `not-an-address`: address has no local \
             part and domain",
        ),
        (3, "a message event without a `msg` object"),
        (4, "a message event without a `msg` object"),
        (
            5,
            "a `blacklist` sync event without a `reject` or `entry` object",
        ),
        (
            6,
            "a sync event (no `event`) needs both `type` and `action`",
        ),
        (7, "missing event name (`event`)"),
        (
            8,
            "no valid recipient address: none of `entry.email` is present",
        ),
        (9, "expected an event object, found a number"),
        (10, "expected an event object, found an array"),
    ];
    let listed: Vec<(usize, &str)> = report["errors"]
        .as_array()
        .expect("errors")
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
    assert_eq!(entries.len(), 10, "{page}");
    for (index, error) in expected {
        let entry = entries
            .iter()
            .find(|entry| entry["index"] == index)
            .unwrap_or_else(|| panic!("no quarantine entry {index}: {page}"));
        assert_eq!(entry["source"], "mandrill");
        assert_eq!(entry["error"], error);
        assert_eq!(entry["element"], elements[index]);
    }
}

#[tokio::test]
async fn mandrill_unknown_names_are_other_with_a_warning_and_documented_ones_are_not() {
    let body = json!([
        {"event": "bounce_later", "ts": 1700000000, "_id": "m2", "msg": {"email": "who@example.com"}},
        {"type": "suppression", "action": "add", "ts": 1700000000,
         "reject": {"email": "who@example.com"}},
        // Newer docs' list names, and the entry of an allow-list event under `reject`.
        {"type": "denylist", "action": "add", "ts": 1700000000,
         "reject": {"email": "who@example.com", "reason": "custom"}},
        {"type": "allowlist", "action": "remove", "ts": 1700000000,
         "reject": {"email": "who@example.com"}},
        // Names are matched without case; no `ts`: the time is missing and said so.
        {"event": "SEND", "msg": {"email": "who@example.com"}},
        // Documented in the current docs, with no sample.
        {"event": "delivered", "ts": 1700000000, "_id": "m3",
         "msg": {"email": "who@example.com", "state": "delivered"}},
    ]);
    let elements = body.as_array().unwrap().clone();
    let app = spawn_app().await;
    let (report, events) = post_and_read(&app, &body.to_string()).await;
    assert_eq!(report["accepted"], 6, "{report}");
    assert_eq!(report["warnings"], 3, "{report}");
    let base = |event, kind| Expected {
        provider_event: event,
        kind,
        recipient: "who@example.com",
        occurred_at: Some(LATER),
        time_quality: "exact",
        ..Expected::default()
    };
    check_all(
        &events,
        &elements,
        &[
            Expected {
                message_id: Some("m2"),
                warnings: &["unknown event `bounce_later`; stored as `other`"],
                ..base("bounce_later", "other")
            },
            Expected {
                metadata: json!({"type": "suppression", "action": "add"}),
                warnings: &["unknown event `suppression.add`; stored as `other`"],
                ..base("suppression.add", "other")
            },
            Expected {
                metadata: json!({"type": "denylist", "action": "add", "reason": "custom"}),
                ..base("denylist.add", "other")
            },
            Expected {
                metadata: json!({"type": "allowlist", "action": "remove"}),
                ..base("allowlist.remove", "other")
            },
            Expected {
                occurred_at: None,
                time_quality: "missing",
                warnings: &["field `ts`: missing; time left empty"],
                ..base("SEND", "sent")
            },
            Expected {
                message_id: Some("m3"),
                metadata: json!({"state": "delivered"}),
                ..base("delivered", "delivered")
            },
        ],
    );
}

#[tokio::test]
async fn mandrill_bounce_and_reject_causes_come_from_the_documented_fields() {
    let msg = |extra: Value| merged(&[json!({"email": "who@example.com"}), extra]);
    let body = json!([
        // An asynchronous bounce: the only attempt was accepted (250) and `diag` is empty,
        // so there is no reply; the description still says why.
        {"event": "hard_bounce", "ts": 1700000000, "msg": msg(json!({
            "bounce_description": "bad_mailbox", "diag": "",
            "smtp_events": [{"type": "sent", "diag": "250 2.0.0 OK", "size": 19486}]
        }))},
        // No description: the reply of the last failed attempt decides.
        {"event": "soft_bounce", "ts": 1700000000, "msg": msg(json!({
            "smtp_events": [{"type": "deferred", "diag": "452 4.2.2 Mailbox full"}]
        }))},
        // A Postfix diagnostic without codes: its phrase says the user is unknown.
        {"event": "hard_bounce", "ts": 1700000000, "msg": msg(json!({
            "bounce_description": "general", "diag": "X-Postfix; unknown user: \"who\""
        }))},
        // A deferral whose reply names a cause keeps it.
        {"event": "deferral", "ts": 1700000000, "msg": msg(json!({
            "smtp_events": [
                {"type": "deferred", "diag": "451 4.3.5 later"},
                {"type": "deferred", "diag": "421 4.4.2 Connection timed out"}
            ]
        }))},
        // Rejections: the deny list's reason, else the description.
        {"event": "reject", "ts": 1700000000, "msg": msg(json!({
            "reject": {"reason": "unsigned", "last_event_at": "2024-01-01 00:00:00"}
        }))},
        {"event": "reject", "ts": 1700000000, "msg": msg(json!({
            "reject": {"reason": "hard-bounce"}
        }))},
        {"event": "reject", "ts": 1700000000, "msg": msg(json!({
            "bounce_description": "bad_mailbox"
        }))},
        {"event": "reject", "ts": 1700000000, "msg": msg(json!({
            "reject": {"reason": "custom"}, "diag": "kept in metadata"
        }))},
    ]);
    let elements = body.as_array().unwrap().clone();
    let app = spawn_app().await;
    let (report, events) = post_and_read(&app, &body.to_string()).await;
    assert_eq!(report["accepted"], 8, "{report}");
    let base = |event, kind, reason| Expected {
        provider_event: event,
        kind,
        reason,
        recipient: "who@example.com",
        occurred_at: Some(LATER),
        time_quality: "exact",
        ..Expected::default()
    };
    check_all(
        &events,
        &elements,
        &[
            Expected {
                bounce_class: Some("hard"),
                metadata: json!({
                    "bounce_description": "bad_mailbox",
                    "smtp_events": [{"type": "sent", "diag": "250 2.0.0 OK", "size": 19486}]
                }),
                ..base("hard_bounce", "bounce", Some("invalid"))
            },
            Expected {
                bounce_class: Some("soft"),
                smtp_code: Some(452),
                smtp_enhanced: Some("4.2.2"),
                smtp_response: Some("452 4.2.2 Mailbox full"),
                metadata: json!({
                    "smtp_events": [{"type": "deferred", "diag": "452 4.2.2 Mailbox full"}]
                }),
                ..base("soft_bounce", "bounce", Some("bounced"))
            },
            Expected {
                bounce_class: Some("hard"),
                smtp_response: Some("unknown user: \"who\""),
                metadata: json!({"bounce_description": "general"}),
                ..base("hard_bounce", "bounce", Some("invalid"))
            },
            Expected {
                smtp_code: Some(421),
                smtp_enhanced: Some("4.4.2"),
                smtp_response: Some("421 4.4.2 Connection timed out"),
                metadata: json!({"smtp_events": [
                    {"type": "deferred", "diag": "451 4.3.5 later"},
                    {"type": "deferred", "diag": "421 4.4.2 Connection timed out"}
                ]}),
                ..base("deferral", "deferred", Some("timed_out"))
            },
            Expected {
                metadata: json!({"reject": {
                    "reason": "unsigned", "last_event_at": "2024-01-01 00:00:00"
                }}),
                ..base("reject", "dropped", Some("blocked"))
            },
            Expected {
                metadata: json!({"reject": {"reason": "hard-bounce"}}),
                ..base("reject", "dropped", Some("invalid"))
            },
            Expected {
                metadata: json!({"bounce_description": "bad_mailbox"}),
                ..base("reject", "dropped", Some("invalid"))
            },
            Expected {
                metadata: json!({"reject": {"reason": "custom"}, "diag": "kept in metadata"}),
                ..base("reject", "dropped", Some("other"))
            },
        ],
    );
}

#[tokio::test]
async fn mandrill_custom_metadata_never_overwrites_mandrills_fields() {
    let body = json!([{
        "event": "open", "ts": 1700000000, "_id": "m4", "ip": "192.0.2.7",
        "location": {"city": "Oslo"},
        "msg": {"email": "who@example.com", "state": "sent",
                "metadata": {"state": "mine", "location": "home", "order": "42"}}
    }]);
    let elements = body.as_array().unwrap().clone();
    let app = spawn_app().await;
    let (_, events) = post_and_read(&app, &body.to_string()).await;
    check_all(
        &events,
        &elements,
        &[Expected {
            provider_event: "open",
            kind: "open",
            recipient: "who@example.com",
            occurred_at: Some(LATER),
            time_quality: "exact",
            message_id: Some("m4"),
            ip: Some("192.0.2.7"),
            metadata: json!({"state": "sent", "location": {"city": "Oslo"}, "order": "42"}),
            warnings: &[
                "field `msg.metadata.location`: same name as a Mandrill field; the custom \
                 value is kept in raw only",
                "field `msg.metadata.state`: same name as a Mandrill field; the custom value \
                 is kept in raw only",
            ],
            ..Expected::default()
        }],
    );
}

#[tokio::test]
async fn mandrill_hostile_strings_are_clipped_and_kept_in_raw() {
    let long = "x".repeat(100_000);
    let controls = "a\u{0}b\u{7}c\u{1b}[31md\u{7f}e\u{2028}f\u{feff}";
    let body = json!([
        {"event": "click", "ts": 1700000000, "_id": controls,
         "url": long, "user_agent": long, "ip": long,
         "msg": {"email": "h@example.com", "subject": long, "sender": long,
                 "tags": [long, "  ", controls]}},
        {"event": "é".repeat(10_000), "ts": 1700000000,
         "msg": {"email": "h@example.com", "bounce_description": long}},
        {"event": "send", "ts": 1700000000,
         "msg": {"email": format!("{}@example.com", "a".repeat(5_000))}},
        {"event": "send", "ts": 1700000000, "msg": {"email": "a\u{0}b@example.com"}},
        {"type": "blacklist", "action": long, "ts": 1700000000,
         "reject": {"email": "h@example.com"}},
    ]);
    let app = spawn_app().await;
    let (report, events) = post_and_read(&app, &body.to_string()).await;
    assert_eq!(report["accepted"], 3, "{report}");
    assert_eq!(report["quarantined"], 2, "{report}");
    let chars = |value: &Value| value.as_str().unwrap().chars().count();
    for field in ["subject", "user_agent", "click_url"] {
        assert_eq!(chars(&events[0][field]), 2000, "{field}");
    }
    assert_eq!(chars(&events[0]["sender"]), 320);
    assert_eq!(chars(&events[0]["ip"]), 64);
    assert_eq!(events[0]["message_id"], controls);
    assert_eq!(chars(&events[0]["tags"][0]), 2000);
    assert_eq!(events[0]["tags"][1], controls.trim());
    assert_eq!(chars(&events[0]["raw"]["msg"]["subject"]), 100_000);
    assert_eq!(events[1]["kind"], "other");
    assert_eq!(chars(&events[1]["provider_event"]), 200);
    assert!(events[1]["warnings"][0].as_str().unwrap().len() < 300);
    assert_eq!(chars(&events[1]["metadata"]["bounce_description"]), 200);
    assert_eq!(events[2]["kind"], "other");
    assert_eq!(chars(&events[2]["provider_event"]), 200);
    // The over-long action stays whole in metadata (under the size limit it is copied).
    assert!(
        events[2]["metadata"]
            .get("action")
            .is_none_or(|a| a.is_string())
    );
    let errors = report["errors"].as_array().unwrap();
    assert_eq!(errors[0]["index"], 2);
    assert_eq!(
        errors[0]["error"],
        "no valid recipient address: `msg.email`: `aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa`: address is too long"
    );
    assert_eq!(errors[1]["index"], 3);
    assert!(
        errors[1]["error"]
            .as_str()
            .unwrap()
            .starts_with("no valid recipient address: `msg.email`: "),
        "{report}"
    );
}
