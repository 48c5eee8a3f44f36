//! Counts for the gauges of `/metrics`, read when Prometheus scrapes (every 15 s or so), never on
//! the checkout path. Each query reads only through an index over the few live rows, so its
//! cost does not grow with the history kept.

use crate::{GenericClient, StoreError};

/// What the outbox gauges show.
#[derive(Debug, Clone, Copy, Default)]
pub struct OutboxGauges {
    /// Rows not yet published.
    pub backlog: i64,
    /// Age in seconds of the oldest (0 when there is none).
    pub oldest_age_seconds: f64,
    /// Rows set aside because RabbitMQ could not route them (counted in `backlog` too).
    pub unroutable: i64,
}

/// Reads [`OutboxGauges`]. The outbox holds only unpublished rows (published ones are deleted),
/// so this is small.
pub async fn outbox(db: &impl GenericClient) -> Result<OutboxGauges, StoreError> {
    let row = db
        .query_one(
            "SELECT count(*), \
                    COALESCE(EXTRACT(EPOCH FROM now() - min(created_at))::float8, 0), \
                    count(*) FILTER (WHERE unroutable_since IS NOT NULL) \
             FROM outbox",
            &[],
        )
        .await?;
    Ok(OutboxGauges {
        backlog: row.get(0),
        oldest_age_seconds: row.get::<_, f64>(1).max(0.0),
        unroutable: row.get(2),
    })
}

/// Orders whose outcome is unknown and still being settled by lookups: those of checkouts not
/// yet final (through the partial index of unfinished checkouts). Orders left `unknown` in a
/// finished checkout are for a person to settle (`docs/operations.md`), not counted here.
pub async fn unknown_orders_settling(db: &impl GenericClient) -> Result<i64, StoreError> {
    let row = db
        .query_one(
            "SELECT count(*) FROM checkouts c \
             JOIN checkout_orders o ON o.checkout_id = c.id \
             WHERE c.status IN ('queued', 'processing', 'cancelling') AND o.status = 'unknown'",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

/// Notifications given up and parked (state `failed`), waiting for a redeliver, by channel. Read
/// from `parked_notifications`, which holds exactly those (kept by the statements that record a
/// give-up and that redeliver), not from `notifications`: an index there on `state` would make
/// every delivery's update non-HOT (migration 0007 says more).
pub async fn parked_notifications(
    db: &impl GenericClient,
) -> Result<Vec<(String, i64)>, StoreError> {
    let rows = db
        .query(
            "SELECT channel, count(*) FROM parked_notifications GROUP BY channel",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}
