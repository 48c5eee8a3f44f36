//! The worker's rules, case by case.

use super::*;
use icon_domain::{CheckoutId, RetailerId};

pub(super) fn settings() -> WorkerSettings {
    WorkerSettings::from_env(&crate::settings::test_env([
        ("ICON_RETAILER_MAX_ATTEMPTS", "3"),
        ("ICON_RETAILER_SETTLE_SCHEDULE", "10s,1m"),
        ("ICON_RETAILER_SETTLE_WITHIN", "5m"),
    ]))
    .unwrap()
}

pub(super) fn order(status: OrderStatus, attempts: i32) -> OrderWork {
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
        cancel_requested_at: None,
        cancel_reason: None,
        cancel_attempts: 0,
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
