//! The retailer protocol's wire types for what a retailer sends ICON: the events it reports an
//! order's life with (`POST /retailers/{retailer_id}/events`, issue 17 §2), and the
//! cancellation ICON asks of a retailer (`POST <order_url>/cancellations`, issue 18) with the
//! answer it expects.
//!
//! One place for both directions of the protocol: ICON's gateway parses these, the retailer
//! simulator builds them, and `docs/retailer-integration.md` documents them. Signing and
//! verifying (Standard Webhooks) is `icon_webhooks`; the requests ICON sends a retailer are
//! built by the checkout worker's `retailer` module.
//!
//! Parsing is lenient about what a retailer may add (unknown fields are ignored, so a retailer
//! can send its own extras) and strict about what ICON acts on: the gateway checks each field
//! (`type` known, `idempotency_key` and `order_id` bounded, `tracking` and `refund` well formed)
//! and answers 422 naming the field.

use chrono::{DateTime, Utc};
use icon_domain::OrderStatus;
use serde::{Deserialize, Serialize};

mod cancellation;

pub use cancellation::*;

/// The largest event body ICON reads; a larger one is answered 413 unread.
pub const MAX_EVENT_BYTES: usize = 64 * 1024;

/// How far an event's `webhook-timestamp` may be from ICON's clock, either way, before it is
/// refused (401) as a replay or a clock gone wrong: five minutes, as Standard Webhooks advises.
pub const EVENT_TOLERANCE_SECS: i64 = 300;

/// What a retailer reports about an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RetailerEventType {
    #[serde(rename = "order.confirmed")]
    Confirmed,
    #[serde(rename = "order.rejected")]
    Rejected,
    #[serde(rename = "order.shipped")]
    Shipped,
    #[serde(rename = "order.delivered")]
    Delivered,
    #[serde(rename = "order.cancelled")]
    Cancelled,
    #[serde(rename = "order.refunded")]
    Refunded,
    /// The retailer will not cancel the order ICON asked it to cancel (it answered the
    /// cancellation 202, then decided): the order remains placed. `reason` says why.
    #[serde(rename = "order.cancel_refused")]
    CancelRefused,
}

impl RetailerEventType {
    pub const ALL: [RetailerEventType; 7] = [
        Self::Confirmed,
        Self::Rejected,
        Self::Shipped,
        Self::Delivered,
        Self::Cancelled,
        Self::Refunded,
        Self::CancelRefused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Confirmed => "order.confirmed",
            Self::Rejected => "order.rejected",
            Self::Shipped => "order.shipped",
            Self::Delivered => "order.delivered",
            Self::Cancelled => "order.cancelled",
            Self::Refunded => "order.refunded",
            Self::CancelRefused => "order.cancel_refused",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The order state this event reports.
    pub fn status(self) -> OrderStatus {
        match self {
            Self::Confirmed => OrderStatus::Confirmed,
            Self::Rejected => OrderStatus::Rejected,
            Self::Shipped => OrderStatus::Shipped,
            Self::Delivered => OrderStatus::Delivered,
            Self::Cancelled => OrderStatus::Cancelled,
            Self::Refunded => OrderStatus::Refunded,
            Self::CancelRefused => OrderStatus::CancelRefused,
        }
    }
}

/// What an event does to an order (see [`transition`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// The order moves to this state (a refund on a refunded order stays `refunded` and adds
    /// the refund).
    Moves(OrderStatus),
    /// The event is older than the order's state, or implied by it (`order.confirmed` for a
    /// shipped order, a second `order.cancelled`): recorded in the history, changes nothing.
    Stale,
    /// The event contradicts the order's state: refused (409 `invalid_transition`), with why.
    Contradicts(String),
}

/// Where a state sits on the placed order's main line: confirmed, shipped, delivered.
fn rank(s: OrderStatus) -> Option<u8> {
    match s {
        OrderStatus::Confirmed | OrderStatus::CancelRefused => Some(1),
        OrderStatus::Shipped => Some(2),
        OrderStatus::Delivered => Some(3),
        _ => None,
    }
}

/// The order state machine for retailers' events. `current` is the order's state and
/// `current_at` when the retailer said it happened (`None` for a state ICON reached itself,
/// from an answer or a lookup); `event` is the event's type and `occurred_at` its time.
///
/// - An order not yet settled (`pending`, `accepted`, `unknown`) takes any event: a later state
///   implies the earlier ones (`order.shipped` implies confirmed).
/// - On the main line (confirmed, shipped, delivered) an order only moves forward; an event
///   behind its state is stale. It may be cancelled until delivered. A refund is added to it
///   and leaves it where it is (a partial refund, a return): the order is still placed.
/// - A rejected order (or one ICON found was never placed) takes nothing else.
/// - A cancelled order takes refunds and becomes `refunded`; a refunded one takes more; an event of the main line that happened
///   before the cancellation or refund arrived late (stale), one after it contradicts it.
/// - `order.cancel_refused` answers a cancellation ICON asked for: it moves only a `cancelling`
///   order (to `cancel_refused`, which stays placed and takes the main line's events, and a
///   later `order.cancelled`). A `cancelling` order takes `order.cancelled`, the retailer's
///   decision on an order it had accepted (`order.rejected`: not placed, nothing to undo), and
///   the main line's later events; `order.confirmed` tells it nothing new.
pub fn transition(
    current: OrderStatus,
    current_at: Option<DateTime<Utc>>,
    event: RetailerEventType,
    occurred_at: DateTime<Utc>,
) -> Transition {
    use OrderStatus as S;
    let to = event.status();
    let contradicts = |what: &str| {
        Transition::Contradicts(format!(
            "`{}` contradicts the order's state `{current}`: {what}",
            event.as_str()
        ))
    };
    // Happened before the state the order is in: a late event, not a contradiction.
    let older = current_at.is_some_and(|at| occurred_at <= at);
    match (current, to) {
        (S::CancelRefused, S::CancelRefused) => return Transition::Stale,
        (S::Cancelling, S::CancelRefused) => return Transition::Moves(to),
        (S::Cancelling, S::Confirmed) => return Transition::Stale,
        (S::Cancelling, _) => return Transition::Moves(to),
        (S::Cancelled | S::Refunded, S::CancelRefused) if older => return Transition::Stale,
        (_, S::CancelRefused) => return contradicts("no cancellation of it is under way"),
        _ => {}
    }
    match current {
        S::Pending | S::Accepted | S::Unknown => Transition::Moves(to),
        S::Rejected | S::Failed if to == S::Rejected => Transition::Stale,
        S::Rejected | S::Failed => contradicts("the order was not placed"),
        S::Confirmed | S::Shipped | S::Delivered | S::CancelRefused => match (rank(to), to) {
            (Some(r), _) if Some(r) > rank(current) => Transition::Moves(to),
            (Some(_), _) => Transition::Stale,
            (None, S::Rejected) => contradicts("the order was already placed"),
            (None, S::Cancelled) if current == S::Delivered => {
                contradicts("a delivered order is refunded, not cancelled")
            }
            // A refund of a placed order (part of it, or a return) leaves it placed: the
            // refund is added and the order keeps its state, so it may still ship.
            (None, S::Refunded) => Transition::Moves(current),
            (None, _) => Transition::Moves(to),
        },
        S::Cancelling => unreachable!("handled above"),
        S::Cancelled | S::Refunded => match to {
            S::Refunded => Transition::Moves(S::Refunded),
            S::Cancelled if current == S::Cancelled => Transition::Stale,
            _ if older => Transition::Stale,
            _ => contradicts("the order was cancelled or refunded before it happened"),
        },
    }
}

/// A parcel's tracking, as the retailer gives it with `order.shipped`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tracking {
    pub carrier: String,
    pub number: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// Money given back, as the retailer reports it with `order.refunded`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    pub amount_minor: i64,
    pub currency: String,
}

/// The body of `POST /retailers/{retailer_id}/events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetailerEvent {
    #[serde(rename = "type")]
    pub kind: RetailerEventType,
    /// The `Idempotency-Key` ICON sent with the order: how ICON finds the order.
    pub idempotency_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    /// When it happened at the retailer (RFC 3339). Orders events that arrive out of order.
    pub occurred_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking: Option<Tracking>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund: Option<Refund>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;
    use OrderStatus as S;
    use RetailerEventType as E;

    #[test]
    fn the_order_state_machine() {
        let t = Utc::now();
        let before = t - Duration::minutes(1);
        let after = t + Duration::minutes(1);
        // Unsettled orders take anything; a later state implies the earlier ones.
        assert_eq!(
            transition(S::Accepted, None, E::Shipped, t),
            Transition::Moves(S::Shipped)
        );
        assert_eq!(
            transition(S::Unknown, None, E::Rejected, t),
            Transition::Moves(S::Rejected)
        );
        assert_eq!(
            transition(S::Pending, None, E::Confirmed, t),
            Transition::Moves(S::Confirmed)
        );
        // Forward only on the main line; behind is stale, whatever the time.
        assert_eq!(
            transition(S::Confirmed, Some(t), E::Delivered, after),
            Transition::Moves(S::Delivered)
        );
        assert_eq!(
            transition(S::Delivered, Some(t), E::Shipped, after),
            Transition::Stale
        );
        assert_eq!(
            transition(S::Shipped, Some(t), E::Confirmed, before),
            Transition::Stale
        );
        assert_eq!(
            transition(S::Shipped, Some(t), E::Shipped, after),
            Transition::Stale
        );
        // Contradictions.
        assert!(matches!(
            transition(S::Rejected, None, E::Shipped, t),
            Transition::Contradicts(_)
        ));
        assert!(matches!(
            transition(S::Failed, None, E::Confirmed, t),
            Transition::Contradicts(_)
        ));
        assert!(matches!(
            transition(S::Confirmed, None, E::Rejected, t),
            Transition::Contradicts(_)
        ));
        assert!(matches!(
            transition(S::Delivered, Some(t), E::Cancelled, after),
            Transition::Contradicts(_)
        ));
        assert!(matches!(
            transition(S::Cancelled, Some(t), E::Confirmed, after),
            Transition::Contradicts(_)
        ));
        // ... unless the event happened before the cancellation: it arrived late.
        assert_eq!(
            transition(S::Cancelled, Some(t), E::Confirmed, before),
            Transition::Stale
        );
        assert_eq!(
            transition(S::Rejected, None, E::Rejected, t),
            Transition::Stale
        );
        // Cancelling and refunding.
        assert_eq!(
            transition(S::Shipped, Some(t), E::Cancelled, after),
            Transition::Moves(S::Cancelled)
        );
        assert_eq!(
            transition(S::Cancelled, Some(t), E::Cancelled, after),
            Transition::Stale
        );
        assert_eq!(
            transition(S::Delivered, Some(t), E::Refunded, after),
            Transition::Moves(S::Delivered)
        );
        assert_eq!(
            transition(S::Cancelled, Some(t), E::Refunded, after),
            Transition::Moves(S::Refunded)
        );
        assert_eq!(
            transition(S::Refunded, Some(t), E::Refunded, after),
            Transition::Moves(S::Refunded)
        );
    }

    #[test]
    fn cancellations_in_the_state_machine() {
        let t = Utc::now();
        let before = t - Duration::minutes(1);
        assert_eq!(
            transition(S::Cancelling, None, E::Cancelled, t),
            Transition::Moves(S::Cancelled)
        );
        assert_eq!(
            transition(S::Cancelling, None, E::CancelRefused, t),
            Transition::Moves(S::CancelRefused)
        );
        assert_eq!(
            transition(S::Cancelling, None, E::Confirmed, t),
            Transition::Stale
        );
        // An accepted order being cancelled may still be rejected: not placed, nothing to undo.
        assert_eq!(
            transition(S::Cancelling, None, E::Rejected, t),
            Transition::Moves(S::Rejected)
        );
        // Refused only where a cancellation was asked.
        assert!(matches!(
            transition(S::Confirmed, None, E::CancelRefused, t),
            Transition::Contradicts(_)
        ));
        assert_eq!(
            transition(S::CancelRefused, Some(t), E::CancelRefused, t),
            Transition::Stale
        );
        assert_eq!(
            transition(S::Cancelled, Some(t), E::CancelRefused, before),
            Transition::Stale
        );
        // A refused cancellation leaves the order placed: it ships, and may still be cancelled.
        assert_eq!(
            transition(S::CancelRefused, Some(t), E::Shipped, t),
            Transition::Moves(S::Shipped)
        );
        assert_eq!(
            transition(S::CancelRefused, Some(t), E::Cancelled, t),
            Transition::Moves(S::Cancelled)
        );
        assert_eq!(cancel_key("c:r"), "c:r:cancel");
    }

    #[test]
    fn wire_names_round_trip() {
        for t in RetailerEventType::ALL {
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, format!("\"{}\"", t.as_str()));
            assert_eq!(RetailerEventType::parse(t.as_str()), Some(t));
        }
        let e: RetailerEvent = serde_json::from_str(
            r#"{"type":"order.shipped","idempotency_key":"k","occurred_at":"2026-12-03T10:00:00Z",
                "tracking":{"carrier":"DHL","number":"123"},"extra":1}"#,
        )
        .unwrap();
        assert_eq!(e.kind, RetailerEventType::Shipped);
        assert_eq!(e.tracking.unwrap().carrier, "DHL");
    }
}
