//! Recording a pass: the orders' new states with the next pass or the final transition (one
//! statement), releasing a pass after an error, and giving up on a checkout.

use super::plan::{due_message, ended_event, finished_envelope, plan, Plan};
use super::{schedule, Pass};
use crate::orders::{self, OrderUpdate, OrderView, OrderWork, UpdateColumns};
use crate::outbox::{self, OutboxRow};
use crate::{Conn, GenericClient, StoreError};
use chrono::{DateTime, Utc};
use icon_contracts::{topology, CheckoutFinished};
use icon_domain::{CheckoutStatus, OrderStatus};
use std::sync::LazyLock;
use tokio_postgres::types::ToSql;

/// The record of a pass (see [`complete`]): the checkout's row, guarded by the claim and the
/// orders' change count; the orders' updates (`$5..$17`); the message, with whether a
/// cancellation asked meanwhile is still to carry out.
static COMPLETE_STATEMENT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH recorded AS (
             UPDATE checkouts
             SET status = coalesce($3, $27, status), claim = NULL, claimed_until = NULL,
                 deliveries = CASE WHEN $3 IS NULL THEN 0 ELSE deliveries END,
                 last_error = CASE WHEN $3 IS NULL THEN NULL ELSE last_error END,
                 reason = coalesce($28, reason),
                 next_due_at = $4, updated_at = coalesce($26, now())
             WHERE id = $1 AND claim = $2 AND order_changes = $25
             RETURNING id
         ), applied AS (
             {}
         )
         INSERT INTO outbox
           (exchange, routing_key, message_id, message_type, checkout_id, body,
            publish_after, traceparent)
         SELECT $18, $19, $20, $21, id, $22, now() + make_interval(secs => $23), $24
         FROM recorded
         RETURNING id,
                   $3::text IS NOT NULL AND EXISTS (
                       SELECT 1 FROM checkout_orders c
                       WHERE c.checkout_id = $1 AND c.cancel_requested_at IS NOT NULL
                         AND c.status NOT IN ('cancelled', 'cancel_refused', 'rejected',
                                              'failed', 'refunded'))",
        orders::apply_updates_sql(5, "IN (SELECT id FROM recorded)")
    )
});

/// The outcome of recording a pass.
#[derive(Debug)]
pub enum Completed {
    /// The checkout reached its final state; `checkout.finished` is `message`, to hand to the
    /// relay now. For a checkout a cancellation reopened, `message` is `None`: its end is a
    /// later numbered event, whose notifications the relay publishes on commit.
    Finished {
        event: Box<CheckoutFinished>,
        message: Option<OutboxRow>,
        /// A cancellation was asked while the pass ran, and the pass did not see it: the
        /// checkout is to be reopened now (`passes::reopen`) rather than when a later copy
        /// comes by.
        cancel_pending: bool,
    },
    /// Orders are still open; the next pass is scheduled for `at` by `message` (to a delay
    /// tier), to hand to the relay now.
    Next {
        at: DateTime<Utc>,
        message: OutboxRow,
    },
    /// The lease ran out and another copy took the pass over: nothing was written.
    Lost,
    /// A retailer's event changed an order while the pass ran, so what the pass decided may be
    /// wrong (finishing on an order that is no longer what it saw): nothing was written, the
    /// claim was released and a pass is due now, which sees the orders as they are.
    Overtaken { message: OutboxRow },
}

/// A cancellation is only ever added to an order, never taken away: one asked (by a `DELETE`)
/// while the pass ran is kept, though the pass did not see it.
///
/// Records a pass in one statement (its own transaction): the orders' new states, then either
/// the final transition and `checkout.finished`, or the next pass's `checkout.due` (routed by
/// `route`, which names the queue that delivers a message due at an instant). Everything is
/// conditional on the claim, checked by the checkout's own `UPDATE` (under its row lock): if the
/// pass was taken over, nothing is written.
///
/// `failure`: this pass found the checkout's `all_or_nothing` policy failed, and why (the
/// checkout's `reason` from now on). While an order's cancellation is open the checkout is
/// `cancelling`. A checkout reopened by a cancellation ends through [`finish_reopened`].
#[tracing::instrument(name = "store.complete_pass", skip_all, fields(checkout_id = %pass.checkout_id))]
pub async fn complete(
    db: &mut Conn,
    pass: &Pass,
    updates: &[OrderUpdate],
    failure: Option<&str>,
    route: impl Fn(DateTime<Utc>) -> String,
) -> Result<Completed, StoreError> {
    let record = match plan(pass, updates, failure, &route) {
        Plan::Reopened { now_orders, reason } => {
            return super::reopen::finish_reopened(db, pass, updates, &now_orders, reason, &route)
                .await;
        }
        Plan::Record(record) => record,
    };
    let stmt = db.prepare_cached(&COMPLETE_STATEMENT).await?;
    let columns = UpdateColumns::new(updates);
    let grace = outbox::PUBLISH_GRACE.as_secs_f64();
    let uuid = pass.checkout_id.as_uuid();
    let message = &record.message;
    let mut params: Vec<&(dyn ToSql + Sync)> =
        vec![&uuid, &pass.claim, &record.status, &record.next_due_at];
    params.extend(columns.params());
    params.extend([
        &message.exchange as &(dyn ToSql + Sync),
        &message.routing_key,
        &message.message_id,
        &message.message_type,
        &message.body,
        &grace,
        &message.traceparent,
        &pass.order_changes,
        &record.ended_at,
        &record.interim,
        &record.reason,
    ]);
    let Some(row) = db.query_opt(&stmt, &params).await? else {
        return overtaken(&*db, pass, &route).await;
    };
    Ok(record.written(row.get(0), row.get(1)))
}

/// Why a pass's record wrote nothing: the claim is gone ([`Completed::Lost`]), or still ours but
/// an event changed an order meanwhile: then the claim is released (this pass does not count as
/// a failed delivery) and the next pass is due now, in one statement.
pub(super) async fn overtaken(
    db: &impl GenericClient,
    pass: &Pass,
    route: &impl Fn(DateTime<Utc>) -> String,
) -> Result<Completed, StoreError> {
    let now = Utc::now();
    let message = due_message(pass.checkout_id, pass.pass, now, &route(now));
    let stmt = db
        .prepare_cached(
            "WITH released AS (
                 UPDATE checkouts
                 SET claim = NULL, claimed_until = NULL, deliveries = greatest(deliveries - 1, 0),
                     next_due_at = now(), updated_at = now()
                 WHERE id = $1 AND claim = $2
                 RETURNING id
             )
             INSERT INTO outbox
               (exchange, routing_key, message_id, message_type, checkout_id, body,
                publish_after, traceparent)
             SELECT $3, $4, $5, $6, id, $7, now() + make_interval(secs => $8), $9
             FROM released
             RETURNING id",
        )
        .await?;
    let grace = outbox::PUBLISH_GRACE.as_secs_f64();
    let row = db
        .query_opt(
            &stmt,
            &[
                &pass.checkout_id.as_uuid(),
                &pass.claim,
                &message.exchange,
                &message.routing_key,
                &message.message_id,
                &message.message_type,
                &message.body,
                &grace,
                &message.traceparent,
            ],
        )
        .await?;
    Ok(match row {
        Some(row) => Completed::Overtaken {
            message: OutboxRow {
                id: row.get(0),
                ..message
            },
        },
        None => Completed::Lost,
    })
}

/// After a pass failed with an error that is not an outage: releases it, keeps the error, and
/// schedules the same pass again at `retry_at`. `false` if the pass was no longer ours.
pub async fn release_after_error(
    conn: &mut Conn,
    pass: &Pass,
    error: &str,
    retry_at: DateTime<Utc>,
    route: impl Fn(DateTime<Utc>) -> String,
) -> Result<bool, StoreError> {
    let tx = conn.transaction().await?;
    let stmt = tx
        .prepare_cached(
            "UPDATE checkouts SET claim = NULL, claimed_until = NULL, last_error = $3,
                    next_due_at = $4, updated_at = now()
             WHERE id = $1 AND claim = $2",
        )
        .await?;
    let error = icon_domain::text::sanitize(error, icon_domain::text::MAX_REASON_CHARS);
    let released = tx
        .execute(
            &stmt,
            &[&pass.checkout_id.as_uuid(), &pass.claim, &error, &retry_at],
        )
        .await?
        == 1;
    if released {
        schedule(&tx, pass.checkout_id, pass.pass, retry_at, &route(retry_at)).await?;
    }
    tx.commit().await?;
    Ok(released)
}

/// Ends a checkout whose passes keep failing: every open order becomes (or stays) `unknown`,
/// since the retailer may have placed it, and the checkout finishes with `reason`, so the
/// loop closes and the callback goes out.
#[tracing::instrument(name = "store.give_up_checkout", skip_all, fields(checkout_id = %pass.checkout_id))]
pub async fn give_up(
    conn: &mut Conn,
    pass: &Pass,
    reason: &str,
) -> Result<Option<CheckoutFinished>, StoreError> {
    let tx = conn.transaction().await?;
    // Orders first, then the checkout (whose UPDATE checks the claim), as `complete` does: one
    // lock order, so the two cannot deadlock.
    let stmt = tx
        .prepare_cached(
            "UPDATE checkout_orders SET status = 'unknown', settle_until = NULL,
                    next_attempt_at = NULL, updated_at = now()
             WHERE checkout_id = $1 AND status IN ('pending', 'accepted', 'unknown', 'cancelling')",
        )
        .await?;
    tx.execute(&stmt, &[&pass.checkout_id.as_uuid()]).await?;
    let reason = icon_domain::text::sanitize(reason, icon_domain::text::MAX_REASON_CHARS);
    let views = orders::list(&tx, pass.checkout_id).await?;
    let Some(finished) = finish(&tx, pass, views, Some(reason)).await? else {
        return Ok(None); // taken over: dropping the transaction undoes the orders' update
    };
    tx.commit().await?;
    Ok(Some(finished))
}

/// The final transition, inside the caller's transaction, if the pass still holds the checkout
/// (else `None`): the status follows from the orders (`unknown` counts as not confirmed), and
/// `checkout.finished` goes to the outbox (for a reopened checkout, its next numbered event).
async fn finish(
    tx: &impl GenericClient,
    pass: &Pass,
    orders: Vec<OrderView>,
    reason: Option<String>,
) -> Result<Option<CheckoutFinished>, StoreError> {
    let statuses: Vec<OrderStatus> = orders.iter().map(|o| o.status).collect();
    let cancelled_some = pass.orders.iter().any(OrderWork::cancel_asked);
    let status = CheckoutStatus::at_end(&statuses, cancelled_some, false);
    let finished = ended_event(pass, status, orders, reason);
    let envelope = finished_envelope(finished.clone());
    let stmt = tx
        .prepare_cached(
            "UPDATE checkouts SET status = $2, reason = $3, claim = NULL, claimed_until = NULL,
                    next_due_at = NULL, updated_at = $5
             WHERE id = $1 AND claim = $4",
        )
        .await?;
    let status = finished.status.as_str();
    let recorded = tx
        .execute(
            &stmt,
            &[
                &pass.checkout_id.as_uuid(),
                &status,
                &finished.reason,
                &pass.claim,
                &envelope.occurred_at,
            ],
        )
        .await?;
    if recorded == 0 {
        return Ok(None);
    }
    if pass.reopened {
        let kind = crate::checkout_events::end_type(finished.status);
        crate::checkout_events::announce(tx, pass.checkout_id, &kind, None, Utc::now()).await?;
    } else {
        outbox::enqueue(
            tx,
            topology::EVENTS_EXCHANGE,
            topology::CHECKOUT_FINISHED,
            &envelope,
        )
        .await?;
    }
    Ok(Some(finished))
}
