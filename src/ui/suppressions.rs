//! The Suppressions page: the suppression list for people. Search by address or domain,
//! filter by reason and state, add by hand, import a file, export what the filter shows;
//! one entry's page ([`entry`]) holds its history and the remove form.
//!
//! - `GET /ui/suppressions?q=&reason=&state=&cursor=`: a bounded page in address order.
//!   `q` is a whole address (one point read, shown in any state) or a domain (`@x.com`: a
//!   prefix scan of the store's domain index); other filters are checked while scanning,
//!   at most [`SCAN_BUDGET`] entries per page, so a rare filter pages on instead of
//!   reading the whole list.
//! - `POST /ui/suppressions` adds (rule `manual`), `POST /ui/suppressions/import` takes a
//!   CSV or JSONL file, `GET /ui/suppressions/export` downloads the current filter: all
//!   three through the API's own validation, import and export code.

pub mod entry;

use axum::Form;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Multipart, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jiff::Timestamp;
use maud::{Markup, html};
use serde::Deserialize;

use super::PREFIX;
use super::layout::{self, Nav, UiError};
use crate::api::suppressions::{
    ExportFormat, ExportWriter, ImportReport, MAX_IMPORT_BYTES, export_response, import_rows,
    manual_request,
};
use crate::api::{AppState, blocking};
use crate::event::EmailAddress;
use crate::store::suppressions::{SuppressOutcome, Suppression};
use crate::store::{Store, StoreError};

/// Entries on one page.
const PAGE: usize = 50;
/// Most entries one page reads while filtering; past it the page ends with a link that
/// continues the search.
pub const SCAN_BUDGET: usize = 2_000;
/// Rejected rows an import notice lists (the count has them all).
const REJECTED_SHOWN: usize = 10;
/// Recorded as who removed an entry through the console.
pub const CONSOLE: &str = "console";

/// Reasons the add form offers; `other` takes its text from the note.
const REASONS: [&str; 6] = [
    "requested by the recipient",
    "unsubscribed",
    "spam complaint",
    "hard bounce",
    "invalid address",
    "other",
];

/// Expiry choices of the add form: value (days, empty for never) and label.
const EXPIRIES: [(&str, &str); 5] = [
    ("", "Never (permanent)"),
    ("7", "In 7 days"),
    ("30", "In 30 days"),
    ("90", "In 90 days"),
    ("365", "In a year"),
];

/// Routes of this page.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/suppressions", get(list).post(add))
        .route("/suppressions/export", get(export))
        .route(
            "/suppressions/import",
            // Room for the multipart framing around a file of the API's largest import.
            post(import).layer(DefaultBodyLimit::max(MAX_IMPORT_BYTES + 64 * 1024)),
        )
        .route("/suppressions/entry", get(entry::show))
        .route("/suppressions/remove", post(entry::remove))
}

/// URL of the page of one entry (its history and remove form).
pub fn entry_url(address: &str) -> String {
    layout::url(
        &format!("{PREFIX}/suppressions/entry"),
        &[("address", address)],
    )
}

// ---------------------------------------------------------------------------------------
// Filters.

/// Query string of the list and of its export.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct ListQuery {
    q: Option<String>,
    reason: Option<String>,
    state: Option<String>,
    cursor: Option<String>,
    format: Option<String>,
}

/// What the search box asks for.
#[derive(Debug, Clone, PartialEq)]
enum Search {
    All,
    /// One address, normalized.
    Address(EmailAddress),
    /// Every address of a domain, lower-cased.
    Domain(String),
}

impl Search {
    fn parse(text: &str) -> Result<Search, String> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(Search::All);
        }
        if let Some(domain) = text
            .strip_prefix('@')
            .or((!text.contains('@')).then_some(text))
        {
            let domain = domain.trim_end_matches('.').to_lowercase();
            let fits = !domain.is_empty()
                && domain.contains('.')
                && !domain.contains(['@', ' ', '/', '<', '>']);
            if !fits {
                return Err(format!(
                    "Search takes a whole address (jane@example.com) or a domain \
                     (@example.com); `{text}` is neither."
                ));
            }
            return Ok(Search::Domain(domain));
        }
        EmailAddress::parse(text)
            .map(Search::Address)
            .map_err(|error| format!("`{text}` is not an address: {error}."))
    }
}

/// Reasons, grouped for the filter: the reason text is free, so it is read for its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReasonClass {
    Complaint,
    Bounce,
    Unsubscribe,
    Other,
}

impl ReasonClass {
    const ALL: [ReasonClass; 4] = [
        ReasonClass::Complaint,
        ReasonClass::Bounce,
        ReasonClass::Unsubscribe,
        ReasonClass::Other,
    ];

    fn name(self) -> &'static str {
        match self {
            ReasonClass::Complaint => "complaint",
            ReasonClass::Bounce => "bounce",
            ReasonClass::Unsubscribe => "unsubscribe",
            ReasonClass::Other => "other",
        }
    }

    fn label(self) -> &'static str {
        match self {
            ReasonClass::Complaint => "Spam complaint",
            ReasonClass::Bounce => "Bounce",
            ReasonClass::Unsubscribe => "Unsubscribe",
            ReasonClass::Other => "Other",
        }
    }

    fn parse(text: &str) -> Result<Option<ReasonClass>, String> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(None);
        }
        ReasonClass::ALL
            .into_iter()
            .find(|class| class.name() == text)
            .map(Some)
            .ok_or_else(|| {
                format!("Unknown reason `{text}`: choose complaint, bounce, unsubscribe or other.")
            })
    }

    /// The class of an entry: complaints by their reason or by the rule that made them.
    fn of(entry: &Suppression) -> ReasonClass {
        let reason = entry.reason.to_lowercase();
        if reason.contains("complaint") || reason.contains("spam") || entry.rule == "complaint" {
            ReasonClass::Complaint
        } else if reason.contains("bounce") {
            ReasonClass::Bounce
        } else if reason.contains("unsub") || entry.rule == "subscription" {
            ReasonClass::Unsubscribe
        } else {
            ReasonClass::Other
        }
    }
}

/// Returns whether removing `entry` needs the second confirmation.
pub fn is_complaint(entry: &Suppression) -> bool {
    ReasonClass::of(entry) == ReasonClass::Complaint
}

/// Which entries by their state; the default is every entry in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StateFilter {
    InForce,
    Permanent,
    Expiring,
    Expired,
    Removed,
}

impl StateFilter {
    const ALL: [StateFilter; 5] = [
        StateFilter::InForce,
        StateFilter::Permanent,
        StateFilter::Expiring,
        StateFilter::Expired,
        StateFilter::Removed,
    ];

    fn name(self) -> &'static str {
        match self {
            StateFilter::InForce => "",
            StateFilter::Permanent => "permanent",
            StateFilter::Expiring => "expiring",
            StateFilter::Expired => "expired",
            StateFilter::Removed => "removed",
        }
    }

    fn label(self) -> &'static str {
        match self {
            StateFilter::InForce => "In force (any expiry)",
            StateFilter::Permanent => "In force, permanent",
            StateFilter::Expiring => "In force, expires",
            StateFilter::Expired => "Expired",
            StateFilter::Removed => "Removed",
        }
    }

    fn parse(text: &str) -> Result<StateFilter, String> {
        let text = text.trim();
        StateFilter::ALL
            .into_iter()
            .find(|state| state.name() == text)
            .ok_or_else(|| {
                format!("Unknown state `{text}`: choose permanent, expiring, expired or removed.")
            })
    }

    fn keeps(self, entry: &Suppression, now: Timestamp) -> bool {
        let in_force = entry.in_force(now);
        match self {
            StateFilter::InForce => in_force,
            StateFilter::Permanent => in_force && entry.expires_at.is_none(),
            StateFilter::Expiring => in_force && entry.expires_at.is_some(),
            StateFilter::Expired => entry.active && !in_force,
            StateFilter::Removed => !entry.active,
        }
    }
}

/// A checked query: what to list.
#[derive(Debug, Clone)]
struct Filter {
    search: Search,
    reason: Option<ReasonClass>,
    state: StateFilter,
    /// The query's texts, to refill the form and build links.
    q: String,
}

impl Filter {
    fn parse(query: &ListQuery) -> Result<Filter, String> {
        let text = |value: &Option<String>| value.as_deref().unwrap_or("").trim().to_owned();
        Ok(Filter {
            search: Search::parse(&text(&query.q))?,
            reason: ReasonClass::parse(&text(&query.reason))?,
            state: StateFilter::parse(&text(&query.state))?,
            q: text(&query.q),
        })
    }

    /// The filter of a page that shows one address.
    fn address(address: &EmailAddress) -> Filter {
        Filter {
            search: Search::Address(address.clone()),
            reason: None,
            state: StateFilter::InForce,
            q: address.as_str().to_owned(),
        }
    }

    /// Whether the entry is listed. An address searched for is shown in any state.
    fn keeps(&self, entry: &Suppression, now: Timestamp) -> bool {
        let state = matches!(self.search, Search::Address(_)) || self.state.keeps(entry, now);
        state
            && self
                .reason
                .is_none_or(|class| ReasonClass::of(entry) == class)
    }

    fn params(&self) -> Vec<(&'static str, String)> {
        vec![
            ("q", self.q.clone()),
            (
                "reason",
                self.reason.map(ReasonClass::name).unwrap_or("").to_owned(),
            ),
            ("state", self.state.name().to_owned()),
        ]
    }

    fn url(&self, path: &str, extra: &[(&'static str, &str)]) -> String {
        let params = self.params();
        let mut all: Vec<(&str, &str)> = params.iter().map(|(n, v)| (*n, v.as_str())).collect();
        all.extend_from_slice(extra);
        layout::url(path, &all)
    }

    /// Visits the candidates of the search in address order after `cursor`, until
    /// `visit` returns false: each address read with its entry, `None` for a key of the
    /// domain index whose entry is gone (it was still read, so it counts).
    fn scan(
        &self,
        store: &Store,
        cursor: Option<&str>,
        visit: impl FnMut(&str, Option<Suppression>) -> bool,
    ) -> Result<(), StoreError> {
        let mut visit = visit;
        match &self.search {
            Search::All => store.scan_suppressions(cursor, |entry| {
                let address = entry.address.clone();
                visit(&address, Some(entry))
            }),
            Search::Domain(domain) => store.scan_suppressions_in_domain(domain, cursor, visit),
            Search::Address(address) => {
                if cursor.is_none() {
                    if let Some(entry) = store.suppression(address.as_str())? {
                        visit(address.as_str(), Some(entry));
                    }
                }
                Ok(())
            }
        }
    }
}

fn checked<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, UiError> {
    query
        .map(|Query(query)| query)
        .map_err(|rejection| UiError::bad_request(format!("Bad filter: {}", rejection.body_text())))
}

// ---------------------------------------------------------------------------------------
// The list.

/// One page of the list.
struct Listing {
    entries: Vec<Suppression>,
    /// Cursor of the next page, if any.
    next: Option<String>,
    /// Whether the page stopped at the scan budget rather than at a full page.
    budget_hit: bool,
}

fn read_page(store: &Store, filter: &Filter, cursor: Option<&str>) -> Result<Listing, StoreError> {
    let now = Timestamp::now();
    let mut entries = Vec::with_capacity(PAGE + 1);
    let mut scanned = 0;
    let mut last = None;
    filter.scan(store, cursor, |address, entry| {
        // Every key read counts, kept or not, even one whose entry is gone.
        scanned += 1;
        last = Some(address.to_owned());
        if let Some(entry) = entry.filter(|entry| filter.keeps(entry, now)) {
            entries.push(entry);
        }
        entries.len() <= PAGE && scanned < SCAN_BUDGET
    })?;
    if entries.len() > PAGE {
        entries.truncate(PAGE);
        let next = entries.last().map(|entry| entry.address.clone());
        return Ok(Listing {
            entries,
            next,
            budget_hit: false,
        });
    }
    if scanned >= SCAN_BUDGET {
        // Continue after the last entry read, kept or not.
        return Ok(Listing {
            entries,
            next: last,
            budget_hit: true,
        });
    }
    Ok(Listing {
        entries,
        next: None,
        budget_hit: false,
    })
}

/// What the add form shows: its values and its error.
#[derive(Debug, Default, Deserialize)]
pub struct AddForm {
    #[serde(default)]
    address: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    note: String,
    #[serde(default)]
    expires: String,
}

/// A message at the top of the page.
enum Notice {
    Good(Markup),
    Bad(Markup),
}

/// Everything a render of the list page needs beyond the listing.
#[derive(Default)]
struct Extras {
    notice: Option<Notice>,
    add: AddForm,
    add_error: Option<String>,
    import_error: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, UiError> {
    let query = checked(query)?;
    let filter = Filter::parse(&query).map_err(UiError::bad_request)?;
    render_list(
        &state,
        filter,
        query.cursor,
        Extras::default(),
        StatusCode::OK,
    )
    .await
}

async fn render_list(
    state: &AppState,
    filter: Filter,
    cursor: Option<String>,
    extras: Extras,
    status: StatusCode,
) -> Result<Response, UiError> {
    let store = state.store.clone();
    let scan_filter = filter.clone();
    let cursor = cursor.filter(|c| !c.trim().is_empty());
    let page_cursor = cursor.clone();
    let listing = blocking(move || read_page(&store, &scan_filter, page_cursor.as_deref())).await?;
    let body = html! {
        @if let Some(notice) = &extras.notice {
            @match notice {
                Notice::Good(text) => div .notice.good.sup-notice role="status" { (text) },
                Notice::Bad(text) => div .notice.bad.sup-notice role="alert" { (text) },
            }
        }
        div .sup-tools {
            (add_form(&extras.add, extras.add_error.as_deref()))
            (import_form(extras.import_error.as_deref()))
        }
        (filter_form(&filter))
        (results(&filter, &listing, cursor.is_some()))
    };
    Ok((
        status,
        layout::page(state, Nav::Suppressions, "Suppressions", body),
    )
        .into_response())
}

fn filter_form(filter: &Filter) -> Markup {
    let action = format!("{PREFIX}/suppressions");
    html! {
        // A plain GET: a bad filter answers a 400 page, which htmx would not swap in.
        form .filters method="get" action=(action) role="search" {
            div {
                label for="sup-q" { "Address or @domain" }
                input #sup-q type="search" name="q" value=(filter.q)
                    placeholder="jane@example.com or @example.com" size="30";
            }
            div {
                label for="sup-reason" { "Reason" }
                select #sup-reason name="reason" {
                    option value="" selected[filter.reason.is_none()] { "Any reason" }
                    @for class in ReasonClass::ALL {
                        option value=(class.name()) selected[filter.reason == Some(class)] {
                            (class.label())
                        }
                    }
                }
            }
            div {
                label for="sup-state" { "State" }
                select #sup-state name="state" {
                    @for state in StateFilter::ALL {
                        option value=(state.name()) selected[filter.state == state] {
                            (state.label())
                        }
                    }
                }
            }
            div {
                button type="submit" { "Search" }
            }
            div {
                a .sup-clear href=(action) { "Clear" }
            }
        }
    }
}

fn results(filter: &Filter, listing: &Listing, paged: bool) -> Markup {
    let path = format!("{PREFIX}/suppressions");
    let export = format!("{PREFIX}/suppressions/export");
    let shown = listing.entries.len();
    let said = match shown {
        0 => "No suppressions match".to_owned(),
        1 => "1 suppression shown".to_owned(),
        n => format!("{n} suppressions shown"),
    };
    html! {
        section #results aria-labelledby="sup-results" {
            div .sup-head {
                h2 #sup-results { "Entries " span .muted.sup-count { "· " (said) } }
                p .sup-export {
                    "Export this filter: "
                    a href=(filter.url(&export, &[("format", "csv")])) download { "CSV" }
                    " · "
                    a href=(filter.url(&export, &[("format", "jsonl")])) download { "JSONL" }
                }
            }
            @if let Search::Address(address) = &filter.search {
                p .muted {
                    "An exact address is shown in any state. "
                    a href=(entry_url(address.as_str())) { "History of " (address) }
                }
            }
            @if listing.entries.is_empty() {
                (layout::empty(if listing.budget_hit {
                    "Nothing matched among the entries searched so far."
                } else if paged {
                    "No more entries match this filter."
                } else {
                    "No suppressions match this filter."
                }))
            } @else {
                div .table-wrap.sup-table {
                    table {
                        caption .visually-hidden { "Suppressions, in address order" }
                        thead {
                            tr {
                                th scope="col" { "Address" }
                                th scope="col" { "Reason" }
                                th scope="col" { "Added by" }
                                th scope="col" { "Added" }
                                th scope="col" { "Expires" }
                                th scope="col" { "State" }
                                th scope="col" { span .visually-hidden { "History" } }
                            }
                        }
                        tbody {
                            @for entry in &listing.entries {
                                (row(entry))
                            }
                        }
                    }
                }
            }
            @if let Some(next) = &listing.next {
                nav .pager aria-label="Pages" {
                    @if listing.budget_hit {
                        span .muted {
                            "Searched " (SCAN_BUDGET) " entries. "
                        }
                        a href=(filter.url(&path, &[("cursor", next)])) rel="next" {
                            "Keep searching →"
                        }
                    } @else {
                        a href=(filter.url(&path, &[("cursor", next)])) rel="next" {
                            "Next page →"
                        }
                    }
                }
            }
        }
    }
}

/// The reason of an entry as a label: its own words, tinted by its class.
pub fn reason_label(entry: &Suppression) -> Markup {
    let tint = match ReasonClass::of(entry) {
        ReasonClass::Complaint => "label bad",
        ReasonClass::Bounce => "label warn",
        ReasonClass::Unsubscribe | ReasonClass::Other => "label",
    };
    html! { span class=(tint) { (entry.reason) } }
}

/// The state of an entry in words.
pub fn state_label(entry: &Suppression, now: Timestamp) -> Markup {
    if entry.in_force(now) {
        html! { span .label.bad { "suppressed" } }
    } else if entry.active {
        html! { span .label { "expired" } }
    } else {
        html! { span .label.good { "removed" } }
    }
}

/// Who or what added an entry: its rule, its source and the event that caused it.
pub fn added_by(entry: &Suppression) -> Markup {
    html! {
        span .mono { (entry.rule) }
        @if let Some(source) = &entry.source {
            " " span .muted { "via " (source) }
        }
        @if let Some(id) = entry.event_id {
            br;
            (layout::event_link(id))
        }
    }
}

/// An expiry for people.
pub fn expiry(entry: &Suppression) -> Markup {
    match entry.expires_at {
        None => html! { span .muted { "never" } },
        Some(at) => layout::time(at),
    }
}

fn row(entry: &Suppression) -> Markup {
    let now = Timestamp::now();
    html! {
        tr {
            td { (layout::recipient_link(&entry.address)) }
            td { (reason_label(entry)) }
            td { (added_by(entry)) }
            td { (layout::time(entry.created_at)) }
            td { (expiry(entry)) }
            td { (state_label(entry, now)) }
            td {
                a href=(entry_url(&entry.address)) {
                    "History"
                    span .visually-hidden { " of " (entry.address) }
                    @if entry.in_force(now) {
                        " & remove"
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Add.

fn add_form(form: &AddForm, error: Option<&str>) -> Markup {
    let invalid = error.is_some().then_some("true");
    html! {
        details .panel.sup-tool open[error.is_some()] {
            summary { h2 #sup-add { "Add a suppression" } }
            form method="post" action={ (PREFIX) "/suppressions" } .sup-form {
                div .field {
                    label for="add-address" { "Address" }
                    input #add-address type="email" name="address" value=(form.address)
                        required autocomplete="off" aria-invalid=[invalid]
                        aria-describedby=[error.map(|_| "add-error")];
                }
                div .field {
                    label for="add-reason" { "Reason" }
                    select #add-reason name="reason" {
                        @for reason in REASONS {
                            option value=(reason) selected[form.reason == reason] { (reason) }
                        }
                    }
                }
                div .field {
                    label for="add-note" { "Note (required for “other”)" }
                    input #add-note type="text" name="note" value=(form.note) maxlength="500";
                }
                div .field {
                    label for="add-expires" { "Expires" }
                    select #add-expires name="expires" {
                        @for (value, label) in EXPIRIES {
                            option value=(value) selected[form.expires == value] { (label) }
                        }
                    }
                }
                @if let Some(error) = error {
                    p #add-error .error role="alert" { (error) }
                }
                div { button type="submit" { "Suppress" } }
            }
        }
    }
}

/// Checks the add form; returns the address, reason text and time to live.
fn check_add(form: &AddForm) -> Result<(EmailAddress, String, Option<u64>), String> {
    let address = EmailAddress::parse(&form.address)
        .map_err(|error| format!("`{}` is not an address: {error}.", form.address.trim()))?;
    let choice = form.reason.trim();
    if !REASONS.contains(&choice) {
        return Err("Choose a reason from the list.".to_owned());
    }
    let note = form.note.trim();
    let reason = match (choice, note.is_empty()) {
        ("other", true) => return Err("Say why in the note when the reason is “other”.".to_owned()),
        ("other", false) => note.to_owned(),
        (choice, true) => choice.to_owned(),
        (choice, false) => format!("{choice}: {note}"),
    };
    let ttl = match form.expires.trim() {
        "" => None,
        days => match EXPIRIES.iter().find(|(value, _)| *value == days) {
            Some(_) => days.parse::<u64>().ok().map(|days| days * 24 * 60 * 60),
            None => return Err("Choose an expiry from the list.".to_owned()),
        },
    };
    Ok((address, reason, ttl))
}

async fn add(
    State(state): State<AppState>,
    form: Result<Form<AddForm>, FormRejection>,
) -> Result<Response, UiError> {
    let Form(form) = form.map_err(|rejection| {
        UiError::bad_request(format!("Bad form: {}", rejection.body_text()))
    })?;
    let now = Timestamp::now();
    let checked = check_add(&form).and_then(|(address, reason, ttl)| {
        manual_request(&address, &reason, None, ttl, now)
            .map(|request| (address, request))
            .map_err(|error| error.message().to_owned())
    });
    let (address, request) = match checked {
        Ok(checked) => checked,
        Err(error) => {
            let extras = Extras {
                add: form,
                add_error: Some(error),
                ..Extras::default()
            };
            let filter = Filter::parse(&ListQuery::default()).map_err(UiError::bad_request)?;
            return render_list(&state, filter, None, extras, StatusCode::BAD_REQUEST).await;
        }
    };
    let store = state.store.clone();
    let (entry, outcome) = blocking(move || store.suppress(&request, now)).await?;
    state.store.flush().await?;
    let until = html! {
        @match entry.expires_at {
            None => { "permanently" }
            Some(at) => { "until " (layout::time(at)) }
        }
    };
    let text = html! {
        @match outcome {
            SuppressOutcome::Added => { "Suppressed " (entry.address) " " (until) "." }
            SuppressOutcome::Extended => { "Extended the suppression of " (entry.address) " " (until) "." }
            SuppressOutcome::Upgraded => { "The suppression of " (entry.address) " is now permanent." }
            SuppressOutcome::Unchanged => {
                (entry.address) " was already suppressed at least as long; nothing changed."
            }
        }
    };
    let extras = Extras {
        notice: Some(Notice::Good(text)),
        ..Extras::default()
    };
    render_list(
        &state,
        Filter::address(&address),
        None,
        extras,
        StatusCode::OK,
    )
    .await
}

// ---------------------------------------------------------------------------------------
// Import and export.

fn import_form(error: Option<&str>) -> Markup {
    html! {
        details .panel.sup-tool open[error.is_some()] {
            summary { h2 #sup-import { "Import a file" } }
            form method="post" action={ (PREFIX) "/suppressions/import" }
                enctype="multipart/form-data" .sup-form {
                div .field {
                    label for="import-file" { "CSV or JSONL file" }
                    input #import-file type="file" name="file" required
                        accept=".csv,.jsonl,.ndjson,.txt,text/csv,application/x-ndjson,text/plain"
                        aria-describedby="import-help";
                }
                p #import-help .muted {
                    "A CSV with a header row naming at least " code { "address" }
                    " (and " code { "reason" } ", " code { "source" } ", "
                    code { "created_at" } ", " code { "expires_at" }
                    "), JSON lines as exported, or one address per line."
                }
                @if let Some(error) = error {
                    p .error role="alert" { (error) }
                }
                div { button type="submit" { "Import" } }
            }
        }
    }
}

/// Reads the `file` part of the import form: its name and bytes (the buffer the upload
/// was read into, not a copy: it may be the API's largest import).
async fn read_file(multipart: &mut Multipart) -> Result<Option<(String, Bytes)>, String> {
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|error| format!("The upload could not be read: {}", error.body_text()))?
    {
        if field.name() != Some("file") {
            continue;
        }
        let name = field.file_name().unwrap_or("the file").to_owned();
        let bytes = field
            .bytes()
            .await
            .map_err(|error| format!("The upload could not be read: {}", error.body_text()))?;
        return Ok(Some((name, bytes)));
    }
    Ok(None)
}

async fn import(
    State(state): State<AppState>,
    mut multipart: Multipart,
) -> Result<Response, UiError> {
    let file = match read_file(&mut multipart).await {
        Ok(Some((name, bytes))) if !bytes.iter().all(u8::is_ascii_whitespace) => Ok((name, bytes)),
        Ok(_) => Err("Choose a CSV or JSONL file with at least one row.".to_owned()),
        Err(error) => Err(error),
    };
    let default = Filter::parse(&ListQuery::default()).map_err(UiError::bad_request)?;
    let (name, bytes) = match file {
        Ok(file) => file,
        Err(error) => {
            let extras = Extras {
                import_error: Some(error),
                ..Extras::default()
            };
            return render_list(&state, default, None, extras, StatusCode::BAD_REQUEST).await;
        }
    };
    let store = state.store.clone();
    // The notice shows only the first rejected rows: the report keeps no more.
    let report = blocking(move || import_rows(&store, &bytes, REJECTED_SHOWN)).await?;
    state.store.flush().await?;
    let extras = Extras {
        notice: Some(import_notice(&name, &report)),
        ..Extras::default()
    };
    render_list(&state, default, None, extras, StatusCode::OK).await
}

fn import_notice(name: &str, report: &ImportReport) -> Notice {
    let text = html! {
        p {
            "Imported " (name) ": " (report.added) " added, " (report.updated) " updated, "
            (report.unchanged) " unchanged, " (report.rejected_count) " rejected."
        }
        @if !report.rejected.is_empty() {
            p { "First rejected rows:" }
            ul .sup-rejected {
                @for rejected in report.rejected.iter().take(REJECTED_SHOWN) {
                    li { "Line " (rejected.line) ": " (rejected.error) }
                }
            }
        }
    };
    if report.rejected_count > 0 && report.added + report.updated + report.unchanged == 0 {
        Notice::Bad(text)
    } else {
        Notice::Good(text)
    }
}

async fn export(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, UiError> {
    let query = checked(query)?;
    let filter = Filter::parse(&query).map_err(UiError::bad_request)?;
    let format = ExportFormat::parse(query.format.as_deref())?;
    let store = state.store.clone();
    let body = blocking(move || {
        let now = Timestamp::now();
        let mut writer = ExportWriter::new(format)?;
        let mut failure = None;
        filter.scan(&store, None, |_, entry| {
            let Some(entry) = entry.filter(|entry| filter.keeps(entry, now)) else {
                return true;
            };
            match writer.push(&entry) {
                Ok(()) => true,
                Err(error) => {
                    failure = Some(error);
                    false
                }
            }
        })?;
        match failure {
            Some(error) => Err(error),
            None => writer.finish(),
        }
    })
    .await?;
    Ok(export_response(format, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;
    use crate::store::suppressions::SuppressRequest;

    #[test]
    fn a_domain_page_counts_index_keys_without_entries_toward_its_budget() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = Store::open(dir.path(), &StoreOptions::default()).expect("the store opens");
        // Keys a former build could leave: more than a page may read, before a live entry.
        for i in 0..SCAN_BUDGET + 5 {
            store.index_without_entry(&format!("gone{i:05}@x.com"));
        }
        let request = SuppressRequest {
            address: "zed@x.com".into(),
            reason: "hard bounce".into(),
            source: None,
            event_id: None,
            rule: "manual".into(),
            expires_at: None,
        };
        store
            .suppress(&request, Timestamp::now())
            .expect("suppressed");
        let query = ListQuery {
            q: Some("@x.com".into()),
            ..ListQuery::default()
        };
        let filter = Filter::parse(&query).expect("a domain filter");
        let first = read_page(&store, &filter, None).expect("a page");
        assert!(first.entries.is_empty());
        assert!(first.budget_hit, "the page stops at its budget");
        let next = first.next.expect("a cursor to go on");
        assert_eq!(next, format!("gone{:05}@x.com", SCAN_BUDGET - 1));
        let second = read_page(&store, &filter, Some(&next)).expect("the next page");
        let found: Vec<&str> = second.entries.iter().map(|e| e.address.as_str()).collect();
        assert_eq!(found, ["zed@x.com"]);
        assert!(!second.budget_hit);
    }

    #[test]
    fn the_search_box_takes_an_address_or_a_domain() {
        assert_eq!(Search::parse(" ").unwrap(), Search::All);
        assert_eq!(
            Search::parse("@Example.COM").unwrap(),
            Search::Domain("example.com".into())
        );
        assert_eq!(
            Search::parse("example.com").unwrap(),
            Search::Domain("example.com".into())
        );
        assert!(matches!(
            Search::parse("Jane@Example.com").unwrap(),
            Search::Address(address) if address.as_str() == "Jane@example.com"
        ));
        assert!(Search::parse("jane").is_err());
        assert!(Search::parse("@").is_err());
    }

    #[test]
    fn the_add_form_needs_a_note_for_other_and_a_listed_expiry() {
        let form = |reason: &str, note: &str, expires: &str| AddForm {
            address: "a@x.com".into(),
            reason: reason.into(),
            note: note.into(),
            expires: expires.into(),
        };
        assert!(check_add(&form("other", "", "")).is_err());
        assert_eq!(check_add(&form("other", "asked", "")).unwrap().1, "asked");
        assert_eq!(
            check_add(&form("hard bounce", "550", "30")).unwrap(),
            (
                EmailAddress::parse("a@x.com").unwrap(),
                "hard bounce: 550".to_owned(),
                Some(30 * 86_400)
            )
        );
        assert!(check_add(&form("hard bounce", "", "12")).is_err());
        assert!(check_add(&form("made up", "", "")).is_err());
    }
}
