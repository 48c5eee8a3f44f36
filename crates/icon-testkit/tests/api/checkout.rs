//! The loop, end to end: 202 → orders at each retailer → final state → callback.

use icon_testkit::{Receiver, Sim, TestApp};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn happy_path_over_two_retailers_closes_the_loop() {
    let app = TestApp::spawn().await;
    let (acme, globex) = (Sim::start().await, Sim::start().await);
    app.register_retailer("acme", &acme.order_url("acme")).await;
    app.register_retailer("globex", &globex.order_url("globex"))
        .await;
    let cart = app
        .cart_with(
            "alice",
            &[
                ("acme", "dress-1"),
                ("acme", "belt-2"),
                ("globex", "shoe-3"),
            ],
        )
        .await;
    let receiver = Receiver::start(vec![], None).await;

    let r = app.checkout("alice", cart, Some(&receiver.url)).await;
    assert_eq!(r.status, 202, "{r:?}");
    let checkout_id = r.json["checkout_id"]
        .as_str()
        .expect("checkout_id")
        .to_owned();
    let resource_url = r.json["resource_url"]
        .as_str()
        .expect("resource_url")
        .to_owned();
    assert_eq!(r.json["status"], "queued");
    assert_eq!(
        resource_url,
        format!("{}/cart/checkout/{checkout_id}", app.public_url)
    );
    assert_eq!(r.header("location"), Some(resource_url.as_str()));
    assert!(r
        .header("retry-after")
        .is_some_and(|v| v.parse::<u32>().is_ok()));

    let seen = receiver.wait_for(1, Duration::from_secs(20)).await;
    let cb = &seen[0];
    assert_eq!(cb.body["status"], "completed");
    assert_eq!(cb.body["cart_id"], cart);
    assert_eq!(cb.body["source_url"], resource_url.as_str());
    assert_eq!(cb.body["checkout_id"], checkout_id.as_str());
    let orders = cb.body["orders"].as_array().expect("orders");
    assert_eq!(orders.len(), 2);
    for o in orders {
        assert_eq!(o["status"], "confirmed");
        assert!(o["retailer_order_id"].as_str().unwrap().starts_with("sim-"));
    }
    assert!(cb
        .webhook_id
        .as_deref()
        .is_some_and(|id| id.starts_with("msg_")));
    let ts: i64 = cb.webhook_timestamp.as_deref().unwrap().parse().unwrap();
    assert!((chrono::Utc::now().timestamp() - ts).abs() < 60);
    assert_eq!(cb.content_type.as_deref(), Some("application/json"));

    let view = app
        .wait_for_checkout("alice", &checkout_id, "callback delivered", |c| {
            c["callback"]["state"] == "delivered"
        })
        .await;
    assert_eq!(view["status"], "completed");
    assert_eq!(view["callback"]["attempts"], 1);
    assert_eq!(view["callback"]["last_response_status"], 200);
    assert_eq!(view["callback"]["url"], receiver.url.as_str());
    assert_eq!(view["push_notification"], false);

    // Each retailer got exactly one order, keyed by checkout and retailer, with its items only.
    let (a, g) = (acme.orders().await, globex.orders().await);
    assert_eq!(a.len(), 1);
    assert_eq!(g.len(), 1);
    assert_eq!(a[0]["idempotency_key"], format!("{checkout_id}:acme"));
    assert_eq!(g[0]["idempotency_key"], format!("{checkout_id}:globex"));
    assert_eq!(a[0]["items"].as_array().unwrap().len(), 2);
    assert_eq!(g[0]["items"][0]["sku"], "shoe-3");
    assert_eq!(g[0]["items"][0]["unit_price"]["currency"], "GBP");

    let attempts = app
        .api
        .get(
            &format!("/cart/checkout/{checkout_id}/attempts"),
            Some(&app.token("alice")),
        )
        .await;
    assert_eq!(attempts.status, 200);
    assert_eq!(attempts.json["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(attempts.json["attempts"][0]["response_status"], 200);

    // Nothing left waiting in the outbox.
    app.env.outbox_drained().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn some_rejected_is_partially_completed_with_reasons() {
    let app = TestApp::spawn().await;
    let sim = Sim::start().await;
    app.register_retailer("acme", &sim.order_url("acme")).await;
    app.register_retailer("globex", &sim.order_url("globex"))
        .await;
    let cart = app
        .cart_with("alice", &[("acme", "dress-1"), ("globex", "reject-shoe")])
        .await;
    let receiver = Receiver::start(vec![], None).await;
    let r = app.checkout("alice", cart, Some(&receiver.url)).await;
    assert_eq!(r.status, 202);
    let seen = receiver.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(seen[0].body["status"], "partially_completed");
    let id = r.json["checkout_id"].as_str().unwrap();
    let view = app
        .wait_for_checkout("alice", id, "final", |c| {
            c["status"] == "partially_completed"
        })
        .await;
    let orders = view["orders"].as_array().unwrap();
    let globex = orders
        .iter()
        .find(|o| o["retailer_id"] == "globex")
        .unwrap();
    assert_eq!(globex["status"], "rejected");
    assert!(globex["reason"].as_str().unwrap().contains("reject-shoe"));
    let acme = orders.iter().find(|o| o["retailer_id"] == "acme").unwrap();
    assert_eq!(acme["status"], "confirmed");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_confirmed_is_failed_after_bounded_retries() {
    let app = TestApp::spawn().await;
    let sim = Sim::start().await;
    app.register_retailer("acme", &sim.order_url("acme")).await;
    app.register_retailer("globex", &sim.order_url("globex"))
        .await;
    let cart = app
        .cart_with(
            "alice",
            &[("acme", "reject-dress"), ("globex", "down-shoe")],
        )
        .await;
    let receiver = Receiver::start(vec![], None).await;
    let r = app.checkout("alice", cart, Some(&receiver.url)).await;
    assert_eq!(r.status, 202);
    let seen = receiver.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(seen[0].body["status"], "failed");
    let id = r.json["checkout_id"].as_str().unwrap();
    let view = app
        .wait_for_checkout("alice", id, "failed", |c| c["status"] == "failed")
        .await;
    let globex = view["orders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["retailer_id"] == "globex")
        .cloned()
        .unwrap();
    // Three 500s leave the outcome unknown; the status lookup then learnt that the retailer
    // never placed it, so it is `failed` (not placed), not `unknown`.
    assert_eq!(globex["status"], "failed");
    assert!(
        globex["reason"].as_str().unwrap().contains("not placed"),
        "{globex}"
    );
    let lookups = sim.lookups().await;
    assert_eq!(lookups.len(), 1, "{lookups:?}");
    assert_eq!(lookups[0]["response_status"], 404);
    assert_eq!(lookups[0]["idempotency_key"], format!("{id}:globex"));
    // The retailer that was down was called exactly ICON_RETAILER_MAX_ATTEMPTS (3) times, all
    // with the same idempotency key; the rejecting one once.
    let orders = sim.orders().await;
    let down: Vec<_> = orders
        .iter()
        .filter(|o| o["retailer"] == "globex")
        .collect();
    assert_eq!(down.len(), 3);
    assert!(down
        .iter()
        .all(|o| o["idempotency_key"] == format!("{id}:globex")));
    assert_eq!(orders.iter().filter(|o| o["retailer"] == "acme").count(), 1);

    // A failed checkout frees the cart: it may be checked out again, and since both retailers
    // said they did not place their orders, each gets a new key.
    let again = app.checkout("alice", cart, None).await;
    assert_eq!(again.status, 202, "{again:?}");
    let again_id = again.json["checkout_id"].as_str().unwrap().to_owned();
    app.wait_for_checkout("alice", &again_id, "failed again", |c| {
        c["status"] == "failed"
    })
    .await;
    let keys: std::collections::HashSet<String> = sim
        .orders()
        .await
        .iter()
        .filter_map(|o| o["idempotency_key"].as_str().map(str::to_owned))
        .collect();
    assert!(keys.contains(&format!("{again_id}:globex")), "{keys:?}");
    assert!(keys.contains(&format!("{again_id}:acme")), "{keys:?}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flaky_retailer_is_retried_with_the_same_idempotency_key() {
    let app = TestApp::spawn().await;
    let sim = Sim::start().await;
    app.register_retailer("acme", &sim.order_url("acme")).await;
    let cart = app.cart_with("alice", &[("acme", "flaky-dress")]).await;
    let r = app.checkout("alice", cart, None).await;
    assert_eq!(r.status, 202);
    let id = r.json["checkout_id"].as_str().unwrap();
    let view = app
        .wait_for_checkout("alice", id, "completed", |c| c["status"] == "completed")
        .await;
    assert!(view["callback"].is_null());
    let orders = sim.orders().await;
    assert_eq!(orders.len(), 2);
    assert_eq!(orders[0]["response_status"], 503);
    assert_eq!(orders[1]["response_status"], 201);
    assert_eq!(orders[0]["idempotency_key"], orders[1]["idempotency_key"]);
    assert_eq!(
        view["orders"][0]["retailer_order_id"],
        orders[1]["order_id"]
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retailer_that_never_answers_cannot_hold_a_checkout_forever() {
    let app = TestApp::spawn_with(icon_testkit::Options {
        retailer_timeout: "300ms".into(),
        retailer_max_attempts: "2".into(),
        ..Default::default()
    })
    .await;
    let sim = Sim::start().await;
    app.register_retailer("acme", &sim.order_url("acme")).await;
    app.register_retailer("globex", &sim.order_url("globex"))
        .await;
    let cart = app
        .cart_with("alice", &[("acme", "hang-dress"), ("globex", "shoe")])
        .await;
    let r = app.checkout("alice", cart, None).await;
    let id = r.json["checkout_id"].as_str().unwrap();
    let view = app
        .wait_for_checkout("alice", id, "a final state", |c| {
            c["status"] == "partially_completed"
        })
        .await;
    let acme = view["orders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["retailer_id"] == "acme")
        .cloned()
        .unwrap();
    // The first call timed out, the second found the first still in progress (409), and so
    // did every status lookup: the hanging request may still place the order, so it is never
    // taken for "not placed". Settling ends at ICON_RETAILER_SETTLE_WITHIN (10 s here) and the
    // order stays `unknown`, which keeps the cart's key for any retry.
    assert_eq!(acme["status"], "unknown", "{acme}");
    assert!(
        acme["reason"]
            .as_str()
            .unwrap()
            .contains("not settled within"),
        "{acme}"
    );
    let calls = sim.orders().await;
    let acme_calls: Vec<_> = calls.iter().filter(|o| o["retailer"] == "acme").collect();
    assert_eq!(acme_calls.len(), 2, "{acme_calls:?}");
    assert!(
        acme_calls[0]["response_status"].is_null(),
        "the hang is never answered"
    );
    assert_eq!(acme_calls[1]["response_status"], 409);
    let lookups = sim.lookups().await;
    assert!(!lookups.is_empty());
    assert!(
        lookups.iter().all(|l| l["response_status"] == 409),
        "{lookups:?}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttling_retailer_is_retried_after_its_retry_after() {
    let app = TestApp::spawn().await; // backoff 20ms; the retailer asks for 1s
    let sim = Sim::start().await;
    app.register_retailer("acme", &sim.order_url("acme")).await;
    let cart = app.cart_with("alice", &[("acme", "busy-dress")]).await;
    let r = app.checkout("alice", cart, None).await;
    let id = r.json["checkout_id"].as_str().unwrap();
    app.wait_for_checkout("alice", id, "completed", |c| c["status"] == "completed")
        .await;
    let orders = sim.orders().await;
    assert_eq!(orders.len(), 2);
    assert_eq!(orders[0]["response_status"], 429);
    let at = |o: &serde_json::Value| {
        chrono::DateTime::parse_from_rfc3339(o["received_at"].as_str().unwrap()).unwrap()
    };
    let gap = at(&orders[1]) - at(&orders[0]);
    assert!(
        gap >= chrono::Duration::milliseconds(950),
        "retried after {gap}"
    );
    app.stop().await;
}
