//! `/retailers`: where ICON places orders. Registering one is an admin task. Shoppers may list
//! retailers (they need the ids and names to fill a cart) but not see their `order_url`: where
//! and how ICON calls a retailer is operational detail, and an internal address in it would
//! tell an attacker where to aim.
//!
//! An `order_url` must pass the retailers' network policy (`ICON_RETAILER_ALLOW_NETWORKS`,
//! `ICON_RETAILER_ALLOW_HTTP`) to be stored: public https unless the operator allows more, so a
//! stolen admin token cannot point the worker into the internal network. The worker checks
//! again before every call.

use super::{State, Validation};
use crate::auth::{Admin, User};
use crate::extract::Json;
use crate::problem::{lost_write, ApiError, WriteOutcome};
use actix_web::{http::header, web, HttpResponse};
use chrono::{DateTime, Utc};
use icon_domain::callback::OrderUrl;
use icon_domain::RetailerId;
use icon_store::retailers::{self, Retailer};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Longest retailer `name`, in characters.
pub const MAX_NAME: usize = 200;
/// Longest `order_url`, in bytes.
pub const MAX_ORDER_URL: usize = 2048;

/// A retailer's registration. Unknown fields are refused (400 `unknown_field`).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Acme Fashion", "order_url": "https://orders.acme.example/icon"}))]
pub struct RetailerRequest {
    /// Display name; surrounding spaces are trimmed.
    #[schema(example = "Acme Fashion", min_length = 1, max_length = 200)]
    pub name: String,
    /// Absolute https URL the worker POSTs orders to (the retailer protocol): at a public
    /// address, unless the operator allows the network (`ICON_RETAILER_ALLOW_NETWORKS`); plain
    /// http only with `ICON_RETAILER_ALLOW_HTTP=true`.
    #[schema(example = "https://orders.acme.example/icon", max_length = 2048)]
    pub order_url: String,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "retailer_id": "acme",
    "name": "Acme Fashion",
    "order_url": "https://orders.acme.example/icon",
    "created_at": "2026-11-28T10:00:00Z",
    "updated_at": "2026-11-28T10:00:00Z"
}))]
pub struct RetailerBody {
    #[schema(example = "acme")]
    pub retailer_id: String,
    pub name: String,
    /// Where the worker POSTs orders. Only in answers to admins (tokens with the `admin`
    /// scope); absent for shoppers.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "http://127.0.0.1:8090/acme/orders")]
    pub order_url: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"retailers": [{
    "retailer_id": "acme",
    "name": "Acme Fashion",
    "created_at": "2026-11-28T10:00:00Z",
    "updated_at": "2026-11-28T10:00:00Z"
}]}))]
pub struct RetailerList {
    pub retailers: Vec<RetailerBody>,
}

impl RetailerBody {
    /// The retailer as `viewer` may see it: `order_url` only for admins.
    fn for_viewer(r: Retailer, viewer: &User) -> Self {
        Self {
            retailer_id: r.id.to_string(),
            name: r.name,
            order_url: viewer.admin.then_some(r.order_url),
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// Register or update a retailer (admin).
///
/// Registers the retailer under `retailer_id` (201), or updates its name and order URL (200):
/// idempotent. Needs a token with the `admin` scope. Orders already placed keep going to the
/// URL they were placed at. A new retailer gets its signing secret at once (read it from
/// `GET /retailers/{retailer_id}/webhook-secret`): every request ICON sends it is signed.
#[utoipa::path(
    put, path = "/retailers/{retailer_id}", tag = "retailers", operation_id = "put_retailer",
    params(("retailer_id" = String, Path, description = "Slug `[a-z0-9-]{1,64}`", example = "acme")),
    request_body = RetailerRequest,
    responses(
        (status = 201, description = "Registered", body = RetailerBody,
            headers(("Location" = String, description = "`/retailers/{retailer_id}`"))),
        (status = 200, description = "Updated", body = RetailerBody,
            headers(("Location" = String, description = "`/retailers/{retailer_id}`"))),
        (status = 403, description = "`forbidden`: the token lacks the `admin` scope", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: a `retailer_id` that is not a slug, an empty or over-long `name`, an `order_url` that is not an absolute http(s) URL of at most 2,048 bytes, or that the retailers' network policy refuses (an address that is not public unless `ICON_RETAILER_ALLOW_NETWORKS` allows its network, plain `http` unless `ICON_RETAILER_ALLOW_HTTP=true`); `errors` names each, and nothing is stored", body = crate::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn put_retailer(
    admin: Admin,
    state: State,
    path: web::Path<String>,
    body: Json<RetailerRequest>,
) -> Result<HttpResponse, ApiError> {
    let mut v = Validation::default();
    let id = v.check("retailer_id", RetailerId::parse(path.into_inner()));
    let name = body.name.trim();
    if v.text("name", name) && (name.is_empty() || name.chars().count() > MAX_NAME) {
        v.push("name", format!("must be 1 to {MAX_NAME} characters"));
    }
    let order_url = if body.order_url.len() > MAX_ORDER_URL {
        v.push(
            "order_url",
            format!("must be at most {MAX_ORDER_URL} bytes"),
        );
        None
    } else if v.text("order_url", &body.order_url) {
        v.check(
            "order_url",
            OrderUrl::parse(&body.order_url, &state.retailer_policy),
        )
    } else {
        None
    };
    v.finish()?;
    let (Some(id), Some(order_url)) = (id, order_url) else {
        return Err(ApiError::internal("validated fields missing"));
    };
    let mut db = state
        .pool
        .get()
        .await
        .map_err(icon_store::StoreError::from)?;
    let (retailer, created) =
        retailers::register(&mut db, &state.secrets_key, &id, name, order_url.as_str())
            .await
            .or_outcome_unknown(lost_write::RETAILER)?;
    let mut resp = if created {
        HttpResponse::Created()
    } else {
        HttpResponse::Ok()
    };
    Ok(resp
        .insert_header((header::LOCATION, format!("/retailers/{id}")))
        .json(RetailerBody::for_viewer(retailer, &admin.0)))
}

/// List retailers.
///
/// Any authenticated caller may list retailers, by id and name. `order_url` is included only
/// for admins (tokens with the `admin` scope).
#[utoipa::path(
    get, path = "/retailers", tag = "retailers", operation_id = "list_retailers",
    responses(
        (status = 200, description = "Every retailer; `order_url` only for admins", body = RetailerList),
    ),
    security(("bearer" = []))
)]
pub async fn list_retailers(user: User, state: State) -> Result<HttpResponse, ApiError> {
    let db = state
        .pool
        .get()
        .await
        .map_err(icon_store::StoreError::from)?;
    let list = retailers::list(&db).await?;
    Ok(HttpResponse::Ok().json(RetailerList {
        retailers: list
            .into_iter()
            .map(|r| RetailerBody::for_viewer(r, &user))
            .collect(),
    }))
}
