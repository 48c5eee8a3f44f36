//! `/carts`: a shopper's cart, filled with items from many retailers.

use super::{State, Validation};
use crate::auth::User;
use crate::problem::{lost_write, ApiError, FieldError, WriteOutcome};
use actix_web::{http::header, web, HttpResponse};
use chrono::{DateTime, Utc};
use icon_domain::{CartId, Currency, Money, Quantity, RetailerId};
use icon_store::carts::{self, AddItem, Cart, CartItem, NewItem};
use icon_store::StoreError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Deserialize, Serialize, ToSchema, Clone)]
pub struct PriceDto {
    /// Minor units (pence, cents).
    #[schema(example = 1999)]
    pub amount_minor: i64,
    /// ISO 4217 code.
    #[schema(example = "GBP")]
    pub currency: String,
}

#[derive(Deserialize, ToSchema)]
pub struct ItemRequest {
    #[schema(example = "acme")]
    pub retailer_id: String,
    #[schema(example = "dress-42")]
    pub sku: String,
    #[schema(example = 1, minimum = 1)]
    pub quantity: i64,
    pub unit_price: PriceDto,
}

#[derive(Serialize, ToSchema)]
pub struct ItemBody {
    pub item_id: i64,
    pub retailer_id: String,
    pub sku: String,
    pub quantity: i32,
    pub unit_price: PriceDto,
}

#[derive(Serialize, ToSchema)]
pub struct CartBody {
    #[schema(example = 1234)]
    pub cart_id: i64,
    pub created_at: DateTime<Utc>,
    pub items: Vec<ItemBody>,
}

impl From<CartItem> for ItemBody {
    fn from(i: CartItem) -> Self {
        Self {
            item_id: i.id,
            retailer_id: i.retailer_id.to_string(),
            sku: i.sku,
            quantity: i.quantity.get(),
            unit_price: PriceDto {
                amount_minor: i.unit_price.amount_minor(),
                currency: i.unit_price.currency().to_string(),
            },
        }
    }
}

impl From<Cart> for CartBody {
    fn from(c: Cart) -> Self {
        Self {
            cart_id: c.id.get(),
            created_at: c.created_at,
            items: c.items.into_iter().map(Into::into).collect(),
        }
    }
}

/// Create an empty cart owned by the caller.
#[utoipa::path(
    post, path = "/carts", tag = "carts",
    responses(
        (status = 201, body = CartBody, headers(("Location" = String, description = "/carts/{cart_id}"))),
        (status = 401, body = crate::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn create_cart(user: User, state: State) -> Result<HttpResponse, ApiError> {
    let db = state.pool.get().await.map_err(StoreError::from)?;
    let cart = carts::create(&db, &user.id)
        .await
        .or_outcome_unknown(lost_write::CART)?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/carts/{}", cart.id)))
        .json(CartBody::from(cart)))
}

/// Show a cart.
#[utoipa::path(
    get, path = "/carts/{cart_id}", tag = "carts",
    params(("cart_id" = i64, Path)),
    responses(
        (status = 200, body = CartBody),
        (status = 401, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get_cart(
    user: User,
    state: State,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let db = state.pool.get().await.map_err(StoreError::from)?;
    match carts::get(&db, CartId::new(path.into_inner()), &user.id).await? {
        Some(cart) => Ok(HttpResponse::Ok().json(CartBody::from(cart))),
        None => Err(cart_not_found()),
    }
}

pub(crate) fn cart_not_found() -> ApiError {
    ApiError::not_found("cart_not_found", "no cart with that id belongs to you")
}

/// Add an item to a cart.
#[utoipa::path(
    post, path = "/carts/{cart_id}/items", tag = "carts",
    params(("cart_id" = i64, Path)),
    request_body = ItemRequest,
    responses(
        (status = 201, body = ItemBody),
        (status = 400, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 401, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The cart is being checked out or was bought (`cart_frozen`), or its earlier order at that retailer may have been placed (`order_unknown`)", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unknown retailer, quantity < 1, bad currency, ...", body = crate::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn add_item(
    user: User,
    state: State,
    path: web::Path<i64>,
    body: web::Json<ItemRequest>,
) -> Result<HttpResponse, ApiError> {
    let cart_id = CartId::new(path.into_inner());
    let mut v = Validation::default();
    let retailer_id = v.check("retailer_id", RetailerId::parse(body.retailer_id.clone()));
    let sku = body.sku.trim().to_owned();
    if v.text("sku", &sku) && (sku.is_empty() || sku.len() > 128) {
        v.push("sku", "must be 1 to 128 characters");
    }
    let quantity = v.check("quantity", Quantity::new(body.quantity));
    let currency = v.check(
        "unit_price.currency",
        Currency::parse(&body.unit_price.currency),
    );
    let price = currency.and_then(|c| {
        v.check(
            "unit_price.amount_minor",
            Money::new(body.unit_price.amount_minor, c),
        )
    });
    v.finish()?;
    let (Some(retailer_id), Some(quantity), Some(unit_price)) = (retailer_id, quantity, price)
    else {
        return Err(ApiError::internal("validated fields missing"));
    };
    let item = NewItem {
        retailer_id,
        sku,
        quantity,
        unit_price,
    };
    let mut db = state.pool.get().await.map_err(StoreError::from)?;
    match carts::add_item(&mut db, cart_id, &user.id, &item)
        .await
        .or_outcome_unknown(lost_write::ITEM)?
    {
        AddItem::Added(item) => Ok(HttpResponse::Created().json(ItemBody::from(item))),
        AddItem::CartNotFound => Err(cart_not_found()),
        AddItem::UnknownRetailer => Err(ApiError::unprocessable(
            "validation_failed",
            format!(
                "retailer_id: no retailer `{}` is registered",
                item.retailer_id
            ),
            vec![FieldError {
                field: "retailer_id".into(),
                message: format!(
                    "no retailer `{}` is registered; see GET /retailers",
                    item.retailer_id
                ),
            }],
        )),
        AddItem::Frozen(checkout) => Err(ApiError::conflict(
            "cart_frozen",
            format!("cart {cart_id} has a live checkout {checkout}; it can no longer change"),
        )
        .with("checkout_id", checkout.to_string())),
        AddItem::OrderUnknown(checkout) => Err(ApiError::conflict(
            "order_unknown",
            format!(
                "the order at `{}` from checkout {checkout} may have been placed (its outcome is \
                 unknown), so checking this cart out again re-sends that same order: its items \
                 for that retailer can no longer change. Use a new cart for other items from it",
                item.retailer_id
            ),
        )
        .with("checkout_id", checkout.to_string())),
    }
}
