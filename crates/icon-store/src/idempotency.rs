//! Idempotency keys for checkout submission.
//!
//! A key is scoped to its user. The first request with a key takes a transaction-scoped
//! advisory lock on it, so a concurrent retry finds the lock taken and is told to wait (409)
//! instead of blocking or creating a second checkout. The first *successful* response is stored
//! in the same transaction as the checkout it created; a crash before commit leaves no trace, so
//! the client's retry simply starts over.

use crate::{GenericClient, StoreError};
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// How long keys are kept, at least.
pub const RETENTION_HOURS: i64 = 24;

#[derive(Debug, Clone)]
pub struct IdempotentRequest {
    pub key: String,
    /// The request body in canonical JSON (keys sorted), compared byte for byte.
    pub request: String,
    /// The response to store if this request succeeds.
    pub response_status: i32,
    pub response_body: String,
}

#[derive(Debug, Clone)]
pub struct StoredResponse {
    pub checkout_id: Uuid,
    pub status: i32,
    pub body: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug)]
pub enum Claim {
    /// Nobody used the key yet: go ahead, and [`save`] the response in this transaction.
    Fresh,
    /// The same request was answered before: answer the same again.
    Replay(StoredResponse),
    /// The key was used for a different request body.
    Mismatch,
    /// Another request with this key is being processed right now.
    InProgress,
}

/// Claims `key` for `owner` within the caller's transaction.
pub async fn claim(
    tx: &impl GenericClient,
    owner: &str,
    req: &IdempotentRequest,
) -> Result<Claim, StoreError> {
    let stmt = tx
        .prepare_cached(
            "SELECT pg_try_advisory_xact_lock(hashtextextended($1 || chr(31) || $2, 0))",
        )
        .await?;
    let locked: bool = tx.query_one(&stmt, &[&owner, &req.key]).await?.get(0);
    if !locked {
        return Ok(Claim::InProgress);
    }
    let stmt = tx
        .prepare_cached(
            "SELECT request, checkout_id, response_status, response_body, created_at
             FROM idempotency_keys WHERE owner = $1 AND key = $2",
        )
        .await?;
    let Some(row) = tx.query_opt(&stmt, &[&owner, &req.key]).await? else {
        return Ok(Claim::Fresh);
    };
    if row.get::<_, &str>(0) != req.request {
        return Ok(Claim::Mismatch);
    }
    Ok(Claim::Replay(StoredResponse {
        checkout_id: row.get(1),
        status: row.get(2),
        body: row.get(3),
        created_at: row.get(4),
    }))
}

/// Stores the response of a fresh request, in the transaction that created its checkout.
pub async fn save(
    tx: &impl GenericClient,
    owner: &str,
    checkout_id: Uuid,
    req: &IdempotentRequest,
) -> Result<(), StoreError> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO idempotency_keys
               (owner, key, request, checkout_id, response_status, response_body)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .await?;
    tx.execute(
        &stmt,
        &[
            &owner,
            &req.key,
            &req.request,
            &checkout_id,
            &req.response_status,
            &req.response_body,
        ],
    )
    .await?;
    Ok(())
}

/// Deletes keys older than the retention; returns how many.
pub async fn purge(db: &impl GenericClient) -> Result<u64, StoreError> {
    let stmt = db
        .prepare_cached(
            "DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(hours => $1::int)",
        )
        .await?;
    Ok(db.execute(&stmt, &[&(RETENTION_HOURS as i32)]).await?)
}
