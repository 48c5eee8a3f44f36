//! Standard Webhooks (<https://www.standardwebhooks.com/>) signatures, both ways: the secret
//! (`whsec_…`), the `webhook-*` headers a signed request carries, and their verification.
//!
//! One crate rather than a module of `icon-store` (which seals the secrets at rest) because both
//! sides of the protocol use it: the notifier and the checkout worker sign (callbacks to
//! partners, requests to retailers), and the retailer simulator verifies, without linking
//! PostgreSQL. It holds no I/O and depends on nothing but `ring` and `base64`, which the
//! workspace already has.
//!
//! What is signed is `"{webhook-id}.{webhook-timestamp}.{body}"`, the body being the exact bytes
//! sent; for a request without a body (a GET) the body is empty, so the signed content ends in
//! the second `.`.
//!
//! Nothing here implements `Display` or a revealing `Debug`: a secret reaches text only through
//! [`WebhookSecret::expose_whsec`] and the signatures it makes.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use std::fmt;

/// Bytes of a secret ICON makes: 32, within the 24 to 64 the specification recommends.
pub const SECRET_LEN: usize = 32;

/// The Standard Webhooks prefix of a secret as its holder configures it.
const WHSEC_PREFIX: &str = "whsec_";

/// The three headers of a signed request, in the order [`signed_headers`] returns them.
pub const WEBHOOK_ID: &str = "webhook-id";
pub const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
pub const WEBHOOK_SIGNATURE: &str = "webhook-signature";

/// A signing secret: 32 random bytes, shown as `whsec_<base64>`.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret([u8; SECRET_LEN]);

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(***)")
    }
}

/// A `whsec_` value that is not one of ICON's secrets.
#[derive(Debug)]
pub struct MalformedSecret;

impl std::error::Error for MalformedSecret {}

impl fmt::Display for MalformedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "not a secret: expected `whsec_` and the base64 of {SECRET_LEN} bytes"
        )
    }
}

impl WebhookSecret {
    pub fn generate() -> Self {
        let mut bytes = [0u8; SECRET_LEN];
        SystemRandom::new()
            .fill(&mut bytes)
            .expect("the operating system's random number generator failed");
        Self(bytes)
    }

    /// The secret from its raw bytes (as opened from storage).
    pub fn from_bytes(bytes: [u8; SECRET_LEN]) -> Self {
        Self(bytes)
    }

    /// The raw bytes, for sealing at rest; never for text.
    pub fn expose_bytes(&self) -> &[u8; SECRET_LEN] {
        &self.0
    }

    /// The secret as its holder configures it: `whsec_` and the base64 of the key.
    pub fn expose_whsec(&self) -> String {
        format!("{WHSEC_PREFIX}{}", BASE64.encode(self.0))
    }

    /// Reads what [`Self::expose_whsec`] shows (the prefix is optional, as the reference
    /// libraries have it).
    pub fn parse_whsec(value: &str) -> Result<Self, MalformedSecret> {
        let b64 = value.trim();
        let b64 = b64.strip_prefix(WHSEC_PREFIX).unwrap_or(b64);
        let bytes = BASE64.decode(b64).map_err(|_| MalformedSecret)?;
        Ok(Self(bytes.try_into().map_err(|_| MalformedSecret)?))
    }

    /// `v1,<base64 of HMAC-SHA256("{id}.{timestamp}.{body}")>`, keyed with the secret's bytes.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        format!("v1,{}", BASE64.encode(mac(&self.0, id, timestamp, body)))
    }

    /// Whether one of the space-separated `v1,` signatures of a `webhook-signature` header is
    /// this secret's over exactly these bytes (compared in constant time).
    pub fn verifies(&self, id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &self.0);
        header
            .split(' ')
            .filter_map(|s| s.strip_prefix("v1,"))
            .filter_map(|s| BASE64.decode(s).ok())
            .any(|tag| hmac::verify(&key, &signed_content(id, timestamp, body), &tag).is_ok())
    }
}

fn signed_content(id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(id.len() + 24 + body.len());
    content.extend_from_slice(id.as_bytes());
    content.push(b'.');
    content.extend_from_slice(timestamp.to_string().as_bytes());
    content.push(b'.');
    content.extend_from_slice(body);
    content
}

/// The Standard Webhooks MAC over exactly these bytes of `body`.
fn mac(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> hmac::Tag {
    hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, key),
        &signed_content(id, timestamp, body),
    )
}

/// What a request is signed with: the holder's current secret, and the one before it while a
/// rotation's grace lasts.
#[derive(Debug, Clone)]
pub struct SigningSecrets {
    pub current: WebhookSecret,
    pub previous: Option<WebhookSecret>,
}

impl SigningSecrets {
    /// The `webhook-signature` value: one `v1,...` signature per secret, space separated, the
    /// current first. A receiver that knows either secret verifies it.
    pub fn signature_header(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut header = self.current.sign(id, timestamp, body);
        if let Some(previous) = &self.previous {
            header.push(' ');
            header.push_str(&previous.sign(id, timestamp, body));
        }
        header
    }

    /// The `webhook-id`, `webhook-timestamp` and `webhook-signature` headers of a request with
    /// this `id`, sent at `timestamp` (Unix seconds), whose body is exactly `body` (empty for a
    /// GET).
    pub fn signed_headers(
        &self,
        id: String,
        timestamp: i64,
        body: &[u8],
    ) -> [(&'static str, String); 3] {
        let signature = self.signature_header(&id, timestamp, body);
        [
            (WEBHOOK_ID, id),
            (WEBHOOK_TIMESTAMP, timestamp.to_string()),
            (WEBHOOK_SIGNATURE, signature),
        ]
    }
}

/// Why a request's signature was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unverified {
    /// A `webhook-*` header is absent or not what the specification says it is.
    MissingHeaders,
    /// `webhook-timestamp` is further from now than the tolerance (a replay, or a bad clock).
    Stale,
    /// No signature in `webhook-signature` is the secret's over these bytes.
    BadSignature,
}

impl fmt::Display for Unverified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::MissingHeaders => {
                "webhook-id, webhook-timestamp and webhook-signature are required"
            }
            Self::Stale => "webhook-timestamp is too far from now",
            Self::BadSignature => "no signature in webhook-signature verifies",
        })
    }
}

/// The specification's tolerance for `webhook-timestamp`: five minutes either way.
pub const TIMESTAMP_TOLERANCE_SECS: i64 = 5 * 60;

/// Verifies a received request as a receiver does: the three headers (`None` where absent),
/// `webhook-timestamp` within [`TIMESTAMP_TOLERANCE_SECS`] of `now` (Unix seconds), and one
/// signature made with `secret` over exactly `body`.
pub fn verify(
    secret: &WebhookSecret,
    id: Option<&str>,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), Unverified> {
    let (Some(id), Some(timestamp), Some(signature)) = (id, timestamp, signature) else {
        return Err(Unverified::MissingHeaders);
    };
    let timestamp: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| Unverified::MissingHeaders)?;
    if id.is_empty() {
        return Err(Unverified::MissingHeaders);
    }
    if (now - timestamp).abs() > TIMESTAMP_TOLERANCE_SECS {
        return Err(Unverified::Stale);
    }
    if secret.verifies(id, timestamp, body, signature) {
        Ok(())
    } else {
        Err(Unverified::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_secret() -> WebhookSecret {
        // The reference libraries' test key is 24 bytes; pad it to ours for the round trips.
        WebhookSecret::from_bytes([7u8; SECRET_LEN])
    }

    /// The Standard Webhooks reference libraries' test vector.
    #[test]
    fn signs_as_the_specification_does() {
        let key = BASE64.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let tag = mac(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            b"{\"test\": 2432232314}",
        );
        assert_eq!(
            format!("v1,{}", BASE64.encode(tag)),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        let secret = WebhookSecret::generate();
        assert!(secret.expose_whsec().starts_with("whsec_"));
        assert_eq!(format!("{secret:?}"), "WebhookSecret(***)");
        assert_eq!(
            WebhookSecret::parse_whsec(&secret.expose_whsec()).unwrap(),
            secret
        );
        assert!(WebhookSecret::parse_whsec("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
    }

    #[test]
    fn either_secret_of_a_rotation_verifies_and_nothing_else() {
        let old = spec_secret();
        let new = WebhookSecret::generate();
        let both = SigningSecrets {
            current: new.clone(),
            previous: Some(old.clone()),
        };
        let [(_, id), (_, ts), (_, sig)] = both.signed_headers("msg_1".into(), 1_700_000_000, b"");
        assert_eq!(sig.split(' ').count(), 2);
        let now = 1_700_000_010;
        for secret in [&old, &new] {
            assert_eq!(
                verify(secret, Some(&id), Some(&ts), Some(&sig), b"", now),
                Ok(())
            );
        }
        let other = WebhookSecret::generate();
        assert_eq!(
            verify(&other, Some(&id), Some(&ts), Some(&sig), b"", now),
            Err(Unverified::BadSignature)
        );
        // Another body, another id, a stale timestamp, a missing header.
        assert_eq!(
            verify(&new, Some(&id), Some(&ts), Some(&sig), b"{}", now),
            Err(Unverified::BadSignature)
        );
        assert_eq!(
            verify(&new, Some("msg_2"), Some(&ts), Some(&sig), b"", now),
            Err(Unverified::BadSignature)
        );
        assert_eq!(
            verify(&new, Some(&id), Some(&ts), Some(&sig), b"", now + 301),
            Err(Unverified::Stale)
        );
        assert_eq!(
            verify(&new, Some(&id), None, Some(&sig), b"", now),
            Err(Unverified::MissingHeaders)
        );
    }
}
