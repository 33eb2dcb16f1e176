//! The soak's load: connections that post SendPulse batches, each event with its own
//! message id, and keep a ledger of what was acknowledged.
//!
//! A connection sends one request at a time, paced. A request that fails (refused while
//! the server is down, reset by the kill, a 5xx) is sent again with the same body until
//! it is answered with a 2xx, as a provider retries: only then do its events count as
//! acknowledged. Some acknowledged requests are sent a second time on purpose, and a
//! sample of bodies is kept to be sent again after the last kill: both must store nothing.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Share of acknowledged requests sent a second time at once (a provider retry).
pub const RETRY_SHARE: f64 = 0.05;
/// Every how many acknowledged requests a body is kept for the late retries.
const KEEP_EVERY: u64 = 25;
/// How long one request may take before it counts as failed (and is sent again).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Wait between two attempts of a failed request.
const RETRY_DELAY: Duration = Duration::from_millis(100);
/// After this long without a 2xx a request is given up (the server did not come back).
const GIVE_UP: Duration = Duration::from_secs(120);
/// Domain of every generated address.
pub const DOMAIN: &str = "soak.example";

/// What an event is; the mix is 89% delivered, 10% hard bounces, 1% complaints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Delivered,
    HardBounce,
    Complaint,
}

impl Kind {
    fn pick(rng: &mut fastrand::Rng) -> Kind {
        match rng.u32(0..100) {
            0..=88 => Kind::Delivered,
            89..=98 => Kind::HardBounce,
            _ => Kind::Complaint,
        }
    }
}

/// The address event `n` goes to: delivered mail shares 1 000 addresses, every bounce and
/// complaint has its own, so its suppression, CRM call and alert name this one event.
pub fn recipient(n: u64, kind: Kind) -> String {
    match kind {
        Kind::Delivered => format!("user{}@{DOMAIN}", n % 1_000),
        Kind::HardBounce => format!("bounce{n}@{DOMAIN}"),
        Kind::Complaint => format!("complaint{n}@{DOMAIN}"),
    }
}

/// The provider's message id of event `n`, which the audit reads back.
pub fn message_id(n: u64) -> String {
    format!("soak-{n}")
}

/// Reads `n` back from a message id.
pub fn parse_message_id(id: &str) -> Option<u64> {
    id.strip_prefix("soak-")?.parse().ok()
}

/// One SendPulse element.
fn element(n: u64, kind: Kind, timestamp: i64) -> String {
    let to = recipient(n, kind);
    let event = match kind {
        Kind::Delivered => r#""event":"delivered","smtp_server_response_code":"250""#,
        Kind::HardBounce => {
            r#""event":"hard_bounces","smtp_server_response_code":550,"smtp_server_response_subcode":"5.1.1","smtp_server_response":"550 5.1.1 User unknown""#
        }
        Kind::Complaint => r#""event":"spam_by_user""#,
    };
    format!(
        r#"{{{event},"timestamp":{timestamp},"message_id":"{}","email":"{to}","sender":"news@shop.example","subject":"Soak"}}"#,
        message_id(n)
    )
}

/// Settings of the load, shared by its connections.
pub struct Traffic {
    pub client: reqwest::Client,
    /// Where the server listens now (it changes only if a restart cannot reuse the port).
    pub address: RwLock<SocketAddr>,
    /// Requests per second over all connections.
    pub rate: f64,
    pub connections: usize,
    /// Most events in one request (1 to this many, uniformly).
    pub max_batch: usize,
    pub seed: u64,
    /// Next event number.
    sequence: AtomicU64,
    /// Requests sent and not answered yet: those at a kill are cut off.
    pub in_flight: AtomicUsize,
    stopping: AtomicBool,
}

impl Traffic {
    pub fn new(
        client: reqwest::Client,
        address: SocketAddr,
        rate: f64,
        connections: usize,
        max_batch: usize,
        seed: u64,
    ) -> Traffic {
        Traffic {
            client,
            address: RwLock::new(address),
            rate,
            connections,
            max_batch,
            seed,
            sequence: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
        }
    }

    /// Asks the connections to stop once their current request is acknowledged.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// Events numbered so far (sent at least once).
    pub fn events_sent(&self) -> u64 {
        self.sequence.load(Ordering::SeqCst)
    }

    fn url(&self) -> String {
        let address = *self.address.read().expect("address lock");
        format!("http://{address}/webhooks/sendpulse")
    }
}

/// What one connection (then all of them) sent and had acknowledged.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Every acknowledged event: its number and kind.
    pub acked: Vec<(u64, Kind)>,
    /// Requests acknowledged (first deliveries, not the deliberate retries).
    pub requests_acked: u64,
    /// Attempts that got no 2xx (refused, reset, timed out, 5xx) and were sent again.
    pub failed_attempts: u64,
    /// Of the requests that needed more than one attempt: events the final attempt stored
    /// (lost with the kill before they were on disk, or never received) and events it
    /// found already stored (on disk before the kill, answer cut off).
    pub resent_stored: u64,
    pub resent_recognized: u64,
    /// Deliberate retries of acknowledged requests, and events they stored (dedup misses).
    pub deliberate_retries: u64,
    pub deliberate_stored: u64,
    /// Requests answered with a 4xx other than 429 (never expected).
    pub rejected: u64,
    /// Requests given up after [`GIVE_UP`] without a 2xx.
    pub given_up: u64,
    /// Bodies kept for the late retries, with their event count.
    pub kept: Vec<(Vec<u8>, usize)>,
}

impl Ledger {
    /// Adds `other`'s counts and lists to this one.
    pub fn merge(&mut self, other: Ledger) {
        self.acked.extend(other.acked);
        self.requests_acked += other.requests_acked;
        self.failed_attempts += other.failed_attempts;
        self.resent_stored += other.resent_stored;
        self.resent_recognized += other.resent_recognized;
        self.deliberate_retries += other.deliberate_retries;
        self.deliberate_stored += other.deliberate_stored;
        self.rejected += other.rejected;
        self.given_up += other.given_up;
        self.kept.extend(other.kept);
    }
}

/// Runs every connection until [`Traffic::stop`]; returns their merged ledger.
pub async fn run(traffic: Arc<Traffic>) -> Ledger {
    let started = Instant::now();
    let pace = Duration::from_secs_f64(traffic.connections as f64 / traffic.rate);
    let mut tasks = Vec::new();
    for connection in 0..traffic.connections {
        let traffic = traffic.clone();
        // Starts spread over one pace, so the connections do not fire together.
        let first = started + pace.mul_f64(connection as f64 / traffic.connections as f64);
        tasks.push(tokio::spawn(connection_loop(
            traffic, connection, first, pace,
        )));
    }
    let mut ledger = Ledger::default();
    for task in tasks {
        ledger.merge(task.await.expect("connection task"));
    }
    ledger
}

async fn connection_loop(
    traffic: Arc<Traffic>,
    connection: usize,
    first: Instant,
    pace: Duration,
) -> Ledger {
    let mut rng = fastrand::Rng::with_seed(traffic.seed ^ ((connection as u64 + 1) << 32));
    let mut ledger = Ledger::default();
    let mut next = first;
    while !traffic.stopping.load(Ordering::SeqCst) {
        tokio::time::sleep_until(next.into()).await;
        // Slots missed while the server was down are skipped, not sent in a burst.
        next = (next + pace).max(Instant::now());

        let size = rng.usize(1..=traffic.max_batch);
        let timestamp = jiff::Timestamp::now().as_second();
        let events: Vec<(u64, Kind)> = (0..size)
            .map(|_| {
                let n = traffic.sequence.fetch_add(1, Ordering::SeqCst);
                (n, Kind::pick(&mut rng))
            })
            .collect();
        let elements: Vec<String> = events
            .iter()
            .map(|(n, kind)| element(*n, *kind, timestamp))
            .collect();
        let body = format!("[{}]", elements.join(",")).into_bytes();

        let Some(answer) = deliver(&traffic, &body, &mut ledger).await else {
            continue;
        };
        if answer.attempts > 1 {
            ledger.resent_stored += answer.accepted;
            ledger.resent_recognized += answer.duplicates;
        }
        ledger.requests_acked += 1;
        ledger.acked.extend(events);
        if ledger.requests_acked % KEEP_EVERY == 0 {
            ledger.kept.push((body.clone(), size));
        }
        if rng.f64() < RETRY_SHARE {
            ledger.deliberate_retries += 1;
            if let Some(again) = deliver(&traffic, &body, &mut ledger).await {
                ledger.deliberate_stored += again.accepted;
            }
        }
    }
    ledger
}

/// The answer to a request that was finally acknowledged.
pub struct Answer {
    pub accepted: u64,
    pub duplicates: u64,
    /// Attempts it took (1: answered at once).
    pub attempts: u32,
}

/// Sends `body` until it is answered with a 2xx; `None` if it was rejected or given up.
pub async fn deliver(traffic: &Traffic, body: &[u8], ledger: &mut Ledger) -> Option<Answer> {
    let started = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        traffic.in_flight.fetch_add(1, Ordering::SeqCst);
        let sent = traffic
            .client
            .post(traffic.url())
            .header("content-type", "application/json")
            .timeout(REQUEST_TIMEOUT)
            .body(body.to_vec())
            .send()
            .await;
        let answered = match sent {
            Ok(response) => {
                let status = response.status();
                let report = response.json::<Value>().await.ok();
                Some((status, report))
            }
            Err(_) => None,
        };
        traffic.in_flight.fetch_sub(1, Ordering::SeqCst);
        match answered {
            Some((status, Some(report))) if status.is_success() => {
                let count = |field: &str| report[field].as_u64().unwrap_or(0);
                return Some(Answer {
                    accepted: count("accepted"),
                    duplicates: count("duplicates"),
                    attempts,
                });
            }
            Some((status, _)) if status.is_client_error() && status.as_u16() != 429 => {
                ledger.rejected += 1;
                return None;
            }
            // A 2xx whose body was cut off counts as not answered: send it again.
            _ => ledger.failed_attempts += 1,
        }
        if started.elapsed() > GIVE_UP {
            ledger.given_up += 1;
            return None;
        }
        tokio::time::sleep(RETRY_DELAY).await;
    }
}
