//! Signed requests to retailers (issue 17 §1), checked from the retailer's side: the
//! simulator's request and lookup logs record the `webhook-*` headers and the exact body, and
//! each is verified with the `standardwebhooks` crate (written independently of ICON's
//! signing) against the secret `GET /retailers/{id}/webhook-secret` answers. Also: the secret
//! endpoints (admin only), rotation with both signatures during the grace, a retailer without a
//! secret getting one at its first call, and the simulator's 401 (not placed on a first
//! request; in doubt, never "not placed", on a re-send).

use http::{HeaderMap, HeaderValue, Method};
use icon_testkit::{eventually, Options, Sim, TestApp};
use serde_json::{json, Value};
use standardwebhooks::Webhook;
use std::time::Duration;

async fn retailer_secret(app: &TestApp, retailer: &str) -> Value {
    let r = app
        .api
        .get(
            &format!("/retailers/{retailer}/webhook-secret"),
            Some(&app.admin_token()),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("cache-control"), Some("no-store"));
    r.json
}

async fn secret_of(app: &TestApp, retailer: &str) -> String {
    retailer_secret(app, retailer).await["secret"]
        .as_str()
        .expect("secret")
        .to_owned()
}

async fn rotate(app: &TestApp, retailer: &str) -> Value {
    let r = app
        .api
        .send(
            Method::POST,
            &format!("/retailers/{retailer}/webhook-secret/rotate"),
            Some(&app.admin_token()),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    r.json
}

/// Whether a request the simulator logged verifies with `secret`, as a retailer's Standard
/// Webhooks library would check it: over the exact body for a placement, an empty one for a
/// lookup.
fn verifies(secret: &str, logged: &Value, body: &[u8]) -> bool {
    let mut headers = HeaderMap::new();
    for (name, field) in [
        ("webhook-id", "webhook_id"),
        ("webhook-timestamp", "webhook_timestamp"),
        ("webhook-signature", "webhook_signature"),
    ] {
        let value = logged[field]
            .as_str()
            .unwrap_or_else(|| panic!("no {name} header: {logged}"));
        headers.insert(name, HeaderValue::from_str(value).unwrap());
    }
    Webhook::new(secret)
        .expect("a whsec_ secret")
        .verify(body, &headers)
        .is_ok()
}

fn placement_verifies(secret: &str, logged: &Value) -> bool {
    verifies(
        secret,
        logged,
        logged["raw_body"].as_str().unwrap().as_bytes(),
    )
}

fn lookup_verifies(secret: &str, logged: &Value) -> bool {
    verifies(secret, logged, b"")
}

fn of(log: &[Value], retailer: &str) -> Vec<Value> {
    log.iter()
        .filter(|r| r["retailer"] == retailer)
        .cloned()
        .collect()
}

async fn final_checkout(app: &TestApp, user: &str, cart: i64) -> Value {
    let r = app.checkout(user, cart, None).await;
    assert_eq!(r.status, 202, "{r:?}");
    let id = r.json["checkout_id"].as_str().unwrap().to_owned();
    app.wait_for_checkout(user, &id, "final", |c| {
        !matches!(c["status"].as_str(), Some("queued" | "processing"))
    })
    .await
}

fn order_of<'a>(view: &'a Value, retailer: &str) -> &'a Value {
    view["orders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["retailer_id"] == retailer)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_placement_and_lookup_is_signed_with_the_retailers_secret() {
    let app = TestApp::spawn().await;
    let sim = Sim::start().await;
    app.register_retailer("acme", &sim.order_url("acme")).await;
    app.register_retailer("globex", &sim.order_url("globex"))
        .await;
    let acme = secret_of(&app, "acme").await;
    let globex = secret_of(&app, "globex").await;
    assert!(acme.starts_with("whsec_") && globex.starts_with("whsec_"));
    assert_ne!(acme, globex, "a secret per retailer");
    // Acme checks every request; Globex's the simulator does not check (it does not know the
    // secret), but the test verifies them from the log all the same.
    sim.set_secret("acme", &acme).await;
    // flaky-: a 503, then placed on the re-send. down-: three 500s, then a status lookup.
    let cart = app
        .cart_with("alice", &[("acme", "flaky-dress"), ("globex", "down-shoe")])
        .await;
    let view = final_checkout(&app, "alice", cart).await;
    assert_eq!(order_of(&view, "acme")["status"], "confirmed", "{view}");

    let orders = sim.orders().await;
    let lookups = sim.lookups().await;
    let (acme_orders, globex_orders) = (of(&orders, "acme"), of(&orders, "globex"));
    assert_eq!(acme_orders.len(), 2, "{orders:?}");
    assert_eq!(globex_orders.len(), 3, "{orders:?}");
    assert_eq!(of(&lookups, "globex").len(), 1, "{lookups:?}");
    for o in &acme_orders {
        assert!(placement_verifies(&acme, o), "{o}");
        assert!(!placement_verifies(&globex, o), "{o}");
        assert_eq!(
            o["signature_verified"], true,
            "the simulator checked it: {o}"
        );
        assert!(o["idempotency_key"].is_string(), "{o}");
    }
    for o in &globex_orders {
        assert!(placement_verifies(&globex, o), "{o}");
        assert!(!placement_verifies(&acme, o), "{o}");
        assert!(o["signature_verified"].is_null(), "not checked: {o}");
    }
    let l = &of(&lookups, "globex")[0];
    assert!(lookup_verifies(&globex, l), "{l}");
    assert!(!lookup_verifies(&acme, l), "{l}");
    // One id per request: the retailer de-duplicates on Idempotency-Key, not webhook-id.
    let mut ids: Vec<&str> = orders
        .iter()
        .chain(&lookups)
        .map(|r| r["webhook_id"].as_str().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), orders.len() + lookups.len());
    // Real verification: another body under the same headers does not verify.
    let mut forged = acme_orders[1].clone();
    forged["raw_body"] = json!(forged["raw_body"]
        .as_str()
        .unwrap()
        .replace("\"quantity\":1", "\"quantity\":9"));
    assert_ne!(forged["raw_body"], acme_orders[1]["raw_body"]);
    assert!(!placement_verifies(&acme, &forged));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_a_rotation_requests_carry_both_signatures() {
    let app = TestApp::spawn_with(Options {
        extra: vec![("ICON_WEBHOOK_SECRET_GRACE", "1h".into())],
        ..Options::default()
    })
    .await;
    let sim = Sim::start().await;
    app.register_retailer("acme", &sim.order_url("acme")).await;
    let old = secret_of(&app, "acme").await;
    let rotated = rotate(&app, "acme").await;
    let new = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert!(rotated["previous_valid_until"].is_string(), "{rotated}");
    let read = retailer_secret(&app, "acme").await;
    assert_eq!(read["secret"], new.as_str());
    assert_eq!(
        read["previous_valid_until"],
        rotated["previous_valid_until"]
    );
    // The retailer has not deployed the new secret yet: it still checks with the old one.
    sim.set_secret("acme", &old).await;
    let cart = app.cart_with("alice", &[("acme", "down-dress")]).await;
    let view = final_checkout(&app, "alice", cart).await;
    assert_eq!(order_of(&view, "acme")["status"], "failed", "{view}");
    let orders = sim.orders().await;
    let lookups = sim.lookups().await;
    assert_eq!(
        (orders.len(), lookups.len()),
        (3, 1),
        "{orders:?} {lookups:?}"
    );
    for o in &orders {
        let sig = o["webhook_signature"].as_str().unwrap();
        assert_eq!(sig.split(' ').count(), 2, "two signatures: {sig}");
        assert!(
            placement_verifies(&old, o) && placement_verifies(&new, o),
            "{o}"
        );
        assert_eq!(o["signature_verified"], true);
    }
    assert!(lookup_verifies(&old, &lookups[0]) && lookup_verifies(&new, &lookups[0]));
    assert_eq!(lookups[0]["signature_verified"], true);

    // Rotating again within the grace retires the oldest at once.
    let newest = rotate(&app, "acme").await["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    sim.set_secret("acme", &newest).await;
    let cart = app.cart_with("alice", &[("acme", "dress")]).await;
    let view = final_checkout(&app, "alice", cart).await;
    assert_eq!(order_of(&view, "acme")["status"], "confirmed", "{view}");
    let last = sim.orders().await.pop().unwrap();
    assert!(placement_verifies(&newest, &last) && placement_verifies(&new, &last));
    assert!(!placement_verifies(&old, &last), "{last}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retailer_secret_endpoints_are_for_admins_only() {
    let app = TestApp::spawn_with(Options {
        start_worker: false,
        start_notifier: false,
        ..Options::default()
    })
    .await;
    app.register_retailer("acme", "http://127.0.0.1:9/acme/orders")
        .await;
    // Registration made the secret: it is stored sealed, never in the clear.
    let secret = secret_of(&app, "acme").await;
    let db = app.env.db().await;
    let stored: Vec<u8> = db
        .query_one(
            "SELECT current FROM retailer_secrets WHERE retailer_id = 'acme'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    use base64::Engine;
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .unwrap();
    assert_eq!(stored.len(), 12 + key.len() + 16);
    assert!(!stored.windows(key.len()).any(|w| w == key));
    // Re-registering (an update) keeps the secret.
    app.register_retailer("acme", "http://127.0.0.1:9/acme/orders2")
        .await;
    assert_eq!(secret_of(&app, "acme").await, secret);

    let shopper = app.token("alice");
    let admin = app.admin_token();
    for (method, path) in [
        (Method::GET, "/retailers/acme/webhook-secret"),
        (Method::POST, "/retailers/acme/webhook-secret/rotate"),
    ] {
        for (token, status) in [(None, 401), (Some(shopper.as_str()), 403)] {
            let r = app.api.send(method.clone(), path, token, None, None).await;
            assert_eq!(r.status, status, "{method} {path}: {r:?}");
            assert_eq!(r.content_type(), "application/problem+json");
            assert!(!r.text.contains(secret.trim_start_matches("whsec_")));
        }
        for unknown in ["globex", "Not_A_Slug"] {
            let path = path.replace("acme", unknown);
            let r = app
                .api
                .send(method.clone(), &path, Some(&admin), None, None)
                .await;
            assert_eq!(r.status, 404, "{method} {path}: {r:?}");
            assert_eq!(r.content_type(), "application/problem+json");
            assert_eq!(r.json["code"], "retailer_not_found", "{r:?}");
        }
    }
    // A shopper's rotation attempt changed nothing.
    assert_eq!(secret_of(&app, "acme").await, secret);

    let spec = app.api.get("/openapi.json", None).await.json;
    for (path, method) in [
        ("/retailers/{retailer_id}/webhook-secret", "get"),
        ("/retailers/{retailer_id}/webhook-secret/rotate", "post"),
    ] {
        let op = &spec["paths"][path][method];
        assert!(op["summary"].is_string(), "{path} {method}: {op}");
        for status in ["200", "401", "403", "404"] {
            assert!(op["responses"][status].is_object(), "{path} {status}: {op}");
        }
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retailer_registered_before_secrets_gets_one_at_its_first_call() {
    let app = TestApp::spawn().await;
    let sim = Sim::start().await;
    app.register_retailer("acme", &sim.order_url("acme")).await;
    // As a retailer registered before migration 11 is: no secret.
    let db = app.env.db().await;
    db.execute("DELETE FROM retailer_secrets", &[])
        .await
        .unwrap();
    let cart = app.cart_with("alice", &[("acme", "dress")]).await;
    let view = final_checkout(&app, "alice", cart).await;
    assert_eq!(order_of(&view, "acme")["status"], "confirmed", "{view}");
    let secret = secret_of(&app, "acme").await;
    let orders = sim.orders().await;
    assert_eq!(orders.len(), 1);
    assert!(placement_verifies(&secret, &orders[0]), "{:?}", orders[0]);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_signature_is_401_and_a_first_request_is_not_placed() {
    let app = TestApp::spawn().await;
    let sim = Sim::start().await;
    app.register_retailer("acme", &sim.order_url("acme")).await;
    // The retailer was configured with some other secret (a stale one, say).
    let other = icon_store::secrets::WebhookSecret::generate().expose_whsec();
    sim.set_secret("acme", &other).await;
    let cart = app.cart_with("alice", &[("acme", "dress")]).await;
    let view = final_checkout(&app, "alice", cart).await;
    let order = order_of(&view, "acme");
    assert_eq!(order["status"], "failed", "{view}");
    let reason = order["reason"].as_str().unwrap();
    assert!(
        reason.contains("not placed") && reason.contains("401"),
        "{reason}"
    );
    let orders = sim.orders().await;
    assert_eq!(
        orders.len(),
        1,
        "no retry after a definite refusal: {orders:?}"
    );
    assert_eq!(orders[0]["response_status"], 401);
    assert_eq!(orders[0]["signature_verified"], false);
    assert!(
        orders[0]["order_id"].is_null(),
        "nothing placed: {orders:?}"
    );

    // Straight at the simulator: no headers, or a forged signature, is a 401 problem+json
    // with no effect; the right secret's signature places the order.
    let secret = icon_store::secrets::WebhookSecret::generate();
    sim.set_secret("acme", &secret.expose_whsec()).await;
    let sim_api = icon_testkit::Api::new(&sim.base_url);
    let body = json!({"checkout_id": "c1", "items": [{"sku": "dress", "quantity": 1,
        "unit_price": {"amount_minor": 100, "currency": "EUR"}}]})
    .to_string();
    let now = chrono::Utc::now().timestamp();
    let ts = now.to_string();
    let good = secret.sign("msg_1", now, body.as_bytes());
    let forged = other_signature(&body, now);
    let stale = secret.sign("msg_1", now - 600, body.as_bytes());
    let stale_ts = (now - 600).to_string();
    let key = [("idempotency-key", "k1")];
    let with = |id: &'static str, ts: &str, sig: &str| {
        vec![
            ("idempotency-key".to_owned(), "k1".to_owned()),
            ("webhook-id".to_owned(), id.to_owned()),
            ("webhook-timestamp".to_owned(), ts.to_owned()),
            ("webhook-signature".to_owned(), sig.to_owned()),
        ]
    };
    let refused = [
        key.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        with("msg_1", &ts, &forged),
        with("msg_2", &ts, &good),
        with("msg_1", &stale_ts, &stale),
    ];
    for headers in refused {
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let r = sim_api
            .send_with(
                Method::POST,
                "/acme/orders",
                None,
                &headers,
                Some(body.clone()),
            )
            .await;
        assert_eq!(r.status, 401, "{headers:?}: {r:?}");
        assert_eq!(r.content_type(), "application/problem+json");
        assert_eq!(r.json["status"], 401, "{r:?}");
    }
    let r = sim_api
        .send_with(
            Method::GET,
            "/acme/orders?idempotency_key=k1",
            None,
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, 401, "{r:?}");
    let signed = with("msg_1", &ts, &good);
    let signed: Vec<(&str, &str)> = signed
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let r = sim_api
        .send_with(Method::POST, "/acme/orders", None, &signed, Some(body))
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    app.stop().await;
}

fn other_signature(body: &str, now: i64) -> String {
    icon_store::secrets::WebhookSecret::generate().sign("msg_1", now, body.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_on_a_re_send_leaves_the_order_in_doubt_never_not_placed() {
    // ghost-: the first request places the order but its answer is lost (502). Before the
    // re-send the retailer starts checking with a secret ICON does not have: the re-send gets
    // 401. Taking that for "not placed" would free the cart for a new key: a second order.
    let app = TestApp::spawn_with(Options {
        retailer_max_attempts: "2".into(),
        retailer_backoff: "3s".into(),
        extra: vec![
            ("ICON_RETAILER_RETRY_BACKOFF_MAX", "3s".into()),
            ("ICON_RETAILER_SETTLE_SCHEDULE", "200ms".into()),
            ("ICON_RETAILER_SETTLE_WITHIN", "2s".into()),
        ],
        ..Options::default()
    })
    .await;
    let sim = Sim::start().await;
    app.register_retailer("acme", &sim.order_url("acme")).await;
    let cart = app.cart_with("alice", &[("acme", "ghost-dress")]).await;
    let r = app.checkout("alice", cart, None).await;
    assert_eq!(r.status, 202, "{r:?}");
    let id = r.json["checkout_id"].as_str().unwrap().to_owned();
    eventually("the first request", Duration::from_secs(20), || async {
        (sim.orders().await.len() == 1).then_some(())
    })
    .await;
    let other = icon_store::secrets::WebhookSecret::generate().expose_whsec();
    sim.set_secret("acme", &other).await;
    let view = app
        .wait_for_checkout("alice", &id, "final", |c| {
            !matches!(c["status"].as_str(), Some("queued" | "processing"))
        })
        .await;
    let orders = sim.orders().await;
    assert_eq!(orders.len(), 2, "{orders:?}");
    assert_eq!(orders[0]["response_status"], 502);
    assert_eq!(orders[1]["response_status"], 401);
    let order = order_of(&view, "acme");
    assert_eq!(order["status"], "unknown", "never 'not placed': {view}");
    // So a new checkout of the cart re-sends the same key (still refused, still in doubt):
    // never a second key, which could place a second order.
    let again = app.checkout("alice", cart, None).await;
    assert_eq!(again.status, 202, "{again:?}");
    let again_id = again.json["checkout_id"].as_str().unwrap().to_owned();
    let view = app
        .wait_for_checkout("alice", &again_id, "final", |c| {
            !matches!(c["status"].as_str(), Some("queued" | "processing"))
        })
        .await;
    assert_eq!(order_of(&view, "acme")["status"], "unknown", "{view}");
    let orders = sim.orders().await;
    assert!(orders.len() > 2, "{orders:?}");
    assert!(
        orders
            .iter()
            .all(|o| o["idempotency_key"] == orders[0]["idempotency_key"]),
        "one key: {orders:?}"
    );
    app.stop().await;
}

/// The worker signs without a round trip of its own: the statement that claims a pass brings
/// each order's retailer's sealed secrets along (both during a rotation's grace), or nothing
/// for a retailer that has none yet (the worker then creates it, once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pass_claim_brings_the_retailers_secrets_along() {
    use icon_domain::CheckoutId;
    use icon_store::passes::{claim, Claim};
    use icon_store::secrets::SecretsKey;
    let app = TestApp::spawn_with(Options {
        start_worker: false,
        start_notifier: false,
        extra: vec![("ICON_WEBHOOK_SECRET_GRACE", "1h".into())],
        ..Options::default()
    })
    .await;
    app.register_retailer("acme", "http://127.0.0.1:9/acme/orders")
        .await;
    let secret = secret_of(&app, "acme").await;
    let cart = app.cart_with("alice", &[("acme", "dress")]).await;
    let r = app.checkout("alice", cart, None).await;
    assert_eq!(r.status, 202, "{r:?}");
    let id = CheckoutId::from_uuid(r.json["checkout_id"].as_str().unwrap().parse().unwrap());
    let key = SecretsKey::parse(icon_testkit::SECRETS_KEY).unwrap();
    let pool = app.env.pool().await;
    let db = pool.get().await.unwrap();
    // No lease, so each claim below takes the same pass over.
    let claimed = || async {
        match claim(&db, id, 0, Duration::ZERO).await.unwrap() {
            Claim::Claimed(pass) => pass.orders[0].signing.open(&key).unwrap(),
            other => panic!("{other:?}"),
        }
    };
    let secrets = claimed().await.expect("acme has a secret");
    assert_eq!(secrets.current.expose_whsec(), secret);
    assert!(secrets.previous.is_none());
    let new = rotate(&app, "acme").await["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let secrets = claimed().await.unwrap();
    assert_eq!(secrets.current.expose_whsec(), new);
    assert_eq!(secrets.previous.unwrap().expose_whsec(), secret);
    db.execute("DELETE FROM retailer_secrets", &[])
        .await
        .unwrap();
    assert!(claimed().await.is_none());
    app.stop().await;
}
