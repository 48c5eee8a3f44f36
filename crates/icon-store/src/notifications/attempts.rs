//! Attempts: claimed in the database before the call goes out, recorded after it, listed for
//! the resource's `/attempts`.

use super::{from_row, Notification};
use crate::webhook_secrets::{SealedSecrets, CLAIM_COLUMNS, CLAIM_JOIN};
use crate::{error::corrupt, GenericClient, StoreError};
use chrono::{DateTime, Utc};
use icon_domain::{CheckoutId, NotificationId, NotificationState};
use uuid::Uuid;

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
    /// Given up and parked (with `new_state` `failed`): listed in `parked_notifications` for
    /// the parked gauge until redelivered. A push dropped for a dead device is failed but not
    /// parked: nothing to redo.
    pub parked: bool,
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

/// A claimed attempt: made under `claim`, numbered `attempt`.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub claim: Uuid,
    pub attempt: i32,
    pub first_attempt_at: DateTime<Utc>,
    /// For a callback: its owner's webhook secrets, read by the claim statement itself so that
    /// signing costs no round trip of its own. `None` on other channels.
    pub signing: Option<SealedSecrets>,
}

/// Claims every first attempt of one checkout (`$1`) on the channels `$2` for `$3` seconds, and
/// lists the checkout's other notifications; see [`claim_first_attempts`].
/// For callbacks, the owner's webhook secrets come along ([`CLAIM_JOIN`]).
static CLAIM_FIRST_ONE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH claimed AS (
         UPDATE notifications
         SET attempts = CASE WHEN attempts = 0 THEN 1 ELSE attempts END,
             claim = gen_random_uuid(), claimed_until = now() + make_interval(secs => $3),
             first_attempt_at = coalesce(first_attempt_at, now()), updated_at = now()
         WHERE checkout_id = $1 AND sequence = 1 AND channel = ANY($2) AND state = 'pending'
           AND ((attempts = 0 AND (claimed_until IS NULL OR claimed_until < now()))
                OR (attempts = 1 AND claimed_until < now()))
         RETURNING *
     )
     SELECT true AS claimed_now, c.*, {CLAIM_COLUMNS} FROM claimed c {CLAIM_JOIN}
     UNION ALL
     SELECT false, n.*, NULL, NULL, NULL FROM notifications n
     WHERE n.checkout_id = $1 AND n.sequence = 1
       AND NOT EXISTS (SELECT 1 FROM claimed c WHERE c.id = n.id)"
    )
});

/// [`CLAIM_FIRST_ONE`] for the checkouts of the array `$1`.
static CLAIM_FIRST_MANY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    CLAIM_FIRST_ONE.replace("checkout_id = $1", "checkout_id = ANY($1)")
});

/// What [`claim_first_attempts`] found for one checkout: every notification, with its claim
/// when this call got one.
pub type FirstAttempts = Vec<(Notification, Option<Claimed>)>;

/// Claims, in one statement, the first attempt of every pending notification of `checkouts` on
/// one of `channels` (those this notifier delivers), as [`claim_attempt`] with
/// `after_attempt = 0` would one by one (a crashed first attempt whose lease ran out is taken
/// over); and returns, for each checkout in order, all its notifications, with their claims
/// when they got one. Those without are for [`claim_attempt`] to sort out (an attempt in flight
/// elsewhere, a disabled channel, a retry chain that owns it). The notifier claims for the
/// checkouts that finish together in one go (group commit).
#[tracing::instrument(name = "store.claim_first_attempts", skip_all, fields(count = checkouts.len()))]
pub async fn claim_first_attempts(
    db: &impl GenericClient,
    checkouts: &[CheckoutId],
    channels: &[&str],
    lease: std::time::Duration,
) -> Result<Vec<FirstAttempts>, StoreError> {
    // One checkout (the usual case when idle) by `=`, several by `ANY`: the plan for one is a
    // plain index lookup, measurably cheaper than the array's.
    let one = checkouts.len() == 1;
    let stmt = db
        .prepare_cached(if one {
            &CLAIM_FIRST_ONE
        } else {
            &CLAIM_FIRST_MANY
        })
        .await?;
    let ids: Vec<Uuid> = checkouts.iter().map(|c| c.as_uuid()).collect();
    let mut found: Vec<FirstAttempts> = checkouts.iter().map(|_| Vec::new()).collect();
    let rows = if one {
        db.query(&stmt, &[&ids[0], &channels, &lease.as_secs_f64()])
            .await?
    } else {
        db.query(&stmt, &[&ids, &channels, &lease.as_secs_f64()])
            .await?
    };
    for r in rows {
        let n = from_row(&r)?;
        let claimed = if r.get::<_, bool>("claimed_now") {
            Some(Claimed {
                claim: r.get("claim"),
                attempt: n.attempts,
                first_attempt_at: n
                    .first_attempt_at
                    .ok_or_else(|| corrupt("claimed without first_attempt_at"))?,
                signing: SealedSecrets::from_claim_row(&r),
            })
        } else {
            None
        };
        if let Some(i) = ids.iter().position(|id| *id == n.checkout_id.as_uuid()) {
            found[i].push((n, claimed));
        }
    }
    Ok(found)
}

/// Claims the attempt after `after_attempt` of `$1` under claim `$3` for `$4` seconds; for a
/// callback, with its owner's webhook secrets ([`CLAIM_JOIN`]).
static CLAIM_NEXT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH claimed AS (
         UPDATE notifications
         SET attempts = CASE WHEN attempts = $2 THEN attempts + 1 ELSE attempts END,
             claim = $3, claimed_until = now() + make_interval(secs => $4),
             first_attempt_at = coalesce(first_attempt_at, now()), updated_at = now()
         WHERE id = $1 AND state IN ('pending', 'retrying')
           AND ((attempts = $2 AND (claimed_until IS NULL OR claimed_until < now()))
                OR (attempts = $2 + 1 AND claimed_until < now()))
         RETURNING attempts, first_attempt_at, checkout_id, channel
     )
     SELECT c.attempts, c.first_attempt_at, {CLAIM_COLUMNS} FROM claimed c {CLAIM_JOIN}"
    )
});

/// Claims the attempt after `after_attempt` for `lease`, before anything is sent.
#[tracing::instrument(name = "store.claim_attempt", skip_all, fields(notification = %id, after_attempt))]
pub async fn claim_attempt(
    db: &impl GenericClient,
    id: NotificationId,
    after_attempt: i32,
    lease: std::time::Duration,
) -> Result<AttemptClaim, StoreError> {
    let claim = Uuid::new_v4();
    let stmt = db.prepare_cached(&CLAIM_NEXT).await?;
    let row = db
        .query_opt(
            &stmt,
            &[&id.as_uuid(), &after_attempt, &claim, &lease.as_secs_f64()],
        )
        .await?;
    if let Some(row) = row {
        return Ok(AttemptClaim::Claimed(Claimed {
            claim,
            attempt: row.get("attempts"),
            first_attempt_at: row.get("first_attempt_at"),
            signing: SealedSecrets::from_claim_row(&row),
        }));
    }
    // The attempt this copy would make is held by another. Its lease may have run out between
    // the claim and this read: then this copy comes straight back and takes it over.
    let stmt = db
        .prepare_cached(
            "SELECT attempts, claimed_until FROM notifications
             WHERE id = $1 AND state IN ('pending', 'retrying')",
        )
        .await?;
    let Some(row) = db.query_opt(&stmt, &[&id.as_uuid()]).await? else {
        return Ok(AttemptClaim::Nothing);
    };
    let (attempts, until): (i32, Option<DateTime<Utc>>) = (row.get(0), row.get(1));
    Ok(match until {
        Some(until) if attempts == after_attempt + 1 => AttemptClaim::Busy { until },
        // This copy is the retry of attempt `after_attempt`, which its claimer published before
        // recording the attempt and is recording now (or died doing so: then its lease runs
        // out), or recorded between this copy's claim and this read (its claim is gone, and
        // the next look takes the attempt: without it the retry was dropped and waited for the
        // sweeper).
        _ if attempts == after_attempt => AttemptClaim::Recording,
        _ => AttemptClaim::Nothing,
    })
}

/// Records claimed attempts and releases their claims, in one statement (one transaction): for
/// each, the notification's new state and the attempt's row, or neither if its claim was lost
/// (its lease ran out and another copy took the attempt over). Returns, in order, whether each
/// was recorded. One parked ([`RecordAttempt::parked`]) is also listed in
/// `parked_notifications` (the parked gauge, `gauges::parked_notifications`), in the same
/// statement. The notifier batches the attempts that finish together
/// (group commit), so a busy notifier commits once for many.
#[tracing::instrument(name = "store.record_attempts", skip_all, fields(count = attempts.len()))]
pub async fn record_attempts(
    db: &impl GenericClient,
    attempts: &[RecordAttempt],
) -> Result<Vec<bool>, StoreError> {
    match attempts {
        [] => return Ok(vec![]),
        // One (the usual case when idle) with plain parameters: cheaper than the arrays' plan.
        [a] => return Ok(vec![record_one(db, a).await?]),
        _ => {}
    }
    let stmt = db
        .prepare_cached(
            "WITH input AS (
                 SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[],
                                      $5::timestamptz[], $6::int4[], $7::text[], $8::int4[],
                                      $9::int4[], $10::bool[])
                     AS t(id, claim, state, started_at, next_at, status, error, attempt,
                          duration_ms, parked)
             ), recorded AS (
                 UPDATE notifications n
                 SET state = i.state, last_attempt_at = i.started_at, next_attempt_at = i.next_at,
                     last_response_status = i.status, last_error = i.error, claim = NULL,
                     claimed_until = NULL, updated_at = now()
                 FROM input i
                 WHERE n.id = i.id AND n.claim = i.claim
                 RETURNING n.id, n.channel, n.state
             ), parked AS (
                 INSERT INTO parked_notifications (notification_id, channel)
                 SELECT r.id, r.channel FROM recorded r JOIN input i ON i.id = r.id
                 WHERE i.parked AND r.state = 'failed'
                 ON CONFLICT DO NOTHING
             )
             INSERT INTO notification_attempts
               (notification_id, attempt, started_at, duration_ms, response_status, error)
             SELECT i.id, i.attempt, i.started_at, i.duration_ms, i.status, i.error
             FROM input i JOIN recorded r ON r.id = i.id
             RETURNING notification_id",
        )
        .await?;
    let ids: Vec<uuid::Uuid> = attempts.iter().map(|a| a.id.as_uuid()).collect();
    let claims: Vec<Uuid> = attempts.iter().map(|a| a.claim).collect();
    let states: Vec<&str> = attempts.iter().map(|a| a.new_state.as_str()).collect();
    let started: Vec<DateTime<Utc>> = attempts.iter().map(|a| a.started_at).collect();
    let next: Vec<Option<DateTime<Utc>>> = attempts.iter().map(|a| a.next_attempt_at).collect();
    let status: Vec<Option<i32>> = attempts.iter().map(|a| a.response_status).collect();
    let errors: Vec<Option<&str>> = attempts.iter().map(|a| a.error.as_deref()).collect();
    let numbers: Vec<i32> = attempts.iter().map(|a| a.attempt).collect();
    let durations: Vec<i32> = attempts.iter().map(|a| a.duration_ms).collect();
    let parked: Vec<bool> = attempts.iter().map(|a| a.parked).collect();
    let recorded: Vec<uuid::Uuid> = db
        .query(
            &stmt,
            &[
                &ids, &claims, &states, &started, &next, &status, &errors, &numbers, &durations,
                &parked,
            ],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok(ids.iter().map(|id| recorded.contains(id)).collect())
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
        .map(attempt_from_row)
        .collect())
}

async fn record_one(db: &impl GenericClient, a: &RecordAttempt) -> Result<bool, StoreError> {
    let stmt = db
        .prepare_cached(
            "WITH recorded AS (
                 UPDATE notifications
                 SET state = $3, last_attempt_at = $4, next_attempt_at = $5,
                     last_response_status = $6, last_error = $7, claim = NULL,
                     claimed_until = NULL, updated_at = now()
                 WHERE id = $1 AND claim = $2
                 RETURNING id, channel, state
             ), parked AS (
                 INSERT INTO parked_notifications (notification_id, channel)
                 SELECT id, channel FROM recorded WHERE $10 AND state = 'failed'
                 ON CONFLICT DO NOTHING
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
                &a.parked,
            ],
        )
        .await?;
    Ok(inserted == 1)
}

/// An attempt from a row with its columns by name (`attempt`, `started_at`, `duration_ms`,
/// `response_status`, `error`).
fn attempt_from_row(r: &tokio_postgres::Row) -> Attempt {
    Attempt {
        attempt: r.get("attempt"),
        started_at: r.get("started_at"),
        duration_ms: r.get("duration_ms"),
        response_status: r.get("response_status"),
        error: r.get("error"),
    }
}

/// An attempt of one of a checkout's notifications, with the channel and target it went to.
#[derive(Debug, Clone)]
pub struct CheckoutAttempt {
    pub channel: String,
    pub target: String,
    /// The checkout event the notification announces (1: the checkout's end).
    pub sequence: i32,
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
            "SELECT n.channel, n.target, n.sequence, a.attempt, a.started_at, a.duration_ms,
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
            channel: r.get("channel"),
            target: r.get("target"),
            sequence: r.get("sequence"),
            attempt: attempt_from_row(r),
        })
        .collect())
}
