//! `/webhook-secret`: the secret that signs the caller's callbacks (Standard Webhooks), so
//! their receiver can tell ICON's callbacks from forgeries. One per caller (the token's `sub`,
//! who owns the checkouts), created on first use; a rotation keeps the previous one signing for
//! `ICON_WEBHOOK_SECRET_GRACE`, time to deploy the new one to the receiver.
//!
//! `/retailers/{retailer_id}/webhook-secret`: the same for the requests ICON sends a retailer
//! (placing an order, looking one up), so the retailer can tell ICON from anyone who learnt its
//! `order_url`. Admin only: an admin registers the retailer and hands its engineers the secret.
//! Created with the registration (or on first use for a retailer registered before secrets
//! existed), rotated with the same grace, and the same response shapes.
//!
//! The secret is in these responses and nowhere else: never logged, never in an error body,
//! and the responses are marked `Cache-Control: no-store`.

use super::State;
use crate::auth::{Admin, User};
use crate::problem::{lost_write, ApiError, WriteOutcome};
use actix_web::{http::header, web, HttpResponse};
use chrono::{DateTime, Utc};
use icon_domain::RetailerId;
use icon_store::webhook_secrets::{self, Holder, OwnerSecret};
use icon_store::{retailers, StoreError};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwJj5Mx8mPQ3Q=",
    "previous_valid_until": null
}))]
pub struct WebhookSecretBody {
    /// The key of the `webhook-signature` header's HMAC-SHA256: `whsec_` and the base64 of 32
    /// random bytes (the key is the decoded bytes). Configure it in your receiver as is;
    /// Standard Webhooks libraries take this form.
    pub secret: String,
    /// Until when callbacks also carry a signature made with the previous secret (after a
    /// rotation); null when they carry only this one's.
    pub previous_valid_until: Option<DateTime<Utc>>,
}

impl From<OwnerSecret> for WebhookSecretBody {
    fn from(s: OwnerSecret) -> Self {
        Self {
            secret: s.secret.expose_whsec(),
            previous_valid_until: s.previous_until,
        }
    }
}

fn respond(body: WebhookSecretBody) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body)
}

/// Read your webhook secret.
///
/// The secret your callbacks are signed with, created on first use (by this call, or by the
/// first callback due to you, whichever comes first); it stays the same until you rotate it.
/// Verify each callback's `webhook-signature` with it.
#[utoipa::path(
    get, path = "/webhook-secret", tag = "webhooks",
    responses(
        (status = 200, description = "Your current secret", body = WebhookSecretBody,
            headers(("Cache-Control" = String, description = "`no-store`: a secret is not for caches"))),
        (status = 401, description = "No valid bearer token", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unreachable; retry after Retry-After seconds (you get the same secret)", body = crate::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(name = "GET /webhook-secret", skip_all, fields(user = %user.id))]
pub async fn get_secret(user: User, state: State) -> Result<HttpResponse, ApiError> {
    let db = state.pool.get().await.map_err(StoreError::from)?;
    let secret = webhook_secrets::get_or_create(&db, &state.secrets_key, Holder::Owner(&user.id))
        .await
        .or_outcome_unknown(lost_write::WEBHOOK_SECRET)?;
    Ok(respond(secret.into()))
}

/// Rotate your webhook secret.
///
/// Makes a new secret and answers it. Callbacks are signed with the new one from now on, and,
/// until `previous_valid_until` (`ICON_WEBHOOK_SECRET_GRACE` from now, a day by default), with
/// the previous one too: `webhook-signature` then holds both signatures, space separated, so a
/// receiver still configured with the previous secret keeps verifying while you deploy the new
/// one. Only one previous secret is kept: rotating again within the grace retires the oldest
/// at once. If you had no secret yet, this creates one.
#[utoipa::path(
    post, path = "/webhook-secret/rotate", tag = "webhooks",
    responses(
        (status = 200, description = "The new secret, and until when the previous one still signs", body = WebhookSecretBody,
            headers(("Cache-Control" = String, description = "`no-store`: a secret is not for caches")),
            example = json!({
                "secret": "whsec_3q2+7wAAAAB6ZXJvcy1hbmQtb25lcy1rZXkxMjM0NTY=",
                "previous_valid_until": "2026-11-29T10:00:00Z"
            })),
        (status = 401, description = "No valid bearer token", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unreachable; the detail says whether the secret may have been rotated", body = crate::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(name = "POST /webhook-secret/rotate", skip_all, fields(user = %user.id))]
pub async fn rotate_secret(user: User, state: State) -> Result<HttpResponse, ApiError> {
    let db = state.pool.get().await.map_err(StoreError::from)?;
    let secret = webhook_secrets::rotate(
        &db,
        &state.secrets_key,
        Holder::Owner(&user.id),
        state.webhook_secret_grace,
    )
    .await
    .or_outcome_unknown(lost_write::WEBHOOK_SECRET_ROTATION)?;
    Ok(respond(secret.into()))
}

/// The retailer named by the path, if it is registered: a malformed id names no retailer either.
async fn registered(
    db: &impl icon_store::GenericClient,
    id: String,
) -> Result<RetailerId, ApiError> {
    let unknown = || {
        ApiError::not_found(
            "retailer_not_found",
            "no retailer is registered with that id",
        )
    };
    let id = RetailerId::parse(id).map_err(|_| unknown())?;
    match retailers::get(db, &id).await? {
        Some(_) => Ok(id),
        None => Err(unknown()),
    }
}

/// Read a retailer's signing secret (admin).
///
/// The secret every request ICON sends the retailer is signed with (`webhook-id`,
/// `webhook-timestamp`, `webhook-signature`, Standard Webhooks: the order placement's body, or
/// an empty body for a status lookup). Made when the retailer is registered; it stays the same
/// until rotated. Give it to the retailer's engineers so they can verify ICON's requests.
#[utoipa::path(
    get, path = "/retailers/{retailer_id}/webhook-secret", tag = "retailers",
    operation_id = "get_retailer_webhook_secret",
    params(("retailer_id" = String, Path, description = "The retailer's id", example = "acme")),
    responses(
        (status = 200, description = "The retailer's current secret", body = WebhookSecretBody,
            headers(("Cache-Control" = String, description = "`no-store`: a secret is not for caches"))),
        (status = 401, description = "No valid bearer token", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: the token lacks the `admin` scope", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "`retailer_not_found`: no retailer is registered with that id", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unreachable; retry after Retry-After seconds (you get the same secret)", body = crate::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(name = "GET /retailers/{retailer_id}/webhook-secret", skip_all)]
pub async fn get_retailer_secret(
    _admin: Admin,
    state: State,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let db = state.pool.get().await.map_err(StoreError::from)?;
    let id = registered(&db, path.into_inner()).await?;
    let secret = webhook_secrets::get_or_create(&db, &state.secrets_key, Holder::Retailer(&id))
        .await
        .or_outcome_unknown(lost_write::RETAILER_SECRET)?;
    Ok(respond(secret.into()))
}

/// Rotate a retailer's signing secret (admin).
///
/// Makes a new secret and answers it. ICON's requests to the retailer are signed with the new
/// one from now on and, until `previous_valid_until` (`ICON_WEBHOOK_SECRET_GRACE` from now, a
/// day by default), with the previous one too: `webhook-signature` then holds both signatures,
/// space separated, so the retailer keeps verifying while it deploys the new secret. Only one
/// previous secret is kept: rotating again within the grace retires the oldest at once.
#[utoipa::path(
    post, path = "/retailers/{retailer_id}/webhook-secret/rotate", tag = "retailers",
    operation_id = "rotate_retailer_webhook_secret",
    params(("retailer_id" = String, Path, description = "The retailer's id", example = "acme")),
    responses(
        (status = 200, description = "The new secret, and until when the previous one still signs", body = WebhookSecretBody,
            headers(("Cache-Control" = String, description = "`no-store`: a secret is not for caches")),
            example = json!({
                "secret": "whsec_3q2+7wAAAAB6ZXJvcy1hbmQtb25lcy1rZXkxMjM0NTY=",
                "previous_valid_until": "2026-11-29T10:00:00Z"
            })),
        (status = 401, description = "No valid bearer token", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: the token lacks the `admin` scope", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "`retailer_not_found`: no retailer is registered with that id", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unreachable; the detail says whether the secret may have been rotated", body = crate::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(name = "POST /retailers/{retailer_id}/webhook-secret/rotate", skip_all)]
pub async fn rotate_retailer_secret(
    _admin: Admin,
    state: State,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let db = state.pool.get().await.map_err(StoreError::from)?;
    let id = registered(&db, path.into_inner()).await?;
    let secret = webhook_secrets::rotate(
        &db,
        &state.secrets_key,
        Holder::Retailer(&id),
        state.webhook_secret_grace,
    )
    .await
    .or_outcome_unknown(lost_write::RETAILER_SECRET_ROTATION)?;
    Ok(respond(secret.into()))
}
