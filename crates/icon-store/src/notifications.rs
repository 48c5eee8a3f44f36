//! Notifications (one per channel of a checkout) and their attempts.
//!
//! The attempt counter is the notifier's concurrency control: an attempt is recorded only if
//! the counter still has the value the notifier saw before sending, so two copies of one due
//! message (after a crash and redelivery) can both send, but only one moves the schedule on.

use crate::{error::corrupt, outbox, Conn, GenericClient, StoreError};
use chrono::{DateTime, Utc};
use icon_contracts::{topology, Envelope, NotificationDue};
use icon_domain::{CheckoutId, NotificationId, NotificationState};

#[derive(Debug, Clone)]
pub struct Notification {
    pub id: NotificationId,
    pub checkout_id: CheckoutId,
    pub channel: String,
    pub target: String,
    pub state: NotificationState,
    pub attempts: i32,
    pub first_attempt_at: Option<DateTime<Utc>>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_response_status: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct Attempt {
    pub attempt: i32,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i32,
    pub response_status: Option<i32>,
    pub error: Option<String>,
}

/// What one attempt did and what comes next.
#[derive(Debug, Clone)]
pub struct RecordAttempt {
    pub id: NotificationId,
    /// The attempt counter seen before sending.
    pub after_attempt: i32,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i32,
    pub response_status: Option<i32>,
    pub error: Option<String>,
    pub new_state: NotificationState,
    pub next_attempt_at: Option<DateTime<Utc>>,
}

fn from_row(r: &tokio_postgres::Row) -> Result<Notification, StoreError> {
    Ok(Notification {
        id: NotificationId::from_uuid(r.get("id")),
        checkout_id: CheckoutId::from_uuid(r.get("checkout_id")),
        channel: r.get("channel"),
        target: r.get("target"),
        state: NotificationState::parse(r.get("state")).map_err(corrupt)?,
        attempts: r.get("attempts"),
        first_attempt_at: r.get("first_attempt_at"),
        last_attempt_at: r.get("last_attempt_at"),
        next_attempt_at: r.get("next_attempt_at"),
        last_response_status: r.get("last_response_status"),
        last_error: r.get("last_error"),
        created_at: r.get("created_at"),
    })
}

pub async fn create(
    tx: &impl GenericClient,
    id: NotificationId,
    checkout: CheckoutId,
    channel: &str,
    target: &str,
) -> Result<Notification, StoreError> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO notifications (id, checkout_id, channel, target, state)
             VALUES ($1, $2, $3, $4, 'pending') RETURNING *",
        )
        .await?;
    from_row(
        &tx.query_one(
            &stmt,
            &[&id.as_uuid(), &checkout.as_uuid(), &channel, &target],
        )
        .await?,
    )
}

pub async fn for_checkout(
    db: &impl GenericClient,
    checkout: CheckoutId,
    channel: &str,
) -> Result<Option<Notification>, StoreError> {
    let stmt = db
        .prepare_cached("SELECT * FROM notifications WHERE checkout_id = $1 AND channel = $2")
        .await?;
    db.query_opt(&stmt, &[&checkout.as_uuid(), &channel])
        .await?
        .map(|r| from_row(&r))
        .transpose()
}

/// Every notification of a checkout, whatever the channel.
pub async fn all_for_checkout(
    db: &impl GenericClient,
    checkout: CheckoutId,
) -> Result<Vec<Notification>, StoreError> {
    let stmt = db
        .prepare_cached("SELECT * FROM notifications WHERE checkout_id = $1 ORDER BY channel")
        .await?;
    db.query(&stmt, &[&checkout.as_uuid()])
        .await?
        .iter()
        .map(from_row)
        .collect()
}

pub async fn get(
    db: &impl GenericClient,
    id: NotificationId,
) -> Result<Option<Notification>, StoreError> {
    let stmt = db
        .prepare_cached("SELECT * FROM notifications WHERE id = $1")
        .await?;
    db.query_opt(&stmt, &[&id.as_uuid()])
        .await?
        .map(|r| from_row(&r))
        .transpose()
}

/// Records an attempt if nobody recorded one since `after_attempt`; returns whether it did.
#[tracing::instrument(name = "store.record_attempt", skip_all, fields(notification = %a.id, attempt = a.after_attempt + 1))]
pub async fn record_attempt(conn: &mut Conn, a: &RecordAttempt) -> Result<bool, StoreError> {
    let tx = conn.transaction().await?;
    let stmt = tx
        .prepare_cached(
            "UPDATE notifications
             SET attempts = attempts + 1, state = $3,
                 first_attempt_at = coalesce(first_attempt_at, $4), last_attempt_at = $4,
                 next_attempt_at = $5, last_response_status = $6, last_error = $7,
                 updated_at = now()
             WHERE id = $1 AND attempts = $2",
        )
        .await?;
    let updated = tx
        .execute(
            &stmt,
            &[
                &a.id.as_uuid(),
                &a.after_attempt,
                &a.new_state.as_str(),
                &a.started_at,
                &a.next_attempt_at,
                &a.response_status,
                &a.error,
            ],
        )
        .await?;
    if updated == 0 {
        return Ok(false);
    }
    let stmt = tx
        .prepare_cached(
            "INSERT INTO notification_attempts
               (notification_id, attempt, started_at, duration_ms, response_status, error)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .await?;
    tx.execute(
        &stmt,
        &[
            &a.id.as_uuid(),
            &(a.after_attempt + 1),
            &a.started_at,
            &a.duration_ms,
            &a.response_status,
            &a.error,
        ],
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// Marks a notification failed without an attempt (e.g. its target is now refused by policy).
pub async fn give_up(
    db: &impl GenericClient,
    id: NotificationId,
    reason: &str,
) -> Result<(), StoreError> {
    let stmt = db
        .prepare_cached(
            "UPDATE notifications SET state = 'failed', next_attempt_at = NULL, last_error = $2,
                    updated_at = now()
             WHERE id = $1 AND state IN ('pending', 'retrying')",
        )
        .await?;
    db.execute(&stmt, &[&id.as_uuid(), &reason]).await?;
    Ok(())
}

pub async fn attempts(
    db: &impl GenericClient,
    id: NotificationId,
) -> Result<Vec<Attempt>, StoreError> {
    let stmt = db
        .prepare_cached(
            "SELECT attempt, started_at, duration_ms, response_status, error
             FROM notification_attempts WHERE notification_id = $1 ORDER BY id",
        )
        .await?;
    Ok(db
        .query(&stmt, &[&id.as_uuid()])
        .await?
        .iter()
        .map(|r| Attempt {
            attempt: r.get(0),
            started_at: r.get(1),
            duration_ms: r.get(2),
            response_status: r.get(3),
            error: r.get(4),
        })
        .collect())
}

#[derive(Debug)]
pub enum Redeliver {
    /// Reset and queued again: this is the notification as it is now.
    Queued(Notification),
    /// The checkout has no notification on that channel.
    NotFound,
    /// Only a `failed` notification can be redelivered; this one is in that state.
    NotFailed(NotificationState),
}

/// Re-queues a given-up notification: resets its schedule (the give-up deadline counts again
/// from its next attempt), keeps its attempt count so new attempts are listed after the old
/// ones, and writes the due message to the outbox in the same transaction.
#[tracing::instrument(name = "store.redeliver", skip_all, fields(checkout_id = %checkout))]
pub async fn redeliver(
    conn: &mut Conn,
    checkout: CheckoutId,
    channel: &str,
) -> Result<Redeliver, StoreError> {
    let tx = conn.transaction().await?;
    let stmt = tx
        .prepare_cached(
            "UPDATE notifications
             SET state = 'pending', first_attempt_at = NULL, next_attempt_at = now(),
                 updated_at = now()
             WHERE checkout_id = $1 AND channel = $2 AND state = 'failed'
             RETURNING *",
        )
        .await?;
    let Some(row) = tx
        .query_opt(&stmt, &[&checkout.as_uuid(), &channel])
        .await?
    else {
        return Ok(match for_checkout(&tx, checkout, channel).await? {
            Some(n) => Redeliver::NotFailed(n.state),
            None => Redeliver::NotFound,
        });
    };
    let n = from_row(&row)?;
    enqueue_due(&tx, &n).await?;
    tx.commit().await?;
    Ok(Redeliver::Queued(n))
}

/// Writes a due message for `n`'s next attempt to the outbox, straight into the notifier's
/// work queue.
async fn enqueue_due(tx: &impl GenericClient, n: &Notification) -> Result<(), StoreError> {
    let due = Envelope::new(NotificationDue {
        checkout_id: n.checkout_id,
        notification_id: n.id,
        after_attempt: n.attempts,
        not_before: Utc::now(),
    });
    outbox::enqueue(tx, "", topology::CHECKOUT_FINISHED, &due).await
}

/// Notifications that should have been attempted long ago but were not (their message was lost
/// or dead-lettered): open, their checkout final, and nothing due since `older_than`. Each gets
/// a fresh due message through the outbox; the attempt counter makes any duplicate harmless.
pub async fn requeue_stuck(
    conn: &mut Conn,
    older_than: std::time::Duration,
) -> Result<usize, StoreError> {
    let tx = conn.transaction().await?;
    let stmt = tx
        .prepare_cached(
            "SELECT n.* FROM notifications n JOIN checkouts c ON c.id = n.checkout_id
             WHERE n.state IN ('pending', 'retrying')
               AND c.status IN ('completed', 'partially_completed', 'failed')
               AND coalesce(n.next_attempt_at, n.updated_at) < now() - make_interval(secs => $1)
             ORDER BY n.updated_at LIMIT 100
             FOR UPDATE OF n SKIP LOCKED",
        )
        .await?;
    let rows = tx.query(&stmt, &[&older_than.as_secs_f64()]).await?;
    let touch = tx
        .prepare_cached(
            "UPDATE notifications SET next_attempt_at = now(), updated_at = now() WHERE id = $1",
        )
        .await?;
    for row in &rows {
        let n = from_row(row)?;
        tracing::warn!(checkout_id = %n.checkout_id, notification = %n.id, "notification was stuck; queued again");
        enqueue_due(&tx, &n).await?;
        tx.execute(&touch, &[&n.id.as_uuid()]).await?;
    }
    tx.commit().await?;
    Ok(rows.len())
}
