//! The HTTP surface: webhooks in, read API and operations endpoints out.
//!
//! - `POST /webhooks/{source}`: provider webhooks ([`webhooks`]), verified per source.
//! - `/api/...`: the admin API ([`events`]), behind the admin token when one is set.
//! - `/ui/...`: the web console ([`crate::ui`]), behind a login when an admin token is set.
//! - `/healthz`, `/metrics`: operations ([`health`]), unauthenticated.
//!
//! Every error is JSON ([`error::ApiError`]), including unknown routes and bad query
//! strings.

pub mod actions;
pub mod backup;
pub mod error;
pub mod events;
pub mod health;
pub mod rules;
pub mod serve;
pub mod sources;
pub mod storage;
pub mod suppressions;
pub mod webhooks;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::de::DeserializeOwned;

use crate::actions::breaker::Breakers;
use crate::config::Config;
use crate::ingest::Ingestor;
use crate::ingest::verify::Token;
use crate::ingest::verify::sns::Certificates;
use crate::rules::runner::RulesState;
use crate::store::Store;
use crate::telemetry::names;
pub use error::ApiError;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// Turns bodies into stored events.
    pub ingestor: Ingestor,
    /// The store, for reads.
    pub store: Store,
    /// Rules in force and their counters.
    pub rules: Arc<RulesState>,
    /// Settings in effect.
    pub config: Arc<Config>,
    /// Token for `/api/...`, if any.
    pub admin_token: Option<Token>,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// SNS signing certificates and the client that confirms subscriptions.
    pub certificates: Arc<Certificates>,
    /// Circuit breakers of outbound destinations, for `/api/outbox/hosts` and `/metrics`.
    pub breakers: Breakers,
    /// The bound on webhook body bytes in flight.
    pub body_budget: Arc<webhooks::BodyBudget>,
    /// Console logins.
    pub sessions: Arc<crate::ui::Sessions>,
}

/// Builds the router with every route and middleware.
pub fn router(state: AppState) -> Router {
    let admin = Router::new()
        .route("/events", get(events::list))
        .route("/events/{id}", get(events::one))
        .route("/quarantine", get(events::quarantine))
        .route("/rules", get(rules::list))
        .route("/sources", get(sources::list))
        .route("/storage", get(storage::summary))
        .route("/backup", get(backup::download))
        .route("/outbox", get(actions::outbox))
        .route("/outbox/hosts", get(actions::hosts))
        .route("/outbox/{id}/retry", post(actions::retry))
        .route("/alerts", get(actions::alerts))
        .route("/replay", post(rules::replay))
        .route("/suppressions", get(suppressions::list))
        .route("/suppressions/check", post(suppressions::check))
        .route("/suppressions/export", get(suppressions::export))
        .route("/suppressions/import", post(suppressions::import))
        .route(
            "/suppressions/{address}",
            get(suppressions::one)
                .put(suppressions::put)
                .delete(suppressions::remove),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), require_admin));
    Router::new()
        .route(
            "/webhooks/{source}",
            post(webhooks::receive).head(webhooks::probe),
        )
        .nest("/api", admin)
        .nest(crate::ui::PREFIX, crate::ui::router(state.clone()))
        .route("/healthz", get(health::healthz))
        .route("/metrics", get(health::metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(record_request))
        .with_state(state)
}

/// Runs store work off the async runtime.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| crate::store::StoreError::Commit(error.to_string()))?
        .map_err(ApiError::from)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method",
    )
}

/// Refuses admin requests without the admin token (when one is configured).
async fn require_admin(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if let Some(token) = &state.admin_token {
        if !token.matches_bearer(request.headers()) {
            return ApiError::unauthorized(
                "this endpoint needs `Authorization: Bearer <admin token>`",
            )
            .into_response();
        }
    }
    next.run(request).await
}

/// Counts requests and their latency by route template (never by raw path, which would
/// let clients create unbounded label values).
async fn record_request(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(names::HTTP_REQUESTS, "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!(names::HTTP_REQUEST_SECONDS, "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// `Query` whose rejection is a JSON 400 like every other error.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|query| ApiQuery(query.0))
            .map_err(|rejection| ApiError::bad_request("bad_query", rejection.body_text()))
    }
}
