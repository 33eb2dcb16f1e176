//! The peer scenario (`--peer`): Node-RED running `benches/node-red/flow.json` (`http in`
//! POST /opptima → a function that normalizes the body → `http response` 200 at once, and
//! a file node that appends one JSON line per event, later and never fsynced) against
//! mailwarden (a 200 only once the event is on disk), in alternating rounds of the same
//! single-event load. Every request of the run has its own message id, so mailwarden's
//! dedup keeps every event. Node-RED is installed with npm into `target/bench/node-red`
//! the first time.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Load, Measurement, Report, Server, Settings, measure, opptima_body, repo, say};

/// The Node-RED release compared with (Node-RED 5 needs Node 22).
pub(super) const NODE_RED_VERSION: &str = "4.1.8";
/// Connections of the load generator, as `wrk -c32`.
pub(super) const CONCURRENCY: usize = 32;
/// mailwarden's acknowledged rate over Node-RED's (issue 12, point 8).
const TARGET_RATIO: f64 = 3.0;
/// Longest wait for Node-RED's file to hold every event it answered for.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(120);

/// One round of each side.
#[derive(serde::Serialize)]
struct PeerRound {
    node_red: Measurement,
    /// Events Node-RED had answered for but not yet written when the load stopped.
    file_lag_lines: u64,
    /// Seconds from the end of the load until the file held every answered event.
    file_catch_up_secs: Option<f64>,
    mailwarden: Measurement,
    /// Events mailwarden stored in the round.
    mailwarden_stored: u64,
    ratio: f64,
}

/// Runs the peer scenario; when Node-RED cannot be installed or started it says why and
/// records that instead.
pub(super) async fn run(
    client: &reqwest::Client,
    settings: &Settings,
    work: &Path,
    rules: &Path,
    report: &mut Report,
) {
    say(&format!(
        "peer: Node-RED {NODE_RED_VERSION} (answers before it writes, never fsyncs) and mailwarden (answers once on disk), {} rounds each of {} s, concurrency {CONCURRENCY}",
        settings.peer_rounds,
        settings.phase.as_secs()
    ));
    let node_red = match NodeRed::start(client, work).await {
        Ok(node_red) => node_red,
        Err(error) => {
            say(&format!("  peer scenario not run: {error}"));
            report.figure("peer_error", &error);
            return;
        }
    };
    let mut server = Server::start(&work.join("data-peer"), rules, &[]);
    let mut file = LineCounter::new(node_red.events_file());
    // Lines the file holds once Node-RED has written every event it answered for: one for
    // the request that showed it was ready.
    let mut answered_in_all = 1;
    // Node's JIT compiler and both servers warm up in one phase each, not counted.
    let warm_up = Load::single("peer warm-up (not counted)", CONCURRENCY, settings.phase);
    answered_in_all += measure(client, &warm_up, "Node-RED", &node_red.url)
        .await
        .answered();
    file.wait_for(answered_in_all).await;
    measure(client, &warm_up, "mailwarden", &warm_up.url(server.address)).await;
    server.drain_time(client).await;
    let mut rounds = Vec::new();
    for round in 1..=settings.peer_rounds {
        let load = Load::single(format!("peer round {round}"), CONCURRENCY, settings.phase);
        let node_red_phase = measure(client, &load, "Node-RED", &node_red.url).await;
        let answered = node_red_phase.answered();
        answered_in_all += answered;
        let file_lag_lines = answered_in_all.saturating_sub(file.lines());
        let caught_up = file.wait_for(answered_in_all).await;

        let stored_before = server.metric(client, "mailwarden_events_total").await;
        let mailwarden = measure(client, &load, "mailwarden", &load.url(server.address)).await;
        let stored = server.metric(client, "mailwarden_events_total").await - stored_before;
        // The rules finish before Node-RED's next round, as Node-RED's file did.
        let drain = server.drain_time(client).await;
        let ratio = mailwarden.requests_per_sec / node_red_phase.requests_per_sec;
        say(&format!(
            "    Node-RED's file was {file_lag_lines} of {answered} events behind its answers when the load stopped, {}; mailwarden stored {stored:.0} of {} answered, rules done {drain:.1} s later; ratio {ratio:.2}x",
            caught_up.map_or(
                format!("not caught up after {} s", CATCH_UP_LIMIT.as_secs()),
                |secs| format!("caught up {secs:.2} s later")
            ),
            mailwarden.answered(),
        ));
        report.phases.push(node_red_phase.clone());
        report.phases.push(mailwarden.clone());
        rounds.push(PeerRound {
            node_red: node_red_phase,
            file_lag_lines,
            file_catch_up_secs: caught_up,
            mailwarden,
            mailwarden_stored: stored as u64,
            ratio,
        });
    }
    server.stop();
    drop(node_red);

    let median_of = |value: fn(&PeerRound) -> f64| median(rounds.iter().map(value).collect());
    say(&format!(
        "  Node-RED: median {:.0} req/s, p99 {:.2} ms; mailwarden: median {:.0} req/s, p99 {:.2} ms",
        median_of(|r| r.node_red.requests_per_sec),
        median_of(|r| r.node_red.p99_ms),
        median_of(|r| r.mailwarden.requests_per_sec),
        median_of(|r| r.mailwarden.p99_ms),
    ));
    let ratio = median_of(|r| r.ratio);
    let each: Vec<String> = rounds.iter().map(|r| format!("{:.2}x", r.ratio)).collect();
    report.target(
        &format!(
            "mailwarden / Node-RED {NODE_RED_VERSION} acknowledged rate, median of {} rounds",
            rounds.len()
        ),
        format!("{ratio:.2}x (rounds: {})", each.join(", ")),
        "≥ 3x",
        ratio >= TARGET_RATIO,
    );
    report.figure("peer_rounds", &rounds);
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// Node-RED as a child process, with its user directory in a temporary directory.
struct NodeRed {
    child: Child,
    /// The flow's webhook.
    url: String,
    dir: tempfile::TempDir,
}

impl NodeRed {
    /// Installs Node-RED if needed, starts the flow on a free port and waits until it
    /// answers.
    async fn start(client: &reqwest::Client, work: &Path) -> Result<NodeRed, String> {
        let red = install()?;
        let dir = tempfile::Builder::new()
            .prefix("node-red-")
            .tempdir_in(work)
            .map_err(|e| format!("cannot create Node-RED's user directory: {e}"))?;
        for name in ["flow.json", "settings.js"] {
            std::fs::copy(
                repo().join("benches").join("node-red").join(name),
                dir.path().join(name),
            )
            .map_err(|e| format!("cannot copy benches/node-red/{name}: {e}"))?;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let log = File::create(dir.path().join("node-red.log"))
            .map_err(|e| format!("cannot create node-red.log: {e}"))?;
        let child = Command::new("node")
            .arg(red)
            .args(["--port", &port.to_string(), "--userDir"])
            .arg(dir.path())
            .arg("--settings")
            .arg(dir.path().join("settings.js"))
            .current_dir(dir.path())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run node: {e}"))?;
        let mut node_red = NodeRed {
            child,
            url: format!("http://127.0.0.1:{port}/opptima"),
            dir,
        };
        node_red.wait_until_ready(client).await?;
        Ok(node_red)
    }

    async fn wait_until_ready(&mut self, client: &reqwest::Client) -> Result<(), String> {
        let started = Instant::now();
        loop {
            let answer = client.post(&self.url).body(opptima_body(0)).send().await;
            if answer.is_ok_and(|a| a.status().is_success()) {
                say(&format!(
                    "  Node-RED answers at {} after {:.1} s",
                    self.url,
                    started.elapsed().as_secs_f64()
                ));
                return Ok(());
            }
            let exited = self.child.try_wait().ok().flatten();
            if exited.is_some() || started.elapsed() > Duration::from_secs(60) {
                let log = std::fs::read_to_string(self.dir.path().join("node-red.log"))
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(20).collect();
                return Err(format!(
                    "Node-RED did not answer at {} ({}); its log ends:\n{}",
                    self.url,
                    exited.map_or("still starting after 60 s".to_owned(), |s| s.to_string()),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The file the flow appends to.
    fn events_file(&self) -> PathBuf {
        self.dir.path().join("events.jsonl")
    }
}

impl Drop for NodeRed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Returns `red.js` of Node-RED [`NODE_RED_VERSION`], installing it with npm into
/// `target/bench/node-red` when it is not there.
fn install() -> Result<PathBuf, String> {
    let prefix = repo().join("target").join("bench").join("node-red");
    let package = prefix.join("node_modules").join("node-red");
    let installed = std::fs::read_to_string(package.join("package.json"))
        .ok()
        .and_then(|text| serde_json::from_str::<Value>(&text).ok())
        .is_some_and(|manifest| manifest["version"] == NODE_RED_VERSION);
    if !installed {
        say(&format!(
            "  installing node-red@{NODE_RED_VERSION} into {} (npm, once)",
            prefix.display()
        ));
        std::fs::create_dir_all(&prefix).map_err(|e| format!("cannot create {prefix:?}: {e}"))?;
        let status = Command::new("npm")
            .arg("install")
            .arg("--prefix")
            .arg(&prefix)
            .args(["--no-audit", "--no-fund", "--loglevel=error"])
            .arg(format!("node-red@{NODE_RED_VERSION}"))
            .stdout(Stdio::null())
            .status()
            .map_err(|e| format!("cannot run npm: {e}"))?;
        if !status.success() {
            return Err(format!(
                "npm install node-red@{NODE_RED_VERSION} failed ({status})"
            ));
        }
    }
    Ok(package.join("red.js"))
}

/// Counts the lines of a growing file, reading only what was added since the last count.
struct LineCounter {
    path: PathBuf,
    offset: u64,
    lines: u64,
}

impl LineCounter {
    fn new(path: PathBuf) -> LineCounter {
        LineCounter {
            path,
            offset: 0,
            lines: 0,
        }
    }

    /// Complete lines in the file now.
    fn lines(&mut self) -> u64 {
        let mut added = Vec::new();
        if let Ok(mut file) = File::open(&self.path) {
            if file.seek(SeekFrom::Start(self.offset)).is_ok() {
                let _ = file.read_to_end(&mut added);
            }
        }
        self.offset += added.len() as u64;
        self.lines += memchr::memchr_iter(b'\n', &added).count() as u64;
        self.lines
    }

    /// Waits until the file holds `lines` lines; returns how long that took, or `None`
    /// after [`CATCH_UP_LIMIT`].
    async fn wait_for(&mut self, lines: u64) -> Option<f64> {
        let started = Instant::now();
        while self.lines() < lines {
            if started.elapsed() > CATCH_UP_LIMIT {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Some(started.elapsed().as_secs_f64())
    }
}
