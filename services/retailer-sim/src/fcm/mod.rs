//! A fake Firebase Cloud Messaging (HTTP v1) and the OAuth2 token endpoint in front of it, so
//! ICON's notifier can push to "devices" in tests and demos with the real protocol: it signs a
//! JWT grant with a service-account key, trades it for an access token, and sends with that.
//!
//! - [`key`]: the public key grants are checked with ([`FcmPublicKey`]).
//! - [`oauth`]: `POST /oauth2/token` (JWT bearer grant, RFC 7523) and its log, `GET /fcm/grants`.
//! - [`grant`]: what makes a grant valid.
//! - [`tokens`]: the access tokens issued, their expiry and revocation.
//! - [`message`]: what a well-formed `message` is.
//! - [`send`]: `POST /v1/projects/{project_id}/messages:send`, with outcomes chosen by
//!   registration-token prefix ([`send::PushBehaviour`]), its log, `GET /fcm/messages`, and
//!   `POST /fcm/revoke`.
//!
//! Errors on Google's side use Google's own shapes (OAuth2 `{"error", "error_description"}` and
//! `google.rpc.Status` with FCM's details), not the retailer protocol's `{"reason"}`, because the
//! point is to exercise the notifier's handling of exactly those bodies.

pub mod grant;
pub mod key;
pub mod message;
pub mod oauth;
pub mod send;
pub mod tokens;

pub use key::FcmPublicKey;

use crate::recent::{Firsts, Recent};
use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use serde_json::{json, Value};
use std::sync::Mutex;
use std::time::Duration;

/// How many grant requests `GET /fcm/grants` keeps.
pub const MAX_RECORDED_GRANTS: usize = 10_000;
/// How many send requests `GET /fcm/messages` keeps.
pub const MAX_RECORDED_SENDS: usize = 100_000;
/// How many `busy-`/`down-` registration tokens are remembered as already failed once.
const MAX_REMEMBERED_TOKENS: usize = 100_000;

/// The fake FCM's share of the simulator state.
pub(crate) struct Fcm {
    public_key: FcmPublicKey,
    token_ttl: Duration,
    tokens: Mutex<tokens::AccessTokens>,
    grants: Mutex<Recent<oauth::GrantRecord, MAX_RECORDED_GRANTS>>,
    sends: Mutex<Recent<send::SendRecord, MAX_RECORDED_SENDS>>,
    /// `busy-` and `down-` registration tokens that have had their one failure.
    failed_once: Mutex<Firsts<MAX_REMEMBERED_TOKENS>>,
}

impl Fcm {
    pub(crate) fn new(public_key: FcmPublicKey, token_ttl: Duration) -> Self {
        Self {
            public_key,
            token_ttl,
            tokens: Mutex::default(),
            grants: Mutex::default(),
            sends: Mutex::default(),
            failed_once: Mutex::default(),
        }
    }
}

/// A `google.rpc.Status` error body, as every Google API answers failures; `details` is left
/// out when empty, as Google does for a 401.
pub(crate) fn google_error(status: StatusCode, message: &str, details: Vec<Value>) -> HttpResponse {
    let mut error = json!({
        "code": status.as_u16(),
        "message": message,
        "status": canonical_code(status),
    });
    if !details.is_empty() {
        error["details"] = Value::Array(details);
    }
    HttpResponse::build(status).json(json!({ "error": error }))
}

/// An FCM `FcmError` detail: the error code a client is meant to act on.
pub(crate) fn fcm_error(code: &str) -> Value {
    json!({"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code})
}

/// A `google.rpc.BadRequest` detail naming the field at fault.
pub(crate) fn bad_request(field: &str, description: &str) -> Value {
    json!({
        "@type": "type.googleapis.com/google.rpc.BadRequest",
        "fieldViolations": [{"field": field, "description": description}],
    })
}

/// The `google.rpc.Code` name Google pairs with each HTTP status it uses.
fn canonical_code(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        _ => "INTERNAL",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn google_errors_pair_status_and_code_and_drop_empty_details() {
        let response = google_error(StatusCode::UNAUTHORIZED, "no", vec![]);
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        for (status, code) in [
            (400, "INVALID_ARGUMENT"),
            (403, "PERMISSION_DENIED"),
            (404, "NOT_FOUND"),
            (429, "RESOURCE_EXHAUSTED"),
            (503, "UNAVAILABLE"),
        ] {
            let status = StatusCode::from_u16(status).expect("a status");
            assert_eq!(canonical_code(status), code);
        }
    }
}
