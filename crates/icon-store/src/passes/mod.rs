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
//! Here: what a pass holds, scheduling one, and the sweep; `claim.rs`: claiming a pass, alone
//! or several checkouts' at once (group commit); `plan.rs`: what a pass's record comes to;
//! `record.rs`: recording a pass (its
//! next pass or its end), releasing it after an error, giving up; `reopen.rs`: a checkout that
//! had ended and is cancelled (issue 18): reopening it, and its new end as a numbered event.

mod claim;
mod plan;
mod record;
mod reopen;

pub use claim::{claim, claim_many};
pub use record::*;
pub use reopen::reopen;

use crate::orders::{OrderUpdate, OrderWork};
use crate::{error::corrupt, outbox, Conn, GenericClient, StoreError};
use chrono::{DateTime, Utc};
use icon_contracts::{topology, CheckoutDue, Envelope};
use icon_domain::{CartId, CheckoutId, CheckoutPolicy, CheckoutStatus};
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

    /// The orders as they are once `updates` (this pass's) are written: the claim keeps anyone
    /// else from changing them, so there is no need to read them back.
    pub fn orders_after(&self, updates: &[OrderUpdate]) -> Vec<OrderWork> {
        self.orders
            .iter()
            .map(
                |o| match updates.iter().find(|u| u.retailer_id == o.retailer_id) {
                    Some(u) => o.updated(u),
                    None => o.clone(),
                },
            )
            .collect()
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
