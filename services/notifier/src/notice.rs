//! What one notification announces: one numbered event of a checkout (issue 17 §3), with the
//! checkout's full state.
//!
//! Event 1 is the checkout's end (`checkout.completed`, `checkout.partially_completed`,
//! `checkout.failed`, `checkout.cancelled`, ...), built from `checkout.finished`; events 2 and
//! on are the changes of its orders after it (`order.shipped`, ...), recorded by the gateway
//! when the retailer reported them, and the ends of cancellations asked after it
//! (`checkout.cancelled`, `checkout.partially_cancelled`), recorded by the worker. Every notice carries the checkout's orders as they are when it is loaded (tracking and
//! refunds included), so a receiver that missed one can act on the next.

use chrono::{DateTime, Utc};
use icon_contracts::{CheckoutFinished, OrderOutcome};
use icon_domain::CheckoutStatus;
use icon_store::checkout_events::{self, CheckoutEvent};

#[derive(Debug, Clone)]
pub struct Notice {
    /// The checkout: its final status, its orders now.
    pub checkout: CheckoutFinished,
    /// `checkout.completed`, ..., `order.shipped`, ...
    pub kind: String,
    pub sequence: i32,
    /// When it happened (the checkout's end; the retailer's time for an order's change).
    pub occurred_at: DateTime<Utc>,
    /// When ICON knew it (the end; the event's recording), for the time-to-delivered histogram.
    pub known_at: DateTime<Utc>,
    /// The order an `order.*` event is about, as it is now.
    pub order: Option<OrderOutcome>,
}

impl Notice {
    /// Event 1: the checkout ended `ended` at `finished_at` (a cancellation may have moved it
    /// on since: `checkout` is as it is now).
    pub fn end(
        checkout: CheckoutFinished,
        ended: CheckoutStatus,
        finished_at: DateTime<Utc>,
    ) -> Self {
        Self {
            kind: checkout_events::end_type(ended),
            sequence: 1,
            occurred_at: finished_at,
            known_at: finished_at,
            order: None,
            checkout,
        }
    }

    /// A later event of `checkout`.
    pub fn later(checkout: CheckoutFinished, event: CheckoutEvent) -> Self {
        let order = event.retailer_id.as_ref().and_then(|r| {
            checkout
                .orders
                .iter()
                .find(|o| &o.retailer_id == r)
                .cloned()
        });
        Self {
            kind: event.kind,
            sequence: event.sequence,
            occurred_at: event.occurred_at,
            known_at: event.recorded_at,
            order,
            checkout,
        }
    }

    /// An order's change rather than the checkout's end.
    pub fn is_order_event(&self) -> bool {
        self.sequence > 1
    }
}
