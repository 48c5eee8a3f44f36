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

    pub fn not_found(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, "Not found", detail)
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
        "cart_not_found",
        404,
        "No cart with that id belongs to you.",
    ),
    (
        "checkout_not_found",
        404,
        "No checkout with that id belongs to you.",
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
    ("payload_too_large", 413, "The body exceeds 64 KiB."),
    (
        "unsupported_media_type",
        415,
        "Send `Content-Type: application/json`.",
    ),
    (
        "validation_failed",
        422,
        "A field has an invalid value; see `errors` for each one.",
    ),
    (
        "empty_cart",
        422,
        "The cart has no items; add some before checking out.",
    ),
    (
        "unavailable",
        503,
        "A dependency is down; nothing changed. Retry after `Retry-After` seconds.",
    ),
    ("internal", 500, "An unexpected error; it was logged."),
];
