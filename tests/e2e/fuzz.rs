//! Property tests through the real server: arbitrary JSON values (plain, and shaped like
//! each provider's format, with its field names and arbitrary values) and arbitrary bytes
//! are posted to every provider. No request may answer 5xx or break the connection, and
//! every event a `200` reports must be readable afterwards. Amazon SES bodies are also
//! sent as signed SNS notifications and Mandrill's as its form, so those adapters see
//! them too.
//!
//! `PROPTEST_CASES` sets the number of cases (64 by default here, to keep `cargo test`
//! fast); for a long run: `PROPTEST_CASES=20000 cargo test --release --test e2e fuzz`.

use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use serde_json::{Map, Value};

use crate::helpers::{TestApp, spawn_app};
use crate::signing;

/// Field names the adapters look for, so that generated objects reach their code paths.
const KEYS: &[&str] = &[
    "event",
    "email",
    "recipient",
    "to",
    "timestamp",
    "ts",
    "type",
    "status",
    "reason",
    "response",
    "sg_event_id",
    "category",
    "event-data",
    "signature",
    "severity",
    "delivery-status",
    "code",
    "message",
    "headers",
    "RecordType",
    "Type",
    "TypeCode",
    "ID",
    "Email",
    "Recipient",
    "BouncedAt",
    "MessageID",
    "notificationType",
    "eventType",
    "mail",
    "bounce",
    "bouncedRecipients",
    "emailAddress",
    "destination",
    "complaint",
    "delivery",
    "msg",
    "_id",
    "msys",
    "message_event",
    "track_event",
    "rcpt_to",
    "bounce_class",
    "hard_bounce",
    "MessageID",
    "time",
    "error",
    "error_related_to",
    "data",
    "created_at",
    "payload",
    "ts_event",
    "message-id",
    "tag",
    "tags",
    "webhookPayload",
    "items",
    "kind",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        // Integers beyond 64 bits, written out.
        "[1-9][0-9]{19,30}".prop_map(|digits| serde_json::from_str(&digits).unwrap_or(Value::Null)),
        ".{0,40}".prop_map(Value::String),
        prop::sample::select(vec![
            "bounce",
            "hard_bounce",
            "delivered",
            "failed",
            "permanent",
            "Permanent",
            "Bounce",
            "x@example.com",
            "Ünïcode <ü@exämple.com>",
            "2026-12-01T10:00:00Z",
            "2026-12-01 10:00:00",
            "1764583200",
            "550 5.1.1 user unknown",
            "\u{0}\u{7f}",
        ])
        .prop_map(|s| Value::String(s.to_owned())),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS.to_vec()), inner.clone()), 0..8)
                .prop_map(|pairs| {
                    Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
                }),
            prop::collection::vec((".{0,12}", inner), 0..4)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Replacements of leaves of a documented fixture: (leaf index, new value).
type Mutations = Vec<(usize, Value)>;

/// One generated case: a JSON value, a byte string, and a fixture with some of its
/// values replaced by arbitrary ones (so that most of it still reads as events).
fn case() -> impl Strategy<Value = (Value, Vec<u8>, usize, Mutations)> {
    (
        value(),
        prop::collection::vec(any::<u8>(), 0..256),
        any::<usize>(),
        prop::collection::vec((any::<usize>(), leaf()), 0..4),
    )
}

/// Replaces the leaves picked by `mutations` (indices taken modulo the leaf count).
fn mutate(value: &mut Value, mutations: &Mutations) {
    fn count(value: &Value) -> usize {
        match value {
            Value::Array(items) => items.iter().map(count).sum(),
            Value::Object(map) => map.values().map(count).sum(),
            _ => 1,
        }
    }
    for (index, replacement) in mutations {
        let leaves = count(value);
        if leaves == 0 {
            return;
        }
        replace_nth(value, index % leaves, replacement.clone());
    }
}

/// Replaces the `n`th leaf (depth-first, in order) of `value`.
fn replace_nth(value: &mut Value, n: usize, replacement: Value) {
    fn walk(value: &mut Value, n: &mut usize, replacement: &mut Option<Value>) {
        match value {
            Value::Array(items) => items.iter_mut().for_each(|item| walk(item, n, replacement)),
            Value::Object(map) => map.values_mut().for_each(|item| walk(item, n, replacement)),
            leaf => {
                if *n == 0 {
                    if let Some(new) = replacement.take() {
                        *leaf = new;
                    }
                }
                *n = n.wrapping_sub(1);
            }
        }
    }
    let mut n = n;
    walk(value, &mut n, &mut Some(replacement));
}

/// Every source of the default configuration.
const SOURCES: &[&str] = &[
    "opptima",
    "sendpulse",
    "leadconnector",
    "sendgrid",
    "mailgun",
    "postmark",
    "amazon_ses",
    "brevo",
    "mailjet",
    "mandrill",
    "sparkpost",
    "resend",
    "postal",
];

/// Posts one body; returns the ids it reports as stored. Panics on 5xx or a broken
/// connection.
async fn post(app: &TestApp, source: &str, content_type: &str, body: Vec<u8>) -> Vec<String> {
    let response = app
        .client
        .post(app.url(&format!("/webhooks/{source}")))
        .header("content-type", content_type)
        .body(body.clone())
        .send()
        .await
        .unwrap_or_else(|error| panic!("{source}: the connection broke: {error}"));
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    assert!(
        status < 500,
        "{source} answered {status} to {:?}: {text}",
        String::from_utf8_lossy(&body)
    );
    let answer: Value = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("{source}: answer is not JSON: {text}"));
    answer["event_ids"]
        .as_array()
        .map(|ids| {
            ids.iter()
                .filter_map(|id| id.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Posts a mutated fixture to its provider the way the provider delivers it.
async fn post_mutated(app: &TestApp, fixture: &str, mutations: &Mutations) -> Vec<String> {
    let provider = fixture.split('/').next().unwrap_or_default();
    let mut value: Value =
        serde_json::from_slice(&crate::helpers::read_fixture(fixture)).expect("fixture is JSON");
    mutate(&mut value, mutations);
    let text = value.to_string();
    let (content_type, body) = match provider {
        "amazon_ses" => (
            "text/plain",
            signing::sns()
                .notification(&text, &format!("fuzz-{:x}", fastrand::u64(..)))
                .to_string()
                .into_bytes(),
        ),
        "mandrill" => (
            "application/x-www-form-urlencoded",
            signing::mandrill_form(&text).into_bytes(),
        ),
        _ => ("application/json", text.into_bytes()),
    };
    post(app, provider, content_type, body).await
}

async fn post_everywhere(app: Arc<TestApp>, json: Value, bytes: Vec<u8>) -> Vec<String> {
    let text = json.to_string();
    let mut requests = tokio::task::JoinSet::new();
    for source in SOURCES {
        for (content_type, body) in [
            ("application/json", text.clone().into_bytes()),
            ("application/octet-stream", bytes.clone()),
        ] {
            let app = app.clone();
            requests.spawn(async move { post(&app, source, content_type, body).await });
        }
    }
    let signed = signing::sns().notification(&text, &format!("fuzz-{:x}", fastrand::u64(..)));
    let form = signing::mandrill_form(&text);
    let (a, b) = (app.clone(), app.clone());
    requests.spawn(async move {
        post(
            &a,
            "amazon_ses",
            "text/plain",
            signed.to_string().into_bytes(),
        )
        .await
    });
    requests.spawn(async move {
        post(
            &b,
            "mandrill",
            "application/x-www-form-urlencoded",
            form.into_bytes(),
        )
        .await
    });
    let mut ids = Vec::new();
    while let Some(result) = requests.join_next().await {
        ids.extend(result.expect("request task"));
    }
    ids
}

#[test]
fn arbitrary_bodies_never_answer_5xx_and_nothing_accepted_is_lost() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let app = Arc::new(runtime.block_on(spawn_app()));
    app.trust_test_sns_certificate();
    let accepted = Arc::new(Mutex::new(Vec::<String>::new()));
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(64);
    let mut runner = TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    // The documented samples that are JSON (not the SendPulse docs' broken ones).
    let fixtures: Vec<String> = crate::helpers::all_fixtures()
        .into_iter()
        .filter(|f| serde_json::from_slice::<Value>(&crate::helpers::read_fixture(f)).is_ok())
        .collect();
    let result = runner.run(&case(), |(json, bytes, pick, mutations)| {
        let fixture = &fixtures[pick % fixtures.len()];
        let ids = runtime.block_on(async {
            let mut ids = post_mutated(&app, fixture, &mutations).await;
            ids.extend(post_everywhere(app.clone(), json, bytes).await);
            ids
        });
        accepted.lock().unwrap().extend(ids);
        Ok(())
    });
    if let Err(error) = result {
        panic!("{error}");
    }
    let ids = accepted.lock().unwrap().clone();
    runtime.block_on(async {
        for id in &ids {
            let (status, event) = app.get(&format!("/api/events/{id}")).await;
            assert_eq!(status, 200, "accepted {id} is lost: {event}");
        }
        // And the documented shapes still work on the same server afterwards.
        let (status, report) = app
            .post_fixture("sendgrid", "sendgrid/delivered.json")
            .await;
        assert_eq!(status, 200, "{report}");
    });
    eprintln!(
        "fuzz: {cases} cases, {} events accepted and read back",
        ids.len()
    );
}
