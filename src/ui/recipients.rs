//! The Recipient page: one address's whole story, the page support opens first. Whether
//! it is suppressed and why (with the history of its entry), its events newest first,
//! and what the rules did because of them (suppressions, alerts, outbound calls).
//!
//! It reads one suppression entry (a point read), one page of the recipient index, the
//! evaluation of each event shown, and one bounded forward scan of the outbox, dead
//! letters and alert log from the oldest event shown: none of those is indexed by
//! recipient, so what older events caused is on the older pages.

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use jiff::Timestamp;
use maud::{Markup, html};
use serde::Deserialize;

use super::events::{self, Outcomes};
use super::layout::{self, Nav, UiError};
use crate::api::AppState;
use crate::api::events as api_events;
use crate::event::{EmailAddress, EventId};
use crate::store::suppressions::Suppression;
use crate::store::{EventPage, EventQuery};

/// Path of the page.
const PATH: &str = "/ui/recipient";

/// Query string of the page.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    address: Option<String>,
    cursor: Option<String>,
    limit: Option<String>,
}

/// Routes of this page.
pub fn routes() -> Router<AppState> {
    Router::new().route("/recipient", get(show))
}

async fn show(
    State(state): State<AppState>,
    params: Result<Query<Params>, QueryRejection>,
) -> Result<Response, UiError> {
    let params = params
        .map_err(|rejection| UiError::bad_request(rejection.body_text()))?
        .0;
    let typed = params.address.as_deref().map(str::trim).unwrap_or("");
    if typed.is_empty() {
        let body = html! {
            (search(""))
            p .muted { "Type an address to see everything mailwarden knows about it: its events, "
                "whether it is suppressed and why, and what the rules did because of it." }
        };
        return Ok(layout::page(&state, Nav::Events, "Recipient", body).into_response());
    }
    let address = match EmailAddress::parse(typed) {
        Ok(address) => address,
        Err(error) => {
            let body = html! {
                (search(typed))
                div .notice.bad role="alert" {
                    "“" (typed) "” is not an e-mail address: " (error) "."
                    @if let Some(domain) = typed.strip_prefix('@') {
                        " To see a whole domain, "
                        a href=(layout::url("/ui/events", &[("recipient", &format!("@{domain}"))])) {
                            "filter the events by " (typed)
                        } "."
                    }
                }
            };
            return Ok((
                StatusCode::BAD_REQUEST,
                layout::page(&state, Nav::Events, "Recipient", body),
            )
                .into_response());
        }
    };
    let query = EventQuery {
        recipient: Some(address.clone()),
        before: params
            .cursor
            .as_deref()
            .map(api_events::parse_cursor)
            .transpose()?,
        limit: api_events::parse_limit(params.limit.as_deref())?,
        ..EventQuery::default()
    };
    let first_page = query.before.is_none();
    let store = state.store.clone();
    let key = address.as_str().to_owned();
    let (entry, page, outcomes) = crate::api::blocking(move || {
        let entry = store.suppression(&key)?;
        let page = store.events_page(&query)?;
        let ids: Vec<EventId> = page.events.iter().filter_map(|event| event.id).collect();
        let outcomes = events::load_outcomes(&store, &ids)?;
        Ok((entry, page, outcomes))
    })
    .await?;
    let never_seen = first_page && entry.is_none() && page.events.is_empty();
    let body = html! {
        (search(address.as_str()))
        @if never_seen {
            section .panel.story aria-labelledby="h-unknown" {
                h2 #h-unknown { "Nothing known about this address" }
                p { "mailwarden has no events for " strong { (address.as_str()) }
                    " and has never suppressed it." }
                p .muted { "Addresses are compared exactly (the domain ignoring case). Check the spelling, or "
                    a href=(layout::url("/ui/events", &[("recipient", &format!("@{}", address.domain()))])) {
                        "look at every address at " (address.domain())
                    } "." }
            }
        } @else {
            (status_panel(entry.as_ref(), &page, first_page))
            (story(&address, &params, &page, &outcomes))
            @if let Some(entry) = &entry { (history(entry)) }
        }
    };
    Ok(layout::page(&state, Nav::Events, address.as_str(), body).into_response())
}

fn search(value: &str) -> Markup {
    html! {
        form .filters.recipient-search role="search" aria-label="Look up a recipient" method="get" action=(PATH) {
            div .grow {
                label for="r-address" { "Address" }
                input #r-address type="text" inputmode="email" name="address" value=(value) required
                    placeholder="jane@example.com" autocomplete="off" spellcheck="false";
            }
            div { button type="submit" { "Look up" } }
        }
    }
}

/// The answer to "is it suppressed, and why": first, in words.
fn status_panel(entry: Option<&Suppression>, page: &EventPage, first_page: bool) -> Markup {
    let now = Timestamp::now();
    html! {
        section .panel.story aria-labelledby="h-status" {
            h2 #h-status { "Status" }
            dl .facts {
                dt { "Suppression" }
                dd {
                    @match entry {
                        Some(entry) if entry.in_force(now) => {
                            span .label.bad { "suppressed" } " " (entry.reason)
                            br;
                            span .muted {
                                "Since " (layout::time(entry.created_at)) ", by " span .mono { (entry.rule) }
                                @if let Some(id) = entry.event_id { ", after event " (layout::event_link(id)) }
                                "; "
                                @match entry.expires_at {
                                    Some(at) => { "until " (layout::time(at)) "." }
                                    None => { "permanent." }
                                }
                            }
                        }
                        Some(entry) => {
                            span .label.good { "not suppressed" } " "
                            span .muted {
                                @if entry.active { "The suppression expired " } @else { "The suppression was lifted " }
                                (layout::time(entry.expires_at.filter(|_| entry.active).unwrap_or(entry.updated_at)))
                                "; its history is below."
                            }
                        }
                        None => { span .label.good { "not suppressed" } " " span .muted { "Never suppressed." } }
                    }
                }
                dt { "Latest event" }
                dd {
                    @match page.events.first() {
                        Some(event) if first_page => {
                            (events::kind_cell(event)) " " (layout::time(event.received_at))
                        }
                        Some(_) => { span .muted { "(see the first page)" } }
                        None => { span .muted { "No stored events." } }
                    }
                }
            }
        }
    }
}

/// Its events and what the rules did with them.
fn story(address: &EmailAddress, params: &Params, page: &EventPage, outcomes: &Outcomes) -> Markup {
    let ids: Vec<EventId> = page.events.iter().filter_map(|event| event.id).collect();
    let rows = outcomes.action_rows(&ids);
    let said: std::collections::HashMap<EventId, Markup> = ids
        .iter()
        .map(|&id| (id, rules_word(outcomes, id)))
        .collect();
    let next = page.next_cursor.map(|cursor| {
        layout::url(
            PATH,
            &[
                ("address", address.as_str()),
                ("limit", params.limit.as_deref().unwrap_or("")),
                ("cursor", &cursor.to_string()),
            ],
        )
    });
    html! {
        section aria-labelledby="h-events" {
            h2 #h-events { "Events " span .muted.small { "newest first" } }
            @if page.events.is_empty() {
                (layout::empty("No stored events for this address."))
            } @else {
                (events::events_table(&page.events, false, &said))
            }
            (layout::pager(next))
        }
        section aria-labelledby="h-caused" {
            h2 #h-caused { "What the rules did because of it" }
            @if rows.is_empty() {
                (layout::empty("No rule asked for anything on the events shown."))
            } @else {
                (events::actions_table(&rows, true))
                p .muted.small { "For the events on this page: suppressions, alert e-mails and outbound calls, with what came of each." }
            }
        }
    }
}

/// A word on what the rules did with one event, for the events table.
fn rules_word(outcomes: &Outcomes, id: EventId) -> Markup {
    let Some(state) = outcomes.evaluations.get(&id) else {
        return html! {};
    };
    match &state.evaluation {
        None if state.pending => html! { span .label.warn { "waiting" } },
        None => html! { span .muted { "no match" } },
        Some(evaluation) => html! {
            @for outcome in &evaluation.rules {
                div {
                    @if outcome.error.is_some() {
                        span .label.bad { "failed" } " "
                    }
                    span .mono { (outcome.rule) }
                    @if !outcome.actions.is_empty() {
                        span .muted { ": " (outcome.actions.iter().map(|a| a.kind()).collect::<Vec<_>>().join(", ")) }
                    }
                }
            }
        },
    }
}

fn history(entry: &Suppression) -> Markup {
    html! {
        section aria-labelledby="h-history" {
            h2 #h-history { "Suppression history" }
            @if entry.history.is_empty() {
                (layout::empty("No changes recorded."))
            } @else {
                div .table-wrap {
                    table {
                        caption .visually-hidden { "Changes to the suppression, newest first" }
                        thead { tr {
                            th scope="col" { "When" }
                            th scope="col" { "Change" }
                            th scope="col" { "By" }
                            th scope="col" { "Reason" }
                        } }
                        tbody {
                            @for change in entry.history.iter().rev() {
                                tr {
                                    td .when { (layout::time(change.at)) }
                                    td { (change.change) }
                                    td .mono { (change.by) }
                                    td { (change.reason) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
