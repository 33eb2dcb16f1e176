//! The primitives webhook signatures are built from, over `ring` (the crypto library the
//! TLS stack already uses). Every comparison of a computed value with a received one is
//! constant-time: `ring::hmac::verify` and `ring::signature` verify in constant time, and
//! [`ct_eq`] compares anything else.

use base64::Engine as _;
use ring::{hmac, signature};
use subtle::ConstantTimeEq;

/// A MAC algorithm a provider signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mac {
    /// HMAC-SHA256 (Mailgun, Svix/Resend).
    Sha256,
    /// HMAC-SHA1 (Mandrill).
    Sha1,
}

impl Mac {
    fn algorithm(self) -> hmac::Algorithm {
        match self {
            Mac::Sha256 => hmac::HMAC_SHA256,
            Mac::Sha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        }
    }
}

/// A MAC key, kept only in `ring`'s key schedule; `Debug` shows nothing of it.
pub struct MacKey(hmac::Key);

impl std::fmt::Debug for MacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MacKey([redacted])")
    }
}

impl MacKey {
    /// A key for `mac` from its raw bytes.
    pub fn new(mac: Mac, key: &[u8]) -> MacKey {
        MacKey(hmac::Key::new(mac.algorithm(), key))
    }

    /// Returns the MAC of the concatenation of `parts`.
    pub fn sign(&self, parts: &[&[u8]]) -> Vec<u8> {
        let mut context = hmac::Context::with_key(&self.0);
        for part in parts {
            context.update(part);
        }
        context.sign().as_ref().to_vec()
    }

    /// Returns whether `tag` is the MAC of the concatenation of `parts`, in constant time.
    pub fn verify(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        ct_eq(&self.sign(parts), tag)
    }
}

/// Compares two byte strings in constant time (for their common length; the lengths
/// themselves are public: every MAC of one algorithm has the same length).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Decodes standard base64, with or without padding, ignoring surrounding whitespace.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
        .ok()
}

/// Encodes standard base64 with padding.
pub fn base64_encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes hexadecimal (either case).
pub fn hex_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim().as_bytes();
    if text.len() % 2 != 0 {
        return None;
    }
    let digit = |byte: u8| char::from(byte).to_digit(16).map(|d| d as u8);
    text.chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

/// DER prefix of a SubjectPublicKeyInfo holding an uncompressed P-256 point
/// (id-ecPublicKey, prime256v1, BIT STRING of 66 bytes). DER is canonical, so every such
/// key starts with exactly these bytes.
const P256_SPKI_PREFIX: [u8; 27] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04,
];

/// An ECDSA P-256 public key.
#[derive(Debug, Clone)]
pub struct P256Key {
    /// The uncompressed point (0x04, x, y).
    point: Vec<u8>,
}

impl P256Key {
    /// Reads a key given as base64 of its DER SubjectPublicKeyInfo (what SendGrid shows),
    /// or as PEM (`-----BEGIN PUBLIC KEY-----`).
    pub fn parse(text: &str) -> Result<P256Key, String> {
        let body: String = text
            .lines()
            .filter(|line| !line.trim_start().starts_with("-----"))
            .collect();
        let der = base64_decode(&body).ok_or("not base64")?;
        if der.len() != P256_SPKI_PREFIX.len() + 64
            || der[..P256_SPKI_PREFIX.len()] != P256_SPKI_PREFIX
        {
            return Err(
                "not an ECDSA P-256 public key (expected the base64 DER SubjectPublicKeyInfo \
                 the provider shows)"
                    .to_owned(),
            );
        }
        Ok(P256Key {
            point: der[P256_SPKI_PREFIX.len() - 1..].to_vec(),
        })
    }

    /// Returns the DER SubjectPublicKeyInfo of an uncompressed point (tests build keys).
    pub fn spki_der(point: &[u8]) -> Vec<u8> {
        let mut der = P256_SPKI_PREFIX[..P256_SPKI_PREFIX.len() - 1].to_vec();
        der.extend_from_slice(point);
        der
    }

    /// Returns whether `der_signature` (ASN.1 DER) signs `message` with SHA-256.
    pub fn verify(&self, message: &[u8], der_signature: &[u8]) -> bool {
        signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_ASN1, &self.point)
            .verify(message, der_signature)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        // RFC 4231, test case 2: key "Jefe", data "what do ya want for nothing?".
        let key = MacKey::new(Mac::Sha256, b"Jefe");
        let tag =
            hex_decode("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843").unwrap();
        assert!(key.verify(&[b"what do ya want ", b"for nothing?"], &tag));
        assert!(!key.verify(&[b"what do ya want for nothing!"], &tag));
        assert!(!key.verify(&[b"what do ya want for nothing?"], &tag[..31]));
    }

    #[test]
    fn hmac_sha1_matches_rfc_2202_case_2() {
        let key = MacKey::new(Mac::Sha1, b"Jefe");
        let tag = hex_decode("effcdf6ae5eb2fa2d27416d5f184df9c259a7c79").unwrap();
        assert!(key.verify(&[b"what do ya want for nothing?"], &tag));
    }

    #[test]
    fn hex_and_base64_decode_strictly() {
        assert_eq!(hex_decode("0aFf"), Some(vec![0x0a, 0xff]));
        assert_eq!(hex_decode("0g"), None);
        assert_eq!(hex_decode("abc"), None);
        assert_eq!(base64_decode("aGk="), Some(b"hi".to_vec()));
        assert_eq!(base64_decode("aGk"), Some(b"hi".to_vec()));
        assert_eq!(base64_decode("!!"), None);
    }

    #[test]
    fn p256_keys_must_be_p256() {
        assert!(P256Key::parse("bm90IGEga2V5").is_err());
        let point = [4u8; 65];
        let der = P256Key::spki_der(&point);
        let key = P256Key::parse(&base64_encode(&der)).unwrap();
        assert_eq!(key.point, point);
        let pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            base64_encode(&der)
        );
        assert!(P256Key::parse(&pem).is_ok());
    }
}
