//! The outbox relay: moves messages from PostgreSQL's `outbox` table to RabbitMQ.
//!
//! Why an outbox: a service must not act on (or answer 202 for) a state change unless the
//! message announcing it is certain to be published, and a database write followed by a publish
//! can be split by a crash (a dual write). So the message is written in the same transaction as
//! the state change, and published afterwards.
//!
//! Two ways out of the table:
//! - **Straight after commit** ([`Outbox::publish`]): the hot path (a new checkout, a finished
//!   one, a worker's next pass) writes its row with a grace period
//!   (`icon_store::outbox::PUBLISH_GRACE`) and hands it to this relay the moment its
//!   transaction commits. The relay publishes such rows as they come (batched with whatever else
//!   is waiting, confirms awaited together), and deletes the confirmed ones in batches later
//!   (every [`CLEANUP_EVERY`] or [`BATCH`] rows), so the happy path costs no transaction of its
//!   own for the outbox and no wake-up round trip.
//! - **The safety net** ([`relay`]): rows due for the relay (written with `NOTIFY`, or whose
//!   grace ran out because the service that wrote them died before publishing) are locked
//!   `FOR UPDATE SKIP LOCKED`, published with confirms, and deleted in the same transaction
//!   after every confirm arrived. A dedicated connection `LISTEN`s for the wake-ups; a slow poll
//!   (every [`SAFETY_POLL`]) covers wake-ups lost while it reconnected, and grace periods that
//!   ran out.
//!
//! A crash between publish and delete publishes a message again; consumers de-duplicate (by
//! the pass and attempt counters they claim). Several relays (replicas) can run at once.
//!
//! Start-up: every service calls [`spawn`] with its [`RelaySettings`] and queue type, and keeps
//! the [`Relay`] to read readiness from, to hand rows to, and to await on shutdown.

mod link;
mod listen;
mod relay;

use icon_broker::OutgoingMessage;
pub use icon_broker::QueueType;
use icon_store::outbox::OutboxRow;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How often the relay looks at the outbox without being woken.
pub const SAFETY_POLL: Duration = Duration::from_secs(2);
/// Rows published or deleted in one go.
pub const BATCH: usize = 256;
/// How long confirmed rows wait to be deleted together (fewer, larger transactions).
pub const CLEANUP_EVERY: Duration = Duration::from_millis(500);
/// Rows handed over and not yet published that a relay keeps in memory; beyond that a row is
/// left to the safety net (a broker outage must not grow memory without bound).
const DIRECT_CAPACITY: usize = 16_384;

#[derive(Debug, Clone)]
pub struct RelaySettings {
    pub amqp_url: String,
    pub database_url: String,
    /// Connection name in RabbitMQ, e.g. `icon-gateway-outbox`.
    pub name: String,
}

/// A relay started with [`spawn`].
pub struct Relay {
    broker_ready: Arc<AtomicBool>,
    outbox: Outbox,
    task: JoinHandle<()>,
}

impl Relay {
    /// True while the relay holds a working broker channel (for readiness probes).
    pub fn broker_ready(&self) -> Arc<AtomicBool> {
        self.broker_ready.clone()
    }

    /// Where to hand rows written for publishing straight after commit.
    pub fn outbox(&self) -> Outbox {
        self.outbox.clone()
    }

    /// Waits for the relay to finish once shutdown was requested: it publishes what it was
    /// handed and deletes what was confirmed, if the broker and the database let it.
    pub async fn stopped(self) {
        let _ = self.task.await;
    }
}

/// Hands committed outbox rows to the relay for publishing now (see the crate docs).
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<OutboxRow>,
}

impl Outbox {
    /// Publishes `row` as soon as the relay can. Call it only after the transaction that wrote
    /// the row committed. Never waits: if the relay is far behind, the row is left to the
    /// safety net, which publishes it once its grace period is over.
    pub fn publish(&self, row: OutboxRow) {
        if let Err(e) = self.tx.try_send(row) {
            tracing::debug!(error = %e, "relay busy; the outbox row waits for the safety net");
        }
    }
}

/// Reads the outbox gauges of `/metrics` (`icon_outbox_backlog`, `icon_outbox_oldest_age_seconds`)
/// (and `icon_outbox_unroutable`) at scrape time; every service with a relay shares the one outbox, so each reports the same
/// value. False if the database could not be read (the gauges keep their last value).
pub async fn sample_metrics(db: &impl icon_store::GenericClient) -> bool {
    match icon_store::gauges::outbox(db).await {
        Ok(g) => {
            icon_metrics::outbox().backlog.set(g.backlog);
            icon_metrics::outbox()
                .oldest_age_seconds
                .set(g.oldest_age_seconds);
            icon_metrics::outbox().unroutable.set(g.unroutable);
            true
        }
        Err(_) => false,
    }
}

/// Starts the relay as a task, declaring its queues as `queue_type`: the one start-up every
/// service shares. It runs until `shutdown`.
pub fn spawn(
    pool: deadpool_postgres::Pool,
    settings: RelaySettings,
    queue_type: QueueType,
    shutdown: CancellationToken,
) -> Relay {
    let broker_ready = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel(DIRECT_CAPACITY);
    let task = tokio::spawn(relay::run(
        pool,
        settings,
        queue_type,
        rx,
        broker_ready.clone(),
        shutdown,
    ));
    Relay {
        broker_ready,
        outbox: Outbox { tx },
        task,
    }
}

fn outgoing(r: &OutboxRow) -> OutgoingMessage {
    OutgoingMessage {
        exchange: r.exchange.clone(),
        routing_key: r.routing_key.clone(),
        message_id: r.message_id.to_string(),
        message_type: r.message_type.clone(),
        checkout_id: r.checkout_id.to_string(),
        body: r.body.clone(),
        death_reason: None,
        traceparent: r.traceparent.clone(),
    }
}
