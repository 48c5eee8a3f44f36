//! Claiming a pass: alone ([`claim`]), or for several checkouts at once ([`claim_many`]), so
//! that a busy worker's claims share one statement and one commit (group commit, issue 19).
//!
//! The claim stays a write of its own before any retailer is called: it is the durable record
//! that an order request may be out. Without it, a pass that crashed after sending would look
//! to the next copy like one that never sent, and a cancellation would then withdraw (or a
//! refused re-send declare "not placed") an order the retailer had placed.

use super::{Claim, Pass};
use crate::orders;
use crate::webhook_secrets::{RETAILER_CLAIM_COLUMNS, RETAILER_CLAIM_JOIN};
use crate::{error::corrupt, GenericClient, StoreError};
use chrono::{DateTime, Utc};
use icon_domain::{CartId, CheckoutId, CheckoutPolicy, CheckoutStatus};
use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;
use tracing::Instrument;
use uuid::Uuid;

/// Claims the pass after `after_pass` for `lease` (or takes over a crashed one), and reads
/// what the pass works on, in one statement: the checkout's claim, its orders and the cart's
/// items (one row per item). The caller holds the span (`store.claim_pass` in the worker, in
/// the checkout's trace), so a claim made in a batch shows there too.
pub async fn claim(
    db: &impl GenericClient,
    id: CheckoutId,
    after_pass: i32,
    lease: Duration,
) -> Result<Claim, StoreError> {
    let claim = Uuid::new_v4();
    let stmt = db.prepare_cached(&CLAIM_STATEMENT).await?;
    let rows = db
        .query(
            &stmt,
            &[&id.as_uuid(), &after_pass, &claim, &lease.as_secs_f64()],
        )
        .await?;
    // A checkout always has an order (an empty cart cannot be checked out), so no row means no
    // claim.
    if rows.is_empty() {
        return why_not(db, id, after_pass).await;
    }
    Ok(Claim::Claimed(Box::new(pass_from_rows(id, claim, &rows)?)))
}

/// As [`claim`] for each of `jobs` (a checkout and the pass it expects), in one statement and
/// so one commit; the claims in the order of `jobs`. Each gets what it would have got alone,
/// in that order: two copies of one checkout's message, one claims and the other finds the
/// pass held ([`Claim::Busy`]). Rows are locked in the order of their ids, so two batches
/// lock shared checkouts in one order. An error undoes every claim of the batch.
pub async fn claim_many(
    db: &impl GenericClient,
    jobs: &[(CheckoutId, i32)],
    lease: Duration,
) -> Result<Vec<Claim>, StoreError> {
    if let [(id, after_pass)] = jobs {
        // Alone (as every message is at low load): the statement of one, with its span.
        return Ok(vec![claim(db, *id, *after_pass, lease).await?]);
    }
    let claims: Vec<Uuid> = jobs.iter().map(|_| Uuid::new_v4()).collect();
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by_key(|&i| jobs[i].0.as_uuid());
    let ids: Vec<Uuid> = order.iter().map(|&i| jobs[i].0.as_uuid()).collect();
    let after: Vec<i32> = order.iter().map(|&i| jobs[i].1).collect();
    let sorted_claims: Vec<Uuid> = order.iter().map(|&i| claims[i]).collect();
    let span = tracing::info_span!("store.claim_passes", count = jobs.len());
    let rows = async {
        let stmt = db.prepare_cached(&CLAIM_MANY_STATEMENT).await?;
        db.query(&stmt, &[&ids, &after, &sorted_claims, &lease.as_secs_f64()])
            .await
    }
    .instrument(span)
    .await?;
    // The rows come by checkout: one group per claim that won.
    let mut won: HashMap<Uuid, Pass> = HashMap::new();
    for group in
        rows.chunk_by(|a, b| a.get::<_, Uuid>("checkout_id") == b.get::<_, Uuid>("checkout_id"))
    {
        let id = CheckoutId::from_uuid(group[0].get("checkout_id"));
        let claim: Uuid = group[0].get("claim");
        won.insert(claim, pass_from_rows(id, claim, group)?);
    }
    let mut out = Vec::with_capacity(jobs.len());
    for (&(id, after_pass), claim) in jobs.iter().zip(&claims) {
        out.push(match won.remove(claim) {
            Some(pass) => Claim::Claimed(Box::new(pass)),
            None => why_not(db, id, after_pass).await?,
        });
    }
    Ok(out)
}

/// The pass `claim` won, from the claim's rows of its checkout.
fn pass_from_rows(
    id: CheckoutId,
    claim: Uuid,
    rows: &[tokio_postgres::Row],
) -> Result<Pass, StoreError> {
    let first = &rows[0];
    Ok(Pass {
        checkout_id: id,
        cart_id: CartId::new(first.get("cart_id")),
        pass: first.get("pass"),
        claim,
        deliveries: first.get("deliveries"),
        last_error: first.get("last_error"),
        resource_url: first.get("resource_url"),
        order_changes: first.get("order_changes"),
        policy: CheckoutPolicy::parse(first.get("policy")).map_err(corrupt)?,
        reason: first.get("checkout_reason"),
        reopened: first.get::<_, Option<String>>("ended_status").is_some(),
        orders: orders::work_from_rows(rows)?,
    })
}

/// What a claim sets, and when it may: the pass expected (`$after`) not held, or the one
/// after it held by a lease that ran out (its claimer crashed). `{c}` names the checkout row,
/// `{after}`, `{claim}` and `{lease}` the values.
fn claim_update(c: &str, after: &str, claim: &str, lease: &str) -> String {
    format!(
        "SET pass = CASE WHEN {c}.pass = {after} THEN {c}.pass + 1 ELSE {c}.pass END,
             claim = {claim}, claimed_until = now() + make_interval(secs => {lease}),
             deliveries = {c}.deliveries + 1,
             status = CASE WHEN {c}.status = 'queued' THEN 'processing' ELSE {c}.status END,
             updated_at = now()"
    )
}

fn claim_condition(c: &str, after: &str) -> String {
    format!(
        "{c}.status IN ('queued', 'processing', 'cancelling')
         AND (({c}.pass = {after} AND ({c}.claimed_until IS NULL OR {c}.claimed_until < now()))
              OR ({c}.pass = {after} + 1 AND {c}.claimed_until < now()))"
    )
}

/// What the claimed checkouts `c` return, and the pass's orders, items and retailers'
/// secrets joined to them.
fn claim_reads(order_by: &str) -> String {
    format!(
        "SELECT c.checkout_id, c.claim, c.cart_id, c.pass, c.deliveries, c.last_error,
                c.resource_url, c.order_changes, c.policy, c.reason AS checkout_reason,
                c.ended_status,
                o.retailer_id, o.order_url, o.status, o.idempotency_key, o.key_checkout_id,
                o.attempts, o.lookups, o.retailer_order_id, o.reason, o.next_attempt_at,
                o.settle_until, o.in_doubt_at, o.cancel_requested_at, o.cancel_reason,
                o.cancel_attempts,
                i.id, i.sku, i.quantity, i.amount_minor, i.currency, {RETAILER_CLAIM_COLUMNS}
         FROM claimed c
         JOIN checkout_orders o ON o.checkout_id = c.checkout_id
         LEFT JOIN cart_items i ON i.cart_id = c.cart_id AND i.retailer_id = o.retailer_id
         {RETAILER_CLAIM_JOIN}
         ORDER BY {order_by}"
    )
}

const CLAIM_RETURNING: &str = "RETURNING c.id AS checkout_id, c.claim, c.cart_id, c.pass,
           c.deliveries, c.last_error, c.resource_url, c.order_changes, c.policy, c.reason,
           c.ended_status";

/// The claim's statement: the pass, its orders with their retailers' sealed secrets (one
/// primary-key lookup per order, see [`RETAILER_CLAIM_JOIN`]) and the cart's items.
static CLAIM_STATEMENT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH claimed AS (
             UPDATE checkouts c {}
             WHERE c.id = $1 AND {}
             {CLAIM_RETURNING}
         )
         {}",
        claim_update("c", "$2", "$3", "$4"),
        claim_condition("c", "$2"),
        claim_reads("o.retailer_id, i.id"),
    )
});

/// [`CLAIM_STATEMENT`] over arrays of ids, expected passes and claims (sorted by id).
static CLAIM_MANY_STATEMENT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH claimed AS (
             UPDATE checkouts c {}
             FROM unnest($1::uuid[], $2::int[], $3::uuid[]) AS j(id, after_pass, claim)
             WHERE c.id = j.id AND {}
             {CLAIM_RETURNING}
         )
         {}",
        claim_update("c", "j.after_pass", "j.claim", "$4"),
        claim_condition("c", "j.after_pass"),
        claim_reads("c.checkout_id, o.retailer_id, i.id"),
    )
});

/// Why a copy got no claim: the checkout is final, its pass is held (look again at the
/// lease's end), or another copy made this pass.
async fn why_not(
    db: &impl GenericClient,
    id: CheckoutId,
    after_pass: i32,
) -> Result<Claim, StoreError> {
    let stmt = db
        .prepare_cached("SELECT status, pass, claimed_until FROM checkouts WHERE id = $1")
        .await?;
    let Some(row) = db.query_opt(&stmt, &[&id.as_uuid()]).await? else {
        return Ok(Claim::Missing);
    };
    let status = CheckoutStatus::parse(row.get(0)).map_err(corrupt)?;
    let pass: i32 = row.get(1);
    let until: Option<DateTime<Utc>> = row.get(2);
    Ok(match until {
        _ if status.is_final() => Claim::Final,
        // The pass this copy would make is held. Its lease may have run out between the claim
        // and this read: then this copy comes straight back and takes it over.
        Some(until) if pass == after_pass + 1 => Claim::Busy { until },
        _ => Claim::Nothing("stale copy: another copy made this pass"),
    })
}
