//! Carts and their items. A cart belongs to one user; it is frozen while a checkout of it is
//! live (queued, processing or finished other than failed).

use crate::{error::corrupt, Conn, GenericClient, StoreError};
use chrono::{DateTime, Utc};
use icon_domain::{
    CartId, CheckoutId, CheckoutStatus, Currency, Money, OrderStatus, Quantity, RetailerId, UserId,
};

#[derive(Debug, Clone)]
pub struct CartItem {
    pub id: i64,
    pub retailer_id: RetailerId,
    pub sku: String,
    pub quantity: Quantity,
    pub unit_price: Money,
}

#[derive(Debug, Clone)]
pub struct Cart {
    pub id: CartId,
    pub created_at: DateTime<Utc>,
    pub items: Vec<CartItem>,
}

pub struct NewItem {
    pub retailer_id: RetailerId,
    pub sku: String,
    pub quantity: Quantity,
    pub unit_price: Money,
}

pub enum AddItem {
    Added(CartItem),
    CartNotFound,
    UnknownRetailer,
    /// The cart has a live checkout: changing it now would change what is being bought.
    Frozen(CheckoutId),
    /// This cart's latest order at the item's retailer is `unknown` (it may have been placed):
    /// a new checkout re-sends that order with the same key and body, so what is ordered from
    /// that retailer can no longer change.
    OrderUnknown(CheckoutId),
    /// The cart already holds `max_items` items.
    Full,
}

pub(crate) fn item_from_row(r: &tokio_postgres::Row) -> Result<CartItem, StoreError> {
    let currency: String = r.get("currency");
    Ok(CartItem {
        id: r.get("id"),
        retailer_id: RetailerId::parse(r.get::<_, String>("retailer_id")).map_err(corrupt)?,
        sku: r.get("sku"),
        quantity: Quantity::new(r.get::<_, i32>("quantity").into()).map_err(corrupt)?,
        unit_price: Money::new(
            r.get("amount_minor"),
            Currency::parse(&currency).map_err(corrupt)?,
        )
        .map_err(corrupt)?,
    })
}

pub async fn create(db: &impl GenericClient, owner: &UserId) -> Result<Cart, StoreError> {
    let stmt = db
        .prepare_cached("INSERT INTO carts (owner) VALUES ($1) RETURNING id, created_at")
        .await?;
    let row = db.query_one(&stmt, &[&owner.as_str()]).await?;
    Ok(Cart {
        id: CartId::new(row.get("id")),
        created_at: row.get("created_at"),
        items: vec![],
    })
}

/// The cart if it exists and belongs to `owner`; someone else's cart is indistinguishable from a
/// missing one.
pub async fn get(
    db: &impl GenericClient,
    id: CartId,
    owner: &UserId,
) -> Result<Option<Cart>, StoreError> {
    let stmt = db
        .prepare_cached("SELECT id, created_at FROM carts WHERE id = $1 AND owner = $2")
        .await?;
    let Some(row) = db.query_opt(&stmt, &[&id.get(), &owner.as_str()]).await? else {
        return Ok(None);
    };
    let items = items(db, id).await?;
    Ok(Some(Cart {
        id,
        created_at: row.get("created_at"),
        items,
    }))
}

pub async fn items(db: &impl GenericClient, id: CartId) -> Result<Vec<CartItem>, StoreError> {
    let stmt = db
        .prepare_cached("SELECT * FROM cart_items WHERE cart_id = $1 ORDER BY id")
        .await?;
    db.query(&stmt, &[&id.get()])
        .await?
        .iter()
        .map(item_from_row)
        .collect()
}

/// Locks the cart row for the rest of the transaction, so an item cannot be added while a
/// checkout of the same cart is being created, and two checkouts of one cart serialise.
pub(crate) async fn lock_owned(
    db: &impl GenericClient,
    id: CartId,
    owner: &UserId,
) -> Result<bool, StoreError> {
    let stmt = db
        .prepare_cached("SELECT 1 FROM carts WHERE id = $1 AND owner = $2 FOR UPDATE")
        .await?;
    Ok(db
        .query_opt(&stmt, &[&id.get(), &owner.as_str()])
        .await?
        .is_some())
}

pub async fn add_item(
    conn: &mut Conn,
    cart: CartId,
    owner: &UserId,
    item: &NewItem,
    max_items: i64,
) -> Result<AddItem, StoreError> {
    let tx = conn.transaction().await?;
    if !lock_owned(&tx, cart, owner).await? {
        return Ok(AddItem::CartNotFound);
    }
    if let Some((live, _)) = live_checkout(&tx, cart).await? {
        return Ok(AddItem::Frozen(live));
    }
    // Counted under the cart's row lock, so concurrent adds cannot both take the last place.
    let stmt = tx
        .prepare_cached("SELECT count(*) FROM cart_items WHERE cart_id = $1")
        .await?;
    let items: i64 = tx.query_one(&stmt, &[&cart.get()]).await?.get(0);
    if items >= max_items {
        return Ok(AddItem::Full);
    }
    let stmt = tx
        .prepare_cached(
            "SELECT c.id, o.status FROM checkout_orders o JOIN checkouts c ON c.id = o.checkout_id
             WHERE c.cart_id = $1 AND o.retailer_id = $2
             ORDER BY c.created_at DESC LIMIT 1",
        )
        .await?;
    if let Some(row) = tx
        .query_opt(&stmt, &[&cart.get(), &item.retailer_id.as_str()])
        .await?
    {
        if row.get::<_, &str>(1) == OrderStatus::Unknown.as_str() {
            return Ok(AddItem::OrderUnknown(CheckoutId::from_uuid(row.get(0))));
        }
    }
    let stmt = tx
        .prepare_cached("SELECT 1 FROM retailers WHERE id = $1")
        .await?;
    if tx
        .query_opt(&stmt, &[&item.retailer_id.as_str()])
        .await?
        .is_none()
    {
        return Ok(AddItem::UnknownRetailer);
    }
    let stmt = tx
        .prepare_cached(
            "INSERT INTO cart_items (cart_id, retailer_id, sku, quantity, amount_minor, currency)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
        )
        .await?;
    let row = tx
        .query_one(
            &stmt,
            &[
                &cart.get(),
                &item.retailer_id.as_str(),
                &item.sku,
                &item.quantity.get(),
                &item.unit_price.amount_minor(),
                &item.unit_price.currency().as_str(),
            ],
        )
        .await?;
    let added = item_from_row(&row)?;
    tx.commit().await?;
    Ok(AddItem::Added(added))
}

/// The cart's live (not failed) checkout, if any: while there is one the cart is frozen.
pub async fn live_checkout(
    db: &impl GenericClient,
    cart: CartId,
) -> Result<Option<(CheckoutId, CheckoutStatus)>, StoreError> {
    let stmt = db
        .prepare_cached(
            "SELECT id, status FROM checkouts WHERE cart_id = $1 AND status <> 'failed'",
        )
        .await?;
    db.query_opt(&stmt, &[&cart.get()])
        .await?
        .map(|r| {
            Ok((
                CheckoutId::from_uuid(r.get(0)),
                CheckoutStatus::parse(r.get(1)).map_err(corrupt)?,
            ))
        })
        .transpose()
}
