//! Verification through the real server: for every provider that signs, a valid signature
//! is stored, and a tampered body, a stale timestamp, a wrong key and a missing signature
//! are refused with `401` and their reason code, storing nothing (no event, no quarantine
//! entry) and counting `mailwarden_auth_failures_total{source,reason}`.

use jiff::Timestamp;
use serde_json::Value;

use crate::helpers::{TestApp, read_fixture, spawn_app_with};
use crate::signing;
use mailwarden::config::{Secret, SourceConfig};

/// Posts `body` with `headers` to `/webhooks/{path}`; returns status and JSON answer.
pub async fn post_with_headers(
    app: &TestApp,
    path: &str,
    content_type: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> (u16, Value) {
    let mut request = app
        .client
        .post(app.url(&format!("/webhooks/{path}")))
        .header("content-type", content_type)
        .body(body);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = request.send().await.expect("request is sent");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON answer"))
}

/// Asserts a refusal with `code`, and that nothing at all was stored.
pub async fn assert_refused(app: &TestApp, answer: (u16, Value), code: &str) {
    let (status, body) = answer;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(app.events("").await.is_empty(), "nothing is stored");
    let (_, quarantine) = app.get("/api/quarantine").await;
    assert_eq!(
        quarantine["entries"].as_array().map(Vec::len),
        Some(0),
        "{quarantine}"
    );
}

/// Returns the value of `mailwarden_auth_failures_total` for `source` and `reason`.
pub async fn auth_failures(app: &TestApp, source: &str, reason: &str) -> u64 {
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .filter(|line| line.starts_with("mailwarden_auth_failures_total{"))
        .filter(|line| {
            line.contains(&format!("source=\"{source}\""))
                && line.contains(&format!("reason=\"{reason}\""))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn now() -> i64 {
    Timestamp::now().as_second()
}

// ---------------------------------------------------------------------------------------
// Mailgun: HMAC-SHA256 of timestamp and token, in the body.

const MAILGUN_KEY: &str = "key-mailwarden-test-signing";

async fn mailgun_app() -> TestApp {
    spawn_app_with(|config| {
        config.sources.insert(
            "mg-eu".into(),
            SourceConfig {
                signing_key: Some(Secret::new(MAILGUN_KEY)),
                ..SourceConfig::new("mailgun")
            },
        );
    })
    .await
}

fn mailgun_body(key: &str, timestamp: i64, token: &str) -> Vec<u8> {
    signing::mailgun_sign_body(
        &read_fixture("mailgun/failed_permanent_bounce.json"),
        key,
        timestamp,
        token,
    )
}

async fn post_mailgun(app: &TestApp, body: Vec<u8>) -> (u16, Value) {
    post_with_headers(app, "mg-eu", "application/json", &[], body).await
}

#[tokio::test]
async fn mailgun_valid_signature_is_stored() {
    let app = mailgun_app().await;
    let (status, report) =
        post_mailgun(&app, mailgun_body(MAILGUN_KEY, now(), &"a".repeat(50))).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["accepted"], 1, "{report}");
    let events = app.events("").await;
    assert_eq!(events[0]["kind"], "bounce");
    assert_eq!(events[0]["source"], "mg-eu");
    assert!(
        events[0]["metadata"].get("signature").is_none(),
        "the signature block is transport, not metadata: {}",
        events[0]
    );
}

#[tokio::test]
async fn mailgun_tampered_signature_is_401_bad_signature() {
    let app = mailgun_app().await;
    let mut body: Value =
        serde_json::from_slice(&mailgun_body(MAILGUN_KEY, now(), &"b".repeat(50))).unwrap();
    // The token is what is signed: change it and keep the signature.
    body["signature"]["token"] = "c".repeat(50).into();
    // The counter is process-wide and tests run in parallel: it must have grown.
    let before = auth_failures(&app, "mg-eu", "bad_signature").await;
    let answer = post_mailgun(&app, serde_json::to_vec(&body).unwrap()).await;
    assert_refused(&app, answer, "bad_signature").await;
    assert!(auth_failures(&app, "mg-eu", "bad_signature").await > before);
}

#[tokio::test]
async fn mailgun_wrong_key_is_401_bad_signature() {
    let app = mailgun_app().await;
    let answer = post_mailgun(
        &app,
        mailgun_body("key-someone-else", now(), &"d".repeat(50)),
    )
    .await;
    assert_refused(&app, answer, "bad_signature").await;
}

#[tokio::test]
async fn mailgun_stale_timestamp_is_401_stale_timestamp() {
    let app = mailgun_app().await;
    // Signed correctly, two hours ago: older than the default hour.
    let before = auth_failures(&app, "mg-eu", "stale_timestamp").await;
    let answer = post_mailgun(
        &app,
        mailgun_body(MAILGUN_KEY, now() - 7_200, &"e".repeat(50)),
    )
    .await;
    assert_refused(&app, answer, "stale_timestamp").await;
    assert!(auth_failures(&app, "mg-eu", "stale_timestamp").await > before);
}

#[tokio::test]
async fn mailgun_missing_signature_is_401_missing_signature() {
    let app = mailgun_app().await;
    let answer = post_mailgun(&app, read_fixture("mailgun/delivered.json")).await;
    // The fixture has the documentation's placeholder signature: it does not verify.
    assert_refused(&app, answer, "bad_signature").await;
    let mut body: Value = serde_json::from_slice(&read_fixture("mailgun/delivered.json")).unwrap();
    body.as_object_mut().unwrap().remove("signature");
    let answer = post_mailgun(&app, serde_json::to_vec(&body).unwrap()).await;
    assert_refused(&app, answer, "missing_signature").await;
    let answer = post_mailgun(&app, b"not json at all".to_vec()).await;
    assert_refused(&app, answer, "missing_signature").await;
}

#[tokio::test]
async fn mailgun_replayed_token_is_401_replayed_token() {
    let app = mailgun_app().await;
    let body = mailgun_body(MAILGUN_KEY, now(), &"f".repeat(50));
    let (status, report) = post_mailgun(&app, body.clone()).await;
    assert_eq!(status, 200, "{report}");
    // The same signature again, even on another event, is a replay.
    let mut other: Value = serde_json::from_slice(&body).unwrap();
    other["event-data"]["recipient"] = "someone-else@example.com".into();
    let (status, answer) = post_mailgun(&app, serde_json::to_vec(&other).unwrap()).await;
    assert_eq!(status, 401, "{answer}");
    assert_eq!(answer["error"]["code"], "replayed_token", "{answer}");
    assert_eq!(app.events("").await.len(), 1, "only the first is stored");
}

#[tokio::test]
async fn mailgun_token_is_spent_once_its_request_is_stored_even_in_quarantine() {
    // The token is kept when the request was stored (here: its element quarantined); a
    // request that fails to be stored releases it (see verify::replay's tests).
    let app = mailgun_app().await;
    let token = "g".repeat(50);
    let mut unreadable: Value =
        serde_json::from_slice(&mailgun_body(MAILGUN_KEY, now(), &token)).unwrap();
    unreadable["event-data"] = "not an object".into();
    let (status, report) = post_mailgun(&app, serde_json::to_vec(&unreadable).unwrap()).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["quarantined"], 1, "{report}");
    let (status, report) = post_mailgun(&app, mailgun_body(MAILGUN_KEY, now(), &token)).await;
    assert_eq!(
        status, 401,
        "the first request was stored (quarantined): {report}"
    );
}

#[tokio::test]
async fn mailgun_signing_key_can_come_from_the_environment() {
    let app = spawn_app_with(|config| {
        config
            .sources
            .insert("mg-us".into(), SourceConfig::new("mailgun"));
        config.source_env.insert(
            "MAILWARDEN_SOURCE_MG_US_SIGNING_KEY".into(),
            Secret::new(MAILGUN_KEY),
        );
    })
    .await;
    let body = mailgun_body(MAILGUN_KEY, now(), &"h".repeat(50));
    let (status, report) = post_with_headers(&app, "mg-us", "application/json", &[], body).await;
    assert_eq!(status, 200, "{report}");
    let answer = post_with_headers(
        &app,
        "mg-us",
        "application/json",
        &[],
        mailgun_body("wrong", now(), &"i".repeat(50)),
    )
    .await;
    assert_eq!(answer.0, 401, "{}", answer.1);
}

// ---------------------------------------------------------------------------------------
// SendGrid: ECDSA P-256 over the timestamp header and the raw body.

async fn sendgrid_app(key: &signing::SendGridKey) -> TestApp {
    let public_key = key.public_key.clone();
    spawn_app_with(move |config| {
        config.sources.insert(
            "sg".into(),
            SourceConfig {
                public_key: Some(public_key),
                ..SourceConfig::new("sendgrid")
            },
        );
    })
    .await
}

async fn post_sendgrid(
    app: &TestApp,
    signature: Option<String>,
    timestamp: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    let mut headers = vec![(
        "x-twilio-email-event-webhook-timestamp",
        timestamp.to_owned(),
    )];
    if let Some(signature) = signature {
        headers.push(("x-twilio-email-event-webhook-signature", signature));
    }
    post_with_headers(app, "sg", "application/json", &headers, body).await
}

#[tokio::test]
async fn sendgrid_valid_signature_is_stored() {
    let key = signing::SendGridKey::generate();
    let app = sendgrid_app(&key).await;
    let body = read_fixture("sendgrid/bounce.json");
    let timestamp = now().to_string();
    let signature = key.sign(&timestamp, &body);
    let (status, report) = post_sendgrid(&app, Some(signature), &timestamp, body).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["accepted"], 1, "{report}");
}

#[tokio::test]
async fn sendgrid_tampered_body_is_401_bad_signature() {
    let key = signing::SendGridKey::generate();
    let app = sendgrid_app(&key).await;
    let body = read_fixture("sendgrid/bounce.json");
    let timestamp = now().to_string();
    let signature = key.sign(&timestamp, &body);
    let tampered = String::from_utf8(body)
        .unwrap()
        .replace("alex@example.com", "victim@example.com")
        .into_bytes();
    let answer = post_sendgrid(&app, Some(signature), &timestamp, tampered).await;
    assert_refused(&app, answer, "bad_signature").await;
}

#[tokio::test]
async fn sendgrid_wrong_key_is_401_bad_signature() {
    let key = signing::SendGridKey::generate();
    let app = sendgrid_app(&key).await;
    let other = signing::SendGridKey::generate();
    let body = read_fixture("sendgrid/delivered.json");
    let timestamp = now().to_string();
    let answer = post_sendgrid(&app, Some(other.sign(&timestamp, &body)), &timestamp, body).await;
    assert_refused(&app, answer, "bad_signature").await;
}

#[tokio::test]
async fn sendgrid_stale_timestamp_is_401_stale_timestamp() {
    let key = signing::SendGridKey::generate();
    let app = sendgrid_app(&key).await;
    let body = read_fixture("sendgrid/delivered.json");
    // Signed correctly two days ago: beyond SendGrid's 24 hours of retries.
    let timestamp = (now() - 2 * 86_400).to_string();
    let signature = key.sign(&timestamp, &body);
    let answer = post_sendgrid(&app, Some(signature), &timestamp, body).await;
    assert_refused(&app, answer, "stale_timestamp").await;
}

#[tokio::test]
async fn sendgrid_missing_signature_is_401_missing_signature() {
    let key = signing::SendGridKey::generate();
    let app = sendgrid_app(&key).await;
    let answer = post_sendgrid(
        &app,
        None,
        &now().to_string(),
        read_fixture("sendgrid/delivered.json"),
    )
    .await;
    assert_refused(&app, answer, "missing_signature").await;
}

#[tokio::test]
async fn sendgrid_signature_with_a_changed_timestamp_is_401() {
    // The timestamp is part of what is signed: moving it breaks the signature.
    let key = signing::SendGridKey::generate();
    let app = sendgrid_app(&key).await;
    let body = read_fixture("sendgrid/delivered.json");
    let signature = key.sign(&now().to_string(), &body);
    let answer = post_sendgrid(&app, Some(signature), &(now() + 1).to_string(), body).await;
    assert_refused(&app, answer, "bad_signature").await;
}

#[tokio::test]
async fn sendgrid_bad_public_key_stops_startup_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = crate::helpers::test_config(dir.path());
    config.sources.insert(
        "sg".into(),
        SourceConfig {
            public_key: Some("not-a-key".into()),
            ..SourceConfig::new("sendgrid")
        },
    );
    let error = match mailwarden::Application::build(config).await {
        Ok(_) => panic!("a bad key must stop startup"),
        Err(error) => format!("{error:#}"),
    };
    assert!(
        error.contains("source `sg`") && error.contains("public_key"),
        "{error}"
    );
}
