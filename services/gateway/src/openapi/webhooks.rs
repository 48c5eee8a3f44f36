//! What the document says beyond the handlers' annotations: the callback ICON sends, as an
//! OpenAPI 3.1 `webhooks` entry (utoipa has no model for it), and the `links` that chain the
//! operations a client calls in order (a cart, its items, a checkout, its resource), which a
//! stateful fuzzer follows.

use serde_json::{json, Value};

/// Adds `webhooks` and the links to the document.
pub(super) fn add(doc: &mut Value) {
    doc["webhooks"] = json!({ "checkout-finished": callback() });
    for (path, method, status, links) in links() {
        // `get_mut`, not indexing, which would insert a path that is not there.
        let response = doc
            .get_mut("paths")
            .and_then(|p| p.get_mut(path))
            .and_then(|p| p.get_mut(method))
            .and_then(|o| o.get_mut("responses"))
            .and_then(|r| r.get_mut(status))
            .and_then(Value::as_object_mut);
        if let Some(response) = response {
            response.insert("links".into(), links);
        }
    }
}

fn callback() -> Value {
    let header = |name: &str, description: &str, example: &str| {
        json!({
            "name": name, "in": "header", "required": true, "description": description,
            "schema": {"type": "string"}, "example": example,
        })
    };
    json!({"post": {
        "operationId": "checkout_finished",
        "summary": "The outcome of a checkout, POSTed to its callback_url",
        "description": "When a checkout reaches its final state, ICON POSTs its outcome to the \
            `callback_url` it was submitted with, following Standard Webhooks \
            (standardwebhooks.com). A checkout cancelled after it ended (`DELETE \
            /cart/checkout/{checkout_id}`) announces the cancellation's end as its next \
            numbered event (`checkout.cancelled` or `checkout.partially_cancelled`, `sequence` \
            2 or later), with or without `order_updates`; event 1 stays its first end.\n\n\
            **Verify the signature** before trusting the body: compute \
            `base64(HMAC-SHA256(secret, \"{webhook-id}.{webhook-timestamp}.{raw body}\"))`, where \
            `secret` is the base64-decoded part of your `whsec_…` secret (`GET /webhook-secret`), \
            and compare it in constant time with each space-separated `v1,` entry of \
            `webhook-signature`; refuse timestamps more than a few minutes from now (replays). \
            During a secret rotation (`POST /webhook-secret/rotate`) the header holds one \
            signature per valid secret, so either secret verifies.\n\n\
            **Delivery** is at least once: de-duplicate on `webhook-id`, which is the same on \
            every retry. Any 2xx ends delivery; 410 Gone stops it; anything else, a timeout or \
            a connection error is retried on `ICON_CALLBACK_RETRY_SCHEDULE` until \
            `ICON_CALLBACK_GIVE_UP_AFTER`, honouring `Retry-After` on 429 and 503. Redirects are \
            not followed.",
        "parameters": [
            header("webhook-id", "The notification's id: the same on every retry, so \
                receivers de-duplicate on it.", "msg_0193a0c4-7d2e-7cde-8f00-5a1b2c3d4e5f"),
            header("webhook-timestamp", "Unix seconds of this attempt; part of what is \
                signed.", "1764324000"),
            header("webhook-signature", "`v1,<base64 HMAC-SHA256 of \"{webhook-id}.\
                {webhook-timestamp}.{body}\">`, keyed with the caller's webhook secret. Space \
                separated, one per valid secret, while a rotated-out secret is in its grace \
                period (`ICON_WEBHOOK_SECRET_GRACE`).",
                "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4= v1,3Tlb2CKaOm8fy5cDs+ymGdcIbNfhxkq8eoIfAWnUDkg="),
        ],
        "requestBody": {
            "required": true,
            "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/CallbackEvent"},
                "example": {
                    "status": "completed",
                    "cart_id": 1234,
                    "source_url": "https://icon.example.com/cart/checkout/0193a0c4-7d2e-7cde-8f00-5a1b2c3d4e5f",
                    "checkout_id": "0193a0c4-7d2e-7cde-8f00-5a1b2c3d4e5f",
                    "orders": [{"retailer_id": "acme", "status": "confirmed", "retailer_order_id": "A-1001"}]
                }
            }}
        },
        "responses": {
            "2XX": {"description": "Received: delivery ends."},
            "410": {"description": "Gone: ICON stops delivering this callback at once (state `failed`)."},
            "default": {"description": "Anything else is retried."}
        }
    }})
}

/// `(path, method, status, links)`: from each step, where a client goes next. Redelivery is
/// not linked: it is no next step of a checkout, only of one whose notification failed, and a
/// checkout without that channel answers it 404.
fn links() -> Vec<(&'static str, &'static str, &'static str, Value)> {
    let checkout_from = |id: &str| {
        json!({
            "GetCheckout": {"operationId": "get_checkout", "parameters": {"checkout_id": id},
                "description": "Poll the checkout"},
            "ListAttempts": {"operationId": "list_attempts", "parameters": {"checkout_id": id},
                "description": "Its notification attempts"},
        })
    };
    let cart_from = |id: &str| {
        json!({
            "AddItem": {"operationId": "add_item", "parameters": {"cart_id": id},
                "description": "Fill the cart"},
            "GetCart": {"operationId": "get_cart", "parameters": {"cart_id": id}},
            "CheckOut": {"operationId": "create_checkout", "requestBody": {"cart_id": id},
                "description": "Check the cart out"},
        })
    };
    vec![
        (
            "/carts",
            "post",
            "201",
            cart_from("$response.body#/cart_id"),
        ),
        (
            "/carts/{cart_id}/items",
            "post",
            "201",
            cart_from("$request.path.cart_id"),
        ),
        (
            "/cart/checkout/",
            "post",
            "202",
            checkout_from("$response.body#/checkout_id"),
        ),
        (
            "/me/devices/{token}",
            "put",
            "201",
            json!({"DeleteDevice": {"operationId": "delete_device",
                "parameters": {"token": "$request.path.token"}}}),
        ),
    ]
}

/// The callback body, for the document only (the notifier builds it from the
/// `checkout.finished` message).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct CallbackEvent {
    /// Which event: `checkout.completed`, `checkout.partially_completed`, `checkout.failed`,
    /// `checkout.cancelled` or `checkout.partially_cancelled` (the checkout's end, sequence 1);
    /// with `order_updates`, later: `order.shipped`, `order.delivered`, `order.cancelled`,
    /// `order.refunded`, and `order.confirmed` or `order.rejected` for an order that settled
    /// after ending `unknown`. A cancellation asked after the end is announced, on every
    /// channel and whether or not `order_updates` was asked for, as the next event:
    /// `checkout.cancelled` (nothing remains placed) or `checkout.partially_cancelled` (an
    /// order remains placed: `cancel_refused`, `unknown`, or one not cancelled).
    #[schema(rename = "type", example = "checkout.completed")]
    kind: String,
    /// 1, 2, 3, ... per checkout, without gaps; event n+1 is sent to a receiver only after
    /// event n was delivered to it or given up. Each event has its own `webhook-id`.
    #[schema(example = 1)]
    sequence: i32,
    /// When it happened: the checkout's end, or when the retailer says the order changed.
    occurred_at: String,
    /// The order an `order.*` event is about, as it is now; absent for the checkout's end.
    order: Option<crate::routes::orders::OrderBody>,
    /// The checkout's status when the notification was built: its final status
    /// (`completed`, `partially_completed`, `failed`, `cancelled`, `partially_cancelled`), or
    /// `cancelling` for an earlier event (a retry of event 1, say) sent while a cancellation
    /// is under way.
    #[schema(value_type = icon_domain::CheckoutStatus)]
    status: String,
    cart_id: i64,
    /// The checkout's `resource_url`.
    source_url: String,
    checkout_id: String,
    /// One per retailer.
    orders: Vec<crate::routes::orders::OrderBody>,
    /// Why a `failed` checkout failed when its orders do not say; absent otherwise.
    reason: Option<String>,
}
