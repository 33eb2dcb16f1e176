//! The Alerts page: the alert log (`GET /api/alerts`), newest first, by cursor. Each
//! entry is an alert mail sent, logged (no SMTP configured) or throttled (folded into
//! the digest of its window). An alert that could not be sent is not in the log: it is
//! in the outbox, retrying or dead; the page links there.

use std::collections::HashMap;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::routing::get;
use jiff::Timestamp;
use maud::{Markup, html};
use serde_json::Value;

use super::PREFIX;
use super::layout::{self, Nav, UiError};
use super::outbox::{cursor, field, fields, truncate};
use crate::api::{AppState, blocking};
use crate::event::EventId;

/// Rows per page.
const PAGE: usize = 50;
/// Characters of an alert's body shown when it is opened.
const BODY_SHOWN: usize = 4_000;

/// Routes of this page.
pub fn routes() -> Router<AppState> {
    Router::new().route("/alerts", get(show))
}

/// One entry of the log and the recipient of the event that raised it.
struct Row {
    record: Value,
    recipient: Option<String>,
}

async fn show(State(state): State<AppState>, RawQuery(query): RawQuery) -> Result<Markup, UiError> {
    let fields = fields(query.as_deref());
    let before = cursor(field(&fields, "cursor"))?;
    let store = state.store.clone();
    let (rows, next) = blocking(move || {
        let (records, next) = store.alerts_page(before, PAGE)?;
        let mut known: HashMap<EventId, Option<String>> = HashMap::new();
        let mut rows = Vec::with_capacity(records.len());
        for record in records {
            let recipient = match event_of(&record) {
                Some(id) => match known.get(&id) {
                    Some(found) => found.clone(),
                    None => {
                        let found = store.event(id)?.map(|e| e.recipient.as_str().to_owned());
                        known.insert(id, found.clone());
                        found
                    }
                },
                None => None,
            };
            rows.push(Row { record, recipient });
        }
        Ok((rows, next))
    })
    .await?;
    let next_url = next.map(|id| {
        layout::url(
            &format!("{PREFIX}/alerts"),
            &[("cursor", id.to_string().as_str())],
        )
    });
    let failed = layout::url(
        &format!("{PREFIX}/outbox"),
        &[("status", "dead"), ("kind", "alert")],
    );
    let body = html! {
        p .muted {
            "Alert mails the rules asked for: sent, logged (no SMTP server configured) or throttled into the digest of their window. "
            "Alerts that could not be sent wait in the outbox: "
            a href=(failed) { "failed alerts" } "."
        }
        @if rows.is_empty() {
            (layout::empty("No alert yet."))
        } @else {
            div .table-wrap {
                table .alerts {
                    thead {
                        tr {
                            th scope="col" { "Time" }
                            th scope="col" { "Rule" }
                            th scope="col" { "Subject" }
                            th scope="col" { "To" }
                            th scope="col" { "Outcome" }
                            th scope="col" { "Raised by" }
                            th scope="col" { "Error" }
                        }
                    }
                    tbody {
                        @for row in &rows { (alert_row(row)) }
                    }
                }
            }
        }
        (layout::pager(next_url))
    };
    Ok(layout::page(&state, Nav::Alerts, "Alerts", body))
}

fn text<'a>(record: &'a Value, name: &str) -> &'a str {
    record.get(name).and_then(Value::as_str).unwrap_or_default()
}

fn event_of(record: &Value) -> Option<EventId> {
    record
        .get("event_id")
        .and_then(Value::as_str)
        .and_then(|id| id.parse().ok())
}

fn alert_row(row: &Row) -> Markup {
    let record = &row.record;
    let at = text(record, "at").parse::<Timestamp>().ok();
    let to: Vec<&str> = record
        .get("to")
        .and_then(Value::as_array)
        .map(|list| list.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let body = text(record, "body");
    let error = text(record, "error");
    html! {
        tr {
            td { @if let Some(at) = at { (layout::time(at)) } @else { span .muted { "—" } } }
            td { span .mono { (text(record, "rule")) } }
            td .subject {
                (truncate(text(record, "subject"), 160))
                @if !body.is_empty() {
                    details {
                        summary { "Message" }
                        pre { (truncate(body, BODY_SHOWN)) }
                    }
                }
            }
            td {
                @for (i, address) in to.iter().enumerate() {
                    @if i > 0 { br; }
                    (layout::recipient_link(address))
                }
            }
            td {
                @match text(record, "status") {
                    "sent" => span .label.good { "sent" },
                    "folded" => span .label.warn { "throttled" },
                    "logged" => span .label { "logged, no SMTP" },
                    other => span .label { (other) },
                }
            }
            td {
                @if let Some(id) = event_of(record) {
                    (layout::event_link(id))
                    @if let Some(address) = &row.recipient { br; (layout::recipient_link(address)) }
                } @else {
                    span .muted { "digest" }
                }
            }
            td {
                @if error.is_empty() { span .muted { "—" } } @else { code { (truncate(error, 300)) } }
            }
        }
    }
}
