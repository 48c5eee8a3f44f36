//! The test harness. Every test gets:
//!
//! - its own PostgreSQL database and its own RabbitMQ vhost ([`TestEnv`]), created fresh and
//!   dropped afterwards, so tests run in parallel without cross-talk;
//! - the real gateway, checkout worker and notifier, in-process, on a random port ([`TestApp`]);
//! - real HTTP parties on 127.0.0.1: retailer simulators and scriptable callback receivers
//!   ([`Receiver`]).
//!
//! Nothing is mocked: the services talk to the real broker and database. Waiting is always on a
//! condition with a deadline ([`eventually`]), never a bare sleep.
//!
//! Where the broker and database are: `ICON_TEST_DATABASE_URL` (an admin connection, default
//! `postgres://postgres@127.0.0.1:5432/postgres`), `ICON_TEST_AMQP_URL` (default
//! `amqp://guest:guest@127.0.0.1:5672`), and `ICON_TEST_RABBITMQCTL` (the command that manages
//! vhosts, default `rabbitmqctl`; `scripts/test.sh` sets it when the broker runs in Docker).

mod api;
pub mod disposable;
mod env;
pub mod fleet;
pub mod metrics;
pub mod process;
mod receiver;
pub mod retailer_events;
mod sim;
pub mod tls_proxy;

pub use api::{Api, Reply as ApiReply};
pub use env::TestEnv;
pub use receiver::{Receiver, Recorded, Scripted};
pub use sim::Sim;

use icon_checkout_worker::WorkerSettings;
use icon_gateway::auth::{Claims, JwtKeys};
use icon_gateway::{Application, GatewaySettings};
use icon_notifier::NotifierSettings;
use icon_runtime::Env;
use serde_json::{json, Value};
use std::future::Future;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The HS256 secret of every test gateway: at least 32 bytes, as the gateway demands.
pub const JWT_SECRET: &str = "test-secret-at-least-32-bytes-long!!";
/// `ICON_SECRETS_KEY` of every test: the key that seals webhook secrets at rest.
pub const SECRETS_KEY: &str = "4d2b7a9c0e1f3a5b6c7d8e9f00112233445566778899aabbccddeeff01234567";

/// Waits until `check` returns `Some`, polling every 20ms, or panics after `deadline` naming
/// `what`.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let until = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() >= until {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Settings the services get in tests, on top of the database and vhost: quick retries.
#[derive(Debug, Clone)]
pub struct Options {
    pub retry_schedule: String,
    pub give_up_after: String,
    pub callback_timeout: String,
    pub retailer_max_attempts: String,
    pub retailer_backoff: String,
    pub retailer_timeout: String,
    /// `ICON_CALLBACK_ALLOW_NETWORKS`: loopback, since every receiver in tests is on 127.0.0.1.
    pub allow_networks: String,
    /// `ICON_WORKER_STUCK_AFTER` and `ICON_NOTIFIER_STUCK_AFTER`.
    pub stuck_after: String,
    /// Start the worker and the notifier with the gateway (else: [`TestApp::start_worker`],
    /// [`TestApp::start_notifier`]).
    pub start_worker: bool,
    pub start_notifier: bool,
    /// Any other variable, set last (overrides the above).
    pub extra: Vec<(&'static str, String)>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            retry_schedule: "100ms,200ms".into(),
            give_up_after: "1h".into(),
            callback_timeout: "2s".into(),
            retailer_max_attempts: "3".into(),
            retailer_backoff: "20ms".into(),
            retailer_timeout: "2s".into(),
            allow_networks: "127.0.0.0/8".into(),
            stuck_after: "5m".into(),
            start_worker: true,
            start_notifier: true,
            extra: vec![],
        }
    }
}

/// The whole system, running in-process for one test.
pub struct TestApp {
    pub env: TestEnv,
    pub api: Api,
    pub public_url: String,
    keys: JwtKeys,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    vars: Env,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(Options::default()).await
    }

    pub async fn spawn_with(opts: Options) -> Self {
        Self::spawn_on(TestEnv::create().await, opts).await
    }

    /// [`TestApp::spawn_with`] on an environment the test made first, to reach its database and
    /// vhost some other way (through [`tls_proxy`], set in `opts.extra`).
    pub async fn spawn_on(env: TestEnv, opts: Options) -> Self {
        let shutdown = CancellationToken::new();
        let mut vars = Env::from_pairs([
            ("ICON_DATABASE_URL", env.database_url.clone()),
            ("ICON_AMQP_URL", env.amqp_url.clone()),
            ("ICON_HTTP_ADDR", "127.0.0.1:0".into()),
            ("ICON_HTTP_WORKERS", "1".into()),
            ("ICON_JWT_SECRET", JWT_SECRET.into()),
            // Tests fire requests faster than any shopper; the rate-limit tests turn it on.
            ("ICON_RATE_LIMIT", "off".into()),
            ("ICON_SECRETS_KEY", SECRETS_KEY.into()),
            ("ICON_CALLBACK_ALLOW_NETWORKS", opts.allow_networks.clone()),
            // Receivers in tests are plain-http servers on loopback.
            ("ICON_CALLBACK_ALLOW_HTTP", "true".into()),
            // So are the retailer simulators, for the gateway and the worker alike (a test of
            // the retailer guard overrides these, or sets them apart for the worker).
            ("ICON_RETAILER_ALLOW_NETWORKS", "127.0.0.0/8".into()),
            ("ICON_RETAILER_ALLOW_HTTP", "true".into()),
            ("ICON_CALLBACK_RETRY_SCHEDULE", opts.retry_schedule.clone()),
            ("ICON_CALLBACK_GIVE_UP_AFTER", opts.give_up_after.clone()),
            ("ICON_CALLBACK_TIMEOUT", opts.callback_timeout.clone()),
            (
                "ICON_RETAILER_MAX_ATTEMPTS",
                opts.retailer_max_attempts.clone(),
            ),
            ("ICON_RETAILER_RETRY_BACKOFF", opts.retailer_backoff.clone()),
            ("ICON_RETAILER_TIMEOUT", opts.retailer_timeout.clone()),
            ("ICON_WORKER_STUCK_AFTER", opts.stuck_after.clone()),
            ("ICON_NOTIFIER_STUCK_AFTER", opts.stuck_after.clone()),
            // Quick waits: a capped backoff and status lookups within a test's patience.
            ("ICON_RETAILER_RETRY_BACKOFF_MAX", "1s".into()),
            ("ICON_RETAILER_SETTLE_SCHEDULE", "100ms,200ms".into()),
            ("ICON_RETAILER_SETTLE_WITHIN", "10s".into()),
        ]);
        for (var, value) in &opts.extra {
            vars.set(var, value.clone());
        }
        let gateway = GatewaySettings::from_env(&vars).expect("gateway settings");

        let app = Application::build(gateway, shutdown.clone())
            .await
            .expect("gateway starts")
            .expect("not cancelled");
        let public_url = app.public_url().to_owned();
        let tasks = vec![tokio::spawn(async move {
            let _ = app.run_until_stopped().await;
        })];
        let mut this = Self {
            api: Api::new(&public_url),
            public_url,
            env,
            keys: JwtKeys::new(JWT_SECRET),
            shutdown,
            tasks,
            vars,
        };
        if opts.start_worker {
            this.start_worker();
        }
        if opts.start_notifier {
            this.start_notifier();
        }
        // Ready means the outbox relay is connected and has declared the work queues, so a
        // test can inspect or publish to them at once.
        let api = this.api.clone();
        eventually(
            "the gateway to be ready",
            Duration::from_secs(30),
            || async { (api.get("/readyz", None).await.status == 200).then_some(()) },
        )
        .await;
        this
    }

    /// Sets a variable for the services started after this: an operator changing the
    /// notifier's settings between a checkout's submission and its delivery, say.
    pub fn set_var(&mut self, var: &str, value: &str) {
        self.vars.set(var, value);
    }

    /// Starts the checkout worker (when the options held it back).
    pub fn start_worker(&mut self) {
        let settings = WorkerSettings::from_env(&self.vars).expect("worker settings");
        let s = self.shutdown.clone();
        self.tasks.push(tokio::spawn(async move {
            icon_checkout_worker::run(settings, s)
                .await
                .expect("worker runs");
        }));
    }

    /// Starts the notifier (when the options held it back).
    pub fn start_notifier(&mut self) {
        let settings = NotifierSettings::from_env(&self.vars).expect("notifier settings");
        let s = self.shutdown.clone();
        self.tasks.push(tokio::spawn(async move {
            icon_notifier::run(settings, s)
                .await
                .expect("notifier runs");
        }));
    }

    pub fn token(&self, user: &str) -> String {
        self.keys
            .mint(user, false, Duration::from_secs(3600))
            .expect("mint")
    }

    /// A shopper token carrying an `email` claim.
    pub fn token_with_email(&self, user: &str, email: &str) -> String {
        self.keys
            .mint_with_email(user, Some(email), false, Duration::from_secs(3600))
            .expect("mint")
    }

    /// A partner's client-credentials token (scope `partner`) for `client_id`.
    pub fn partner_token(&self, client_id: &str) -> String {
        self.token_with_claims(
            &Claims::new(client_id, Duration::from_secs(3600)).with_scope("partner"),
        )
    }

    /// An HS256 token carrying exactly `claims`.
    pub fn token_with_claims(&self, claims: &Claims) -> String {
        self.keys.mint_claims(claims).expect("mint")
    }

    pub fn admin_token(&self) -> String {
        self.keys
            .mint("ops", true, Duration::from_secs(3600))
            .expect("mint")
    }

    /// Registers a retailer and panics unless it worked.
    pub async fn register_retailer(&self, id: &str, order_url: &str) {
        let r = self
            .api
            .put(
                &format!("/retailers/{id}"),
                Some(&self.admin_token()),
                &json!({"name": id, "order_url": order_url}),
            )
            .await;
        assert!(
            r.status == 201 || r.status == 200,
            "register retailer: {r:?}"
        );
    }

    /// Creates a cart for `user` with one item per `(retailer, sku)` and returns its id.
    pub async fn cart_with(&self, user: &str, items: &[(&str, &str)]) -> i64 {
        let token = self.token(user);
        let r = self.api.post("/carts", Some(&token), &json!({})).await;
        assert_eq!(r.status, 201, "create cart: {r:?}");
        let cart = r.json["cart_id"].as_i64().expect("cart_id");
        for (retailer, sku) in items {
            let r = self
                .api
                .post(
                    &format!("/carts/{cart}/items"),
                    Some(&token),
                    &json!({"retailer_id": retailer, "sku": sku, "quantity": 1,
                            "unit_price": {"amount_minor": 1999, "currency": "GBP"}}),
                )
                .await;
            assert_eq!(r.status, 201, "add item: {r:?}");
        }
        cart
    }

    /// Submits a checkout with an `Idempotency-Key` and returns the response.
    pub async fn checkout_with_key(&self, user: &str, body: &Value, key: &str) -> ApiReply {
        self.api
            .send_with(
                http::Method::POST,
                "/cart/checkout/",
                Some(&self.token(user)),
                &[("idempotency-key", key)],
                Some(body.to_string()),
            )
            .await
    }

    /// Submits a checkout and returns the response.
    pub async fn checkout(&self, user: &str, cart: i64, callback_url: Option<&str>) -> ApiReply {
        let mut body = json!({"cart_id": cart});
        if let Some(url) = callback_url {
            body["callback_url"] = url.into();
        }
        self.api
            .post("/cart/checkout/", Some(&self.token(user)), &body)
            .await
    }

    /// Polls the checkout until `pred` holds for its JSON.
    pub async fn wait_for_checkout(
        &self,
        user: &str,
        checkout_id: &str,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let token = self.token(user);
        eventually(what, Duration::from_secs(20), || async {
            let r = self
                .api
                .get(&format!("/cart/checkout/{checkout_id}"), Some(&token))
                .await;
            (r.status == 200 && pred(&r.json)).then_some(r.json)
        })
        .await
    }

    /// Stops every service and waits for them to finish.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        for t in self.tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(15), t).await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
