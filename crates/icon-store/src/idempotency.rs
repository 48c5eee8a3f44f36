//! Idempotency keys for checkout submission.
//!
//! A key is scoped to its user. The first request with a key takes a transaction-scoped
//! advisory lock on it, so a concurrent retry finds the lock taken and is told to wait (409)
//! instead of blocking or creating a second checkout. The first *successful* response is stored
//! in the same transaction as the checkout it created; a crash before commit leaves no trace, so
//! the client's retry simply starts over. The claim and the save are part of the one statement
//! that creates a checkout (`icon_create_checkout`, migration 0005; see
//! [`crate::checkouts::create_many`]).

use crate::{GenericClient, StoreError};
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
