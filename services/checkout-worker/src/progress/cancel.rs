//! Cancelling an order (issue 18): what a cancellation's answer, and a lookup while one is
//! under way, mean for the order; and the `all_or_nothing` policy, which asks for them.
//!
//! - Asked, never sent (see `OrderWork::due`): `cancelled` without a call.
//! - 200 `cancelled`: `cancelled`. 409 (or another definite 4xx): `cancel_refused`, the order
//!   remains placed.
//! - 202: `cancelling` until the retailer's `order.cancelled` or `order.cancel_refused`; with
//!   none within `ICON_RETAILER_CONFIRM_WITHIN`, looked up on the settle schedule until
//!   `ICON_RETAILER_SETTLE_WITHIN`.
//! - Unsure (5xx, timeout, dropped connection): sent again with the same key after the retry
//!   wait, up to `ICON_RETAILER_MAX_ATTEMPTS` requests, then settled by lookup.
//! - A lookup that finds the order cancelled settles it; one that finds no order settles it as
//!   cancelled (nothing remains placed), but only once no placement with the key can still be
//!   in progress (`ICON_RETAILER_NOT_PLACED_AFTER`, as for placing).
//! - Never settled within the window: `cancel_refused`, the reason saying that the retailer
//!   never confirmed it, so the callback lists the order among those that remain placed:
//!   ICON never guesses that an order was undone.

use super::{later, unchanged};
use crate::retailer::cancel::CancelAnswer;
use crate::retailer::LookupAnswer;
use crate::settings::WorkerSettings;
use chrono::{DateTime, Utc};
use icon_domain::{CheckoutPolicy, OrderStatus};
use icon_store::orders::{OrderUpdate, OrderWork};
use icon_store::passes::Pass;

/// The reason an order's cancellation gives, as asked.
pub fn reason(order: &OrderWork) -> &str {
    order
        .cancel_reason
        .as_deref()
        .unwrap_or("cancelled by the shopper")
}

/// An order asked to be cancelled that was never sent: cancelled, no call made.
pub fn withdrawn(order: &OrderWork) -> OrderUpdate {
    OrderUpdate {
        status: OrderStatus::Cancelled,
        reason: Some(format!(
            "cancelled before it was sent to the retailer: {}",
            reason(order)
        )),
        next_attempt_at: None,
        settle_until: None,
        ..unchanged(order)
    }
}

/// After a cancellation request.
pub fn after_cancel(
    order: &OrderWork,
    answer: CancelAnswer,
    now: DateTime<Utc>,
    s: &WorkerSettings,
) -> OrderUpdate {
    let base = OrderUpdate {
        next_attempt_at: None,
        settle_until: None,
        ..unchanged(order)
    };
    match answer {
        CancelAnswer::Cancelled => OrderUpdate {
            status: OrderStatus::Cancelled,
            reason: Some(reason(order).to_owned()),
            ..base
        },
        CancelAnswer::Accepted => {
            let ask_at = later(now, s.confirm_within);
            OrderUpdate {
                status: OrderStatus::Cancelling,
                reason: Some(
                    "the retailer accepted the cancellation and reports its decision \
                              later"
                        .into(),
                ),
                next_attempt_at: Some(ask_at),
                settle_until: Some(later(ask_at, s.settle_within)),
                ..base
            }
        }
        CancelAnswer::Refused { reason } => OrderUpdate {
            status: OrderStatus::CancelRefused,
            reason: Some(reason),
            ..base
        },
        CancelAnswer::NoSuchOrder => match still_in_doubt(order, now, s) {
            Some(believable) => OrderUpdate {
                status: OrderStatus::Cancelling,
                reason: Some(format!(
                    "the retailer has no order for this key yet, but a request with it may \
                     still be in progress there until {believable}; asking again"
                )),
                cancel_attempts_add: 1,
                next_attempt_at: Some(later(now, s.settle_wait(order.cancel_attempts))),
                ..base
            },
            None => not_placed(base),
        },
        CancelAnswer::Unsure { why, retry_after } => {
            let attempt = order.cancel_attempts + 1;
            let base = OrderUpdate {
                status: OrderStatus::Cancelling,
                cancel_attempts_add: 1,
                ..base
            };
            if attempt < s.retailer_max_attempts as i32 {
                OrderUpdate {
                    reason: Some(format!(
                        "cancellation attempt {attempt} unanswered: {why}; retrying"
                    )),
                    next_attempt_at: Some(later(now, s.retry_wait(attempt, retry_after))),
                    ..base
                }
            } else if s.settle_within.is_zero() {
                never_confirmed(
                    base,
                    format!(
                        "no answer to {attempt} cancellation requests ({why}); status \
                             lookups are off (ICON_RETAILER_SETTLE_WITHIN=0s)"
                    ),
                )
            } else {
                OrderUpdate {
                    reason: Some(format!(
                        "no answer to {attempt} cancellation requests ({why}); settling by \
                         status lookup"
                    )),
                    next_attempt_at: Some(later(now, s.settle_wait(0))),
                    settle_until: Some(later(now, s.settle_within)),
                    ..base
                }
            }
        }
    }
}

/// A lookup of an order whose cancellation is under way (`cancelling`, waiting for the
/// retailer's word).
pub fn after_cancel_lookup(
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
    let why = match answer {
        LookupAnswer::Placed { status, .. }
            if matches!(status.as_str(), "cancelled" | "canceled") =>
        {
            return OrderUpdate {
                status: OrderStatus::Cancelled,
                reason: Some(reason(order).to_owned()),
                ..settled
            }
        }
        LookupAnswer::Placed { status, .. } => format!("the retailer still reports it {status}"),
        LookupAnswer::NotPlaced => match still_in_doubt(order, now, s) {
            None => return not_placed(settled),
            Some(believable) => format!(
                "no order found yet, but a request with this key may be in progress until \
                 {believable}"
            ),
        },
        LookupAnswer::Unsure { why } => why,
    };
    let lookups = order.lookups + 1;
    let next = later(now, s.settle_wait(lookups));
    match order.settle_until {
        Some(until) if next <= until => OrderUpdate {
            reason: Some(format!("cancelling: lookup {lookups}: {why}")),
            next_attempt_at: Some(next),
            settle_until: Some(until),
            ..settled
        },
        _ => never_confirmed(
            settled,
            format!(
                "the retailer did not confirm the cancellation within {:?} of lookups (last: \
                 {why})",
                s.settle_within
            ),
        ),
    }
}

/// `None` once a 404 for the order's key can be believed; else until when it cannot.
fn still_in_doubt(
    order: &OrderWork,
    now: DateTime<Utc>,
    s: &WorkerSettings,
) -> Option<DateTime<Utc>> {
    order
        .in_doubt_at
        .map(|at| later(at, s.not_placed_after))
        .filter(|believable| now < *believable)
}

/// The retailer has no such order: nothing remains placed.
fn not_placed(base: OrderUpdate) -> OrderUpdate {
    OrderUpdate {
        status: OrderStatus::Cancelled,
        reason: Some("the retailer has no order for this key: nothing remains placed".into()),
        ..base
    }
}

/// The cancellation was never confirmed: as far as ICON knows the order remains placed.
fn never_confirmed(base: OrderUpdate, why: String) -> OrderUpdate {
    OrderUpdate {
        status: OrderStatus::CancelRefused,
        reason: Some(format!("{why}; the order may remain placed")),
        next_attempt_at: None,
        settle_until: None,
        ..base
    }
}

/// The `all_or_nothing` policy, after a pass's calls (`updates`): if an order of the checkout
/// has ended not placed (rejected, failed, or `unknown` for good), every order that may be
/// placed is asked to be cancelled (the unplaced ones are left alone), and the checkout's
/// `reason` names the order that failed it (returned). Applied once per checkout: after that,
/// `pass.reason` is set.
pub fn apply_policy(
    pass: &Pass,
    updates: &mut Vec<OrderUpdate>,
    now: DateTime<Utc>,
) -> Option<String> {
    if pass.policy != CheckoutPolicy::AllOrNothing || pass.reason.is_some() {
        return None;
    }
    let orders = pass.orders_after(updates);
    let failed = orders.iter().find(|o| fails_policy(o))?;
    let why = format!(
        "all_or_nothing: the order at {} ended {}{}",
        failed.retailer_id,
        failed.status,
        failed
            .reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default()
    );
    let ask = format!(
        "all_or_nothing checkout: the order at {} was not placed",
        failed.retailer_id
    );
    for order in orders
        .iter()
        .filter(|o| !o.cancel_asked() && may_be_placed(o))
    {
        // An `unknown` order still settling is settled first; anything else is cancelled now.
        let settling = order.status == OrderStatus::Unknown && order.settle_until.is_some();
        let mark = |u: &mut OrderUpdate| {
            u.cancel_requested_at = Some(now);
            u.cancel_reason = Some(ask.clone());
            if !settling {
                u.next_attempt_at = None;
            }
        };
        match updates
            .iter_mut()
            .find(|u| u.retailer_id == order.retailer_id)
        {
            Some(u) => mark(u),
            None => {
                let mut u = unchanged(order);
                mark(&mut u);
                updates.push(u);
            }
        }
    }
    Some(why)
}

/// Ends the policy: not placed, or never known to be.
fn fails_policy(o: &OrderWork) -> bool {
    match o.status {
        OrderStatus::Rejected | OrderStatus::Failed => true,
        OrderStatus::Unknown => o.settle_until.is_none(),
        _ => false,
    }
}

fn may_be_placed(o: &OrderWork) -> bool {
    matches!(
        o.status,
        OrderStatus::Pending
            | OrderStatus::Accepted
            | OrderStatus::Confirmed
            | OrderStatus::Shipped
            | OrderStatus::Delivered
            | OrderStatus::Unknown
    )
}

#[cfg(test)]
mod tests;
