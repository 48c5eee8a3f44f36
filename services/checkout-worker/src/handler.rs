//! Handling one `checkout.requested` message.

use crate::retailer::RetailerClient;
use futures_util::future::join_all;
use icon_broker::lapin::message::Delivery;
use icon_broker::{Disposition, Handler};
use icon_contracts::{messages::parse, CheckoutRequested, Envelope};
use icon_store::{orders, Pool, StoreError};

/// The consumer name under which processed message ids are recorded.
pub const CONSUMER: &str = "checkout-worker";

pub struct CheckoutHandler {
    pool: Pool,
    retailers: RetailerClient,
}

impl CheckoutHandler {
    pub fn new(pool: Pool, retailers: RetailerClient) -> Self {
        Self { pool, retailers }
    }

    async fn process(&self, msg: &Envelope<CheckoutRequested>) -> Result<Disposition, StoreError> {
        let id = msg.data.checkout_id;
        let work = {
            let db = self.pool.get().await?;
            if orders::already_processed(&db, CONSUMER, msg.message_id).await? {
                tracing::info!("duplicate message; already processed");
                return Ok(Disposition::Ack);
            }
            match orders::start(&db, id).await? {
                Some(w) => w,
                None => return Ok(Disposition::Poison(format!("checkout {id} does not exist"))),
            }
            // The connection goes back to the pool here: none is held during retailer calls.
        };
        if work.status.is_final() {
            tracing::info!(status = %work.status, "checkout already final; nothing to do");
            return Ok(Disposition::Ack);
        }
        let pending: Vec<_> = work
            .orders
            .iter()
            .filter(|o| !o.status.is_final())
            .collect();
        tracing::info!(
            retailers = work.orders.len(),
            pending = pending.len(),
            "placing orders"
        );
        let results = join_all(pending.into_iter().map(|order| async move {
            let result = self.retailers.place(id, order).await;
            tracing::info!(retailer = %order.retailer_id, status = %result.status, "order outcome");
            let db = self.pool.get().await?;
            orders::record(&db, id, &order.retailer_id, &result).await
        }))
        .await;
        for r in results {
            r?;
        }
        let mut db = self.pool.get().await?;
        match orders::finish(&mut db, id, CONSUMER, msg.message_id).await? {
            Some(done) => tracing::info!(status = %done.status, "checkout finished"),
            None => tracing::info!("checkout was finished concurrently; nothing to do"),
        }
        Ok(Disposition::Ack)
    }
}

impl Handler for CheckoutHandler {
    async fn handle(&self, delivery: &Delivery) -> Disposition {
        let msg = match parse::<CheckoutRequested>(&delivery.data) {
            Ok(m) => m,
            Err(e) => return Disposition::Poison(e.to_string()),
        };
        match self.process(&msg).await {
            Ok(d) => d,
            Err(e) if e.is_unavailable() => Disposition::Retry(icon_store::pool::source_chain(&e)),
            Err(e) => {
                // A database error that is not an outage (a bug or bad data): retrying the same
                // message would loop, so it goes to the dead-letter queue for a human.
                Disposition::Poison(icon_store::pool::source_chain(&e))
            }
        }
    }
}
