//! `GET /cart/checkout/{checkout_id}/events`: a checkout's numbered events in sequence (issue 17
//! §3), each with its delivery state on every channel. Event 1 is the checkout's end; with
//! `order_updates`, each later change of an order (shipped, delivered, ...) is the next.

use super::checkouts::{owned, parse_checkout_id};
use super::State;
use crate::auth::User;
use crate::problem::ApiError;
use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use icon_domain::NotificationState;
use icon_store::{checkout_events, StoreError};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "checkout_id": "0193a0c4-7d2e-7cde-8f00-5a1b2c3d4e5f",
    "order_updates": true,
    "events": [
        {"sequence": 1, "type": "checkout.completed", "occurred_at": "2026-11-28T10:00:01Z",
         "deliveries": [{"channel": "callback", "state": "delivered", "attempts": 1}]},
        {"sequence": 2, "type": "order.shipped", "retailer_id": "acme",
         "occurred_at": "2026-11-29T08:00:00Z",
         "deliveries": [{"channel": "callback", "state": "retrying", "attempts": 2,
                         "next_attempt_at": "2026-11-29T08:00:40Z", "last_response_status": 500}]}
    ]
}))]
pub struct EventList {
    pub checkout_id: String,
    /// Whether the checkout asked for its orders' changes (`order_updates`); without, only
    /// event 1 is announced.
    pub order_updates: bool,
    /// In sequence; empty while the checkout has not ended.
    pub events: Vec<EventBody>,
}

#[derive(Serialize, ToSchema)]
pub struct EventBody {
    pub sequence: i32,
    /// `checkout.completed`, `checkout.partially_completed`, `checkout.failed`,
    /// `checkout.cancelled` (1: the checkout's first end), then `order.confirmed`,
    /// `order.rejected`, `order.shipped`, `order.delivered`, `order.cancelled`,
    /// `order.refunded`, `order.cancel_refused`, and the ends of cancellations asked after
    /// the checkout ended: `checkout.cancelled`, `checkout.partially_cancelled`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The order an `order.*` event is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retailer_id: Option<String>,
    pub occurred_at: DateTime<Utc>,
    /// One per channel and target the checkout asked for.
    pub deliveries: Vec<DeliveryBody>,
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryBody {
    /// `callback`, `push` or `email`.
    pub channel: String,
    /// For `push`: the device token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// `pending` (also while it waits for the previous event at the same receiver),
    /// `retrying`, `delivered`, `failed`, `not_configured`.
    pub state: NotificationState,
    pub attempts: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_attempt_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_response_status: Option<i32>,
}

/// List a checkout's events.
///
/// Event 1 is the checkout's end; with `order_updates`, every later change of one of its orders
/// is the next, in the order ICON recorded them. Each shows its delivery on every channel: a
/// receiver gets event n+1 only after event n was delivered to it or given up.
#[utoipa::path(
    get, path = "/cart/checkout/{checkout_id}/events", tag = "checkout",
    params(("checkout_id" = String, Path, description = "From the 202 of `POST /cart/checkout/`", example = "0193a0c4-7d2e-7cde-8f00-5a1b2c3d4e5f")),
    responses(
        (status = 200, description = "The events in sequence", body = EventList),
        (status = 404, description = "`checkout_not_found`: no checkout with that id belongs to you", body = crate::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(name = "GET /cart/checkout/{id}/events", skip_all, fields(checkout_id = %path))]
pub async fn list_events(
    user: User,
    state: State,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_checkout_id(&path)?;
    let db = state.pool.get().await.map_err(StoreError::from)?;
    let checkout = owned(&db, id, &user).await?;
    let events = checkout_events::list(&db, id, checkout.first_end)
        .await?
        .into_iter()
        .map(|(e, notifications)| EventBody {
            sequence: e.sequence,
            kind: e.kind,
            retailer_id: e.retailer_id.map(|r| r.to_string()),
            occurred_at: e.occurred_at,
            deliveries: notifications
                .into_iter()
                .map(|n| DeliveryBody {
                    device: (n.channel == "push").then(|| n.target.clone()),
                    channel: n.channel,
                    state: n.state,
                    attempts: n.attempts,
                    last_attempt_at: n.last_attempt_at,
                    next_attempt_at: n.next_attempt_at,
                    last_response_status: n.last_response_status,
                })
                .collect(),
        })
        .collect();
    Ok(HttpResponse::Ok().json(EventList {
        checkout_id: id.to_string(),
        order_updates: checkout.order_updates,
        events,
    }))
}
