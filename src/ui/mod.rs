//! The web console under `/ui`: server-rendered pages over the same store the JSON API
//! reads, for the people who run the mail.
//!
//! - Pages are maud templates (checked at compile time, escaped by default) inside one
//!   shell ([`layout`]); htmx (vendored, [`assets`]) swaps parts of them for filters,
//!   paging and live refresh. Every asset is in the binary: the console works offline.
//! - Access ([`guard`]): with an admin token configured, a login form turns the token into
//!   an opaque session cookie ([`session`]); without one (the server then listens on
//!   loopback only) the console is open, as the API is. A cookie never authorizes `/api`.
//! - Every unsafe request must come from a page of this origin (`Sec-Fetch-Site` or
//!   `Origin`), and every answer carries a strict `Content-Security-Policy`: no inline
//!   script or style anywhere in the console.
//! - Handlers call the store directly, off the runtime with [`crate::api::blocking`], and
//!   page through lists by cursor: no page loads a whole list.

pub mod alerts;
pub mod assets;
pub mod chart;
pub mod events;
pub mod guard;
pub mod layout;
pub mod outbox;
pub mod overview;
pub mod quarantine;
pub mod recipients;
pub mod rules;
pub mod session;
pub mod sources;
pub mod suppressions;

use axum::Router;
use axum::middleware;
use axum::routing::{get, post};

use crate::api::AppState;
pub use layout::UiError;
pub use session::Sessions;

/// Where the console is mounted.
pub const PREFIX: &str = "/ui";

/// Builds the console's routes (to be nested at [`PREFIX`]).
pub fn router(state: AppState) -> Router<AppState> {
    let pages = Router::new()
        .merge(overview::routes())
        .merge(events::routes())
        .merge(recipients::routes())
        .merge(suppressions::routes())
        .merge(rules::routes())
        .merge(outbox::routes())
        .merge(alerts::routes())
        .merge(quarantine::routes())
        .merge(sources::routes())
        .route("/logout", post(session::logout))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            guard::require_session,
        ));
    Router::new()
        .merge(pages)
        .route("/login", get(session::login_form).post(session::login))
        .route("/assets/{file}", get(assets::serve))
        .fallback(layout::not_found)
        .layer(middleware::from_fn(guard::same_origin))
        .layer(middleware::from_fn(guard::security_headers))
}
