//! Storing new checkouts with group commit (issue 19 §3): the checkouts submitted at the same
//! moment, on any of the gateway's HTTP workers, are stored by one statement in one
//! transaction ([`icon_store::checkouts::create_many`]), and each request is answered after
//! that commit. There is no waiting window (see [`icon_store::group_commit`]): alone, a
//! checkout is stored at once; only while `in_flight` batches are being stored do the next
//! ones wait, and then they share the next statement.

use crate::problem::ApiError;
use icon_store::checkouts::{self, CreateCheckout, Submission};
use icon_store::group_commit::GroupCommit;
use icon_store::{Pool, StoreError};
use std::sync::Arc;

/// How checkouts are batched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcceptSettings {
    /// `ICON_CHECKOUT_BATCH_MAX`: the most checkouts in one statement.
    pub max_batch: usize,
    /// `ICON_CHECKOUT_BATCHES_IN_FLIGHT`: batches being stored at once. Each holds one pooled
    /// connection for one round trip, so other requests keep most of the pool.
    pub in_flight: usize,
}

impl Default for AcceptSettings {
    fn default() -> Self {
        Self {
            max_batch: 32,
            in_flight: 4,
        }
    }
}

/// Why a checkout was not stored, or may not have been.
#[derive(Debug, Clone)]
pub enum Failure {
    /// No connection could be had: nothing was written.
    NoConnection(Arc<StoreError>),
    /// The write failed; for a lost connection, it may have taken effect.
    Write(Arc<StoreError>),
}

impl Failure {
    /// The problem document: a plain 503 when nothing was written, the "may have been
    /// accepted" 503 with `lost` when the connection went during the write.
    pub fn into_api_error(self, lost: &'static str) -> ApiError {
        let (e, writing) = match &self {
            Failure::NoConnection(e) => (e, false),
            Failure::Write(e) => (e, true),
        };
        let chain = icon_store::pool::source_chain(e.as_ref());
        match (e.is_unavailable(), writing) {
            (true, true) => ApiError::write_outcome_unknown(chain, lost),
            (true, false) => ApiError::unavailable(chain),
            (false, _) => ApiError::internal(chain),
        }
    }
}

pub type Outcome = Result<CreateCheckout, Failure>;

/// The gateway's handle on the batching task.
#[derive(Clone)]
pub struct Accepter(GroupCommit<Submission, Outcome>);

impl Accepter {
    /// Starts the batching task on the current runtime; it stops when the last handle goes.
    pub fn spawn(pool: Pool, settings: AcceptSettings) -> Self {
        Self(GroupCommit::spawn(
            settings.in_flight,
            settings.max_batch,
            move |batch| store(pool.clone(), batch),
        ))
    }

    /// Stores the checkout with whatever else is ready now; answers after the commit.
    pub async fn store(&self, submission: Submission) -> Outcome {
        self.0.submit(submission).await.unwrap_or_else(|| {
            Err(Failure::Write(Arc::new(StoreError::Corrupt(
                "the gateway is shutting down".into(),
            ))))
        })
    }
}

async fn store(pool: Pool, batch: Vec<Submission>) -> Vec<Outcome> {
    let n = batch.len();
    let all = |f: Failure| (0..n).map(|_| Err(f.clone())).collect();
    let db = match pool.get().await {
        Ok(db) => db,
        Err(e) => return all(Failure::NoConnection(Arc::new(e.into()))),
    };
    let batches = &icon_metrics::gateway().checkout_batches;
    batches.inc();
    match checkouts::create_many(&db, &batch).await {
        Ok(outcomes) => outcomes.into_iter().map(Ok).collect(),
        // The whole batch was undone (a deadlock with another writer, say) and nothing of it
        // is stored: each alone, so that no checkout is refused for another's sake.
        Err(e) if n > 1 && !e.is_unavailable() => {
            tracing::warn!(error = %icon_store::pool::source_chain(&e), count = n, "a batch of checkouts failed; storing each alone");
            let mut outcomes = Vec::with_capacity(n);
            for one in batch.chunks(1) {
                batches.inc();
                outcomes.push(match checkouts::create_many(&db, one).await {
                    Ok(mut o) => o.pop().ok_or_else(|| {
                        Failure::Write(Arc::new(StoreError::Corrupt("no outcome".into())))
                    }),
                    Err(e) => Err(Failure::Write(Arc::new(e))),
                });
            }
            outcomes
        }
        Err(e) => all(Failure::Write(Arc::new(e))),
    }
}
