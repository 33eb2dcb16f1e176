//! Load benchmark: `cargo bench --bench load [-- --quick] [--store] [--peer] [--sustained SECS]`.
//!
//! Starts, on ephemeral ports with temporary data directories,
//! - the ceiling: a trivial axum handler that reads the same bodies, parses the JSON and
//!   answers 200 without storing anything (in this process), and
//! - mailwarden itself: the real release binary as a child process, with its default
//!   durability (every 200 is on disk) and the shipped rules,
//!
//! drives both with the same keep-alive load generator, prints a table and the targets of
//! issue 12 (information only: nothing asserts), and writes `target/bench/results.json`.
//! The store scenario lives in `load/store.rs`, the console pages in `load/console.rs`,
//! the Node-RED peer in `load/peer.rs`. See
//! BENCHMARKS.md for what each scenario means.

// The crate root is benches/load.rs, so its modules are found by path.
#[path = "common.rs"]
mod common;
#[path = "load/console.rs"]
mod console;
#[path = "load/peer.rs"]
mod peer;
#[path = "load/store.rs"]
mod store;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::StatusCode;
use common::{cpu_model, listening_address, repo, say, seconds, terminate};
use serde_json::{Value, json};

/// The p99 every round of single-event load should stay under (issue 12, point 8).
const P99_TARGET_MS: f64 = 50.0;

/// Run settings, from the command line.
#[derive(Debug, Clone, Copy, serde::Serialize)]
struct Settings {
    quick: bool,
    /// Run only the store scenario (with the ratios to the ceiling its targets need).
    store_only: bool,
    /// Add the Node-RED peer scenario.
    peer: bool,
    /// Run only the console scenario (page render times over a large store).
    console: bool,
    /// Events stored before the console pages are timed.
    console_events: usize,
    /// Suppressions stored before the console pages are timed.
    console_suppressions: usize,
    /// Length of each timed load phase.
    #[serde(serialize_with = "seconds")]
    phase: Duration,
    /// Events in the large store.
    store_events: usize,
    /// Events between two samples while the large store fills.
    sample_every: usize,
    /// Addresses on the suppression list of the large store.
    suppressed: usize,
    /// Expired events purged while single-event ingest is measured.
    purge_events: usize,
    /// Length of one round of the purge and sustained runs.
    #[serde(serialize_with = "seconds")]
    round: Duration,
    /// Length of the sustained single-event run.
    #[serde(serialize_with = "seconds")]
    sustained: Duration,
    /// Rounds of each side in the peer scenario.
    peer_rounds: usize,
}

const USAGE: &str = "flags: --quick, --store (only the store scenario), --peer (add the Node-RED peer), --console (only the console pages), --sustained SECS";

impl Settings {
    /// Reads the flags; `--bench`, which cargo passes to every benchmark, is ignored.
    fn from_args(args: &[String]) -> Result<Settings, String> {
        let (mut quick, mut store_only, mut peer, mut sustained) = (false, false, false, None);
        let mut console = false;
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--quick" => quick = true,
                "--store" => store_only = true,
                "--peer" => peer = true,
                "--console" => console = true,
                "--sustained" => {
                    let value = args.next().ok_or("--sustained needs a number of seconds")?;
                    let secs = value
                        .parse::<u64>()
                        .ok()
                        .filter(|secs| *secs > 0)
                        .ok_or(format!("--sustained {value}: not a number of seconds"))?;
                    sustained = Some(Duration::from_secs(secs));
                }
                "--bench" => {}
                other => return Err(format!("unknown argument `{other}`; {USAGE}")),
            }
        }
        let phase = Duration::from_secs(if quick { 3 } else { 15 });
        Ok(Settings {
            quick,
            store_only,
            peer,
            console,
            console_events: if quick { 100_000 } else { 1_000_000 },
            console_suppressions: if quick { 10_000 } else { 100_000 },
            phase,
            store_events: if quick { 100_000 } else { 1_000_000 },
            sample_every: if quick { 20_000 } else { 100_000 },
            suppressed: if quick { 100_000 } else { 1_000_000 },
            purge_events: if quick { 50_000 } else { 1_000_000 },
            round: if quick {
                phase
            } else {
                Duration::from_secs(30)
            },
            sustained: sustained.unwrap_or(Duration::from_secs(if quick { 20 } else { 300 })),
            peer_rounds: 3,
        })
    }

    fn describe(&self) -> String {
        if self.console {
            return format!(
                "scenario: console pages over {} events and {} suppressions, shipped rules",
                self.console_events, self.console_suppressions
            );
        }
        let mut scenarios = vec![if self.store_only {
            "ratios to the ceiling, store"
        } else {
            "single, half rate, batches, mixed, store"
        }];
        if self.peer {
            scenarios.push("Node-RED peer");
        }
        format!(
            "scenarios: {}; phases of {} s\n  store: {} events sampled every {}, {} suppressions; purge of {} expired events; sustained {} s in rounds of {} s at 80% of the max single rate{}",
            scenarios.join(", "),
            self.phase.as_secs(),
            self.store_events,
            self.sample_every,
            self.suppressed,
            self.purge_events,
            self.sustained.as_secs(),
            self.round.as_secs(),
            if self.peer {
                format!(
                    "\n  peer: Node-RED {}, {} rounds each of {} s, alternating, concurrency {}",
                    peer::NODE_RED_VERSION,
                    self.peer_rounds,
                    self.phase.as_secs(),
                    peer::CONCURRENCY
                )
            } else {
                String::new()
            }
        )
    }
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

impl Measurement {
    /// Requests answered with a 2xx.
    fn answered(&self) -> u64 {
        self.requests - self.errors
    }
}

/// A figure next to its target from issue 12.
#[derive(Debug, serde::Serialize)]
struct Target {
    figure: String,
    value: String,
    target: String,
    met: bool,
}

/// Everything a run measured: the table's phases, named figures and the targets.
#[derive(Default)]
struct Report {
    phases: Vec<Measurement>,
    figures: serde_json::Map<String, Value>,
    targets: Vec<Target>,
}

impl Report {
    fn figure(&mut self, name: &str, value: impl serde::Serialize) {
        self.figures.insert(name.to_owned(), json!(value));
    }

    /// Records `value` of `figure` against `target`, and prints it.
    fn target(&mut self, figure: &str, value: String, target: &str, met: bool) {
        say(&format!(
            "  {figure}: {value}  [target {target}: {}]",
            verdict(met)
        ));
        self.targets.push(Target {
            figure: figure.to_owned(),
            value,
            target: target.to_owned(),
            met,
        });
    }
}

fn verdict(met: bool) -> &'static str {
    if met { "PASS" } else { "MISS" }
}

/// What a body generator produces for request number `n`.
type BodyFn = Arc<dyn Fn(u64) -> Vec<u8> + Send + Sync>;

/// A load phase: what to send, how many requests at once, for how long, how fast.
#[derive(Clone)]
struct Load {
    scenario: String,
    source: &'static str,
    body: BodyFn,
    concurrency: usize,
    batch: usize,
    duration: Duration,
    /// Requests per second over all connections; `None` sends as fast as answers come.
    rate: Option<f64>,
}

impl Load {
    /// One Opptima event per request.
    fn single(scenario: impl Into<String>, concurrency: usize, duration: Duration) -> Load {
        Load {
            scenario: scenario.into(),
            source: "opptima",
            body: Arc::new(opptima_body),
            concurrency,
            batch: 1,
            duration,
            rate: None,
        }
    }

    /// SendPulse batches of `size` events (`mixed`: see [`sendpulse_batch`]).
    fn sendpulse(
        scenario: impl Into<String>,
        size: usize,
        mixed: bool,
        concurrency: usize,
        duration: Duration,
    ) -> Load {
        Load {
            scenario: scenario.into(),
            source: "sendpulse",
            body: Arc::new(move |n| sendpulse_batch(n, size, mixed)),
            concurrency,
            batch: size,
            duration,
            rate: None,
        }
    }

    fn paced(self, rate: f64) -> Load {
        Load {
            rate: Some(rate),
            ..self
        }
    }

    /// The webhook URL of this load's source on the ceiling or mailwarden.
    fn url(&self, address: SocketAddr) -> String {
        format!("http://{address}/webhooks/{}", self.source)
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let settings = Settings::from_args(&args).unwrap_or_else(|error| {
        eprintln!("{error}");
        std::process::exit(2);
    });
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
    let load_average = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    say(&format!(
        "mailwarden load benchmark ({} mode): {cores} cores, {cpu}, load average {}; durability: every 2xx flushed (group commit); rules: shipped rules/\n  {}",
        if settings.quick { "quick" } else { "full" },
        load_average
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        settings.describe()
    ));
    let mut report = Report::default();
    let work = tempfile::tempdir().expect("temp dir");
    let rules_dir = repo().join("rules");
    if settings.console {
        console::run(&client, &settings, work.path(), &rules_dir, &mut report).await;
        finish(&settings, report, cores, &cpu);
        return;
    }
    let ceiling = start_ceiling().await;

    let max_single = ingest_against_ceiling(
        &client,
        &settings,
        ceiling,
        &work.path().join("data"),
        &rules_dir,
        &mut report,
    )
    .await;
    if !settings.store_only {
        mixed_stream(&client, &settings, work.path(), &rules_dir, &mut report).await;
    }
    store::run(
        &client,
        &settings,
        work.path(),
        &rules_dir,
        max_single,
        &mut report,
    )
    .await;
    if settings.peer {
        peer::run(&client, &settings, work.path(), &rules_dir, &mut report).await;
    }

    finish(&settings, report, cores, &cpu);
}

/// Prints the table and the targets, and writes `target/bench/results.json`.
fn finish(settings: &Settings, report: Report, cores: usize, cpu: &str) {
    print_table(&report.phases);
    say("targets (information only):");
    for t in &report.targets {
        say(&format!(
            "  {} {}: {} (target {})",
            verdict(t.met),
            t.figure,
            t.value,
            t.target
        ));
    }
    let output = json!({
        "date": jiff::Timestamp::now().to_string(),
        "mode": if settings.quick { "quick" } else { "full" },
        "machine": { "cores": cores, "cpu": cpu },
        "settings": settings,
        "scenarios": report.phases,
        "figures": report.figures,
        "targets": report.targets,
    });
    let dir = repo().join("target").join("bench");
    std::fs::create_dir_all(&dir).expect("target/bench");
    let name = if settings.console {
        "results-console.json"
    } else {
        "results.json"
    };
    std::fs::write(
        dir.join(name),
        serde_json::to_vec_pretty(&output).expect("json"),
    )
    .expect("write results");
    say(&format!("written {}", dir.join(name).display()));
}

/// Single events and batches of 500 on the ceiling and on a fresh mailwarden (and the
/// single events at half rate, outside `--store`); returns mailwarden's single-event rate.
async fn ingest_against_ceiling(
    client: &reqwest::Client,
    settings: &Settings,
    ceiling: SocketAddr,
    data: &Path,
    rules: &Path,
    report: &mut Report,
) -> f64 {
    let mut server = Server::start(data, rules, &[]);
    let single = Load::single("single event (Opptima)", 64, settings.phase);
    let m = against_ceiling(client, &single, ceiling, &server, report).await;
    let max_single = m.requests_per_sec;
    let ratio = m.ratio_to_ceiling.unwrap_or(0.0);
    report.target(
        "single-event ingest, ratio to the ceiling",
        format!("{:.0}% ({max_single:.0} req/s)", ratio * 100.0),
        "≥ 35%",
        ratio >= 0.35,
    );

    if !settings.store_only {
        let half = Load::single("single event at 50% of max rate", 64, settings.phase)
            .paced(max_single / 2.0);
        let mut m = measure(client, &half, "mailwarden", &half.url(server.address)).await;
        m.note = Some(format!("paced at {:.0} req/s", max_single / 2.0));
        report.phases.push(m);
    }

    let batch = Load::sendpulse("batches of 500 (SendPulse)", 500, false, 8, settings.phase);
    let m = against_ceiling(client, &batch, ceiling, &server, report).await;
    let ratio = m.ratio_to_ceiling.unwrap_or(0.0);
    report.target(
        "batched ingest, ratio to the ceiling",
        format!("{:.1}% ({:.0} events/s)", ratio * 100.0, m.events_per_sec),
        "≥ 10%",
        ratio >= 0.10,
    );
    let drain = server.drain_time(client).await;
    report.figure("drain_after_batches_secs", drain);
    server.stop();
    max_single
}

/// Measures `load` on the ceiling, then on `server`; returns mailwarden's phase with its
/// ratio of events/s to the ceiling's and its fsyncs per request.
async fn against_ceiling(
    client: &reqwest::Client,
    load: &Load,
    ceiling: SocketAddr,
    server: &Server,
    report: &mut Report,
) -> Measurement {
    let c = measure(client, load, "ceiling", &load.url(ceiling)).await;
    let before = server.flushes(client).await;
    let mut m = measure(client, load, "mailwarden", &load.url(server.address)).await;
    m.ratio_to_ceiling = Some(m.events_per_sec / c.events_per_sec);
    m.fsyncs_per_request = Some((server.flushes(client).await - before) / m.requests.max(1) as f64);
    report.phases.push(c);
    report.phases.push(m.clone());
    m
}

/// Mixed realistic stream, shipped rules; then 10 and 50 extra rules.
async fn mixed_stream(
    client: &reqwest::Client,
    settings: &Settings,
    work: &Path,
    rules_dir: &Path,
    report: &mut Report,
) {
    for extra_rules in [0usize, 10, 50] {
        let rules = if extra_rules == 0 {
            rules_dir.to_owned()
        } else {
            let dir = work.join(format!("rules-{extra_rules}"));
            write_rules(rules_dir, &dir, extra_rules);
            dir
        };
        let mut server =
            Server::start(&work.join(format!("data-mixed-{extra_rules}")), &rules, &[]);
        let started_evaluated = server
            .metric(client, "mailwarden_events_evaluated_total")
            .await;
        let load_started = Instant::now();
        let mixed = Load::sendpulse(
            format!("mixed stream, shipped + {extra_rules} rules"),
            100,
            true,
            16,
            settings.phase,
        );
        let mut m = measure(client, &mixed, "mailwarden", &mixed.url(server.address)).await;
        let drain = server.drain_time(client).await;
        let evaluated = server
            .metric(client, "mailwarden_events_evaluated_total")
            .await
            - started_evaluated;
        let eval_rate = evaluated / (load_started.elapsed().as_secs_f64());
        m.note = Some(format!(
            "rules evaluated {eval_rate:.0} events/s overall; queue drained {drain:.2} s after the load stopped"
        ));
        report.figure(
            &format!("rules_{extra_rules}_eval_events_per_sec"),
            eval_rate,
        );
        report.figure(&format!("rules_{extra_rules}_drain_secs"), drain);
        report.phases.push(m);
        server.stop();
    }
}

// ---------------------------------------------------------------- bodies

/// One Opptima event; `n` makes its `msgid` and `relid` unique, so dedup keeps every one.
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
    env: Vec<(String, String)>,
    peak_rss_kb: u64,
}

impl Server {
    /// Starts `mailwarden serve` on `data` with `rules`, with `env` added to its
    /// environment (`MAILWARDEN_CONFIG` names a settings file).
    fn start(data: &Path, rules: &Path, env: &[(&str, &str)]) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mailwarden"));
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .arg("--rules")
            .arg(rules)
            .env("RUST_LOG", "warn,mailwarden::app=info")
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
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
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            peak_rss_kb: 0,
        }
    }

    /// Returns a `kB` field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`).
    fn status_kb(&self, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    }

    fn sample_rss(&mut self) {
        if let Some(kb) = self.status_kb("VmHWM") {
            self.peak_rss_kb = self.peak_rss_kb.max(kb);
        }
    }

    /// The server's resident memory now, in MB.
    fn rss_mb(&mut self) -> f64 {
        self.sample_rss();
        self.status_kb("VmRSS").unwrap_or(0) as f64 / 1024.0
    }

    /// The highest resident memory seen, over the processes that served this data.
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

    /// Kills the server with SIGKILL and starts it again on the same data; returns the
    /// seconds from the start of the new process to its listening address.
    fn kill_and_reopen(&mut self) -> f64 {
        self.sample_rss();
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
        let started = Instant::now();
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let restarted = Server::start(&self.data, &self.rules, &env);
        let elapsed = started.elapsed().as_secs_f64();
        let peak = self.peak_rss_kb;
        *self = restarted;
        self.peak_rss_kb = peak;
        elapsed
    }

    fn stop(&mut self) {
        self.sample_rss();
        terminate(&mut self.child);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET /api/storage` of the server at `address`: events, size, oldest event, last purge.
async fn storage(client: &reqwest::Client, address: SocketAddr) -> Value {
    match client
        .get(format!("http://{address}/api/storage"))
        .send()
        .await
    {
        Ok(response) => response.json().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

// ---------------------------------------------------------------- load

/// Applies `load` to `url` (keep-alive connections, one request in flight on each) and
/// measures it; `target` names what answers.
async fn measure(client: &reqwest::Client, load: &Load, target: &str, url: &str) -> Measurement {
    // One sequence for the whole run: every request of every phase has its own number.
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + load.duration;
    // Each connection sends every `pace`; their starts are spread over one pace.
    let pace = load
        .rate
        .map(|r| Duration::from_secs_f64(load.concurrency as f64 / r));
    let mut tasks = Vec::new();
    for connection in 0..load.concurrency {
        let (client, url, body, errors) = (
            client.clone(),
            url.to_owned(),
            load.body.clone(),
            errors.clone(),
        );
        let mut next =
            pace.map(|pace| started + pace.mul_f64(connection as f64 / load.concurrency as f64));
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                if let (Some(at), Some(pace)) = (next.as_mut(), pace) {
                    tokio::time::sleep_until((*at).into()).await;
                    *at += pace;
                }
                let payload = body(SEQUENCE.fetch_add(1, Ordering::Relaxed));
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
    let m = Measurement {
        scenario: load.scenario.clone(),
        target: target.to_owned(),
        concurrency: load.concurrency,
        batch: load.batch,
        seconds,
        requests,
        errors,
        requests_per_sec: good as f64 / seconds,
        events_per_sec: (good * load.batch as u64) as f64 / seconds,
        p50_ms: pick(0.5),
        p99_ms: pick(0.99),
        max_ms: latencies.last().copied().unwrap_or(0) as f64 / 1000.0,
        ratio_to_ceiling: None,
        fsyncs_per_request: None,
        note: None,
    };
    say(&format!(
        "  {} / {target}: {:.0} req/s, {:.0} events/s, p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms, errors {errors}",
        m.scenario, m.requests_per_sec, m.events_per_sec, m.p50_ms, m.p99_ms, m.max_ms
    ));
    m
}

/// Bytes the files under `path` take on disk (allocated blocks, as `du` counts them).
fn disk_usage(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(path) {
        for entry in entries.flatten() {
            match entry.metadata() {
                Ok(meta) if meta.is_dir() => total += disk_usage(&entry.path()),
                Ok(meta) => total += meta.blocks() * 512,
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
