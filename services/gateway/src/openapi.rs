//! The OpenAPI 3.1 document, generated from the handlers' and DTOs' annotations, so it cannot
//! drift from the code.

use crate::routes::{callbacks, carts, checkouts, health, retailers};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ICON — Integrated CheckOut Network",
        description = "One asynchronous checkout across many retailers. Submit a cart, get 202 and \
                       a resource_url, and receive the outcome by callback (or poll).",
    ),
    paths(
        checkouts::create_checkout,
        checkouts::get_checkout,
        callbacks::list_attempts,
        callbacks::redeliver_callback,
        carts::create_cart,
        carts::get_cart,
        carts::add_item,
        retailers::put_retailer,
        retailers::list_retailers,
        health::healthz,
        health::readyz,
    ),
    components(schemas(crate::problem::Problem, crate::problem::FieldError)),
    modifiers(&BearerAuth),
    tags(
        (name = "checkout", description = "Asynchronous checkout and its outcome"),
        (name = "carts", description = "Carts and their items"),
        (name = "retailers", description = "Where orders are placed (admin)"),
        (name = "operations", description = "Probes"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("HS256 JWT signed with ICON_JWT_SECRET; `sub` is the user, `scope` may contain `admin`, `exp` is required."))
                    .build(),
            ),
        );
    }
}

/// The spec as JSON.
pub fn spec() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
