//! User-defined providers (`providers/<name>.rhai`) through the real server: the shipped
//! Postal example, scripts that fail or loop, hot reload of a changed or new script, and
//! `mailwarden test` running the providers' cases.

use std::path::Path;

use serde_json::Value;

use crate::helpers::{TestApp, eventually, read_fixture, spawn_app, spawn_app_with};
use crate::rules::{cli, describe, stdout};

/// Starts a service whose providers directory holds `scripts` (name, source).
async fn app_with_scripts(scripts: &[(&str, &str)]) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    for (name, source) in scripts {
        std::fs::write(dir.path().join(format!("{name}.rhai")), source).unwrap();
    }
    let providers = dir.path().to_owned();
    let app = spawn_app_with(move |config| {
        config.providers_dir = providers;
        config.rules.reload_interval_secs = 1;
    })
    .await;
    (app, dir)
}

/// Posts `body` to `source`; returns the answer and the stored events.
async fn post_events(app: &TestApp, source: &str, body: &str) -> (Value, Vec<Value>) {
    app.post_and_read(source, body.to_owned()).await
}

#[tokio::test]
async fn the_shipped_postal_provider_normalizes_postal_webhooks() {
    let app = spawn_app().await;
    let body = String::from_utf8(read_fixture("postal/message_delivery_failed.json")).unwrap();
    let (_, events) = post_events(&app, "postal", &body).await;
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(event["provider"], "postal");
    assert_eq!(event["provider_event"], "MessageDeliveryFailed");
    assert_eq!(event["kind"], "bounce");
    assert_eq!(event["bounce_class"], "hard");
    assert_eq!(event["reason"], "invalid");
    assert_eq!(event["recipient"], "test@example.com");
    assert_eq!(event["smtp_code"], 550);
    assert_eq!(event["occurred_at"], "2016-10-31T20:19:37.12994Z");
    assert_eq!(event["time_quality"], "exact");
    assert_eq!(event["metadata"]["postal_message_id"], 12345);
    let raw: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(event["raw"], raw, "raw is the element as posted");
    // Postal repeats the request's uuid on every retry: a retry is a duplicate.
    let (status, again) = app.post("postal", body).await;
    assert_eq!(status, 200);
    assert_eq!(again["duplicates"], 1, "{again}");
}

#[tokio::test]
async fn every_postal_fixture_is_accepted_and_server_events_store_nothing() {
    let app = spawn_app().await;
    for case in [
        "message_sent",
        "message_delayed",
        "message_delivery_failed",
        "message_held",
        "message_bounced",
        "message_link_clicked",
        "message_loaded",
    ] {
        let (status, report) = app
            .post_fixture("postal", &format!("postal/{case}.json"))
            .await;
        assert_eq!(status, 200, "{case}: {report}");
        assert_eq!(report["accepted"], 1, "{case}: {report}");
    }
    let (status, report) = app
        .post_fixture("postal", "postal/set_aside/send_limit_approaching.json")
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (report["accepted"].as_u64(), report["quarantined"].as_u64()),
        (Some(0), Some(0))
    );
    let kinds: Vec<Value> = app
        .events("source=postal")
        .await
        .iter()
        .map(|e| e["kind"].clone())
        .collect();
    for kind in [
        "delivered",
        "deferred",
        "bounce",
        "dropped",
        "click",
        "open",
    ] {
        assert!(kinds.contains(&Value::from(kind)), "{kind} in {kinds:?}");
    }
}

const ECHO: &str = r#"
// Yields one event per item of `element.items`, fields taken as they are.
let events = [];
for item in element.items {
    events.push(item);
}
events
"#;

#[tokio::test]
async fn a_script_yields_zero_or_more_events_with_the_models_fields() {
    let (app, _dir) = app_with_scripts(&[("inhouse", ECHO)]).await;
    let body = r#"{"items": [
        {"kind": "bounce", "event": "hardfail", "recipient": "A@Example.COM, b@example.com",
         "occurred_at": "2026-12-01 10:00:00", "smtp_response": "550 5.1.1 user unknown",
         "tags": ["x"], "metadata": {"ticket": 7}, "colour": "red"},
        {"kind": "teleported", "recipient": "c@example.com", "occurred_at": 1764583200}
    ]}"#;
    let (report, events) = post_events(&app, "inhouse", body).await;
    assert_eq!(report["accepted"], 3, "two recipients, then one: {report}");
    let first = &events[0];
    assert_eq!(first["provider"], "inhouse");
    assert_eq!(first["provider_event"], "hardfail");
    assert_eq!(first["recipient"], "A@example.com");
    assert_eq!(events[1]["recipient"], "b@example.com");
    // Inferred as for built-in providers: class and reason from the reply.
    assert_eq!(first["bounce_class"], "hard");
    assert_eq!(first["reason"], "invalid");
    assert_eq!(first["smtp_code"], 550);
    assert_eq!(first["smtp_enhanced"], "5.1.1");
    // Local time without an offset: the source's zone (UTC by default) is assumed.
    assert_eq!(first["occurred_at"], "2026-12-01T10:00:00Z");
    assert_eq!(first["time_quality"], "assumed_tz");
    assert_eq!(first["metadata"]["ticket"], 7);
    assert_eq!(first["metadata"]["colour"], "red");
    assert!(
        first["warnings"].to_string().contains("`colour`"),
        "unknown keys are kept and warned about: {first}"
    );
    let other = &events[2];
    assert_eq!(other["kind"], "other");
    assert!(
        other["warnings"]
            .to_string()
            .contains("unknown kind `teleported`"),
        "{other}"
    );
    assert_eq!(other["time_quality"], "exact");
}

#[tokio::test]
async fn script_errors_quarantine_the_element_with_the_scripts_message() {
    let script = r#"
if element.fail == true { throw "this element is not for us"; }
if element.spin == true { loop { } }
if element.weird == true { return 42; }
#{ kind: "delivered", recipient: element.to }
"#;
    let (app, _dir) = app_with_scripts(&[("inhouse", script)]).await;
    let body = r#"[
        {"to": "ok@example.com"},
        {"fail": true},
        {"spin": true},
        {"weird": true},
        {"to": "not an address"},
        "not an object",
        {"to": "also-ok@example.com"}
    ]"#;
    let (report, events) = post_events(&app, "inhouse", body).await;
    assert_eq!(report["accepted"], 2, "{report}");
    assert_eq!(report["quarantined"], 5, "{report}");
    let errors = report["errors"].to_string();
    for expected in [
        "this element is not for us",
        "operation limit",
        "returned i64",
        "no valid recipient",
        "expected an event object",
    ] {
        assert!(errors.contains(expected), "`{expected}` in {errors}");
    }
    assert_eq!(events[1]["recipient"], "also-ok@example.com");
}

#[tokio::test]
async fn a_changed_script_is_swapped_in_and_a_broken_one_keeps_the_last_good_version() {
    let first = r#"#{ kind: "delivered", recipient: element.to }"#;
    let (app, dir) = app_with_scripts(&[("inhouse", first)]).await;
    let (_, events) = post_events(&app, "inhouse", r#"{"to": "a@example.com"}"#).await;
    assert_eq!(events[0]["kind"], "delivered");

    let path = dir.path().join("inhouse.rhai");
    // Different length, so the change is seen even within one mtime tick.
    std::fs::write(
        &path,
        r#"#{ kind: "open", recipient: element.to, tags: ["v2"] }"#,
    )
    .unwrap();
    eventually("the changed script", || async {
        let (_, events) = post_events(&app, "inhouse", r#"{"to": "b@example.com", "n": 1}"#).await;
        (events.first()?["kind"] == "open").then_some(())
    })
    .await;

    std::fs::write(&path, "let broken = ;").unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    let (_, events) = post_events(&app, "inhouse", r#"{"to": "c@example.com"}"#).await;
    assert_eq!(
        events[0]["kind"], "open",
        "the last good version still runs"
    );
}

#[tokio::test]
async fn a_new_script_becomes_a_source_while_running() {
    let (app, dir) = app_with_scripts(&[]).await;
    let (status, _) = app
        .post("haraka", r#"{"to": "a@example.com"}"#.to_owned())
        .await;
    assert_eq!(status, 404);
    std::fs::write(
        dir.path().join("haraka.rhai"),
        r#"#{ kind: "delivered", recipient: element.to }"#,
    )
    .unwrap();
    eventually("the new provider's source", || async {
        let (status, _) = app
            .post("haraka", r#"{"to": "a@example.com"}"#.to_owned())
            .await;
        (status == 200).then_some(())
    })
    .await;
    let (_, sources) = app.get("/api/sources").await;
    assert!(
        sources.to_string().contains("\"provider\":\"haraka\""),
        "{sources}"
    );
}

#[tokio::test]
async fn scripts_that_do_not_compile_or_shadow_a_built_in_stop_startup() {
    for (name, source, expected) in [
        ("inhouse", "let x = 1;\nlet broken = ;\n", "inhouse.rhai:2:"),
        ("sendgrid", "#{}", "built-in provider"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let providers = dir.path().join("providers");
        std::fs::create_dir_all(&providers).unwrap();
        std::fs::write(providers.join(format!("{name}.rhai")), source).unwrap();
        let mut config = crate::helpers::test_config(dir.path());
        config.providers_dir = providers;
        let error = match mailwarden::Application::build(config).await {
            Ok(_) => panic!("{name}: startup must fail"),
            Err(error) => format!("{error:#}"),
        };
        assert!(error.contains(expected), "{name}: {error}");
    }
}

#[tokio::test]
async fn mailwarden_test_runs_the_providers_cases() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = cli(root, &["test"]).await;
    assert!(output.status.success(), "{}", describe(&output));
    let text = stdout(&output);
    assert!(
        text.contains("PASS  provider postal: a hard fail is a hard bounce"),
        "{text}"
    );

    // A case that does not hold fails, saying which field differed.
    let dir = tempfile::tempdir().unwrap();
    let providers = dir.path().join("providers");
    std::fs::create_dir_all(providers.join("tests")).unwrap();
    std::fs::write(
        providers.join("inhouse.rhai"),
        r#"#{ kind: "delivered", recipient: element.to }"#,
    )
    .unwrap();
    std::fs::write(
        providers.join("tests/inhouse.toml"),
        "[[case]]\nname = \"wrong on purpose\"\nbody = '{\"to\": \"a@example.com\"}'\n\
         [[case.events]]\nkind = \"open\"\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("rules")).unwrap();
    let output = cli(dir.path(), &["test"]).await;
    assert!(!output.status.success(), "{}", describe(&output));
    let text = stdout(&output);
    assert!(
        text.contains("FAIL  provider inhouse: wrong on purpose"),
        "{text}"
    );
    assert!(
        text.contains("`kind` is \"delivered\", expected \"open\""),
        "{text}"
    );
}
