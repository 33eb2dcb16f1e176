//! Operations endpoints: liveness with a storage check, and Prometheus metrics.

use axum::Json;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::{ApiError, AppState};

/// `GET /healthz`: 200 when the store answers a flush, 503 otherwise.
pub async fn healthz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    state.store.flush().await?;
    Ok(Json(json!({ "status": "ok" })))
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
