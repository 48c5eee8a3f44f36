use deadpool_postgres::PoolError;

/// Everything that can go wrong talking to PostgreSQL, split by what the caller should do:
/// `Unavailable` is worth retrying (503 at the gateway, requeue at a worker); `Database` and
/// `Corrupt` are bugs or data problems.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("PostgreSQL is not available")]
    Unavailable(#[source] PoolError),
    #[error("database error")]
    Database(#[from] tokio_postgres::Error),
    #[error("unexpected data in the database: {0}")]
    Corrupt(String),
    /// A setting is wrong (the message names the variable); retrying will not help.
    #[error("{0}")]
    Settings(String),
}

impl From<PoolError> for StoreError {
    fn from(e: PoolError) -> Self {
        StoreError::Unavailable(e)
    }
}

impl StoreError {
    /// True when the failure is about reaching PostgreSQL rather than what was asked of it, so
    /// the same request may succeed later.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Unavailable(_) => true,
            StoreError::Database(e) => {
                let code_says_so = e.code().is_some_and(|c| {
                    let c = c.code();
                    // 08: connection exception; 57P01-03: shutdown, crash, cannot connect now;
                    // 53300: too many connections.
                    c.starts_with("08") || c.starts_with("57P") || c == "53300"
                });
                let io_failure = std::error::Error::source(e)
                    .is_some_and(|s| s.downcast_ref::<std::io::Error>().is_some());
                e.is_closed() || code_says_so || io_failure
            }
            StoreError::Corrupt(_) | StoreError::Settings(_) => false,
        }
    }
}

pub(crate) fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}
