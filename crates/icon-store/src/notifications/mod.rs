//! Notifications (a checkout's callback, its e-mail, and one push per device) and their attempts.
//!
//! The attempt counter is the notifier's concurrency control. An attempt is claimed in the
//! database before the call goes out ([`claim_attempt`]): the counter moves on only if it still
//! has the value the message expected, so of two copies of one message (a redelivery and a
//! sweeper copy, a duplicate publish) exactly one calls the receiver and schedules the next
//! retry. A claim holds a lease: a copy arriving while the attempt runs is deferred to the end of
//! the lease, and if the claimer crashed, the first copy after the lease takes the attempt over
//! (same attempt number); the crashed claimer's late write is refused.
//!
//! Here: the rows and their life (created with the checkout, listed, ended untried, redelivered,
//! swept);
//! `attempts.rs`: claiming and recording attempts, and listing them.

mod attempts;

pub use attempts::*;

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
    /// The checkout event this notification announces: 1 is the checkout's end, 2 and on the
    /// changes of its orders after it (issue 17 §3). A receiver gets event n+1 only once event
    /// n was delivered to it or given up.
    pub sequence: i32,
    /// The last change of state, schedule or claim: which of several rows spoke last.
    pub updated_at: DateTime<Utc>,
}

pub(crate) fn from_row(r: &tokio_postgres::Row) -> Result<Notification, StoreError> {
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
        sequence: r.get("sequence"),
        updated_at: r.get("updated_at"),
    })
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

/// How a notification ends when it is taken up and no attempt may be made: the notifier has no
/// credentials for its channel, or its give-up deadline passed before this take-up.
#[derive(Debug, Clone, Copy)]
pub enum Untried<'a> {
    /// `not_configured`, with why in `last_error`; not parked: the channel is off for every
    /// notification alike, and a redelivery sends it once the channel is configured.
    NotConfigured(&'a str),
    /// `failed` and parked (listed in `parked_notifications`, the parked gauge), with the reason
    /// in `last_error`.
    GivenUp(&'a str),
}

/// Ends `id` at take-up without an attempt ([`Untried`]), whatever its attempt count, if the
/// copy taking it up could have claimed the attempt after `after_attempt` ([`claim_attempt`]'s
/// condition: the counter still at `after_attempt` with no live claim, or one further with a
/// claim whose lease ran out); so a stale copy, or one racing an attempt in flight, changes
/// nothing. Returns whether it ended here.
#[tracing::instrument(name = "store.end_untried", skip_all, fields(notification = %id, after_attempt))]
pub async fn end_untried(
    db: &impl GenericClient,
    id: NotificationId,
    after_attempt: i32,
    end: Untried<'_>,
) -> Result<bool, StoreError> {
    let (state, why, parked) = match end {
        Untried::NotConfigured(why) => (NotificationState::NotConfigured, why, false),
        Untried::GivenUp(why) => (NotificationState::Failed, why, true),
    };
    let stmt = db
        .prepare_cached(
            "WITH ended AS (
                 UPDATE notifications
                 SET state = $3, last_error = $4, next_attempt_at = NULL, claim = NULL,
                     claimed_until = NULL, updated_at = now()
                 WHERE id = $1 AND state IN ('pending', 'retrying')
                   AND ((attempts = $2 AND (claimed_until IS NULL OR claimed_until < now()))
                        OR (attempts = $2 + 1 AND claimed_until < now()))
                 RETURNING id, channel
             ), parked AS (
                 INSERT INTO parked_notifications (notification_id, channel)
                 SELECT id, channel FROM ended WHERE $5
                 ON CONFLICT DO NOTHING
             )
             SELECT id FROM ended",
        )
        .await?;
    let rows = db
        .query(
            &stmt,
            &[
                &id.as_uuid(),
                &after_attempt,
                &state.as_str(),
                &why,
                &parked,
            ],
        )
        .await?;
    Ok(rows.len() == 1)
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

/// The notification of the event before `n`'s at the same receiver (channel and target), if
/// `n` announces a later event and the receiver had one: `n` waits until it is final (in order
/// per checkout, issue 17 §3). One probe of the unique index.
pub async fn predecessor(
    db: &impl GenericClient,
    n: &Notification,
) -> Result<Option<Notification>, StoreError> {
    if n.sequence <= 1 {
        return Ok(None);
    }
    let stmt = db
        .prepare_cached(
            "SELECT * FROM notifications
             WHERE checkout_id = $1 AND channel = $2 AND md5(target) = md5($3) AND sequence < $4
             ORDER BY sequence DESC LIMIT 1",
        )
        .await?;
    db.query_opt(
        &stmt,
        &[&n.checkout_id.as_uuid(), &n.channel, &n.target, &n.sequence],
    )
    .await?
    .map(|r| from_row(&r))
    .transpose()
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
/// their attempt count so new attempts are listed after the old ones, takes them off
/// `parked_notifications` (the parked gauge), and writes the due messages to the outbox in the
/// same transaction.
#[tracing::instrument(name = "store.redeliver", skip_all, fields(checkout_id = %checkout))]
pub async fn redeliver(
    conn: &mut Conn,
    checkout: CheckoutId,
    channel: &str,
) -> Result<Redeliver, StoreError> {
    let tx = conn.transaction().await?;
    let stmt = tx
        .prepare_cached(
            "WITH queued AS (
                 UPDATE notifications
                 SET state = 'pending', first_attempt_at = NULL, next_attempt_at = now(),
                     updated_at = now()
                 WHERE checkout_id = $1 AND channel = $2
                   AND state IN ('failed', 'not_configured')
                 RETURNING *
             ), unparked AS (
                 DELETE FROM parked_notifications p USING queued q
                 WHERE p.notification_id = q.id
             )
             SELECT * FROM queued",
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
/// or dead-lettered): open, their checkout final (or ended once and reopened by a
/// cancellation: its earlier events are still due), no attempt in flight, nothing for their
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
               AND (c.status IN ('completed', 'partially_completed', 'failed', 'cancelled',
                                 'partially_cancelled')
                    OR c.ended_at IS NOT NULL)
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
