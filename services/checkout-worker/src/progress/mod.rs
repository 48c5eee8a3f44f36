//! What an answer means for an order's state: the worker's rules, pure and unit-tested.
//!
//! - A placed order is `confirmed`; a refused one `rejected` or `failed` (not placed).
//! - An unsure answer is retried after a capped, doubling wait; once the attempts are spent the
//!   order is `unknown` and settled by status lookups on `ICON_RETAILER_SETTLE_SCHEDULE` until
//!   `ICON_RETAILER_SETTLE_WITHIN`, after which it stays `unknown` for good.
//! - An `accepted` order (the retailer answered 202) waits for the retailer's event; with none
//!   within `ICON_RETAILER_CONFIRM_WITHIN` it is looked up on the settle schedule (a lookup may
//!   answer `accepted`: still waiting) for `ICON_RETAILER_SETTLE_WITHIN`, then ends `unknown`.
//! - A lookup's 404 means "not placed" only once no request with the key can still be in
//!   progress at the retailer: `ICON_RETAILER_NOT_PLACED_AFTER` after the last answer that left
//!   one in doubt (a 409, a timeout, a dropped connection). A retailer still working on the
//!   first request has no order yet; a `failed` order frees the cart, and the next checkout
//!   sends a new key, which the retailer places besides the first: two orders.

pub mod cancel;

use crate::retailer::{LookupAnswer, PlaceAnswer};
use crate::settings::WorkerSettings;
use chrono::{DateTime, Utc};
use icon_domain::OrderStatus;
use icon_store::orders::{OrderUpdate, OrderWork};
use std::time::Duration;

fn later(now: DateTime<Utc>, wait: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX)
}

/// The order as it is, nothing called: the base every update starts from.
fn unchanged(order: &OrderWork) -> OrderUpdate {
    OrderUpdate {
        retailer_id: order.retailer_id.clone(),
        status: order.status,
        retailer_order_id: order.retailer_order_id.clone(),
        reason: order.reason.clone(),
        attempts_add: 0,
        lookups_add: 0,
        next_attempt_at: order.next_attempt_at,
        settle_until: order.settle_until,
        in_doubt_at: order.in_doubt_at,
        cancel_requested_at: order.cancel_requested_at,
        cancel_reason: order.cancel_reason.clone(),
        cancel_attempts_add: 0,
        was: order.status,
    }
}

/// After an order request.
pub fn after_place(
    order: &OrderWork,
    answer: PlaceAnswer,
    now: DateTime<Utc>,
    s: &WorkerSettings,
) -> OrderUpdate {
    let base = OrderUpdate {
        attempts_add: 1,
        next_attempt_at: None,
        settle_until: None,
        ..unchanged(order)
    };
    match answer {
        PlaceAnswer::Confirmed { order_id } => OrderUpdate {
            status: OrderStatus::Confirmed,
            retailer_order_id: order_id,
            reason: None,
            ..base
        },
        PlaceAnswer::Accepted { order_id } => {
            let ask_at = later(now, s.confirm_within);
            OrderUpdate {
                status: OrderStatus::Accepted,
                retailer_order_id: order_id,
                reason: None,
                next_attempt_at: Some(ask_at),
                settle_until: Some(later(ask_at, s.settle_within)),
                ..base
            }
        }
        PlaceAnswer::NotPlaced { status, reason } => OrderUpdate {
            status,
            reason: Some(reason),
            ..base
        },
        PlaceAnswer::Unsure {
            why,
            retry_after,
            in_flight,
        } => {
            let base = OrderUpdate {
                in_doubt_at: if in_flight {
                    Some(now)
                } else {
                    base.in_doubt_at
                },
                ..base
            };
            let attempt = order.attempts + 1;
            if attempt < s.retailer_max_attempts as i32 {
                OrderUpdate {
                    status: OrderStatus::Pending,
                    reason: Some(format!("attempt {attempt} unanswered: {why}; retrying")),
                    next_attempt_at: Some(later(now, s.retry_wait(attempt, retry_after))),
                    ..base
                }
            } else if s.settle_within.is_zero() {
                OrderUpdate {
                    status: OrderStatus::Unknown,
                    reason: Some(format!(
                        "no answer after {attempt} attempts ({why}); status lookups are off                          (ICON_RETAILER_SETTLE_WITHIN=0s)"
                    )),
                    ..base
                }
            } else {
                OrderUpdate {
                    status: OrderStatus::Unknown,
                    reason: Some(format!(
                        "no answer after {attempt} attempts ({why}); settling by status lookup"
                    )),
                    next_attempt_at: Some(later(now, s.settle_wait(0))),
                    settle_until: Some(later(now, s.settle_within)),
                    ..base
                }
            }
        }
    }
}

/// After a status lookup of an `unknown` order.
pub fn after_lookup(
    order: &OrderWork,
    answer: LookupAnswer,
    now: DateTime<Utc>,
    s: &WorkerSettings,
) -> OrderUpdate {
    let settled = OrderUpdate {
        lookups_add: 1,
        next_attempt_at: None,
        settle_until: None,
        ..unchanged(order)
    };
    match order.status {
        OrderStatus::Accepted => return after_accepted_lookup(order, answer, now, s, settled),
        OrderStatus::Cancelling => return cancel::after_cancel_lookup(order, answer, now, s),
        _ => {}
    }
    match answer {
        LookupAnswer::Placed { order_id, status } => match looked_up(&status) {
            Some(OrderStatus::Rejected) => OrderUpdate {
                status: OrderStatus::Rejected,
                retailer_order_id: order_id,
                reason: Some(format!("the retailer reports this order as {status}")),
                ..settled
            },
            Some(placed) => OrderUpdate {
                status: placed,
                retailer_order_id: order_id,
                reason: None,
                ..settled
            },
            // The retailer has it and has not decided (its 202 never reached ICON): the order
            // is `accepted`, waiting for the retailer's event as if the 202 had arrived now.
            None => {
                let ask_at = later(now, s.confirm_within);
                OrderUpdate {
                    status: OrderStatus::Accepted,
                    retailer_order_id: order_id,
                    reason: Some(format!("the retailer reports this order as {status}")),
                    next_attempt_at: Some(ask_at),
                    settle_until: Some(later(ask_at, s.settle_within)),
                    ..settled
                }
            }
        },
        LookupAnswer::NotPlaced => {
            match order.in_doubt_at.map(|at| later(at, s.not_placed_after)) {
                // A request with the key may still be in progress: look again, and keep looking at
                // least until the 404 can be believed.
                Some(believable) if now < believable => {
                    let lookups = order.lookups + 1;
                    let next = later(now, s.settle_wait(lookups));
                    let until = order
                        .settle_until
                        .unwrap_or(now)
                        .max(later(believable, s.settle_wait(lookups)));
                    OrderUpdate {
                    reason: Some(format!(
                        "settling: lookup {lookups} found no order yet, but a request with this                          key may still be in progress at the retailer until {believable}"
                    )),
                    next_attempt_at: Some(next),
                    settle_until: Some(until),
                    ..settled
                }
                }
                _ => OrderUpdate {
                    status: OrderStatus::Failed,
                    reason: Some(
                        "the retailer has no order for this key: it was not placed".into(),
                    ),
                    ..settled
                },
            }
        }
        LookupAnswer::Unsure { why } => {
            let lookups = order.lookups + 1;
            let next = later(now, s.settle_wait(lookups));
            match order.settle_until {
                Some(until) if next <= until => OrderUpdate {
                    reason: Some(format!("settling: lookup {lookups} unanswered ({why})")),
                    next_attempt_at: Some(next),
                    settle_until: Some(until),
                    ..settled
                },
                _ => OrderUpdate {
                    reason: Some(format!(
                        "not settled within {:?}: the retailer may or may not have placed it \
                         (last lookup: {why})",
                        s.settle_within
                    )),
                    ..settled
                },
            }
        }
    }
}

/// What a placed order's lookup status means: `None` while the retailer is still deciding.
fn looked_up(status: &str) -> Option<OrderStatus> {
    match status {
        "accepted" | "pending" | "processing" => None,
        "rejected" | "cancelled" | "canceled" | "failed" => Some(OrderStatus::Rejected),
        "shipped" => Some(OrderStatus::Shipped),
        "delivered" => Some(OrderStatus::Delivered),
        _ => Some(OrderStatus::Confirmed),
    }
}

/// A lookup of an `accepted` order whose retailer has not reported within
/// `ICON_RETAILER_CONFIRM_WITHIN`. The retailer said it has the order, so a 404 is no proof of
/// anything: only an outcome settles it, and without one by `settle_until` it ends `unknown`.
fn after_accepted_lookup(
    order: &OrderWork,
    answer: LookupAnswer,
    now: DateTime<Utc>,
    s: &WorkerSettings,
    settled: OrderUpdate,
) -> OrderUpdate {
    let why = match answer {
        LookupAnswer::Placed { order_id, status } => match looked_up(&status) {
            Some(outcome) => {
                return OrderUpdate {
                    status: outcome,
                    retailer_order_id: order_id.or_else(|| order.retailer_order_id.clone()),
                    reason: (outcome == OrderStatus::Rejected)
                        .then(|| format!("the retailer reports this order as {status}")),
                    ..settled
                }
            }
            None => format!("the retailer still reports it {status}"),
        },
        LookupAnswer::NotPlaced => {
            "the lookup found no order, though the retailer accepted it".into()
        }
        LookupAnswer::Unsure { why } => why,
    };
    let lookups = order.lookups + 1;
    let next = later(now, s.settle_wait(lookups));
    match order.settle_until {
        Some(until) if next <= until => OrderUpdate {
            reason: Some(format!(
                "accepted, no outcome reported yet: lookup {lookups}: {why}"
            )),
            next_attempt_at: Some(next),
            settle_until: Some(until),
            ..settled
        },
        _ => OrderUpdate {
            status: OrderStatus::Unknown,
            reason: Some(format!(
                "accepted by the retailer, but no outcome within {:?} and {:?} of lookups \
                 (last: {why})",
                s.confirm_within, s.settle_within
            )),
            ..settled
        },
    }
}

/// The retailer already has as many calls from this worker as it may: try again a little later.
pub fn postponed(order: &OrderWork, until: DateTime<Utc>) -> OrderUpdate {
    OrderUpdate {
        next_attempt_at: Some(until),
        ..unchanged(order)
    }
}

#[cfg(test)]
mod tests;
