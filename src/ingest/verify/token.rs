//! Shared-secret checks: a source token, basic auth, and the admin token.
//!
//! Provider dashboards differ in what they can send, so a source token is accepted as
//! `Authorization: Bearer <token>`, as the password of HTTP basic auth, or as `?token=`.
//! Basic auth ([`BasicAuth`]) checks the user name too, for providers that send
//! credentials written into the webhook URL (Postmark, SparkPost, Mailjet). Comparison is
//! constant-time over SHA-256 digests, so neither the content nor the length of the
//! expected secret leaks through timing.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{AuthError, Request, Verified, Verify};

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

/// A source token, in any place [`Token::matches_request`] accepts.
#[derive(Debug)]
pub struct TokenCheck(Token);

impl TokenCheck {
    /// Expects `secret`.
    pub fn new(secret: &str) -> TokenCheck {
        TokenCheck(Token::new(secret))
    }
}

impl Verify for TokenCheck {
    fn method(&self) -> &'static str {
        "token"
    }

    fn verify(&self, request: &Request<'_>) -> Result<Verified, AuthError> {
        if self.0.matches_request(request.headers, request.query) {
            return Ok(Verified::default());
        }
        let sent = request.headers.contains_key(AUTHORIZATION)
            || request.query.is_some_and(|query| {
                form_urlencoded::parse(query.as_bytes())
                    .any(|(name, _)| name == TOKEN_QUERY_PARAMETER)
            });
        if sent {
            Err(AuthError::BadToken)
        } else {
            Err(AuthError::MissingToken(
                "send the token as `Authorization: Bearer <token>`, as the basic-auth password, \
                 or as `?token=`",
            ))
        }
    }
}

/// HTTP basic auth with a fixed user name and password.
#[derive(Debug)]
pub struct BasicAuth {
    username: Token,
    password: Token,
}

impl BasicAuth {
    /// Expects `username` and `password`.
    pub fn new(username: &str, password: &str) -> BasicAuth {
        BasicAuth {
            username: Token::new(username),
            password: Token::new(password),
        }
    }
}

impl Verify for BasicAuth {
    fn method(&self) -> &'static str {
        "basic_auth"
    }

    fn verify(&self, request: &Request<'_>) -> Result<Verified, AuthError> {
        let Some((username, password)) = basic_credentials(request.headers) else {
            return Err(AuthError::MissingToken(
                "send `Authorization: Basic ...` (credentials in the webhook URL: \
                 https://user:password@host/...)",
            ));
        };
        // Both halves are compared, always, so timing does not tell which one was wrong.
        let user_ok = self.username.matches(&username);
        let password_ok = self.password.matches(&password);
        if user_ok & password_ok {
            Ok(Verified::default())
        } else {
            Err(AuthError::BadToken)
        }
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
    basic_credentials(headers).map(|(_, password)| password)
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = authorization(headers)?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (username, password) = text.split_once(':')?;
    Some((username.to_owned(), password.to_owned()))
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
    fn basic_auth_checks_user_and_password() {
        let check = BasicAuth::new("postmark", "s3cret");
        let request = |headers: &HeaderMap| {
            check
                .verify(&Request {
                    headers,
                    query: None,
                    body: b"",
                    now: jiff::Timestamp::UNIX_EPOCH,
                })
                .map(|verified| verified.keep())
        };
        let encode = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
        assert!(request(&headers(&format!("Basic {}", encode("postmark:s3cret")))).is_ok());
        assert_eq!(
            request(&headers(&format!("Basic {}", encode("other:s3cret")))),
            Err(AuthError::BadToken)
        );
        assert_eq!(
            request(&headers(&format!("Basic {}", encode("postmark:s3cre")))),
            Err(AuthError::BadToken)
        );
        assert!(matches!(
            request(&HeaderMap::new()),
            Err(AuthError::MissingToken(_))
        ));
    }

    #[test]
    fn debug_never_shows_the_token() {
        assert_eq!(format!("{:?}", Token::new("s3cret")), "Token([redacted])");
    }
}
