//! Load benchmark: `cargo bench --bench load [-- --quick]`.
//!
//! Starts, on ephemeral ports with temporary data directories,
//! - the ceiling: a trivial axum handler that reads the same bodies, parses the JSON and
//!   answers 200 without storing anything (in this process), and
//! - mailwarden itself: the real release binary as a child process, with its default
//!   durability (every 200 is on disk) and the shipped rules,
//!
//! drives both with the same keep-alive load generator, prints a table and writes
//! `target/bench/results.json`. See BENCHMARKS.md for what each scenario means.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::StatusCode;
use serde_json::{Value, json};

/// Run settings.
#[derive(Clone, Copy)]
struct Settings {
    quick: bool,
    /// Length of each timed load phase.
    phase: Duration,
    /// Events in the large-store scenario.
    store_events: usize,
    /// Addresses on the suppression list in the suppression scenario.
    suppressed: usize,
}

/// One measured load phase.
#[derive(Debug, Clone, serde::Serialize)]
struct Measurement {
    scenario: String,
    target: String,
    concurrency: usize,
    batch: usize,
    seconds: f64,
    requests: u64,
    errors: u64,
    requests_per_sec: f64,
    events_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    ratio_to_ceiling: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fsyncs_per_request: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

/// What a body generator produces for request number `n`.
type BodyFn = Arc<dyn Fn(u64) -> (Vec<u8>, usize) + Send + Sync>;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let settings = if quick {
        Settings {
            quick,
            phase: Duration::from_secs(3),
            store_events: 100_000,
            suppressed: 100_000,
        }
    } else {
        Settings {
            quick,
            phase: Duration::from_secs(15),
            store_events: 1_000_000,
            suppressed: 1_000_000,
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(settings));
}

async fn run(settings: Settings) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .expect("client");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpu = cpu_model();
    say(&format!(
        "mailwarden load benchmark ({} mode): {cores} cores, {cpu}; phases of {} s; durability: every 2xx flushed (group commit); rules: shipped rules/",
        if settings.quick { "quick" } else { "full" },
        settings.phase.as_secs()
    ));
    let mut results: Vec<Measurement> = Vec::new();
    let mut extra = serde_json::Map::new();

    let ceiling = start_ceiling().await;
    let work = tempfile::tempdir().expect("temp dir");
    let rules_dir = repo().join("rules");
    let mut server = Server::start(&work.path().join("data"), &rules_dir, &[]);

    // 1. Single-event posts (Opptima style), concurrency 64.
    let single: BodyFn = Arc::new(|n| (opptima_body(n), 1));
    let c = measure(
        &client,
        "single event (Opptima)",
        "ceiling",
        ceiling,
        "opptima",
        &single,
        64,
        1,
        settings.phase,
        None,
    )
    .await;
    let ceiling_single = c.requests_per_sec;
    results.push(c);
    let before = server.flushes(&client).await;
    let mut m = measure(
        &client,
        "single event (Opptima)",
        "mailwarden",
        server.address,
        "opptima",
        &single,
        64,
        1,
        settings.phase,
        None,
    )
    .await;
    m.ratio_to_ceiling = Some(m.requests_per_sec / ceiling_single);
    m.fsyncs_per_request =
        Some((server.flushes(&client).await - before) / m.requests.max(1) as f64);
    let max_single = m.requests_per_sec;
    results.push(m);

    // 2. p99 at half the maximum request rate.
    let mut half = measure(
        &client,
        "single event at 50% of max rate",
        "mailwarden",
        server.address,
        "opptima",
        &single,
        64,
        1,
        settings.phase,
        Some(max_single / 2.0),
    )
    .await;
    half.note = Some(format!("paced at {:.0} req/s", max_single / 2.0));
    results.push(half);

    // 3. SendPulse-style batches of 500 events.
    let batch: BodyFn = Arc::new(|n| (sendpulse_batch(n, 500, false), 500));
    let c = measure(
        &client,
        "batches of 500 (SendPulse)",
        "ceiling",
        ceiling,
        "sendpulse",
        &batch,
        8,
        500,
        settings.phase,
        None,
    )
    .await;
    let ceiling_batch = c.events_per_sec;
    results.push(c);
    let before = server.flushes(&client).await;
    let mut m = measure(
        &client,
        "batches of 500 (SendPulse)",
        "mailwarden",
        server.address,
        "sendpulse",
        &batch,
        8,
        500,
        settings.phase,
        None,
    )
    .await;
    m.ratio_to_ceiling = Some(m.events_per_sec / ceiling_batch);
    m.fsyncs_per_request =
        Some((server.flushes(&client).await - before) / m.requests.max(1) as f64);
    results.push(m);
    let drain = server.drain_time(&client).await;
    extra.insert("drain_after_batches_secs".into(), json!(drain));

    // 4. Mixed realistic stream, shipped rules; then 10 and 50 extra rules.
    let mixed: BodyFn = Arc::new(|n| (sendpulse_batch(n, 100, true), 100));
    for extra_rules in [0usize, 10, 50] {
        let rules = if extra_rules == 0 {
            rules_dir.clone()
        } else {
            let dir = work.path().join(format!("rules-{extra_rules}"));
            write_rules(&rules_dir, &dir, extra_rules);
            dir
        };
        server.stop();
        let data = work.path().join(format!("data-mixed-{extra_rules}"));
        server = Server::start(&data, &rules, &[]);
        let started_evaluated = server
            .metric(&client, "mailwarden_events_evaluated_total")
            .await;
        let load_started = Instant::now();
        let mut m = measure(
            &client,
            &format!("mixed stream, shipped + {extra_rules} rules"),
            "mailwarden",
            server.address,
            "sendpulse",
            &mixed,
            16,
            100,
            settings.phase,
            None,
        )
        .await;
        let drain = server.drain_time(&client).await;
        let evaluated = server
            .metric(&client, "mailwarden_events_evaluated_total")
            .await
            - started_evaluated;
        let eval_rate = evaluated / (load_started.elapsed().as_secs_f64());
        m.note = Some(format!(
            "rules evaluated {eval_rate:.0} events/s overall; queue drained {drain:.2} s after the load stopped"
        ));
        extra.insert(
            format!("rules_{extra_rules}_eval_events_per_sec"),
            json!(eval_rate),
        );
        extra.insert(format!("rules_{extra_rules}_drain_secs"), json!(drain));
        results.push(m);
    }

    // 5. A large store: fill it through the real write path, then measure.
    server.stop();
    let big = work.path().join("data-big");
    server = Server::start(&big, &rules_dir, &[]);
    let fill_started = Instant::now();
    let fill: BodyFn = Arc::new(|n| (sendpulse_batch(n + 1_000_000, 500, true), 500));
    let requests = settings.store_events / 500;
    let filled = fill_store(&client, server.address, &fill, requests).await;
    let fill_secs = fill_started.elapsed().as_secs_f64();
    say(&format!(
        "store filled with {filled} events in {fill_secs:.1} s ({:.0} events/s)",
        filled as f64 / fill_secs
    ));
    server.drain_time(&client).await;
    let m = measure(
        &client,
        &format!("ingest into a store of {filled} events"),
        "mailwarden",
        server.address,
        "sendpulse",
        &batch,
        8,
        500,
        settings.phase,
        None,
    )
    .await;
    results.push(m);
    let query = query_latency(&client, server.address, 200).await;
    extra.insert("recipient_query_p50_ms".into(), json!(query.0));
    extra.insert("recipient_query_p99_ms".into(), json!(query.1));
    let disk = dir_size(&big);
    let stored = server.metric(&client, "mailwarden_events_total").await;
    extra.insert(
        "bytes_on_disk_per_event".into(),
        json!(disk as f64 / stored.max(1.0)),
    );
    let reopen = server.kill_and_reopen(&client);
    extra.insert("reopen_after_kill9_secs".into(), json!(reopen));

    // 6. Suppression checks against a large list.
    let loaded = load_suppressions(&client, server.address, settings.suppressed).await;
    let (single_p50, single_p99) =
        suppression_get(&client, server.address, settings.suppressed, 1000).await;
    let (check_p50, check_p99) =
        suppression_check(&client, server.address, settings.suppressed, 100).await;
    extra.insert("suppressions_loaded".into(), json!(loaded));
    extra.insert("suppression_get_p50_ms".into(), json!(single_p50));
    extra.insert("suppression_get_p99_ms".into(), json!(single_p99));
    extra.insert("suppression_check_1000_p50_ms".into(), json!(check_p50));
    extra.insert("suppression_check_1000_p99_ms".into(), json!(check_p99));
    let rss = server.peak_rss_mb();
    extra.insert("server_peak_rss_mb".into(), json!(rss));
    server.stop();

    print_table(&results);
    say(&format!(
        "recipient query over {filled} events: p50 {:.2} ms, p99 {:.2} ms",
        query.0, query.1
    ));
    say(&format!(
        "bytes on disk per stored event: {:.0}",
        disk as f64 / stored.max(1.0)
    ));
    say(&format!(
        "reopen after kill -9 with {filled} events: {reopen:.2} s"
    ));
    say(&format!(
        "suppression GET against {loaded}: p50 {single_p50:.2} ms, p99 {single_p99:.2} ms"
    ));
    say(&format!(
        "suppression check of 1000 against {loaded}: p50 {check_p50:.2} ms, p99 {check_p99:.2} ms"
    ));
    say(&format!(
        "peak server RSS (all scenarios, last server process): {rss:.0} MB"
    ));

    let output = json!({
        "date": jiff::Timestamp::now().to_string(),
        "mode": if settings.quick { "quick" } else { "full" },
        "machine": { "cores": cores, "cpu": cpu },
        "phase_secs": settings.phase.as_secs(),
        "scenarios": results,
        "figures": extra,
    });
    let dir = repo().join("target").join("bench");
    std::fs::create_dir_all(&dir).expect("target/bench");
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_vec_pretty(&output).expect("json"),
    )
    .expect("write results");
    say(&format!("written {}", dir.join("results.json").display()));
}

#[allow(clippy::print_stdout, reason = "benchmark output")]
fn say(line: &str) {
    println!("{line}");
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

// ---------------------------------------------------------------- bodies

fn opptima_body(n: u64) -> Vec<u8> {
    format!(
        r#"{{"type":"SMTP","event":"delivered","relid":{n},"subject":"Order {n}","to":"user{}@example.com","msgid":"msg-{n}","timestamp":"2026-11-20 10:{:02}:{:02}","status":"Entregado"}}"#,
        n % 100_000,
        (n / 60) % 60,
        n % 60
    )
    .into_bytes()
}

/// A SendPulse batch; `mixed`: 90% delivered/open/click, 8% bounces, 1% complaints,
/// 1% unsubscribes over 100 000 recipients.
fn sendpulse_batch(n: u64, size: usize, mixed: bool) -> Vec<u8> {
    let mut out = String::with_capacity(size * 220);
    out.push('[');
    for i in 0..size as u64 {
        let seq = n * size as u64 + i;
        let recipient = format!("user{}@example.com", seq % 100_000);
        let ts = 1_763_600_000 + seq;
        let event = if mixed {
            match seq % 100 {
                0..=59 => r#""event":"delivered","smtp_server_response_code":"250""#.to_owned(),
                60..=79 => r#""event":"opened""#.to_owned(),
                80..=89 => r#""event":"clicked""#.to_owned(),
                90..=95 => r#""event":"soft_bounces","smtp_server_response_code":452,"smtp_server_response_subcode":"4.2.2","smtp_server_response":"452 4.2.2 Mailbox full""#.to_owned(),
                96..=97 => r#""event":"hard_bounces","smtp_server_response_code":550,"smtp_server_response_subcode":"5.1.1","smtp_server_response":"550 5.1.1 User unknown""#.to_owned(),
                98 => r#""event":"spam_by_user""#.to_owned(),
                _ => r#""event":"unsubscribed""#.to_owned(),
            }
        } else {
            r#""event":"delivered","smtp_server_response_code":"250","smtp_server_response_subcode":"""#.to_owned()
        };
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!(
            r#"{{{event},"timestamp":{ts},"message_id":{seq},"recipient":"{recipient}","email":"{recipient}","sender":"news@shop.example","subject":"Newsletter"}}"#
        ));
    }
    out.push(']');
    out.into_bytes()
}

fn write_rules(shipped: &Path, dir: &Path, extra: usize) {
    std::fs::create_dir_all(dir).expect("rules dir");
    for file in std::fs::read_dir(shipped).expect("rules") {
        let path = file.expect("entry").path();
        if path.extension().is_some_and(|e| e == "rhai") {
            std::fs::copy(&path, dir.join(path.file_name().expect("name"))).expect("copy rule");
        }
    }
    let kinds = ["delivered", "open", "click", "bounce", "complaint"];
    for i in 0..extra {
        let kind = kinds[i % kinds.len()];
        std::fs::write(
            dir.join(format!("extra_{i:02}.rhai")),
            format!(
                "// on: {kind}\n// A simple extra rule for the benchmark.\nif event.recipient.ends_with(\"@blocked{i}.example\") && event.campaign != \"x\" {{\n    tag(\"extra-{i}\");\n}}\n"
            ),
        )
        .expect("write rule");
    }
}

// ---------------------------------------------------------------- servers

async fn start_ceiling() -> SocketAddr {
    async fn handler(body: Bytes) -> StatusCode {
        match serde_json::from_slice::<Value>(&body) {
            Ok(_) => StatusCode::OK,
            Err(_) => StatusCode::BAD_REQUEST,
        }
    }
    let router = axum::Router::new().route("/webhooks/{source}", axum::routing::post(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, router).await });
    address
}

/// The real binary, as a child process.
struct Server {
    child: Child,
    address: SocketAddr,
    data: PathBuf,
    rules: PathBuf,
    peak_rss_kb: u64,
}

impl Server {
    fn start(data: &Path, rules: &Path, env: &[(&str, &str)]) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mailwarden"));
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .arg("--rules")
            .arg(rules)
            .env("RUST_LOG", "warn,mailwarden::app=info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("start mailwarden");
        let stderr = child.stderr.take().expect("stderr");
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent {
                    if let Some(address) = listening_address(&line) {
                        let _ = sender.send(address);
                        sent = true;
                    }
                }
            }
        });
        let address = receiver
            .recv_timeout(Duration::from_secs(60))
            .expect("mailwarden reports its address");
        Server {
            child,
            address,
            data: data.to_owned(),
            rules: rules.to_owned(),
            peak_rss_kb: 0,
        }
    }

    fn sample_rss(&mut self) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        if let Some(kb) = status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
        {
            self.peak_rss_kb = self.peak_rss_kb.max(kb);
        }
    }

    fn peak_rss_mb(&mut self) -> f64 {
        self.sample_rss();
        self.peak_rss_kb as f64 / 1024.0
    }

    async fn metric(&self, client: &reqwest::Client, name: &str) -> f64 {
        let text = client
            .get(format!("http://{}/metrics", self.address))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .unwrap_or_default();
        text.lines()
            .filter(|l| l.starts_with(name) && !l.starts_with('#'))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    async fn flushes(&self, client: &reqwest::Client) -> f64 {
        self.metric(client, "mailwarden_store_flushes_total").await
    }

    /// Seconds until every accepted event is evaluated by the rules.
    async fn drain_time(&mut self, client: &reqwest::Client) -> f64 {
        let started = Instant::now();
        loop {
            self.sample_rss();
            let stored = self.metric(client, "mailwarden_events_total").await;
            let evaluated = self
                .metric(client, "mailwarden_events_evaluated_total")
                .await;
            if evaluated >= stored || started.elapsed() > Duration::from_secs(600) {
                return started.elapsed().as_secs_f64();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn kill_and_reopen(&mut self, _client: &reqwest::Client) -> f64 {
        self.sample_rss();
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
        let started = Instant::now();
        let restarted = Server::start(&self.data, &self.rules, &[]);
        let elapsed = started.elapsed().as_secs_f64();
        let peak = self.peak_rss_kb;
        *self = restarted;
        self.peak_rss_kb = peak;
        elapsed
    }

    fn stop(&mut self) {
        self.sample_rss();
        // SIGTERM for a clean stop.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn listening_address(line: &str) -> Option<SocketAddr> {
    let start = line.find("address=")? + "address=".len();
    let rest = &line[start..];
    let end = rest.find(|c: char| c.is_whitespace()).unwrap_or(rest.len());
    rest[..end].trim_matches('"').parse().ok()
}

// ---------------------------------------------------------------- load

#[allow(clippy::too_many_arguments)]
async fn measure(
    client: &reqwest::Client,
    scenario: &str,
    target: &str,
    address: SocketAddr,
    source: &str,
    body: &BodyFn,
    concurrency: usize,
    batch: usize,
    duration: Duration,
    rate: Option<f64>,
) -> Measurement {
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let url = format!("http://{address}/webhooks/{source}");
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let pace = rate.map(|r| Duration::from_secs_f64(concurrency as f64 / r));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, url, body, errors) =
            (client.clone(), url.clone(), body.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut next = Instant::now();
            while Instant::now() < deadline {
                if let Some(pace) = pace {
                    if let Some(wait) = next.checked_duration_since(Instant::now()) {
                        tokio::time::sleep(wait).await;
                    }
                    next += pace;
                }
                let n = SEQUENCE.fetch_add(1, Ordering::Relaxed);
                let (payload, _) = body(n);
                let sent = Instant::now();
                let ok = match client.post(&url).body(payload).send().await {
                    Ok(response) => {
                        let ok = response.status().is_success();
                        let _ = response.bytes().await;
                        ok
                    }
                    Err(_) => false,
                };
                latencies.push(sent.elapsed().as_micros() as u64);
                if !ok {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("load task"));
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pick = |q: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    let requests = latencies.len() as u64;
    let errors = errors.load(Ordering::Relaxed);
    let good = requests - errors;
    let measurement = Measurement {
        scenario: scenario.to_owned(),
        target: target.to_owned(),
        concurrency,
        batch,
        seconds,
        requests,
        errors,
        requests_per_sec: good as f64 / seconds,
        events_per_sec: (good * batch as u64) as f64 / seconds,
        p50_ms: pick(0.5),
        p99_ms: pick(0.99),
        max_ms: latencies.last().copied().unwrap_or(0) as f64 / 1000.0,
        ratio_to_ceiling: None,
        fsyncs_per_request: None,
        note: None,
    };
    say(&format!(
        "  {scenario} / {target}: {:.0} req/s, {:.0} events/s, p99 {:.2} ms, errors {errors}",
        measurement.requests_per_sec, measurement.events_per_sec, measurement.p99_ms
    ));
    measurement
}

async fn fill_store(
    client: &reqwest::Client,
    address: SocketAddr,
    body: &BodyFn,
    requests: usize,
) -> usize {
    let url = format!("http://{address}/webhooks/sendpulse");
    let next = Arc::new(AtomicUsize::new(0));
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
        tasks.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= requests {
                    break;
                }
                let (payload, _) = body(n as u64);
                if let Ok(response) = client.post(&url).body(payload).send().await {
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

async fn load_suppressions(client: &reqwest::Client, address: SocketAddr, count: usize) -> usize {
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

fn dir_size(path: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(path) {
        for entry in entries.flatten() {
            let meta = entry.metadata();
            match meta {
                Ok(meta) if meta.is_dir() => total += dir_size(&entry.path()),
                Ok(meta) => total += meta.len(),
                Err(_) => {}
            }
        }
    }
    total
}

fn print_table(results: &[Measurement]) {
    say("");
    say(&format!(
        "| {:<38} | {:<10} | {:>4} | {:>5} | {:>9} | {:>10} | {:>7} | {:>7} | {:>8} | {:>6} | {:>6} |",
        "scenario",
        "target",
        "conc",
        "batch",
        "req/s",
        "events/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "ratio",
        "fsync/r"
    ));
    say(&format!("|{}|", "-".repeat(140)));
    for m in results {
        say(&format!(
            "| {:<38} | {:<10} | {:>4} | {:>5} | {:>9.0} | {:>10.0} | {:>7.2} | {:>7.2} | {:>8.2} | {:>6} | {:>6} |",
            m.scenario,
            m.target,
            m.concurrency,
            m.batch,
            m.requests_per_sec,
            m.events_per_sec,
            m.p50_ms,
            m.p99_ms,
            m.max_ms,
            m.ratio_to_ceiling
                .map_or("-".to_owned(), |r| format!("{:.0}%", r * 100.0)),
            m.fsyncs_per_request
                .map_or("-".to_owned(), |f| format!("{f:.3}")),
        ));
        if let Some(note) = &m.note {
            say(&format!("|   {note}"));
        }
    }
    say("");
}
