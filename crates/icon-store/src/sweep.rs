//! The safety net for work that stopped moving: checkouts left `queued`/`processing`, and open
//! notifications of finished checkouts with nothing due. Their messages should never be lost,
//! but a purged queue or a dead-lettered message would otherwise leave them stuck forever.

use crate::{notifications, passes, Pool, StoreError};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy)]
pub enum Stuck {
    /// Run by the checkout worker.
    Checkouts,
    /// Run by the notifier.
    Notifications,
}

impl Stuck {
    async fn requeue(self, pool: &Pool, older_than: Duration) -> Result<usize, StoreError> {
        let mut db = pool.get().await?;
        match self {
            Stuck::Checkouts => passes::requeue_stuck(&mut db, older_than).await,
            Stuck::Notifications => notifications::requeue_stuck(&mut db, older_than).await,
        }
    }
}

/// Every quarter of `stuck_after` (1 s to 60 s), queues again what made no progress for
/// `stuck_after`, until `shutdown`.
pub async fn run(pool: Pool, what: Stuck, stuck_after: Duration, shutdown: CancellationToken) {
    let period = (stuck_after / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
    icon_runtime::shutdown::every(period, shutdown, || async {
        match what.requeue(&pool, stuck_after).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(count = n, ?what, "queued stuck work again"),
            Err(e) => tracing::debug!(error = %e, ?what, "stuck-work sweep failed; will retry"),
        }
    })
    .await
}
