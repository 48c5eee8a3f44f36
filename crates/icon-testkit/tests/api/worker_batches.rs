//! Group commit of the worker's claims (issue 19 §3): the passes claimed together in one
//! statement each get exactly the claim they would have got alone.

use icon_domain::CheckoutId;
use icon_store::passes::{self, Claim, Pass};
use icon_testkit::{Options, Sim, TestApp};
use std::time::Duration;

fn claimed(claim: &Claim) -> &Pass {
    match claim {
        Claim::Claimed(pass) => pass,
        other => panic!("expected a claim, got {other:?}"),
    }
}

/// The system without a worker (the test claims as the worker would), acme and
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
