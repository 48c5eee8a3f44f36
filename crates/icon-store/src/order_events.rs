//! Retailers' events about their orders (`POST /retailers/{retailer_id}/events`, issue 17 §2):
//! recording one, and what it sets in motion.
//!
//! One transaction per event, so the retailer's 2xx means all of it is durable:
//! - a `webhook-id` the retailer already sent is answered as before and changes nothing;
//! - the order is found by the key ICON sent (the latest checkout holding it) and locked;
//! - the event goes through the state machine ([`icon_contracts::retailer::transition`]): a
//!   contradiction writes nothing (409); a stale event is recorded in the history only; one that
//!   moves the order updates it (status, when the retailer says it happened, tracking, refunds);
//! - an order the checkout was waiting for wakes its worker (a `checkout.due` with `wake`);
//! - a change after the checkout finished, for a checkout submitted with `order_updates`,
//!   becomes the checkout's next numbered event, with a notification per channel and target of
//!   the checkout's end, each queued for the notifier (which sends them in order, see
//!   `notifications`).

use crate::{error::corrupt, outbox, Conn, GenericClient, StoreError};
use chrono::{DateTime, Utc};
use icon_contracts::retailer::{transition, RetailerEvent, RetailerEventType, Transition};
use icon_contracts::{topology, CheckoutDue, Envelope};
use icon_domain::{CheckoutId, CheckoutStatus, OrderStatus, RetailerId};

/// What recording an event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// It moved the order to `status`; `sequence` is the checkout event it became, if it was
    /// announced (a finished checkout submitted with `order_updates`).
    Applied {
        checkout_id: CheckoutId,
        status: OrderStatus,
        sequence: Option<i32>,
    },
    /// Older than the order's state or implied by it: in the history, nothing changed.
    Stale {
        checkout_id: CheckoutId,
        status: OrderStatus,
    },
    /// This `webhook-id` was recorded before; nothing was done again. What it did then.
    Duplicate {
        checkout_id: CheckoutId,
        effect: String,
        status: String,
        sequence: Option<i32>,
    },
    /// No order of this retailer has this key.
    UnknownOrder,
    /// The event contradicts the order's state (`status`): nothing was written.
    Contradicts { status: OrderStatus, why: String },
}

/// Records `event`, sent by `retailer` as `webhook_id` with the JSON `body`. The event's text
/// fields must already be sanitised (the gateway does it where it validates them).
#[tracing::instrument(name = "store.record_order_event", skip_all, fields(retailer = %retailer, webhook_id))]
pub async fn record(
    conn: &mut Conn,
    retailer: &RetailerId,
    webhook_id: &str,
    event: &RetailerEvent,
    body: &serde_json::Value,
) -> Result<Recorded, StoreError> {
    let tx = conn.transaction().await?;
    if let Some(done) = recorded_before(&tx, retailer, webhook_id).await? {
        return Ok(done);
    }
    // The order is found by the key (the latest checkout holding it), then the checkout and the
    // order are locked in that order, the order a pass's record takes them in, so the two never
    // deadlock, and both are read as they are now.
    let find = tx
        .prepare_cached(
            "SELECT o.checkout_id FROM checkout_orders o JOIN checkouts c ON c.id = o.checkout_id
             WHERE o.retailer_id = $1 AND o.idempotency_key = $2
             ORDER BY c.created_at DESC LIMIT 1",
        )
        .await?;
    let Some(found) = tx
        .query_opt(&find, &[&retailer.as_str(), &event.idempotency_key])
        .await?
    else {
        return Ok(Recorded::UnknownOrder);
    };
    let checkout_id = CheckoutId::from_uuid(found.get(0));
    tracing::Span::current().record("checkout_id", tracing::field::display(checkout_id));
    let lock_checkout = tx
        .prepare_cached(
            "SELECT status, pass, order_updates FROM checkouts WHERE id = $1 FOR NO KEY UPDATE",
        )
        .await?;
    let checkout = tx
        .query_one(&lock_checkout, &[&checkout_id.as_uuid()])
        .await?;
    let lock_order = tx
        .prepare_cached(
            "SELECT status, state_at FROM checkout_orders
             WHERE checkout_id = $1 AND retailer_id = $2 FOR UPDATE",
        )
        .await?;
    let order = tx
        .query_one(&lock_order, &[&checkout_id.as_uuid(), &retailer.as_str()])
        .await?;
    let status = OrderStatus::parse(order.get("status")).map_err(corrupt)?;
    let state_at: Option<DateTime<Utc>> = order.get("state_at");
    let checkout_status = CheckoutStatus::parse(checkout.get("status")).map_err(corrupt)?;

    let moved_to = match transition(status, state_at, event.kind, event.occurred_at) {
        Transition::Contradicts(why) => return Ok(Recorded::Contradicts { status, why }),
        Transition::Stale => None,
        Transition::Moves(to) => Some(to),
    };
    let insert = tx
        .prepare_cached(
            "INSERT INTO order_events
               (retailer_id, webhook_id, checkout_id, type, occurred_at, effect, status_after,
                body)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (retailer_id, webhook_id) DO NOTHING
             RETURNING id",
        )
        .await?;
    let effect = if moved_to.is_some() {
        "applied"
    } else {
        "stale"
    };
    let after = moved_to.unwrap_or(status);
    let Some(row) = tx
        .query_opt(
            &insert,
            &[
                &retailer.as_str(),
                &webhook_id,
                &checkout_id.as_uuid(),
                &event.kind.as_str(),
                &event.occurred_at,
                &effect,
                &after.as_str(),
                body,
            ],
        )
        .await?
    else {
        // The same webhook-id was recorded meanwhile by a concurrent delivery: it did the work.
        drop(tx);
        return Ok(recorded_before(&*conn, retailer, webhook_id)
            .await?
            .unwrap_or(Recorded::UnknownOrder));
    };
    let event_row: i64 = row.get(0);
    let Some(to) = moved_to else {
        tx.commit().await?;
        return Ok(Recorded::Stale {
            checkout_id,
            status,
        });
    };

    apply(&tx, checkout_id, retailer, event, to).await?;
    let mut sequence = None;
    if !checkout_status.is_final() {
        // A pass in flight decided on what it saw: counting the change makes its record refuse
        // to finish on it. And the checkout may have been waiting for this order: its worker
        // looks again now.
        let changed = tx
            .prepare_cached("UPDATE checkouts SET order_changes = order_changes + 1 WHERE id = $1")
            .await?;
        tx.execute(&changed, &[&checkout_id.as_uuid()]).await?;
        let wake = Envelope::new(CheckoutDue {
            checkout_id,
            after_pass: checkout.get("pass"),
            not_before: Utc::now(),
            wake: true,
        });
        outbox::enqueue(&tx, "", topology::CHECKOUT_REQUESTED, &wake).await?;
    } else if checkout.get::<_, bool>("order_updates") {
        let n = crate::checkout_events::announce(
            &tx,
            checkout_id,
            event.kind.as_str(),
            Some(retailer),
            event.occurred_at,
        )
        .await?;
        let stmt = tx
            .prepare_cached("UPDATE order_events SET sequence = $2 WHERE id = $1")
            .await?;
        tx.execute(&stmt, &[&event_row, &n]).await?;
        sequence = Some(n);
    }
    tx.commit().await?;
    Ok(Recorded::Applied {
        checkout_id,
        status: to,
        sequence,
    })
}

async fn recorded_before(
    db: &impl GenericClient,
    retailer: &RetailerId,
    webhook_id: &str,
) -> Result<Option<Recorded>, StoreError> {
    let stmt = db
        .prepare_cached(
            "SELECT checkout_id, effect, status_after, sequence FROM order_events
             WHERE retailer_id = $1 AND webhook_id = $2",
        )
        .await?;
    Ok(db
        .query_opt(&stmt, &[&retailer.as_str(), &webhook_id])
        .await?
        .map(|r| Recorded::Duplicate {
            checkout_id: CheckoutId::from_uuid(r.get(0)),
            effect: r.get(1),
            status: r.get(2),
            sequence: r.get(3),
        }))
}

/// Moves the order to `to`. An order that settles stops waiting (no lookup is due any more).
async fn apply(
    tx: &impl GenericClient,
    checkout_id: CheckoutId,
    retailer: &RetailerId,
    event: &RetailerEvent,
    to: OrderStatus,
) -> Result<(), StoreError> {
    let stmt = tx
        .prepare_cached(
            "UPDATE checkout_orders
             SET status = $3, state_at = $4,
                 retailer_order_id = coalesce(retailer_order_id, $5),
                 reason = CASE WHEN $9 THEN
                              coalesce($6, CASE WHEN cancel_requested_at IS NOT NULL
                                                THEN coalesce($10, cancel_reason) ELSE reason END)
                          END,
                 tracking = coalesce($7, tracking),
                 refunds = CASE WHEN $8::jsonb IS NULL THEN refunds
                                ELSE coalesce(refunds, '[]'::jsonb) || jsonb_build_array($8::jsonb)
                           END,
                 next_attempt_at = NULL, settle_until = NULL, updated_at = now()
             WHERE checkout_id = $1 AND retailer_id = $2",
        )
        .await?;
    let reason = event.reason.clone().or_else(|| {
        (event.kind == RetailerEventType::Rejected).then(|| "rejected by the retailer".to_owned())
    });
    // Why it was rejected, cancelled, refunded or not cancelled (a refund may leave the
    // order's state as it is); any other move clears a reason left by an earlier state (a
    // lookup's, say). The end of a cancellation ICON asked for says why, not what ICON wrote
    // while it waited: the retailer's reason, else the one ICON asked with (cancelled) or a
    // refusal's.
    let keeps_reason = matches!(
        event.kind,
        RetailerEventType::Rejected
            | RetailerEventType::Cancelled
            | RetailerEventType::Refunded
            | RetailerEventType::CancelRefused
    );
    let refused = (event.kind == RetailerEventType::CancelRefused)
        .then_some("the retailer refused to cancel the order");
    let tracking = event
        .tracking
        .as_ref()
        .map(serde_json::to_value)
        .transpose()
        .map_err(corrupt)?;
    let refund = event
        .refund
        .as_ref()
        .map(serde_json::to_value)
        .transpose()
        .map_err(corrupt)?;
    tx.execute(
        &stmt,
        &[
            &checkout_id.as_uuid(),
            &retailer.as_str(),
            &to.as_str(),
            &event.occurred_at,
            &event.order_id,
            &reason,
            &tracking,
            &refund,
            &keeps_reason,
            &refused,
        ],
    )
    .await?;
    Ok(())
}
