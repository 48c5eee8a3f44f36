//! The worker's side of a checkout: what to order from whom, each retailer's outcome, and the
//! final transition, which writes `checkout.finished` to the outbox in the same transaction.

use crate::{
    carts::CartItem, checkouts::OrderView, error::corrupt, outbox, Conn, GenericClient, StoreError,
};
use icon_contracts::{topology, CheckoutFinished, Envelope, OrderOutcome};
use icon_domain::{CartId, CheckoutId, CheckoutStatus, OrderStatus, RetailerId};
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct RetailerOrder {
    pub retailer_id: RetailerId,
    pub order_url: String,
    pub status: OrderStatus,
    pub items: Vec<CartItem>,
}

#[derive(Debug, Clone)]
pub struct CheckoutWork {
    pub id: CheckoutId,
    pub cart_id: CartId,
    pub status: CheckoutStatus,
    pub orders: Vec<RetailerOrder>,
}

/// A retailer's answer, as recorded.
#[derive(Debug, Clone)]
pub struct OrderResult {
    pub status: OrderStatus,
    pub retailer_order_id: Option<String>,
    pub reason: Option<String>,
    pub attempts: i32,
}

fn view_from_row(r: &tokio_postgres::Row) -> Result<OrderView, StoreError> {
    Ok(OrderView {
        retailer_id: RetailerId::parse(r.get::<_, String>("retailer_id")).map_err(corrupt)?,
        status: OrderStatus::parse(r.get("status")).map_err(corrupt)?,
        retailer_order_id: r.get("retailer_order_id"),
        reason: r.get("reason"),
    })
}

pub async fn list(db: &impl GenericClient, id: CheckoutId) -> Result<Vec<OrderView>, StoreError> {
    let stmt = db
        .prepare_cached(
            "SELECT retailer_id, status, retailer_order_id, reason FROM checkout_orders
             WHERE checkout_id = $1 ORDER BY retailer_id",
        )
        .await?;
    db.query(&stmt, &[&id.as_uuid()])
        .await?
        .iter()
        .map(view_from_row)
        .collect()
}

/// True if `consumer` already committed the effect of `message_id`.
pub async fn already_processed(
    db: &impl GenericClient,
    consumer: &str,
    message_id: Uuid,
) -> Result<bool, StoreError> {
    let stmt = db
        .prepare_cached("SELECT 1 FROM processed_messages WHERE consumer = $1 AND message_id = $2")
        .await?;
    Ok(db
        .query_opt(&stmt, &[&consumer, &message_id])
        .await?
        .is_some())
}

/// Everything the worker needs to place a checkout's orders, and marks it `processing` if it
/// was `queued`. `None` if there is no such checkout.
#[tracing::instrument(name = "store.start_checkout", skip_all, fields(checkout_id = %id))]
pub async fn start(
    db: &impl GenericClient,
    id: CheckoutId,
) -> Result<Option<CheckoutWork>, StoreError> {
    let stmt = db
        .prepare_cached(
            "UPDATE checkouts SET status = CASE WHEN status = 'queued' THEN 'processing' ELSE status END,
                                  updated_at = CASE WHEN status = 'queued' THEN now() ELSE updated_at END
             WHERE id = $1 RETURNING cart_id, status",
        )
        .await?;
    let Some(row) = db.query_opt(&stmt, &[&id.as_uuid()]).await? else {
        return Ok(None);
    };
    let cart_id = CartId::new(row.get(0));
    let status = CheckoutStatus::parse(row.get(1)).map_err(corrupt)?;

    let stmt = db
        .prepare_cached(
            "SELECT retailer_id, order_url, status FROM checkout_orders
             WHERE checkout_id = $1 ORDER BY retailer_id",
        )
        .await?;
    let order_rows = db.query(&stmt, &[&id.as_uuid()]).await?;
    let items = crate::carts::items(db, cart_id).await?;
    let mut orders = Vec::with_capacity(order_rows.len());
    for r in order_rows {
        let retailer_id = RetailerId::parse(r.get::<_, String>(0)).map_err(corrupt)?;
        orders.push(RetailerOrder {
            items: items
                .iter()
                .filter(|i| i.retailer_id == retailer_id)
                .cloned()
                .collect(),
            retailer_id,
            order_url: r.get(1),
            status: OrderStatus::parse(r.get(2)).map_err(corrupt)?,
        });
    }
    Ok(Some(CheckoutWork {
        id,
        cart_id,
        status,
        orders,
    }))
}

/// Records one retailer's final answer, unless one was already recorded (a redelivered message
/// racing an earlier run keeps the first answer).
pub async fn record(
    db: &impl GenericClient,
    id: CheckoutId,
    retailer: &RetailerId,
    result: &OrderResult,
) -> Result<(), StoreError> {
    let stmt = db
        .prepare_cached(
            "UPDATE checkout_orders
             SET status = $3, retailer_order_id = $4, reason = $5, attempts = attempts + $6,
                 updated_at = now()
             WHERE checkout_id = $1 AND retailer_id = $2 AND status = 'pending'",
        )
        .await?;
    db.execute(
        &stmt,
        &[
            &id.as_uuid(),
            &retailer.as_str(),
            &result.status.as_str(),
            &result.retailer_order_id,
            &result.reason,
            &result.attempts,
        ],
    )
    .await?;
    Ok(())
}

/// The final transition: sets the checkout's final status from its orders, marks `message_id`
/// processed and writes `checkout.finished` to the outbox, in one transaction. Returns `None` if
/// the checkout was already final (a duplicate run), in which case nothing changes.
#[tracing::instrument(name = "store.finish_checkout", skip_all, fields(checkout_id = %id))]
pub async fn finish(
    conn: &mut Conn,
    id: CheckoutId,
    consumer: &str,
    message_id: Uuid,
) -> Result<Option<CheckoutFinished>, StoreError> {
    let tx = conn.transaction().await?;
    let stmt = tx
        .prepare_cached(
            "SELECT status, cart_id, resource_url FROM checkouts WHERE id = $1 FOR UPDATE",
        )
        .await?;
    let row = tx.query_one(&stmt, &[&id.as_uuid()]).await?;
    let status = CheckoutStatus::parse(row.get(0)).map_err(corrupt)?;
    if status.is_final() {
        return Ok(None);
    }
    let cart_id = CartId::new(row.get(1));
    let source_url: String = row.get(2);

    let orders = list(&tx, id).await?;
    if let Some(open) = orders.iter().find(|o| !o.status.is_final()) {
        return Err(StoreError::Corrupt(format!(
            "checkout {id} cannot finish: order at {} is still pending",
            open.retailer_id
        )));
    }
    let statuses: Vec<OrderStatus> = orders.iter().map(|o| o.status).collect();
    let final_status = CheckoutStatus::from_orders(&statuses);
    let stmt = tx
        .prepare_cached("UPDATE checkouts SET status = $2, updated_at = now() WHERE id = $1")
        .await?;
    tx.execute(&stmt, &[&id.as_uuid(), &final_status.as_str()])
        .await?;
    let stmt = tx
        .prepare_cached(
            "INSERT INTO processed_messages (consumer, message_id) VALUES ($1, $2)
             ON CONFLICT DO NOTHING",
        )
        .await?;
    tx.execute(&stmt, &[&consumer, &message_id]).await?;

    let finished = CheckoutFinished {
        checkout_id: id,
        cart_id,
        status: final_status,
        source_url,
        orders: orders
            .into_iter()
            .map(|o| OrderOutcome {
                retailer_id: o.retailer_id,
                status: o.status,
                retailer_order_id: o.retailer_order_id,
                reason: o.reason,
            })
            .collect(),
    };
    outbox::enqueue(
        &tx,
        topology::EVENTS_EXCHANGE,
        topology::CHECKOUT_FINISHED,
        &Envelope::new(finished.clone()),
    )
    .await?;
    tx.commit().await?;
    Ok(Some(finished))
}

/// Checkouts left `queued` or `processing` for longer than `older_than` (their worker died with
/// the message lost, or the message was dead-lettered): each gets a fresh `checkout.requested`
/// through the outbox. Processing is idempotent, so a checkout that was merely slow is safe.
pub async fn requeue_stuck(
    conn: &mut Conn,
    older_than: std::time::Duration,
) -> Result<usize, StoreError> {
    let tx = conn.transaction().await?;
    let stmt = tx
        .prepare_cached(
            "SELECT id, cart_id FROM checkouts
             WHERE status IN ('queued', 'processing')
               AND updated_at < now() - make_interval(secs => $1)
             ORDER BY updated_at LIMIT 100
             FOR UPDATE SKIP LOCKED",
        )
        .await?;
    let rows = tx.query(&stmt, &[&older_than.as_secs_f64()]).await?;
    let touch = tx
        .prepare_cached("UPDATE checkouts SET updated_at = now() WHERE id = $1")
        .await?;
    for row in &rows {
        let id = CheckoutId::from_uuid(row.get(0));
        tracing::warn!(checkout_id = %id, "checkout was stuck; queued again");
        let message = Envelope::new(icon_contracts::CheckoutRequested {
            checkout_id: id,
            cart_id: CartId::new(row.get(1)),
        });
        outbox::enqueue(
            &tx,
            topology::EVENTS_EXCHANGE,
            topology::CHECKOUT_REQUESTED,
            &message,
        )
        .await?;
        tx.execute(&touch, &[&id.as_uuid()]).await?;
    }
    tx.commit().await?;
    Ok(rows.len())
}
