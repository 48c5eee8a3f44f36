//! The transactional outbox.
//!
//! A service that changes state and must announce it writes the message into `outbox` in the
//! same transaction, and `NOTIFY`s [`CHANNEL`]; PostgreSQL delivers the notification only on
//! commit, which wakes the relay at once. The relay publishes with publisher confirms and
//! deletes a row only after the broker confirmed it, so a crash between the two publishes the
//! message again (consumers de-duplicate), and nothing is lost.
//!
//! The hot path writes its rows with [`enqueue_handed`] instead: due for the relay only after
//! [`PUBLISH_GRACE`], and without a wake-up, because the writer hands the row to its own relay
//! straight after commit (`icon_outbox::Outbox::publish`). The grace is the safety net: if the
//! writer dies before publishing, any relay publishes the row once it ran out.

use crate::{GenericClient, StoreError};
use icon_contracts::{Envelope, Message};
use std::time::Duration;
use uuid::Uuid;

/// The LISTEN/NOTIFY channel that wakes outbox relays.
pub const CHANNEL: &str = "icon_outbox";

/// How long a row written by [`enqueue_handed`] is left to its writer before any relay may
/// publish it: far longer than a publish with confirm takes, so the safety net does not publish
/// a second copy on the happy path, short enough that a crash delays the message only a little.
pub const PUBLISH_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub id: i64,
    pub exchange: String,
    pub routing_key: String,
    pub message_id: Uuid,
    pub message_type: String,
    pub checkout_id: Uuid,
    pub body: Vec<u8>,
    /// The W3C trace context the message carries on (the `traceparent` AMQP header).
    pub traceparent: Option<String>,
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
                   (exchange, routing_key, message_id, message_type, checkout_id, body,
                    traceparent)
                 VALUES ($1, $2, $3, $4, $5, $6, $8)
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
            &icon_runtime::trace::outgoing_header(),
        ],
    )
    .await?;
    Ok(())
}

/// Writes `message` inside the caller's transaction for the writer to publish itself once the
/// transaction committed (see the module docs); returns the row to hand over.
pub async fn enqueue_handed<T: Message>(
    tx: &impl GenericClient,
    exchange: &str,
    routing_key: &str,
    message: &Envelope<T>,
) -> Result<OutboxRow, StoreError> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO outbox
               (exchange, routing_key, message_id, message_type, checkout_id, body, publish_after,
                traceparent)
             VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7), $8)
             RETURNING id",
        )
        .await?;
    let mut row = OutboxRow::new(exchange, routing_key, message);
    row.id = tx
        .query_one(
            &stmt,
            &[
                &row.exchange,
                &row.routing_key,
                &row.message_id,
                &row.message_type,
                &row.checkout_id,
                &row.body,
                &PUBLISH_GRACE.as_secs_f64(),
                &row.traceparent,
            ],
        )
        .await?
        .get(0);
    Ok(row)
}

impl OutboxRow {
    /// The row `message` becomes, before it has an id. It carries on the trace of the work in
    /// progress (`icon_runtime::trace`), if any.
    pub fn new<T: Message>(exchange: &str, routing_key: &str, message: &Envelope<T>) -> Self {
        Self {
            id: 0,
            exchange: exchange.to_owned(),
            routing_key: routing_key.to_owned(),
            message_id: message.message_id,
            message_type: message.kind.clone(),
            checkout_id: message.checkout_id.as_uuid(),
            body: message.to_json(),
            traceparent: icon_runtime::trace::outgoing_header(),
        }
    }
}

/// The oldest messages due for the relay, locked for this transaction; rows another relay holds are
/// skipped, so several relays (gateway replicas) share the work without publishing twice.
pub async fn lock_batch(tx: &impl GenericClient, limit: i64) -> Result<Vec<OutboxRow>, StoreError> {
    let stmt = tx
        .prepare_cached(
            "SELECT id, exchange, routing_key, message_id, message_type, checkout_id, body,
                    traceparent
             FROM outbox WHERE publish_after <= now()
             ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
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
            traceparent: r.get(7),
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

/// The longest a row set aside as unroutable waits before it is tried again: the wait doubles
/// from one second up to this, so a queue that is back is used within it.
pub const UNROUTABLE_RETRY_MAX: Duration = Duration::from_secs(30);

/// Sets rows RabbitMQ could not route aside (see migration 0010): marks them, and makes them
/// due again after a wait that doubles with the time they have been unroutable (1 s, then up
/// to [`UNROUTABLE_RETRY_MAX`]). Returns the ids set aside for the first time, for the caller to
/// log once.
pub async fn set_aside_unroutable(
    db: &impl GenericClient,
    ids: &[i64],
) -> Result<Vec<i64>, StoreError> {
    let stmt = db
        .prepare_cached(
            "UPDATE outbox SET
                 unroutable_since = COALESCE(unroutable_since, now()),
                 publish_after = now() + LEAST(
                     GREATEST(now() - COALESCE(unroutable_since, now()), interval '1 second'),
                     make_interval(secs => $2))
             WHERE id = ANY($1)
             RETURNING id, unroutable_since = now()",
        )
        .await?;
    Ok(db
        .query(&stmt, &[&ids, &UNROUTABLE_RETRY_MAX.as_secs_f64()])
        .await?
        .iter()
        .filter(|r| r.get::<_, bool>(1))
        .map(|r| r.get(0))
        .collect())
}

/// How many messages wait to be published: the relay's backlog, for readiness and benchmarks.
pub async fn pending(db: &impl GenericClient) -> Result<i64, StoreError> {
    let stmt = db.prepare_cached("SELECT count(*) FROM outbox").await?;
    Ok(db.query_one(&stmt, &[]).await?.get(0))
}
