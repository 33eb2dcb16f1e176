//! One suppression entry: its facts, every change in its history (newest first) and the
//! remove form.
//!
//! - `GET /ui/suppressions/entry?address=`: one point read; an address that was never
//!   suppressed says so (200), so the Recipient page can always link here.
//! - `POST /ui/suppressions/remove`: needs a reason, recorded in the history with `by`
//!   [`CONSOLE`]; a complaint also needs its confirmation box ticked, checked here (the
//!   browser's `data-confirm` question is only a second look).

use axum::Form;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use maud::{Markup, html};
use serde::Deserialize;

use super::{CONSOLE, added_by, checked, expiry, is_complaint, reason_label, state_label};
use crate::api::{AppState, blocking};
use crate::event::EmailAddress;
use crate::store::suppressions::{Change, Suppression};
use crate::ui::PREFIX;
use crate::ui::layout::{self, Nav, UiError};

/// Longest removal reason kept.
const MAX_REASON_LEN: usize = 500;

/// Query of the entry page.
#[derive(Debug, Deserialize)]
pub struct EntryQuery {
    #[serde(default)]
    address: String,
}

/// The remove form.
#[derive(Debug, Deserialize)]
pub struct RemoveForm {
    #[serde(default)]
    address: String,
    #[serde(default)]
    reason: String,
    /// Present (`yes`) when the complaint box is ticked.
    confirm_complaint: Option<String>,
}

fn parse_address(text: &str) -> Result<EmailAddress, UiError> {
    EmailAddress::parse(text).map_err(|error| {
        UiError::bad_request(format!("`{}` is not an address: {error}.", text.trim()))
    })
}

async fn read(state: &AppState, address: &EmailAddress) -> Result<Option<Suppression>, UiError> {
    let store = state.store.clone();
    let key = address.as_str().to_owned();
    Ok(blocking(move || store.suppression(&key)).await?)
}

/// `GET /ui/suppressions/entry?address=`.
pub async fn show(
    State(state): State<AppState>,
    query: Result<Query<EntryQuery>, QueryRejection>,
) -> Result<Response, UiError> {
    let query = checked(query)?;
    let address = parse_address(&query.address)?;
    let entry = read(&state, &address).await?;
    Ok(render(
        &state,
        &address,
        entry.as_ref(),
        &Outcome::default(),
        StatusCode::OK,
    ))
}

/// `POST /ui/suppressions/remove`.
pub async fn remove(
    State(state): State<AppState>,
    form: Result<Form<RemoveForm>, FormRejection>,
) -> Result<Response, UiError> {
    let Form(form) = form.map_err(|rejection| {
        UiError::bad_request(format!("Bad form: {}", rejection.body_text()))
    })?;
    let address = parse_address(&form.address)?;
    let now = Timestamp::now();
    let entry = read(&state, &address).await?;
    let refuse = |message: &str, status| Outcome {
        error: Some(message.to_owned()),
        reason: form.reason.clone(),
        status: Some(status),
        ..Outcome::default()
    };
    let outcome = match &entry {
        Some(entry) if entry.in_force(now) => {
            let reason = form.reason.trim();
            if reason.is_empty() {
                refuse(
                    "Give a reason for removing it: the reason is kept in the history.",
                    StatusCode::BAD_REQUEST,
                )
            } else if reason.chars().count() > MAX_REASON_LEN {
                refuse(
                    &format!("Keep the reason under {MAX_REASON_LEN} characters."),
                    StatusCode::BAD_REQUEST,
                )
            } else if is_complaint(entry) && form.confirm_complaint.as_deref() != Some("yes") {
                refuse(
                    "This address reported our mail as spam. Tick the box to confirm that it \
                     may be mailed again.",
                    StatusCode::BAD_REQUEST,
                )
            } else {
                let store = state.store.clone();
                let key = address.as_str().to_owned();
                let reason = reason.to_owned();
                let removed =
                    blocking(move || store.unsuppress(&key, CONSOLE, &reason, now)).await?;
                state.store.flush().await?;
                return Ok(match removed {
                    Some(entry) => {
                        tracing::info!(address = %address, "suppression removed from the console");
                        let done = Outcome {
                            removed: true,
                            ..Outcome::default()
                        };
                        render(&state, &address, Some(&entry), &done, StatusCode::OK)
                    }
                    // Lifted or expired between the read and the removal.
                    None => {
                        let entry = read(&state, &address).await?;
                        let gone = refuse("It is no longer suppressed.", StatusCode::CONFLICT);
                        render(
                            &state,
                            &address,
                            entry.as_ref(),
                            &gone,
                            StatusCode::CONFLICT,
                        )
                    }
                });
            }
        }
        _ => refuse(
            "It is not suppressed: there is nothing to remove.",
            StatusCode::CONFLICT,
        ),
    };
    let status = outcome.status.unwrap_or(StatusCode::BAD_REQUEST);
    Ok(render(&state, &address, entry.as_ref(), &outcome, status))
}

/// What a remove attempt did, for the page that answers it.
#[derive(Default)]
struct Outcome {
    removed: bool,
    error: Option<String>,
    /// The reason typed, to refill the form.
    reason: String,
    status: Option<StatusCode>,
}

fn render(
    state: &AppState,
    address: &EmailAddress,
    entry: Option<&Suppression>,
    outcome: &Outcome,
    status: StatusCode,
) -> Response {
    let now = Timestamp::now();
    let title = format!("Suppression of {address}");
    let body = html! {
        @if outcome.removed {
            div .notice.good role="status" {
                "Removed the suppression of " (address) ". Mail to it is sent again; the \
                 removal and its reason are in the history below."
            }
        }
        p {
            "Everything that happened to this address: " (layout::recipient_link(address.as_str()))
            " · " a href={ (PREFIX) "/suppressions" } { "All suppressions" }
        }
        @match entry {
            None => {
                p .panel { (address) " is not on the suppression list and never was." }
            }
            Some(entry) => {
                section .panel.sup-panel aria-labelledby="entry-facts" {
                    h2 #entry-facts { "Entry" }
                    dl .facts {
                        dt { "State" } dd { (state_label(entry, now)) }
                        dt { "Reason" } dd { (reason_label(entry)) }
                        dt { "Added by" } dd { (added_by(entry)) }
                        dt { "Added" } dd { (layout::time(entry.created_at)) }
                        dt { "Last changed" } dd { (layout::time(entry.updated_at)) }
                        dt { "Expires" } dd { (expiry(entry)) }
                    }
                }
                @if entry.in_force(now) || outcome.error.is_some() {
                    (remove_form(entry, outcome, now))
                }
                (history(&entry.history))
            }
        }
    };
    (status, layout::page(state, Nav::Suppressions, &title, body)).into_response()
}

fn remove_form(entry: &Suppression, outcome: &Outcome, now: Timestamp) -> Markup {
    let complaint = is_complaint(entry);
    let question = if complaint {
        format!(
            "{} reported our mail as spam. Remove the suppression and mail it again?",
            entry.address
        )
    } else {
        format!("Remove the suppression of {}?", entry.address)
    };
    let error = outcome.error.as_deref();
    html! {
        section .panel.sup-panel.sup-remove aria-labelledby="entry-remove" {
            h2 #entry-remove { "Remove the suppression" }
            @if let Some(error) = error {
                p #remove-error .error role="alert" { (error) }
            }
            @if entry.in_force(now) {
                form method="post" action={ (PREFIX) "/suppressions/remove" }
                    data-confirm=(question) .sup-form {
                    input type="hidden" name="address" value=(entry.address);
                    div .field {
                        label for="remove-reason" { "Why remove it? (kept in the history)" }
                        input #remove-reason type="text" name="reason" value=(outcome.reason)
                            required maxlength=(MAX_REASON_LEN) size="40"
                            aria-invalid=[error.map(|_| "true")]
                            aria-describedby=[error.map(|_| "remove-error")];
                    }
                    @if complaint {
                        div .sup-check {
                            input #confirm-complaint type="checkbox" name="confirm_complaint"
                                value="yes" required;
                            label for="confirm-complaint" {
                                "I understand this address reported our mail as spam"
                            }
                        }
                    }
                    div { button .danger type="submit" { "Remove suppression" } }
                }
            }
        }
    }
}

fn change_label(change: &str) -> &str {
    match change {
        "suppress" => "added",
        "extend" => "extended",
        "upgrade" => "made permanent",
        "unsuppress" => "removed",
        other => other,
    }
}

fn history(changes: &[Change]) -> Markup {
    html! {
        section aria-labelledby="entry-history" {
            h2 #entry-history { "History" }
            @if changes.is_empty() {
                (layout::empty("No changes recorded."))
            } @else {
                div .table-wrap.sup-table {
                    table {
                        caption .visually-hidden { "Changes, newest first" }
                        thead {
                            tr {
                                th scope="col" { "When" }
                                th scope="col" { "Change" }
                                th scope="col" { "By" }
                                th scope="col" { "Reason" }
                            }
                        }
                        tbody {
                            @for change in changes.iter().rev() {
                                tr {
                                    td { (layout::time(change.at)) }
                                    td {
                                        @let tint = if change.change == "unsuppress" { "label good" } else { "label" };
                                        span class=(tint) { (change_label(&change.change)) }
                                    }
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
