//! [`FcmPublicKey`]: the RSA public key the fake OAuth2 endpoint checks grant signatures with.

use jsonwebtoken::DecodingKey;
use std::path::Path;

/// The public half of `deploy/demo/fcm-demo-service-account.json`'s key. It must stay identical
/// to `deploy/demo/fcm-demo-public.pem` (a test checks); it is copied into the crate so a Docker
/// build of the simulator needs nothing outside `services/retailer-sim`.
pub const DEMO_PUBLIC_KEY_PEM: &str = include_str!("demo-public.pem");

/// A public key that parsed as RSA, and where it came from (for the start-up log).
#[derive(Clone)]
pub struct FcmPublicKey {
    key: DecodingKey,
    source: String,
}

impl FcmPublicKey {
    /// The demo key, which signs nothing outside this repository: the default, so a local run
    /// and the tests work with the demo service account as it is.
    pub fn demo() -> Self {
        Self::from_pem(DEMO_PUBLIC_KEY_PEM.as_bytes(), "the embedded demo key")
            .expect("the embedded demo key is a valid RSA public key (unit-tested)")
    }

    /// A PEM file (SPKI `PUBLIC KEY` or PKCS#1 `RSA PUBLIC KEY`), for a key pair of one's own.
    pub fn from_pem_file(path: &Path) -> Result<Self, String> {
        let pem =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::from_pem(&pem, &path.display().to_string())
    }

    fn from_pem(pem: &[u8], source: &str) -> Result<Self, String> {
        let key = DecodingKey::from_rsa_pem(pem)
            .map_err(|e| format!("{source} is not an RSA public key in PEM form: {e}"))?;
        Ok(Self {
            key,
            source: source.to_owned(),
        })
    }

    pub(crate) fn decoding_key(&self) -> &DecodingKey {
        &self.key
    }
}

/// Only the source: the key itself is of no use in a log and `DecodingKey` has no `Debug`.
impl std::fmt::Debug for FcmPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FcmPublicKey")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_key_is_deploy_demos_key() {
        let deployed = include_str!("../../../../deploy/demo/fcm-demo-public.pem");
        assert_eq!(
            DEMO_PUBLIC_KEY_PEM, deployed,
            "services/retailer-sim/src/fcm/demo-public.pem must be a copy of \
             deploy/demo/fcm-demo-public.pem"
        );
    }

    #[test]
    fn embedded_key_parses() {
        assert!(format!("{:?}", FcmPublicKey::demo()).contains("embedded demo key"));
    }

    #[test]
    fn a_file_that_is_not_a_key_is_refused() {
        let missing = FcmPublicKey::from_pem_file(Path::new("/nonexistent/key.pem"));
        assert!(missing
            .unwrap_err()
            .starts_with("cannot read /nonexistent/key.pem"));
        let garbage = FcmPublicKey::from_pem(b"not a key", "x.pem");
        assert!(garbage
            .unwrap_err()
            .starts_with("x.pem is not an RSA public key"));
    }
}
