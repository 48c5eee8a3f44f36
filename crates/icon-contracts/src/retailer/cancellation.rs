//! The cancellation ICON asks of a retailer (issue 18): `POST <order_url>/cancellations`, with
//! `Idempotency-Key: <the order's key>:cancel`, and the answer it expects. The checkout worker
//! sends it (`retailer::cancel`), the simulator answers it, and
//! `docs/retailer-integration.md#cancellations` documents it. The retailer's later word comes
//! as an event (`order.cancelled`, `order.cancel_refused`: [`super::RetailerEventType`]).

use serde::{Deserialize, Serialize};

/// The suffix of a cancellation's `Idempotency-Key`: the order's key and this, so the retailer
/// can tell a repeated cancellation from a repeated order.
pub const CANCEL_KEY_SUFFIX: &str = ":cancel";

/// The `Idempotency-Key` header of the cancellation of the order sent with `order_key`.
pub fn cancel_key(order_key: &str) -> String {
    format!("{order_key}{CANCEL_KEY_SUFFIX}")
}

/// The path a cancellation is sent to, under the order's `order_url`.
pub const CANCELLATIONS_PATH: &str = "/cancellations";

/// The body of `POST <order_url>/cancellations`: which order (by the key ICON placed it with,
/// and the retailer's id when ICON has one) and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancellationRequest {
    /// The order's `Idempotency-Key` (without the `:cancel` suffix).
    pub idempotency_key: String,
    /// The retailer's order id, `null` when ICON never learnt it (the placement's answer was
    /// lost).
    pub order_id: Option<String>,
    pub reason: String,
}

/// What a retailer's 200 to a cancellation says: `{"status": "cancelled"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancellationAnswer {
    pub status: String,
}
