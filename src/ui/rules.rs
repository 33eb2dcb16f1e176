//! The Rules page: loaded rules, their errors, and drafts tried over stored events.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use maud::{Markup, html};

use super::layout::{self, Nav};
use crate::api::AppState;

/// Routes of this page.
pub fn routes() -> Router<AppState> {
    Router::new().route("/rules", get(show))
}

async fn show(State(state): State<AppState>) -> Markup {
    layout::page(
        &state,
        Nav::Rules,
        "Rules",
        html! { p { "Not built yet." } },
    )
}
