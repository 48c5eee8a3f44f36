//! The OAuth2 token endpoint a Google service account's `token_uri` points at,
//! `POST /oauth2/token`, and the log of grant requests, `GET /fcm/grants`.
//!
//! It takes the JWT bearer grant Google's client libraries send for a service account, checked
//! as Google checks it ([`super::grant`]), so a client that gets a token here would get one from
//! Google too. Errors are OAuth2's (RFC 6749 §5.2): `{"error", "error_description"}`.

use super::grant;
use crate::{lock, Sim};
use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use jsonwebtoken::DecodingKey;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::Instant;

/// The only `grant_type` accepted, the one Google's client libraries send.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// One grant request as received and answered; `GET /fcm/grants` returns these.
#[derive(Debug, Clone, Serialize)]
pub struct GrantRecord {
    pub received_at: DateTime<Utc>,
    pub ok: bool,
    /// The service account, read from the claims even when the grant is refused (then it is only
    /// what the request claimed, unverified); `None` if the claims were unreadable.
    pub iss: Option<String>,
    /// The token issued, when `ok`.
    pub access_token: Option<String>,
    /// Why the grant was refused, when not `ok`.
    pub reason: Option<String>,
}

/// The form Google's client libraries post. Fields are optional so a missing one gets an OAuth2
/// error body rather than actix's plain-text one.
#[derive(Debug, Deserialize)]
pub(crate) struct TokenForm {
    grant_type: Option<String>,
    assertion: Option<String>,
}

/// A refusal as RFC 6749 §5.2 words it: an error code and a description.
#[derive(Debug)]
struct Refusal {
    error: &'static str,
    description: String,
    iss: Option<String>,
}

impl From<grant::Refused> for Refusal {
    fn from(refused: grant::Refused) -> Self {
        Self {
            error: "invalid_grant",
            description: refused.reason,
            iss: refused.iss,
        }
    }
}

/// `POST /oauth2/token`: a token for a valid grant, an OAuth2 error otherwise; logged either way.
#[tracing::instrument(name = "oauth2_token", skip_all)]
pub(crate) async fn token(
    sim: web::Data<Sim>,
    req: HttpRequest,
    form: Result<web::Form<TokenForm>, actix_web::Error>,
) -> HttpResponse {
    let received_at = Utc::now();
    let fcm = &sim.fcm;
    let outcome = exchange(&req, form, fcm.public_key.decoding_key()).map(|iss| {
        let token = lock(&fcm.tokens).issue(fcm.token_ttl, Instant::now());
        (iss, token)
    });
    let (response, record) = match outcome {
        Ok((iss, token)) => {
            tracing::info!(%iss, "access token issued");
            let mut response = HttpResponse::Ok().json(json!({
                "access_token": token,
                "expires_in": fcm.token_ttl.as_secs(),
                "token_type": "Bearer",
            }));
            // RFC 6749 §5.1: a response carrying a token must not be cached.
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            let record = GrantRecord {
                received_at,
                ok: true,
                iss: Some(iss),
                access_token: Some(token),
                reason: None,
            };
            (response, record)
        }
        Err(refusal) => {
            tracing::info!(iss = refusal.iss.as_deref(), reason = %refusal.description, "grant refused");
            let response = HttpResponse::BadRequest().json(json!({
                "error": refusal.error,
                "error_description": refusal.description,
            }));
            let record = GrantRecord {
                received_at,
                ok: false,
                iss: refusal.iss,
                access_token: None,
                reason: Some(refusal.description),
            };
            (response, record)
        }
    };
    lock(&fcm.grants).push(record);
    response
}

/// `GET /fcm/grants`: every grant request, oldest first.
pub(crate) async fn list(sim: web::Data<Sim>) -> HttpResponse {
    HttpResponse::Ok().json(lock(&sim.fcm.grants).list())
}

/// Checks the form and the grant in it; the verified `iss` on success.
fn exchange(
    req: &HttpRequest,
    form: Result<web::Form<TokenForm>, actix_web::Error>,
    key: &DecodingKey,
) -> Result<String, Refusal> {
    let invalid_request = |description: String| Refusal {
        error: "invalid_request",
        description,
        iss: None,
    };
    let form = form.map_err(|e| {
        invalid_request(format!(
            "the body must be an application/x-www-form-urlencoded form: {e}"
        ))
    })?;
    match form.grant_type.as_deref() {
        Some(JWT_BEARER) => {}
        Some(other) => {
            return Err(Refusal {
                error: "unsupported_grant_type",
                description: format!("Invalid grant_type: {other}; expected {JWT_BEARER}"),
                iss: None,
            })
        }
        None => return Err(invalid_request("grant_type is required".to_owned())),
    }
    let assertion = form
        .assertion
        .as_deref()
        .ok_or_else(|| invalid_request("assertion is required".to_owned()))?;
    // The grant's `aud` must name this endpoint as the client reached it, like Google checks
    // its own `token_uri`; the simulator speaks plain HTTP only.
    let audience = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|host| format!("http://{host}/oauth2/token"));
    grant::verify(assertion, key, audience.as_deref(), Utc::now().timestamp())
        .map_err(Refusal::from)
}
