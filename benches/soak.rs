//! Soak: `cargo bench --bench soak [-- --quick] [--duration SECS] [--kills N] [--seed N]
//! [--rate REQ_PER_SEC] [--connections N]`.
//!
//! Runs the real release binary as a child process on a temporary data directory, with
//! the shipped rules plus one that alerts on every hard bounce, its CRM calls going to an
//! HTTP receiver and its alerts to an SMTP sink in this process (`tests/e2e/sinks.rs`).
//! Connections post SendPulse batches (`soak/traffic.rs`) while the server is killed with
//! SIGKILL at random moments (seeded) and started again on the same data and port. Once
//! the load has stopped and the rules and the outbox have drained, `soak/audit.rs` counts
//! acknowledged events lost or duplicated, suppressions missing, and CRM calls and alerts
//! missed, redelivered or doubled. It prints the counts and exits with 1 if anything was
//! lost or really doubled. See BENCHMARKS.md, "Soak: kill -9 under load".

// The crate root is benches/soak.rs, so its modules are found by path.
#[path = "soak/audit.rs"]
mod audit;
#[path = "common.rs"]
mod common;
// The tests' SMTP sink and HTTP receiver; the soak uses only part of them.
#[path = "../tests/e2e/sinks.rs"]
#[allow(dead_code)]
mod sinks;
#[path = "soak/traffic.rs"]
mod traffic;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{cpu_model, listening_address, repo, say, seconds, terminate};
use serde_json::json;

use audit::Counts;
use traffic::{Ledger, Traffic};

/// How long the rules and the outbox may take to drain after the load.
const DRAIN_LIMIT: Duration = Duration::from_secs(300);
/// How long a started server may take to report its address.
const START_LIMIT: Duration = Duration::from_secs(60);

/// The rule the soak adds to the shipped ones. Their alerts are throttled (one mail per
/// key per hour, the rest folded into a digest), so no mail could be matched to an event;
/// this one mails every hard bounce, so each alert can be counted like a CRM call.
const ALERT_RULE_SOURCE: &str = "// on: bounce
// Soak benchmark: one alert per hard bounce, without a throttle key, so that every
// alert mail names one event.
if event.bounce_class == \"hard\" {
    alert(\"Hard bounce of \" + event.recipient, \"The soak's per-event alert.\");
}
";

/// Run settings, from the command line.
#[derive(Debug, Clone, Copy, serde::Serialize)]
struct Settings {
    quick: bool,
    /// Length of the load, kills included.
    #[serde(serialize_with = "seconds")]
    duration: Duration,
    kills: usize,
    seed: u64,
    /// Requests per second over all connections.
    rate: f64,
    connections: usize,
    /// Most events per request.
    max_batch: usize,
}

const USAGE: &str =
    "flags: --quick, --duration SECS, --kills N, --seed N, --rate REQ_PER_SEC, --connections N";

impl Settings {
    /// Reads the flags; `--bench`, which cargo passes to every benchmark, is ignored.
    fn from_args(args: &[String]) -> Result<Settings, String> {
        let mut settings = Settings {
            quick: false,
            duration: Duration::from_secs(300),
            kills: 20,
            seed: jiff::Timestamp::now().as_nanosecond() as u64,
            rate: 500.0,
            connections: 16,
            max_batch: 5,
        };
        let (mut duration, mut kills) = (None, None);
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut number = |name: &str| -> Result<u64, String> {
                let value = args.next().ok_or(format!("{name} needs a number"))?;
                value
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or(format!("{name} {value}: not a positive whole number"))
            };
            match arg.as_str() {
                "--quick" => settings.quick = true,
                "--duration" => duration = Some(Duration::from_secs(number("--duration")?)),
                "--kills" => kills = Some(number("--kills")? as usize),
                "--seed" => settings.seed = number("--seed")?,
                "--rate" => settings.rate = number("--rate")? as f64,
                "--connections" => settings.connections = number("--connections")? as usize,
                "--bench" => {}
                other => return Err(format!("unknown argument `{other}`; {USAGE}")),
            }
        }
        let (default_duration, default_kills) = if settings.quick { (60, 6) } else { (300, 20) };
        settings.duration = duration.unwrap_or(Duration::from_secs(default_duration));
        settings.kills = kills.unwrap_or(default_kills);
        Ok(settings)
    }
}

/// One kill and restart.
#[derive(Debug, serde::Serialize)]
struct Kill {
    /// Seconds into the load.
    at: f64,
    /// Requests sent and not answered when the signal went out.
    in_flight: usize,
    /// Seconds from the kill until the new process reported its address.
    restart_secs: f64,
    same_port: bool,
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
    let failures = runtime.block_on(run(settings));
    std::process::exit(if failures == 0 { 0 } else { 1 });
}

/// Runs the soak; returns the number of losses and real doubles found.
async fn run(settings: Settings) -> u64 {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .expect("client");
    let crm = sinks::HttpReceiver::start(&[]).await;
    let smtp = sinks::SmtpSink::start().await;
    let work = tempfile::tempdir().expect("temp dir");
    let rules = work.path().join("rules");
    write_rules(&repo().join("rules"), &rules);
    let config = work.path().join("soak.toml");
    std::fs::write(&config, server_config(crm.address, smtp.port)).expect("write soak.toml");

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let load_average = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    say(&format!(
        "mailwarden soak ({} mode): {cores} cores, {}, load average {}\n  seed {} ({} SIGKILLs at random moments of {} s of load)\n  load: {} connections, {} requests/s in all, 1-{} SendPulse events per request (89% delivered, 10% hard bounces, 1% complaints, each its own message id); {:.0}% of acknowledged requests sent again at once, every 25th kept and sent again after the last kill\n  rules: shipped rules/ + {}.rhai (an alert per hard bounce); CRM receiver http://{}/crm, SMTP sink 127.0.0.1:{}\n  server: {} on {}",
        if settings.quick { "quick" } else { "full" },
        cpu_model(),
        load_average
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        settings.seed,
        settings.kills,
        settings.duration.as_secs(),
        settings.connections,
        settings.rate,
        settings.max_batch,
        traffic::RETRY_SHARE * 100.0,
        audit::ALERT_RULE,
        crm.address,
        smtp.port,
        env!("CARGO_BIN_EXE_mailwarden"),
        work.path().display(),
    ));

    let data = work.path().join("data");
    let files = Files {
        data,
        rules,
        config,
        logs: work.path().to_owned(),
    };
    let mut server =
        Server::start(files, "127.0.0.1:0".parse().expect("address")).unwrap_or_else(|error| {
            eprintln!("{error}");
            std::process::exit(2);
        });
    let traffic = Arc::new(Traffic::new(
        client.clone(),
        server.address,
        settings.rate,
        settings.connections,
        settings.max_batch,
        settings.seed,
    ));
    let mut rng = fastrand::Rng::with_seed(settings.seed);
    let schedule = kill_schedule(&mut rng, settings.duration, settings.kills);
    let started = Instant::now();
    let load = tokio::spawn(traffic::run(traffic.clone()));
    let mut kills = Vec::new();
    for at in schedule {
        tokio::time::sleep_until((started + at).into()).await;
        let in_flight = traffic.in_flight.load(std::sync::atomic::Ordering::SeqCst);
        let at = started.elapsed().as_secs_f64();
        let (restart_secs, same_port) = tokio::task::block_in_place(|| server.kill_and_restart());
        *traffic.address.write().expect("address lock") = server.address;
        say(&format!(
            "  kill {}/{} at {at:.1} s: {in_flight} requests in flight; listening again after {restart_secs:.2} s{}",
            kills.len() + 1,
            settings.kills,
            if same_port { "" } else { " on a new port" }
        ));
        kills.push(Kill {
            at,
            in_flight,
            restart_secs,
            same_port,
        });
    }
    tokio::time::sleep_until((started + settings.duration).into()).await;
    traffic.stop();
    let mut ledger = load.await.expect("load");
    let run_secs = started.elapsed().as_secs_f64();
    say(&format!(
        "  load stopped after {run_secs:.1} s: {} events acknowledged; sending {} kept bodies again",
        ledger.acked.len(),
        ledger.kept.len()
    ));
    let (late_retries, late_retries_stored) = audit::late_retries(&traffic, &mut ledger).await;

    let drain = server.drained(&client).await;
    match drain {
        Some(secs) => say(&format!(
            "  rules and outbox drained {secs:.1} s after the load"
        )),
        None => say(&format!(
            "  rules and outbox NOT drained {} s after the load; counting anyway",
            DRAIN_LIMIT.as_secs()
        )),
    }
    let mut counts = audit::count(audit::Sources {
        client: &client,
        address: server.address,
        ledger: &ledger,
        events_sent: traffic.events_sent(),
        crm: crm.requests(),
        mails: smtp.mails(),
        run_secs,
    })
    .await;
    counts.late_retries = late_retries;
    counts.late_retries_stored = late_retries_stored;
    tokio::task::block_in_place(|| server.stop());

    let failures = counts.failures(&ledger) + u64::from(drain.is_none());
    print_report(
        &settings, &kills, run_secs, drain, &ledger, &counts, failures,
    );
    let output = json!({
        "date": jiff::Timestamp::now().to_string(),
        "machine": { "cores": cores, "cpu": cpu_model() },
        "settings": settings,
        "run_secs": run_secs,
        "drain_secs": drain,
        "kills": kills,
        "ledger": {
            "requests_acked": ledger.requests_acked,
            "failed_attempts": ledger.failed_attempts,
            "resent_stored": ledger.resent_stored,
            "resent_recognized": ledger.resent_recognized,
            "deliberate_retries": ledger.deliberate_retries,
            "deliberate_stored": ledger.deliberate_stored,
            "rejected": ledger.rejected,
            "given_up": ledger.given_up,
        },
        "counts": counts,
        "failures": failures,
    });
    let dir = repo().join("target").join("bench");
    std::fs::create_dir_all(&dir).expect("target/bench");
    std::fs::write(
        dir.join("soak.json"),
        serde_json::to_vec_pretty(&output).expect("json"),
    )
    .expect("write soak.json");
    say(&format!("written {}", dir.join("soak.json").display()));
    if failures > 0 {
        // The data and the servers' logs, to find out what went wrong.
        say(&format!(
            "kept {} (data/, server-<n>.log)",
            work.keep().display()
        ));
    }
    failures
}

/// `kills` moments in the middle 90% of `duration`, in order.
fn kill_schedule(rng: &mut fastrand::Rng, duration: Duration, kills: usize) -> Vec<Duration> {
    let mut moments: Vec<Duration> = (0..kills)
        .map(|_| duration.mul_f64(0.05 + 0.9 * rng.f64()))
        .collect();
    moments.sort();
    moments
}

/// The settings file: CRM URL for crm_forward.rhai, the SMTP sink, loopback calls
/// allowed, and retries after about a second instead of the default 5 s, 5 min, ...
fn server_config(crm: SocketAddr, smtp_port: u16) -> String {
    format!(
        r#"[rules.vars]
crm_url = "http://{crm}/crm"

[alerts]
to = ["team@{domain}"]

[alerts.smtp]
host = "127.0.0.1"
port = {smtp_port}
tls = "none"
from = "mailwarden@{domain}"
timeout_secs = 5

[outbound]
allow = ["127.0.0.1/32"]
retry_schedule_secs = [0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]
"#,
        domain = traffic::DOMAIN
    )
}

/// Copies the shipped `*.rhai` rules into `dir` and adds the soak's alert rule.
fn write_rules(shipped: &Path, dir: &Path) {
    std::fs::create_dir_all(dir).expect("rules dir");
    for file in std::fs::read_dir(shipped).expect("rules") {
        let path = file.expect("entry").path();
        if path.extension().is_some_and(|e| e == "rhai") {
            std::fs::copy(&path, dir.join(path.file_name().expect("name"))).expect("copy rule");
        }
    }
    std::fs::write(
        dir.join(format!("{}.rhai", audit::ALERT_RULE)),
        ALERT_RULE_SOURCE,
    )
    .expect("write the soak's rule");
}

fn print_report(
    settings: &Settings,
    kills: &[Kill],
    run_secs: f64,
    drain: Option<f64>,
    ledger: &Ledger,
    counts: &Counts,
    failures: u64,
) {
    let mut rows: Vec<(String, String, &str)> = Vec::new();
    let mut row = |what: &str, value: String, verdict: &'static str| {
        rows.push((what.to_owned(), value, verdict));
    };
    // "must be 0" rows fail the run when they are not.
    let zero = |n: u64| if n == 0 { "ok" } else { "FAIL" };
    let restarts: Vec<f64> = kills.iter().map(|k| k.restart_secs).collect();
    row("seed", settings.seed.to_string(), "");
    row(
        "SIGKILLs performed",
        format!(
            "{} (restart to listening: mean {:.2} s, max {:.2} s; {} on a new port)",
            kills.len(),
            restarts.iter().sum::<f64>() / restarts.len().max(1) as f64,
            restarts.iter().copied().fold(0.0, f64::max),
            kills.iter().filter(|k| !k.same_port).count()
        ),
        "",
    );
    row("load run time", format!("{run_secs:.1} s"), "");
    row(
        "drained after the load",
        drain.map_or("no".to_owned(), |s| format!("{s:.1} s")),
        if drain.is_some() { "ok" } else { "FAIL" },
    );
    row(
        "events sent / acknowledged",
        format!("{} / {}", counts.events_sent, counts.events_acked),
        "",
    );
    row(
        "  of them hard bounces / complaints acknowledged",
        format!(
            "{} / {}",
            counts.hard_bounces_acked, counts.complaints_acked
        ),
        "",
    );
    row(
        "requests acknowledged",
        ledger.requests_acked.to_string(),
        "",
    );
    row(
        "requests in flight at the kills",
        kills.iter().map(|k| k.in_flight).sum::<usize>().to_string(),
        "",
    );
    row(
        "attempts refused or cut off, sent again",
        ledger.failed_attempts.to_string(),
        "",
    );
    row(
        "resent requests: events stored by the resend / found already stored",
        format!("{} / {}", ledger.resent_stored, ledger.resent_recognized),
        "",
    );
    row(
        "requests rejected (4xx) / given up",
        format!("{} / {}", ledger.rejected, ledger.given_up),
        zero(ledger.rejected + ledger.given_up),
    );
    row(
        "deliberate retries: requests / events they stored",
        format!(
            "{} / {}",
            ledger.deliberate_retries, ledger.deliberate_stored
        ),
        zero(ledger.deliberate_stored),
    );
    row(
        "late retries after the last kill: requests / events they stored",
        format!("{} / {}", counts.late_retries, counts.late_retries_stored),
        zero(counts.late_retries_stored),
    );
    row("events stored", counts.events_stored.to_string(), "");
    row(
        "acknowledged events lost",
        counts.events_lost.to_string(),
        zero(counts.events_lost),
    );
    row(
        "events duplicated (message ids stored twice or more / extra copies)",
        format!("{} / {}", counts.events_duplicated, counts.duplicate_copies),
        zero(counts.events_duplicated),
    );
    row(
        "events stored but never acknowledged / not the soak's",
        format!("{} / {}", counts.stored_not_acked, counts.foreign_events),
        "",
    );
    row(
        "hard bounces and complaints whose suppression is missing",
        counts.suppressions_missing.to_string(),
        zero(counts.suppressions_missing),
    );
    for (name, d) in [
        ("CRM calls", &counts.crm),
        ("alert mails (soak_alert)", &counts.alerts),
    ] {
        row(
            &format!("{name}: expected / received"),
            format!("{} / {}", d.expected, d.received),
            "",
        );
        row(
            &format!("  {name} missed"),
            d.missed.to_string(),
            zero(d.missed),
        );
        row(
            &format!("  {name} redelivered with the same key"),
            d.redelivered_same_key.to_string(),
            "",
        );
        row(
            &format!("  {name} doubled with different keys"),
            d.doubled_different_keys.to_string(),
            zero(d.doubled_different_keys),
        );
        row(
            &format!("  {name} for events not acknowledged"),
            d.unexpected.to_string(),
            "",
        );
    }
    let mut throttled: Vec<_> = counts.throttled.iter().collect();
    throttled.sort_by_key(|(rule, _)| rule.as_str());
    for (rule, t) in throttled {
        row(
            &format!("throttled alerts ({rule}.rhai): expected / mails / distinct events"),
            format!("{} / {} / {}", t.expected, t.mails, t.distinct),
            zero(
                u64::from(t.expected > 0 && t.distinct == 0)
                    + t.distinct.saturating_sub(t.expected),
            ),
        );
    }
    row(
        "other alert mails (digests)",
        counts.other_mails.to_string(),
        "",
    );
    let mut log: Vec<_> = counts
        .alert_log
        .iter()
        .map(|(s, n)| format!("{s} {n}"))
        .collect();
    log.sort();
    row(
        "alert log (GET /api/alerts, newest 1 000)",
        log.join(", "),
        "",
    );
    row(
        "outbox at the end: pending / dead",
        format!("{} / {}", counts.outbox_pending, counts.outbox_dead),
        zero(counts.outbox_pending + counts.outbox_dead),
    );

    let width = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0);
    let value_width = rows.iter().map(|r| r.1.chars().count()).max().unwrap_or(0);
    say("");
    for (what, value, verdict) in &rows {
        say(&format!(
            "| {what:<width$} | {value:>value_width$} | {verdict:<4} |"
        ));
    }
    say("");
    if failures == 0 {
        say("soak: PASS, nothing acknowledged was lost and nothing was doubled");
    } else {
        say(&format!(
            "soak: FAIL, {failures} losses or real doubles (rows marked FAIL)"
        ));
    }
}

// ---------------------------------------------------------------- the server

/// The real binary as a child process, killed and started again on the same data.
struct Server {
    child: Child,
    address: SocketAddr,
    files: Files,
    /// Processes started so far.
    starts: usize,
}

/// What every start of the server is given.
struct Files {
    data: PathBuf,
    rules: PathBuf,
    config: PathBuf,
    /// Where each process's standard error is written (`server-<n>.log`).
    logs: PathBuf,
}

impl Server {
    /// Starts `mailwarden serve` on `listen`; `Err` if it exits before listening.
    fn start(files: Files, listen: SocketAddr) -> Result<Server, String> {
        let (child, address) = launch(&files, 1, listen)?;
        Ok(Server {
            child,
            address,
            files,
            starts: 1,
        })
    }

    /// Kills the server with SIGKILL and starts it on the same data and port (on a new
    /// port if that one cannot be bound); returns the seconds until it listens, and
    /// whether the port is the same.
    fn kill_and_restart(&mut self) -> (f64, bool) {
        let started = Instant::now();
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
        let previous = self.address;
        self.starts += 1;
        let (child, address) = launch(&self.files, self.starts, previous)
            .or_else(|_| {
                self.starts += 1;
                launch(
                    &self.files,
                    self.starts,
                    "127.0.0.1:0".parse().expect("address"),
                )
            })
            .expect("mailwarden starts again");
        self.child = child;
        self.address = address;
        (started.elapsed().as_secs_f64(), address == previous)
    }

    /// Seconds until no event waits for the rules and no action waits in the outbox
    /// (twice in a row, a second apart), or `None` after [`DRAIN_LIMIT`].
    async fn drained(&self, client: &reqwest::Client) -> Option<f64> {
        let started = Instant::now();
        let base = format!("http://{}", self.address);
        let mut quiet = 0;
        while started.elapsed() < DRAIN_LIMIT {
            let storage = audit::get_json(client, &format!("{base}/api/storage")).await;
            let outbox =
                audit::get_json(client, &format!("{base}/api/outbox?status=pending&limit=1")).await;
            let idle = storage["pending_events"].as_u64() == Some(0)
                && outbox["actions"].as_array().is_some_and(Vec::is_empty);
            quiet = if idle { quiet + 1 } else { 0 };
            if quiet >= 2 {
                return Some(started.elapsed().as_secs_f64());
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        None
    }

    /// Stops the server with SIGTERM (a clean stop).
    fn stop(&mut self) {
        terminate(&mut self.child);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts process number `start` of the server on `listen`, its standard error copied to
/// `server-<start>.log`; returns it and its address once it reports one.
fn launch(files: &Files, start: usize, listen: SocketAddr) -> Result<(Child, SocketAddr), String> {
    let log_path = files.logs.join(format!("server-{start}.log"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_mailwarden"))
        .arg("serve")
        .arg("--listen")
        .arg(listen.to_string())
        .arg("--data")
        .arg(&files.data)
        .arg("--rules")
        .arg(&files.rules)
        .env("MAILWARDEN_CONFIG", &files.config)
        .env("RUST_LOG", "warn,mailwarden::app=info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| format!("cannot start mailwarden: {error}"))?;
    let stderr = child.stderr.take().expect("stderr is piped");
    let (sender, receiver) = std::sync::mpsc::channel();
    let log = log_path.clone();
    std::thread::spawn(move || {
        let mut log = std::fs::File::create(&log).ok();
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(log) = log.as_mut() {
                let _ = writeln!(log, "{line}");
            }
            if !sent {
                if let Some(address) = listening_address(&line) {
                    let _ = sender.send(address);
                    sent = true;
                }
            }
        }
    });
    // Disconnected: the process ended (its stderr closed) without listening.
    match receiver.recv_timeout(START_LIMIT) {
        Ok(address) => Ok((child, address)),
        Err(error) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!(
                "mailwarden did not report its address ({error}); see {}",
                log_path.display()
            ))
        }
    }
}
