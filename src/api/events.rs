//! The read API: stored events, newest first, and the quarantine.
//!
//! The parsing of the events filter and the reading of an event's evaluation live here
//! as `pub(crate)` functions: the console's Events and Recipient pages use the same ones.

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
use crate::store::{EventPage, EventQuery, Store, StoreError};

/// Page size when `limit` is not given.
pub(crate) const DEFAULT_LIMIT: usize = 50;
/// Largest page.
pub(crate) const MAX_LIMIT: usize = 1_000;

/// Query string of `GET /api/events`. Everything is text so that each bad value gets its
/// own clear message.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsParams {
    pub(crate) recipient: Option<String>,
    pub(crate) kind: Option<String>,
    pub(crate) source: Option<String>,
    pub(crate) since: Option<String>,
    pub(crate) until: Option<String>,
    pub(crate) limit: Option<String>,
    pub(crate) cursor: Option<String>,
}

impl EventsParams {
    /// The same with blank values left out (an HTML form sends every field, empty or not).
    pub(crate) fn without_blanks(self) -> EventsParams {
        let keep = |value: Option<String>| value.filter(|text| !text.trim().is_empty());
        EventsParams {
            recipient: keep(self.recipient),
            kind: keep(self.kind),
            source: keep(self.source),
            since: keep(self.since),
            until: keep(self.until),
            limit: keep(self.limit),
            cursor: keep(self.cursor),
        }
    }
}

/// Whose events a filter asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RecipientFilter {
    /// One address (found through the recipient index).
    Address(EmailAddress),
    /// Every address at a domain (lower-case, without the `@`).
    Domain(String),
}

/// A parsed events filter: the store query and, for `@domain`, the domain.
#[derive(Debug, Clone, Default)]
pub(crate) struct EventsFilter {
    /// The store query (its `recipient` set for an exact address).
    pub(crate) query: EventQuery,
    /// The domain of an `@domain` filter.
    pub(crate) domain: Option<String>,
}

impl EventsFilter {
    /// Reads one page of the events it selects.
    pub(crate) fn page(&self, store: &Store) -> Result<EventPage, StoreError> {
        match &self.domain {
            Some(domain) => store.events_page_in_domain(domain, &self.query),
            None => store.events_page(&self.query),
        }
    }
}

/// Reads `recipient=`: an address, or `@domain` for every address at that domain.
pub(crate) fn parse_recipient(text: &str) -> Result<RecipientFilter, ApiError> {
    let text = text.trim();
    if let Some(domain) = text.strip_prefix('@') {
        // A domain is valid when `x@domain` is a valid address; the parse lower-cases it.
        return EmailAddress::parse(&format!("x@{domain}"))
            .map(|probe| RecipientFilter::Domain(probe.domain().to_owned()))
            .map_err(|error| {
                ApiError::bad_request("bad_recipient", format!("recipient: `@{domain}`: {error}"))
            });
    }
    EmailAddress::parse(text)
        .map(RecipientFilter::Address)
        .map_err(|error| ApiError::bad_request("bad_recipient", format!("recipient: {error}")))
}

/// Reads `kind=`: one of [`EventKind::ALL`] by name.
pub(crate) fn parse_kind(text: &str) -> Result<EventKind, ApiError> {
    text.parse::<EventKind>().map_err(|_| {
        let known: Vec<_> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
        ApiError::bad_request(
            "bad_kind",
            format!("kind must be one of {}", known.join(", ")),
        )
    })
}

/// Parses the filter of `GET /api/events`; `time` reads `since` and `until` (the API
/// takes RFC 3339 or Unix seconds, the console also the values of its date inputs).
pub(crate) fn parse_filter(
    params: &EventsParams,
    time: impl Fn(&str, &str) -> Result<Timestamp, ApiError>,
) -> Result<EventsFilter, ApiError> {
    let recipient = params.recipient.as_deref();
    let kind = params.kind.as_deref();
    let (since, until) = (params.since.as_deref(), params.until.as_deref());
    let (limit, cursor) = (params.limit.as_deref(), params.cursor.as_deref());
    let (recipient, domain) = match recipient.map(parse_recipient).transpose()? {
        Some(RecipientFilter::Address(address)) => (Some(address), None),
        Some(RecipientFilter::Domain(domain)) => (None, Some(domain)),
        None => (None, None),
    };
    let query = EventQuery {
        recipient,
        kind: kind.map(parse_kind).transpose()?,
        source: params.source.clone(),
        since: since.map(|t| time("since", t)).transpose()?,
        until: until.map(|t| time("until", t)).transpose()?,
        before: cursor.map(parse_cursor).transpose()?,
        limit: parse_limit(limit)?,
    };
    Ok(EventsFilter { query, domain })
}

/// `GET /api/events?recipient=&kind=&source=&since=&until=&limit=&cursor=`; `recipient`
/// is an address or `@domain`.
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<EventsParams>,
) -> Result<Response, ApiError> {
    let filter = parse_filter(&params, parse_time)?;
    let store = state.store.clone();
    let page = super::blocking(move || filter.page(&store)).await?;
    // Serialized from the structs (not through `Value`) so fields keep the model's order.
    let body = serde_json::to_vec(&EventsAnswer {
        events: &page.events,
        next_cursor: page.next_cursor,
    })
    .map_err(|error| StoreError::Commit(error.to_string()))?;
    Ok(([(CONTENT_TYPE, "application/json")], body).into_response())
}

/// What the rules did with one event: its evaluation record, or whether it still waits.
pub(crate) struct EvaluationState {
    /// The record, when some rule matched or failed on the event.
    pub(crate) evaluation: Option<Evaluation>,
    /// Whether the event still waits for the rules.
    pub(crate) pending: bool,
}

/// Reads what the rules did with event `id`.
pub(crate) fn evaluation_state(store: &Store, id: EventId) -> Result<EvaluationState, StoreError> {
    // Pending first: if the evaluation commits between the two reads, the record is
    // found; the other order could show a matched event as unmatched.
    let pending = store.is_pending(id)?;
    let evaluation = match store.evaluation(id)? {
        Some(bytes) => serde_json::from_slice::<Evaluation>(&bytes).ok(),
        None => None,
    };
    Ok(EvaluationState {
        evaluation,
        pending,
    })
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
    let EvaluationState {
        evaluation,
        pending,
    } = evaluation_state(&state.store, id)?;
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
    .map_err(|error| StoreError::Commit(error.to_string()))?;
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
pub(crate) fn parse_time(name: &str, text: &str) -> Result<Timestamp, ApiError> {
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

/// Reads a cursor (the `next_cursor` of a previous page).
pub(crate) fn parse_cursor(text: &str) -> Result<EventId, ApiError> {
    text.parse().map_err(|_| {
        ApiError::bad_request(
            "bad_cursor",
            "cursor: use the next_cursor of a previous page",
        )
    })
}

/// Reads `limit=` (1 to [`MAX_LIMIT`], [`DEFAULT_LIMIT`] when absent).
pub(crate) fn parse_limit(text: Option<&str>) -> Result<usize, ApiError> {
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
