//! Two ways a retried cart could place a second order at one retailer (issue 16, items 1 and 2),
//! each proven from the retailer's side: the simulator's request log holds one key and one order.

use icon_testkit::{Options, Sim, TestApp};
use serde_json::Value;
use std::collections::HashSet;
use std::time::Duration;

fn id_of(reply: &icon_testkit::ApiReply) -> String {
    assert_eq!(reply.status, 202, "{reply:?}");
    reply.json["checkout_id"].as_str().unwrap().to_owned()
}

fn keys_and_orders(requests: &[Value]) -> (HashSet<String>, HashSet<String>) {
    let field = |name: &str| {
        requests
            .iter()
            .filter_map(|r| r[name].as_str().map(str::to_owned))
            .collect::<HashSet<_>>()
    };
    (field("idempotency_key"), field("order_id"))
}

fn report(line: &str) {
    println!("{line}");
    icon_testkit::fleet::record(line);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_404_while_the_first_request_is_in_flight_is_not_taken_for_not_placed() {
    // The retailer takes 3 s over the first request (the call times out after 500 ms), answers
    // the retry 409 and, being a `legacy-` retailer, answers lookups 404 until the order
    // exists. Before the fix the first 404 made the order `failed`, and the shopper's retry of
    // the cart sent a new key: two orders.
    let sim = Sim::start_with_slow_delay(Duration::from_secs(3)).await;
    let app = TestApp::spawn_with(Options {
        retailer_max_attempts: "2".into(),
        retailer_backoff: "100ms".into(),
        retailer_timeout: "500ms".into(),
        extra: vec![
            ("ICON_RETAILER_SETTLE_SCHEDULE", "200ms".into()),
            ("ICON_RETAILER_SETTLE_WITHIN", "30s".into()),
            ("ICON_RETAILER_NOT_PLACED_AFTER", "20s".into()),
        ],
        ..Options::default()
    })
    .await;
    app.register_retailer("acme", &sim.order_url("legacy-acme"))
        .await;
    let cart = app.cart_with("alice", &[("acme", "slow-dress")]).await;
    let first = id_of(&app.checkout("alice", cart, None).await);
    let view = app
        .wait_for_checkout("alice", &first, "final", |c| {
            c["status"] == "completed" || c["status"] == "failed"
        })
        .await;
    // The shopper retries the cart whatever the outcome: a completed cart is refused (409),
    // a failed one would be checked out again.
    let retry = app.checkout("alice", cart, None).await;
    if retry.status == 202 {
        let second = id_of(&retry);
        app.wait_for_checkout("alice", &second, "final", |c| {
            c["status"] == "completed" || c["status"] == "failed"
        })
        .await;
    }
    // Let any slow request still running at the retailer finish before counting.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let requests = sim.orders().await;
    let (keys, orders) = keys_and_orders(&requests);
    let lookups = sim.lookups().await;
    assert!(
        lookups.iter().any(|l| l["response_status"] == 404),
        "the retailer answered a lookup 404 while the first request was in flight: {lookups:?}"
    );
    assert_eq!(keys.len(), 1, "one key at the retailer: {requests:?}");
    assert_eq!(orders.len(), 1, "one order at the retailer: {requests:?}");
    assert_eq!(view["status"], "completed", "{view}");
    assert_eq!(retry.status, 409, "{retry:?}");
    report(&format!(
        "FAULT lookup 404 while the first request is in flight: requests={}, lookups={} \
         (404s={}), keys=1, orders placed=1, placed twice=0",
        requests.len(),
        lookups.len(),
        lookups
            .iter()
            .filter(|l| l["response_status"] == 404)
            .count()
    ));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_key_goes_to_the_url_it_was_first_sent_to() {
    // `ghost-`: the retailer places the order and the answer is lost; with lookups off the
    // order stays `unknown` and the checkout fails, freeing the cart.
    let sim = Sim::start().await;
    let app = TestApp::spawn_with(Options {
        retailer_max_attempts: "1".into(),
        extra: vec![("ICON_RETAILER_SETTLE_WITHIN", "0s".into())],
        ..Options::default()
    })
    .await;
    app.register_retailer("acme", &sim.order_url("acme")).await;
    let cart = app.cart_with("alice", &[("acme", "ghost-dress")]).await;
    let first = id_of(&app.checkout("alice", cart, None).await);
    app.wait_for_checkout("alice", &first, "failed", |c| c["status"] == "failed")
        .await;

    // The admin moves the retailer; the shopper retries the cart. The earlier key belongs to
    // the old URL: sent to the new one it would be a new key there, and a second order.
    app.register_retailer("acme", &sim.order_url("acme-moved"))
        .await;
    let second = id_of(&app.checkout("alice", cart, None).await);
    let view = app
        .wait_for_checkout("alice", &second, "completed", |c| {
            c["status"] == "completed"
        })
        .await;
    let requests = sim.orders().await;
    let (keys, orders) = keys_and_orders(&requests);
    let places: HashSet<&str> = requests
        .iter()
        .filter_map(|r| r["retailer"].as_str())
        .collect();
    assert_eq!(places, HashSet::from(["acme"]), "{requests:?}");
    assert_eq!(keys, HashSet::from([format!("{first}:acme")]));
    assert_eq!(orders.len(), 1, "one order at the retailer: {requests:?}");
    assert_eq!(view["orders"][0]["status"], "confirmed", "{view}");

    // A new cart goes to the new URL.
    let cart = app.cart_with("alice", &[("acme", "dress")]).await;
    let third = id_of(&app.checkout("alice", cart, None).await);
    app.wait_for_checkout("alice", &third, "completed", |c| c["status"] == "completed")
        .await;
    let moved = sim
        .orders()
        .await
        .iter()
        .filter(|r| r["retailer"] == "acme-moved")
        .count();
    assert_eq!(moved, 1);
    report(&format!(
        "FAULT re-sent key after the retailer's order_url moved: requests={}, keys=1, orders \
         placed=1, placed twice=0",
        requests.len()
    ));
    app.stop().await;
}
