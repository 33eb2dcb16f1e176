//! Property tests through the real server: arbitrary JSON values (plain, and shaped like
//! each provider's format, with its field names and arbitrary values) and arbitrary bytes
//! are posted to every provider. No request may answer 5xx or break the connection, and
//! every event a `200` reports must be readable afterwards. Amazon SES bodies are also
//! sent as signed SNS notifications and Mandrill's as its form, so those adapters see
//! them too.
//!
//! A second property posts arbitrary events (hostile text, extreme numbers, metadata
//! nested to the parser's limit, unknown event names) to SendGrid, Postmark and Mailgun
//! with a rule that reads every field of `event`: every accepted event is evaluated, and
//! the rule finishes or fails only where it throws on purpose. The unit-level properties
//! of the script view and of the configuration parser are in `src/rules/mod.rs` and
//! `src/config.rs` (`fuzz_tests`).
//!
//! `PROPTEST_CASES` sets the number of cases per property (64 by default, to keep
//! `cargo test` fast). The long run, about 11 minutes on two shared cores (last run: all
//! passed; 40,000 cases per property here in 398 s, 250,000 per unit property in 234 s):
//!
//! ```text
//! PROPTEST_CASES=40000 cargo test --release --test e2e fuzz
//! PROPTEST_CASES=250000 cargo test --release --lib fuzz
//! ```

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

// ---------------------------------------------------------------------------------------
// The rules' view of arbitrary events.

/// Reads every field of `event` the way rules do, works on the text, walks the metadata
/// without recursion (call depth is limited, data depth is not), suppresses hard bounces,
/// and throws only when the event's metadata says `provoke: true`. The unit-level property
/// (`rules::fuzz_tests`) runs the same file with an `http_post` of the event added.
const READS_EVERYTHING: &str = include_str!("../data/reads_every_field.rhai");

/// Text that breaks naive code: control characters, NUL, bidirectional overrides,
/// combining marks, astral characters, case mappings that change length, long runs.
fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => ".{0,24}",
        2 => prop::sample::select(vec![
            "",
            "\0",
            "\u{0}\u{1}\u{1b}[31m\u{7f}",
            "\u{202e}gnp.exe",
            "\u{200f}\u{200e}\u{2066}",
            "\u{feff}",
            "e\u{301}\u{301}\u{301}",
            "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 👩\u{200d}👩\u{200d}👧",
            "\r\n\t\u{2028}",
            "\"'`\\",
            "#{a: 1}",
            "(); throw \"x\";",
            "550 5.1.1 user unknown",
            "İıßΐŉ",
            "-9223372036854775808",
            "1e400",
        ])
        .prop_map(str::to_owned),
        // Past the 2,000 characters adapters keep of a field.
        1 => (prop::sample::select(vec!["a", "é", "\0", "\u{202e}", "𝔘", "ΐ", " "]), 1..3_000usize)
            .prop_map(|(unit, n)| unit.repeat(n)),
    ]
}

/// Any JSON leaf, with hostile text more often than `leaf()` has it.
fn field() -> impl Strategy<Value = Value> {
    prop_oneof![3 => hostile().prop_map(Value::String), 1 => leaf()]
}

/// Metadata-like values: small trees of hostile keys, or chains nested as deep as a body
/// may go once wrapped in a provider's envelope (the parser refuses past 64 levels).
fn nested() -> impl Strategy<Value = Value> {
    let tree = field().prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((hostile(), inner), 0..5)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    });
    prop_oneof![
        3 => tree,
        1 => (0..=60usize, field()).prop_map(|(depth, leaf)| {
            (0..depth).fold(leaf, |inner, level| {
                if level % 2 == 0 {
                    serde_json::json!({ "nested": inner })
                } else {
                    Value::Array(vec![inner])
                }
            })
        }),
    ]
}

/// Addresses the adapters accept, unicode and odd ones included.
fn recipient() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "a@example.com",
            "Dummy@Example.COM",
            "josé@bücher.de",
            "\"quoted\"@example.com",
            "user+tag@[127.0.0.1]",
            "Name <named@example.com>",
        ])
        .prop_map(str::to_owned),
        "[a-z0-9._%+-]{1,20}@[a-z0-9-]{1,20}\\.example",
    ]
}

/// An event name: documented ones, mostly, and arbitrary ones.
fn name(known: &'static [&'static str]) -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => prop::sample::select(known).prop_map(|name| Value::String(name.to_owned())),
        1 => field(),
    ]
}

/// Extra fields and `provoke` (one case in ten), merged into `object`.
fn extras() -> impl Strategy<Value = (Vec<(String, Value)>, bool)> {
    (
        prop::collection::vec((hostile(), nested()), 0..4),
        prop::bool::weighted(0.1),
    )
}

fn with_extras(mut object: Value, (extras, provoke): (Vec<(String, Value)>, bool)) -> Value {
    if let Value::Object(map) = &mut object {
        map.extend(extras);
        if provoke {
            map.insert("provoke".into(), Value::Bool(true));
        }
    }
    object
}

// The strategies below are boxed: their wide tuples make large value trees, which overflow
// a debug build's 2 MiB test thread when built on the stack.

/// A SendGrid batch of one event with every field it maps, plus extras (its metadata).
fn sendgrid() -> BoxedStrategy<Value> {
    let names = &[
        "processed",
        "dropped",
        "delivered",
        "deferred",
        "bounce",
        "open",
        "click",
        "spamreport",
        "unsubscribe",
        "group_unsubscribe",
        "group_resubscribe",
    ];
    (
        (
            recipient(),
            name(names),
            field(),
            field(),
            name(&["bounce", "blocked"]),
        )
            .boxed(),
        (
            field(),
            field(),
            field(),
            field(),
            field(),
            field(),
            field(),
        )
            .boxed(),
        extras(),
    )
        .prop_map(
            |(
                (email, event, timestamp, reason, kind),
                (status, category, event_id, message_id, url, agent, ip),
                extras,
            )| {
                let object = serde_json::json!({
                    "email": email, "event": event, "timestamp": timestamp, "reason": reason,
                    "type": kind, "status": status, "category": category,
                    "sg_event_id": event_id, "sg_message_id": message_id, "url": url,
                    "useragent": agent, "ip": ip,
                });
                Value::Array(vec![with_extras(object, extras)])
            },
        )
        .boxed()
}

/// A Postmark event with every field it maps; extras go into its `Metadata`.
fn postmark() -> BoxedStrategy<Value> {
    let records = &[
        "Bounce",
        "Delivery",
        "Open",
        "Click",
        "SpamComplaint",
        "SubscriptionChange",
    ];
    let types = &[
        "HardBounce",
        "SoftBounce",
        "Transient",
        "Blocked",
        "SpamNotification",
        "Unknown",
    ];
    (
        (
            recipient(),
            name(records),
            name(types),
            leaf(),
            leaf(),
            field(),
        )
            .boxed(),
        (
            field(),
            field(),
            field(),
            field(),
            field(),
            field(),
            field(),
        )
            .boxed(),
        extras(),
    )
        .prop_map(
            |(
                (email, record, kind, code, id, at),
                (message_id, subject, from, tag, details, description, link),
                extras,
            )| {
                serde_json::json!({
                    "RecordType": record, "Type": kind, "TypeCode": code, "ID": id,
                    "Email": email, "Recipient": email, "MessageID": message_id,
                    "Subject": subject, "From": from, "Tag": tag, "Details": details,
                    "Description": description, "BouncedAt": at, "DeliveredAt": at,
                    "ReceivedAt": at, "OriginalLink": link, "UserAgent": subject,
                    "Metadata": with_extras(serde_json::json!({}), extras),
                })
            },
        )
        .boxed()
}

/// A Mailgun event with every field it maps; extras go into `user-variables`.
fn mailgun() -> BoxedStrategy<Value> {
    let events = &[
        "accepted",
        "delivered",
        "failed",
        "opened",
        "clicked",
        "unsubscribed",
        "complained",
        "rejected",
    ];
    (
        (
            recipient(),
            name(events),
            name(&["permanent", "temporary"]),
            name(&["bounce", "suppress-bounce", "generic"]),
            field(),
        )
            .boxed(),
        (leaf(), field(), field(), field(), field(), field()).boxed(),
        (prop::collection::vec(field(), 0..4), extras()),
    )
        .prop_map(
            |(
                (email, event, severity, reason, timestamp),
                (code, message, id, message_id, subject, url),
                (tags, extras),
            )| {
                serde_json::json!({ "event-data": {
                    "event": event, "severity": severity, "reason": reason,
                    "recipient": email, "timestamp": timestamp, "id": id, "tags": tags,
                    "user-variables": with_extras(serde_json::json!({}), extras),
                    "delivery-status": { "code": code, "message": message,
                                         "description": message },
                    "message": { "headers": { "message-id": message_id,
                                              "subject": subject, "from": email } },
                    "url": url, "client-info": { "user-agent": subject },
                }})
            },
        )
        .boxed()
}

/// Checks what the rule did with stored event `id`.
async fn check_evaluation(app: &TestApp, id: &str) {
    let event = app.evaluated(id).await;
    let evaluation = &event["evaluation"];
    assert_eq!(evaluation["ran"], 1, "{id}: the rule did not run: {event}");
    let outcome = evaluation["rules"]
        .as_array()
        .and_then(|rules| rules.iter().find(|o| o["rule"] == "reads_everything"))
        .unwrap_or_else(|| panic!("{id}: no outcome: {event}"));
    if event["metadata"]["provoke"] == Value::Bool(true) {
        let error = outcome["error"].as_str().unwrap_or_default();
        assert!(error.contains("provoked by the event"), "{id}: {event}");
        return;
    }
    assert!(event.get("rule_errors").is_none(), "{id}: {event}");
    let metadata = event["metadata"].as_object().map_or(0, Map::len);
    let expected = serde_json::json!([
        "fuzzed",
        format!("kind:{}", event["kind"].as_str().unwrap_or_default()),
        format!("metadata:{metadata}"),
    ]);
    assert_eq!(outcome["tags"], expected, "{id}: {event}");
}

#[test]
fn arbitrary_events_are_read_by_a_rule_touching_every_field_without_errors() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let app = runtime.block_on(crate::helpers::spawn_app_with(|config| {
        std::fs::write(
            config.rules_dir.join("reads_everything.rhai"),
            READS_EVERYTHING,
        )
        .expect("rule written");
        // The wall clock is not under test, and debug builds on a shared machine are slow.
        config.rules.timeout_ms = 30_000;
    }));
    let accepted = Mutex::new(Vec::<String>::new());
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(64);
    let mut runner = TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let result = runner.run(
        &(sendgrid(), postmark(), mailgun()),
        |(sendgrid, postmark, mailgun)| {
            let ids = runtime.block_on(async {
                let (a, b, c) = tokio::join!(
                    post(
                        &app,
                        "sendgrid",
                        "application/json",
                        sendgrid.to_string().into()
                    ),
                    post(
                        &app,
                        "postmark",
                        "application/json",
                        postmark.to_string().into()
                    ),
                    post(
                        &app,
                        "mailgun",
                        "application/json",
                        mailgun.to_string().into()
                    ),
                );
                [a, b, c].concat()
            });
            accepted.lock().unwrap().extend(ids);
            Ok(())
        },
    );
    if let Err(error) = result {
        panic!("{error}");
    }
    let ids = accepted.lock().unwrap().clone();
    assert!(!ids.is_empty(), "no generated event was accepted");
    runtime.block_on(async {
        for id in &ids {
            check_evaluation(&app, id).await;
        }
    });
    eprintln!(
        "fuzz: {cases} cases, {} events evaluated by a rule reading every field",
        ids.len()
    );
}
