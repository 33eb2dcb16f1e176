//! End-to-end tests: the real server on an ephemeral port, a temporary data directory, HTTP.
//! One test binary (one link step) with a module per area.

mod actions;
mod adapters;
mod backup;
mod browser;
mod conformance;
mod custom_providers;
mod fuzz;
mod hardening;
mod helpers;
mod ingest;
mod outbound;
mod pg;
mod pg_claims;
mod postgres;
mod rules;
mod signing;
mod sinks;
mod storage;
mod suppressions;
mod ui;
mod ui_events;
mod ui_ops;
mod ui_overview;
mod ui_rules;
mod ui_secrets;
mod ui_suppressions;
mod verification;
