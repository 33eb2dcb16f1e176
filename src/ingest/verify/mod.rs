//! Request authentication: the checks a source runs on a webhook request before its body
//! is trusted.
//!
//! Each provider declares how it authenticates by building [`Verify`] checks from a
//! source's settings (`Provider::checks`); the webhook handler runs every check of the
//! source on the raw request, before anything is stored. A request passes when all checks
//! pass; the first failure answers `401` with its [`AuthError::code`] and is only counted.
//!
//! - [`token`]: a shared token (Bearer, basic-auth password or `?token=`) and basic auth.
//! - [`crypto`]: the primitives signature schemes are built from, all constant-time.
//! - [`replay`]: tokens seen before, for schemes that sign a one-time token (Mailgun).
//! - [`sns`]: Amazon SNS message signatures and their signing certificates.
//!
//! Checks are synchronous and read the time from [`Request::now`], so tests can verify
//! fixed vectors at a fixed moment. The only I/O, fetching an SNS signing certificate, runs
//! before them ([`Verify::prepare`]).

pub mod crypto;
pub mod replay;
pub mod sns;
pub mod token;

use std::future::Future;
use std::pin::Pin;

use axum::http::HeaderMap;
use jiff::Timestamp;

use crate::config::SourceConfig;
pub use token::Token;

/// What a check sees of one request.
#[derive(Clone, Copy)]
pub struct Request<'a> {
    /// The request's headers.
    pub headers: &'a HeaderMap,
    /// The query string, if any.
    pub query: Option<&'a str>,
    /// The body, byte for byte as received.
    pub body: &'a [u8],
    /// The moment the request is judged at (the clock, injectable for tests).
    pub now: Timestamp,
}

impl Request<'_> {
    /// Returns the text of header `name`, if present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)?.to_str().ok().map(str::trim)
    }
}

/// A future returned by [`Verify::prepare`].
pub type Prepare<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// One way a request proves where it comes from.
pub trait Verify: Send + Sync {
    /// Names the method in `GET /api/sources` (`token`, `basic_auth`, `ecdsa_p256`, ...).
    fn method(&self) -> &'static str;

    /// Fetches what [`Verify::verify`] needs and does not have yet (a signing certificate).
    /// Most checks need nothing.
    fn prepare<'a>(&'a self, request: &'a Request<'a>) -> Option<Prepare<'a>> {
        let _ = request;
        None
    }

    /// Checks the request.
    fn verify(&self, request: &Request<'_>) -> Result<Verified, AuthError>;
}

/// A passed check. Dropping it without [`Verified::keep`] releases what it reserved (a
/// one-time token), so that a provider retrying a request that then failed to be stored is
/// not refused as a replay.
#[derive(Default)]
#[must_use = "call keep() once the request has been stored"]
pub struct Verified {
    reservation: Option<replay::Reservation>,
}

impl Verified {
    /// A passed check that reserved `reservation`.
    pub fn reserving(reservation: replay::Reservation) -> Verified {
        Verified {
            reservation: Some(reservation),
        }
    }

    /// Keeps what the check reserved: the request was stored.
    pub fn keep(self) {
        if let Some(reservation) = self.reservation {
            reservation.keep();
        }
    }
}

/// Why a request was refused. Nothing of it is stored; it is counted in
/// `mailwarden_auth_failures_total{source,reason}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The signature, or a header or field it needs, is absent.
    #[error("missing signature: {0}")]
    MissingSignature(String),
    /// A signature is present but does not match the body and the configured key.
    #[error("the signature does not match the body: {0}")]
    BadSignature(String),
    /// The signed timestamp is too far from now.
    #[error(
        "the signed timestamp is {age_secs} s away from now; at most {max_age_secs} s are accepted"
    )]
    StaleTimestamp {
        /// Distance from now, in seconds.
        age_secs: i64,
        /// Tolerance.
        max_age_secs: u64,
    },
    /// A one-time token that was already used.
    #[error("this signature token was already used")]
    ReplayedToken,
    /// No token or credentials where the source expects them.
    #[error("missing credentials: {0}")]
    MissingToken(&'static str),
    /// Credentials present but wrong.
    #[error("wrong credentials")]
    BadToken,
    /// The signing certificate is not from where the provider publishes them, or could not
    /// be fetched or read.
    #[error("untrusted signing certificate: {0}")]
    UntrustedCertificate(String),
    /// A verified message from a topic the source does not accept.
    #[error("topic `{0}` is not in this source's topic_arns")]
    TopicNotAllowed(String),
}

impl AuthError {
    /// Short machine-readable reason, for the answer and the metric.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::MissingSignature(_) => "missing_signature",
            AuthError::BadSignature(_) => "bad_signature",
            AuthError::StaleTimestamp { .. } => "stale_timestamp",
            AuthError::ReplayedToken => "replayed_token",
            AuthError::MissingToken(_) => "missing_token",
            AuthError::BadToken => "bad_token",
            AuthError::UntrustedCertificate(_) => "untrusted_certificate",
            AuthError::TopicNotAllowed(_) => "topic_not_allowed",
        }
    }
}

/// Refuses a signed timestamp more than `max_age_secs` away from `now`, in either
/// direction (a clock ahead of ours is as suspect as a replay from the past).
pub fn check_age(signed_at: i64, now: Timestamp, max_age_secs: u64) -> Result<(), AuthError> {
    let age = now.as_second().saturating_sub(signed_at);
    if age.unsigned_abs() > max_age_secs {
        return Err(AuthError::StaleTimestamp {
            age_secs: age,
            max_age_secs,
        });
    }
    Ok(())
}

/// Names of the provider-specific settings of `[sources.<name>]`, each taken only by the
/// providers whose scheme uses it.
const PROVIDER_SETTINGS: [&str; 8] = [
    "signing_key",
    "public_key",
    "signing_secret",
    "webhook_key",
    "url",
    "topic_arns",
    "verify_signature",
    "max_signature_age_secs",
];

/// Builds the checks every provider takes (a `token`; `username` with `password` for basic
/// auth) and refuses provider-specific settings not in `accepted`, naming them.
pub fn credential_checks(
    provider: &str,
    settings: &SourceConfig,
    accepted: &[&str],
) -> Result<Vec<Box<dyn Verify>>, String> {
    for name in PROVIDER_SETTINGS {
        if settings.is_set(name) && !accepted.contains(&name) {
            let takes = if accepted.is_empty() {
                "takes none of the signature settings".to_owned()
            } else {
                format!("takes {}", accepted.join(", "))
            };
            return Err(format!(
                "`{name}` does not apply to provider `{provider}` (it {takes})"
            ));
        }
    }
    let mut checks: Vec<Box<dyn Verify>> = Vec::new();
    if let Some(token) = &settings.token {
        if token.expose().trim().is_empty() {
            return Err("`token` is empty".to_owned());
        }
        checks.push(Box::new(token::TokenCheck::new(token.expose())));
    }
    match (&settings.username, &settings.password) {
        (Some(username), Some(password)) => {
            if username.is_empty() || password.expose().is_empty() {
                return Err("`username` and `password` must not be empty".to_owned());
            }
            checks.push(Box::new(token::BasicAuth::new(username, password.expose())));
        }
        (None, None) => {}
        _ => return Err("basic auth needs both `username` and `password`".to_owned()),
    }
    Ok(checks)
}

/// Builds the checks of a provider that signs with a timestamp and one key setting: the
/// credential checks, plus `signature(key, max_age_secs)` when `key` (the value of the
/// setting named `key_setting`) is set, with `max_signature_age_secs` or
/// `default_max_age_secs`. A tolerance without a key is refused: it would check nothing.
pub fn timed_signature_checks(
    provider: &str,
    settings: &SourceConfig,
    key_setting: &'static str,
    key: Option<&str>,
    default_max_age_secs: u64,
    signature: impl FnOnce(&str, u64) -> Result<Box<dyn Verify>, String>,
) -> Result<Vec<Box<dyn Verify>>, String> {
    let mut checks =
        credential_checks(provider, settings, &[key_setting, "max_signature_age_secs"])?;
    match required(key, key_setting)? {
        Some(key) => {
            let max_age = settings
                .max_signature_age_secs
                .unwrap_or(default_max_age_secs);
            checks.push(signature(key, max_age)?);
        }
        None if settings.max_signature_age_secs.is_some() => {
            return Err(format!("`max_signature_age_secs` needs `{key_setting}`"));
        }
        None => {}
    }
    Ok(checks)
}

/// Returns a secret setting that must be present and non-blank, or says which is missing.
pub fn required<'a>(value: Option<&'a str>, name: &str) -> Result<Option<&'a str>, String> {
    match value {
        Some(text) if text.trim().is_empty() => Err(format!("`{name}` is empty")),
        other => Ok(other.map(str::trim)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn age_is_checked_both_ways() {
        let now = Timestamp::from_second(1_000_000).unwrap();
        assert!(check_age(1_000_000 - 300, now, 300).is_ok());
        assert!(check_age(1_000_000 + 300, now, 300).is_ok());
        assert_eq!(
            check_age(1_000_000 - 301, now, 300),
            Err(AuthError::StaleTimestamp {
                age_secs: 301,
                max_age_secs: 300
            })
        );
        assert!(check_age(1_000_000 + 301, now, 300).is_err());
        assert!(check_age(i64::MIN, now, 300).is_err());
    }

    #[test]
    fn settings_of_other_providers_are_refused_by_name() {
        let settings = SourceConfig {
            signing_key: Some(crate::config::Secret::new("key")),
            ..SourceConfig::new("sendpulse")
        };
        let error = credential_checks("sendpulse", &settings, &[])
            .err()
            .expect("refused");
        assert!(error.contains("`signing_key` does not apply"), "{error}");
        let accepted = credential_checks("mailgun", &settings, &["signing_key"]);
        assert!(accepted.is_ok());
    }

    #[test]
    fn basic_auth_needs_both_halves() {
        let settings = SourceConfig {
            username: Some("postmark".into()),
            ..SourceConfig::new("postmark")
        };
        assert!(credential_checks("postmark", &settings, &[]).is_err());
    }
}
