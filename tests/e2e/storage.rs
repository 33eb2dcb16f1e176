//! Storage that runs for years: retention purges, `GET /api/storage`, the compact event
//! encoding seen through the API, and opening a data directory of the previous schema.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::{TestApp, eventually, read_fixture, spawn_app, spawn_app_with};
use crate::rules::copy_shipped_rules;

/// Days that make a number of seconds.
fn seconds_as_days(seconds: f64) -> f64 {
    seconds / 86_400.0
}

async fn storage(app: &TestApp) -> Value {
    let (status, body) = app.get("/api/storage").await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Posts a fixture (sent as it is) and returns the accepted event ids.
async fn post_ids(app: &TestApp, source: &str, fixture: &str) -> Vec<String> {
    crate::rules::post_ids(app, source, read_fixture(fixture)).await
}

#[tokio::test]
async fn storage_shows_the_events_the_oldest_one_and_the_size_on_disk() {
    let app = spawn_app().await;
    let empty = storage(&app).await;
    assert_eq!(empty["events"], 0, "{empty}");
    assert_eq!(empty["oldest_event"], Value::Null, "{empty}");
    assert_eq!(empty["retention"]["retain_days"], 90.0, "{empty}");
    assert_eq!(empty["schema_version"], 3, "{empty}");
    let before = jiff::Timestamp::now();
    let mut ids = post_ids(&app, "sendpulse", "sendpulse/bulk_events.json").await;
    ids.extend(post_ids(&app, "opptima", "opptima/smtp_bounce.json").await);
    // A retry stores nothing and counts nothing.
    post_ids(&app, "opptima", "opptima/smtp_bounce.json").await;
    let summary = storage(&app).await;
    assert_eq!(summary["events"], ids.len() as u64, "{summary}");
    let oldest: jiff::Timestamp = summary["oldest_event"]
        .as_str()
        .expect("oldest event")
        .parse()
        .expect("RFC 3339");
    assert!(
        oldest >= before - jiff::SignedDuration::from_secs(1),
        "{summary}"
    );
    assert!(
        summary["size_on_disk_bytes"].as_u64().unwrap() > 0,
        "{summary}"
    );
    // The purge at start found nothing to do, and said so.
    let purge = eventually("the first purge", || async {
        let summary = storage(&app).await;
        (summary["last_purge"]["running"] == false).then(|| summary["last_purge"].clone())
    })
    .await;
    assert_eq!(purge["events_purged"], 0, "{purge}");
}

#[tokio::test]
async fn events_keep_their_raw_json_byte_for_byte_in_every_body_shape() {
    let app = spawn_app().await;
    // An array (ranges of the body), a form-wrapped body (raw JSON not in the body as
    // is) and a single object.
    let cases = [
        ("sendpulse", "sendpulse/bulk_events.json"),
        ("opptima", "opptima/marketing_click.json"),
        ("mandrill", "mandrill/hard_bounce.json"),
    ];
    for (source, fixture) in cases {
        let (status, report) = app.post_fixture(source, fixture).await;
        assert_eq!(status, 200, "{fixture}: {report}");
        let events = app.stored_events(&report).await;
        assert!(!events.is_empty(), "{fixture}");
        let body = String::from_utf8(read_fixture(fixture)).unwrap();
        for event in events {
            let raw = serde_json::to_string(&event["raw"]).unwrap();
            let parsed: Value = serde_json::from_str(&raw).unwrap();
            assert!(parsed.is_object(), "{fixture}: raw is {raw}");
            if source != "mandrill" {
                // Whatever the stored form, the API gives back what the provider sent.
                let original: Value = serde_json::from_str(&body).unwrap();
                let elements = match original {
                    Value::Array(items) => items,
                    one => vec![one],
                };
                assert!(
                    elements.contains(&parsed),
                    "{fixture}: {raw} not in the body"
                );
            }
        }
    }
}

#[tokio::test]
async fn expired_events_are_purged_with_their_indexes_and_suppressions_stay() {
    let app = spawn_app_with(|config| {
        copy_shipped_rules(&config.rules_dir);
        config.storage.retain_days = seconds_as_days(3.0);
        config.storage.quarantine_retain_days = seconds_as_days(3.0);
        config.storage.purge_interval_secs = 1;
    })
    .await;
    let hard = post_ids(&app, "sendpulse", "sendpulse/hard_bounces.json").await;
    let bulk = post_ids(&app, "sendpulse", "sendpulse/bulk_events.json").await;
    let (status, quarantined) = app.post("sendpulse", "[{\"event\": 1}, 2").await;
    assert_eq!(status, 400, "{quarantined}");
    assert_eq!(
        storage(&app).await["events"],
        (hard.len() + bulk.len()) as u64
    );
    // The hard bounce suppresses its recipient before the event expires.
    let address = "example@example.com";
    eventually("the suppression", || async {
        let (status, _) = app.get(&format!("/api/suppressions/{address}")).await;
        (status == 200).then_some(())
    })
    .await;
    let recipient_events = app.events(&format!("recipient={address}")).await;
    assert_eq!(recipient_events.len(), 1);

    let purged = eventually_long("the events to expire and be purged", || async {
        let summary = storage(&app).await;
        (summary["events"] == 0 && summary["last_purge"]["running"] == false).then_some(summary)
    })
    .await;
    assert_eq!(purged["oldest_event"], Value::Null, "{purged}");
    assert!(app.events("limit=100").await.is_empty());
    assert!(
        app.events(&format!("recipient={address}")).await.is_empty(),
        "the recipient index keeps no entry of a purged event"
    );
    let (status, _) = app.get(&format!("/api/events/{}", hard[0])).await;
    assert_eq!(status, 404);
    // Quarantined bodies follow their own setting (as short here).
    eventually_long("the quarantine to be purged", || async {
        let (_, body) = app.get("/api/quarantine").await;
        body["entries"]
            .as_array()
            .is_some_and(Vec::is_empty)
            .then_some(())
    })
    .await;
    // The suppression list is never purged by age.
    let (status, suppression) = app.get(&format!("/api/suppressions/{address}")).await;
    assert_eq!(status, 200, "{suppression}");
    assert_eq!(suppression["active"], true, "{suppression}");
    // The dedup keys went with the events: the same body, posted again after its
    // events expired, is new again.
    let again = post_ids(&app, "sendpulse", "sendpulse/bulk_events.json").await;
    assert_eq!(again.len(), bulk.len());
}

#[tokio::test]
async fn events_waiting_for_the_rules_are_not_purged() {
    // A rule that never finishes in time keeps events pending? No: a rule error still
    // evaluates. Stop the runner instead by holding events before it starts: post to a
    // server, stop it, and reopen the directory with the purge only.
    let app = spawn_app_with(|config| {
        config.storage.retain_days = seconds_as_days(1.0);
        config.storage.purge_interval_secs = 1;
    })
    .await;
    let ids = post_ids(&app, "opptima", "opptima/smtp_delivered.json").await;
    let summary = eventually_long("the purge", || async {
        let summary = storage(&app).await;
        (summary["events"] == 0).then_some(summary)
    })
    .await;
    assert!(summary["last_purge"]["events_purged"].as_u64().unwrap() >= 1);
    let (status, _) = app.get(&format!("/api/events/{}", ids[0])).await;
    assert_eq!(status, 404);
}

/// Like `eventually`, for purges that run once a second: up to 30 s.
async fn eventually_long<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited 30 s for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else if entry.file_name() != "README.md" {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

#[tokio::test]
async fn a_data_directory_of_schema_1_is_backed_up_and_migrated() {
    check_migration("store_v1", 1).await;
}

#[tokio::test]
async fn a_data_directory_of_schema_2_is_backed_up_and_migrated() {
    check_migration("store_v2", 2).await;
}

/// Opens a copy of `tests/data/<saved>` (written by the build of schema `version`, see its
/// README) and checks that everything it held is there, as a user would look.
async fn check_migration(saved: &str, version: u32) {
    let saved = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(saved);
    let mut app = spawn_app_with(|config| {
        copy_dir(&saved, &config.data_dir);
    })
    .await;
    let summary = storage(&app).await;
    assert_eq!(summary["schema_version"], 3, "{summary}");
    assert_eq!(summary["events"], 17, "{summary}");
    // The copy taken before migrating sits next to the store.
    let prefix = format!("db.schema{version}-backup-");
    let backups: Vec<String> = std::fs::read_dir(app.data_dir())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(&prefix))
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");

    // Every event reads back, with its raw JSON as the provider sent it.
    let events = app.events("limit=100").await;
    assert_eq!(events.len(), 17);
    let bounce = events
        .iter()
        .find(|event| event["provider_event"] == "hard_bounces")
        .expect("the SendPulse hard bounce");
    let fixture: Value =
        serde_json::from_slice(&read_fixture("sendpulse/hard_bounces.json")).unwrap();
    let element = match &fixture {
        Value::Array(items) => items[0].clone(),
        one => one.clone(),
    };
    assert_eq!(bounce["raw"], element);
    assert_eq!(bounce["recipient"], "example@example.com");
    let by_recipient = app.events("recipient=example@example.com").await;
    assert!(
        by_recipient.iter().any(|event| event["id"] == bounce["id"]),
        "the recipient index still finds it: {by_recipient:?}"
    );
    // The suppression list with its history, and the outbox.
    let (status, _) = app.get("/api/suppressions/leaving@example.net").await;
    assert_eq!(
        status, 404,
        "removed by hand before the upgrade, still removed"
    );
    let (_, manual) = app.get("/api/suppressions/manual@example.com").await;
    assert_eq!(manual["active"], true, "{manual}");
    assert_eq!(manual["reason"], "asked by phone", "{manual}");
    // Suppressing the removed address again extends its history of two entries.
    let response = app
        .client
        .put(app.url("/api/suppressions/leaving@example.net"))
        .json(&serde_json::json!({"reason": "asked again"}))
        .send()
        .await
        .unwrap();
    let again: Value = response.json().await.unwrap();
    assert_eq!(again["history"].as_array().unwrap().len(), 3, "{again}");
    // The CRM calls queued before the upgrade: still pending, or dead-lettered by now (this test's
    // configuration does not allow calls to 127.0.0.1).
    let (_, pending) = app.get("/api/outbox?limit=100").await;
    let (_, dead) = app.get("/api/outbox?status=dead&limit=100").await;
    let actions =
        pending["actions"].as_array().unwrap().len() + dead["actions"].as_array().unwrap().len();
    assert_eq!(actions, 7, "{pending} {dead}");
    // Retries of what the old build stored are still duplicates.
    let (status, retry) = app
        .post_fixture("sendpulse", "sendpulse/hard_bounces.json")
        .await;
    assert_eq!(status, 200);
    assert_eq!(retry["duplicates"], 1, "{retry}");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/opptima");
    let mut names: Vec<String> = std::fs::read_dir(fixtures)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".json"))
        .collect();
    names.sort();
    for name in names {
        let (status, retry) = app
            .post_fixture("opptima", &format!("opptima/{name}"))
            .await;
        assert_eq!(status, 200, "{name}: {retry}");
        assert_eq!(retry["accepted"], 0, "{name} stored again: {retry}");
    }
    assert_eq!(storage(&app).await["events"], 17);

    // Once migrated, a restart takes no second copy.
    app.restart().await;
    assert_eq!(storage(&app).await["events"], 17);
    let copies = std::fs::read_dir(app.data_dir())
        .unwrap()
        .filter(|entry| {
            entry
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains("backup")
        })
        .count();
    assert_eq!(copies, 1);
}

#[tokio::test]
async fn a_store_of_a_newer_schema_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data/db");
    {
        let db = sled::open(&path).unwrap();
        let meta = db.open_tree("meta").unwrap();
        meta.insert("schema_version", "99").unwrap();
        db.flush().unwrap();
    }
    let config = crate::helpers::test_config(dir.path());
    let error = match mailwarden::Application::build(config).await {
        Ok(_) => panic!("a store of schema 99 opened"),
        Err(error) => format!("{error:#}"),
    };
    assert!(error.contains("schema version 99"), "{error}");
    assert!(error.contains("newer mailwarden"), "{error}");
}

#[tokio::test]
async fn check_warns_about_rule_windows_longer_than_the_retention() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(
        rules.join("long_memory.rhai"),
        "// on: bounce\n\
         let bounces = count_events(event.recipient, \"bounce\", days(120));\n\
         let recent = stats(hours(24));\n",
    )
    .unwrap();
    let rules_arg = rules.to_str().unwrap();
    let output = crate::rules::cli(dir.path(), &["check", "--rules", rules_arg]).await;
    let stdout = crate::rules::stdout(&output);
    assert!(
        output.status.success(),
        "a warning is not an error: {stdout}"
    );
    let warnings: Vec<&str> = stdout.lines().filter(|l| l.starts_with("warn")).collect();
    assert_eq!(warnings.len(), 1, "{stdout}");
    assert!(warnings[0].contains("long_memory.rhai:2"), "{stdout}");
    assert!(warnings[0].contains("days(120)"), "{stdout}");
    assert!(warnings[0].contains("retain_days (90)"), "{stdout}");

    // Kept long enough, nothing to say.
    let settings = dir.path().join("mailwarden.toml");
    std::fs::write(&settings, "[storage]\nretain_days = 365\n").unwrap();
    let output = crate::rules::cli(
        dir.path(),
        &[
            "check",
            "--rules",
            rules_arg,
            "--config",
            settings.to_str().unwrap(),
        ],
    )
    .await;
    let stdout = crate::rules::stdout(&output);
    assert!(output.status.success(), "{stdout}");
    assert!(!stdout.contains("warn"), "{stdout}");
}

/// A SendPulse batch of `size` events numbered from `first`: event `n` goes to
/// `watch@example.com` when `n % 97 == 0` (a hard bounce then when `n % 2 == 0`), else to
/// one of 300 other addresses.
fn numbered_batch(first: usize, size: usize) -> (String, Vec<bool>) {
    let mut watched = Vec::with_capacity(size);
    let events: Vec<String> = (first..first + size)
        .map(|n| {
            let watch = n % 97 == 0;
            watched.push(watch);
            let recipient = if watch {
                "watch@example.com".to_owned()
            } else {
                format!("user{}@example.com", n % 300)
            };
            let event = if watch && n % 2 == 0 {
                r#""event":"hard_bounces","smtp_server_response_code":550"#
            } else {
                r#""event":"delivered""#
            };
            format!(
                r#"{{{event},"timestamp":{},"message_id":{n},"email":"{recipient}"}}"#,
                1_763_600_000 + n
            )
        })
        .collect();
    (format!("[{}]", events.join(",")), watched)
}

#[tokio::test]
async fn recipient_queries_find_every_event_across_index_runs_and_restarts() {
    let mut app = spawn_app().await;
    // 12 000 events: more than one run of the recipient index (8 192) and a tail.
    let mut expected = Vec::new();
    for request in 0..24 {
        let (body, watched) = numbered_batch(request * 500, 500);
        let (status, report) = app.post("sendpulse", body).await;
        assert_eq!(status, 200, "{report}");
        let ids = report["event_ids"].as_array().unwrap();
        assert_eq!(ids.len(), 500, "{report}");
        for (id, watch) in ids.iter().zip(watched) {
            if watch {
                expected.push(id.as_str().unwrap().to_owned());
            }
        }
    }
    expected.reverse();
    let watch_ids = |events: Vec<Value>| -> Vec<String> {
        events
            .iter()
            .map(|event| event["id"].as_str().unwrap().to_owned())
            .collect()
    };
    // Right away (rules may still be behind), once the rules caught up, after a restart.
    let found = watch_ids(app.events("recipient=watch@example.com&limit=1000").await);
    assert_eq!(found, expected, "newest first, right after ingest");
    eventually("the rules to catch up", || async {
        (storage(&app).await["pending_events"] == 0).then_some(())
    })
    .await;
    let found = watch_ids(app.events("recipient=watch@example.com&limit=1000").await);
    assert_eq!(found, expected, "newest first, once indexed");
    assert_eq!(storage(&app).await["recipient_index_runs"], 1);
    app.restart().await;
    let found = watch_ids(app.events("recipient=watch@example.com&limit=1000").await);
    assert_eq!(found, expected, "newest first, after a restart");
    // Pages by cursor, and the kind filter.
    let (_, first) = app
        .get("/api/events?recipient=watch@example.com&limit=50")
        .await;
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let (_, second) = app
        .get(&format!(
            "/api/events?recipient=watch@example.com&limit=100&cursor={cursor}"
        ))
        .await;
    let paged: Vec<String> = watch_ids(first["events"].as_array().unwrap().clone())
        .into_iter()
        .chain(watch_ids(second["events"].as_array().unwrap().clone()))
        .collect();
    assert_eq!(paged, expected);
    let bounces = app
        .events("recipient=watch@example.com&kind=bounce&limit=1000")
        .await;
    assert_eq!(bounces.len(), expected.len().div_ceil(2), "every other one");
    assert!(bounces.iter().all(|event| event["kind"] == "bounce"));
    // Another address is not mixed in.
    let other = app.events("recipient=user1@example.com&limit=1000").await;
    assert_eq!(other.len(), 40);
    assert!(
        other
            .iter()
            .all(|event| event["recipient"] == "user1@example.com")
    );
}
