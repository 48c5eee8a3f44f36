//! What recording a pass comes to, worked out before anything is written: the final
//! transition and its `checkout.finished`, or the next pass's `checkout.due` ([`plan`]); then
//! written (`record.rs`).

use super::{Completed, Pass};
use crate::orders::{OrderUpdate, OrderView, OrderWork};
use crate::outbox::OutboxRow;
use chrono::{DateTime, Utc};
use icon_contracts::{topology, CheckoutDue, CheckoutFinished, Envelope, OrderOutcome};
use icon_domain::{CheckoutId, CheckoutPolicy, CheckoutStatus, OrderStatus};

/// What recording a pass comes to, worked out before anything is written.
pub(super) enum Plan {
    /// The checkout had ended and a cancellation reopened it: its end is a later numbered
    /// event (`reopen::finish_reopened`), not this statement's.
    Reopened {
        now_orders: Vec<OrderWork>,
        reason: Option<String>,
    },
    Record(Box<Record>),
}

/// A pass's record as [`COMPLETE_STATEMENT`] (or its batched form) writes it.
pub(super) struct Record {
    /// The final status, or `None` while orders are open.
    pub(super) status: Option<&'static str>,
    pub(super) event: Option<CheckoutFinished>,
    /// When the next pass is due, while orders are open.
    pub(super) next_due_at: Option<DateTime<Utc>>,
    /// The end's time, the same in the message and the row (event 1's time everywhere).
    pub(super) ended_at: Option<DateTime<Utc>>,
    /// `checkout.finished`, or the next pass's `checkout.due`.
    pub(super) message: OutboxRow,
    /// `cancelling` while an order's cancellation is open.
    pub(super) interim: Option<&'static str>,
    pub(super) reason: Option<String>,
}

impl Record {
    /// The outcome once written: the message with its outbox id, and for a finished checkout
    /// whether a cancellation asked meanwhile is still to carry out.
    pub(super) fn written(self, outbox_id: i64, cancel_pending: bool) -> Completed {
        let message = OutboxRow {
            id: outbox_id,
            ..self.message
        };
        match (self.event, self.next_due_at) {
            (Some(event), _) => Completed::Finished {
                event: Box::new(event),
                message: Some(message),
                cancel_pending,
            },
            (None, Some(at)) => Completed::Next { at, message },
            (None, None) => unreachable!("a pass either finishes or schedules the next"),
        }
    }
}

/// Works out a pass's record from its orders' updates: the final transition and
/// `checkout.finished` once no order is open, else the next pass's `checkout.due` (routed by
/// `route`) at the earliest open order's next attempt.
pub(super) fn plan(
    pass: &Pass,
    updates: &[OrderUpdate],
    failure: Option<&str>,
    route: &impl Fn(DateTime<Utc>) -> String,
) -> Plan {
    let id = pass.checkout_id;
    let now_orders = pass.orders_after(updates);
    let next = now_orders
        .iter()
        .filter(|o| o.is_open())
        .map(|o| o.next_attempt_at.unwrap_or_else(Utc::now))
        .min();
    let reason = failure.map(str::to_owned).or_else(|| pass.reason.clone());
    if next.is_none() && pass.reopened {
        return Plan::Reopened { now_orders, reason };
    }
    let cancelling = now_orders.iter().any(|o| o.cancel_asked() && o.is_open());
    let interim = cancelling.then_some(CheckoutStatus::Cancelling.as_str());
    Plan::Record(Box::new(match next {
        None => {
            let event = finished_event(pass, &now_orders, reason.clone());
            let envelope = finished_envelope(event.clone());
            let message = OutboxRow::new(
                topology::EVENTS_EXCHANGE,
                topology::CHECKOUT_FINISHED,
                &envelope,
            );
            Record {
                status: Some(event.status.as_str()),
                event: Some(event),
                next_due_at: None,
                ended_at: Some(envelope.occurred_at),
                message,
                interim,
                reason,
            }
        }
        Some(at) => Record {
            status: None,
            event: None,
            next_due_at: Some(at),
            ended_at: None,
            message: due_message(id, pass.pass, at, &route(at)),
            interim,
            reason,
        },
    }))
}

/// `checkout.finished` with its `occurred_at` to the microsecond, as PostgreSQL keeps times, so
/// the checkout's row can hold exactly the instant the message announces: the first attempt of
/// event 1 (from the message) and its retries and listing (from the row) tell the same time.
pub(super) fn finished_envelope(event: CheckoutFinished) -> Envelope<CheckoutFinished> {
    use chrono::SubsecRound;
    let mut envelope = Envelope::new(event);
    envelope.occurred_at = envelope.occurred_at.trunc_subsecs(6);
    envelope
}

/// The checkout's end given its orders as they end: see [`CheckoutStatus::at_end`]. `reason`
/// is set once the `all_or_nothing` policy failed, or when the worker gave up.
pub(super) fn finished_event(
    pass: &Pass,
    orders: &[OrderWork],
    reason: Option<String>,
) -> CheckoutFinished {
    let statuses: Vec<OrderStatus> = orders.iter().map(|o| o.status).collect();
    let cancelled_some = orders.iter().any(OrderWork::cancel_asked);
    // A reason kept for a processing checkout is the policy's failure (the worker's giving up
    // finishes it at once, through `give_up`).
    let policy_failed = pass.policy == CheckoutPolicy::AllOrNothing && reason.is_some();
    ended_event(
        pass,
        CheckoutStatus::at_end(&statuses, cancelled_some, policy_failed),
        orders.iter().map(OrderWork::view).collect(),
        reason,
    )
}

pub(super) fn ended_event(
    pass: &Pass,
    status: CheckoutStatus,
    orders: Vec<OrderView>,
    reason: Option<String>,
) -> CheckoutFinished {
    CheckoutFinished {
        checkout_id: pass.checkout_id,
        cart_id: pass.cart_id,
        status,
        source_url: pass.resource_url.clone(),
        orders: orders.into_iter().map(OrderOutcome::from).collect(),
        reason,
    }
}

pub(super) fn due_message(
    id: CheckoutId,
    after_pass: i32,
    at: DateTime<Utc>,
    routing_key: &str,
) -> OutboxRow {
    let due = Envelope::new(CheckoutDue {
        checkout_id: id,
        after_pass,
        not_before: at,
        wake: false,
    });
    OutboxRow::new("", routing_key, &due)
}
