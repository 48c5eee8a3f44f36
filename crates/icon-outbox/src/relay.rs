//! The relay's task: one broker channel with confirms, fed by rows handed over straight after
//! commit and by the safety net's drain of the table, and the batched clean-up of confirmed rows.

use crate::link::Link;
use crate::{listen, RelaySettings, BATCH, CLEANUP_EVERY, SAFETY_POLL};
use deadpool_postgres::Pool;
use icon_broker::{connect, QueueType, Topology};
use icon_runtime::Backoff;
use icon_store::outbox::{self, OutboxRow};
use icon_store::StoreError;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Database(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Publish(#[from] icon_broker::PublishError),
}

/// What the relay holds between wake-ups.
#[derive(Default)]
struct Work {
    /// Rows handed over and not yet confirmed by the broker.
    handed: Vec<OutboxRow>,
    /// Ids of rows the broker confirmed, to delete in the next batch.
    confirmed: Vec<i64>,
    /// The table should be drained (a wake-up, the safety poll, a reconnect).
    drain_due: bool,
}

pub(crate) async fn run(
    pool: Pool,
    settings: RelaySettings,
    queue_type: QueueType,
    mut handed: mpsc::Receiver<OutboxRow>,
    broker_ready: Arc<AtomicBool>,
    shutdown: CancellationToken,
) {
    let wake = Arc::new(Notify::new());
    let listener = tokio::spawn(listen::listen(
        settings.database_url.clone(),
        wake.clone(),
        shutdown.clone(),
    ));
    // The relay may publish any outbox row, so it declares every queue a row can be routed to.
    let topology = Topology::new()
        .queue_type(queue_type)
        .work_queue(icon_contracts::topology::CHECKOUT_REQUESTED)
        .work_queue(icon_contracts::topology::CHECKOUT_FINISHED);

    let mut work = Work::default();
    let mut handed_open = true;
    let mut backoff = Backoff::reconnect();
    'connection: while !shutdown.is_cancelled() {
        let Some(conn) = connect(&settings.amqp_url, &settings.name, &shutdown).await else {
            break;
        };
        let mut link = match Link::open(conn, &topology, queue_type).await {
            Ok(link) => link,
            Err((conn, e)) => {
                tracing::warn!(error = %e, "outbox relay could not open its channel");
                let _ = conn.close(200, "retry".into()).await;
                sleep_or_cancel(backoff.next_delay(), &shutdown).await;
                continue;
            }
        };
        broker_ready.store(true, Ordering::Relaxed);
        work.drain_due = true;
        let mut poll = tokio::time::interval(SAFETY_POLL);
        let mut cleanup = tokio::time::interval(CLEANUP_EVERY);
        cleanup.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            match step(&pool, &mut link, &mut work).await {
                Ok(()) => backoff = Backoff::reconnect(),
                // The broker is there and refused a message (a quorum queue still electing
                // its leader just after it was declared, say): the rows are kept and sent again
                // after a wait on the same channel, and the broker is not reported down.
                Err(RelayError::Publish(e @ icon_broker::PublishError::Nacked(_))) => {
                    tracing::warn!(error = %e, "RabbitMQ refused a message; publishing it again after a wait");
                    sleep_or_cancel(backoff.next_delay(), &shutdown).await;
                }
                Err(RelayError::Publish(e)) => {
                    tracing::warn!(error = %e, "outbox relay lost RabbitMQ; reconnecting");
                    broker_ready.store(false, Ordering::Relaxed);
                    let _ = link.conn.close(200, "reconnect".into()).await;
                    sleep_or_cancel(backoff.next_delay(), &shutdown).await;
                    continue 'connection;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "outbox relay cannot read the outbox; retrying");
                    work.drain_due = true;
                    sleep_or_cancel(backoff.next_delay(), &shutdown).await;
                }
            }
            if !link.publisher.is_connected() {
                broker_ready.store(false, Ordering::Relaxed);
                continue 'connection;
            }
            // In this order: under a steady stream of handed-over rows the rarer wake-ups, polls
            // and clean-ups must still get their turn.
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    // Publish what was handed over, then delete what was confirmed.
                    handed.close();
                    while let Ok(row) = handed.try_recv() {
                        work.handed.push(row);
                    }
                    if let Err(e) = publish_handed(&pool, &mut link, &mut work).await {
                        tracing::warn!(error = %e, "outbox relay could not publish before stopping; the safety net will");
                    }
                    break 'connection;
                }
                _ = wake.notified() => work.drain_due = true,
                _ = poll.tick() => work.drain_due = true,
                _ = cleanup.tick() => delete_confirmed(&pool, &mut work).await,
                row = handed.recv(), if handed_open => match row {
                    Some(row) => {
                        work.handed.push(row);
                        while work.handed.len() < BATCH {
                            let Ok(row) = handed.try_recv() else { break };
                            work.handed.push(row);
                        }
                    }
                    None => handed_open = false,
                },
            }
        }
    }
    delete_confirmed(&pool, &mut work).await;
    broker_ready.store(false, Ordering::Relaxed);
    listener.abort();
    tracing::info!("outbox relay stopped");
}

async fn sleep_or_cancel(d: Duration, shutdown: &CancellationToken) {
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = tokio::time::sleep(d) => {}
    }
}

/// Publishes what was handed over, drains the table if due, and deletes a full batch of
/// confirmed rows.
async fn step(pool: &Pool, link: &mut Link, work: &mut Work) -> Result<(), RelayError> {
    publish_handed(pool, link, work).await?;
    if work.drain_due {
        drain(pool, link, work).await?;
        work.drain_due = false;
    }
    if work.confirmed.len() >= BATCH {
        delete_confirmed(pool, work).await;
    }
    Ok(())
}

/// Publishes the handed-over rows with pipelined confirms; kept for the next connection if the
/// broker fails them. Rows no queue takes are set aside in the table and dropped from memory
/// (if setting them aside fails, their grace runs out and the safety net meets them again).
async fn publish_handed(pool: &Pool, link: &mut Link, work: &mut Work) -> Result<(), RelayError> {
    if work.handed.is_empty() {
        return Ok(());
    }
    let unroutable = link.publish(&work.handed).await?;
    let rows = std::mem::take(&mut work.handed);
    if !unroutable.is_empty() {
        let set_aside = match pool.get().await {
            Ok(db) => set_aside(&db, &rows, &unroutable).await,
            Err(e) => Err(StoreError::from(e)),
        };
        if let Err(e) = set_aside {
            tracing::warn!(error = %e, "cannot set unroutable outbox rows aside yet; the safety net retries them");
        }
    }
    work.confirmed.extend(
        rows.iter()
            .map(|r| r.id)
            .filter(|id| !unroutable.contains(id)),
    );
    Ok(())
}

/// Marks `unroutable` of `rows` as set aside and logs each the first time, with where it was
/// going: an operator sees at once which queue is missing.
async fn set_aside(
    db: &impl icon_store::GenericClient,
    rows: &[OutboxRow],
    unroutable: &[i64],
) -> Result<(), StoreError> {
    let first = outbox::set_aside_unroutable(db, unroutable).await?;
    for row in rows.iter().filter(|r| unroutable.contains(&r.id)) {
        if first.contains(&row.id) {
            tracing::warn!(
                exchange = %row.exchange,
                routing_key = %row.routing_key,
                message_id = %row.message_id,
                checkout_id = %row.checkout_id,
                "outbox message could not be routed to any queue, even after declaring the topology \
                 again; it is kept and retried with backoff (icon_outbox_unroutable counts it). \
                 Declare the missing queue, or restart the service that declares it"
            );
        } else {
            tracing::debug!(routing_key = %row.routing_key, message_id = %row.message_id, "outbox message still unroutable");
        }
    }
    Ok(())
}

/// Deletes the confirmed rows in one statement. On failure they are kept for the next try (if
/// this process dies first, their grace runs out and a relay publishes them once more, which
/// consumers shrug off).
async fn delete_confirmed(pool: &Pool, work: &mut Work) {
    if work.confirmed.is_empty() {
        return;
    }
    let deleted = match pool.get().await {
        Ok(db) => outbox::delete(&db, &work.confirmed)
            .await
            .map_err(|e| icon_store::pool::source_chain(&e)),
        Err(e) => Err(icon_store::pool::source_chain(&e)),
    };
    match deleted {
        Ok(()) => {
            tracing::debug!(
                count = work.confirmed.len(),
                "deleted published outbox rows"
            );
            work.confirmed.clear();
        }
        Err(error) => tracing::warn!(%error, "cannot delete published outbox rows yet; retrying"),
    }
}

/// The safety net: publishes the rows due for the relay, batch by batch, until none is left.
/// A row set aside as unroutable is due again only after its backoff, so it cannot hold the
/// loop.
async fn drain(pool: &Pool, link: &mut Link, work: &mut Work) -> Result<(), RelayError> {
    loop {
        let mut conn = pool.get().await.map_err(StoreError::from)?;
        let tx = conn.transaction().await?;
        let rows = outbox::lock_batch(&tx, BATCH as i64).await?;
        if rows.is_empty() {
            tx.commit().await?;
            return Ok(());
        }
        let unroutable = link.publish(&rows).await?;
        if !unroutable.is_empty() {
            set_aside(&tx, &rows, &unroutable).await?;
        }
        let ids: Vec<i64> = rows
            .iter()
            .map(|r| r.id)
            .filter(|id| !unroutable.contains(id))
            .collect();
        outbox::delete(&tx, &ids).await?;
        tx.commit().await?;
        // A row of ours whose grace ran out while the broker was away went out just now (or
        // was set aside).
        work.handed
            .retain(|r| !ids.contains(&r.id) && !unroutable.contains(&r.id));
        tracing::debug!(count = ids.len(), "relayed outbox messages");
        if rows.len() < BATCH {
            return Ok(());
        }
    }
}
