//! Test servers the service talks to: a tiny SMTP server that keeps every message it is
//! given, and an HTTP receiver that records every request and answers from a script.
//!
//! Both listen on 127.0.0.1 with an ephemeral port, run on the test's runtime, stop when
//! dropped, and let a test await "n messages" / "n requests" with a deadline.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use base64::Engine as _;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// How long `wait_for` waits before failing the test.
const WAIT: Duration = Duration::from_secs(10);

/// Waits until `count()` reaches `n` (woken by `notify`), at most [`WAIT`].
async fn wait_count(notify: &Notify, what: &str, n: usize, count: impl Fn() -> usize) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        // Created before the check: `notify_waiters` reaches it even before it is polled.
        let notified = notify.notified();
        let have = count();
        if have >= n {
            return;
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            panic!("waited {WAIT:?} for {n} {what}, got {}", count());
        }
    }
}

// ---------------------------------------------------------------------------------------
// SMTP.

/// One message as the SMTP sink received it.
#[derive(Debug, Clone)]
pub struct Mail {
    /// `MAIL FROM` address.
    pub from: String,
    /// `RCPT TO` addresses.
    pub to: Vec<String>,
    /// The message (headers and body) after dot-unstuffing, CRLF line ends.
    pub data: String,
}

impl Mail {
    fn split(&self) -> (&str, &str) {
        self.data
            .split_once("\r\n\r\n")
            .unwrap_or((self.data.as_str(), ""))
    }

    /// The value of header `name` (case-insensitive), unfolded.
    pub fn header(&self, name: &str) -> Option<String> {
        let (head, _) = self.split();
        let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", "\t");
        unfolded.split("\r\n").find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    }

    /// The body, decoded from its `Content-Transfer-Encoding`, with `\n` line ends.
    pub fn body(&self) -> String {
        let (_, body) = self.split();
        let encoding = self
            .header("Content-Transfer-Encoding")
            .unwrap_or_default()
            .to_ascii_lowercase();
        let text = match encoding.as_str() {
            "quoted-printable" => decode_quoted_printable(body),
            "base64" => {
                let compact: String = body.split_whitespace().collect();
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(compact)
                    .expect("base64 body");
                String::from_utf8_lossy(&bytes).into_owned()
            }
            _ => body.to_owned(),
        };
        text.replace("\r\n", "\n")
    }
}

fn decode_quoted_printable(text: &str) -> String {
    // Soft line breaks first, then `=XX` escapes.
    let text = text.replace("=\r\n", "");
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = (bytes[index] == b'=' && index + 3 <= bytes.len())
            .then(|| std::str::from_utf8(&bytes[index + 1..index + 3]).ok())
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                index += 3;
            }
            None => {
                out.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

struct SmtpShared {
    up: AtomicBool,
    refused: AtomicUsize,
    mails: Mutex<Vec<Mail>>,
    notify: Notify,
}

/// A minimal SMTP server (no TLS, no AUTH) that keeps what it receives.
pub struct SmtpSink {
    /// Port it listens on (127.0.0.1).
    pub port: u16,
    shared: Arc<SmtpShared>,
    task: JoinHandle<()>,
}

impl SmtpSink {
    /// Starts a sink that accepts mail.
    pub async fn start() -> SmtpSink {
        SmtpSink::launch(true).await
    }

    /// Starts a sink that holds its port but answers every connection with `421` (as a
    /// server that is down for maintenance), until [`SmtpSink::bring_up`].
    pub async fn start_down() -> SmtpSink {
        SmtpSink::launch(false).await
    }

    async fn launch(up: bool) -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("SMTP sink binds");
        let port = listener.local_addr().expect("bound").port();
        let shared = Arc::new(SmtpShared {
            up: AtomicBool::new(up),
            refused: AtomicUsize::new(0),
            mails: Mutex::new(Vec::new()),
            notify: Notify::new(),
        });
        let accepting = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = accepting.clone();
                tokio::spawn(async move {
                    let _ = smtp_session(stream, &shared).await;
                });
            }
        });
        SmtpSink { port, shared, task }
    }

    /// Starts accepting mail on the same port.
    pub fn bring_up(&self) {
        self.shared.up.store(true, Ordering::SeqCst);
    }

    /// Connections answered with `421` so far.
    pub fn refused(&self) -> usize {
        self.shared.refused.load(Ordering::SeqCst)
    }

    /// Messages received so far.
    pub fn mails(&self) -> Vec<Mail> {
        self.shared.mails.lock().expect("mails lock").clone()
    }

    /// Waits (at most 10 s) until at least `n` messages arrived; returns them all.
    pub async fn wait_for(&self, n: usize) -> Vec<Mail> {
        wait_count(&self.shared.notify, "mails", n, || {
            self.shared.mails.lock().expect("mails lock").len()
        })
        .await;
        self.mails()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The address inside `<...>` of a `MAIL FROM:` or `RCPT TO:` argument.
fn angle_address(argument: &str) -> String {
    match (argument.find('<'), argument.find('>')) {
        (Some(start), Some(end)) if start < end => argument[start + 1..end].to_owned(),
        _ => argument.trim().to_owned(),
    }
}

async fn smtp_session(stream: TcpStream, shared: &SmtpShared) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    if !shared.up.load(Ordering::SeqCst) {
        shared.refused.fetch_add(1, Ordering::SeqCst);
        shared.notify.notify_waiters();
        write
            .write_all(b"421 4.3.2 sink is down, try again later\r\n")
            .await?;
        return write.shutdown().await;
    }
    let mut reader = BufReader::new(read);
    write.write_all(b"220 sink.test ESMTP ready\r\n").await?;
    let mut from = String::new();
    let mut to = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line);
        let command = text.trim_end();
        let upper = command.to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO") {
            // Deliberately no STARTTLS.
            b"250-sink.test\r\n250-8BITMIME\r\n250 SIZE 10485760\r\n"
        } else if upper.starts_with("HELO") {
            b"250 sink.test\r\n"
        } else if upper.starts_with("MAIL FROM:") {
            from = angle_address(&command[10..]);
            to.clear();
            b"250 2.1.0 OK\r\n"
        } else if upper.starts_with("RCPT TO:") {
            to.push(angle_address(&command[8..]));
            b"250 2.1.5 OK\r\n"
        } else if upper == "DATA" {
            write
                .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                .await?;
            let mut data = String::new();
            loop {
                line.clear();
                if reader.read_until(b'\n', &mut line).await? == 0 {
                    return Ok(());
                }
                let text = String::from_utf8_lossy(&line);
                if text == ".\r\n" || text == ".\n" {
                    break;
                }
                // Dot-unstuffing: a line starting with a dot was sent with one more.
                data.push_str(text.strip_prefix('.').unwrap_or(&text));
            }
            shared.mails.lock().expect("mails lock").push(Mail {
                from: from.clone(),
                to: std::mem::take(&mut to),
                data,
            });
            shared.notify.notify_waiters();
            b"250 2.0.0 queued\r\n"
        } else if upper == "RSET" {
            to.clear();
            from.clear();
            b"250 2.0.0 OK\r\n"
        } else if upper == "NOOP" {
            b"250 2.0.0 OK\r\n"
        } else if upper == "QUIT" {
            write.write_all(b"221 2.0.0 bye\r\n").await?;
            return write.shutdown().await;
        } else {
            b"502 5.5.2 command not recognized\r\n"
        };
        write.write_all(reply).await?;
    }
}

// ---------------------------------------------------------------------------------------
// HTTP.

/// One request as the HTTP receiver got it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Method.
    pub method: Method,
    /// Path and query.
    pub path: String,
    /// Headers.
    pub headers: HeaderMap,
    /// Body bytes.
    pub body: Vec<u8>,
    /// Status the receiver answered with.
    pub status: u16,
}

impl Recorded {
    /// The value of header `name`, if present and text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON request body")
    }
}

struct HttpShared {
    requests: Mutex<Vec<Recorded>>,
    script: Mutex<VecDeque<u16>>,
    fallback: AtomicU16,
    notify: Notify,
}

/// An HTTP server that records every request and answers the scripted statuses in order,
/// then the fallback status (200 unless changed).
pub struct HttpReceiver {
    /// Where it listens.
    pub address: SocketAddr,
    shared: Arc<HttpShared>,
    task: JoinHandle<()>,
}

impl HttpReceiver {
    /// Starts a receiver answering `script` in order, then 200.
    pub async fn start(script: &[u16]) -> HttpReceiver {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("HTTP receiver binds");
        let address = listener.local_addr().expect("bound");
        let shared = Arc::new(HttpShared {
            requests: Mutex::new(Vec::new()),
            script: Mutex::new(script.iter().copied().collect()),
            fallback: AtomicU16::new(200),
            notify: Notify::new(),
        });
        let router = Router::new().fallback(record).with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        HttpReceiver {
            address,
            shared,
            task,
        }
    }

    /// Full URL of `path` on the receiver.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Status answered once the script is used up.
    pub fn set_fallback(&self, status: u16) {
        self.shared.fallback.store(status, Ordering::SeqCst);
    }

    /// Requests received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().expect("requests lock").clone()
    }

    /// Waits (at most 10 s) until at least `n` requests arrived; returns them all.
    pub async fn wait_for(&self, n: usize) -> Vec<Recorded> {
        wait_count(&self.shared.notify, "requests", n, || {
            self.shared.requests.lock().expect("requests lock").len()
        })
        .await;
        self.requests()
    }
}

impl Drop for HttpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn record(
    State(shared): State<Arc<HttpShared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let status = shared
        .script
        .lock()
        .expect("script lock")
        .pop_front()
        .unwrap_or_else(|| shared.fallback.load(Ordering::SeqCst));
    shared
        .requests
        .lock()
        .expect("requests lock")
        .push(Recorded {
            method,
            path: uri
                .path_and_query()
                .map_or_else(|| uri.path().to_owned(), ToString::to_string),
            headers,
            body: body.to_vec(),
            status,
        });
    shared.notify.notify_waiters();
    StatusCode::from_u16(status).expect("scripted status is valid")
}

// ---------------------------------------------------------------------------------------
// Stuck receivers.

/// How a [`RawReceiver`] treats the connections it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Reads the request, then never answers (until the client hangs up).
    Hang,
    /// Sends the whole answer (status line first) one byte a second.
    TrickleHead,
    /// Sends the status line and headers at once, then the body one byte a second.
    TrickleBody,
    /// Answers `200` with an empty body and closes.
    Answer,
}

/// One connection a [`RawReceiver`] accepted.
#[derive(Debug, Clone)]
pub struct Connection {
    /// When it was accepted.
    pub accepted_at: tokio::time::Instant,
    /// The request line and headers, as far as they arrived.
    pub head: String,
    /// When the client closed it (or it was answered and closed).
    pub closed_at: Option<tokio::time::Instant>,
    /// How it was treated.
    pub behaviour: Behaviour,
}

impl Connection {
    /// The value of request header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.split("\r\n").skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    }

    /// The request path.
    pub fn path(&self) -> String {
        self.head.split(' ').nth(1).unwrap_or_default().to_owned()
    }

    /// How long the connection stayed open.
    pub fn lasted(&self) -> Option<Duration> {
        self.closed_at.map(|closed| closed - self.accepted_at)
    }
}

struct RawShared {
    behaviour: Mutex<Behaviour>,
    connections: Mutex<Vec<Connection>>,
    notify: Notify,
}

/// A receiver on a raw TCP listener, for what an HTTP framework would not do: accept and
/// never answer, or answer a byte a second. Records every accepted connection.
pub struct RawReceiver {
    /// Where it listens.
    pub address: SocketAddr,
    shared: Arc<RawShared>,
    task: JoinHandle<()>,
}

impl RawReceiver {
    /// Starts a receiver treating new connections as `behaviour`.
    pub async fn start(behaviour: Behaviour) -> RawReceiver {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("raw receiver binds");
        let address = listener.local_addr().expect("bound");
        let shared = Arc::new(RawShared {
            behaviour: Mutex::new(behaviour),
            connections: Mutex::new(Vec::new()),
            notify: Notify::new(),
        });
        let accepting = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = accepting.clone();
                let behaviour = *shared.behaviour.lock().expect("behaviour lock");
                let index = {
                    let mut connections = shared.connections.lock().expect("connections lock");
                    connections.push(Connection {
                        accepted_at: tokio::time::Instant::now(),
                        head: String::new(),
                        closed_at: None,
                        behaviour,
                    });
                    connections.len() - 1
                };
                shared.notify.notify_waiters();
                tokio::spawn(raw_session(stream, shared, index, behaviour));
            }
        });
        RawReceiver {
            address,
            shared,
            task,
        }
    }

    /// Full URL of `path` on the receiver.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Changes how connections accepted from now on are treated.
    pub fn set(&self, behaviour: Behaviour) {
        *self.shared.behaviour.lock().expect("behaviour lock") = behaviour;
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> Vec<Connection> {
        self.shared
            .connections
            .lock()
            .expect("connections lock")
            .clone()
    }

    /// Waits (at most 10 s) until at least `n` connections were accepted; returns them.
    pub async fn wait_for(&self, n: usize) -> Vec<Connection> {
        wait_count(&self.shared.notify, "connections", n, || {
            self.shared
                .connections
                .lock()
                .expect("connections lock")
                .len()
        })
        .await;
        self.connections()
    }

    /// Waits (at most 10 s) until the first `n` connections are closed and their
    /// requests arrived; returns them all.
    pub async fn wait_closed(&self, n: usize) -> Vec<Connection> {
        wait_count(&self.shared.notify, "closed connections", n, || {
            self.shared
                .connections
                .lock()
                .expect("connections lock")
                .iter()
                .take(n)
                .filter(|c| c.closed_at.is_some() && c.head.ends_with("\r\n\r\n"))
                .count()
        })
        .await;
        self.connections()
    }
}

impl Drop for RawReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn raw_session(
    stream: TcpStream,
    shared: Arc<RawShared>,
    index: usize,
    behaviour: Behaviour,
) {
    use tokio::io::AsyncReadExt;
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut head = String::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0; length];
    let _ = reader.read_exact(&mut body).await;
    shared.connections.lock().expect("connections lock")[index].head = head;
    shared.notify.notify_waiters();
    let (immediately, trickled): (&[u8], &[u8]) = match behaviour {
        Behaviour::Hang => (b"", b""),
        Behaviour::TrickleHead => (b"", b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"),
        Behaviour::TrickleBody => (
            b"HTTP/1.1 200 OK\r\ncontent-length: 64\r\n\r\n",
            &[b'.'; 64],
        ),
        Behaviour::Answer => (
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            b"",
        ),
    };
    let answer = async {
        write.write_all(immediately).await?;
        for byte in trickled {
            tokio::time::sleep(Duration::from_secs(1)).await;
            write.write_all(&[*byte]).await?;
        }
        if behaviour == Behaviour::Answer {
            write.shutdown().await?;
            return Ok::<(), std::io::Error>(());
        }
        std::future::pending().await
    };
    // Ends when the client hangs up (the read side sees EOF) or the answer is complete.
    let hung_up = async {
        let mut rest = [0u8; 256];
        while let Ok(n) = reader.read(&mut rest).await {
            if n == 0 {
                break;
            }
        }
    };
    tokio::select! {
        _ = answer => {}
        () = hung_up => {}
    }
    shared.connections.lock().expect("connections lock")[index].closed_at =
        Some(tokio::time::Instant::now());
    shared.notify.notify_waiters();
}
