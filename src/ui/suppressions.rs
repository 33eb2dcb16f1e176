//! The Suppressions page: the suppression list: search, add, remove, history, import, export.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use maud::{Markup, html};

use super::layout::{self, Nav};
use crate::api::AppState;

/// Routes of this page.
pub fn routes() -> Router<AppState> {
    Router::new().route("/suppressions", get(show))
}

async fn show(State(state): State<AppState>) -> Markup {
    layout::page(
        &state,
        Nav::Suppressions,
        "Suppressions",
        html! { p { "Not built yet." } },
    )
}
