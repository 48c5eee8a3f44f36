//! Life cycles. Stored in PostgreSQL as text; parsing back refuses anything unknown so a bad row
//! is an error, not a silent default.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, thiserror::Error)]
#[error("unknown {kind} `{value}`")]
pub struct UnknownStatus {
    kind: &'static str,
    value: String,
}

macro_rules! text_enum {
    ($(#[$m:meta])* $name:ident, $kind:literal { $($(#[$vm:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vm])* $variant),+ }

        impl $name {
            pub fn as_str(&self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
            pub fn parse(s: &str) -> Result<Self, UnknownStatus> {
                match s {
                    $($text => Ok(Self::$variant),)+
                    other => Err(UnknownStatus { kind: $kind, value: other.to_owned() }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum!(
    /// A checkout: `queued` until a worker takes it, `processing` while orders are placed, then
    /// one of the final states. `cancelling` while a cancellation (`DELETE`, or an
    /// `all_or_nothing` checkout undoing its orders) is under way; it ends `cancelled` (nothing
    /// remains placed), `partially_cancelled` (something does: a retailer refused, or only some
    /// orders were cancelled) or, for an `all_or_nothing` checkout, `failed`.
    CheckoutStatus, "checkout status" {
        Queued => "queued",
        Processing => "processing",
        Completed => "completed",
        PartiallyCompleted => "partially_completed",
        Failed => "failed",
        Cancelling => "cancelling",
        Cancelled => "cancelled",
        PartiallyCancelled => "partially_cancelled",
    }
);

impl CheckoutStatus {
    pub fn is_final(&self) -> bool {
        !matches!(self, Self::Queued | Self::Processing | Self::Cancelling)
    }

    /// A final checkout that no longer holds its cart: another checkout of the cart may start.
    /// Nothing remains placed by it (`partially_cancelled` keeps the cart: orders remain).
    pub fn frees_cart(&self) -> bool {
        matches!(self, Self::Failed | Self::Cancelled)
    }

    /// The final state of a checkout given its orders' outcomes: an order counts if it was
    /// placed and is still on (confirmed, or already shipped or delivered).
    pub fn from_orders(orders: &[OrderStatus]) -> Self {
        let confirmed = orders.iter().filter(|o| o.is_placed()).count();
        match confirmed {
            0 => Self::Failed,
            n if n == orders.len() => Self::Completed,
            _ => Self::PartiallyCompleted,
        }
    }
}

impl CheckoutStatus {
    /// The final state of a checkout given its orders' final states. With no cancellation
    /// asked and the policy kept, as [`Self::from_orders`]. Otherwise: `partially_cancelled`
    /// if any order may remain placed (a retailer refused, an order stayed `unknown`, or only
    /// some orders were cancelled); else `failed` when the `all_or_nothing` policy failed
    /// (`policy_failed`), `cancelled` when a cancellation was asked.
    pub fn at_end(orders: &[OrderStatus], cancelled_some: bool, policy_failed: bool) -> Self {
        let remains = orders.iter().any(|o| o.may_remain_placed());
        match (cancelled_some || policy_failed, remains) {
            (false, _) => Self::from_orders(orders),
            (true, true) => Self::PartiallyCancelled,
            (true, false) if policy_failed => Self::Failed,
            (true, false) => Self::Cancelled,
        }
    }
}

text_enum!(
    /// One retailer's order within a checkout.
    OrderStatus, "order status" {
        Pending => "pending",
        Accepted => "accepted",
        Confirmed => "confirmed",
        Rejected => "rejected",
        Failed => "failed",
        Unknown => "unknown",
        Shipped => "shipped",
        Delivered => "delivered",
        Cancelled => "cancelled",
        Refunded => "refunded",
        Cancelling => "cancelling",
        CancelRefused => "cancel_refused",
    }
);

text_enum!(
    /// What a checkout does when one of its orders is not placed: `best_effort` keeps the
    /// others (a partial outcome); `all_or_nothing` stops placing and cancels every order
    /// already placed, so the shopper gets everything or nothing.
    #[derive(Default)]
    CheckoutPolicy, "checkout policy" {
        #[default]
        BestEffort => "best_effort",
        AllOrNothing => "all_or_nothing",
    }
);

/// `pending` until the retailer answers; `accepted` when it answered 202 (it has the order and
/// reports the outcome later by event); `confirmed` (placed); `rejected` (the retailer said
/// no: a 422 or an `order.rejected` event) or `failed` (not placed: another definite 4xx, or a
/// status lookup that found no order); `unknown` when ICON cannot tell whether the retailer
/// placed it (no answer, 5xx, timeout after the request may have arrived, an `accepted` order
/// never reported on). An `unknown` order is settled by status lookup and stays `unknown` only
/// if the retailer never answers one. After confirmation the retailer's events move an order
/// on: `shipped`, `delivered`, `cancelled`, `refunded` (`icon_contracts::retailer` has the
/// rules). A cancellation ICON asked for makes it `cancelling` until the retailer answers:
/// `cancelled`, or `cancel_refused` (the order remains placed).
impl OrderStatus {
    /// The retailer has answered for good (a checkout waits for none but `pending` and
    /// `accepted` orders; the states after confirmation come by event, after the checkout).
    pub fn is_final(&self) -> bool {
        !matches!(self, Self::Pending | Self::Accepted | Self::Cancelling)
    }

    /// Placed or possibly placed, and not undone: what a cancellation that ended leaves the
    /// shopper with (a callback says exactly which these are).
    pub fn may_remain_placed(&self) -> bool {
        self.is_placed() || matches!(self, Self::Unknown)
    }

    /// Placed and not (yet) undone: what makes a checkout `completed`.
    pub fn is_placed(&self) -> bool {
        matches!(
            self,
            Self::Confirmed | Self::Shipped | Self::Delivered | Self::CancelRefused
        )
    }

    /// The retailer said this order was not placed. A later checkout of the same cart sends a
    /// new idempotency key to a retailer whose earlier order is not placed or was undone
    /// (`cancelled`, `refunded`: `icon_create_checkout`, migrations 0012 and 0013); for every
    /// other status the earlier key is reused: the order may exist.
    pub fn not_placed(&self) -> bool {
        matches!(self, Self::Rejected | Self::Failed)
    }
}

text_enum!(
    /// A notification (callback, push to one device, or e-mail): `pending` before its first
    /// attempt, `retrying` after a failed one, then `delivered` or `failed` (given up, the
    /// receiver answered 410 Gone, or the device was unregistered); `not_configured` when the
    /// notifier has no credentials for its channel (nothing was sent).
    NotificationState, "notification state" {
        Pending => "pending",
        Retrying => "retrying",
        Delivered => "delivered",
        Failed => "failed",
        NotConfigured => "not_configured",
    }
);

impl NotificationState {
    pub fn is_final(&self) -> bool {
        matches!(self, Self::Delivered | Self::Failed | Self::NotConfigured)
    }

    /// Given up without being delivered, so an operator or the owner may send it again.
    pub fn is_redeliverable(&self) -> bool {
        matches!(self, Self::Failed | Self::NotConfigured)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_status_from_orders() {
        use OrderStatus::*;
        assert_eq!(
            CheckoutStatus::from_orders(&[Confirmed, Confirmed]),
            CheckoutStatus::Completed
        );
        assert_eq!(
            CheckoutStatus::from_orders(&[Confirmed, Rejected]),
            CheckoutStatus::PartiallyCompleted
        );
        assert_eq!(
            CheckoutStatus::from_orders(&[Failed, Rejected]),
            CheckoutStatus::Failed
        );
        assert_eq!(
            CheckoutStatus::from_orders(&[Confirmed, Unknown]),
            CheckoutStatus::PartiallyCompleted
        );
        assert_eq!(
            CheckoutStatus::from_orders(&[Unknown]),
            CheckoutStatus::Failed
        );
        assert!(Rejected.not_placed() && Failed.not_placed());
        assert!(!Unknown.not_placed() && !Confirmed.not_placed() && !Pending.not_placed());
        assert_eq!(
            CheckoutStatus::from_orders(&[Shipped, Delivered]),
            CheckoutStatus::Completed
        );
        assert_eq!(
            CheckoutStatus::from_orders(&[Confirmed, Cancelled]),
            CheckoutStatus::PartiallyCompleted
        );
        assert!(!Accepted.is_final() && !Pending.is_final() && Shipped.is_final());
    }

    #[test]
    fn end_after_cancellation() {
        use OrderStatus::*;
        let at_end = CheckoutStatus::at_end;
        assert_eq!(
            at_end(&[Confirmed], false, false),
            CheckoutStatus::Completed
        );
        assert_eq!(
            at_end(&[Cancelled, Rejected], true, false),
            CheckoutStatus::Cancelled
        );
        assert_eq!(
            at_end(&[Cancelled, CancelRefused], true, false),
            CheckoutStatus::PartiallyCancelled
        );
        // One order cancelled, the other never asked: it remains placed.
        assert_eq!(
            at_end(&[Cancelled, Confirmed], true, false),
            CheckoutStatus::PartiallyCancelled
        );
        assert_eq!(
            at_end(&[Rejected, Cancelled], true, true),
            CheckoutStatus::Failed
        );
        assert_eq!(
            at_end(&[Rejected, Rejected], false, true),
            CheckoutStatus::Failed
        );
        assert_eq!(
            at_end(&[Rejected, CancelRefused], true, true),
            CheckoutStatus::PartiallyCancelled
        );
        assert_eq!(
            at_end(&[Failed, Unknown], true, true),
            CheckoutStatus::PartiallyCancelled
        );
        assert!(
            CheckoutStatus::Cancelled.frees_cart()
                && !CheckoutStatus::PartiallyCancelled.frees_cart()
        );
        assert!(!CheckoutStatus::Cancelling.is_final() && !OrderStatus::Cancelling.is_final());
    }

    #[test]
    fn round_trip_text() {
        for s in [
            "queued",
            "processing",
            "completed",
            "partially_completed",
            "failed",
            "cancelling",
            "cancelled",
            "partially_cancelled",
        ] {
            assert_eq!(CheckoutStatus::parse(s).unwrap().as_str(), s);
        }
        assert!(CheckoutStatus::parse("done").is_err());
    }
}
