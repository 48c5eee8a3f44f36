//! The worker's writes with group commit (issue 19 §3): the claims of messages that arrive
//! while claims are being written are made together next ([`Claims`], over
//! [`icon_store::passes::claim_many`]), and so are the records of passes that finish together
//! ([`Records`], over [`icon_store::passes::complete_many`]): one statement and one commit for
//! each batch. There is no waiting window (see [`icon_store::group_commit`]): alone, as at low
//! load, a write is made at once by the statement of one. Every caller is answered after its
//! own commit: a pass holds its claim before any retailer is called, and its messages are
//! handed to the relay only once its record is committed.

use chrono::{DateTime, Utc};
use icon_domain::CheckoutId;
use icon_store::group_commit::GroupCommit;
use icon_store::passes::{self, Claim, Completed, PassRecord};
use icon_store::{Pool, StoreError};
use std::sync::Arc;
use std::time::Duration;

/// Batches being written at once, of each kind. Each holds one pooled connection for one
/// round trip; two let one batch form while the other is written.
const IN_FLIGHT: usize = 2;
/// The most writes in one statement: the consumer's prefetch (32 by default) bounds how many
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

/// Names the queue that brings a message back at an instant (a delay tier, or the work queue).
pub type Route = Arc<dyn Fn(DateTime<Utc>) -> String + Send + Sync>;

/// The worker's handle on the task that records passes in batches.
#[derive(Clone)]
pub struct Records {
    batches: GroupCommit<PassRecord, Result<Completed, StoreError>>,
    pool: Pool,
    route: Route,
}

impl Records {
    /// Starts the batching task on the current runtime; it stops when the last handle goes.
    pub fn spawn(pool: Pool, route: Route) -> Self {
        let (batch_pool, batch_route) = (pool.clone(), route.clone());
        Self {
            batches: GroupCommit::spawn(IN_FLIGHT, MAX_BATCH, move |records| {
                record_batch(batch_pool.clone(), batch_route.clone(), records)
            }),
            pool,
            route,
        }
    }

    /// Records the pass with whatever other records are ready now; answers after the commit.
    pub async fn record(&self, record: PassRecord) -> Result<Completed, StoreError> {
        match self.batches.submit(record.clone()).await {
            Some(completed) => completed,
            // The batching task has stopped (shutting down): record here.
            None => record_alone(&self.pool, &self.route, &record).await,
        }
    }
}

async fn record_batch(
    pool: Pool,
    route: Route,
    records: Vec<PassRecord>,
) -> Vec<Result<Completed, StoreError>> {
    if records.len() > 1 {
        let batch = async {
            let mut db = pool.get().await?;
            passes::complete_many(&mut db, &records, |at| route(at)).await
        };
        match batch.await {
            Ok(completed) => return completed.into_iter().map(Ok).collect(),
            // The statement's records were undone (a deadlock, say; for a lost connection
            // perhaps not, and then each alone finds its claim gone and drops its results,
            // as after any lost connection): each alone, so that no pass fails for another's.
            Err(e) => tracing::warn!(
                error = %icon_store::pool::source_chain(&e),
                count = records.len(),
                "a batch of pass records failed; recording each alone"
            ),
        }
    }
    let mut completed = Vec::with_capacity(records.len());
    for record in &records {
        completed.push(record_alone(&pool, &route, record).await);
    }
    completed
}

async fn record_alone(pool: &Pool, route: &Route, r: &PassRecord) -> Result<Completed, StoreError> {
    let mut db = pool.get().await?;
    r.complete(&mut db, |at| route(at)).await
}
