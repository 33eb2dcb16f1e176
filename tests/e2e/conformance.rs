//! One behaviour, both backends: each scenario here runs against the embedded sled store
//! (in a temporary directory) and against PostgreSQL (a fresh database of the throwaway
//! cluster, see `pg`), through the operations both provide (`store::backend`).

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use mailwarden::config::Config;
use mailwarden::ingest::prepare_batch;
use mailwarden::ingest::providers::script::ScriptProviders;
use mailwarden::ingest::sources::{SourceContext, Sources};
use mailwarden::store::Stored;
use mailwarden::store::backend::{EventLog, SuppressionList};
use mailwarden::store::postgres::{PgOptions, PgStore};
use mailwarden::store::suppressions::{SuppressOutcome, SuppressRequest, Suppression};
use mailwarden::store::{Store, StoreOptions};
use serde_json::Value;

use crate::helpers::read_fixture;
use crate::pg::cluster;

/// The embedded store in a temporary directory (kept alive beside it).
fn sled_store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(&dir.path().join("db"), &StoreOptions::default()).expect("open");
    (store, dir)
}

/// A migrated PostgreSQL store on a fresh database; `None` when PostgreSQL is missing
/// and not required.
pub(crate) async fn pg_store() -> Option<PgStore> {
    let database = cluster()?.fresh_database();
    let options = PgOptions {
        url: mailwarden::config::Secret::new(database.url),
        pool_size: 8,
        fold_local_parts: false,
        max_group: 512,
    };
    let store = PgStore::connect(&options).await.expect("connect");
    store.migrate().await.expect("migrate");
    Some(store)
}

/// Runs `scenario` on both backends and checks that both saw the same (the scenario
/// returns what a user would read back, ids left out).
macro_rules! same_on_both_backends {
    ($scenario:ident) => {{
        let (sled, _dir) = sled_store();
        let on_sled = $scenario(Arc::new(sled), "sled").await;
        if let Some(pg) = pg_store().await {
            let on_pg = $scenario(Arc::new(pg), "postgres").await;
            assert_eq!(on_sled, on_pg, "the backends disagree");
        }
    }};
}

/// Runs `scenario` on both backends, naming the backend in a failure.
macro_rules! on_both_backends {
    ($scenario:ident) => {{
        let (sled, _dir) = sled_store();
        $scenario(Arc::new(sled), "sled").await;
        if let Some(pg) = pg_store().await {
            $scenario(Arc::new(pg), "postgres").await;
        }
    }};
}

fn request(address: &str, expires_at: Option<Timestamp>) -> SuppressRequest {
    SuppressRequest {
        address: address.to_owned(),
        reason: "hard_bounce".into(),
        source: Some("opptima".into()),
        event_id: None,
        rule: "hard_bounce".into(),
        expires_at,
    }
}

fn changes(entry: &Suppression) -> Vec<&str> {
    entry.history.iter().map(|c| c.change.as_str()).collect()
}

/// A moment with whole microseconds (what PostgreSQL's timestamps keep), fixed for the
/// scenario.
fn now() -> Timestamp {
    let micros = Timestamp::now().as_microsecond();
    Timestamp::from_microsecond(micros).expect("now")
}

async fn suppressions_extend_upgrade_and_never_shorten(
    list: Arc<impl SuppressionList>,
    backend: &str,
) {
    let now = now();
    let day = SignedDuration::from_hours(24);

    let (entry, outcome) = list
        .suppress_since(&request("perm@example.com", None), None, now)
        .await
        .expect("suppress");
    assert_eq!(outcome, SuppressOutcome::Added, "{backend}");
    assert_eq!((entry.created_at, entry.active), (now, true), "{backend}");
    let (_, again) = list
        .suppress_since(&request("perm@example.com", Some(now + day)), None, now)
        .await
        .expect("suppress");
    assert_eq!(
        again,
        SuppressOutcome::Unchanged,
        "{backend}: permanent beats expiring"
    );

    let address = "soft@example.com";
    let steps = [
        (Some(now + day), SuppressOutcome::Added),
        (Some(now + day * 2), SuppressOutcome::Extended),
        (Some(now + day), SuppressOutcome::Unchanged),
        (None, SuppressOutcome::Upgraded),
        (Some(now + day * 9), SuppressOutcome::Unchanged),
    ];
    for (expires_at, expected) in steps {
        let (_, outcome) = list
            .suppress_since(&request(address, expires_at), None, now)
            .await
            .expect("suppress");
        assert_eq!(outcome, expected, "{backend}: expiring {expires_at:?}");
    }
    let stored = list
        .suppression(address)
        .await
        .expect("read")
        .expect("entry");
    assert_eq!(stored.expires_at, None, "{backend}");
    assert_eq!(
        changes(&stored),
        ["suppress", "extend", "upgrade"],
        "{backend}"
    );
    assert!(
        list.suppression("nobody@example.com")
            .await
            .expect("read")
            .is_none()
    );
}

async fn a_lifted_suppression_keeps_its_history(list: Arc<impl SuppressionList>, backend: &str) {
    let now = now();
    let address = "jane@example.com";
    list.suppress_since(&request(address, None), None, now)
        .await
        .expect("suppress");
    let lifted = list
        .unsuppress(address, "support", "asked by the customer", now)
        .await
        .expect("unsuppress")
        .expect("was in force");
    assert!(!lifted.active, "{backend}");
    assert_eq!(
        lifted.history[1].reason, "asked by the customer",
        "{backend}"
    );
    assert!(
        list.unsuppress(address, "support", "twice", now)
            .await
            .expect("unsuppress")
            .is_none(),
        "{backend}: nothing left to lift"
    );

    let (entry, outcome) = list
        .suppress_since(&request(address, None), None, now)
        .await
        .expect("suppress");
    assert_eq!(outcome, SuppressOutcome::Added, "{backend}");
    assert_eq!(
        changes(&entry),
        ["suppress", "unsuppress", "suppress"],
        "{backend}"
    );
    let stored = list
        .suppression(address)
        .await
        .expect("read")
        .expect("entry");
    assert_eq!(stored, entry, "{backend}: what is read is what was written");

    // The bulk check: the live entry, a lifted one, and an address never listed.
    list.suppress_since(&request("other@example.com", None), None, now)
        .await
        .expect("suppress");
    list.unsuppress("other@example.com", "support", "wrong address", now)
        .await
        .expect("unsuppress");
    let asked = ["jane@example.com", "other@example.com", "never@example.com"].map(str::to_owned);
    let statuses = list.statuses(&asked).await.expect("check");
    assert_eq!(statuses.len(), 2, "{backend}: {statuses:?}");
    assert!(statuses["jane@example.com"].in_force(now), "{backend}");
    assert!(!statuses["other@example.com"].in_force(now), "{backend}");
    assert_eq!(
        statuses["jane@example.com"].rule, "hard_bounce",
        "{backend}"
    );
}

async fn an_expired_suppression_is_added_again_and_imports_keep_their_dates(
    list: Arc<impl SuppressionList>,
    backend: &str,
) {
    let now = now();
    let hour = SignedDuration::from_hours(1);
    let address = "short@example.com";
    list.suppress_since(&request(address, Some(now + hour)), None, now)
        .await
        .expect("suppress");
    let later = now + hour * 2;
    let (entry, outcome) = list
        .suppress_since(&request(address, None), None, later)
        .await
        .expect("suppress");
    assert_eq!(
        outcome,
        SuppressOutcome::Added,
        "{backend}: the old one had expired"
    );
    assert_eq!(entry.created_at, later, "{backend}");

    let (imported, _) = list
        .suppress_since(
            &request("old@example.com", None),
            Some(now - hour * 1000),
            now,
        )
        .await
        .expect("import");
    assert_eq!(imported.created_at, now - hour * 1000, "{backend}");
    let (future, _) = list
        .suppress_since(&request("future@example.com", None), Some(now + hour), now)
        .await
        .expect("import");
    assert_eq!(
        future.created_at, now,
        "{backend}: a future date is clamped"
    );
}

async fn one_address_added_at_once_by_many_writers_is_added_once(
    list: Arc<impl SuppressionList + 'static>,
    backend: &str,
) {
    let now = now();
    let writers: Vec<_> = (0..8)
        .map(|_| {
            let list = list.clone();
            tokio::spawn(async move {
                list.suppress_since(&request("race@example.com", None), None, now)
                    .await
                    .expect("suppress")
                    .1
            })
        })
        .collect();
    let mut added = 0;
    for writer in writers {
        if writer.await.expect("writer") == SuppressOutcome::Added {
            added += 1;
        }
    }
    assert_eq!(added, 1, "{backend}");
    let entry = list
        .suppression("race@example.com")
        .await
        .expect("read")
        .expect("entry");
    assert_eq!(changes(&entry), ["suppress"], "{backend}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn suppressions_are_extended_or_upgraded_never_shortened() {
    on_both_backends!(suppressions_extend_upgrade_and_never_shorten);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lifting_a_suppression_keeps_its_history() {
    on_both_backends!(a_lifted_suppression_keeps_its_history);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expired_suppressions_come_back_as_new_and_imports_keep_dates() {
    on_both_backends!(an_expired_suppression_is_added_again_and_imports_keep_their_dates);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_add_an_address_once() {
    on_both_backends!(one_address_added_at_once_by_many_writers_is_added_once);
}

/// The default sources (every built-in provider under its own name).
fn sources() -> Sources {
    Sources::build(
        &Config::default(),
        &ScriptProviders::empty(),
        SourceContext::default(),
        None,
    )
    .expect("default sources")
}

/// Commits `body` as posted to `source` at `received_at`.
pub(crate) async fn post(
    log: &impl EventLog,
    source: &str,
    body: &[u8],
    received_at: Timestamp,
) -> mailwarden::store::IngestOutcome {
    let sources = sources();
    let source = sources.get(source).expect("source");
    let batch = prepare_batch(&source, body, received_at, log.next_id());
    log.commit(batch).await.expect("commit")
}

/// An event as a user reads it, without its id.
async fn read_back(log: &impl EventLog, stored: &Stored) -> Value {
    let id = match stored {
        Stored::New(id) | Stored::Duplicate(id) => *id,
    };
    let event = log.event(id).await.expect("read").expect("stored event");
    assert_eq!(event.id, Some(id));
    let mut json = serde_json::to_value(&event).expect("event serializes");
    if let Some(object) = json.as_object_mut() {
        object.remove("id");
    }
    json
}

async fn a_batch_and_its_retry(log: Arc<impl EventLog>, backend: &str) -> Vec<Value> {
    let received_at = Timestamp::from_second(1_765_000_000).expect("time");
    let body = read_fixture("sendpulse/bulk_events.json");
    let first = post(&*log, "sendpulse", &body, received_at).await;
    assert!(!first.events.is_empty(), "{backend}");
    assert!(
        first.events.iter().all(|s| matches!(s, Stored::New(_))),
        "{backend}: {:?}",
        first.events
    );

    // The provider retries: a new request, the same events.
    let retry = post(&*log, "sendpulse", &body, received_at).await;
    let first_ids: Vec<Stored> = first
        .events
        .iter()
        .map(|stored| match stored {
            Stored::New(id) => Stored::Duplicate(*id),
            other => *other,
        })
        .collect();
    assert_eq!(
        retry.events, first_ids,
        "{backend}: the retry points at the stored events"
    );

    let mut seen = Vec::new();
    for stored in &first.events {
        seen.push(read_back(&*log, stored).await);
    }
    seen
}

async fn one_event_twice_in_a_request_and_a_body_that_is_not_json(
    log: Arc<impl EventLog>,
    backend: &str,
) -> Vec<Value> {
    let received_at = Timestamp::from_second(1_765_000_100).expect("time");
    let element = String::from_utf8(read_fixture("sendpulse/delivered.json")).expect("utf-8");
    let element = element.trim();
    let element = element
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .unwrap_or(element);
    let body = format!("[{element},{element}]");
    let outcome = post(&*log, "sendpulse", body.as_bytes(), received_at).await;
    let [Stored::New(id), Stored::Duplicate(again)] = outcome.events[..] else {
        panic!("{backend}: {:?}", outcome.events);
    };
    assert_eq!(id, again, "{backend}");

    let broken = post(&*log, "sendpulse", b"{ not json", received_at).await;
    assert!(broken.events.is_empty(), "{backend}");
    assert_eq!(
        broken.quarantined.len(),
        1,
        "{backend}: the body is kept for replay"
    );
    vec![read_back(&*log, &Stored::New(id)).await]
}

async fn the_same_request_at_once_on_many_connections(
    log: Arc<impl EventLog + 'static>,
    backend: &str,
) -> Vec<Value> {
    let received_at = Timestamp::from_second(1_765_000_200).expect("time");
    let body = read_fixture("opptima/smtp_bounce.json");
    let posts: Vec<_> = (0..8)
        .map(|_| {
            let log = log.clone();
            let body = body.clone();
            tokio::spawn(async move { post(&*log, "opptima", &body, received_at).await })
        })
        .collect();
    let mut new = Vec::new();
    let mut duplicates = Vec::new();
    for posted in posts {
        for stored in posted.await.expect("post").events {
            match stored {
                Stored::New(id) => new.push(id),
                Stored::Duplicate(id) => duplicates.push(id),
            }
        }
    }
    assert_eq!(new.len(), 1, "{backend}: stored once");
    assert!(duplicates.iter().all(|id| *id == new[0]), "{backend}");
    vec![read_back(&*log, &Stored::New(new[0])).await]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retried_batch_is_stored_once_and_read_back_alike() {
    same_on_both_backends!(a_batch_and_its_retry);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicates_within_a_request_and_unreadable_bodies() {
    same_on_both_backends!(one_event_twice_in_a_request_and_a_body_that_is_not_json);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_copies_of_a_request_store_one_event() {
    same_on_both_backends!(the_same_request_at_once_on_many_connections);
}
