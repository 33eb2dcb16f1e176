//! The read API: stored events, newest first, and the quarantine.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{ApiError, ApiQuery, AppState};
use crate::event::{EmailAddress, EventId, EventKind};
use crate::rules::Evaluation;
use crate::store::EventQuery;

/// Page size when `limit` is not given.
const DEFAULT_LIMIT: usize = 50;
/// Largest page.
const MAX_LIMIT: usize = 1_000;

/// Query string of `GET /api/events`. Everything is text so that each bad value gets its
/// own clear message.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsParams {
    recipient: Option<String>,
    kind: Option<String>,
    source: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// `GET /api/events?recipient=&kind=&source=&since=&until=&limit=&cursor=`.
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<EventsParams>,
) -> Result<Response, ApiError> {
    let query = EventQuery {
        recipient: params
            .recipient
            .as_deref()
            .map(|text| {
                EmailAddress::parse(text).map_err(|error| {
                    ApiError::bad_request("bad_recipient", format!("recipient: {error}"))
                })
            })
            .transpose()?,
        kind: params
            .kind
            .as_deref()
            .map(|text| {
                text.parse::<EventKind>().map_err(|_| {
                    let known: Vec<_> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
                    ApiError::bad_request(
                        "bad_kind",
                        format!("kind must be one of {}", known.join(", ")),
                    )
                })
            })
            .transpose()?,
        source: params.source,
        since: params
            .since
            .as_deref()
            .map(|t| parse_time("since", t))
            .transpose()?,
        until: params
            .until
            .as_deref()
            .map(|t| parse_time("until", t))
            .transpose()?,
        before: params.cursor.as_deref().map(parse_cursor).transpose()?,
        limit: parse_limit(params.limit.as_deref())?,
    };
    let store = state.store.clone();
    let page = tokio::task::spawn_blocking(move || store.events_page(&query))
        .await
        .map_err(|error| crate::store::StoreError::Commit(error.to_string()))??;
    // Serialized from the structs (not through `Value`) so fields keep the model's order.
    let body = serde_json::to_vec(&EventsAnswer {
        events: &page.events,
        next_cursor: page.next_cursor,
    })
    .map_err(|error| crate::store::StoreError::Commit(error.to_string()))?;
    Ok(([(CONTENT_TYPE, "application/json")], body).into_response())
}

/// `GET /api/events/{id}`.
pub async fn one(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id: EventId = id.parse().map_err(|error: crate::event::BadEventId| {
        ApiError::bad_request("bad_id", error.to_string())
    })?;
    let Some(event) = state.store.event(id)? else {
        return Err(ApiError::not_found(format!("no event {id}")));
    };
    // Pending first: if the evaluation commits between the two reads, the record is
    // found; the other order could show a matched event as unmatched.
    let pending = state.store.is_pending(id)?;
    let evaluation = match state.store.evaluation(id)? {
        Some(bytes) => serde_json::from_slice::<Evaluation>(&bytes).ok(),
        None => None,
    };
    let mut event = event;
    let mut rule_errors = Vec::new();
    let evaluation = match evaluation {
        Some(evaluation) => {
            for tag in evaluation.tags() {
                if !event.tags.contains(tag) {
                    event.tags.push(tag.clone());
                }
            }
            for outcome in &evaluation.rules {
                if let Some(error) = &outcome.error {
                    rule_errors.push(json!({ "rule": outcome.rule, "error": error }));
                }
            }
            json!(evaluation)
        }
        None => json!({ "pending": pending, "rules": [] }),
    };
    // Serialized from the struct, never through `Value`, so `raw` stays byte for byte.
    let body = serde_json::to_vec(&EventDetail {
        event: &event,
        rule_errors,
        evaluation,
    })
    .map_err(|error| crate::store::StoreError::Commit(error.to_string()))?;
    Ok(([(CONTENT_TYPE, "application/json")], body).into_response())
}

/// One event with what the rules did with it.
#[derive(Serialize)]
struct EventDetail<'a> {
    #[serde(flatten)]
    event: &'a crate::event::Event,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    rule_errors: Vec<Value>,
    evaluation: Value,
}

#[derive(Serialize)]
struct EventsAnswer<'a> {
    events: &'a [crate::event::Event],
    next_cursor: Option<EventId>,
}

/// Query string of `GET /api/quarantine`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuarantineParams {
    limit: Option<String>,
    cursor: Option<String>,
}

/// `GET /api/quarantine?limit=&cursor=`: rejected bodies and elements, newest first.
pub async fn quarantine(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<QuarantineParams>,
) -> Result<Json<Value>, ApiError> {
    let limit = parse_limit(params.limit.as_deref())?;
    let before = params.cursor.as_deref().map(parse_cursor).transpose()?;
    let (entries, next) = state.store.quarantine_page(before, limit)?;
    Ok(Json(json!({ "entries": entries, "next_cursor": next })))
}

/// Reads an RFC 3339 time (`2026-01-02T03:04:05Z`) or Unix seconds.
fn parse_time(name: &str, text: &str) -> Result<Timestamp, ApiError> {
    if let Ok(seconds) = text.parse::<i64>() {
        if let Ok(at) = Timestamp::from_second(seconds) {
            return Ok(at);
        }
    }
    text.parse::<Timestamp>().map_err(|_| {
        ApiError::bad_request(
            "bad_time",
            format!(
                "{name}: expected an RFC 3339 time such as 2026-01-02T03:04:05Z, or Unix seconds"
            ),
        )
    })
}

fn parse_cursor(text: &str) -> Result<EventId, ApiError> {
    text.parse().map_err(|_| {
        ApiError::bad_request(
            "bad_cursor",
            "cursor: use the next_cursor of a previous page",
        )
    })
}

fn parse_limit(text: Option<&str>) -> Result<usize, ApiError> {
    match text {
        None => Ok(DEFAULT_LIMIT),
        Some(text) => match text.parse::<usize>() {
            Ok(limit) if (1..=MAX_LIMIT).contains(&limit) => Ok(limit),
            _ => Err(ApiError::bad_request(
                "bad_limit",
                format!("limit must be a number from 1 to {MAX_LIMIT}"),
            )),
        },
    }
}
