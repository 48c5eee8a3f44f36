//! `/retailers`: where ICON places orders. Registering one is an admin task. Shoppers may list
//! retailers (they need the ids and names to fill a cart) but not see their `order_url`: where
//! and how ICON calls a retailer is operational detail, and an internal address in it would
//! tell an attacker where to aim.

use super::{State, Validation};
use crate::auth::{Admin, User};
use crate::problem::{lost_write, ApiError, WriteOutcome};
use actix_web::{http::header, web, HttpResponse};
use chrono::{DateTime, Utc};
use icon_domain::RetailerId;
use icon_store::retailers::{self, Retailer};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
pub struct RetailerRequest {
    /// Display name.
    #[schema(example = "Acme Fashion")]
    pub name: String,
    /// Absolute http(s) URL the worker POSTs orders to (the retailer protocol).
    #[schema(example = "http://127.0.0.1:8090/acme/orders")]
    pub order_url: String,
}

#[derive(Serialize, ToSchema)]
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
#[utoipa::path(
    put, path = "/retailers/{retailer_id}", tag = "retailers",
    params(("retailer_id" = String, Path, description = "Slug `[a-z0-9-]{1,64}`")),
    request_body = RetailerRequest,
    responses(
        (status = 201, description = "Registered", body = RetailerBody),
        (status = 200, description = "Updated", body = RetailerBody),
        (status = 401, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 403, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn put_retailer(
    admin: Admin,
    state: State,
    path: web::Path<String>,
    body: web::Json<RetailerRequest>,
) -> Result<HttpResponse, ApiError> {
    let mut v = Validation::default();
    let id = v.check("retailer_id", RetailerId::parse(path.into_inner()));
    let name = body.name.trim();
    if v.text("name", name) && (name.is_empty() || name.len() > 200) {
        v.push("name", "must be 1 to 200 characters");
    }
    if v.text("order_url", &body.order_url) {
        match url::Url::parse(&body.order_url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => {}
            _ => v.push("order_url", "must be an absolute http:// or https:// URL"),
        }
    }
    v.finish()?;
    let Some(id) = id else {
        return Err(ApiError::internal("validated id missing"));
    };
    let db = state
        .pool
        .get()
        .await
        .map_err(icon_store::StoreError::from)?;
    let (retailer, created) = retailers::upsert(&db, &id, name, &body.order_url)
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
    get, path = "/retailers", tag = "retailers",
    responses(
        (status = 200, description = "Every retailer; `order_url` only for admins", body = RetailerList),
        (status = 401, body = crate::problem::Problem, content_type = "application/problem+json"),
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
