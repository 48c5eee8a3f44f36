//! A checkout's numbered events (issue 17 §3): 1 is its end (the checkout row itself: its final
//! status, at its last change; for a checkout a cancellation reopened, the end it had first,
//! kept in `ended_status` and `ended_at`), 2 and on the changes of its orders after it and the
//! ends of cancellations (issue 18), announced to the checkout's channels (`checkout_events`,
//! written by [`crate::order_events`] and the worker's passes). Each event has one notification
//! per channel and target, with the event's `sequence`.

use crate::notifications::{self, Notification};
use crate::{error::corrupt, outbox, GenericClient, StoreError};
use chrono::{DateTime, Utc};
use icon_contracts::{topology, Envelope, NotificationDue};
use icon_domain::{CheckoutId, CheckoutStatus, NotificationId, RetailerId};

/// One event of a checkout.
#[derive(Debug, Clone)]
pub struct CheckoutEvent {
    pub sequence: i32,
    /// `checkout.completed`, `checkout.partially_completed`, `checkout.failed` (1), the
    /// retailer's event type (`order.shipped`, ...), or the end of a cancellation
    /// (`checkout.cancelled`, `checkout.partially_cancelled`, `checkout.failed`).
    pub kind: String,
    /// The order it is about (an `order.*` event).
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
        retailer_id: r
            .get::<_, Option<String>>(2)
            .map(RetailerId::parse)
            .transpose()
            .map_err(corrupt)?,
        occurred_at: r.get(3),
        recorded_at: r.get(4),
    })
}

/// A checkout's events in sequence, each with its notifications, given its first end (see
/// `CheckoutView::first_end`): a checkout that never ended has no events yet.
pub async fn list(
    db: &impl GenericClient,
    id: CheckoutId,
    first_end: Option<(CheckoutStatus, DateTime<Utc>)>,
) -> Result<Vec<(CheckoutEvent, Vec<Notification>)>, StoreError> {
    let Some((status, ended_at)) = first_end else {
        return Ok(Vec::new());
    };
    let mut events = vec![CheckoutEvent {
        sequence: 1,
        kind: end_type(status),
        retailer_id: None,
        occurred_at: ended_at,
        recorded_at: ended_at,
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

/// The checkout's next event, of type `kind` (about `retailer`'s order, for an `order.*`
/// event), inside the caller's transaction: numbered, with a notification for each channel and
/// target of the checkout's end (event 1), each queued for the notifier on commit. Returns its
/// number.
pub(crate) async fn announce(
    tx: &impl GenericClient,
    checkout_id: CheckoutId,
    kind: &str,
    retailer: Option<&RetailerId>,
    occurred_at: DateTime<Utc>,
) -> Result<i32, StoreError> {
    let stmt = tx
        .prepare_cached(
            "WITH numbered AS (
                 UPDATE checkouts SET events = events + 1 WHERE id = $1
                 RETURNING events + 1 AS sequence
             ), added AS (
                 INSERT INTO checkout_events (checkout_id, sequence, type, retailer_id, occurred_at)
                 SELECT $1, sequence, $2, $3, $4 FROM numbered
             )
             SELECT sequence FROM numbered",
        )
        .await?;
    let row = tx
        .query_one(
            &stmt,
            &[
                &checkout_id.as_uuid(),
                &kind,
                &retailer.map(RetailerId::as_str),
                &occurred_at,
            ],
        )
        .await?;
    let sequence: i32 = row.get(0);
    let stmt = tx
        .prepare_cached(
            "INSERT INTO notifications (id, checkout_id, channel, target, state, sequence)
             SELECT gen_random_uuid(), checkout_id, channel, target, 'pending', $2
             FROM notifications WHERE checkout_id = $1 AND sequence = 1
             RETURNING id",
        )
        .await?;
    for row in tx
        .query(&stmt, &[&checkout_id.as_uuid(), &sequence])
        .await?
    {
        let due = Envelope::new(NotificationDue {
            checkout_id,
            notification_id: NotificationId::from_uuid(row.get(0)),
            after_attempt: 0,
            not_before: Utc::now(),
        });
        outbox::enqueue(tx, "", topology::CHECKOUT_FINISHED, &due).await?;
    }
    Ok(sequence)
}
