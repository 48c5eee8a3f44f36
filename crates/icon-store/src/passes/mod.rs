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
//!
//! Here: claiming a pass, scheduling one, and the sweep; `record.rs`: recording a pass (its
//! next pass or its end), releasing it after an error, giving up; `reopen.rs`: a checkout that
//! had ended and is cancelled (issue 18): reopening it, and its new end as a numbered event.

mod record;
mod reopen;

pub use record::*;
pub use reopen::reopen;

use crate::orders::{self, OrderWork};
use crate::webhook_secrets::{RETAILER_CLAIM_COLUMNS, RETAILER_CLAIM_JOIN};
use crate::{error::corrupt, outbox, Conn, GenericClient, StoreError};
use chrono::{DateTime, Utc};
use icon_contracts::{topology, CheckoutDue, Envelope};
use icon_domain::{CartId, CheckoutId, CheckoutPolicy, CheckoutStatus};
use std::sync::LazyLock;
use std::time::Duration;
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
    /// Orders changed by retailers' events so far: the pass is recorded only if no event
    /// changed one since the claim (see [`Completed::Overtaken`]).
    pub order_changes: i32,
    /// What the checkout does when an order is not placed.
    pub policy: CheckoutPolicy,
    /// Why the checkout fails, once its `all_or_nothing` policy has failed (the order that
    /// failed it), kept while its other orders are cancelled.
    pub reason: Option<String>,
    /// The checkout had ended and a cancellation reopened it: its end now is a later event,
    /// not event 1 (see `finish_reopened`).
    pub reopened: bool,
    pub orders: Vec<OrderWork>,
}

impl Pass {
    /// The checkout's first pass, and no pass before it that may have sent an order without
    /// recording it (one that crashed or lost its lease counts in `deliveries`; one overtaken
    /// or failed moved `pass` on): an order with no attempt recorded was never sent.
    pub fn is_first(&self) -> bool {
        self.pass == 1 && self.deliveries == 1
    }
}

#[derive(Debug)]
pub enum Claim {
    Claimed(Box<Pass>),
    /// Another copy's pass is in flight until `until`: look again then.
    Busy {
        until: DateTime<Utc>,
    },
    /// Nothing to do: this copy is stale.
    Nothing(&'static str),
    /// The checkout is final (a cancellation asked since may still reopen it, see [`reopen`]).
    Final,
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
    let stmt = db.prepare_cached(&CLAIM_STATEMENT).await?;
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
        order_changes: first.get("order_changes"),
        policy: CheckoutPolicy::parse(first.get("policy")).map_err(corrupt)?,
        reason: first.get("checkout_reason"),
        reopened: first.get::<_, Option<String>>("ended_status").is_some(),
        orders: orders::work_from_rows(&rows)?,
    })))
}

/// The claim's statement: the pass, its orders with their retailers' sealed secrets (one
/// primary-key lookup per order, see [`RETAILER_CLAIM_JOIN`]) and the cart's items.
static CLAIM_STATEMENT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH claimed AS (
                 UPDATE checkouts
                 SET pass = CASE WHEN pass = $2 THEN pass + 1 ELSE pass END,
                     claim = $3, claimed_until = now() + make_interval(secs => $4),
                     deliveries = deliveries + 1,
                     status = CASE WHEN status = 'queued' THEN 'processing' ELSE status END,
                     updated_at = now()
                 WHERE id = $1 AND status IN ('queued', 'processing', 'cancelling')
                   AND ((pass = $2 AND (claimed_until IS NULL OR claimed_until < now()))
                        OR (pass = $2 + 1 AND claimed_until < now()))
                 RETURNING id AS checkout_id, cart_id, pass, deliveries, last_error, resource_url,
                           order_changes, policy, reason, ended_status
             )
             SELECT c.cart_id, c.pass, c.deliveries, c.last_error, c.resource_url, c.order_changes,
                    c.policy, c.reason AS checkout_reason, c.ended_status,
                    o.retailer_id, o.order_url, o.status, o.idempotency_key, o.key_checkout_id,
                    o.attempts, o.lookups, o.retailer_order_id, o.reason, o.next_attempt_at,
                    o.settle_until, o.in_doubt_at, o.cancel_requested_at, o.cancel_reason,
                    o.cancel_attempts,
                    i.id, i.sku, i.quantity, i.amount_minor, i.currency, {RETAILER_CLAIM_COLUMNS}
             FROM claimed c
             JOIN checkout_orders o ON o.checkout_id = c.checkout_id
             LEFT JOIN cart_items i ON i.cart_id = c.cart_id AND i.retailer_id = o.retailer_id
             {RETAILER_CLAIM_JOIN}
             ORDER BY o.retailer_id, i.id"
    )
});

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
        _ if status.is_final() => Claim::Final,
        // The pass this copy would make is held. Its lease may have run out between the claim
        // and this read: then this copy comes straight back and takes it over.
        Some(until) if pass == after_pass + 1 => Claim::Busy { until },
        _ => Claim::Nothing("stale copy: another copy made this pass"),
    })
}

/// Where a checkout is, for a wake-up (`CheckoutDue::wake`): final, or the current pass and the
/// lease of the one in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Current {
    Missing,
    Final,
    Pass {
        pass: i32,
        claimed_until: Option<DateTime<Utc>>,
    },
}

/// See [`Current`].
pub async fn current(db: &impl GenericClient, id: CheckoutId) -> Result<Current, StoreError> {
    let stmt = db
        .prepare_cached("SELECT status, pass, claimed_until FROM checkouts WHERE id = $1")
        .await?;
    let Some(row) = db.query_opt(&stmt, &[&id.as_uuid()]).await? else {
        return Ok(Current::Missing);
    };
    let status = CheckoutStatus::parse(row.get(0)).map_err(corrupt)?;
    Ok(if status.is_final() {
        Current::Final
    } else {
        Current::Pass {
            pass: row.get(1),
            claimed_until: row
                .get::<_, Option<DateTime<Utc>>>(2)
                .filter(|u| *u > Utc::now()),
        }
    })
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
        wake: false,
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
             WHERE status IN ('queued', 'processing', 'cancelling')
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
