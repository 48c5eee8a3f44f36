//! ICON's Prometheus metrics, named in `docs/metrics.md` (the contract the dashboard and the
//! alert rules under `deploy/` are built on).
//!
//! One registry per process. Each service touches only the families it feeds ([`gateway`],
//! [`worker`], [`notifier`], and the shared [`outbox`], [`queues`] and [`ready`]); a family is
//! registered the first time it is reached, so a worker's `/metrics` does not list the gateway's
//! HTTP histograms at zero. Services call their accessors once at start-up so every family they
//! own is registered from the first scrape; a labelled family shows its series once a label set
//! was first used (services create the fixed ones, such as each final status, at start-up, so a
//! `rate()` has a zero to start from).
//!
//! Labels are bounded: routes are patterns, statuses and outcomes are fixed words, retailers are
//! the admin-registered few. No checkout, cart or user id is ever a label.

mod families;

pub use families::*;

use prometheus_client::registry::Registry;
use std::sync::{LazyLock, RwLock};

/// What `/metrics` answers with: Prometheus and OpenMetrics scrapers both read it.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

static REGISTRY: LazyLock<RwLock<Registry>> = LazyLock::new(|| RwLock::new(Registry::default()));

/// Adds families to the process's registry (called once per family group).
fn register(f: impl FnOnce(&mut Registry)) {
    let mut registry = match REGISTRY.write() {
        Ok(r) => r,
        Err(poisoned) => poisoned.into_inner(),
    };
    f(&mut registry);
}

/// The registry in the text exposition format, for `GET /metrics`.
pub fn render() -> String {
    let registry = match REGISTRY.read() {
        Ok(r) => r,
        Err(poisoned) => poisoned.into_inner(),
    };
    let mut out = String::with_capacity(16 * 1024);
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

/// Latency buckets in seconds: 1 ms doubling up to about 65 s, covering a 2 ms callback and a
/// retailer that answers at its timeout alike.
pub fn seconds_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 17)
}
