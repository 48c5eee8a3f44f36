//! Every error the checkout API answers: the right status, a problem document with a stable
//! code, and nothing changed (no checkout row, no outbox message, nothing queued).

use http::Method;
use icon_testkit::{ApiReply, Sim, TestApp, JWT_SECRET};
use serde_json::json;

fn assert_problem(r: &ApiReply, status: u16, code: &str) {
    assert_eq!(r.status, status, "{r:?}");
    assert_eq!(r.content_type(), "application/problem+json", "{r:?}");
    assert_eq!(r.json["status"], status);
    assert_eq!(r.json["code"], code, "{r:?}");
    assert!(r.json["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(r.json["detail"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(r.json["type"].as_str().is_some_and(|t| t.ends_with(code)));
}

async fn assert_nothing_queued(app: &TestApp, checkouts: i64) {
    assert_eq!(app.env.count("checkouts").await, checkouts);
    app.env.outbox_drained().await;
    assert_eq!(
        app.env.count("checkout_orders").await,
        if checkouts == 0 { 0 } else { 1 }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkout_errors_are_problems_and_change_nothing() {
    let app = TestApp::spawn().await;
    let sim = Sim::start().await;
    app.register_retailer("acme", &sim.order_url("acme")).await;
    let cart = app.cart_with("alice", &[("acme", "slow-dress")]).await;
    let token = app.token("alice");
    let post = |body: String, ct: Option<&'static str>, tok: Option<String>| {
        let api = app.api.clone();
        async move {
            api.send(
                Method::POST,
                "/cart/checkout/",
                tok.as_deref(),
                ct,
                Some(body),
            )
            .await
        }
    };
    let json_ct = Some("application/json");

    // 400: malformed JSON, wrong types, missing cart_id.
    let r = post("{not json".into(), json_ct, Some(token.clone())).await;
    assert_problem(&r, 400, "malformed_json");
    let r = post(
        json!({"cart_id": "abc"}).to_string(),
        json_ct,
        Some(token.clone()),
    )
    .await;
    assert_problem(&r, 400, "malformed_json");
    let r = post(
        json!({"callback_url": "https://x.example"}).to_string(),
        json_ct,
        Some(token.clone()),
    )
    .await;
    assert_problem(&r, 400, "malformed_json");

    // 401: no token, wrong secret, expired; each with a Bearer challenge.
    let r = post(json!({"cart_id": cart}).to_string(), json_ct, None).await;
    assert_problem(&r, 401, "unauthorized");
    assert!(r.header("www-authenticate").unwrap().starts_with("Bearer"));
    let forged = icon_gateway::auth::JwtKeys::new("not-the-secret")
        .mint("alice", false, std::time::Duration::from_secs(60))
        .unwrap();
    let r = post(json!({"cart_id": cart}).to_string(), json_ct, Some(forged)).await;
    assert_problem(&r, 401, "unauthorized");
    let expired = expired_token();
    let r = post(json!({"cart_id": cart}).to_string(), json_ct, Some(expired)).await;
    assert_problem(&r, 401, "unauthorized");
    assert!(r.json["detail"].as_str().unwrap().contains("expired"));

    // 404: unknown cart, and someone else's cart.
    let r = post(
        json!({"cart_id": 999_999}).to_string(),
        json_ct,
        Some(token.clone()),
    )
    .await;
    assert_problem(&r, 404, "cart_not_found");
    let r = post(
        json!({"cart_id": cart}).to_string(),
        json_ct,
        Some(app.token("bob")),
    )
    .await;
    assert_problem(&r, 404, "cart_not_found");

    // 415: not JSON.
    let r = post(
        format!("cart_id={cart}"),
        Some("application/x-www-form-urlencoded"),
        Some(token.clone()),
    )
    .await;
    assert_problem(&r, 415, "unsupported_media_type");

    // 422: callback URLs that are not absolute http(s), or point where the policy refuses
    // (the test app allows only 127.0.0.0/8). Refused before any connection: it is pure
    // validation at the gateway.
    for bad in [
        "/relative/path",
        "ftp://partner.example.com/hook",
        "not a url",
        "http://10.0.0.8/hook",
        "http://192.168.1.20/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]:9000/hook",
        "https://user:pw@partner.example.com/hook",
    ] {
        let r = post(
            json!({"cart_id": cart, "callback_url": bad}).to_string(),
            json_ct,
            Some(token.clone()),
        )
        .await;
        assert_problem(&r, 422, "validation_failed");
        assert_eq!(r.json["errors"][0]["field"], "callback_url", "{bad}");
    }
    assert_nothing_queued(&app, 0).await;

    // 422: an empty cart.
    let empty = app.cart_with("alice", &[]).await;
    let r = post(
        json!({"cart_id": empty}).to_string(),
        json_ct,
        Some(token.clone()),
    )
    .await;
    assert_problem(&r, 422, "empty_cart");
    assert_nothing_queued(&app, 0).await;

    // 409: a second checkout of the same cart names the first; only one is stored.
    let first = app.checkout("alice", cart, None).await;
    assert_eq!(first.status, 202);
    let first_id = first.json["checkout_id"].as_str().unwrap();
    let r = app.checkout("alice", cart, None).await;
    assert_problem(&r, 409, "checkout_exists");
    assert_eq!(r.json["checkout_id"], first_id);
    assert!(r.json["checkout_url"].as_str().unwrap().ends_with(first_id));
    assert_eq!(app.env.count("checkouts").await, 1);
    // Its cart is frozen meanwhile.
    let r = app
        .api
        .post(
            &format!("/carts/{cart}/items"),
            Some(&token),
            &json!({"retailer_id": "acme", "sku": "x", "quantity": 1,
                    "unit_price": {"amount_minor": 1, "currency": "GBP"}}),
        )
        .await;
    assert_problem(&r, 409, "cart_frozen");
    app.stop().await;
}

fn expired_token() -> String {
    use jsonwebtoken::{encode, EncodingKey, Header};
    let claims = json!({"sub": "alice", "exp": chrono::Utc::now().timestamp() - 3600});
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cart_and_retailer_validation() {
    let app = TestApp::spawn().await;
    let sim = Sim::start().await;
    let admin = app.admin_token();
    let alice = app.token("alice");

    // Admin scope is required to register a retailer.
    let r = app
        .api
        .put(
            "/retailers/acme",
            Some(&alice),
            &json!({"name": "Acme", "order_url": sim.order_url("acme")}),
        )
        .await;
    assert_problem(&r, 403, "forbidden");
    let r = app
        .api
        .put(
            "/retailers/Bad_Slug",
            Some(&admin),
            &json!({"name": "", "order_url": "ftp://x"}),
        )
        .await;
    assert_problem(&r, 422, "validation_failed");
    assert_eq!(
        r.json["errors"].as_array().unwrap().len(),
        3,
        "every bad field at once"
    );
    let r = app
        .api
        .put(
            "/retailers/acme",
            Some(&admin),
            &json!({"name": "Acme", "order_url": sim.order_url("acme")}),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.header("location"), Some("/retailers/acme"));
    let r = app
        .api
        .put(
            "/retailers/acme",
            Some(&admin),
            &json!({"name": "Acme Ltd", "order_url": sim.order_url("acme")}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json["name"], "Acme Ltd");
    let r = app.api.get("/retailers", Some(&alice)).await;
    assert_eq!(r.json["retailers"].as_array().unwrap().len(), 1);

    let r = app.api.post("/carts", Some(&alice), &json!({})).await;
    assert_eq!(r.status, 201);
    let cart = r.json["cart_id"].as_i64().unwrap();
    assert_eq!(
        r.header("location"),
        Some(format!("/carts/{cart}").as_str())
    );
    let item = |retailer: &str, qty: i64, currency: &str| {
        json!({"retailer_id": retailer, "sku": "dress", "quantity": qty,
               "unit_price": {"amount_minor": 1999, "currency": currency}})
    };
    let path = format!("/carts/{cart}/items");
    let r = app
        .api
        .post(&path, Some(&alice), &item("nobody", 1, "GBP"))
        .await;
    assert_problem(&r, 422, "validation_failed");
    assert_eq!(r.json["errors"][0]["field"], "retailer_id");
    let r = app
        .api
        .post(&path, Some(&alice), &item("acme", 0, "GBP"))
        .await;
    assert_problem(&r, 422, "validation_failed");
    assert_eq!(r.json["errors"][0]["field"], "quantity");
    let r = app
        .api
        .post(&path, Some(&alice), &item("acme", 1, "XYZ"))
        .await;
    assert_problem(&r, 422, "validation_failed");
    assert_eq!(r.json["errors"][0]["field"], "unit_price.currency");
    let r = app
        .api
        .post(&path, Some(&alice), &json!({"retailer_id": "acme"}))
        .await;
    assert_problem(&r, 400, "malformed_json");
    assert_eq!(app.env.count("cart_items").await, 0);

    let r = app
        .api
        .post(&path, Some(&alice), &item("acme", 2, "EUR"))
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let r = app.api.get(&format!("/carts/{cart}"), Some(&alice)).await;
    assert_eq!(r.json["items"][0]["quantity"], 2);
    assert_eq!(r.json["items"][0]["unit_price"]["currency"], "EUR");

    // Unknown routes and methods are problems too.
    let r = app.api.get("/nope", Some(&alice)).await;
    assert_problem(&r, 404, "not_found");
    let r = app.api.get("/cart/checkout/not-a-uuid", Some(&alice)).await;
    assert_problem(&r, 404, "checkout_not_found");
    app.stop().await;
}
