//! The three services as processes plus a client that keeps submitting checkouts through
//! outages, and the tally every fault test reports: accepted, completed, callbacks received,
//! duplicates, lost, and retailer orders placed twice.

use crate::process::Service;
use crate::{Api, Receiver, Sim, JWT_SECRET};
use icon_gateway::auth::JwtKeys;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

pub const GATEWAY: &str = "icon-gateway";
pub const WORKER: &str = "icon-checkout-worker";
pub const NOTIFIER: &str = "icon-notifier";

pub struct Fleet {
    pub gateway: Service,
    pub worker: Service,
    pub notifier: Service,
    pub api: Api,
    pub log_dir: PathBuf,
    token: String,
}

impl Fleet {
    /// Starts gateway, worker and notifier against `database_url` and `amqp_url`, with short
    /// retry schedules, and waits until the gateway answers.
    pub async fn start(database_url: &str, amqp_url: &str, extra: &[(&str, &str)]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("port");
        let log_dir =
            std::env::temp_dir().join(format!("icon-fleet-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&log_dir).expect("log dir");
        let mut env: HashMap<String, String> = [
            ("ICON_DATABASE_URL", database_url.to_owned()),
            ("ICON_AMQP_URL", amqp_url.to_owned()),
            ("ICON_HTTP_ADDR", format!("127.0.0.1:{port}")),
            ("ICON_HTTP_WORKERS", "2".into()),
            ("ICON_JWT_SECRET", JWT_SECRET.into()),
            ("ICON_RATE_LIMIT", "off".into()),
            ("ICON_SECRETS_KEY", crate::SECRETS_KEY.into()),
            ("ICON_CALLBACK_ALLOW_NETWORKS", "127.0.0.0/8".into()),
            ("ICON_CALLBACK_ALLOW_HTTP", "true".into()),
            // The retailer simulator is plain http on loopback too.
            ("ICON_RETAILER_ALLOW_NETWORKS", "127.0.0.0/8".into()),
            ("ICON_RETAILER_ALLOW_HTTP", "true".into()),
            ("ICON_CALLBACK_RETRY_SCHEDULE", "200ms,500ms,1s".into()),
            ("ICON_CALLBACK_TIMEOUT", "2s".into()),
            ("ICON_RETAILER_TIMEOUT", "3s".into()),
            ("ICON_RETAILER_MAX_ATTEMPTS", "5".into()),
            ("ICON_RETAILER_RETRY_BACKOFF", "100ms".into()),
            ("ICON_RETAILER_RETRY_BACKOFF_MAX", "2s".into()),
            ("ICON_RETAILER_SETTLE_SCHEDULE", "200ms,500ms,1s".into()),
            ("ICON_LOG", "info".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        for (k, v) in extra {
            env.insert((*k).to_owned(), (*v).to_owned());
        }
        let gateway = Service::start("gateway", GATEWAY, &env, &log_dir);
        let worker = Service::start("worker", WORKER, &env, &log_dir);
        let notifier = Service::start("notifier", NOTIFIER, &env, &log_dir);
        let api = Api::new(&format!("http://127.0.0.1:{port}"));
        let fleet = Self {
            gateway,
            worker,
            notifier,
            api,
            log_dir,
            token: JwtKeys::new(JWT_SECRET)
                .mint("shopper", false, Duration::from_secs(3600))
                .expect("token"),
        };
        fleet.wait_ready().await;
        fleet
    }

    /// Waits until `/readyz` says ready.
    pub async fn wait_ready(&self) {
        crate::eventually(
            "the gateway to be ready",
            Duration::from_secs(60),
            || async {
                match self
                    .api
                    .try_send(http::Method::GET, "/readyz", None, &[], None)
                    .await
                {
                    Ok(r) if r.status == 200 => Some(()),
                    _ => None,
                }
            },
        )
        .await
    }

    pub async fn register(&self, sim: &Sim, retailer: &str) {
        let admin = JwtKeys::new(JWT_SECRET)
            .mint("ops", true, Duration::from_secs(3600))
            .expect("token");
        let r = self
            .api
            .put(
                &format!("/retailers/{retailer}"),
                Some(&admin),
                &json!({"name": retailer, "order_url": sim.order_url(retailer)}),
            )
            .await;
        assert!(r.status == 200 || r.status == 201, "{r:?}");
    }

    /// One call, retried through outages: transport errors and 5xx are retried (after the
    /// `Retry-After` on a 503, at most 1 s) until `deadline`.
    async fn call(
        &self,
        path: &str,
        body: &Value,
        key: Option<&str>,
        stats: &Mutex<Tally>,
    ) -> Reply {
        self.call_with(http::Method::POST, path, Some(body), key, stats)
            .await
    }

    /// [`Self::call`] with any method, and no body if `body` is `None`.
    async fn call_with(
        &self,
        method: http::Method,
        path: &str,
        body: Option<&Value>,
        key: Option<&str>,
        stats: &Mutex<Tally>,
    ) -> Reply {
        let headers: Vec<(&str, &str)> = key.map(|k| ("idempotency-key", k)).into_iter().collect();
        let until = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            match self
                .api
                .try_send(
                    method.clone(),
                    path,
                    Some(&self.token),
                    &headers,
                    body.map(Value::to_string),
                )
                .await
            {
                Ok(r) if r.status < 500 => return r,
                Ok(r) => {
                    if r.status == 503 {
                        let mut s = lock(stats);
                        s.unavailable += 1;
                        if r.header("retry-after").is_some() {
                            s.unavailable_with_retry_after += 1;
                        }
                    }
                }
                Err(_) => lock(stats).transport_errors += 1,
            }
            assert!(
                tokio::time::Instant::now() < until,
                "{path} kept failing for 120 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Registers a push device for the fleet's shopper.
    pub async fn register_device(&self, token: &str, platform: &str) {
        let r = self
            .api
            .put(
                &format!("/me/devices/{token}"),
                Some(&self.token),
                &json!({ "platform": platform }),
            )
            .await;
        assert!(r.status == 200 || r.status == 201, "{r:?}");
    }

    /// Fills a cart with `skus` (retailer, sku) and checks it out with an idempotency key,
    /// retrying through outages. Returns the checkout id.
    pub async fn submit(
        &self,
        n: usize,
        skus: &[(&str, &str)],
        callback: &str,
        stats: &Mutex<Tally>,
    ) -> String {
        self.submit_with(n, skus, json!({ "callback_url": callback }), stats)
            .await
    }

    /// [`Self::submit`] with `fields` (say `callback_url`, `push_notification`) in the body.
    pub async fn submit_with(
        &self,
        n: usize,
        skus: &[(&str, &str)],
        fields: Value,
        stats: &Mutex<Tally>,
    ) -> String {
        let r = self.call("/carts", &json!({}), None, stats).await;
        assert_eq!(r.status, 201, "{r:?}");
        let cart = r.json["cart_id"].as_i64().expect("cart id");
        for (retailer, sku) in skus {
            let r = self
                .call(
                    &format!("/carts/{cart}/items"),
                    &json!({"retailer_id": retailer, "sku": sku, "quantity": 1,
                            "unit_price": {"amount_minor": 1000 + n as i64, "currency": "GBP"}}),
                    None,
                    stats,
                )
                .await;
            assert!(r.status == 201 || r.status == 409, "{r:?}");
        }
        let key = format!("fault-{n}-{cart}");
        let mut body = fields;
        body["cart_id"] = cart.into();
        let r = self.call("/cart/checkout/", &body, Some(&key), stats).await;
        assert_eq!(r.status, 202, "{r:?}");
        lock(stats).accepted += 1;
        r.json["checkout_id"]
            .as_str()
            .expect("checkout id")
            .to_owned()
    }

    /// Cancels a checkout (`DELETE /cart/checkout/{id}`) with an idempotency key, retrying
    /// through outages; panics unless answered 202.
    pub async fn cancel(&self, id: &str, stats: &Mutex<Tally>) {
        let key = format!("fault-cancel-{id}");
        let r = self
            .call_with(
                http::Method::DELETE,
                &format!("/cart/checkout/{id}"),
                None,
                Some(&key),
                stats,
            )
            .await;
        assert_eq!(r.status, 202, "{r:?}");
    }

    /// Polls a checkout (through outages).
    pub async fn checkout(&self, id: &str) -> Option<Value> {
        match self
            .api
            .try_send(
                http::Method::GET,
                &format!("/cart/checkout/{id}"),
                Some(&self.token),
                &[],
                None,
            )
            .await
        {
            Ok(r) if r.status == 200 => Some(r.json),
            _ => None,
        }
    }

    /// Every service's log, for a failing test's output.
    pub fn logs(&self) -> String {
        [&self.gateway, &self.worker, &self.notifier]
            .iter()
            .map(|s| format!("----- {} -----\n{}", s.name, tail(&s.log(), 60)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn tail(s: &str, lines: usize) -> String {
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

impl Drop for Fleet {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        let _ = std::fs::remove_dir_all(&self.log_dir);
    }
}

type Reply = crate::ApiReply;

fn lock(t: &Mutex<Tally>) -> std::sync::MutexGuard<'_, Tally> {
    match t.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// What a fault test counts.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub accepted: usize,
    pub completed: usize,
    pub callbacks: usize,
    pub duplicates: usize,
    pub lost: usize,
    pub double_orders: usize,
    /// Retailer orders requested more than once (same key): redone after a crash or retry.
    pub resent_orders: usize,
    pub unavailable: usize,
    pub unavailable_with_retry_after: usize,
    pub transport_errors: usize,
}

impl Tally {
    /// Waits until every accepted checkout's callback arrived (or `deadline`), then counts.
    pub async fn settle(
        &mut self,
        fleet: &Fleet,
        accepted: &[String],
        receiver: &Receiver,
        sims: &[&Sim],
        deadline: Duration,
    ) {
        let want: HashSet<&str> = accepted.iter().map(String::as_str).collect();
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let got: HashSet<String> = receiver
                .seen()
                .iter()
                .filter_map(|r| r.body["checkout_id"].as_str().map(str::to_owned))
                .collect();
            if want.iter().all(|id| got.contains(*id)) || tokio::time::Instant::now() >= until {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let seen = receiver.seen();
        let delivered: HashSet<String> = seen
            .iter()
            .filter(|r| (200..300).contains(&r.answered))
            .filter_map(|r| r.body["checkout_id"].as_str().map(str::to_owned))
            .collect();
        let mut per_webhook: HashMap<String, usize> = HashMap::new();
        for r in &seen {
            *per_webhook
                .entry(r.webhook_id.clone().unwrap_or_default())
                .or_default() += 1;
        }
        self.callbacks = seen.len();
        self.duplicates = per_webhook.values().map(|n| n - 1).sum();
        self.lost = want.iter().filter(|id| !delivered.contains(**id)).count();
        self.completed = 0;
        for id in accepted {
            if let Some(c) = fleet.checkout(id).await {
                let s = c["status"].as_str().unwrap_or("");
                if matches!(
                    s,
                    "completed"
                        | "partially_completed"
                        | "failed"
                        | "cancelled"
                        | "partially_cancelled"
                ) {
                    self.completed += 1;
                }
            }
        }
        let mut orders: HashMap<String, HashSet<String>> = HashMap::new();
        let mut requests: HashMap<String, usize> = HashMap::new();
        for sim in sims {
            for o in sim.orders().await {
                if let Some(k) = o["idempotency_key"].as_str() {
                    *requests.entry(k.to_owned()).or_default() += 1;
                }
                if let (Some(k), Some(id)) = (o["idempotency_key"].as_str(), o["order_id"].as_str())
                {
                    orders
                        .entry(k.to_owned())
                        .or_default()
                        .insert(id.to_owned());
                }
            }
        }
        self.double_orders = orders.values().filter(|ids| ids.len() > 1).count();
        self.resent_orders = requests.values().filter(|n| **n > 1).count();
    }

    /// One line for the log and the issue note.
    pub fn report(&self, name: &str) -> String {
        format!(
            "FAULT {name}: accepted={} completed={} callbacks={} duplicates={} lost={} double_orders={} (orders re-sent with the same key={}, 503s={}, with Retry-After={}, transport errors={})",
            self.accepted,
            self.completed,
            self.callbacks,
            self.duplicates,
            self.lost,
            self.double_orders,
            self.resent_orders,
            self.unavailable,
            self.unavailable_with_retry_after,
            self.transport_errors
        )
    }

    /// The promise: everything accepted finished and was called back, nothing ordered twice.
    pub fn assert_nothing_lost(&self, name: &str, fleet: &Fleet) {
        let line = self.report(name);
        println!("{line}");
        record(&line);
        assert!(
            self.lost == 0 && self.double_orders == 0 && self.completed == self.accepted,
            "{line}\n{}",
            fleet.logs()
        );
    }
}

/// Appends a report line to `target/fault-report.txt`, which `scripts/test.sh` prints at the
/// end, so the figures of a run show even though test output is captured.
pub fn record(line: &str) {
    use std::io::Write;
    let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent()?.parent()?.parent().map(|p| p.to_path_buf()))
    else {
        return;
    };
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("fault-report.txt"))
    {
        let _ = writeln!(f, "{line}");
    }
}
