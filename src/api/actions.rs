//! The outbox, dead letters, the outbound destinations' circuit breakers and the alert
//! log.

use axum::Json;
use axum::extract::{Path, State};
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, ApiQuery, AppState};
use crate::event::EventId;
use crate::store::outbox::OutboxStatus;

/// Query string of `GET /api/outbox`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxParams {
    status: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

fn cursor(text: Option<&str>) -> Result<Option<EventId>, ApiError> {
    text.map(|c| {
        c.parse().map_err(|_| {
            ApiError::bad_request("bad_cursor", "cursor: use next_cursor from a previous page")
        })
    })
    .transpose()
}

/// `GET /api/outbox?status=pending|dead&limit=&cursor=`.
pub async fn outbox(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<OutboxParams>,
) -> Result<Json<Value>, ApiError> {
    let status = match params.status.as_deref().unwrap_or("pending") {
        "pending" => OutboxStatus::Pending,
        "dead" => OutboxStatus::Dead,
        _ => {
            return Err(ApiError::bad_request(
                "bad_status",
                "status must be pending or dead",
            ));
        }
    };
    let limit = params.limit.unwrap_or(50).clamp(1, 1000);
    let (actions, next) =
        state
            .store
            .actions_page(status, cursor(params.cursor.as_deref())?, limit)?;
    Ok(Json(json!({ "actions": actions, "next_cursor": next })))
}

/// `GET /api/outbox/hosts`: every outbound destination called since start (at most
/// [`crate::actions::breaker::MAX_HOSTS`]) with its circuit breaker: state, consecutive
/// failures, when it opened and lets the next probe through, the open interval, the last
/// error and how many calls it held back.
pub async fn hosts(State(state): State<AppState>) -> Json<Value> {
    Json(json!({ "hosts": state.breakers.hosts() }))
}

/// Hides credentials a rule put in call headers (from `[rules.vars]`): they are needed to
/// make the call, not to look at the queue.
fn redact(action: &mut crate::rules::QueuedAction) {
    if let crate::rules::Action::HttpPost { headers, .. } = &mut action.action {
        for (name, value) in headers.iter_mut() {
            let name = name.to_ascii_lowercase();
            let secret = [
                "authorization",
                "token",
                "secret",
                "key",
                "cookie",
                "password",
            ]
            .iter()
            .any(|word| name.contains(word));
            if secret {
                *value = "[redacted]".to_owned();
            }
        }
    }
}

/// `POST /api/outbox/{id}/retry`: a dead action goes back to pending with a fresh retry
/// schedule; a pending one is made due now.
pub async fn retry(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id: EventId = id
        .parse()
        .map_err(|_| ApiError::bad_request("bad_id", "not an action id"))?;
    let now = Timestamp::now();
    if let Some(mut action) = state.store.action(id, OutboxStatus::Dead)? {
        action.status = "pending".to_owned();
        action.attempts = 0;
        action.next_attempt_at = Some(now);
        state.store.move_action(&action, OutboxStatus::Pending)?;
        redact(&mut action);
        return Ok(Json(json!({ "action": action })));
    }
    if let Some(mut action) = state.store.action(id, OutboxStatus::Pending)? {
        action.next_attempt_at = Some(now);
        state.store.update_action(&action)?;
        redact(&mut action);
        return Ok(Json(json!({ "action": action })));
    }
    Err(ApiError::not_found(format!("no action {id}")))
}

/// Query string of `GET /api/alerts`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsParams {
    limit: Option<usize>,
    cursor: Option<String>,
}

/// `GET /api/alerts`: alerts sent, logged (no SMTP configured) or folded, newest first.
pub async fn alerts(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<AlertsParams>,
) -> Result<Json<Value>, ApiError> {
    let limit = params.limit.unwrap_or(50).clamp(1, 1000);
    let (alerts, next) = state
        .store
        .alerts_page(cursor(params.cursor.as_deref())?, limit)?;
    Ok(Json(json!({ "alerts": alerts, "next_cursor": next })))
}
