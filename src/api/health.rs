//! Operations endpoints: liveness with a storage check, and Prometheus metrics.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::{CONTENT_TYPE, RETRY_AFTER};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{ApiError, AppState};
use crate::store::StoreError;

/// `GET /healthz`: 200 `ok` when the store answers a flush; 503 `degraded` with the
/// reason when it cannot write (a full disk: the service reopens the store by itself
/// once there is room again), 503 `unavailable` when it does not answer.
pub async fn healthz(State(state): State<AppState>) -> Response {
    let degraded = |reason: String| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(RETRY_AFTER, "5")],
            Json(json!({ "status": "degraded", "reason": reason })),
        )
            .into_response()
    };
    if let Some(reason) = state.store.fault() {
        return degraded(reason);
    }
    match state.store.flush().await {
        Ok(()) => Json(json!({ "status": "ok" })).into_response(),
        Err(StoreError::Degraded(reason)) => degraded(reason),
        Err(error) => ApiError::from(error).into_response(),
    }
}

/// `GET /metrics`: Prometheus text format: the recorder's metrics, then the outbound
/// breakers (one series per tracked destination, see [`crate::actions::breaker`]).
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut text = state.metrics.render();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&state.breakers.render_metrics());
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}
