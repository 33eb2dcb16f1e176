//! Starting the real service for tests: on 127.0.0.1:0, with a temporary data directory,
//! talked to over HTTP.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use mailwarden::ingest::verify::sns::Certificates;
use mailwarden::{Application, Config};
use serde_json::Value;

use crate::signing;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running service and what a test needs to talk to it.
pub struct TestApp {
    /// Where it listens.
    pub address: SocketAddr,
    /// HTTP client with keep-alive.
    pub client: reqwest::Client,
    /// The configuration it was started with (to restart it the same way).
    pub config: Config,
    /// The service's SNS signing certificates (tests add their own).
    pub certificates: Arc<Certificates>,
    data: Option<TempDir>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

/// Starts the service with the default configuration.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts the service after `adjust` has changed the test configuration.
pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    let data = tempfile::tempdir().expect("temporary directory");
    let mut config = test_config(data.path());
    adjust(&mut config);
    let mut app = start(config).await;
    app.data = Some(data);
    app
}

/// A configuration for tests: ephemeral port, data and rules in `dir`, the shipped
/// providers.
pub fn test_config(dir: &Path) -> Config {
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules).expect("rules directory");
    Config {
        listen: "127.0.0.1:0".parse().expect("address"),
        data_dir: dir.join("data"),
        rules_dir: rules,
        // The shipped user-defined providers (Postal), as `serve` finds them.
        providers_dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("providers"),
        ..Config::default()
    }
}

/// Starts the service with exactly `config` (its data directory is the caller's).
pub async fn start_with(config: Config) -> TestApp {
    start(config).await
}

async fn start(config: Config) -> TestApp {
    let application = Application::build(config.clone())
        .await
        .expect("the service starts");
    let address = application.local_addr();
    let certificates = application.sns_certificates();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(application.run_until_stopped(async {
        let _ = stopped.await;
    }));
    TestApp {
        address,
        client: reqwest::Client::new(),
        config,
        certificates,
        data: None,
        stop: Some(stop),
        task: Some(task),
    }
}

impl TestApp {
    /// Full URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// GETs console page `path` (following redirects): status and HTML.
    pub async fn page(&self, path: &str) -> (reqwest::StatusCode, String) {
        let response = self
            .client
            .get(self.url(path))
            .send()
            .await
            .expect("the page answers");
        let status = response.status();
        (status, response.text().await.expect("the page's HTML"))
    }

    /// Posts `form` to console `path` as a page of this origin does (the console refuses
    /// unsafe requests without `Origin` or `Sec-Fetch-Site`), following redirects:
    /// status and HTML.
    pub async fn post_form(
        &self,
        path: &str,
        form: &[(&str, &str)],
    ) -> (reqwest::StatusCode, String) {
        let response = self
            .client
            .post(self.url(path))
            .header("origin", format!("http://{}", self.address))
            .form(form)
            .send()
            .await
            .expect("the form answers");
        let status = response.status();
        (status, response.text().await.expect("the page's HTML"))
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.config.data_dir.clone()
    }

    /// The rules directory.
    pub fn rules_dir(&self) -> PathBuf {
        self.config.rules_dir.clone()
    }

    /// Posts `body` to `/webhooks/{source}`.
    pub async fn post_raw(
        &self,
        source: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        self.client
            .post(self.url(&format!("/webhooks/{source}")))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request is sent")
    }

    /// Posts a fixture file (`fixtures/<provider>/<case>`) to `source` the way its
    /// provider delivers it, and returns status and JSON answer.
    pub async fn post_fixture(&self, source: &str, fixture: &str) -> (u16, Value) {
        self.post_as(source, fixture, read_fixture(fixture)).await
    }

    /// Posts `body` to `source` the way the provider of `fixture` delivers it (see
    /// [`TestApp::delivered_as`]); returns status and JSON answer.
    pub async fn post_as(&self, source: &str, fixture: &str, body: Vec<u8>) -> (u16, Value) {
        let (content_type, body) = self.delivered_as(fixture, body);
        let response = self
            .client
            .post(self.url(&format!("/webhooks/{source}")))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request is sent");
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON answer"))
    }

    /// Returns `body` (a variant of `fixture`) as the provider of `fixture` would post it
    /// (see [`delivered_as`]), trusting the tests' SNS certificate first.
    pub fn delivered_as(&self, fixture: &str, body: Vec<u8>) -> (&'static str, Vec<u8>) {
        if fixture.starts_with("amazon_ses/") {
            self.trust_test_sns_certificate();
        }
        delivered_as(fixture, body)
    }

    /// Puts the tests' SNS certificate where the service looks it up.
    pub fn trust_test_sns_certificate(&self) {
        self.certificates
            .insert(
                signing::SNS_CERT_URL,
                signing::sns().certificate_pem.as_bytes(),
            )
            .expect("test certificate is valid");
    }

    /// Posts `body` and returns status and JSON answer.
    pub async fn post(&self, source: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let response = self.post_raw(source, body).await;
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON answer"))
    }

    /// Posts `body` to `source`, which must answer 200; returns the answer and the events
    /// it stored, read back one by one.
    pub async fn post_and_read(
        &self,
        source: &str,
        body: impl Into<reqwest::Body>,
    ) -> (Value, Vec<Value>) {
        let (status, report) = self.post(source, body).await;
        assert_eq!(status, 200, "{report}");
        let events = self.stored_events(&report).await;
        (report, events)
    }

    /// Reads back every event an ingest answer reports as stored, in order.
    pub async fn stored_events(&self, report: &Value) -> Vec<Value> {
        let mut events = Vec::new();
        for id in report["event_ids"].as_array().expect("event_ids") {
            let id = id.as_str().expect("ids are strings");
            let (status, event) = self.get(&format!("/api/events/{id}")).await;
            assert_eq!(status, 200, "{event}");
            events.push(event);
        }
        events
    }

    /// GETs `path` and returns status and JSON answer.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .client
            .get(self.url(path))
            .send()
            .await
            .expect("request is sent");
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON answer"))
    }

    /// Returns the events of `/api/events?{query}`.
    pub async fn events(&self, query: &str) -> Vec<Value> {
        let (status, body) = self.get(&format!("/api/events?{query}")).await;
        assert_eq!(status, 200, "{body}");
        body["events"].as_array().expect("events array").clone()
    }

    /// The Prometheus text of `GET /metrics`.
    pub async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// Stops the service gracefully, keeping the data directory.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await
                .expect("server task")
                .expect("server stops cleanly");
        }
    }

    /// Stops the service and starts it again on the same data directory.
    pub async fn restart(&mut self) {
        self.stop().await;
        let data = self.data.take();
        let mut restarted = start(self.config.clone()).await;
        restarted.data = data;
        *self = restarted;
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Returns `body` (a variant of `fixture`) as the provider of `fixture` would post it:
/// Amazon SES messages wrapped in an SNS notification signed with the tests' key (SNS
/// envelopes re-signed), Mandrill's events as its form, everything else as it is. An SES
/// message keeps the SNS message id of its fixture, as an SNS retry does.
pub fn delivered_as(fixture: &str, body: Vec<u8>) -> (&'static str, Vec<u8>) {
    let provider = fixture.split('/').next().unwrap_or_default();
    match provider {
        "amazon_ses" => {
            let name = fixture.rsplit('/').next().unwrap_or(fixture);
            let envelope = if name.starts_with("sns_") || name.starts_with("envelope_") {
                let mut envelope: Value =
                    serde_json::from_slice(&body).expect("SNS fixture is JSON");
                signing::sns().sign(&mut envelope, 1);
                envelope
            } else {
                let message = String::from_utf8(body).expect("SES fixture is UTF-8");
                signing::sns().notification(&message, &format!("test-{name}"))
            };
            (
                "text/plain; charset=UTF-8",
                envelope.to_string().into_bytes(),
            )
        }
        "mandrill" => {
            let events = String::from_utf8(body).expect("Mandrill fixture is UTF-8");
            (
                "application/x-www-form-urlencoded",
                signing::mandrill_form(&events).into_bytes(),
            )
        }
        _ => ("application/json", body),
    }
}

/// Reads `fixtures/<path>` from the crate root.
pub fn read_fixture(path: &str) -> Vec<u8> {
    let full = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(path);
    std::fs::read(&full).unwrap_or_else(|error| panic!("{}: {error}", full.display()))
}

/// Returns every fixture path (`provider/case.json`) under `fixtures/`: the bodies each
/// of whose elements becomes at least one event. Bodies that store no event or set
/// elements aside by design (pings, SNS confirmations, account notices, elements without
/// a recipient) live in `fixtures/<provider>/set_aside/` and are tested one by one.
pub fn all_fixtures() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut found = Vec::new();
    for provider in std::fs::read_dir(&root).expect("fixtures directory") {
        let provider = provider.expect("entry").path();
        if !provider.is_dir() {
            continue;
        }
        for case in std::fs::read_dir(&provider).expect("provider directory") {
            let case = case.expect("entry").path();
            if case.extension().is_some_and(|e| e == "json") {
                found.push(
                    case.strip_prefix(&root)
                        .expect("under fixtures")
                        .to_string_lossy()
                        .replace('\\', "/"),
                );
            }
        }
    }
    found.sort();
    found
}

/// Polls `check` every 50 ms until it returns `Some`, for at most 10 s; panics naming
/// `what` otherwise. For effects that happen in the background (rules, actions).
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited 10 s for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

impl TestApp {
    /// POSTs JSON to `path` and returns status and JSON answer.
    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self
            .client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request is sent");
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON answer"))
    }

    /// Waits until the rules have evaluated event `id`; returns `GET /api/events/{id}`.
    pub async fn evaluated(&self, id: &str) -> Value {
        let path = format!("/api/events/{id}");
        let event = eventually(&format!("the evaluation of {id}"), || async {
            let (status, event) = self.get(&path).await;
            assert_eq!(status, 200, "{event}");
            (event["evaluation"]["pending"] != Value::Bool(true)).then_some(event)
        })
        .await;
        if event["evaluation"].get("evaluated_at").is_some() {
            return event;
        }
        // "Not pending, no record" can be a torn read: the handler reads the record, then
        // the pending flag, and the evaluation may commit in between. Read again.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        self.get(&path).await.1
    }
}

// ---------------------------------------------------------------------------------------
// The real binary in a child process (for kill -9, signals and its memory).

/// An HTTP client for a server in a child process. Installs rustls' crypto provider
/// first: reqwest needs one and does not choose it, and no service in this process may
/// have installed it yet.
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// A client that shows redirects instead of following them.
pub fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client")
}

/// A `mailwarden serve` process, killed when dropped.
pub struct Server {
    /// The process.
    pub child: Child,
    /// Where it listens.
    pub address: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Removes ANSI escape sequences (colours) from a log line.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for next in chars.by_ref() {
                if next.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Starts the binary on an ephemeral port over `dir` and returns once it listens.
pub fn start_server(dir: &Path) -> Server {
    start_server_with(dir, &[])
}

/// Starts the binary with `extra` arguments (a `--config` file, say) on an ephemeral port
/// over `dir` (data in `dir/data`, rules in `dir/rules`) and returns once it listens.
pub fn start_server_with(dir: &Path, extra: &[&std::ffi::OsStr]) -> Server {
    let data = dir.join("data");
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules).expect("rules directory");
    let mut command = Command::new(env!("CARGO_BIN_EXE_mailwarden"));
    command
        .arg("serve")
        .args(["--listen", "127.0.0.1:0"])
        .arg("--data")
        .arg(&data)
        .arg("--rules")
        .arg(&rules)
        .arg("--providers")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("providers"))
        .args(extra)
        .current_dir(dir)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (name, _) in std::env::vars() {
        if name.starts_with("MAILWARDEN_") {
            command.env_remove(name);
        }
    }
    // Owned by the guard from the start: killed and reaped however this function ends.
    let mut server = Server {
        child: command.spawn().expect("the binary starts"),
        address: SocketAddr::from(([127, 0, 0, 1], 0)),
    };
    let stderr = server.child.stderr.take().expect("stderr");
    let (lines, received) = mpsc::channel();
    // Keeps draining stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = lines.send(line);
        }
    });
    let mut log = Vec::new();
    loop {
        let line = match received.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => strip_ansi(&line),
            Err(error) => panic!(
                "no `mailwarden listening` line ({error:?}); log:\n{}",
                log.join("\n")
            ),
        };
        if line.contains("mailwarden listening") {
            server.address = line
                .split_whitespace()
                .find_map(|word| word.strip_prefix("address="))
                .and_then(|address| address.trim_matches('"').parse().ok())
                .unwrap_or_else(|| panic!("no address in `{line}`"));
            return server;
        }
        log.push(line);
    }
}
