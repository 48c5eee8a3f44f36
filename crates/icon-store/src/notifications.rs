//! Notifications (a checkout's callback, its e-mail, and one push per device) and their attempts.
//!
//! The attempt counter is the notifier's concurrency control. An attempt is claimed in the
//! database before the call goes out ([`claim_attempt`]): the counter moves on only if it still
//! has the value the message expected, so of two copies of one message (a redelivery and a
//! sweeper copy, a duplicate publish) exactly one calls the receiver and schedules the next
//! retry. A claim holds a lease: a copy arriving while the attempt runs is deferred to the end of
//! the lease, and if the claimer crashed, the first copy after the lease takes the attempt over
//! (same attempt number); the crashed claimer's late write is refused.

use crate::{error::corrupt, outbox, Conn, GenericClient, StoreError};
use chrono::{DateTime, Utc};
use icon_contracts::{topology, Envelope, NotificationDue};
use icon_domain::{CheckoutId, NotificationId, NotificationState, UserId};
use uuid::Uuid;

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
    /// The last change of state, schedule or claim: which of several rows spoke last.
    pub updated_at: DateTime<Utc>,
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
    /// The claim this attempt was made under.
    pub claim: Uuid,
    /// The attempt's number (the counter after the claim).
    pub attempt: i32,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i32,
    pub response_status: Option<i32>,
    pub error: Option<String>,
    pub new_state: NotificationState,
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// The result of [`claim_attempt`].
#[derive(Debug, Clone)]
pub enum AttemptClaim {
    /// This copy makes the attempt.
    Claimed(Claimed),
    /// Another copy is making this attempt until `until`: look again then.
    Busy { until: DateTime<Utc> },
    /// The attempt before this one is still being recorded: look again shortly.
    Recording,
    /// Delivered, given up, or this copy is stale.
    Nothing,
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
        updated_at: r.get("updated_at"),
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

/// One `push` notification per device `owner` has registered now; none if they have none.
pub async fn create_pushes(
    tx: &impl GenericClient,
    checkout: CheckoutId,
    owner: &UserId,
) -> Result<Vec<Notification>, StoreError> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO notifications (id, checkout_id, channel, target, state)
             SELECT gen_random_uuid(), $1, 'push', token, 'pending'
             FROM devices WHERE owner = $2
             RETURNING *",
        )
        .await?;
    tx.query(&stmt, &[&checkout.as_uuid(), &owner.as_str()])
        .await?
        .iter()
        .map(from_row)
        .collect()
}

/// A checkout's notifications on one channel (one per device for `push`).
pub async fn for_channel(
    db: &impl GenericClient,
    checkout: CheckoutId,
    channel: &str,
) -> Result<Vec<Notification>, StoreError> {
    let stmt = db
        .prepare_cached(
            "SELECT * FROM notifications WHERE checkout_id = $1 AND channel = $2 ORDER BY target",
        )
        .await?;
    db.query(&stmt, &[&checkout.as_uuid(), &channel])
        .await?
        .iter()
        .map(from_row)
        .collect()
}

/// Marks a notification nobody attempted as `not_configured`: this notifier has no credentials
/// for its channel. False if it was no longer pending.
pub async fn set_not_configured(
    db: &impl GenericClient,
    id: NotificationId,
    why: &str,
) -> Result<bool, StoreError> {
    let stmt = db
        .prepare_cached(
            "UPDATE notifications
             SET state = 'not_configured', last_error = $2, next_attempt_at = NULL,
                 updated_at = now()
             WHERE id = $1 AND state = 'pending' AND attempts = 0",
        )
        .await?;
    Ok(db.execute(&stmt, &[&id.as_uuid(), &why]).await? == 1)
}

/// Every notification of a checkout, whatever the channel.
pub async fn all_for_checkout(
    db: &impl GenericClient,
    checkout: CheckoutId,
) -> Result<Vec<Notification>, StoreError> {
    let stmt = db
        .prepare_cached(
            "SELECT * FROM notifications WHERE checkout_id = $1 ORDER BY channel, target",
        )
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

/// A claimed attempt: made under `claim`, numbered `attempt`.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub claim: Uuid,
    pub attempt: i32,
    pub first_attempt_at: DateTime<Utc>,
}

/// Claims, in one statement, the first attempt of every pending notification of `checkout` on
/// one of `channels` (those this notifier delivers), as [`claim_attempt`] with
/// `after_attempt = 0` would one by one (a crashed first attempt whose lease ran out is taken
/// over); and returns every notification of the checkout, with its claim when it got one.
/// Those without are for [`claim_attempt`] to sort out (an attempt in flight elsewhere, a
/// disabled channel, a retry chain that owns it).
#[tracing::instrument(name = "store.claim_first_attempts", skip_all, fields(checkout_id = %checkout))]
pub async fn claim_first_attempts(
    db: &impl GenericClient,
    checkout: CheckoutId,
    channels: &[&str],
    lease: std::time::Duration,
) -> Result<Vec<(Notification, Option<Claimed>)>, StoreError> {
    let stmt = db
        .prepare_cached(
            "WITH claimed AS (
                 UPDATE notifications
                 SET attempts = CASE WHEN attempts = 0 THEN 1 ELSE attempts END,
                     claim = gen_random_uuid(),
                     claimed_until = now() + make_interval(secs => $3),
                     first_attempt_at = coalesce(first_attempt_at, now()), updated_at = now()
                 WHERE checkout_id = $1 AND channel = ANY($2) AND state = 'pending'
                   AND ((attempts = 0 AND (claimed_until IS NULL OR claimed_until < now()))
                        OR (attempts = 1 AND claimed_until < now()))
                 RETURNING *
             )
             SELECT true AS claimed_now, * FROM claimed
             UNION ALL
             SELECT false, n.* FROM notifications n
             WHERE n.checkout_id = $1 AND NOT EXISTS (SELECT 1 FROM claimed c WHERE c.id = n.id)",
        )
        .await?;
    db.query(&stmt, &[&checkout.as_uuid(), &channels, &lease.as_secs_f64()])
        .await?
        .iter()
        .map(|r| {
            let n = from_row(r)?;
            let claimed = if r.get::<_, bool>("claimed_now") {
                Some(Claimed {
                    claim: r.get("claim"),
                    attempt: n.attempts,
                    first_attempt_at: n.first_attempt_at.ok_or_else(|| corrupt("claimed without first_attempt_at"))?,
                })
            } else {
                None
            };
            Ok((n, claimed))
        })
        .collect()
}

/// Claims the attempt after `after_attempt` for `lease`, before anything is sent.
#[tracing::instrument(name = "store.claim_attempt", skip_all, fields(notification = %id, after_attempt))]
pub async fn claim_attempt(
    db: &impl GenericClient,
    id: NotificationId,
    after_attempt: i32,
    lease: std::time::Duration,
) -> Result<AttemptClaim, StoreError> {
    let claim = Uuid::new_v4();
    let stmt = db
        .prepare_cached(
            "UPDATE notifications
             SET attempts = CASE WHEN attempts = $2 THEN attempts + 1 ELSE attempts END,
                 claim = $3, claimed_until = now() + make_interval(secs => $4),
                 first_attempt_at = coalesce(first_attempt_at, now()), updated_at = now()
             WHERE id = $1 AND state IN ('pending', 'retrying')
               AND ((attempts = $2 AND (claimed_until IS NULL OR claimed_until < now()))
                    OR (attempts = $2 + 1 AND claimed_until < now()))
             RETURNING attempts, first_attempt_at",
        )
        .await?;
    let row = db
        .query_opt(
            &stmt,
            &[&id.as_uuid(), &after_attempt, &claim, &lease.as_secs_f64()],
        )
        .await?;
    if let Some(row) = row {
        return Ok(AttemptClaim::Claimed(Claimed {
            claim,
            attempt: row.get(0),
            first_attempt_at: row.get(1),
        }));
    }
    // The attempt this copy would make is held by another. Its lease may have run out between
    // the claim and this read: then this copy comes straight back and takes it over.
    let stmt = db
        .prepare_cached(
            "SELECT attempts, claimed_until FROM notifications
             WHERE id = $1 AND state IN ('pending', 'retrying') AND claimed_until IS NOT NULL",
        )
        .await?;
    Ok(match db.query_opt(&stmt, &[&id.as_uuid()]).await? {
        Some(row) if row.get::<_, i32>(0) == after_attempt + 1 => {
            AttemptClaim::Busy { until: row.get(1) }
        }
        // This copy is the retry of attempt `after_attempt`, which its claimer published before
        // recording the attempt and is recording now (or died doing so: then its lease runs out).
        Some(row) if row.get::<_, i32>(0) == after_attempt => AttemptClaim::Recording,
        _ => AttemptClaim::Nothing,
    })
}

/// Records a claimed attempt and releases the claim; `false` if the claim was lost (its lease
/// ran out and another copy took the attempt over).
#[tracing::instrument(name = "store.record_attempt", skip_all, fields(notification = %a.id, attempt = a.attempt))]
pub async fn record_attempt(
    db: &impl GenericClient,
    a: &RecordAttempt,
) -> Result<bool, StoreError> {
    // One statement: the notification's new state and the attempt's row, or neither.
    let stmt = db
        .prepare_cached(
            "WITH recorded AS (
                 UPDATE notifications
                 SET state = $3, last_attempt_at = $4, next_attempt_at = $5,
                     last_response_status = $6, last_error = $7, claim = NULL,
                     claimed_until = NULL, updated_at = now()
                 WHERE id = $1 AND claim = $2
                 RETURNING id
             )
             INSERT INTO notification_attempts
               (notification_id, attempt, started_at, duration_ms, response_status, error)
             SELECT id, $8, $4, $9, $6, $7 FROM recorded",
        )
        .await?;
    let inserted = db
        .execute(
            &stmt,
            &[
                &a.id.as_uuid(),
                &a.claim,
                &a.new_state.as_str(),
                &a.started_at,
                &a.next_attempt_at,
                &a.response_status,
                &a.error,
                &a.attempt,
                &a.duration_ms,
            ],
        )
        .await?;
    Ok(inserted == 1)
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

/// An attempt of one of a checkout's notifications, with the channel and target it went to.
#[derive(Debug, Clone)]
pub struct CheckoutAttempt {
    pub channel: String,
    pub target: String,
    pub attempt: Attempt,
}

/// Every attempt of every notification of `checkout`, oldest first, in one query (a checkout
/// has one notification per device).
pub async fn attempts_for_checkout(
    db: &impl GenericClient,
    checkout: CheckoutId,
) -> Result<Vec<CheckoutAttempt>, StoreError> {
    let stmt = db
        .prepare_cached(
            "SELECT n.channel, n.target, a.attempt, a.started_at, a.duration_ms,
                    a.response_status, a.error
             FROM notification_attempts a JOIN notifications n ON n.id = a.notification_id
             WHERE n.checkout_id = $1 ORDER BY a.started_at, a.id",
        )
        .await?;
    Ok(db
        .query(&stmt, &[&checkout.as_uuid()])
        .await?
        .iter()
        .map(|r| CheckoutAttempt {
            channel: r.get(0),
            target: r.get(1),
            attempt: Attempt {
                attempt: r.get(2),
                started_at: r.get(3),
                duration_ms: r.get(4),
                response_status: r.get(5),
                error: r.get(6),
            },
        })
        .collect())
}

#[derive(Debug)]
pub enum Redeliver {
    /// Reset and queued again: these are the notifications as they are now (one per device
    /// for `push`).
    Queued(Vec<Notification>),
    /// The checkout has no notification on that channel.
    NotFound,
    /// Only a `failed` or `not_configured` notification can be redelivered; none is (this is
    /// the state of the first).
    NotFailed(NotificationState),
}

/// Re-queues a checkout's given-up notifications on `channel` (for `push`, every failed device):
/// resets their schedule (the give-up deadline counts again from the next attempt), keeps
/// their attempt count so new attempts are listed after the old ones, and writes the due
/// messages to the outbox in the same transaction.
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
             WHERE checkout_id = $1 AND channel = $2 AND state IN ('failed', 'not_configured')
             RETURNING *",
        )
        .await?;
    let rows = tx.query(&stmt, &[&checkout.as_uuid(), &channel]).await?;
    if rows.is_empty() {
        return Ok(match for_channel(&tx, checkout, channel).await?.first() {
            Some(n) => Redeliver::NotFailed(n.state),
            None => Redeliver::NotFound,
        });
    }
    let mut queued = Vec::with_capacity(rows.len());
    for row in &rows {
        let n = from_row(row)?;
        enqueue_due(&tx, &n).await?;
        queued.push(n);
    }
    tx.commit().await?;
    Ok(Redeliver::Queued(queued))
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
/// or dead-lettered): open, their checkout final, no attempt in flight, nothing for their
/// checkout waiting in the outbox, and no progress for `older_than`, counted from the last real
/// progress (the checkout finishing, an attempt, a due retry), never from creation. Each gets
/// one due message through the outbox and counts as due now, so it is queued again at most once
/// per `older_than`; the attempt claim makes a copy that was merely late harmless.
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
               AND (n.claimed_until IS NULL OR n.claimed_until < now())
               AND coalesce(n.next_attempt_at, greatest(n.updated_at, c.updated_at))
                   < now() - make_interval(secs => $1)
               AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.checkout_id = n.checkout_id)
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
        tracing::warn!(checkout_id = %n.checkout_id, notification = %n.id, "notification made no progress; queued again");
        enqueue_due(&tx, &n).await?;
        tx.execute(&touch, &[&n.id.as_uuid()]).await?;
    }
    tx.commit().await?;
    Ok(rows.len())
}
