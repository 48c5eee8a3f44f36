//! The cancellation rules and the `all_or_nothing` policy, case by case.

use super::*;
use crate::progress::after_lookup;
use crate::progress::tests::{order, settings};
use icon_domain::{CartId, CheckoutId};
use icon_store::orders::Step;
use std::time::Duration;
use uuid::Uuid;

fn asked(status: OrderStatus) -> OrderWork {
    let mut o = order(status, 1);
    o.cancel_requested_at = Some(Utc::now());
    o.cancel_reason = Some("cancelled by the shopper".into());
    o
}

#[test]
fn each_answer_settles_or_waits_never_guesses() {
    let s = settings();
    let now = Utc::now();
    let placed = asked(OrderStatus::Confirmed);
    let u = after_cancel(&placed, CancelAnswer::Cancelled, now, &s);
    assert_eq!(u.status, OrderStatus::Cancelled);
    assert_eq!(u.reason.as_deref(), Some("cancelled by the shopper"));

    let u = after_cancel(
        &placed,
        CancelAnswer::Refused {
            reason: "already shipped".into(),
        },
        now,
        &s,
    );
    assert_eq!(
        (u.status, u.reason.as_deref()),
        (OrderStatus::CancelRefused, Some("already shipped"))
    );

    // 202: waits for the retailer's event, then looks it up.
    let u = after_cancel(&placed, CancelAnswer::Accepted, now, &s);
    assert_eq!(u.status, OrderStatus::Cancelling);
    assert_eq!(u.next_attempt_at, Some(later(now, s.confirm_within)));
    assert!(u.settle_until.is_some());

    // Unsure: the same cancellation again after the retry wait, counted...
    let unsure = || CancelAnswer::Unsure {
        why: "timeout".into(),
        retry_after: None,
    };
    let u = after_cancel(&placed, unsure(), now, &s);
    assert_eq!(
        (u.status, u.cancel_attempts_add),
        (OrderStatus::Cancelling, 1)
    );
    assert_eq!(u.next_attempt_at, Some(later(now, s.retry_wait(1, None))));
    assert_eq!(u.settle_until, None, "asked again, not looked up yet");
    // ... and once the attempts are spent, settled by lookup.
    let mut spent = asked(OrderStatus::Cancelling);
    spent.cancel_attempts = s.retailer_max_attempts as i32 - 1;
    let u = after_cancel(&spent, unsure(), now, &s);
    assert_eq!(u.status, OrderStatus::Cancelling);
    assert!(u.settle_until.is_some_and(|until| until > now));
}

#[test]
fn a_404_is_believed_only_once_no_placement_can_be_in_progress() {
    let s = settings();
    let now = Utc::now();
    let mut in_doubt = asked(OrderStatus::Pending);
    in_doubt.in_doubt_at = Some(now);
    let u = after_cancel(&in_doubt, CancelAnswer::NoSuchOrder, now, &s);
    assert_eq!(u.status, OrderStatus::Cancelling, "asked again later");
    assert!(u.next_attempt_at.is_some());
    let after = later(now, s.not_placed_after + Duration::from_secs(1));
    let u = after_cancel(&in_doubt, CancelAnswer::NoSuchOrder, after, &s);
    assert_eq!(u.status, OrderStatus::Cancelled);
    // Never in doubt: the 404 holds at once.
    let u = after_cancel(
        &asked(OrderStatus::Pending),
        CancelAnswer::NoSuchOrder,
        now,
        &s,
    );
    assert_eq!(u.status, OrderStatus::Cancelled);
}

#[test]
fn lookups_while_cancelling_settle_on_cancelled_or_end_refused() {
    let s = settings();
    let now = Utc::now();
    let mut waiting = asked(OrderStatus::Cancelling);
    waiting.settle_until = Some(later(now, Duration::from_secs(300)));
    let cancelled = LookupAnswer::Placed {
        order_id: Some("o".into()),
        status: "cancelled".into(),
    };
    assert_eq!(
        after_lookup(&waiting, cancelled, now, &s).status,
        OrderStatus::Cancelled
    );
    let still = || LookupAnswer::Placed {
        order_id: Some("o".into()),
        status: "confirmed".into(),
    };
    let u = after_lookup(&waiting, still(), now, &s);
    assert_eq!(u.status, OrderStatus::Cancelling);
    assert!(u.next_attempt_at.is_some());
    // Past the window: not undone as far as ICON knows.
    waiting.settle_until = Some(now);
    let u = after_lookup(&waiting, still(), now, &s);
    assert_eq!(u.status, OrderStatus::CancelRefused);
    assert!(u.reason.unwrap().contains("may remain placed"));
}

#[test]
fn what_is_due_for_an_order_asked_to_be_cancelled() {
    let now = Utc::now();
    let unsent = asked(OrderStatus::Pending);
    let mut unsent = OrderWork {
        attempts: 0,
        ..unsent
    };
    assert_eq!(unsent.due(now, true), Some(Step::Withdraw));
    // Not the first pass: a pass before may have sent it unrecorded.
    assert_eq!(unsent.due(now, false), Some(Step::Cancel));
    unsent.in_doubt_at = Some(now);
    assert_eq!(unsent.due(now, true), Some(Step::Cancel));
    assert_eq!(
        asked(OrderStatus::Confirmed).due(now, false),
        Some(Step::Cancel)
    );
    let mut settling = asked(OrderStatus::Unknown);
    settling.settle_until = Some(later(now, Duration::from_secs(60)));
    assert_eq!(
        settling.due(now, false),
        Some(Step::Lookup),
        "settled first"
    );
    assert_eq!(
        asked(OrderStatus::Unknown).due(now, false),
        Some(Step::Cancel)
    );
    assert_eq!(asked(OrderStatus::Rejected).due(now, false), None);
    assert_eq!(asked(OrderStatus::CancelRefused).due(now, false), None);
    assert_eq!(
        order(OrderStatus::Confirmed, 1).due(now, false),
        None,
        "not asked"
    );
}

fn pass(policy: CheckoutPolicy, orders: Vec<OrderWork>) -> Pass {
    Pass {
        checkout_id: CheckoutId::new(),
        cart_id: CartId::new(1),
        pass: 1,
        claim: Uuid::new_v4(),
        deliveries: 1,
        last_error: None,
        resource_url: "http://127.0.0.1/c".into(),
        order_changes: 0,
        policy,
        reason: None,
        reopened: false,
        orders,
    }
}

fn at(retailer: &str, status: OrderStatus) -> OrderWork {
    let mut o = order(status, 1);
    o.retailer_id = icon_domain::RetailerId::parse(retailer.to_owned()).unwrap();
    o
}

#[test]
fn all_or_nothing_cancels_the_rest_once_an_order_is_not_placed() {
    let now = Utc::now();
    let p = pass(
        CheckoutPolicy::AllOrNothing,
        vec![
            at("acme", OrderStatus::Confirmed),
            at("globex", OrderStatus::Pending),
            at("initech", OrderStatus::Pending),
        ],
    );
    // This pass: globex rejected, initech still retrying.
    let mut updates = vec![
        OrderUpdate {
            status: OrderStatus::Rejected,
            reason: Some("out of stock".into()),
            ..unchanged(&p.orders[1])
        },
        OrderUpdate {
            next_attempt_at: Some(later(now, Duration::from_secs(5))),
            ..unchanged(&p.orders[2])
        },
    ];
    let why = apply_policy(&p, &mut updates, now).expect("the policy failed");
    assert!(
        why.contains("globex") && why.contains("rejected") && why.contains("out of stock"),
        "{why}"
    );
    let for_ = |r: &str| {
        updates
            .iter()
            .find(|u| u.retailer_id.as_str() == r)
            .unwrap()
    };
    assert!(
        for_("acme").cancel_requested_at.is_some(),
        "placed: cancelled"
    );
    assert!(
        for_("initech").cancel_requested_at.is_some(),
        "not placed yet: stopped"
    );
    assert_eq!(for_("initech").next_attempt_at, None, "at once");
    assert!(
        for_("globex").cancel_requested_at.is_none(),
        "not placed: nothing to undo"
    );

    // Best effort, or a policy already failed: nothing.
    let mut again = updates.clone();
    assert!(apply_policy(
        &pass(CheckoutPolicy::BestEffort, p.orders.clone()),
        &mut again,
        now
    )
    .is_none());
    let failed = Pass {
        reason: Some(why),
        ..p
    };
    assert!(apply_policy(&failed, &mut again, now).is_none());
}

#[test]
fn an_unknown_order_fails_the_policy_only_once_settling_ended() {
    let now = Utc::now();
    let mut settling = at("acme", OrderStatus::Unknown);
    settling.settle_until = Some(later(now, Duration::from_secs(60)));
    let p = pass(
        CheckoutPolicy::AllOrNothing,
        vec![settling, at("globex", OrderStatus::Confirmed)],
    );
    assert!(apply_policy(&p, &mut vec![], now).is_none());
    let p = pass(
        CheckoutPolicy::AllOrNothing,
        vec![
            at("acme", OrderStatus::Unknown),
            at("globex", OrderStatus::Confirmed),
        ],
    );
    let mut updates = vec![];
    assert!(apply_policy(&p, &mut updates, now).is_some());
    assert_eq!(updates.len(), 2, "both may be placed: both cancelled");
}
