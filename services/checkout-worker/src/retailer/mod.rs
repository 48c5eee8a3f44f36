//! The retailer protocol, client side: one call per step, classified.
//!
//! An order request carries the order's `Idempotency-Key`, which belongs to the cart and the
//! retailer (see `icon_store::orders::OrderWork`), so a retry, a redelivered message or a new
//! checkout of the same cart never creates a second order at the retailer. What an answer
//! means is decided here, once:
//! - 2xx: placed. 422: rejected (not placed). Another 4xx (but 408, 409, 425, 429): not placed.
//! - 409 (a concurrent request with the same key is in progress), 408, 425, 429, 5xx, a 3xx,
//!   a timeout or a broken connection: the outcome is unsure, since the request may have
//!   arrived; it is retried, and then settled by status lookup
//!   (`GET <order_url>?idempotency_key=<key>`: 200 placed, 409 still in progress, 404 no
//!   order; a 404 is final only once no request with the key can still be in progress, see
//!   `progress::after_lookup`).
//!
//! Every request is signed with the retailer's secret (`webhook-id`, `webhook-timestamp`,
//! `webhook-signature`, Standard Webhooks; see [`signing`]), beside its `Idempotency-Key`. A 401
//! means the retailer refused the signature and did not look at the request: like a request the
//! policy refused, it is "not placed" only for a first request (see [`refused_placement`]).
//!
//! Every call first passes the retailers' network policy (`ICON_RETAILER_ALLOW_NETWORKS`,
//! `ICON_RETAILER_ALLOW_HTTP`): the `order_url` itself, then each address its host resolves to,
//! before a connection is attempted. A refused call sends nothing, so a first request refused
//! is "not placed"; a re-send refused after an earlier one may have arrived stays in doubt
//! (see [`refused_placement`]).

//!
//! Here: the client; [`classify`]: what each answer means; [`cancel`]: cancelling an order
//! (issue 18); [`signing`]: the secrets and headers.

pub mod cancel;
mod classify;
pub mod signing;

use crate::settings::WorkerSettings;
use classify::{classify_lookup, classify_place, not_placed, refusal_reason};
use icon_domain::callback::OrderUrl;
use icon_domain::text::{sanitize, MAX_REASON_CHARS};
use icon_domain::{CheckoutId, NetworkPolicy, OrderStatus};
use icon_http::{HeaderName, HttpClient, Lookup, SendError, SystemLookup, TlsError, Url};
use icon_store::orders::OrderWork;
use icon_store::secrets::SigningSecrets;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// What an order request told us.
#[derive(Debug, Clone, PartialEq)]
pub enum PlaceAnswer {
    Confirmed {
        order_id: Option<String>,
    },
    /// 202: the retailer has the order and reports the outcome later by event.
    Accepted {
        order_id: Option<String>,
    },
    /// The retailer said it did not place the order: `Rejected` (422) or `Failed`.
    NotPlaced {
        status: OrderStatus,
        reason: String,
    },
    /// It may or may not have placed it.
    Unsure {
        why: String,
        retry_after: Option<Duration>,
        /// A request with this key may still be in progress at the retailer (it answered 409,
        /// or the call timed out or its connection dropped), so a lookup's 404 is no proof.
        in_flight: bool,
    },
}

/// What a status lookup told us.
#[derive(Debug, Clone, PartialEq)]
pub enum LookupAnswer {
    /// An order exists for the key; `status` as the retailer reports it.
    Placed {
        order_id: Option<String>,
        status: String,
    },
    /// No order was ever placed with the key (404).
    NotPlaced,
    Unsure {
        why: String,
    },
}

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

#[derive(Clone)]
pub struct RetailerClient {
    /// Enforces [`Self::policy`] on every address before connecting.
    http: HttpClient,
    /// The retailers' network policy, for the URL's scheme and literal address.
    policy: NetworkPolicy,
}

impl RetailerClient {
    pub fn new(settings: &WorkerSettings) -> Result<Self, TlsError> {
        Self::with_lookup(settings, Arc::new(SystemLookup))
    }

    /// As [`Self::new`], resolving host names with `lookup` (tests make a name resolve to the
    /// address under test; the policy still applies to what it returns).
    pub fn with_lookup(
        settings: &WorkerSettings,
        lookup: Arc<dyn Lookup>,
    ) -> Result<Self, TlsError> {
        let policy = settings.retailer_policy.clone();
        Ok(Self {
            http: HttpClient::with_lookup(Some(policy.clone()), settings.retailer_timeout, lookup)?,
            policy,
        })
    }

    /// The order's URL if the policy lets ICON call it, else why not.
    fn order_url(&self, order: &OrderWork) -> Result<OrderUrl, String> {
        OrderUrl::parse(&order.order_url, &self.policy).map_err(|e| {
            format!(
                "ICON's network policy for retailers refuses this order_url ({}): {e}; \
                 no request was sent",
                icon_domain::callback::loggable(&order.order_url)
            )
        })
    }

    /// Sends (or re-sends, with the same key and body) one order request, signed with
    /// `secrets`. `checkout` is the checkout this pass works for: a key first used by an
    /// earlier one is a re-send, whatever this checkout's own attempt count says.
    #[tracing::instrument(skip_all, fields(retailer = %order.retailer_id))]
    pub async fn place(
        &self,
        checkout: CheckoutId,
        order: &OrderWork,
        secrets: &SigningSecrets,
    ) -> PlaceAnswer {
        let body = serde_json::to_vec(&OrderRequest {
            // The checkout that first used this key: the same key always comes with the same
            // body, as the idempotency-key draft requires.
            checkout_id: order.key_checkout_id.to_string(),
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
        let url = match self.order_url(order) {
            Ok(u) => u,
            Err(why) => return refused_placement(checkout, order, why),
        };
        let mut headers = vec![(
            HeaderName::from_static("idempotency-key"),
            order.idempotency_key.clone(),
        )];
        headers.extend(traceparent());
        headers.extend(signing::headers(secrets, &body));
        match self.http.post_json(url.as_url(), &headers, body).await {
            Err(SendError::Refused(why)) => {
                refused_placement(checkout, order, refused_address(&url, &why))
            }
            Ok(resp) if resp.status == 401 => refused_placement(
                checkout,
                order,
                format!(
                    "the retailer refused ICON's signature (401: {}); check that it verifies \
                     with the secret of GET /retailers/{}/webhook-secret",
                    refusal_reason(&resp).unwrap_or_else(|| "no reason given".into()),
                    order.retailer_id
                ),
            ),
            result => classify_place(result),
        }
    }

    /// Asks the retailer what became of the order's key, signed with `secrets` over an empty
    /// body.
    #[tracing::instrument(skip_all, fields(retailer = %order.retailer_id))]
    pub async fn lookup(&self, order: &OrderWork, secrets: &SigningSecrets) -> LookupAnswer {
        let order_url = match self.order_url(order) {
            Ok(u) => u,
            Err(why) => {
                return LookupAnswer::Unsure {
                    why: sanitize(&format!("status lookup: {why}"), MAX_REASON_CHARS),
                }
            }
        };
        let mut url: Url = order_url.as_url().clone();
        url.query_pairs_mut()
            .append_pair("idempotency_key", &order.idempotency_key);
        let mut headers: Vec<_> = traceparent().into_iter().collect();
        headers.extend(signing::headers(secrets, b""));
        match self.http.get(&url, &headers).await {
            Err(SendError::Refused(why)) => LookupAnswer::Unsure {
                why: sanitize(
                    &format!("status lookup: {}", refused_address(&order_url, &why)),
                    MAX_REASON_CHARS,
                ),
            },
            result => classify_lookup(result),
        }
    }
}

/// Why the client refused to connect: the host resolved only to addresses the policy refuses.
fn refused_address(url: &OrderUrl, why: &str) -> String {
    format!(
        "ICON's network policy for retailers refuses every address of this order_url ({}): \
         {why}; ICON calls retailers only at public addresses unless the operator allows the \
         network in ICON_RETAILER_ALLOW_NETWORKS; no request was sent",
        url.loggable()
    )
}

/// A placement the policy refused (nothing was sent this time), or one the retailer refused
/// unread (a 401: it did not accept the signature). If nothing with this key can
/// have been sent before either (a key of this checkout's own, on its first attempt, never in
/// doubt), the order was not placed,
/// and saying so frees the cart. A re-send is different: an earlier request with the key may
/// have arrived and placed the order, so it stays in doubt (retried, then settled by lookups,
/// which the same policy refuses, and at worst left `unknown`), never "not placed", which
/// would let the next checkout send a new key and place a second order.
fn refused_placement(checkout: CheckoutId, order: &OrderWork, why: String) -> PlaceAnswer {
    let first_request =
        order.key_checkout_id == checkout && order.attempts == 0 && order.in_doubt_at.is_none();
    if first_request {
        not_placed(OrderStatus::Failed, format!("not placed: {why}"))
    } else {
        PlaceAnswer::Unsure {
            why: sanitize(&why, MAX_REASON_CHARS),
            retry_after: None,
            in_flight: false,
        }
    }
}

/// The checkout's trace context for a retailer call, so the retailer's own spans join the trace.
fn traceparent() -> Option<(HeaderName, String)> {
    icon_runtime::trace::outgoing_header().map(|value| {
        (
            HeaderName::from_static(icon_runtime::trace::TRACEPARENT),
            value,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use icon_domain::RetailerId;
    use icon_http::StaticLookup;
    use icon_store::secrets::WebhookSecret;
    use icon_store::webhook_secrets::SealedSecrets;
    use std::net::TcpListener;

    /// A loopback listener that never accepts on its own: after a refused call, a non-blocking
    /// `accept` finding nothing queued proves no connection was even attempted.
    fn witness() -> (TcpListener, u16) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let port = l.local_addr().unwrap().port();
        (l, port)
    }

    fn assert_untouched(l: &TcpListener) {
        match l.accept() {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("a connection was attempted: {other:?}"),
        }
    }

    fn order(order_url: &str, attempts: i32) -> OrderWork {
        OrderWork {
            retailer_id: RetailerId::parse("acme".to_owned()).unwrap(),
            order_url: order_url.into(),
            status: OrderStatus::Pending,
            idempotency_key: "k".into(),
            key_checkout_id: CheckoutId::new(),
            attempts,
            lookups: 0,
            retailer_order_id: None,
            reason: None,
            next_attempt_at: None,
            settle_until: None,
            in_doubt_at: None,
            items: vec![],
            cancel_requested_at: None,
            cancel_reason: None,
            cancel_attempts: 0,
            signing: SealedSecrets::none(&RetailerId::parse("acme".to_owned()).unwrap()),
        }
    }

    fn secrets() -> SigningSecrets {
        SigningSecrets {
            current: WebhookSecret::generate(),
            previous: None,
        }
    }

    /// A client under the default retailer policy (public https only, or `pairs`), whose
    /// resolver answers `retailer.example` with 127.0.0.1.
    fn client(pairs: &[(&str, &str)]) -> RetailerClient {
        let settings =
            WorkerSettings::from_env(&crate::settings::test_env(pairs.iter().copied())).unwrap();
        let lookup = StaticLookup::new().with("retailer.example", ["127.0.0.1".parse().unwrap()]);
        RetailerClient::with_lookup(&settings, Arc::new(lookup)).unwrap()
    }

    #[tokio::test]
    async fn a_refused_order_url_gets_no_connection_and_is_not_placed() {
        let (l, port) = witness();
        let strict = client(&[]);
        let over_http = client(&[("ICON_RETAILER_ALLOW_HTTP", "true")]);
        for (c, url) in [
            // The literal, before the request starts.
            (&over_http, format!("http://127.0.0.1:{port}/orders")),
            (&over_http, format!("http://localhost:{port}/orders")),
            // A host name, by the resolver, before connecting.
            (&over_http, format!("http://retailer.example:{port}/orders")),
            (&strict, format!("https://retailer.example:{port}/orders")),
            // Plain http with http off.
            (&strict, format!("http://retailer.example:{port}/orders")),
        ] {
            let first = order(&url, 0);
            match c.place(first.key_checkout_id, &first, &secrets()).await {
                PlaceAnswer::NotPlaced {
                    status: OrderStatus::Failed,
                    reason,
                } => {
                    assert!(reason.starts_with("not placed: "), "{url}: {reason}");
                    assert!(reason.contains("ICON_RETAILER_ALLOW_"), "{url}: {reason}");
                    assert!(reason.contains("no request was sent"), "{url}: {reason}");
                }
                other => panic!("{url}: {other:?}"),
            }
            assert!(
                matches!(c.lookup(&order(&url, 3), &secrets()).await, LookupAnswer::Unsure { why } if why.contains("ICON_RETAILER_ALLOW_")),
                "{url}"
            );
            assert_untouched(&l);
        }
    }

    #[tokio::test]
    async fn a_refused_re_send_stays_in_doubt() {
        let (l, port) = witness();
        let c = client(&[("ICON_RETAILER_ALLOW_HTTP", "true")]);
        let url = format!("http://127.0.0.1:{port}/orders");
        // An earlier attempt may have placed the order: "not placed" would free the cart for a
        // new key, and a second order.
        let again = order(&url, 1);
        let answer = c.place(again.key_checkout_id, &again, &secrets()).await;
        assert!(
            matches!(&answer, PlaceAnswer::Unsure { why, in_flight: false, .. } if why.contains("ICON_RETAILER_ALLOW_NETWORKS")),
            "{answer:?}"
        );
        let mut in_doubt = order(&url, 0);
        in_doubt.in_doubt_at = Some(chrono::Utc::now());
        assert!(matches!(
            c.place(in_doubt.key_checkout_id, &in_doubt, &secrets())
                .await,
            PlaceAnswer::Unsure { .. }
        ));
        // A key an earlier checkout of the cart used, re-sent by this one on its first attempt.
        let inherited = order(&url, 0);
        assert!(matches!(
            c.place(CheckoutId::new(), &inherited, &secrets()).await,
            PlaceAnswer::Unsure { .. }
        ));
        assert_untouched(&l);
    }

    /// A loopback retailer that answers every request 401, as one does to a signature it does
    /// not accept.
    async fn refusing_retailer() -> u16 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let body = r#"{"reason":"bad signature"}"#;
                let head = format!(
                    "HTTP/1.1 401 Unauthorized\r\ncontent-type: application/problem+json\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
            }
        });
        port
    }

    #[tokio::test]
    async fn a_401_is_not_placed_only_for_a_first_request() {
        let port = refusing_retailer().await;
        let c = client(&[
            ("ICON_RETAILER_ALLOW_HTTP", "true"),
            ("ICON_RETAILER_ALLOW_NETWORKS", "127.0.0.0/8"),
        ]);
        let url = format!("http://127.0.0.1:{port}/acme/orders");
        let first = order(&url, 0);
        match c.place(first.key_checkout_id, &first, &secrets()).await {
            PlaceAnswer::NotPlaced {
                status: OrderStatus::Failed,
                reason,
            } => assert!(
                reason.contains("401") && reason.contains("bad signature"),
                "{reason}"
            ),
            other => panic!("{other:?}"),
        }
        // An earlier request with the key may have placed the order: a 401 now proves nothing.
        let again = order(&url, 1);
        assert!(matches!(
            c.place(again.key_checkout_id, &again, &secrets()).await,
            PlaceAnswer::Unsure {
                in_flight: false,
                ..
            }
        ));
        let inherited = order(&url, 0);
        assert!(matches!(
            c.place(CheckoutId::new(), &inherited, &secrets()).await,
            PlaceAnswer::Unsure { .. }
        ));
        assert!(matches!(
            c.lookup(&order(&url, 3), &secrets()).await,
            LookupAnswer::Unsure { .. }
        ));
    }
}
