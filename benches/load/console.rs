//! The console scenario (issue 14, point 5): one server with `console_suppressions`
//! suppressions and `console_events` events of the last 30 days (mixed kinds over 100 000
//! recipients in 40 domains, through the real webhook path, with the shipped rules
//! running), then every console page fetched in turn, each `PAGE_SAMPLES` times, timed
//! from request to last byte over loopback. The target is a p99 under 100 ms per page.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;

use super::store::{fill_store, load_suppressions};
use super::{BodyFn, Report, Server, Settings, say, verdict};

/// Requests per page.
const PAGE_SAMPLES: usize = 30;
/// The target of every page, at the server.
const PAGE_TARGET_MS: f64 = 100.0;
/// Recipient domains of the generated events.
const DOMAINS: u64 = 40;

/// Runs the console scenario.
pub(super) async fn run(
    client: &reqwest::Client,
    settings: &Settings,
    work: &Path,
    rules: &Path,
    report: &mut Report,
) {
    say(&format!(
        "console scenario: {} suppressions, then {} events of the last 30 days in batches of 500",
        settings.console_suppressions, settings.console_events
    ));
    let data = work.join("data-console");
    let mut server = Server::start(&data, rules, &[]);
    let started = Instant::now();
    let loaded = load_suppressions(client, server.address, settings.console_suppressions).await;
    let now = jiff::Timestamp::now().as_second();
    let body: BodyFn = Arc::new(move |n| console_batch(n, 500, now));
    let accepted = fill_store(
        client,
        server.address,
        &body,
        0..settings.console_events / 500,
    )
    .await;
    let drain = server.drain_time(client).await;
    say(&format!(
        "  {loaded} suppressions and {accepted} events stored in {:.1} s (rules drained {drain:.1} s after); RSS {:.0} MB",
        started.elapsed().as_secs_f64(),
        server.rss_mb()
    ));
    report.figure("console_events", accepted);
    report.figure("console_suppressions", loaded);

    let pages = pages(client, server.address).await;
    say(&format!(
        "  {:<58} {:>8} {:>8} {:>8} {:>9}",
        "page", "p50 ms", "p99 ms", "max ms", "KB"
    ));
    let mut worst: (f64, String) = (0.0, String::new());
    let mut timings = serde_json::Map::new();
    for (name, path) in &pages {
        let (p50, p99, max, bytes) = time_page(client, server.address, path).await;
        say(&format!(
            "  {name:<58} {p50:>8.1} {p99:>8.1} {max:>8.1} {:>9.1}",
            bytes as f64 / 1024.0
        ));
        timings.insert(
            name.clone(),
            serde_json::json!({ "path": path, "p50_ms": p50, "p99_ms": p99, "max_ms": max, "bytes": bytes }),
        );
        if p99 > worst.0 {
            worst = (p99, name.clone());
        }
    }
    report.figure("console_pages", timings);
    report.target(
        &format!(
            "console pages with {accepted} events and {loaded} suppressions (p99 of {PAGE_SAMPLES} each)"
        ),
        format!("worst p99 {:.1} ms ({})", worst.0, worst.1),
        "< 100 ms",
        worst.0 < PAGE_TARGET_MS,
    );
    say(&format!(
        "  every page under {PAGE_TARGET_MS} ms: {}",
        verdict(worst.0 < PAGE_TARGET_MS)
    ));
}

/// A SendPulse batch over the last 30 days before `now`: 60% delivered, 20% opened,
/// 10% clicked, 6% soft and 2% hard bounces, 1% complaints, 1% unsubscribes.
fn console_batch(n: u64, size: usize, now: i64) -> Vec<u8> {
    let mut out = String::with_capacity(size * 240);
    out.push('[');
    for i in 0..size as u64 {
        let seq = n * size as u64 + i;
        let user = seq % 100_000;
        let recipient = format!("user{user}@d{}.example", user % DOMAINS);
        // Spread over 30 days, newest last.
        let ts = now - 30 * 86_400 + (seq * 7 % (30 * 86_400)) as i64;
        let event = match seq % 100 {
            0..=59 => r#""event":"delivered","smtp_server_response_code":"250""#,
            60..=79 => r#""event":"opened""#,
            80..=89 => r#""event":"clicked""#,
            90..=95 => {
                r#""event":"soft_bounces","smtp_server_response_code":452,"smtp_server_response_subcode":"4.2.2","smtp_server_response":"452 4.2.2 Mailbox full""#
            }
            96..=97 => {
                r#""event":"hard_bounces","smtp_server_response_code":550,"smtp_server_response_subcode":"5.1.1","smtp_server_response":"550 5.1.1 User unknown""#
            }
            98 => r#""event":"spam_by_user""#,
            _ => r#""event":"unsubscribed""#,
        };
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!(
            r#"{{{event},"timestamp":{ts},"message_id":{seq},"recipient":"{recipient}","email":"{recipient}","sender":"news@shop.example","subject":"Newsletter {}"}}"#,
            seq % 12
        ));
    }
    out.push(']');
    out.into_bytes()
}

/// Every page of the console, with real ids and addresses from the store.
async fn pages(client: &reqwest::Client, address: SocketAddr) -> Vec<(String, String)> {
    let newest: Value = client
        .get(format!("http://{address}/api/events?limit=1"))
        .send()
        .await
        .expect("events answer")
        .json()
        .await
        .unwrap_or(Value::Null);
    let event_id = newest["events"][0]["id"]
        .as_str()
        .unwrap_or("evt_1")
        .to_owned();
    let busy = "user4242@d2.example";
    let list = [
        ("overview, 24 h", "/ui?period=24h".to_owned()),
        ("overview, 7 d", "/ui?period=7d".to_owned()),
        ("overview, 30 d", "/ui?period=30d".to_owned()),
        (
            "overview live fragment",
            "/ui/overview/live?period=7d".to_owned(),
        ),
        ("events, newest", "/ui/events".to_owned()),
        (
            "events, by recipient",
            format!("/ui/events?recipient={busy}"),
        ),
        (
            "events, by @domain",
            "/ui/events?recipient=%40d7.example".to_owned(),
        ),
        // No event matches: the page reads its bound of entry heads and offers "Older".
        (
            "events, by a @domain never seen",
            "/ui/events?recipient=%40nowhere.example".to_owned(),
        ),
        ("events, hard bounces", "/ui/events?kind=bounce".to_owned()),
        (
            "events, complaints of one source",
            "/ui/events?kind=complaint&source=sendpulse".to_owned(),
        ),
        ("event detail", format!("/ui/events/{event_id}")),
        ("recipient page", format!("/ui/recipient?address={busy}")),
        ("suppressions, first page", "/ui/suppressions".to_owned()),
        (
            "suppressions, by domain",
            "/ui/suppressions?q=%40d3.example".to_owned(),
        ),
        (
            "suppressions, one address",
            "/ui/suppressions?q=blocked77777%40example.net".to_owned(),
        ),
        ("rules", "/ui/rules".to_owned()),
        ("outbox", "/ui/outbox".to_owned()),
        ("outbox, dead letters", "/ui/outbox?status=dead".to_owned()),
        ("outbox, retry-all count", "/ui/outbox/retry-all".to_owned()),
        ("alerts", "/ui/alerts".to_owned()),
        ("quarantine", "/ui/quarantine".to_owned()),
        ("sources", "/ui/sources".to_owned()),
    ];
    list.into_iter()
        .map(|(name, path)| (name.to_owned(), path))
        .collect()
}

/// Fetches `path` `PAGE_SAMPLES` times; returns p50, p99 and max in ms and the page size.
async fn time_page(
    client: &reqwest::Client,
    address: SocketAddr,
    path: &str,
) -> (f64, f64, f64, usize) {
    let url = format!("http://{address}{path}");
    let mut latencies = Vec::with_capacity(PAGE_SAMPLES);
    let mut bytes = 0;
    for _ in 0..PAGE_SAMPLES {
        let started = Instant::now();
        let response = client.get(&url).send().await.expect("page answers");
        let status = response.status();
        let body = response.bytes().await.expect("page body");
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
        assert!(status.is_success(), "{path}: {status}");
        bytes = body.len();
    }
    latencies.sort_by(f64::total_cmp);
    let pick = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
    (pick(0.5), pick(0.99), latencies[latencies.len() - 1], bytes)
}
