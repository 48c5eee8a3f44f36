//! Runs the simulator through `serve` on a random loopback port, one instance per test, and
//! talks to it over real HTTP with hyper.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::HeaderMap;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use icon_retailer_sim::{serve, SimSettings};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Upper bound on any single exchange, so a broken simulator fails a test instead of hanging it.
const DEADLINE: Duration = Duration::from_secs(10);

struct TestSim {
    addr: SocketAddr,
    shutdown: CancellationToken,
    server: JoinHandle<std::io::Result<()>>,
    client: Client<HttpConnector, Full<Bytes>>,
}

#[derive(Debug)]
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl TestSim {
    async fn start() -> Self {
        Self::start_with(Duration::from_millis(300)).await
    }

    async fn start_with(slow_delay: Duration) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("bound address");
        let settings = SimSettings {
            addr: addr.to_string(),
            slow_delay,
            log: "off".to_owned(),
        };
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve(listener, settings, shutdown.clone()).expect("serve"));
        let client = Client::builder(TokioExecutor::new()).build_http();
        Self {
            addr,
            shutdown,
            server,
            client,
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Reply, String> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let resp = self.client.request(req).await.map_err(|e| e.to_string())?;
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        let body =
            serde_json::from_slice(&bytes).map_err(|e| format!("non-JSON body {bytes:?}: {e}"))?;
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Reply {
        tokio::time::timeout(DEADLINE, self.send(method, path, headers, body))
            .await
            .unwrap_or_else(|_| panic!("no answer from {path} within {DEADLINE:?}"))
            .unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    async fn order(&self, path: &str, key: Option<&str>, body: &Value) -> Reply {
        let mut headers = vec![("content-type", "application/json")];
        if let Some(key) = key {
            headers.push(("idempotency-key", key));
        }
        self.call(Method::POST, path, &headers, body.to_string().into_bytes())
            .await
    }

    async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, &[], vec![]).await
    }

    async fn log(&self, query: &str) -> Vec<Value> {
        let reply = self.get(&format!("/orders{query}")).await;
        assert_eq!(reply.status, StatusCode::OK);
        reply.body.as_array().expect("an array").clone()
    }
}

fn order_body(checkout_id: &str, skus: &[&str]) -> Value {
    let items: Vec<Value> = skus
        .iter()
        .map(|sku| json!({"sku": sku, "quantity": 1, "unit_price": {"amount_minor": 1999, "currency": "GBP"}}))
        .collect();
    json!({"checkout_id": checkout_id, "items": items})
}

fn order_id(reply: &Reply) -> String {
    reply.body["order_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no order_id in {reply:?}"))
        .to_owned()
}

#[tokio::test]
async fn healthz_answers_ok() {
    let sim = TestSim::start().await;
    let reply = sim.get("/healthz").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, json!({"status": "ok"}));
}

#[tokio::test]
async fn confirm_then_replay_returns_the_same_order() {
    let sim = TestSim::start().await;
    let body = order_body("c1", &["dress-42"]);

    let first = sim.order("/orders", Some("c1:acme"), &body).await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(first.body["status"], "confirmed");
    let id = order_id(&first);
    assert!(id.starts_with("sim-"), "{id}");

    let again = sim.order("/orders", Some("c1:acme"), &body).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(order_id(&again), id);

    let other = sim
        .order("/orders", Some("c2:acme"), &order_body("c2", &["dress-42"]))
        .await;
    assert_eq!(other.status, StatusCode::CREATED);
    assert_ne!(order_id(&other), id);
}

#[tokio::test]
async fn identical_requests_at_once_create_one_order() {
    let sim = TestSim::start_with(Duration::from_millis(300)).await;
    // `slow-` holds both requests in flight together, so both pass the key lookup before
    // either confirms: only the confirmation step can keep them to one order.
    let body = order_body("c1", &["slow-sofa"]);
    let (a, b) = tokio::join!(
        sim.order("/orders", Some("c1:acme"), &body),
        sim.order("/orders", Some("c1:acme"), &body),
    );
    let mut statuses = [a.status.as_u16(), b.status.as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 201]);
    assert_eq!(order_id(&a), order_id(&b));
}

#[tokio::test]
async fn reject_sku_is_refused_with_422_and_a_reason() {
    let sim = TestSim::start().await;
    let reply = sim
        .order(
            "/orders",
            Some("c1:acme"),
            &order_body("c1", &["dress", "reject-hat"]),
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.body, json!({"reason": "reject-hat is out of stock"}));
}

#[tokio::test]
async fn conflict_sku_is_refused_with_409() {
    let sim = TestSim::start().await;
    let reply = sim
        .order(
            "/orders",
            Some("c1:acme"),
            &order_body("c1", &["conflict-lamp"]),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert_eq!(reply.body, json!({"reason": "conflict-lamp price changed"}));
}

#[tokio::test]
async fn down_sku_always_fails_with_500() {
    let sim = TestSim::start().await;
    let body = order_body("c1", &["down-anything"]);
    for _ in 0..3 {
        let reply = sim.order("/orders", Some("c1:acme"), &body).await;
        assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(reply.body, json!({"reason": "simulated outage"}));
    }
}

#[tokio::test]
async fn prefix_priority_decides_mixed_orders() {
    let sim = TestSim::start().await;
    // `reject-` outranks `flaky-` whatever the item order.
    let reply = sim
        .order(
            "/orders",
            Some("c1:acme"),
            &order_body("c1", &["flaky-a", "reject-b"]),
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn flaky_sku_fails_once_per_key_then_confirms() {
    let sim = TestSim::start().await;
    let body = order_body("c1", &["flaky-mug"]);

    let first = sim.order("/orders", Some("c1:acme"), &body).await;
    assert_eq!(first.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(first.body["reason"].is_string());

    let second = sim.order("/orders", Some("c1:acme"), &body).await;
    assert_eq!(second.status, StatusCode::CREATED);
    let third = sim.order("/orders", Some("c1:acme"), &body).await;
    assert_eq!(third.status, StatusCode::OK);
    assert_eq!(order_id(&third), order_id(&second));

    // A new key starts over.
    let other = sim
        .order(
            "/orders",
            Some("c9:acme"),
            &order_body("c9", &["flaky-mug"]),
        )
        .await;
    assert_eq!(other.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn busy_sku_answers_429_with_retry_after_then_confirms() {
    let sim = TestSim::start().await;
    let body = order_body("c1", &["busy-chair"]);

    let first = sim.order("/orders", Some("c1:acme"), &body).await;
    assert_eq!(first.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        first
            .headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );

    let second = sim.order("/orders", Some("c1:acme"), &body).await;
    assert_eq!(second.status, StatusCode::CREATED);
    assert!(second.headers.get("retry-after").is_none());
}

#[tokio::test]
async fn slow_sku_waits_the_configured_delay_then_confirms() {
    let delay = Duration::from_millis(400);
    let sim = TestSim::start_with(delay).await;
    let started = Instant::now();
    let reply = sim
        .order(
            "/orders",
            Some("c1:acme"),
            &order_body("c1", &["slow-desk"]),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    assert!(
        started.elapsed() >= delay,
        "answered after {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn hang_sku_does_not_answer_but_is_logged_as_unanswered() {
    let sim = TestSim::start().await;
    let body = order_body("c1", &["hang-clock"]).to_string().into_bytes();
    let headers = [
        ("content-type", "application/json"),
        ("idempotency-key", "c1:acme"),
    ];
    let attempt = tokio::time::timeout(
        Duration::from_millis(500),
        sim.send(Method::POST, "/orders", &headers, body),
    )
    .await;
    assert!(attempt.is_err(), "a hang- order was answered: {attempt:?}");

    let log = sim.log("?idempotency_key=c1:acme").await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["response_status"], Value::Null);
}

#[tokio::test]
async fn missing_idempotency_key_is_400_and_still_logged() {
    let sim = TestSim::start().await;
    let reply = sim
        .order("/orders", None, &order_body("c1", &["dress"]))
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let reason = reply.body["reason"].as_str().expect("a reason");
    assert!(reason.contains("Idempotency-Key"), "{reason}");

    let log = sim.log("").await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["response_status"], 400);
    assert_eq!(log[0]["idempotency_key"], Value::Null);
    assert_eq!(log[0]["checkout_id"], "c1");
    assert_eq!(log[0]["order_id"], Value::Null);
}

#[tokio::test]
async fn malformed_orders_are_400() {
    let sim = TestSim::start().await;
    let key = [
        ("content-type", "application/json"),
        ("idempotency-key", "c1:acme"),
    ];

    let garbage = sim
        .call(Method::POST, "/orders", &key, b"{not json".to_vec())
        .await;
    assert_eq!(garbage.status, StatusCode::BAD_REQUEST);
    assert!(garbage.body["reason"].is_string());

    let no_items = sim
        .order(
            "/orders",
            Some("c1:acme"),
            &json!({"checkout_id": "c1", "items": []}),
        )
        .await;
    assert_eq!(no_items.status, StatusCode::BAD_REQUEST);

    let mut zero = order_body("c1", &["dress"]);
    zero["items"][0]["quantity"] = json!(0);
    let zero = sim.order("/orders", Some("c1:acme"), &zero).await;
    assert_eq!(zero.status, StatusCode::BAD_REQUEST);

    let text = [
        ("content-type", "text/plain"),
        ("idempotency-key", "c1:acme"),
    ];
    let body = order_body("c1", &["dress"]).to_string().into_bytes();
    let wrong_type = sim.call(Method::POST, "/orders", &text, body).await;
    assert_eq!(wrong_type.status, StatusCode::BAD_REQUEST);

    // None of them created an order, so the key is still free.
    let ok = sim
        .order("/orders", Some("c1:acme"), &order_body("c1", &["dress"]))
        .await;
    assert_eq!(ok.status, StatusCode::CREATED);
    assert_eq!(sim.log("").await.len(), 5);
}

#[tokio::test]
async fn a_key_reused_for_a_different_order_is_422() {
    let sim = TestSim::start().await;
    let first = sim
        .order("/orders", Some("c1:acme"), &order_body("c1", &["dress"]))
        .await;
    assert_eq!(first.status, StatusCode::CREATED);
    let reused = sim
        .order("/orders", Some("c1:acme"), &order_body("c1", &["hat"]))
        .await;
    assert_eq!(reused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(reused.body["order_id"].is_null());
}

#[tokio::test]
async fn each_retailer_path_has_its_own_orders() {
    let sim = TestSim::start().await;
    let body = order_body("c1", &["dress"]);
    let a = sim.order("/acme/orders", Some("c1:x"), &body).await;
    let b = sim.order("/globex/orders", Some("c1:x"), &body).await;
    assert_eq!(a.status, StatusCode::CREATED);
    assert_eq!(b.status, StatusCode::CREATED);
    assert_ne!(order_id(&a), order_id(&b));
}

#[tokio::test]
async fn order_log_lists_every_request_oldest_first_and_filters() {
    let sim = TestSim::start().await;
    let confirmed = sim
        .order(
            "/acme/orders",
            Some("c1:acme"),
            &order_body("c1", &["dress"]),
        )
        .await;
    sim.order(
        "/orders",
        Some("c2:plain"),
        &order_body("c2", &["reject-hat"]),
    )
    .await;
    sim.order(
        "/acme/orders",
        Some("c1:acme"),
        &order_body("c1", &["dress"]),
    )
    .await;

    let log = sim.log("").await;
    assert_eq!(log.len(), 3);
    let statuses: Vec<&Value> = log.iter().map(|r| &r["response_status"]).collect();
    assert_eq!(statuses, [&json!(201), &json!(422), &json!(200)]);
    assert_eq!(log[0]["retailer"], "acme");
    assert_eq!(log[1]["retailer"], Value::Null);
    assert_eq!(log[0]["checkout_id"], "c1");
    assert_eq!(log[0]["idempotency_key"], "c1:acme");
    assert_eq!(log[0]["order_id"], json!(order_id(&confirmed)));
    assert_eq!(log[1]["order_id"], Value::Null);
    assert_eq!(log[0]["items"], order_body("c1", &["dress"])["items"]);
    let times: Vec<_> = log
        .iter()
        .map(|r| {
            let at = r["received_at"].as_str().expect("a timestamp");
            chrono::DateTime::parse_from_rfc3339(at).expect("RFC 3339")
        })
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");

    let only = sim.log("?idempotency_key=c1:acme").await;
    assert_eq!(only.len(), 2);
    assert!(only.iter().all(|r| r["idempotency_key"] == "c1:acme"));
    assert!(sim.log("?idempotency_key=nope").await.is_empty());
    assert_eq!(sim.log("?retailer=acme").await.len(), 2);
}

#[tokio::test]
async fn sink_records_deliveries_and_answers_the_requested_status() {
    let sim = TestSim::start().await;
    let headers = [
        ("content-type", "application/json"),
        ("webhook-id", "msg_1"),
        ("webhook-timestamp", "1700000000"),
        ("user-agent", "not-kept"),
    ];
    let ok = sim
        .call(
            Method::POST,
            "/sink/partner",
            &headers,
            br#"{"type":"checkout.completed"}"#.to_vec(),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.body, json!({"ok": true}));

    let failing = sim
        .call(
            Method::POST,
            "/sink/partner?status=503",
            &[],
            b"plain text".to_vec(),
        )
        .await;
    assert_eq!(failing.status, StatusCode::SERVICE_UNAVAILABLE);

    let bad = sim
        .call(Method::POST, "/sink/partner?status=abc", &[], vec![])
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    let recorded = sim.get("/sink/partner").await;
    assert_eq!(recorded.status, StatusCode::OK);
    let recorded = recorded.body.as_array().expect("an array").clone();
    assert_eq!(recorded.len(), 2, "{recorded:?}");
    assert_eq!(
        recorded[0]["headers"],
        json!({"content-type": "application/json", "webhook-id": "msg_1", "webhook-timestamp": "1700000000"})
    );
    assert_eq!(recorded[0]["body"], json!({"type": "checkout.completed"}));
    assert_eq!(recorded[1]["body"], "plain text");
    assert!(recorded[0]["received_at"].is_string());

    let empty = sim.get("/sink/nobody").await;
    assert_eq!(empty.body, json!([]));
}

#[tokio::test]
async fn unknown_paths_are_404_with_a_reason() {
    let sim = TestSim::start().await;
    let reply = sim.get("/nothing/here").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert!(reply.body["reason"].is_string());
}

#[tokio::test]
async fn cancellation_stops_the_server_promptly_even_with_a_request_hanging() {
    let sim = TestSim::start().await;
    // A keep-alive connection in the client's pool and a hanging request in flight: neither
    // may hold the stop.
    assert_eq!(sim.get("/healthz").await.status, StatusCode::OK);
    let hanging = {
        let client = sim.client.clone();
        let uri = format!("http://{}/orders", sim.addr);
        let body = order_body("c1", &["hang-clock"]).to_string();
        tokio::spawn(async move {
            let req = Request::post(uri)
                .header("content-type", "application/json")
                .header("idempotency-key", "c1:acme")
                .body(Full::new(Bytes::from(body)))
                .expect("request");
            client.request(req).await.map(|r| r.status())
        })
    };
    // Wait until the simulator holds the request, so the cancellation finds it in flight.
    let deadline = Instant::now() + DEADLINE;
    while sim.log("").await.is_empty() {
        assert!(Instant::now() < deadline, "hang- request never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let started = Instant::now();
    sim.shutdown.cancel();
    let stopped = tokio::time::timeout(DEADLINE, sim.server).await;
    let result = stopped.expect("server did not stop").expect("server task");
    assert!(result.is_ok(), "{result:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );

    let hung = tokio::time::timeout(DEADLINE, hanging)
        .await
        .expect("hanging request ended");
    assert_eq!(
        hung.expect("task").ok(),
        Some(StatusCode::SERVICE_UNAVAILABLE)
    );

    let after = tokio::net::TcpStream::connect(sim.addr).await;
    assert!(after.is_err(), "still accepting connections after shutdown");
}
