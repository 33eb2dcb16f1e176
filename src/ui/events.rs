//! The Events page: stored events, filtered, newest first, and one event in detail.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use maud::{Markup, html};

use super::layout::{self, Nav};
use crate::api::AppState;

/// Routes of this page.
pub fn routes() -> Router<AppState> {
    Router::new().route("/events", get(show))
}

async fn show(State(state): State<AppState>) -> Markup {
    layout::page(
        &state,
        Nav::Events,
        "Events",
        html! { p { "Not built yet." } },
    )
}
