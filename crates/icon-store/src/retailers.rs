//! Retailers registered by an admin: where their order endpoint is. Their signing secrets are
//! in [`crate::webhook_secrets`].

use crate::secrets::SecretsKey;
use crate::webhook_secrets::{self, Holder};
use crate::{Conn, GenericClient, StoreError};
use chrono::{DateTime, Utc};
use icon_domain::RetailerId;

#[derive(Debug, Clone)]
pub struct Retailer {
    pub id: RetailerId,
    pub name: String,
    pub order_url: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn from_row(r: &tokio_postgres::Row) -> Result<Retailer, StoreError> {
    Ok(Retailer {
        id: RetailerId::parse(r.get::<_, String>("id")).map_err(crate::error::corrupt)?,
        name: r.get("name"),
        order_url: r.get("order_url"),
        created_at: r.get("created_at"),
        updated_at: r.get("updated_at"),
    })
}

/// Registers or updates a retailer and makes sure it has a signing secret, in one transaction:
/// no retailer is ever registered without one. Returns the row and whether it was created.
#[tracing::instrument(name = "store.register_retailer", skip_all, fields(retailer = %id))]
pub async fn register(
    conn: &mut Conn,
    key: &SecretsKey,
    id: &RetailerId,
    name: &str,
    order_url: &str,
) -> Result<(Retailer, bool), StoreError> {
    let tx = conn.transaction().await?;
    let registered = upsert(&tx, id, name, order_url).await?;
    webhook_secrets::get_or_create(&tx, key, Holder::Retailer(id)).await?;
    tx.commit().await?;
    Ok(registered)
}

/// Inserts or updates; returns the row and whether it was created.
pub async fn upsert(
    db: &impl GenericClient,
    id: &RetailerId,
    name: &str,
    order_url: &str,
) -> Result<(Retailer, bool), StoreError> {
    let stmt = db
        .prepare_cached(
            "INSERT INTO retailers (id, name, order_url) VALUES ($1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET name = $2, order_url = $3, updated_at = now()
             RETURNING *, (xmax = 0) AS created",
        )
        .await?;
    let row = db
        .query_one(&stmt, &[&id.as_str(), &name, &order_url])
        .await?;
    Ok((from_row(&row)?, row.get("created")))
}

pub async fn list(db: &impl GenericClient) -> Result<Vec<Retailer>, StoreError> {
    let stmt = db
        .prepare_cached("SELECT * FROM retailers ORDER BY id")
        .await?;
    db.query(&stmt, &[]).await?.iter().map(from_row).collect()
}

/// The retailer registered as `id`, if any.
pub async fn get(db: &impl GenericClient, id: &RetailerId) -> Result<Option<Retailer>, StoreError> {
    let stmt = db
        .prepare_cached("SELECT * FROM retailers WHERE id = $1")
        .await?;
    db.query_opt(&stmt, &[&id.as_str()])
        .await?
        .as_ref()
        .map(from_row)
        .transpose()
}
