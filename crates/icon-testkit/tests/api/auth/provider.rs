//! Tokens from an identity provider: what is accepted, what is refused, and how often the
//! provider's keys are fetched.

use super::{claims, forge, sign, sign_as, Provider, AUDIENCE};
use icon_testkit::{ApiReply, Options, TestApp};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use std::time::Duration;

async fn app_trusting(provider: &Provider, min_refresh: &str) -> TestApp {
    TestApp::spawn_with(Options {
        start_worker: false,
        start_notifier: false,
        extra: provider.settings(min_refresh),
        ..Options::default()
    })
    .await
}

async fn create_cart(app: &TestApp, token: &str) -> ApiReply {
    app.api.post("/carts", Some(token), &json!({})).await
}

fn assert_refused(r: &ApiReply, why: &str, detail_has: &str) {
    assert_eq!(r.status, 401, "{why}: {r:?}");
    assert_eq!(r.json["code"], "unauthorized", "{why}: {r:?}");
    let detail = r.json["detail"].as_str().unwrap_or_default();
    assert!(detail.contains(detail_has), "{why}: {detail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs256_and_es256_tokens_from_the_provider_are_accepted() {
    let provider = Provider::start(&["rsa-1", "ec-1"]).await;
    let app = app_trusting(&provider, "30s").await;

    let rs = sign("rsa-1", &claims("alice"));
    let r = create_cart(&app, &rs).await;
    assert_eq!(r.status, 201, "RS256: {r:?}");
    let cart = r.json["cart_id"].as_i64().unwrap();

    // The same user with an ES256 token owns the same cart.
    let es = sign("ec-1", &claims("alice"));
    let r = app.api.get(&format!("/carts/{cart}"), Some(&es)).await;
    assert_eq!(r.status, 200, "ES256: {r:?}");
    // ...and so does a development HS256 token for alice, since both sources are configured.
    let r = app
        .api
        .get(&format!("/carts/{cart}"), Some(&app.token("alice")))
        .await;
    assert_eq!(r.status, 200, "HS256: {r:?}");
    // `aud` may be a list that includes ICON.
    let mut c = claims("alice");
    c["aud"] = json!(["another-api", AUDIENCE]);
    assert_eq!(create_cart(&app, &sign("ec-1", &c)).await.status, 201);
    // A `nbf` within the 30 s leeway of now is fine (clock skew).
    let mut c = claims("alice");
    c["nbf"] = json!(chrono::Utc::now().timestamp() + 10);
    assert_eq!(create_cart(&app, &sign("rsa-1", &c)).await.status, 201);

    assert_eq!(provider.fetches(), 1, "the keys are cached");
    app.stop().await;
    provider.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_not_meant_for_icon_or_not_signed_by_the_provider_are_refused() {
    let provider = Provider::start(&["rsa-1", "ec-1"]).await;
    let app = app_trusting(&provider, "1h").await;
    let now = chrono::Utc::now().timestamp();

    let mut c = claims("alice");
    c["iss"] = json!("https://evil.example/");
    let r = create_cart(&app, &sign("rsa-1", &c)).await;
    assert_refused(&r, "wrong issuer", "issuer");

    let mut c = claims("alice");
    c["aud"] = json!("another-api");
    let r = create_cart(&app, &sign("rsa-1", &c)).await;
    assert_refused(&r, "wrong audience", "audience");

    let mut c = claims("alice");
    c.as_object_mut().unwrap().remove("aud");
    let r = create_cart(&app, &sign("rsa-1", &c)).await;
    assert_refused(&r, "no audience", "aud");

    let mut c = claims("alice");
    c["exp"] = json!(now - 3600);
    let r = create_cart(&app, &sign("ec-1", &c)).await;
    assert_refused(&r, "expired", "expired");

    let mut c = claims("alice");
    c["nbf"] = json!(now + 600);
    let r = create_cart(&app, &sign("ec-1", &c)).await;
    assert_refused(&r, "not valid yet", "nbf");

    // `alg: none`, unsigned.
    let none = forge(&json!({"alg": "none", "typ": "JWT"}), &claims("alice"), b"");
    let r = create_cart(&app, &none).await;
    assert_refused(&r, "alg none", "none");
    let none = forge(
        &json!({"alg": "none", "kid": "rsa-1"}),
        &claims("alice"),
        b"",
    );
    assert_refused(&create_cart(&app, &none).await, "alg none with kid", "none");

    // Algorithm confusion: HS256 with the provider's public key (PEM) as the HMAC secret.
    let public_pem = include_str!("fixtures/rsa-1.pub.pem");
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("rsa-1".into());
    let confused = jsonwebtoken::encode(
        &header,
        &claims("alice"),
        &EncodingKey::from_secret(public_pem.as_bytes()),
    )
    .unwrap();
    let r = create_cart(&app, &confused).await;
    assert_refused(&r, "HS256 with the public key", "ICON_JWT_SECRET");

    // An RSA key named in an ES256 header (and the reverse): the key allows one algorithm.
    let rs_sig = sign("rsa-1", &claims("alice"));
    let sig = rs_sig.rsplit('.').next().unwrap();
    let lie = forge(
        &json!({"alg": "ES256", "kid": "rsa-1"}),
        &claims("alice"),
        &base64_decode(sig),
    );
    assert_refused(
        &create_cart(&app, &lie).await,
        "ES256 on an RSA key",
        "only RS256",
    );
    let es = sign("ec-1", &claims("alice"));
    let sig = es.rsplit('.').next().unwrap();
    let lie = forge(
        &json!({"alg": "RS256", "kid": "ec-1"}),
        &claims("alice"),
        &base64_decode(sig),
    );
    assert_refused(
        &create_cart(&app, &lie).await,
        "RS256 on a P-256 key",
        "only ES256",
    );

    // Signed by a key the provider does not publish, claiming one it does.
    let r = create_cart(&app, &sign_as("rsa-2", "rsa-1", &claims("alice"))).await;
    assert_refused(&r, "wrong key", "signature");

    // A tampered payload.
    let good = sign("rsa-1", &claims("alice"));
    let parts: Vec<&str> = good.split('.').collect();
    let mut evil = claims("ops");
    evil["scope"] = json!("admin");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        forge(&json!({}), &evil, b"").split('.').nth(1).unwrap(),
        parts[2]
    );
    assert_refused(&create_cart(&app, &tampered).await, "tampered", "signature");

    // No `kid`.
    let mut header = Header::new(Algorithm::RS256);
    header.kid = None;
    let key = EncodingKey::from_rsa_pem(include_bytes!("fixtures/rsa-1.pem")).unwrap();
    let no_kid = jsonwebtoken::encode(&header, &claims("alice"), &key).unwrap();
    assert_refused(&create_cart(&app, &no_kid).await, "no kid", "kid");

    // Nothing above made a cart, and a good token still works.
    assert_eq!(create_cart(&app, &good).await.status, 201);
    app.stop().await;
    provider.stop().await;
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unknown_kids_costs_the_provider_one_fetch_per_window() {
    let provider = Provider::start(&["rsa-1"]).await;
    let app = app_trusting(&provider, "1h").await;

    // A cold cache and 40 tokens at once, each naming a made-up key: one fetch between them.
    let tokens: Vec<String> = (0..40)
        .map(|i| sign_as("rsa-1", &format!("made-up-{i}"), &claims("mallory")))
        .collect();
    let replies = futures_util::future::join_all(tokens.iter().map(|t| create_cart(&app, t))).await;
    for r in &replies {
        assert_refused(r, "unknown kid", "kid");
    }
    assert_eq!(provider.fetches(), 1, "concurrent misses share one fetch");

    // The fetched keys serve real tokens without another fetch...
    let r = create_cart(&app, &sign("rsa-1", &claims("alice"))).await;
    assert_eq!(r.status, 201, "{r:?}");
    // ...and more made-up kids within the window fetch nothing.
    for i in 0..40 {
        let t = sign_as("rsa-1", &format!("again-{i}"), &claims("mallory"));
        assert_refused(&create_cart(&app, &t).await, "unknown kid", "kid");
    }
    assert_eq!(
        provider.fetches(),
        1,
        "at most one fetch per ICON_JWT_JWKS_MIN_REFRESH"
    );
    app.stop().await;
    provider.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rotated_at_the_provider_is_picked_up_after_an_unknown_kid() {
    let provider = Provider::start(&["rsa-1"]).await;
    let app = app_trusting(&provider, "1s").await;
    let old = sign("rsa-1", &claims("alice"));
    assert_eq!(create_cart(&app, &old).await.status, 201);
    assert_eq!(provider.fetches(), 1);

    // The provider rotates: rsa-2 replaces rsa-1. The first rsa-2 token ICON sees after the
    // min-refresh window makes it fetch the set again (tokens before that are refused).
    provider.publish(&["rsa-2"]);
    let new = sign("rsa-2", &claims("alice"));
    icon_testkit::eventually(
        "a token signed with the rotated key to be accepted",
        Duration::from_secs(15),
        || async { (create_cart(&app, &new).await.status == 201).then_some(()) },
    )
    .await;
    assert_eq!(
        provider.fetches(),
        2,
        "one fetch for the new kid, however many tries"
    );
    // The withdrawn key no longer verifies anything.
    let r = create_cart(&app, &old).await;
    assert_refused(&r, "withdrawn key", "kid");
    app.stop().await;
    provider.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_withdrawn_at_the_provider_is_refused_once_the_set_is_stale() {
    const MAX_AGE: Duration = Duration::from_secs(1);
    let provider = Provider::start(&["rsa-1", "rsa-2"]).await;
    let mut extra = provider.settings("100ms");
    extra.push(("ICON_JWT_JWKS_MAX_AGE", "1s".into()));
    let app = TestApp::spawn_with(Options {
        start_worker: false,
        start_notifier: false,
        extra,
        ..Options::default()
    })
    .await;
    let withdrawn = sign("rsa-1", &claims("alice"));
    assert_eq!(create_cart(&app, &withdrawn).await.status, 201);
    // The gateway fetched the set before it answered, so from here on its copy ages.
    let fetched_by = tokio::time::Instant::now();
    assert_eq!(provider.fetches(), 1);

    // The provider withdraws rsa-1 (leaked, say) and keeps rsa-2.
    provider.publish(&["rsa-2"]);
    // Waiting on the clock is the point here: the set goes stale after ICON_JWT_JWKS_MAX_AGE.
    tokio::time::sleep_until(fetched_by + MAX_AGE).await;

    // The token that makes ICON fetch the set again is judged by the set just fetched.
    let r = create_cart(&app, &withdrawn).await;
    assert_refused(&r, "the request that triggers the refresh", "kid");
    assert_eq!(provider.fetches(), 2, "the stale set was fetched again");
    let r = create_cart(&app, &sign("rsa-2", &claims("alice"))).await;
    assert_eq!(r.status, 201, "the key still published works: {r:?}");
    let r = create_cart(&app, &withdrawn).await;
    assert_refused(&r, "the withdrawn key, later", "kid");
    assert_eq!(provider.fetches(), 2, "the fresh set is cached");
    app.stop().await;
    provider.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scope_and_scp_are_read_as_a_string_or_a_list() {
    let provider = Provider::start(&["rsa-1"]).await;
    let app = app_trusting(&provider, "30s").await;
    let with = |claim: &str, value: serde_json::Value| {
        let mut c = claims("ops");
        c[claim] = value;
        sign("rsa-1", &c)
    };
    let body = json!({"name": "Acme", "order_url": "http://127.0.0.1:9/orders"});
    let admins = [
        with("scope", json!("openid admin")),
        with("scope", json!(["openid", "admin"])),
        with("scp", json!("admin")),
        with("scp", json!(["openid", "admin"])),
    ];
    for (i, token) in admins.iter().enumerate() {
        let r = app.api.put("/retailers/acme", Some(token), &body).await;
        assert!(r.status == 201 || r.status == 200, "admin form {i}: {r:?}");
    }
    for (what, token) in [
        ("a longer word", with("scope", json!(["administrator"]))),
        (
            "a list item with a space",
            with("scope", json!(["openid admin"])),
        ),
        ("another scope", with("scp", json!(["partner"]))),
    ] {
        let r = app.api.put("/retailers/acme", Some(&token), &body).await;
        assert_eq!(r.status, 403, "{what}: {r:?}");
        assert_eq!(r.json["code"], "forbidden", "{what}");
    }
    // A scope claim of another shape is not a token ICON understands.
    let r = create_cart(&app, &with("scope", json!({"admin": true}))).await;
    assert_refused(&r, "scope as an object", "valid JWT");

    // `scp: ["partner"]` makes a partner, known by its client id.
    let mut c = claims("service-account-1");
    c["scp"] = json!(["partner"]);
    c["client_id"] = json!("globex");
    let r = create_cart(&app, &sign("rsa-1", &c)).await;
    assert_eq!(r.status, 201, "{r:?}");
    let cart = r.json["cart_id"].as_i64().unwrap();
    let r = app
        .api
        .get(
            &format!("/carts/{cart}"),
            Some(&app.partner_token("globex")),
        )
        .await;
    assert_eq!(r.status, 200, "the partner globex owns it: {r:?}");
    app.stop().await;
    provider.stop().await;
}
