//! The retailer simulator (`icon-retailer-sim`), in-process on random loopback ports: the
//! retailer protocol, the callback sink, the fake FCM with its OAuth2 token endpoint, and the
//! SMTP sink.

use crate::Api;
use hyper::Method;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A retailer simulator on random loopback ports (one for HTTP, one for SMTP).
pub struct Sim {
    pub base_url: String,
    smtp_port: u16,
    /// The service-account file written by [`Sim::service_account_file`], removed on drop.
    service_account: OnceLock<PathBuf>,
    shutdown: CancellationToken,
}

impl Sim {
    pub async fn start() -> Self {
        Self::start_with_slow_delay(Duration::from_millis(300)).await
    }

    /// A simulator whose `slow-` SKUs wait `slow_delay` before answering.
    pub async fn start_with_slow_delay(slow_delay: Duration) -> Self {
        Self::start_on(slow_delay, icon_runtime::Env::default()).await
    }

    /// A simulator whose `async-` orders report their events to ICON at `icon_url`
    /// (`ICON_SIM_ICON_URL`: a test gateway's `public_url`), each `async_delay` after the one
    /// before (`ICON_SIM_ASYNC_DELAY`), signed with the secret [`Sim::set_secret`] gave it.
    pub async fn start_reporting_to(icon_url: &str, async_delay: Duration) -> Self {
        Self::start_reporting_with_slow_delay(icon_url, async_delay, Duration::from_millis(300))
            .await
    }

    /// As [`Sim::start_reporting_to`], with `slow-` SKUs waiting `slow_delay`.
    pub async fn start_reporting_with_slow_delay(
        icon_url: &str,
        async_delay: Duration,
        slow_delay: Duration,
    ) -> Self {
        let env = icon_runtime::Env::from_pairs([
            ("ICON_SIM_ICON_URL", icon_url.to_owned()),
            (
                "ICON_SIM_ASYNC_DELAY",
                format!("{}ms", async_delay.as_millis()),
            ),
        ]);
        Self::start_on(slow_delay, env).await
    }

    /// A simulator with `env` for the settings a test does not set itself.
    async fn start_on(slow_delay: Duration, env: icon_runtime::Env) -> Self {
        let bind = || std::net::TcpListener::bind("127.0.0.1:0").expect("bind sim");
        let (http, smtp) = (bind(), bind());
        let base_url = format!("http://{}", http.local_addr().expect("addr"));
        let smtp_port = smtp.local_addr().expect("addr").port();
        let shutdown = CancellationToken::new();
        let settings = icon_retailer_sim::SimSettings {
            addr: "127.0.0.1:0".into(),
            slow_delay,
            smtp_addr: Some("127.0.0.1:0".into()),
            log: icon_runtime::telemetry::TelemetrySettings {
                filter: "warn".into(),
                ..Default::default()
            },
            // The demo public key and Google's one-hour token lifetime, unless `env` says.
            ..icon_retailer_sim::SimSettings::from_env(&env).expect("sim settings")
        };
        let listeners = icon_retailer_sim::Listeners {
            http,
            smtp: Some(smtp),
        };
        let server = icon_retailer_sim::serve(listeners, settings, shutdown.clone()).expect("sim");
        tokio::spawn(server);
        Self {
            base_url,
            smtp_port,
            service_account: OnceLock::new(),
            shutdown,
        }
    }

    /// The order URL for a retailer served by this simulator.
    pub fn order_url(&self, retailer: &str) -> String {
        format!("{}/{retailer}/orders", self.base_url)
    }

    /// Tells the simulator `retailer`'s signing secret (`PUT /_sim/retailers/{retailer}/secret`):
    /// from now on it answers 401 to that retailer's requests unless they verify with it.
    pub async fn set_secret(&self, retailer: &str, whsec: &str) {
        let r = Api::new(&self.base_url)
            .put(
                &format!("/_sim/retailers/{retailer}/secret"),
                None,
                &serde_json::json!({"secret": whsec}),
            )
            .await;
        assert_eq!(r.status, 204, "set secret: {r:?}");
    }

    /// Every order request the simulator received, oldest first (its `GET /requests`).
    pub async fn orders(&self) -> Vec<Value> {
        self.log("/requests").await
    }

    /// Every status lookup by idempotency key the simulator received, oldest first (its
    /// `GET /lookups`).
    pub async fn lookups(&self) -> Vec<Value> {
        self.log("/lookups").await
    }

    /// Every cancellation the simulator received, oldest first (its `GET /cancellations`):
    /// `retailer`, `idempotency_key` (the body's), `idempotency_key_header`, `order_id`,
    /// `reason`, `response_status`, and the signature's headers and whether they verified.
    pub async fn cancellations(&self) -> Vec<Value> {
        self.log("/cancellations").await
    }

    /// Every event the simulator sent ICON or tried to, oldest first (its `GET /events`):
    /// `source`, `retailer`, `webhook_id`, `type`, `idempotency_key`, `body`, `tries` (each
    /// with ICON's `status` and `answer`), `delivered`, `error`.
    pub async fn events(&self) -> Vec<Value> {
        self.log("/events").await
    }

    /// The SMTP sink, for `ICON_SMTP_URL` (plain SMTP: the sink offers no TLS).
    pub fn smtp_url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.smtp_port)
    }

    /// The fake FCM's base URL, for `ICON_FCM_ENDPOINT`: sends go to
    /// `{this}/v1/projects/{project_id}/messages:send`.
    pub fn fcm_endpoint(&self) -> String {
        self.base_url.clone()
    }

    /// The fake OAuth2 token endpoint a service account's `token_uri` should name.
    pub fn token_uri(&self) -> String {
        format!("{}/oauth2/token", self.base_url)
    }

    /// A copy of `deploy/demo/fcm-demo-service-account.json` whose `token_uri` is this
    /// simulator's, for `ICON_FCM_CREDENTIALS`. Written on first call; the file is removed when
    /// the `Sim` is dropped.
    pub fn service_account_file(&self) -> PathBuf {
        self.service_account
            .get_or_init(|| {
                let demo = concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/../../deploy/demo/fcm-demo-service-account.json"
                );
                let text = std::fs::read_to_string(demo).expect("the demo service account");
                let mut account: Value = serde_json::from_str(&text).expect("service account JSON");
                account["token_uri"] = Value::String(self.token_uri());
                let path = std::env::temp_dir().join(format!(
                    "icon-sim-service-account-{}.json",
                    uuid::Uuid::new_v4().simple()
                ));
                std::fs::write(&path, account.to_string()).expect("write the service account");
                path
            })
            .clone()
    }

    /// Every send the fake FCM received, oldest first (its `GET /fcm/messages`): `token`,
    /// `project_id`, `status`, `auth_ok`, `message`, `name`, `received_at`.
    pub async fn fcm_messages(&self) -> Vec<Value> {
        self.log("/fcm/messages").await
    }

    /// Every grant request the token endpoint received, oldest first (its `GET /fcm/grants`):
    /// `ok`, `iss`, `access_token`, `reason`, `received_at`.
    pub async fn grants(&self) -> Vec<Value> {
        self.log("/fcm/grants").await
    }

    /// Revokes every access token issued so far (`POST /fcm/revoke`): their next use gets a 401.
    pub async fn revoke_tokens(&self) {
        let r = Api::new(&self.base_url)
            .send(Method::POST, "/fcm/revoke", None, None, None)
            .await;
        assert_eq!(r.status, 204, "revoke: {r:?}");
    }

    /// Every mail the SMTP sink accepted, oldest first (its `GET /mail`): `id`, `from`, `to`,
    /// `data`, `subject`, `received_at`.
    pub async fn mails(&self) -> Vec<Value> {
        self.log("/mail").await
    }

    /// Where the order placed with `key` at `retailer` stands at the simulator, asked as ICON
    /// would (`GET /{retailer}/orders?idempotency_key=K`, unsigned: for a retailer with no
    /// secret told). `None` when it has no such order (404).
    pub async fn order_status(&self, retailer: &str, key: &str) -> Option<String> {
        // ICON's keys (`<uuid>:<retailer>`) need no escaping in a query.
        let path = format!("/{retailer}/orders?idempotency_key={key}");
        let r = Api::new(&self.base_url).get(&path, None).await;
        match r.status {
            404 => None,
            200 => r.json["status"].as_str().map(str::to_owned),
            other => panic!("lookup of {key} at {retailer} answered {other}: {r:?}"),
        }
    }

    async fn log(&self, path: &str) -> Vec<Value> {
        let r = Api::new(&self.base_url).get(path, None).await;
        r.json.as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(path) = self.service_account.get() {
            // Best effort: a leftover file in the temp directory harms nothing.
            let _ = std::fs::remove_file(path);
        }
    }
}
