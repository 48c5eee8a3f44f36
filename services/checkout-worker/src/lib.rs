//! `icon-checkout-worker`: consumes `checkout.requested`, places one order per retailer in the
//! cart (concurrently), records each outcome, and makes the checkout's one final transition,
//! which writes `checkout.finished` to the outbox in the same transaction.
//!
//! - [`settings`]: the environment it reads.
//! - [`retailer`]: the retailer protocol: one order request or status lookup, classified.
//! - [`progress`]: what each answer means for the order (retry, `unknown`, settled).
//! - [`gate`]: at most `ICON_RETAILER_MAX_IN_FLIGHT` calls to one retailer at once.
//! - [`handler`]: one message = one processing pass, claimed so that copies never fork.
//! - [`batches`]: the claims of messages that arrive together, in one statement (group commit).
//! - [`metrics`]: retailer calls and finished checkouts, for `/metrics` on `ICON_PROBE_ADDR`.
//!
//! Redelivery is safe: a confirmed or refused order is never placed again, an open one is sent
//! again with the same `Idempotency-Key`, waits happen in delay tiers
//! (`checkout.requested.delay.<ms>ms`), and the final transition happens once.

pub mod batches;
pub mod gate;
pub mod handler;
pub mod metrics;
pub mod progress;
pub mod retailer;
pub mod settings;

use icon_broker::{run_consumer, ConsumerSettings, Topology};
use icon_contracts::topology::CHECKOUT_REQUESTED;
use icon_outbox::RelaySettings;
use icon_store::PoolSettings;
pub use settings::WorkerSettings;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on ICON_PROBE_ADDR={addr}: {source}")]
    Probe {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot prepare the database: {0}")]
    Store(#[from] icon_store::StoreError),
    #[error("cannot build the HTTP client: {0}")]
    Tls(#[from] icon_http::TlsError),
}

/// The worker's queues: its work queue and one delay tier per distinct wait it schedules, of
/// the configured type (`icon-checkout-worker migrate-queues` converts them).
pub fn topology(settings: &WorkerSettings) -> Topology {
    let mut topology = Topology::new()
        .queue_type(settings.queue_type)
        .work_queue(CHECKOUT_REQUESTED);
    for delay in settings.delay_tiers().all() {
        topology = topology.delay_tier(*delay, CHECKOUT_REQUESTED);
    }
    topology
}

/// Runs the worker until `shutdown`: waits for PostgreSQL, then consumes and relays.
pub async fn run(settings: WorkerSettings, shutdown: CancellationToken) -> Result<(), StartError> {
    let connected = Arc::new(std::sync::OnceLock::new());
    let consuming = Arc::new(AtomicBool::new(false));
    metrics::register();
    icon_runtime::probe::start(
        settings.probe_addr.as_deref(),
        icon_store::pool::ready_check(connected.clone(), consuming.clone()),
        Some(metrics::sampler(connected.clone())),
        shutdown.clone(),
    )
    .await
    .map_err(|source| StartError::Probe {
        addr: settings.probe_addr.clone().unwrap_or_default(),
        source,
    })?;
    let Some(pool) =
        icon_store::connect(&PoolSettings::new(&settings.database_url), &shutdown).await?
    else {
        return Ok(());
    };
    let _ = connected.set(pool.clone());
    let retailers = retailer::RetailerClient::new(&settings)?;
    // The relay stops after the consumer, so the passes finishing meanwhile still publish.
    let relay_stop = CancellationToken::new();
    let relay = icon_outbox::spawn(
        pool.clone(),
        RelaySettings {
            amqp_url: settings.amqp_url.clone(),
            database_url: settings.database_url.clone(),
            name: "icon-checkout-worker-outbox".into(),
        },
        settings.queue_type,
        relay_stop.clone(),
    );
    let sweeper = tokio::spawn(icon_store::sweep::run(
        pool.clone(),
        icon_store::sweep::Stuck::Checkouts,
        settings.stuck_after,
        shutdown.clone(),
    ));
    let handler = Arc::new(handler::CheckoutHandler::new(
        pool,
        retailers,
        relay.outbox(),
        settings.clone(),
    ));
    run_consumer(
        ConsumerSettings {
            amqp_url: settings.amqp_url.clone(),
            name: "icon-checkout-worker".into(),
            queue: CHECKOUT_REQUESTED.into(),
            prefetch: settings.prefetch,
            // Long enough for one pass (one call per order, all at once) to finish.
            grace: settings.retailer_timeout + Duration::from_secs(5),
        },
        topology(&settings),
        handler,
        consuming.clone(),
        shutdown.clone(),
    )
    .await;
    shutdown.cancel();
    relay_stop.cancel();
    relay.stopped().await;
    let _ = sweeper.await;
    Ok(())
}
