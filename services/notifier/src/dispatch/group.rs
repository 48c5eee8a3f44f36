//! Group commit: the writes that arrive while one is being made are made together next, in one
//! statement and one transaction, so a busy notifier commits once for many checkouts (and an
//! idle one, for each, with no wait). Every caller waits for its own result, so a delivery is
//! still acked only after its effect is committed, and a claim is held before anything is sent.
//!
//! Two writes go this way: claiming the first attempts of a finished checkout ([`Claims`]) and
//! recording attempts ([`Records`]).

use icon_domain::CheckoutId;
use icon_store::notifications::{self, FirstAttempts, RecordAttempt};
use icon_store::{Pool, StoreError};
use std::future::Future;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// The most items written in one statement.
const MAX_BATCH: usize = 128;

/// A write that can be made for several items in one statement, one result per item in order.
pub trait Write: Send + Sync + 'static {
    type Item: Clone + Send + 'static;
    type Output: Send + 'static;
    fn write(
        &self,
        pool: &Pool,
        items: &[Self::Item],
    ) -> impl Future<Output = Result<Vec<Self::Output>, StoreError>> + Send;
}

type Reply<W> = oneshot::Sender<Result<<W as Write>::Output, StoreError>>;

/// Hands items to the one task that writes them in batches.
pub struct GroupCommit<W: Write> {
    tx: mpsc::Sender<(W::Item, Reply<W>)>,
    /// For writing directly once the task has stopped (shutting down).
    pool: Pool,
    write: std::sync::Arc<W>,
}

impl<W: Write> GroupCommit<W> {
    /// Starts the writing task; it ends when the last handle is dropped.
    pub fn spawn(pool: Pool, write: W) -> Self {
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        let write = std::sync::Arc::new(write);
        tokio::spawn(run(pool.clone(), write.clone(), rx));
        Self { tx, pool, write }
    }

    /// Writes `item` with whatever else is waiting, and returns its own result.
    pub async fn write(&self, item: W::Item) -> Result<W::Output, StoreError> {
        let (reply, answer) = oneshot::channel();
        if self.tx.send((item.clone(), reply)).await.is_ok() {
            if let Ok(result) = answer.await {
                return result;
            }
        }
        // The task is gone (shutting down): write it here.
        write_one(&*self.write, &self.pool, item).await
    }
}

async fn run<W: Write>(
    pool: Pool,
    write: std::sync::Arc<W>,
    mut rx: mpsc::Receiver<(W::Item, Reply<W>)>,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            let Ok(next) = rx.try_recv() else { break };
            batch.push(next);
        }
        let (items, replies): (Vec<W::Item>, Vec<Reply<W>>) = batch.into_iter().unzip();
        match write.write(&pool, &items).await {
            Ok(outputs) if outputs.len() == items.len() => {
                for (reply, output) in replies.into_iter().zip(outputs) {
                    let _ = reply.send(Ok(output));
                }
            }
            // One item that cannot be written must not fail the others: one by one.
            _ => {
                for (item, reply) in items.into_iter().zip(replies) {
                    let _ = reply.send(write_one(&*write, &pool, item).await);
                }
            }
        }
    }
}

async fn write_one<W: Write>(
    write: &W,
    pool: &Pool,
    item: W::Item,
) -> Result<W::Output, StoreError> {
    write
        .write(pool, std::slice::from_ref(&item))
        .await?
        .pop()
        .ok_or_else(|| StoreError::Corrupt("a write returned no result".into()))
}

/// Records attempts (`notifications::record_attempts`): `false` for one whose claim was lost.
pub struct Records;

impl Write for Records {
    type Item = RecordAttempt;
    type Output = bool;
    async fn write(&self, pool: &Pool, items: &[RecordAttempt]) -> Result<Vec<bool>, StoreError> {
        let db = pool.get().await?;
        notifications::record_attempts(&db, items).await
    }
}

/// Claims the first attempts of finished checkouts (`notifications::claim_first_attempts`) on
/// the channels this notifier delivers, for its lease.
pub struct Claims {
    pub channels: Vec<&'static str>,
    pub lease: Duration,
}

impl Write for Claims {
    type Item = CheckoutId;
    type Output = FirstAttempts;
    async fn write(
        &self,
        pool: &Pool,
        items: &[CheckoutId],
    ) -> Result<Vec<FirstAttempts>, StoreError> {
        let db = pool.get().await?;
        notifications::claim_first_attempts(&db, items, &self.channels, self.lease).await
    }
}
