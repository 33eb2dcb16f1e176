//! The Outbox page: what the action workers still have to do and what they gave up on.
//!
//! - `GET /ui/outbox?status=pending|retrying|dead&host=&kind=&cursor=`: one list of the
//!   store's two (pending, dead; "retrying" is pending with at least one failed
//!   attempt), newest first, by cursor, with the destinations' circuit breakers.
//! - `POST /ui/outbox/{id}/retry`: the API's retry (a dead letter goes back to pending
//!   with a fresh schedule, a pending call is made due now), then back to the list with a
//!   notice that follows the action until it is done or dead again
//!   (`GET /ui/outbox/{id}/state`, polled by htmx).
//! - `GET /ui/outbox/retry-all?host=&kind=`: counts the matching dead letters and asks;
//!   `POST` requeues them, at most [`MAX_REQUEUE`] per request, only those counted.
//!
//! Filters read a bounded number of records per page (see
//! [`crate::store::outbox::MAX_SCAN`]), so a rare match cannot make a page walk the whole
//! queue. URLs are shown without their query string or user info, where credentials
//! live; call headers are never shown.

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use jiff::Timestamp;
use maud::{Markup, html};

use super::PREFIX;
use super::layout::{self, Nav, UiError};
use crate::actions::breaker::{BreakerState, HostStatus};
use crate::actions::http::destination;
use crate::api::actions::{retry_action, revive};
use crate::api::{AppState, blocking};
use crate::event::EventId;
use crate::rules::{Action, QueuedAction};
use crate::store::outbox::{MatchCount, OutboxStatus, Requeued};

/// Rows per page.
const PAGE: usize = 50;
/// Most dead letters one "retry all" request moves back.
pub const MAX_REQUEUE: usize = 1_000;
/// Characters of a response or error shown in the table.
const SNIPPET: usize = 160;
/// Status htmx reads as "stop polling" (the swap still happens).
const STOP_POLLING: u16 = 286;

/// The kinds of action, as filter values and as shown.
const KINDS: [(&str, &str); 4] = [
    ("http_post", "HTTP call"),
    ("alert", "alert"),
    ("suppress", "suppress"),
    ("unsuppress", "unsuppress"),
];

/// Routes of this page.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/outbox", get(show))
        .route("/outbox/retry-all", get(confirm_retry_all).post(retry_all))
        .route("/outbox/{id}/retry", post(retry_one))
        .route("/outbox/{id}/state", get(state_notice))
}

/// Reads a query string or form body into its fields (the last value of a name wins).
pub(super) fn fields(text: Option<&str>) -> HashMap<String, String> {
    form_urlencoded::parse(text.unwrap_or_default().as_bytes())
        .map(|(name, value)| (name.into_owned(), value.trim().to_owned()))
        .collect()
}

/// The value of field `name`, if given and not empty.
pub(super) fn field<'a>(fields: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    fields
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

/// Reads a cursor (`evt_123` or `123`) for a 400 page when it is not one.
pub(super) fn cursor(text: Option<&str>) -> Result<Option<EventId>, UiError> {
    text.map(|text| {
        text.parse::<EventId>()
            .map_err(|_| UiError::bad_request("cursor: use the “Older” link of a previous page"))
    })
    .transpose()
}

/// `text` cut to `max` characters, with an ellipsis when something was cut.
pub(super) fn truncate(text: &str, max: usize) -> String {
    let mut chars = text.chars();
    let mut cut: String = chars.by_ref().take(max).collect();
    if chars.next().is_some() {
        cut.push('…');
    }
    cut
}

/// Which list the page shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tab {
    /// Everything waiting for an attempt.
    Pending,
    /// Pending after at least one failed attempt.
    Retrying,
    /// Dead letters.
    Dead,
}

impl Tab {
    const ALL: [Tab; 3] = [Tab::Pending, Tab::Retrying, Tab::Dead];

    fn parse(text: Option<&str>) -> Result<Tab, UiError> {
        match text.unwrap_or("pending") {
            "pending" => Ok(Tab::Pending),
            "retrying" | "failed" => Ok(Tab::Retrying),
            "dead" => Ok(Tab::Dead),
            _ => Err(UiError::bad_request(
                "status must be pending, retrying or dead",
            )),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Tab::Pending => "pending",
            Tab::Retrying => "retrying",
            Tab::Dead => "dead",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Tab::Pending => "Pending",
            Tab::Retrying => "Failed, retrying",
            Tab::Dead => "Dead letters",
        }
    }

    fn status(self) -> OutboxStatus {
        match self {
            Tab::Dead => OutboxStatus::Dead,
            Tab::Pending | Tab::Retrying => OutboxStatus::Pending,
        }
    }
}

/// What the list is narrowed to besides its tab.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Filter {
    /// Destination: a host name (any port) or `host:port`, lower case.
    host: Option<String>,
    /// Action type (`http_post`, `alert`, ...).
    kind: Option<&'static str>,
}

impl Filter {
    fn parse(fields: &HashMap<String, String>) -> Result<Filter, UiError> {
        let host = field(fields, "host")
            .map(|host| {
                let host = host.to_ascii_lowercase();
                let fine = host.len() <= 260
                    && host
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || ".-_:[]".contains(c));
                if fine {
                    Ok(host)
                } else {
                    Err(UiError::bad_request(
                        "host: give a host name such as crm.example.com, or host:port",
                    ))
                }
            })
            .transpose()?;
        let kind = field(fields, "kind")
            .map(|kind| {
                KINDS
                    .iter()
                    .find(|(name, _)| *name == kind)
                    .map(|(name, _)| *name)
                    .ok_or_else(|| {
                        UiError::bad_request(
                            "kind must be one of http_post, alert, suppress, unsuppress",
                        )
                    })
            })
            .transpose()?;
        Ok(Filter { host, kind })
    }

    fn matches(&self, tab: Tab, action: &QueuedAction) -> bool {
        if tab == Tab::Retrying && action.attempts == 0 {
            return false;
        }
        if self.kind.is_some_and(|kind| kind != action.action.kind()) {
            return false;
        }
        match (&self.host, &action.action) {
            (None, _) => true,
            (Some(wanted), Action::HttpPost { url, .. }) => destination(url).is_some_and(|at| {
                at == *wanted || at.rsplit_once(':').is_some_and(|(host, _)| host == wanted)
            }),
            (Some(_), _) => false,
        }
    }

    /// The filter as query parameters (empty ones are left out by `layout::url`).
    fn params(&self) -> [(&'static str, &str); 2] {
        [
            ("host", self.host.as_deref().unwrap_or_default()),
            ("kind", self.kind.unwrap_or_default()),
        ]
    }

    /// " to crm.example.com (HTTP calls)": what the filter keeps, for sentences.
    fn describe(&self) -> String {
        let mut text = String::new();
        if let Some(host) = &self.host {
            text.push_str(&format!(" to {host}"));
        }
        if let Some(kind) = self.kind {
            text.push_str(&format!(" ({})", kind_name(kind)));
        }
        text
    }
}

fn kind_name(kind: &str) -> &str {
    KINDS
        .iter()
        .find(|(name, _)| *name == kind)
        .map_or(kind, |(_, shown)| shown)
}

/// The list's URL for `tab` and `filter` with `extra` parameters.
fn list_url(tab: Tab, filter: &Filter, extra: &[(&str, &str)]) -> String {
    let mut params = vec![("status", tab.as_str())];
    params.extend(filter.params());
    params.extend_from_slice(extra);
    layout::url(&format!("{PREFIX}/outbox"), &params)
}

/// One row: an action and the recipient of the event that caused it.
struct Row {
    action: QueuedAction,
    recipient: Option<String>,
}

/// Where a retried action is now.
enum Fate {
    /// Pending again (or still).
    Waiting(QueuedAction),
    /// Failed again.
    Dead(QueuedAction),
    /// Carried out: done actions leave the outbox.
    Gone,
}

fn fate(store: &crate::store::Store, id: EventId) -> Result<Fate, crate::store::StoreError> {
    if let Some(action) = store.action(id, OutboxStatus::Pending)? {
        return Ok(Fate::Waiting(action));
    }
    if let Some(action) = store.action(id, OutboxStatus::Dead)? {
        return Ok(Fate::Dead(action));
    }
    Ok(Fate::Gone)
}

async fn show(State(state): State<AppState>, RawQuery(query): RawQuery) -> Result<Markup, UiError> {
    let fields = fields(query.as_deref());
    let tab = Tab::parse(field(&fields, "status"))?;
    let filter = Filter::parse(&fields)?;
    let before = cursor(field(&fields, "cursor"))?;
    let retried = field(&fields, "retried")
        .map(|id| id.parse::<EventId>())
        .transpose()
        .map_err(|_| UiError::bad_request("retried: not an action id"))?;
    let requeued = field(&fields, "requeued")
        .map(|n| n.parse::<usize>())
        .transpose()
        .map_err(|_| UiError::bad_request("requeued: not a number"))?;
    let more = field(&fields, "more").is_some();

    let store = state.store.clone();
    let wanted = filter.clone();
    let (rows, next, fate) = blocking(move || {
        let (actions, next) =
            store.actions_matching(tab.status(), before, PAGE, |a| wanted.matches(tab, a))?;
        let mut rows = Vec::with_capacity(actions.len());
        let mut recipients: HashMap<EventId, Option<String>> = HashMap::new();
        for action in actions {
            let recipient = match (&action.action, action.event_id) {
                (Action::Suppress { address, .. } | Action::Unsuppress { address, .. }, _) => {
                    Some(address.clone())
                }
                (_, Some(event)) => match recipients.get(&event) {
                    Some(known) => known.clone(),
                    None => {
                        let found = store.event(event)?.map(|e| e.recipient.as_str().to_owned());
                        recipients.insert(event, found.clone());
                        found
                    }
                },
                (_, None) => None,
            };
            rows.push(Row { action, recipient });
        }
        let fate = retried
            .map(|id| fate(&store, id).map(|fate| (id, fate)))
            .transpose()?;
        Ok((rows, next, fate))
    })
    .await?;

    let now = Timestamp::now();
    let hosts = state.breakers.hosts();
    let next_url = next.map(|id| list_url(tab, &filter, &[("cursor", &id.to_string())]));
    let body = html! {
        @if let Some((id, fate)) = &fate {
            (retry_notice(*id, fate))
        }
        @if let Some(count) = requeued {
            div .notice.good role="status" {
                p {
                    "Requeued " (count) " dead " (plural(count, "letter", "letters")) (filter.describe())
                    ": pending again with a fresh retry schedule."
                }
                @if more {
                    p { "More dead letters match than one request moves (" (MAX_REQUEUE) "): use “Retry all matching” again for the next ones." }
                }
                p { a href=(list_url(Tab::Pending, &filter, &[])) { "See them in Pending" } }
            }
        }
        nav .tabs aria-label="Outbox lists" {
            ul {
                @for each in Tab::ALL {
                    li {
                        @if each == tab {
                            a href=(list_url(each, &filter, &[])) aria-current="page" { (each.label()) }
                        } @else {
                            a href=(list_url(each, &filter, &[])) { (each.label()) }
                        }
                    }
                }
            }
        }
        (filters(tab, &filter))
        @if tab == Tab::Dead {
            p .bulk {
                a .button.secondary href=(layout::url(&format!("{PREFIX}/outbox/retry-all"), &filter.params())) {
                    "Retry all matching…"
                }
                span .muted { " Shows how many first." }
            }
        }
        section #outbox-list aria-labelledby="list-heading" {
            h2 #list-heading { (tab.label()) (filter.describe()) }
            @if rows.is_empty() {
                (layout::empty(match tab {
                    Tab::Pending => "Nothing is waiting: every action was carried out.",
                    Tab::Retrying => "No action is failing right now.",
                    Tab::Dead => "No dead letters.",
                }))
            } @else {
                (table(tab, &filter, &rows, now))
            }
            (layout::pager(next_url))
        }
        (breakers(&hosts))
    };
    Ok(layout::page(&state, Nav::Outbox, "Outbox", body))
}

fn plural<'a>(count: usize, one: &'a str, many: &'a str) -> &'a str {
    if count == 1 { one } else { many }
}

fn filters(tab: Tab, filter: &Filter) -> Markup {
    html! {
        form .filters method="get" action={ (PREFIX) "/outbox" } {
            input type="hidden" name="status" value=(tab.as_str());
            div {
                label for="host" { "Destination host" }
                input #host name="host" type="text" placeholder="crm.example.com"
                    value=(filter.host.as_deref().unwrap_or_default());
            }
            div {
                label for="kind" { "Kind" }
                select #kind name="kind" {
                    option value="" selected[filter.kind.is_none()] { "any kind" }
                    @for (name, shown) in KINDS {
                        option value=(name) selected[filter.kind == Some(name)] { (shown) }
                    }
                }
            }
            div {
                button type="submit" { "Filter" }
            }
            @if *filter != Filter::default() {
                div { a href=(list_url(tab, &Filter::default(), &[])) { "Clear filter" } }
            }
        }
    }
}

fn table(tab: Tab, filter: &Filter, rows: &[Row], now: Timestamp) -> Markup {
    html! {
        div .table-wrap {
            table .outbox {
                thead {
                    tr {
                        th scope="col" { "Action" }
                        th scope="col" { "Kind" }
                        th scope="col" { "Target" }
                        th scope="col" .num { "Attempts" }
                        th scope="col" { "Last status" }
                        th scope="col" { "Response or error" }
                        th scope="col" { @if tab == Tab::Dead { "Gave up" } @else { "Next try" } }
                        th scope="col" { "Caused by" }
                        th scope="col" { span .visually-hidden { "Retry" } }
                    }
                }
                tbody {
                    @for row in rows {
                        (table_row(tab, filter, row, now))
                    }
                }
            }
        }
    }
}

fn table_row(tab: Tab, filter: &Filter, row: &Row, now: Timestamp) -> Markup {
    let action = &row.action;
    let id = action.id.map(|id| id.to_string()).unwrap_or_default();
    let error = action.last_error.as_deref();
    html! {
        tr {
            td {
                span .mono { (id) }
                br;
                span .muted { "queued " (layout::time(action.created_at)) }
            }
            td { span .label { (kind_name(action.action.kind())) } }
            td .target { (target(&action.action)) }
            td .num { (action.attempts) }
            td {
                @match error.and_then(status_code) {
                    Some(code) => span class={ "label " (code_class(code)) } { "HTTP " (code) },
                    None => @if error.is_some() { span .label.bad { "no answer" } } @else { span .muted { "—" } },
                }
            }
            td .snippet {
                @if let Some(error) = error {
                    code title=(truncate(error, 1_000)) { (truncate(snippet(error), SNIPPET)) }
                } @else {
                    span .muted { "—" }
                }
            }
            td {
                @if tab == Tab::Dead {
                    span .label.bad { "dead letter" }
                } @else {
                    @match action.next_attempt_at {
                        Some(at) if at > now => (layout::time(at)),
                        _ => span .label.warn { "due now" },
                    }
                }
            }
            td {
                @if let Some(event) = action.event_id {
                    (layout::event_link(event))
                    br;
                } @else {
                    span .muted { (action.rule) } br;
                }
                @if let Some(address) = &row.recipient {
                    (layout::recipient_link(address))
                }
            }
            td {
                @let due_later = action.next_attempt_at.is_some_and(|at| at > now);
                @if tab == Tab::Dead || due_later {
                    form .inline method="post" action={ (PREFIX) "/outbox/" (id) "/retry" } {
                        input type="hidden" name="status" value=(tab.as_str());
                        input type="hidden" name="host" value=(filter.host.as_deref().unwrap_or_default());
                        input type="hidden" name="kind" value=(filter.kind.unwrap_or_default());
                        @if tab == Tab::Dead {
                            button type="submit" .secondary aria-label={ "Retry " (id) } { "Retry" }
                        } @else {
                            button type="submit" .secondary aria-label={ "Try " (id) " now" } { "Try now" }
                        }
                    }
                }
            }
        }
    }
}

/// What an action acts on, without secrets: the URL as [`layout::shown_url`] keeps it
/// (no query, user info or path past its first segment), an alert's recipients and
/// subject, a suppression's address.
fn target(action: &Action) -> Markup {
    match action {
        Action::HttpPost { url, .. } => layout::url_markup(url),
        Action::Alert { to, subject, .. } => html! {
            "mail to "
            @if to.is_empty() {
                span .muted { "the default recipients" }
            }
            @for (i, address) in to.iter().enumerate() {
                @if i > 0 { ", " }
                (layout::recipient_link(address))
            }
            br;
            span .muted { "“" (truncate(subject, 80)) "”" }
        },
        Action::Suppress {
            address, reason, ..
        }
        | Action::Unsuppress { address, reason } => html! {
            (layout::recipient_link(address))
            br;
            span .muted { (truncate(reason, 80)) }
        },
    }
}

/// The HTTP status in an attempt's error (`HTTP 503: ...`), if it got one.
fn status_code(error: &str) -> Option<u16> {
    let at = error.find("HTTP ")?;
    let digits = error.get(at + 5..at + 8)?;
    digits.parse().ok().filter(|code| (100..600).contains(code))
}

/// The response part of an attempt's error: after `HTTP nnn: `, else all of it.
fn snippet(error: &str) -> &str {
    match error.find("HTTP ") {
        Some(at) if status_code(error).is_some() => {
            let rest = &error[at + 8..];
            rest.strip_prefix(": ").unwrap_or(rest)
        }
        _ => error,
    }
}

fn code_class(code: u16) -> &'static str {
    match code {
        200..=299 => "good",
        400..=499 => "warn",
        _ => "bad",
    }
}

fn breakers(hosts: &[HostStatus]) -> Markup {
    html! {
        section aria-labelledby="hosts-heading" {
            h2 #hosts-heading { "Destinations" }
            p .muted { "Circuit breakers of the hosts called since the service started: an open one holds its calls back without using up their attempts." }
            @if hosts.is_empty() {
                (layout::empty("No outbound call since the service started."))
            } @else {
                div .table-wrap {
                    table {
                        thead {
                            tr {
                                th scope="col" { "Host" }
                                th scope="col" { "Breaker" }
                                th scope="col" .num { "Failures in a row" }
                                th scope="col" { "Next probe" }
                                th scope="col" .num { "Calls held back" }
                                th scope="col" { "Last error" }
                            }
                        }
                        tbody {
                            @for host in hosts {
                                tr {
                                    th scope="row" {
                                        a .mono href=(list_url(Tab::Dead, &Filter { host: Some(host.host.clone()), kind: None }, &[]))
                                            title="Dead letters to this host" { (host.host) }
                                    }
                                    td {
                                        @match host.state {
                                            BreakerState::Closed => span .label.good { "closed" },
                                            BreakerState::Open => span .label.bad { "open" },
                                            BreakerState::HalfOpen => span .label.warn { "half open" },
                                        }
                                    }
                                    td .num { (host.consecutive_failures) }
                                    td {
                                        @if let Some(at) = host.retry_at { (layout::time(at)) } @else { span .muted { "—" } }
                                    }
                                    td .num { (host.skipped) }
                                    td .snippet {
                                        @if let Some(error) = &host.last_error {
                                            code { (truncate(error, SNIPPET)) }
                                        } @else { span .muted { "—" } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The notice after a retry: it follows the action (htmx polls
/// `/ui/outbox/{id}/state` every second and stops at the answer 286) and says when it
/// is done or dead again. The live region stays; only its content is swapped, so each
/// change is read out.
fn retry_notice(id: EventId, fate: &Fate) -> Markup {
    html! {
        div #retry-notice role="status"
            hx-get={ (PREFIX) "/outbox/" (id) "/state" } hx-trigger="every 1s" hx-swap="innerHTML" {
            (fate_text(id, fate))
        }
    }
}

fn fate_class(fate: &Fate) -> &'static str {
    match fate {
        Fate::Waiting(_) => "waiting",
        Fate::Dead(_) => "bad",
        Fate::Gone => "good",
    }
}

/// The notice's content (the polled part): its tint follows the state.
fn fate_text(id: EventId, fate: &Fate) -> Markup {
    html! {
        div class={ "notice " (fate_class(fate)) } { (fate_words(id, fate)) }
    }
}

fn fate_words(id: EventId, fate: &Fate) -> Markup {
    match fate {
        Fate::Waiting(action) => html! {
            p data-announce={ (id) " is queued again" } {
                strong { "Requeued: " } span .mono { (id) } " is pending again"
                @if action.attempts > 0 { " (attempt " (action.attempts + 1) " next)" }
                "; this notice says when it is done."
            }
        },
        Fate::Dead(action) => html! {
            p data-announce={ (id) " failed again" } {
                strong { "Failed again: " } span .mono { (id) } " is a dead letter after "
                (action.attempts) " " (plural(action.attempts as usize, "attempt", "attempts"))
                @if let Some(error) = &action.last_error { ": " code { (truncate(error, SNIPPET)) } }
            }
        },
        Fate::Gone => html! {
            p data-announce={ (id) " is done" } {
                strong { "Done: " } span .mono { (id) } " was carried out and left the outbox."
            }
        },
    }
}

/// `GET /ui/outbox/{id}/state`: the retry notice's text, with "stop polling" once the
/// action is done or dead.
async fn state_notice(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, UiError> {
    let id = action_id(&id)?;
    let store = state.store.clone();
    let fate = blocking(move || fate(&store, id)).await?;
    let status = match fate {
        Fate::Waiting(_) => StatusCode::OK,
        Fate::Dead(_) | Fate::Gone => {
            StatusCode::from_u16(STOP_POLLING).expect("286 is a valid status")
        }
    };
    Ok((status, fate_text(id, &fate)).into_response())
}

fn action_id(text: &str) -> Result<EventId, UiError> {
    text.parse::<EventId>()
        .map_err(|_| UiError::bad_request("not an action id (expected evt_<digits>)"))
}

/// `POST /ui/outbox/{id}/retry`: the API's retry, then back to the list it came from.
async fn retry_one(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: String,
) -> Result<Response, UiError> {
    let id = action_id(&id)?;
    let fields = fields(Some(&body));
    let tab = Tab::parse(field(&fields, "status"))?;
    let filter = Filter::parse(&fields)?;
    let store = state.store.clone();
    let retried = blocking(move || retry_action(&store, id, Timestamp::now())).await?;
    if retried.is_none() {
        return Err(UiError::not_found(format!(
            "{id} is not in the outbox: it was carried out, or removed by retention."
        )));
    }
    tracing::info!(action = %id, "action retried from the console");
    let back = list_url(tab, &filter, &[("retried", &id.to_string())]);
    Ok(Redirect::to(&back).into_response())
}

/// `GET /ui/outbox/retry-all?host=&kind=`: how many dead letters match, and the button.
async fn confirm_retry_all(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Markup, UiError> {
    let fields = fields(query.as_deref());
    let filter = Filter::parse(&fields)?;
    let store = state.store.clone();
    let wanted = filter.clone();
    let count: MatchCount = blocking(move || {
        store.count_matching(OutboxStatus::Dead, |a| wanted.matches(Tab::Dead, a))
    })
    .await?;
    let back = list_url(Tab::Dead, &filter, &[]);
    let how_many = if count.complete {
        count.count.to_string()
    } else {
        format!("at least {}", count.count)
    };
    let letters = plural(count.count, "dead letter", "dead letters");
    let body = html! {
        section .panel {
            @match count.newest {
                None => {
                    (layout::empty(&format!("No dead letters{} to retry.", filter.describe())))
                    p { a href=(back) { "Back to the dead letters" } }
                }
                Some(newest) => {
                    h2 { "Retry " (how_many) " " (letters) (filter.describe()) "?" }
                    p {
                        "They go back to pending with a fresh retry schedule and are tried within a second. "
                        "Dead letters that arrive after this count are left alone."
                    }
                    @if count.count > MAX_REQUEUE || !count.complete {
                        p .notice { "One request requeues at most " (MAX_REQUEUE) "; retry all again for the rest." }
                    }
                    form method="post" action={ (PREFIX) "/outbox/retry-all" } {
                        input type="hidden" name="host" value=(filter.host.as_deref().unwrap_or_default());
                        input type="hidden" name="kind" value=(filter.kind.unwrap_or_default());
                        input type="hidden" name="through" value=(newest);
                        button type="submit" { "Retry " (how_many) " " (letters) }
                        " "
                        a .button.secondary href=(back) { "Cancel" }
                    }
                }
            }
        }
    };
    Ok(layout::page(
        &state,
        Nav::Outbox,
        "Retry dead letters",
        body,
    ))
}

/// `POST /ui/outbox/retry-all`: requeues the dead letters counted on the confirmation
/// page (ids up to `through`) that still match, at most [`MAX_REQUEUE`].
async fn retry_all(State(state): State<AppState>, body: String) -> Result<Response, UiError> {
    let fields = fields(Some(&body));
    let filter = Filter::parse(&fields)?;
    let through = field(&fields, "through")
        .ok_or_else(|| UiError::bad_request("through: missing; start from the confirmation"))
        .and_then(action_id)?;
    let store = state.store.clone();
    let wanted = filter.clone();
    let now = Timestamp::now();
    let done: Requeued = blocking(move || {
        store.requeue_dead(
            through,
            MAX_REQUEUE,
            |a| wanted.matches(Tab::Dead, a),
            |a| revive(a, now),
        )
    })
    .await?;
    tracing::info!(requeued = done.requeued, more = done.more, host = ?filter.host, "dead letters retried from the console");
    let count = done.requeued.to_string();
    let mut extra = vec![("requeued", count.as_str())];
    if done.more {
        extra.push(("more", "1"));
    }
    Ok(Redirect::to(&list_url(Tab::Dead, &filter, &extra)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_and_response_come_out_of_an_attempts_error() {
        let error = "gave up after 3 attempts: HTTP 500: <b>down</b>";
        assert_eq!(status_code(error), Some(500));
        assert_eq!(snippet(error), "<b>down</b>");
        assert_eq!(status_code("timed out: operation timed out"), None);
        assert_eq!(snippet("timed out"), "timed out");
        assert_eq!(truncate("abcdef", 3), "abc…");
        assert_eq!(truncate("abc", 3), "abc");
    }

    #[test]
    fn a_host_filter_matches_the_host_with_any_port_or_exactly() {
        let call = |url: &str| {
            QueuedAction::new(
                None,
                "r",
                Action::HttpPost {
                    url: url.into(),
                    body: serde_json::json!({}),
                    headers: Default::default(),
                },
                Timestamp::now(),
            )
        };
        let filter = |host: &str| Filter {
            host: Some(host.into()),
            kind: None,
        };
        let action = call("https://crm.example.com/hook?key=secret");
        assert!(filter("crm.example.com").matches(Tab::Dead, &action));
        assert!(filter("crm.example.com:443").matches(Tab::Dead, &action));
        assert!(!filter("crm.example.com:80").matches(Tab::Dead, &action));
        assert!(!filter("example.com").matches(Tab::Dead, &action));
        assert!(!filter("crm.example.com").matches(Tab::Retrying, &action));
        let fields = HashMap::from([("host".to_owned(), "<script>".to_owned())]);
        assert!(Filter::parse(&fields).is_err());
    }
}
