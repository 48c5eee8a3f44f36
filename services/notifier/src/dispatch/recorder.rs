//! Group commit for attempt records: the attempts that finish while a record is being written
//! are written together next, in one statement and one transaction, so a busy notifier commits
//! once for many attempts (and an idle one, for each). Every caller waits for its own record,
//! so a delivery is still acked only after its attempt is committed.

use icon_store::notifications::{self, RecordAttempt};
use icon_store::{Pool, StoreError};
use tokio::sync::{mpsc, oneshot};

/// The most attempts written in one statement.
const MAX_BATCH: usize = 128;

type Reply = oneshot::Sender<Result<bool, StoreError>>;

/// Hands attempt records to the one task that writes them.
pub struct Recorder {
    tx: mpsc::Sender<(RecordAttempt, Reply)>,
    /// For writing a record directly once the task has stopped (shutting down).
    pool: Pool,
}

impl Recorder {
    /// Starts the writing task; it ends when the last `Recorder` is dropped.
    pub fn spawn(pool: Pool) -> Self {
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(run(pool.clone(), rx));
        Self { tx, pool }
    }

    /// Records `attempt` (see `notifications::record_attempts`); `false` if its claim was lost.
    pub async fn record(&self, attempt: RecordAttempt) -> Result<bool, StoreError> {
        let (reply, answer) = oneshot::channel();
        if self.tx.send((attempt.clone(), reply)).await.is_err() {
            return write_one(&self.pool, attempt).await;
        }
        match answer.await {
            Ok(result) => result,
            // The task is gone (shutting down): write it here.
            Err(_) => write_one(&self.pool, attempt).await,
        }
    }
}

async fn run(pool: Pool, mut rx: mpsc::Receiver<(RecordAttempt, Reply)>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            let Ok(next) = rx.try_recv() else { break };
            batch.push(next);
        }
        let (records, replies): (Vec<RecordAttempt>, Vec<Reply>) = batch.into_iter().unzip();
        match write(&pool, &records).await {
            Ok(recorded) => {
                for (reply, ok) in replies.into_iter().zip(recorded) {
                    let _ = reply.send(Ok(ok));
                }
            }
            // One record that cannot be written must not fail the others: one by one.
            Err(_) if records.len() > 1 => {
                for (record, reply) in records.into_iter().zip(replies) {
                    let _ = reply.send(write_one(&pool, record).await);
                }
            }
            Err(e) => {
                if let Some(reply) = replies.into_iter().next() {
                    let _ = reply.send(Err(e));
                }
            }
        }
    }
}

async fn write(pool: &Pool, records: &[RecordAttempt]) -> Result<Vec<bool>, StoreError> {
    let db = pool.get().await?;
    notifications::record_attempts(&db, records).await
}

async fn write_one(pool: &Pool, record: RecordAttempt) -> Result<bool, StoreError> {
    Ok(write(pool, std::slice::from_ref(&record))
        .await?
        .first()
        .copied()
        .unwrap_or(false))
}
