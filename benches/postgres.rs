//! PostgreSQL store benchmark: `cargo bench --bench postgres [-- --quick]`.
//!
//! Starts a throwaway PostgreSQL cluster (Debian's `postgresql`, the e2e tests' harness)
//! and measures, in one run:
//! - the ceiling: the same event rows written by a plain multi-row `INSERT` (one per
//!   batch of 500, one transaction each) from one client, nothing else;
//! - mailwarden's PostgreSQL store: the same batches committed through its group commit
//!   (dedup keys, bodies, rule queue, `ON CONFLICT` handling) from `CONCURRENCY` tasks;
//! - the suppression check: 1 000 addresses against 1 000 000 suppressions, p50/p99.
//!
//! This is the store layer, not HTTP: `serve` cannot run on PostgreSQL yet (issue 15).
//! Prints its configuration and results and writes `target/bench/results-postgres.json`.
//! Nothing is asserted.

#[allow(
    dead_code,
    reason = "shared by the benchmarks; this one uses part of it"
)]
#[path = "common.rs"]
mod common;
#[allow(
    dead_code,
    reason = "the e2e harness; the benchmark uses only part of it"
)]
#[path = "../tests/e2e/pg.rs"]
mod pg;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{cpu_model, repo, say};
use jiff::Timestamp;
use mailwarden::config::{Config, Secret};
use mailwarden::ingest::prepare_batch;
use mailwarden::ingest::providers::script::ScriptProviders;
use mailwarden::ingest::sources::{SourceContext, Sources};
use mailwarden::store::IngestBatch;
use mailwarden::store::postgres::{PgOptions, PgStore};
use serde_json::json;

/// Events per request body.
const BATCH: usize = 500;
/// Tasks committing at once through the store.
const CONCURRENCY: usize = 8;

/// Run settings.
#[derive(Debug, Clone, Copy, serde::Serialize)]
struct Settings {
    quick: bool,
    /// Batches written by each side.
    batches: usize,
    /// Suppressions stored before the check is timed.
    suppressions: usize,
    /// Checks timed.
    checks: usize,
}

fn main() {
    let quick = std::env::args().any(|arg| arg == "--quick");
    let settings = Settings {
        quick,
        batches: if quick { 40 } else { 400 },
        suppressions: if quick { 100_000 } else { 1_000_000 },
        checks: if quick { 50 } else { 300 },
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(settings));
}

async fn run(settings: Settings) {
    let Some(cluster) = pg::cluster() else {
        panic!("the PostgreSQL benchmark needs Debian's postgresql package");
    };
    say(&format!(
        "PostgreSQL benchmark: {} cores ({}), batches of {BATCH}, {} batches per side, \
         concurrency {CONCURRENCY} through the store, {} suppressions, {} checks of 1 000; \
         the cluster runs with fsync=off (the test harness's settings), so both sides \
         measure CPU and protocol, not the disk",
        std::thread::available_parallelism().map_or(0, usize::from),
        cpu_model(),
        settings.batches,
        settings.suppressions,
        settings.checks,
    ));
    let database = cluster.fresh_database();
    let store = PgStore::connect(&PgOptions {
        url: Secret::new(database.url.clone()),
        pool_size: 16,
        fold_local_parts: false,
        max_group: 512,
    })
    .await
    .expect("connect");
    store.migrate().await.expect("migrate");

    let sources = Sources::build(
        &Config::default(),
        &ScriptProviders::empty(),
        SourceContext::default(),
        None,
    )
    .expect("sources");
    let source = sources.get("sendpulse").expect("sendpulse source");
    let batch_for = |side: &str, n: usize, store: &PgStore| -> IngestBatch {
        let body = sendpulse_body(side, n);
        prepare_batch(&source, body.as_bytes(), Timestamp::now(), store.next_id())
    };

    // Ceiling: the same rows, one plain multi-row INSERT per batch, one client.
    let batches: Vec<IngestBatch> = (0..settings.batches)
        .map(|n| batch_for("ceiling", n, &store))
        .collect();
    let client = tokio_postgres_client(&database.url).await;
    let started = Instant::now();
    let mut next_id: i64 = 1;
    for batch in &batches {
        let count = batch.events.len();
        let ids: Vec<i64> = (next_id..next_id + count as i64).collect();
        next_id += count as i64;
        let kinds: Vec<&str> = batch.events.iter().map(|e| e.kind.as_str()).collect();
        let recipients: Vec<&str> = batch.events.iter().map(|e| e.recipient.as_str()).collect();
        let records: Vec<&[u8]> = batch.events.iter().map(|e| e.record.as_slice()).collect();
        client
            .execute(
                "INSERT INTO bench_ceiling (id, received_at, source, provider, kind, recipient,
                     recipient_domain, header, record)
                 SELECT i, now(), 'sendpulse', 'sendpulse', k, r, split_part(r, '@', 2), $4, rec
                 FROM unnest($1::int8[], $2::text[], $3::text[], $5::bytea[]) AS t(i, k, r, rec)",
                &[&ids, &kinds, &recipients, &batch.block_header, &records],
            )
            .await
            .expect("ceiling insert");
    }
    let ceiling_secs = started.elapsed().as_secs_f64();
    let events_per_batch = batches.first().map_or(0, |b| b.events.len());
    let total_events = (settings.batches * events_per_batch) as f64;
    let ceiling_rate = total_events / ceiling_secs;
    say(&format!(
        "ceiling: {} events in {ceiling_secs:.2} s = {ceiling_rate:.0} events/s",
        total_events as u64
    ));

    // mailwarden's store: the same number of batches through the group commit.
    let store = Arc::new(store);
    let batches: Vec<IngestBatch> = (0..settings.batches)
        .map(|n| batch_for("store", n, &store))
        .collect();
    let queue = Arc::new(std::sync::Mutex::new(batches));
    let started = Instant::now();
    let mut latencies = Vec::new();
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let store = store.clone();
            let queue = queue.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let Some(batch) = queue.lock().expect("queue").pop() else {
                        return latencies;
                    };
                    let sent = Instant::now();
                    store.commit(batch).await.expect("commit");
                    latencies.push(sent.elapsed());
                }
            })
        })
        .collect();
    for task in tasks {
        latencies.extend(task.await.expect("task"));
    }
    let store_secs = started.elapsed().as_secs_f64();
    let store_rate = total_events / store_secs;
    latencies.sort_unstable();
    say(&format!(
        "store: {} events in {store_secs:.2} s = {store_rate:.0} events/s ({:.0}% of the ceiling); \
         per batch p50 {:.1} ms, p99 {:.1} ms",
        total_events as u64,
        100.0 * store_rate / ceiling_rate,
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.99)),
    ));

    // The suppression check.
    cluster.admin_sql(
        &database.name,
        &format!(
            "INSERT INTO mw_suppressions (address, domain, reason, rule, active, created_at, record)
             SELECT 'user' || n || '@example' || (n % 40) || '.com', 'example' || (n % 40) || '.com',
                    'hard_bounce', 'hard_bounce', true, now(),
                    jsonb_build_object('address', 'user' || n || '@example' || (n % 40) || '.com',
                        'reason', 'hard_bounce', 'rule', 'hard_bounce',
                        'created_at', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
                        'updated_at', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
                        'active', true, 'history', '[]'::jsonb)
             FROM generate_series(1, {}) AS n;
             ANALYZE mw_suppressions;",
            settings.suppressions
        ),
    );
    let mut checks = Vec::with_capacity(settings.checks);
    let mut found = 0;
    for round in 0..settings.checks {
        // Half listed, half not, spread over the list.
        let addresses: Vec<String> = (0..1_000)
            .map(|i| {
                let n = (round * 7_919 + i * 104_729) % (settings.suppressions * 2) + 1;
                format!("user{n}@example{}.com", n % 40)
            })
            .collect();
        let sent = Instant::now();
        let statuses = store.suppression_statuses(&addresses).await.expect("check");
        checks.push(sent.elapsed());
        found += statuses.len();
    }
    checks.sort_unstable();
    say(&format!(
        "suppression check of 1 000 against {}: p50 {:.2} ms, p99 {:.2} ms ({} of {} listed)",
        settings.suppressions,
        ms(percentile(&checks, 0.50)),
        ms(percentile(&checks, 0.99)),
        found,
        settings.checks * 1_000,
    ));

    let results = json!({
        "settings": settings,
        "cpu": cpu_model(),
        "ceiling_events_per_sec": ceiling_rate,
        "store_events_per_sec": store_rate,
        "store_ratio": store_rate / ceiling_rate,
        "store_batch_p50_ms": ms(percentile(&latencies, 0.50)),
        "store_batch_p99_ms": ms(percentile(&latencies, 0.99)),
        "check_p50_ms": ms(percentile(&checks, 0.50)),
        "check_p99_ms": ms(percentile(&checks, 0.99)),
    });
    let dir = repo().join("target/bench");
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("results-postgres.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&results).expect("json")).expect("write");
    say(&format!("written to {}", path.display()));
}

/// A SendPulse body of `BATCH` deliveries and bounces, unique to `side` and `n`.
fn sendpulse_body(side: &str, n: usize) -> String {
    let events: Vec<String> = (0..BATCH)
        .map(|i| {
            let event = if i % 10 == 0 { "hard_bounces" } else { "delivered" };
            format!(
                r#"{{"event":"{event}","email":"u{i}-{n}@example{}.com","timestamp":{},"message_id":"{side}-{n}-{i}"}}"#,
                i % 40,
                1_765_000_000 + n
            )
        })
        .collect();
    format!("[{}]", events.join(","))
}

/// A plain client for the ceiling, with its own table: the events' columns and indexes,
/// without partitions.
async fn tokio_postgres_client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
        .batch_execute(
            "CREATE TABLE bench_ceiling (LIKE mw_events INCLUDING DEFAULTS INCLUDING INDEXES)",
        )
        .await
        .expect("ceiling table");
    client
}

fn percentile(sorted: &[Duration], at: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() - 1) as f64 * at).round() as usize;
    sorted[index]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1_000.0
}
