//! Outbound calls for `http_post`: a guarded client, Standard Webhooks signatures, and how
//! each outcome is classified (done, retry, dead letter, held by the destination's
//! circuit breaker).
//!
//! `timeout_secs` bounds the whole call: connecting, sending, the answer's headers and
//! its body (as much of it as is read). A receiver that accepts and never answers, or
//! answers a byte a second, fails at that deadline like one that refuses connections:
//! the attempt is retried on the schedule and counts against the host's breaker
//! ([`super::breaker`]). A 2xx whose body is cut off or late is a failed attempt too;
//! the retry carries the same idempotency key, so a receiver that did act can tell.
//!
//! The SSRF guard resolves names itself and refuses loopback, private, link-local,
//! unique-local, CGNAT and metadata addresses unless the host or network is on the allow
//! list; redirects are not followed (a redirect could lead past the guard).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use ipnet::IpNet;
use jiff::Timestamp;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use sha2::Sha256;
use tokio::sync::Semaphore;

use super::breaker::{BreakerSettings, Breakers, Gate, Health};
use crate::config::OutboundConfig;
use crate::event::EventId;

/// What became of one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOutcome {
    /// 2xx.
    Done(u16),
    /// Worth trying again (5xx, 408/409/425/429, timeouts, connection errors), optionally
    /// not before the receiver's `Retry-After`.
    Retry {
        /// What happened.
        error: String,
        /// Delay the receiver asked for.
        retry_after: Option<Duration>,
    },
    /// Will never work (other 4xx, refused by the guard, bad URL).
    Dead(String),
    /// Not attempted: the destination's circuit breaker is open until then.
    Held(Timestamp),
}

/// Hosts and networks the guard lets through.
#[derive(Debug, Clone, Default)]
pub struct AllowList {
    networks: Vec<IpNet>,
    hosts: Vec<String>,
}

impl AllowList {
    /// Reads `"10.0.0.0/8"`, `"127.0.0.1"` and host names.
    pub fn new(entries: &[String]) -> AllowList {
        let mut list = AllowList::default();
        for entry in entries {
            let entry = entry.trim();
            if let Ok(net) = entry.parse::<IpNet>() {
                list.networks.push(net);
            } else if let Ok(ip) = entry.parse::<IpAddr>() {
                list.networks.push(IpNet::from(ip));
            } else {
                list.hosts.push(entry.to_ascii_lowercase());
            }
        }
        list
    }

    fn allows_host(&self, host: &str) -> bool {
        self.hosts
            .iter()
            .any(|allowed| allowed == &host.to_ascii_lowercase())
    }

    fn allows_ip(&self, ip: IpAddr) -> bool {
        self.networks.iter().any(|net| net.contains(&ip))
    }
}

/// Returns why `ip` may not be called, if it may not.
pub fn forbidden_ip(ip: IpAddr) -> Option<&'static str> {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        other => other,
    };
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            if v4.is_loopback() {
                Some("loopback")
            } else if v4.is_private() {
                Some("private network")
            } else if v4.is_link_local() {
                Some("link-local (cloud metadata)")
            } else if v4.is_unspecified() || v4.is_broadcast() || v4.is_multicast() || a == 0 {
                Some("not a unicast address")
            } else if a == 100 && (64..128).contains(&b) {
                Some("carrier-grade NAT")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() || v6.is_multicast() {
                Some("not a unicast address")
            } else if first & 0xfe00 == 0xfc00 {
                Some("unique local (private network)")
            } else if first & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else {
                None
            }
        }
    }
}

/// Resolver that drops addresses the guard forbids.
struct GuardedResolver {
    allow: Arc<AllowList>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow = self.allow.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addresses: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if allow.allows_host(&host) {
                return Ok(Box::new(addresses.into_iter()) as Addrs);
            }
            let mut refused = None;
            let permitted: Vec<SocketAddr> = addresses
                .into_iter()
                .filter(|address| match forbidden_ip(address.ip()) {
                    Some(why) if !allow.allows_ip(address.ip()) => {
                        refused = Some(format!("{host} resolves to {} ({why})", address.ip()));
                        false
                    }
                    _ => true,
                })
                .collect();
            if permitted.is_empty() {
                let message = refused.unwrap_or_else(|| format!("{host} has no address"));
                return Err(
                    Box::new(GuardError(message)) as Box<dyn std::error::Error + Send + Sync>
                );
            }
            Ok(Box::new(permitted.into_iter()) as Addrs)
        })
    }
}

/// A call refused by the SSRF guard.
#[derive(Debug, thiserror::Error)]
#[error("refused by the outbound address guard: {0}")]
pub struct GuardError(String);

/// The outbound client with its guard, signing key and per-host limits.
pub struct Caller {
    client: reqwest::Client,
    allow: Arc<AllowList>,
    signing_key: Option<Vec<u8>>,
    max_response_bytes: usize,
    per_host: usize,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
    breakers: Breakers,
}

impl Caller {
    /// Builds the client from the settings.
    pub fn new(config: &OutboundConfig) -> anyhow::Result<Caller> {
        let allow = Arc::new(AllowList::new(&config.allow));
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(config.connect_timeout_secs))
            .timeout(Duration::from_secs(config.timeout_secs))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("mailwarden/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(GuardedResolver {
                allow: allow.clone(),
            }))
            .build()?;
        let signing_key = config.signing_secret.as_ref().map(|secret| {
            let text = secret.expose();
            match text.strip_prefix("whsec_").map(|b64| BASE64.decode(b64)) {
                Some(Ok(key)) => key,
                _ => text.as_bytes().to_vec(),
            }
        });
        Ok(Caller {
            client,
            allow,
            signing_key,
            max_response_bytes: config.max_response_bytes,
            per_host: config.per_host_concurrency.max(1),
            hosts: Mutex::new(HashMap::new()),
            breakers: Breakers::new(BreakerSettings::new(config)),
        })
    }

    /// The circuit breakers of the destinations called.
    pub fn breakers(&self) -> &Breakers {
        &self.breakers
    }

    fn host_limit(&self, host: &str) -> Arc<Semaphore> {
        self.hosts
            .lock()
            .expect("host limits lock")
            .entry(host.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_host)))
            .clone()
    }

    /// POSTs `body` to `url` with `headers`, identified by `message_id` (stable across
    /// retries and replays).
    pub async fn post(
        &self,
        message_id: &str,
        url: &str,
        body: &serde_json::Value,
        headers: &std::collections::BTreeMap<String, String>,
    ) -> CallOutcome {
        let parsed = match reqwest::Url::parse(url) {
            Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => parsed,
            Ok(_) => return CallOutcome::Dead("only http and https URLs are called".into()),
            Err(error) => return CallOutcome::Dead(format!("bad URL: {error}")),
        };
        let host = parsed.host_str().unwrap_or_default().to_owned();
        let destination = destination_of(&parsed);
        // Literal IPs never reach the resolver: check them here.
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = literal.parse::<IpAddr>() {
            if let Some(why) = forbidden_ip(ip) {
                if !self.allow.allows_ip(ip) && !self.allow.allows_host(&host) {
                    return CallOutcome::Dead(format!(
                        "refused by the outbound address guard: {ip} is {why}; add it to outbound.allow to permit it"
                    ));
                }
            }
        }
        // Cheap check first, so a held call does not queue for the host's permits.
        if let Gate::Blocked(until) = self.breakers.gate(&destination, Instant::now()) {
            return CallOutcome::Held(wall(until));
        }
        let payload = serde_json::to_vec(body).unwrap_or_default();
        let timestamp = Timestamp::now().as_second().to_string();
        let mut request = self
            .client
            .post(parsed)
            .header("content-type", "application/json")
            .header("idempotency-key", message_id)
            .header("webhook-id", message_id)
            .header("webhook-timestamp", &timestamp);
        if let Some(key) = &self.signing_key {
            request = request.header(
                "webhook-signature",
                sign(key, message_id, &timestamp, &payload),
            );
        }
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let limit = self.host_limit(&host);
        let _permit = limit.acquire().await;
        // Admitted only once a permit is held: calls that queued behind failing ones see
        // the breaker those opened.
        let ticket = match self.breakers.admit(&destination, Instant::now()) {
            Ok(ticket) => ticket,
            Err(until) => return CallOutcome::Held(wall(until)),
        };
        let (outcome, health) = match request.body(payload).send().await {
            Ok(response) => self.classify(response).await,
            Err(error) => classify_error(error),
        };
        ticket.record(health, Instant::now());
        outcome
    }

    async fn classify(&self, mut response: reqwest::Response) -> (CallOutcome, Health) {
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|value| value.to_str().ok())
            .and_then(parse_retry_after);
        // Read (a bounded part of) the body so the connection can be reused. The client's
        // timeout covers this too: a body that trickles or stops fails the call.
        let mut snippet = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    let room = self.max_response_bytes.saturating_sub(snippet.len());
                    snippet.extend_from_slice(&chunk[..chunk.len().min(room)]);
                    if room <= chunk.len() {
                        break;
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    // No URL in the kept text (see `classify_error`).
                    let error = error.without_url();
                    let what = if error.is_timeout() {
                        "timed out reading the response"
                    } else {
                        "the response was cut off"
                    };
                    let error = format!("HTTP {status}, then {what}: {error}");
                    return (
                        CallOutcome::Retry {
                            error: error.clone(),
                            retry_after: None,
                        },
                        Health::Down(error),
                    );
                }
            }
        }
        let text = String::from_utf8_lossy(&snippet[..snippet.len().min(200)]).into_owned();
        let error = format!("HTTP {status}: {text}");
        match status {
            200..=299 => (CallOutcome::Done(status), Health::Up),
            // The receiver is failing or asks to be left alone: retry, and count it.
            408 | 429 | 500..=599 => (
                CallOutcome::Retry {
                    error: error.clone(),
                    retry_after,
                },
                Health::Down(error),
            ),
            // The receiver answered, it is up; these are about this call.
            409 | 425 => (CallOutcome::Retry { error, retry_after }, Health::Up),
            _ => (CallOutcome::Dead(error), Health::Up),
        }
    }
}

/// Returns the breaker key of a URL: `host:port`, the port explicit or the scheme's.
pub fn destination_of(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    match url.port_or_known_default() {
        Some(port) => format!("{host}:{port}"),
        None => host,
    }
}

/// Returns the breaker key of a URL given as text, if it parses.
pub fn destination(url: &str) -> Option<String> {
    reqwest::Url::parse(url)
        .ok()
        .map(|url| destination_of(&url))
}

/// Returns the wall-clock time of a monotonic instant.
fn wall(until: Instant) -> Timestamp {
    super::breaker::at_wall(until, Instant::now(), Timestamp::now())
}

/// Classifies a call that got no answer. The text kept (the action's `last_error`, the
/// breaker's last error, both shown in the console) leaves out the URL reqwest puts in
/// its errors: it can carry credentials (`?api_key=…`, a secret path).
fn classify_error(error: reqwest::Error) -> (CallOutcome, Health) {
    let error = error.without_url();
    let mut source: Option<&dyn std::error::Error> = Some(&error);
    while let Some(current) = source {
        if let Some(guard) = current.downcast_ref::<GuardError>() {
            return (CallOutcome::Dead(guard.to_string()), Health::Unknown);
        }
        source = current.source();
    }
    let what = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    let error = format!("{what}: {error}");
    (
        CallOutcome::Retry {
            error: error.clone(),
            retry_after: None,
        },
        Health::Down(error),
    )
}

/// Reads `Retry-After` in seconds or as an HTTP date; capped at a day.
fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    let seconds = match value.parse::<u64>() {
        Ok(seconds) => seconds,
        Err(_) => {
            let at = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
            u64::try_from(at.as_second() - Timestamp::now().as_second()).unwrap_or(0)
        }
    };
    Some(Duration::from_secs(seconds.min(86_400)))
}

/// The id a call is sent with: derived from the event, rule, URL and body when the call
/// comes from an event, so retries and replays of the same call carry the same id and the
/// receiver can tell they are one; the action's id otherwise.
pub fn message_id(
    action: EventId,
    event: Option<EventId>,
    rule: &str,
    url: &str,
    body: &serde_json::Value,
) -> String {
    use sha2::Digest;
    let Some(event) = event else {
        return format!("msg_{action}");
    };
    let mut hasher = Sha256::new();
    for part in [
        event.to_string().as_bytes(),
        rule.as_bytes(),
        url.as_bytes(),
        body.to_string().as_bytes(),
    ] {
        hasher.update(part);
        hasher.update([0]);
    }
    let digest = hasher.finalize();
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("msg_{hex}")
}

/// The Standard Webhooks signature: `v1,` + base64 HMAC-SHA256 of `id.timestamp.body`.
pub fn sign(key: &[u8], id: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_call_that_cannot_connect_keeps_no_url_in_its_error() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = closed.local_addr().expect("bound").port();
        drop(closed);
        let caller = Caller::new(&OutboundConfig {
            allow: vec!["127.0.0.1/32".into()],
            ..OutboundConfig::default()
        })
        .expect("client builds");
        let url = format!("http://127.0.0.1:{port}/services/T0/SECRET-PATH?api_key=SECRET");
        let outcome = caller
            .post("msg_1", &url, &serde_json::json!({}), &Default::default())
            .await;
        let CallOutcome::Retry { error, .. } = outcome else {
            panic!("a refused connection is retried: {outcome:?}");
        };
        assert!(error.starts_with("could not connect"), "{error}");
        assert!(!error.contains("SECRET"), "{error}");
        let hosts = caller.breakers().hosts();
        let shown = serde_json::to_string(&hosts).expect("hosts serialize");
        assert!(!shown.contains("SECRET"), "{shown}");
    }

    #[test]
    fn guard_refuses_internal_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "169.254.169.254",
            "::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "100.64.0.1",
            "0.0.0.0",
        ] {
            assert!(forbidden_ip(ip.parse().unwrap()).is_some(), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:4700::1111"] {
            assert!(forbidden_ip(ip.parse().unwrap()).is_none(), "{ip}");
        }
        let allow = AllowList::new(&["127.0.0.1/32".into(), "crm.internal".into()]);
        assert!(allow.allows_ip("127.0.0.1".parse().unwrap()));
        assert!(!allow.allows_ip("127.0.0.2".parse().unwrap()));
        assert!(allow.allows_host("CRM.internal"));
    }

    #[test]
    fn signature_matches_the_standard_webhooks_example() {
        // Example from the Standard Webhooks specification.
        let key = BASE64.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn retry_after_in_seconds() {
        assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
        assert_eq!(
            parse_retry_after("999999"),
            Some(Duration::from_secs(86_400))
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
