//! Scale-out: two workers and two notifiers, as processes on one broker and one database, share
//! a few hundred checkouts and do nothing twice. "Shared" is read from each replica's own
//! account of its work (a worker's `/metrics` on its `ICON_PROBE_ADDR`, a notifier's log), and
//! "nothing twice" from outside as well: the retailer's request log and the callback receiver.

use futures_util::{stream, StreamExt};
use icon_gateway::auth::JwtKeys;
use icon_testkit::fleet::{GATEWAY, NOTIFIER, WORKER};
use icon_testkit::metrics::free_port;
use icon_testkit::process::Service;
use icon_testkit::{eventually, Api, Receiver, Sim, TestEnv, JWT_SECRET, SECRETS_KEY};
use serde_json::json;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

const CHECKOUTS: usize = 300;
const RETAILERS: [&str; 4] = ["north", "south", "east", "west"];
/// Each cart buys from two retailers, so every retailer sees orders from many checkouts.
const ORDERS_PER_CHECKOUT: usize = 2;

/// A replica with its probe address (`/readyz`, `/metrics`).
struct Replica {
    service: Service,
    probe: Api,
}

/// One gateway, two workers and two notifiers on one database and vhost.
struct Deployment {
    // Declared first so they stop before the log directory goes.
    gateway: Service,
    workers: Vec<Replica>,
    notifiers: Vec<Replica>,
    api: Api,
    log_dir: PathBuf,
}

impl Deployment {
    async fn start(env: &TestEnv) -> Self {
        let port = free_port();
        let log_dir =
            std::env::temp_dir().join(format!("icon-scale-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&log_dir).expect("log dir");
        let common: HashMap<String, String> = [
            ("ICON_DATABASE_URL", env.database_url.clone()),
            ("ICON_AMQP_URL", env.amqp_url.clone()),
            ("ICON_HTTP_ADDR", format!("127.0.0.1:{port}")),
            ("ICON_HTTP_WORKERS", "2".into()),
            ("ICON_JWT_SECRET", JWT_SECRET.into()),
            ("ICON_RATE_LIMIT", "off".into()),
            ("ICON_SECRETS_KEY", SECRETS_KEY.into()),
            ("ICON_CALLBACK_ALLOW_NETWORKS", "127.0.0.0/8".into()),
            ("ICON_CALLBACK_ALLOW_HTTP", "true".into()),
            ("ICON_RETAILER_ALLOW_NETWORKS", "127.0.0.0/8".into()),
            ("ICON_RETAILER_ALLOW_HTTP", "true".into()),
            ("ICON_CALLBACK_RETRY_SCHEDULE", "200ms,500ms,1s".into()),
            ("ICON_CALLBACK_TIMEOUT", "5s".into()),
            ("ICON_RETAILER_TIMEOUT", "5s".into()),
            ("ICON_RETAILER_RETRY_BACKOFF", "100ms".into()),
            ("ICON_RETAILER_RETRY_BACKOFF_MAX", "2s".into()),
            ("ICON_LOG", "info".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let replica = |name: &'static str, binary: &str| {
            let probe = format!("127.0.0.1:{}", free_port());
            let mut env = common.clone();
            env.insert("ICON_PROBE_ADDR".into(), probe.clone());
            Replica {
                service: Service::start(name, binary, &env, &log_dir),
                probe: Api::new(&format!("http://{probe}")),
            }
        };
        let gateway = Service::start("gateway", GATEWAY, &common, &log_dir);
        let workers = vec![replica("worker-a", WORKER), replica("worker-b", WORKER)];
        let notifiers = vec![
            replica("notifier-a", NOTIFIER),
            replica("notifier-b", NOTIFIER),
        ];
        let d = Self {
            gateway,
            workers,
            notifiers,
            api: Api::new(&format!("http://127.0.0.1:{port}")),
            log_dir,
        };
        // Every replica ready (consumer attached) before the first checkout, so each can be
        // handed work from the start.
        let gateway = std::iter::once(("gateway", &d.api));
        let replicas = d
            .workers
            .iter()
            .chain(&d.notifiers)
            .map(|r| (r.service.name, &r.probe));
        for (name, api) in gateway.chain(replicas) {
            eventually(
                &format!("{name} to be ready"),
                Duration::from_secs(60),
                || async {
                    let r = api
                        .try_send(http::Method::GET, "/readyz", None, &[], None)
                        .await;
                    matches!(r, Ok(r) if r.status == 200).then_some(())
                },
            )
            .await;
        }
        d
    }

    fn logs(&self) -> String {
        std::iter::once(&self.gateway)
            .chain(self.workers.iter().map(|r| &r.service))
            .chain(self.notifiers.iter().map(|r| &r.service))
            .map(|s| {
                let log = s.log();
                let lines: Vec<&str> = log.lines().collect();
                let tail = lines[lines.len().saturating_sub(40)..].join("\n");
                format!("----- {} -----\n{tail}", s.name)
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        let _ = std::fs::remove_dir_all(&self.log_dir);
    }
}

/// The sum of every sample of `family` whose labels contain all of `labels`.
fn sum(metrics: &str, family: &str, labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let rest = series.strip_prefix(family)?;
            (rest.starts_with('{') && labels.iter().all(|want| rest.contains(want)))
                .then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_workers_and_two_notifiers_share_the_work_and_do_nothing_twice() {
    let env = TestEnv::create().await;
    let sim = Sim::start().await;
    let receiver = Receiver::start(vec![], None).await;
    let icon = Deployment::start(&env).await;

    let keys = JwtKeys::new(JWT_SECRET);
    let admin = keys
        .mint("ops", true, Duration::from_secs(3600))
        .expect("token");
    for r in RETAILERS {
        let reply = icon
            .api
            .put(
                &format!("/retailers/{r}"),
                Some(&admin),
                &json!({"name": r, "order_url": sim.order_url(r)}),
            )
            .await;
        assert!(reply.status == 201, "register {r}: {reply:?}");
    }

    // A few hundred checkouts, 16 at a time, from as many shoppers as there are checkouts.
    // (shopper number, checkout id): answers come back in any order.
    let ids: Vec<(usize, String)> = stream::iter(0..CHECKOUTS)
        .map(|n| {
            let (api, keys, hook) = (&icon.api, &keys, &receiver.url);
            async move {
                let token = keys
                    .mint(&format!("shopper-{n}"), false, Duration::from_secs(3600))
                    .expect("token");
                let r = api.post("/carts", Some(&token), &json!({})).await;
                assert_eq!(r.status, 201, "{r:?}");
                let cart = r.json["cart_id"].as_i64().expect("cart_id");
                for k in 0..ORDERS_PER_CHECKOUT {
                    let retailer = RETAILERS[(n + k) % RETAILERS.len()];
                    let r = api
                        .post(
                            &format!("/carts/{cart}/items"),
                            Some(&token),
                            &json!({"retailer_id": retailer, "sku": format!("item-{n}"),
                                    "quantity": 1,
                                    "unit_price": {"amount_minor": 1999, "currency": "GBP"}}),
                        )
                        .await;
                    assert_eq!(r.status, 201, "{r:?}");
                }
                let r = api
                    .post(
                        "/cart/checkout/",
                        Some(&token),
                        &json!({"cart_id": cart, "callback_url": hook}),
                    )
                    .await;
                assert_eq!(r.status, 202, "{r:?}");
                let id = r.json["checkout_id"].as_str().expect("checkout_id");
                (n, id.to_owned())
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;

    receiver.wait_for(CHECKOUTS, Duration::from_secs(60)).await;

    // Every checkout final, as the API tells its owner, with its callback delivered at the
    // first and only attempt.
    for (n, id) in &ids {
        let token = keys
            .mint(&format!("shopper-{n}"), false, Duration::from_secs(3600))
            .expect("token");
        let c = icon
            .api
            .get(&format!("/cart/checkout/{id}"), Some(&token))
            .await;
        assert_eq!(c.status, 200, "{c:?}");
        assert_eq!(c.json["status"], "completed", "{}", c.json);
        assert_eq!(c.json["callback"]["state"], "delivered", "{}", c.json);
        assert_eq!(c.json["callback"]["attempts"], 1, "{}", c.json);
    }

    // Exactly one callback per checkout, every one answered 2xx, and each about a completed
    // checkout (the callback is sent once the checkout is final).
    let mut callbacks: HashMap<String, usize> = HashMap::new();
    for r in receiver.seen() {
        assert_eq!(r.answered, 200, "{r:?}");
        assert_eq!(r.body["status"], "completed", "{}", r.body);
        let id = r.body["checkout_id"].as_str().expect("checkout_id");
        *callbacks.entry(id.to_owned()).or_default() += 1;
    }
    for (_, id) in &ids {
        assert_eq!(
            callbacks.remove(id),
            Some(1),
            "callbacks for checkout {id}\n{}",
            icon.logs()
        );
    }
    assert!(
        callbacks.is_empty(),
        "callbacks for unknown checkouts: {callbacks:?}"
    );

    // Every order requested from its retailer once: one request per idempotency key, no key
    // placed twice, as many keys as orders.
    let mut requests: HashMap<String, usize> = HashMap::new();
    for o in sim.orders().await {
        let key = o["idempotency_key"].as_str().expect("idempotency_key");
        *requests.entry(key.to_owned()).or_default() += 1;
    }
    assert_eq!(requests.len(), CHECKOUTS * ORDERS_PER_CHECKOUT);
    let twice: Vec<_> = requests.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "orders requested more than once: {twice:?}"
    );

    // Both workers did some of the work and, together, each piece once: every checkout finished
    // and every order placed by exactly one of them.
    let mut finished = vec![];
    let mut placed = vec![];
    for w in &icon.workers {
        let m = w.probe.get("/metrics", None).await;
        assert_eq!(m.status, 200, "{}: {m:?}", w.service.name);
        finished.push(sum(
            &m.text,
            "icon_checkouts_finished_total",
            &[r#"status="completed""#],
        ));
        placed.push(sum(
            &m.text,
            "icon_retailer_calls_total",
            &[r#"step="place""#, r#"outcome="accepted""#],
        ));
    }
    println!("SCALE workers: checkouts finished {finished:?}, orders placed {placed:?}");
    assert!(finished.iter().all(|n| *n > 0.0), "{finished:?}");
    assert_eq!(finished.iter().sum::<f64>(), CHECKOUTS as f64);
    assert!(placed.iter().all(|n| *n > 0.0), "{placed:?}");
    assert_eq!(
        placed.iter().sum::<f64>(),
        (CHECKOUTS * ORDERS_PER_CHECKOUT) as f64
    );

    // Both notifiers delivered some callbacks and, together, each once (from their logs: one
    // line per attempt).
    let attempts: Vec<usize> = icon
        .notifiers
        .iter()
        .map(|n| {
            n.service
                .log()
                .lines()
                .filter(|l| l.contains("notification attempt") && l.contains("channel=callback"))
                .count()
        })
        .collect();
    println!("SCALE notifiers: callback attempts {attempts:?}");
    assert!(attempts.iter().all(|n| *n > 0), "{attempts:?}");
    assert_eq!(attempts.iter().sum::<usize>(), CHECKOUTS);
}
