//! `/cart/checkout`: the asynchronous checkout. Submitting answers 202 at once with where to
//! poll; the work happens in the checkout worker and the result arrives by callback.

use super::callbacks::CallbackBody;
use super::channels::{push_summary, EmailBody, PushBody};
use super::orders::OrderBody;
use super::{carts::cart_not_found, State, Validation};
use crate::auth::User;
use crate::extract::Json;
use crate::problem::{lost_write, ApiError};
use actix_web::{http::header, web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use icon_domain::{CallbackUrl, CartId, CheckoutId, CheckoutPolicy, CheckoutStatus};
use icon_store::checkouts::{self, CheckoutView, CreateCheckout, NewCheckout, Submission};
use icon_store::idempotency::IdempotentRequest;
use icon_store::StoreError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Seconds a client should wait before polling a checkout that is not final yet.
pub const POLL_AFTER_SECS: u32 = 1;

/// What to check out. Unknown fields are refused (400 `unknown_field`): a misspelt
/// `callback_url` would otherwise check out without a callback. `callback_url` holds at most
/// 2,048 bytes, without credentials; the outcome it receives is the `checkout-finished`
/// webhook.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "cart_id": 1234,
    "callback_url": "https://partner.example.com/hooks/icon",
    "push_notification": true
}))]
pub struct CheckoutRequest {
    /// The caller's cart, with at least one item.
    #[schema(example = 1234)]
    pub cart_id: i64,
    /// Where to POST the outcome. Absolute https (http only where the operator allows it);
    /// addresses that are not globally reachable (private, loopback, ...) are refused unless
    /// the operator allowed them.
    #[schema(example = "https://partner.example.com/hooks/icon")]
    #[schema(max_length = 2048)]
    pub callback_url: Option<String>,
    /// Push the outcome to the devices the user has registered (`PUT /me/devices/{token}`)
    /// when submitting. With none registered the checkout is still accepted; its `push` says
    /// why nothing is pushed.
    pub push_notification: Option<bool>,
    /// Also notify every change of an order after the checkout finished (confirmed or rejected
    /// after `unknown`, shipped, delivered, cancelled, refunded): each is a numbered event
    /// (`type`, `sequence`, `occurred_at`, `order`) on every channel above, delivered in
    /// sequence. Default false: only the checkout's end is notified.
    pub order_updates: Option<bool>,
    /// `best_effort` (the default): each retailer's order stands on its own, and a partial
    /// outcome is `partially_completed`. `all_or_nothing`: as soon as one order is rejected or
    /// failed (or stays `unknown`), ICON places no more and cancels every order already placed
    /// or accepted; the checkout ends `failed` with a `reason` naming that order (or
    /// `partially_cancelled` if a retailer refuses to cancel).
    #[schema(value_type = Option<String>, example = "all_or_nothing")]
    pub policy: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "checkout_id": "0193a0c4-7d2e-7cde-8f00-5a1b2c3d4e5f",
    "status": "queued",
    "resource_url": "https://icon.example.com/cart/checkout/0193a0c4-7d2e-7cde-8f00-5a1b2c3d4e5f"
}))]
pub struct Accepted {
    pub checkout_id: String,
    #[schema(example = "queued")]
    pub status: CheckoutStatus,
    /// Poll this; also in `Location`.
    pub resource_url: String,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "checkout_id": "0193a0c4-7d2e-7cde-8f00-5a1b2c3d4e5f",
    "cart_id": 1234,
    "status": "completed",
    "created_at": "2026-11-28T10:00:00Z",
    "updated_at": "2026-11-28T10:00:01Z",
    "resource_url": "https://icon.example.com/cart/checkout/0193a0c4-7d2e-7cde-8f00-5a1b2c3d4e5f",
    "orders": [{"retailer_id": "acme", "status": "confirmed", "retailer_order_id": "A-1001"}],
    "callback": {
        "url": "https://partner.example.com/hooks/icon",
        "state": "delivered",
        "attempts": 1,
        "last_attempt_at": "2026-11-28T10:00:01Z",
        "next_attempt_at": null,
        "last_response_status": 200
    },
    "push_notification": false,
    "push": null
}))]
pub struct CheckoutBody {
    pub checkout_id: String,
    pub cart_id: i64,
    pub status: CheckoutStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub resource_url: String,
    pub orders: Vec<OrderBody>,
    /// `null` when no callback_url was given.
    pub callback: Option<CallbackBody>,
    pub push_notification: bool,
    /// The push to the user's devices; `null` when `push_notification` was false.
    pub push: Option<PushBody>,
    /// Submitted with `order_updates`: every change of an order after the end is notified too
    /// (listed at `/cart/checkout/{checkout_id}/events`).
    pub order_updates: bool,
    /// `best_effort` or `all_or_nothing`, as submitted.
    pub policy: CheckoutPolicy,
    /// The e-mail of the outcome, sent when the submitting token carried an `email` claim;
    /// absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailBody>,
    /// Why a `failed` checkout failed when its orders do not say: the order that failed its
    /// `all_or_nothing` policy, or its processing failed `ICON_WORKER_MAX_DELIVERIES` times;
    /// absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl From<CheckoutView> for CheckoutBody {
    fn from(c: CheckoutView) -> Self {
        Self {
            checkout_id: c.id.to_string(),
            cart_id: c.cart_id.get(),
            status: c.status,
            created_at: c.created_at,
            updated_at: c.updated_at,
            resource_url: c.resource_url,
            orders: c.orders.into_iter().map(OrderBody::from).collect(),
            callback: c.callback.map(CallbackBody::from),
            push: push_summary(c.id, c.push_notification, &c.push),
            push_notification: c.push_notification,
            order_updates: c.order_updates,
            policy: c.policy,
            email: c.email.map(EmailBody::from),
            reason: c.reason,
        }
    }
}

/// Check out a cart.
///
/// Asynchronous: answers 202 as soon as the checkout is stored and its work queued (in one
/// transaction), with the `resource_url` to poll in `Location`. ICON then places one order per
/// retailer in the cart; the outcome arrives as a POST to `callback_url` (the
/// `checkout-finished` webhook, signed), as a push to the caller's registered devices when
/// `push_notification` is true, and by e-mail when the token carries an `email` claim. Send an
/// `Idempotency-Key` to retry safely.
#[utoipa::path(
    post, path = "/cart/checkout/", tag = "checkout", operation_id = "create_checkout",
    params(("Idempotency-Key" = Option<String>, Header, description = "Retry safely: the same key with the same body returns the first 202 again (with `Idempotent-Replayed: true`); with a different body 422; while the first is still processed 409. 1 to 255 printable ASCII characters; kept 24 hours.", example = "4f1c7a52-3c1b-4d7e-9a55-0c5d8b0f3e21")),
    request_body = CheckoutRequest,
    responses(
        (status = 202, description = "Accepted: the checkout is queued; poll `resource_url` or wait for the callback", body = Accepted, headers(
            ("Location" = String, description = "The resource_url"),
            ("Retry-After" = u32, description = "Seconds before the first poll is worthwhile"),
            ("Idempotent-Replayed" = String, description = "`true` when this is the stored answer to an earlier request with the same Idempotency-Key"))),
        (status = 400, description = "`malformed_json`: not JSON, a wrong type, or `cart_id` missing; `unknown_field`: a field this operation does not have (named in `field`); `json_too_deep`: nested more than 32 levels; `invalid_idempotency_key`: an empty, over-long or non-ASCII `Idempotency-Key`", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "`cart_not_found`: no cart with that id belongs to you", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`checkout_exists`: the cart already has a live checkout, named in `checkout_id` and `checkout_url`; `idempotency_key_in_progress`: a request with the same key is still being processed (retry after `Retry-After`)", body = crate::problem::Problem, content_type = "application/problem+json",
            example = json!({
                "type": "/docs#problem-checkout_exists",
                "title": "Conflict with the current state",
                "status": 409,
                "detail": "cart 1234 already has checkout 0193a0c4-7d2e-7cde-8f00-5a1b2c3d4e5f (processing); poll it instead of checking out again",
                "code": "checkout_exists",
                "checkout_id": "0193a0c4-7d2e-7cde-8f00-5a1b2c3d4e5f",
                "checkout_url": "https://icon.example.com/cart/checkout/0193a0c4-7d2e-7cde-8f00-5a1b2c3d4e5f"
            })),
        (status = 422, description = "`empty_cart`: the cart has no items; `validation_failed`: a `callback_url` that is not absolute http(s), holds credentials, is over 2,048 bytes or points where the network policy refuses, or a `policy` other than `best_effort` or `all_or_nothing` (`errors` names it); `idempotency_key_reused`: the key was used with a different body", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`: the database is unreachable. If `detail` says the connection was lost while storing, the checkout may have been accepted: retry with the same Idempotency-Key", body = crate::problem::Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(name = "POST /cart/checkout/", skip_all, fields(user = %user.id, cart_id = body.cart_id, checkout_id = tracing::field::Empty))]
pub async fn create_checkout(
    req: HttpRequest,
    user: User,
    state: State,
    body: Json<CheckoutRequest>,
) -> Result<HttpResponse, ApiError> {
    let key = idempotency_key(&req)?;
    let mut v = Validation::default();
    let callback_url = match &body.callback_url {
        Some(raw) if v.text("callback_url", raw) => v.check(
            "callback_url",
            CallbackUrl::parse(raw, &state.callback_policy),
        ),
        _ => None,
    };
    let policy = match body.policy.as_deref() {
        None => Some(CheckoutPolicy::default()),
        Some(raw) => v.check(
            "policy",
            CheckoutPolicy::parse(raw)
                .map_err(|_| "must be `best_effort` (the default) or `all_or_nothing`"),
        ),
    };
    v.finish()?;
    let policy = policy.unwrap_or_default();

    let id = CheckoutId::new();
    tracing::Span::current().record("checkout_id", tracing::field::display(id));
    let cart_id = CartId::new(body.cart_id);
    let resource_url = format!("{}/cart/checkout/{id}", state.public_url);
    let accepted_body = serde_json::to_string(&Accepted {
        checkout_id: id.to_string(),
        status: CheckoutStatus::Queued,
        resource_url: resource_url.clone(),
    })
    .map_err(ApiError::internal)?;
    let push_notification = body.push_notification.unwrap_or(false);
    let order_updates = body.order_updates.unwrap_or(false);
    let idempotency = key.map(|key| IdempotentRequest {
        key,
        // The effective request, so that an omitted `push_notification` and `false` match.
        // Not the token's `email` claim: a replay with a refreshed token is the same request.
        request: {
            let mut fingerprint = serde_json::json!({
                "cart_id": body.cart_id,
                "callback_url": body.callback_url,
                "push_notification": push_notification,
            });
            // Only when asked for, so keys stored before `order_updates` existed still match
            // their replays.
            if order_updates {
                fingerprint["order_updates"] = true.into();
            }
            if policy != CheckoutPolicy::BestEffort {
                fingerprint["policy"] = policy.as_str().into();
            }
            fingerprint.to_string()
        },
        response_status: 202,
        response_body: accepted_body.clone(),
    });
    let new = NewCheckout {
        id,
        cart_id,
        owner: user.id,
        callback_url,
        push_notification,
        order_updates,
        policy,
        email: user.email.clone(),
        resource_url: resource_url.clone(),
        idempotency,
    };
    // Stored with whatever else is submitted now (group commit); answered after the commit.
    match state
        .accepter
        .store(Submission::new(new))
        .await
        .map_err(|f| f.into_api_error(lost_write::CHECKOUT))?
    {
        CreateCheckout::Created(message) => {
            // Committed: publish now; the outbox row is the safety net.
            state.outbox.publish(message);
            crate::metrics::checkout_accepted();
            tracing::info!(checkout_id = %id, %cart_id, "checkout accepted");
            Ok(accepted_response(&resource_url, accepted_body, false))
        }
        CreateCheckout::Replayed(stored) => {
            let location = format!("{}/cart/checkout/{}", state.public_url, stored.checkout_id);
            tracing::info!(checkout_id = %stored.checkout_id, "idempotent replay");
            Ok(accepted_response(&location, stored.body, true))
        }
        CreateCheckout::KeyReused => Err(ApiError::unprocessable(
            "idempotency_key_reused",
            "this Idempotency-Key was already used with a different request body; use a new \
             key for a new request",
            vec![],
        )),
        CreateCheckout::KeyInProgress => {
            let mut e = ApiError::conflict(
                "idempotency_key_in_progress",
                "a request with this Idempotency-Key is still being processed; retry after \
                 Retry-After seconds to get its response",
            );
            e.retry_after = Some(POLL_AFTER_SECS);
            Err(e)
        }
        CreateCheckout::CartNotFound => Err(cart_not_found()),
        CreateCheckout::EmptyCart => Err(ApiError::unprocessable(
            "empty_cart",
            format!("cart {cart_id} has no items; add items with POST /carts/{cart_id}/items"),
            vec![],
        )),
        CreateCheckout::AlreadyCheckedOut {
            checkout_id,
            status,
        } => Err(ApiError::conflict(
            "checkout_exists",
            format!(
                "cart {cart_id} already has checkout {checkout_id} ({status}); poll it instead \
                 of checking out again"
            ),
        )
        .with("checkout_id", checkout_id.to_string())
        .with(
            "checkout_url",
            format!("{}/cart/checkout/{checkout_id}", state.public_url),
        )),
    }
}

/// The 202 for a created (or replayed) checkout.
pub(super) fn accepted_response(location: &str, body: String, replayed: bool) -> HttpResponse {
    let mut resp = HttpResponse::Accepted();
    resp.insert_header((header::LOCATION, location.to_owned()))
        .insert_header((header::RETRY_AFTER, POLL_AFTER_SECS.to_string()))
        .content_type("application/json");
    if replayed {
        resp.insert_header(("Idempotent-Replayed", "true"));
    }
    resp.body(body)
}

/// The `Idempotency-Key` header (draft-ietf-httpapi-idempotency-key-header), if sent: a
/// structured-field string, so surrounding quotes are dropped.
pub(super) fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(value) = req.headers().get("idempotency-key") else {
        return Ok(None);
    };
    let raw = value.to_str().unwrap_or("").trim();
    let key = raw
        .strip_prefix('"')
        .and_then(|k| k.strip_suffix('"'))
        .unwrap_or(raw);
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
    {
        return Err(ApiError::bad_request(
            "invalid_idempotency_key",
            "Idempotency-Key must be 1 to 255 printable ASCII characters, e.g. a UUID",
        ));
    }
    Ok(Some(key.to_owned()))
}

pub(super) fn parse_checkout_id(raw: &str) -> Result<CheckoutId, ApiError> {
    raw.parse().map_err(|_| checkout_not_found())
}

/// The checkout if it belongs to `user`; someone else's is indistinguishable from a missing one.
pub(super) async fn owned(
    db: &icon_store::Conn,
    id: CheckoutId,
    user: &User,
) -> Result<CheckoutView, ApiError> {
    checkouts::get(db, id, Some(&user.id))
        .await?
        .ok_or_else(checkout_not_found)
}

fn checkout_not_found() -> ApiError {
    ApiError::not_found(
        "checkout_not_found",
        "no checkout with that id belongs to you",
    )
}

/// Poll a checkout.
///
/// The checkout's status, each retailer's order and the state of every notification channel.
/// While it is not final (`queued`, `processing`, `cancelling`) `Retry-After` says when to poll
/// again. Only
/// the user who submitted it sees it: anyone else gets 404, as for a checkout that does not
/// exist.
#[utoipa::path(
    get, path = "/cart/checkout/{checkout_id}", tag = "checkout", operation_id = "get_checkout",
    params(("checkout_id" = String, Path, description = "From the 202 of `POST /cart/checkout/`", example = "0193a0c4-7d2e-7cde-8f00-5a1b2c3d4e5f")),
    responses(
        (status = 200, description = "The checkout", body = CheckoutBody, headers(("Retry-After" = u32, description = "Present while the checkout is not final"))),
        (status = 404, description = "`checkout_not_found`: no checkout with that id belongs to you", body = crate::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(name = "GET /cart/checkout/{id}", skip_all, fields(checkout_id = %path))]
pub async fn get_checkout(
    user: User,
    state: State,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_checkout_id(&path)?;
    let mut db = state.pool.get().await.map_err(StoreError::from)?;
    let view = checkouts::get_snapshot(&mut db, id, Some(&user.id))
        .await?
        .ok_or_else(checkout_not_found)?;
    let mut resp = HttpResponse::Ok();
    if !view.status.is_final() {
        resp.insert_header((header::RETRY_AFTER, POLL_AFTER_SECS.to_string()));
    }
    Ok(resp.json(CheckoutBody::from(view)))
}
