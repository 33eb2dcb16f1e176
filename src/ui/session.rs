//! Console logins: the admin token, typed once into a form, becomes an opaque session
//! cookie.
//!
//! - A session id is 32 random bytes; the server keeps only its SHA-256, with its expiry,
//!   in memory (a restart logs everyone out, which is the safe direction).
//! - The cookie is `HttpOnly; SameSite=Strict; Path=/ui`, and `Secure` when the console is
//!   reached over TLS (`public_url` is `https://…`, or the proxy says
//!   `X-Forwarded-Proto: https`).
//! - Failed logins are counted per client address; past the limit a minute, tries are
//!   refused with 429 before the token is even compared.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Form;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::header::{COOKIE, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use maud::html;
use ring::rand::SecureRandom as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::PREFIX;
use super::layout;
use crate::api::AppState;
use crate::config::UiConfig;

/// Name of the session cookie.
pub const COOKIE_NAME: &str = "mailwarden_session";
/// Most sessions held at once; the oldest goes first beyond it.
const MAX_SESSIONS: usize = 10_000;
/// Most client addresses whose failed logins are remembered.
const MAX_TRACKED_CLIENTS: usize = 10_000;
/// How long failed logins are counted for.
const ATTEMPT_WINDOW: Duration = Duration::from_secs(60);

/// Live console sessions and recent failed logins.
#[derive(Debug)]
pub struct Sessions {
    ttl: Duration,
    attempts_per_window: u32,
    live: Mutex<HashMap<[u8; 32], Instant>>,
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
    random: ring::rand::SystemRandom,
}

impl Sessions {
    /// Sessions as `config` sets them.
    pub fn new(config: &UiConfig) -> Sessions {
        Sessions {
            ttl: Duration::from_secs(config.session_hours.saturating_mul(3600)),
            attempts_per_window: config.login_attempts_per_minute,
            live: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            random: ring::rand::SystemRandom::new(),
        }
    }

    /// Starts a session and returns its id (the cookie's value).
    fn start(&self) -> String {
        let mut id = [0u8; 32];
        self.random
            .fill(&mut id)
            .expect("the system random generator works");
        let now = Instant::now();
        let mut live = self.live.lock().expect("sessions lock is not poisoned");
        live.retain(|_, expiry| *expiry > now);
        if live.len() >= MAX_SESSIONS {
            if let Some(oldest) = live.iter().min_by_key(|(_, e)| **e).map(|(k, _)| *k) {
                live.remove(&oldest);
            }
        }
        live.insert(Sha256::digest(id).into(), now + self.ttl);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id)
    }

    /// Returns whether `headers` carry the cookie of a live session.
    pub fn is_valid(&self, headers: &HeaderMap) -> bool {
        let Some(key) = session_key(headers) else {
            return false;
        };
        let live = self.live.lock().expect("sessions lock is not poisoned");
        live.get(&key)
            .is_some_and(|expiry| *expiry > Instant::now())
    }

    /// Ends the session `headers` carry, if any.
    fn end(&self, headers: &HeaderMap) {
        if let Some(key) = session_key(headers) {
            let mut live = self.live.lock().expect("sessions lock is not poisoned");
            live.remove(&key);
        }
    }

    /// Returns whether `client` may try a token now.
    fn may_try(&self, client: IpAddr) -> bool {
        let failures = self.failures.lock().expect("failures lock is not poisoned");
        failures.get(&client).is_none_or(|(since, count)| {
            since.elapsed() >= ATTEMPT_WINDOW || *count < self.attempts_per_window
        })
    }

    /// Counts a failed login of `client`.
    fn failed(&self, client: IpAddr) {
        let now = Instant::now();
        let mut failures = self.failures.lock().expect("failures lock is not poisoned");
        if failures.len() >= MAX_TRACKED_CLIENTS {
            failures.retain(|_, (since, _)| now.duration_since(*since) < ATTEMPT_WINDOW);
        }
        let entry = failures.entry(client).or_insert((now, 0));
        if now.duration_since(entry.0) >= ATTEMPT_WINDOW {
            *entry = (now, 0);
        }
        entry.1 += 1;
    }

    /// Forgets the failures of `client` after a good login.
    fn succeeded(&self, client: IpAddr) {
        let mut failures = self.failures.lock().expect("failures lock is not poisoned");
        failures.remove(&client);
    }

    fn max_age_secs(&self) -> u64 {
        self.ttl.as_secs()
    }
}

/// The digest of the session id in the request's cookie.
fn session_key(headers: &HeaderMap) -> Option<[u8; 32]> {
    let value = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|cookies| cookies.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE_NAME)?.strip_prefix('='))?;
    let id = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(value)
        .ok()?;
    (id.len() == 32).then(|| Sha256::digest(&id).into())
}

/// Query of the login form: where to go after.
#[derive(Debug, Default, Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

/// The login form's fields.
#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
    #[serde(default)]
    next: Option<String>,
}

/// `GET /ui/login`.
pub async fn login_form(State(state): State<AppState>, query: Query<LoginQuery>) -> Response {
    let next = safe_next(query.0.next.as_deref());
    if state.admin_token.is_none() {
        // Nothing to log in to: the console is open on loopback.
        return redirect(&next, None);
    }
    login_page(StatusCode::OK, &next, None)
}

/// `POST /ui/login`: checks the token (in constant time) and starts a session.
pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let next = safe_next(form.next.as_deref());
    let Some(token) = &state.admin_token else {
        return redirect(&next, None);
    };
    let client = peer.ip();
    if !state.sessions.may_try(client) {
        tracing::warn!(%client, "console login refused: too many failed tries");
        return login_page(
            StatusCode::TOO_MANY_REQUESTS,
            &next,
            Some("Too many wrong tokens from this address. Wait a minute and try again."),
        );
    }
    if !token.matches(&form.token) {
        state.sessions.failed(client);
        tracing::warn!(%client, "console login with a wrong token");
        return login_page(
            StatusCode::UNAUTHORIZED,
            &next,
            Some("That is not the admin token."),
        );
    }
    state.sessions.succeeded(client);
    let id = state.sessions.start();
    let secure = is_tls(&state, &headers);
    let cookie = format!(
        "{COOKIE_NAME}={id}; HttpOnly; SameSite=Strict; Path={PREFIX}; Max-Age={}{}",
        state.sessions.max_age_secs(),
        if secure { "; Secure" } else { "" }
    );
    tracing::info!(%client, "console login");
    redirect(&next, Some(cookie))
}

/// `POST /ui/logout`: ends the session and clears the cookie.
pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    state.sessions.end(&headers);
    let cookie = format!("{COOKIE_NAME}=; HttpOnly; SameSite=Strict; Path={PREFIX}; Max-Age=0");
    redirect(&format!("{PREFIX}/login"), Some(cookie))
}

/// Whether the browser reached the console over TLS (a proxy in front terminates it).
fn is_tls(state: &AppState, headers: &HeaderMap) -> bool {
    let public_https = state
        .config
        .public_url
        .as_deref()
        .is_some_and(|url| url.starts_with("https://"));
    let forwarded_https = headers
        .get("x-forwarded-proto")
        .is_some_and(|proto| proto.as_bytes().eq_ignore_ascii_case(b"https"));
    public_https || forwarded_https
}

/// A console path to return to, never another site (`//evil.example`, `https://…`).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(path)
            if (path == PREFIX || path.starts_with("/ui/") || path.starts_with("/ui?"))
                && !path.contains('\\') =>
        {
            path.to_owned()
        }
        _ => PREFIX.to_owned(),
    }
}

fn redirect(to: &str, cookie: Option<String>) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(to) {
        headers.insert(LOCATION, value);
    }
    if let Some(cookie) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        headers.insert(SET_COOKIE, cookie);
    }
    response
}

fn login_page(status: StatusCode, next: &str, error: Option<&str>) -> Response {
    let body = html! {
        section .login {
            h1 { "mailwarden" }
            p { "Enter the admin token (" code { "admin_token" } " in the configuration)." }
            form method="post" action={ (PREFIX) "/login" } {
                input type="hidden" name="next" value=(next);
                label for="token" { "Admin token" }
                input #token type="password" name="token" required autocomplete="current-password" autofocus;
                @if let Some(error) = error {
                    p .error role="alert" { (error) }
                }
                button type="submit" { "Log in" }
            }
        }
    };
    (status, layout::bare("Log in", body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_console_paths_are_returned_to() {
        assert_eq!(
            safe_next(Some("/ui/events?kind=complaint")),
            "/ui/events?kind=complaint"
        );
        assert_eq!(safe_next(Some("/ui")), "/ui");
        for hostile in [
            "//evil.example",
            "https://evil.example/ui",
            "/uix",
            "/ui/\\evil",
            "/api/events",
        ] {
            assert_eq!(safe_next(Some(hostile)), "/ui", "{hostile}");
        }
        assert_eq!(safe_next(None), "/ui");
    }

    #[test]
    fn a_session_is_valid_until_it_ends_and_only_with_its_own_id() {
        let sessions = Sessions::new(&UiConfig::default());
        let id = sessions.start();
        let mut headers = HeaderMap::new();
        let cookie = format!("theme=dark; {COOKIE_NAME}={id}");
        headers.insert(COOKIE, HeaderValue::from_str(&cookie).unwrap());
        assert!(sessions.is_valid(&headers));
        let mut forged = HeaderMap::new();
        let other = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([7u8; 32]);
        forged.insert(
            COOKIE,
            HeaderValue::from_str(&format!("{COOKIE_NAME}={other}")).unwrap(),
        );
        assert!(!sessions.is_valid(&forged));
        sessions.end(&headers);
        assert!(!sessions.is_valid(&headers));
    }

    #[test]
    fn failed_logins_are_limited_per_client() {
        let sessions = Sessions::new(&UiConfig {
            login_attempts_per_minute: 3,
            ..UiConfig::default()
        });
        let client: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            assert!(sessions.may_try(client));
            sessions.failed(client);
        }
        assert!(!sessions.may_try(client));
        assert!(sessions.may_try(other));
    }
}
