//! Console logins: the admin token, typed once into a form, becomes an opaque session
//! cookie.
//!
//! - A session id is 32 random bytes; the server keeps only its SHA-256, with its expiry,
//!   in memory (a restart logs everyone out, which is the safe direction).
//! - The cookie is `HttpOnly; SameSite=Strict; Path=/ui`, and `Secure` when the console is
//!   reached over TLS (`public_url` is `https://…`, or the proxy says
//!   `X-Forwarded-Proto: https`).
//! - Logins are counted per client (an IPv4 address, or an IPv6 /64: one host can rotate
//!   through a whole /64); past the limit a minute, tries are refused with 429 before the
//!   token is even compared. A try is counted before its token is compared, under the
//!   same lock as the check, so parallel tries cannot slip past the limit; a good login
//!   forgets its client's count.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
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
/// Most clients whose login tries are remembered; the one counted longest ago goes
/// first beyond it.
const MAX_TRACKED_CLIENTS: usize = 10_000;
/// How long login tries are counted for.
const ATTEMPT_WINDOW: Duration = Duration::from_secs(60);
/// Longest a session lasts whatever `session_hours` says: browsers keep a cookie 400
/// days at most anyway, and an expiry past what `Instant` holds would overflow.
const LONGEST_SESSION: Duration = Duration::from_secs(400 * 24 * 3600);

/// Live console sessions and recent failed logins.
#[derive(Debug)]
pub struct Sessions {
    ttl: Duration,
    attempts_per_window: u32,
    /// Most clients `failures` holds ([`MAX_TRACKED_CLIENTS`]; smaller in tests).
    max_clients: usize,
    live: Mutex<HashMap<[u8; 32], Instant>>,
    /// Per client (see [`client_key`]): when its window started and the tries in it.
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
    random: ring::rand::SystemRandom,
}

impl Sessions {
    /// Sessions as `config` sets them.
    pub fn new(config: &UiConfig) -> Sessions {
        Sessions {
            ttl: Duration::from_secs(config.session_hours.saturating_mul(3600))
                .min(LONGEST_SESSION),
            attempts_per_window: config.login_attempts_per_minute,
            max_clients: MAX_TRACKED_CLIENTS,
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
        // `ttl` is bounded, but an `Instant` near its end could still overflow: such a
        // session ends at once (the safe direction) rather than panicking.
        let expiry = now.checked_add(self.ttl).unwrap_or(now);
        live.insert(Sha256::digest(id).into(), expiry);
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

    /// Reserves a login try for `client`: returns whether it may compare a token now and,
    /// if so, has already counted the try (checked and counted under one lock, so
    /// parallel tries get at most the limit between them). A good login then calls
    /// [`Sessions::succeeded`], which takes the count back.
    fn reserve_attempt(&self, client: IpAddr) -> bool {
        self.reserve_attempt_at(client, Instant::now())
    }

    /// [`Sessions::reserve_attempt`] at `now`.
    fn reserve_attempt_at(&self, client: IpAddr, now: Instant) -> bool {
        let client = client_key(client);
        let mut failures = self.failures.lock().expect("failures lock is not poisoned");
        if !failures.contains_key(&client) && failures.len() >= self.max_clients {
            failures.retain(|_, (since, _)| now.saturating_duration_since(*since) < ATTEMPT_WINDOW);
            // Still full of clients inside their window: make room by forgetting the one
            // whose window started first, so the table never grows past its cap.
            while failures.len() >= self.max_clients {
                let Some(oldest) = failures
                    .iter()
                    .min_by_key(|(_, (since, _))| *since)
                    .map(|(key, _)| *key)
                else {
                    break;
                };
                failures.remove(&oldest);
            }
        }
        let entry = failures.entry(client).or_insert((now, 0));
        if now.saturating_duration_since(entry.0) >= ATTEMPT_WINDOW {
            *entry = (now, 0);
        }
        if entry.1 >= self.attempts_per_window {
            return false;
        }
        entry.1 += 1;
        true
    }

    /// Forgets the tries of `client` after a good login (the good one included).
    fn succeeded(&self, client: IpAddr) {
        let mut failures = self.failures.lock().expect("failures lock is not poisoned");
        failures.remove(&client_key(client));
    }

    fn max_age_secs(&self) -> u64 {
        self.ttl.as_secs()
    }
}

/// The key login tries of `ip` are counted under: an IPv4 address as it is (also when
/// it comes IPv4-mapped), an IPv6 address as its /64 network, the smallest block a
/// single site is usually given, so rotating through it does not reset the count.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let network = u128::from(v6) & !u128::from(u64::MAX);
                IpAddr::V6(Ipv6Addr::from(network))
            }
        },
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
    if !state.sessions.reserve_attempt(client) {
        tracing::warn!(%client, "console login refused: too many failed tries");
        return login_page(
            StatusCode::TOO_MANY_REQUESTS,
            &next,
            Some("Too many wrong tokens from this address. Wait a minute and try again."),
        );
    }
    if !token.matches(&form.token) {
        // Already counted by the reservation.
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
            assert!(sessions.reserve_attempt(client));
        }
        assert!(!sessions.reserve_attempt(client));
        assert!(sessions.reserve_attempt(other));
        // A good login takes the count back.
        sessions.succeeded(client);
        assert!(sessions.reserve_attempt(client));
    }

    #[test]
    fn tries_count_again_after_the_window() {
        let sessions = Sessions::new(&UiConfig {
            login_attempts_per_minute: 1,
            ..UiConfig::default()
        });
        let client: IpAddr = "192.0.2.1".parse().unwrap();
        let start = Instant::now();
        assert!(sessions.reserve_attempt_at(client, start));
        assert!(!sessions.reserve_attempt_at(client, start + ATTEMPT_WINDOW / 2));
        assert!(sessions.reserve_attempt_at(client, start + ATTEMPT_WINDOW));
    }

    #[test]
    fn parallel_tries_from_one_client_get_at_most_the_limit() {
        let sessions = Sessions::new(&UiConfig {
            login_attempts_per_minute: 5,
            ..UiConfig::default()
        });
        let client: IpAddr = "192.0.2.7".parse().unwrap();
        let barrier = std::sync::Barrier::new(16);
        let allowed = std::sync::atomic::AtomicU32::new(0);
        std::thread::scope(|scope| {
            for _ in 0..16 {
                scope.spawn(|| {
                    barrier.wait();
                    for _ in 0..20 {
                        if sessions.reserve_attempt(client) {
                            allowed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        assert_eq!(allowed.into_inner(), 5);
    }

    #[test]
    fn ipv6_clients_share_a_limit_per_64() {
        let sessions = Sessions::new(&UiConfig {
            login_attempts_per_minute: 3,
            ..UiConfig::default()
        });
        for n in 1..=3u16 {
            let rotating = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, n, n, n, n));
            assert!(sessions.reserve_attempt(rotating), "{rotating}");
        }
        let same_64: IpAddr = "2001:db8:1:2:ffff::1".parse().unwrap();
        assert!(!sessions.reserve_attempt(same_64));
        let next_64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(sessions.reserve_attempt(next_64));
        // IPv4, plain or mapped, is one address.
        let v4: IpAddr = "198.51.100.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:198.51.100.1".parse().unwrap();
        assert_eq!(client_key(mapped), v4);
        assert_eq!(client_key(v4), v4);
        assert_ne!(client_key("198.51.100.2".parse().unwrap()), v4);
    }

    #[test]
    fn the_client_table_never_grows_past_its_cap() {
        let mut sessions = Sessions::new(&UiConfig {
            login_attempts_per_minute: 1,
            ..UiConfig::default()
        });
        sessions.max_clients = 100;
        let start = Instant::now();
        let address = |n: u32| IpAddr::V4(std::net::Ipv4Addr::from(0xc000_0200 + n));
        // All inside their window: none expires, yet the table stays at its cap.
        for n in 0..250 {
            let at = start + Duration::from_millis(u64::from(n));
            assert!(sessions.reserve_attempt_at(address(n), at));
        }
        let at = start + Duration::from_millis(300);
        let failures = sessions.failures.lock().unwrap();
        assert_eq!(failures.len(), 100);
        // The newest are kept, the oldest went first.
        assert!(failures.contains_key(&address(249)));
        assert!(failures.contains_key(&address(150)));
        assert!(!failures.contains_key(&address(149)));
        drop(failures);
        // A client still tracked is still limited.
        assert!(!sessions.reserve_attempt_at(address(249), at));
    }

    #[test]
    fn a_huge_session_lifetime_does_not_panic() {
        let sessions = Sessions::new(&UiConfig {
            session_hours: u64::MAX,
            ..UiConfig::default()
        });
        assert_eq!(sessions.max_age_secs(), LONGEST_SESSION.as_secs());
        let id = sessions.start();
        let mut headers = HeaderMap::new();
        let cookie = format!("{COOKIE_NAME}={id}");
        headers.insert(COOKIE, HeaderValue::from_str(&cookie).unwrap());
        assert!(sessions.is_valid(&headers));
    }
}
