//! One retailer order of a checkout: how the resource and the callback show it, and what the
//! worker needs to make progress on it.

use crate::carts::{item_from_row, CartItem};
use crate::webhook_secrets::SealedSecrets;
use crate::{error::corrupt, GenericClient, StoreError};
use chrono::{DateTime, Utc};
use icon_contracts::retailer::{Refund, Tracking};
use icon_domain::{CheckoutId, OrderStatus, RetailerId};

#[derive(Debug, Clone)]
pub struct OrderView {
    pub retailer_id: RetailerId,
    pub status: OrderStatus,
    pub retailer_order_id: Option<String>,
    pub reason: Option<String>,
    /// As the retailer reported it with `order.shipped`.
    pub tracking: Option<Tracking>,
    /// As the retailer reported them with `order.refunded`, oldest first.
    pub refunds: Vec<Refund>,
}

/// The callback shows an order as the resource does.
impl From<OrderView> for icon_contracts::OrderOutcome {
    fn from(o: OrderView) -> Self {
        Self {
            retailer_id: o.retailer_id,
            status: o.status,
            retailer_order_id: o.retailer_order_id,
            reason: o.reason,
            tracking: o.tracking,
            refunds: o.refunds,
        }
    }
}

/// An order as the worker sees it during a processing pass.
#[derive(Debug, Clone)]
pub struct OrderWork {
    pub retailer_id: RetailerId,
    pub order_url: String,
    pub status: OrderStatus,
    /// Sent on every call for this order, and on every later checkout of the same cart until
    /// the retailer says the order was not placed.
    pub idempotency_key: String,
    /// The `checkout_id` in the order body: the checkout that first used the key, so a re-sent
    /// key always comes with the same body.
    pub key_checkout_id: CheckoutId,
    pub attempts: i32,
    pub lookups: i32,
    pub retailer_order_id: Option<String>,
    pub reason: Option<String>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Set while an `unknown` order is being settled by status lookups.
    pub settle_until: Option<DateTime<Utc>>,
    /// When ICON last sent this key and got an answer (a 409, a timeout, a dropped connection)
    /// that leaves a request with it possibly still in progress at the retailer. Until
    /// `ICON_RETAILER_NOT_PLACED_AFTER` has passed since, a lookup's 404 proves nothing.
    pub in_doubt_at: Option<DateTime<Utc>>,
    pub items: Vec<CartItem>,
    /// When the order was asked to be cancelled (a `DELETE`, or the checkout's
    /// `all_or_nothing` policy), and why: the reason sent to the retailer.
    pub cancel_requested_at: Option<DateTime<Utc>>,
    pub cancel_reason: Option<String>,
    /// Cancellation requests sent without a definite answer so far.
    pub cancel_attempts: i32,
    /// The retailer's secrets, sealed, read with the claim: what every request for this order
    /// is signed with (see `webhook_secrets`).
    pub signing: SealedSecrets,
}

/// What a pass should do for one order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Send (or re-send, with the same key) the order.
    Place,
    /// Ask the retailer what became of the key (of the order, or of its cancellation).
    Lookup,
    /// Ask the retailer to cancel the order (or ask again, with the same key).
    Cancel,
    /// Cancelled without a word to the retailer: it was never sent (see [`OrderWork::due`]).
    Withdraw,
}

impl OrderWork {
    /// Still moving: not yet answered, accepted and waiting for the retailer's word, or
    /// `unknown` and being settled. The checkout finishes once no order is open.
    pub fn is_open(&self) -> bool {
        match self.status {
            OrderStatus::Pending | OrderStatus::Accepted | OrderStatus::Cancelling => true,
            OrderStatus::Unknown => self.settle_until.is_some() || self.cancel_asked(),
            // Placed, and asked to be cancelled: the cancellation is still to be sent.
            OrderStatus::Confirmed | OrderStatus::Shipped | OrderStatus::Delivered => {
                self.cancel_asked()
            }
            _ => false,
        }
    }

    /// Asked to be cancelled.
    pub fn cancel_asked(&self) -> bool {
        self.cancel_requested_at.is_some()
    }

    /// The order once `update` is applied (what [`apply`] writes), so a pass can decide what
    /// comes next without reading back what it just wrote.
    pub fn updated(&self, update: &OrderUpdate) -> Self {
        Self {
            status: update.status,
            retailer_order_id: update.retailer_order_id.clone(),
            reason: update.reason.clone(),
            attempts: self.attempts + update.attempts_add,
            lookups: self.lookups + update.lookups_add,
            next_attempt_at: update.next_attempt_at,
            settle_until: update.settle_until,
            in_doubt_at: update.in_doubt_at,
            cancel_requested_at: update.cancel_requested_at,
            cancel_reason: update.cancel_reason.clone(),
            cancel_attempts: self.cancel_attempts + update.cancel_attempts_add,
            ..self.clone()
        }
    }

    /// As the checkout's end shows it. A pass works on orders not yet confirmed, which have
    /// no tracking or refunds yet.
    pub fn view(&self) -> OrderView {
        OrderView {
            retailer_id: self.retailer_id.clone(),
            status: self.status,
            retailer_order_id: self.retailer_order_id.clone(),
            reason: self.reason.clone(),
            tracking: None,
            refunds: Vec::new(),
        }
    }

    /// What is due for this order at `now`, if anything. `first_pass`: the checkout's first
    /// pass, with no pass before it that may have sent anything (see `passes::Pass`).
    ///
    /// An order asked to be cancelled is withdrawn if it was certainly never sent (no attempt
    /// recorded, nothing in doubt, and no earlier pass that may have sent it unrecorded); an
    /// `unknown` one is settled by lookup first; a cancellation already sent is looked up once
    /// it waits for the retailer's word (`settle_until`), else sent again with the same key;
    /// every other one is sent its cancellation.
    ///
    /// A cancellation does not wait for the placement's schedule (a retry, the wait for an
    /// accepted order's outcome): only for its own (a cancellation's retry, a lookup).
    pub fn due(&self, now: DateTime<Utc>, first_pass: bool) -> Option<Step> {
        let waits = match self.status {
            _ if !self.cancel_asked() => true,
            OrderStatus::Cancelling => true,
            OrderStatus::Unknown => self.settle_until.is_some(),
            _ => false,
        };
        if !self.is_open() || (waits && self.next_attempt_at.is_some_and(|at| at > now)) {
            return None;
        }
        if self.cancel_asked() {
            return Some(match self.status {
                OrderStatus::Pending
                    if first_pass && self.attempts == 0 && self.in_doubt_at.is_none() =>
                {
                    Step::Withdraw
                }
                OrderStatus::Unknown | OrderStatus::Cancelling if self.settle_until.is_some() => {
                    Step::Lookup
                }
                _ => Step::Cancel,
            });
        }
        Some(match self.status {
            OrderStatus::Pending => Step::Place,
            _ => Step::Lookup,
        })
    }
}

fn view_from_row(r: &tokio_postgres::Row) -> Result<OrderView, StoreError> {
    Ok(OrderView {
        retailer_id: RetailerId::parse(r.get::<_, String>("retailer_id")).map_err(corrupt)?,
        status: OrderStatus::parse(r.get("status")).map_err(corrupt)?,
        retailer_order_id: r.get("retailer_order_id"),
        reason: r.get("reason"),
        tracking: r
            .get::<_, Option<serde_json::Value>>("tracking")
            .map(serde_json::from_value)
            .transpose()
            .map_err(corrupt)?,
        refunds: r
            .get::<_, Option<serde_json::Value>>("refunds")
            .map(serde_json::from_value)
            .transpose()
            .map_err(corrupt)?
            .unwrap_or_default(),
    })
}

pub async fn list(db: &impl GenericClient, id: CheckoutId) -> Result<Vec<OrderView>, StoreError> {
    let stmt = db
        .prepare_cached(
            "SELECT retailer_id, status, retailer_order_id, reason, tracking, refunds
             FROM checkout_orders WHERE checkout_id = $1 ORDER BY retailer_id",
        )
        .await?;
    db.query(&stmt, &[&id.as_uuid()])
        .await?
        .iter()
        .map(view_from_row)
        .collect()
}

/// The orders of a pass from the rows of the claim (see `passes::claim`): one row per cart
/// item, ordered by retailer, with the order's columns and the item's (`id`, `sku`, ...; NULL
/// when that retailer has no item left).
pub(crate) fn work_from_rows(rows: &[tokio_postgres::Row]) -> Result<Vec<OrderWork>, StoreError> {
    let mut orders: Vec<OrderWork> = Vec::new();
    for r in rows {
        let retailer_id = RetailerId::parse(r.get::<_, String>("retailer_id")).map_err(corrupt)?;
        if orders.last().is_none_or(|o| o.retailer_id != retailer_id) {
            orders.push(OrderWork {
                order_url: r.get("order_url"),
                status: OrderStatus::parse(r.get("status")).map_err(corrupt)?,
                idempotency_key: r.get("idempotency_key"),
                key_checkout_id: CheckoutId::from_uuid(r.get("key_checkout_id")),
                attempts: r.get("attempts"),
                lookups: r.get("lookups"),
                retailer_order_id: r.get("retailer_order_id"),
                reason: r.get("reason"),
                next_attempt_at: r.get("next_attempt_at"),
                settle_until: r.get("settle_until"),
                in_doubt_at: r.get("in_doubt_at"),
                items: Vec::new(),
                cancel_requested_at: r.get("cancel_requested_at"),
                cancel_reason: r.get("cancel_reason"),
                cancel_attempts: r.get("cancel_attempts"),
                signing: SealedSecrets::retailer_from_claim_row(&retailer_id, r),
                retailer_id,
            });
        }
        if r.get::<_, Option<i64>>("id").is_some() {
            let item = item_from_row(r)?;
            if let Some(order) = orders.last_mut() {
                order.items.push(item);
            }
        }
    }
    Ok(orders)
}

/// What one pass learnt about one order: its new state, written as a whole.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderUpdate {
    pub retailer_id: RetailerId,
    pub status: OrderStatus,
    pub retailer_order_id: Option<String>,
    pub reason: Option<String>,
    /// Calls made this pass (0 or 1).
    pub attempts_add: i32,
    /// Lookups made this pass (0 or 1).
    pub lookups_add: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub settle_until: Option<DateTime<Utc>>,
    /// See [`OrderWork::in_doubt_at`].
    pub in_doubt_at: Option<DateTime<Utc>>,
    /// See [`OrderWork::cancel_requested_at`]: set by the pass that applies the checkout's
    /// `all_or_nothing` policy, else as read.
    pub cancel_requested_at: Option<DateTime<Utc>>,
    pub cancel_reason: Option<String>,
    /// Cancellation requests made this pass without a definite answer (0 or 1).
    pub cancel_attempts_add: i32,
    /// The status the pass saw. The update is written only if the order still has it: a
    /// retailer's event may have settled the order while the pass ran, and the event wins.
    pub was: OrderStatus,
}

/// The `UPDATE` that writes a pass's order updates from the arrays of [`UpdateColumns`], bound
/// from `$first` on, for the orders of the checkout `checkout` selects (an SQL condition on
/// `o.checkout_id`, such as `= $1`). Each order is written only if it still has the status the
/// pass saw, and a cancellation is only ever added, never taken away (one asked while the pass
/// ran is kept). One text for the pass's record and a reopened checkout's end.
pub(crate) fn apply_updates_sql(first: usize, checkout: &str) -> String {
    let types = [
        "text",
        "text",
        "text",
        "text",
        "int4",
        "int4",
        "timestamptz",
        "timestamptz",
        "timestamptz",
        "text",
        "timestamptz",
        "text",
        "int4",
    ];
    let arrays: Vec<String> = types
        .iter()
        .enumerate()
        .map(|(i, t)| format!("${}::{t}[]", first + i))
        .collect();
    format!(
        "UPDATE checkout_orders o
         SET status = u.status, retailer_order_id = u.order_id, reason = u.reason,
             attempts = o.attempts + u.attempts, lookups = o.lookups + u.lookups,
             next_attempt_at = u.next_at, settle_until = u.settle_until,
             in_doubt_at = u.in_doubt_at,
             cancel_requested_at = coalesce(o.cancel_requested_at, u.cancel_at),
             cancel_reason = coalesce(o.cancel_reason, u.cancel_reason),
             cancel_attempts = o.cancel_attempts + u.cancel_attempts,
             updated_at = now()
         FROM unnest({})
              AS u(retailer_id, status, order_id, reason, attempts, lookups, next_at,
                   settle_until, in_doubt_at, was, cancel_at, cancel_reason, cancel_attempts)
         WHERE o.checkout_id {checkout}
           AND o.retailer_id = u.retailer_id
           AND o.status = u.was",
        arrays.join(", ")
    )
}

/// A pass's order updates as the arrays one statement unnests (`passes::complete`), in the
/// order `$n..$n+12`: retailer, status, retailer order id, reason, attempts and lookups to add,
/// next attempt, settle until, in doubt since, the status the pass saw, cancellation asked at,
/// its reason, cancellation attempts to add.
pub(crate) struct UpdateColumns<'a> {
    retailer: Vec<&'a str>,
    status: Vec<&'a str>,
    order_id: Vec<Option<&'a str>>,
    reason: Vec<Option<&'a str>>,
    attempts: Vec<i32>,
    lookups: Vec<i32>,
    next: Vec<Option<DateTime<Utc>>>,
    settle: Vec<Option<DateTime<Utc>>>,
    in_doubt: Vec<Option<DateTime<Utc>>>,
    was: Vec<&'a str>,
    cancel_at: Vec<Option<DateTime<Utc>>>,
    cancel_reason: Vec<Option<&'a str>>,
    cancel_attempts: Vec<i32>,
}

impl<'a> UpdateColumns<'a> {
    pub(crate) fn new(updates: &'a [OrderUpdate]) -> Self {
        Self {
            retailer: updates.iter().map(|u| u.retailer_id.as_str()).collect(),
            status: updates.iter().map(|u| u.status.as_str()).collect(),
            order_id: updates
                .iter()
                .map(|u| u.retailer_order_id.as_deref())
                .collect(),
            reason: updates.iter().map(|u| u.reason.as_deref()).collect(),
            attempts: updates.iter().map(|u| u.attempts_add).collect(),
            lookups: updates.iter().map(|u| u.lookups_add).collect(),
            next: updates.iter().map(|u| u.next_attempt_at).collect(),
            settle: updates.iter().map(|u| u.settle_until).collect(),
            in_doubt: updates.iter().map(|u| u.in_doubt_at).collect(),
            was: updates.iter().map(|u| u.was.as_str()).collect(),
            cancel_at: updates.iter().map(|u| u.cancel_requested_at).collect(),
            cancel_reason: updates.iter().map(|u| u.cancel_reason.as_deref()).collect(),
            cancel_attempts: updates.iter().map(|u| u.cancel_attempts_add).collect(),
        }
    }

    pub(crate) fn params(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 13] {
        [
            &self.retailer,
            &self.status,
            &self.order_id,
            &self.reason,
            &self.attempts,
            &self.lookups,
            &self.next,
            &self.settle,
            &self.in_doubt,
            &self.was,
            &self.cancel_at,
            &self.cancel_reason,
            &self.cancel_attempts,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::apply_updates_sql;

    #[test]
    fn the_updates_statement_binds_the_thirteen_arrays_from_first_on() {
        let sql = apply_updates_sql(5, "IN (SELECT id FROM recorded)");
        assert!(sql.contains("unnest($5::text[], $6::text[], $7::text[], $8::text[], $9::int4[], $10::int4[], $11::timestamptz[], $12::timestamptz[], $13::timestamptz[], $14::text[], $15::timestamptz[], $16::text[], $17::int4[])"), "{sql}");
        assert!(!sql.contains("$18") && !sql.contains("$4:"), "{sql}");
        assert!(sql.contains("o.checkout_id IN (SELECT id FROM recorded)"));
        assert!(apply_updates_sql(2, "= $1").contains("unnest($2::text[]"));
    }
}
