//! Tenant isolation: one user's carts and checkouts do not exist for another.

use icon_testkit::{Sim, TestApp};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_cannot_see_or_touch_each_others_carts_and_checkouts() {
    let app = TestApp::spawn().await;
    let sim = Sim::start().await;
    app.register_retailer("acme", &sim.order_url("acme")).await;
    let cart = app.cart_with("alice", &[("acme", "dress")]).await;
    let r = app.checkout("alice", cart, None).await;
    assert_eq!(r.status, 202);
    let id = r.json["checkout_id"].as_str().unwrap().to_owned();
    let bob = app.token("bob");

    for path in [
        format!("/carts/{cart}"),
        format!("/cart/checkout/{id}"),
        format!("/cart/checkout/{id}/attempts"),
    ] {
        let r = app.api.get(&path, Some(&bob)).await;
        assert_eq!(r.status, 404, "{path}: {r:?}");
    }
    let r = app
        .api
        .post(
            &format!("/carts/{cart}/items"),
            Some(&bob),
            &json!({"retailer_id": "acme", "sku": "x", "quantity": 1,
                    "unit_price": {"amount_minor": 1, "currency": "GBP"}}),
        )
        .await;
    assert_eq!(r.status, 404);
    let r = app.checkout("bob", cart, None).await;
    assert_eq!(r.status, 404);

    // Alice still sees hers.
    let r = app
        .api
        .get(&format!("/cart/checkout/{id}"), Some(&app.token("alice")))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json["cart_id"], cart);
    app.stop().await;
}
