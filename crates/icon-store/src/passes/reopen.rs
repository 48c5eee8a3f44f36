//! A checkout that had ended and is then cancelled (issue 18): reopening it (`cancelling`, its
//! first end kept as event 1) and recording its new end, announced as its next numbered event
//! rather than as `checkout.finished`.

use super::plan::finished_event;
use super::record::overtaken;
use super::{Completed, Pass};
use crate::orders::{OrderUpdate, OrderWork, UpdateColumns};
use crate::outbox::{self, OutboxRow};
use crate::{Conn, GenericClient, StoreError};
use chrono::{DateTime, Utc};
use icon_contracts::{topology, CheckoutDue, Envelope};
use icon_domain::CheckoutId;
use std::sync::LazyLock;
use tokio_postgres::types::ToSql;

/// Reopens a final checkout that has a cancellation still to carry out (an order asked to be
/// cancelled and not yet cancelled, refused or found not placed): it becomes `cancelling`, its
/// first end kept as event 1 (`ended_status`, `ended_at`), and its next pass is queued through
/// the outbox in the same statement, so a crash right after loses nothing. `false` if there is
/// nothing to reopen. A checkout that freed its cart (`failed`, `cancelled`) is never reopened:
/// the cart may have a new checkout.
pub async fn reopen(db: &impl GenericClient, id: CheckoutId) -> Result<bool, StoreError> {
    // A final checkout is never claimed, so its pass count holds still; the statement below
    // checks it did.
    let read = db
        .prepare_cached("SELECT pass FROM checkouts WHERE id = $1")
        .await?;
    let Some(row) = db.query_opt(&read, &[&id.as_uuid()]).await? else {
        return Ok(false);
    };
    let pass: i32 = row.get(0);
    let due = Envelope::new(CheckoutDue {
        checkout_id: id,
        after_pass: pass,
        not_before: Utc::now(),
        wake: false,
    });
    let message = OutboxRow::new("", topology::CHECKOUT_REQUESTED, &due);
    let stmt = db
        .prepare_cached(
            "WITH reopened AS (
                 UPDATE checkouts c
                 SET status = 'cancelling', ended_status = coalesce(ended_status, status),
                     ended_at = coalesce(ended_at, updated_at), next_due_at = now(),
                     updated_at = now()
                 WHERE id = $1 AND pass = $2
                   AND status IN ('completed', 'partially_completed', 'partially_cancelled')
                   AND EXISTS (
                       SELECT 1 FROM checkout_orders o
                       WHERE o.checkout_id = c.id AND o.cancel_requested_at IS NOT NULL
                         AND o.status IN ('pending', 'accepted', 'confirmed', 'shipped',
                                          'delivered', 'unknown', 'cancelling'))
                 RETURNING id
             ), queued AS (
                 INSERT INTO outbox
                   (exchange, routing_key, message_id, message_type, checkout_id, body,
                    traceparent)
                 SELECT $3, $4, $5, $6, id, $7, $8 FROM reopened
                 RETURNING id
             )
             SELECT pg_notify($9, '') FROM queued",
        )
        .await?;
    let rows = db
        .query(
            &stmt,
            &[
                &id.as_uuid(),
                &pass,
                &message.exchange,
                &message.routing_key,
                &message.message_id,
                &message.message_type,
                &message.body,
                &message.traceparent,
                &outbox::CHANNEL,
            ],
        )
        .await?;
    Ok(!rows.is_empty())
}

/// The end of a checkout a cancellation reopened (it had ended before): the orders' new states
/// and the checkout's new final state in one transaction, with the end announced as the
/// checkout's next numbered event (`checkout.cancelled`, `checkout.partially_cancelled`, ...)
/// to every channel and target of event 1, in sequence after the events before it. Conditional
/// on the claim and on no retailer's event having changed an order since, as [`complete`] is.
pub(super) async fn finish_reopened(
    db: &mut Conn,
    pass: &Pass,
    updates: &[OrderUpdate],
    now_orders: &[OrderWork],
    reason: Option<String>,
    route: &impl Fn(DateTime<Utc>) -> String,
) -> Result<Completed, StoreError> {
    let event = finished_event(pass, now_orders, reason);
    let tx = db.transaction().await?;
    let stmt = tx
        .prepare_cached(
            "UPDATE checkouts
             SET status = $3, reason = coalesce($4, reason), claim = NULL, claimed_until = NULL,
                 deliveries = 0, last_error = NULL, next_due_at = NULL, updated_at = now()
             WHERE id = $1 AND claim = $2 AND order_changes = $5",
        )
        .await?;
    let recorded = tx
        .execute(
            &stmt,
            &[
                &pass.checkout_id.as_uuid(),
                &pass.claim,
                &event.status.as_str(),
                &event.reason,
                &pass.order_changes,
            ],
        )
        .await?;
    if recorded == 0 {
        drop(tx);
        return overtaken(&*db, pass, route).await;
    }
    apply_updates(&tx, pass.checkout_id, updates).await?;
    crate::checkout_events::announce(
        &tx,
        pass.checkout_id,
        &crate::checkout_events::end_type(event.status),
        None,
        Utc::now(),
    )
    .await?;
    tx.commit().await?;
    Ok(Completed::Finished {
        event: Box::new(event),
        message: None,
        cancel_pending: false,
    })
}

/// The orders' updates of a checkout's pass: `$1` the checkout, `$2..$14` the updates.
static APPLY_STATEMENT: LazyLock<String> =
    LazyLock::new(|| crate::orders::apply_updates_sql(2, "= $1"));

/// The orders' new states of a pass, each only if the order still has the status the pass saw
/// (as in [`complete`]), inside the caller's transaction.
async fn apply_updates(
    tx: &impl GenericClient,
    id: CheckoutId,
    updates: &[OrderUpdate],
) -> Result<(), StoreError> {
    let stmt = tx.prepare_cached(&APPLY_STATEMENT).await?;
    let columns = UpdateColumns::new(updates);
    let uuid = id.as_uuid();
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&uuid];
    params.extend(columns.params());
    tx.execute(&stmt, &params).await?;
    Ok(())
}
