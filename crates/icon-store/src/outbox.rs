//! The transactional outbox.
//!
//! A service that changes state and must announce it writes the message into `outbox` in the
//! same transaction, and `NOTIFY`s [`CHANNEL`]; PostgreSQL delivers the notification only on
//! commit, which wakes the relay at once. The relay publishes with publisher confirms and
//! deletes a row only after the broker confirmed it, so a crash between the two publishes the
//! message again (consumers de-duplicate), and nothing is lost.

use crate::{GenericClient, StoreError};
use icon_contracts::{Envelope, Message};
use uuid::Uuid;

/// The LISTEN/NOTIFY channel that wakes outbox relays.
pub const CHANNEL: &str = "icon_outbox";

#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub id: i64,
    pub exchange: String,
    pub routing_key: String,
    pub message_id: Uuid,
    pub message_type: String,
    pub checkout_id: Uuid,
    pub body: Vec<u8>,
}

/// Writes `message` for publishing to `exchange` with `routing_key`, inside the caller's
/// transaction, and wakes the relays when that transaction commits.
pub async fn enqueue<T: Message>(
    tx: &impl GenericClient,
    exchange: &str,
    routing_key: &str,
    message: &Envelope<T>,
) -> Result<(), StoreError> {
    // One statement (one round trip): the row, and the wake-up delivered on commit.
    let stmt = tx
        .prepare_cached(
            "WITH queued AS (
                 INSERT INTO outbox
                   (exchange, routing_key, message_id, message_type, checkout_id, body)
                 VALUES ($1, $2, $3, $4, $5, $6)
             )
             SELECT pg_notify($7, '')",
        )
        .await?;
    tx.execute(
        &stmt,
        &[
            &exchange,
            &routing_key,
            &message.message_id,
            &message.kind,
            &message.checkout_id.as_uuid(),
            &message.to_json(),
            &CHANNEL,
        ],
    )
    .await?;
    Ok(())
}

/// The oldest pending messages, locked for this transaction; rows another relay holds are
/// skipped, so several relays (gateway replicas) share the work without publishing twice.
pub async fn lock_batch(tx: &impl GenericClient, limit: i64) -> Result<Vec<OutboxRow>, StoreError> {
    let stmt = tx
        .prepare_cached(
            "SELECT id, exchange, routing_key, message_id, message_type, checkout_id, body
             FROM outbox ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
        )
        .await?;
    Ok(tx
        .query(&stmt, &[&limit])
        .await?
        .iter()
        .map(|r| OutboxRow {
            id: r.get(0),
            exchange: r.get(1),
            routing_key: r.get(2),
            message_id: r.get(3),
            message_type: r.get(4),
            checkout_id: r.get(5),
            body: r.get(6),
        })
        .collect())
}

pub async fn delete(tx: &impl GenericClient, ids: &[i64]) -> Result<(), StoreError> {
    let stmt = tx
        .prepare_cached("DELETE FROM outbox WHERE id = ANY($1)")
        .await?;
    tx.execute(&stmt, &[&ids]).await?;
    Ok(())
}

/// How many messages wait to be published: the relay's backlog, for readiness and benchmarks.
pub async fn pending(db: &impl GenericClient) -> Result<i64, StoreError> {
    let stmt = db.prepare_cached("SELECT count(*) FROM outbox").await?;
    Ok(db.query_one(&stmt, &[]).await?.get(0))
}
