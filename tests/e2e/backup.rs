//! Backups as a user takes them: `mailwarden backup` against a running server while events
//! arrive and rules run, `mailwarden restore` into a new directory, and a server on it.

use std::path::Path;
use std::process::Output;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::helpers::{TestApp, eventually, spawn_app_with, test_config};
use crate::rules::{cli, copy_shipped_rules};
use mailwarden::config::Secret;

const TOKEN: &str = "b4ckup-t0ken";

/// Runs `mailwarden backup` against `app` into `file`, with `token` if given.
async fn take_backup(dir: &Path, app: &TestApp, file: &Path, token: Option<&str>) -> Output {
    let server = app.url("");
    let mut args = vec!["backup", "--server", &server, "--to", path(file)];
    if let Some(token) = token {
        args.extend(["--token", token]);
    }
    cli(dir, &args).await
}

/// Runs `mailwarden restore` of `file` into the data directory `data`.
async fn restore(dir: &Path, file: &Path, data: &Path) -> Output {
    cli(
        dir,
        &["restore", "--from", path(file), "--data", path(data)],
    )
    .await
}

fn path(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// GETs `path` (with the admin token when `token`) and returns its JSON.
async fn get(app: &TestApp, path: &str, token: bool) -> Value {
    let mut request = app.client.get(app.url(path));
    if token {
        request = request.bearer_auth(TOKEN);
    }
    let response = request.send().await.expect("request is sent");
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.expect("JSON")
}

/// A single Opptima event, unique by `n`.
fn opptima(n: u64) -> String {
    json!({
        "type": "SMTP", "event": "delivered", "relid": n,
        "to": format!("reader{n}@example.com"), "msgid": format!("backup-{n}"),
        "timestamp": "2026-11-20 10:00:00", "status": "Entregado",
    })
    .to_string()
}

/// Every suppression entry of `app`, with its history, by address.
async fn suppressions(app: &TestApp, token: bool) -> Vec<Value> {
    let list = get(app, "/api/suppressions?limit=1000", token).await;
    let mut entries = Vec::new();
    for entry in list["suppressions"].as_array().expect("suppressions") {
        let address = entry["address"].as_str().expect("address");
        entries.push(get(app, &format!("/api/suppressions/{address}"), token).await);
    }
    entries
}

/// The outbox (pending and dead) of `app`, as action ids.
async fn outbox_ids(app: &TestApp, token: bool) -> Vec<String> {
    let mut ids = Vec::new();
    for status in ["pending", "dead"] {
        let page = get(
            app,
            &format!("/api/outbox?status={status}&limit=1000"),
            token,
        )
        .await;
        for action in page["actions"].as_array().expect("actions") {
            ids.push(action["id"].as_str().expect("id").to_owned());
        }
    }
    ids.sort();
    ids
}

async fn spawn_source(rules: &Path, data: &Path) -> TestApp {
    let rules = rules.to_owned();
    let data = data.to_owned();
    spawn_app_with(move |config| {
        config.admin_token = Some(Secret::new(TOKEN));
        config.data_dir = data;
        config.rules_dir = rules;
        // Calls to the CRM are queued and, 127.0.0.1 being an internal address, end as
        // dead letters: both are part of the outbox a backup keeps.
        config
            .rules
            .vars
            .insert("crm_url".into(), json!("http://127.0.0.1:9/crm"));
    })
    .await
}

#[tokio::test]
async fn a_backup_taken_during_ingest_restores_everything_acknowledged_before_it() {
    let work = tempfile::tempdir().unwrap();
    let rules = work.path().join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    copy_shipped_rules(&rules);
    let source = spawn_source(&rules, &work.path().join("source")).await;

    // A history for the suppression list: rules suppress hard bounces, a person lifts one.
    let mut bounces = Vec::new();
    for fixture in ["sendpulse/hard_bounces.json", "opptima/smtp_bounce.json"] {
        let response = source
            .client
            .post(source.url(&format!(
                "/webhooks/{}",
                &fixture[..fixture.find('/').unwrap()]
            )))
            .body(crate::helpers::read_fixture(fixture))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{fixture}");
        let report: Value = response.json().await.unwrap();
        bounces.push(report["event_ids"][0].as_str().unwrap().to_owned());
    }
    let suppressed = eventually("the rules' suppressions", || async {
        let list = get(&source, "/api/suppressions", true).await;
        let entries = list["suppressions"].as_array().unwrap().clone();
        (entries.len() >= 2).then_some(entries)
    })
    .await;
    let lifted = suppressed[0]["address"].as_str().unwrap().to_owned();
    let response = source
        .client
        .delete(source.url(&format!("/api/suppressions/{lifted}")))
        .bearer_auth(TOKEN)
        .json(&json!({"reason": "confirmed by phone"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // Events keep arriving during the backup; `before` holds what was acknowledged
    // before it began.
    let acknowledged: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let feeder = {
        let (client, url) = (source.client.clone(), source.url("/webhooks/opptima"));
        let (acknowledged, stop) = (acknowledged.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let response = client.post(&url).body(opptima(n)).send().await.unwrap();
                assert_eq!(response.status(), 200);
                let report: Value = response.json().await.unwrap();
                let id = report["event_ids"][0].as_str().unwrap().to_owned();
                acknowledged.lock().unwrap().push(id);
            }
        })
    };
    eventually("events flowing", || async {
        (acknowledged.lock().unwrap().len() >= 50).then_some(())
    })
    .await;
    let before: Vec<String> = acknowledged.lock().unwrap().clone();
    let outbox_before = outbox_ids(&source, true).await;
    let file = work.path().join("nightly.backup");
    let output = take_backup(work.path(), &source, &file, Some(TOKEN)).await;
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("backup of"), "{stdout}");
    assert!(
        output.stderr.is_empty(),
        "no progress drawn into a pipe: {:?}",
        String::from_utf8_lossy(&output.stderr)
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    feeder.await.unwrap();
    assert!(
        acknowledged.lock().unwrap().len() > before.len(),
        "ingest went on during the backup"
    );
    assert!(!work.path().join("nightly.backup.partial").exists());
    let suppressions_at_source = suppressions(&source, true).await;

    // Restore into a fresh directory and serve it.
    let restored_data = work.path().join("restored");
    let output = restore(work.path(), &file, &restored_data).await;
    assert!(output.status.success(), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("restored the backup"),
        "{output:?}"
    );
    let mut config = test_config(work.path());
    config.data_dir = restored_data.clone();
    config.rules_dir = rules.clone();
    let restored = crate::helpers::start_with(config).await;

    for id in &before {
        let (status, event) = restored.get(&format!("/api/events/{id}")).await;
        assert_eq!(
            status, 200,
            "acknowledged before the backup, missing after: {id}"
        );
        assert_eq!(event["provider"], "opptima", "{event}");
    }
    // The suppression list with its history, exactly.
    assert_eq!(suppressions(&restored, false).await, suppressions_at_source);
    // The lifted entry kept its history: suppressing it again shows all three steps.
    let (status, _) = restored.get(&format!("/api/suppressions/{lifted}")).await;
    assert_eq!(status, 404, "lifted before the backup, lifted after");
    let again: Value = restored
        .client
        .put(restored.url(&format!("/api/suppressions/{lifted}")))
        .json(&json!({"reason": "asked again"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["history"].as_array().unwrap().len(), 3, "{again}");
    assert!(again.to_string().contains("confirmed by phone"), "{again}");
    // The outbox as it was when the backup began (at least: later actions may be in it).
    let outbox_after = outbox_ids(&restored, false).await;
    assert!(!outbox_before.is_empty());
    for id in &outbox_before {
        assert!(outbox_after.contains(id), "action {id} lost");
    }
    // The rules' state: evaluation records, the recipient index and dedup keys.
    let bounce = restored.evaluated(&bounces[0]).await;
    assert!(
        bounce["evaluation"].to_string().contains("hard_bounce"),
        "{bounce}"
    );
    let (_, first) = restored.get(&format!("/api/events/{}", before[0])).await;
    let recipient = first["recipient"].as_str().unwrap().to_owned();
    let by_recipient = restored.events(&format!("recipient={recipient}")).await;
    assert!(
        by_recipient.iter().any(|event| event["id"] == first["id"]),
        "{by_recipient:?}"
    );
    let (status, retry) = restored.post("opptima", opptima(1)).await;
    assert_eq!(status, 200);
    assert_eq!(retry["duplicates"], 1, "a retry after the restore: {retry}");
    let storage = get(&restored, "/api/storage", false).await;
    assert!(
        storage["events"].as_u64().unwrap() >= before.len() as u64 + 2,
        "{storage}"
    );

    // Restoring over a store is refused and leaves it alone.
    let output = restore(work.path(), &file, &restored_data).await;
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("already holds a store"),
        "{output:?}"
    );
}

#[tokio::test]
async fn a_backup_needs_the_token_and_a_damaged_one_is_never_restored() {
    let work = tempfile::tempdir().unwrap();
    let rules = work.path().join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    let source = spawn_source(&rules, &work.path().join("source")).await;
    let (status, _) = source.post("opptima", opptima(7)).await;
    assert_eq!(status, 200);

    let file = work.path().join("b.backup");
    let output = take_backup(work.path(), &source, &file, None).await;
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("401"),
        "{output:?}"
    );
    assert!(!file.exists() && !work.path().join("b.backup.partial").exists());

    // A server without an admin token gives no backups at all.
    let open = spawn_app_with(|_| {}).await;
    let response = open
        .client
        .get(open.url("/api/backup"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "admin_token_required", "{body}");

    let output = take_backup(work.path(), &source, &file, Some(TOKEN)).await;
    assert!(output.status.success(), "{output:?}");
    let bytes = std::fs::read(&file).unwrap();
    let cut = work.path().join("cut.backup");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let target = work.path().join("from-cut");
    let output = restore(work.path(), &cut, &target).await;
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("cut off"),
        "{output:?}"
    );
    assert!(!target.join("db").exists(), "nothing is left behind");
}
