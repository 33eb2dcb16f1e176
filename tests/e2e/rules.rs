//! The Rhai rules end to end: the shipped rules over real provider bodies, sandbox limits,
//! missing fields, hot reload, startup with a broken rule, recovery of events stored but
//! not yet evaluated, replays, and the `check` / `test` / `eval` / `replay` commands.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use jiff::{SignedDuration, Timestamp};
use mailwarden::Application;
use mailwarden::ingest::Ingestor;
use mailwarden::store::{Store, StoreOptions};
use serde_json::{Value, json};

use crate::helpers::{TestApp, eventually, read_fixture, spawn_app_with, test_config};

// ---------------------------------------------------------------------------------------
// Helpers.

/// The crate root.
fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Copies the shipped `rules/*.rhai` into `dir`.
pub fn copy_shipped_rules(dir: &Path) {
    for rule in mailwarden::rules::rule_files(&repo().join("rules")) {
        let name = rule.file_name().expect("file name");
        std::fs::copy(&rule, dir.join(name)).expect("rule copied");
    }
}

/// Writes `<dir>/<name>.rhai` in one step (rename), so the watcher never reads half a file.
fn write_rule(dir: &Path, name: &str, source: &str) {
    let temporary = dir.join(format!(".{name}.partial"));
    std::fs::write(&temporary, source).expect("rule written");
    std::fs::rename(&temporary, dir.join(format!("{name}.rhai"))).expect("rule renamed");
}

async fn spawn_with_shipped_rules() -> TestApp {
    spawn_app_with(|config| copy_shipped_rules(&config.rules_dir)).await
}

/// Posts `body` to `source`; returns the ids of the events stored.
pub async fn post_ids(app: &TestApp, source: &str, body: impl Into<reqwest::Body>) -> Vec<String> {
    let (status, answer) = app.post(source, body).await;
    assert_eq!(status, 200, "{answer}");
    answer["event_ids"]
        .as_array()
        .expect("event_ids")
        .iter()
        .map(|id| id.as_str().expect("id").to_owned())
        .collect()
}

/// Posts a body that holds exactly one event; returns its id.
async fn post_one(app: &TestApp, source: &str, body: impl Into<reqwest::Body>) -> String {
    let ids = post_ids(app, source, body).await;
    assert_eq!(ids.len(), 1, "{ids:?}");
    ids.into_iter().next().expect("one id")
}

/// A SendPulse body with one bounce (`hard_bounces` or `soft_bounces`).
fn sendpulse_bounce(event: &str, email: &str, timestamp: i64) -> String {
    json!([{
        "event": event,
        "email": email,
        "timestamp": timestamp,
        "smtp_server_response_code": 452,
        "smtp_server_response_subcode": "4.2.2",
        "smtp_server_response": "452 4.2.2 Mailbox full",
    }])
    .to_string()
}

/// What `rule` did with an event (from `GET /api/events/{id}`), if it matched or failed.
fn outcome<'a>(event: &'a Value, rule: &str) -> Option<&'a Value> {
    event["evaluation"]["rules"]
        .as_array()?
        .iter()
        .find(|outcome| outcome["rule"] == rule)
}

/// Waits until `address` is suppressed; returns its entry.
async fn suppressed(app: &TestApp, address: &str) -> Value {
    let path = format!("/api/suppressions/{address}");
    eventually(&format!("{address} to be suppressed"), || async {
        let (status, entry) = app.get(&path).await;
        assert!(status == 200 || status == 404, "{status}: {entry}");
        (status == 200).then_some(entry)
    })
    .await
}

async fn not_suppressed(app: &TestApp, address: &str) {
    let (status, entry) = app.get(&format!("/api/suppressions/{address}")).await;
    assert_eq!(status, 404, "{address} should not be suppressed: {entry}");
}

/// Waits until the outbox has no pending action.
async fn outbox_drained(app: &TestApp) {
    eventually("the outbox to drain", || async {
        let (status, page) = app.get("/api/outbox").await;
        assert_eq!(status, 200, "{page}");
        page["actions"]
            .as_array()
            .expect("actions")
            .is_empty()
            .then_some(())
    })
    .await;
}

/// The entry of rule `name` in `GET /api/rules`.
async fn rule_status(app: &TestApp, name: &str) -> Option<Value> {
    let (status, body) = app.get("/api/rules").await;
    assert_eq!(status, 200, "{body}");
    body["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .find(|rule| rule["name"] == name)
        .cloned()
}

/// Asserts `text` names `file` with a line and a column: `<file>:<line>:<column>`.
fn assert_position(text: &str, file: &str, line: usize) {
    let needle = format!("{file}:{line}:");
    let at = text
        .find(&needle)
        .unwrap_or_else(|| panic!("no `{needle}<column>` in: {text}"));
    let rest = &text[at + needle.len()..];
    assert!(
        rest.starts_with(|c: char| c.is_ascii_digit()),
        "no column after `{needle}` in: {text}"
    );
}

/// Runs the `mailwarden` binary in `dir` with a clean environment.
pub async fn cli(dir: &Path, args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mailwarden"));
        command.args(&args).current_dir(dir).stdin(Stdio::null());
        for (name, _) in std::env::vars() {
            if name.starts_with("MAILWARDEN_") {
                command.env_remove(name);
            }
        }
        command.output().expect("the binary runs")
    })
    .await
    .expect("command thread")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn describe(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

const BROKEN_RULE: &str = "// on: bounce\nlet ok = 1;\nlet broken = ;\n";

// ---------------------------------------------------------------------------------------
// The shipped rules.

#[tokio::test]
async fn shipped_hard_bounce_rule_suppresses_for_every_provider() {
    let app = spawn_with_shipped_rules().await;
    let cases = [
        (
            "opptima",
            "opptima/smtp_bounce.json",
            "test@testdomain.com",
            Some("hard bounce: 550 5.5.0 Requested action not taken: mailbox unavailable."),
        ),
        (
            "sendpulse",
            "sendpulse/hard_bounces.json",
            "example@example.com",
            None,
        ),
        (
            "leadconnector",
            "leadconnector/failed_permanent.json",
            "nobody@example.com",
            None,
        ),
    ];
    for (source, fixture, address, reason) in cases {
        let id = post_one(&app, source, read_fixture(fixture)).await;
        let event = app.evaluated(&id).await;
        let hard = outcome(&event, "hard_bounce")
            .unwrap_or_else(|| panic!("{fixture}: hard_bounce did not match: {event}"));
        assert_eq!(hard["matched"], true, "{fixture}: {hard}");
        let actions = hard["actions"].as_array().expect("actions");
        assert_eq!(actions.len(), 1, "{fixture}: {hard}");
        assert_eq!(actions[0]["type"], "suppress", "{fixture}: {hard}");
        assert_eq!(actions[0]["address"], address, "{fixture}: {hard}");
        assert!(actions[0].get("ttl_seconds").is_none(), "permanent: {hard}");
        assert!(event.get("rule_errors").is_none(), "{fixture}: {event}");

        let entry = suppressed(&app, address).await;
        assert_eq!(entry["rule"], "hard_bounce", "{entry}");
        assert_eq!(entry["event_id"], id.as_str(), "{entry}");
        assert_eq!(entry["source"], source, "{entry}");
        assert!(entry.get("expires_at").is_none(), "permanent: {entry}");
        let text = entry["reason"].as_str().expect("reason");
        assert!(text.starts_with("hard bounce: "), "{entry}");
        if let Some(reason) = reason {
            assert_eq!(text, reason);
        }
    }
    outbox_drained(&app).await;
}

#[tokio::test]
async fn shipped_hard_bounce_rule_suppresses_a_hard_bounce_from_every_provider() {
    // Issue 11, done when: the shipped rules suppress a hard bounce from any provider.
    let app = spawn_with_shipped_rules().await;
    // Documented samples, posted as each provider does; where the only documented bounce
    // is not a hard one, the sample with one documented value changed.
    let with = |fixture: &str, change: fn(&mut Value)| {
        let mut body: Value = serde_json::from_slice(&read_fixture(fixture)).unwrap();
        change(&mut body);
        body.to_string()
    };
    let cases: Vec<(&str, Option<String>, &str, &str)> = vec![
        ("sendgrid", None, "sendgrid/bounce.json", "alex@example.com"),
        (
            "mailgun",
            None,
            "mailgun/failed_permanent_bounce.json",
            "badrecipient@sample.mailgun.com",
        ),
        (
            "postmark",
            None,
            "postmark/bounce_hard.json",
            "john@example.com",
        ),
        (
            "amazon_ses",
            None,
            "amazon_ses/notification_bounce_permanent_dsn.json",
            "jane@example.com",
        ),
        (
            "brevo",
            None,
            "brevo/transactional_hard_bounce.json",
            "example@domain.com",
        ),
        (
            "mailjet",
            None,
            "mailjet/bounce_hard.json",
            "bounce@mailjet.com",
        ),
        (
            "mandrill",
            None,
            "mandrill/hard_bounce.json",
            "example.webhook@mandrillapp.com",
        ),
        (
            "sparkpost",
            Some(with("sparkpost/bounce.json", |body| {
                body[0]["msys"]["message_event"]["bounce_class"] = "10".into();
            })),
            "sparkpost/bounce.json",
            "recipient@example.com",
        ),
        (
            "resend",
            Some(with("resend/email_bounced.json", |body| {
                body["data"]["bounce"]["subType"] = "NoEmail".into();
                body["data"]["bounce"]["message"] = "The email address doesn't exist.".into();
            })),
            "resend/email_bounced.json",
            "delivered@resend.dev",
        ),
        (
            "postal",
            None,
            "postal/message_delivery_failed.json",
            "test@example.com",
        ),
    ];
    for (source, changed, fixture, address) in cases {
        let (status, report) = match changed {
            Some(body) => app.post(source, body).await,
            None => app.post_fixture(source, fixture).await,
        };
        assert_eq!(status, 200, "{fixture}: {report}");
        let ids = report["event_ids"].as_array().expect("event_ids").clone();
        assert_eq!(ids.len(), 1, "{fixture}: {report}");
        let event = app.evaluated(ids[0].as_str().unwrap()).await;
        assert_eq!(event["kind"], "bounce", "{fixture}: {event}");
        assert_eq!(event["bounce_class"], "hard", "{fixture}: {event}");
        let hard = outcome(&event, "hard_bounce")
            .unwrap_or_else(|| panic!("{fixture}: hard_bounce did not match: {event}"));
        assert_eq!(hard["actions"][0]["address"], address, "{fixture}: {hard}");
        let entry = suppressed(&app, address).await;
        assert_eq!(entry["rule"], "hard_bounce", "{fixture}: {entry}");
        assert_eq!(entry["source"], source, "{fixture}: {entry}");
    }
    outbox_drained(&app).await;
}

#[tokio::test]
async fn soft_bounces_suppress_at_three_within_seven_days_only() {
    let app = spawn_with_shipped_rules().await;
    let day = 86_400;
    let t0 = 1_700_000_000;

    // Two within 7 days: nothing. The third within 7 days: suppressed for 30 days.
    let close = "full@example.com";
    for (n, at) in [t0, t0 + day].into_iter().enumerate() {
        let id = post_one(
            &app,
            "sendpulse",
            sendpulse_bounce("soft_bounces", close, at),
        )
        .await;
        let event = app.evaluated(&id).await;
        assert_eq!(event["bounce_class"], "soft", "{event}");
        assert!(
            outcome(&event, "soft_bounces").is_none(),
            "bounce {n}: {event}"
        );
    }
    not_suppressed(&app, close).await;
    let id = post_one(
        &app,
        "sendpulse",
        sendpulse_bounce("soft_bounces", close, t0 + 2 * day),
    )
    .await;
    let event = app.evaluated(&id).await;
    let soft = outcome(&event, "soft_bounces").unwrap_or_else(|| panic!("{event}"));
    assert_eq!(soft["actions"][0]["type"], "suppress", "{soft}");
    assert_eq!(soft["actions"][0]["ttl_seconds"], 30 * day, "{soft}");
    assert_eq!(soft["actions"][0]["reason"], "3 bounces within 7 days");
    let entry = suppressed(&app, close).await;
    assert_eq!(entry["rule"], "soft_bounces", "{entry}");
    let expires: Timestamp = entry["expires_at"]
        .as_str()
        .expect("an expiring entry")
        .parse()
        .expect("RFC 3339");
    let now = Timestamp::now();
    assert!(
        expires > now + SignedDuration::from_hours(29 * 24)
            && expires < now + SignedDuration::from_hours(31 * 24),
        "expires {expires}, now {now}"
    );

    // Three spread over 10 days: never three inside one 7-day window.
    let spread = "spread@example.com";
    for at in [t0, t0 + 5 * day, t0 + 10 * day] {
        let id = post_one(
            &app,
            "sendpulse",
            sendpulse_bounce("soft_bounces", spread, at),
        )
        .await;
        let event = app.evaluated(&id).await;
        assert!(outcome(&event, "soft_bounces").is_none(), "{event}");
    }

    // Three in one batch, oldest first: only the third sees the other two.
    let batch = "batch@example.com";
    let body: Vec<Value> = (0..3)
        .map(|n| {
            json!({"event": "soft_bounces", "email": batch, "timestamp": t0 + n * 100,
                        "smtp_server_response_code": 452})
        })
        .collect();
    let ids = post_ids(&app, "sendpulse", Value::Array(body).to_string()).await;
    assert_eq!(ids.len(), 3);
    for (n, id) in ids.iter().enumerate() {
        let event = app.evaluated(id).await;
        assert_eq!(
            outcome(&event, "soft_bounces").is_some(),
            n == 2,
            "{n}: {event}"
        );
    }
    suppressed(&app, batch).await;

    outbox_drained(&app).await;
    not_suppressed(&app, spread).await;
}

#[tokio::test]
async fn soft_bounces_delivered_out_of_order_still_suppress() {
    let app = spawn_with_shipped_rules().await;
    let t0 = 1_700_000_000;
    // Three soft bounces within 200 seconds, in one SendPulse batch, newest first.
    let body: Vec<Value> = (0..3)
        .map(|n| {
            json!({"event": "soft_bounces", "email": "late@example.com",
                        "timestamp": t0 + 200 - n * 100, "smtp_server_response_code": 452})
        })
        .collect();
    let ids = post_ids(&app, "sendpulse", Value::Array(body).to_string()).await;
    for id in &ids {
        app.evaluated(id).await;
    }
    outbox_drained(&app).await;
    let (status, entry) = app.get("/api/suppressions/late@example.com").await;
    assert_eq!(
        status, 200,
        "3 soft bounces within 7 days, not suppressed: {entry}"
    );
}

// ---------------------------------------------------------------------------------------
// The sandbox.

#[tokio::test]
async fn an_endless_loop_is_stopped_and_the_other_rules_still_run() {
    let app = spawn_app_with(|config| {
        write_rule(
            &config.rules_dir,
            "endless_loop",
            "// on: bounce\nloop {}\n",
        );
        write_rule(
            &config.rules_dir,
            "tagger",
            "// on: bounce\ntag(\"seen\");\n",
        );
    })
    .await;
    let id = post_one(
        &app,
        "sendpulse",
        read_fixture("sendpulse/hard_bounces.json"),
    )
    .await;
    let event = app.evaluated(&id).await;

    let errors = event["rule_errors"].as_array().expect("rule_errors");
    assert_eq!(errors.len(), 1, "{event}");
    assert_eq!(errors[0]["rule"], "endless_loop");
    let error = errors[0]["error"].as_str().expect("error text");
    assert!(error.contains("limit"), "{error}");
    let looped = outcome(&event, "endless_loop").expect("the failure is recorded");
    assert_eq!(looped["matched"], false);
    assert!(looped.get("actions").is_none(), "{looped}");

    let tagger = outcome(&event, "tagger").expect("the other rule ran");
    assert_eq!(tagger["tags"], json!(["seen"]));
    assert!(
        event["tags"]
            .as_array()
            .expect("tags")
            .contains(&json!("seen"))
    );

    // The counters are updated right after the evaluation is recorded.
    let status = eventually("the error to be counted", || async {
        rule_status(&app, "endless_loop")
            .await
            .filter(|status| status["errors"] != 0)
    })
    .await;
    assert_eq!(status["errors"], 1, "{status}");
    assert!(
        status["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("limit"))
    );

    let metrics = app.metrics().await;
    assert!(
        metrics.lines().any(|line| {
            line.starts_with("mailwarden_rule_errors_total{")
                && line.contains("rule=\"endless_loop\"")
        }),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_wall_clock_limit_stops_a_rule_with_operations_to_spare() {
    let app = spawn_app_with(|config| {
        config.rules.max_operations = u64::MAX;
        config.rules.timeout_ms = 50;
        write_rule(&config.rules_dir, "slow", "// on: bounce\nloop {}\n");
    })
    .await;
    let id = post_one(
        &app,
        "sendpulse",
        read_fixture("sendpulse/hard_bounces.json"),
    )
    .await;
    let event = app.evaluated(&id).await;
    let error = event["rule_errors"][0]["error"]
        .as_str()
        .unwrap_or_default();
    assert!(error.contains("wall-clock limit"), "{event}");
}

#[tokio::test]
async fn a_missing_field_reads_as_unit() {
    let app = spawn_app_with(|config| {
        write_rule(
            &config.rules_dir,
            "missing",
            "// on: bounce\n\
             if event.nope == () { tag(\"no-nope\"); }\n\
             if event.metadata.nothing_here == () { tag(\"no-metadata-field\"); }\n\
             if event.campaign != () { tag(\"has-campaign\"); }\n\
             tag(\"reason:\" + event.nope);\n",
        );
    })
    .await;
    let id = post_one(
        &app,
        "sendpulse",
        read_fixture("sendpulse/hard_bounces.json"),
    )
    .await;
    let event = app.evaluated(&id).await;
    assert!(event.get("rule_errors").is_none(), "{event}");
    let missing = outcome(&event, "missing").expect("matched");
    assert_eq!(
        missing["tags"],
        json!(["no-nope", "no-metadata-field", "has-campaign", "reason:"])
    );
}

#[tokio::test]
async fn the_example_rule_of_the_issue_works_as_written() {
    let app = spawn_app_with(|config| {
        write_rule(
            &config.rules_dir,
            "issue_example",
            r#"// on: bounce
if event.bounce_class == "hard" && event.reason != "blocked" {
    suppress(event.recipient, "hard bounce: " + event.smtp_response);
}
"#,
        );
    })
    .await;
    // A hard bounce, with its SMTP response.
    let hard = post_one(
        &app,
        "sendpulse",
        read_fixture("sendpulse/hard_bounces.json"),
    )
    .await;
    // A hard bounce for a policy block: says nothing about the address.
    let blocked = post_one(
        &app,
        "sendpulse",
        r#"[{"event": "hard_bounces", "email": "fine@example.com", "timestamp": 1658998170,
            "smtp_server_response_code": 550, "smtp_server_response_subcode": "5.7.1",
            "smtp_server_response": "550 5.7.1 Service unavailable, client host blocked using Spamhaus"}]"#,
    )
    .await;
    // A soft bounce.
    let soft = post_one(
        &app,
        "sendpulse",
        sendpulse_bounce("soft_bounces", "soft@example.com", 1_700_000_000),
    )
    .await;
    // A hard bounce without any SMTP response: `"text" + ()` is `"text"`.
    let bare = post_one(
        &app,
        "sendpulse",
        r#"[{"event": "hard_bounces", "email": "bare@example.com", "timestamp": 1700000000}]"#,
    )
    .await;

    let event = app.evaluated(&hard).await;
    let response = event["smtp_response"].as_str().expect("SMTP response");
    let rule = outcome(&event, "issue_example").unwrap_or_else(|| panic!("{event}"));
    assert_eq!(
        rule["actions"],
        json!([{"type": "suppress", "address": "example@example.com",
                "reason": format!("hard bounce: {response}")}])
    );
    for id in [&blocked, &soft] {
        let event = app.evaluated(id).await;
        assert!(outcome(&event, "issue_example").is_none(), "{event}");
    }
    let event = app.evaluated(&bare).await;
    assert!(event.get("rule_errors").is_none(), "{event}");
    let rule = outcome(&event, "issue_example").unwrap_or_else(|| panic!("{event}"));
    assert_eq!(rule["actions"][0]["reason"], "hard bounce: ", "{rule}");

    let entry = suppressed(&app, "example@example.com").await;
    assert_eq!(entry["reason"], format!("hard bounce: {response}"));
    assert_eq!(entry["rule"], "issue_example");
    suppressed(&app, "bare@example.com").await;
    outbox_drained(&app).await;
    not_suppressed(&app, "fine@example.com").await;
    not_suppressed(&app, "soft@example.com").await;
}

// ---------------------------------------------------------------------------------------
// Loading and reloading.

#[tokio::test]
async fn hot_reload_adds_keeps_the_last_good_version_and_removes() {
    let app = spawn_app_with(|config| config.rules.reload_interval_secs = 1).await;
    let dir = app.rules_dir();
    let (_, listed) = app.get("/api/rules").await;
    assert_eq!(listed["rules"], json!([]));

    // A new file is picked up and acts on the next event.
    write_rule(&dir, "hot", "// on: bounce\ntag(\"v1\");\n");
    eventually("the new rule to load", || async {
        rule_status(&app, "hot")
            .await
            .filter(|rule| rule["loaded_at"].is_string())
    })
    .await;
    let id = post_one(
        &app,
        "sendpulse",
        sendpulse_bounce("hard_bounces", "a@example.com", 1_700_000_001),
    )
    .await;
    let event = app.evaluated(&id).await;
    assert_eq!(outcome(&event, "hot").expect("ran")["tags"], json!(["v1"]));

    // A syntax error: the previous version keeps running, the error is shown with its
    // position.
    write_rule(&dir, "hot", "// on: bounce\ntag(\"v2\");\nlet = 5;\n");
    let status = eventually("the compile error to show", || async {
        rule_status(&app, "hot")
            .await
            .filter(|rule| rule["compile_error"].is_string())
    })
    .await;
    let error = status["compile_error"].as_str().expect("text");
    assert_position(error, "hot.rhai", 3);
    let id = post_one(
        &app,
        "sendpulse",
        sendpulse_bounce("hard_bounces", "b@example.com", 1_700_000_002),
    )
    .await;
    let event = app.evaluated(&id).await;
    assert_eq!(
        outcome(&event, "hot").expect("previous version ran")["tags"],
        json!(["v1"])
    );

    // Fixed: the new version runs and the error is gone.
    write_rule(&dir, "hot", "// on: bounce\ntag(\"v3\");\n");
    eventually("the fixed rule to load", || async {
        rule_status(&app, "hot")
            .await
            .filter(|rule| rule["compile_error"].is_null())
    })
    .await;
    let id = post_one(
        &app,
        "sendpulse",
        sendpulse_bounce("hard_bounces", "c@example.com", 1_700_000_003),
    )
    .await;
    let event = app.evaluated(&id).await;
    assert_eq!(outcome(&event, "hot").expect("ran")["tags"], json!(["v3"]));

    // Removed: no longer listed, no longer run.
    std::fs::remove_file(dir.join("hot.rhai")).expect("removed");
    eventually("the rule to be dropped", || async {
        rule_status(&app, "hot").await.is_none().then_some(())
    })
    .await;
    let id = post_one(
        &app,
        "sendpulse",
        sendpulse_bounce("hard_bounces", "d@example.com", 1_700_000_004),
    )
    .await;
    let event = app.evaluated(&id).await;
    assert!(outcome(&event, "hot").is_none(), "{event}");
}

#[tokio::test]
async fn a_compile_error_stays_shown_while_another_file_changes() {
    let app = spawn_app_with(|config| {
        config.rules.reload_interval_secs = 1;
        write_rule(&config.rules_dir, "hot", "// on: bounce\ntag(\"v1\");\n");
    })
    .await;
    let dir = app.rules_dir();
    write_rule(&dir, "hot", BROKEN_RULE);
    eventually("the compile error to show", || async {
        rule_status(&app, "hot")
            .await
            .filter(|rule| rule["compile_error"].is_string())
    })
    .await;
    // Another rule arrives; hot.rhai on disk is still broken.
    write_rule(&dir, "other", "// on: bounce\ntag(\"other\");\n");
    eventually("the other rule to load", || async {
        rule_status(&app, "other").await
    })
    .await;
    let status = rule_status(&app, "hot").await.expect("hot is listed");
    assert!(
        status["compile_error"].is_string(),
        "hot.rhai still does not compile, but /api/rules no longer says so: {status}"
    );
}

#[tokio::test]
async fn a_new_file_that_does_not_compile_stays_listed_with_its_error() {
    let app = spawn_app_with(|config| config.rules.reload_interval_secs = 1).await;
    let dir = app.rules_dir();
    write_rule(&dir, "fresh", BROKEN_RULE);
    let status = eventually("the compile error to show", || async {
        rule_status(&app, "fresh")
            .await
            .filter(|rule| rule["compile_error"].is_string())
    })
    .await;
    assert!(status["loaded_at"].is_null(), "{status}");
    write_rule(&dir, "other", "// on: bounce\ntag(\"other\");\n");
    eventually("the other rule to load", || async {
        rule_status(&app, "other").await
    })
    .await;
    let status = rule_status(&app, "fresh").await;
    assert!(
        status
            .as_ref()
            .is_some_and(|s| s["compile_error"].is_string()),
        "fresh.rhai does not compile, but /api/rules no longer says so: {status:?}"
    );
}

#[tokio::test]
async fn a_broken_rule_at_startup_fails_the_build_with_its_position() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = test_config(dir.path());
    copy_shipped_rules(&config.rules_dir);
    write_rule(&config.rules_dir, "broken", BROKEN_RULE);
    let error = match Application::build(config).await {
        Ok(_) => panic!("a broken rule must stop the service from starting"),
        Err(error) => format!("{error:#}"),
    };
    assert_position(&error, "broken.rhai", 3);
}

// ---------------------------------------------------------------------------------------
// Recovery.

#[tokio::test]
async fn events_stored_but_not_evaluated_are_evaluated_once_after_restart() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = test_config(dir.path());

    // Store events exactly as the webhook path does, with no rules runner: the state a
    // crash between commit and evaluation leaves behind.
    let mut ids = Vec::new();
    {
        std::fs::create_dir_all(&config.data_dir).expect("data directory");
        let store = Store::open(&config.data_dir.join("db"), &StoreOptions::default())
            .expect("store opens");
        let ingestor = Ingestor::from_config(store.clone(), &config).expect("ingestor");
        let source = ingestor.source("sendpulse").expect("sendpulse source");
        let batch: Vec<Value> = (0..3)
            .map(|n| {
                json!({"event": "hard_bounces", "email": format!("batch{n}@example.com"),
                       "timestamp": 1_700_000_100 + n})
            })
            .collect();
        let bodies = [
            sendpulse_bounce("hard_bounces", "one@example.com", 1_700_000_000),
            sendpulse_bounce("hard_bounces", "two@example.com", 1_700_000_001),
            Value::Array(batch).to_string(),
        ];
        for body in bodies {
            let report = ingestor
                .ingest(source.clone(), body.into_bytes().into())
                .await
                .expect("ingested");
            ids.extend(report.event_ids.iter().map(ToString::to_string));
        }
        assert_eq!(ids.len(), 5);
        assert_eq!(store.pending_count(), 5);
        store.flush().await.expect("flushed");
    }

    let rules_dir = config.rules_dir.clone();
    write_rule(
        &rules_dir,
        "once",
        "// on: bounce\ntag(\"evaluated\");\nalert(\"bounce \" + event.recipient, \"body\");\n",
    );
    let data_dir = config.data_dir.clone();
    let mut app = spawn_app_with(|config| {
        config.data_dir = data_dir;
        config.rules_dir = rules_dir;
    })
    .await;

    for id in &ids {
        let event = app.evaluated(id).await;
        assert_eq!(
            outcome(&event, "once").expect("evaluated")["tags"],
            json!(["evaluated"])
        );
    }
    let alerts_for = |alerts: &[Value]| -> Vec<String> {
        let mut events: Vec<String> = alerts
            .iter()
            .map(|alert| alert["event_id"].as_str().expect("event_id").to_owned())
            .collect();
        events.sort();
        events
    };
    let logged = logged_alerts(&app, ids.len()).await;
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(alerts_for(&logged), expected, "one alert per event");

    // Twice more: restart, then one new event as a barrier (the runner evaluates in
    // order and the worker runs due actions in order). Old events are never evaluated
    // again, so no second alert for them.
    for round in 0..2 {
        app.restart().await;
        let barrier = post_one(
            &app,
            "sendpulse",
            sendpulse_bounce(
                "hard_bounces",
                &format!("barrier{round}@example.com"),
                1_700_001_000 + round,
            ),
        )
        .await;
        app.evaluated(&barrier).await;
        expected.push(barrier);
        expected.sort();
        let logged = logged_alerts(&app, expected.len()).await;
        assert_eq!(alerts_for(&logged), expected, "round {round}");
        let status = eventually("the barrier to be counted", || async {
            rule_status(&app, "once")
                .await
                .filter(|status| status["runs"] != 0)
        })
        .await;
        assert_eq!(
            status["runs"], 1,
            "only the new event ran after restart: {status}"
        );
        for id in &ids {
            let event = app.evaluated(id).await;
            assert_eq!(event["tags"], json!(["evaluated"]), "{event}");
        }
    }
}

/// Waits until the alert log holds at least `n` entries and the outbox is empty; returns
/// every entry (more than `n` if something ran twice).
async fn logged_alerts(app: &TestApp, n: usize) -> Vec<Value> {
    eventually(&format!("{n} alerts"), || async {
        let (status, page) = app.get("/api/alerts?limit=1000").await;
        assert_eq!(status, 200, "{page}");
        (page["alerts"].as_array().expect("alerts").len() >= n).then_some(())
    })
    .await;
    outbox_drained(app).await;
    let (_, page) = app.get("/api/alerts?limit=1000").await;
    let all = page["alerts"].as_array().expect("alerts").clone();
    for alert in &all {
        assert_eq!(alert["status"], "logged", "{alert}");
    }
    all
}

// ---------------------------------------------------------------------------------------
// Replays.

#[tokio::test]
async fn api_replay_lists_in_a_dry_run_and_queues_otherwise() {
    let app = spawn_with_shipped_rules().await;
    let since = (Timestamp::now() - SignedDuration::from_mins(5)).to_string();
    let id = post_one(
        &app,
        "sendpulse",
        read_fixture("sendpulse/hard_bounces.json"),
    )
    .await;
    app.evaluated(&id).await;
    outbox_drained(&app).await;

    let (status, report) = app
        .post_json("/api/replay", &json!({"since": since, "dry_run": true}))
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["events"], 1, "{report}");
    assert_eq!(report["matched"], 1, "{report}");
    assert_eq!(report["queued"], 0, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    let actions = report["actions"].as_array().expect("actions");
    assert_eq!(actions.len(), 1, "{report}");
    assert_eq!(actions[0]["event_id"], id.as_str());
    assert_eq!(actions[0]["rule"], "hard_bounce");
    assert_eq!(actions[0]["action"]["type"], "suppress");
    assert_eq!(actions[0]["action"]["address"], "example@example.com");
    let (_, outbox) = app.get("/api/outbox").await;
    assert_eq!(outbox["actions"], json!([]), "a dry run queues nothing");

    let (status, answer) = app
        .post_json("/api/replay", &json!({"since": since, "rule": "nope"}))
        .await;
    assert_eq!(status, 404, "{answer}");

    let (status, report) = app
        .post_json(
            "/api/replay",
            &json!({"since": since, "rule": "hard_bounce", "dry_run": false}),
        )
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["queued"], 1, "{report}");
    outbox_drained(&app).await;
    let entry = suppressed(&app, "example@example.com").await;
    assert_eq!(entry["rule"], "hard_bounce");
}

// ---------------------------------------------------------------------------------------
// The command line.

#[tokio::test]
async fn cli_check_accepts_the_shipped_rules_and_locates_errors() {
    let work = tempfile::tempdir().expect("temporary directory");
    let rules = repo().join("rules");
    let output = cli(
        work.path(),
        &["check", "--rules", rules.to_str().expect("utf-8")],
    )
    .await;
    assert!(output.status.success(), "{}", describe(&output));
    let text = stdout(&output);
    for rule in ["hard_bounce", "soft_bounces", "complaint", "subscription"] {
        assert!(text.contains(&format!("ok    {rule}")), "{text}");
    }

    let broken = work.path().join("broken-rules");
    std::fs::create_dir_all(&broken).expect("directory");
    copy_shipped_rules(&broken);
    write_rule(&broken, "broken", BROKEN_RULE);
    let output = cli(
        work.path(),
        &["check", "--rules", broken.to_str().expect("utf-8")],
    )
    .await;
    assert!(!output.status.success(), "{}", describe(&output));
    assert_position(&stdout(&output), "broken.rhai", 3);
}

#[tokio::test]
async fn cli_test_passes_every_shipped_case() {
    let work = tempfile::tempdir().expect("temporary directory");
    let rules = repo().join("rules");
    let output = cli(
        work.path(),
        &["test", "--rules", rules.to_str().expect("utf-8")],
    )
    .await;
    assert!(output.status.success(), "{}", describe(&output));
    let text = stdout(&output);
    assert!(
        text.contains("PASS  hard_bounce: an Opptima \"Rebote duro\" suppresses the address"),
        "{text}"
    );
    assert!(!text.contains("FAIL"), "{text}");
    let passes = text.lines().filter(|line| line.starts_with("PASS")).count();
    assert!(passes >= 15, "{text}");
}

#[tokio::test]
async fn cli_eval_prints_the_action() {
    let output = cli(
        &repo(),
        &[
            "eval",
            "--rule",
            "rules/hard_bounce.rhai",
            "--event",
            "fixtures/sendpulse/hard_bounces.json",
        ],
    )
    .await;
    assert!(output.status.success(), "{}", describe(&output));
    let text = stdout(&output);
    assert!(text.contains("event: bounce example@example.com"), "{text}");
    assert!(
        text.contains(r#"action: {"type":"suppress","address":"example@example.com""#),
        "{text}"
    );

    let output = cli(
        &repo(),
        &[
            "eval",
            "--rule",
            "rules/hard_bounce.rhai",
            "--event",
            "fixtures/sendpulse/delivered.json",
        ],
    )
    .await;
    assert!(output.status.success(), "{}", describe(&output));
    assert!(stdout(&output).contains("not run"), "{}", describe(&output));
}

#[tokio::test]
async fn cli_replay_dry_run_reads_a_stopped_data_directory() {
    // Events stored with no rules at all.
    let mut app = spawn_app_with(|_| {}).await;
    let since = (Timestamp::now() - SignedDuration::from_mins(5)).to_string();
    let hard = post_one(
        &app,
        "sendpulse",
        read_fixture("sendpulse/hard_bounces.json"),
    )
    .await;
    let opptima = post_one(&app, "opptima", read_fixture("opptima/smtp_bounce.json")).await;
    app.stop().await;

    let data = app.data_dir();
    let rules = repo().join("rules");
    let output = cli(
        &data,
        &[
            "replay",
            "--since",
            &since,
            "--dry-run",
            "--data",
            data.to_str().expect("utf-8"),
            "--rules",
            rules.to_str().expect("utf-8"),
        ],
    )
    .await;
    assert!(output.status.success(), "{}", describe(&output));
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("JSON report: {}", describe(&output)));
    assert_eq!(report["events"], 2, "{report}");
    assert_eq!(report["queued"], 0, "{report}");
    let actions = report["actions"].as_array().expect("actions");
    let suppressed: Vec<(&str, &str)> = actions
        .iter()
        .filter(|a| a["rule"] == "hard_bounce")
        .map(|a| {
            (
                a["event_id"].as_str().expect("event"),
                a["action"]["address"].as_str().expect("address"),
            )
        })
        .collect();
    assert_eq!(
        suppressed,
        [
            (hard.as_str(), "example@example.com"),
            (opptima.as_str(), "test@testdomain.com")
        ],
        "{report}"
    );
}

// ---------------------------------------------------------------------------------------
// The event detail.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_detail_never_shows_a_matched_event_as_unmatched() {
    let app = spawn_app_with(|config| {
        write_rule(&config.rules_dir, "tagger", "// on: bounce\ntag(\"x\");\n");
    })
    .await;
    let mut torn = Vec::new();
    for n in 0..1000 {
        let email = format!("poll{n}@example.com");
        let id = post_one(
            &app,
            "sendpulse",
            sendpulse_bounce("hard_bounces", &email, 1_700_000_000 + n),
        )
        .await;
        let path = format!("/api/events/{id}");
        // Poll as fast as possible, as a client waiting for the evaluation would.
        let event = loop {
            let (_, event) = app.get(&path).await;
            if event["evaluation"]["pending"] != Value::Bool(true) {
                break event;
            }
        };
        if outcome(&event, "tagger").is_none() {
            torn.push(event["evaluation"].clone());
        }
    }
    assert!(torn.is_empty(), "{} torn reads: {torn:?}", torn.len());
}
