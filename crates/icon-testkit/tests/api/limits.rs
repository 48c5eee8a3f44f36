//! Hostile input: bodies too large or too deep, unknown fields, over-long strings, too many
//! items, oversized headers and wrong methods are each refused with a documented answer, store
//! nothing, and leave the server serving.

use http::Method;
use icon_testkit::{ApiReply, Options, TestApp};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn quiet() -> Options {
    Options {
        start_worker: false,
        start_notifier: false,
        ..Default::default()
    }
}

fn assert_problem(r: &ApiReply, status: u16, code: &str) {
    assert_eq!(r.status, status, "{r:?}");
    assert_eq!(r.content_type(), "application/problem+json", "{r:?}");
    assert_eq!(r.json["code"], code, "{r:?}");
    assert_eq!(r.json["status"], status, "{r:?}");
    assert!(r.json["detail"].as_str().is_some_and(|d| !d.is_empty()));
}

fn item(sku: &str) -> Value {
    json!({"retailer_id": "acme", "sku": sku, "quantity": 1,
           "unit_price": {"amount_minor": 1999, "currency": "GBP"}})
}

async fn still_serving(app: &TestApp) {
    let r = app.api.get("/healthz", None).await;
    assert_eq!(r.status, 200, "the gateway stopped serving: {r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_too_large_or_too_deep_are_refused_before_parsing() {
    let app = TestApp::spawn_with(quiet()).await;
    app.register_retailer("acme", "http://127.0.0.1:9/acme/orders")
        .await;
    let alice = app.token("alice");
    let cart = app.cart_with("alice", &[]).await;
    let items = format!("/carts/{cart}/items");

    // 413: one byte over 64 KiB, with its Content-Length.
    let mut big = item("dress").to_string();
    big.insert_str(1, &format!("\"pad\": \"{}\", ", "x".repeat(64 * 1024)));
    let r = app
        .api
        .send(
            Method::POST,
            &items,
            Some(&alice),
            Some("application/json"),
            Some(big),
        )
        .await;
    assert_problem(&r, 413, "payload_too_large");

    // 400 json_too_deep: a little too deep, and as deep as 64 KiB allows (30,000 levels).
    for depth in [33, 30_000] {
        let deep = format!(
            "{{\"cart_id\": {}{}}}",
            "[".repeat(depth),
            "]".repeat(depth)
        );
        let r = app
            .api
            .send(
                Method::POST,
                "/cart/checkout/",
                Some(&alice),
                Some("application/json"),
                Some(deep),
            )
            .await;
        assert_problem(&r, 400, "json_too_deep");
    }
    // The depth the DTOs need is fine.
    let r = app.api.post(&items, Some(&alice), &item("dress")).await;
    assert_eq!(r.status, 201, "{r:?}");

    // 415 before the body is looked at.
    let r = app
        .api
        .send(
            Method::POST,
            &items,
            Some(&alice),
            Some("text/plain"),
            Some(item("x").to_string()),
        )
        .await;
    assert_problem(&r, 415, "unsupported_media_type");

    assert_eq!(app.env.count("cart_items").await, 1);
    still_serving(&app).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_fields_are_refused_naming_the_field() {
    let app = TestApp::spawn_with(quiet()).await;
    app.register_retailer("acme", "http://127.0.0.1:9/acme/orders")
        .await;
    let alice = app.token("alice");
    let admin = app.admin_token();
    let cart = app.cart_with("alice", &[("acme", "dress")]).await;

    // A misspelt callback_url would otherwise check out with no callback at all.
    let r = app
        .api
        .post(
            "/cart/checkout/",
            Some(&alice),
            &json!({"cart_id": cart, "callbak_url": "http://127.0.0.1:9/hook"}),
        )
        .await;
    assert_problem(&r, 400, "unknown_field");
    assert_eq!(r.json["field"], "callbak_url");
    assert!(r.json["detail"].as_str().unwrap().contains("callbak_url"));
    assert_eq!(app.env.count("checkouts").await, 0);

    let mut typo = item("dress");
    typo["unit_price"] = json!({"amount_minor": 1999, "curency": "GBP"});
    let r = app
        .api
        .post(&format!("/carts/{cart}/items"), Some(&alice), &typo)
        .await;
    assert_problem(&r, 400, "unknown_field");
    assert_eq!(r.json["field"], "curency");

    let r = app
        .api
        .put(
            "/retailers/globex",
            Some(&admin),
            &json!({"name": "Globex", "order_url": "http://127.0.0.1:9/o", "order_uri": "x"}),
        )
        .await;
    assert_problem(&r, 400, "unknown_field");
    assert_eq!(r.json["field"], "order_uri");
    assert_eq!(app.env.count("retailers").await, 1);
    assert_eq!(app.env.count("cart_items").await, 1);

    // The document says the same: no additional properties on request bodies.
    let spec = app.api.get("/openapi.json", None).await.json;
    for schema in [
        "CheckoutRequest",
        "ItemRequest",
        "PriceDto",
        "RetailerRequest",
        "DeviceRequest",
    ] {
        assert_eq!(
            spec["components"]["schemas"][schema]["additionalProperties"], false,
            "{schema}"
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn free_text_has_a_documented_length_limit() {
    let app = TestApp::spawn_with(quiet()).await;
    app.register_retailer("acme", "http://127.0.0.1:9/acme/orders")
        .await;
    let alice = app.token("alice");
    let admin = app.admin_token();
    let cart = app.cart_with("alice", &[]).await;
    let items = format!("/carts/{cart}/items");
    let spec = app.api.get("/openapi.json", None).await.json;
    let schemas = &spec["components"]["schemas"];

    // Counted in characters, as JSON Schema's maxLength is: 128 three-byte characters fit.
    let max_sku = schemas["ItemRequest"]["properties"]["sku"]["maxLength"]
        .as_u64()
        .unwrap() as usize;
    assert_eq!(max_sku, 128);
    let r = app
        .api
        .post(&items, Some(&alice), &item(&"€".repeat(max_sku)))
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let r = app
        .api
        .post(&items, Some(&alice), &item(&"a".repeat(max_sku + 1)))
        .await;
    assert_problem(&r, 422, "validation_failed");
    assert_eq!(r.json["errors"][0]["field"], "sku");

    let max_name = schemas["RetailerRequest"]["properties"]["name"]["maxLength"]
        .as_u64()
        .unwrap() as usize;
    let max_url = schemas["RetailerRequest"]["properties"]["order_url"]["maxLength"]
        .as_u64()
        .unwrap() as usize;
    let long_url = format!("http://127.0.0.1:9/{}", "o".repeat(max_url));
    let r = app
        .api
        .put(
            "/retailers/globex",
            Some(&admin),
            &json!({"name": "n".repeat(max_name + 1), "order_url": long_url}),
        )
        .await;
    assert_problem(&r, 422, "validation_failed");
    let fields: Vec<&str> = r.json["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["name", "order_url"]);

    let max_callback = schemas["CheckoutRequest"]["properties"]["callback_url"]["maxLength"]
        .as_u64()
        .unwrap() as usize;
    let long_callback = format!("http://127.0.0.1:9/{}", "c".repeat(max_callback));
    let r = app
        .api
        .post(
            "/cart/checkout/",
            Some(&alice),
            &json!({"cart_id": cart, "callback_url": long_callback}),
        )
        .await;
    assert_problem(&r, 422, "validation_failed");
    assert_eq!(r.json["errors"][0]["field"], "callback_url");

    assert_eq!(app.env.count("retailers").await, 1);
    assert_eq!(app.env.count("checkouts").await, 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cart_holds_at_most_a_hundred_items() {
    let app = TestApp::spawn_with(quiet()).await;
    app.register_retailer("acme", "http://127.0.0.1:9/acme/orders")
        .await;
    let alice = app.token("alice");
    let cart = app.cart_with("alice", &[]).await;
    let items = format!("/carts/{cart}/items");
    for n in 0..100 {
        let r = app
            .api
            .post(&items, Some(&alice), &item(&format!("sku-{n}")))
            .await;
        assert_eq!(r.status, 201, "item {n}: {r:?}");
    }
    let r = app
        .api
        .post(&items, Some(&alice), &item("one-too-many"))
        .await;
    assert_problem(&r, 409, "cart_full");
    assert!(r.json["detail"].as_str().unwrap().contains("100"));
    assert_eq!(app.env.count("cart_items").await, 100);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_method_is_405_with_allow_and_an_unknown_path_404() {
    let app = TestApp::spawn_with(quiet()).await;
    let alice = app.token("alice");
    for (method, path, allow) in [
        (Method::DELETE, "/carts/1", "GET, HEAD"),
        (Method::GET, "/cart/checkout/", "POST"),
        (Method::GET, "/cart/checkout", "POST"),
        (Method::PATCH, "/me/devices/abc", "PUT, DELETE"),
        (Method::POST, "/healthz", "GET, HEAD"),
        (Method::PUT, "/openapi.json", "GET, HEAD"),
        (Method::DELETE, "/retailers/acme", "PUT"),
    ] {
        let r = app
            .api
            .send(method.clone(), path, Some(&alice), None, None)
            .await;
        assert_problem(&r, 405, "method_not_allowed");
        assert_eq!(r.header("allow"), Some(allow), "{method} {path}");
        assert!(r.json["detail"].as_str().unwrap().contains(allow));
    }
    let r = app
        .api
        .send(Method::DELETE, "/nowhere", Some(&alice), None, None)
        .await;
    assert_problem(&r, 404, "not_found");
    let r = app.api.get("/docs/assets/secrets.txt", None).await;
    assert_problem(&r, 404, "not_found");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_answers_as_get_without_a_body() {
    // RFC 9110 §9.3.2; load balancers probe with HEAD. Before the fix every HEAD was a 405.
    let app = TestApp::spawn_with(quiet()).await;
    let alice = app.token("alice");
    let cart = app.cart_with("alice", &[]).await;
    for (path, token) in [
        ("/healthz".to_owned(), None),
        ("/readyz".to_owned(), None),
        ("/openapi.json".to_owned(), None),
        (format!("/carts/{cart}"), Some(alice.as_str())),
        ("/me/devices".to_owned(), Some(alice.as_str())),
    ] {
        let get = app.api.send(Method::GET, &path, token, None, None).await;
        let head = app.api.send(Method::HEAD, &path, token, None, None).await;
        assert_eq!(head.status, get.status, "HEAD {path}");
        assert_eq!(get.status, 200, "GET {path}: {get:?}");
        assert_eq!(head.text, "", "HEAD {path} has no body");
        assert_eq!(
            head.header("content-type"),
            get.header("content-type"),
            "HEAD {path}"
        );
    }
    // Not a way around authentication: the same 401 as GET.
    let r = app
        .api
        .send(Method::HEAD, &format!("/carts/{cart}"), None, None, None)
        .await;
    assert_eq!(r.status, 401);
    app.stop().await;
}

/// True once `got` holds a whole response: its head and `Content-Length` bytes of body.
fn complete(got: &[u8]) -> bool {
    let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    got.len() >= end + 4 + length
}

/// Writes one raw HTTP/1.1 request and returns what the server sent before closing (or the
/// first 4 KiB of it). The server may close while the request is still being written, so a
/// failed write is not an error: the answer is what counts.
async fn raw_answer(addr: &str, head: &str) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let _ = s.write_all(head.as_bytes()).await;
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    let read = async {
        while got.len() < 4096 && !complete(&got) {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), read).await;
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_are_refused_and_the_server_keeps_serving() {
    let app = TestApp::spawn_with(quiet()).await;
    let addr = app.public_url.trim_start_matches("http://").to_owned();

    // Over ICON's 16 KiB of header fields: a 431 problem document.
    let big = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20 * 1024)
    );
    let answer = raw_answer(&addr, &big).await;
    assert!(
        answer.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        "{answer}"
    );
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert!(
        answer.contains("\"code\":\"headers_too_large\""),
        "{answer}"
    );

    // Over what actix-http parses at all (a 128 KiB head, 96 fields): refused before routing.
    let huge = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(200 * 1024)
    );
    let answer = raw_answer(&addr, &huge).await;
    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
    let mut many = String::from("GET /healthz HTTP/1.1\r\nHost: x\r\n");
    for i in 0..200 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let answer = raw_answer(&addr, &many).await;
    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");

    // A request within the limits is still answered.
    let ok = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let answer = raw_answer(&addr, ok).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    still_serving(&app).await;
    app.stop().await;
}
