//! Verifying ICON's signatures, as a careful retailer does: every request ICON sends a retailer
//! (an order, a lookup, a cancellation) carries `webhook-id`, `webhook-timestamp` and
//! `webhook-signature` (Standard Webhooks, over the exact body; empty for a lookup), and
//! `PUT /_sim/retailers/{retailer}/secret` with `{"secret": "whsec_…"}` tells the simulator the
//! secret `GET /retailers/{retailer}/webhook-secret` answers in ICON (`DELETE` forgets it).
//!
//! A retailer whose secret the simulator knows gets only requests that verify with it; any
//! other (missing headers, a forged or stale signature) is answered 401 with a problem+json
//! body and has no effect. A retailer whose secret it does not know (and `/orders`, which names
//! no retailer) is served without checking, so runs that never hand it a secret work as before.
//! Either way the three headers are recorded in the request, lookup and cancellation logs.
//!
//! The same secret signs the events the simulator sends ICON as that retailer
//! ([`crate::events`]), as ICON verifies a retailer's events with the retailer's secret.

use crate::{lock, Sim};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use icon_webhooks::{Unverified, WebhookSecret, WEBHOOK_ID, WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;

/// The retailers' secrets the simulator was told, by `{retailer}` path segment.
#[derive(Default)]
pub(crate) struct Secrets(Mutex<HashMap<String, WebhookSecret>>);

impl Secrets {
    /// The secret the simulator was told for `retailer`, if any.
    pub(crate) fn of(&self, retailer: &str) -> Option<WebhookSecret> {
        lock(&self.0).get(retailer).cloned()
    }
}

/// A request's signature headers as received (`None` where absent), for the logs.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SignatureHeaders {
    pub webhook_id: Option<String>,
    pub webhook_timestamp: Option<String>,
    pub webhook_signature: Option<String>,
    /// `true` if it verified with the retailer's secret, `false` if it did not (answered 401),
    /// `None` if the simulator knows no secret for the retailer (not checked).
    pub signature_verified: Option<bool>,
}

impl SignatureHeaders {
    pub(crate) fn of(req: &HttpRequest) -> Self {
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        Self {
            webhook_id: header(WEBHOOK_ID),
            webhook_timestamp: header(WEBHOOK_TIMESTAMP),
            webhook_signature: header(WEBHOOK_SIGNATURE),
            signature_verified: None,
        }
    }
}

/// Checks `headers` over `body` against `retailer`'s secret, if the simulator knows it, and
/// records the verdict in `headers`. `Err` is to be answered with [`unauthorized`].
pub(crate) fn check(
    sim: &Sim,
    retailer: Option<&str>,
    headers: &mut SignatureHeaders,
    body: &[u8],
) -> Result<(), Unverified> {
    let Some(secret) = retailer.and_then(|r| sim.secrets.of(r)) else {
        return Ok(());
    };
    let verdict = icon_webhooks::verify(
        &secret,
        headers.webhook_id.as_deref(),
        headers.webhook_timestamp.as_deref(),
        headers.webhook_signature.as_deref(),
        body,
        chrono::Utc::now().timestamp(),
    );
    headers.signature_verified = Some(verdict.is_ok());
    verdict
}

/// 401 as problem+json (RFC 9457), with the retailer protocol's `reason` beside `detail`.
pub(crate) fn unauthorized(why: Unverified) -> HttpResponse {
    let detail = why.to_string();
    HttpResponse::build(StatusCode::UNAUTHORIZED)
        .content_type("application/problem+json")
        .json(serde_json::json!({
            "type": "about:blank",
            "title": "Unauthorized",
            "status": 401,
            "detail": detail,
            "reason": format!("signature refused: {detail}"),
        }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SecretBody {
    secret: String,
}

/// `PUT /_sim/retailers/{retailer}/secret`: from now on `retailer`'s requests must verify with
/// this secret.
pub(crate) async fn put(
    sim: web::Data<Sim>,
    retailer: web::Path<String>,
    body: web::Json<SecretBody>,
) -> HttpResponse {
    match WebhookSecret::parse_whsec(&body.secret) {
        Ok(secret) => {
            lock(&sim.secrets.0).insert(retailer.into_inner(), secret);
            HttpResponse::NoContent().finish()
        }
        Err(e) => crate::reason(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
    }
}

/// `DELETE /_sim/retailers/{retailer}/secret`: `retailer`'s requests are no longer checked.
pub(crate) async fn delete(sim: web::Data<Sim>, retailer: web::Path<String>) -> HttpResponse {
    lock(&sim.secrets.0).remove(retailer.as_str());
    HttpResponse::NoContent().finish()
}
