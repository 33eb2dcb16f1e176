//! Rules endpoints: the rules in force with their counters, and replays.

use axum::Json;
use axum::extract::State;
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, AppState};
use crate::rules::replay::{self, ReplayReport};

/// `GET /api/rules`: name, kinds, loaded_at, runs, matches, actions, errors, last_error
/// and compile_error of every rule.
pub async fn list(State(state): State<AppState>) -> Json<Value> {
    Json(json!({ "rules": state.rules.status() }))
}

/// Body of `POST /api/replay`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// Start (RFC 3339), inclusive.
    since: Timestamp,
    /// End (RFC 3339), exclusive; default now.
    until: Option<Timestamp>,
    /// Only this rule.
    rule: Option<String>,
    /// List the actions instead of queueing them.
    #[serde(default)]
    dry_run: bool,
}

/// `POST /api/replay`: re-runs rules over events received in a time range.
pub async fn replay(
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> Result<Json<ReplayReport>, ApiError> {
    let request: ReplayRequest = serde_json::from_slice(&body).map_err(|error| {
        ApiError::bad_request(
            "bad_request_body",
            format!(
                "expected {{\"since\": RFC 3339, \"until\"?, \"rule\"?, \"dry_run\"?}}: {error}"
            ),
        )
    })?;
    let set = state.rules.current();
    if let Some(rule) = &request.rule {
        if set.get(rule).is_none() {
            return Err(ApiError::not_found(format!("no rule named `{rule}`")));
        }
    }
    let until = request.until.unwrap_or_else(Timestamp::now);
    let rules = state.rules.clone();
    let store = state.store.clone();
    let report = tokio::task::spawn_blocking(move || {
        replay::replay(
            rules.rules(),
            &set,
            &store,
            request.since,
            until,
            request.rule.as_deref(),
            request.dry_run,
        )
    })
    .await
    .map_err(|error| crate::store::StoreError::Commit(error.to_string()))??;
    Ok(Json(report))
}
