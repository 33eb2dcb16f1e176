//! The PostgreSQL store's start path, against a real throwaway server (see `pg`): the
//! schema is applied once under its lock by nodes starting together, `migrate --check`
//! says what would run, events land in their day's partition, and every way of failing to
//! start names what to fix without showing the password.

use std::process::{Command, Output};

use serde_json::Value;
use std::time::{Duration, Instant};

use crate::pg::{TestDatabase, cluster};

/// Runs the `mailwarden` binary with the PostgreSQL backend pointed at `url`, in a fresh
/// data directory, with nothing of the caller's environment that would change it.
fn mailwarden(url: &str, args: &[&str]) -> Output {
    let data = tempfile::tempdir().expect("temp dir");
    Command::new(env!("CARGO_BIN_EXE_mailwarden"))
        .args(args)
        .arg("--data")
        .arg(data.path())
        .env_remove("MAILWARDEN_CONFIG")
        .env("MAILWARDEN_STORAGE_BACKEND", "postgres")
        .env("MAILWARDEN_STORAGE_URL", url)
        .env("MAILWARDEN_LISTEN", "127.0.0.1:0")
        .output()
        .expect("run mailwarden")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs `args` and expects a failure whose message contains `expected` and never the
/// database password.
fn fails_saying(database: &TestDatabase, url: &str, args: &[&str], expected: &str) -> String {
    let started = Instant::now();
    let output = mailwarden(url, args);
    let message = stderr(&output);
    assert!(
        !output.status.success(),
        "{args:?} succeeded: {}",
        stdout(&output)
    );
    assert!(message.contains(expected), "{args:?} said: {message}");
    assert!(
        !message.contains(&database.password),
        "the password leaked: {message}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{args:?} took {:?} to fail",
        started.elapsed()
    );
    message
}

#[test]
fn migrate_check_says_what_would_run_and_migrate_runs_it_once() {
    let Some(cluster) = cluster() else { return };
    let database = cluster.fresh_database();

    let check = mailwarden(&database.url, &["migrate", "--check"]);
    assert!(check.status.success(), "{}", stderr(&check));
    let said = stdout(&check);
    assert!(said.contains("schema at version 0"), "{said}");
    assert!(
        said.contains("would apply 1: events and suppressions"),
        "{said}"
    );
    let tables = cluster.admin_sql(
        &database.name,
        "SELECT count(*) FROM pg_class WHERE relname LIKE 'mw\\_%'",
    );
    assert_eq!(tables.trim(), "0", "--check changed the database");

    let migrate = mailwarden(&database.url, &["migrate"]);
    assert!(migrate.status.success(), "{}", stderr(&migrate));
    assert!(
        stdout(&migrate).contains("applied 1: events and suppressions"),
        "{}",
        stdout(&migrate)
    );

    let again = mailwarden(&database.url, &["migrate", "--check"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stdout(&again).contains("schema at version 1"),
        "{}",
        stdout(&again)
    );
    assert!(
        stdout(&again).contains("nothing to apply"),
        "{}",
        stdout(&again)
    );

    let rerun = mailwarden(&database.url, &["migrate"]);
    assert!(rerun.status.success(), "{}", stderr(&rerun));
    assert!(
        stdout(&rerun).contains("schema already at version 1"),
        "{}",
        stdout(&rerun)
    );
    let recorded = cluster.admin_sql(
        &database.name,
        "SELECT string_agg(version || ':' || name, ',') FROM mw_schema_migrations",
    );
    assert_eq!(recorded.trim(), "1:events and suppressions");
}

#[test]
fn nodes_starting_together_apply_the_schema_once() {
    let Some(cluster) = cluster() else { return };
    let database = cluster.fresh_database();
    let nodes: Vec<_> = (0..3)
        .map(|_| {
            let url = database.url.clone();
            std::thread::spawn(move || mailwarden(&url, &["migrate"]))
        })
        .collect();
    let outputs: Vec<Output> = nodes
        .into_iter()
        .map(|node| node.join().expect("node thread"))
        .collect();
    for output in &outputs {
        assert!(output.status.success(), "{}", stderr(output));
    }
    let applied = outputs
        .iter()
        .filter(|output| stdout(output).contains("applied 1:"))
        .count();
    let found_done = outputs
        .iter()
        .filter(|output| stdout(output).contains("already at version 1"))
        .count();
    assert_eq!(
        (applied, found_done),
        (1, 2),
        "each step runs on one node only"
    );
    let recorded = cluster.admin_sql(&database.name, "SELECT count(*) FROM mw_schema_migrations");
    assert_eq!(recorded.trim(), "1");
}

#[test]
fn events_are_partitioned_by_day_of_receipt() {
    let Some(cluster) = cluster() else { return };
    let database = cluster.fresh_database();
    let migrate = mailwarden(&database.url, &["migrate"]);
    assert!(migrate.status.success(), "{}", stderr(&migrate));

    // Yesterday to a week ahead exist, each named by its day (UTC).
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    let partitions = cluster.admin_sql(
        &database.name,
        "SELECT string_agg(c.relname, ',' ORDER BY c.relname) FROM pg_inherits i
         JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'mw_events'::regclass",
    );
    let names: Vec<&str> = partitions.trim().split(',').collect();
    assert_eq!(names.len(), 10, "{names:?}");
    for offset in -1..=7 {
        let day = today
            .checked_add(jiff::Span::new().days(offset))
            .expect("day");
        let name = format!("mw_events_{}", day.strftime("%Y%m%d"));
        assert!(
            names.contains(&name.as_str()),
            "{name} missing from {names:?}"
        );
    }
    assert!(names.contains(&"mw_events_default"));

    // An id of now goes to today's partition; one of ten years ago to the default one,
    // which is how retention and a bad clock stay apart.
    let now_id = (jiff::Timestamp::now().as_millisecond()) << 16;
    let old_id = (jiff::Timestamp::now().as_millisecond() - 10 * 365 * 86_400_000) << 16;
    let placed = cluster.admin_sql(
        &database.name,
        &format!(
            "INSERT INTO mw_events (id, received_at, source, provider, kind, recipient, recipient_domain, header, record)
             VALUES ({now_id}, now(), 'opptima', 'opptima', 'delivered', 'jane@example.com', 'example.com', '\\x00', '\\x00'),
                    ({old_id}, now(), 'opptima', 'opptima', 'delivered', 'jane@example.com', 'example.com', '\\x00', '\\x00');
             SELECT string_agg(tableoid::regclass::text, ',' ORDER BY id DESC) FROM mw_events;"
        ),
    );
    assert_eq!(
        placed.trim(),
        format!("mw_events_{},mw_events_default", today.strftime("%Y%m%d"))
    );
}

#[test]
fn start_failures_name_what_to_fix() {
    let Some(cluster) = cluster() else { return };
    let database = cluster.fresh_database();

    // Nothing listening.
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port();
    let unreachable = database.url.replace(
        &format!(":{}/", cluster.port()),
        &format!(":{closed_port}/"),
    );
    fails_saying(
        &database,
        &unreachable,
        &["migrate"],
        &format!("cannot reach PostgreSQL at 127.0.0.1:{closed_port}"),
    );

    // A wrong password, for `serve` as for `migrate`.
    let wrong = database
        .url
        .replace(&format!(":{}@", database.password), ":not-the-password@");
    for command in [&["migrate"][..], &["serve"]] {
        fails_saying(
            &database,
            &wrong,
            command,
            &format!("refused the login of role `{}`", database.role),
        );
    }

    // A database that does not exist.
    let missing = database
        .url
        .replace(&format!("/{}", database.name), "/no_such_database");
    fails_saying(
        &database,
        &missing,
        &["migrate", "--check"],
        "has no database `no_such_database`",
    );

    // A role that may connect but not create tables, then one that may not write them.
    let reader = format!("{}_reader", database.role);
    cluster.admin_sql(
        &database.name,
        &format!(
            "CREATE ROLE {reader} LOGIN PASSWORD '{password}';
             GRANT CONNECT ON DATABASE {name} TO {reader};",
            password = database.password,
            name = database.name
        ),
    );
    let as_reader = database
        .url
        .replace(&format!("//{}:", database.role), &format!("//{reader}:"));
    let message = fails_saying(
        &database,
        &as_reader,
        &["migrate"],
        &format!("role `{reader}` lacks rights"),
    );
    assert!(
        message.contains("GRANT CREATE ON SCHEMA public"),
        "{message}"
    );

    let migrate = mailwarden(&database.url, &["migrate"]);
    assert!(migrate.status.success(), "{}", stderr(&migrate));
    cluster.admin_sql(
        &database.name,
        &format!("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {reader};"),
    );
    let message = fails_saying(
        &database,
        &as_reader,
        &["serve"],
        &format!("role `{reader}` lacks rights"),
    );
    assert!(
        message.contains("cannot read and write mw_bodies"),
        "{message}"
    );

    // Not a PostgreSQL URL at all.
    fails_saying(
        &database,
        "mysql://somewhere",
        &["migrate"],
        "storage.url is not a PostgreSQL URL",
    );
}

#[test]
fn serve_checks_the_database_then_says_it_cannot_serve_from_it_yet() {
    let Some(cluster) = cluster() else { return };
    let database = cluster.fresh_database();
    let message = fails_saying(
        &database,
        &database.url,
        &["serve"],
        "cannot serve from PostgreSQL yet",
    );
    assert!(message.contains("its schema is current"), "{message}");
    let recorded = cluster.admin_sql(
        &database.name,
        "SELECT max(version) FROM mw_schema_migrations",
    );
    assert_eq!(recorded.trim(), "1", "serve migrated before refusing");
}

#[test]
fn the_postgres_backend_without_a_url_is_refused_before_anything_starts() {
    let data = tempfile::tempdir().expect("temp dir");
    let output = Command::new(env!("CARGO_BIN_EXE_mailwarden"))
        .args(["serve", "--data"])
        .arg(data.path())
        .env_remove("MAILWARDEN_CONFIG")
        .env_remove("MAILWARDEN_STORAGE_URL")
        .env("MAILWARDEN_STORAGE_BACKEND", "postgres")
        .env("MAILWARDEN_LISTEN", "127.0.0.1:0")
        .output()
        .expect("run mailwarden");
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("needs storage.url (or MAILWARDEN_STORAGE_URL)"),
        "{}",
        stderr(&output)
    );
    let wrong = Command::new(env!("CARGO_BIN_EXE_mailwarden"))
        .args(["migrate", "--check", "--data"])
        .arg(data.path())
        .env_remove("MAILWARDEN_CONFIG")
        .env("MAILWARDEN_STORAGE_BACKEND", "mysql")
        .output()
        .expect("run mailwarden");
    assert!(
        stderr(&wrong).contains("MAILWARDEN_STORAGE_BACKEND `mysql` is neither"),
        "{}",
        stderr(&wrong)
    );
}

/// Every event and suppression of an embedded store, as the store reads them back.
async fn contents_of_embedded(data: &std::path::Path) -> (Vec<(u64, Value)>, Vec<Value>) {
    let store = mailwarden::store::Store::open(&data.join("db"), &Default::default())
        .expect("open the embedded store");
    let mut events = Vec::new();
    let page = store
        .events_page(&mailwarden::store::EventQuery {
            limit: 1000,
            ..Default::default()
        })
        .expect("events");
    for event in page.events {
        let id = event.id.expect("id").0;
        events.push((id, serde_json::to_value(&event).expect("json")));
    }
    let mut suppressions = Vec::new();
    store
        .scan_suppressions(None, |entry| {
            suppressions.push(serde_json::to_value(&entry).expect("json"));
            true
        })
        .expect("suppressions");
    (events, suppressions)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_store_copies_an_embedded_store_and_can_be_run_again() {
    let Some(cluster) = cluster() else { return };
    let database = cluster.fresh_database();

    // A real service on the embedded store: events, a bounce the shipped rule
    // suppresses, and suppressions added and lifted over the API.
    let mut app = crate::helpers::spawn_app_with(|config| {
        config.rules_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    })
    .await;
    for (source, fixture) in [
        ("sendpulse", "sendpulse/bulk_events.json"),
        ("sendpulse", "sendpulse/hard_bounces.json"),
        ("opptima", "opptima/smtp_bounce.json"),
        ("opptima", "opptima/marketing_click.json"),
    ] {
        let (status, body) = app.post_fixture(source, fixture).await;
        assert_eq!(status, 200, "{source}/{fixture}: {body}");
    }
    let (status, body) = app.post("sendpulse", b"{ not json".to_vec()).await;
    assert_eq!(status, 400, "{body}");
    let client = crate::helpers::http_client();
    for address in ["kept@example.com", "lifted@example.com"] {
        let answer = client
            .put(app.url(&format!("/api/suppressions/{address}")))
            .json(&serde_json::json!({ "reason": "asked by support" }))
            .send()
            .await
            .expect("put");
        assert!(answer.status().is_success());
    }
    let answer = client
        .delete(app.url("/api/suppressions/lifted@example.com"))
        .json(&serde_json::json!({ "reason": "customer asked", "by": "support" }))
        .send()
        .await
        .expect("delete");
    assert!(answer.status().is_success());
    crate::helpers::eventually("the rules to catch up", || async {
        let (_, storage) = app.get("/api/storage").await;
        (storage["pending_events"] == 0).then_some(())
    })
    .await;
    crate::actions::outbox_drained(&app).await;
    let data = app.data_dir();
    app.stop().await;

    let from = data.to_str().expect("utf-8 path").to_owned();
    let copy = mailwarden(&database.url, &["migrate-store", "--from", &from]);
    assert!(
        copy.status.success(),
        "{}\n{}",
        stdout(&copy),
        stderr(&copy)
    );
    let said = stdout(&copy);
    for part in ["bodies", "events", "suppressions", "quarantine"] {
        let line = said
            .lines()
            .find(|line| line.starts_with(part))
            .unwrap_or_else(|| panic!("no {part} line in {said}"));
        assert!(line.ends_with("same"), "{line}");
    }

    // What comes out of PostgreSQL is what came out of the embedded store.
    let (events, suppressions) = contents_of_embedded(&data).await;
    assert!(events.len() >= 6, "{} events", events.len());
    assert!(suppressions.len() >= 3, "{suppressions:?}");
    let pg =
        mailwarden::store::postgres::PgStore::connect(&mailwarden::store::postgres::PgOptions {
            url: mailwarden::config::Secret::new(database.url.clone()),
            pool_size: 2,
            fold_local_parts: false,
            max_group: 64,
        })
        .await
        .expect("connect");
    for (id, expected) in &events {
        let event = pg
            .event(mailwarden::event::EventId(*id))
            .await
            .expect("read")
            .unwrap_or_else(|| panic!("event {id} not copied"));
        assert_eq!(&serde_json::to_value(&event).expect("json"), expected);
    }
    for expected in &suppressions {
        let address = expected["address"].as_str().expect("address");
        let entry = pg
            .suppression(address)
            .await
            .expect("read")
            .expect("copied");
        assert_eq!(&serde_json::to_value(&entry).expect("json"), expected);
    }
    let lifted = suppressions
        .iter()
        .find(|entry| entry["address"] == "lifted@example.com")
        .expect("lifted entry");
    assert_eq!(lifted["history"].as_array().map(Vec::len), Some(2));

    // Run again, and again after losing half the events and the progress (an
    // interrupted copy into a database restored from an older dump): nothing doubles.
    let again = mailwarden(&database.url, &["migrate-store", "--from", &from]);
    assert!(again.status.success(), "{}", stdout(&again));
    cluster.admin_sql(
        &database.name,
        "DELETE FROM mw_events WHERE id IN (SELECT id FROM mw_events ORDER BY id LIMIT 4);
         DELETE FROM mw_copy_progress;",
    );
    let resumed = mailwarden(&database.url, &["migrate-store", "--from", &from]);
    assert!(
        resumed.status.success(),
        "{}\n{}",
        stdout(&resumed),
        stderr(&resumed)
    );
    let counted = cluster.admin_sql(
        &database.name,
        "SELECT (SELECT count(*) FROM mw_events) || ',' || (SELECT count(DISTINCT event_id) FROM mw_event_keys)",
    );
    assert_eq!(counted.trim(), format!("{},{}", events.len(), events.len()));
}
