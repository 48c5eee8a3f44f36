//! Write load on ICON's database, from `pg_stat_database`: one reading at clock start, one
//! after the wait for callbacks, and the difference per checkout.

use serde::Serialize;
use tokio_postgres::{Client, NoTls};

/// PostgreSQL's cumulative counters for one database.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    pub xact_commit: i64,
    pub xact_rollback: i64,
    pub tup_inserted: i64,
    pub tup_updated: i64,
    pub tup_deleted: i64,
}

/// The change between two readings, per checkout.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PerCheckout {
    pub database: String,
    /// What the figures are divided by: the checkouts accepted (202), slow ones included, as
    /// each was written whether or not its callback was answered.
    pub checkouts: usize,
    pub delta: Counters,
    pub commits: f64,
    pub rollbacks: f64,
    pub rows_inserted: f64,
    pub rows_updated: f64,
    pub rows_deleted: f64,
}

/// A connection kept from the first reading to the second, so an unreachable database is
/// found out (and said) once, before the clock starts.
pub struct Reader {
    client: Client,
    pub database: String,
}

impl Reader {
    pub async fn connect(cfg: &tokio_postgres::Config) -> Result<Self, tokio_postgres::Error> {
        let (client, connection) = cfg.connect(NoTls).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let database: String = client
            .query_one("SELECT current_database()::text", &[])
            .await?
            .get(0);
        Ok(Reader { client, database })
    }

    /// Writes every dirty page out now (`CHECKPOINT`; superuser or `pg_checkpoint`), so that
    /// each measured window starts at the same point of PostgreSQL's checkpoint cycle: right
    /// after one, with the full-page images that follow it, and with `checkpoint_timeout` (5
    /// minutes by default) and `max_wal_size` of room before the next. Without it a window
    /// that a timed checkpoint falls in costs PostgreSQL visibly more CPU per checkout than
    /// one that it misses.
    pub async fn checkpoint(&self) -> Result<(), tokio_postgres::Error> {
        self.client.batch_execute("CHECKPOINT").await
    }

    /// One reading. Each is a transaction of its own, so the second reading counts the first
    /// as one committed transaction.
    pub async fn read(&self) -> Result<Counters, tokio_postgres::Error> {
        let row = self
            .client
            .query_one(
                "SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_deleted \
                 FROM pg_stat_database WHERE datname = current_database()",
                &[],
            )
            .await?;
        Ok(Counters {
            xact_commit: row.get(0),
            xact_rollback: row.get(1),
            tup_inserted: row.get(2),
            tup_updated: row.get(3),
            tup_deleted: row.get(4),
        })
    }
}

/// `None` for no checkouts: nothing to divide by.
pub fn per_checkout(
    database: &str,
    start: Counters,
    end: Counters,
    checkouts: usize,
) -> Option<PerCheckout> {
    if checkouts == 0 {
        return None;
    }
    let delta = Counters {
        xact_commit: end.xact_commit - start.xact_commit,
        xact_rollback: end.xact_rollback - start.xact_rollback,
        tup_inserted: end.tup_inserted - start.tup_inserted,
        tup_updated: end.tup_updated - start.tup_updated,
        tup_deleted: end.tup_deleted - start.tup_deleted,
    };
    let per = |v: i64| v as f64 / checkouts as f64;
    Some(PerCheckout {
        database: database.to_string(),
        checkouts,
        commits: per(delta.xact_commit),
        rollbacks: per(delta.xact_rollback),
        rows_inserted: per(delta.tup_inserted),
        rows_updated: per(delta.tup_updated),
        rows_deleted: per(delta.tup_deleted),
        delta,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_difference_is_divided_by_the_checkouts() {
        let start = Counters {
            xact_commit: 1000,
            xact_rollback: 3,
            tup_inserted: 50,
            tup_updated: 70,
            tup_deleted: 0,
        };
        let end = Counters {
            xact_commit: 1400,
            xact_rollback: 4,
            tup_inserted: 550,
            tup_updated: 370,
            tup_deleted: 100,
        };
        let p = per_checkout("icon", start, end, 100).unwrap();
        assert_eq!(p.delta.xact_commit, 400);
        assert_eq!(
            (
                p.commits,
                p.rollbacks,
                p.rows_inserted,
                p.rows_updated,
                p.rows_deleted
            ),
            (4.0, 0.01, 5.0, 3.0, 1.0)
        );
        assert_eq!(per_checkout("icon", start, end, 0), None);
    }
}
