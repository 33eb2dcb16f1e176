//! Amazon SNS message signatures, the signing certificates they refer to, and subscription
//! confirmation.
//!
//! SNS signs the string built from a message's fields ([`string_to_sign`]) with RSA:
//! SHA1 for `SignatureVersion` 1, SHA256 for 2
//! (<https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html>). The
//! certificate is named by `SigningCertURL` in the message itself, so the URL is trusted
//! only when it is HTTPS on an SNS host (`sns.<region>.amazonaws.com`, or `.com.cn` in the
//! China regions); the TLS connection to that host is what vouches for the certificate.
//! Certificates are fetched once and cached by URL ([`Certificates`]); tests put their own
//! certificate into the same cache.
//!
//! Message timestamps are not checked for age: SNS retries a delivery with the original
//! message and signature for as long as its delivery policy says, and a replay repeats the
//! `MessageId`, which dedup already folds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{AlgorithmIdentifier, CertificateDer, InvalidSignature, alg_id};
use serde::Deserialize;
use webpki::EndEntityCert;

use super::crypto::base64_decode;
use super::{AuthError, Prepare, Request, Verified, Verify};

/// Largest certificate accepted from a certificate URL.
const MAX_CERTIFICATE_BYTES: usize = 64 * 1024;
/// Most certificates cached (AWS rotates them rarely; a handful per region).
const MAX_CACHED: usize = 256;
/// Time limit of a certificate fetch or a subscription confirmation.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The fields of an SNS message that matter here, under SNS's own names.
#[derive(Debug, Clone, Deserialize)]
pub struct Message {
    /// `Notification`, `SubscriptionConfirmation` or `UnsubscribeConfirmation`.
    #[serde(rename = "Type")]
    pub kind: String,
    /// Unique per published message; repeated by SNS retries.
    #[serde(rename = "MessageId")]
    pub message_id: String,
    /// The confirmation token (confirmations only).
    #[serde(rename = "Token", default)]
    pub token: Option<String>,
    /// Topic the message was published to.
    #[serde(rename = "TopicArn")]
    pub topic_arn: String,
    /// Optional subject (notifications).
    #[serde(rename = "Subject", default)]
    pub subject: Option<String>,
    /// The payload: for SES, the notification as a JSON string.
    #[serde(rename = "Message")]
    pub message: String,
    /// URL that confirms the subscription (confirmations only).
    #[serde(rename = "SubscribeURL", default)]
    pub subscribe_url: Option<String>,
    /// When SNS published it (ISO 8601).
    #[serde(rename = "Timestamp")]
    pub timestamp: String,
    /// `1` (SHA1withRSA) or `2` (SHA256withRSA).
    #[serde(rename = "SignatureVersion", default)]
    pub signature_version: Option<String>,
    /// Base64 RSA signature of [`string_to_sign`].
    #[serde(rename = "Signature", default)]
    pub signature: Option<String>,
    /// Where the signing certificate is published.
    #[serde(rename = "SigningCertURL", alias = "SigningCertUrl", default)]
    pub signing_cert_url: Option<String>,
}

/// Message types.
pub const NOTIFICATION: &str = "Notification";
/// Sent once when a subscription is created; must be confirmed.
pub const SUBSCRIPTION_CONFIRMATION: &str = "SubscriptionConfirmation";
/// Sent when the subscription is deleted.
pub const UNSUBSCRIBE_CONFIRMATION: &str = "UnsubscribeConfirmation";

impl Message {
    /// Reads an SNS message from a request body; `None` if it is not one.
    pub fn parse(body: &[u8]) -> Option<Message> {
        let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
        serde_json::from_slice(body).ok()
    }
}

/// Returns the text SNS signed for `message`: `key\nvalue\n` for each signed field present,
/// in byte order of the keys. Notifications sign Message, MessageId, Subject (only when
/// present), Timestamp, TopicArn, Type; confirmations sign Message, MessageId, SubscribeURL,
/// Timestamp, Token, TopicArn, Type.
pub fn string_to_sign(message: &Message) -> Result<String, AuthError> {
    let mut fields: Vec<(&str, &str)> = vec![
        ("Message", &message.message),
        ("MessageId", &message.message_id),
    ];
    match message.kind.as_str() {
        NOTIFICATION => {
            if let Some(subject) = &message.subject {
                fields.push(("Subject", subject));
            }
            fields.push(("Timestamp", &message.timestamp));
        }
        SUBSCRIPTION_CONFIRMATION | UNSUBSCRIBE_CONFIRMATION => {
            let missing = |name: &str| AuthError::MissingSignature(format!("`{name}` is missing"));
            let url = message
                .subscribe_url
                .as_deref()
                .ok_or_else(|| missing("SubscribeURL"))?;
            let token = message.token.as_deref().ok_or_else(|| missing("Token"))?;
            fields.push(("SubscribeURL", url));
            fields.push(("Timestamp", &message.timestamp));
            fields.push(("Token", token));
        }
        other => {
            return Err(AuthError::BadSignature(format!(
                "unknown SNS message type `{}`",
                crate::ingest::fields::clip(other, 40)
            )));
        }
    }
    fields.push(("TopicArn", &message.topic_arn));
    fields.push(("Type", &message.kind));
    let mut text = String::new();
    for (key, value) in fields {
        text.push_str(key);
        text.push('\n');
        text.push_str(value);
        text.push('\n');
    }
    Ok(text)
}

/// Returns whether `url` is where SNS publishes signing certificates: HTTPS, default port,
/// no credentials, on `sns.<region>.amazonaws.com` (or `.amazonaws.com.cn`), a `.pem` file.
pub fn check_certificate_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|error| format!("bad URL: {error}"))?;
    if parsed.scheme() != "https" {
        return Err("the certificate URL is not HTTPS".to_owned());
    }
    if parsed.port().is_some() || !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("the certificate URL has a port or credentials".to_owned());
    }
    let host = parsed.host_str().unwrap_or_default();
    if !is_sns_host(host) {
        return Err(format!(
            "`{}` is not an SNS host (sns.<region>.amazonaws.com)",
            crate::ingest::fields::clip(host, 80)
        ));
    }
    if !parsed.path().ends_with(".pem") {
        return Err("the certificate URL does not name a .pem file".to_owned());
    }
    Ok(())
}

/// Returns whether `url` may be called to confirm a subscription: HTTPS on an SNS host.
pub fn check_subscribe_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|error| format!("bad URL: {error}"))?;
    let host = parsed.host_str().unwrap_or_default();
    if parsed.scheme() != "https" || parsed.port().is_some() || !is_sns_host(host) {
        return Err(format!(
            "refusing to call `{}`: subscriptions are confirmed only at https://sns.<region>.amazonaws.com",
            crate::ingest::fields::clip(url, 200)
        ));
    }
    Ok(())
}

/// `sns.<region>.amazonaws.com` or `sns.<region>.amazonaws.com.cn`, region like
/// `us-east-1`, `us-gov-west-1`, `cn-north-1`.
fn is_sns_host(host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    let Some(rest) = host.strip_prefix("sns.") else {
        return false;
    };
    let region = rest
        .strip_suffix(".amazonaws.com")
        .or_else(|| rest.strip_suffix(".amazonaws.com.cn"));
    region.is_some_and(|region| {
        let parts: Vec<&str> = region.split('-').collect();
        parts.len() >= 3
            && parts
                .iter()
                .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric()))
            && parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit())
    })
}

/// Signing certificates by URL: filled by fetching, or by tests.
#[derive(Default)]
pub struct Certificates {
    cached: Mutex<HashMap<String, Arc<CertificateDer<'static>>>>,
    /// URLs whose fetch failed recently, so that forged messages naming a bad URL do not
    /// make the service fetch it for every request.
    failed: Mutex<HashMap<String, std::time::Instant>>,
    client: OnceLock<Result<reqwest::Client, String>>,
    /// Where fetched certificates are kept across restarts (weak: the cache must not keep
    /// the store open).
    store: Option<crate::store::WeakStore>,
}

/// How long a failed certificate fetch is not tried again.
const RETRY_FAILED_FETCH: Duration = Duration::from_secs(60);

impl Certificates {
    /// A cache that keeps what it fetches in `store`, starting with what `store` kept.
    pub fn persisted(store: crate::store::Store) -> Certificates {
        let certificates = Certificates {
            store: Some(store.downgrade()),
            ..Certificates::default()
        };
        match store.certificates() {
            Ok(list) => {
                for (url, pem) in list {
                    if let Err(error) = certificates.insert(&url, &pem) {
                        tracing::warn!(url, %error, "kept sns certificate unreadable; ignored");
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "cannot read kept sns certificates"),
        }
        certificates
    }

    /// The HTTPS client for SNS, built on first use.
    fn client(&self) -> Result<&reqwest::Client, String> {
        self.client
            .get_or_init(|| {
                // reqwest uses rustls without choosing a crypto provider itself.
                let _ = rustls::crypto::ring::default_provider().install_default();
                reqwest::Client::builder()
                    .https_only(true)
                    .redirect(reqwest::redirect::Policy::none())
                    .timeout(FETCH_TIMEOUT)
                    .user_agent(concat!("mailwarden/", env!("CARGO_PKG_VERSION")))
                    .build()
                    .map_err(|error| format!("cannot build the HTTPS client: {error}"))
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Caches the PEM certificate `pem` as the one published at `url`.
    pub fn insert(&self, url: &str, pem: &[u8]) -> Result<(), String> {
        let der = CertificateDer::from_pem_slice(pem)
            .map_err(|error| format!("not a PEM certificate: {error:?}"))?;
        EndEntityCert::try_from(&der).map_err(|error| format!("not a certificate: {error}"))?;
        let mut cached = self.cached.lock().expect("certificate cache lock");
        if cached.len() >= MAX_CACHED {
            cached.clear();
        }
        cached.insert(url.to_owned(), Arc::new(der.into_owned()));
        Ok(())
    }

    /// Returns the certificate cached for `url`.
    pub fn get(&self, url: &str) -> Option<Arc<CertificateDer<'static>>> {
        self.cached
            .lock()
            .expect("certificate cache lock")
            .get(url)
            .cloned()
    }

    /// Fetches the certificate at `url` (already checked) into the cache. Failures are
    /// logged; the check that follows then refuses the message.
    async fn fetch(&self, url: &str) {
        {
            let mut failed = self.failed.lock().expect("failed fetches lock");
            failed.retain(|_, at| at.elapsed() < RETRY_FAILED_FETCH);
            if failed.contains_key(url) {
                return;
            }
        }
        let result = self.download(url).await;
        if result.is_err() {
            let mut failed = self.failed.lock().expect("failed fetches lock");
            if failed.len() < MAX_CACHED {
                failed.insert(url.to_owned(), std::time::Instant::now());
            }
        }
        match result {
            Ok(pem) => match self.insert(url, &pem) {
                Ok(()) => {
                    tracing::info!(url, "sns signing certificate cached");
                    if let Some(store) = self.store.as_ref().and_then(|s| s.upgrade()) {
                        if let Err(error) = store.put_certificate(url, &pem) {
                            tracing::warn!(url, %error, "cannot keep the sns certificate");
                        }
                    }
                }
                Err(error) => tracing::warn!(url, %error, "sns signing certificate unreadable"),
            },
            Err(error) => tracing::warn!(url, %error, "cannot fetch sns signing certificate"),
        }
    }

    async fn download(&self, url: &str) -> Result<Vec<u8>, String> {
        let mut response = self
            .client()?
            .get(url)
            .send()
            .await
            .map_err(|error| error.to_string())?;
        if !response.status().is_success() {
            return Err(format!("answered {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|error| error.to_string())? {
            if body.len() + chunk.len() > MAX_CERTIFICATE_BYTES {
                return Err("certificate larger than 64 KiB".to_owned());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// Calls `url` (already checked with [`check_subscribe_url`]) to confirm a
    /// subscription; returns what went wrong, if anything.
    pub async fn confirm(&self, url: &str) -> Result<(), String> {
        check_subscribe_url(url)?;
        let response = self
            .client()?
            .get(url)
            .send()
            .await
            .map_err(|error| format!("cannot reach SNS: {error}"))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("SNS answered {}", response.status()))
        }
    }
}

/// RSA PKCS#1 v1.5 with SHA-1, which SNS still uses for `SignatureVersion` 1. webpki
/// leaves SHA-1 out, so this adapts ring's legacy algorithm to its interface.
#[derive(Debug)]
struct RsaSha1;

impl rustls_pki_types::SignatureVerificationAlgorithm for RsaSha1 {
    fn verify_signature(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), InvalidSignature> {
        ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
            public_key,
        )
        .verify(message, signature)
        .map_err(|_| InvalidSignature)
    }

    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        alg_id::RSA_ENCRYPTION
    }

    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        alg_id::RSA_PKCS1_SHA256
    }
}

/// The SNS signature check of a source, with its optional topic allow-list.
pub struct SnsCheck {
    certificates: Arc<Certificates>,
    topics: Vec<String>,
}

impl SnsCheck {
    /// Checks signatures with certificates from `certificates`; accepts only `topics`
    /// when the list is not empty.
    pub fn new(certificates: Arc<Certificates>, topics: Vec<String>) -> SnsCheck {
        SnsCheck {
            certificates,
            topics,
        }
    }
}

fn missing(what: &str) -> AuthError {
    AuthError::MissingSignature(format!("the SNS message has no `{what}`"))
}

impl Verify for SnsCheck {
    fn method(&self) -> &'static str {
        "sns_signature"
    }

    fn prepare<'a>(&'a self, request: &'a Request<'a>) -> Option<Prepare<'a>> {
        let url = Message::parse(request.body)?.signing_cert_url?;
        if check_certificate_url(&url).is_err() || self.certificates.get(&url).is_some() {
            return None;
        }
        Some(Box::pin(async move { self.certificates.fetch(&url).await }))
    }

    fn verify(&self, request: &Request<'_>) -> Result<Verified, AuthError> {
        let message = Message::parse(request.body).ok_or_else(|| {
            AuthError::MissingSignature("the body is not an SNS message".to_owned())
        })?;
        let signature = message
            .signature
            .as_deref()
            .ok_or_else(|| missing("Signature"))?;
        let url = message
            .signing_cert_url
            .as_deref()
            .ok_or_else(|| missing("SigningCertURL"))?;
        check_certificate_url(url).map_err(AuthError::UntrustedCertificate)?;
        let algorithm: &dyn rustls_pki_types::SignatureVerificationAlgorithm =
            match message.signature_version.as_deref() {
                Some("1") => &RsaSha1,
                Some("2") => webpki::ring::RSA_PKCS1_2048_8192_SHA256,
                other => {
                    return Err(AuthError::BadSignature(format!(
                        "unsupported SignatureVersion {:?}",
                        other.map(|v| crate::ingest::fields::clip(v, 8))
                    )));
                }
            };
        let signature = base64_decode(signature)
            .ok_or_else(|| AuthError::BadSignature("`Signature` is not base64".to_owned()))?;
        let certificate = self.certificates.get(url).ok_or_else(|| {
            AuthError::UntrustedCertificate(format!(
                "the signing certificate at {} could not be fetched",
                crate::ingest::fields::clip(url, 200)
            ))
        })?;
        let certificate = EndEntityCert::try_from(certificate.as_ref())
            .map_err(|error| AuthError::UntrustedCertificate(error.to_string()))?;
        let text = string_to_sign(&message)?;
        certificate
            .verify_signature(algorithm, text.as_bytes(), &signature)
            .map_err(|_| {
                AuthError::BadSignature(
                    "the SNS signature does not match the message and its certificate".to_owned(),
                )
            })?;
        if !self.topics.is_empty() && !self.topics.iter().any(|t| t == &message.topic_arn) {
            return Err(AuthError::TopicNotAllowed(
                crate::ingest::fields::clip(&message.topic_arn, 200).to_owned(),
            ));
        }
        Ok(Verified::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sns_hosts_publish_certificates() {
        let ok = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem";
        assert!(check_certificate_url(ok).is_ok());
        assert!(
            check_certificate_url(
                "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-abc.pem"
            )
            .is_ok()
        );
        assert!(check_certificate_url("https://sns.us-gov-west-1.amazonaws.com/cert.pem").is_ok());
        for bad in [
            "http://sns.us-east-1.amazonaws.com/cert.pem",
            "https://sns.us-east-1.amazonaws.com.evil.com/cert.pem",
            "https://evil.com/sns.us-east-1.amazonaws.com/cert.pem",
            "https://sns.us-east-1.amazonaws.com:8443/cert.pem",
            "https://user@sns.us-east-1.amazonaws.com/cert.pem",
            "https://sns.amazonaws.com/cert.pem",
            "https://sns.us-east-1.amazonaws.com/cert.txt",
            "https://s3.us-east-1.amazonaws.com/cert.pem",
            "https://sns.evil_region.amazonaws.com/cert.pem",
            "not a url",
        ] {
            assert!(check_certificate_url(bad).is_err(), "{bad}");
        }
        assert!(
            check_subscribe_url(
                "https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription&Token=x"
            )
            .is_ok()
        );
        assert!(check_subscribe_url("https://127.0.0.1/?Action=ConfirmSubscription").is_err());
    }

    #[test]
    fn kept_certificates_are_loaded_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(&dir.path().join("db"), &Default::default()).unwrap();
        let certificate = rcgen::generate_simple_self_signed(vec!["sns.amazonaws.com".into()])
            .unwrap()
            .cert
            .pem();
        let url = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-k.pem";
        store.put_certificate(url, certificate.as_bytes()).unwrap();
        store
            .put_certificate("https://x/y.pem", b"not a certificate")
            .unwrap();
        let certificates = Certificates::persisted(store);
        assert!(certificates.get(url).is_some());
        assert!(certificates.get("https://x/y.pem").is_none());
    }

    #[test]
    fn notification_string_to_sign_includes_subject_only_when_present() {
        let mut message = Message {
            kind: NOTIFICATION.to_owned(),
            message_id: "id".to_owned(),
            token: None,
            topic_arn: "arn".to_owned(),
            subject: None,
            message: "hello".to_owned(),
            subscribe_url: None,
            timestamp: "2012-04-25T21:49:25.719Z".to_owned(),
            signature_version: Some("1".to_owned()),
            signature: None,
            signing_cert_url: None,
        };
        assert_eq!(
            string_to_sign(&message).unwrap(),
            "Message\nhello\nMessageId\nid\nTimestamp\n2012-04-25T21:49:25.719Z\nTopicArn\narn\nType\nNotification\n"
        );
        message.subject = Some("subj".to_owned());
        assert!(
            string_to_sign(&message)
                .unwrap()
                .contains("MessageId\nid\nSubject\nsubj\nTimestamp\n")
        );
        message.kind = SUBSCRIPTION_CONFIRMATION.to_owned();
        assert!(
            string_to_sign(&message).is_err(),
            "no SubscribeURL, no Token"
        );
    }
}
