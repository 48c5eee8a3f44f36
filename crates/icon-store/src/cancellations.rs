//! Asking for a checkout's orders to be cancelled (`DELETE /cart/checkout/{id}` and
//! `DELETE /cart/checkout/{id}/orders/{retailer_id}`, issue 18).
//!
//! The request is recorded, not carried out: each order still to be undone gets
//! `cancel_requested_at` and the reason, once (a repeated request changes nothing), and the
//! checkout's worker is told to look. What the worker does with it is in `OrderWork::due`: an
//! order never sent is withdrawn, one in flight is cancelled once its outcome is recorded, a
//! placed or accepted one is cancelled at the retailer.
//!
//! The checkout's row is locked first, as a pass's record locks it, so the request and a pass
//! serialise: a pass that claimed before it does not see it and may finish the checkout; the
//! wake-up finds the checkout final with a cancellation still to do and reopens it
//! ([`crate::passes::reopen`]), so the cancellation follows as the checkout's next event.

use crate::idempotency::{IdempotentRequest, StoredResponse};
use crate::{error::corrupt, outbox, passes, Conn, StoreError};
use icon_contracts::{topology, CheckoutDue, Envelope};
use icon_domain::{CheckoutId, CheckoutStatus, RetailerId, UserId};

/// A cancellation to record.
#[derive(Debug, Clone)]
pub struct CancelRequest {
    pub checkout_id: CheckoutId,
    pub owner: UserId,
    /// One retailer's order, or (`None`) every order of the checkout.
    pub retailer: Option<RetailerId>,
    /// Sent to the retailer with the cancellation.
    pub reason: String,
    /// Set when the client sent an `Idempotency-Key`; the response stored with it is built by
    /// the caller from the checkout's status after the request ([`CancelOutcome::Recorded`]),
    /// by `response`.
    pub idempotency: Option<IdempotentRequest>,
}

#[derive(Debug)]
pub enum CancelOutcome {
    /// Recorded, or nothing was left to cancel: the checkout's status now, and how many orders
    /// this request asked to be cancelled (0 when all were asked before, or are not placed).
    Recorded {
        status: CheckoutStatus,
        asked: u64,
    },
    /// No such checkout belongs to the owner.
    NotFound,
    /// The checkout has no order at that retailer.
    NoSuchOrder,
    Replayed(StoredResponse),
    KeyReused,
    KeyInProgress,
}

/// Records `req` in one transaction (see the module docs). `response` builds the body stored
/// with an idempotency key from the checkout's status after the request.
#[tracing::instrument(name = "store.request_cancellation", skip_all, fields(checkout_id = %req.checkout_id))]
pub async fn request(
    conn: &mut Conn,
    req: &CancelRequest,
    response: impl FnOnce(CheckoutStatus) -> String,
) -> Result<CancelOutcome, StoreError> {
    let tx = conn.transaction().await?;
    if let Some(idem) = &req.idempotency {
        let lock = tx
            .prepare_cached(
                "SELECT pg_try_advisory_xact_lock(hashtextextended($1 || chr(31) || $2, 0))",
            )
            .await?;
        let locked: bool = tx
            .query_one(&lock, &[&req.owner.as_str(), &idem.key])
            .await?
            .get(0);
        if !locked {
            return Ok(CancelOutcome::KeyInProgress);
        }
        let stored = tx
            .prepare_cached(
                "SELECT request, checkout_id, response_status, response_body
                 FROM idempotency_keys WHERE owner = $1 AND key = $2",
            )
            .await?;
        if let Some(row) = tx
            .query_opt(&stored, &[&req.owner.as_str(), &idem.key])
            .await?
        {
            return Ok(if row.get::<_, &str>(0) != idem.request {
                CancelOutcome::KeyReused
            } else {
                CancelOutcome::Replayed(StoredResponse {
                    checkout_id: row.get(1),
                    status: row.get(2),
                    body: row.get(3),
                })
            });
        }
    }
    let lock = tx
        .prepare_cached("SELECT owner, status, pass FROM checkouts WHERE id = $1 FOR NO KEY UPDATE")
        .await?;
    let Some(checkout) = tx.query_opt(&lock, &[&req.checkout_id.as_uuid()]).await? else {
        return Ok(CancelOutcome::NotFound);
    };
    if checkout.get::<_, &str>(0) != req.owner.as_str() {
        return Ok(CancelOutcome::NotFound);
    }
    let mut status = CheckoutStatus::parse(checkout.get(1)).map_err(corrupt)?;
    let pass: i32 = checkout.get(2);
    let retailer = req.retailer.as_ref().map(RetailerId::as_str);
    if retailer.is_some() {
        let exists = tx
            .prepare_cached(
                "SELECT 1 FROM checkout_orders WHERE checkout_id = $1 AND retailer_id = $2",
            )
            .await?;
        if tx
            .query_opt(&exists, &[&req.checkout_id.as_uuid(), &retailer])
            .await?
            .is_none()
        {
            return Ok(CancelOutcome::NoSuchOrder);
        }
    }
    // A checkout that freed its cart stays as it is: nothing of it remains placed that ICON
    // could still cancel, and the cart may have a new checkout.
    let asked = if status.frees_cart() {
        0
    } else {
        let mark = tx
            .prepare_cached(
                "UPDATE checkout_orders
                 SET cancel_requested_at = now(), cancel_reason = $3, updated_at = now()
                 WHERE checkout_id = $1 AND ($2::text IS NULL OR retailer_id = $2)
                   AND cancel_requested_at IS NULL
                   AND status IN ('pending', 'accepted', 'confirmed', 'shipped', 'delivered',
                                  'unknown')",
            )
            .await?;
        tx.execute(&mark, &[&req.checkout_id.as_uuid(), &retailer, &req.reason])
            .await?
    };
    if asked > 0 {
        if status.is_final() {
            // Ended: reopened now, its next pass queued with it.
            if passes::reopen(&tx, req.checkout_id).await? {
                status = CheckoutStatus::Cancelling;
            }
        } else {
            // Queued or under way: the worker looks after the pass in flight, if any.
            let wake = Envelope::new(CheckoutDue {
                checkout_id: req.checkout_id,
                after_pass: pass,
                not_before: chrono::Utc::now(),
                wake: true,
            });
            outbox::enqueue(&tx, "", topology::CHECKOUT_REQUESTED, &wake).await?;
        }
    }
    if let Some(idem) = &req.idempotency {
        let save = tx
            .prepare_cached(
                "INSERT INTO idempotency_keys
                   (owner, key, request, checkout_id, response_status, response_body)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .await?;
        tx.execute(
            &save,
            &[
                &req.owner.as_str(),
                &idem.key,
                &idem.request,
                &req.checkout_id.as_uuid(),
                &idem.response_status,
                &response(status),
            ],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(CancelOutcome::Recorded { status, asked })
}
