//! Where a placed order stands ([`OrderState`]), and an order as the book shows it
//! ([`OrderView`]).

/// Where an order stands at the simulated retailer. Synchronous behaviours place orders
/// `Confirmed` and leave them there; `async-` ones place them `Accepted` and move them on. A
/// cancellation ICON asked for ([`crate::cancellations`]) ends any of them but `Rejected` in
/// `Cancelled`, for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OrderState {
    /// Answered 202: the retailer has it and has not reported on it yet.
    Accepted,
    Confirmed,
    Shipped,
    Delivered,
    /// Accepted, then refused (`async-reject-`): the order will not be fulfilled.
    Rejected {
        reason: String,
    },
    /// Cancelled at ICON's request: nothing moves it on any more.
    Cancelled,
}

impl OrderState {
    /// The `status` a lookup or a replay shows.
    pub(crate) fn as_str(&self) -> &'static str {
        match self {
            OrderState::Accepted => "accepted",
            OrderState::Confirmed => "confirmed",
            OrderState::Shipped => "shipped",
            OrderState::Delivered => "delivered",
            OrderState::Rejected { .. } => "rejected",
            OrderState::Cancelled => "cancelled",
        }
    }
}

/// An order placed for a key, as it stands now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OrderView {
    pub(crate) order_id: String,
    pub(crate) state: OrderState,
}
