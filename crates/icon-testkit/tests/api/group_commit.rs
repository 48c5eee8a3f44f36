//! Group commit at the gateway (issue 19 §3): checkouts submitted together are stored by one
//! statement, and each still gets exactly the answer it would have had alone.

use icon_domain::{CartId, CheckoutId, CheckoutPolicy, UserId};
use icon_store::checkouts::{self, CreateCheckout, NewCheckout, Submission};
use icon_store::idempotency::IdempotentRequest;
use icon_testkit::{Sim, TestApp};
use std::collections::HashSet;

fn new_checkout(owner: &str, cart: i64, key: Option<&str>) -> NewCheckout {
    let id = CheckoutId::new();
    NewCheckout {
        id,
        cart_id: CartId::new(cart),
        owner: UserId::parse(owner).unwrap(),
        callback_url: None,
        push_notification: false,
        order_updates: false,
        policy: CheckoutPolicy::BestEffort,
        email: None,
        resource_url: format!("http://127.0.0.1/cart/checkout/{id}"),
        idempotency: key.map(|k| IdempotentRequest {
            key: k.to_owned(),
            request: format!("{{\"cart_id\":{cart}}}"),
            response_status: 202,
            response_body: format!("{{\"checkout_id\":\"{id}\"}}"),
        }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_answers_each_checkout_as_if_it_were_alone_and_commits_once() {
    let sim = Sim::start().await;
    let app = TestApp::spawn().await;
    app.register_retailer("acme", &sim.order_url("acme")).await;
    let (a, b, c) = (
        app.cart_with("alice", &[("acme", "dress")]).await,
        app.cart_with("alice", &[("acme", "shoes")]).await,
        app.cart_with("alice", &[("acme", "belt")]).await,
    );
    let empty = {
        let r = app
            .api
            .post("/carts", Some(&app.token("alice")), &serde_json::json!({}))
            .await;
        r.json["cart_id"].as_i64().unwrap()
    };
    // Out of cart order on purpose (the store locks carts in ascending order and must give the
    // answers back in the order asked), with the same cart twice and the same key twice.
    let batch = vec![
        new_checkout("alice", c, None),
        new_checkout("alice", a, None),
        new_checkout("alice", a, None),
        new_checkout("alice", b, Some("key-1")),
        new_checkout("alice", b, Some("key-1")),
        new_checkout("bob", c, None),
        new_checkout("alice", empty, None),
    ];
    let ids: Vec<CheckoutId> = batch.iter().map(|n| n.id).collect();
    let submissions: Vec<Submission> = batch.into_iter().map(Submission::new).collect();

    let pool = app.env.pool().await;
    let db = pool.get().await.unwrap();
    let outcomes = checkouts::create_many(&db, &submissions).await.unwrap();
    assert_eq!(outcomes.len(), 7);
    assert!(
        matches!(&outcomes[0], CreateCheckout::Created(row) if row.checkout_id == ids[0].as_uuid()),
        "{:?}",
        outcomes[0]
    );
    assert!(
        matches!(&outcomes[1], CreateCheckout::Created(row) if row.checkout_id == ids[1].as_uuid()),
        "{:?}",
        outcomes[1]
    );
    // The same cart again: the live checkout is the one just stored in the same batch.
    assert!(
        matches!(&outcomes[2], CreateCheckout::AlreadyCheckedOut { checkout_id, .. } if *checkout_id == ids[1]),
        "{:?}",
        outcomes[2]
    );
    assert!(
        matches!(&outcomes[3], CreateCheckout::Created(_)),
        "{:?}",
        outcomes[3]
    );
    // The same key and request again: the first one's answer.
    assert!(
        matches!(&outcomes[4], CreateCheckout::Replayed(r) if r.checkout_id == ids[3].as_uuid()),
        "{:?}",
        outcomes[4]
    );
    // Someone else's cart is not found; an empty cart is refused.
    assert!(
        matches!(outcomes[5], CreateCheckout::CartNotFound),
        "{:?}",
        outcomes[5]
    );
    assert!(
        matches!(outcomes[6], CreateCheckout::EmptyCart),
        "{:?}",
        outcomes[6]
    );

    // One statement, so one transaction: every row it wrote has the same inserting
    // transaction (`xmin`).
    let transactions: i64 = db
        .query_one(
            "SELECT count(DISTINCT xmin::text) FROM (
                 SELECT xmin FROM checkouts UNION ALL SELECT xmin FROM checkout_orders
                 UNION ALL SELECT xmin FROM outbox UNION ALL SELECT xmin FROM idempotency_keys) t",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(transactions, 1, "the batch ran as one transaction");

    let stored: HashSet<uuid::Uuid> = db
        .query("SELECT id FROM checkouts", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let expected: HashSet<uuid::Uuid> = [ids[0], ids[1], ids[3]]
        .iter()
        .map(|i| i.as_uuid())
        .collect();
    assert_eq!(stored, expected);
    // Each created checkout has its orders and its message in the outbox (or already relayed:
    // the test's own relay is not handed these rows, so they wait for the grace period).
    let orders: i64 = db
        .query_one("SELECT count(*) FROM checkout_orders", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(orders, 3);
    let messages: i64 = db
        .query_one(
            "SELECT count(*) FROM outbox WHERE routing_key = 'checkout.requested'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(messages, 3);
    // Without the foreign keys of the hot path (migration 0014), nothing points at a checkout
    // that does not exist.
    let orphans: i64 = db
        .query_one(
            "SELECT (SELECT count(*) FROM checkout_orders o
                     WHERE NOT EXISTS (SELECT 1 FROM checkouts c WHERE c.id = o.checkout_id))
                  + (SELECT count(*) FROM idempotency_keys k
                     WHERE NOT EXISTS (SELECT 1 FROM checkouts c WHERE c.id = k.checkout_id))",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(orphans, 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_submissions_of_one_cart_get_one_202_and_the_rest_409() {
    let sim = Sim::start().await;
    let app = TestApp::spawn().await;
    app.register_retailer("acme", &sim.order_url("acme")).await;
    let cart = app.cart_with("alice", &[("acme", "dress")]).await;
    let others: Vec<i64> = {
        let mut v = Vec::new();
        for sku in ["a", "b", "c", "d", "e", "f", "g"] {
            v.push(app.cart_with("alice", &[("acme", sku)]).await);
        }
        v
    };
    // 8 submissions of one cart and 7 of others at once: they share batches.
    let mut tasks = Vec::new();
    for i in 0..15 {
        let target = if i % 2 == 0 { cart } else { others[i / 2] };
        let api = app.api.clone();
        let token = app.token("alice");
        tasks.push(tokio::spawn(async move {
            let r = api
                .post(
                    "/cart/checkout/",
                    Some(&token),
                    &serde_json::json!({"cart_id": target}),
                )
                .await;
            (target, r)
        }));
    }
    let mut accepted_for_cart = Vec::new();
    let mut refused_for_cart = 0;
    for t in tasks {
        let (target, r) = t.await.unwrap();
        if target == cart {
            match r.status {
                202 => accepted_for_cart.push(r.json["checkout_id"].as_str().unwrap().to_owned()),
                409 => {
                    assert_eq!(r.json["code"], "checkout_exists", "{r:?}");
                    refused_for_cart += 1;
                }
                other => panic!("unexpected {other}: {r:?}"),
            }
        } else {
            assert_eq!(r.status, 202, "{r:?}");
        }
    }
    assert_eq!(accepted_for_cart.len(), 1, "one live checkout per cart");
    assert_eq!(refused_for_cart, 7);
    // Every 202 is a committed checkout, and it finishes.
    assert_eq!(app.env.count("checkouts").await, 8);
    let view = app
        .wait_for_checkout("alice", &accepted_for_cart[0], "final", |c| {
            c["status"] != "queued" && c["status"] != "processing"
        })
        .await;
    assert_eq!(view["status"], "completed", "{view}");
    app.stop().await;
}
