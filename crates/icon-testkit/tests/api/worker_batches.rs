//! Group commit in the worker (issue 19 §3): the passes claimed together in one statement
//! each get exactly the claim they would have got alone, and the passes recorded together
//! each exactly the record.

use chrono::Utc;
use icon_domain::{CheckoutId, OrderStatus};
use icon_runtime::trace::TraceParent;
use icon_store::orders::OrderUpdate;
use icon_store::passes::{self, Claim, Completed, Pass, PassRecord};
use icon_testkit::{Options, Sim, TestApp};
use std::time::Duration;

/// The trace a pass of the record test runs in.
const TRACE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn claimed(claim: &Claim) -> &Pass {
    match claim {
        Claim::Claimed(pass) => pass,
        other => panic!("expected a claim, got {other:?}"),
    }
}

/// The system without a worker (the test claims and records as the worker would), acme and
/// globex played by the simulator, and one checkout of alice's per cart of `carts`.
async fn checkouts(carts: &[&[(&str, &str)]]) -> (TestApp, Sim, Vec<CheckoutId>) {
    let sim = Sim::start().await;
    let app = TestApp::spawn_with(Options {
        start_worker: false,
        start_notifier: false,
        ..Options::default()
    })
    .await;
    app.register_retailer("acme", &sim.order_url("acme")).await;
    app.register_retailer("globex", &sim.order_url("globex"))
        .await;
    let mut ids = Vec::new();
    for items in carts {
        let cart = app.cart_with("alice", items).await;
        let reply = app.checkout("alice", cart, None).await;
        assert_eq!(reply.status, 202, "{reply:?}");
        ids.push(
            reply.json["checkout_id"]
                .as_str()
                .unwrap()
                .parse::<CheckoutId>()
                .unwrap(),
        );
    }
    (app, sim, ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_in_one_batch_are_each_what_they_would_be_alone() {
    let (app, _sim, ids) = checkouts(&[
        &[("acme", "dress"), ("globex", "shoes"), ("acme", "belt")],
        &[("acme", "hat")],
        &[("acme", "coat")],
    ])
    .await;
    let (a, b, done) = (ids[0], ids[1], ids[2]);
    let db = app.env.db().await;
    db.execute(
        "UPDATE checkouts SET status = 'completed' WHERE id = $1",
        &[&done.as_uuid()],
    )
    .await
    .unwrap();
    let pool = app.env.pool().await;
    let conn = pool.get().await.unwrap();
    let lease = Duration::from_secs(30);
    let missing = CheckoutId::new();

    // Out of id order, a checkout twice, a stale copy, a final and a missing checkout.
    let jobs = [(b, 0), (a, 0), (a, 0), (b, 3), (done, 0), (missing, 0)];
    let claims = passes::claim_many(&conn, &jobs, lease).await.unwrap();
    assert_eq!(claims.len(), jobs.len(), "{claims:?}");

    let pass_b = claimed(&claims[0]);
    assert_eq!(pass_b.checkout_id, b);
    assert_eq!((pass_b.pass, pass_b.deliveries), (1, 1));
    assert!(pass_b.is_first());
    assert_eq!(pass_b.orders.len(), 1);
    assert_eq!(pass_b.orders[0].items.len(), 1);
    assert_eq!(pass_b.orders[0].items[0].sku, "hat");

    // The same checkout twice in one batch: one copy claims, the other finds the pass held.
    let (won, other) = match (&claims[1], &claims[2]) {
        (Claim::Claimed(p), other) | (other, Claim::Claimed(p)) => (p, other),
        _ => panic!("one copy of a's message claims: {claims:?}"),
    };
    assert!(
        matches!(other, Claim::Busy { .. }),
        "the other copy waits for the lease: {other:?}"
    );
    assert_eq!(won.checkout_id, a);
    let retailers: Vec<(&str, usize)> = won
        .orders
        .iter()
        .map(|o| (o.retailer_id.as_str(), o.items.len()))
        .collect();
    assert_eq!(
        retailers,
        [("acme", 2), ("globex", 1)],
        "a's orders and items"
    );
    assert!(matches!(claims[3], Claim::Nothing(_)), "{:?}", claims[3]);
    assert!(matches!(claims[4], Claim::Final), "{:?}", claims[4]);
    assert!(matches!(claims[5], Claim::Missing), "{:?}", claims[5]);

    // Each claim that won is the one the checkout holds.
    for pass in [pass_b, won] {
        let held: uuid::Uuid = db
            .query_one(
                "SELECT claim FROM checkouts WHERE id = $1 AND status = 'processing'",
                &[&pass.checkout_id.as_uuid()],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(held, pass.claim);
    }

    // Held passes whose leases ran out (their claimers crashed) are taken over by a batch as
    // alone: the pass stays, and counts one more delivery.
    db.execute(
        "UPDATE checkouts SET claimed_until = now() - interval '1 second' WHERE id = ANY($1)",
        &[&vec![a.as_uuid(), b.as_uuid()]],
    )
    .await
    .unwrap();
    let again = passes::claim_many(&conn, &[(a, 0), (b, 0)], lease)
        .await
        .unwrap();
    for (claim, id) in again.iter().zip([a, b]) {
        let pass = claimed(claim);
        assert_eq!(pass.checkout_id, id);
        assert_eq!((pass.pass, pass.deliveries), (1, 2));
        assert!(!pass.is_first(), "a taken-over pass may follow a send");
    }
    app.stop().await;
}

/// What a pass learnt of `pass`'s order at `retailer`: now `status`, after one call.
fn update(pass: &Pass, retailer: &str, status: OrderStatus) -> OrderUpdate {
    let order = pass
        .orders
        .iter()
        .find(|o| o.retailer_id.as_str() == retailer)
        .unwrap();
    let placed = status == OrderStatus::Confirmed;
    OrderUpdate {
        retailer_id: order.retailer_id.clone(),
        status,
        retailer_order_id: placed.then(|| format!("sim-{retailer}-{}", pass.checkout_id)),
        reason: None,
        attempts_add: 1,
        lookups_add: 0,
        next_attempt_at: (!placed).then(|| Utc::now() + chrono::Duration::seconds(30)),
        settle_until: None,
        in_doubt_at: None,
        cancel_requested_at: None,
        cancel_reason: None,
        cancel_attempts_add: 0,
        was: order.status,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_in_one_batch_are_each_what_they_would_be_alone() {
    let (app, _sim, ids) = checkouts(&[
        &[("acme", "dress"), ("globex", "shoes")],
        &[("acme", "hat")],
        &[("acme", "coat")],
        &[("acme", "belt")],
    ])
    .await;
    let db = app.env.db().await;
    let pool = app.env.pool().await;
    let mut conn = pool.get().await.unwrap();
    let jobs: Vec<(CheckoutId, i32)> = ids.iter().map(|id| (*id, 0)).collect();
    let claims = passes::claim_many(&conn, &jobs, Duration::from_secs(30))
        .await
        .unwrap();
    let passes: Vec<Pass> = claims.iter().map(|c| claimed(c).clone()).collect();
    let (done, open, lost, overtaken) = (&passes[0], &passes[1], &passes[2], &passes[3]);

    // `lost`: its lease ran out and another copy holds the pass now.
    let mut stale = lost.clone();
    stale.claim = uuid::Uuid::new_v4();
    // `overtaken`: a retailer's event changed one of its orders while the pass ran.
    db.execute(
        "UPDATE checkouts SET order_changes = order_changes + 1 WHERE id = $1",
        &[&overtaken.checkout_id.as_uuid()],
    )
    .await
    .unwrap();
    db.execute("DELETE FROM outbox", &[]).await.unwrap();
    let stale_updates = vec![update(&stale, "acme", OrderStatus::Confirmed)];
    let records = vec![
        PassRecord::new(
            open.clone(),
            vec![update(open, "acme", OrderStatus::Pending)],
            None,
        ),
        // Made in a pass's trace: its message carries that trace on, though the batch is
        // written elsewhere.
        icon_runtime::trace::sync_scope(TraceParent::parse(TRACE).unwrap(), || {
            PassRecord::new(
                done.clone(),
                vec![
                    update(done, "acme", OrderStatus::Confirmed),
                    update(done, "globex", OrderStatus::Confirmed),
                ],
                None,
            )
        }),
        PassRecord::new(stale, stale_updates, None),
        PassRecord::new(
            overtaken.clone(),
            vec![update(overtaken, "acme", OrderStatus::Confirmed)],
            None,
        ),
    ];
    let completed = passes::complete_many(&mut conn, &records, |_| {
        "checkout.requested.delay.test".into()
    })
    .await
    .unwrap();
    assert_eq!(completed.len(), 4, "{completed:?}");
    assert!(
        matches!(&completed[0], Completed::Next { message, .. } if message.routing_key == "checkout.requested.delay.test"),
        "{:?}",
        completed[0]
    );
    match &completed[1] {
        Completed::Finished {
            event,
            message: Some(message),
            cancel_pending: false,
        } => {
            assert_eq!(event.checkout_id, done.checkout_id);
            assert_eq!(event.status.as_str(), "completed");
            assert_eq!(message.routing_key, "checkout.finished");
        }
        other => panic!("the finished checkout's record: {other:?}"),
    }
    assert!(
        matches!(completed[2], Completed::Lost),
        "{:?}",
        completed[2]
    );
    assert!(
        matches!(completed[3], Completed::Overtaken { .. }),
        "{:?}",
        completed[3]
    );

    // The rows, as each record alone would have left them.
    let row = |id: CheckoutId| {
        let db = &db;
        async move {
            db.query_one(
                "SELECT status, claim IS NULL, next_due_at IS NOT NULL, pass FROM checkouts WHERE id = $1",
                &[&id.as_uuid()],
            )
            .await
            .unwrap()
        }
    };
    let r = row(done.checkout_id).await;
    assert_eq!(
        (
            r.get::<_, String>(0),
            r.get::<_, bool>(1),
            r.get::<_, bool>(2)
        ),
        ("completed".into(), true, false)
    );
    let r = row(open.checkout_id).await;
    assert_eq!(
        (
            r.get::<_, String>(0),
            r.get::<_, bool>(1),
            r.get::<_, bool>(2)
        ),
        ("processing".into(), true, true),
        "the open checkout is released with its next pass due"
    );
    let r = row(lost.checkout_id).await;
    assert_eq!(
        (r.get::<_, String>(0), r.get::<_, bool>(1)),
        ("processing".into(), false),
        "the lost pass wrote nothing: the checkout keeps its claim"
    );
    let orders: Vec<(String, String, Option<String>, i32)> = db
        .query(
            "SELECT checkout_id::text, status, retailer_order_id, attempts FROM checkout_orders
             WHERE checkout_id = ANY($1) ORDER BY checkout_id, retailer_id",
            &[&ids.iter().map(|i| i.as_uuid()).collect::<Vec<_>>()],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    for (checkout, status, order_id, attempts) in &orders {
        let expected = if *checkout == done.checkout_id.to_string() {
            ("confirmed", true, 1)
        } else if *checkout == open.checkout_id.to_string() {
            ("pending", false, 1)
        } else {
            // Lost and overtaken: nothing of their passes was written.
            ("pending", false, 0)
        };
        assert_eq!(
            (status.as_str(), order_id.is_some(), *attempts),
            expected,
            "{checkout}: {orders:?}"
        );
    }
    let rows = db
        .query(
            "SELECT checkout_id::text, routing_key, traceparent FROM outbox ORDER BY checkout_id",
            &[],
        )
        .await
        .unwrap();
    let messages: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    for r in &rows {
        let traceparent: Option<String> = r.get(2);
        if r.get::<_, String>(0) == done.checkout_id.to_string() {
            let traceparent = traceparent.expect("the finished checkout's message has a trace");
            assert_eq!(
                &traceparent[3..35],
                &TRACE[3..35],
                "the pass's trace goes on"
            );
        } else {
            assert_eq!(traceparent, None, "made outside any trace");
        }
    }
    let mut expected = vec![
        (done.checkout_id.to_string(), "checkout.finished".to_owned()),
        (
            open.checkout_id.to_string(),
            "checkout.requested.delay.test".to_owned(),
        ),
        (
            overtaken.checkout_id.to_string(),
            "checkout.requested.delay.test".to_owned(),
        ),
    ];
    expected.sort();
    assert_eq!(
        messages, expected,
        "one message per checkout recorded or released"
    );
    app.stop().await;
}
