//! Holding under abuse: slow and idle clients, too many connections, bursts beyond what
//! the store can take, and shutdown with work in flight. Raw TCP where a test needs a
//! client that misbehaves; the real binary in a child process where it measures memory
//! or sends signals.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{
    Server, eventually, http_client, read_fixture, spawn_app_with, start_server_with,
};
use crate::sinks::{Behaviour, Connection, RawReceiver};

/// One Opptima delivery, unique by `n`.
fn opptima_event(n: usize) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "type": "SMTP",
        "event": "delivered",
        "relid": n,
        "subject": "Hardening",
        "to": format!("user{n}@example.com"),
        "msgid": format!("hardening-{n}"),
        "timestamp": "2026-12-01 10:00:00",
        "status": "Entregado",
    }))
    .expect("json")
}

/// The head of a `POST /webhooks/opptima` announcing `length` bytes of body.
fn post_head(length: usize) -> String {
    format!(
        "POST /webhooks/opptima HTTP/1.1\r\nHost: mailwarden\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    )
}

/// Connects to `address` and sends a `POST /webhooks/opptima` announcing `length` bytes
/// of body, of which it sends only `sent`.
async fn start_post(address: std::net::SocketAddr, length: usize, sent: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(address).await.expect("connect");
    stream
        .write_all(post_head(length).as_bytes())
        .await
        .expect("head");
    stream.write_all(sent).await.expect("part of the body");
    stream
}

/// A whole `POST /webhooks/opptima` with `body`.
fn whole_post(body: &[u8]) -> Vec<u8> {
    let mut request = post_head(body.len()).into_bytes();
    request.extend_from_slice(body);
    request
}

/// Reads until the server closes the connection (or `limit` passes); returns how long
/// that took and what was read, or `None` if it was still open at `limit`.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<(Duration, String)> {
    let started = Instant::now();
    let mut read = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let left = limit.checked_sub(started.elapsed())?;
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => {
                return Some((
                    started.elapsed(),
                    String::from_utf8_lossy(&read).into_owned(),
                ));
            }
            Ok(Ok(n)) => read.extend_from_slice(&buffer[..n]),
        }
    }
}

/// Events in the store, from `GET /api/storage`.
async fn stored_events(client: &reqwest::Client, base: &str) -> u64 {
    let storage: Value = client
        .get(format!("{base}/api/storage"))
        .send()
        .await
        .expect("storage answers")
        .json()
        .await
        .expect("storage is JSON");
    storage["events"].as_u64().expect("events count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_body_clients_are_closed_within_the_body_timeout_while_webhooks_are_answered() {
    const CLIENTS: usize = 2_000;
    let app = spawn_app_with(|config| {
        config.server.header_read_timeout_secs = 2;
        config.server.body_timeout_secs = 2;
    })
    .await;
    let address = app.address;
    // Each client sends its headers, announces a megabyte and then trickles one byte a
    // second, watching for the server to close the connection.
    let opened = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::with_capacity(CLIENTS);
    let started = Instant::now();
    for _ in 0..CLIENTS {
        let opened = opened.clone();
        clients.push(tokio::spawn(async move {
            let stream = TcpStream::connect(address).await.expect("connect");
            let (mut reader, mut writer) = stream.into_split();
            writer
                .write_all(post_head(1_000_000).as_bytes())
                .await
                .expect("headers");
            opened.fetch_add(1, Ordering::Relaxed);
            let connected = Instant::now();
            let trickle = tokio::spawn(async move {
                while writer.write_all(b" ").await.is_ok() {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            });
            let mut answer = Vec::new();
            let closed =
                tokio::time::timeout(Duration::from_secs(20), reader.read_to_end(&mut answer))
                    .await;
            trickle.abort();
            if let Ok(Err(error)) = &closed {
                answer.extend_from_slice(format!("read error: {error}").as_bytes());
            }
            (
                closed.is_ok(),
                connected.elapsed(),
                String::from_utf8_lossy(&answer).into_owned(),
            )
        }));
    }
    while opened.load(Ordering::Relaxed) < CLIENTS {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "only {} of {CLIENTS} slow clients connected",
            opened.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A provider's webhook meanwhile, on a new connection.
    let before = Instant::now();
    let response = http_client()
        .post(app.url("/webhooks/opptima"))
        .header("content-type", "application/json")
        .body(opptima_event(1))
        .send()
        .await
        .expect("webhook answered");
    let took = before.elapsed();
    assert_eq!(response.status(), 200);
    assert!(
        took < Duration::from_secs(1),
        "a webhook beside {CLIENTS} slow clients took {took:?}"
    );
    let mut latest = Duration::ZERO;
    for client in clients {
        let (closed, after, answer) = client.await.expect("client task");
        assert!(closed, "a slow client was still connected after 20 s");
        assert!(
            after >= Duration::from_millis(1_900),
            "closed before the timeout, after {after:?}: {answer:?}"
        );
        assert!(
            answer.starts_with("HTTP/1.1 408") && answer.contains("body_timeout"),
            "{answer}"
        );
        latest = latest.max(after);
    }
    assert!(
        latest < Duration::from_secs(5),
        "the last slow client was closed {latest:?} after it connected (timeout 2 s)"
    );
    assert_eq!(stored_events(&app.client, &app.url("")).await, 1);
}

#[tokio::test]
async fn clients_that_never_finish_their_headers_are_closed_at_the_header_timeout() {
    let app = spawn_app_with(|config| config.server.header_read_timeout_secs = 1).await;
    let connected = Instant::now();
    let mut silent = TcpStream::connect(app.address).await.expect("connect");
    let mut partial = TcpStream::connect(app.address).await.expect("connect");
    partial
        .write_all(b"POST /webhooks/opptima HTTP/1.1\r\nHost: mailwarden\r\n")
        .await
        .expect("half a head");
    for stream in [&mut silent, &mut partial] {
        read_until_closed(stream, Duration::from_secs(5))
            .await
            .expect("closed at the header timeout");
        let after = connected.elapsed();
        assert!(
            (Duration::from_millis(900)..Duration::from_secs(3)).contains(&after),
            "closed after {after:?}, the header timeout is 1 s"
        );
    }
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let app = spawn_app_with(|config| {
        config.server.header_read_timeout_secs = 1;
        config.server.idle_timeout_secs = 3;
    })
    .await;
    let mut stream = TcpStream::connect(app.address).await.expect("connect");
    let body = opptima_event(7);
    stream.write_all(&whole_post(&body)).await.expect("request");
    let mut answer = [0u8; 4096];
    let n = stream.read(&mut answer).await.expect("answer");
    assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 200"));
    // Past the header timeout, a connection between requests is idle, not slow.
    assert!(
        read_until_closed(&mut stream, Duration::from_secs(2))
            .await
            .is_none(),
        "an idle connection was closed at the header timeout"
    );
    let (after, _) = read_until_closed(&mut stream, Duration::from_secs(3))
        .await
        .expect("closed after the idle timeout");
    assert!(after < Duration::from_secs(3), "{after:?}");
    // And a second request on a live keep-alive connection still works.
    let client = http_client();
    for n in [8, 9] {
        let response = client
            .post(app.url("/webhooks/opptima"))
            .body(opptima_event(n))
            .send()
            .await
            .expect("keep-alive request");
        assert_eq!(response.status(), 200);
    }
}

#[tokio::test]
async fn a_body_slower_than_the_timeout_gets_408_and_nothing_is_stored() {
    let app = spawn_app_with(|config| config.server.body_timeout_secs = 1).await;
    let body = opptima_event(11);
    let mut stream = start_post(app.address, body.len(), &body[..body.len() / 2]).await;
    let (after, answer) = read_until_closed(&mut stream, Duration::from_secs(5))
        .await
        .expect("answered and closed");
    assert!(after >= Duration::from_millis(900), "{after:?}");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""code":"body_timeout""#), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    assert_eq!(stored_events(&app.client, &app.url("")).await, 0);
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let app = spawn_app_with(|config| config.server.max_connections = 4).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        let stream = TcpStream::connect(app.address).await.expect("connect");
        held.push(stream);
    }
    // The fifth client is in the backlog: connected, but not served.
    let mut waiting = TcpStream::connect(app.address).await.expect("connect");
    let body = opptima_event(21);
    waiting
        .write_all(&whole_post(&body))
        .await
        .expect("request");
    let mut answer = [0u8; 4096];
    assert!(
        tokio::time::timeout(Duration::from_secs(1), waiting.read(&mut answer))
            .await
            .is_err(),
        "a fifth connection was served beside four with max_connections = 4"
    );
    drop(held.pop());
    let n = tokio::time::timeout(Duration::from_secs(3), waiting.read(&mut answer))
        .await
        .expect("served once a connection closed")
        .expect("answer");
    assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 200"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_beyond_the_commit_queue_is_refused_with_503_and_stored_when_retried() {
    const EVENTS: usize = 600;
    const CONCURRENCY: usize = 100;
    let app = spawn_app_with(|config| config.ingest.max_queued_requests = 2).await;
    let refused = Arc::new(AtomicUsize::new(0));
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let (refused, next) = (refused.clone(), next.clone());
        let url = app.url("/webhooks/opptima");
        workers.push(tokio::spawn(async move {
            let client = http_client();
            let mut ids = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= EVENTS {
                    return ids;
                }
                // A provider retries on 5xx until it gets its 2xx.
                loop {
                    let response = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(opptima_event(n))
                        .send()
                        .await
                        .expect("answered");
                    match response.status().as_u16() {
                        200 => {
                            let report: Value = response.json().await.expect("report");
                            ids.push(report["event_ids"][0].as_str().map(str::to_owned));
                            break;
                        }
                        503 => {
                            assert!(response.headers().contains_key("retry-after"));
                            let error: Value = response.json().await.expect("error");
                            assert_eq!(error["error"]["code"], "overloaded", "{error}");
                            refused.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        other => panic!("unexpected status {other}"),
                    }
                }
            }
        }));
    }
    let mut acknowledged = Vec::new();
    for worker in workers {
        acknowledged.extend(worker.await.expect("worker"));
    }
    assert_eq!(acknowledged.len(), EVENTS);
    assert!(
        refused.load(Ordering::Relaxed) > 0,
        "{CONCURRENCY} concurrent requests never filled a queue of 2"
    );
    // Every 200 is on disk, once.
    assert_eq!(
        stored_events(&app.client, &app.url("")).await,
        EVENTS as u64
    );
    for id in acknowledged.iter().step_by(50) {
        let id = id.as_deref().expect("a 200 names its event");
        let (status, _) = app.get(&format!("/api/events/{id}")).await;
        assert_eq!(status, 200, "{id}");
    }
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(r#"mailwarden_ingest_overloaded_total{reason="queue_full"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("mailwarden_ingest_queue_limit_requests"),
        "{metrics}"
    );
}

#[tokio::test]
async fn bodies_beyond_the_bytes_in_flight_are_refused_at_once_and_accepted_later() {
    const BODY: usize = 16 * 1024;
    let app = spawn_app_with(|config| {
        config.ingest.max_body_bytes = BODY;
        config.ingest.max_in_flight_bytes = 4 * BODY;
    })
    .await;
    // Four bodies of 16 KiB, all but their last 100 bytes received, nearly fill a budget
    // of 64 KiB.
    let mut held = Vec::new();
    for n in 0..4 {
        let mut body = opptima_event(100 + n);
        body.resize(BODY, b' ');
        let stream = start_post(app.address, BODY, &body[..BODY - 100]).await;
        held.push((stream, body));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut fifth = opptima_event(200);
    fifth.resize(BODY, b' ');
    let before = Instant::now();
    let refused = app.post_raw("opptima", fifth.clone()).await;
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    assert!(
        before.elapsed() < Duration::from_millis(500),
        "{:?}",
        before.elapsed()
    );
    let error: Value = refused.json().await.expect("error");
    assert_eq!(error["error"]["code"], "overloaded", "{error}");
    // The held requests complete normally, and then the refused one fits.
    for (stream, body) in &mut held {
        stream
            .write_all(&body[BODY - 100..])
            .await
            .expect("the rest");
        let mut answer = [0u8; 4096];
        let n = stream.read(&mut answer).await.expect("answer");
        assert!(
            String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&answer[..n])
        );
    }
    assert_eq!(app.post_raw("opptima", fifth).await.status(), 200);
    assert_eq!(stored_events(&app.client, &app.url("")).await, 5);
}

// ---------------------------------------------------------------------------------------
// The binary in a child process.

/// Writes `toml` as the config file in `dir` and starts the binary with it.
fn start_configured(dir: &Path, toml: &str) -> Server {
    let file = dir.join("mailwarden.toml");
    std::fs::write(&file, toml).expect("config file");
    start_server_with(dir, &["--config".as_ref(), file.as_os_str()])
}

/// The resident memory of process `pid`, in bytes.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| {
            value
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .expect("VmRSS")
        * 1024
}

/// A SendPulse batch of `events` deliveries, unique by `batch`.
fn sendpulse_batch(batch: usize, events: usize) -> Vec<u8> {
    let list: Vec<Value> = (0..events)
        .map(|i| {
            json!({
                "event": "delivered",
                "timestamp": 1_763_600_000 + i,
                "message_id": format!("burst-{batch}-{i}"),
                "recipient": format!("user{i}@example.com"),
                "email": format!("user{i}@example.com"),
                "sender": "news@shop.example",
                "subject": "A burst",
                "smtp_server_response_code": "250",
            })
        })
        .collect();
    serde_json::to_vec(&list).expect("json")
}

/// Sends `bodies` at once, each retried on 503 until it is stored; samples the server's
/// memory meanwhile. Returns (peak RSS, refusals).
async fn burst(server: &Server, bodies: Vec<Vec<u8>>) -> (u64, usize) {
    let pid = server.child.id();
    let url = format!("http://{}/webhooks/sendpulse", server.address);
    let done = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let total = bodies.len();
    let mut senders = Vec::new();
    for body in bodies {
        let (url, done, refused) = (url.clone(), done.clone(), refused.clone());
        senders.push(tokio::spawn(async move {
            let client = http_client();
            loop {
                match client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                {
                    Ok(response) if response.status() == 200 => break,
                    Ok(response) => {
                        assert_eq!(response.status(), 503, "only overload refusals");
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                    // Refused before the whole body was sent: the server may close the
                    // connection while the client is still writing.
                    Err(_) => {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            done.fetch_add(1, Ordering::Relaxed);
        }));
    }
    let mut peak = 0;
    let started = Instant::now();
    // Until every sender has finished (a failed one's panic is raised below).
    while !senders.iter().all(tokio::task::JoinHandle::is_finished) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{} of {total} bodies stored after 60 s",
            done.load(Ordering::Relaxed)
        );
        peak = peak.max(rss_bytes(pid));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for sender in senders {
        sender.await.expect("sender");
    }
    (peak, refused.load(Ordering::Relaxed))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_large_bodies_keeps_memory_bounded_and_every_body_is_stored_once() {
    const BODIES: usize = 400;
    const EVENTS_PER_BODY: usize = 1_000;
    let dir = tempfile::tempdir().expect("temporary directory");
    let server = start_configured(
        dir.path(),
        "[ingest]\nmax_in_flight_bytes = 8388608\n\n[storage]\ncache_capacity_mb = 16\n",
    );
    let base = format!("http://{}", server.address);
    // Mostly repeats of four batches, so the store ends up holding little. Measured on
    // this burst (debug build, 2 cores): RSS rose by about 130 MB with 8 MiB in flight
    // (bodies being parsed and normalized, and sled's own growth from writing the
    // bodies) and by about 310 MB with no bound (1 GiB).
    let distinct = 4;
    let bodies: Vec<Vec<u8>> = (0..BODIES)
        .map(|n| sendpulse_batch(n % distinct, EVENTS_PER_BODY))
        .collect();
    let megabytes = bodies.iter().map(Vec::len).sum::<usize>() as f64 / 1e6;
    let idle = rss_bytes(server.child.id());
    let (peak, refused) = burst(&server, bodies).await;
    eprintln!(
        "burst of {BODIES} bodies ({megabytes:.0} MB in all): RSS {} MB before, peak {} MB, {refused} refusals",
        idle / 1_000_000,
        peak / 1_000_000
    );
    assert!(
        refused > 0,
        "a burst of {megabytes:.0} MB fit in 8 MiB in flight"
    );
    assert!(
        peak < idle + 200_000_000,
        "RSS rose from {} MB to {} MB under a burst bounded to 8 MiB in flight",
        idle / 1_000_000,
        peak / 1_000_000
    );
    let client = http_client();
    assert_eq!(
        stored_events(&client, &base).await,
        (distinct * EVENTS_PER_BODY) as u64
    );
}

/// Sends SIGTERM to the server.
fn terminate(server: &Server) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

/// Waits up to `limit` for the server to exit; returns its exit status and when.
async fn exited_within(
    server: &mut Server,
    limit: Duration,
) -> (std::process::ExitStatus, Duration) {
    let started = Instant::now();
    loop {
        if let Some(status) = server.child.try_wait().expect("wait") {
            return (status, started.elapsed());
        }
        assert!(
            started.elapsed() < limit,
            "the server was still running {limit:?} after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn sigterm_finishes_requests_in_flight_refuses_new_ones_and_exits_cleanly() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut server = start_configured(dir.path(), "[server]\nshutdown_grace_secs = 10\n");
    // The server raised its open-file limit to the hard limit at start.
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.child.id()))
        .expect("proc limits");
    let open_files: Vec<&str> = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .expect("a file limit")
        .split_whitespace()
        .skip(3)
        .take(2)
        .collect();
    assert_eq!(
        open_files[0], open_files[1],
        "soft limit not raised: {limits}"
    );
    let body = opptima_event(300);
    let mut in_flight = start_post(server.address, body.len(), &body[..body.len() / 2]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    terminate(&server);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        TcpStream::connect(server.address).await.is_err(),
        "a new connection was accepted after SIGTERM"
    );
    assert!(
        server.child.try_wait().expect("wait").is_none(),
        "exited with a request in flight"
    );
    in_flight
        .write_all(&body[body.len() / 2..])
        .await
        .expect("the rest of the body");
    let (_, answer) = read_until_closed(&mut in_flight, Duration::from_secs(5))
        .await
        .expect("answered, then closed");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let (status, _) = exited_within(&mut server, Duration::from_secs(10)).await;
    assert!(status.success(), "{status}");
    // What was answered 200 during the shutdown is on disk.
    let server = start_server_with(dir.path(), &[]);
    let client = http_client();
    assert_eq!(
        stored_events(&client, &format!("http://{}", server.address)).await,
        1
    );
}

#[tokio::test]
async fn sigterm_cuts_off_what_outlasts_the_grace_period() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut server = start_configured(
        dir.path(),
        "[server]\nshutdown_grace_secs = 1\nbody_timeout_secs = 60\n",
    );
    let mut stuck = start_post(server.address, 1_000, b"{").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    terminate(&server);
    let (status, after) = exited_within(&mut server, Duration::from_secs(6)).await;
    assert!(status.success(), "{status}");
    assert!(
        after >= Duration::from_millis(900),
        "exited after {after:?}, grace is 1 s"
    );
    assert!(
        read_until_closed(&mut stuck, Duration::from_secs(2))
            .await
            .is_some()
    );
}

#[tokio::test]
async fn sigterm_returns_an_outbound_call_in_flight_to_the_outbox_with_its_key() {
    let crm = RawReceiver::start(Behaviour::Hang).await;
    let dir = tempfile::tempdir().expect("temporary directory");
    std::fs::create_dir_all(dir.path().join("rules")).expect("rules directory");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/crm_forward.rhai"),
        dir.path().join("rules/crm_forward.rhai"),
    )
    .expect("the shipped CRM rule");
    let config = format!(
        "[server]\nshutdown_grace_secs = 1\n\n[outbound]\nallow = [\"127.0.0.1/32\"]\n\
         timeout_secs = 60\n\n[rules.vars]\ncrm_url = \"{}\"\n",
        crm.url("/crm")
    );
    let mut server = start_configured(dir.path(), &config);
    let response = http_client()
        .post(format!("http://{}/webhooks/opptima", server.address))
        .header("content-type", "application/json")
        .body(read_fixture("opptima/smtp_bounce.json"))
        .send()
        .await
        .expect("webhook");
    assert_eq!(response.status(), 200);
    // The CRM accepted the call and never answers; the server is told to stop.
    crm.wait_for(1).await;
    terminate(&server);
    let (status, after) = exited_within(&mut server, Duration::from_secs(6)).await;
    assert!(status.success(), "{status}");
    assert!(
        after < Duration::from_secs(4),
        "a call the receiver never answers held the shutdown for {after:?} (grace 1 s)"
    );
    // After the restart the same call goes out again, under the same key, and succeeds.
    crm.set(Behaviour::Answer);
    let server = start_configured(dir.path(), &config);
    let calls = crm.wait_closed(2).await;
    let key = |connection: &Connection| connection.header("idempotency-key");
    assert!(key(&calls[0]).is_some(), "{}", calls[0].head);
    assert_eq!(key(&calls[1]), key(&calls[0]));
    // And it leaves the outbox once answered.
    let pending_url = format!("http://{}/api/outbox?status=pending", server.address);
    let pending = eventually("the delivered call to leave the outbox", || async {
        let outbox: Value = http_client()
            .get(&pending_url)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let entries = outbox["actions"].as_array()?.clone();
        entries.is_empty().then_some(entries)
    })
    .await;
    assert!(pending.is_empty());
    assert_eq!(
        crm.connections().len(),
        2,
        "the call went out once more, not twice"
    );
}

/// A tmpfs of `megabytes` mounted on `dir`, unmounted when dropped.
struct SmallDisk {
    dir: std::path::PathBuf,
}

impl SmallDisk {
    fn mount(dir: &Path, megabytes: u32) -> SmallDisk {
        std::fs::create_dir_all(dir).expect("mount point");
        let output = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("mount runs");
        assert!(
            output.status.success(),
            "this test needs to mount a small tmpfs (as root, as CI runs) to fill a disk; \
             mount said: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        SmallDisk {
            dir: dir.to_owned(),
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.dir)
            .status();
    }
}

/// Posts one SendPulse batch; returns the status, the `Retry-After` header and the body.
async fn post_batch(base: &str, body: &[u8]) -> (u16, Option<String>, Value) {
    let response = http_client()
        .post(format!("{base}/webhooks/sendpulse"))
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .expect("answered");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    (
        status,
        retry_after,
        response.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn a_full_disk_answers_503_reports_degraded_and_recovers_by_itself_when_space_is_freed() {
    const EVENTS_PER_BATCH: usize = 200;
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("data");
    let disk = SmallDisk::mount(&data, 24);
    // Most of the disk is taken by something else; the store gets about 10 MB.
    std::fs::write(data.join("filler"), vec![0u8; 14 * 1024 * 1024]).expect("filler");
    let mut server = start_server_with(dir.path(), &[]);
    let base = format!("http://{}", server.address);
    let mut acknowledged = 0;
    let refused = loop {
        let body = sendpulse_batch(acknowledged, EVENTS_PER_BATCH);
        let (status, retry_after, answer) = post_batch(&base, &body).await;
        match status {
            200 => acknowledged += 1,
            503 => {
                assert!(retry_after.is_some(), "503 without Retry-After");
                assert_eq!(answer["error"]["code"], "storage_degraded", "{answer}");
                break body;
            }
            other => panic!("unexpected {other}: {answer}"),
        }
        assert!(acknowledged < 1_000, "the small disk never filled");
    };
    assert!(acknowledged > 0, "the disk was full before the first batch");
    // Refused again while full, and the health check says why.
    let (status, _, _) = post_batch(&base, &refused).await;
    assert_eq!(status, 503);
    let health = http_client()
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), 503);
    let health: Value = health.json().await.expect("JSON");
    assert_eq!(health["status"], "degraded", "{health}");
    assert!(
        health["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("No space left")),
        "{health}"
    );
    // Space comes back: the service recovers without a restart.
    std::fs::remove_file(data.join("filler")).expect("free the space");
    let healthz = format!("{base}/healthz");
    eventually("/healthz to say ok again", || async {
        let response = http_client().get(&healthz).send().await.ok()?;
        (response.status() == 200).then_some(())
    })
    .await;
    let (status, _, answer) = post_batch(&base, &refused).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"], EVENTS_PER_BATCH, "{answer}");
    acknowledged += 1;
    // Nothing acknowledged was lost, nothing is stored twice, and the store opens again.
    terminate(&server);
    let (status, _) = exited_within(&mut server, Duration::from_secs(10)).await;
    assert!(status.success(), "{status}");
    let server = start_server_with(dir.path(), &[]);
    let base = format!("http://{}", server.address);
    assert_eq!(
        stored_events(&http_client(), &base).await,
        (acknowledged * EVENTS_PER_BATCH) as u64
    );
    for batch in [0, acknowledged - 1] {
        let (status, _, answer) =
            post_batch(&base, &sendpulse_batch(batch, EVENTS_PER_BATCH)).await;
        assert_eq!(status, 200);
        assert_eq!(
            answer["duplicates"], EVENTS_PER_BATCH,
            "batch {batch}: {answer}"
        );
    }
    drop(server);
    drop(disk);
}
