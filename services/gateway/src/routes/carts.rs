//! `/carts`: a shopper's cart, filled with items from many retailers.

use super::{State, Validation};
use crate::auth::User;
use crate::extract::Json;
use crate::problem::{lost_write, ApiError, FieldError, WriteOutcome};
use actix_web::{http::header, web, HttpResponse};
use chrono::{DateTime, Utc};
use icon_domain::{CartId, Currency, Money, Quantity, RetailerId};
use icon_store::carts::{self, AddItem, Cart, CartItem, NewItem};
use icon_store::StoreError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Most items one cart holds: a cart is a purchase, not a catalogue, and every item is an order
/// line ICON sends a retailer. One more is 409 `cart_full`.
pub const MAX_CART_ITEMS: i64 = 100;

/// Longest `sku`, in characters.
pub const MAX_SKU: usize = 128;

/// Unknown fields are refused (400 `unknown_field`), so a typo such as `curency` is not
/// silently dropped.
#[derive(Deserialize, Serialize, ToSchema, Clone)]
#[serde(deny_unknown_fields)]
pub struct PriceDto {
    /// Minor units (pence, cents).
    #[schema(example = 1999, minimum = 0)]
    pub amount_minor: i64,
    /// ISO 4217 code.
    #[schema(
        example = "GBP",
        min_length = 3,
        max_length = 3,
        pattern = "^[A-Z]{3}$"
    )]
    pub currency: String,
}

/// An item to add. Unknown fields are refused (400 `unknown_field`).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "retailer_id": "acme",
    "sku": "dress-42",
    "quantity": 1,
    "unit_price": {"amount_minor": 1999, "currency": "GBP"}
}))]
pub struct ItemRequest {
    /// A registered retailer (`GET /retailers`).
    #[schema(
        example = "acme",
        min_length = 1,
        max_length = 64,
        pattern = "^[a-z0-9-]{1,64}$"
    )]
    pub retailer_id: String,
    /// The retailer's product code; surrounding spaces are trimmed.
    #[schema(example = "dress-42", min_length = 1, max_length = 128)]
    pub sku: String,
    #[schema(example = 1, minimum = 1, maximum = 10000)]
    pub quantity: i64,
    pub unit_price: PriceDto,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "item_id": 17,
    "retailer_id": "acme",
    "sku": "dress-42",
    "quantity": 1,
    "unit_price": {"amount_minor": 1999, "currency": "GBP"}
}))]
pub struct ItemBody {
    pub item_id: i64,
    pub retailer_id: String,
    pub sku: String,
    pub quantity: i32,
    pub unit_price: PriceDto,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "cart_id": 1234,
    "created_at": "2026-11-28T10:00:00Z",
    "items": [{
        "item_id": 17,
        "retailer_id": "acme",
        "sku": "dress-42",
        "quantity": 1,
        "unit_price": {"amount_minor": 1999, "currency": "GBP"}
    }]
}))]
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

/// Create a cart.
///
/// Creates an empty cart owned by the caller (the token's `sub`). No body is needed; one sent is
/// ignored. Fill it with `POST /carts/{cart_id}/items`, then check it out with
/// `POST /cart/checkout/`.
#[utoipa::path(
    post, path = "/carts", tag = "carts", operation_id = "create_cart",
    responses(
        (status = 201, description = "The new, empty cart", body = CartBody,
            headers(("Location" = String, description = "`/carts/{cart_id}`")),
            example = json!({"cart_id": 1234, "created_at": "2026-11-28T10:00:00Z", "items": []})),
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
///
/// The cart with its items, oldest first. Only its owner sees it: another user's cart is a 404,
/// as if it did not exist.
#[utoipa::path(
    get, path = "/carts/{cart_id}", tag = "carts", operation_id = "get_cart",
    params(("cart_id" = i64, Path, description = "From `POST /carts`", example = 1234)),
    responses(
        (status = 200, description = "The cart", body = CartBody),
        (status = 404, description = "`cart_not_found`: no cart with that id belongs to you", body = crate::problem::Problem, content_type = "application/problem+json"),
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
///
/// Adds one line: a retailer's SKU, a quantity and a unit price. A cart holds items from many
/// retailers and at most 100 items. Items cannot change once the cart has a live checkout.
#[utoipa::path(
    post, path = "/carts/{cart_id}/items", tag = "carts", operation_id = "add_item",
    params(("cart_id" = i64, Path, description = "From `POST /carts`", example = 1234)),
    request_body = ItemRequest,
    responses(
        (status = 201, description = "The item, added", body = ItemBody),
        (status = 404, description = "`cart_not_found`: no cart with that id belongs to you", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`cart_frozen`: the cart is being checked out or was bought; `order_unknown`: its earlier order at that retailer may have been placed; `cart_full`: the cart holds 100 items already. `checkout_id` names the checkout where there is one", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: an unknown retailer, a quantity outside 1 to 10,000, an unknown currency, a negative amount, an empty or over-long `sku`; `errors` names each field", body = crate::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn add_item(
    user: User,
    state: State,
    path: web::Path<i64>,
    body: Json<ItemRequest>,
) -> Result<HttpResponse, ApiError> {
    let cart_id = CartId::new(path.into_inner());
    let mut v = Validation::default();
    let retailer_id = v.check("retailer_id", RetailerId::parse(body.retailer_id.clone()));
    let sku = body.sku.trim().to_owned();
    if v.text("sku", &sku) && (sku.is_empty() || sku.chars().count() > MAX_SKU) {
        v.push("sku", format!("must be 1 to {MAX_SKU} characters"));
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
    match carts::add_item(&mut db, cart_id, &user.id, &item, MAX_CART_ITEMS)
        .await
        .or_outcome_unknown(lost_write::ITEM)?
    {
        AddItem::Added(item) => Ok(HttpResponse::Created().json(ItemBody::from(item))),
        AddItem::CartNotFound => Err(cart_not_found()),
        AddItem::Full => Err(ApiError::conflict(
            "cart_full",
            format!(
                "cart {cart_id} already holds {MAX_CART_ITEMS} items, the most a cart may hold; \
                 check it out and start a new cart for more"
            ),
        )),
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
