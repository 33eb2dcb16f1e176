//! Token checks for webhook sources and the admin API.
//!
//! Provider dashboards differ in what they can send, so a source token is accepted as
//! `Authorization: Bearer <token>`, as the password of HTTP basic auth, or as `?token=`.
//! Comparison is constant-time over SHA-256 digests, so neither the content nor the length
//! of the expected token leaks through timing.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Name of the query parameter that may carry a source token.
pub const TOKEN_QUERY_PARAMETER: &str = "token";

/// An expected token, kept only as its digest.
#[derive(Clone)]
pub struct Token {
    digest: [u8; 32],
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token([redacted])")
    }
}

impl Token {
    /// Returns the expected token `secret`.
    pub fn new(secret: &str) -> Token {
        Token {
            digest: Sha256::digest(secret.as_bytes()).into(),
        }
    }

    /// Returns whether `candidate` is this token, in constant time.
    pub fn matches(&self, candidate: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(candidate.as_bytes()).into();
        self.digest.ct_eq(&digest).into()
    }

    /// Returns whether the request carries this token as a Bearer token.
    pub fn matches_bearer(&self, headers: &HeaderMap) -> bool {
        bearer(headers).is_some_and(|candidate| self.matches(candidate))
    }

    /// Returns whether the request carries this token in any accepted place: Bearer,
    /// basic-auth password, or the `token` query parameter of `query`.
    pub fn matches_request(&self, headers: &HeaderMap, query: Option<&str>) -> bool {
        let mut matched = false;
        // Every candidate is checked (no early exit) so timing does not tell which failed.
        if let Some(candidate) = bearer(headers) {
            matched |= self.matches(candidate);
        }
        if let Some(password) = basic_password(headers) {
            matched |= self.matches(&password);
        }
        if let Some(query) = query {
            for (name, value) in form_urlencoded::parse(query.as_bytes()) {
                if name == TOKEN_QUERY_PARAMETER {
                    matched |= self.matches(&value);
                }
            }
        }
        matched
    }
}

fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers.get(AUTHORIZATION)?.to_str().ok()
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = authorization(headers)?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn basic_password(headers: &HeaderMap) -> Option<String> {
    let value = authorization(headers)?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (_, password) = text.split_once(':')?;
    Some(password.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(authorization: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, authorization.parse().unwrap());
        headers
    }

    #[test]
    fn token_is_accepted_in_every_documented_place() {
        let token = Token::new("s3cret");
        assert!(token.matches_request(&headers("Bearer s3cret"), None));
        assert!(token.matches_request(&headers("bearer s3cret"), None));
        let basic = base64::engine::general_purpose::STANDARD.encode("sendpulse:s3cret");
        assert!(token.matches_request(&headers(&format!("Basic {basic}")), None));
        assert!(token.matches_request(&HeaderMap::new(), Some("a=1&token=s3cret")));
        assert!(token.matches_request(&HeaderMap::new(), Some("token=s3%63ret")));
    }

    #[test]
    fn wrong_or_missing_token_is_refused() {
        let token = Token::new("s3cret");
        assert!(!token.matches_request(&HeaderMap::new(), None));
        assert!(!token.matches_request(&headers("Bearer s3cre"), None));
        assert!(!token.matches_request(&headers("Bearer s3cret2"), None));
        assert!(!token.matches_request(&headers("Basic !!!"), None));
        assert!(!token.matches_request(&HeaderMap::new(), Some("token=")));
        assert!(!token.matches_bearer(&headers("Basic czNjcmV0")));
    }

    #[test]
    fn debug_never_shows_the_token() {
        assert_eq!(format!("{:?}", Token::new("s3cret")), "Token([redacted])");
    }
}
