//! The Overview page: counts, rates and charts of the last 24 hours, 7 and 30 days.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use maud::{Markup, html};

use super::layout::{self, Nav};
use crate::api::AppState;

/// Routes of this page.
pub fn routes() -> Router<AppState> {
    Router::new().route("/", get(show))
}

async fn show(State(state): State<AppState>) -> Markup {
    layout::page(
        &state,
        Nav::Overview,
        "Overview",
        html! { p { "Not built yet." } },
    )
}
