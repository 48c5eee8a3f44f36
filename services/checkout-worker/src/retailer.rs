//! The retailer protocol, client side: one order per retailer, retried on transient failures
//! with the same `Idempotency-Key`, so a retry (or a redelivered message) never creates a second
//! order at the retailer.

use crate::settings::WorkerSettings;
use icon_domain::{CheckoutId, OrderStatus};
use icon_http::{HeaderName, HttpClient, Response, SendError, TlsError, Url};
use icon_store::orders::{OrderResult, RetailerOrder};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The most a retailer's `Retry-After` may stretch one wait.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

#[derive(Serialize)]
struct OrderRequest<'a> {
    checkout_id: String,
    items: Vec<OrderItem<'a>>,
}

#[derive(Serialize)]
struct OrderItem<'a> {
    sku: &'a str,
    quantity: i32,
    unit_price: Price,
}

#[derive(Serialize)]
struct Price {
    amount_minor: i64,
    currency: icon_domain::Currency,
}

#[derive(Deserialize)]
struct Confirmed {
    order_id: Option<String>,
}

#[derive(Deserialize)]
struct Rejected {
    reason: Option<String>,
}

#[derive(Clone)]
pub struct RetailerClient {
    http: HttpClient,
    max_attempts: u32,
    backoff: Duration,
}

enum Step {
    Done(OrderResult),
    Retry { why: String, wait: Option<Duration> },
}

impl RetailerClient {
    pub fn new(settings: &WorkerSettings) -> Result<Self, TlsError> {
        Ok(Self {
            // Retailers are registered by an admin, so no callback network policy applies.
            http: HttpClient::new(None, settings.retailer_timeout)?,
            max_attempts: settings.retailer_max_attempts,
            backoff: settings.retailer_backoff,
        })
    }

    /// Places `order` and returns its outcome; never fails: after the last attempt the order
    /// is `failed` with the last reason.
    #[tracing::instrument(skip_all, fields(retailer = %order.retailer_id))]
    pub async fn place(&self, checkout: CheckoutId, order: &RetailerOrder) -> OrderResult {
        let key = format!("{checkout}:{}", order.retailer_id);
        let body = serde_json::to_vec(&OrderRequest {
            checkout_id: checkout.to_string(),
            items: order
                .items
                .iter()
                .map(|i| OrderItem {
                    sku: &i.sku,
                    quantity: i.quantity.get(),
                    unit_price: Price {
                        amount_minor: i.unit_price.amount_minor(),
                        currency: i.unit_price.currency(),
                    },
                })
                .collect(),
        })
        .unwrap_or_default();
        let url = match Url::parse(&order.order_url) {
            Ok(u) => u,
            Err(e) => return failed(format!("order_url is not a URL: {e}"), 0),
        };
        let headers = [(HeaderName::from_static("idempotency-key"), key)];
        let mut backoff = self.backoff;
        let mut last = String::new();
        for attempt in 1..=self.max_attempts {
            let step = classify(
                self.http.post_json(&url, &headers, body.clone()).await,
                attempt,
            );
            match step {
                Step::Done(result) => return result,
                Step::Retry { why, wait } => {
                    tracing::warn!(attempt, max = self.max_attempts, %why, "retailer call failed");
                    last = why;
                    if attempt < self.max_attempts {
                        let wait = wait
                            .map(|w| w.min(MAX_RETRY_AFTER))
                            .unwrap_or(backoff)
                            .max(backoff);
                        tokio::time::sleep(wait).await;
                        backoff *= 2;
                    }
                }
            }
        }
        failed(
            format!(
                "retailer unavailable after {} attempts: {last}",
                self.max_attempts
            ),
            self.max_attempts as i32,
        )
    }
}

fn failed(reason: String, attempts: i32) -> OrderResult {
    OrderResult {
        status: OrderStatus::Failed,
        retailer_order_id: None,
        reason: Some(reason),
        attempts,
    }
}

fn classify(result: Result<Response, SendError>, attempt: u32) -> Step {
    let resp = match result {
        Ok(r) => r,
        Err(e) => {
            return Step::Retry {
                why: e.to_string(),
                wait: None,
            }
        }
    };
    let attempts = attempt as i32;
    match resp.status {
        200..=299 => {
            let order_id = serde_json::from_slice::<Confirmed>(&resp.body)
                .ok()
                .and_then(|c| c.order_id);
            Step::Done(OrderResult {
                status: OrderStatus::Confirmed,
                retailer_order_id: order_id,
                reason: None,
                attempts,
            })
        }
        409 | 422 => {
            let reason = serde_json::from_slice::<Rejected>(&resp.body)
                .ok()
                .and_then(|r| r.reason)
                .unwrap_or_else(|| format!("rejected by the retailer ({})", resp.status));
            Step::Done(OrderResult {
                status: OrderStatus::Rejected,
                retailer_order_id: None,
                reason: Some(reason),
                attempts,
            })
        }
        429 | 500..=599 => Step::Retry {
            why: format!("retailer answered {}", resp.status),
            wait: resp.retry_after(),
        },
        other => Step::Done(failed(
            format!("retailer answered {other}, which retrying cannot fix"),
            attempts,
        )),
    }
}
