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
    let text = app.metrics().await;
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

// ---------------------------------------------------------------------------------------
// Amazon SES through SNS: RSA signatures with SNS's certificate, SHA1 (v1) or SHA256 (v2).

fn ses_bounce_message() -> String {
    String::from_utf8(read_fixture(
        "amazon_ses/notification_bounce_permanent_dsn.json",
    ))
    .unwrap()
}

async fn post_sns(app: &TestApp, path: &str, envelope: &Value) -> (u16, Value) {
    post_with_headers(
        app,
        path,
        "text/plain; charset=UTF-8",
        &[(
            "x-amz-sns-message-type",
            envelope["Type"].as_str().unwrap_or("").to_owned(),
        )],
        envelope.to_string().into_bytes(),
    )
    .await
}

async fn ses_app() -> TestApp {
    let app = spawn_app_with(|_| {}).await;
    app.trust_test_sns_certificate();
    app
}

#[tokio::test]
async fn sns_signature_versions_1_and_2_are_stored() {
    let app = ses_app().await;
    let signer = signing::sns();
    let v1 = signer.notification(&ses_bounce_message(), "msg-v1");
    let (status, report) = post_sns(&app, "amazon_ses", &v1).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["accepted"], 1, "{report}");
    let mut v2 = v1.clone();
    v2["MessageId"] = "msg-v2".into();
    v2["Subject"] = "Amazon SES Email Event Notification".into();
    signer.sign(&mut v2, 2);
    let (status, report) = post_sns(&app, "amazon_ses", &v2).await;
    assert_eq!(status, 200, "{report}");
    // Another SNS message of the same bounce: SES sent it twice, SNS ids differ.
    assert_eq!(report["accepted"], 1, "{report}");
}

#[tokio::test]
async fn sns_tampered_message_is_401_bad_signature() {
    let app = ses_app().await;
    let mut envelope = signing::sns().notification(&ses_bounce_message(), "msg-tampered");
    envelope["Message"] = ses_bounce_message()
        .replace("jane@example.com", "victim@example.com")
        .into();
    let answer = post_sns(&app, "amazon_ses", &envelope).await;
    assert_refused(&app, answer, "bad_signature").await;
}

#[tokio::test]
async fn sns_signature_of_another_key_is_401_bad_signature() {
    let app = spawn_app_with(|_| {}).await;
    // The certificate at the URL is not the one the message was signed with.
    let other = rcgen::KeyPair::generate().unwrap();
    let certificate = rcgen::CertificateParams::new(vec!["sns.amazonaws.com".to_owned()])
        .unwrap()
        .self_signed(&other)
        .unwrap();
    app.certificates
        .insert(signing::SNS_CERT_URL, certificate.pem().as_bytes())
        .unwrap();
    let envelope = signing::sns().notification(&ses_bounce_message(), "msg-other-key");
    let answer = post_sns(&app, "amazon_ses", &envelope).await;
    assert_refused(&app, answer, "bad_signature").await;
}

#[tokio::test]
async fn sns_certificate_outside_sns_hosts_is_401_untrusted_certificate() {
    let app = ses_app().await;
    for url in [
        "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-x.pem",
        "https://sns.us-east-1.amazonaws.com.attacker.example/SimpleNotificationService-x.pem",
        "https://attacker.example/SimpleNotificationService-x.pem",
    ] {
        let mut envelope = signing::sns().notification(&ses_bounce_message(), "msg-url");
        envelope["SigningCertURL"] = url.into();
        let answer = post_sns(&app, "amazon_ses", &envelope).await;
        assert_refused(&app, answer, "untrusted_certificate").await;
    }
}

#[tokio::test]
async fn sns_without_signature_is_401_missing_signature() {
    let app = ses_app().await;
    let mut envelope = signing::sns().notification(&ses_bounce_message(), "msg-unsigned");
    envelope.as_object_mut().unwrap().remove("Signature");
    let answer = post_sns(&app, "amazon_ses", &envelope).await;
    assert_refused(&app, answer, "missing_signature").await;
    // A bare SES message (raw delivery) cannot be verified either.
    let answer = post_with_headers(
        &app,
        "amazon_ses",
        "text/plain",
        &[],
        ses_bounce_message().into_bytes(),
    )
    .await;
    assert_refused(&app, answer, "missing_signature").await;
}

#[tokio::test]
async fn sns_retry_with_its_original_timestamp_is_accepted_once() {
    // SNS retries with the original message and signature, so an old `Timestamp` is not
    // refused; the repeated MessageId makes the retry a duplicate.
    let app = ses_app().await;
    let mut envelope = signing::sns().notification(&ses_bounce_message(), "msg-old");
    envelope["Timestamp"] = "2012-05-02T00:54:06.655Z".into();
    signing::sns().sign(&mut envelope, 1);
    let (status, first) = post_sns(&app, "amazon_ses", &envelope).await;
    assert_eq!(
        (status, &first["accepted"]),
        (200, &Value::from(1)),
        "{first}"
    );
    let (status, again) = post_sns(&app, "amazon_ses", &envelope).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["duplicates"], 1, "{again}");
}

#[tokio::test]
async fn sns_topics_outside_the_allow_list_are_401_topic_not_allowed() {
    let app = spawn_app_with(|config| {
        config.sources.insert(
            "ses".into(),
            SourceConfig {
                topic_arns: vec!["arn:aws:sns:eu-west-1:123456789012:other".into()],
                ..SourceConfig::new("amazon_ses")
            },
        );
    })
    .await;
    app.trust_test_sns_certificate();
    let envelope = signing::sns().notification(&ses_bounce_message(), "msg-topic");
    let answer = post_sns(&app, "ses", &envelope).await;
    assert_refused(&app, answer, "topic_not_allowed").await;
}

/// The subscriptions `GET /api/sources` shows for `source`.
async fn subscriptions(app: &TestApp, source: &str) -> Vec<Value> {
    let (status, body) = app.get("/api/sources").await;
    assert_eq!(status, 200, "{body}");
    body["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == source)
        .and_then(|s| s.get("subscriptions"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn confirmation(subscribe_url: &str) -> Value {
    let mut envelope: Value = serde_json::from_slice(&read_fixture(
        "amazon_ses/set_aside/sns_subscription_confirmation.json",
    ))
    .unwrap();
    envelope["SubscribeURL"] = subscribe_url.into();
    signing::sns().sign(&mut envelope, 1);
    envelope
}

#[tokio::test]
async fn sns_subscription_is_confirmed_only_at_an_sns_url_and_shown_in_sources() {
    let app = ses_app().await;
    // Validly signed, but the URL is not SNS's: it is recorded, never called.
    let envelope = confirmation("https://attacker.example/confirm?Token=x");
    let (status, answer) = post_sns(&app, "amazon_ses", &envelope).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["subscription"]["status"], "confirming", "{answer}");
    let failed = crate::helpers::eventually("the refused confirmation", || async {
        subscriptions(&app, "amazon_ses")
            .await
            .into_iter()
            .find(|s| s["status"] == "failed")
    })
    .await;
    assert_eq!(
        failed["subscribe_url"],
        "https://attacker.example/confirm?Token=x"
    );
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("refusing to call"),
        "{failed}"
    );
    assert!(
        app.events("").await.is_empty(),
        "a confirmation is not an event"
    );
}

#[tokio::test]
async fn sns_subscription_with_a_bad_signature_is_refused_and_not_recorded() {
    let app = ses_app().await;
    let mut envelope = confirmation(
        "https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription&Token=forged",
    );
    envelope["Token"] = "changed".into();
    let answer = post_sns(&app, "amazon_ses", &envelope).await;
    assert_refused(&app, answer, "bad_signature").await;
    assert!(subscriptions(&app, "amazon_ses").await.is_empty());
}

#[tokio::test]
async fn sns_unsubscribe_confirmation_marks_the_topic_unsubscribed() {
    let app = ses_app().await;
    let mut envelope: Value = serde_json::from_slice(&read_fixture(
        "amazon_ses/set_aside/sns_unsubscribe_confirmation.json",
    ))
    .unwrap();
    signing::sns().sign(&mut envelope, 2);
    let (status, answer) = post_sns(&app, "amazon_ses", &envelope).await;
    assert_eq!(status, 200, "{answer}");
    let list = subscriptions(&app, "amazon_ses").await;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["status"], "unsubscribed");
    assert_eq!(list[0]["topic_arn"], envelope["TopicArn"]);
}

// ---------------------------------------------------------------------------------------
// Mandrill: HMAC-SHA1 over the registered URL and the sorted form fields.

const MANDRILL_KEY: &str = "mandrill-webhook-key";
const MANDRILL_URL: &str = "https://mail.example.com/webhooks/mandrill";

async fn mandrill_app() -> TestApp {
    spawn_app_with(|config| {
        config.sources.insert(
            "mandrill".into(),
            SourceConfig {
                webhook_key: Some(Secret::new(MANDRILL_KEY)),
                url: Some(MANDRILL_URL.into()),
                ..SourceConfig::new("mandrill")
            },
        );
    })
    .await
}

fn mandrill_events() -> String {
    String::from_utf8(read_fixture("mandrill/hard_bounce.json")).unwrap()
}

async fn post_mandrill(app: &TestApp, events: &str, signature: Option<String>) -> (u16, Value) {
    let headers: Vec<(&str, String)> = signature
        .map(|s| vec![("x-mandrill-signature", s)])
        .unwrap_or_default();
    post_with_headers(
        app,
        "mandrill",
        "application/x-www-form-urlencoded",
        &headers,
        signing::mandrill_form(events).into_bytes(),
    )
    .await
}

#[tokio::test]
async fn mandrill_valid_signature_is_stored() {
    let app = mandrill_app().await;
    let events = mandrill_events();
    let signature =
        signing::mandrill_signature(MANDRILL_KEY, MANDRILL_URL, &[("mandrill_events", &events)]);
    let (status, report) = post_mandrill(&app, &events, Some(signature)).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["accepted"], 1, "{report}");
}

#[tokio::test]
async fn mandrill_tampered_events_are_401_bad_signature() {
    let app = mandrill_app().await;
    let events = mandrill_events();
    let signature =
        signing::mandrill_signature(MANDRILL_KEY, MANDRILL_URL, &[("mandrill_events", &events)]);
    let tampered = events.replace("hard_bounce", "soft_bounce");
    let answer = post_mandrill(&app, &tampered, Some(signature)).await;
    assert_refused(&app, answer, "bad_signature").await;
}

#[tokio::test]
async fn mandrill_wrong_key_or_url_is_401_bad_signature() {
    let app = mandrill_app().await;
    let events = mandrill_events();
    for (key, url) in [
        ("another-key", MANDRILL_URL),
        (MANDRILL_KEY, "https://mail.example.com/webhooks/mandrill/"),
    ] {
        let signature = signing::mandrill_signature(key, url, &[("mandrill_events", &events)]);
        let answer = post_mandrill(&app, &events, Some(signature)).await;
        assert_refused(&app, answer, "bad_signature").await;
    }
}

#[tokio::test]
async fn mandrill_missing_signature_is_401_missing_signature() {
    let app = mandrill_app().await;
    let answer = post_mandrill(&app, &mandrill_events(), None).await;
    assert_refused(&app, answer, "missing_signature").await;
}

#[tokio::test]
async fn mandrill_key_without_url_stops_startup() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = crate::helpers::test_config(dir.path());
    config.sources.insert(
        "mandrill".into(),
        SourceConfig {
            webhook_key: Some(Secret::new(MANDRILL_KEY)),
            ..SourceConfig::new("mandrill")
        },
    );
    let error = match mailwarden::Application::build(config).await {
        Ok(_) => panic!("a key without the URL cannot verify anything"),
        Err(error) => format!("{error:#}"),
    };
    assert!(error.contains("`url`"), "{error}");
}

// ---------------------------------------------------------------------------------------
// Resend: Svix signatures over id, timestamp and body.

const SVIX_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

async fn resend_app() -> TestApp {
    spawn_app_with(|config| {
        config.sources.insert(
            "resend".into(),
            SourceConfig {
                signing_secret: Some(Secret::new(SVIX_SECRET)),
                ..SourceConfig::new("resend")
            },
        );
    })
    .await
}

async fn post_resend(app: &TestApp, headers: &[(&str, String)], body: Vec<u8>) -> (u16, Value) {
    post_with_headers(app, "resend", "application/json", headers, body).await
}

fn svix_headers(secret: &str, timestamp: i64, body: &[u8]) -> Vec<(&'static str, String)> {
    let id = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W";
    let timestamp = timestamp.to_string();
    vec![
        ("svix-id", id.to_owned()),
        ("svix-timestamp", timestamp.clone()),
        (
            "svix-signature",
            signing::svix_signature(secret, id, &timestamp, body),
        ),
    ]
}

#[tokio::test]
async fn resend_valid_signature_is_stored_with_either_header_family() {
    let app = resend_app().await;
    let body = read_fixture("resend/email_bounced.json");
    let (status, report) = post_resend(&app, &svix_headers(SVIX_SECRET, now(), &body), body).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["accepted"], 1, "{report}");
    // The unbranded Standard Webhooks names are the same scheme.
    let body = read_fixture("resend/email_delivered.json");
    let headers: Vec<(&str, String)> = svix_headers(SVIX_SECRET, now(), &body)
        .into_iter()
        .map(|(name, value)| {
            let unbranded = match name {
                "svix-id" => "webhook-id",
                "svix-timestamp" => "webhook-timestamp",
                _ => "webhook-signature",
            };
            (unbranded, value)
        })
        .collect();
    let (status, report) = post_resend(&app, &headers, body).await;
    assert_eq!(status, 200, "{report}");
}

#[tokio::test]
async fn resend_tampered_body_is_401_bad_signature() {
    let app = resend_app().await;
    let body = read_fixture("resend/email_bounced.json");
    let headers = svix_headers(SVIX_SECRET, now(), &body);
    let mut tampered = body.clone();
    tampered.push(b' ');
    let answer = post_resend(&app, &headers, tampered).await;
    assert_refused(&app, answer, "bad_signature").await;
}

#[tokio::test]
async fn resend_wrong_secret_is_401_bad_signature() {
    let app = resend_app().await;
    let body = read_fixture("resend/email_bounced.json");
    let headers = svix_headers("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD", now(), &body);
    let answer = post_resend(&app, &headers, body).await;
    assert_refused(&app, answer, "bad_signature").await;
}

#[tokio::test]
async fn resend_stale_timestamp_is_401_stale_timestamp() {
    let app = resend_app().await;
    let body = read_fixture("resend/email_bounced.json");
    let headers = svix_headers(SVIX_SECRET, now() - 600, &body);
    let answer = post_resend(&app, &headers, body).await;
    assert_refused(&app, answer, "stale_timestamp").await;
}

#[tokio::test]
async fn resend_missing_signature_is_401_missing_signature() {
    let app = resend_app().await;
    let answer = post_resend(&app, &[], read_fixture("resend/email_bounced.json")).await;
    assert_refused(&app, answer, "missing_signature").await;
}

#[tokio::test]
async fn resend_body_with_a_byte_order_mark_is_verified_as_sent() {
    // The signature covers the raw bytes, BOM included; the BOM is dropped only to read it.
    let app = resend_app().await;
    let mut body = b"\xEF\xBB\xBF".to_vec();
    body.extend_from_slice(&read_fixture("resend/email_opened.json"));
    let (status, report) = post_resend(&app, &svix_headers(SVIX_SECRET, now(), &body), body).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["accepted"], 1, "{report}");
}

// ---------------------------------------------------------------------------------------
// What `GET /api/sources` shows.

#[tokio::test]
async fn sources_list_provider_url_verification_and_last_receipt_without_secrets() {
    let app = spawn_app_with(|config| {
        config.public_url = Some("https://mail.example.com/".into());
        config.sources.insert(
            "mg-eu".into(),
            SourceConfig {
                signing_key: Some(Secret::new(MAILGUN_KEY)),
                ..SourceConfig::new("mailgun")
            },
        );
        config.sources.insert(
            "pm".into(),
            SourceConfig {
                username: Some("postmark-user".into()),
                password: Some(Secret::new("postmark-password-secret")),
                ..SourceConfig::new("postmark")
            },
        );
        config
            .sources
            .insert("open".into(), SourceConfig::new("sendpulse"));
    })
    .await;
    let (status, body) = app.get("/api/sources").await;
    assert_eq!(status, 200, "{body}");
    let text = body.to_string();
    for secret in [MAILGUN_KEY, "postmark-password-secret"] {
        assert!(!text.contains(secret), "a secret is shown: {text}");
    }
    let source = |name: &str| {
        body["sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {body}"))
    };
    let mailgun = source("mg-eu");
    assert_eq!(mailgun["provider"], "mailgun");
    assert_eq!(mailgun["url"], "https://mail.example.com/webhooks/mg-eu");
    assert_eq!(mailgun["verifies"], true);
    assert_eq!(mailgun["verification"], serde_json::json!(["hmac_sha256"]));
    assert!(mailgun.get("last_received_at").is_none(), "{mailgun}");
    assert_eq!(
        source("pm")["verification"],
        serde_json::json!(["basic_auth"])
    );
    assert_eq!(source("open")["verifies"], false);
    assert_eq!(
        body["sources"].as_array().unwrap().len(),
        3,
        "only configured sources"
    );

    // A verified request is noted, and survives a restart; a refused one is not.
    let before = Timestamp::now();
    let (status, _) =
        post_mailgun_to(&app, "mg-eu", mailgun_body("wrong", now(), &"j".repeat(50))).await;
    assert_eq!(status, 401);
    let (_, body) = app.get("/api/sources").await;
    assert!(body.to_string().contains("\"name\":\"mg-eu\""));
    assert!(
        body["sources"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s.get("last_received_at").is_none()),
        "{body}"
    );
    let (status, _) = post_mailgun_to(
        &app,
        "mg-eu",
        mailgun_body(MAILGUN_KEY, now(), &"k".repeat(50)),
    )
    .await;
    assert_eq!(status, 200);
    let mut app = app;
    app.restart().await;
    let (_, body) = app.get("/api/sources").await;
    let mailgun = body["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "mg-eu")
        .cloned()
        .unwrap();
    let at: Timestamp = mailgun["last_received_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        at >= before
            .checked_sub(jiff::SignedDuration::from_secs(1))
            .unwrap(),
        "{mailgun}"
    );
}

async fn post_mailgun_to(app: &TestApp, source: &str, body: Vec<u8>) -> (u16, Value) {
    post_with_headers(app, source, "application/json", &[], body).await
}
