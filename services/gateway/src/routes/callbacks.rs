//! A checkout's notifications: every attempt (`/attempts`) and redelivering a given-up callback.

use super::checkouts::{owned, parse_checkout_id};
use super::State;
use crate::auth::User;
use crate::problem::{lost_write, ApiError, WriteOutcome};
use actix_web::{http::header, web, HttpResponse};
use chrono::{DateTime, Utc};
use icon_domain::NotificationState;
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
pub struct AttemptBody {
    /// `callback` (later also `push`).
    pub channel: String,
    pub attempt: i32,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i32,
    /// The HTTP status the receiver answered, if it answered.
    pub response_status: Option<i32>,
    /// The transport error (timeout, connection refused, ...), if it did not.
    pub error: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct AttemptList {
    pub checkout_id: String,
    pub attempts: Vec<AttemptBody>,
}

/// Every notification attempt of a checkout, oldest first.
#[utoipa::path(
    get, path = "/cart/checkout/{checkout_id}/attempts", tag = "checkout",
    params(("checkout_id" = String, Path)),
    responses(
        (status = 200, body = AttemptList),
        (status = 401, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json"),
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
    let mut attempts = Vec::new();
    for n in notifications::all_for_checkout(&db, id).await? {
        for a in notifications::attempts(&db, n.id).await? {
            attempts.push(AttemptBody {
                channel: n.channel.clone(),
                attempt: a.attempt,
                started_at: a.started_at,
                duration_ms: a.duration_ms,
                response_status: a.response_status,
                error: a.error,
            });
        }
    }
    attempts.sort_by_key(|a| a.started_at);
    Ok(HttpResponse::Ok().json(AttemptList {
        checkout_id: id.to_string(),
        attempts,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct Redelivery {
    pub checkout_id: String,
    pub callback: CallbackBody,
}

/// Send a given-up callback again.
///
/// Re-queues a callback in state `failed`: its retry schedule and give-up deadline start over,
/// and the new attempts are listed after the old ones. A callback that is still pending,
/// retrying or delivered is not duplicated (409).
#[utoipa::path(
    post, path = "/cart/checkout/{checkout_id}/callback/redeliver", tag = "checkout",
    params(("checkout_id" = String, Path)),
    responses(
        (status = 202, body = Redelivery, headers(("Location" = String, description = "The checkout's resource_url"))),
        (status = 401, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such checkout, or it has no callback", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The callback is not `failed`", body = crate::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(name = "POST /cart/checkout/{id}/callback/redeliver", skip_all, fields(checkout_id = %path))]
pub async fn redeliver_callback(
    user: User,
    state: State,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_checkout_id(&path)?;
    let mut db = state.pool.get().await.map_err(StoreError::from)?;
    let view = owned(&db, id, &user).await?;
    match notifications::redeliver(&mut db, id, "callback")
        .await
        .or_outcome_unknown(lost_write::REDELIVERY)?
    {
        Redeliver::Queued(mut list) => {
            let n = list.remove(0);
            tracing::info!(checkout_id = %id, "callback redelivery requested");
            Ok(HttpResponse::Accepted()
                .insert_header((header::LOCATION, view.resource_url))
                .json(Redelivery {
                    checkout_id: id.to_string(),
                    callback: CallbackBody::from(n),
                }))
        }
        Redeliver::NotFound => Err(ApiError::not_found(
            "callback_not_found",
            "this checkout was submitted without a callback_url",
        )),
        Redeliver::NotFailed(s) => Err(ApiError::conflict(
            "callback_not_failed",
            format!("the callback is {s}; only a failed callback can be redelivered"),
        )),
    }
}
