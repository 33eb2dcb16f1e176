//! The store scenario, in one server process: `suppressed` suppressions first, then
//! `store_events` events through the real HTTP path in batches of 500, with the server's
//! RSS and the bytes on disk per event every `sample_every` events; then bytes per event,
//! batched ingest into the full store, recipient queries, suppression checks and the
//! reopen after `kill -9`. Then single-event ingest while a second server purges
//! `purge_events` expired events, and a sustained single-event run on the large store at
//! 80% of the max single rate, in rounds.

use std::net::SocketAddr;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{
    BodyFn, Load, Measurement, P99_TARGET_MS, Report, Server, Settings, disk_usage, measure, say,
    sendpulse_batch, storage, verdict,
};

const RSS_TARGET_MB: f64 = 150.0;
/// Most purge rounds before giving up on the purge finishing.
const MAX_PURGE_ROUNDS: usize = 10;

/// One sample taken while the store fills.
#[derive(serde::Serialize)]
struct FillSample {
    events: usize,
    seconds: f64,
    rss_mb: f64,
    bytes_per_event: f64,
    events_per_sec: f64,
}

/// One round of paced single events, with the server's RSS after it.
#[derive(serde::Serialize)]
struct Round {
    #[serde(flatten)]
    phase: Measurement,
    rss_mb: f64,
}

/// Runs the store scenario; `max_single` is the single-event rate measured on a fresh
/// store, which the purge and sustained runs are paced from.
pub(super) async fn run(
    client: &reqwest::Client,
    settings: &Settings,
    work: &Path,
    rules: &Path,
    max_single: f64,
    report: &mut Report,
) {
    say(&format!(
        "store scenario: {} suppressions, then {} events in batches of 500",
        settings.suppressed, settings.store_events
    ));
    let data = work.join("data-big");
    let mut server = Server::start(&data, rules, &[]);
    let started = Instant::now();
    let loaded = load_suppressions(client, server.address, settings.suppressed).await;
    say(&format!(
        "  {loaded} suppressions imported in {:.1} s; RSS {:.0} MB",
        started.elapsed().as_secs_f64(),
        server.rss_mb()
    ));
    let filled = fill_sampled(client, &mut server, &data, settings, report).await;

    server.drain_time(client).await;
    let summary = storage(client, server.address).await;
    let stored = summary["events"].as_u64().unwrap_or(filled as u64);
    let bytes = disk_usage(&data) as f64 / stored.max(1) as f64;
    report.figure("bytes_on_disk_per_event", bytes);
    report.figure("size_on_disk_bytes_by_sled", &summary["size_on_disk_bytes"]);
    report.target(
        "bytes on disk per stored event",
        format!("{bytes:.0} (du of the data directory / {stored} events)"),
        "≤ 600",
        bytes <= 600.0,
    );

    let batch = Load::sendpulse(
        format!("ingest into a store of {stored} events"),
        500,
        false,
        8,
        settings.phase,
    );
    let m = measure(client, &batch, "mailwarden", &batch.url(server.address)).await;
    report.phases.push(m);
    let (p50, p99) = query_latency(client, server.address, 200).await;
    say(&format!(
        "  recipient query over {stored} events: p50 {p50:.2} ms, p99 {p99:.2} ms"
    ));
    report.figure("recipient_query_p50_ms", p50);
    report.figure("recipient_query_p99_ms", p99);
    let (get_p50, get_p99) =
        suppression_get(client, server.address, settings.suppressed, 1000).await;
    let (check_p50, check_p99) =
        suppression_check(client, server.address, settings.suppressed, 100).await;
    say(&format!(
        "  suppression GET against {loaded}: p50 {get_p50:.2} ms, p99 {get_p99:.2} ms; check of 1000: p50 {check_p50:.2} ms, p99 {check_p99:.2} ms"
    ));
    report.figure("suppressions_loaded", loaded);
    report.figure("suppression_get_p50_ms", get_p50);
    report.figure("suppression_get_p99_ms", get_p99);
    report.figure("suppression_check_1000_p50_ms", check_p50);
    report.figure("suppression_check_1000_p99_ms", check_p99);

    let events = storage(client, server.address).await["events"]
        .as_u64()
        .unwrap_or(stored);
    let reopen = server.kill_and_reopen();
    report.figure("reopen_after_kill9_secs", reopen);
    report.target(
        &format!("reopen after kill -9 with {events} events"),
        format!("{reopen:.2} s (process start to listening)"),
        "< 1 s",
        reopen < 1.0,
    );
    server.drain_time(client).await;

    let rate = 0.8 * max_single;
    purge_during_ingest(client, settings, work, rules, rate, report).await;
    sustained(client, &mut server, settings, rate, report).await;
    let peak = server.peak_rss_mb();
    say(&format!(
        "  peak RSS of the large store's server (all its processes): {peak:.0} MB"
    ));
    report.figure("server_peak_rss_mb", peak);
    server.stop();
}

/// Fills the store in steps of `sample_every` events, sampling after each; returns the
/// events accepted.
async fn fill_sampled(
    client: &reqwest::Client,
    server: &mut Server,
    data: &Path,
    settings: &Settings,
    report: &mut Report,
) -> usize {
    let requests = settings.store_events / 500;
    let step = (settings.sample_every / 500).max(1);
    let body = fill_body();
    let started = Instant::now();
    let mut filled = 0;
    let mut samples = Vec::new();
    for first in (0..requests).step_by(step) {
        let step_started = Instant::now();
        let accepted = fill_store(
            client,
            server.address,
            &body,
            first..(first + step).min(requests),
        )
        .await;
        filled += accepted;
        let sample = FillSample {
            events: filled,
            seconds: started.elapsed().as_secs_f64(),
            rss_mb: server.rss_mb(),
            bytes_per_event: disk_usage(data) as f64 / filled.max(1) as f64,
            events_per_sec: accepted as f64 / step_started.elapsed().as_secs_f64(),
        };
        say(&format!(
            "  {:>8} events: RSS {:>4.0} MB [< 150 MB: {}], {:>5.0} bytes/event on disk, filling at {:.0} events/s",
            sample.events,
            sample.rss_mb,
            verdict(sample.rss_mb < RSS_TARGET_MB),
            sample.bytes_per_event,
            sample.events_per_sec
        ));
        samples.push(sample);
    }
    let secs = started.elapsed().as_secs_f64();
    say(&format!(
        "  store filled with {filled} events in {secs:.1} s ({:.0} events/s)",
        filled as f64 / secs
    ));
    report.figure("store_fill_events_per_sec", filled as f64 / secs);
    let max = samples.iter().map(|s| s.rss_mb).fold(0.0, f64::max);
    report.target(
        &format!(
            "server RSS at every {}-event sample, beside {} suppressions",
            settings.sample_every, settings.suppressed
        ),
        format!("max {max:.0} MB over {} samples", samples.len()),
        "< 150 MB",
        max < RSS_TARGET_MB,
    );
    report.figure("store_fill_samples", &samples);
    filled
}

/// Fills a second store with `purge_events` events, restarts its server with a retention
/// shorter than their age once they have expired, and measures paced single-event ingest
/// in rounds while the purge removes them.
async fn purge_during_ingest(
    client: &reqwest::Client,
    settings: &Settings,
    work: &Path,
    rules: &Path,
    rate: f64,
    report: &mut Report,
) {
    // Longer than a round, so the events of the first round are not due while it runs.
    let retention = settings.round + Duration::from_secs(5);
    say(&format!(
        "purge: {} events, then single events at {rate:.0} req/s while they are purged (retention {} s)",
        settings.purge_events,
        retention.as_secs()
    ));
    let data = work.join("data-purge");
    // Filled with the default retention, so that nothing is purged before all have expired.
    let mut server = Server::start(&data, rules, &[]);
    let started = Instant::now();
    let filled = fill_store(
        client,
        server.address,
        &fill_body(),
        0..settings.purge_events / 500,
    )
    .await;
    server.drain_time(client).await;
    server.stop();
    say(&format!(
        "  {filled} events stored and evaluated in {:.1} s; waiting {} s until all are older than the retention",
        started.elapsed().as_secs_f64(),
        retention.as_secs() + 1
    ));
    let config = work.join("purge.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\nretain_days = {}\npurge_interval_secs = 1\n",
            retention.as_secs_f64() / 86_400.0
        ),
    )
    .expect("write purge.toml");
    tokio::time::sleep(retention + Duration::from_secs(1)).await;
    let mut server = Server::start(
        &data,
        rules,
        &[(
            "MAILWARDEN_CONFIG",
            config.to_str().expect("temp path is UTF-8"),
        )],
    );
    let before = storage(client, server.address).await;
    let purge = tokio::spawn(finished_purge(client.clone(), server.address));
    let mut rounds = Vec::new();
    loop {
        let scenario = format!("ingest during a purge, round {}", rounds.len() + 1);
        rounds.push(paced_round(client, &mut server, scenario, rate, settings.round).await);
        if purge.is_finished() || rounds.len() >= MAX_PURGE_ROUNDS {
            break;
        }
    }
    let record = if purge.is_finished() {
        purge.await.unwrap_or(Value::Null)
    } else {
        purge.abort();
        Value::Null
    };
    let after = storage(client, server.address).await;
    server.stop();

    let count = |summary: &Value| summary["events"].as_i64().unwrap_or(0);
    let ingested: u64 = rounds.iter().map(|r| r.phase.answered()).sum();
    let purged = count(&before) + ingested as i64 - count(&after);
    let took = purge_seconds(&record);
    say(&format!(
        "  GET /api/storage events: {} just after the restart (the purge starts with the server), {} after the rounds, {ingested} ingested between: {purged} purged",
        count(&before),
        count(&after)
    ));
    say(&format!("  the purge of the expired events: {record}"));
    let worst = worst_p99(&rounds);
    let purge_state = match took {
        Some(secs) => format!(
            "the purge removed {} events in {secs:.1} s",
            record["events_purged"]
        ),
        None => format!("the purge had not finished after {} rounds", rounds.len()),
    };
    report.target(
        &format!("single-event ingest p99 during a purge of {filled} expired events"),
        format!(
            "worst round {worst:.2} ms over {} at {rate:.0} req/s; {purge_state}",
            rounds_of(rounds.len(), settings.round)
        ),
        "< 50 ms",
        worst < P99_TARGET_MS,
    );
    report.figure(
        "purge",
        json!({
            "events_filled": filled,
            "retention_secs": retention.as_secs(),
            "storage_before": before,
            "storage_after": after,
            "ingested_during": ingested,
            "events_purged_by_count": purged,
            "purge_record": record,
            "purge_secs": took,
            "rounds": rounds,
        }),
    );
}

/// Polls `GET /api/storage` until a purge that removed events has finished; returns its
/// record.
async fn finished_purge(client: reqwest::Client, address: SocketAddr) -> Value {
    loop {
        let summary = storage(&client, address).await;
        let purge = &summary["last_purge"];
        if purge["running"] == json!(false) && purge["events_purged"].as_u64() > Some(0) {
            return purge.clone();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn purge_seconds(record: &Value) -> Option<f64> {
    let at = |field: &str| record[field].as_str()?.parse::<jiff::Timestamp>().ok();
    Some(
        at("finished_at")?
            .duration_since(at("started_at")?)
            .as_secs_f64(),
    )
}

/// Paced single-event load on the large store for `settings.sustained`, in rounds.
async fn sustained(
    client: &reqwest::Client,
    server: &mut Server,
    settings: &Settings,
    rate: f64,
    report: &mut Report,
) {
    say(&format!(
        "sustained single-event load: {} s at {rate:.0} req/s (80% of the max single rate), rounds of {} s",
        settings.sustained.as_secs(),
        settings.round.as_secs()
    ));
    let mut rounds = Vec::new();
    let mut left = settings.sustained;
    while !left.is_zero() {
        let length = left.min(settings.round);
        left -= length;
        let scenario = format!("sustained round {}", rounds.len() + 1);
        rounds.push(paced_round(client, server, scenario, rate, length).await);
    }
    let worst = worst_p99(&rounds);
    report.target(
        "sustained single-event load, worst round p99",
        format!(
            "{worst:.2} ms over {} ({} s in all) at {rate:.0} req/s",
            rounds_of(rounds.len(), settings.round),
            settings.sustained.as_secs()
        ),
        "< 50 ms in every round",
        worst < P99_TARGET_MS,
    );
    report.figure("sustained_rounds", &rounds);
}

/// Measures one round of single events paced at `rate`, and prints it against the p99
/// target with the server's RSS.
async fn paced_round(
    client: &reqwest::Client,
    server: &mut Server,
    scenario: String,
    rate: f64,
    length: Duration,
) -> Round {
    let load = Load::single(scenario, 64, length).paced(rate);
    let phase = measure(client, &load, "mailwarden", &load.url(server.address)).await;
    let rss_mb = server.rss_mb();
    say(&format!(
        "    {:.0} of {rate:.0} req/s sent as paced; RSS {rss_mb:.0} MB; p99 {:.2} ms [< 50 ms: {}]",
        phase.requests_per_sec,
        phase.p99_ms,
        verdict(phase.p99_ms < P99_TARGET_MS)
    ));
    Round { phase, rss_mb }
}

/// "1 round of 3 s", "7 rounds of 3 s" (the last round of a run may be shorter).
fn rounds_of(count: usize, length: Duration) -> String {
    let plural = if count == 1 { "" } else { "s" };
    format!("{count} round{plural} of {} s", length.as_secs())
}

fn worst_p99(rounds: &[Round]) -> f64 {
    rounds.iter().map(|r| r.phase.p99_ms).fold(0.0, f64::max)
}

/// Mixed SendPulse batches of 500, numbered apart from the other scenarios' bodies.
fn fill_body() -> BodyFn {
    Arc::new(|n| sendpulse_batch(n + 1_000_000, 500, true))
}

/// Posts requests `range` of `body` to SendPulse's webhook over 8 connections; returns
/// the events accepted.
pub(super) async fn fill_store(
    client: &reqwest::Client,
    address: SocketAddr,
    body: &BodyFn,
    range: Range<usize>,
) -> usize {
    let url = format!("http://{address}/webhooks/sendpulse");
    let next = Arc::new(AtomicUsize::new(range.start));
    let stored = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (client, url, body, next, stored) = (
            client.clone(),
            url.clone(),
            body.clone(),
            next.clone(),
            stored.clone(),
        );
        let end = range.end;
        tasks.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= end {
                    break;
                }
                if let Ok(response) = client.post(&url).body(body(n as u64)).send().await {
                    if let Ok(answer) = response.json::<Value>().await {
                        stored.fetch_add(
                            answer["accepted"].as_u64().unwrap_or(0) as usize,
                            Ordering::Relaxed,
                        );
                    }
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    stored.load(Ordering::Relaxed)
}

async fn timed<F, Fut>(samples: usize, mut call: F) -> (f64, f64)
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut latencies = Vec::with_capacity(samples);
    for i in 0..samples {
        let started = Instant::now();
        call(i).await;
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    latencies.sort_by(f64::total_cmp);
    let pick = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
    (pick(0.5), pick(0.99))
}

async fn query_latency(
    client: &reqwest::Client,
    address: SocketAddr,
    samples: usize,
) -> (f64, f64) {
    timed(samples, |i| {
        let url = format!(
            "http://{address}/api/events?recipient=user{}@example.com&limit=50",
            (i * 7919) % 100_000
        );
        let client = client.clone();
        async move {
            if let Ok(response) = client.get(url).send().await {
                let _ = response.bytes().await;
            }
        }
    })
    .await
}

pub(super) async fn load_suppressions(
    client: &reqwest::Client,
    address: SocketAddr,
    count: usize,
) -> usize {
    let mut loaded = 0;
    for chunk_start in (0..count).step_by(200_000) {
        let end = (chunk_start + 200_000).min(count);
        let mut csv = String::from("address,reason,source,created_at,expires_at\n");
        for i in chunk_start..end {
            csv.push_str(&format!("blocked{i}@example.net,bench,,,\n"));
        }
        let answer: Value = client
            .post(format!("http://{address}/api/suppressions/import"))
            .body(csv)
            .send()
            .await
            .expect("import")
            .json()
            .await
            .unwrap_or(Value::Null);
        loaded += answer["added"].as_u64().unwrap_or(0) as usize
            + answer["updated"].as_u64().unwrap_or(0) as usize;
    }
    loaded
}

async fn suppression_get(
    client: &reqwest::Client,
    address: SocketAddr,
    count: usize,
    samples: usize,
) -> (f64, f64) {
    timed(samples, |i| {
        let url = format!(
            "http://{address}/api/suppressions/blocked{}@example.net",
            (i * 7919) % count.max(1)
        );
        let client = client.clone();
        async move {
            let _ = client.get(url).send().await;
        }
    })
    .await
}

async fn suppression_check(
    client: &reqwest::Client,
    address: SocketAddr,
    count: usize,
    samples: usize,
) -> (f64, f64) {
    timed(samples, |i| {
        // Half suppressed, half not.
        let addresses: Vec<String> = (0..1000)
            .map(|j| {
                if j % 2 == 0 {
                    format!("blocked{}@example.net", (i * 1000 + j) * 31 % count.max(1))
                } else {
                    format!("fresh{i}-{j}@example.org")
                }
            })
            .collect();
        let client = client.clone();
        async move {
            let _ = client
                .post(format!("http://{address}/api/suppressions/check"))
                .json(&json!({ "addresses": addresses }))
                .send()
                .await;
        }
    })
    .await
}
