//! FCM HTTP v1's send, `POST /v1/projects/{project_id}/messages:send`, its log,
//! `GET /fcm/messages`, and `POST /fcm/revoke`.
//!
//! A send is checked the way FCM does it (bearer token, then message), then answered by the
//! registration token's prefix ([`PushBehaviour`]), so a test picks an outcome by naming its
//! device, as it picks a retailer outcome by naming a SKU.

use super::message::{self, Violation};
use super::{bad_request, fcm_error, google_error};
use crate::{lock, Sim};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};
use std::time::Instant;

/// Google's words for a missing, unknown, expired or revoked access token.
pub const UNAUTHENTICATED_MESSAGE: &str = "Request had invalid authentication credentials. \
    Expected OAuth 2 access token, login cookie or other valid authentication credential. See \
    https://developers.google.com/identity/sign-in/web/devconsole-project.";

/// FCM's words for a token it cannot parse (the `invalid-` prefix).
pub const INVALID_TOKEN_MESSAGE: &str =
    "The registration token is not a valid FCM registration token";

/// What the fake FCM does with a well-formed, authenticated send, chosen by the registration
/// token's prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushBehaviour {
    /// `dead-`: 404 `UNREGISTERED`, the app was uninstalled: the device is to be forgotten.
    Dead,
    /// `invalid-`: 400 `INVALID_ARGUMENT` naming `message.token`: the token was never valid.
    Invalid,
    /// `busy-`: 429 `QUOTA_EXCEEDED` with `Retry-After: 1` the first time, then delivered.
    Busy,
    /// `down-`: 503 `UNAVAILABLE` the first time, then delivered.
    Down,
    /// `denied-`: always 403 `SENDER_ID_MISMATCH`, the token belongs to another project.
    Denied,
    /// `slow-`: waits the simulator's slow delay, then delivered.
    Slow,
    /// Anything else: delivered.
    Deliver,
}

impl PushBehaviour {
    pub const PREFIXES: [(&'static str, PushBehaviour); 6] = [
        ("dead-", PushBehaviour::Dead),
        ("invalid-", PushBehaviour::Invalid),
        ("busy-", PushBehaviour::Busy),
        ("down-", PushBehaviour::Down),
        ("denied-", PushBehaviour::Denied),
        ("slow-", PushBehaviour::Slow),
    ];

    pub fn of(token: &str) -> PushBehaviour {
        Self::PREFIXES
            .iter()
            .find(|(prefix, _)| token.starts_with(prefix))
            .map_or(PushBehaviour::Deliver, |(_, behaviour)| *behaviour)
    }
}

/// One send request as received and answered; `GET /fcm/messages` returns these.
#[derive(Debug, Clone, Serialize)]
pub struct SendRecord {
    pub received_at: DateTime<Utc>,
    pub project_id: String,
    /// The registration token, if the body had one.
    pub token: Option<String>,
    pub status: u16,
    pub auth_ok: bool,
    /// The `message` object as sent, if the body was JSON and had one.
    pub message: Option<Value>,
    /// The message's `name` when delivered (200).
    pub name: Option<String>,
}

/// `POST /v1/projects/{project_id}/messages:send`.
#[tracing::instrument(name = "fcm_send", skip_all, fields(project_id = %project_id))]
pub(crate) async fn send(
    sim: web::Data<Sim>,
    project_id: web::Path<String>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let received_at = Utc::now();
    let project_id = project_id.into_inner();
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let auth = lock(&sim.fcm.tokens).check(bearer, Instant::now());
    let body = serde_json::from_slice::<Value>(&body);
    let message = body.as_ref().ok().and_then(|b| b.get("message")).cloned();
    let token = message
        .as_ref()
        .and_then(|m| m.get("token")?.as_str())
        .map(str::to_owned);

    let (response, name) = match (&auth, &body) {
        (Err(refused), _) => {
            tracing::info!(
                token = token.as_deref(),
                access_token = refused.as_str(),
                "send refused"
            );
            let mut response =
                google_error(StatusCode::UNAUTHORIZED, UNAUTHENTICATED_MESSAGE, vec![]);
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"https://accounts.google.com/\""),
            );
            (response, None)
        }
        (Ok(()), Err(e)) => (
            malformed(&Violation {
                field: "message".to_owned(),
                description: format!("Invalid JSON payload received: {e}"),
            }),
            None,
        ),
        (Ok(()), Ok(body)) => match message::validate(body) {
            Err(violation) => (malformed(&violation), None),
            Ok(token) => deliver(&sim, &project_id, token).await,
        },
    };
    let status = response.status().as_u16();
    tracing::info!(token = token.as_deref(), status, "push answered");
    lock(&sim.fcm.sends).push(SendRecord {
        received_at,
        project_id,
        token,
        status,
        auth_ok: auth.is_ok(),
        message,
        name: name.clone(),
    });
    response
}

/// Answers a valid send by its token's prefix; the message's name when delivered.
async fn deliver(sim: &Sim, project_id: &str, token: &str) -> (HttpResponse, Option<String>) {
    let behaviour = PushBehaviour::of(token);
    let first_time = || lock(&sim.fcm.failed_once).first(token);
    let failure = match behaviour {
        PushBehaviour::Dead => Some(google_error(
            StatusCode::NOT_FOUND,
            "Requested entity was not found.",
            vec![fcm_error("UNREGISTERED")],
        )),
        PushBehaviour::Invalid => Some(google_error(
            StatusCode::BAD_REQUEST,
            INVALID_TOKEN_MESSAGE,
            vec![
                fcm_error("INVALID_ARGUMENT"),
                bad_request("message.token", INVALID_TOKEN_MESSAGE),
            ],
        )),
        PushBehaviour::Busy if first_time() => {
            let mut response = google_error(
                StatusCode::TOO_MANY_REQUESTS,
                "Quota exceeded for sending to this device; retry after the Retry-After delay.",
                vec![fcm_error("QUOTA_EXCEEDED")],
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            Some(response)
        }
        PushBehaviour::Down if first_time() => Some(google_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "The service is currently unavailable.",
            vec![fcm_error("UNAVAILABLE")],
        )),
        PushBehaviour::Denied => Some(google_error(
            StatusCode::FORBIDDEN,
            "SenderId mismatch",
            vec![fcm_error("SENDER_ID_MISMATCH")],
        )),
        PushBehaviour::Slow => {
            // Ends at once on shutdown, like a `slow-` order, so the stop is not held.
            tokio::select! {
                () = tokio::time::sleep(sim.slow_delay) => None,
                () = sim.shutdown.cancelled() => Some(google_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The service is shutting down.",
                    vec![fcm_error("UNAVAILABLE")],
                )),
            }
        }
        PushBehaviour::Busy | PushBehaviour::Down | PushBehaviour::Deliver => None,
    };
    match failure {
        Some(response) => (response, None),
        None => {
            let name = format!(
                "projects/{project_id}/messages/{}",
                uuid::Uuid::new_v4().simple()
            );
            (HttpResponse::Ok().json(json!({ "name": name })), Some(name))
        }
    }
}

fn malformed(violation: &Violation) -> HttpResponse {
    google_error(
        StatusCode::BAD_REQUEST,
        &format!(
            "Invalid value at '{}': {}",
            violation.field, violation.description
        ),
        vec![bad_request(&violation.field, &violation.description)],
    )
}

/// `GET /fcm/messages`: every send request, in the order they were answered (only a `slow-`
/// send is answered later than it arrived).
pub(crate) async fn list(sim: web::Data<Sim>) -> HttpResponse {
    HttpResponse::Ok().json(lock(&sim.fcm.sends).list())
}

/// `POST /fcm/revoke`: every access token issued so far stops working, so a test can prove a
/// client fetches a new one after a 401.
pub(crate) async fn revoke(sim: web::Data<Sim>) -> HttpResponse {
    let revoked = lock(&sim.fcm.tokens).revoke_all(Instant::now());
    tracing::info!(revoked, "access tokens revoked");
    HttpResponse::NoContent().finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaviour_follows_the_token_prefix() {
        for (prefix, behaviour) in PushBehaviour::PREFIXES {
            assert_eq!(PushBehaviour::of(&format!("{prefix}device")), behaviour);
        }
        assert_eq!(
            PushBehaviour::of("fMEP0vJqS0:APA91b"),
            PushBehaviour::Deliver
        );
        assert_eq!(PushBehaviour::of("x-dead-1"), PushBehaviour::Deliver);
    }
}
