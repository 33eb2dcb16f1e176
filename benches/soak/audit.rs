//! The soak's count, once the rules and the outbox have drained: what the server stored
//! (read through its API) and what the CRM receiver and the SMTP sink got, against the
//! ledger of acknowledged events.
//!
//! Delivery of actions is at least once: an action that ran just before a kill and was
//! not yet marked done runs again after the restart, with the same idempotency key (an
//! HTTP call's `idempotency-key`, derived from event, rule, URL and body; for an alert
//! mail, the event it names). A receiver that deduplicates by key sees one delivery, so
//! those are counted apart ("redelivered, same key"). Two different keys for one event's
//! action are a real double: the event was stored twice, or its action was made twice.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

use serde_json::{Value, json};

use crate::sinks::{Mail, Recorded};
use crate::traffic::{self, Kind, Ledger};

/// The rule the soak adds: one alert per hard bounce, without a throttle.
pub const ALERT_RULE: &str = "soak_alert";
/// Shipped rules whose alerts are throttled to one per key per hour.
const THROTTLED_RULES: [&str; 2] = ["complaint", "reputation"];
/// Addresses per `POST /api/suppressions/check`.
const CHECK_CHUNK: usize = 10_000;

/// Deliveries of one kind of action to one receiver, per event.
#[derive(Debug, Default, serde::Serialize)]
pub struct Deliveries {
    /// Events that should have caused one.
    pub expected: u64,
    /// Expected and never arrived.
    pub missed: u64,
    /// Arrivals beyond the first with a key already seen (at-least-once, harmless).
    pub redelivered_same_key: u64,
    /// Events whose action arrived under more than one key (a real double).
    pub doubled_different_keys: u64,
    /// Arrivals for events that were never acknowledged, or that name no event.
    pub unexpected: u64,
    /// Every arrival.
    pub received: u64,
}

impl Deliveries {
    /// Counts `arrivals` (recipient, key) against the `expected` recipients.
    fn count(
        expected: &HashSet<String>,
        arrivals: impl IntoIterator<Item = (String, String)>,
    ) -> Deliveries {
        let mut keys: HashMap<String, (u64, HashSet<String>)> = HashMap::new();
        let mut counted = Deliveries {
            expected: expected.len() as u64,
            ..Deliveries::default()
        };
        for (recipient, key) in arrivals {
            counted.received += 1;
            let entry = keys.entry(recipient).or_default();
            entry.0 += 1;
            entry.1.insert(key);
        }
        for (recipient, (arrivals, distinct)) in &keys {
            if !expected.contains(recipient) {
                counted.unexpected += arrivals;
                continue;
            }
            counted.redelivered_same_key += arrivals - distinct.len() as u64;
            if distinct.len() > 1 {
                counted.doubled_different_keys += 1;
            }
        }
        counted.missed = expected.iter().filter(|r| !keys.contains_key(*r)).count() as u64;
        counted
    }

    fn failures(&self) -> u64 {
        self.missed + self.doubled_different_keys
    }
}

/// The alerts of a throttled rule: at most one mail per hour (one window of `once_per`).
#[derive(Debug, Default, serde::Serialize)]
pub struct Throttled {
    /// Windows the run could open (hours started), when the rule had cause to alert.
    pub expected: u64,
    pub mails: u64,
    /// Distinct events the mails name (a redelivery names the same one).
    pub distinct: u64,
}

impl Throttled {
    fn missed(&self) -> u64 {
        u64::from(self.expected > 0 && self.distinct == 0)
    }

    fn doubled(&self) -> u64 {
        self.distinct.saturating_sub(self.expected)
    }
}

/// Everything the soak counts.
#[derive(Debug, Default, serde::Serialize)]
pub struct Counts {
    pub events_sent: u64,
    pub events_acked: u64,
    pub hard_bounces_acked: u64,
    pub complaints_acked: u64,
    pub events_stored: u64,
    /// Acknowledged and not stored.
    pub events_lost: u64,
    /// Message ids stored more than once, and the extra copies.
    pub events_duplicated: u64,
    pub duplicate_copies: u64,
    /// Stored but never acknowledged (a request given up; none expected).
    pub stored_not_acked: u64,
    /// Stored events that are not the soak's.
    pub foreign_events: u64,
    /// Late retries of kept bodies after the last kill: requests, and events they stored.
    pub late_retries: u64,
    pub late_retries_stored: u64,
    /// Hard bounces and complaints acknowledged whose address is not suppressed.
    pub suppressions_missing: u64,
    pub crm: Deliveries,
    pub alerts: Deliveries,
    pub throttled: HashMap<String, Throttled>,
    /// Alert mails naming no event (digests) or no rule the soak knows.
    pub other_mails: u64,
    pub outbox_pending: u64,
    pub outbox_dead: u64,
    /// `GET /api/alerts` by status.
    pub alert_log: HashMap<String, u64>,
}

impl Counts {
    /// Losses and real doubles: what makes the soak fail.
    pub fn failures(&self, ledger: &Ledger) -> u64 {
        self.events_lost
            + self.events_duplicated
            + self.late_retries_stored
            + ledger.deliberate_stored
            + self.suppressions_missing
            + self.crm.failures()
            + self.alerts.failures()
            + self
                .throttled
                .values()
                .map(|t| t.missed() + t.doubled())
                .sum::<u64>()
            + self.outbox_pending
            + self.outbox_dead
            + ledger.rejected
            + ledger.given_up
    }
}

/// What [`count`] reads.
pub struct Sources<'a> {
    pub client: &'a reqwest::Client,
    pub address: SocketAddr,
    pub ledger: &'a Ledger,
    pub events_sent: u64,
    pub crm: Vec<Recorded>,
    pub mails: Vec<Mail>,
    pub run_secs: f64,
}

/// Counts losses and doubles; the late retries are sent first.
pub async fn count(sources: Sources<'_>) -> Counts {
    let Sources {
        client,
        address,
        ledger,
        ..
    } = sources;
    let mut counts = Counts {
        events_sent: sources.events_sent,
        events_acked: ledger.acked.len() as u64,
        ..Counts::default()
    };
    let acked: HashMap<u64, Kind> = ledger.acked.iter().copied().collect();
    counts.hard_bounces_acked = acked.values().filter(|k| **k == Kind::HardBounce).count() as u64;
    counts.complaints_acked = acked.values().filter(|k| **k == Kind::Complaint).count() as u64;

    // Events, newest first, page by page.
    let mut stored: HashMap<u64, u64> = HashMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("http://{address}/api/events?limit=1000");
        if let Some(cursor) = &cursor {
            url.push_str(&format!("&cursor={cursor}"));
        }
        let page = get_json(client, &url).await;
        for event in page["events"].as_array().expect("events array") {
            counts.events_stored += 1;
            match event["message_id"]
                .as_str()
                .and_then(traffic::parse_message_id)
            {
                Some(n) => *stored.entry(n).or_default() += 1,
                None => counts.foreign_events += 1,
            }
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    counts.events_lost = acked.keys().filter(|n| !stored.contains_key(n)).count() as u64;
    for (n, copies) in &stored {
        if *copies > 1 {
            counts.events_duplicated += 1;
            counts.duplicate_copies += copies - 1;
        }
        if !acked.contains_key(n) {
            counts.stored_not_acked += 1;
        }
    }

    // Suppressions of every acknowledged hard bounce and complaint.
    let should_be_suppressed: Vec<String> = acked
        .iter()
        .filter(|(_, kind)| **kind != Kind::Delivered)
        .map(|(n, kind)| traffic::recipient(*n, *kind))
        .collect();
    for chunk in should_be_suppressed.chunks(CHECK_CHUNK) {
        let answer: Value = client
            .post(format!("http://{address}/api/suppressions/check"))
            .json(&json!({ "addresses": chunk }))
            .send()
            .await
            .expect("suppression check")
            .json()
            .await
            .expect("suppression check answer");
        counts.suppressions_missing += answer["results"]
            .as_array()
            .expect("results")
            .iter()
            .filter(|r| r["suppressed"] != Value::Bool(true))
            .count() as u64;
    }

    // CRM calls: crm_forward.rhai posts every bounce and complaint.
    let crm_expected: HashSet<String> = should_be_suppressed.iter().cloned().collect();
    counts.crm = Deliveries::count(
        &crm_expected,
        sources.crm.iter().map(|request| {
            let body = request.json();
            (
                body["recipient"].as_str().unwrap_or_default().to_owned(),
                request.header("idempotency-key").unwrap_or_default(),
            )
        }),
    );

    // Alert mails: the soak's rule per hard bounce, the shipped throttled ones.
    let alert_expected: HashSet<String> = acked
        .iter()
        .filter(|(_, kind)| **kind == Kind::HardBounce)
        .map(|(n, kind)| traffic::recipient(*n, *kind))
        .collect();
    let mut per_bounce = Vec::new();
    let mut throttled: HashMap<&str, (u64, HashSet<String>)> = HashMap::new();
    for mail in &sources.mails {
        let body = mail.body();
        let field = |name: &str| {
            body.lines()
                .find_map(|line| line.strip_prefix(name))
                .map(|value| value.trim().to_owned())
        };
        match (field("Rule: "), field("Event: ")) {
            (Some(rule), Some(event)) if rule == ALERT_RULE => {
                per_bounce.push((field("Recipient: ").unwrap_or_default(), event));
            }
            (Some(rule), Some(event)) if THROTTLED_RULES.contains(&rule.as_str()) => {
                let rule = THROTTLED_RULES
                    .iter()
                    .find(|r| **r == rule)
                    .expect("listed");
                let entry = throttled.entry(rule).or_default();
                entry.0 += 1;
                entry.1.insert(event);
            }
            _ => counts.other_mails += 1,
        }
    }
    counts.alerts = Deliveries::count(&alert_expected, per_bounce);
    let hours = (sources.run_secs / 3_600.0).ceil().max(1.0) as u64;
    for rule in THROTTLED_RULES {
        // complaint.rhai alerts on every complaint; reputation.rhai once 1 000 events
        // are in the last 24 h with more than 5% bounces (the mix has 10%).
        let has_cause = match rule {
            "complaint" => counts.complaints_acked > 0,
            _ => counts.events_acked >= 1_000,
        };
        let (mails, distinct) = throttled.remove(rule).unwrap_or_default();
        counts.throttled.insert(
            rule.to_owned(),
            Throttled {
                expected: if has_cause { hours } else { 0 },
                mails,
                distinct: distinct.len() as u64,
            },
        );
    }

    counts.outbox_pending = outbox_len(client, address, "pending").await;
    counts.outbox_dead = outbox_len(client, address, "dead").await;
    let log = get_json(client, &format!("http://{address}/api/alerts?limit=1000")).await;
    for alert in log["alerts"].as_array().into_iter().flatten() {
        let status = alert["status"].as_str().unwrap_or("?").to_owned();
        *counts.alert_log.entry(status).or_default() += 1;
    }
    counts
}

/// Sends the kept bodies again; returns the requests and the events they stored.
pub async fn late_retries(traffic: &traffic::Traffic, ledger: &mut Ledger) -> (u64, u64) {
    let kept = std::mem::take(&mut ledger.kept);
    let mut stored = 0;
    for (body, _) in &kept {
        if let Some(answer) = traffic::deliver(traffic, body, ledger).await {
            stored += answer.accepted;
        }
    }
    (kept.len() as u64, stored)
}

async fn outbox_len(client: &reqwest::Client, address: SocketAddr, status: &str) -> u64 {
    let mut total = 0;
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("http://{address}/api/outbox?status={status}&limit=1000");
        if let Some(cursor) = &cursor {
            url.push_str(&format!("&cursor={cursor}"));
        }
        let page = get_json(client, &url).await;
        total += page["actions"].as_array().map_or(0, Vec::len) as u64;
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return total,
        }
    }
}

pub async fn get_json(client: &reqwest::Client, url: &str) -> Value {
    client
        .get(url)
        .send()
        .await
        .unwrap_or_else(|error| panic!("GET {url}: {error}"))
        .json()
        .await
        .unwrap_or_else(|error| panic!("GET {url}: {error}"))
}
