//! The console's static files, compiled into the binary: the stylesheet, the one script of
//! our own, and a vendored copy of htmx (2.0.10, Zero-Clause BSD, `assets/htmx.LICENSE`).

use axum::extract::Path;
use axum::http::StatusCode;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};

/// Each asset: its name under `/ui/assets/`, content type and bytes.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("assets/style.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/app.js"),
    ),
    (
        "htmx.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/htmx.min.js"),
    ),
];

/// Stamp put into asset URLs, so that a new build is never served a stale cached file.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `GET /ui/assets/{file}`.
pub async fn serve(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, bytes)) => (
            [
                (CONTENT_TYPE, *content_type),
                // URLs carry the version (`?v=`): safe to keep for a day.
                (CACHE_CONTROL, "public, max-age=86400"),
            ],
            *bytes,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// URL of asset `name`.
pub fn url(name: &str) -> String {
    format!("{}/assets/{name}?v={VERSION}", super::PREFIX)
}
