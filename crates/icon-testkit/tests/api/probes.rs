//! Probes and docs, and what a checkout stores that is delivered later (push).

use icon_testkit::{eventually, Sim, TestApp};
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_spec_and_docs() {
    let app = TestApp::spawn().await;
    let r = app.api.get("/healthz", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json["status"], "ok");
    let ready = eventually("readiness", Duration::from_secs(10), || async {
        let r = app.api.get("/readyz", None).await;
        (r.status == 200).then_some(r)
    })
    .await;
    assert_eq!(ready.json["database"], "up");
    assert_eq!(ready.json["broker"], "up");

    let spec = app.api.get("/openapi.json", None).await;
    assert_eq!(spec.status, 200);
    assert!(spec.json["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in [
        "/cart/checkout/",
        "/cart/checkout/{checkout_id}",
        "/carts/{cart_id}/items",
        "/retailers/{retailer_id}",
    ] {
        assert!(
            spec.json["paths"][path].is_object(),
            "{path} missing from the spec"
        );
    }
    let docs = app.api.get("/docs", None).await;
    assert_eq!(docs.status, 200);
    assert!(docs.content_type().starts_with("text/html"));
    assert!(docs.text.contains("problem-checkout_exists"));
    // Offline: every script and stylesheet comes from the gateway itself, and the CSP forbids
    // anything else.
    for asset in [
        "/docs/assets/swagger-ui-bundle.js",
        "/docs/assets/init.js",
        "/docs/assets/swagger-ui.css",
    ] {
        assert!(
            docs.text.contains(&format!("\"{asset}\"")),
            "{asset} not on the page"
        );
        let r = app.api.get(asset, None).await;
        assert_eq!(r.status, 200, "{asset}");
        assert!(r.text.len() > 100, "{asset}");
    }
    assert!(
        !docs.text.contains("//cdn") && !docs.text.contains("https://"),
        "{}",
        docs.text
    );
    let csp = docs.header("content-security-policy").expect("CSP");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let license = app.api.get("/docs/assets/LICENSE", None).await;
    assert!(license.text.contains("Apache License"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_notification_flag_is_stored_and_shown() {
    let app = TestApp::spawn().await;
    let sim = Sim::start().await;
    app.register_retailer("acme", &sim.order_url("acme")).await;
    let cart = app.cart_with("alice", &[("acme", "dress")]).await;
    let r = app
        .api
        .post(
            "/cart/checkout",
            Some(&app.token("alice")),
            &json!({"cart_id": cart, "push_notification": true}),
        )
        .await;
    assert_eq!(r.status, 202, "without the trailing slash too: {r:?}");
    let id = r.json["checkout_id"].as_str().unwrap();
    let view = app
        .wait_for_checkout("alice", id, "completed", |c| c["status"] == "completed")
        .await;
    assert_eq!(view["push_notification"], true);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_starts_migrate_an_empty_database_once() {
    let env = icon_testkit::TestEnv::create().await;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let settings = icon_store::PoolSettings::new(&env.database_url);
    let starts = (0..4).map(|_| icon_store::connect(&settings, &shutdown));
    for pool in futures_util::future::join_all(starts).await {
        assert!(pool.expect("connect and migrate").is_some());
    }
    let db = env.db().await;
    let versions: Vec<i32> = db
        .query(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, (1..=14).collect::<Vec<i32>>());
    assert_eq!(env.count("checkouts").await, 0);
}
