//! A checkout's notifications: every attempt (`/attempts`) and redelivering a given-up
//! callback, push or e-mail (one shared path, [`redeliver`], for the three channels).

use super::channels::{Channel, EmailBody, PushDeliveryBody};
use super::checkouts::{owned, parse_checkout_id};
use super::State;
use crate::auth::User;
use crate::problem::{ApiError, WriteOutcome};
use actix_web::{http::header, web, HttpResponse};
use chrono::{DateTime, Utc};
use icon_domain::{CheckoutId, NotificationState};
use icon_store::notifications::{Notification, Redeliver};
use icon_store::{notifications, StoreError};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
pub struct CallbackBody {
    pub url: String,
    pub state: NotificationState,
    pub attempts: i32,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_response_status: Option<i32>,
}

impl From<Notification> for CallbackBody {
    fn from(n: Notification) -> Self {
        Self {
            url: n.target,
            state: n.state,
            attempts: n.attempts,
            last_attempt_at: n.last_attempt_at,
            next_attempt_at: n.next_attempt_at,
            last_response_status: n.last_response_status,
        }
    }
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "channel": "push",
    "device": "fcm-token:APA91bHun4MxP5egoKMwt2KZFBaFUH-1RYqx",
    "sequence": 1,
    "attempt": 1,
    "started_at": "2026-11-27T10:00:05Z",
    "duration_ms": 84,
    "response_status": 404,
    "error": "FCM answered 404 UNREGISTERED"
}))]
pub struct AttemptBody {
    /// `callback`, `push` or `email`.
    pub channel: String,
    /// The device's registration token, for `push`; absent for the other channels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// The checkout event the notification announces: 1 is the checkout's end, 2 and on the
    /// changes of its orders (`order_updates`; see `/cart/checkout/{checkout_id}/events`).
    pub sequence: i32,
    pub attempt: i32,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i32,
    /// The status the receiver answered (HTTP; for `email`, the SMTP reply code), if it did.
    pub response_status: Option<i32>,
    /// The transport error (timeout, connection refused, ...), if it did not.
    pub error: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "checkout_id": "0193a0c4-7d2e-7cde-8f00-5a1b2c3d4e5f",
    "attempts": [{
        "channel": "callback",
        "sequence": 1,
        "attempt": 1,
        "started_at": "2026-11-28T10:00:01Z",
        "duration_ms": 35,
        "response_status": 200,
        "error": null
    }]
}))]
pub struct AttemptList {
    pub checkout_id: String,
    pub attempts: Vec<AttemptBody>,
}

/// List a checkout's notification attempts.
///
/// Every attempt on every channel (`callback`, `push`, `email`), oldest first: when, how long,
/// and what the receiver answered or why it could not be reached. For finding out why a
/// callback is not arriving.
#[utoipa::path(
    get, path = "/cart/checkout/{checkout_id}/attempts", tag = "checkout",
    params(("checkout_id" = String, Path, description = "From the 202 of `POST /cart/checkout/`", example = "0193a0c4-7d2e-7cde-8f00-5a1b2c3d4e5f")),
    responses(
        (status = 200, description = "The attempts, oldest first", body = AttemptList),
        (status = 404, description = "`checkout_not_found`: no checkout with that id belongs to you", body = crate::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(name = "GET /cart/checkout/{id}/attempts", skip_all, fields(checkout_id = %path))]
pub async fn list_attempts(
    user: User,
    state: State,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_checkout_id(&path)?;
    let db = state.pool.get().await.map_err(StoreError::from)?;
    owned(&db, id, &user).await?;
    let attempts = notifications::attempts_for_checkout(&db, id)
        .await?
        .into_iter()
        .map(|a| AttemptBody {
            device: (a.channel == Channel::Push.as_str()).then_some(a.target),
            channel: a.channel,
            sequence: a.sequence,
            attempt: a.attempt.attempt,
            started_at: a.attempt.started_at,
            duration_ms: a.attempt.duration_ms,
            response_status: a.attempt.response_status,
            error: a.attempt.error,
        })
        .collect();
    Ok(HttpResponse::Ok().json(AttemptList {
        checkout_id: id.to_string(),
        attempts,
    }))
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "checkout_id": "0193a0c4-7d2e-7cde-8f00-5a1b2c3d4e5f",
    "callback": {
        "url": "https://partner.example.com/hooks/icon",
        "state": "pending",
        "attempts": 12,
        "last_attempt_at": "2026-11-27T10:00:00Z",
        "next_attempt_at": "2026-11-28T10:00:00Z",
        "last_response_status": 500
    }
}))]
pub struct Redelivery {
    pub checkout_id: String,
    pub callback: CallbackBody,
}

#[derive(Serialize, ToSchema)]
pub struct PushRedelivery {
    pub checkout_id: String,
    /// Every push that was re-queued, one per device.
    pub push: Vec<PushDeliveryBody>,
}

#[derive(Serialize, ToSchema)]
pub struct EmailRedelivery {
    pub checkout_id: String,
    pub email: EmailBody,
}

/// Re-queues the caller's checkout's given-up notifications on `channel`: the checkout's
/// resource URL and the notifications as queued now, or the channel's 404 or 409.
async fn redeliver(
    user: &User,
    state: &State,
    path: &str,
    channel: Channel,
) -> Result<(CheckoutId, String, Vec<Notification>), ApiError> {
    let id = parse_checkout_id(path)?;
    let mut db = state.pool.get().await.map_err(StoreError::from)?;
    let view = owned(&db, id, user).await?;
    match notifications::redeliver(&mut db, id, channel.as_str())
        .await
        .or_outcome_unknown(channel.lost_redelivery())?
    {
        Redeliver::Queued(list) => {
            tracing::info!(
                checkout_id = %id,
                channel = channel.as_str(),
                count = list.len(),
                "redelivery requested"
            );
            Ok((id, view.resource_url, list))
        }
        Redeliver::NotFound => Err(channel.absent()),
        Redeliver::NotFailed(s) => Err(channel.not_failed(s)),
    }
}

/// A 202 naming the checkout's resource in `Location`.
fn accepted(resource_url: String, body: impl Serialize) -> HttpResponse {
    HttpResponse::Accepted()
        .insert_header((header::LOCATION, resource_url))
        .json(body)
}

/// Send a given-up callback again.
///
/// Re-queues a callback in state `failed`: its retry schedule and give-up deadline start over,
/// and the new attempts are listed after the old ones. A callback that is still pending,
/// retrying or delivered is not duplicated (409).
#[utoipa::path(
    post, path = "/cart/checkout/{checkout_id}/callback/redeliver", tag = "checkout",
    params(("checkout_id" = String, Path, description = "From the 202 of `POST /cart/checkout/`", example = "0193a0c4-7d2e-7cde-8f00-5a1b2c3d4e5f")),
    responses(
        (status = 202, description = "The callback, re-queued", body = Redelivery, headers(("Location" = String, description = "The checkout's resource_url"))),
        (status = 404, description = "`checkout_not_found`: no checkout with that id belongs to you", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`callback_not_failed`: the callback is pending, retrying or delivered; only a `failed` one is redelivered. `callback_not_found`: the checkout was submitted without a `callback_url`, so there is nothing to redeliver", body = crate::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(name = "POST /cart/checkout/{id}/callback/redeliver", skip_all, fields(checkout_id = %path))]
pub async fn redeliver_callback(
    user: User,
    state: State,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (id, resource_url, list) = redeliver(&user, &state, &path, Channel::Callback).await?;
    let n = list
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::internal("redelivery queued no callback"))?;
    Ok(accepted(
        resource_url,
        Redelivery {
            checkout_id: id.to_string(),
            callback: CallbackBody::from(n),
        },
    ))
}

/// Push the outcome again to the devices given up on.
///
/// Re-queues every push of the checkout in state `failed` or `not_configured` (one per
/// device), with a fresh retry schedule and give-up deadline; pushes still pending, retrying or
/// delivered are left alone. A device unregistered since is not pushed to. Answers 409 when no
/// push was given up on.
#[utoipa::path(
    post, path = "/cart/checkout/{checkout_id}/push/redeliver", tag = "checkout",
    params(("checkout_id" = String, Path, description = "From the 202 of `POST /cart/checkout/`", example = "0193a0c4-7d2e-7cde-8f00-5a1b2c3d4e5f")),
    responses(
        (status = 202, description = "The re-queued pushes", body = PushRedelivery,
            headers(("Location" = String, description = "The checkout's resource_url")),
            example = json!({
                "checkout_id": "0193a0c4-7d2e-7cde-8f00-5a1b2c3d4e5f",
                "push": [{
                    "device": "fcm-token:APA91bHun4MxP5egoKMwt2KZFBaFUH-1RYqx",
                    "state": "pending",
                    "attempts": 3,
                    "last_attempt_at": "2026-11-27T10:05:00Z",
                    "next_attempt_at": "2026-11-28T09:00:00Z",
                    "last_error": "FCM answered 503"
                }]
            })),
        (status = 404, description = "`checkout_not_found`: no checkout with that id belongs to you",
            body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "No push is `failed` or `not_configured` (`push_not_failed`), or the checkout has no push at all: submitted without `push_notification: true` or with no device registered (`push_not_found`)",
            body = crate::problem::Problem, content_type = "application/problem+json",
            example = json!({
                "type": "/docs#problem-push_not_failed",
                "title": "Conflict with the current state",
                "status": 409,
                "detail": "no push of this checkout is failed or not_configured (they are pending, retrying or delivered); only those can be redelivered, so poll the checkout",
                "code": "push_not_failed"
            })),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(name = "POST /cart/checkout/{id}/push/redeliver", skip_all, fields(checkout_id = %path))]
pub async fn redeliver_push(
    user: User,
    state: State,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (id, resource_url, list) = redeliver(&user, &state, &path, Channel::Push).await?;
    Ok(accepted(
        resource_url,
        PushRedelivery {
            checkout_id: id.to_string(),
            push: list.into_iter().map(PushDeliveryBody::from).collect(),
        },
    ))
}

/// E-mail the outcome again.
///
/// Re-queues the checkout's e-mail if it is `failed` or `not_configured`, with a fresh retry
/// schedule and give-up deadline. It goes to the address the checkout was submitted with.
#[utoipa::path(
    post, path = "/cart/checkout/{checkout_id}/email/redeliver", tag = "checkout",
    params(("checkout_id" = String, Path, description = "From the 202 of `POST /cart/checkout/`", example = "0193a0c4-7d2e-7cde-8f00-5a1b2c3d4e5f")),
    responses(
        (status = 202, description = "The re-queued e-mail", body = EmailRedelivery,
            headers(("Location" = String, description = "The checkout's resource_url")),
            example = json!({
                "checkout_id": "0193a0c4-7d2e-7cde-8f00-5a1b2c3d4e5f",
                "email": {
                    "state": "pending",
                    "attempts": 0,
                    "last_attempt_at": null,
                    "next_attempt_at": "2026-11-28T09:00:00Z",
                    "last_error": "e-mail is not configured on this deployment"
                }
            })),
        (status = 404, description = "`checkout_not_found`: no checkout with that id belongs to you",
            body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The e-mail is not `failed` or `not_configured` (`email_not_failed`), or the checkout has no e-mail at all because the submitting token carried no `email` claim (`email_not_found`)",
            body = crate::problem::Problem, content_type = "application/problem+json",
            example = json!({
                "type": "/docs#problem-email_not_failed",
                "title": "Conflict with the current state",
                "status": 409,
                "detail": "the e-mail is retrying; only a failed or not_configured e-mail can be redelivered",
                "code": "email_not_failed"
            })),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(name = "POST /cart/checkout/{id}/email/redeliver", skip_all, fields(checkout_id = %path))]
pub async fn redeliver_email(
    user: User,
    state: State,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (id, resource_url, list) = redeliver(&user, &state, &path, Channel::Email).await?;
    let n = list
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::internal("redelivery queued no e-mail"))?;
    Ok(accepted(
        resource_url,
        EmailRedelivery {
            checkout_id: id.to_string(),
            email: EmailBody::from(n),
        },
    ))
}
