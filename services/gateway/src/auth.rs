//! Bearer tokens: HS256 JWTs signed with `ICON_JWT_SECRET`.
//!
//! `sub` is the user that owns carts and checkouts; a space-separated `scope` containing `admin`
//! unlocks the admin endpoints; `exp` is required so a leaked token does not live forever.
//! Handlers take [`User`] or [`Admin`] as an argument and never see an unauthenticated request.

use crate::problem::ApiError;
use actix_web::{dev::Payload, http::header, web, FromRequest, HttpRequest};
use icon_domain::{EmailAddress, UserId};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::future::{ready, Ready};
use std::time::Duration;

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The shopper's e-mail address: a checkout's outcome is e-mailed there as well.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

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
        validation.leeway = 30;
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
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
            + ttl.as_secs();
        let claims = Claims {
            sub: sub.to_owned(),
            exp,
            scope: admin.then(|| "admin".to_owned()),
            email: email.map(str::to_owned),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
    }

    fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|d| d.claims)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind::*;
                let why = match e.kind() {
                    ExpiredSignature => "the token has expired; mint a new one",
                    InvalidSignature => "the token's signature does not match ICON_JWT_SECRET",
                    InvalidAlgorithm => "the token must be signed with HS256",
                    MissingRequiredClaim(_) => "the token must carry `sub` and `exp` claims",
                    _ => "the token is not a valid JWT",
                };
                ApiError::unauthorized(why)
            })
    }
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct User {
    pub id: UserId,
    pub admin: bool,
    /// From the token's `email` claim, when it holds an address; a malformed one is ignored
    /// (logged), since e-mail is a courtesy and must not lock the shopper out.
    pub email: Option<EmailAddress>,
}

/// An authenticated caller with the `admin` scope.
#[derive(Debug, Clone)]
pub struct Admin(pub User);

fn authenticate(req: &HttpRequest) -> Result<User, ApiError> {
    let keys = req
        .app_data::<web::Data<JwtKeys>>()
        .ok_or_else(|| ApiError::internal("JwtKeys missing from app data"))?;
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("send `Authorization: Bearer <token>`"))?;
    let token = value
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .ok_or_else(|| {
            ApiError::unauthorized("the Authorization header must be `Bearer <token>`")
        })?;
    let claims = keys.verify(token.trim())?;
    let id = UserId::parse(claims.sub)
        .map_err(|_| ApiError::unauthorized("the token's `sub` must be 1 to 255 characters"))?;
    let admin = claims
        .scope
        .as_deref()
        .is_some_and(|s| s.split_whitespace().any(|s| s == "admin"));
    let email = claims.email.and_then(|e| match EmailAddress::parse(e) {
        Ok(e) => Some(e),
        Err(why) => {
            tracing::warn!(user = %id, "ignoring the token's `email` claim: it {why}");
            None
        }
    });
    Ok(User { id, admin, email })
}

impl FromRequest for User {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(req))
    }
}

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(req).and_then(|u| {
            if u.admin {
                Ok(Admin(u))
            } else {
                Err(ApiError::forbidden(
                    "this endpoint needs a token whose `scope` includes `admin`",
                ))
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mint_and_verify() {
        let keys = JwtKeys::new("secret");
        let t = keys.mint("alice", true, Duration::from_secs(60)).unwrap();
        let c = keys.verify(&t).unwrap();
        assert_eq!(c.sub, "alice");
        assert_eq!(c.scope.as_deref(), Some("admin"));
        assert!(JwtKeys::new("other").verify(&t).is_err());
    }
}
