//! One retailer order of a checkout: how the resource and the callback show it, and what the
//! worker needs to make progress on it.

use crate::{carts::CartItem, error::corrupt, GenericClient, StoreError};
use chrono::{DateTime, Utc};
use icon_domain::{CheckoutId, OrderStatus, RetailerId};

#[derive(Debug, Clone)]
pub struct OrderView {
    pub retailer_id: RetailerId,
    pub status: OrderStatus,
    pub retailer_order_id: Option<String>,
    pub reason: Option<String>,
}

/// The callback shows an order as the resource does.
impl From<OrderView> for icon_contracts::OrderOutcome {
    fn from(o: OrderView) -> Self {
        Self {
            retailer_id: o.retailer_id,
            status: o.status,
            retailer_order_id: o.retailer_order_id,
            reason: o.reason,
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
    pub items: Vec<CartItem>,
}

/// What a pass should do for one order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Send (or re-send, with the same key) the order.
    Place,
    /// Ask the retailer what became of the key.
    Lookup,
}

impl OrderWork {
    /// Still moving: not yet answered, or `unknown` and being settled. The checkout finishes
    /// once no order is open.
    pub fn is_open(&self) -> bool {
        match self.status {
            OrderStatus::Pending => true,
            OrderStatus::Unknown => self.settle_until.is_some(),
            _ => false,
        }
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
            ..self.clone()
        }
    }

    pub fn view(&self) -> OrderView {
        OrderView {
            retailer_id: self.retailer_id.clone(),
            status: self.status,
            retailer_order_id: self.retailer_order_id.clone(),
            reason: self.reason.clone(),
        }
    }

    /// What is due for this order at `now`, if anything.
    pub fn due(&self, now: DateTime<Utc>) -> Option<Step> {
        if !self.is_open() || self.next_attempt_at.is_some_and(|at| at > now) {
            return None;
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
    })
}

pub async fn list(db: &impl GenericClient, id: CheckoutId) -> Result<Vec<OrderView>, StoreError> {
    let stmt = db
        .prepare_cached(
            "SELECT retailer_id, status, retailer_order_id, reason FROM checkout_orders
             WHERE checkout_id = $1 ORDER BY retailer_id",
        )
        .await?;
    db.query(&stmt, &[&id.as_uuid()])
        .await?
        .iter()
        .map(view_from_row)
        .collect()
}

/// Every order of a checkout with the cart's items for its retailer.
pub async fn work(
    db: &impl GenericClient,
    id: CheckoutId,
    items: &[CartItem],
) -> Result<Vec<OrderWork>, StoreError> {
    let stmt = db
        .prepare_cached(
            "SELECT retailer_id, order_url, status, idempotency_key, key_checkout_id, attempts,
                    lookups, retailer_order_id, reason, next_attempt_at, settle_until
             FROM checkout_orders WHERE checkout_id = $1 ORDER BY retailer_id",
        )
        .await?;
    db.query(&stmt, &[&id.as_uuid()])
        .await?
        .iter()
        .map(|r| {
            let retailer_id = RetailerId::parse(r.get::<_, String>(0)).map_err(corrupt)?;
            Ok(OrderWork {
                items: items
                    .iter()
                    .filter(|i| i.retailer_id == retailer_id)
                    .cloned()
                    .collect(),
                retailer_id,
                order_url: r.get(1),
                status: OrderStatus::parse(r.get(2)).map_err(corrupt)?,
                idempotency_key: r.get(3),
                key_checkout_id: CheckoutId::from_uuid(r.get(4)),
                attempts: r.get(5),
                lookups: r.get(6),
                retailer_order_id: r.get(7),
                reason: r.get(8),
                next_attempt_at: r.get(9),
                settle_until: r.get(10),
            })
        })
        .collect()
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
}

/// Writes a pass's order updates in one statement.
pub(crate) async fn apply(
    db: &impl GenericClient,
    id: CheckoutId,
    updates: &[OrderUpdate],
) -> Result<(), StoreError> {
    if updates.is_empty() {
        return Ok(());
    }
    let retailer: Vec<&str> = updates.iter().map(|u| u.retailer_id.as_str()).collect();
    let status: Vec<&str> = updates.iter().map(|u| u.status.as_str()).collect();
    let order_id: Vec<Option<&str>> = updates
        .iter()
        .map(|u| u.retailer_order_id.as_deref())
        .collect();
    let reason: Vec<Option<&str>> = updates.iter().map(|u| u.reason.as_deref()).collect();
    let attempts: Vec<i32> = updates.iter().map(|u| u.attempts_add).collect();
    let lookups: Vec<i32> = updates.iter().map(|u| u.lookups_add).collect();
    let next: Vec<Option<DateTime<Utc>>> = updates.iter().map(|u| u.next_attempt_at).collect();
    let settle: Vec<Option<DateTime<Utc>>> = updates.iter().map(|u| u.settle_until).collect();
    let stmt = db
        .prepare_cached(
            "UPDATE checkout_orders o
             SET status = u.status, retailer_order_id = u.order_id, reason = u.reason,
                 attempts = o.attempts + u.attempts, lookups = o.lookups + u.lookups,
                 next_attempt_at = u.next_at, settle_until = u.settle_until, updated_at = now()
             FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::int4[], $7::int4[],
                         $8::timestamptz[], $9::timestamptz[])
                  AS u(retailer_id, status, order_id, reason, attempts, lookups, next_at,
                       settle_until)
             WHERE o.checkout_id = $1 AND o.retailer_id = u.retailer_id",
        )
        .await?;
    db.execute(
        &stmt,
        &[
            &id.as_uuid(),
            &retailer,
            &status,
            &order_id,
            &reason,
            &attempts,
            &lookups,
            &next,
            &settle,
        ],
    )
    .await?;
    Ok(())
}
