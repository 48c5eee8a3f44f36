//! A simulator per test, on random loopback ports (HTTP and SMTP), a hyper client to talk to
//! it, and grants signed with the demo service account for the fake FCM.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::HeaderMap;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use icon_retailer_sim::{serve, Listeners, SimSettings};
use icon_runtime::Env;
use icon_webhooks::WebhookSecret;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Upper bound on any single exchange or awaited condition, so a broken simulator fails a test
/// instead of hanging it.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// `ICON_SIM_ASYNC_DELAY` in tests: short, so a three-event order takes well under a second.
pub const ASYNC_DELAY: Duration = Duration::from_millis(200);

pub struct TestSim {
    pub addr: SocketAddr,
    /// The SMTP sink's address.
    pub smtp_addr: SocketAddr,
    pub shutdown: CancellationToken,
    pub server: JoinHandle<std::io::Result<()>>,
    pub client: Client<HttpConnector, Full<Bytes>>,
}

#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl TestSim {
    pub async fn start() -> Self {
        Self::start_with(Duration::from_millis(300)).await
    }

    pub async fn start_with(slow_delay: Duration) -> Self {
        Self::start_configured(slow_delay, |_| {}).await
    }

    /// A simulator whose `async-` orders report to `icon` (a receiver standing in for ICON's
    /// gateway) every [`ASYNC_DELAY`].
    pub async fn start_reporting_to(icon: SocketAddr) -> Self {
        Self::start_configured(Duration::from_millis(300), |s| {
            s.icon_url = icon_http::Url::parse(&format!("http://{icon}")).expect("a URL");
            s.async_delay = ASYNC_DELAY;
        })
        .await
    }

    async fn start_configured(
        slow_delay: Duration,
        configure: impl FnOnce(&mut SimSettings),
    ) -> Self {
        let bind = || std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let (http, smtp) = (bind(), bind());
        let addr = http.local_addr().expect("bound address");
        let smtp_addr = smtp.local_addr().expect("bound address");
        let mut settings = SimSettings {
            addr: addr.to_string(),
            slow_delay,
            smtp_addr: Some(smtp_addr.to_string()),
            log: icon_runtime::telemetry::TelemetrySettings {
                filter: "off".into(),
                ..Default::default()
            },
            // The defaults (the demo key, a 1h token lifetime) for the rest.
            ..SimSettings::from_env(&Env::default()).expect("default settings")
        };
        configure(&mut settings);
        let shutdown = CancellationToken::new();
        let listeners = Listeners {
            http,
            smtp: Some(smtp),
        };
        let server = tokio::spawn(serve(listeners, settings, shutdown.clone()).expect("serve"));
        let client = Client::builder(TokioExecutor::new()).build_http();
        Self {
            addr,
            smtp_addr,
            shutdown,
            server,
            client,
        }
    }

    /// One exchange, with no deadline: for requests that are not supposed to be answered.
    pub fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> impl Future<Output = Result<Reply, String>> + Send + 'static {
        let client = self.client.clone();
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req.body(Full::new(Bytes::from(body)));
        async move {
            let req = req.map_err(|e| e.to_string())?;
            let resp = client.request(req).await.map_err(|e| e.to_string())?;
            let (parts, body) = resp.into_parts();
            let bytes = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
            // An empty body (a 204) reads as null.
            let body = match bytes.is_empty() {
                true => Value::Null,
                false => serde_json::from_slice(&bytes)
                    .map_err(|e| format!("non-JSON body {bytes:?}: {e}"))?,
            };
            Ok(Reply {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        }
    }

    pub async fn call(
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

    pub async fn order(&self, path: &str, key: Option<&str>, body: &Value) -> Reply {
        let mut headers = vec![("content-type", "application/json")];
        if let Some(key) = key {
            headers.push(("idempotency-key", key));
        }
        self.call(Method::POST, path, &headers, body.to_string().into_bytes())
            .await
    }

    /// Sends an order in the background, to be awaited later (or never, for a `hang-` one).
    pub fn spawn_order(
        &self,
        path: &str,
        key: &str,
        body: &Value,
    ) -> JoinHandle<Result<Reply, String>> {
        let headers = [
            ("content-type", "application/json"),
            ("idempotency-key", key),
        ];
        tokio::spawn(self.send(Method::POST, path, &headers, body.to_string().into_bytes()))
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, &[], vec![]).await
    }

    /// A JSON request (`PUT` a secret, `POST` an event on demand...).
    pub async fn send_json(&self, method: Method, path: &str, body: &Value) -> Reply {
        let headers = [("content-type", "application/json")];
        self.call(method, path, &headers, body.to_string().into_bytes())
            .await
    }

    /// The order request log, `GET /requests{query}`.
    pub async fn requests(&self, query: &str) -> Vec<Value> {
        self.log(&format!("/requests{query}")).await
    }

    /// The lookup log, `GET /lookups{query}`.
    pub async fn lookups(&self, query: &str) -> Vec<Value> {
        self.log(&format!("/lookups{query}")).await
    }

    /// A log served as a JSON array (`/requests`, `/fcm/messages`, `/mail`...).
    pub async fn log(&self, path: &str) -> Vec<Value> {
        let reply = self.get(path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {reply:?}");
        reply.body.as_array().expect("an array").clone()
    }

    /// Waits until the simulator holds a request for `key`: logged, not answered.
    pub async fn wait_until_held(&self, key: &str) {
        let query = format!("?idempotency_key={key}");
        eventually(&format!("a request for {key} in flight"), || async {
            let log = self.requests(&query).await;
            log.iter()
                .any(|r| r["response_status"].is_null())
                .then_some(())
        })
        .await;
    }
}

/// Polls `probe` until it yields, failing the test after [`DEADLINE`].
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(Instant::now() < deadline, "{what}: not within {DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Tells the simulator `retailer`'s secret, a new one, and returns it.
pub async fn put_secret(sim: &TestSim, retailer: &str) -> WebhookSecret {
    let secret = WebhookSecret::generate();
    let path = format!("/_sim/retailers/{retailer}/secret");
    let body = json!({"secret": secret.expose_whsec()});
    let put = sim.send_json(Method::PUT, &path, &body).await;
    assert_eq!(put.status, StatusCode::NO_CONTENT, "{put:?}");
    secret
}

/// The event log for `key`, `GET /events?idempotency_key={key}`.
pub async fn events_log(sim: &TestSim, key: &str) -> Vec<Value> {
    sim.log(&format!("/events?idempotency_key={key}")).await
}

/// Waits until the log's one event for `key` is settled (delivered or failed), and returns it.
pub async fn settled_event(sim: &TestSim, key: &str) -> Value {
    eventually(&format!("the event for {key} settled"), || async {
        let log = events_log(sim, key).await;
        log.first()
            .filter(|r| r["delivered"] == true || !r["error"].is_null())
            .cloned()
    })
    .await
}

/// The statuses of an event's tries, as logged.
pub fn statuses(record: &Value) -> Vec<Value> {
    let tries = record["tries"].as_array().expect("tries");
    tries.iter().map(|t| t["status"].clone()).collect()
}

pub fn order_body(checkout_id: &str, skus: &[&str]) -> Value {
    let items: Vec<Value> = skus
        .iter()
        .map(|sku| json!({"sku": sku, "quantity": 1, "unit_price": {"amount_minor": 1999, "currency": "GBP"}}))
        .collect();
    json!({"checkout_id": checkout_id, "items": items})
}

pub fn order_id(reply: &Reply) -> String {
    reply.body["order_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no order_id in {reply:?}"))
        .to_owned()
}

/// The scope the notifier asks for.
pub const FCM_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

/// The demo service account, as the notifier would load it.
pub fn service_account() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/demo/fcm-demo-service-account.json"
    );
    let text = std::fs::read_to_string(path).expect("the demo service account");
    serde_json::from_str(&text).expect("JSON")
}

/// The claims a Google client library signs, for this simulator's token endpoint.
pub fn claims(sim: &TestSim) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({
        "iss": service_account()["client_email"],
        "scope": FCM_SCOPE,
        "aud": format!("http://{}/oauth2/token", sim.addr),
        "iat": now,
        "exp": now + 3600,
    })
}

/// Signs with the demo private key, RS256, as the notifier does.
pub fn sign(claims: &Value) -> String {
    let account = service_account();
    let pem = account["private_key"].as_str().expect("private_key");
    let key = EncodingKey::from_rsa_pem(pem.as_bytes()).expect("an RSA key");
    let mut header = Header::new(Algorithm::RS256);
    header.kid = account["private_key_id"].as_str().map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &key).expect("signed")
}

pub async fn grant_with(sim: &TestSim, grant_type: &str, assertion: &str) -> Reply {
    let form = format!("grant_type={grant_type}&assertion={assertion}");
    let headers = [("content-type", "application/x-www-form-urlencoded")];
    sim.call(Method::POST, "/oauth2/token", &headers, form.into_bytes())
        .await
}

pub async fn grant(sim: &TestSim, assertion: &str) -> Reply {
    grant_with(
        sim,
        "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer",
        assertion,
    )
    .await
}

pub async fn access_token(sim: &TestSim) -> String {
    let reply = grant(sim, &sign(&claims(sim))).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    reply.body["access_token"]
        .as_str()
        .expect("a token")
        .to_owned()
}
