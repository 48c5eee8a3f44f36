//! A checkout that had ended and is then cancelled (issue 18): reopening it (`cancelling`, its
//! first end kept as event 1) and recording its new end, announced as its next numbered event
//! rather than as `checkout.finished`.

use super::record::{finished_event, overtaken};
use super::{Completed, Pass};
use crate::orders::{OrderUpdate, OrderWork, UpdateColumns};
use crate::{Conn, GenericClient, StoreError};
use chrono::{DateTime, Utc};
use icon_domain::CheckoutId;
use std::sync::LazyLock;
use tokio_postgres::types::ToSql;

/// Reopens a final checkout that has a cancellation still to carry out (an order asked to be
/// cancelled and not yet cancelled, refused or found not placed): it becomes `cancelling`, its
/// first end kept as event 1 (`ended_status`, `ended_at`). Returns the pass count the next
/// pass follows, or `None` if there is nothing to reopen. A checkout that freed its cart
/// (`failed`, `cancelled`) is never reopened: the cart may have a new checkout.
pub async fn reopen(db: &impl GenericClient, id: CheckoutId) -> Result<Option<i32>, StoreError> {
    let stmt = db
        .prepare_cached(
            "UPDATE checkouts c
             SET status = 'cancelling', ended_status = coalesce(ended_status, status),
                 ended_at = coalesce(ended_at, updated_at), next_due_at = now(),
                 updated_at = now()
             WHERE id = $1
               AND status IN ('completed', 'partially_completed', 'partially_cancelled')
               AND EXISTS (
                   SELECT 1 FROM checkout_orders o
                   WHERE o.checkout_id = c.id AND o.cancel_requested_at IS NOT NULL
                     AND o.status IN ('pending', 'accepted', 'confirmed', 'shipped', 'delivered',
                                      'unknown', 'cancelling'))
             RETURNING pass",
        )
        .await?;
    Ok(db
        .query_opt(&stmt, &[&id.as_uuid()])
        .await?
        .map(|r| r.get(0)))
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
