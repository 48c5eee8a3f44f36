//! HS256 tokens signed with `ICON_JWT_SECRET`: for development, the test kit and
//! `icon-gateway token`. Anyone holding the secret can mint any token, so production should
//! use an identity provider ([`super::jwks`]).

use super::{claims::Claims, reject, LEEWAY_SECS};
use crate::problem::ApiError;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use std::time::Duration;

/// The HS256 key, for minting and verifying.
#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl JwtKeys {
    pub fn new(secret: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
        }
    }

    /// Mints a token for `sub`, valid for `ttl`, with `admin` scope if asked.
    pub fn mint(
        &self,
        sub: &str,
        admin: bool,
        ttl: Duration,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        self.mint_with_email(sub, None, admin, ttl)
    }

    /// [`Self::mint`] with an `email` claim.
    pub fn mint_with_email(
        &self,
        sub: &str,
        email: Option<&str>,
        admin: bool,
        ttl: Duration,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let mut claims = Claims::new(sub, ttl);
        if admin {
            claims = claims.with_scope(super::claims::ADMIN_SCOPE);
        }
        if let Some(email) = email {
            claims = claims.with_email(email);
        }
        self.mint_claims(&claims)
    }

    /// Mints a token carrying exactly `claims`.
    pub fn mint_claims(&self, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
    }

    pub(super) fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|d| d.claims)
            .map_err(|e| reject(&e, "the token's signature does not match ICON_JWT_SECRET"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn mint_and_verify() {
        let keys = JwtKeys::new(SECRET);
        let t = keys.mint("alice", true, Duration::from_secs(60)).unwrap();
        let c = keys.verify(&t).unwrap();
        assert_eq!(c.sub, "alice");
        assert_eq!(
            c.scope,
            Some(crate::auth::claims::Scopes::Spaced("admin".into()))
        );
        assert!(JwtKeys::new("another-secret-of-32-bytes-or-more")
            .verify(&t)
            .is_err());
    }

    #[test]
    fn not_before_is_honoured_with_leeway() {
        let keys = JwtKeys::new(SECRET);
        let mut c = Claims::new("alice", Duration::from_secs(3600));
        let now = c.exp - 3600;
        c.nbf = Some(now + 600);
        let e = keys.verify(&keys.mint_claims(&c).unwrap()).unwrap_err();
        assert!(e.detail.contains("not valid yet"), "{}", e.detail);
        c.nbf = Some(now + LEEWAY_SECS / 2);
        assert!(keys.verify(&keys.mint_claims(&c).unwrap()).is_ok());
    }
}
