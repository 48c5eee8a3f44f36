//! The OpenAPI 3.1 document, generated from the handlers' and DTOs' annotations, so it cannot
//! drift from the code.

use crate::routes::{callbacks, carts, checkouts, devices, health, retailers, webhook_secret};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ICON — Integrated CheckOut Network",
        description = "One asynchronous checkout across many retailers. Submit a cart, get 202 and \
                       a resource_url, and receive the outcome by callback, push to the shopper's \
                       registered devices and e-mail (or poll).",
    ),
    paths(
        checkouts::create_checkout,
        checkouts::get_checkout,
        callbacks::list_attempts,
        callbacks::redeliver_callback,
        callbacks::redeliver_push,
        callbacks::redeliver_email,
        devices::put_device,
        devices::delete_device,
        devices::list_devices,
        webhook_secret::get_secret,
        webhook_secret::rotate_secret,
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
        (name = "devices", description = "The caller's devices, to which checkout outcomes are pushed"),
        (name = "webhooks", description = "The secret that signs the caller's callbacks (Standard Webhooks)"),
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
                    .description(Some("A JWT from the identity provider (RS256 or ES256, verified against its JWK set; `iss` and `aud` must match the gateway's ICON_JWT_ISSUER and ICON_JWT_AUDIENCE; the header's `kid` names the key) or, in development, HS256 signed with ICON_JWT_SECRET. `exp` is required and `nbf` honoured (30 s leeway); `alg: none` is refused. `sub` is the shopper, who owns their carts, checkouts and devices; a `scope` containing `partner` marks a partner's client-credentials token, which owns its own carts and checkouts (as `partner:<client_id>`); `admin` in `scope` unlocks retailer management. An optional `email` gets a shopper's checkout outcomes e-mailed. Requests beyond the rate limit (per client IP and per token subject) answer 429 with `Retry-After`."))
                    .build(),
            ),
        );
    }
}

/// The spec as JSON.
pub fn spec() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

#[cfg(test)]
mod tests {
    use crate::problem::CODES;
    use serde_json::Value;

    #[test]
    fn documents_devices_push_and_email() {
        let spec: Value = serde_json::from_str(&super::spec().to_json().unwrap()).unwrap();
        for (path, method) in [
            ("/me/devices", "get"),
            ("/me/devices/{token}", "put"),
            ("/me/devices/{token}", "delete"),
            ("/cart/checkout/{checkout_id}/push/redeliver", "post"),
            ("/cart/checkout/{checkout_id}/email/redeliver", "post"),
        ] {
            assert!(spec["paths"][path][method].is_object(), "{method} {path}");
        }
        let schemas = &spec["components"]["schemas"];
        for (schema, field) in [
            ("CheckoutBody", "push"),
            ("CheckoutBody", "email"),
            ("AttemptBody", "device"),
            ("PushBody", "last_error"),
            ("EmailBody", "next_attempt_at"),
            ("DeviceBody", "platform"),
            ("PushRedelivery", "push"),
            ("EmailRedelivery", "email"),
        ] {
            assert!(
                schemas[schema]["properties"][field].is_object(),
                "{schema}.{field}"
            );
        }
        assert!(schemas["PushBody"]["example"].is_object());
        for code in [
            "push_not_found",
            "push_not_failed",
            "email_not_found",
            "email_not_failed",
            "callback_not_found",
            "callback_not_failed",
        ] {
            assert!(
                CODES.iter().any(|(c, _, _)| *c == code),
                "{code} not on /docs"
            );
        }
    }
}
