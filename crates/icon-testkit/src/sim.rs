//! The retailer simulator (`icon-retailer-sim`), in-process on a random loopback port.

use crate::Api;
use serde_json::Value;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A retailer simulator on a random loopback port.
pub struct Sim {
    pub base_url: String,
    shutdown: CancellationToken,
}

impl Sim {
    pub async fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind sim");
        let base_url = format!("http://{}", listener.local_addr().expect("addr"));
        let shutdown = CancellationToken::new();
        let settings = icon_retailer_sim::SimSettings {
            addr: "127.0.0.1:0".into(),
            slow_delay: Duration::from_millis(300),
            log: "warn".into(),
        };
        let server = icon_retailer_sim::serve(listener, settings, shutdown.clone()).expect("sim");
        tokio::spawn(server);
        Self { base_url, shutdown }
    }

    /// The order URL for a retailer served by this simulator.
    pub fn order_url(&self, retailer: &str) -> String {
        format!("{}/{retailer}/orders", self.base_url)
    }

    /// Every order request the simulator received, oldest first (its `GET /requests`).
    pub async fn orders(&self) -> Vec<Value> {
        let r = Api::new(&self.base_url).get("/requests", None).await;
        r.json.as_array().cloned().unwrap_or_default()
    }

    /// Every status lookup by idempotency key the simulator received, oldest first (its
    /// `GET /lookups`).
    pub async fn lookups(&self) -> Vec<Value> {
        let r = Api::new(&self.base_url).get("/lookups", None).await;
        r.json.as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
