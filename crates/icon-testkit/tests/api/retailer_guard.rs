//! Retailers' `order_url`s pass a network policy (`ICON_RETAILER_ALLOW_NETWORKS`,
//! `ICON_RETAILER_ALLOW_HTTP`), so a stolen admin token cannot aim the worker into the internal
//! network: refused at registration by the gateway, and again by the worker before any
//! connection to a retailer that got past the gateway (a policy changed since, a name that now
//! resolves inside the network). The address classes the guard refuses, and its resolver, are
//! tried in icon-http's `guard_tests` and the worker's `retailer` tests.

use icon_testkit::{ApiReply, Options, Sim, TestApp};
use serde_json::{json, Value};
use std::net::TcpListener;

/// A loopback listener that never accepts: after the calls, a non-blocking `accept` finding
/// nothing queued proves that no connection was even attempted.
fn witness() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

fn assert_untouched(l: &TcpListener) {
    match l.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("a connection was attempted: {other:?}"),
    }
}

async fn put_retailer(app: &TestApp, id: &str, order_url: &str) -> ApiReply {
    app.api
        .put(
            &format!("/retailers/{id}"),
            Some(&app.admin_token()),
            &json!({"name": id, "order_url": order_url}),
        )
        .await
}

/// The one `order_url` field error of a 422 problem document.
fn refusal(r: &ApiReply, url: &str) -> String {
    assert_eq!(r.status, 422, "{url}: {r:?}");
    assert_eq!(r.content_type(), "application/problem+json", "{url}");
    assert_eq!(r.json["code"], "validation_failed", "{url}");
    assert_eq!(r.json["errors"][0]["field"], "order_url", "{url}: {r:?}");
    r.json["errors"][0]["message"].as_str().unwrap().to_owned()
}

/// The retailers an admin sees.
async fn registered(app: &TestApp) -> Vec<Value> {
    let r = app.api.get("/retailers", Some(&app.admin_token())).await;
    assert_eq!(r.status, 200, "{r:?}");
    r.json["retailers"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_order_urls_are_refused_at_registration_and_nothing_is_stored() {
    let app = TestApp::spawn_with(Options {
        start_worker: false,
        start_notifier: false,
        // As in production: no network beyond the public ones (http on, to see the address
        // refused rather than the scheme).
        extra: vec![("ICON_RETAILER_ALLOW_NETWORKS", String::new())],
        ..Options::default()
    })
    .await;
    let sim = Sim::start().await;
    for url in [
        sim.order_url("acme"),
        "http://localhost:8090/acme/orders".to_owned(),
        "http://10.0.0.7/orders".to_owned(),
        "http://192.168.1.1/orders".to_owned(),
        "http://169.254.169.254/latest/meta-data".to_owned(),
        "http://[::1]:8090/orders".to_owned(),
        "http://[::ffff:127.0.0.1]:8090/orders".to_owned(),
    ] {
        let message = refusal(&put_retailer(&app, "acme", &url).await, &url);
        assert!(
            message.contains("not globally reachable")
                && message.contains("ICON_RETAILER_ALLOW_NETWORKS"),
            "{url}: {message}"
        );
    }
    assert_eq!(
        registered(&app).await,
        Vec::<Value>::new(),
        "nothing stored"
    );

    // A retailer at a public name is registered (names are checked when the worker resolves
    // them); moving it inside the network is refused and leaves it where it was.
    let public = "https://orders.acme.example/icon";
    assert_eq!(put_retailer(&app, "acme", public).await.status, 201);
    let url = sim.order_url("acme");
    refusal(&put_retailer(&app, "acme", &url).await, &url);
    let stored = registered(&app).await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0]["order_url"], public);
    assert!(sim.orders().await.is_empty());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_order_urls_are_refused_unless_allowed() {
    let app = TestApp::spawn_with(Options {
        start_worker: false,
        start_notifier: false,
        // Unset, as in production: the test kit's own `true` is removed. Loopback stays allowed.
        extra: vec![("ICON_RETAILER_ALLOW_HTTP", String::new())],
        ..Options::default()
    })
    .await;
    for url in [
        "http://127.0.0.1:8090/acme/orders",
        "http://orders.acme.example/icon",
    ] {
        let message = refusal(&put_retailer(&app, "acme", url).await, url);
        assert!(
            message.contains("https") && message.contains("ICON_RETAILER_ALLOW_HTTP=true"),
            "{url}: {message}"
        );
    }
    assert_eq!(
        registered(&app).await,
        Vec::<Value>::new(),
        "nothing stored"
    );
    let r = put_retailer(&app, "acme", "https://127.0.0.1:8090/acme/orders").await;
    assert_eq!(r.status, 201, "the same target over https: {r:?}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_refuses_a_retailer_its_policy_does_not_allow_before_connecting() {
    // The gateway allows loopback (the test kit's settings); the worker will not.
    let mut app = TestApp::spawn_with(Options {
        start_worker: false,
        start_notifier: false,
        ..Options::default()
    })
    .await;
    let sim = Sim::start().await;
    let (listener, port) = witness();
    app.register_retailer("acme", &format!("http://127.0.0.1:{port}/acme/orders"))
        .await;
    app.register_retailer("globex", &sim.order_url("globex"))
        .await;
    let cart = app
        .cart_with("alice", &[("acme", "dress"), ("globex", "shoe")])
        .await;
    let r = app.checkout("alice", cart, None).await;
    assert_eq!(r.status, 202, "{r:?}");
    let id = r.json["checkout_id"].as_str().unwrap().to_owned();

    // The operator's worker allows no internal network (as in production).
    app.set_var("ICON_RETAILER_ALLOW_NETWORKS", "");
    app.start_worker();
    let view = app
        .wait_for_checkout("alice", &id, "the checkout to finish", |c| {
            c["status"] != "queued" && c["status"] != "processing"
        })
        .await;
    assert_eq!(view["status"], "failed", "{view}");
    for order in view["orders"].as_array().unwrap() {
        // Nothing was sent, so nothing can have been placed: `failed`, saying why and what to
        // change, and the cart is free for another try.
        assert_eq!(order["status"], "failed", "{order}");
        let reason = order["reason"].as_str().unwrap();
        for says in [
            "not placed",
            "network policy",
            "ICON_RETAILER_ALLOW_NETWORKS",
            "no request was sent",
        ] {
            assert!(reason.contains(says), "{says}: {reason}");
        }
    }
    assert_untouched(&listener);
    assert!(sim.orders().await.is_empty(), "the simulator got an order");
    assert!(sim.lookups().await.is_empty(), "the simulator got a lookup");
    app.stop().await;
}
