//! The worker's processing passes over a checkout.
//!
//! A checkout is processed in passes: each makes at most one call per open order (an order
//! request or a status lookup), records what it learnt, and either finishes the checkout or
//! schedules the next pass through a delay tier. Waiting happens in the broker, never in a
//! sleeping task holding a prefetch slot.
//!
//! Exactly one pass runs at a time, whatever copies of a message exist (a redelivery, a sweeper
//! copy, a duplicate publish):
//! - every message names the pass count it expects (`after_pass`); [`claim`] moves the count on
//!   with a conditional `UPDATE`, so only one copy wins and the others are stale;
//! - a claimed pass holds a lease (`claimed_until`): a copy arriving while it runs is deferred
//!   to the lease's end ([`Claim::Busy`]); if the claimer crashed, the first copy after the
//!   lease takes the pass over, and the late claimer's write is refused ([`Completed::Lost`]);
//! - `deliveries` counts passes that started and never completed; past a bound the checkout
//!   fails with a reason ([`give_up`]) instead of looping.
//!
//! Every transition and the message it implies (the next pass, or `checkout.finished`) are
//! written in one transaction through the outbox.

use crate::orders::{self, OrderUpdate, OrderView, OrderWork, UpdateColumns};
use crate::outbox::{self, OutboxRow};
use crate::{error::corrupt, Conn, GenericClient, StoreError};
use chrono::{DateTime, Utc};
use icon_contracts::{topology, CheckoutDue, CheckoutFinished, Envelope, OrderOutcome};
use icon_domain::{CartId, CheckoutId, CheckoutStatus, OrderStatus};
use std::time::Duration;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

/// A pass this worker holds.
#[derive(Debug, Clone)]
pub struct Pass {
    pub checkout_id: CheckoutId,
    pub cart_id: CartId,
    /// The pass count after the claim; the next message expects it.
    pub pass: i32,
    /// Proves ownership when the pass is recorded.
    pub claim: Uuid,
    /// Passes started without completing, this one included.
    pub deliveries: i32,
    /// The error that ended the last failed pass.
    pub last_error: Option<String>,
    /// The checkout's `resource_url`: the `source_url` of `checkout.finished`.
    pub resource_url: String,
    pub orders: Vec<OrderWork>,
}

#[derive(Debug)]
pub enum Claim {
    Claimed(Box<Pass>),
    /// Another copy's pass is in flight until `until`: look again then.
    Busy {
        until: DateTime<Utc>,
    },
    /// Nothing to do: the checkout is final, or this copy is stale.
    Nothing(&'static str),
    /// No such checkout.
    Missing,
}

/// Claims the pass after `after_pass` for `lease` (or takes over a crashed one), and reads
/// what the pass works on, in one statement: the checkout's claim, its orders and the cart's
/// items (one row per item).
#[tracing::instrument(name = "store.claim_pass", skip_all, fields(checkout_id = %id, after_pass))]
pub async fn claim(
    db: &impl GenericClient,
    id: CheckoutId,
    after_pass: i32,
    lease: Duration,
) -> Result<Claim, StoreError> {
    let claim = Uuid::new_v4();
    let stmt = db
        .prepare_cached(
            "WITH claimed AS (
                 UPDATE checkouts
                 SET pass = CASE WHEN pass = $2 THEN pass + 1 ELSE pass END,
                     claim = $3, claimed_until = now() + make_interval(secs => $4),
                     deliveries = deliveries + 1,
                     status = CASE WHEN status = 'queued' THEN 'processing' ELSE status END,
                     updated_at = now()
                 WHERE id = $1 AND status IN ('queued', 'processing')
                   AND ((pass = $2 AND (claimed_until IS NULL OR claimed_until < now()))
                        OR (pass = $2 + 1 AND claimed_until < now()))
                 RETURNING id AS checkout_id, cart_id, pass, deliveries, last_error, resource_url
             )
             SELECT c.cart_id, c.pass, c.deliveries, c.last_error, c.resource_url,
                    o.retailer_id, o.order_url, o.status, o.idempotency_key, o.key_checkout_id,
                    o.attempts, o.lookups, o.retailer_order_id, o.reason, o.next_attempt_at,
                    o.settle_until,
                    i.id, i.sku, i.quantity, i.amount_minor, i.currency
             FROM claimed c
             JOIN checkout_orders o ON o.checkout_id = c.checkout_id
             LEFT JOIN cart_items i ON i.cart_id = c.cart_id AND i.retailer_id = o.retailer_id
             ORDER BY o.retailer_id, i.id",
        )
        .await?;
    let rows = db
        .query(
            &stmt,
            &[&id.as_uuid(), &after_pass, &claim, &lease.as_secs_f64()],
        )
        .await?;
    // A checkout always has an order (an empty cart cannot be checked out), so no row means no
    // claim.
    let Some(first) = rows.first() else {
        return why_not(db, id, after_pass).await;
    };
    Ok(Claim::Claimed(Box::new(Pass {
        checkout_id: id,
        cart_id: CartId::new(first.get("cart_id")),
        pass: first.get("pass"),
        claim,
        deliveries: first.get("deliveries"),
        last_error: first.get("last_error"),
        resource_url: first.get("resource_url"),
        orders: orders::work_from_rows(&rows)?,
    })))
}

async fn why_not(
    db: &impl GenericClient,
    id: CheckoutId,
    after_pass: i32,
) -> Result<Claim, StoreError> {
    let stmt = db
        .prepare_cached("SELECT status, pass, claimed_until FROM checkouts WHERE id = $1")
        .await?;
    let Some(row) = db.query_opt(&stmt, &[&id.as_uuid()]).await? else {
        return Ok(Claim::Missing);
    };
    let status = CheckoutStatus::parse(row.get(0)).map_err(corrupt)?;
    let pass: i32 = row.get(1);
    let until: Option<DateTime<Utc>> = row.get(2);
    Ok(match until {
        _ if status.is_final() => Claim::Nothing("checkout already final"),
        // The pass this copy would make is held. Its lease may have run out between the claim
        // and this read: then this copy comes straight back and takes it over.
        Some(until) if pass == after_pass + 1 => Claim::Busy { until },
        _ => Claim::Nothing("stale copy: another copy made this pass"),
    })
}

/// The outcome of recording a pass.
#[derive(Debug)]
pub enum Completed {
    /// The checkout reached its final state; `checkout.finished` is `message`, to hand to the
    /// relay now.
    Finished {
        event: Box<CheckoutFinished>,
        message: OutboxRow,
    },
    /// Orders are still open; the next pass is scheduled for `at` by `message` (to a delay
    /// tier), to hand to the relay now.
    Next { at: DateTime<Utc>, message: OutboxRow },
    /// The lease ran out and another copy took the pass over: nothing was written.
    Lost,
}

/// Records a pass in one statement (its own transaction): the orders' new states, then either
/// the final transition and `checkout.finished`, or the next pass's `checkout.due` (routed by
/// `route`, which names the queue that delivers a message due at an instant). Everything is
/// conditional on the claim, checked by the checkout's own `UPDATE` (under its row lock): if the
/// pass was taken over, nothing is written.
#[tracing::instrument(name = "store.complete_pass", skip_all, fields(checkout_id = %pass.checkout_id))]
pub async fn complete(
    db: &impl GenericClient,
    pass: &Pass,
    updates: &[OrderUpdate],
    route: impl Fn(DateTime<Utc>) -> String,
) -> Result<Completed, StoreError> {
    let id = pass.checkout_id;
    // The orders as they are about to be written: the claim keeps anyone else from changing
    // them, so there is no need to read them back.
    let now_orders: Vec<OrderWork> = pass
        .orders
        .iter()
        .map(
            |o| match updates.iter().find(|u| u.retailer_id == o.retailer_id) {
                Some(u) => o.updated(u),
                None => o.clone(),
            },
        )
        .collect();
    let next = now_orders
        .iter()
        .filter(|o| o.is_open())
        .map(|o| o.next_attempt_at.unwrap_or_else(Utc::now))
        .min();
    let (status, event, next_due_at, message) = match next {
        None => {
            let orders: Vec<OrderView> = now_orders.iter().map(OrderWork::view).collect();
            let event = finished_event(pass, orders, None);
            let message = OutboxRow::new(
                topology::EVENTS_EXCHANGE,
                topology::CHECKOUT_FINISHED,
                &Envelope::new(event.clone()),
            );
            (Some(event.status), Some(event), None, message)
        }
        Some(at) => (None, None, Some(at), due_message(id, pass.pass, at, &route(at))),
    };
    let stmt = db
        .prepare_cached(
            "WITH recorded AS (
                 UPDATE checkouts
                 SET status = coalesce($3, status), claim = NULL, claimed_until = NULL,
                     deliveries = CASE WHEN $3 IS NULL THEN 0 ELSE deliveries END,
                     last_error = CASE WHEN $3 IS NULL THEN NULL ELSE last_error END,
                     next_due_at = $4, updated_at = now()
                 WHERE id = $1 AND claim = $2
                 RETURNING id
             ), applied AS (
                 UPDATE checkout_orders o
                 SET status = u.status, retailer_order_id = u.order_id, reason = u.reason,
                     attempts = o.attempts + u.attempts, lookups = o.lookups + u.lookups,
                     next_attempt_at = u.next_at, settle_until = u.settle_until,
                     updated_at = now()
                 FROM unnest($5::text[], $6::text[], $7::text[], $8::text[], $9::int4[],
                             $10::int4[], $11::timestamptz[], $12::timestamptz[])
                      AS u(retailer_id, status, order_id, reason, attempts, lookups, next_at,
                           settle_until)
                 WHERE o.checkout_id IN (SELECT id FROM recorded)
                   AND o.retailer_id = u.retailer_id
             )
             INSERT INTO outbox
               (exchange, routing_key, message_id, message_type, checkout_id, body,
                publish_after)
             SELECT $13, $14, $15, $16, id, $17, now() + make_interval(secs => $18)
             FROM recorded
             RETURNING id",
        )
        .await?;
    let columns = UpdateColumns::new(updates);
    let status = status.map(|s| s.as_str());
    let grace = outbox::PUBLISH_GRACE.as_secs_f64();
    let uuid = id.as_uuid();
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&uuid, &pass.claim, &status, &next_due_at];
    params.extend(columns.params());
    params.extend([
        &message.exchange as &(dyn ToSql + Sync),
        &message.routing_key,
        &message.message_id,
        &message.message_type,
        &message.body,
        &grace,
    ]);
    let Some(row) = db.query_opt(&stmt, &params).await? else {
        return Ok(Completed::Lost);
    };
    let message = OutboxRow {
        id: row.get(0),
        ..message
    };
    Ok(match (event, next_due_at) {
        (Some(event), _) => Completed::Finished {
            event: Box::new(event),
            message,
        },
        (None, Some(at)) => Completed::Next { at, message },
        (None, None) => unreachable!("a pass either finishes or schedules the next"),
    })
}

fn finished_event(pass: &Pass, orders: Vec<OrderView>, reason: Option<String>) -> CheckoutFinished {
    let statuses: Vec<OrderStatus> = orders.iter().map(|o| o.status).collect();
    CheckoutFinished {
        checkout_id: pass.checkout_id,
        cart_id: pass.cart_id,
        status: CheckoutStatus::from_orders(&statuses),
        source_url: pass.resource_url.clone(),
        orders: orders.into_iter().map(OrderOutcome::from).collect(),
        reason,
    }
}

fn due_message(id: CheckoutId, after_pass: i32, at: DateTime<Utc>, routing_key: &str) -> OutboxRow {
    let due = Envelope::new(CheckoutDue {
        checkout_id: id,
        after_pass,
        not_before: at,
    });
    OutboxRow::new("", routing_key, &due)
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
             WHERE checkout_id = $1 AND status IN ('pending', 'unknown')",
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
/// `checkout.finished` goes to the outbox.
async fn finish(
    tx: &impl GenericClient,
    pass: &Pass,
    orders: Vec<OrderView>,
    reason: Option<String>,
) -> Result<Option<CheckoutFinished>, StoreError> {
    let finished = finished_event(pass, orders, reason);
    let stmt = tx
        .prepare_cached(
            "UPDATE checkouts SET status = $2, reason = $3, claim = NULL, claimed_until = NULL,
                    next_due_at = NULL, updated_at = now()
             WHERE id = $1 AND claim = $4",
        )
        .await?;
    let status = finished.status.as_str();
    let recorded = tx
        .execute(
            &stmt,
            &[&pass.checkout_id.as_uuid(), &status, &finished.reason, &pass.claim],
        )
        .await?;
    if recorded == 0 {
        return Ok(None);
    }
    outbox::enqueue(
        tx,
        topology::EVENTS_EXCHANGE,
        topology::CHECKOUT_FINISHED,
        &Envelope::new(finished.clone()),
    )
    .await?;
    Ok(Some(finished))
}

/// Writes a `checkout.due` for the pass after `after_pass`, due at `at`, to the outbox, for the
/// queue `routing_key` (a delay tier, or the work queue itself when it is due now).
pub async fn schedule(
    db: &impl GenericClient,
    id: CheckoutId,
    after_pass: i32,
    at: DateTime<Utc>,
    routing_key: &str,
) -> Result<(), StoreError> {
    let due = Envelope::new(CheckoutDue {
        checkout_id: id,
        after_pass,
        not_before: at,
    });
    outbox::enqueue(db, "", routing_key, &due).await
}

/// The safety net: checkouts not final, with no pass in flight, nothing waiting in the outbox,
/// and no progress or due pass for `older_than` (their message was lost or dead-lettered). Each
/// gets one `checkout.due` and counts as due now, so it is queued again at most once per
/// `older_than`; the pass counter makes a copy that was merely late harmless.
pub async fn requeue_stuck(conn: &mut Conn, older_than: Duration) -> Result<usize, StoreError> {
    let tx = conn.transaction().await?;
    let stmt = tx
        .prepare_cached(
            "SELECT id, pass FROM checkouts c
             WHERE status IN ('queued', 'processing')
               AND (claimed_until IS NULL OR claimed_until < now())
               AND coalesce(next_due_at, updated_at) < now() - make_interval(secs => $1)
               AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.checkout_id = c.id)
             ORDER BY updated_at LIMIT 100
             FOR UPDATE SKIP LOCKED",
        )
        .await?;
    let rows = tx.query(&stmt, &[&older_than.as_secs_f64()]).await?;
    let touch = tx
        .prepare_cached("UPDATE checkouts SET next_due_at = now() WHERE id = $1")
        .await?;
    for row in &rows {
        let id = CheckoutId::from_uuid(row.get(0));
        tracing::warn!(checkout_id = %id, "checkout made no progress; queued again");
        schedule(
            &tx,
            id,
            row.get(1),
            Utc::now(),
            topology::CHECKOUT_REQUESTED,
        )
        .await?;
        tx.execute(&touch, &[&id.as_uuid()]).await?;
    }
    tx.commit().await?;
    Ok(rows.len())
}
