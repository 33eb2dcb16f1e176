//! Nodes sharing the rules' work on PostgreSQL: each waiting event is claimed by one node,
//! a recipient's events by one node at a time, and a dead node's claims pass to another
//! once their lease runs out.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use mailwarden::event::EventId;
use mailwarden::store::Stored;
use mailwarden::store::postgres::PgStore;

use crate::conformance::{pg_store, post};

const LEASE: Duration = Duration::from_secs(30);

/// Posts one SendPulse delivery per (recipient, n); returns the new ids by recipient.
async fn deliveries(
    store: &PgStore,
    recipients: &[&str],
    each: usize,
) -> BTreeMap<String, Vec<EventId>> {
    static SENT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let mut ids: BTreeMap<String, Vec<EventId>> = BTreeMap::new();
    for _ in 0..each {
        let n = SENT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        for recipient in recipients {
            let body = format!(
                r#"[{{"event":"delivered","email":"{recipient}","timestamp":{},"message_id":"m{n}-{recipient}"}}]"#,
                1_765_000_000 + n
            );
            let outcome = post(store, "sendpulse", body.as_bytes(), Timestamp::now()).await;
            for stored in outcome.events {
                let Stored::New(id) = stored else {
                    panic!("{body} was a duplicate")
                };
                ids.entry((*recipient).to_owned()).or_default().push(id);
            }
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recipient_is_worked_on_by_one_node_at_a_time() {
    let Some(store) = pg_store().await else {
        return;
    };
    let ids = deliveries(&store, &["a@example.com", "b@example.com"], 3).await;
    let all: Vec<EventId> = ids.values().flatten().copied().collect();

    let first = store
        .claim_pending("node-1", 100, LEASE)
        .await
        .expect("claim");
    let mut expected = all.clone();
    expected.sort_unstable();
    assert_eq!(first.events, expected, "everything was free");
    let second = store
        .claim_pending("node-2", 100, LEASE)
        .await
        .expect("claim");
    assert!(second.events.is_empty(), "node-1 holds both recipients");

    // A new event of a recipient node-1 is working on waits for node-1 to finish.
    let later = deliveries(&store, &["a@example.com"], 1).await;
    let later = later["a@example.com"][0];
    let second = store
        .claim_pending("node-2", 100, LEASE)
        .await
        .expect("claim");
    assert!(second.events.is_empty(), "a@ is still node-1's: {second:?}");
    assert_eq!(
        store
            .finish_pending("node-2", &first.events)
            .await
            .expect("finish"),
        0,
        "node-2 cannot finish what node-1 holds"
    );
    assert_eq!(
        store
            .finish_pending("node-1", &first.events)
            .await
            .expect("finish"),
        first.events.len() as u64
    );
    let second = store
        .claim_pending("node-2", 100, LEASE)
        .await
        .expect("claim");
    assert_eq!(second.events, vec![later]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_claims_pass_to_another_when_the_lease_runs_out() {
    let Some(store) = pg_store().await else {
        return;
    };
    deliveries(&store, &["c@example.com", "d@example.com"], 2).await;
    let dead = store
        .claim_pending("node-dead", 100, Duration::from_millis(300))
        .await
        .expect("claim");
    assert_eq!(dead.events.len(), 4);
    assert!(
        store
            .claim_pending("node-2", 100, LEASE)
            .await
            .expect("claim")
            .events
            .is_empty(),
        "still leased"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let taken = store
        .claim_pending("node-2", 100, LEASE)
        .await
        .expect("claim");
    assert_eq!(taken.events, dead.events, "taken over in order");
    // The dead node, back too late, cannot drop what node-2 now holds.
    assert_eq!(
        store
            .finish_pending("node-dead", &dead.events)
            .await
            .expect("finish"),
        0
    );
    assert_eq!(store.pending_count().await.expect("count"), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_claiming_at_once_evaluate_each_event_once_and_each_recipient_in_order() {
    let Some(store) = pg_store().await else {
        return;
    };
    let recipients: Vec<String> = (0..12).map(|n| format!("r{n}@example.com")).collect();
    let names: Vec<&str> = recipients.iter().map(String::as_str).collect();
    let ids = deliveries(&store, &names, 4).await;
    let store = Arc::new(store);
    let nodes: Vec<_> = (0..4)
        .map(|node| {
            let store = store.clone();
            tokio::spawn(async move {
                let name = format!("node-{node}");
                let mut evaluated = Vec::new();
                loop {
                    let claim = store.claim_pending(&name, 5, LEASE).await.expect("claim");
                    if claim.events.is_empty() {
                        if store.pending_count().await.expect("count") == 0 {
                            return evaluated;
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                    evaluated.extend(claim.events.iter().copied());
                    // Evaluating takes a while; meanwhile the other nodes claim the rest.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    let finished = store
                        .finish_pending(&name, &claim.events)
                        .await
                        .expect("finish");
                    assert_eq!(finished, claim.events.len() as u64);
                }
            })
        })
        .collect();
    let mut seen = HashSet::new();
    let mut evaluated_by: BTreeMap<EventId, (usize, usize)> = BTreeMap::new();
    let mut busy_nodes = 0;
    for (node, task) in nodes.into_iter().enumerate() {
        let evaluated = task.await.expect("node");
        busy_nodes += usize::from(!evaluated.is_empty());
        for (position, id) in evaluated.into_iter().enumerate() {
            assert!(seen.insert(id), "{id:?} evaluated twice");
            evaluated_by.insert(id, (node, position));
        }
    }
    let all: usize = ids.values().map(Vec::len).sum();
    assert_eq!(seen.len(), all, "every event evaluated");
    assert!(busy_nodes >= 2, "the work was shared");
    // One recipient's events: by one node, oldest first.
    for (recipient, events) in &ids {
        let places: Vec<(usize, usize)> = events.iter().map(|id| evaluated_by[id]).collect();
        assert!(
            places
                .windows(2)
                .all(|pair| pair[0].0 == pair[1].0 && pair[0].1 < pair[1].1),
            "{recipient}: {places:?}"
        );
    }
}
