//! The OpenAPI 3.1 document, generated from the handlers' and DTOs' annotations, so it cannot
//! drift from the code. It is the contract the schema fuzz run (`scripts/fuzz-api.sh`) holds the
//! server to, and what `/docs` renders.
//!
//! - here: the operations, schemas and tags (utoipa);
//! - [`responses`]: the answers every operation of a kind shares (431 for all, 400/413/415 for
//!   a body, 401/429/500/503 for a token, 404 for a path parameter);
//! - [`webhooks`]: the callback as a `webhooks` entry, and `links` between operations.

mod responses;
mod webhooks;

use crate::routes::{
    callbacks, cancellations, carts, checkout_events, checkouts, devices, health, retailer_events,
    retailers, webhook_secret,
};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use serde_json::Value;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ICON — Integrated CheckOut Network",
        description = "One asynchronous checkout across many retailers. Submit a cart, get 202 and \
                       a resource_url, and receive the outcome by callback (the signed \
                       `checkout-finished` webhook), push to the shopper's registered devices and \
                       e-mail (or poll).\n\n\
                       Errors are `application/problem+json` with a stable `code`, listed under \
                       the reference. Input is bounded: bodies up to 64 KiB (413), JSON nested up \
                       to 32 levels, no fields beyond each schema's (400 `unknown_field`), header \
                       fields up to 16 KiB (431), the string lengths each schema gives, 100 items \
                       per cart. A path asked with a method it does not have answers 405 with an \
                       `Allow` header.",
    ),
    paths(
        checkouts::create_checkout,
        checkouts::get_checkout,
        cancellations::cancel_checkout,
        cancellations::cancel_order,
        callbacks::list_attempts,
        checkout_events::list_events,
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
        webhook_secret::get_retailer_secret,
        webhook_secret::rotate_retailer_secret,
        retailer_events::post_event,
        health::healthz,
        health::readyz,
        crate::metrics::metrics,
    ),
    components(schemas(
        crate::problem::Problem,
        crate::problem::FieldError,
        webhooks::CallbackEvent
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "checkout", description = "Asynchronous checkout and its outcome"),
        (name = "carts", description = "Carts and their items"),
        (name = "devices", description = "The caller's devices, to which checkout outcomes are pushed"),
        (name = "webhooks", description = "The secret that signs the caller's callbacks (Standard Webhooks)"),
        (name = "retailers", description = "Where orders are placed, and the secret ICON's requests to each retailer are signed with (admin)"),
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

/// The spec as utoipa builds it from the annotations, without what [`document`] adds.
pub fn spec() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The whole document, as served on `/openapi.json`.
pub fn document() -> Value {
    let mut doc = serde_json::to_value(spec()).unwrap_or(Value::Null);
    responses::add(&mut doc);
    webhooks::add(&mut doc);
    doc
}

#[cfg(test)]
mod tests {
    use crate::problem::CODES;

    #[test]
    fn documents_devices_push_and_email() {
        let spec = super::document();
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

#[cfg(test)]
mod contract {
    use serde_json::Value;

    fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
        let mut ops = vec![];
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                ops.push((method.clone(), path.clone(), op));
            }
        }
        ops
    }

    #[test]
    fn every_operation_is_described_with_its_errors() {
        let doc = super::document();
        for (method, path, op) in operations(&doc) {
            let at = format!("{method} {path}");
            assert!(
                op["summary"].as_str().is_some_and(|s| !s.is_empty()),
                "{at}: summary"
            );
            assert!(
                op["description"].as_str().is_some_and(|s| !s.is_empty()),
                "{at}: description"
            );
            let responses = op["responses"].as_object().unwrap();
            for (status, r) in responses {
                assert!(
                    r["description"].as_str().is_some_and(|d| !d.is_empty()),
                    "{at} {status}: description"
                );
                if let Some(content) = r["content"].as_object() {
                    for (media, m) in content {
                        let named = m["schema"]["$ref"].as_str().unwrap_or("");
                        let named = named.rsplit('/').next().unwrap();
                        assert!(
                            m.get("example").is_some()
                                || doc["components"]["schemas"][named].get("example").is_some(),
                            "{at} {status} {media}: example"
                        );
                    }
                }
            }
            if op.get("requestBody").is_some() {
                for status in ["400", "413", "415"] {
                    assert!(responses.contains_key(status), "{at}: {status}");
                }
                let media = &op["requestBody"]["content"]["application/json"];
                assert!(
                    media.get("example").is_some() || {
                        let name = media["schema"]["$ref"].as_str().unwrap_or("");
                        let name = name.rsplit('/').next().unwrap();
                        doc["components"]["schemas"][name].get("example").is_some()
                    },
                    "{at}: request example"
                );
            }
            if op["security"].as_array().is_some_and(|s| !s.is_empty()) {
                for status in ["401", "429", "503"] {
                    assert!(responses.contains_key(status), "{at}: {status}");
                }
                assert_eq!(
                    responses["429"]["headers"]["Retry-After"]["required"], true,
                    "{at}: 429 Retry-After"
                );
            }
        }
    }

    #[test]
    fn request_bodies_refuse_unknown_fields_in_the_document_too() {
        let doc = super::document();
        for name in [
            "ItemRequest",
            "PriceDto",
            "CheckoutRequest",
            "RetailerRequest",
            "DeviceRequest",
        ] {
            assert_eq!(
                doc["components"]["schemas"][name]["additionalProperties"], false,
                "{name}"
            );
        }
        let sku = &doc["components"]["schemas"]["ItemRequest"]["properties"]["sku"];
        assert_eq!(sku["maxLength"], 128);
        let callback =
            &doc["components"]["schemas"]["CheckoutRequest"]["properties"]["callback_url"];
        assert_eq!(callback["maxLength"], 2048, "{callback}");
        assert!(callback["example"].is_string(), "{callback}");
    }

    #[test]
    fn the_callback_is_a_webhook_with_its_signature_header() {
        let doc = super::document();
        let post = &doc["webhooks"]["checkout-finished"]["post"];
        let headers: Vec<&str> = post["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            headers,
            ["webhook-id", "webhook-timestamp", "webhook-signature"]
        );
        assert!(post["description"]
            .as_str()
            .unwrap()
            .contains("HMAC-SHA256"));
        assert!(doc["components"]["schemas"]["CallbackEvent"].is_object());
    }

    #[test]
    fn links_chain_a_cart_to_its_checkout() {
        let doc = super::document();
        let ids: Vec<&str> = operations(&doc)
            .iter()
            .filter_map(|(_, _, op)| op["operationId"].as_str())
            .collect();
        let cart = &doc["paths"]["/carts"]["post"]["responses"]["201"]["links"];
        let checkout = &doc["paths"]["/cart/checkout/"]["post"]["responses"]["202"]["links"];
        for link in [
            &cart["AddItem"],
            &cart["CheckOut"],
            &checkout["GetCheckout"],
        ] {
            let target = link["operationId"].as_str().unwrap();
            assert!(ids.contains(&target), "{target} is not an operation");
        }
    }
}
