//! The outbox relay: moves messages from PostgreSQL's `outbox` table to RabbitMQ.
//!
//! Why an outbox: the gateway must not answer 202 unless the work is certain to be queued, and a
//! database write followed by a publish can be split by a crash (a dual write). So the message is
//! written in the same transaction as the checkout, and this relay publishes it afterwards.
//!
//! Latency: a dedicated connection `LISTEN`s on the outbox channel; every transaction that writes
//! to the outbox `NOTIFY`s it, delivered on commit, so the relay wakes within a millisecond. A
//! slow poll (every [`SAFETY_POLL`]) only covers notifications lost while the listener was
//! reconnecting. Each wake drains the table in batches whose publishes are pipelined and whose
//! confirms are awaited together.
//!
//! Delivery: rows are locked `FOR UPDATE SKIP LOCKED`, published with confirms, and deleted in
//! the same transaction only after every confirm arrived. A crash in between publishes them again
//! on restart; consumers de-duplicate by message id. Several relays (replicas) can run at once.
//!
//! Start-up: every service calls [`spawn`] with its [`RelaySettings`] and queue type, and keeps
//! the [`Relay`] to read readiness from and to await on shutdown.

use deadpool_postgres::Pool;
use futures_util::{stream, StreamExt};
pub use icon_broker::QueueType;
use icon_broker::{connect, lapin, OutgoingMessage, Publisher, Topology};
use icon_runtime::Backoff;
use icon_store::{outbox, StoreError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_postgres::AsyncMessage;
use tokio_util::sync::CancellationToken;

/// How often the relay looks at the outbox without being woken.
pub const SAFETY_POLL: Duration = Duration::from_secs(2);
const BATCH: i64 = 256;

#[derive(Debug, Clone)]
pub struct RelaySettings {
    pub amqp_url: String,
    pub database_url: String,
    /// Connection name in RabbitMQ, e.g. `icon-gateway-outbox`.
    pub name: String,
}

#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Database(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Publish(#[from] icon_broker::PublishError),
}

/// A relay started with [`spawn`].
pub struct Relay {
    broker_ready: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl Relay {
    /// True while the relay holds a working broker channel (for readiness probes).
    pub fn broker_ready(&self) -> Arc<AtomicBool> {
        self.broker_ready.clone()
    }

    /// Waits for the relay to finish once shutdown was requested.
    pub async fn stopped(self) {
        let _ = self.task.await;
    }
}

/// Starts the relay as a task, declaring its queues as `queue_type`: the one start-up every
/// service shares. It runs until `shutdown`.
pub fn spawn(
    pool: Pool,
    settings: RelaySettings,
    queue_type: QueueType,
    shutdown: CancellationToken,
) -> Relay {
    let broker_ready = Arc::new(AtomicBool::new(false));
    let task = tokio::spawn(run(
        pool,
        settings,
        queue_type,
        broker_ready.clone(),
        shutdown,
    ));
    Relay { broker_ready, task }
}

async fn run(
    pool: Pool,
    settings: RelaySettings,
    queue_type: QueueType,
    broker_ready: Arc<AtomicBool>,
    shutdown: CancellationToken,
) {
    let wake = Arc::new(Notify::new());
    let listener = tokio::spawn(listen(
        settings.database_url.clone(),
        wake.clone(),
        shutdown.clone(),
    ));
    // The relay may publish any outbox row, so it declares every queue a row can be routed to.
    let topology = Topology::new()
        .queue_type(queue_type)
        .work_queue(icon_contracts::topology::CHECKOUT_REQUESTED)
        .work_queue(icon_contracts::topology::CHECKOUT_FINISHED);

    let mut backoff = Backoff::reconnect();
    'connection: while !shutdown.is_cancelled() {
        let Some(conn) = connect(&settings.amqp_url, &settings.name, &shutdown).await else {
            break;
        };
        let publisher = match open(&conn, &topology).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "outbox relay could not open its channel");
                let _ = conn.close(200, "retry".into()).await;
                sleep_or_cancel(backoff.next_delay(), &shutdown).await;
                continue;
            }
        };
        broker_ready.store(true, Ordering::Relaxed);
        loop {
            match drain(&pool, &publisher).await {
                Ok(()) => backoff = Backoff::reconnect(),
                Err(RelayError::Publish(e)) => {
                    tracing::warn!(error = %e, "outbox relay lost RabbitMQ; reconnecting");
                    broker_ready.store(false, Ordering::Relaxed);
                    let _ = conn.close(200, "reconnect".into()).await;
                    sleep_or_cancel(backoff.next_delay(), &shutdown).await;
                    continue 'connection;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "outbox relay cannot read the outbox; retrying");
                    sleep_or_cancel(backoff.next_delay(), &shutdown).await;
                    continue;
                }
            }
            if !publisher.is_connected() {
                broker_ready.store(false, Ordering::Relaxed);
                continue 'connection;
            }
            tokio::select! {
                _ = shutdown.cancelled() => break 'connection,
                _ = wake.notified() => {}
                _ = tokio::time::sleep(SAFETY_POLL) => {}
            }
        }
    }
    broker_ready.store(false, Ordering::Relaxed);
    listener.abort();
    tracing::info!("outbox relay stopped");
}

async fn open(conn: &lapin::Connection, topology: &Topology) -> Result<Publisher, lapin::Error> {
    topology.declare(conn).await?;
    Publisher::open(conn).await
}

async fn sleep_or_cancel(d: Duration, shutdown: &CancellationToken) {
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = tokio::time::sleep(d) => {}
    }
}

/// Publishes batches until the outbox is empty.
async fn drain(pool: &Pool, publisher: &Publisher) -> Result<(), RelayError> {
    loop {
        let mut conn = pool.get().await.map_err(StoreError::from)?;
        let tx = conn.transaction().await?;
        let rows = outbox::lock_batch(&tx, BATCH).await?;
        if rows.is_empty() {
            tx.commit().await?;
            return Ok(());
        }
        let messages: Vec<OutgoingMessage> = rows
            .iter()
            .map(|r| OutgoingMessage {
                exchange: r.exchange.clone(),
                routing_key: r.routing_key.clone(),
                message_id: r.message_id.to_string(),
                message_type: r.message_type.clone(),
                checkout_id: r.checkout_id.to_string(),
                body: r.body.clone(),
                death_reason: None,
            })
            .collect();
        publisher.publish_all(&messages).await?;
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        outbox::delete(&tx, &ids).await?;
        tx.commit().await?;
        tracing::debug!(count = ids.len(), "relayed outbox messages");
        if (rows.len() as i64) < BATCH {
            return Ok(());
        }
    }
}

/// Keeps a `LISTEN` connection open and turns notifications into wake-ups. After every
/// (re)connect it wakes the relay once, for anything committed while it was not listening.
async fn listen(database_url: String, wake: Arc<Notify>, shutdown: CancellationToken) {
    let mut backoff = Backoff::reconnect();
    while !shutdown.is_cancelled() {
        match tokio_postgres::connect(&database_url, tokio_postgres::NoTls).await {
            Ok((client, mut connection)) => {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                let mut messages = stream::poll_fn(move |cx| connection.poll_message(cx));
                let driver = tokio::spawn(async move {
                    while let Some(m) = messages.next().await {
                        match m {
                            Ok(AsyncMessage::Notification(_)) => {
                                let _ = tx.send(());
                            }
                            Ok(_) => {}
                            Err(_) => break,
                        }
                    }
                });
                let listening = client
                    .batch_execute(&format!("LISTEN {}", outbox::CHANNEL))
                    .await;
                if listening.is_ok() {
                    backoff = Backoff::reconnect();
                    wake.notify_one();
                    loop {
                        tokio::select! {
                            _ = shutdown.cancelled() => break,
                            got = rx.recv() => match got {
                                Some(()) => wake.notify_one(),
                                None => break,
                            }
                        }
                    }
                }
                driver.abort();
            }
            Err(e) => {
                tracing::debug!(error = %e, "outbox listener cannot connect; the relay polls meanwhile");
            }
        }
        sleep_or_cancel(backoff.next_delay(), &shutdown).await;
    }
}
