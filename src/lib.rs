//! mailwarden: a self-hosted engine for e-mail delivery events.
//!
//! Providers post webhooks; [`ingest`] verifies them and normalizes every provider's format
//! into one [`event::Event`] model; [`store`] keeps them durably in sled (a 2xx answer
//! means on disk, retries never duplicate); [`rules`] runs user-written Rhai rules over
//! every stored event and queues the actions they ask for; [`api`] serves the HTTP surface; [`app`] wires
//! the parts together and runs them until shutdown.
//!
//! Module map:
//! - [`config`]: settings from an optional TOML file and the environment.
//! - [`event`]: the normalized event model, ids and addresses.
//! - [`ingest`]: body checks, provider adapters, dedup keys, the ingest pipeline.
//! - [`store`]: sled trees, group commit, queries.
//! - [`rules`]: the Rhai rules engine, its runner and rule test cases.
//! - [`actions`]: the outbox worker: suppressions, alert e-mail, outbound HTTP calls.
//! - [`api`]: axum routes, errors, admin authentication.
//! - [`ui`]: the web console under `/ui`, server-rendered over the same store.
//! - [`telemetry`]: tracing and Prometheus metrics.

pub mod actions;
pub mod api;
pub mod app;
pub mod config;
pub mod event;
pub mod ingest;
pub mod rules;
pub mod store;
pub mod telemetry;
pub mod ui;

pub use app::Application;
pub use config::Config;
