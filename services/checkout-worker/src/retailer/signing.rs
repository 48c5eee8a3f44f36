//! Signing ICON's requests to retailers (Standard Webhooks, see `icon_webhooks`): which secrets
//! a pass signs with, and the headers a request carries.
//!
//! The secrets come with the pass: its claim reads each order's retailer's sealed secrets in the
//! statement that already reads the orders (`icon_store::webhook_secrets::RETAILER_CLAIM_JOIN`),
//! so signing adds no round trip per call. A retailer registered before retailers had secrets
//! has none until first use: the first pass that calls it creates it (one statement, once per
//! such retailer ever, the same `get_or_create` as `GET /retailers/{id}/webhook-secret`). A
//! request is never sent unsigned: without its secrets the pass fails before any call and is
//! tried again (see the handler).

use icon_domain::RetailerId;
use icon_http::HeaderName;
use icon_store::secrets::{SecretsKey, SigningSecrets};
use icon_store::webhook_secrets::{self, Holder};
use icon_store::{Pool, StoreError};
use std::collections::HashMap;

/// Opens (or, for a retailer without one yet, creates) the secrets a pass signs with.
#[derive(Clone)]
pub struct Signer {
    /// `ICON_SECRETS_KEY`.
    key: SecretsKey,
    pool: Pool,
}

impl Signer {
    pub fn new(key: SecretsKey, pool: Pool) -> Self {
        Self { key, pool }
    }

    /// The secrets of every retailer of `orders` (those a pass calls), by retailer.
    #[tracing::instrument(name = "retailer.signing_secrets", skip_all)]
    pub async fn for_orders(
        &self,
        orders: impl Iterator<Item = &icon_store::orders::OrderWork>,
    ) -> Result<HashMap<RetailerId, SigningSecrets>, StoreError> {
        let mut secrets = HashMap::new();
        for order in orders {
            let opened = match order.signing.open(&self.key)? {
                Some(s) => s,
                None => {
                    let db = self.pool.get().await?;
                    let holder = Holder::Retailer(&order.retailer_id);
                    let created = webhook_secrets::get_or_create(&db, &self.key, holder).await?;
                    SigningSecrets {
                        current: created.secret,
                        previous: None,
                    }
                }
            };
            secrets.insert(order.retailer_id.clone(), opened);
        }
        Ok(secrets)
    }
}

/// The `webhook-id`, `webhook-timestamp` and `webhook-signature` headers of one request whose
/// body is exactly `body` (empty for a lookup, a GET: the signed content is then
/// `"{webhook-id}.{webhook-timestamp}."`). Every request gets an id of its own: retailers
/// de-duplicate orders on `Idempotency-Key`, not on `webhook-id`.
pub fn headers(secrets: &SigningSecrets, body: &[u8]) -> Vec<(HeaderName, String)> {
    let id = format!("msg_{}", uuid::Uuid::now_v7().simple());
    secrets
        .signed_headers(id, chrono::Utc::now().timestamp(), body)
        .into_iter()
        .map(|(name, value)| (HeaderName::from_static(name), value))
        .collect()
}
