//! The Outbox page: pending and failed outbound calls, dead letters and their retry.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use maud::{Markup, html};

use super::layout::{self, Nav};
use crate::api::AppState;

/// Routes of this page.
pub fn routes() -> Router<AppState> {
    Router::new().route("/outbox", get(show))
}

async fn show(State(state): State<AppState>) -> Markup {
    layout::page(
        &state,
        Nav::Outbox,
        "Outbox",
        html! { p { "Not built yet." } },
    )
}
