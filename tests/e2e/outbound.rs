//! Stuck receivers (issue 13, point 4): outbound calls end at the configured timeout
//! whether the receiver never answers or answers a byte a second, and are retried; the
//! circuit breaker per destination stops calling a dead host, probes it once per growing
//! interval and closes when it answers again, while alerts and other hosts' calls go on.
//! The receivers are raw TCP listeners that count the connections they accept.

use std::time::Duration;

use mailwarden::config::Config;
use serde_json::{Value, json};

use crate::actions::{
    fast_retries, outbox, outbox_drained, post_one, spawn_hook_app, use_smtp, write_rule,
};
use crate::helpers::{TestApp, eventually, read_fixture, spawn_app_with};
use crate::sinks::{Behaviour, Connection, HttpReceiver, RawReceiver, SmtpSink};

/// One second for the whole call: long enough for a local receiver, short for a test.
fn one_second_timeout(config: &mut Config) {
    config.outbound.timeout_secs = 1;
    config.outbound.connect_timeout_secs = 1;
}

/// The breakers of `GET /api/outbox/hosts`.
async fn hosts(app: &TestApp) -> Vec<Value> {
    let (status, body) = app.get("/api/outbox/hosts").await;
    assert_eq!(status, 200, "{body}");
    body["hosts"].as_array().expect("hosts").clone()
}

/// Waits until the breaker of `host` satisfies `check`; returns it.
async fn breaker_until(app: &TestApp, host: &str, check: impl Fn(&Value) -> bool) -> Value {
    eventually(&format!("the breaker of {host}"), || async {
        hosts(app)
            .await
            .into_iter()
            .find(|entry| entry["host"] == host && check(entry))
    })
    .await
}

/// Returns the value of the series `name{host="host"}` in `text`.
fn series(text: &str, name: &str, host: &str) -> Option<f64> {
    let prefix = format!("{name}{{host=\"{host}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|value| value.trim().parse().ok())
}

/// The total of `attempts` over the pending actions.
async fn pending_attempts(app: &TestApp) -> u64 {
    outbox(app, "pending")
        .await
        .iter()
        .map(|action| action["attempts"].as_u64().expect("attempts"))
        .sum()
}

/// Checks that the client gave up on `connection` at about the one-second timeout.
fn assert_cut_off_at_the_timeout(connection: &Connection) {
    let lasted = connection.lasted().expect("closed");
    assert!(
        lasted >= Duration::from_millis(800) && lasted <= Duration::from_millis(2_500),
        "the client hung up after {lasted:?}, not at the 1 s timeout"
    );
}

#[tokio::test]
async fn a_receiver_that_never_answers_is_cut_off_at_the_timeout_and_retried() {
    let receiver = RawReceiver::start(Behaviour::Hang).await;
    let app = spawn_hook_app(&receiver.url("/hook"), one_second_timeout).await;
    post_one(
        &app,
        "sendpulse",
        read_fixture("sendpulse/hard_bounces.json"),
    )
    .await;

    receiver.wait_for(2).await;
    let connections = receiver.wait_closed(2).await;
    assert_cut_off_at_the_timeout(&connections[0]);
    assert_cut_off_at_the_timeout(&connections[1]);
    let key = connections[0].header("idempotency-key").expect("key");
    assert_eq!(
        connections[1].header("idempotency-key").as_ref(),
        Some(&key),
        "the retry is the same call"
    );

    let pending = outbox(&app, "pending").await;
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert!(pending[0]["attempts"].as_u64() >= Some(1), "{pending:?}");
    let error = pending[0]["last_error"].as_str().expect("an error");
    assert!(error.contains("timed out"), "{error}");
    assert!(outbox(&app, "dead").await.is_empty());
}

#[tokio::test]
async fn a_receiver_that_answers_a_byte_a_second_is_cut_off_at_the_timeout_and_retried() {
    // One trickles from the status line on, the other sends its headers at once and then
    // the body a byte a second: the deadline covers the body as well.
    let head = RawReceiver::start(Behaviour::TrickleHead).await;
    let body = RawReceiver::start(Behaviour::TrickleBody).await;
    let app = spawn_app_with(|config| {
        one_second_timeout(config);
        fast_retries(config);
        config.outbound.allow = vec!["127.0.0.1/32".into()];
        config
            .rules
            .vars
            .insert("urls".into(), json!([head.url("/head"), body.url("/body")]));
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

    for receiver in [&head, &body] {
        receiver.wait_for(2).await;
        let connections = receiver.wait_closed(2).await;
        assert_cut_off_at_the_timeout(&connections[0]);
        assert_cut_off_at_the_timeout(&connections[1]);
        assert_eq!(
            connections[0].header("idempotency-key"),
            connections[1].header("idempotency-key")
        );
    }

    let pending = outbox(&app, "pending").await;
    assert_eq!(
        pending.len(),
        2,
        "neither call counts as delivered: {pending:#?}"
    );
    for action in &pending {
        let url = action["action"]["url"].as_str().expect("url");
        let error = action["last_error"].as_str().expect("an error");
        assert!(error.contains("timed out"), "{url}: {error}");
        if url.ends_with("/body") {
            assert!(error.starts_with("HTTP 200, then timed out"), "{error}");
        }
    }
    assert!(outbox(&app, "dead").await.is_empty());
}

#[tokio::test]
async fn a_dead_host_opens_its_breaker_gets_one_probe_per_interval_and_recovers() {
    let receiver = RawReceiver::start(Behaviour::Hang).await;
    let host = receiver.address.to_string();
    let app = spawn_app_with(|config| {
        one_second_timeout(config);
        fast_retries(config);
        config.outbound.breaker_failures = 3;
        config.outbound.breaker_open_secs = 1;
        config.outbound.breaker_max_open_secs = 2;
        config.outbound.allow = vec!["127.0.0.1/32".into()];
        config
            .rules
            .vars
            .insert("hook".into(), json!(receiver.url("")));
        // Three calls queued together, so the first attempts go out at once.
        write_rule(
            &config.rules_dir,
            "hooks",
            "// on: bounce\nfor path in [\"/a\", \"/b\", \"/c\"] { http_post(config.hook + path, #{recipient: event.recipient}); }\n",
        );
    })
    .await;
    post_one(
        &app,
        "sendpulse",
        read_fixture("sendpulse/hard_bounces.json"),
    )
    .await;

    // Three timeouts open the breaker; nothing else reaches the host meanwhile.
    let first = receiver.wait_for(3).await;
    let open = breaker_until(&app, &host, |entry| entry["state"] == "open").await;
    assert_eq!(open["consecutive_failures"], 3, "{open}");
    assert_eq!(open["open_interval_secs"], 1, "{open}");
    assert!(open["opened_at"].is_string(), "{open}");
    assert!(open["retry_at"].is_string(), "{open}");
    let error = open["last_error"].as_str().expect("last error");
    assert!(error.contains("timed out"), "{error}");
    assert_eq!(receiver.connections().len(), 3);
    let text = app.metrics().await;
    assert_eq!(
        series(&text, "mailwarden_outbound_breaker_state", &host),
        Some(1.0),
        "{text}"
    );

    // After the interval, exactly one probe; it times out and the interval doubles.
    let probe = receiver.wait_for(4).await[3].clone();
    let last_first = first.iter().map(|c| c.accepted_at).max().expect("three");
    let waited = probe.accepted_at - last_first;
    assert!(
        waited >= Duration::from_millis(1_900),
        "probe {waited:?} after the last failed call: 1 s timeout + 1 s open"
    );
    let reopened = breaker_until(&app, &host, |entry| {
        entry["state"] == "open" && entry["open_interval_secs"] == 2
    })
    .await;
    assert_eq!(reopened["consecutive_failures"], 4, "{reopened}");
    assert_eq!(receiver.connections().len(), 4, "one probe only");
    // Held calls keep their attempts: one per connection made.
    eventually("attempts to be recorded", || async {
        (pending_attempts(&app).await == 4).then_some(())
    })
    .await;

    // The receiver recovers; the next probe (2 s later) succeeds, the breaker closes and
    // the held calls are delivered with the keys of their first attempts.
    receiver.set(Behaviour::Answer);
    let second_probe = receiver.wait_for(5).await[4].clone();
    let waited = second_probe.accepted_at - probe.accepted_at;
    assert!(
        waited >= Duration::from_millis(2_800),
        "second probe {waited:?} after the first: 1 s timeout + 2 s open"
    );
    let closed = breaker_until(&app, &host, |entry| entry["state"] == "closed").await;
    assert_eq!(closed["consecutive_failures"], 0, "{closed}");
    assert_eq!(closed["retry_at"], Value::Null, "{closed}");
    outbox_drained(&app).await;
    let connections = receiver.connections();
    assert_eq!(
        connections.len(),
        7,
        "3 + 1 failed probe + 1 probe + 2 held"
    );
    let mut delivered: Vec<(String, String)> = connections
        .iter()
        .filter(|c| c.behaviour == Behaviour::Answer)
        .map(|c| (c.path(), c.header("idempotency-key").expect("key")))
        .collect();
    let mut attempted: Vec<(String, String)> = connections
        .iter()
        .take(3)
        .map(|c| (c.path(), c.header("idempotency-key").expect("key")))
        .collect();
    delivered.sort();
    attempted.sort();
    assert_eq!(delivered, attempted, "each call delivered once, same key");
    assert!(outbox(&app, "dead").await.is_empty());

    let text = app.metrics().await;
    assert_eq!(
        series(&text, "mailwarden_outbound_breaker_state", &host),
        Some(0.0),
        "{text}"
    );
    let skipped = series(&text, "mailwarden_outbound_breaker_skipped_total", &host);
    assert!(skipped.is_some_and(|n| n >= 2.0), "{text}");
}

/// Rules that queue 300 calls to `receiver` for each bounce: more than one poll of the
/// outbox reads.
fn backlog_of_300_calls(config: &mut Config, receiver: &RawReceiver) {
    config
        .rules
        .vars
        .insert("backlog".into(), json!(receiver.url("")));
    for n in 0..3 {
        write_rule(
            &config.rules_dir,
            &format!("backlog{n}"),
            &format!(
                "// on: bounce\nfor i in 0..100 {{ http_post(config.backlog + \"/{n}/\" + i, #{{i: i}}); }}\n"
            ),
        );
    }
}

/// Posts a complaint (SendPulse `spam_by_user`) from reader@example.com.
async fn post_complaint(app: &TestApp) {
    let complaint = json!([{"event": "spam_by_user", "timestamp": 1_700_000_000,
        "recipient": "reader@example.com", "subject": "News"}]);
    post_one(app, "sendpulse", complaint.to_string()).await;
}

#[tokio::test]
async fn alerts_and_other_hosts_keep_flowing_while_a_receiver_is_dead() {
    let dead = RawReceiver::start(Behaviour::Hang).await;
    let healthy = HttpReceiver::start(&[]).await;
    let smtp = SmtpSink::start().await;
    let dead_host = dead.address.to_string();
    let app = spawn_app_with(|config| {
        one_second_timeout(config);
        fast_retries(config);
        use_smtp(config, smtp.port);
        config.outbound.breaker_open_secs = 60;
        config.outbound.allow = vec!["127.0.0.1/32".into()];
        config
            .rules
            .vars
            .insert("healthy".into(), json!(healthy.url("/hook")));
        // Without the breaker these would hold back everything queued later.
        backlog_of_300_calls(config, &dead);
        write_rule(
            &config.rules_dir,
            "notify",
            "// on: complaint\nalert(\"Complaint\", event.recipient);\nhttp_post(config.healthy, #{recipient: event.recipient});\n",
        );
    })
    .await;
    post_one(
        &app,
        "sendpulse",
        read_fixture("sendpulse/hard_bounces.json"),
    )
    .await;
    let open = breaker_until(&app, &dead_host, |entry| entry["state"] == "open").await;
    assert!(open["consecutive_failures"].as_u64() >= Some(5), "{open}");

    let started = tokio::time::Instant::now();
    post_complaint(&app).await;
    let mails = smtp.wait_for(1).await;
    let requests = healthy.wait_for(1).await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "the alert and the healthy call took {took:?}"
    );
    assert_eq!(
        mails[0].header("Subject").as_deref(),
        Some("[mailwarden] Complaint")
    );
    assert_eq!(
        requests[0].json(),
        json!({"recipient": "reader@example.com"})
    );

    // The dead host got only the calls started before its breaker opened (four at a
    // time), and the held calls kept their attempts.
    let made = dead.connections().len() as u64;
    assert!(
        (5..=8).contains(&made),
        "{made} connections to the dead host"
    );
    eventually("attempts to be recorded", || async {
        (pending_attempts(&app).await == made).then_some(())
    })
    .await;
    assert_eq!(outbox(&app, "pending").await.len(), 300);
    let breakers = hosts(&app).await;
    let healthy_host = healthy.address.to_string();
    let healthy_entry = breakers
        .iter()
        .find(|entry| entry["host"] == healthy_host.as_str())
        .expect("the healthy host is listed");
    assert_eq!(healthy_entry["state"], "closed", "{breakers:?}");
    let dead_entry = breakers
        .iter()
        .find(|entry| entry["host"] == dead_host.as_str())
        .expect("the dead host is listed");
    assert_eq!(dead_entry["state"], "open", "{breakers:?}");
    assert!(
        dead_entry["skipped"].as_u64() >= Some(300 - made),
        "{dead_entry}"
    );
    assert_eq!(dead.connections().len() as u64, made, "no call while open");
}

#[tokio::test]
async fn an_alert_is_not_held_behind_calls_waiting_for_a_slow_host() {
    // A host that takes its time without failing: its breaker stays closed while 300
    // calls wait for its four concurrency slots, more than one poll of the outbox reads.
    let slow = RawReceiver::start(Behaviour::Hang).await;
    let smtp = SmtpSink::start().await;
    let app = spawn_app_with(|config| {
        fast_retries(config);
        use_smtp(config, smtp.port);
        config.outbound.timeout_secs = 30;
        config.outbound.allow = vec!["127.0.0.1/32".into()];
        backlog_of_300_calls(config, &slow);
        write_rule(
            &config.rules_dir,
            "notify",
            "// on: complaint\nalert(\"Complaint\", event.recipient);\n",
        );
    })
    .await;
    post_one(
        &app,
        "sendpulse",
        read_fixture("sendpulse/hard_bounces.json"),
    )
    .await;
    slow.wait_for(4).await;
    let started = tokio::time::Instant::now();
    post_complaint(&app).await;
    let mails = smtp.wait_for(1).await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "the alert waited {took:?} behind calls to a slow host"
    );
    assert_eq!(
        mails[0].header("Subject").as_deref(),
        Some("[mailwarden] Complaint")
    );
    assert_eq!(slow.connections().len(), 4, "per_host_concurrency is 4");
}
