//! `POST /retailers/{retailer_id}/events`: a retailer reports what became of an order (issue 17
//! §2): confirmed or rejected after a 202, then shipped, delivered, cancelled, refunded.
//!
//! The retailer authenticates by signing the event with its secret (Standard Webhooks, the same
//! secret ICON signs its requests to the retailer with; either secret during a rotation's
//! grace), so no token is involved. Checks, cheapest first, each answered with problem+json and
//! none changing anything:
//! - over 64 KiB: 413, judged before the body is read when it declares its length;
//! - no retailer of that id, or no secret for it, or a missing, forged or stale (more than five
//!   minutes from ICON's clock) signature: 401 `invalid_signature`;
//! - over the retailer's request allowance: 429 (`ICON_RATE_LIMIT`, per retailer, counted only
//!   for events that verified, so a forger cannot spend it; forgeries count against their
//!   address's allowance like any request);
//! - not a JSON object: 400; a field ICON cannot use (an unknown `type`, an `occurred_at` that
//!   is not RFC 3339, a tracking or refund where it does not apply, ...): 422 naming it;
//! - no order with that `idempotency_key` at this retailer: 404 `unknown_order`;
//! - an event the order's state contradicts: 409 `invalid_transition`.
//!
//! A 200 means the event is durably recorded (`icon_store::order_events`): applied, or stale
//! (older than the order's state; in the history only), or a duplicate of a `webhook-id` this
//! retailer sent before, answered again with what the first did.

use super::{State, Validation};
use crate::problem::{lost_write, ApiError, WriteOutcome};
use crate::rate_limit::Limiters;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use icon_contracts::retailer::{RetailerEvent, RetailerEventType, MAX_EVENT_BYTES};
use icon_domain::text::{sanitize, sanitize_opt, MAX_ORDER_ID_CHARS, MAX_REASON_CHARS};
use icon_domain::{Currency, RetailerId};
use icon_store::order_events::{self, Recorded};
use icon_store::{webhook_secrets, StoreError};
use icon_webhooks::{Unverified, WEBHOOK_ID, WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP};
use serde::Serialize;
use utoipa::ToSchema;

/// Longest `webhook-id` accepted, in bytes: ids are the retailer's, stored for de-duplication.
const MAX_WEBHOOK_ID: usize = 256;
/// Longest `idempotency_key`, in bytes (ICON's keys are a UUID, a colon and a retailer id).
const MAX_KEY: usize = 256;
/// Longest tracking field, in characters (`url`: bytes).
const MAX_TRACKING_FIELD: usize = 200;
const MAX_TRACKING_URL: usize = 2048;

/// What ICON did with an event.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "result": "applied",
    "checkout_id": "0193a5c4-7a51-7cc2-9b8e-5d4f0e4f6a10",
    "order_status": "shipped",
    "sequence": 2
}))]
pub struct EventRecorded {
    /// `applied` (the order moved), `stale` (older than the order's state or implied by it:
    /// kept in its history, nothing changed) or `duplicate` (this `webhook-id` was recorded
    /// before; nothing was done again).
    pub result: &'static str,
    pub checkout_id: String,
    /// The order's state after the event.
    pub order_status: String,
    /// The checkout event it became (announced to the checkout's channels), if any.
    pub sequence: Option<i32>,
}

/// Report an order's progress (retailers).
///
/// Signed with the retailer's secret (`GET /retailers/{retailer_id}/webhook-secret`), as
/// Standard Webhooks: `webhook-id` (unique per event; a repeat is answered 200 and does
/// nothing), `webhook-timestamp` (Unix seconds, within five minutes of ICON's clock) and
/// `webhook-signature` over the exact body. See `docs/retailer-integration.md`.
#[utoipa::path(
    post,
    path = "/retailers/{retailer_id}/events",
    tag = "retailers",
    params(("retailer_id" = String, Path, description = "The retailer sending the event")),
    request_body(content = RetailerEventDoc, content_type = "application/json"),
    responses(
        (status = 200, description = "Recorded (applied, stale or a duplicate)", body = EventRecorded),
        (status = 400, description = "Not a JSON object", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing, forged or stale signature, or no such retailer", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No order with this idempotency_key at this retailer", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`invalid_transition`: the order's state contradicts the event", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Over 64 KiB", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field ICON cannot use", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many requests from this retailer", body = crate::problem::Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(name = "POST /retailers/{id}/events", skip_all, fields(retailer = %path, checkout_id = tracing::field::Empty))]
pub async fn post_event(
    req: HttpRequest,
    path: web::Path<String>,
    state: State,
    limiters: web::Data<Limiters>,
    mut payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_EVENT_BYTES as u64) {
        return Err(too_large());
    }
    let retailer = RetailerId::parse(path.into_inner()).map_err(|_| {
        unverified("no such retailer: an event must be signed by a registered retailer")
    })?;
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request("unreadable_body", e.to_string()))?;
        if body.len() + chunk.len() > MAX_EVENT_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }

    // One connection for the secrets and the recording.
    let mut conn = state.pool.get().await.map_err(StoreError::from)?;
    let Some(secrets) =
        webhook_secrets::retailer_verifying(&conn, &state.secrets_key, &retailer).await?
    else {
        return Err(unverified(format!(
            "retailer {retailer} has no signing secret yet, so no event can verify; an admin \
             reads it with GET /retailers/{retailer}/webhook-secret"
        )));
    };
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let webhook_id = header(WEBHOOK_ID);
    let now = chrono::Utc::now().timestamp();
    let check = |secret| {
        icon_webhooks::verify(
            secret,
            webhook_id,
            header(WEBHOOK_TIMESTAMP),
            header(WEBHOOK_SIGNATURE),
            &body,
            now,
        )
    };
    let verdict = match (check(&secrets.current), &secrets.previous) {
        (Err(Unverified::BadSignature), Some(previous)) => check(previous),
        (verdict, _) => verdict,
    };
    verdict.map_err(|why| {
        unverified(format!(
            "{why}; sign the exact body with the retailer's secret as Standard Webhooks \
             describes, with a webhook-timestamp within 5 minutes of now"
        ))
    })?;
    // Counted only once the signature verified: a forger cannot spend the retailer's allowance
    // and so get its real events refused.
    limiters.check_retailer(retailer.as_str())?;
    let webhook_id = webhook_id.unwrap_or_default();
    if webhook_id.len() > MAX_WEBHOOK_ID {
        return Err(ApiError::bad_request(
            "webhook_id_too_long",
            format!("webhook-id is longer than {MAX_WEBHOOK_ID} bytes"),
        ));
    }

    let json: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request("malformed_json", format!("the body is not JSON: {e}"))
    })?;
    if !json.is_object() {
        return Err(ApiError::bad_request(
            "malformed_json",
            "the body must be a JSON object",
        ));
    }
    if let Some(path) = nul_in(&json, String::new()) {
        return Err(invalid(
            &path,
            "must not contain a NUL character (U+0000)".to_owned(),
        ));
    }
    let event = validate(&json)?;
    tracing::info!(%retailer, webhook_id, kind = event.kind.as_str(), "retailer event");

    let recorded = order_events::record(&mut conn, &retailer, webhook_id, &event, &json)
        .await
        .or_outcome_unknown(lost_write::RETAILER_EVENT)?;
    let answer = |result, checkout_id: icon_domain::CheckoutId, status: String, sequence| {
        tracing::Span::current().record("checkout_id", tracing::field::display(checkout_id));
        tracing::info!(%checkout_id, result, %status, ?sequence, "retailer event recorded");
        Ok(HttpResponse::Ok().json(EventRecorded {
            result,
            checkout_id: checkout_id.to_string(),
            order_status: status,
            sequence,
        }))
    };
    match recorded {
        Recorded::Applied {
            checkout_id,
            status,
            sequence,
        } => answer("applied", checkout_id, status.to_string(), sequence),
        Recorded::Stale {
            checkout_id,
            status,
        } => answer("stale", checkout_id, status.to_string(), None),
        Recorded::Duplicate {
            checkout_id,
            status,
            sequence,
            ..
        } => answer("duplicate", checkout_id, status, sequence),
        Recorded::UnknownOrder => Err(ApiError::not_found(
            "unknown_order",
            format!(
                "retailer {retailer} has no order with idempotency_key `{}`: send the \
                 Idempotency-Key ICON sent with the order",
                event.idempotency_key
            ),
        )),
        Recorded::Contradicts { status, why } => Err(ApiError::conflict(
            "invalid_transition",
            format!("{why}; nothing was changed"),
        )
        .with("order_status", status.as_str())),
    }
}

/// The body as ICON uses it, or a 422 naming every field it cannot use. Free text is made safe
/// to store (control characters, length).
fn validate(json: &serde_json::Value) -> Result<RetailerEvent, ApiError> {
    if let Some(kind) = json.get("type").and_then(|t| t.as_str()) {
        if RetailerEventType::parse(kind).is_none() {
            return Err(invalid(
                "type",
                format!(
                    "unknown event type `{kind}`; one of {}",
                    RetailerEventType::ALL.map(|t| t.as_str()).join(", ")
                ),
            ));
        }
    }
    let mut event: RetailerEvent =
        serde_json::from_value(json.clone()).map_err(|e| invalid("body", e.to_string()))?;
    let mut v = Validation::default();
    let key = &event.idempotency_key;
    if key.is_empty() || key.len() > MAX_KEY || key.chars().any(char::is_control) {
        v.push(
            "idempotency_key",
            format!("must be the Idempotency-Key ICON sent (1 to {MAX_KEY} bytes, no control characters)"),
        );
    }
    event.order_id = sanitize_opt(event.order_id.as_deref(), MAX_ORDER_ID_CHARS);
    event.reason = sanitize_opt(event.reason.as_deref(), MAX_REASON_CHARS);
    match (&mut event.tracking, event.kind) {
        (Some(t), RetailerEventType::Shipped | RetailerEventType::Delivered) => {
            t.carrier = sanitize(&t.carrier, MAX_TRACKING_FIELD);
            t.number = sanitize(&t.number, MAX_TRACKING_FIELD);
            if t.carrier.is_empty() || t.number.is_empty() {
                v.push("tracking", "carrier and number must not be empty");
            }
            if let Some(url) = &t.url {
                let ok = url.len() <= MAX_TRACKING_URL
                    && (url.starts_with("https://") || url.starts_with("http://"))
                    && !url.chars().any(|c| c.is_control() || c.is_whitespace());
                if !ok {
                    v.push(
                        "tracking.url",
                        "must be an http(s) URL of at most 2048 bytes",
                    );
                }
            }
        }
        (Some(_), kind) => v.push(
            "tracking",
            format!(
                "applies only to order.shipped and order.delivered, not {}",
                kind.as_str()
            ),
        ),
        (None, _) => {}
    }
    match (&event.refund, event.kind) {
        (Some(r), RetailerEventType::Refunded) => {
            if r.amount_minor < 0 {
                v.push("refund.amount_minor", "must not be negative");
            }
            if Currency::try_from(r.currency.clone()).is_err() {
                v.push("refund.currency", "must be an ISO 4217 code such as EUR");
            }
        }
        (None, RetailerEventType::Refunded) => v.push(
            "refund",
            "order.refunded needs {\"amount_minor\", \"currency\"}",
        ),
        (Some(_), kind) => v.push(
            "refund",
            format!("applies only to order.refunded, not {}", kind.as_str()),
        ),
        (None, _) => {}
    }
    v.finish()?;
    Ok(event)
}

/// The first place in `json` (a field path such as `tracking.carrier`) holding a NUL, which the
/// history (a `jsonb` column) cannot store: anywhere, known field or not, so the retailer learns
/// which field rather than getting a 500.
fn nul_in(json: &serde_json::Value, at: String) -> Option<String> {
    let join = |key: &str| {
        if at.is_empty() {
            key.to_owned()
        } else {
            format!("{at}.{key}")
        }
    };
    match json {
        serde_json::Value::String(s) if s.contains('\0') => Some(at),
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| nul_in(v, format!("{at}[{i}]"))),
        serde_json::Value::Object(fields) => fields.iter().find_map(|(k, v)| {
            if k.contains('\0') {
                Some(join("(a field name)"))
            } else {
                nul_in(v, join(k))
            }
        }),
        _ => None,
    }
}

/// A 422 for one field.
fn invalid(field: &str, message: String) -> ApiError {
    let mut v = Validation::default();
    v.push(field, message);
    v.finish()
        .err()
        .unwrap_or_else(|| ApiError::internal("no validation error"))
}

fn unverified(detail: impl Into<String>) -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_signature",
        "The event's signature did not verify",
        detail,
    )
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "Payload too large",
        format!("an event body may be at most {MAX_EVENT_BYTES} bytes"),
    )
}

/// The event body, for the OpenAPI document (the wire type is `icon_contracts::retailer`).
#[derive(ToSchema)]
#[schema(example = json!({
    "type": "order.shipped",
    "idempotency_key": "0193a5c4-7a51-7cc2-9b8e-5d4f0e4f6a10:acme",
    "order_id": "acme-123",
    "occurred_at": "2026-12-03T10:00:00Z",
    "tracking": {"carrier": "DHL", "number": "JD0123", "url": "https://track.example/JD0123"}
}))]
#[allow(dead_code)]
pub struct RetailerEventDoc {
    /// `order.confirmed`, `order.rejected`, `order.shipped`, `order.delivered`,
    /// `order.cancelled`, `order.refunded`, or `order.cancel_refused` (the retailer will not
    /// cancel an order ICON asked it to cancel and answered 202).
    #[schema(rename = "type")]
    kind: String,
    /// The `Idempotency-Key` ICON sent with the order.
    idempotency_key: String,
    order_id: Option<String>,
    /// When it happened at the retailer (RFC 3339): orders late and out-of-order events.
    occurred_at: String,
    /// Why (rejected, cancelled, refunded, cancel refused).
    reason: Option<String>,
    /// `order.shipped` / `order.delivered`: `{"carrier", "number", "url"}`.
    tracking: Option<serde_json::Value>,
    /// `order.refunded` (required): `{"amount_minor", "currency"}`.
    refund: Option<serde_json::Value>,
}
