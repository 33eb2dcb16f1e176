//! Logs and metrics: the tracing subscriber and the Prometheus recorder behind `/metrics`.
//!
//! Metric names are defined once, in [`names`]. Label values come only from bounded sets
//! (configured sources, providers, kinds, routes): nothing a client sends becomes a label.
//! The one exception is the outbound destination (`host:port` of a rule's URL), which
//! rules may build from event data: those series are rendered from the breaker table
//! ([`crate::actions::breaker`]), which holds at most a fixed number of hosts.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Names of every metric mailwarden records.
pub mod names {
    /// HTTP requests by route and status.
    pub const HTTP_REQUESTS: &str = "mailwarden_http_requests_total";
    /// HTTP request latency by route.
    pub const HTTP_REQUEST_SECONDS: &str = "mailwarden_http_request_duration_seconds";
    /// Events stored, by provider and kind.
    pub const EVENTS: &str = "mailwarden_events_total";
    /// Events not stored again because they already were, by source.
    pub const DUPLICATES: &str = "mailwarden_duplicates_total";
    /// Bodies and elements quarantined, by source.
    pub const QUARANTINED: &str = "mailwarden_quarantined_total";
    /// Events with an event name the adapter does not know, by source.
    pub const UNKNOWN_EVENTS: &str = "mailwarden_unknown_events_total";
    /// Requests refused by a source's checks, by source and reason.
    pub const AUTH_FAILURES: &str = "mailwarden_auth_failures_total";
    /// Requests refused before storing, by source and reason.
    pub const REJECTED: &str = "mailwarden_rejected_requests_total";
    /// fsyncs made by the group-commit writer.
    pub const STORE_FLUSHES: &str = "mailwarden_store_flushes_total";
    /// Time one group flush took.
    pub const STORE_FLUSH_SECONDS: &str = "mailwarden_store_flush_duration_seconds";
    /// Rule evaluations (one rule on one event).
    pub const RULE_RUNS: &str = "mailwarden_rule_runs_total";
    /// Rule evaluations that failed, by rule.
    pub const RULE_ERRORS: &str = "mailwarden_rule_errors_total";
    /// Events evaluated by the rules runner.
    pub const EVENTS_EVALUATED: &str = "mailwarden_events_evaluated_total";
    /// Events waiting for the rules.
    pub const PENDING_EVENTS: &str = "mailwarden_pending_events";
    /// Actions queued by rules, by type.
    pub const ACTIONS_QUEUED: &str = "mailwarden_actions_queued_total";
    /// Actions completed, by type.
    pub const ACTIONS_DONE: &str = "mailwarden_actions_done_total";
    /// Action attempts that failed and were rescheduled, by type.
    pub const ACTIONS_RETRIED: &str = "mailwarden_actions_retried_total";
    /// Actions dead-lettered, by type.
    pub const ACTIONS_DEAD: &str = "mailwarden_actions_dead_total";
    /// Actions waiting in the outbox.
    pub const OUTBOX_PENDING: &str = "mailwarden_outbox_pending";
    /// Alerts, by outcome (sent, logged, folded).
    pub const ALERTS: &str = "mailwarden_alerts_total";
    /// Requests sharing one group commit.
    pub const STORE_GROUP_REQUESTS: &str = "mailwarden_store_group_requests";
    /// Circuit breaker state by outbound destination (0 closed, 1 open, 2 half open);
    /// rendered from the breaker table, not through the recorder.
    pub const OUTBOUND_BREAKER_STATE: &str = "mailwarden_outbound_breaker_state";
    /// Outbound calls postponed because their destination's breaker was open, by
    /// destination; rendered from the breaker table.
    pub const OUTBOUND_BREAKER_SKIPPED: &str = "mailwarden_outbound_breaker_skipped_total";
    /// 1 while the store cannot write (a full disk, an I/O error), else 0.
    pub const STORE_DEGRADED: &str = "mailwarden_store_degraded";
    /// Ingest requests waiting for (or in) a group commit.
    pub const COMMIT_QUEUE: &str = "mailwarden_ingest_queue_requests";
    /// The bound on [`COMMIT_QUEUE`] (`ingest.max_queued_requests`).
    pub const COMMIT_QUEUE_LIMIT: &str = "mailwarden_ingest_queue_limit_requests";
    /// Bytes of webhook bodies being received or ingested.
    pub const IN_FLIGHT_BYTES: &str = "mailwarden_ingest_in_flight_bytes";
    /// The bound on [`IN_FLIGHT_BYTES`] (`ingest.max_in_flight_bytes`).
    pub const IN_FLIGHT_LIMIT: &str = "mailwarden_ingest_in_flight_limit_bytes";
    /// Webhook requests refused with 503 because a bound was reached, by `reason`
    /// (`queue_full`, `bytes_in_flight`).
    pub const OVERLOADED: &str = "mailwarden_ingest_overloaded_total";
    /// Open HTTP connections.
    pub const CONNECTIONS: &str = "mailwarden_http_connections";
    /// The bound on [`CONNECTIONS`] in effect (`server.max_connections`).
    pub const CONNECTION_LIMIT: &str = "mailwarden_http_connections_limit";
    /// Connections closed by the server, by `reason` (`header_timeout`, `body_timeout`,
    /// `idle_timeout`, `shutdown`).
    pub const CONNECTIONS_CLOSED: &str = "mailwarden_http_connections_closed_total";
}

/// Histogram buckets for latencies, in seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
/// Histogram buckets for group sizes.
const GROUP_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide metrics recorder (once) and returns the handle that renders
/// the Prometheus text.
pub fn metrics_handle() -> PrometheusHandle {
    PROMETHEUS
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()),
                    LATENCY_BUCKETS,
                )
                .and_then(|builder| {
                    builder.set_buckets_for_metric(
                        metrics_exporter_prometheus::Matcher::Full(
                            names::STORE_GROUP_REQUESTS.into(),
                        ),
                        GROUP_BUCKETS,
                    )
                })
                .expect("bucket lists are non-empty constants");
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder was installed first (a host program's); then
            // our handle renders nothing, which is better than refusing to start.
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
            }
            handle
        })
        .clone()
}

/// Installs the tracing subscriber: `RUST_LOG` filters (default `default_level`), `json`
/// format when `MAILWARDEN_LOG_FORMAT=json`.
pub fn init_tracing(default_level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let json = std::env::var("MAILWARDEN_LOG_FORMAT").is_ok_and(|format| format == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    // Already installed (tests start several apps in one process): keep the first.
    drop(result);
}
