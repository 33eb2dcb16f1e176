//! The Alerts page: alert e-mails sent and throttled.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use maud::{Markup, html};

use super::layout::{self, Nav};
use crate::api::AppState;

/// Routes of this page.
pub fn routes() -> Router<AppState> {
    Router::new().route("/alerts", get(show))
}

async fn show(State(state): State<AppState>) -> Markup {
    layout::page(
        &state,
        Nav::Alerts,
        "Alerts",
        html! { p { "Not built yet." } },
    )
}
