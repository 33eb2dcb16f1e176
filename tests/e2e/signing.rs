//! Signing requests the way each provider does, with keys the tests generate: an ECDSA
//! P-256 key for SendGrid, HMAC keys for Mailgun, Mandrill and Svix (Resend), and an RSA
//! key with a self-signed certificate for Amazon SNS, placed in the service's certificate
//! cache under an SNS URL (where the fetcher would put Amazon's).

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _};
use rsa::pkcs8::EncodePrivateKey as _;
use serde_json::{Value, json};

/// The certificate URL the test SNS messages name.
pub const SNS_CERT_URL: &str =
    "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-mailwarden-test.pem";
/// The topic of the test SNS messages.
pub const SNS_TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:ses-events";

fn hmac(algorithm: ring::hmac::Algorithm, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let key = ring::hmac::Key::new(algorithm, key);
    let mut context = ring::hmac::Context::with_key(&key);
    for part in parts {
        context.update(part);
    }
    context.sign().as_ref().to_vec()
}

/// An ECDSA P-256 key pair, as SendGrid has one per account.
pub struct SendGridKey {
    pair: EcdsaKeyPair,
    /// The verification key as SendGrid shows it: base64 of the DER SubjectPublicKeyInfo.
    pub public_key: String,
}

impl SendGridKey {
    /// A fresh key pair.
    pub fn generate() -> SendGridKey {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
            .expect("P-256 key generation");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
            .expect("generated key reads back");
        let mut spki = vec![
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
            0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
        ];
        spki.extend_from_slice(pair.public_key().as_ref());
        SendGridKey {
            pair,
            public_key: BASE64.encode(spki),
        }
    }

    /// The signature header value over `timestamp` followed by `body`.
    pub fn sign(&self, timestamp: &str, body: &[u8]) -> String {
        let mut message = timestamp.as_bytes().to_vec();
        message.extend_from_slice(body);
        let signature = self
            .pair
            .sign(&SystemRandom::new(), &message)
            .expect("ECDSA signing");
        BASE64.encode(signature.as_ref())
    }
}

/// Mailgun's signature: hex HMAC-SHA256 of timestamp and token with the signing key.
pub fn mailgun_signature(key: &str, timestamp: &str, token: &str) -> String {
    hmac(
        ring::hmac::HMAC_SHA256,
        key.as_bytes(),
        &[timestamp.as_bytes(), token.as_bytes()],
    )
    .iter()
    .map(|byte| format!("{byte:02x}"))
    .collect()
}

/// Puts a fresh Mailgun `signature` object, signed with `key` at `timestamp`, into a
/// webhook body (`{"signature": ..., "event-data": ...}`).
pub fn mailgun_sign_body(body: &[u8], key: &str, timestamp: i64, token: &str) -> Vec<u8> {
    let mut value: Value = serde_json::from_slice(body).expect("Mailgun fixture is JSON");
    let timestamp = timestamp.to_string();
    value["signature"] = json!({
        "timestamp": timestamp,
        "token": token,
        "signature": mailgun_signature(key, &timestamp, token),
    });
    serde_json::to_vec(&value).expect("serializes")
}

/// Svix's `svix-signature` entry for `id`, `timestamp` and `body` with a `whsec_` secret.
pub fn svix_signature(secret: &str, id: &str, timestamp: &str, body: &[u8]) -> String {
    let key = BASE64
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .expect("secret is base64");
    let tag = hmac(
        ring::hmac::HMAC_SHA256,
        &key,
        &[id.as_bytes(), b".", timestamp.as_bytes(), b".", body],
    );
    format!("v1,{}", BASE64.encode(tag))
}

/// Mandrill's `X-Mandrill-Signature`: base64 HMAC-SHA1 of the URL followed by every form
/// field's key and value, sorted by key.
pub fn mandrill_signature(key: &str, url: &str, fields: &[(&str, &str)]) -> String {
    let mut sorted = fields.to_vec();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut data = url.to_owned();
    for (name, value) in sorted {
        data.push_str(name);
        data.push_str(value);
    }
    BASE64.encode(hmac(
        ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        key.as_bytes(),
        &[data.as_bytes()],
    ))
}

/// Form-encodes Mandrill's one field.
pub fn mandrill_form(events_json: &str) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("mandrill_events", events_json)
        .finish()
}

/// An RSA key and its self-signed certificate, standing in for Amazon's SNS signer.
pub struct SnsSigner {
    key: rsa::RsaPrivateKey,
    /// The certificate, PEM.
    pub certificate_pem: String,
}

/// The one SNS signer of the test process (RSA key generation is slow; one is enough).
pub fn sns() -> &'static SnsSigner {
    static SIGNER: OnceLock<SnsSigner> = OnceLock::new();
    SIGNER.get_or_init(|| {
        let key =
            rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("RSA key generation");
        let pkcs8 = key.to_pkcs8_der().expect("PKCS#8 encoding");
        let pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
            &rustls_pki_types::PrivatePkcs8KeyDer::from(pkcs8.as_bytes().to_vec()),
            &rcgen::PKCS_RSA_SHA256,
        )
        .expect("rcgen reads the RSA key");
        let params = rcgen::CertificateParams::new(vec!["sns.amazonaws.com".to_owned()])
            .expect("certificate parameters");
        let certificate = params.self_signed(&pair).expect("self-signed certificate");
        SnsSigner {
            key,
            certificate_pem: certificate.pem(),
        }
    })
}

/// The fields SNS signs, in order, for a message of `Type` `kind`.
fn signed_fields(kind: &str, message: &Value) -> Vec<&'static str> {
    let mut fields = vec!["Message", "MessageId"];
    if kind == "Notification" {
        if message.get("Subject").is_some_and(|s| !s.is_null()) {
            fields.push("Subject");
        }
        fields.push("Timestamp");
    } else {
        fields.extend(["SubscribeURL", "Timestamp", "Token"]);
    }
    fields.extend(["TopicArn", "Type"]);
    fields
}

impl SnsSigner {
    /// Signs an SNS envelope in place with `SignatureVersion` `version` (1: SHA1, 2:
    /// SHA256), naming the test certificate URL.
    pub fn sign(&self, envelope: &mut Value, version: u8) {
        let kind = envelope["Type"].as_str().expect("Type").to_owned();
        let mut text = String::new();
        for field in signed_fields(&kind, envelope) {
            text.push_str(field);
            text.push('\n');
            text.push_str(envelope[field].as_str().expect("signed field is a string"));
            text.push('\n');
        }
        let signature = match version {
            1 => {
                use sha1::Digest as _;
                let digest = sha1::Sha1::digest(text.as_bytes());
                self.key
                    .sign(rsa::Pkcs1v15Sign::new::<sha1::Sha1>(), &digest)
                    .expect("RSA SHA1 signing")
            }
            _ => {
                use sha2::Digest as _;
                let digest = sha2::Sha256::digest(text.as_bytes());
                self.key
                    .sign(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), &digest)
                    .expect("RSA SHA256 signing")
            }
        };
        envelope["SignatureVersion"] = json!(version.to_string());
        envelope["Signature"] = json!(BASE64.encode(signature));
        envelope["SigningCertURL"] = json!(SNS_CERT_URL);
    }

    /// An SNS notification carrying `message` (the SES JSON, as text), signed.
    pub fn notification(&self, message: &str, message_id: &str) -> Value {
        let mut envelope = json!({
            "Type": "Notification",
            "MessageId": message_id,
            "TopicArn": SNS_TOPIC,
            "Message": message,
            "Timestamp": "2026-12-01T10:00:00.000Z",
            "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=arn:aws:sns:us-east-1:123456789012:ses-events:1",
        });
        self.sign(&mut envelope, 1);
        envelope
    }
}
