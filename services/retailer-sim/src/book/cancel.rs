//! What the book keeps of the cancellations ICON asks for: [`Cancellation`], where one stands on
//! an order not cancelled yet, and [`CancelTarget`], what a cancellation request finds for its
//! key.
//!
//! What to do with a cancellation is decided in [`crate::cancellations`]; the book only keeps the
//! outcome beside the order, so the caller reads and changes both under the one lock and two
//! cancellations of an order never both act on it.

use super::{KeyId, OrderBook, OrderState};
use crate::orders::OrderItem;

/// Where a cancellation stands on an order that is not cancelled (a cancelled one is
/// [`OrderState::Cancelled`], whatever was asked before).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum Cancellation {
    #[default]
    NotAsked,
    /// Answered 202; the event saying how it ended has not been sent yet.
    Pending,
    /// Refused, for this reason: asking again is refused the same way, and the order stays
    /// placed.
    Refused { reason: String },
}

/// What a cancellation request finds for its key.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum CancelTarget {
    /// No order and nothing at work on one: none was placed (a refused placement places none),
    /// or it was rejected after its 202.
    NoOrder,
    /// No order yet, but a request placing one is being processed.
    PlacementInProgress,
    Order(OrderToCancel),
}

/// The order a cancellation is about, as it stands now.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct OrderToCancel {
    pub(crate) order_id: String,
    pub(crate) checkout_id: String,
    /// What the cancellation behaviour is chosen by.
    pub(crate) items: Vec<OrderItem>,
    pub(crate) state: OrderState,
    pub(crate) cancellation: Cancellation,
}

impl OrderBook {
    /// What a cancellation for `key` finds.
    pub(crate) fn cancel_target(&self, key: &KeyId) -> CancelTarget {
        let Some(state) = self.keys.get(key) else {
            return CancelTarget::NoOrder;
        };
        match &state.order {
            Some(o) if matches!(o.state, OrderState::Rejected { .. }) => CancelTarget::NoOrder,
            Some(o) => CancelTarget::Order(OrderToCancel {
                order_id: o.order_id.clone(),
                checkout_id: o.checkout_id.clone(),
                items: o.items.clone(),
                state: o.state.clone(),
                cancellation: o.cancellation.clone(),
            }),
            None if state.in_progress => CancelTarget::PlacementInProgress,
            None => CancelTarget::NoOrder,
        }
    }

    /// Records where the cancellation of the key's order stands; nothing if it has no order.
    pub(crate) fn set_cancellation(&mut self, key: &KeyId, cancellation: Cancellation) {
        if let Some(order) = self.keys.get_mut(key).and_then(|s| s.order.as_mut()) {
            order.cancellation = cancellation;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Arrival;
    use super::*;

    fn key(k: &str) -> KeyId {
        KeyId {
            retailer: None,
            key: k.to_owned(),
        }
    }

    fn place(book: &mut OrderBook, k: &KeyId, state: OrderState) {
        book.place(k, "c1", &[], state, || "sim-1".to_owned());
    }

    #[test]
    fn only_a_placed_order_not_rejected_can_be_cancelled() {
        let mut book = OrderBook::default();
        let k = key("c1:acme");
        assert_eq!(book.cancel_target(&k), CancelTarget::NoOrder);
        assert_eq!(book.arrive(&k, "c1", &[]), Arrival::Claimed { attempt: 1 });
        assert_eq!(book.cancel_target(&k), CancelTarget::PlacementInProgress);
        book.release(&k);
        assert_eq!(book.cancel_target(&k), CancelTarget::NoOrder);

        let reason = "out of stock".to_owned();
        place(&mut book, &k, OrderState::Rejected { reason });
        assert_eq!(book.cancel_target(&k), CancelTarget::NoOrder);

        let other = key("c2:acme");
        place(&mut book, &other, OrderState::Accepted);
        let CancelTarget::Order(order) = book.cancel_target(&other) else {
            panic!("an order to cancel");
        };
        assert_eq!(order.order_id, "sim-1");
        assert_eq!(order.state, OrderState::Accepted);
        assert_eq!(order.cancellation, Cancellation::NotAsked);
    }

    #[test]
    fn a_cancellation_is_kept_with_the_order_and_a_cancelled_order_stays_cancelled() {
        let mut book = OrderBook::default();
        let k = key("c1:acme");
        book.set_cancellation(&k, Cancellation::Pending);
        assert_eq!(
            book.cancel_target(&k),
            CancelTarget::NoOrder,
            "no order, no state"
        );

        place(&mut book, &k, OrderState::Accepted);
        book.set_cancellation(&k, Cancellation::Pending);
        book.set_state(&k, OrderState::Confirmed);
        let CancelTarget::Order(order) = book.cancel_target(&k) else {
            panic!("an order to cancel");
        };
        assert_eq!(
            (order.state, order.cancellation),
            (OrderState::Confirmed, Cancellation::Pending)
        );

        book.set_state(&k, OrderState::Cancelled);
        // A late event of the order's own lifecycle does not undo the cancellation.
        book.set_state(&k, OrderState::Shipped);
        let view = book.order(&k).expect("still placed");
        assert_eq!(view.state, OrderState::Cancelled);
    }
}
