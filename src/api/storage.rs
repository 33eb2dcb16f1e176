//! `GET /api/storage`: the size of the store on disk, how many events it holds, the
//! oldest one, the retention settings and what the last purge did.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::{ApiError, AppState, blocking};

/// Describes the store.
pub async fn summary(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let store = state.store.clone();
    let summary = blocking(move || store.storage_summary()).await?;
    let storage = &state.config.storage;
    let mut answer = serde_json::to_value(summary).expect("storage summary serializes");
    answer["retention"] = json!({
        "retain_days": storage.retain_days,
        "outbox_retain_days": storage.outbox_retain_days,
        "quarantine_retain_days": storage.quarantine_retain_days,
        "purge_interval_secs": storage.purge_interval_secs,
    });
    Ok(Json(answer))
}
