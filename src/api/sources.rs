//! `GET /api/sources`: every webhook source with its provider, the URL to give the
//! provider, how requests are verified and when one last arrived. Secrets never appear.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::AppState;

/// Lists the sources.
pub async fn list(State(state): State<AppState>) -> Json<Value> {
    Json(json!({ "sources": state.ingestor.sources().describe(&base_url(&state)) }))
}

/// Returns the URL the service is reached at: `public_url`, or the listen address.
pub(crate) fn base_url(state: &AppState) -> String {
    state
        .config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", state.config.listen))
}
