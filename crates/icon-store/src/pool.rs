//! Connecting to PostgreSQL.

use crate::tls::{DatabaseUrl, PgTls};
use crate::{migrate, StoreError};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Timeouts};
use icon_runtime::Backoff;
use std::time::Duration;
use tokio_postgres::Config;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub url: String,
    pub max_size: usize,
    /// How long a request waits for a connection before it is told the database is unavailable.
    /// Bounded so that a database outage turns into fast 503s, not hanging requests.
    pub wait_timeout: Duration,
}

impl PoolSettings {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_size: 16,
            wait_timeout: Duration::from_secs(3),
        }
    }
}

/// Builds the pool, waits until PostgreSQL answers (creating the database when it does not exist
/// yet, so a newcomer needs no `createdb`), and brings the schema up to date. Returns `None` if
/// `shutdown` fires while waiting.
pub async fn connect(
    settings: &PoolSettings,
    shutdown: &CancellationToken,
) -> Result<Option<Pool>, StoreError> {
    let url = DatabaseUrl::parse(&settings.url)
        .map_err(|e| StoreError::Settings(format!("ICON_DATABASE_URL is invalid: {e}")))?;
    let config = url.config().clone();
    let pool = build_pool(config.clone(), url.tls(), settings)?;
    let mut backoff = Backoff::reconnect();
    loop {
        let error = match pool.get().await {
            Ok(client) => match client.simple_query("SELECT 1").await {
                Ok(_) => break,
                Err(e) => e.to_string(),
            },
            Err(e) => {
                if is_missing_database(&e) {
                    create_database(&config, url.tls()).await;
                    continue;
                }
                source_chain(&e)
            }
        };
        let delay = backoff.next_delay();
        tracing::warn!(
            host = ?config.get_hosts(),
            port = ?config.get_ports(),
            %error,
            "PostgreSQL is not reachable yet; retrying in {delay:?}"
        );
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(None),
            _ = tokio::time::sleep(delay) => {}
        }
    }
    migrate::run(&pool).await?;
    Ok(Some(pool))
}

fn build_pool(config: Config, tls: PgTls, settings: &PoolSettings) -> Result<Pool, StoreError> {
    let manager = Manager::from_config(
        config,
        tls,
        ManagerConfig {
            // Verified recycling costs a round trip per checkout; a broken connection is instead
            // detected by the query that uses it, and the pool drops it.
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(settings.max_size)
        .runtime(Runtime::Tokio1)
        .timeouts(Timeouts {
            wait: Some(settings.wait_timeout),
            create: Some(settings.wait_timeout),
            recycle: Some(settings.wait_timeout),
        })
        .build()
        .map_err(|e| StoreError::Corrupt(format!("cannot build the PostgreSQL pool: {e}")))
}

fn is_missing_database(e: &deadpool_postgres::PoolError) -> bool {
    matches!(e, deadpool_postgres::PoolError::Backend(pg)
        if pg.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_DATABASE))
}

async fn create_database(config: &Config, tls: PgTls) {
    let Some(name) = config.get_dbname().map(str::to_owned) else {
        return;
    };
    let mut admin = config.clone();
    admin.dbname("postgres");
    match admin.connect(tls).await {
        Ok((client, conn)) => {
            tokio::spawn(conn);
            let quoted = format!("\"{}\"", name.replace('"', "\"\""));
            match client
                .simple_query(&format!("CREATE DATABASE {quoted}"))
                .await
            {
                Ok(_) => tracing::info!(database = %name, "created the database"),
                // Another service created it at the same moment: 42P04, or 23505 when both
                // inserted into pg_database concurrently.
                Err(e)
                    if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE)
                        || e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {
                }
                Err(e) => {
                    tracing::warn!(database = %name, error = %source_chain(&e), "cannot create the database")
                }
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot connect to the `postgres` database to create ours")
        }
    }
}

/// An error and its causes on one line, for logs.
pub fn source_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// `ICON_DATABASE_URL`'s default: the local PostgreSQL of a development machine.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/icon";

/// Whether PostgreSQL answers a trivial query within two seconds.
pub async fn is_up(pool: &Pool) -> bool {
    tokio::time::timeout(std::time::Duration::from_secs(2), async {
        match pool.get().await {
            Ok(c) => c.simple_query("SELECT 1").await.is_ok(),
            Err(_) => false,
        }
    })
    .await
    .unwrap_or(false)
}

/// Outbox rows set aside as unroutable, if PostgreSQL answers within two seconds: `None` means
/// the database is down. Readiness reports it beside `broker`, because an unroutable row is a
/// missing queue, not a broker that is down.
pub async fn outbox_unroutable(pool: &Pool) -> Option<i64> {
    tokio::time::timeout(std::time::Duration::from_secs(2), async {
        let db = pool.get().await.ok()?;
        crate::gauges::outbox(&db).await.ok().map(|g| g.unroutable)
    })
    .await
    .ok()
    .flatten()
}

/// The readiness of a consuming service: PostgreSQL answers and its consumer is attached.
/// `pool` is empty until the service has connected, so the probe can serve from the start.
pub fn ready_check(
    pool: std::sync::Arc<std::sync::OnceLock<Pool>>,
    consuming: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> icon_runtime::probe::ReadyCheck {
    std::sync::Arc::new(move || {
        let pool = pool.get().cloned();
        let consuming = consuming.clone();
        Box::pin(async move {
            let unroutable = match pool {
                Some(pool) => outbox_unroutable(&pool).await,
                None => None,
            };
            let db = unroutable.is_some();
            let broker = consuming.load(std::sync::atomic::Ordering::Relaxed);
            let up = |b: bool| if b { "up" } else { "down" };
            let status = if db && broker { "ready" } else { "not_ready" };
            let unroutable = unroutable.map_or("null".to_owned(), |n| n.to_string());
            (
                db && broker,
                format!(
                    r#"{{"status":"{status}","database":"{}","broker":"{}","outbox_unroutable":{unroutable}}}"#,
                    up(db),
                    up(broker)
                ),
            )
        })
    })
}
