//! [`OrderUrl`]: a retailer's `order_url` that passed the retailers' network policy.
//!
//! Retailers are registered by an admin, but an admin token can be stolen, and the worker
//! POSTs orders from inside ICON's network: with no policy, a stolen token is SSRF into it
//! (the cloud metadata endpoint, the database, the broker's management API). So retailer URLs
//! pass the same [`NetworkPolicy`] as callbacks, with allowances of their own
//! (`ICON_RETAILER_ALLOW_NETWORKS` for retailers inside the operator's network and local runs,
//! `ICON_RETAILER_ALLOW_HTTP` for plain http): checked when a retailer is registered, and again
//! by the worker before every call, whose resolver checks each address a host name resolves
//! to before connecting.

use super::{literal_addresses, loggable_url, NetworkPolicy};
use std::fmt;
use std::net::IpAddr;
use url::Url;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OrderUrlError {
    #[error("order_url must be an absolute http:// or https:// URL")]
    Malformed,
    #[error(
        "order_url must use https; plain http is accepted only when the operator sets \
         ICON_RETAILER_ALLOW_HTTP=true"
    )]
    PlainHttp,
    #[error(
        "order_url points to {0}, which is not globally reachable (loopback, private, \
         reserved, or an IPv6 form of such an address); ICON calls retailers only at public \
         addresses unless the operator allows that network in ICON_RETAILER_ALLOW_NETWORKS"
    )]
    Refused(IpAddr),
}

/// An absolute https URL (or http where the policy allows it) whose literal address, if it has
/// one, passed the retailers' policy. A host name is checked when it is resolved, by the
/// worker's HTTP client, since a name can resolve differently from one call to the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderUrl(Url);

impl OrderUrl {
    pub fn parse(raw: &str, policy: &NetworkPolicy) -> Result<Self, OrderUrlError> {
        let url = Url::parse(raw).map_err(|_| OrderUrlError::Malformed)?;
        match url.scheme() {
            _ if !url.has_host() => return Err(OrderUrlError::Malformed),
            "https" => {}
            "http" if policy.allows_http() => {}
            "http" => return Err(OrderUrlError::PlainHttp),
            _ => return Err(OrderUrlError::Malformed),
        }
        let addrs = literal_addresses(&url).map_err(|_| OrderUrlError::Malformed)?;
        if let Some(ip) = addrs.into_iter().find(|ip| !policy.permits(*ip)) {
            return Err(OrderUrlError::Refused(ip));
        }
        Ok(Self(url))
    }

    pub fn as_url(&self) -> &Url {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// Scheme, host and port only, for logs and reasons (see [`super::loggable`]).
    pub fn loggable(&self) -> String {
        loggable_url(&self.0)
    }
}

impl fmt::Display for OrderUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback_over_http() -> NetworkPolicy {
        NetworkPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]).allowing_http(true)
    }

    #[test]
    fn internal_addresses_are_refused_until_allowed() {
        let strict = NetworkPolicy::default().allowing_http(true);
        for url in [
            "http://127.0.0.1:8090/acme/orders",
            "http://localhost/orders",
            "http://10.0.0.7/orders",
            "http://169.254.169.254/latest/meta-data",
            "http://[::ffff:192.168.1.1]/orders",
            "https://[fd00::1]/orders",
        ] {
            let err = OrderUrl::parse(url, &strict).unwrap_err();
            assert!(matches!(err, OrderUrlError::Refused(_)), "{url}: {err}");
            assert!(
                err.to_string().contains("ICON_RETAILER_ALLOW_NETWORKS"),
                "{err}"
            );
        }
        let p = loopback_over_http();
        assert!(OrderUrl::parse("http://127.0.0.1:8090/acme/orders", &p).is_ok());
        // localhost is ::1 too, which 127.0.0.0/8 does not allow.
        assert!(OrderUrl::parse("http://localhost:8090/acme/orders", &p).is_err());
        assert!(OrderUrl::parse("http://10.0.0.7/orders", &p).is_err());
        assert!(OrderUrl::parse("https://orders.acme.example/icon", &strict).is_ok());
    }

    #[test]
    fn https_only_unless_allowed() {
        let strict = NetworkPolicy::default();
        let err = OrderUrl::parse("http://orders.acme.example/icon", &strict).unwrap_err();
        assert_eq!(err, OrderUrlError::PlainHttp);
        assert!(err.to_string().contains("ICON_RETAILER_ALLOW_HTTP=true"));
        assert!(OrderUrl::parse("https://orders.acme.example/icon", &strict).is_ok());
        let relaxed = strict.allowing_http(true);
        assert!(OrderUrl::parse("http://orders.acme.example/icon", &relaxed).is_ok());
    }

    #[test]
    fn only_absolute_http_urls() {
        let p = loopback_over_http();
        for url in [
            "ftp://x",
            "/orders",
            "mailto:a@b.example",
            "http://",
            "file:///etc",
        ] {
            assert_eq!(
                OrderUrl::parse(url, &p),
                Err(OrderUrlError::Malformed),
                "{url}"
            );
        }
        let u = OrderUrl::parse("https://orders.acme.example:8443/icon?key=SECRET", &p).unwrap();
        assert_eq!(u.loggable(), "https://orders.acme.example:8443");
    }
}
