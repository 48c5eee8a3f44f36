//! ICON's outbound HTTP client (hyper): callbacks to partners and orders to retailers.
//!
//! Why our own: requests go to URLs that outsiders chose (partners, or whoever holds an admin
//! token), so the client enforces the [`NetworkPolicy`] on every address *before* connecting:
//! IP literals are checked before the request starts, host names by a resolver that drops
//! refused addresses, so a refused target never sees a SYN. It also never follows redirects (a
//! 3xx is just a non-2xx answer), bounds each request by a timeout, and reads at most
//! [`MAX_BODY`] of a response.
//!
//! - [`resolver`]: host names to addresses, the policy applied, the lookup pluggable for tests.

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use icon_domain::NetworkPolicy;
use resolver::POLICY_MARKER;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use url::Host;

mod resolver;
pub use resolver::{Looking, Lookup, PolicyResolver, StaticLookup, SystemLookup};

pub use http::{HeaderMap, HeaderName};
pub use rustls::Error as TlsError;
pub use url::Url;

/// The most of a response body ICON reads (enough for any error message or order id).
pub const MAX_BODY: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The target is not allowed; no connection was attempted.
    #[error("{0}")]
    Refused(String),
    #[error("no response within {0:?}")]
    Timeout(Duration),
    #[error("could not connect: {0}")]
    Connect(String),
    #[error("request failed: {0}")]
    Transport(String),
    #[error("invalid request: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub elapsed: Duration,
}

impl Response {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// `Retry-After` as a wait, from either of its forms: seconds (`120`) or an HTTP date
    /// (`Wed, 21 Oct 2026 07:28:00 GMT`; a date in the past means no wait).
    pub fn retry_after(&self) -> Option<Duration> {
        parse_retry_after(self.headers.get(header::RETRY_AFTER)?.to_str().ok()?)
    }
}

fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpsConnector<HttpConnector<PolicyResolver>>, Full<Bytes>>,
    policy: Option<NetworkPolicy>,
    timeout: Duration,
}

impl HttpClient {
    /// `policy`: `Some` to enforce it on every target (callbacks, retailers), `None` for
    /// targets only the operator's own settings name (the identity provider's JWK set).
    /// `timeout` bounds a whole request, body included.
    pub fn new(policy: Option<NetworkPolicy>, timeout: Duration) -> Result<Self, rustls::Error> {
        Self::with_lookup(policy, timeout, Arc::new(SystemLookup))
    }

    /// As [`Self::new`], resolving host names with `lookup` (tests make a name resolve to the
    /// address under test; the policy still applies to what it returns).
    pub fn with_lookup(
        policy: Option<NetworkPolicy>,
        timeout: Duration,
        lookup: Arc<dyn Lookup>,
    ) -> Result<Self, rustls::Error> {
        let resolver = PolicyResolver::with_lookup(policy.clone(), lookup);
        Self::with_resolver(resolver, policy, timeout)
    }

    fn with_resolver(
        resolver: PolicyResolver,
        policy: Option<NetworkPolicy>,
        timeout: Duration,
    ) -> Result<Self, rustls::Error> {
        let mut http = HttpConnector::new_with_resolver(resolver);
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https);
        Ok(Self {
            client,
            policy,
            timeout,
        })
    }

    /// POSTs a JSON body.
    pub async fn post_json(
        &self,
        url: &Url,
        headers: &[(HeaderName, String)],
        body: Vec<u8>,
    ) -> Result<Response, SendError> {
        self.send(Method::POST, url, headers, Some(("application/json", body)))
            .await
    }

    /// POSTs an `application/x-www-form-urlencoded` body (an OAuth2 token request, say).
    pub async fn post_form(
        &self,
        url: &Url,
        headers: &[(HeaderName, String)],
        fields: &[(&str, &str)],
    ) -> Result<Response, SendError> {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish()
            .into_bytes();
        let content_type = "application/x-www-form-urlencoded";
        self.send(Method::POST, url, headers, Some((content_type, body)))
            .await
    }

    /// GETs `url` (a status lookup, say), with the same deadline and policy as a POST.
    pub async fn get(
        &self,
        url: &Url,
        headers: &[(HeaderName, String)],
    ) -> Result<Response, SendError> {
        self.send(Method::GET, url, headers, None).await
    }

    async fn send(
        &self,
        method: Method,
        url: &Url,
        headers: &[(HeaderName, String)],
        body: Option<(&'static str, Vec<u8>)>,
    ) -> Result<Response, SendError> {
        self.check_literal(url)?;
        let mut req = Request::builder().method(method).uri(url.as_str()).header(
            header::USER_AGENT,
            concat!("ICON/", env!("CARGO_PKG_VERSION")),
        );
        if let Some((content_type, _)) = &body {
            req = req.header(header::CONTENT_TYPE, *content_type);
        }
        for (name, value) in headers {
            let value = HeaderValue::from_str(value)
                .map_err(|e| SendError::Invalid(format!("header {name}: {e}")))?;
            req = req.header(name, value);
        }
        let req = req
            .body(Full::new(Bytes::from(
                body.map(|(_, b)| b).unwrap_or_default(),
            )))
            .map_err(|e| SendError::Invalid(e.to_string()))?;
        let started = Instant::now();
        let exchange = async {
            let resp = self.client.request(req).await.map_err(classify)?;
            let (parts, body) = resp.into_parts();
            let body = Limited::new(body, MAX_BODY)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            Ok::<_, SendError>((parts, body))
        };
        let (parts, body) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| SendError::Timeout(self.timeout))??;
        Ok(Response {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
            elapsed: started.elapsed(),
        })
    }

    /// hyper's connector skips the resolver for IP literals, so those are checked here.
    pub(crate) fn check_literal(&self, url: &Url) -> Result<(), SendError> {
        let Some(policy) = &self.policy else {
            return Ok(());
        };
        let ip = match url.host() {
            Some(Host::Ipv4(ip)) => IpAddr::V4(ip),
            Some(Host::Ipv6(ip)) => IpAddr::V6(ip),
            Some(Host::Domain(_)) => return Ok(()),
            None => return Err(SendError::Invalid("URL has no host".into())),
        };
        if policy.permits(ip) {
            Ok(())
        } else {
            Err(SendError::Refused(format!("{ip} is {POLICY_MARKER}")))
        }
    }
}

fn classify(e: hyper_util::client::legacy::Error) -> SendError {
    let chain = source_chain(&e);
    if chain.contains(POLICY_MARKER) {
        SendError::Refused(chain)
    } else if e.is_connect() {
        SendError::Connect(chain)
    } else {
        SendError::Transport(chain)
    }
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod guard_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_both_forms() {
        assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
        let soon = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        let wait = parse_retry_after(&soon.replace("+0000", "GMT")).unwrap();
        assert!(
            wait > Duration::from_secs(25) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
