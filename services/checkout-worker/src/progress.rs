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
    if order.status == OrderStatus::Accepted {
        return after_accepted_lookup(order, answer, now, s, settled);
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
mod tests {
    use super::*;
    use icon_domain::{CheckoutId, RetailerId};

    fn settings() -> WorkerSettings {
        WorkerSettings::from_env(&crate::settings::test_env([
            ("ICON_RETAILER_MAX_ATTEMPTS", "3"),
            ("ICON_RETAILER_SETTLE_SCHEDULE", "10s,1m"),
            ("ICON_RETAILER_SETTLE_WITHIN", "5m"),
        ]))
        .unwrap()
    }

    fn order(status: OrderStatus, attempts: i32) -> OrderWork {
        OrderWork {
            retailer_id: RetailerId::parse("acme".to_owned()).unwrap(),
            order_url: "http://127.0.0.1:1/orders".into(),
            status,
            idempotency_key: "k".into(),
            key_checkout_id: CheckoutId::new(),
            attempts,
            lookups: 0,
            retailer_order_id: None,
            reason: None,
            next_attempt_at: None,
            settle_until: None,
            in_doubt_at: None,
            items: vec![],
            signing: icon_store::webhook_secrets::SealedSecrets::none(
                &RetailerId::parse("acme".to_owned()).unwrap(),
            ),
        }
    }

    fn unsure() -> PlaceAnswer {
        PlaceAnswer::Unsure {
            why: "timeout".into(),
            retry_after: None,
            in_flight: true,
        }
    }

    #[test]
    fn a_404_while_a_request_may_be_in_progress_is_no_proof() {
        let s = settings();
        let now = Utc::now();
        // The last attempt timed out: the order is unknown, in doubt since now.
        let u = after_place(&order(OrderStatus::Pending, 2), unsure(), now, &s);
        assert_eq!((u.status, u.in_doubt_at), (OrderStatus::Unknown, Some(now)));
        let mut settling = order(OrderStatus::Unknown, 3).updated(&u);
        settling.settle_until = Some(later(now, Duration::from_secs(60)));

        // A 404 ten seconds later leaves it unknown, looked up again, and settling goes on at
        // least until the 404 can be believed (10 minutes by default).
        let soon = later(now, Duration::from_secs(10));
        let u = after_lookup(&settling, LookupAnswer::NotPlaced, soon, &s);
        assert_eq!(u.status, OrderStatus::Unknown);
        assert_eq!(u.next_attempt_at, Some(later(soon, s.settle_wait(1))));
        assert!(u.settle_until.unwrap() > later(now, s.not_placed_after));

        // Once no request can still be in progress, the 404 means "not placed".
        let after = later(now, s.not_placed_after + Duration::from_secs(1));
        let u = after_lookup(&settling, LookupAnswer::NotPlaced, after, &s);
        assert_eq!(u.status, OrderStatus::Failed);

        // A 503 is a finished request: no doubt recorded, and a later 404 is believed.
        let failed_503 = PlaceAnswer::Unsure {
            why: "503".into(),
            retry_after: None,
            in_flight: false,
        };
        let u = after_place(&order(OrderStatus::Pending, 2), failed_503, now, &s);
        assert_eq!(u.in_doubt_at, None);
    }

    #[test]
    fn unsure_answers_retry_then_become_unknown_and_settle() {
        let s = settings();
        let now = Utc::now();
        let u = after_place(&order(OrderStatus::Pending, 0), unsure(), now, &s);
        assert_eq!(u.status, OrderStatus::Pending);
        assert_eq!(u.next_attempt_at, Some(later(now, s.retry_wait(1, None))));
        let u = after_place(&order(OrderStatus::Pending, 2), unsure(), now, &s);
        assert_eq!(u.status, OrderStatus::Unknown);
        assert_eq!(u.next_attempt_at, Some(later(now, Duration::from_secs(10))));
        assert_eq!(u.settle_until, Some(later(now, Duration::from_secs(300))));

        let mut settling = order(OrderStatus::Unknown, 3);
        settling.settle_until = u.settle_until;
        let found = LookupAnswer::Placed {
            order_id: Some("o-1".into()),
            status: "confirmed".into(),
        };
        let u = after_lookup(&settling, found, now, &s);
        assert_eq!(u.status, OrderStatus::Confirmed);
        assert_eq!(u.retailer_order_id.as_deref(), Some("o-1"));
        assert_eq!(u.settle_until, None);
        let u = after_lookup(&settling, LookupAnswer::NotPlaced, now, &s);
        assert_eq!(u.status, OrderStatus::Failed);
        assert!(u.status.not_placed());
        // An asynchronous retailer whose 202 was lost: the order waits for its event.
        let still = LookupAnswer::Placed {
            order_id: None,
            status: "accepted".into(),
        };
        let u = after_lookup(&settling, still, now, &s);
        assert_eq!(u.status, OrderStatus::Accepted);
        assert_eq!(u.next_attempt_at, Some(later(now, s.confirm_within)));
    }

    #[test]
    fn settling_stops_at_the_deadline_and_the_order_stays_unknown() {
        let s = settings();
        let now = Utc::now();
        let mut settling = order(OrderStatus::Unknown, 3);
        settling.settle_until = Some(later(now, Duration::from_secs(120)));
        let why = || LookupAnswer::Unsure { why: "503".into() };
        let u = after_lookup(&settling, why(), now, &s);
        assert_eq!(u.next_attempt_at, Some(later(now, Duration::from_secs(60))));
        assert!(u.settle_until.is_some());
        settling.lookups = 5;
        let u = after_lookup(&settling, why(), later(now, Duration::from_secs(90)), &s);
        assert_eq!(u.status, OrderStatus::Unknown);
        assert_eq!((u.settle_until, u.next_attempt_at), (None, None));
        assert!(u.reason.unwrap().starts_with("not settled within"));
    }

    #[test]
    fn an_accepted_order_waits_then_is_looked_up_then_ends_unknown() {
        let s = settings();
        let now = Utc::now();
        let accepted = PlaceAnswer::Accepted {
            order_id: Some("o-1".into()),
        };
        let u = after_place(&order(OrderStatus::Pending, 0), accepted, now, &s);
        assert_eq!(u.status, OrderStatus::Accepted);
        assert_eq!(u.next_attempt_at, Some(later(now, s.confirm_within)));
        let waiting = order(OrderStatus::Accepted, 1).updated(&u);
        assert!(waiting.is_open());

        // The lookup still says accepted: look again on the settle schedule.
        let ask = later(now, s.confirm_within);
        let still = || LookupAnswer::Placed {
            order_id: None,
            status: "accepted".into(),
        };
        let u = after_lookup(&waiting, still(), ask, &s);
        assert_eq!(u.status, OrderStatus::Accepted);
        assert_eq!(u.next_attempt_at, Some(later(ask, s.settle_wait(1))));
        // A 404 for an order the retailer accepted proves nothing either.
        let u = after_lookup(&waiting, LookupAnswer::NotPlaced, ask, &s);
        assert_eq!(u.status, OrderStatus::Accepted);
        // An outcome settles it.
        let shipped = LookupAnswer::Placed {
            order_id: None,
            status: "shipped".into(),
        };
        let u = after_lookup(&waiting, shipped, ask, &s);
        assert_eq!(
            (u.status, u.retailer_order_id.as_deref()),
            (OrderStatus::Shipped, Some("o-1"))
        );
        // Past the deadline it ends unknown.
        let late = later(waiting.settle_until.unwrap(), Duration::from_secs(1));
        let u = after_lookup(&waiting, still(), late, &s);
        assert_eq!((u.status, u.next_attempt_at), (OrderStatus::Unknown, None));
        assert!(!order(OrderStatus::Unknown, 1).updated(&u).is_open());
    }

    #[test]
    fn refusals_and_confirmations_are_final() {
        let s = settings();
        let now = Utc::now();
        let u = after_place(
            &order(OrderStatus::Pending, 0),
            PlaceAnswer::NotPlaced {
                status: OrderStatus::Rejected,
                reason: "out of stock".into(),
            },
            now,
            &s,
        );
        assert_eq!(
            (u.status, u.attempts_add, u.next_attempt_at),
            (OrderStatus::Rejected, 1, None)
        );
        let u = postponed(&order(OrderStatus::Pending, 1), now);
        assert_eq!((u.status, u.attempts_add), (OrderStatus::Pending, 0));
    }
}
