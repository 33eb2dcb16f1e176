//! The Events page: stored events, filtered (recipient or `@domain`, kind, source, time),
//! newest first, refreshing itself; and one event in detail (its normalized fields, the
//! provider's JSON, what each rule did and what came of it).
//!
//! The filter is parsed by the same functions as `GET /api/events`
//! ([`crate::api::events::parse_filter`]) and reads one bounded page from the store: the
//! recipient index for an address, a scan of at most `MAX_SCAN` entry heads otherwise.
//! The pieces the Recipient page shares (the events table, the outcome of rules'
//! actions) live here too.

use std::collections::{HashMap, HashSet};

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::header::VARY;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use maud::{Markup, html};

use super::layout::{self, Nav, UiError};
use crate::api::events::{self as api_events, EvaluationState, EventsParams};
use crate::api::{ApiError, AppState};
use crate::event::{BounceClass, Event, EventId, EventKind};
use crate::rules::{Action, QueuedAction};
use crate::store::events::Consequences;
use crate::store::outbox::OutboxStatus;
use crate::store::suppressions::Suppression;
use crate::store::{Store, StoreError};

/// Path of the page.
const PATH: &str = "/ui/events";
/// Id of the filter form (htmx names it in `HX-Trigger`).
const FORM_ID: &str = "event-filters";
/// Header in which htmx names the element that made the request.
const HX_TRIGGER: &str = "hx-trigger";
/// Most outbox, dead-letter and alert entries read to find what events caused.
pub(crate) const MAX_CONSEQUENCE_SCAN: usize = 2_000;
/// Longest subject or campaign shown in a table cell.
const MAX_CELL_CHARS: usize = 80;

/// Routes of this page.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/events", get(list))
        .route("/events/{id}", get(detail))
}

// ---------------------------------------------------------------------------------------
// The list.

async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Result<Query<EventsParams>, QueryRejection>,
) -> Result<Response, UiError> {
    let params = params
        .map_err(|rejection| UiError::bad_request(rejection.body_text()))?
        .0
        .without_blanks();
    let htmx = layout::is_htmx(&headers);
    let from_form = headers
        .get(HX_TRIGGER)
        .is_some_and(|trigger| trigger == FORM_ID);
    let sources: Vec<String> = state
        .ingestor
        .sources()
        .all()
        .iter()
        .map(|source| source.name.clone())
        .collect();
    // An empty range is an empty answer in the API; in a form it is a slip worth saying.
    let parsed = api_events::parse_filter(&params, parse_time).and_then(|filter| {
        match (filter.query.since, filter.query.until) {
            (Some(since), Some(until)) if since > until => Err(ApiError::bad_request(
                "bad_time",
                "“Received since” must be before “Received before”",
            )),
            _ => Ok(filter),
        }
    });
    let (status, results, shown) = match parsed {
        Err(error) => (
            StatusCode::BAD_REQUEST,
            html! { p .notice.bad role="alert" data-announce=(error.message()) { (error.message()) } },
            FormValues::raw(&params),
        ),
        Ok(filter) => {
            let store = state.store.clone();
            let query = filter.query.clone();
            let page = crate::api::blocking(move || filter.page(&store)).await?;
            let results = results(&params, &query, page, from_form);
            (StatusCode::OK, results, FormValues::parsed(&params, &query))
        }
    };
    // htmx does not swap error answers: a bad filter is shown in place, as a 200.
    if htmx {
        return Ok(([(VARY, "HX-Request")], results).into_response());
    }
    let body = html! {
        (filter_form(&shown, &sources))
        div #results { (results) }
    };
    Ok((
        status,
        [(VARY, "HX-Request")],
        layout::page(&state, Nav::Events, "Events", body),
    )
        .into_response())
}

/// Reads `since` / `until`: what the API takes (RFC 3339, Unix seconds), or the value of
/// a `datetime-local` or `date` input, which has no zone: taken as UTC (the form says so).
pub(crate) fn parse_time(name: &str, text: &str) -> Result<Timestamp, ApiError> {
    let text = text.trim();
    if let Ok(at) = api_events::parse_time(name, text) {
        return Ok(at);
    }
    let civil = text.parse::<jiff::civil::DateTime>().or_else(|_| {
        text.parse::<jiff::civil::Date>()
            .map(|date| date.to_datetime(jiff::civil::Time::midnight()))
    });
    civil
        .ok()
        .and_then(|at| at.to_zoned(TimeZone::UTC).ok())
        .map(|zoned| zoned.timestamp())
        .ok_or_else(|| {
            ApiError::bad_request(
                "bad_time",
                format!("{name}: expected a date and time in UTC such as 2026-01-02T03:04, a date such as 2026-01-02, or an RFC 3339 time"),
            )
        })
}

/// What the filter form shows in its fields.
struct FormValues {
    recipient: String,
    kind: String,
    source: String,
    since: String,
    until: String,
    limit: String,
}

impl FormValues {
    /// The values as sent (a filter that did not parse).
    fn raw(params: &EventsParams) -> FormValues {
        let text = |value: &Option<String>| value.clone().unwrap_or_default();
        FormValues {
            recipient: text(&params.recipient),
            kind: text(&params.kind),
            source: text(&params.source),
            since: text(&params.since),
            until: text(&params.until),
            limit: text(&params.limit),
        }
    }

    /// The values of a parsed filter; times in the form a `datetime-local` input takes.
    fn parsed(params: &EventsParams, query: &crate::store::EventQuery) -> FormValues {
        let local = |at: Option<Timestamp>| {
            at.map(|at| at.strftime("%Y-%m-%dT%H:%M:%S").to_string())
                .unwrap_or_default()
        };
        FormValues {
            since: local(query.since),
            until: local(query.until),
            ..FormValues::raw(params)
        }
    }
}

fn filter_form(values: &FormValues, sources: &[String]) -> Markup {
    let mut sources = sources.to_vec();
    if !values.source.is_empty() && !sources.contains(&values.source) {
        // A source no longer configured still has its stored events.
        sources.push(values.source.clone());
    }
    html! {
        form .filters #(FORM_ID) role="search" aria-label="Filter events" method="get"
            action=(PATH) hx-get=(PATH) hx-target="#results" hx-push-url="true" {
            div {
                label for="f-recipient" { "Recipient" }
                input #f-recipient type="text" name="recipient" value=(values.recipient)
                    placeholder="jane@example.com or @example.com" autocomplete="off"
                    aria-describedby="filter-help";
            }
            div {
                label for="f-kind" { "Kind" }
                select #f-kind name="kind" {
                    option value="" { "Any kind" }
                    @for kind in EventKind::ALL {
                        option value=(kind.as_str()) selected[values.kind == kind.as_str()] {
                            (kind.as_str().replace('_', " "))
                        }
                    }
                }
            }
            div {
                label for="f-source" { "Source" }
                select #f-source name="source" {
                    option value="" { "Any source" }
                    @for source in &sources {
                        option value=(source) selected[&values.source == source] { (source) }
                    }
                }
            }
            div {
                label for="f-since" { "Received since (UTC)" }
                input #f-since type="datetime-local" step="1" name="since" value=(values.since);
            }
            div {
                label for="f-until" { "Received before (UTC)" }
                input #f-until type="datetime-local" step="1" name="until" value=(values.until);
            }
            @if !values.limit.is_empty() {
                input type="hidden" name="limit" value=(values.limit);
            }
            div .actions {
                button type="submit" { "Filter" }
                a .button.secondary href=(PATH) { "Clear" }
            }
        }
        p #filter-help .muted .help {
            "A recipient is one exact address, or " code { "@domain" } " for every address at a domain. "
            "Times are UTC."
        }
    }
}

/// The results region: live stamp, table, pager.
fn results(
    params: &EventsParams,
    query: &crate::store::EventQuery,
    page: crate::store::EventPage,
    announce: bool,
) -> Markup {
    let link = |cursor: Option<String>| {
        layout::url(
            PATH,
            &[
                ("recipient", params.recipient.as_deref().unwrap_or("")),
                ("kind", params.kind.as_deref().unwrap_or("")),
                ("source", params.source.as_deref().unwrap_or("")),
                ("since", params.since.as_deref().unwrap_or("")),
                ("until", params.until.as_deref().unwrap_or("")),
                ("limit", params.limit.as_deref().unwrap_or("")),
                ("cursor", cursor.as_deref().unwrap_or("")),
            ],
        )
    };
    let first_page = query.before.is_none();
    let count = page.events.len();
    let said = match count {
        0 => "No events match.".to_owned(),
        1 => "1 event shown.".to_owned(),
        n => format!("{n} events shown."),
    };
    let next = page.next_cursor.map(|id| link(Some(id.to_string())));
    html! {
        @if first_page {
            // The first page refreshes itself; older pages stay as they are.
            div #events-live hx-get=(link(None)) hx-trigger="every 10s" hx-target="#results" {}
            (layout::updated_stamp(Timestamp::now()))
        }
        @if announce {
            p .muted.count data-announce=(said) { (said) }
        } @else {
            p .muted.count { (said) }
        }
        @if page.events.is_empty() {
            @if next.is_some() {
                (layout::empty("No match among the most recent events looked at; older ones may match."))
            } @else {
                (layout::empty("No events match this filter."))
            }
        } @else {
            (events_table(&page.events, true, &HashMap::new()))
        }
        (layout::pager(next))
    }
}

/// The kind of an event as a label, with the class of a bounce (hard or soft) in words.
pub(crate) fn kind_cell(event: &Event) -> Markup {
    html! {
        (layout::kind_label(event.kind))
        @match event.bounce_class {
            Some(BounceClass::Hard) => { " " span .label.bad { "hard" } }
            Some(BounceClass::Soft) => { " " span .label.warn { "soft" } }
            Some(BounceClass::Undetermined) => { " " span .label { "undetermined" } }
            None => {}
        }
    }
}

/// What an event is about: its subject or campaign, and the provider's name for it.
fn about(event: &Event) -> Markup {
    let headline = event
        .subject
        .as_deref()
        .or(event.campaign.as_deref())
        .map(|text| shorten(text, MAX_CELL_CHARS));
    html! {
        @if let Some(headline) = headline {
            span .about { (headline) }
            br;
        }
        span .muted.mono { (shorten(&event.provider_event, MAX_CELL_CHARS)) }
    }
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut short: String = text.chars().take(max - 1).collect();
    short.push('…');
    short
}

/// A table of events; `recipients` shows the recipient column (the Recipient page leaves
/// it out), `rules` a short word on what the rules did with each (when given).
pub(crate) fn events_table(
    events: &[Event],
    recipients: bool,
    rules: &HashMap<EventId, Markup>,
) -> Markup {
    html! {
        div .table-wrap {
            table .events {
                caption .visually-hidden { "Events, newest first" }
                thead {
                    tr {
                        th scope="col" { "Received" }
                        th scope="col" { "Kind" }
                        @if recipients { th scope="col" { "Recipient" } }
                        th scope="col" { "Source" }
                        th scope="col" { "About" }
                        @if !rules.is_empty() { th scope="col" { "Rules" } }
                        th scope="col" { "Event" }
                    }
                }
                tbody {
                    @for event in events {
                        tr {
                            td .when { (layout::time(event.received_at)) }
                            td { (kind_cell(event)) }
                            @if recipients { td { (layout::recipient_link(event.recipient.as_str())) } }
                            td { (event.source) }
                            td { (about(event)) }
                            @if !rules.is_empty() {
                                td { @if let Some(id) = event.id { @if let Some(said) = rules.get(&id) { (said) } } }
                            }
                            td { @if let Some(id) = event.id { (layout::event_link(id)) } }
                        }
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// What rules did with events, and what came of it (shared with the Recipient page).

/// The evaluations of some events, what their actions left in the store, and the current
/// suppression entry of every address they suppressed or unsuppressed.
pub(crate) struct Outcomes {
    /// Evaluation (or pending state) per event.
    pub(crate) evaluations: HashMap<EventId, EvaluationState>,
    /// Queued and dead actions and alerts of these events.
    pub(crate) consequences: Consequences,
    /// Current entry of each address an action named.
    pub(crate) suppressions: HashMap<String, Option<Suppression>>,
}

/// Reads the [`Outcomes`] of `ids`: two point reads per event, one bounded forward scan
/// of the outbox, dead letters and alert log, one point read per suppressed address.
pub(crate) fn load_outcomes(store: &Store, ids: &[EventId]) -> Result<Outcomes, StoreError> {
    let mut evaluations = HashMap::with_capacity(ids.len());
    let mut addresses = HashSet::new();
    for &id in ids {
        let state = api_events::evaluation_state(store, id)?;
        for outcome in state.evaluation.iter().flat_map(|e| &e.rules) {
            for action in &outcome.actions {
                if let Action::Suppress { address, .. } | Action::Unsuppress { address, .. } =
                    action
                {
                    addresses.insert(address.clone());
                }
            }
        }
        evaluations.insert(id, state);
    }
    let consequences = store.consequences(ids, MAX_CONSEQUENCE_SCAN)?;
    let mut suppressions = HashMap::with_capacity(addresses.len());
    for address in addresses {
        let entry = store.suppression(&address)?;
        suppressions.insert(address, entry);
    }
    Ok(Outcomes {
        evaluations,
        consequences,
        suppressions,
    })
}

/// One action a rule asked for, with what came of it.
pub(crate) struct ActionRow<'a> {
    /// The event it was asked for.
    pub(crate) event: EventId,
    /// The rule that asked.
    pub(crate) rule: &'a str,
    /// The action.
    pub(crate) action: &'a Action,
    /// What came of it, in words.
    pub(crate) state: Markup,
}

impl Outcomes {
    /// The actions the rules asked for on `ids` (in that order), each with its state.
    pub(crate) fn action_rows(&self, ids: &[EventId]) -> Vec<ActionRow<'_>> {
        let mut used_actions = HashSet::new();
        let mut used_alerts = HashSet::new();
        let mut rows = Vec::new();
        for &id in ids {
            let Some(evaluation) = self
                .evaluations
                .get(&id)
                .and_then(|s| s.evaluation.as_ref())
            else {
                continue;
            };
            for outcome in evaluation.rules.iter().filter(|o| o.error.is_none()) {
                for action in &outcome.actions {
                    let queued =
                        self.consequences
                            .actions
                            .iter()
                            .enumerate()
                            .find(|(i, (q, _))| {
                                !used_actions.contains(i)
                                    && q.event_id == Some(id)
                                    && q.rule == outcome.rule
                                    && &q.action == action
                            });
                    let state = if let Some((index, (queued, status))) = queued {
                        used_actions.insert(index);
                        queued_state(queued, *status)
                    } else {
                        self.done_state(id, &outcome.rule, action, &mut used_alerts)
                    };
                    rows.push(ActionRow {
                        event: id,
                        rule: &outcome.rule,
                        action,
                        state,
                    });
                }
            }
        }
        rows
    }

    /// The state of an action no longer in the outbox.
    fn done_state(
        &self,
        id: EventId,
        rule: &str,
        action: &Action,
        used_alerts: &mut HashSet<usize>,
    ) -> Markup {
        match action {
            Action::Alert { .. } => {
                let logged = self
                    .consequences
                    .alerts
                    .iter()
                    .enumerate()
                    .find(|(i, record)| {
                        !used_alerts.contains(i)
                            && record["event_id"] == serde_json::json!(id)
                            && record["rule"] == rule
                    });
                if let Some((index, record)) = logged {
                    used_alerts.insert(index);
                    let status = record["status"].as_str().unwrap_or("logged");
                    let at = record["at"]
                        .as_str()
                        .and_then(|at| at.parse::<Timestamp>().ok());
                    let class = if status == "sent" {
                        "label good"
                    } else {
                        "label"
                    };
                    return html! {
                        span class=(class) { (status) }
                        @if let Some(at) = at { " " span .muted { (layout::time(at)) } }
                    };
                }
            }
            Action::Suppress { address, .. } | Action::Unsuppress { address, .. } => {
                return match self.suppressions.get(address).and_then(Option::as_ref) {
                    Some(entry) if entry.in_force(Timestamp::now()) => html! {
                        span .label.good { "done" } " "
                        span .muted { "suppressed since " (layout::time(entry.created_at)) }
                    },
                    Some(entry) => html! {
                        span .label.good { "done" } " "
                        span .muted { "no longer suppressed (changed " (layout::time(entry.updated_at)) ")" }
                    },
                    None => {
                        html! { span .label.good { "done" } " " span .muted { "no entry now" } }
                    }
                };
            }
            Action::HttpPost { .. } => {}
        }
        if self.consequences.complete {
            html! { span .label.good { "done" } " " span .muted { "no longer queued" } }
        } else {
            html! { span .label { "unknown" } " " span .muted { "not among the queue entries looked at" } }
        }
    }
}

fn queued_state(queued: &QueuedAction, status: OutboxStatus) -> Markup {
    html! {
        @match status {
            OutboxStatus::Pending => { span .label.warn { "queued" } }
            OutboxStatus::Dead => { span .label.bad { "dead letter" } }
        }
        " " span .muted {
            (queued.attempts) @if queued.attempts == 1 { " attempt" } @else { " attempts" }
            @if let Some(next) = queued.next_attempt_at { "; next " (layout::time(next)) }
        }
        @if let Some(error) = &queued.last_error {
            br; span .muted { "Last error: " (shorten(error, 200)) }
        }
    }
}

/// An action in words.
pub(crate) fn action_text(action: &Action) -> Markup {
    match action {
        Action::Suppress {
            address,
            reason,
            ttl_seconds,
        } => html! {
            "Suppress " (layout::recipient_link(address)) ": " (reason)
            @if let Some(ttl) = ttl_seconds { " (for " (ttl) " s)" }
        },
        Action::Unsuppress { address, reason } => html! {
            "Unsuppress " (layout::recipient_link(address)) ": " (reason)
        },
        Action::Alert { subject, .. } => html! { "Alert e-mail: " (subject) },
        Action::HttpPost { url, .. } => html! { "POST " (layout::url_markup(url)) },
    }
}

/// The table of actions rules asked for, with what came of them.
pub(crate) fn actions_table(rows: &[ActionRow<'_>], with_event: bool) -> Markup {
    html! {
        div .table-wrap {
            table .actions-taken {
                caption .visually-hidden { "Actions the rules asked for" }
                thead {
                    tr {
                        @if with_event { th scope="col" { "Event" } }
                        th scope="col" { "Rule" }
                        th scope="col" { "Action" }
                        th scope="col" { "What came of it" }
                    }
                }
                tbody {
                    @for row in rows {
                        tr {
                            @if with_event { td { (layout::event_link(row.event)) } }
                            td .mono { (row.rule) }
                            td { (action_text(row.action)) }
                            td { (row.state) }
                        }
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// One event.

async fn detail(State(state): State<AppState>, Path(id): Path<String>) -> Result<Markup, UiError> {
    let id: EventId = id
        .parse()
        .map_err(|error: crate::event::BadEventId| UiError::bad_request(error.to_string()))?;
    let store = state.store.clone();
    let found = crate::api::blocking(move || {
        let Some(event) = store.event(id)? else {
            return Ok(None);
        };
        let outcomes = load_outcomes(&store, &[id])?;
        Ok(Some((event, outcomes)))
    })
    .await?;
    let Some((event, outcomes)) = found else {
        return Err(UiError::not_found(format!(
            "There is no event {id}: it may have been purged by retention."
        )));
    };
    let title = format!("Event {id}");
    let body = html! {
        p .muted { a href=(PATH) { "← All events" } " · " "Everything about "
            (layout::recipient_link(event.recipient.as_str())) }
        section .panel.story aria-labelledby="h-event" {
            h2 #h-event { "The event" }
            (facts(&event))
        }
        section aria-labelledby="h-rules" {
            h2 #h-rules { "What the rules did" }
            (rules_section(id, &outcomes))
        }
        section aria-labelledby="h-raw" {
            h2 #h-raw { "Raw provider body" }
            p .muted { "The provider's JSON for this one event, as received (indented for reading)." }
            pre .raw { code { (indent_json(event.raw.get())) } }
        }
    };
    Ok(layout::page(&state, Nav::Events, &title, body))
}

fn facts(event: &Event) -> Markup {
    let optional = |name: &'static str, value: Option<String>| (name, value);
    let smtp = [
        event.smtp_code.map(|code| code.to_string()),
        event.smtp_enhanced.clone(),
        event.smtp_response.clone(),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>();
    let more = [
        optional("Reason", event.reason.map(|r| r.as_str().to_owned())),
        optional("SMTP reply", (!smtp.is_empty()).then(|| smtp.join(" "))),
        optional("Subject", event.subject.clone()),
        optional("Sender", event.sender.clone()),
        optional("Campaign", event.campaign.clone()),
        optional("Message id", event.message_id.clone()),
        optional("Provider event id", event.provider_event_id.clone()),
        optional("Link followed", event.click_url.clone()),
        optional("User agent", event.user_agent.clone()),
        optional("IP address", event.ip.clone()),
        optional(
            "Tags",
            (!event.tags.is_empty()).then(|| event.tags.join(", ")),
        ),
    ];
    html! {
        dl .facts {
            dt { "Kind" } dd { (kind_cell(event)) }
            dt { "Recipient" } dd { (layout::recipient_link(event.recipient.as_str())) }
            dt { "Source" } dd { (event.source) " " span .muted { "(" (event.provider) ")" } }
            dt { "Provider's name" } dd .mono { (event.provider_event) }
            dt { "Occurred" } dd {
                @if let Some(at) = event.occurred_at { (layout::time(at)) " " }
                span .muted { "(" (time_quality(event)) ")" }
            }
            dt { "Received" } dd { (layout::time(event.received_at)) }
            @for (name, value) in more {
                @if let Some(value) = value { dt { (name) } dd { (value) } }
            }
            @if !event.warnings.is_empty() {
                dt { "Adapter notes" } dd { ul .plain { @for warning in &event.warnings { li { (warning) } } } }
            }
            @if !event.metadata.is_empty() {
                dt { "Other fields" } dd {
                    pre .metadata { code { (serde_json::to_string_pretty(&event.metadata).unwrap_or_default()) } }
                }
            }
        }
    }
}

fn time_quality(event: &Event) -> &'static str {
    match event.time_quality {
        crate::event::TimeQuality::Exact => "exact time from the provider",
        crate::event::TimeQuality::AssumedTz => "local time, the source's zone assumed",
        crate::event::TimeQuality::Missing => "the provider sent no time",
    }
}

fn rules_section(id: EventId, outcomes: &Outcomes) -> Markup {
    let Some(state) = outcomes.evaluations.get(&id) else {
        return html! {};
    };
    let Some(evaluation) = &state.evaluation else {
        return if state.pending {
            html! { p .notice role="status" { span .label.warn { "waiting" } " The rules have not run on this event yet." } }
        } else {
            html! { p .notice { span .label { "no match" } " No rule matched this event or failed on it." } }
        };
    };
    let rows = outcomes.action_rows(&[id]);
    html! {
        p .muted {
            "Evaluated " (layout::time(evaluation.evaluated_at)) "; "
            (evaluation.ran) @if evaluation.ran == 1 { " rule ran" } @else { " rules ran" }
            ", these matched or failed (the others did nothing):"
        }
        div .table-wrap {
            table {
                caption .visually-hidden { "Rules that matched or failed" }
                thead { tr {
                    th scope="col" { "Rule" }
                    th scope="col" { "Result" }
                    th scope="col" { "Asked for" }
                    th scope="col" { "Tags" }
                } }
                tbody {
                    @for outcome in &evaluation.rules {
                        tr {
                            td .mono { (outcome.rule) }
                            td {
                                @if let Some(error) = &outcome.error {
                                    span .label.bad { "failed" } " " span .error { (error) }
                                    br; span .muted { "Its actions were discarded." }
                                } @else if outcome.matched {
                                    span .label.good { "matched" }
                                } @else {
                                    span .label { "no match" }
                                }
                            }
                            td {
                                @if outcome.actions.is_empty() { span .muted { "nothing" } }
                                @for action in &outcome.actions { div { (action_text(action)) } }
                            }
                            td { (outcome.tags.join(", ")) }
                        }
                    }
                }
            }
        }
        h3 { "Actions taken" }
        @if rows.is_empty() {
            (layout::empty("The rules asked for no action."))
        } @else {
            (actions_table(&rows, false))
        }
    }
}

/// Indents JSON text for reading without re-encoding it: every token stays as the
/// provider sent it (key order, number precision, escapes); only whitespace changes.
pub(crate) fn indent_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 4);
    let mut depth = 0usize;
    let (mut in_string, mut escaped) = (false, false);
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.extend(std::iter::repeat_n("  ", depth));
    };
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                while chars.peek().is_some_and(|next| next.is_whitespace()) {
                    chars.next();
                }
                let close = if c == '{' { '}' } else { ']' };
                out.push(c);
                if chars.peek() == Some(&close) {
                    chars.next();
                    out.push(close);
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_times_are_read_as_utc() {
        let at = |text: &str| parse_time("since", text).unwrap().to_string();
        assert_eq!(at("2026-01-02T03:04"), "2026-01-02T03:04:00Z");
        assert_eq!(at("2026-01-02T03:04:05"), "2026-01-02T03:04:05Z");
        assert_eq!(at("2026-01-02"), "2026-01-02T00:00:00Z");
        assert_eq!(at("2026-01-02T03:04:05+01:00"), "2026-01-02T02:04:05Z");
        assert_eq!(at("1767323045"), "2026-01-02T03:04:05Z");
        let error = parse_time("until", "yesterday").unwrap_err();
        assert!(
            error.message().starts_with("until: "),
            "{}",
            error.message()
        );
    }

    #[test]
    fn json_is_indented_without_changing_a_token() {
        let raw = r#"{"b":1.000000000000000000001,"a":[],"s":"x, {y}: \"z\"","n":{"k":[1,2]}}"#;
        let indented = indent_json(raw);
        assert_eq!(
            indented,
            "{\n  \"b\": 1.000000000000000000001,\n  \"a\": [],\n  \"s\": \"x, {y}: \\\"z\\\"\",\n  \"n\": {\n    \"k\": [\n      1,\n      2\n    ]\n  }\n}"
        );
        let strip = |text: &str| text.split_whitespace().collect::<String>();
        assert_eq!(strip(&indented.replace(": ", ":")), strip(raw));
    }

    #[test]
    fn long_text_is_shortened_on_a_character_boundary() {
        assert_eq!(shorten("héllo", 10), "héllo");
        assert_eq!(shorten("ééééé", 3), "éé…");
    }
}
