//! Cancelling a checkout, or one retailer's order of it (issue 18):
//! `DELETE /cart/checkout/{checkout_id}` and
//! `DELETE /cart/checkout/{checkout_id}/orders/{retailer_id}`.
//!
//! Asynchronous like the submission: the request is recorded and answered 202 with the
//! checkout's `Location` whatever its state; the worker carries it out and the checkout's
//! channels hear how it ended (`checkout.cancelled`, `checkout.partially_cancelled`). Each order
//! is cancelled at most once, so a repeated DELETE answers the same 202 and sends nothing
//! again; an `Idempotency-Key` is honoured as on submission (the same key on another request
//! is refused).

use super::checkouts::{accepted_response, idempotency_key, parse_checkout_id, Accepted};
use super::State;
use crate::auth::User;
use crate::problem::{lost_write, ApiError, WriteOutcome};
use actix_web::{web, HttpRequest, HttpResponse};
use icon_domain::{CheckoutStatus, RetailerId};
use icon_store::cancellations::{self, CancelOutcome, CancelRequest};
use icon_store::idempotency::IdempotentRequest;
use icon_store::StoreError;

/// The reason sent to the retailers when the shopper cancels.
const REASON: &str = "cancelled by the shopper";

/// Cancel a checkout.
///
/// Asks ICON to cancel every order of the checkout. Answers 202 with the checkout in
/// `Location`, whatever its state: an order not yet sent is never sent; one in flight is
/// cancelled once its outcome is known; one placed or `accepted` is cancelled at the retailer
/// (`POST <order_url>/cancellations`); a rejected or failed one needs nothing. The checkout is
/// `cancelling` meanwhile and ends `cancelled` (nothing remains placed) or
/// `partially_cancelled` (a retailer refused: the orders say which remain), announced to every
/// channel the checkout asked for (`checkout.cancelled`, `checkout.partially_cancelled`; the
/// next numbered event if the checkout had ended). Repeating the request changes nothing and
/// answers the same. A `failed` or `cancelled` checkout has nothing left to cancel: 202, nothing
/// done.
#[utoipa::path(
    delete, path = "/cart/checkout/{checkout_id}", tag = "checkout", operation_id = "cancel_checkout",
    params(
        ("checkout_id" = String, Path, description = "From the 202 of `POST /cart/checkout/`", example = "0193a0c4-7d2e-7cde-8f00-5a1b2c3d4e5f"),
        ("Idempotency-Key" = Option<String>, Header, description = "As on submission: the same key on the same request returns the first 202 again (with `Idempotent-Replayed: true`); on another request 422; while the first is still processed 409.", example = "9b2f0c1e-cancel"),
    ),
    responses(
        (status = 202, description = "Recorded: the checkout's cancellation is under way (or there was nothing left to cancel); poll `resource_url` or wait for the callback", body = Accepted, headers(
            ("Location" = String, description = "The checkout's resource_url"),
            ("Retry-After" = u32, description = "Seconds before polling is worthwhile"),
            ("Idempotent-Replayed" = String, description = "`true` when this is the stored answer to an earlier request with the same Idempotency-Key"))),
        (status = 400, description = "`invalid_idempotency_key`", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "`checkout_not_found`: no checkout with that id belongs to you", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`idempotency_key_in_progress`: a request with the same key is still being processed", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, description = "`idempotency_key_reused`: the key was used with a different request", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`: the database is unreachable; retrying is safe", body = crate::problem::Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(name = "DELETE /cart/checkout/{id}", skip_all, fields(checkout_id = %path))]
pub async fn cancel_checkout(
    req: HttpRequest,
    user: User,
    state: State,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    cancel(&req, user, &state, &path, None).await
}

/// Cancel one retailer's order of a checkout.
///
/// As `DELETE /cart/checkout/{checkout_id}`, for the order at `retailer_id` only. The checkout
/// ends `partially_cancelled` if its other orders remain placed, `cancelled` if none does.
#[utoipa::path(
    delete, path = "/cart/checkout/{checkout_id}/orders/{retailer_id}", tag = "checkout", operation_id = "cancel_order",
    params(
        ("checkout_id" = String, Path, description = "From the 202 of `POST /cart/checkout/`", example = "0193a0c4-7d2e-7cde-8f00-5a1b2c3d4e5f"),
        ("retailer_id" = String, Path, description = "The order's retailer, as the checkout lists it", example = "acme"),
        ("Idempotency-Key" = Option<String>, Header, description = "As on submission."),
    ),
    responses(
        (status = 202, description = "Recorded: the order's cancellation is under way (or there was nothing to cancel)", body = Accepted, headers(
            ("Location" = String, description = "The checkout's resource_url"),
            ("Retry-After" = u32, description = "Seconds before polling is worthwhile"),
            ("Idempotent-Replayed" = String, description = "`true` for a stored answer"))),
        (status = 400, description = "`invalid_idempotency_key`", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "`checkout_not_found`: no checkout with that id belongs to you; `order_not_found`: the checkout has no order at that retailer", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`idempotency_key_in_progress`", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, description = "`idempotency_key_reused`", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`: the database is unreachable; retrying is safe", body = crate::problem::Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(name = "DELETE /cart/checkout/{id}/orders/{retailer_id}", skip_all, fields(checkout_id = %path.0, retailer = %path.1))]
pub async fn cancel_order(
    req: HttpRequest,
    user: User,
    state: State,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (checkout, retailer) = path.into_inner();
    let retailer = RetailerId::parse(retailer).map_err(|_| order_not_found())?;
    cancel(&req, user, &state, &checkout, Some(retailer)).await
}

async fn cancel(
    req: &HttpRequest,
    user: User,
    state: &State,
    checkout: &str,
    retailer: Option<RetailerId>,
) -> Result<HttpResponse, ApiError> {
    let key = idempotency_key(req)?;
    let id = parse_checkout_id(checkout)?;
    let resource_url = format!("{}/cart/checkout/{id}", state.public_url);
    let body = |status: CheckoutStatus| {
        serde_json::to_string(&Accepted {
            checkout_id: id.to_string(),
            status,
            resource_url: resource_url.clone(),
        })
        .unwrap_or_default()
    };
    let request = CancelRequest {
        checkout_id: id,
        owner: user.id,
        idempotency: key.map(|key| IdempotentRequest {
            key,
            // Never equal to a submission's fingerprint, so a key cannot serve both.
            request: serde_json::json!({
                "cancel": id.to_string(),
                "retailer_id": retailer.as_ref().map(|r| r.as_str()),
            })
            .to_string(),
            response_status: 202,
            response_body: String::new(),
        }),
        retailer,
        reason: REASON.to_owned(),
    };
    let mut db = state.pool.get().await.map_err(StoreError::from)?;
    match cancellations::request(&mut db, &request, body)
        .await
        .or_outcome_unknown(lost_write::CANCELLATION)?
    {
        CancelOutcome::Recorded { status, asked } => {
            tracing::info!(%status, asked, "cancellation recorded");
            Ok(accepted_response(&resource_url, body(status), false))
        }
        CancelOutcome::Replayed(stored) => {
            tracing::info!("idempotent replay");
            Ok(accepted_response(&resource_url, stored.body, true))
        }
        CancelOutcome::NotFound => Err(ApiError::not_found(
            "checkout_not_found",
            "no checkout with that id belongs to you",
        )),
        CancelOutcome::NoSuchOrder => Err(order_not_found()),
        CancelOutcome::KeyReused => Err(ApiError::unprocessable(
            "idempotency_key_reused",
            "this Idempotency-Key was already used with a different request; use a new key for \
             a new request",
            vec![],
        )),
        CancelOutcome::KeyInProgress => {
            let mut e = ApiError::conflict(
                "idempotency_key_in_progress",
                "a request with this Idempotency-Key is still being processed; retry after \
                 Retry-After seconds to get its response",
            );
            e.retry_after = Some(super::checkouts::POLL_AFTER_SECS);
            Err(e)
        }
    }
}

fn order_not_found() -> ApiError {
    ApiError::not_found(
        "order_not_found",
        "the checkout has no order at that retailer; GET the checkout to see its orders",
    )
}
