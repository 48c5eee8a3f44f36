//! A checkout's numbered events (issue 17 §3): 1 is its end (the checkout row itself: its final
//! status, at its last change), 2 and on the changes of its orders after it, announced to the
//! checkout's channels (`checkout_events`, written by [`crate::order_events`]). Each event has
//! one notification per channel and target, with the event's `sequence`.

use crate::notifications::{self, Notification};
use crate::{error::corrupt, GenericClient, StoreError};
use chrono::{DateTime, Utc};
use icon_domain::{CheckoutId, CheckoutStatus, RetailerId};

/// One event of a checkout.
#[derive(Debug, Clone)]
pub struct CheckoutEvent {
    pub sequence: i32,
    /// `checkout.completed`, `checkout.partially_completed`, `checkout.failed` (1), or the
    /// retailer's event type (`order.shipped`, ...).
    pub kind: String,
    /// The order it is about (events after 1).
    pub retailer_id: Option<RetailerId>,
    /// When it happened: the checkout's end, or when the retailer says.
    pub occurred_at: DateTime<Utc>,
    /// When ICON recorded it.
    pub recorded_at: DateTime<Utc>,
}

/// The type of event 1 for a checkout that ended `status`.
pub fn end_type(status: CheckoutStatus) -> String {
    format!("checkout.{status}")
}

/// Event `sequence` (2 and on) of a checkout, if it exists.
pub async fn get(
    db: &impl GenericClient,
    id: CheckoutId,
    sequence: i32,
) -> Result<Option<CheckoutEvent>, StoreError> {
    let stmt = db
        .prepare_cached(
            "SELECT sequence, type, retailer_id, occurred_at, created_at FROM checkout_events
             WHERE checkout_id = $1 AND sequence = $2",
        )
        .await?;
    db.query_opt(&stmt, &[&id.as_uuid(), &sequence])
        .await?
        .map(|r| from_row(&r))
        .transpose()
}

fn from_row(r: &tokio_postgres::Row) -> Result<CheckoutEvent, StoreError> {
    Ok(CheckoutEvent {
        sequence: r.get(0),
        kind: r.get(1),
        retailer_id: Some(RetailerId::parse(r.get::<_, String>(2)).map_err(corrupt)?),
        occurred_at: r.get(3),
        recorded_at: r.get(4),
    })
}

/// A checkout's events in sequence, each with its notifications, given the checkout's `status`
/// and its last change (`updated_at`: for a final checkout, its end). An unfinished checkout
/// has no events yet.
pub async fn list(
    db: &impl GenericClient,
    id: CheckoutId,
    status: CheckoutStatus,
    updated_at: DateTime<Utc>,
) -> Result<Vec<(CheckoutEvent, Vec<Notification>)>, StoreError> {
    if !status.is_final() {
        return Ok(Vec::new());
    }
    let mut events = vec![CheckoutEvent {
        sequence: 1,
        kind: end_type(status),
        retailer_id: None,
        occurred_at: updated_at,
        recorded_at: updated_at,
    }];
    let stmt = db
        .prepare_cached(
            "SELECT sequence, type, retailer_id, occurred_at, created_at FROM checkout_events
             WHERE checkout_id = $1 ORDER BY sequence",
        )
        .await?;
    for r in db.query(&stmt, &[&id.as_uuid()]).await? {
        events.push(from_row(&r)?);
    }
    let all = notifications::all_for_checkout(db, id).await?;
    Ok(events
        .into_iter()
        .map(|e| {
            let mine = all
                .iter()
                .filter(|n| n.sequence == e.sequence)
                .cloned()
                .collect();
            (e, mine)
        })
        .collect())
}
