//! What stands in front of every console page: the session check, the same-origin check
//! of unsafe requests, and the security headers of every answer.

use axum::extract::{Request, State};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, HOST, LOCATION, ORIGIN, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::PREFIX;
use super::layout::{self, HX_REQUEST};
use crate::api::AppState;

/// The policy of every console answer: only this origin's scripts, styles and images, no
/// inline script or style, no framing, forms post only here.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
    base-uri 'none'";

/// Header htmx reads to navigate the whole page (used when a session ends mid-page).
const HX_REDIRECT: &str = "hx-redirect";
/// Header a browser sets on every request since 2020: where the request came from.
const SEC_FETCH_SITE: &str = "sec-fetch-site";

/// Adds the security headers to every `/ui` answer.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if !headers.contains_key(CACHE_CONTROL) {
        // Pages show addresses and events: never keep them in a shared or disk cache.
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// Refuses unsafe requests (anything but GET, HEAD, OPTIONS) that did not come from a
/// page of this origin: a form on another site cannot remove a suppression, even with
/// the session cookie (which `SameSite=Strict` already keeps from such requests).
pub async fn same_origin(request: Request, next: Next) -> Response {
    let safe = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if safe || is_same_origin(request.headers()) {
        return next.run(request).await;
    }
    tracing::warn!(
        method = %request.method(),
        path = request.uri().path(),
        "cross-site console request refused"
    );
    layout::error_page(
        StatusCode::FORBIDDEN,
        "Refused: this request did not come from a page of this console. Reload the page \
         and try again.",
    )
}

/// Returns whether the request shows that it came from this origin. `Sec-Fetch-Site`
/// decides when present; otherwise `Origin` must name the host the request was sent to.
/// A request with neither is refused: every browser that can run the console sends one.
pub fn is_same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get(SEC_FETCH_SITE) {
        return site.as_bytes() == b"same-origin";
    }
    let (Some(origin), Some(host)) = (headers.get(ORIGIN), headers.get(HOST)) else {
        return false;
    };
    let (Ok(origin), Ok(host)) = (origin.to_str(), host.to_str()) else {
        return false;
    };
    origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .is_some_and(|authority| authority.eq_ignore_ascii_case(host))
}

/// Lets a request through when it carries a live session, or when no admin token is set
/// (the server then listens on loopback only). Otherwise a page request is sent to the
/// login form, and an htmx request is told to navigate there.
pub async fn require_session(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if state.admin_token.is_none() || state.sessions.is_valid(request.headers()) {
        return next.run(request).await;
    }
    let login = format!(
        "{PREFIX}/login?{}",
        form_urlencoded::Serializer::new(String::new())
            .append_pair("next", &return_path(&request))
            .finish()
    );
    if request.headers().contains_key(HX_REQUEST) {
        let mut response = StatusCode::UNAUTHORIZED.into_response();
        if let Ok(value) = HeaderValue::from_str(&login) {
            response.headers_mut().insert(HX_REDIRECT, value);
        }
        return response;
    }
    if request.method() != Method::GET {
        return layout::error_page(
            StatusCode::UNAUTHORIZED,
            "Your session has ended. Log in again and repeat the change.",
        );
    }
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(&login) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}

/// The page to come back to after logging in: the requested one, as the server saw it.
fn return_path(request: &Request) -> String {
    let uri = request.uri();
    // Nested under `/ui`, the router sees the path without the prefix.
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    format!("{PREFIX}{}", if path == "/" { "" } else { path })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn fetch_metadata_decides_when_present() {
        assert!(is_same_origin(&headers(&[(
            "sec-fetch-site",
            "same-origin"
        )])));
        for site in ["cross-site", "same-site", "none"] {
            let map = headers(&[
                ("sec-fetch-site", site),
                // A matching Origin does not overrule what the browser says.
                ("origin", "http://127.0.0.1:8080"),
                ("host", "127.0.0.1:8080"),
            ]);
            assert!(!is_same_origin(&map), "{site}");
        }
    }

    #[test]
    fn origin_must_name_the_host_when_fetch_metadata_is_missing() {
        let same = headers(&[
            ("origin", "http://127.0.0.1:8080"),
            ("host", "127.0.0.1:8080"),
        ]);
        assert!(is_same_origin(&same));
        let tls = headers(&[
            ("origin", "https://mail.example.com"),
            ("host", "mail.example.com"),
        ]);
        assert!(is_same_origin(&tls));
        let other = headers(&[
            ("origin", "https://evil.example"),
            ("host", "127.0.0.1:8080"),
        ]);
        assert!(!is_same_origin(&other));
        let longer = headers(&[
            ("origin", "http://127.0.0.1:8080.evil.example"),
            ("host", "127.0.0.1:8080"),
        ]);
        assert!(!is_same_origin(&longer));
        assert!(!is_same_origin(&headers(&[
            ("origin", "null"),
            ("host", "a")
        ])));
        assert!(!is_same_origin(&headers(&[("host", "127.0.0.1:8080")])));
    }
}
