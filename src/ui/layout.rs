//! The shell every console page shares (head, navigation, main region, live region) and
//! the small pieces pages are built from: links to a recipient or an event, times,
//! labels, query strings, the pager, and the error page.
//!
//! Colour is never the only signal: every label carries its text, and the stylesheet
//! only adds a tint.

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use maud::{DOCTYPE, Markup, html};

use super::{PREFIX, assets};
use crate::api::{ApiError, AppState};
use crate::event::{EventId, EventKind};
use crate::store::StoreError;

/// Header htmx sets on the requests it makes.
pub const HX_REQUEST: &str = "hx-request";

/// htmx settings: no `eval` (the policy forbids it anyway), no inline styles of its own,
/// no copies of pages in the browser's local storage.
const HTMX_CONFIG: &str = r#"{"includeIndicatorStyles":false,"allowEval":false,"allowScriptTags":false,"historyCacheSize":0,"refreshOnHistoryMiss":true}"#;

/// The console's sections, in the order of the navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    /// Counts, rates and charts.
    Overview,
    /// Stored events (and a recipient's page).
    Events,
    /// The suppression list.
    Suppressions,
    /// Loaded rules and drafts.
    Rules,
    /// Outbound calls and dead letters.
    Outbox,
    /// Alert e-mails.
    Alerts,
    /// Bodies that could not be read.
    Quarantine,
    /// Webhook sources.
    Sources,
}

impl Nav {
    const ALL: [Nav; 8] = [
        Nav::Overview,
        Nav::Events,
        Nav::Suppressions,
        Nav::Rules,
        Nav::Outbox,
        Nav::Alerts,
        Nav::Quarantine,
        Nav::Sources,
    ];

    fn label(self) -> &'static str {
        match self {
            Nav::Overview => "Overview",
            Nav::Events => "Events",
            Nav::Suppressions => "Suppressions",
            Nav::Rules => "Rules",
            Nav::Outbox => "Outbox",
            Nav::Alerts => "Alerts",
            Nav::Quarantine => "Quarantine",
            Nav::Sources => "Sources",
        }
    }

    fn path(self) -> String {
        match self {
            Nav::Overview => PREFIX.to_owned(),
            Nav::Events => format!("{PREFIX}/events"),
            Nav::Suppressions => format!("{PREFIX}/suppressions"),
            Nav::Rules => format!("{PREFIX}/rules"),
            Nav::Outbox => format!("{PREFIX}/outbox"),
            Nav::Alerts => format!("{PREFIX}/alerts"),
            Nav::Quarantine => format!("{PREFIX}/quarantine"),
            Nav::Sources => format!("{PREFIX}/sources"),
        }
    }
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            meta name="htmx-config" content=(HTMX_CONFIG);
            title { (title) " · mailwarden" }
            link rel="stylesheet" href=(assets::url("style.css"));
            script src=(assets::url("htmx.min.js")) defer {}
            script src=(assets::url("app.js")) defer {}
        }
    }
}

/// A whole page: navigation with `active` marked, `title` as its heading, then `body`.
pub fn page(state: &AppState, active: Nav, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                a .skip href="#main" { "Skip to content" }
                header .top {
                    a .brand href=(PREFIX) { "mailwarden" }
                    nav aria-label="Sections" {
                        ul {
                            @for nav in Nav::ALL {
                                li {
                                    @if nav == active {
                                        a href=(nav.path()) aria-current="page" { (nav.label()) }
                                    } @else {
                                        a href=(nav.path()) { (nav.label()) }
                                    }
                                }
                            }
                        }
                    }
                    @if state.admin_token.is_some() {
                        form .logout method="post" action={ (PREFIX) "/logout" } {
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main #main tabindex="-1" {
                    h1 { (title) }
                    (body)
                }
                // Status messages for screen readers (filled by app.js and htmx swaps).
                div #announce .visually-hidden role="status" aria-live="polite" {}
            }
        }
    }
}

/// A page without navigation (the login form, errors).
pub fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body .bare {
                main #main { (body) }
            }
        }
    }
}

/// An error answer as a page, with `message` for the reader.
pub fn error_page(status: StatusCode, message: &str) -> Response {
    let title = status.canonical_reason().unwrap_or("Error");
    let body = html! {
        section .error-page {
            h1 { (status.as_u16()) " " (title) }
            p role="alert" { (message) }
            p { a href=(PREFIX) { "Back to the overview" } }
        }
    };
    (status, bare(title, body)).into_response()
}

/// The answer for console paths that do not exist.
pub async fn not_found() -> Response {
    error_page(
        StatusCode::NOT_FOUND,
        "There is no such page in the console.",
    )
}

/// An error of a console handler, shown as a page.
#[derive(Debug)]
pub struct UiError {
    status: StatusCode,
    message: String,
}

impl UiError {
    /// 400 with `message` (a bad filter, a bad form field).
    pub fn bad_request(message: impl Into<String>) -> UiError {
        UiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    /// 404 with `message`.
    pub fn not_found(message: impl Into<String>) -> UiError {
        UiError {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }
}

impl From<ApiError> for UiError {
    fn from(error: ApiError) -> UiError {
        UiError {
            status: error.status(),
            message: error.message().to_owned(),
        }
    }
}

impl From<StoreError> for UiError {
    fn from(error: StoreError) -> UiError {
        UiError::from(ApiError::from(error))
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = self.status.as_u16(), cause = %self.message, "console page failed");
            return error_page(
                self.status,
                "The server could not answer this page; the cause is in its log.",
            );
        }
        error_page(self.status, &self.message)
    }
}

/// Returns whether htmx made this request (answer with a fragment, not a page).
pub fn is_htmx(headers: &HeaderMap) -> bool {
    headers.contains_key(HX_REQUEST)
}

/// `path` with the non-empty `params` as its query string.
pub fn url(path: &str, params: &[(&str, &str)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    let mut any = false;
    for (name, value) in params {
        if !value.is_empty() {
            query.append_pair(name, value);
            any = true;
        }
    }
    if any {
        format!("{path}?{}", query.finish())
    } else {
        path.to_owned()
    }
}

/// URL of the page of recipient `address`.
pub fn recipient_url(address: &str) -> String {
    url(&format!("{PREFIX}/recipient"), &[("address", address)])
}

/// A link to the page of recipient `address`: every address in the console is one.
pub fn recipient_link(address: &str) -> Markup {
    html! { a .address href=(recipient_url(address)) { (address) } }
}

/// A link to the detail page of event `id`.
pub fn event_link(id: EventId) -> Markup {
    html! { a .mono href={ (PREFIX) "/events/" (id) } { (id) } }
}

/// A time for people (UTC, to the second), machine-readable in `datetime`.
pub fn time(at: Timestamp) -> Markup {
    let shown = at.strftime("%Y-%m-%d %H:%M:%S UTC").to_string();
    html! { time datetime=(at.to_string()) { (shown) } }
}

/// An event kind as a label: its name in words, tinted by class.
pub fn kind_label(kind: EventKind) -> Markup {
    html! { span class={ "label kind-" (kind.as_str()) } { (kind.as_str().replace('_', " ")) } }
}

/// The link to the next (older) page, when there is one.
pub fn pager(next: Option<String>) -> Markup {
    html! {
        @if let Some(next) = next {
            nav .pager aria-label="Pages" {
                a href=(next) rel="next" { "Older →" }
            }
        }
    }
}

/// What a list shows when it has nothing.
pub fn empty(message: &str) -> Markup {
    html! { p .empty { (message) } }
}

/// Longest first path segment [`shown_url`] shows before cutting it short.
const SHOWN_SEGMENT: usize = 60;

/// A URL as the console shows it: scheme, host (with its port when not the scheme's
/// default) and only the first segment of the path, followed by `/…` when the path goes
/// on; `None` when `url` does not parse.
///
/// Never the query, the fragment or user info, and not the rest of the path: rules take
/// their URLs from `[rules.vars]`, and those carry credentials (`?api_key=…`,
/// `user:password@`, or a path that is itself the secret, as in Slack-style webhook
/// URLs). Everything a page shows of a call's URL goes through this.
pub fn shown_url(url: &str) -> Option<ShownUrl> {
    let parsed = reqwest::Url::parse(url).ok()?;
    let host = match (parsed.host_str(), parsed.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        (None, _) => String::new(),
    };
    let path = match parsed.path_segments() {
        // `mailto:…`, `data:…`: the whole rest is "path"; show none of it.
        None => None,
        Some(mut segments) => {
            let first = segments.next().unwrap_or_default();
            let more = segments.any(|segment| !segment.is_empty());
            let mut shown = String::from("/");
            match first.char_indices().nth(SHOWN_SEGMENT) {
                Some((cut, _)) => {
                    shown.push_str(&first[..cut]);
                    shown.push('…');
                }
                None => shown.push_str(first),
            }
            if more {
                shown.push_str("/…");
            }
            Some(shown)
        }
    };
    Some(ShownUrl {
        scheme: parsed.scheme().to_owned(),
        host,
        path,
        query_hidden: parsed.query().is_some(),
        credentials_hidden: !parsed.username().is_empty() || parsed.password().is_some(),
    })
}

/// What [`shown_url`] keeps of a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShownUrl {
    /// `https`, `http`, ...
    pub scheme: String,
    /// Host, with a port other than the scheme's default.
    pub host: String,
    /// `/first-segment`, `/first-segment/…`; `None` for URLs without a hierarchical
    /// path (`mailto:…`).
    pub path: Option<String>,
    /// Whether the URL has a query (left out).
    pub query_hidden: bool,
    /// Whether the URL has user info (left out).
    pub credentials_hidden: bool,
}

impl std::fmt::Display for ShownUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.path {
            Some(path) => write!(f, "{}://{}{path}", self.scheme, self.host),
            None => write!(f, "{}:…", self.scheme),
        }
    }
}

/// A call's URL as [`shown_url`] keeps it, in monospace with the host in bold, and a note
/// of what was left out.
pub fn url_markup(url: &str) -> Markup {
    let Some(shown) = shown_url(url) else {
        return html! { span .muted { "not a valid URL" } };
    };
    html! {
        span .mono {
            @match &shown.path {
                Some(path) => { (shown.scheme) "://" strong { (shown.host) } (path) },
                None => { (shown.scheme) ":…" },
            }
        }
        @if shown.credentials_hidden { span .muted { " (credentials hidden)" } }
        @if shown.query_hidden { span .muted { " (query hidden)" } }
    }
}

/// "Updated at …": the stamp a self-refreshing region shows.
pub fn updated_stamp(now: Timestamp) -> Markup {
    html! { p .updated { "Updated " (time(now)) } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_skip_empty_params_and_escape_the_rest() {
        assert_eq!(
            url("/ui/events", &[("kind", ""), ("source", "")]),
            "/ui/events"
        );
        assert_eq!(
            recipient_url("jane+news@example.com"),
            "/ui/recipient?address=jane%2Bnews%40example.com"
        );
        assert_eq!(url("/x", &[("q", "a&b=c <d>")]), "/x?q=a%26b%3Dc+%3Cd%3E");
    }

    #[test]
    fn shown_urls_keep_scheme_host_and_first_segment_only() {
        let shown = |url: &str| shown_url(url).map(|shown| shown.to_string());
        assert_eq!(
            shown("https://hooks.slack.com/services/T000/B000/XXXXSECRET").as_deref(),
            Some("https://hooks.slack.com/services/…")
        );
        assert_eq!(
            shown("https://user:SECRET@crm.example.com:8443/hook?api_key=SECRET#SECRET").as_deref(),
            Some("https://crm.example.com:8443/hook")
        );
        assert_eq!(
            shown("http://[2001:db8::1]:80/").as_deref(),
            Some("http://[2001:db8::1]/")
        );
        assert_eq!(
            shown("mailto:SECRET@example.com").as_deref(),
            Some("mailto:…")
        );
        assert_eq!(
            shown(&format!("https://x.example/{}", "a".repeat(100))),
            Some(format!("https://x.example/{}…", "a".repeat(SHOWN_SEGMENT)))
        );
        assert_eq!(shown("not a url"), None);
        let secret = "https://u:SECRET@x.example/a/SECRET?k=SECRET#SECRET";
        let parts = shown_url(secret).expect("parses");
        assert!(parts.query_hidden && parts.credentials_hidden);
        let markup = url_markup(secret).into_string();
        assert!(!markup.contains("SECRET"), "{markup}");
        assert!(markup.contains("(query hidden)"), "{markup}");
    }

    #[test]
    fn hostile_text_is_escaped() {
        let markup = recipient_link("<script>alert(1)</script>@x").into_string();
        assert!(!markup.contains("<script>"), "{markup}");
        assert!(markup.contains("&lt;script&gt;"), "{markup}");
    }
}
