//! The gateway's one error type: every failure becomes an RFC 9457 problem document
//! (`application/problem+json`) with a stable machine-readable `code`. 5xx bodies say nothing
//! about the cause; the cause chain goes to the log.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use icon_store::StoreError;
use serde::Serialize;
use serde_json::{Map, Value};
use std::fmt;

/// How long a client should wait before retrying after a 503.
pub const RETRY_AFTER_UNAVAILABLE: u32 = 5;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// JSON path of the offending field, e.g. `callback_url` or `unit_price.currency`.
    pub field: String,
    pub message: String,
}

/// Boxed so that `Result<T, ApiError>` stays small on the happy path.
#[derive(Debug)]
pub struct ApiError(Box<ProblemDetails>);

#[derive(Debug)]
pub struct ProblemDetails {
    pub status: StatusCode,
    pub code: &'static str,
    pub title: &'static str,
    pub detail: String,
    pub extra: Map<String, Value>,
    pub retry_after: Option<u32>,
    pub bearer_challenge: Option<&'static str>,
    /// The methods a path has, for the `Allow` header of a 405.
    pub allow: Option<&'static str>,
    source: Option<String>,
}

/// The problem document, as documented in the OpenAPI spec.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the problem type; its fragment is the `code`, documented on `/docs`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable, machine-readable code: branch on this, not on `title` or `detail`.
    pub code: String,
    /// Per-field validation errors (422 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
    /// The checkout a 409 refers to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkout_id: Option<String>,
    /// Where to poll that checkout (409 `checkout_exists`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkout_url: Option<String>,
    /// The body field the operation does not have (400 `unknown_field`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self(Box::new(ProblemDetails {
            status,
            code,
            title,
            detail: detail.into(),
            extra: Map::new(),
            retry_after: None,
            bearer_challenge: None,
            allow: None,
            source: None,
        }))
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_owned(), value.into());
        self
    }

    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            code,
            "The request is malformed",
            detail,
        )
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        let mut e = Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "A valid bearer token is required",
            detail,
        );
        e.bearer_challenge = Some("invalid_token");
        e
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "The token lacks the required scope",
            detail,
        )
    }

    /// 429: the caller spent its allowance (see `crate::rate_limit`); `wait` is rounded up to
    /// whole seconds, at least 1, for `Retry-After`.
    pub fn rate_limited(wait: std::time::Duration, detail: impl Into<String>) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "Too many requests",
            detail,
        );
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        e.retry_after = Some(u32::try_from(secs.max(1)).unwrap_or(u32::MAX));
        e
    }

    pub fn not_found(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, "Not found", detail)
    }

    /// A path that exists, asked with a method it does not have; `allow` lists those it has.
    pub fn method_not_allowed(method: &str, allow: &'static str) -> Self {
        let mut e = Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "Method not allowed",
            format!("this path does not support {method}; use one of: {allow} (see /docs)"),
        );
        e.allow = Some(allow);
        e
    }

    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            code,
            "Conflict with the current state",
            detail,
        )
    }

    pub fn unprocessable(
        code: &'static str,
        detail: impl Into<String>,
        errors: Vec<FieldError>,
    ) -> Self {
        let e = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            code,
            "The request cannot be processed",
            detail,
        );
        if errors.is_empty() {
            e
        } else {
            e.with("errors", serde_json::to_value(errors).unwrap_or_default())
        }
    }

    pub fn unavailable(source: impl fmt::Display) -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Temporarily unavailable",
            "ICON cannot reach its database right now. Nothing was changed; retry after the \
             number of seconds in Retry-After.",
        );
        e.retry_after = Some(RETRY_AFTER_UNAVAILABLE);
        e.source = Some(source.to_string());
        e
    }

    /// A database failure while a write was under way. The connection may have been lost
    /// after PostgreSQL committed but before its reply arrived, so this 503 must not promise
    /// that nothing changed: `detail` tells the client how to retry safely.
    pub fn write_outcome_unknown(source: impl fmt::Display, detail: &'static str) -> Self {
        let mut e = Self::unavailable(source);
        e.detail = detail.to_owned();
        e
    }

    pub fn internal(source: impl fmt::Display) -> Self {
        let mut e = Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "Something went wrong on our side. Nothing is guaranteed to have changed; retrying \
             is safe.",
        );
        e.source = Some(source.to_string());
        e
    }
}

impl std::ops::Deref for ApiError {
    type Target = ProblemDetails;
    fn deref(&self) -> &ProblemDetails {
        &self.0
    }
}

impl std::ops::DerefMut for ApiError {
    fn deref_mut(&mut self) -> &mut ProblemDetails {
        &mut self.0
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let chain = icon_store::pool::source_chain(&e);
        if e.is_unavailable() {
            ApiError::unavailable(chain)
        } else {
            ApiError::internal(chain)
        }
    }
}

/// Maps the errors of a store call that writes: an unavailable database becomes
/// [`ApiError::write_outcome_unknown`] with `detail`, anything else as usual. Errors from
/// getting a pooled connection happen before any write and keep the plain 503.
pub(crate) trait WriteOutcome<T> {
    fn or_outcome_unknown(self, detail: &'static str) -> Result<T, ApiError>;
}

impl<T> WriteOutcome<T> for Result<T, StoreError> {
    fn or_outcome_unknown(self, detail: &'static str) -> Result<T, ApiError> {
        self.map_err(|e| {
            if e.is_unavailable() {
                ApiError::write_outcome_unknown(icon_store::pool::source_chain(&e), detail)
            } else {
                e.into()
            }
        })
    }
}

/// What a 503 says, per operation, when the database connection failed while a write was under
/// way (`WriteOutcome`): the write may have taken effect, and each says how to retry safely.
pub mod lost_write {
    pub const CHECKOUT: &str = "ICON lost its connection to the database while \
storing this checkout, so it may have been accepted. Retry after Retry-After seconds with the \
same Idempotency-Key: you get the checkout if it was accepted (202, Idempotent-Replayed), and it \
is created if it was not. Without a key, a retry answers 409 checkout_exists naming the \
checkout if the first attempt was accepted.";

    pub const REDELIVERY: &str = "ICON lost its connection to the database while \
re-queuing the callback, so it may have been re-queued. Retry after Retry-After seconds: a \
callback that was re-queued answers 409 callback_not_failed and is not sent twice.";

    pub const WEBHOOK_SECRET: &str = "ICON lost its connection to the database \
while creating your webhook secret, so it may have been created. Retry after Retry-After \
seconds: you get the one secret either way.";

    pub const WEBHOOK_SECRET_ROTATION: &str = "ICON lost its connection to the \
database while rotating your webhook secret, so it may have been rotated. After Retry-After \
seconds, GET /webhook-secret shows the secret callbacks are signed with now; rotate again only \
if it is still the old one.";

    pub const RETAILER_SECRET: &str = "ICON lost its connection to the database \
while creating the retailer's signing secret, so it may have been created. Retry after \
Retry-After seconds: you get the one secret either way.";

    pub const RETAILER_SECRET_ROTATION: &str = "ICON lost its connection to the \
database while rotating the retailer's signing secret, so it may have been rotated. After \
Retry-After seconds, GET /retailers/{retailer_id}/webhook-secret shows the secret requests are \
signed with now; rotate again only if it is still the old one.";

    pub const RETAILER_EVENT: &str = "ICON lost its connection to the database while \
recording the event, so it may have been recorded. Send it again with the same webhook-id after \
Retry-After seconds: a recorded event is answered duplicate and takes effect once.";

    pub const CANCELLATION: &str = "ICON lost its connection to the database while \
recording this cancellation, so it may have been recorded. Retry after Retry-After seconds: a \
cancellation is asked at most once per order, so a repeated DELETE (with or without the same \
Idempotency-Key) is safe.";
    pub const CART: &str = "ICON lost its connection to the database while creating \
the cart, so it may have been created. Retry after Retry-After seconds; an extra empty cart is \
harmless.";

    pub const ITEM: &str = "ICON lost its connection to the database while adding the \
item, so it may have been added. Check the cart (GET /carts/{cart_id}) after Retry-After seconds \
before adding it again.";

    pub const RETAILER: &str = "ICON lost its connection to the database while saving \
the retailer, so it may have been saved. Retry after Retry-After seconds: the PUT is idempotent.";

    pub const DEVICE: &str = "ICON lost its connection to the database while \
registering the device, so it may have been registered. Retry after Retry-After seconds: the \
PUT is idempotent.";

    pub const DEVICE_REMOVAL: &str = "ICON lost its connection to the database while \
unregistering the device, so it may have been unregistered. Retry after Retry-After seconds: the \
DELETE is idempotent.";

    pub const PUSH_REDELIVERY: &str = "ICON lost its connection to the database while \
re-queuing the push notifications, so they may have been re-queued. Retry after Retry-After \
seconds: pushes that were re-queued answer 409 push_not_failed and are not sent twice.";

    pub const EMAIL_REDELIVERY: &str = "ICON lost its connection to the database while \
re-queuing the e-mail, so it may have been re-queued. Retry after Retry-After seconds: an \
e-mail that was re-queued answers 409 email_not_failed and is not sent twice.";
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.detail)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        if let Some(source) = &self.source {
            if self.status.is_server_error() {
                tracing::error!(code = self.code, cause = %source, "request failed");
            }
        }
        let mut body = Map::new();
        body.insert("type".into(), format!("/docs#problem-{}", self.code).into());
        body.insert("title".into(), self.title.into());
        body.insert("status".into(), self.status.as_u16().into());
        body.insert("detail".into(), self.detail.clone().into());
        body.insert("code".into(), self.code.into());
        for (k, v) in &self.extra {
            body.insert(k.clone(), v.clone());
        }
        let mut resp = HttpResponse::build(self.status);
        resp.content_type("application/problem+json");
        if let Some(secs) = self.retry_after {
            resp.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        if let Some(methods) = self.allow {
            resp.insert_header((header::ALLOW, methods));
        }
        if let Some(err) = self.bearer_challenge {
            resp.insert_header((
                header::WWW_AUTHENTICATE,
                format!("Bearer realm=\"icon\", error=\"{err}\""),
            ));
        }
        resp.body(Value::Object(body).to_string())
    }
}

/// Every problem code the API can answer with, for the docs page.
pub const CODES: &[(&str, u16, &str)] = &[
    (
        "malformed_json",
        400,
        "The body is not valid JSON or a field has the wrong type.",
    ),
    (
        "json_too_deep",
        400,
        "Arrays and objects in the body nest more than 32 levels deep; no request needs that.",
    ),
    (
        "unknown_field",
        400,
        "The body has a field the operation does not know (named in `field`): probably a typo. \
         Check the request schema.",
    ),
    (
        "invalid_idempotency_key",
        400,
        "`Idempotency-Key` must be 1 to 255 printable ASCII characters, e.g. a UUID.",
    ),
    (
        "unauthorized",
        401,
        "No bearer token, or it is invalid or expired. Get a new token.",
    ),
    (
        "forbidden",
        403,
        "The token is valid but lacks the `admin` scope this endpoint needs.",
    ),
    ("not_found", 404, "No such route or resource."),
    (
        "retailer_not_found",
        404,
        "No retailer is registered with that id.",
    ),
    (
        "cart_not_found",
        404,
        "No cart with that id belongs to you.",
    ),
    (
        "invalid_signature",
        401,
        "A retailer's event is unsigned, forged, stale (webhook-timestamp more than 5 minutes \
         from now) or from a retailer with no signing secret: sign the exact body with the \
         retailer's secret (Standard Webhooks).",
    ),
    (
        "unknown_order",
        404,
        "The retailer has no order with that `idempotency_key`: send the Idempotency-Key ICON \
         sent with the order.",
    ),
    (
        "invalid_transition",
        409,
        "The event contradicts the order's state (`order_status`), e.g. `order.shipped` for a \
         rejected order; nothing was changed.",
    ),
    (
        "unreadable_body",
        400,
        "The request body could not be read to its end.",
    ),
    (
        "webhook_id_too_long",
        400,
        "`webhook-id` is longer than 256 bytes.",
    ),
    (
        "checkout_not_found",
        404,
        "No checkout with that id belongs to you.",
    ),
    (
        "order_not_found",
        404,
        "The checkout has no order at that retailer (`DELETE \
         /cart/checkout/{checkout_id}/orders/{retailer_id}`): its orders are listed on the \
         checkout.",
    ),
    (
        "callback_not_found",
        409,
        "The checkout was submitted without a `callback_url`, so there is no callback to \
         redeliver.",
    ),
    (
        "push_not_found",
        409,
        "The checkout has no push notification: it was submitted without \
         `push_notification: true`, or no device was registered then (see `push.detail`).",
    ),
    (
        "email_not_found",
        409,
        "The checkout has no e-mail: the token that submitted it carried no `email` claim.",
    ),
    (
        "callback_not_failed",
        409,
        "Only a `failed` callback can be redelivered; this one is pending, retrying or \
         delivered. Poll the checkout.",
    ),
    (
        "push_not_failed",
        409,
        "None of the checkout's pushes is `failed` or `not_configured`; they are pending, \
         retrying or delivered. Poll the checkout.",
    ),
    (
        "email_not_failed",
        409,
        "Only a `failed` or `not_configured` e-mail can be redelivered; this one is pending, \
         retrying or delivered. Poll the checkout.",
    ),
    (
        "checkout_exists",
        409,
        "The cart already has a live checkout (named in `checkout_id`); poll it instead.",
    ),
    (
        "cart_frozen",
        409,
        "The cart is being checked out or was bought; start a new cart.",
    ),
    (
        "order_unknown",
        409,
        "The cart's earlier order at that retailer may have been placed (its outcome is \
         `unknown`): a new checkout re-sends it unchanged, so its items cannot change; use a new \
         cart for other items from that retailer.",
    ),
    (
        "method_not_allowed",
        405,
        "The path exists but not with this method; the `Allow` header lists the methods it has.",
    ),
    (
        "cart_full",
        409,
        "The cart already holds the most items a cart may hold (100); check out this cart and \
         start a new one, or raise the quantity of an item already in it.",
    ),
    (
        "idempotency_key_in_progress",
        409,
        "A request with this `Idempotency-Key` is still being processed; retry after \
         `Retry-After` seconds to get its response.",
    ),
    ("payload_too_large", 413, "The body exceeds 64 KiB."),
    (
        "unsupported_media_type",
        415,
        "Send `Content-Type: application/json`.",
    ),
    (
        "headers_too_large",
        431,
        "The request's header fields total more than 16 KiB; send only the headers the API uses.",
    ),
    (
        "validation_failed",
        422,
        "A field has an invalid value; see `errors` for each one.",
    ),
    (
        "idempotency_key_reused",
        422,
        "This `Idempotency-Key` was used with a different body; use a new key for a new request.",
    ),
    (
        "empty_cart",
        422,
        "The cart has no items; add some before checking out.",
    ),
    (
        "rate_limited",
        429,
        "Too many requests from your address or with your token's subject. Wait the number \
         of seconds in `Retry-After`, then retry.",
    ),
    (
        "unavailable",
        503,
        "The database is not reachable. Retry after `Retry-After` seconds. If the connection \
         was lost while a write was being committed, `detail` says so: the request may have \
         taken effect, so retry `POST /cart/checkout/` with the same `Idempotency-Key`.",
    ),
    ("internal", 500, "An unexpected error; it was logged."),
];

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::MessageBody;

    fn body(e: &ApiError) -> Value {
        let bytes = e.error_response().into_body().try_into_bytes().unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn a_lost_commit_reply_does_not_claim_nothing_changed() {
        let plain = ApiError::unavailable("connection refused");
        assert!(plain.detail.contains("Nothing was changed"));
        let unknown = ApiError::write_outcome_unknown(
            "connection closed",
            "may have been accepted; retry with the same Idempotency-Key",
        );
        assert_eq!(unknown.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(unknown.code, "unavailable");
        assert_eq!(unknown.retry_after, Some(RETRY_AFTER_UNAVAILABLE));
        let b = body(&unknown);
        let detail = b["detail"].as_str().unwrap();
        assert!(!detail.contains("Nothing was changed"), "{detail}");
        assert!(detail.contains("Idempotency-Key"), "{detail}");
        assert!(
            !detail.contains("connection closed"),
            "the cause stays in the log"
        );
    }

    #[test]
    fn only_unavailable_write_errors_become_outcome_unknown() {
        let corrupt: Result<(), StoreError> = Err(StoreError::Corrupt("bad row".into()));
        let e = corrupt.or_outcome_unknown("may have").unwrap_err();
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
    }
}
