//! Recording several passes at once (group commit, issue 19): the passes of different
//! checkouts that finish at the same moment are written by one statement, and so one commit,
//! each exactly as [`complete`] would write it alone.

use super::plan::{plan, Plan, Record};
use super::record::overtaken;
use super::{complete, Completed, Pass};
use crate::orders::{OrderUpdate, UpdateColumns, APPLY_SET};
use crate::outbox;
use crate::{Conn, StoreError};
use chrono::{DateTime, Utc};
use icon_runtime::trace::{self, TraceParent};
use std::collections::HashMap;
use std::sync::LazyLock;
use tracing::Instrument;
use uuid::Uuid;

/// One pass to record: the pass, what its calls taught, and the `all_or_nothing` failure it
/// found (see [`complete`]).
#[derive(Debug, Clone)]
pub struct PassRecord {
    pub pass: Pass,
    pub updates: Vec<OrderUpdate>,
    pub failure: Option<String>,
    /// The pass's span and trace context: the messages the record writes are made in them, so
    /// they carry the checkout's trace on (`traceparent`) though a batch is written elsewhere.
    pub span: tracing::Span,
    pub trace: Option<TraceParent>,
}

impl PassRecord {
    /// The record of `pass`, in the current span and trace context.
    pub fn new(pass: Pass, updates: Vec<OrderUpdate>, failure: Option<String>) -> Self {
        Self {
            pass,
            updates,
            failure,
            span: tracing::Span::current(),
            trace: trace::current(),
        }
    }

    /// As [`complete`], in the pass's span and trace context.
    pub async fn complete(
        &self,
        db: &mut Conn,
        route: impl Fn(DateTime<Utc>) -> String,
    ) -> Result<Completed, StoreError> {
        let work = complete(
            db,
            &self.pass,
            &self.updates,
            self.failure.as_deref(),
            route,
        );
        self.in_context(work).await
    }

    /// Runs `work` in the pass's span and trace context.
    async fn in_context<F: std::future::Future>(&self, work: F) -> F::Output {
        let work = work.instrument(self.span.clone());
        match self.trace {
            Some(context) => trace::scope(context, work).await,
            None => work.await,
        }
    }

    /// As [`Self::in_context`], for synchronous `work`.
    fn in_context_sync<R>(&self, work: impl FnOnce() -> R) -> R {
        self.span.in_scope(|| match self.trace {
            Some(context) => trace::sync_scope(context, work),
            None => work(),
        })
    }
}

/// As [`complete`] for each of `records` (passes of distinct checkouts: each holds its own
/// claim), the outcomes in their order. The passes that write with the one statement share
/// its commit: a checkout that ended and was reopened by a cancellation ends through its own
/// transaction, as alone, and a pass whose claim or orders changed under it (nothing written)
/// is then released or dropped as alone. Checkouts are locked in the order of their ids, then
/// their orders, so two batches cannot deadlock on each other. An error undoes the statement's
/// records, none of the others'.
pub async fn complete_many(
    db: &mut Conn,
    records: &[PassRecord],
    route: impl Fn(DateTime<Utc>) -> String,
) -> Result<Vec<Completed>, StoreError> {
    if let [one] = records {
        return Ok(vec![one.complete(db, &route).await?]);
    }
    let mut out: Vec<Option<Completed>> = records.iter().map(|_| None).collect();
    let mut batch: Vec<(usize, Box<Record>)> = Vec::with_capacity(records.len());
    for (i, r) in records.iter().enumerate() {
        let planned = r.in_context_sync(|| plan(&r.pass, &r.updates, r.failure.as_deref(), &route));
        match planned {
            Plan::Record(record) => batch.push((i, record)),
            Plan::Reopened { .. } => {}
        }
    }
    batch.sort_by_key(|(i, _)| records[*i].pass.checkout_id.as_uuid());
    let mut written: HashMap<Uuid, (i64, bool)> = HashMap::new();
    if !batch.is_empty() {
        let span = tracing::info_span!("store.complete_passes", count = batch.len());
        let rows = write(db, records, &batch).instrument(span).await?;
        for row in rows {
            written.insert(row.get(0), (row.get(1), row.get(2)));
        }
    }
    for (i, record) in batch {
        let pass = &records[i].pass;
        out[i] = Some(match written.remove(&pass.checkout_id.as_uuid()) {
            Some((outbox_id, cancel_pending)) => record.written(outbox_id, cancel_pending),
            None => records[i].in_context(overtaken(&*db, pass, &route)).await?,
        });
    }
    let mut done = Vec::with_capacity(records.len());
    for (r, outcome) in records.iter().zip(out) {
        done.push(match outcome {
            Some(outcome) => outcome,
            None => r.complete(db, &route).await?,
        });
    }
    Ok(done)
}

/// The checkouts' columns, then the orders' (each order naming its checkout), then the
/// messages'; one row back per checkout recorded: its id, its message's outbox id, and
/// whether a cancellation asked meanwhile is still to carry out.
async fn write(
    db: &Conn,
    records: &[PassRecord],
    batch: &[(usize, Box<Record>)],
) -> Result<Vec<tokio_postgres::Row>, StoreError> {
    let n = batch.len();
    let mut c = CheckoutColumns::with_capacity(n);
    // The orders' updates, each with its checkout's id beside it.
    let (mut order_checkout, mut o) = (Vec::new(), UpdateColumns::default());
    for (i, record) in batch {
        let r = &records[*i];
        c.push(&r.pass, record);
        for u in &r.updates {
            order_checkout.push(r.pass.checkout_id.as_uuid());
            o.push(u);
        }
    }
    let grace = outbox::PUBLISH_GRACE.as_secs_f64();
    let stmt = db.prepare_cached(&COMPLETE_MANY_STATEMENT).await?;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 16] = [
        &c.id,
        &c.claim,
        &c.status,
        &c.next_due_at,
        &c.order_changes,
        &c.ended_at,
        &c.interim,
        &c.reason,
        &c.exchange,
        &c.routing_key,
        &c.message_id,
        &c.message_type,
        &c.body,
        &c.traceparent,
        &grace,
        &order_checkout,
    ];
    let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params.to_vec();
    params.extend(o.params());
    Ok(db.query(&stmt, &params).await?)
}

/// [`super::record`]'s statement over arrays: `$1..$14` one entry per checkout (sorted by
/// id), `$15` the publish grace, `$16..$29` one entry per order update.
static COMPLETE_MANY_STATEMENT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH input AS (
         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[], $5::int4[],
                              $6::timestamptz[], $7::text[], $8::text[], $9::text[], $10::text[],
                              $11::uuid[], $12::text[], $13::bytea[], $14::text[])
             AS i(id, claim, status, next_due_at, order_changes, ended_at, interim, reason,
                  exchange, routing_key, message_id, message_type, body, traceparent)
     ), recorded AS (
         UPDATE checkouts c
         SET status = coalesce(i.status, i.interim, c.status), claim = NULL, claimed_until = NULL,
             deliveries = CASE WHEN i.status IS NULL THEN 0 ELSE c.deliveries END,
             last_error = CASE WHEN i.status IS NULL THEN NULL ELSE c.last_error END,
             reason = coalesce(i.reason, c.reason),
             next_due_at = i.next_due_at, updated_at = coalesce(i.ended_at, now())
         FROM input i
         WHERE c.id = i.id AND c.claim = i.claim AND c.order_changes = i.order_changes
         RETURNING c.id
     ), applied AS (
         UPDATE checkout_orders o
         {APPLY_SET}
         FROM unnest($16::uuid[], $17::text[], $18::text[], $19::text[], $20::text[], $21::int4[],
                     $22::int4[], $23::timestamptz[], $24::timestamptz[], $25::timestamptz[],
                     $26::text[], $27::timestamptz[], $28::text[], $29::int4[])
              AS u(checkout_id, retailer_id, status, order_id, reason, attempts, lookups,
                   next_at, settle_until, in_doubt_at, was, cancel_at, cancel_reason,
                   cancel_attempts)
         WHERE o.checkout_id = u.checkout_id
           AND u.checkout_id IN (SELECT id FROM recorded)
           AND o.retailer_id = u.retailer_id
           AND o.status = u.was
     )
     INSERT INTO outbox
       (exchange, routing_key, message_id, message_type, checkout_id, body, publish_after,
        traceparent)
     SELECT i.exchange, i.routing_key, i.message_id, i.message_type, i.id, i.body,
            now() + make_interval(secs => $15), i.traceparent
     FROM input i JOIN recorded r ON r.id = i.id
     RETURNING checkout_id, id,
               message_type = 'checkout.finished' AND EXISTS (
                   SELECT 1 FROM checkout_orders c
                   WHERE c.checkout_id = outbox.checkout_id
                     AND c.cancel_requested_at IS NOT NULL
                     AND c.status NOT IN ('cancelled', 'cancel_refused', 'rejected',
                                          'failed', 'refunded'))"
    )
});

#[derive(Default)]
struct CheckoutColumns {
    id: Vec<Uuid>,
    claim: Vec<Uuid>,
    status: Vec<Option<&'static str>>,
    next_due_at: Vec<Option<DateTime<Utc>>>,
    order_changes: Vec<i32>,
    ended_at: Vec<Option<DateTime<Utc>>>,
    interim: Vec<Option<&'static str>>,
    reason: Vec<Option<String>>,
    exchange: Vec<String>,
    routing_key: Vec<String>,
    message_id: Vec<Uuid>,
    message_type: Vec<String>,
    body: Vec<Vec<u8>>,
    traceparent: Vec<Option<String>>,
}

impl CheckoutColumns {
    fn with_capacity(n: usize) -> Self {
        Self {
            id: Vec::with_capacity(n),
            claim: Vec::with_capacity(n),
            ..Self::default()
        }
    }

    fn push(&mut self, pass: &Pass, r: &Record) {
        self.id.push(pass.checkout_id.as_uuid());
        self.claim.push(pass.claim);
        self.status.push(r.status);
        self.next_due_at.push(r.next_due_at);
        self.order_changes.push(pass.order_changes);
        self.ended_at.push(r.ended_at);
        self.interim.push(r.interim);
        self.reason.push(r.reason.clone());
        self.exchange.push(r.message.exchange.clone());
        self.routing_key.push(r.message.routing_key.clone());
        self.message_id.push(r.message.message_id);
        self.message_type.push(r.message.message_type.clone());
        self.body.push(r.message.body.clone());
        self.traceparent.push(r.message.traceparent.clone());
    }
}
