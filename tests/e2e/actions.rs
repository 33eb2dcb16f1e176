//! The action workers end to end: alert mail through a real SMTP conversation (throttling
//! and digests, retries while the server is down, logging without SMTP) and outbound HTTP
//! calls (Standard Webhooks signatures, retries with stable ids, dead letters and manual
//! retry, the SSRF guard, survival across a restart).

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use mailwarden::config::{Config, Secret, SmtpConfig, SmtpTls};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::helpers::{TestApp, eventually, read_fixture, spawn_app_with};
use crate::sinks::{HttpReceiver, Recorded, SmtpSink};

// ---------------------------------------------------------------------------------------
// Helpers.

/// The signing key, as `whsec_` + base64 (the Standard Webhooks form).
const SIGNING_KEY: &[u8] = b"mailwarden-test-signing-key-0001";

fn signing_secret() -> String {
    format!("whsec_{}", BASE64.encode(SIGNING_KEY))
}

/// Points alerts at the SMTP sink on `port`.
pub(crate) fn use_smtp(config: &mut Config, port: u16) {
    config.alerts.smtp = Some(SmtpConfig {
        host: "127.0.0.1".into(),
        port: Some(port),
        tls: SmtpTls::None,
        username: None,
        password: None,
        from: "mailwarden@example.com".into(),
        timeout_secs: 5,
    });
    config.alerts.to = vec!["team@example.com".into()];
}

/// Retries after about a second each, a dozen times.
pub(crate) fn fast_retries(config: &mut Config) {
    config.outbound.retry_schedule_secs = vec![0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1];
}

/// Writes `<dir>/<name>.rhai`.
pub(crate) fn write_rule(dir: &Path, name: &str, source: &str) {
    std::fs::write(dir.join(format!("{name}.rhai")), source).expect("rule written");
}

/// The rule of the issue: POST the recipient to `config.hook`.
const HOOK_RULE: &str = "// on: bounce\nhttp_post(config.hook, #{recipient: event.recipient});\n";

/// An app whose `hook` rule posts bounces to `url`, signed, with 127.0.0.1 allowed.
pub(crate) async fn spawn_hook_app(url: &str, adjust: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_with(|config| {
        config.rules.vars.insert("hook".into(), json!(url));
        config.outbound.allow = vec!["127.0.0.1/32".into()];
        config.outbound.signing_secret = Some(Secret::new(signing_secret()));
        fast_retries(config);
        write_rule(&config.rules_dir, "hook", HOOK_RULE);
        adjust(config);
    })
    .await
}

/// Posts a body holding one event; returns its id.
pub(crate) async fn post_one(
    app: &TestApp,
    source: &str,
    body: impl Into<reqwest::Body>,
) -> String {
    let (status, answer) = app.post(source, body).await;
    assert_eq!(status, 200, "{answer}");
    let ids = answer["event_ids"].as_array().expect("event_ids");
    assert_eq!(ids.len(), 1, "{answer}");
    ids[0].as_str().expect("id").to_owned()
}

/// The actions of `/api/outbox?status={status}`.
pub(crate) async fn outbox(app: &TestApp, status: &str) -> Vec<Value> {
    let (code, page) = app
        .get(&format!("/api/outbox?status={status}&limit=1000"))
        .await;
    assert_eq!(code, 200, "{page}");
    page["actions"].as_array().expect("actions").clone()
}

/// Waits until nothing is pending in the outbox.
pub(crate) async fn outbox_drained(app: &TestApp) {
    eventually("the outbox to drain", || async {
        outbox(app, "pending").await.is_empty().then_some(())
    })
    .await;
}

/// The alert log, newest first.
async fn alerts(app: &TestApp) -> Vec<Value> {
    let (status, page) = app.get("/api/alerts?limit=1000").await;
    assert_eq!(status, 200, "{page}");
    page["alerts"].as_array().expect("alerts").clone()
}

/// Checks the Standard Webhooks headers of a request: id, timestamp and a `v1` signature
/// over `{id}.{timestamp}.{body}` with the signing key.
fn assert_signed(request: &Recorded) {
    let id = request.header("webhook-id").expect("webhook-id");
    let timestamp = request
        .header("webhook-timestamp")
        .expect("webhook-timestamp");
    assert!(
        timestamp.parse::<i64>().is_ok(),
        "webhook-timestamp is Unix seconds: {timestamp}"
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(SIGNING_KEY).expect("any key length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(&request.body);
    let expected = format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()));
    let header = request
        .header("webhook-signature")
        .expect("webhook-signature");
    assert!(
        header.split(' ').any(|signature| signature == expected),
        "signature {header}, expected {expected}"
    );
}

// ---------------------------------------------------------------------------------------
// Alerts.

#[tokio::test]
async fn an_alert_is_mailed_with_prefix_headers_rule_and_event() {
    let smtp = SmtpSink::start().await;
    let app = spawn_app_with(|config| {
        use_smtp(config, smtp.port);
        config.public_url = Some("https://warden.example.com/".into());
        write_rule(
            &config.rules_dir,
            "notify",
            "// on: bounce\nalert(\"Bounce from \" + event.recipient, \"Look into \" + event.recipient + \".\");\n",
        );
    })
    .await;
    let id = post_one(
        &app,
        "sendpulse",
        read_fixture("sendpulse/hard_bounces.json"),
    )
    .await;

    let mails = smtp.wait_for(1).await;
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert_eq!(mail.from, "mailwarden@example.com");
    assert_eq!(mail.to, ["team@example.com"]);
    assert_eq!(
        mail.header("Subject").as_deref(),
        Some("[mailwarden] Bounce from example@example.com"),
        "{}",
        mail.data
    );
    assert!(
        mail.header("From")
            .is_some_and(|from| from.contains("mailwarden@example.com")),
        "{}",
        mail.data
    );
    assert!(
        mail.header("To")
            .is_some_and(|to| to.contains("team@example.com")),
        "{}",
        mail.data
    );
    let body = mail.body();
    for expected in [
        "Look into example@example.com.".to_owned(),
        "Rule: notify".to_owned(),
        format!("Event: {id}"),
        "Kind: bounce".to_owned(),
        "Recipient: example@example.com".to_owned(),
        "Source: sendpulse (sendpulse)".to_owned(),
        format!("Details: https://warden.example.com/api/events/{id}"),
    ] {
        assert!(body.contains(&expected), "no `{expected}` in:\n{body}");
    }

    outbox_drained(&app).await;
    let log = alerts(&app).await;
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0]["status"], "sent");
    assert_eq!(log[0]["rule"], "notify");
    assert_eq!(log[0]["event_id"], id.as_str());
    assert_eq!(log[0]["to"], json!(["team@example.com"]));
    assert_eq!(
        log[0]["subject"],
        "[mailwarden] Bounce from example@example.com"
    );
}

#[tokio::test]
async fn alert_text_cannot_add_headers_or_end_the_message_early() {
    let smtp = SmtpSink::start().await;
    let app = spawn_app_with(|config| {
        use_smtp(config, smtp.port);
        write_rule(
            &config.rules_dir,
            "notify",
            "// on: complaint\n\
             alert(#{to: [\"ops@example.com\", \"lead@example.com\"],\n\
                     subject: \"Complaint: \" + event.subject,\n\
                     body: \"before\\n.\\nafter\\n..two dots\\nQUIT\"});\n",
        );
    })
    .await;
    let body = json!([{"event": "spam_by_user", "timestamp": 1_700_000_000,
        "recipient": "reader@example.com",
        "subject": "hello\r\nBcc: evil@example.com\r\nX-Injected: yes"}]);
    post_one(&app, "sendpulse", body.to_string()).await;

    let mails = smtp.wait_for(1).await;
    let mail = &mails[0];
    assert_eq!(
        mail.to,
        ["ops@example.com", "lead@example.com"],
        "{}",
        mail.data
    );
    assert_eq!(mail.header("Bcc"), None, "{}", mail.data);
    assert_eq!(mail.header("X-Injected"), None, "{}", mail.data);
    // The line breaks stay inside the (RFC 2047 encoded) subject.
    assert!(
        mail.header("Subject")
            .is_some_and(|subject| subject.starts_with("[mailwarden] Complaint: ")),
        "{}",
        mail.data
    );
    let text = mail.body();
    assert!(
        text.starts_with("before\n.\nafter\n..two dots\nQUIT\n"),
        "dot-stuffed lines come back intact:\n{text}"
    );
    outbox_drained(&app).await;
    assert_eq!(smtp.mails().len(), 1);
}

#[tokio::test]
async fn fifty_complaints_make_one_mail_and_one_digest() {
    let smtp = SmtpSink::start().await;
    // The shipped complaint rule with a 3-second window instead of an hour, so the
    // digest arrives while the test waits.
    let shipped =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/complaint.rhai"))
            .expect("shipped complaint rule");
    assert!(shipped.contains("once_per: hours(1)"), "{shipped}");
    let fast = shipped.replace("once_per: hours(1)", "once_per: 3");
    let app = spawn_app_with(|config| {
        use_smtp(config, smtp.port);
        write_rule(&config.rules_dir, "complaint", &fast);
    })
    .await;

    let batch: Vec<Value> = (0..50)
        .map(|n| {
            json!({"event": "spam_by_user", "timestamp": 1_700_000_000 + n,
                   "message_id": 1_000 + n, "recipient": format!("reader{n}@example.com"),
                   "sender": "news@example.com", "subject": "Weekly news"})
        })
        .collect();
    let (status, answer) = app.post("sendpulse", Value::Array(batch).to_string()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"], 50, "{answer}");

    let mails = smtp.wait_for(2).await;
    outbox_drained(&app).await;
    let mails_now = smtp.mails();
    assert_eq!(mails_now.len(), 2, "{mails_now:#?}");
    let first = mails[0].header("Subject").expect("subject");
    assert!(
        first.starts_with("[mailwarden] Spam complaint from reader"),
        "{first}"
    );
    let digest = mails[1].header("Subject").expect("subject");
    assert!(
        digest.starts_with("[mailwarden] 49 more alerts like \"Spam complaint from reader"),
        "{digest}"
    );
    let body = mails[1].body();
    assert!(
        body.contains("49 more alerts with key \"complaint:sendpulse\""),
        "{body}"
    );
    assert!(body.contains("rule complaint"), "{body}");
    for mail in &mails_now {
        assert_eq!(mail.to, ["team@example.com"]);
    }

    let log = alerts(&app).await;
    let count = |status: &str| log.iter().filter(|a| a["status"] == status).count();
    assert_eq!(count("sent"), 2, "{log:?}");
    assert_eq!(count("folded"), 49, "{log:?}");

    // Every complaint still suppressed its address.
    for n in [0, 25, 49] {
        let (status, entry) = app
            .get(&format!("/api/suppressions/reader{n}@example.com"))
            .await;
        assert_eq!(status, 200, "{entry}");
        assert_eq!(entry["rule"], "complaint");
    }
}

#[tokio::test]
async fn an_alert_waits_while_smtp_is_down_and_goes_out_once_it_is_up() {
    let smtp = SmtpSink::start_down().await;
    let app = spawn_app_with(|config| {
        use_smtp(config, smtp.port);
        fast_retries(config);
        write_rule(
            &config.rules_dir,
            "notify",
            "// on: bounce\nalert(\"Bounce\", event.recipient);\n",
        );
    })
    .await;
    post_one(
        &app,
        "sendpulse",
        read_fixture("sendpulse/hard_bounces.json"),
    )
    .await;

    let pending = eventually("a failed attempt", || async {
        outbox(&app, "pending")
            .await
            .into_iter()
            .find(|action| action["last_error"].is_string())
    })
    .await;
    assert_eq!(pending["action"]["type"], "alert", "{pending}");
    assert_eq!(pending["status"], "pending", "{pending}");
    assert!(pending["attempts"].as_u64() >= Some(1), "{pending}");
    let error = pending["last_error"].as_str().expect("text");
    assert!(error.contains("SMTP"), "{error}");
    assert!(smtp.refused() >= 1);
    assert!(smtp.mails().is_empty());
    assert!(outbox(&app, "dead").await.is_empty());

    smtp.bring_up();
    let mails = smtp.wait_for(1).await;
    assert_eq!(
        mails[0].header("Subject").as_deref(),
        Some("[mailwarden] Bounce")
    );
    outbox_drained(&app).await;
    assert_eq!(smtp.mails().len(), 1, "delivered once");
    let log = alerts(&app).await;
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0]["status"], "sent");
}

#[tokio::test]
async fn without_smtp_alerts_are_logged() {
    let app = spawn_app_with(|config| {
        config.alerts.to = vec!["team@example.com".into()];
        write_rule(
            &config.rules_dir,
            "notify",
            "// on: bounce\nalert(\"Bounce from \" + event.recipient, \"details\");\n",
        );
    })
    .await;
    let id = post_one(
        &app,
        "sendpulse",
        read_fixture("sendpulse/hard_bounces.json"),
    )
    .await;
    let log = eventually("the alert to be logged", || async {
        let log = alerts(&app).await;
        (!log.is_empty()).then_some(log)
    })
    .await;
    assert_eq!(log.len(), 1, "{log:?}");
    let alert = &log[0];
    assert_eq!(alert["status"], "logged", "{alert}");
    assert_eq!(alert["rule"], "notify");
    assert_eq!(alert["event_id"], id.as_str());
    assert_eq!(alert["to"], json!(["team@example.com"]));
    assert_eq!(
        alert["subject"],
        "[mailwarden] Bounce from example@example.com"
    );
    let body = alert["body"].as_str().expect("body");
    assert!(body.starts_with("details"), "{body}");
    assert!(body.contains("Rule: notify"), "{body}");
    outbox_drained(&app).await;
}

// ---------------------------------------------------------------------------------------
// Outbound HTTP.

#[tokio::test]
async fn http_post_delivers_a_signed_body() {
    let receiver = HttpReceiver::start(&[]).await;
    let app = spawn_hook_app(&receiver.url("/hooks/mail?x=1"), |_| {}).await;
    post_one(
        &app,
        "sendpulse",
        read_fixture("sendpulse/hard_bounces.json"),
    )
    .await;

    let requests = receiver.wait_for(1).await;
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/hooks/mail?x=1");
    assert_eq!(request.json(), json!({"recipient": "example@example.com"}));
    assert_eq!(
        request.header("content-type").as_deref(),
        Some("application/json")
    );
    let id = request.header("webhook-id").expect("webhook-id");
    assert_eq!(request.header("idempotency-key"), Some(id));
    assert_signed(request);

    outbox_drained(&app).await;
    assert!(outbox(&app, "dead").await.is_empty());
    assert_eq!(receiver.requests().len(), 1);
}

#[tokio::test]
async fn http_post_retries_503_with_the_same_ids_until_200() {
    let receiver = HttpReceiver::start(&[503, 503, 200]).await;
    let app = spawn_hook_app(&receiver.url("/hook"), |_| {}).await;
    post_one(
        &app,
        "sendpulse",
        read_fixture("sendpulse/hard_bounces.json"),
    )
    .await;

    let requests = receiver.wait_for(3).await;
    outbox_drained(&app).await;
    let requests_now = receiver.requests();
    assert_eq!(requests_now.len(), 3, "{requests_now:#?}");
    let statuses: Vec<u16> = requests.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [503, 503, 200]);
    let key = requests[0].header("idempotency-key").expect("key");
    for request in &requests {
        assert_eq!(request.header("idempotency-key").as_ref(), Some(&key));
        assert_eq!(request.header("webhook-id").as_ref(), Some(&key));
        assert_eq!(request.body, requests[0].body);
        assert_signed(request);
    }
    assert!(outbox(&app, "dead").await.is_empty());
}

#[tokio::test]
async fn http_post_400_is_dead_lettered_and_can_be_retried() {
    let receiver = HttpReceiver::start(&[400]).await;
    let app = spawn_hook_app(&receiver.url("/hook"), |_| {}).await;
    post_one(
        &app,
        "sendpulse",
        read_fixture("sendpulse/hard_bounces.json"),
    )
    .await;

    let dead = eventually("a dead letter", || async {
        outbox(&app, "dead").await.into_iter().next()
    })
    .await;
    assert_eq!(receiver.requests().len(), 1, "no retry after a 400");
    assert_eq!(dead["status"], "dead", "{dead}");
    assert_eq!(dead["rule"], "hook");
    assert_eq!(dead["attempts"], 1, "{dead}");
    assert!(
        dead["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("HTTP 400")),
        "{dead}"
    );
    assert!(outbox(&app, "pending").await.is_empty());

    let id = dead["id"].as_str().expect("action id");
    let (status, answer) = app
        .post_json(&format!("/api/outbox/{id}/retry"), &json!({}))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["action"]["status"], "pending", "{answer}");

    let requests = receiver.wait_for(2).await;
    assert_eq!(requests[1].status, 200);
    assert_eq!(
        requests[1].header("idempotency-key"),
        requests[0].header("idempotency-key")
    );
    outbox_drained(&app).await;
    assert!(outbox(&app, "dead").await.is_empty());
    assert_eq!(receiver.requests().len(), 2);

    let (status, answer) = app.post_json("/api/outbox/evt_1/retry", &json!({})).await;
    assert_eq!(status, 404, "{answer}");
}

#[tokio::test]
async fn the_guard_refuses_metadata_and_loopback_that_is_not_allowed() {
    let receiver = HttpReceiver::start(&[]).await;
    let port = receiver.address.port();
    let app = spawn_app_with(|config| {
        config.rules.vars.insert(
            "urls".into(),
            json!([
                "http://169.254.169.254/latest/meta-data",
                // The same address as a decimal number and IPv4-mapped IPv6.
                "http://2852039166/latest/meta-data",
                "http://[::ffff:169.254.169.254]/latest/meta-data",
                format!("http://127.0.0.1:{port}/hook"),
                format!("http://localhost:{port}/hook"),
            ]),
        );
        fast_retries(config);
        write_rule(
            &config.rules_dir,
            "hooks",
            "// on: bounce\nfor url in config.urls { http_post(url, #{recipient: event.recipient}); }\n",
        );
    })
    .await;
    post_one(
        &app,
        "sendpulse",
        read_fixture("sendpulse/hard_bounces.json"),
    )
    .await;

    let dead = eventually("five dead letters", || async {
        let dead = outbox(&app, "dead").await;
        (dead.len() >= 5).then_some(dead)
    })
    .await;
    assert_eq!(dead.len(), 5, "{dead:#?}");
    for action in &dead {
        let url = action["action"]["url"].as_str().expect("url");
        let error = action["last_error"].as_str().unwrap_or_default();
        assert!(error.contains("outbound address guard"), "{url}: {error}");
        assert_eq!(action["attempts"], 1, "{action}");
    }
    let metadata = dead
        .iter()
        .find(|a| a["action"]["url"] == "http://169.254.169.254/latest/meta-data")
        .expect("metadata call");
    assert!(
        metadata["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("169.254.169.254")),
        "{metadata}"
    );
    assert!(outbox(&app, "pending").await.is_empty());
    assert!(receiver.requests().is_empty(), "the receiver got nothing");
}

#[tokio::test]
async fn a_pending_call_survives_a_restart_and_is_delivered_once() {
    let receiver = HttpReceiver::start(&[]).await;
    receiver.set_fallback(503);
    let mut app = spawn_hook_app(&receiver.url("/hook"), |config| {
        // The next attempt would be in an hour: only a retry through the API brings it
        // forward.
        config.outbound.retry_schedule_secs = vec![0, 3_600, 3_600];
    })
    .await;
    post_one(
        &app,
        "sendpulse",
        read_fixture("sendpulse/hard_bounces.json"),
    )
    .await;

    let pending = eventually("a failed attempt", || async {
        outbox(&app, "pending")
            .await
            .into_iter()
            .find(|action| action["attempts"] == 1)
    })
    .await;
    assert!(
        pending["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("HTTP 503")),
        "{pending}"
    );
    let id = pending["id"].as_str().expect("action id").to_owned();

    app.restart().await;
    let after = outbox(&app, "pending").await;
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0]["id"], id.as_str());
    assert_eq!(after[0]["attempts"], 1);
    assert_eq!(receiver.requests().len(), 1, "not retried early");

    receiver.set_fallback(200);
    let (status, answer) = app
        .post_json(&format!("/api/outbox/{id}/retry"), &json!({}))
        .await;
    assert_eq!(status, 200, "{answer}");
    let requests = receiver.wait_for(2).await;
    outbox_drained(&app).await;
    let requests_now = receiver.requests();
    assert_eq!(requests_now.len(), 2, "{requests_now:#?}");
    let statuses: Vec<u16> = requests.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [503, 200], "exactly one successful delivery");
    assert_eq!(
        requests[0].header("idempotency-key"),
        requests[1].header("idempotency-key")
    );
    assert_signed(&requests[1]);
    assert!(outbox(&app, "dead").await.is_empty());
}
