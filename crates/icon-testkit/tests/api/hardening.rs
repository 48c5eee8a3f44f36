//! Gateway hardening: a lost COMMIT reply is not reported as "nothing changed", shoppers do not
//! see where ICON places orders, and a NUL byte in any text field is a 422 naming the field
//! (PostgreSQL refuses NUL in `text`), with nothing stored.

use icon_gateway::{auth::JwtKeys, Application, GatewaySettings};
use icon_runtime::Env;
use icon_testkit::{Api, Options, TestApp, TestEnv, JWT_SECRET};
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

fn quiet() -> Options {
    Options {
        start_worker: false,
        start_notifier: false,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_admins_see_where_orders_go() {
    let app = TestApp::spawn_with(quiet()).await;
    let admin = app.admin_token();
    let r = app
        .api
        .put(
            "/retailers/acme",
            Some(&admin),
            &json!({"name": "Acme", "order_url": "http://127.0.0.1:9/acme/orders"}),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.json["order_url"], "http://127.0.0.1:9/acme/orders");

    let r = app.api.get("/retailers", Some(&admin)).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json["retailers"][0]["order_url"],
        "http://127.0.0.1:9/acme/orders"
    );

    let r = app.api.get("/retailers", Some(&app.token("alice"))).await;
    assert_eq!(r.status, 200);
    let retailer = &r.json["retailers"][0];
    assert_eq!(retailer["retailer_id"], "acme");
    assert_eq!(retailer["name"], "Acme");
    assert!(
        retailer.get("order_url").is_none(),
        "a shopper sees order_url: {retailer}"
    );
    assert!(!r.text.contains("127.0.0.1:9"), "{}", r.text);

    let spec = app.api.get("/openapi.json", None).await;
    let described = spec.json["components"]["schemas"]["RetailerBody"]["properties"]["order_url"]
        ["description"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(described.contains("admin"), "{described}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nul_byte_is_a_422_naming_the_field_and_stores_nothing() {
    let app = TestApp::spawn_with(quiet()).await;
    let admin = app.admin_token();
    let alice = app.token("alice");
    let assert_nul_refused = |r: &icon_testkit::ApiReply, field: &str| {
        assert_eq!(r.status, 422, "{r:?}");
        assert_eq!(r.content_type(), "application/problem+json");
        assert_eq!(r.json["code"], "validation_failed", "{r:?}");
        let errors = r.json["errors"].as_array().expect("errors");
        assert!(
            errors
                .iter()
                .any(|e| e["field"] == field && e["message"].as_str().unwrap().contains("NUL")),
            "{field} not named: {r:?}"
        );
    };

    for (body, field) in [
        (
            json!({"name": "Ac\u{0}me", "order_url": "http://127.0.0.1:9/o"}),
            "name",
        ),
        (
            json!({"name": "Acme", "order_url": "http://127.0.0.1:9/o\u{0}"}),
            "order_url",
        ),
    ] {
        let r = app.api.put("/retailers/acme", Some(&admin), &body).await;
        assert_nul_refused(&r, field);
    }
    assert_eq!(app.env.count("retailers").await, 0);

    app.register_retailer("acme", "http://127.0.0.1:9/acme/orders")
        .await;
    let r = app.api.post("/carts", Some(&alice), &json!({})).await;
    let cart = r.json["cart_id"].as_i64().expect("cart");
    let r = app
        .api
        .post(
            &format!("/carts/{cart}/items"),
            Some(&alice),
            &json!({"retailer_id": "acme", "sku": "dress\u{0}42", "quantity": 1,
                    "unit_price": {"amount_minor": 1999, "currency": "GBP"}}),
        )
        .await;
    assert_nul_refused(&r, "sku");
    assert_eq!(app.env.count("cart_items").await, 0);

    let cart = app.cart_with("alice", &[("acme", "dress")]).await;
    let r = app
        .api
        .post(
            "/cart/checkout/",
            Some(&alice),
            &json!({"cart_id": cart, "callback_url": "http://127.0.0.1:9/hook\u{0}"}),
        )
        .await;
    assert_nul_refused(&r, "callback_url");
    assert_eq!(app.env.count("checkouts").await, 0);
    assert_eq!(app.env.count("outbox").await, 0);
    app.stop().await;
}

/// A TCP proxy in front of PostgreSQL that, once armed, lets the statement that creates a
/// checkout (`icon_create_checkout`, one statement and so its own transaction) through to the
/// server and then cuts the connection before the reply: the commit happens, the gateway never
/// hears of it. The statement is prepared first (its text goes out in a Parse message, answered
/// normally); the cut is on the reply to the next message, which executes it.
struct CommitReplyCutter {
    port: u16,
    armed: Arc<AtomicBool>,
    cut: Arc<AtomicBool>,
}

impl CommitReplyCutter {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let armed = Arc::new(AtomicBool::new(false));
        let cut = Arc::new(AtomicBool::new(false));
        let (a, c) = (armed.clone(), cut.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let (a, c) = (a.clone(), c.clone());
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(&upstream).await {
                        pipe(client, server, a, c).await;
                    }
                });
            }
        });
        Self { port, armed, cut }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

async fn pipe(client: TcpStream, server: TcpStream, armed: Arc<AtomicBool>, cut: Arc<AtomicBool>) {
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    let cutting = Arc::new(AtomicBool::new(false));
    let c2s = {
        let cutting = cutting.clone();
        async move {
            let mut buf = vec![0u8; 64 * 1024];
            let mut prepared_create = false;
            loop {
                let n = match from_client.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let chunk = &buf[..n];
                let parse = contains(chunk, b"icon_create_checkout");
                if !parse && prepared_create && armed.swap(false, Ordering::SeqCst) {
                    // Set before the execution leaves, so its reply is the first thing dropped.
                    cutting.store(true, Ordering::SeqCst);
                    let _ = to_server.write_all(chunk).await;
                    return;
                }
                prepared_create |= parse;
                if to_server.write_all(chunk).await.is_err() {
                    return;
                }
            }
        }
    };
    let s2c = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from_server.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if cutting.load(Ordering::SeqCst) {
                // PostgreSQL answered the statement (so it committed); the gateway never sees it.
                cut.store(true, Ordering::SeqCst);
                return;
            }
            if to_client.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    // Each direction drops its halves when it ends, which closes the sockets.
    tokio::join!(c2s, s2c);
}

/// `host:port` of a PostgreSQL URL (`postgres://user[:pw]@host:port/db`).
fn host_port(url: &str) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, r)| r);
    let after_user = after_scheme
        .rsplit_once('@')
        .map_or(after_scheme, |(_, r)| r);
    let host = after_user.split(['/', '?']).next().unwrap_or("127.0.0.1");
    if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:5432")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_commit_reply_says_the_checkout_may_have_been_accepted() {
    let env = TestEnv::create().await;
    let upstream = host_port(&env.database_url);
    let proxy = CommitReplyCutter::start(upstream.clone()).await;
    let through_proxy =
        env.database_url
            .replacen(&upstream, &format!("127.0.0.1:{}", proxy.port), 1);
    let settings = GatewaySettings::from_env(&Env::from_pairs([
        ("ICON_DATABASE_URL", through_proxy),
        ("ICON_AMQP_URL", env.amqp_url.clone()),
        ("ICON_HTTP_ADDR", "127.0.0.1:0".into()),
        ("ICON_HTTP_WORKERS", "1".into()),
        ("ICON_JWT_SECRET", JWT_SECRET.into()),
        ("ICON_RATE_LIMIT", "off".into()),
        ("ICON_SECRETS_KEY", icon_testkit::SECRETS_KEY.into()),
        ("ICON_CALLBACK_ALLOW_NETWORKS", "127.0.0.0/8".into()),
        ("ICON_RETAILER_ALLOW_NETWORKS", "127.0.0.0/8".into()),
        ("ICON_RETAILER_ALLOW_HTTP", "true".into()),
    ]))
    .expect("settings");
    let shutdown = CancellationToken::new();
    let app = Application::build(settings, shutdown.clone())
        .await
        .expect("gateway starts")
        .expect("not cancelled");
    let api = Api::new(app.public_url());
    let server = tokio::spawn(app.run_until_stopped());
    let keys = JwtKeys::new(JWT_SECRET);
    let admin = keys.mint("ops", true, Duration::from_secs(600)).unwrap();
    let alice = keys.mint("alice", false, Duration::from_secs(600)).unwrap();
    let r = api
        .put(
            "/retailers/acme",
            Some(&admin),
            &json!({"name": "Acme", "order_url": "http://127.0.0.1:9/acme/orders"}),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let cart = api.post("/carts", Some(&alice), &json!({})).await.json["cart_id"]
        .as_i64()
        .expect("cart");
    let r = api
        .post(
            &format!("/carts/{cart}/items"),
            Some(&alice),
            &json!({"retailer_id": "acme", "sku": "dress", "quantity": 1,
                    "unit_price": {"amount_minor": 1999, "currency": "GBP"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");

    proxy.armed.store(true, Ordering::SeqCst);
    let body = json!({"cart_id": cart}).to_string();
    let key = [("idempotency-key", "commit-reply-lost-1")];
    let r = api
        .send_with(
            http::Method::POST,
            "/cart/checkout/",
            Some(&alice),
            &key,
            Some(body.clone()),
        )
        .await;
    assert!(
        proxy.cut.load(Ordering::SeqCst),
        "the proxy did not cut the reply to the checkout's statement"
    );
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.json["code"], "unavailable");
    assert!(r.header("retry-after").is_some());
    let detail = r.json["detail"].as_str().unwrap();
    assert!(detail.contains("may have been accepted"), "{detail}");
    assert!(detail.contains("Idempotency-Key"), "{detail}");
    assert!(!detail.contains("Nothing was changed"), "{detail}");

    // It was in fact committed; the retry with the same key says so.
    assert_eq!(env.count("checkouts").await, 1);
    let stored: uuid::Uuid = env
        .db()
        .await
        .query_one("SELECT id FROM checkouts", &[])
        .await
        .unwrap()
        .get(0);
    let retry = api
        .send_with(
            http::Method::POST,
            "/cart/checkout/",
            Some(&alice),
            &key,
            Some(body),
        )
        .await;
    assert_eq!(retry.status, 202, "{retry:?}");
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    assert_eq!(retry.json["checkout_id"], stored.to_string());
    assert_eq!(env.count("checkouts").await, 1);

    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(15), server).await;
}
