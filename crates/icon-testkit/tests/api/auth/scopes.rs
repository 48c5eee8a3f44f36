//! Two shoppers and two partners (one of them sharing its client id with a shopper's `sub`)
//! try each other's carts, checkouts, redeliveries and devices: what is not yours is 404,
//! never 403, and lists show only your own.

use icon_gateway::auth::Claims;
use icon_testkit::{Receiver, Sim, TestApp};
use serde_json::json;
use std::time::Duration;

/// One caller and what it made: a cart checked out with a callback, and a second cart.
struct Party {
    name: &'static str,
    token: String,
    checked_out_cart: i64,
    open_cart: i64,
    checkout: String,
}

async fn party(app: &TestApp, name: &'static str, token: String, callback: &str) -> Party {
    let cart = |token: String| async move {
        let r = app.api.post("/carts", Some(&token), &json!({})).await;
        assert_eq!(r.status, 201, "{name}: create cart: {r:?}");
        let cart = r.json["cart_id"].as_i64().unwrap();
        let r = app
            .api
            .post(
                &format!("/carts/{cart}/items"),
                Some(&token),
                &json!({"retailer_id": "acme", "sku": format!("{name}-dress"), "quantity": 1,
                        "unit_price": {"amount_minor": 1999, "currency": "GBP"}}),
            )
            .await;
        assert_eq!(r.status, 201, "{name}: add item: {r:?}");
        cart
    };
    let checked_out_cart = cart(token.clone()).await;
    let open_cart = cart(token.clone()).await;
    let r = app
        .api
        .post(
            "/cart/checkout/",
            Some(&token),
            &json!({"cart_id": checked_out_cart, "callback_url": callback}),
        )
        .await;
    assert_eq!(r.status, 202, "{name}: checkout: {r:?}");
    Party {
        name,
        token,
        checked_out_cart,
        open_cart,
        checkout: r.json["checkout_id"].as_str().unwrap().to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shoppers_and_partners_cannot_reach_each_others_resources() {
    let app = TestApp::spawn().await;
    let sim = Sim::start().await;
    let receiver = Receiver::start(vec![], None).await;
    app.register_retailer("acme", &sim.order_url("acme")).await;

    let partner = |client: &str| {
        app.token_with_claims(&Claims::new(client, Duration::from_secs(3600)).with_scope("partner"))
    };
    // `globex` is a partner's client id and also, by chance, a shopper's `sub`.
    let parties = vec![
        party(&app, "alice", app.token("alice"), &receiver.url).await,
        party(&app, "bob", app.token("bob"), &receiver.url).await,
        party(&app, "partner acme-pay", partner("acme-pay"), &receiver.url).await,
        party(&app, "partner globex", partner("globex"), &receiver.url).await,
        party(&app, "shopper globex", app.token("globex"), &receiver.url).await,
    ];

    for me in &parties {
        // Mine: readable, and the checkout's callback can be asked for again (409 while it is
        // not failed; it is never 404 for the owner).
        let r = app
            .api
            .get(&format!("/cart/checkout/{}", me.checkout), Some(&me.token))
            .await;
        assert_eq!(r.status, 200, "{}: own checkout: {r:?}", me.name);
        assert_eq!(r.json["cart_id"], me.checked_out_cart);
        let r = app
            .api
            .post(
                &format!("/cart/checkout/{}/callback/redeliver", me.checkout),
                Some(&me.token),
                &json!({}),
            )
            .await;
        assert_ne!(r.status, 404, "{}: own redelivery: {r:?}", me.name);

        for other in parties.iter().filter(|o| o.name != me.name) {
            let who = format!("{} on {}'s", me.name, other.name);
            let (cart, open, id) = (other.checked_out_cart, other.open_cart, &other.checkout);
            for path in [
                format!("/carts/{cart}"),
                format!("/carts/{open}"),
                format!("/cart/checkout/{id}"),
                format!("/cart/checkout/{id}/attempts"),
            ] {
                let r = app.api.get(&path, Some(&me.token)).await;
                assert_eq!(r.status, 404, "{who} GET {path}: {r:?}");
            }
            for path in [
                format!("/cart/checkout/{id}/callback/redeliver"),
                format!("/cart/checkout/{id}/push/redeliver"),
                format!("/cart/checkout/{id}/email/redeliver"),
            ] {
                let r = app.api.post(&path, Some(&me.token), &json!({})).await;
                assert_eq!(r.status, 404, "{who} POST {path}: {r:?}");
            }
            let r = app
                .api
                .post(
                    &format!("/carts/{open}/items"),
                    Some(&me.token),
                    &json!({"retailer_id": "acme", "sku": "sneaky", "quantity": 1,
                            "unit_price": {"amount_minor": 1, "currency": "GBP"}}),
                )
                .await;
            assert_eq!(r.status, 404, "{who} add item: {r:?}");
            let r = app
                .api
                .post(
                    "/cart/checkout/",
                    Some(&me.token),
                    &json!({"cart_id": open, "callback_url": receiver.url}),
                )
                .await;
            assert_eq!(r.status, 404, "{who} checkout: {r:?}");
        }
    }

    // Nothing of anybody's changed: each open cart still holds its one item.
    for p in &parties {
        let r = app
            .api
            .get(&format!("/carts/{}", p.open_cart), Some(&p.token))
            .await;
        assert_eq!(r.status, 200, "{}: {r:?}", p.name);
        assert_eq!(r.json["items"].as_array().unwrap().len(), 1, "{}", p.name);
    }

    // Enumeration: sequential cart ids around everyone's answer 404 to a stranger.
    let carol = app.token("carol");
    let max = parties.iter().map(|p| p.open_cart).max().unwrap();
    for id in 1..=max + 2 {
        let r = app.api.get(&format!("/carts/{id}"), Some(&carol)).await;
        assert_eq!(r.status, 404, "cart {id}: {r:?}");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_are_listed_and_removed_only_by_their_owner() {
    let app = TestApp::spawn_with(icon_testkit::Options {
        start_worker: false,
        start_notifier: false,
        ..Default::default()
    })
    .await;
    let alice = app.token("alice");
    let bob = app.token("bob");
    let partner = app.partner_token("alice");
    let device = "fcm-token:alice-phone-0123456789";
    let r = app
        .api
        .put(
            &format!("/me/devices/{device}"),
            Some(&alice),
            &json!({"platform": "android"}),
        )
        .await;
    assert!(r.status == 201 || r.status == 200, "{r:?}");

    // Bob and the partner whose client id is `alice` list nothing, and cannot remove it.
    for (who, token) in [("bob", &bob), ("partner alice", &partner)] {
        let r = app.api.get("/me/devices", Some(token)).await;
        assert_eq!(r.status, 200, "{who}: {r:?}");
        assert_eq!(r.json["devices"], json!([]), "{who}");
        let r = app
            .api
            .send(
                http::Method::DELETE,
                &format!("/me/devices/{device}"),
                Some(token),
                None,
                None,
            )
            .await;
        assert_eq!(r.status, 204, "{who}: idempotent and says nothing: {r:?}");
    }
    let r = app.api.get("/me/devices", Some(&alice)).await;
    assert_eq!(r.json["devices"][0]["token"], device, "{r:?}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_admins_manage_retailers_and_nobody_poses_as_a_partner() {
    let app = TestApp::spawn_with(icon_testkit::Options {
        start_worker: false,
        start_notifier: false,
        ..Default::default()
    })
    .await;
    let body = json!({"name": "Acme", "order_url": "http://127.0.0.1:9/orders"});
    for (who, token) in [
        ("shopper", app.token("alice")),
        ("partner", app.partner_token("acme-pay")),
    ] {
        let r = app.api.put("/retailers/acme", Some(&token), &body).await;
        assert_eq!(r.status, 403, "{who}: {r:?}");
        assert_eq!(r.json["code"], "forbidden");
    }
    let r = app
        .api
        .put("/retailers/acme", Some(&app.admin_token()), &body)
        .await;
    assert_eq!(r.status, 201, "{r:?}");

    // A shopper token whose `sub` spells a partner's owner key is refused outright.
    let r = app
        .api
        .post("/carts", Some(&app.token("partner:acme-pay")), &json!({}))
        .await;
    assert_eq!(r.status, 401, "{r:?}");
    assert!(r.json["detail"].as_str().unwrap().contains("partner:"));
    app.stop().await;
}
