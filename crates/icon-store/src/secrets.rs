//! Secrets ICON keeps for its callers and retailers: webhook signing secrets' encryption at
//! rest. The secrets themselves and their Standard Webhooks signatures are `icon-webhooks`'s
//! (re-exported here), which the retailer simulator shares without linking PostgreSQL.
//!
//! The gateway hands a secret out and the notifier and the checkout worker sign with it, so all
//! three link this module and hold [`SecretsKey`] (`ICON_SECRETS_KEY`). A secret is stored sealed with AES-256-GCM
//! under that key, with a random nonce per seal and the owner as associated data: a database
//! dump alone reveals no secret, and a row copied to another owner does not open.
//!
//! Nothing here implements `Display` or a revealing `Debug`: a secret reaches text only through
//! [`WebhookSecret::expose_whsec`] and [`SigningSecrets::signature_header`], so it cannot slip
//! into a log line or an error body by formatting.

pub use icon_webhooks::{SigningSecrets, WebhookSecret};

use icon_runtime::{Env, SettingsError};
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use std::fmt;
use std::sync::Arc;

/// The variable holding the key that seals secrets at rest.
pub const SECRETS_KEY_VAR: &str = "ICON_SECRETS_KEY";

/// How to make a key, said wherever one is missing or malformed.
const KEY_HINT: &str = "give it 32 random bytes as 64 hex characters (or base64), made with \
                        `openssl rand -hex 32`, the same in the gateway and every notifier";

/// The key that seals secrets at rest (`ICON_SECRETS_KEY`). Cheap to clone.
#[derive(Clone)]
pub struct SecretsKey(Arc<LessSafeKey>);

impl fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretsKey(***)")
    }
}

/// A sealed secret did not open: the key changed, or the row was tampered with or moved to
/// another owner.
#[derive(Debug, thiserror::Error)]
#[error("a stored secret does not open with ICON_SECRETS_KEY (a different key, or a row altered or moved to another owner)")]
pub struct OpenError;

impl SecretsKey {
    /// Reads `ICON_SECRETS_KEY`, which both services require. The error names the variable and
    /// how to make a key, and never repeats the value (it may be a real key with a typo).
    pub fn from_env(env: &Env) -> Result<Self, SettingsError> {
        let value = env.raw(SECRETS_KEY_VAR).ok_or_else(|| SettingsError {
            var: SECRETS_KEY_VAR,
            value: String::new(),
            reason: format!("unset, but required to seal webhook secrets at rest; {KEY_HINT}"),
        })?;
        Self::parse(value).map_err(|reason| SettingsError {
            var: SECRETS_KEY_VAR,
            value: "<redacted>".into(),
            reason,
        })
    }

    /// 32 bytes as 64 hex characters or as base64 (standard or URL-safe, padding optional).
    pub fn parse(value: &str) -> Result<Self, String> {
        let v = value.trim();
        let bytes = if v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..32)
                .map(|i| u8::from_str_radix(&v[2 * i..2 * i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|_| format!("not hex; {KEY_HINT}"))?
        } else {
            use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
            use base64::Engine;
            let unpadded = v.trim_end_matches('=');
            STANDARD_NO_PAD
                .decode(unpadded)
                .or_else(|_| URL_SAFE_NO_PAD.decode(unpadded))
                .map_err(|_| format!("neither 64 hex characters nor base64; {KEY_HINT}"))?
        };
        if bytes.len() != 32 {
            return Err(format!("{} bytes, not 32; {KEY_HINT}", bytes.len()));
        }
        Ok(Self::from_bytes(&bytes))
    }

    fn from_bytes(bytes: &[u8]) -> Self {
        let unbound = UnboundKey::new(&AES_256_GCM, bytes).expect("AES-256 takes any 32 bytes");
        Self(Arc::new(LessSafeKey::new(unbound)))
    }

    /// Seals `secret` for `owner`: the nonce followed by the ciphertext and its tag.
    pub(crate) fn seal(&self, owner: &str, secret: &WebhookSecret) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce);
        let mut out = nonce.to_vec();
        let mut body = secret.expose_bytes().to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(owner.as_bytes()),
                &mut body,
            )
            .expect("sealing 32 bytes cannot exceed AES-GCM's limits");
        out.extend_from_slice(&body);
        out
    }

    /// Opens what [`Self::seal`] sealed for the same `owner`.
    pub(crate) fn open(&self, owner: &str, sealed: &[u8]) -> Result<WebhookSecret, OpenError> {
        if sealed.len() < NONCE_LEN + aead::AES_256_GCM.tag_len() {
            return Err(OpenError);
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| OpenError)?;
        let mut body = body.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(owner.as_bytes()), &mut body)
            .map_err(|_| OpenError)?;
        let bytes: [u8; icon_webhooks::SECRET_LEN] = (&*plain).try_into().map_err(|_| OpenError)?;
        Ok(WebhookSecret::from_bytes(bytes))
    }
}

fn fill_random(buf: &mut [u8]) {
    SystemRandom::new()
        .fill(buf)
        .expect("the operating system's random number generator failed");
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD as BASE64;
    use base64::Engine;

    const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn keys_are_hex_or_base64_of_32_bytes() {
        assert!(SecretsKey::parse(HEX).is_ok());
        assert!(SecretsKey::parse(&BASE64.encode([7u8; 32])).is_ok());
        for bad in ["", "short", &HEX[..62], &BASE64.encode([7u8; 16])] {
            let err = SecretsKey::parse(bad).unwrap_err();
            assert!(err.contains("openssl rand -hex 32"), "{bad}: {err}");
        }
    }

    #[test]
    fn settings_errors_name_the_variable_and_hide_the_value() {
        let err = SecretsKey::from_env(&Env::default())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("ICON_SECRETS_KEY="), "{err}");
        assert!(err.contains("openssl rand -hex 32"), "{err}");
        let typo = &HEX[..63];
        let err = SecretsKey::from_env(&Env::from_pairs([(SECRETS_KEY_VAR, typo)]))
            .unwrap_err()
            .to_string();
        assert!(!err.contains(typo), "{err}");
    }

    #[test]
    fn sealed_secrets_open_only_for_their_owner_and_key() {
        let key = SecretsKey::parse(HEX).unwrap();
        let secret = WebhookSecret::generate();
        let sealed = key.seal("alice", &secret);
        assert_eq!(key.open("alice", &sealed).unwrap(), secret);
        assert!(key.open("bob", &sealed).is_err());
        let other = SecretsKey::parse(&BASE64.encode([9u8; 32])).unwrap();
        assert!(other.open("alice", &sealed).is_err());
        // A fresh nonce each time: sealing twice gives two ciphertexts.
        assert_ne!(sealed, key.seal("alice", &secret));
        assert!(!sealed
            .windows(icon_webhooks::SECRET_LEN)
            .any(|w| w == secret.expose_bytes()));
    }
}
