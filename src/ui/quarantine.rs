//! The Quarantine page: bodies and batch elements that could not be turned into events
//! (`GET /api/quarantine`), newest first, by cursor, with the cause; and one entry with
//! the raw JSON it came from (`/ui/quarantine/{id}`), escaped, pretty-printed when it
//! parses, and cut at [`SHOWN_BYTES`] so that a 10 MB body does not make a 10 MB page.

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::routing::get;
use maud::{Markup, html};

use super::PREFIX;
use super::layout::{self, Nav, UiError};
use super::outbox::{cursor, field, fields, truncate};
use crate::api::{AppState, blocking};
use crate::event::EventId;
use crate::store::quarantine::QuarantineEntry;

/// Rows per page.
const PAGE: usize = 50;
/// Most bytes of a body or element shown on the detail page.
pub const SHOWN_BYTES: usize = 64 * 1024;
/// Bodies up to this size are pretty-printed (larger ones are shown as received).
const PRETTY_UP_TO: usize = 1024 * 1024;
/// Characters of an element shown in the list.
const PREVIEW: usize = 100;

/// Routes of this page.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/quarantine", get(show))
        .route("/quarantine/{id}", get(detail))
}

fn entry_url(id: EventId) -> String {
    format!("{PREFIX}/quarantine/{id}")
}

async fn show(State(state): State<AppState>, RawQuery(query): RawQuery) -> Result<Markup, UiError> {
    let fields = fields(query.as_deref());
    let before = cursor(field(&fields, "cursor"))?;
    let store = state.store.clone();
    let (entries, next) = blocking(move || store.quarantine_page(before, PAGE)).await?;
    let next_url = next.map(|id| {
        layout::url(
            &format!("{PREFIX}/quarantine"),
            &[("cursor", id.to_string().as_str())],
        )
    });
    let body = html! {
        p .muted {
            "What a provider sent that could not be read as events. Nothing is lost: each entry keeps the request body it came from."
        }
        @if entries.is_empty() {
            (layout::empty("Nothing is quarantined."))
        } @else {
            div .table-wrap {
                table .quarantine {
                    thead {
                        tr {
                            th scope="col" { "Entry" }
                            th scope="col" { "Received" }
                            th scope="col" { "Source" }
                            th scope="col" { "Part" }
                            th scope="col" { "Cause" }
                            th scope="col" { "Content" }
                        }
                    }
                    tbody {
                        @for entry in &entries { (entry_row(entry)) }
                    }
                }
            }
        }
        (layout::pager(next_url))
    };
    Ok(layout::page(&state, Nav::Quarantine, "Quarantine", body))
}

fn part(entry: &QuarantineEntry) -> String {
    match entry.index {
        Some(index) => format!("element {index} of the batch"),
        None => "whole body".to_owned(),
    }
}

fn entry_row(entry: &QuarantineEntry) -> Markup {
    html! {
        tr {
            td {
                @if let Some(id) = entry.id {
                    a .mono href=(entry_url(id)) aria-label={ "Open quarantined entry " (id) } { (id) }
                }
            }
            td { (layout::time(entry.received_at)) }
            td { span .mono { (entry.source) } }
            td { (part(entry)) }
            td .cause { (truncate(&entry.error, 200)) }
            td .snippet {
                @match &entry.element {
                    Some(element) => code { (truncate(element.get(), PREVIEW)) },
                    None => @if let Some(id) = entry.id {
                        a href=(entry_url(id)) { "Show the body" }
                    },
                }
            }
        }
    }
}

/// Text for people: pretty JSON when it parses (and is not huge), else as received
/// (invalid UTF-8 replaced); cut at [`SHOWN_BYTES`]. Returns the text and whether it was
/// cut.
fn shown(bytes: &[u8]) -> (String, bool) {
    let pretty = (bytes.len() <= PRETTY_UP_TO)
        .then(|| serde_json::from_slice::<serde_json::Value>(bytes).ok())
        .flatten()
        .and_then(|value| serde_json::to_string_pretty(&value).ok());
    let text = pretty.unwrap_or_else(|| String::from_utf8_lossy(bytes).into_owned());
    if text.len() <= SHOWN_BYTES {
        return (text, false);
    }
    let mut end = SHOWN_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (text[..end].to_owned(), true)
}

fn raw_block(title: &str, bytes: &[u8]) -> Markup {
    let (text, cut) = shown(bytes);
    html! {
        h2 { (title) }
        p .muted {
            (bytes.len()) " bytes"
            @if cut { "; the first " (SHOWN_BYTES / 1024) " KiB are shown" }
            "."
        }
        pre .raw { (text) }
    }
}

async fn detail(State(state): State<AppState>, Path(id): Path<String>) -> Result<Markup, UiError> {
    let id: EventId = id
        .parse()
        .map_err(|_| UiError::bad_request("not a quarantine entry id (expected evt_<digits>)"))?;
    let store = state.store.clone();
    let (entry, body) = blocking(move || {
        let Some(entry) = store.quarantine_entry(id)? else {
            return Ok((None, None));
        };
        let body = store.body(entry.body_id)?;
        Ok((Some(entry), body))
    })
    .await?;
    let Some(entry) = entry else {
        return Err(UiError::not_found(format!(
            "No quarantined entry {id}: it may have been removed by retention."
        )));
    };
    let body = html! {
        p { a href={ (PREFIX) "/quarantine" } { "← All quarantined entries" } }
        section .panel {
            dl .facts {
                dt { "Entry" } dd .mono { (id) }
                dt { "Source" } dd .mono { (entry.source) }
                dt { "Received" } dd { (layout::time(entry.received_at)) }
                dt { "Part" } dd { (part(&entry)) }
                dt { "Cause" } dd .cause { (entry.error) }
                dt { "Request body" } dd .mono { (entry.body_id) }
            }
        }
        @if let Some(element) = &entry.element {
            (raw_block("The element", element.get().as_bytes()))
        }
        @match &body {
            Some((_, bytes)) => (raw_block("The request body", bytes)),
            None => {
                h2 { "The request body" }
                (layout::empty("The request body is no longer stored (removed by retention)."))
            }
        }
    };
    Ok(layout::page(
        &state,
        Nav::Quarantine,
        &format!("Quarantined {id}"),
        body,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_pretty_printed_and_long_text_is_cut() {
        let (text, cut) = shown(br#"{"a":[1,2]}"#);
        assert!(text.contains("\n  \"a\""), "{text}");
        assert!(!cut);
        let (text, cut) = shown(b"not json \xff");
        assert_eq!(text, "not json \u{fffd}");
        assert!(!cut);
        let long = "é".repeat(SHOWN_BYTES);
        let (text, cut) = shown(long.as_bytes());
        assert!(cut && text.len() <= SHOWN_BYTES);
    }
}
