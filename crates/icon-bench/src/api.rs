//! ICON's public API as the benchmark uses it: tokens, retailers, carts, checkouts. One
//! keep-alive HTTP/1.1 client is shared by every task.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

/// An HTTP answer, body read in full.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The body cut for an error message.
    pub fn excerpt(&self) -> String {
        String::from_utf8_lossy(&self.body)
            .chars()
            .take(300)
            .collect()
    }
}

/// No HTTP answer: the request failed before one arrived.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TransportError(String);

#[derive(Clone)]
pub struct Api {
    client: Client<HttpConnector, Full<Bytes>>,
    gateway: String,
    /// `--stages`: every request not given a `traceparent` of its own goes with one whose
    /// sampled flag is clear, so ICON exports no spans for it.
    untraced: bool,
}

impl Api {
    pub fn new(gateway: &str) -> Self {
        let mut connector = HttpConnector::new();
        // Latency figures should not include Nagle's delay.
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Api {
            client,
            gateway: gateway.to_string(),
            untraced: false,
        }
    }

    /// This client's requests unsampled unless they carry their own `traceparent` (`--stages`).
    pub fn untraced(mut self) -> Self {
        self.untraced = true;
        self
    }

    /// `path` is appended to the gateway URL unless it is absolute.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Reply, TransportError> {
        self.call_traced(method, path, token, body, None).await
    }

    /// [`Self::call`] with `traceparent` as the W3C header, if given.
    async fn call_traced(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        traceparent: Option<&str>,
    ) -> Result<Reply, TransportError> {
        let url = if path.starts_with("http://") {
            path.to_string()
        } else {
            format!("{}{}", self.gateway, path)
        };
        let mut req = Request::builder().method(method).uri(&url);
        if let Some(t) = token {
            req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        match traceparent {
            Some(t) => req = req.header("traceparent", t),
            None if self.untraced => {
                req = req.header("traceparent", crate::stages::new_traceparent(false).1)
            }
            None => {}
        }
        let payload = match body {
            Some(v) => {
                req = req.header(http::header::CONTENT_TYPE, "application/json");
                Bytes::from(v.to_string())
            }
            None => Bytes::new(),
        };
        let req = req
            .body(Full::new(payload))
            .map_err(|e| TransportError(format!("{url}: {e}")))?;
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|e| TransportError(format!("{url}: {e}")))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| TransportError(format!("{url}: reading the body: {e}")))?
            .to_bytes();
        Ok(Reply { status, body })
    }

    /// `POST /cart/checkout/`, in the trace `traceparent` names if given.
    pub async fn checkout(
        &self,
        token: &str,
        cart_id: i64,
        callback_url: &str,
        traceparent: Option<&str>,
    ) -> Result<Reply, TransportError> {
        let body = json!({"cart_id": cart_id, "callback_url": callback_url});
        self.call_traced(
            Method::POST,
            "/cart/checkout/",
            Some(token),
            Some(&body),
            traceparent,
        )
        .await
    }
}

/// An HS256 token as ICON expects: `sub`, `exp` (a day from now), and `scope: "admin"` for
/// the admin.
pub fn mint_token(
    secret: &str,
    sub: &str,
    admin: bool,
) -> Result<String, jsonwebtoken::errors::Error> {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        + 24 * 3600;
    let mut claims = json!({"sub": sub, "exp": exp});
    if admin {
        claims["scope"] = json!("admin");
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
}
