//! The outbox, dead letters, the outbound destinations' circuit breakers and the alert
//! log.

use axum::Json;
use axum::extract::{Path, State};
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, ApiQuery, AppState};
use crate::event::EventId;
use crate::rules::QueuedAction;
use crate::store::outbox::OutboxStatus;
use crate::store::{Store, StoreError};

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

/// Returns whether a request header named `name` carries a credential.
pub(crate) fn is_secret_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "authorization",
        "token",
        "secret",
        "key",
        "cookie",
        "password",
    ]
    .iter()
    .any(|word| name.contains(word))
}

/// Hides credentials a rule put in call headers (from `[rules.vars]`): they are needed to
/// make the call, not to look at the queue.
pub(crate) fn redact(action: &mut QueuedAction) {
    if let crate::rules::Action::HttpPost { headers, .. } = &mut action.action {
        for (name, value) in headers.iter_mut() {
            if is_secret_header(name) {
                *value = "[redacted]".to_owned();
            }
        }
    }
}

/// Puts a dead letter back in the queue as if new: pending, no attempts yet, due at
/// `now` (a fresh retry schedule); the last error stays for the record.
pub(crate) fn revive(action: &mut QueuedAction, now: Timestamp) {
    action.status = "pending".to_owned();
    action.attempts = 0;
    action.next_attempt_at = Some(now);
}

/// Retries action `id`: a dead one goes back to pending with a fresh retry schedule, a
/// pending one is made due now. Returns the action as it is now (not redacted), or
/// `None` when it is in neither list (or left them meanwhile: finished by the worker).
pub(crate) fn retry_action(
    store: &Store,
    id: EventId,
    now: Timestamp,
) -> Result<Option<QueuedAction>, StoreError> {
    if let Some(mut action) = store.action(id, OutboxStatus::Dead)? {
        revive(&mut action, now);
        if store.move_action(&action, OutboxStatus::Pending)? {
            return Ok(Some(action));
        }
        // Revived by another retry meanwhile: it is pending now, make it due below.
    }
    // Changed in one atomic step against the record as stored: if the worker finished
    // it meanwhile, it is gone (as if it had never been there), not brought back; if the
    // worker counted an attempt meanwhile, that count stays.
    store.change_action(id, |action| action.next_attempt_at = Some(now))
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
    match retry_action(&state.store, id, Timestamp::now())? {
        Some(mut action) => {
            redact(&mut action);
            Ok(Json(json!({ "action": action })))
        }
        None => Err(ApiError::not_found(format!("no action {id}"))),
    }
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
