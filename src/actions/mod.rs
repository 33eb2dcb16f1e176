//! Carrying out what rules asked for: the outbox worker.
//!
//! The worker polls the outbox for due actions and runs each at most once at a time:
//! suppressions are applied to the store, alerts go through [`alerts`] (throttled, SMTP),
//! HTTP calls through [`http`] (guarded, signed, retried on the configured schedule).
//! An action leaves the outbox only after it succeeded or was dead-lettered, so a crash
//! re-runs it after restart: at least once, never lost.
//!
//! Calls to a destination whose circuit breaker is open ([`breaker`]) are not started:
//! the worker moves their `next_attempt_at` to when the breaker lets a probe through,
//! without counting an attempt, so a dead receiver neither holds tasks nor fills the
//! batch of due actions that alerts and other hosts' calls are read from.

pub mod alerts;
pub mod breaker;
pub mod http;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::Config;
use crate::event::EventId;
use crate::rules::{Action, QueuedAction};
use crate::store::outbox::OutboxStatus;
use crate::store::suppressions::SuppressRequest;
use crate::store::{Store, StoreError};
use crate::telemetry::names;
use alerts::{AlertRecord, Mailer, SendError, Throttle};
use http::{CallOutcome, Caller};

/// How often the worker looks for due actions.
const POLL: Duration = Duration::from_millis(200);
/// Most actions started per poll.
const BATCH: usize = 256;
/// Actions running at once beyond which no further HTTP call starts.
const MAX_RUNNING_CALLS: usize = 1_024;
/// How often the outbox gauge is refreshed.
const GAUGE_EVERY: Duration = Duration::from_secs(10);
/// How often expired suppressions are purged.
const PURGE_EVERY: Duration = Duration::from_secs(3_600);

/// Everything needed to run actions.
pub struct Executor {
    store: Store,
    mailer: Mailer,
    caller: Caller,
    schedule: Vec<u64>,
    public_url: Option<String>,
    in_flight: Mutex<HashSet<EventId>>,
}

impl Executor {
    /// Builds the mailer and HTTP client from the settings.
    pub fn new(store: Store, config: &Config) -> anyhow::Result<Executor> {
        Ok(Executor {
            store,
            mailer: Mailer::new(&config.alerts)?,
            caller: Caller::new(&config.outbound)?,
            schedule: config.outbound.retry_schedule_secs.clone(),
            public_url: config.public_url.clone(),
            in_flight: Mutex::new(HashSet::new()),
        })
    }

    /// The circuit breakers of outbound destinations (shared with the API).
    pub fn breakers(&self) -> breaker::Breakers {
        self.caller.breakers().clone()
    }

    /// Runs one action to its next state.
    async fn run(&self, mut action: QueuedAction) -> Result<(), StoreError> {
        let id = action.id.expect("stored actions have ids");
        let kind = action.action.kind();
        let now = Timestamp::now();
        let result = match action.action.clone() {
            Action::Suppress {
                address,
                reason,
                ttl_seconds,
            } => {
                let source = match action.event_id {
                    Some(event) => self.store.event(event)?.map(|e| e.source),
                    None => None,
                };
                let request = SuppressRequest {
                    address,
                    reason,
                    source,
                    event_id: action.event_id,
                    rule: action.rule.clone(),
                    expires_at: ttl_seconds.map(|ttl| now + SignedDuration::from_secs(ttl)),
                };
                self.store.suppress(&request, now)?;
                Step::Done
            }
            Action::Unsuppress { address, reason } => {
                self.store
                    .unsuppress(&address, &action.rule, &reason, now)?;
                Step::Done
            }
            Action::Alert {
                to,
                subject,
                body,
                key,
                once_per_seconds,
            } => {
                self.alert(
                    &mut action,
                    &to,
                    &subject,
                    &body,
                    key.as_deref(),
                    once_per_seconds,
                )
                .await?
            }
            Action::HttpPost { url, body, headers } => {
                let message_id = http::message_id(id, action.event_id, &action.rule, &url, &body);
                match self.caller.post(&message_id, &url, &body, &headers).await {
                    CallOutcome::Done(_) => Step::Done,
                    CallOutcome::Retry { error, retry_after } => Step::Retry(error, retry_after),
                    CallOutcome::Dead(error) => Step::Dead(error),
                    CallOutcome::Held(until) => {
                        if let Some(host) = http::destination(&url) {
                            self.caller.breakers().note_skipped(&host, 1);
                        }
                        Step::Postpone(until)
                    }
                }
            }
        };
        match result {
            Step::Done => {
                self.store.finish_action(id)?;
                metrics::counter!(names::ACTIONS_DONE, "type" => kind).increment(1);
            }
            Step::Retry(error, retry_after) => {
                action.attempts += 1;
                action.last_error = Some(error.clone());
                match self.delay(action.attempts, retry_after) {
                    Some(delay) => {
                        action.next_attempt_at = Some(now + delay);
                        tracing::warn!(action = %id, kind, attempts = action.attempts, %error, "action failed; will retry");
                        metrics::counter!(names::ACTIONS_RETRIED, "type" => kind).increment(1);
                        self.store.update_action(&action)?;
                    }
                    None => {
                        let why = format!("gave up after {} attempts: {error}", action.attempts);
                        self.dead(&mut action, why)?;
                    }
                }
            }
            Step::Dead(error) => {
                action.attempts += 1;
                self.dead(&mut action, error)?;
            }
            Step::Postpone(until) => {
                self.store.postpone_actions(&[(id, until)])?;
            }
        }
        Ok(())
    }

    /// Splits due actions into those to start now and those held by their destination's
    /// breaker (with the time to look at them again). Of the calls to a half-open host
    /// only the first is started: it will be the probe.
    fn gate(&self, due: Vec<QueuedAction>) -> (Vec<QueuedAction>, Vec<(EventId, Timestamp)>) {
        let breakers = self.caller.breakers();
        let now = std::time::Instant::now();
        let wall = Timestamp::now();
        let mut probing = HashSet::new();
        let mut start = Vec::new();
        let mut held = Vec::new();
        for action in due {
            let Action::HttpPost { url, .. } = &action.action else {
                start.push(action);
                continue;
            };
            let Some(host) = http::destination(url) else {
                start.push(action);
                continue;
            };
            let until = match breakers.gate(&host, now) {
                breaker::Gate::Go => None,
                breaker::Gate::Probe if probing.insert(host.clone()) => None,
                // The probe ends within its budget; look again then.
                breaker::Gate::Probe => Some(now + breakers.probe_budget()),
                breaker::Gate::Blocked(until) => Some(until),
            };
            match (until, action.id) {
                (Some(until), Some(id)) => {
                    breakers.note_skipped(&host, 1);
                    held.push((id, breaker::at_wall(until, now, wall)));
                }
                _ => start.push(action),
            }
        }
        (start, held)
    }

    fn dead(&self, action: &mut QueuedAction, error: String) -> Result<(), StoreError> {
        tracing::error!(action = ?action.id, kind = action.action.kind(), %error, "action dead-lettered");
        metrics::counter!(names::ACTIONS_DEAD, "type" => action.action.kind()).increment(1);
        action.status = "dead".to_owned();
        action.last_error = Some(error);
        action.next_attempt_at = None;
        self.store.move_action(action, OutboxStatus::Dead)?;
        Ok(())
    }

    /// Delay before attempt `attempts + 1`, or `None` when the schedule is exhausted.
    fn delay(&self, attempts: u32, retry_after: Option<Duration>) -> Option<SignedDuration> {
        let base = *self.schedule.get(attempts as usize)?;
        // ±20% jitter so that many failures do not retry in lockstep.
        let jittered = base as f64 * (0.8 + 0.4 * fastrand::f64());
        let seconds = jittered.max(retry_after.map_or(0.0, |d| d.as_secs_f64()));
        Some(SignedDuration::from_secs_f64(seconds))
    }

    async fn alert(
        &self,
        action: &mut QueuedAction,
        to: &[String],
        subject: &str,
        body: &str,
        key: Option<&str>,
        once_per: Option<i64>,
    ) -> Result<Step, StoreError> {
        let now = Timestamp::now();
        let recipients = self.mailer.recipients(to);
        if let (Some(key), Some(once_per), false) = (key, once_per, action.throttle_checked) {
            let decision = alerts::throttle(
                &self.store,
                action.id,
                key,
                once_per,
                subject,
                &recipients,
                &action.rule,
                now,
            )?;
            if decision == Throttle::Folded {
                metrics::counter!(names::ALERTS, "outcome" => "folded").increment(1);
                self.log_alert(action, "folded", &recipients, subject, body)?;
                return Ok(Step::Done);
            }
            action.throttle_checked = true;
            self.store.update_action(action)?;
        }
        let full_body = self.alert_body(action, body)?;
        if !self.mailer.enabled() {
            tracing::warn!(rule = %action.rule, subject, "alert (no SMTP configured; kept in /api/alerts)");
            metrics::counter!(names::ALERTS, "outcome" => "logged").increment(1);
            self.log_alert(action, "logged", &recipients, subject, &full_body)?;
            return Ok(Step::Done);
        }
        match self.mailer.send(&recipients, subject, &full_body).await {
            Ok(()) => {
                metrics::counter!(names::ALERTS, "outcome" => "sent").increment(1);
                self.log_alert(action, "sent", &recipients, subject, &full_body)?;
                Ok(Step::Done)
            }
            Err(SendError::Temporary(error)) => Ok(Step::Retry(format!("SMTP: {error}"), None)),
            Err(SendError::Permanent(error)) => Ok(Step::Dead(format!("SMTP: {error}"))),
        }
    }

    fn log_alert(
        &self,
        action: &QueuedAction,
        status: &'static str,
        to: &[String],
        subject: &str,
        body: &str,
    ) -> Result<(), StoreError> {
        self.store.log_alert(&AlertRecord {
            at: Timestamp::now(),
            status,
            rule: action.rule.clone(),
            event_id: action.event_id,
            to: to.to_vec(),
            subject: format!("{} {subject}", alerts::SUBJECT_PREFIX),
            body: body.to_owned(),
        })?;
        Ok(())
    }

    /// The rule's text, then the rule name, the event's key fields and a link to it.
    fn alert_body(&self, action: &QueuedAction, body: &str) -> Result<String, StoreError> {
        let mut text = format!("{body}\n\n-- \nRule: {}\n", action.rule);
        if let Some(id) = action.event_id {
            if let Some(event) = self.store.event(id)? {
                text.push_str(&format!(
                    "Event: {id}\nKind: {}\nRecipient: {}\nSource: {} ({})\n",
                    event.kind.as_str(),
                    event.recipient.as_str(),
                    event.source,
                    event.provider
                ));
                if let Some(at) = event.occurred_at {
                    text.push_str(&format!("Occurred at: {at}\n"));
                }
                if let Some(response) = &event.smtp_response {
                    text.push_str(&format!("SMTP response: {response}\n"));
                }
            }
            if let Some(url) = &self.public_url {
                text.push_str(&format!(
                    "Details: {}/api/events/{id}\n",
                    url.trim_end_matches('/')
                ));
            }
        }
        Ok(text)
    }

    /// Queues digests for throttle windows that ended.
    fn queue_digests(&self) -> Result<(), StoreError> {
        let digests = alerts::close_windows(&self.store, Timestamp::now())?;
        if digests.is_empty() {
            return Ok(());
        }
        let now = Timestamp::now();
        let queued: Vec<Vec<u8>> = digests
            .into_iter()
            .map(|digest| {
                let action = Action::Alert {
                    to: digest.to,
                    subject: digest.subject,
                    body: digest.body,
                    key: None,
                    once_per_seconds: None,
                };
                let queued = QueuedAction::new(None, &digest.rule, action, now);
                serde_json::to_vec(&queued).expect("action serializes")
            })
            .collect();
        self.store.queue_actions(&queued)?;
        Ok(())
    }
}

enum Step {
    Done,
    Retry(String, Option<Duration>),
    Dead(String),
    /// Not attempted (the breaker is open): look again at this time, attempts unchanged.
    Postpone(Timestamp),
}

/// The running worker.
pub struct Worker {
    stop: watch::Sender<(bool, Duration)>,
    task: tokio::task::JoinHandle<()>,
}

impl Worker {
    /// Starts polling the outbox.
    pub fn start(executor: Arc<Executor>) -> Worker {
        let (stop, stopped) = watch::channel((false, Duration::ZERO));
        let task = tokio::spawn(work(executor, stopped));
        Worker { stop, task }
    }

    /// Stops taking new actions and waits up to `grace` for those in flight; unfinished
    /// ones stay in the outbox, due, for the next start (with their idempotency keys).
    pub async fn stop(self, grace: Duration) {
        let _ = self.stop.send((true, grace));
        if let Err(error) = self.task.await {
            tracing::error!(%error, "action worker failed");
        }
    }
}

async fn work(executor: Arc<Executor>, mut stopped: watch::Receiver<(bool, Duration)>) {
    let mut running = JoinSet::new();
    let mut last_purge: Option<std::time::Instant> = None;
    let mut last_gauge: Option<std::time::Instant> = None;
    loop {
        if last_gauge.is_none_or(|at| at.elapsed() >= GAUGE_EVERY) {
            // Counting the outbox walks it: not on every poll.
            last_gauge = Some(std::time::Instant::now());
            let store = executor.store.clone();
            if let Ok(pending) = tokio::task::spawn_blocking(move || store.pending_actions()).await
            {
                metrics::gauge!(names::OUTBOX_PENDING).set(pending as f64);
            }
        }
        if last_purge.is_none_or(|at| at.elapsed() >= PURGE_EVERY) {
            last_purge = Some(std::time::Instant::now());
            let store = executor.store.clone();
            // Expired entries already stop counting; this only reclaims their space.
            running.spawn(async move {
                match tokio::task::spawn_blocking(move || {
                    store.purge_expired_suppressions(Timestamp::now())
                })
                .await
                {
                    Ok(Ok(0)) => {}
                    Ok(Ok(purged)) => tracing::info!(purged, "expired suppressions purged"),
                    Ok(Err(error)) => {
                        tracing::error!(%error, "purging expired suppressions failed")
                    }
                    Err(error) => tracing::error!(%error, "purge task failed"),
                }
            });
        }
        let due = {
            let executor = executor.clone();
            tokio::task::spawn_blocking(move || -> Result<Vec<QueuedAction>, StoreError> {
                executor.queue_digests()?;
                let running = executor.in_flight.lock().expect("in-flight lock").clone();
                executor
                    .store
                    .due_actions(Timestamp::now(), BATCH, |id| running.contains(&id))
            })
            .await
        };
        match due {
            Ok(Ok(actions)) => {
                let actions: Vec<QueuedAction> = {
                    let in_flight = executor.in_flight.lock().expect("in-flight lock");
                    actions
                        .into_iter()
                        .filter(|action| action.id.is_some_and(|id| !in_flight.contains(&id)))
                        .collect()
                };
                let (actions, held) = executor.gate(actions);
                if !held.is_empty() {
                    // Written before the next poll, so held calls are not read again.
                    let store = executor.store.clone();
                    match tokio::task::spawn_blocking(move || store.postpone_actions(&held)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(error)) => tracing::error!(%error, "cannot postpone held calls"),
                        Err(error) => tracing::error!(%error, "postponing held calls failed"),
                    }
                }
                for action in actions {
                    let id = action.id.expect("stored actions have ids");
                    // Calls waiting for a slow host's concurrency slots are tasks too: past
                    // the bound only alerts and suppressions start, so those never wait
                    // behind them and the tasks stay bounded.
                    let busy = executor.in_flight.lock().expect("in-flight lock").len();
                    if busy >= MAX_RUNNING_CALLS && matches!(action.action, Action::HttpPost { .. })
                    {
                        continue;
                    }
                    if !executor
                        .in_flight
                        .lock()
                        .expect("in-flight lock")
                        .insert(id)
                    {
                        continue;
                    }
                    let executor = executor.clone();
                    running.spawn(async move {
                        if let Err(error) = executor.run(action).await {
                            tracing::error!(action = %id, %error, "action could not be recorded; it will run again");
                        }
                        executor.in_flight.lock().expect("in-flight lock").remove(&id);
                    });
                }
            }
            Ok(Err(error)) => tracing::error!(%error, "cannot read the outbox"),
            Err(error) => tracing::error!(%error, "outbox poll failed"),
        }
        while running.try_join_next().is_some() {}
        tokio::select! {
            _ = stopped.changed() => break,
            () = tokio::time::sleep(POLL) => {}
        }
    }
    let grace = stopped.borrow().1;
    let finished = tokio::time::timeout(grace, async {
        while running.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        tracing::warn!(
            left = running.len(),
            "grace period over, actions still running return to the outbox"
        );
    }
    running.abort_all();
}
