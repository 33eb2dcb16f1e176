//! Circuit breakers for outbound calls, one per destination (`host:port` of the URL).
//!
//! A receiver that is down, or accepts connections and never answers, would otherwise
//! take a worker for a whole timeout on every due call, and its backlog would fill every
//! poll of the outbox. The breaker stops that:
//!
//! - **closed**: calls go; `failures` consecutive failures open it.
//! - **open**: calls to the host are not started; the outbox entries are postponed until
//!   the interval ends, without using up a retry attempt. The interval starts at
//!   `open_secs` and doubles after each failed probe, up to `max_open_secs`.
//! - **half open**: the interval is over; exactly one call (the probe) is let through.
//!   Success closes the breaker and resets the interval; failure opens it again for the
//!   doubled interval; a probe that says nothing about the host (refused by the guard)
//!   lets the next call probe instead.
//!
//! A failure is what points at the receiver: a timeout (the whole call, body included),
//! a connection error, a cut-off response, 5xx, 429 and 408. Any other answer, 4xx
//! included, shows the host is up: a 400 is the caller's fault and is dead-lettered, not
//! a reason to stop calling the host.
//!
//! State lives in memory: a restart closes every breaker, which costs at most
//! `failures` more failed calls per dead host. At most [`MAX_HOSTS`] destinations are
//! tracked (URLs can be built from event data): when the table is full a healthy
//! destination is forgotten first, the least recently called one. The `/metrics` lines
//! are rendered from this table, so their host labels are bounded the same way.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::config::OutboundConfig;
use crate::telemetry::names;

/// Most destinations tracked at once.
pub const MAX_HOSTS: usize = 1024;
/// Shortest postponement of a call held back while a probe is in flight.
const MIN_HOLD: Duration = Duration::from_secs(1);

/// A breaker's state, as reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Calls go.
    Closed,
    /// Calls wait until the interval ends.
    Open,
    /// The interval ended: one probe goes (or is in flight), the others wait.
    HalfOpen,
}

impl BreakerState {
    /// Returns the value of the state gauge: 0 closed, 1 open, 2 half open.
    pub fn gauge(self) -> u8 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::Open => 1,
            BreakerState::HalfOpen => 2,
        }
    }
}

/// What the end of one call says about its destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// The host answered (2xx, or a 4xx that is the caller's fault).
    Up,
    /// The host failed: timeout, connection error, 5xx, 429, 408; with what happened.
    Down(String),
    /// Nothing was learned (the call was refused before it left).
    Unknown,
}

/// Whether a call to a destination may start now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Closed: go.
    Go,
    /// Half open with no probe in flight: the next call is the probe.
    Probe,
    /// Not before this instant.
    Blocked(Instant),
}

/// The breaker settings, from `[outbound]`.
#[derive(Debug, Clone, Copy)]
pub struct BreakerSettings {
    /// Consecutive failures that open a breaker.
    pub failures: u32,
    /// First open interval.
    pub open: Duration,
    /// Longest open interval.
    pub max_open: Duration,
    /// Longest a probe can take (the whole-call timeout and a margin).
    pub probe: Duration,
}

impl BreakerSettings {
    /// Reads the settings from `[outbound]`.
    pub fn new(config: &OutboundConfig) -> BreakerSettings {
        BreakerSettings {
            failures: config.breaker_failures.max(1),
            open: Duration::from_secs(config.breaker_open_secs),
            max_open: Duration::from_secs(
                config.breaker_max_open_secs.max(config.breaker_open_secs),
            ),
            probe: Duration::from_secs(config.timeout_secs) + MIN_HOLD,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Closed,
    /// Open until the interval ends (half open once it has).
    Open,
    /// A probe is in flight; it ends by `deadline`.
    Probing {
        deadline: Instant,
    },
}

#[derive(Debug, Clone)]
struct Host {
    phase: Phase,
    failures: u32,
    /// The interval of the current opening (the first one while closed).
    interval: Duration,
    /// When it opened (wall clock, for the API).
    opened_at: Option<Timestamp>,
    /// When the current open interval ends.
    until: Instant,
    last_error: Option<String>,
    skipped: u64,
    used: Instant,
}

impl Host {
    fn new(settings: &BreakerSettings, now: Instant) -> Host {
        Host {
            phase: Phase::Closed,
            failures: 0,
            interval: settings.open,
            opened_at: None,
            until: now,
            last_error: None,
            skipped: 0,
            used: now,
        }
    }

    fn state(&self, now: Instant) -> BreakerState {
        match self.phase {
            Phase::Closed => BreakerState::Closed,
            Phase::Open if now < self.until => BreakerState::Open,
            Phase::Open | Phase::Probing { .. } => BreakerState::HalfOpen,
        }
    }

    fn gate(&self, now: Instant) -> Gate {
        match self.phase {
            Phase::Closed => Gate::Go,
            Phase::Open if now < self.until => Gate::Blocked(self.until),
            Phase::Open => Gate::Probe,
            Phase::Probing { deadline } => Gate::Blocked(deadline.max(now + MIN_HOLD)),
        }
    }

    fn open(&mut self, interval: Duration, now: Instant) {
        self.phase = Phase::Open;
        self.interval = interval;
        self.opened_at = Some(Timestamp::now());
        self.until = now + interval;
    }
}

/// Status of one destination, as `GET /api/outbox/hosts` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct HostStatus {
    /// `host:port`.
    pub host: String,
    /// Closed, open or half open.
    pub state: BreakerState,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// When the breaker opened, while it is open or half open.
    pub opened_at: Option<Timestamp>,
    /// When the open interval ends (the next probe), while open or half open.
    pub retry_at: Option<Timestamp>,
    /// The current open interval (the first one while closed), in seconds.
    pub open_interval_secs: u64,
    /// What the last failed call said.
    pub last_error: Option<String>,
    /// Calls not started because the breaker was open (each postponement counts).
    pub skipped: u64,
}

struct Table {
    hosts: HashMap<String, Host>,
}

/// The breakers of every destination; cheap to clone (shared).
#[derive(Clone)]
pub struct Breakers {
    settings: BreakerSettings,
    table: Arc<Mutex<Table>>,
}

impl Breakers {
    /// Starts with every breaker closed.
    pub fn new(settings: BreakerSettings) -> Breakers {
        Breakers {
            settings,
            table: Arc::new(Mutex::new(Table {
                hosts: HashMap::new(),
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // A panic while holding the lock leaves plain data behind: keep using it.
        self.table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Returns whether a call to `host` may start at `now`, without changing anything.
    pub fn gate(&self, host: &str, now: Instant) -> Gate {
        self.lock()
            .hosts
            .get(host)
            .map_or(Gate::Go, |entry| entry.gate(now))
    }

    /// Lets a call to `host` start at `now` (as the probe when the breaker is half open),
    /// or says until when it must wait. The ticket records the call's result.
    pub fn admit(&self, host: &str, now: Instant) -> Result<Ticket, Instant> {
        let mut table = self.lock();
        if !table.hosts.contains_key(host) && table.hosts.len() >= MAX_HOSTS {
            evict(&mut table.hosts);
        }
        let settings = self.settings;
        let entry = table
            .hosts
            .entry(host.to_owned())
            .or_insert_with(|| Host::new(&settings, now));
        entry.used = now;
        let probe = match entry.gate(now) {
            Gate::Go => false,
            Gate::Blocked(until) => return Err(until),
            Gate::Probe => {
                entry.phase = Phase::Probing {
                    deadline: now + settings.probe,
                };
                tracing::info!(host, "breaker half open: probing");
                true
            }
        };
        Ok(Ticket {
            breakers: self.clone(),
            host: host.to_owned(),
            probe,
            recorded: false,
        })
    }

    /// Returns how long a probe can take: calls held while one is in flight are looked at
    /// again after this.
    pub fn probe_budget(&self) -> Duration {
        self.settings.probe
    }

    /// Counts `count` calls to `host` that were postponed because of its breaker.
    pub fn note_skipped(&self, host: &str, count: u64) {
        if let Some(entry) = self.lock().hosts.get_mut(host) {
            entry.skipped += count;
        }
    }

    fn record(&self, host: &str, probe: bool, health: Health, now: Instant) {
        let settings = self.settings;
        let mut table = self.lock();
        let Some(entry) = table.hosts.get_mut(host) else {
            return;
        };
        let probing = probe && matches!(entry.phase, Phase::Probing { .. });
        match health {
            Health::Up if probing => {
                tracing::info!(host, "breaker closed: the probe succeeded");
                *entry = Host {
                    skipped: entry.skipped,
                    ..Host::new(&settings, now)
                };
            }
            Health::Up => {
                if entry.phase == Phase::Closed {
                    entry.failures = 0;
                }
            }
            Health::Down(error) => {
                entry.failures = entry.failures.saturating_add(1);
                entry.last_error = Some(error);
                if probing {
                    let interval = (entry.interval * 2).min(settings.max_open);
                    entry.open(interval, now);
                    tracing::warn!(
                        host,
                        open_secs = interval.as_secs(),
                        "breaker open again: the probe failed"
                    );
                } else if entry.phase == Phase::Closed && entry.failures >= settings.failures {
                    entry.open(settings.open, now);
                    tracing::warn!(
                        host,
                        failures = entry.failures,
                        open_secs = settings.open.as_secs(),
                        "breaker open"
                    );
                }
                // Calls started before the breaker opened may fail later: they count as
                // failures but do not change the state.
            }
            Health::Unknown => {
                if probing {
                    entry.phase = Phase::Open;
                }
            }
        }
    }

    fn release(&self, host: &str) {
        if let Some(entry) = self.lock().hosts.get_mut(host) {
            if matches!(entry.phase, Phase::Probing { .. }) {
                // The probe never finished (its task was dropped): the next call probes.
                entry.phase = Phase::Open;
            }
        }
    }

    /// Returns the status of every tracked destination, by host.
    pub fn hosts(&self) -> Vec<HostStatus> {
        self.hosts_at(Instant::now())
    }

    fn hosts_at(&self, now: Instant) -> Vec<HostStatus> {
        let wall = Timestamp::now();
        let table = self.lock();
        let mut hosts: Vec<HostStatus> = table
            .hosts
            .iter()
            .map(|(host, entry)| {
                let open = entry.phase != Phase::Closed;
                HostStatus {
                    host: host.clone(),
                    state: entry.state(now),
                    consecutive_failures: entry.failures,
                    opened_at: entry.opened_at.filter(|_| open),
                    retry_at: open.then(|| at_wall(entry.until, now, wall)),
                    open_interval_secs: entry.interval.as_secs(),
                    last_error: entry.last_error.clone(),
                    skipped: entry.skipped,
                }
            })
            .collect();
        hosts.sort_by(|a, b| a.host.cmp(&b.host));
        hosts
    }

    /// Returns the Prometheus text of the breaker metrics: the state gauge and the count
    /// of postponed calls, one series per tracked destination.
    pub fn render_metrics(&self) -> String {
        let hosts = self.hosts();
        let mut text = String::new();
        let mut series =
            |name: &str, help: &str, kind: &str, value: &dyn Fn(&HostStatus) -> u64| {
                let _ = writeln!(text, "# HELP {name} {help}");
                let _ = writeln!(text, "# TYPE {name} {kind}");
                for host in &hosts {
                    let _ = writeln!(
                        text,
                        "{name}{{host=\"{}\"}} {}",
                        label(&host.host),
                        value(host)
                    );
                }
            };
        series(
            names::OUTBOUND_BREAKER_STATE,
            "Outbound circuit breaker state by destination: 0 closed, 1 open, 2 half open.",
            "gauge",
            &|host| u64::from(host.state.gauge()),
        );
        series(
            names::OUTBOUND_BREAKER_SKIPPED,
            "Outbound calls postponed because their destination's breaker was open.",
            "counter",
            &|host| host.skipped,
        );
        text
    }
}

/// Returns the wall-clock time of `instant`, given that `now` is `wall`.
pub fn at_wall(instant: Instant, now: Instant, wall: Timestamp) -> Timestamp {
    let ahead = instant.saturating_duration_since(now);
    let ahead = SignedDuration::try_from(ahead).unwrap_or(SignedDuration::MAX);
    wall.checked_add(ahead).unwrap_or(wall)
}

/// Forgets one destination: the least recently called closed one without failures, or
/// else the least recently called of all.
fn evict(hosts: &mut HashMap<String, Host>) {
    let healthy = hosts
        .iter()
        .filter(|(_, entry)| entry.phase == Phase::Closed && entry.failures == 0)
        .min_by_key(|(_, entry)| entry.used);
    let victim = healthy
        .or_else(|| hosts.iter().min_by_key(|(_, entry)| entry.used))
        .map(|(host, _)| host.clone());
    if let Some(host) = victim {
        hosts.remove(&host);
    }
}

/// Escapes a Prometheus label value.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Permission for one call; record its result with [`Ticket::record`]. Dropped
/// unrecorded, a probe ticket lets the next call probe.
pub struct Ticket {
    breakers: Breakers,
    host: String,
    probe: bool,
    recorded: bool,
}

impl Ticket {
    /// Returns whether this call is the half-open breaker's probe.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// Records what the call showed about its destination.
    pub fn record(mut self, health: Health, now: Instant) {
        self.recorded = true;
        self.breakers.record(&self.host, self.probe, health, now);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.probe && !self.recorded {
            self.breakers.release(&self.host);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "crm.example.com:443";

    fn breakers() -> Breakers {
        Breakers::new(BreakerSettings {
            failures: 3,
            open: Duration::from_secs(30),
            max_open: Duration::from_secs(100),
            probe: Duration::from_secs(16),
        })
    }

    fn fail(breakers: &Breakers, now: Instant) {
        breakers
            .admit(HOST, now)
            .expect("admitted")
            .record(Health::Down("timed out".into()), now);
    }

    fn status(breakers: &Breakers, now: Instant) -> HostStatus {
        breakers.hosts_at(now).remove(0)
    }

    #[test]
    fn consecutive_failures_open_the_breaker_and_a_success_resets_the_count() {
        let breakers = breakers();
        let t0 = Instant::now();
        fail(&breakers, t0);
        fail(&breakers, t0);
        breakers
            .admit(HOST, t0)
            .expect("closed")
            .record(Health::Up, t0);
        assert_eq!(status(&breakers, t0).consecutive_failures, 0);
        fail(&breakers, t0);
        fail(&breakers, t0);
        assert_eq!(breakers.gate(HOST, t0), Gate::Go);
        fail(&breakers, t0);
        assert_eq!(
            breakers.gate(HOST, t0),
            Gate::Blocked(t0 + Duration::from_secs(30))
        );
        let status = status(&breakers, t0);
        assert_eq!(status.state, BreakerState::Open);
        assert_eq!(status.consecutive_failures, 3);
        assert_eq!(status.last_error.as_deref(), Some("timed out"));
        assert!(status.opened_at.is_some() && status.retry_at.is_some());
        assert!(breakers.admit(HOST, t0 + Duration::from_secs(29)).is_err());
    }

    #[test]
    fn caller_errors_and_refusals_do_not_count_as_failures() {
        let breakers = breakers();
        let t0 = Instant::now();
        for _ in 0..10 {
            breakers
                .admit(HOST, t0)
                .expect("closed")
                .record(Health::Unknown, t0);
        }
        fail(&breakers, t0);
        fail(&breakers, t0);
        breakers
            .admit(HOST, t0)
            .expect("closed")
            .record(Health::Up, t0);
        fail(&breakers, t0);
        assert_eq!(breakers.gate(HOST, t0), Gate::Go);
    }

    #[test]
    fn one_probe_after_the_interval_and_failed_probes_double_it_up_to_the_cap() {
        let breakers = breakers();
        let mut now = Instant::now();
        for _ in 0..3 {
            fail(&breakers, now);
        }
        for expected in [60, 100, 100] {
            now += Duration::from_secs(status(&breakers, now).open_interval_secs);
            assert_eq!(breakers.gate(HOST, now), Gate::Probe);
            assert_eq!(status(&breakers, now).state, BreakerState::HalfOpen);
            let probe = breakers.admit(HOST, now).expect("the probe");
            assert!(probe.is_probe());
            assert!(
                matches!(breakers.admit(HOST, now), Err(until) if until >= now + MIN_HOLD),
                "only one probe"
            );
            probe.record(Health::Down("HTTP 503".into()), now);
            let status = status(&breakers, now);
            assert_eq!(status.state, BreakerState::Open);
            assert_eq!(status.open_interval_secs, expected);
            assert_eq!(
                breakers.gate(HOST, now),
                Gate::Blocked(now + Duration::from_secs(expected))
            );
        }
        now += Duration::from_secs(100);
        let probe = breakers.admit(HOST, now).expect("the probe");
        probe.record(Health::Up, now);
        let status = status(&breakers, now);
        assert_eq!(status.state, BreakerState::Closed);
        assert_eq!(status.consecutive_failures, 0);
        assert_eq!(status.open_interval_secs, 30, "the interval is reset");
        assert_eq!(status.retry_at, None);
        assert_eq!(breakers.gate(HOST, now), Gate::Go);
    }

    #[test]
    fn a_probe_that_learns_nothing_or_is_dropped_lets_the_next_call_probe() {
        let breakers = breakers();
        let mut now = Instant::now();
        for _ in 0..3 {
            fail(&breakers, now);
        }
        now += Duration::from_secs(30);
        breakers
            .admit(HOST, now)
            .expect("probe")
            .record(Health::Unknown, now);
        assert_eq!(breakers.gate(HOST, now), Gate::Probe);
        drop(breakers.admit(HOST, now).expect("probe"));
        assert_eq!(breakers.gate(HOST, now), Gate::Probe);
        let probe = breakers.admit(HOST, now).expect("probe");
        // A call admitted before the breaker opened ends late: it does not close it.
        breakers.record(HOST, false, Health::Up, now);
        assert_eq!(status(&breakers, now).state, BreakerState::HalfOpen);
        probe.record(Health::Up, now);
        assert_eq!(status(&breakers, now).state, BreakerState::Closed);
    }

    #[test]
    fn the_table_is_bounded_and_forgets_healthy_hosts_first() {
        let breakers = breakers();
        let now = Instant::now();
        for _ in 0..3 {
            fail(&breakers, now);
        }
        for n in 0..MAX_HOSTS + 10 {
            let later = now + Duration::from_millis(n as u64 + 1);
            breakers
                .admit(&format!("host{n}.example.com:443"), later)
                .expect("closed")
                .record(Health::Up, later);
        }
        let hosts = breakers.hosts();
        assert_eq!(hosts.len(), MAX_HOSTS);
        assert!(hosts.iter().any(|h| h.host == HOST), "the open one is kept");
        assert!(!hosts.iter().any(|h| h.host == "host0.example.com:443"));
        assert!(hosts.iter().any(|h| h.host == "host1033.example.com:443"));
    }

    #[test]
    fn metrics_have_one_series_per_host_and_escaped_labels() {
        let breakers = breakers();
        let now = Instant::now();
        for _ in 0..3 {
            fail(&breakers, now);
        }
        breakers.note_skipped(HOST, 7);
        breakers
            .admit("we\"ird:80", now)
            .expect("closed")
            .record(Health::Up, now);
        let text = breakers.render_metrics();
        assert!(
            text.contains("mailwarden_outbound_breaker_state{host=\"crm.example.com:443\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("mailwarden_outbound_breaker_state{host=\"we\\\"ird:80\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "mailwarden_outbound_breaker_skipped_total{host=\"crm.example.com:443\"} 7\n"
            ),
            "{text}"
        );
    }
}
