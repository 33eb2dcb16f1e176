//! The Rules page: the rules in force with their counters and errors, each rule's source,
//! and **try a draft**, a dry run of an unsaved rule over stored events.
//!
//! - `GET /ui/rules`: every rule with runs, hits, actions and errors since the server
//!   started, when the rule set last changed, and the files that do not compile with the
//!   offending line. Reads the runner's in-memory status, and only the broken files.
//! - `GET /ui/rules/{name}`: one rule's source (read-only, from its file) and a draft
//!   form prefilled with it.
//! - `POST /ui/rules/draft`: compiles the draft with the engine and limits of the rules
//!   in force and runs it over the events of a time range ([`crate::rules::draft`]), on a
//!   blocking thread, one draft at a time. htmx swaps the result in; without script the
//!   page comes back with it. Nothing is saved and nothing is changed: saving a rule means
//!   writing `rules/<name>.rhai`, which the team's own tooling does.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use axum::Form;
use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use jiff::{SignedDuration, Timestamp};
use maud::{Markup, html};
use serde::Deserialize;

use super::PREFIX;
use super::layout::{self, Nav, UiError};
use crate::api::AppState;
use crate::rules::draft::{self, Bounds, DraftReport, Stopped};
use crate::rules::runner::RuleStatus;
use crate::rules::{Action, CompileError};

/// Longest draft accepted, in bytes (rules are short scripts).
const MAX_DRAFT_BYTES: usize = 64 * 1024;
/// Most bytes of a rule file shown on its page.
const MAX_SOURCE_BYTES: u64 = 256 * 1024;
/// What the draft form holds when opened from the list.
const TEMPLATE: &str = "// on: bounce\n\
// A draft: suppress recipients after a hard bounce.\n\
if event.bounce_class == \"hard\" {\n    suppress(event.recipient, \"hard bounce\");\n}\n";

/// Routes of this page.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/rules", get(list))
        // A rule may be called `draft`: GET shows it, as for any other name.
        .route("/rules/draft", get(draft_rule).post(try_draft))
        .route("/rules/{name}", get(source))
}

// ---------------------------------------------------------------------------------------
// The list.

async fn list(State(state): State<AppState>) -> Result<Markup, UiError> {
    let form = DraftForm::template();
    list_page(&state, &form, None).await
}

async fn list_page(
    state: &AppState,
    form: &DraftForm,
    result: Option<Markup>,
) -> Result<Markup, UiError> {
    let statuses = state.rules.status();
    // Only the broken files are read, for the line their error points at.
    let broken: Vec<(String, PathBuf, usize)> = statuses
        .iter()
        .filter_map(|status| {
            let failure = status.compile_failure.as_ref()?;
            Some((status.name.clone(), failure.file.clone(), failure.line?))
        })
        .collect();
    let lines = crate::api::blocking(move || {
        Ok(broken
            .into_iter()
            .filter_map(|(name, file, line)| {
                let text = read_source(&file).ok()?;
                let shown = text.lines().nth(line.checked_sub(1)?)?.to_owned();
                Some((name, shown))
            })
            .collect::<Vec<_>>())
    })
    .await?;
    let line_of = |name: &str| {
        lines
            .iter()
            .find(|(broken, _)| broken == name)
            .map(|(_, line)| line.as_str())
    };
    let failing: Vec<&RuleStatus> = statuses
        .iter()
        .filter(|status| status.compile_error.is_some())
        .collect();
    let interval = state.config.rules.reload_interval_secs;
    let body = html! {
        dl .facts .panel {
            dt { "Rules directory" }
            dd .mono { (state.rules.dir().display()) }
            dt { "Rule set last changed" }
            dd { (layout::time(state.rules.reloaded_at())) }
            dt { "Reloading" }
            dd {
                @if interval == 0 { "off: rules change only at a restart" }
                @else { "the directory is checked every " (interval) " s" }
            }
        }
        @if !failing.is_empty() {
            section .panel .rule-failures aria-labelledby="failures-heading" {
                h2 #failures-heading { "Files that do not compile" }
                @for status in &failing {
                    (failure_block(status, line_of(&status.name)))
                }
            }
        }
        (rules_table(&statuses))
        (draft_section(form, result))
    };
    Ok(layout::page(state, Nav::Rules, "Rules", body))
}

fn rules_table(statuses: &[RuleStatus]) -> Markup {
    html! {
        @if statuses.is_empty() {
            (layout::empty("No rules are loaded: add a .rhai file to the rules directory."))
        } @else {
            div .table-wrap {
                table .rules {
                    caption { "Rules in force (counts since the server started)" }
                    thead {
                        tr {
                            th scope="col" { "Rule" }
                            th scope="col" { "State" }
                            th scope="col" { "Runs on" }
                            th scope="col" { "Loaded" }
                            th scope="col" .num { "Runs" }
                            th scope="col" .num { "Hits" }
                            th scope="col" .num { "Actions" }
                            th scope="col" .num { "Errors" }
                            th scope="col" { "Last error" }
                        }
                    }
                    tbody {
                        @for status in statuses {
                            tr {
                                th scope="row" { a href=(rule_url(&status.name)) { (status.name) } }
                                td { (state_label(status)) }
                                td { (kinds(status)) }
                                td {
                                    @if let Some(at) = status.loaded_at { (layout::time(at)) }
                                    @else { span .muted { "never" } }
                                }
                                td .num { (number(status.runs)) }
                                td .num { (number(status.matches)) }
                                td .num { (number(status.actions)) }
                                td .num { (number(status.errors)) }
                                td .last-error {
                                    @if let Some(error) = &status.last_error { (error) }
                                    @else { span .muted { "none" } }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn state_label(status: &RuleStatus) -> Markup {
    html! {
        @match (&status.compile_error, status.loaded_at) {
            (None, _) => span .label.good { "running" },
            (Some(_), Some(_)) => span .label.warn { "compile error: previous version runs" },
            (Some(_), None) => span .label.bad { "compile error: not running" },
        }
    }
}

fn kinds(status: &RuleStatus) -> Markup {
    html! {
        @if status.loaded_at.is_none() { span .muted { "not known (never compiled)" } }
        @else if status.kinds.is_empty() { span .muted { "every kind" } }
        @else { @for kind in &status.kinds { (layout::kind_label(*kind)) " " } }
    }
}

/// A broken file: where its error is, what it says, and the line it points at.
fn failure_block(status: &RuleStatus, line: Option<&str>) -> Markup {
    let failure = status.compile_failure.as_ref();
    html! {
        div .failure {
            h3 { a href=(rule_url(&status.name)) { (status.name) } " " (state_label(status)) }
            @if let Some(failure) = failure {
                p .notice.bad { (position(failure)) ": " (failure.message) }
                @if let (Some(text), Some(number)) = (line, failure.line) {
                    (excerpt(number, failure.column, text))
                }
            } @else if let Some(error) = &status.compile_error {
                p .notice.bad { (error) }
            }
        }
    }
}

/// "line 3, column 5" (as much as is known).
fn position(error: &CompileError) -> String {
    match (error.line, error.column) {
        (Some(line), Some(column)) => format!("line {line}, column {column}"),
        (Some(line), None) => format!("line {line}"),
        _ => error.file.display().to_string(),
    }
}

/// The offending line with its number, and a caret under the column when known.
fn excerpt(number: usize, column: Option<usize>, line: &str) -> Markup {
    let gutter = format!("{number:>4} | ");
    let caret = column.map(|column| {
        format!(
            "{} | {}^",
            " ".repeat(4),
            " ".repeat(column.saturating_sub(1).min(line.chars().count()))
        )
    });
    html! {
        pre .excerpt aria-label={ "Line " (number) " of the source" } {
            (gutter) (line)
            @if let Some(caret) = caret { "\n" (caret) }
        }
    }
}

// ---------------------------------------------------------------------------------------
// One rule's source.

async fn draft_rule(state: State<AppState>) -> Result<Markup, UiError> {
    source(state, UrlPath("draft".to_owned())).await
}

async fn source(
    State(state): State<AppState>,
    UrlPath(name): UrlPath<String>,
) -> Result<Markup, UiError> {
    let Some(status) = state
        .rules
        .status()
        .into_iter()
        .find(|status| status.name == name)
    else {
        return Err(UiError::not_found(format!(
            "There is no rule called “{name}”."
        )));
    };
    let file = status.file.clone();
    let text = crate::api::blocking(move || Ok(read_source(&file))).await?;
    let error_line = status.compile_failure.as_ref().and_then(|f| f.line);
    let mut form = DraftForm::template();
    form.name = status.name.clone();
    if let Ok(text) = &text {
        form.source = text.clone();
    }
    let body = html! {
        p { a href={ (PREFIX) "/rules" } { "← All rules" } }
        dl .facts .panel {
            dt { "File" }
            dd .mono { (status.file.display()) }
            dt { "State" }
            dd { (state_label(&status)) }
            dt { "Runs on" }
            dd { (kinds(&status)) }
            dt { "Loaded" }
            dd {
                @if let Some(at) = status.loaded_at { (layout::time(at)) }
                @else { "never" }
            }
            dt { "Runs, hits, actions" }
            dd { (number(status.runs)) ", " (number(status.matches)) ", " (number(status.actions)) }
            dt { "Errors" }
            dd {
                (number(status.errors))
                @if let Some(error) = &status.last_error { " (last: " (error) ")" }
            }
        }
        @if let Some(failure) = &status.compile_failure {
            p .notice.bad role="alert" { "Does not compile, " (position(failure)) ": " (failure.message) }
        } @else if let Some(error) = &status.compile_error {
            p .notice.bad role="alert" { (error) }
        }
        h2 { "Source" }
        @match &text {
            Ok(text) => (source_listing(text, error_line)),
            Err(error) => p .notice.bad { "The file cannot be read: " (error) },
        }
        (draft_section(&form, None))
    };
    Ok(layout::page(
        &state,
        Nav::Rules,
        &format!("Rule {name}"),
        body,
    ))
}

/// Reads a rule file, at most [`MAX_SOURCE_BYTES`] of it.
fn read_source(path: &Path) -> std::io::Result<String> {
    let mut text = String::new();
    let file = std::fs::File::open(path)?;
    file.take(MAX_SOURCE_BYTES).read_to_string(&mut text)?;
    Ok(text)
}

/// The source with line numbers; the line a compile error points at is marked in words.
fn source_listing(text: &str, error_line: Option<usize>) -> Markup {
    html! {
        div .table-wrap {
            table .source {
                caption .visually-hidden { "Source, by line" }
                thead .visually-hidden {
                    tr { th scope="col" { "Line" } th scope="col" { "Text" } }
                }
                tbody {
                    @for (index, line) in text.lines().enumerate() {
                        @let number = index + 1;
                        @if Some(number) == error_line {
                            tr .error-line #{ "L" (number) } {
                                th scope="row" .num { (number) }
                                td { code { (line) } span .marker { " ← the compile error" } }
                            }
                        } @else {
                            tr #{ "L" (number) } {
                                th scope="row" .num { (number) }
                                td { code { (line) } }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn rule_url(name: &str) -> String {
    let segment: String = form_urlencoded::byte_serialize(name.as_bytes()).collect();
    format!("{PREFIX}/rules/{segment}")
}

// ---------------------------------------------------------------------------------------
// Try a draft.

/// The draft form's fields (all optional, so a bad form is a clear message, not a 422).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct DraftForm {
    /// Name the rule would be saved under.
    #[serde(default)]
    name: String,
    /// Rhai source.
    #[serde(default)]
    source: String,
    /// `24h`, `7d`, `30d` or `custom`.
    #[serde(default)]
    range: String,
    /// Start of a custom range.
    #[serde(default)]
    since: String,
    /// End of a custom range.
    #[serde(default)]
    until: String,
}

impl DraftForm {
    fn template() -> DraftForm {
        DraftForm {
            name: "draft".to_owned(),
            source: TEMPLATE.to_owned(),
            range: "7d".to_owned(),
            ..DraftForm::default()
        }
    }

    /// The name checked as a file stem, and the range as times.
    fn validate(&self, now: Timestamp) -> Result<(String, Timestamp, Timestamp), String> {
        let name = self.name.trim();
        let name = if name.is_empty() { "draft" } else { name };
        if name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(
                "Name: use 1 to 64 letters, digits, `_` or `-` (it names rules/<name>.rhai)."
                    .to_owned(),
            );
        }
        if self.source.trim().is_empty() {
            return Err("The draft is empty: write or paste a rule first.".to_owned());
        }
        if self.source.len() > MAX_DRAFT_BYTES {
            return Err(format!(
                "The draft is longer than {} KiB.",
                MAX_DRAFT_BYTES / 1024
            ));
        }
        let custom = self.range == "custom"
            || !self.since.trim().is_empty()
            || !self.until.trim().is_empty();
        let (since, until) = if custom {
            if self.since.trim().is_empty() {
                return Err("Since: give the start of the range.".to_owned());
            }
            let since = parse_when("Since", &self.since)?;
            let until = match self.until.trim() {
                "" => now,
                text => parse_when("Until", text)?,
            };
            (since, until)
        } else {
            let hours = match self.range.as_str() {
                "24h" => 24,
                "7d" | "" => 24 * 7,
                "30d" => 24 * 30,
                other => return Err(format!("Range: `{other}` is not one of the choices.")),
            };
            (now - SignedDuration::from_hours(hours), now)
        };
        if since >= until {
            return Err("Since must be before until.".to_owned());
        }
        Ok((name.to_owned(), since, until))
    }
}

/// Reads a time: RFC 3339 (`2026-01-02T03:04:05Z`), or a date and time or a date alone,
/// taken as UTC.
fn parse_when(field: &str, text: &str) -> Result<Timestamp, String> {
    let text = text.trim();
    if let Ok(at) = text.parse::<Timestamp>() {
        return Ok(at);
    }
    let civil = text.parse::<jiff::civil::DateTime>().or_else(|_| {
        text.parse::<jiff::civil::Date>()
            .map(|date| date.at(0, 0, 0, 0))
    });
    civil
        .and_then(|civil| civil.to_zoned(jiff::tz::TimeZone::UTC))
        .map(|zoned| zoned.timestamp())
        .map_err(|_| {
            format!("{field}: expected a time such as 2026-01-02T03:04:05Z or 2026-01-02 (UTC).")
        })
}

fn draft_section(form: &DraftForm, result: Option<Markup>) -> Markup {
    let action = format!("{PREFIX}/rules/draft");
    let custom = form.range == "custom";
    html! {
        section .panel .draft aria-labelledby="draft-heading" #draft {
            h2 #draft-heading { "Try a draft" }
            p .muted {
                "Runs the rule below as a dry run over stored events, with the same sandbox and \
                 limits as the rules in force, and shows what it would do. Nothing is changed: no \
                 suppressions, no alerts, no outbound calls. To use it, save it as "
                code { "rules/" (form.name) ".rhai" }
                "."
            }
            form .draft-form method="post" action=(action) hx-post=(action)
                hx-target="#draft-result" hx-swap="innerHTML" hx-indicator="#draft-spinner"
                hx-disabled-elt="find button" {
                div .field {
                    label for="draft-source" { "Rule source (Rhai)" }
                    textarea #draft-source .code name="source" rows="14" spellcheck="false"
                        autocapitalize="off" { (form.source) }
                }
                div .draft-options {
                    div .field {
                        label for="draft-name" { "Name" }
                        input #draft-name name="name" value=(form.name) size="16"
                            aria-describedby="draft-name-hint";
                        span #draft-name-hint .visually-hidden { "The file the rule would be saved as" }
                    }
                    div .field {
                        label for="draft-range" { "Events received in" }
                        select #draft-range name="range" {
                            option value="24h" selected[form.range == "24h"] { "the last 24 hours" }
                            option value="7d" selected[form.range == "7d" || form.range.is_empty()] { "the last 7 days" }
                            option value="30d" selected[form.range == "30d"] { "the last 30 days" }
                            option value="custom" selected[custom] { "since … until … (below)" }
                        }
                    }
                    div .field {
                        label for="draft-since" { "Since (UTC)" }
                        input #draft-since name="since" value=(form.since) size="20"
                            placeholder="e.g. 2026-01-02";
                    }
                    div .field {
                        label for="draft-until" { "Until (UTC, default now)" }
                        input #draft-until name="until" value=(form.until) size="20"
                            placeholder="e.g. 2026-01-09T12:00:00Z";
                    }
                    div .draft-go {
                        button type="submit" { "Try it" }
                        span #draft-spinner .spinner { "Running…" }
                    }
                }
            }
            // Announced through the page's live region (`data-announce` in the result).
            div #draft-result {
                @if let Some(result) = result { (result) }
            }
        }
    }
}

async fn try_draft(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<DraftForm>,
) -> Result<Response, UiError> {
    let (status, result) = run_draft(&state, &form).await;
    if layout::is_htmx(&headers) {
        // htmx swaps only 2xx answers: the result says what went wrong.
        return Ok(result.into_response());
    }
    let page = list_page(&state, &form, Some(result)).await?;
    Ok((status, page).into_response())
}

/// What a try came to: the status for a whole-page answer and the result to show.
async fn run_draft(state: &AppState, form: &DraftForm) -> (StatusCode, Markup) {
    let (name, since, until) = match form.validate(Timestamp::now()) {
        Ok(valid) => valid,
        Err(message) => return (StatusCode::BAD_REQUEST, problem(&message)),
    };
    let Some(permit) = state.rules.drafts().try_take() else {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            problem("Another draft is being tried right now. Try again in a moment."),
        );
    };
    let rules = state.rules.clone();
    let store = state.store.clone();
    let source = form.source.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let rule = match draft::compile(rules.rules(), &name, &source) {
            Ok(rule) => rule,
            Err(error) => return Ok(Err(error)),
        };
        draft::dry_run(
            rules.rules(),
            &rule,
            &store,
            since,
            until,
            Bounds::default(),
        )
        .map(|report| Ok((name, report)))
    })
    .await;
    match outcome {
        Ok(Ok(Ok((name, report)))) => (StatusCode::OK, report_view(&name, &report)),
        Ok(Ok(Err(error))) => (StatusCode::OK, compile_error_view(&error, &form.source)),
        Ok(Err(error)) => {
            tracing::error!(%error, "draft dry run failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                problem("The stored events could not be read; the cause is in the server log."),
            )
        }
        Err(error) => {
            tracing::error!(%error, "draft dry run panicked");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                problem("The dry run stopped unexpectedly; the cause is in the server log."),
            )
        }
    }
}

fn problem(message: &str) -> Markup {
    html! { p .notice.bad role="alert" data-announce=(message) { (message) } }
}

fn compile_error_view(error: &CompileError, source: &str) -> Markup {
    let said = format!(
        "The draft does not compile: {}: {}",
        position(error),
        error.message
    );
    let line = error
        .line
        .and_then(|line| source.lines().nth(line.checked_sub(1)?));
    html! {
        div .draft-compile-error data-announce=(said) {
            p .notice.bad role="alert" {
                strong { "The draft does not compile" } ", " (position(error)) ": " (error.message)
            }
            @if let (Some(text), Some(number)) = (line, error.line) {
                (excerpt(number, error.column, text))
            }
        }
    }
}

fn report_view(name: &str, report: &DraftReport) -> Markup {
    let said = format!(
        "Dry run done: {} events scanned, {} matched, {} errors",
        report.scanned, report.matched, report.errors
    );
    let all_failed = report.evaluated > 0 && report.errors == report.evaluated;
    html! {
        div .draft-report data-announce=(said) {
            h3 { "Dry run of " (name) }
            ul .cards {
                li .card { div .name { "Events scanned" } div .value #draft-scanned { (number(report.scanned)) } }
                li .card { div .name { "Of the kinds it runs on" } div .value { (number(report.evaluated)) } }
                li .card { div .name { "Matched" } div .value #draft-matched { (number(report.matched)) } }
                li .card { div .name { "Errors" } div .value #draft-errors { (number(report.errors)) } }
            }
            @match report.stopped {
                Some(Stopped::EventLimit) => p .notice.bad {
                    "Stopped at the limit of " (number(draft::MAX_DRAFT_EVENTS)) " events"
                    (reached(report)) ". Choose a shorter range to see all of it."
                },
                Some(Stopped::TimeBudget) => p .notice.bad {
                    "Stopped after " (draft::DRAFT_BUDGET.as_secs()) " s, the time a dry run may take"
                    (reached(report)) ". Choose a shorter range, or make the rule cheaper."
                },
                None => p .muted {
                    "Every event of the range was scanned, newest first, in "
                    @match report.elapsed.as_millis() {
                        0 => "under 1 ms.",
                        ms => { (number(ms)) " ms." },
                    }
                },
            }
            @if all_failed {
                p .notice.bad role="alert" {
                    "The draft failed on every event it ran on"
                    @if let Some(first) = report.first_errors.first() { ": " (first.message) }
                }
            }
            h4 { "Actions it would take" }
            @if report.actions.is_empty() {
                (layout::empty("None."))
            } @else {
                div .table-wrap {
                    table .draft-actions {
                        thead { tr { th scope="col" { "Action" } th scope="col" .num { "Count" } } }
                        tbody {
                            @for (kind, count) in &report.actions {
                                tr {
                                    th scope="row" { code { (kind) } }
                                    td .num { (number(*count)) }
                                }
                            }
                        }
                    }
                }
            }
            @if !report.samples.is_empty() {
                h4 { "Samples (newest first)" }
                div .table-wrap {
                    table .draft-samples {
                        thead {
                            tr {
                                th scope="col" { "Event" }
                                th scope="col" { "Received" }
                                th scope="col" { "Kind" }
                                th scope="col" { "Recipient" }
                                th scope="col" { "Would do" }
                            }
                        }
                        tbody {
                            @for sample in &report.samples {
                                tr {
                                    td { (layout::event_link(sample.event_id)) }
                                    td { (layout::time(sample.received_at)) }
                                    td { (layout::kind_label(sample.kind)) }
                                    td { (layout::recipient_link(&sample.recipient)) }
                                    td {
                                        ul .would-do {
                                            @for action in &sample.actions { li { (describe(action)) } }
                                            @for tag in &sample.tags { li { code { "tag" } " " (tag) } }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if report.errors > 0 {
                h4 { "Runtime errors (" (number(report.errors)) ")" }
                ul .draft-error-list {
                    @for error in &report.first_errors {
                        li { (layout::event_link(error.event_id)) ": " (error.message) }
                    }
                }
            }
            p .muted { "A dry run: nothing was changed. To use the rule, save it as "
                code { "rules/" (name) ".rhai" } "." }
        }
    }
}

fn reached(report: &DraftReport) -> Markup {
    html! {
        @if let Some(at) = report.reached {
            "; events received before " (layout::time(at)) " were not scanned"
        }
    }
}

/// An action in words, with every address linked to its page.
fn describe(action: &Action) -> Markup {
    html! {
        @match action {
            Action::Suppress { address, reason, ttl_seconds } => {
                code { "suppress" } " " (layout::recipient_link(address))
                @if !reason.is_empty() { " (" (reason) ")" }
                @if let Some(ttl) = ttl_seconds { " for " (duration(*ttl)) }
            },
            Action::Unsuppress { address, reason } => {
                code { "unsuppress" } " " (layout::recipient_link(address))
                @if !reason.is_empty() { " (" (reason) ")" }
            },
            Action::Alert { to, subject, .. } => {
                code { "alert" } " “" (subject) "”"
                @if !to.is_empty() {
                    " to "
                    @for (index, address) in to.iter().enumerate() {
                        @if index > 0 { ", " }
                        (layout::recipient_link(address))
                    }
                }
            },
            Action::HttpPost { url, .. } => { code { "http_post" } " " (layout::url_markup(url)) },
        }
    }
}

fn duration(seconds: i64) -> String {
    match seconds {
        s if s % 86_400 == 0 => format!("{} d", s / 86_400),
        s if s % 3_600 == 0 => format!("{} h", s / 3_600),
        s => format!("{s} s"),
    }
}

/// A count with thousands separated by commas.
fn number(n: impl std::fmt::Display) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_grouped_by_thousands() {
        assert_eq!(number(0u64), "0");
        assert_eq!(number(999u64), "999");
        assert_eq!(number(50_000u64), "50,000");
        assert_eq!(number(1_234_567u64), "1,234,567");
    }

    #[test]
    fn range_times_read_rfc_3339_dates_and_local_forms_as_utc() {
        let at = |text| parse_when("Since", text).expect(text);
        assert_eq!(
            at("2026-01-02T03:04:05Z").to_string(),
            "2026-01-02T03:04:05Z"
        );
        assert_eq!(at("2026-01-02T03:04").to_string(), "2026-01-02T03:04:00Z");
        assert_eq!(at("2026-01-02").to_string(), "2026-01-02T00:00:00Z");
        assert!(parse_when("Since", "last tuesday").is_err());
    }

    #[test]
    fn a_draft_form_needs_a_file_name_a_source_and_an_ordered_range() {
        let now: Timestamp = "2026-01-10T00:00:00Z".parse().unwrap();
        let mut form = DraftForm::template();
        let (name, since, until) = form.validate(now).unwrap();
        assert_eq!((name.as_str(), until), ("draft", now));
        assert_eq!(since.to_string(), "2026-01-03T00:00:00Z");
        form.name = "../etc/passwd".into();
        assert!(form.validate(now).is_err());
        form.name = "hard".into();
        form.since = "2026-01-09".into();
        form.until = "2026-01-08".into();
        assert!(form.validate(now).unwrap_err().contains("before"));
        form.range = "1y".into();
        form.since.clear();
        form.until.clear();
        assert!(form.validate(now).unwrap_err().contains("Range"));
    }

    #[test]
    fn an_excerpt_points_at_the_column() {
        let markup = excerpt(3, Some(5), "let = 5;").into_string();
        assert!(markup.contains("   3 | let = 5;\n     |     ^"), "{markup}");
    }
}
