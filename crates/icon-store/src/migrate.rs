//! Schema migrations: numbered SQL files embedded in the binary, applied in order, each in its
//! own transaction, under an advisory lock so that services starting together do not race.

use crate::StoreError;
use deadpool_postgres::Pool;

const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "initial", include_str!("../migrations/0001_initial.sql")),
    (
        2,
        "idempotency",
        include_str!("../migrations/0002_idempotency.sql"),
    ),
    (
        3,
        "guarantee",
        include_str!("../migrations/0003_guarantee.sql"),
    ),
    (4, "push", include_str!("../migrations/0004_push.sql")),
    (
        5,
        "hot_path",
        include_str!("../migrations/0005_hot_path.sql"),
    ),
    (
        6,
        "webhook_secrets",
        include_str!("../migrations/0006_webhook_secrets.sql"),
    ),
    (
        7,
        "parked_notifications",
        include_str!("../migrations/0007_parked_notifications.sql"),
    ),
    (
        8,
        "trace_context",
        include_str!("../migrations/0008_trace_context.sql"),
    ),
    (
        9,
        "order_doubt",
        include_str!("../migrations/0009_order_doubt.sql"),
    ),
    (
        10,
        "outbox_unroutable",
        include_str!("../migrations/0010_outbox_unroutable.sql"),
    ),
    (
        11,
        "retailer_secrets",
        include_str!("../migrations/0011_retailer_secrets.sql"),
    ),
    (
        12,
        "order_life",
        include_str!("../migrations/0012_order_life.sql"),
    ),
    (
        13,
        "cancellation",
        include_str!("../migrations/0013_cancellation.sql"),
    ),
    (
        14,
        "hot_path_keys",
        include_str!("../migrations/0014_hot_path_keys.sql"),
    ),
];

/// Arbitrary but fixed: the advisory lock every ICON process takes while migrating.
const LOCK_KEY: i64 = 0x1c0_4d16;

pub async fn run(pool: &Pool) -> Result<(), StoreError> {
    let mut client = pool.get().await?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .await?;
    let result = apply(&mut client).await;
    // Unlock on the same session whatever happened; the lock also dies with the connection.
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await;
    result
}

async fn apply(client: &mut deadpool_postgres::Object) -> Result<(), StoreError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version integer PRIMARY KEY,
                name text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await?;
    let applied: Vec<i32> = client
        .query("SELECT version FROM schema_migrations", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for (version, name, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        let tx = client.transaction().await?;
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[version, name],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(version, name, "applied migration");
    }
    Ok(())
}
