//! How an order of a checkout is shown: on the resource (`GET /cart/checkout/{checkout_id}`),
//! in callbacks (the OpenAPI document's `webhooks` entry) and in an `order.*` event's `order`.

use icon_domain::OrderStatus;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
pub struct OrderBody {
    pub retailer_id: String,
    /// `pending`, `accepted` (the retailer answered 202 and reports later), `confirmed`,
    /// `rejected`, `failed`, `unknown`; after confirmation, as the retailer reports:
    /// `shipped`, `delivered`, `cancelled`, `refunded`. When ICON cancels it (a `DELETE`, or
    /// an `all_or_nothing` checkout undoing its orders): `cancelling` until the retailer
    /// answers, then `cancelled`, or `cancel_refused` (it refused, or never confirmed: the
    /// order remains placed).
    pub status: OrderStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retailer_order_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Once shipped: the parcel's tracking as the retailer gave it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracking: Option<TrackingBody>,
    /// The refunds the retailer reported, oldest first; absent when none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub refunds: Vec<RefundBody>,
}

#[derive(Serialize, ToSchema)]
pub struct TrackingBody {
    pub carrier: String,
    pub number: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct RefundBody {
    pub amount_minor: i64,
    pub currency: String,
}

impl From<icon_store::orders::OrderView> for OrderBody {
    fn from(o: icon_store::orders::OrderView) -> Self {
        Self {
            retailer_id: o.retailer_id.to_string(),
            status: o.status,
            retailer_order_id: o.retailer_order_id,
            reason: o.reason,
            tracking: o.tracking.map(|t| TrackingBody {
                carrier: t.carrier,
                number: t.number,
                url: t.url,
            }),
            refunds: o
                .refunds
                .into_iter()
                .map(|r| RefundBody {
                    amount_minor: r.amount_minor,
                    currency: r.currency,
                })
                .collect(),
        }
    }
}
