//! Bearer tokens, and who they make the caller.
//!
//! Two sources, either or both configured ([`settings`]):
//! - an identity provider's RS256/ES256 tokens, checked against its JWK set ([`jwks`]), with
//!   `iss` and `aud` pinned;
//! - HS256 tokens signed with `ICON_JWT_SECRET` ([`hs256`]), for development.
//!
//! The header's `alg` picks the source: HS256 goes to the secret only, RS256/ES256 to the
//! provider's keys only, anything else (`none` included) is refused, so a public key can never
//! be used as an HMAC secret. `exp` is required, `nbf` honoured, both with [`LEEWAY_SECS`] of
//! clock skew.
//!
//! Who the caller is ([`claims`]): a `scope` with `partner` makes it a partner, owning what it
//! creates under `partner:<client_id>`; otherwise a shopper owning under its `sub`; `admin`
//! in `scope` also unlocks retailer management. `scope` and `scp` are read alike, each a
//! space-separated string or a list of strings. Handlers take [`User`] or [`Admin`] and never
//! see an unauthenticated request; the extractor also spends the subject's rate allowance.

pub mod claims;
mod hs256;
pub mod jwks;
pub mod settings;

pub use claims::Claims;
pub use hs256::JwtKeys;

use crate::problem::ApiError;
use crate::rate_limit::Limiters;
use actix_web::{dev::Payload, http::header, web, FromRequest, HttpRequest};
use icon_domain::{EmailAddress, UserId};
use jsonwebtoken::Algorithm;
use std::future::Future;
use std::pin::Pin;

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: u64 = 30;

/// Verifies bearer tokens from every configured source.
pub struct Authenticator {
    hs256: Option<JwtKeys>,
    jwks: Option<jwks::Jwks>,
}

impl Authenticator {
    pub fn new(settings: &settings::JwtSettings) -> Result<Self, icon_http::TlsError> {
        Ok(Self {
            hs256: settings.secret.as_ref().map(|s| JwtKeys::new(s.expose())),
            jwks: settings.jwks.clone().map(jwks::Jwks::new).transpose()?,
        })
    }

    /// The token's claims, once its signature, algorithm, issuer, audience and dates passed.
    pub async fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| {
            ApiError::unauthorized(
                "the token is not a JWT signed with RS256, ES256 or HS256 (`alg: none` is refused)",
            )
        })?;
        match (header.alg, &self.hs256, &self.jwks) {
            (Algorithm::HS256, Some(keys), _) => keys.verify(token),
            (Algorithm::RS256 | Algorithm::ES256, _, Some(jwks)) => {
                jwks.verify(token, &header).await
            }
            (Algorithm::HS256, None, _) => Err(ApiError::unauthorized(
                "HS256 tokens are not accepted here; use a token from the identity provider",
            )),
            (Algorithm::RS256 | Algorithm::ES256, _, None) => Err(ApiError::unauthorized(
                "identity-provider tokens are not accepted here (ICON_JWT_JWKS_URL is unset)",
            )),
            (other, ..) => Err(ApiError::unauthorized(format!(
                "tokens signed with {other:?} are refused; use RS256, ES256 or HS256"
            ))),
        }
    }
}

/// Maps a verification failure to a 401 saying what to do; `bad_signature` names the key.
fn reject(e: &jsonwebtoken::errors::Error, bad_signature: &str) -> ApiError {
    use jsonwebtoken::errors::ErrorKind::*;
    let why = match e.kind() {
        ExpiredSignature => "the token has expired; get a new one",
        ImmatureSignature => "the token is not valid yet (`nbf`); check your clock",
        InvalidSignature => bad_signature,
        InvalidAlgorithm => "the token's algorithm does not match its key",
        InvalidIssuer => "the token was issued by another issuer than ICON_JWT_ISSUER",
        InvalidAudience => "the token is meant for another audience than ICON_JWT_AUDIENCE",
        MissingRequiredClaim(_) => "the token must carry `sub` and `exp` (and `iss`, `aud`)",
        _ => "the token is not a valid JWT",
    };
    ApiError::unauthorized(why)
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct User {
    /// The owner key of everything the caller creates: the shopper's `sub`, or
    /// `partner:<client_id>` for a partner.
    pub id: UserId,
    pub admin: bool,
    /// A partner's client-credentials token (scope `partner`).
    pub partner: bool,
    /// From a shopper token's `email` claim, when it holds an address; a malformed one is
    /// ignored (logged), since e-mail is a courtesy and must not lock the shopper out.
    pub email: Option<EmailAddress>,
}

/// An authenticated caller with the `admin` scope.
#[derive(Debug, Clone)]
pub struct Admin(pub User);

fn bearer(req: &HttpRequest) -> Result<String, ApiError> {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("send `Authorization: Bearer <token>`"))?;
    value
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(|t| t.trim().to_owned())
        .ok_or_else(|| ApiError::unauthorized("the Authorization header must be `Bearer <token>`"))
}

fn authenticate(req: &HttpRequest) -> impl Future<Output = Result<User, ApiError>> + 'static {
    let auth = req.app_data::<web::Data<Authenticator>>().cloned();
    let limiters = req.app_data::<web::Data<Limiters>>().cloned();
    let token = bearer(req);
    async move {
        let auth = auth.ok_or_else(|| ApiError::internal("Authenticator missing from app data"))?;
        let user = auth.verify(&token?).await?.into_user()?;
        if let Some(limiters) = limiters {
            limiters.check_subject(user.id.as_str())?;
        }
        Ok(user)
    }
}

type Authenticating<T> = Pin<Box<dyn Future<Output = Result<T, ApiError>>>>;

impl FromRequest for User {
    type Error = ApiError;
    type Future = Authenticating<Self>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        Box::pin(authenticate(req))
    }
}

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Authenticating<Self>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let user = authenticate(req);
        Box::pin(async move {
            let u = user.await?;
            if u.admin {
                Ok(Admin(u))
            } else {
                Err(ApiError::forbidden(
                    "this endpoint needs a token whose `scope` includes `admin`",
                ))
            }
        })
    }
}
