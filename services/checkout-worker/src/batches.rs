//! The worker's claims with group commit (issue 19 §3): the claims of messages that arrive
//! while claims are being written are made together next, in one statement and one commit
//! ([`icon_store::passes::claim_many`]). There is no waiting window (see
//! [`icon_store::group_commit`]): alone, as at low load, a message is claimed at once by the
//! statement of one. Every pass still holds its claim before any retailer is called: the
//! caller gets its claim only after the commit.
//!
//! The records of passes are not batched: measured, a batch of them cut commits per checkout
//! from 2.6 to 1.1 but cost PostgreSQL more CPU per checkout, not less (docs/performance.md).

use icon_domain::CheckoutId;
use icon_store::group_commit::GroupCommit;
use icon_store::passes::{self, Claim};
use icon_store::{Pool, StoreError};
use std::time::Duration;

/// Batches of claims being written at once. Each holds one pooled connection for one round
/// trip; two let one batch form while the other is written.
const IN_FLIGHT: usize = 2;
/// The most claims in one statement: the consumer's prefetch (32 by default) bounds how many
/// can be waiting anyway.
const MAX_BATCH: usize = 32;

type Job = (CheckoutId, i32);

/// The worker's handle on the batching task.
#[derive(Clone)]
pub struct Claims {
    batches: GroupCommit<Job, Result<Claim, StoreError>>,
    pool: Pool,
    lease: Duration,
}

impl Claims {
    /// Starts the batching task on the current runtime; it stops when the last handle goes.
    pub fn spawn(pool: Pool, lease: Duration) -> Self {
        let batch_pool = pool.clone();
        Self {
            batches: GroupCommit::spawn(IN_FLIGHT, MAX_BATCH, move |jobs| {
                claim_batch(batch_pool.clone(), lease, jobs)
            }),
            pool,
            lease,
        }
    }

    /// Claims the pass after `after_pass` of `id` with whatever other claims are ready now;
    /// answers after the commit.
    pub async fn claim(&self, id: CheckoutId, after_pass: i32) -> Result<Claim, StoreError> {
        match self.batches.submit((id, after_pass)).await {
            Some(claim) => claim,
            // The batching task has stopped (shutting down): claim here.
            None => claim_alone(&self.pool, self.lease, id, after_pass).await,
        }
    }
}

async fn claim_batch(
    pool: Pool,
    lease: Duration,
    jobs: Vec<Job>,
) -> Vec<Result<Claim, StoreError>> {
    if jobs.len() > 1 {
        let batch = async {
            let db = pool.get().await?;
            passes::claim_many(&db, &jobs, lease).await
        };
        match batch.await {
            Ok(claims) => return claims.into_iter().map(Ok).collect(),
            // Nothing of the batch stands (a deadlock with another worker's batch, say; or,
            // for a lost connection, perhaps all of it, which a claim alone then finds held):
            // each alone, so that no message fails for another's sake.
            Err(e) => tracing::warn!(
                error = %icon_store::pool::source_chain(&e),
                count = jobs.len(),
                "a batch of claims failed; claiming each alone"
            ),
        }
    }
    let mut claims = Vec::with_capacity(jobs.len());
    for (id, after_pass) in jobs {
        claims.push(claim_alone(&pool, lease, id, after_pass).await);
    }
    claims
}

async fn claim_alone(
    pool: &Pool,
    lease: Duration,
    id: CheckoutId,
    after_pass: i32,
) -> Result<Claim, StoreError> {
    let db = pool.get().await?;
    passes::claim(&db, id, after_pass, lease).await
}
