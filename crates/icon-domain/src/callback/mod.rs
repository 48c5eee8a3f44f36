//! Callback URLs and the network policy they must pass.
//!
//! A partner-supplied URL is an SSRF vector: without a policy, anyone could make ICON POST into
//! our own network. So loopback, private, link-local and other non-public ranges are refused
//! unless the operator lists them in `ICON_CALLBACK_ALLOW_NETWORKS`, and plain http (readable
//! and alterable on the way) unless `ICON_CALLBACK_ALLOW_HTTP=true`. The same [`NetworkPolicy`]
//! is applied twice: here, to IP literals and `localhost` when the checkout is submitted, and by
//! the notifier's resolver to every address a host name resolves to, before any connection is
//! attempted (a name can resolve differently later).
//!
//! - [`policy`]: [`NetworkPolicy`], what may be connected to.
//! - [`ranges`]: which addresses are public, from IANA's special-purpose registries (the CSV
//!   files in this folder).
//! - [`order_url`]: [`OrderUrl`], a retailer's `order_url` under the same rules, with the
//!   retailers' own policy (`ICON_RETAILER_ALLOW_NETWORKS`, `ICON_RETAILER_ALLOW_HTTP`).

pub mod order_url;
pub mod policy;
pub mod ranges;

pub use order_url::{OrderUrl, OrderUrlError};
pub use policy::NetworkPolicy;

use serde::Serialize;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use url::{Host, Url};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CallbackUrlError {
    #[error("callback_url is not a valid absolute URL: {0}")]
    Malformed(String),
    #[error("callback_url must use https, not `{0}`")]
    Scheme(String),
    #[error(
        "callback_url must use https; plain http is accepted only when the operator sets \
         ICON_CALLBACK_ALLOW_HTTP=true"
    )]
    PlainHttp,
    #[error("callback_url must not contain a user name or password")]
    Credentials,
    #[error("callback_url is longer than 2048 characters")]
    TooLong,
    #[error(
        "callback_url points to {0}, which is not globally reachable (loopback, private, \
         reserved, or an IPv6 form of such an address); ICON only calls public addresses unless \
         the operator allows that network in ICON_CALLBACK_ALLOW_NETWORKS"
    )]
    Refused(IpAddr),
}

/// A callback URL that is absolute https (or http where the policy allows it), carries no
/// credentials, and whose literal address (if it has one) passed the network policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct CallbackUrl(Url);

impl CallbackUrl {
    pub fn parse(raw: &str, policy: &NetworkPolicy) -> Result<Self, CallbackUrlError> {
        if raw.len() > 2048 {
            return Err(CallbackUrlError::TooLong);
        }
        let url = Url::parse(raw).map_err(|e| CallbackUrlError::Malformed(e.to_string()))?;
        match url.scheme() {
            "https" => {}
            "http" if policy.allows_http() => {}
            "http" => return Err(CallbackUrlError::PlainHttp),
            other => return Err(CallbackUrlError::Scheme(other.to_owned())),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(CallbackUrlError::Credentials);
        }
        for ip in literal_addresses(&url)? {
            if !policy.permits(ip) {
                return Err(CallbackUrlError::Refused(ip));
            }
        }
        Ok(Self(url))
    }

    /// Re-checks a URL read back from storage. The policy may have changed since it was accepted,
    /// so the notifier checks again rather than trusting the row.
    pub fn recheck(raw: &str, policy: &NetworkPolicy) -> Result<Self, CallbackUrlError> {
        Self::parse(raw, policy)
    }

    pub fn as_url(&self) -> &Url {
        &self.0
    }
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// What may be logged or shown of this URL: see [`loggable`].
    pub fn loggable(&self) -> String {
        loggable_url(&self.0)
    }
}

/// Scheme, host and port of a URL, and nothing else: the path and query may hold a receiver's
/// secret (`?token=...`), so logs, errors and attempt records carry only this. Unparseable
/// input gives a placeholder rather than an echo.
pub fn loggable(raw: &str) -> String {
    Url::parse(raw)
        .map(|u| loggable_url(&u))
        .unwrap_or_else(|_| "<unparseable URL>".into())
}

fn loggable_url(url: &Url) -> String {
    let host = match url.host() {
        Some(Host::Ipv6(ip)) => format!("[{ip}]"),
        Some(h) => h.to_string(),
        None => String::new(),
    };
    match url.port() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    }
}

/// The addresses a URL names without DNS: an IP literal, or `localhost`, which by RFC 6761
/// always means loopback.
fn literal_addresses(url: &Url) -> Result<Vec<IpAddr>, CallbackUrlError> {
    match url.host() {
        None => Err(CallbackUrlError::Malformed("the URL has no host".into())),
        Some(Host::Ipv4(ip)) => Ok(vec![IpAddr::V4(ip)]),
        Some(Host::Ipv6(ip)) => Ok(vec![IpAddr::V6(ip)]),
        Some(Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            if d == "localhost" || d.ends_with(".localhost") {
                Ok(vec![
                    IpAddr::V4(Ipv4Addr::LOCALHOST),
                    IpAddr::V6(Ipv6Addr::LOCALHOST),
                ])
            } else {
                Ok(vec![])
            }
        }
    }
}

impl fmt::Display for CallbackUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback_allowed() -> NetworkPolicy {
        NetworkPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]).allowing_http(true)
    }

    #[test]
    fn refuses_private_and_loopback_by_default() {
        let p = NetworkPolicy::default().allowing_http(true);
        for url in [
            "http://127.0.0.1/x",
            "http://localhost:8080/x",
            "http://10.1.2.3/",
            "http://192.168.0.10/",
            "http://172.16.0.1/",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/",
            "http://[fd00::1]/",
            "http://[::ffff:10.0.0.1]/",
            "http://0.0.0.0/",
            "http://100.64.0.1/",
            "https://[64:ff9b::a00:1]/",
            "https://[64:ff9b:1::1]/",
            "https://[2002:a00:1::1]/",
            "https://[::10.0.0.1]/",
            "https://[fec0::1]/",
            "https://[2001:0:4136:e378::1]/",
            "https://[ff02::1]/",
            "https://224.0.0.1/",
            "https://[3fff::1]/",
            "https://[5f00::1]/",
        ] {
            assert!(
                matches!(
                    CallbackUrl::parse(url, &p),
                    Err(CallbackUrlError::Refused(_))
                ),
                "{url} should be refused"
            );
        }
    }

    #[test]
    fn accepts_public_and_allowed_networks() {
        let p = loopback_allowed();
        assert!(CallbackUrl::parse("https://partner.example.com/hooks", &p).is_ok());
        assert!(CallbackUrl::parse("http://8.8.8.8/", &p).is_ok());
        assert!(CallbackUrl::parse("http://127.0.0.1:9000/cb", &p).is_ok());
        // ::1 is not in 127.0.0.0/8, and localhost resolves to both.
        assert!(CallbackUrl::parse("http://[::1]/", &p).is_err());
        assert!(CallbackUrl::parse("http://10.0.0.1/", &p).is_err());
    }

    #[test]
    fn refuses_bad_shapes() {
        let p = loopback_allowed();
        assert!(matches!(
            CallbackUrl::parse("ftp://example.com/", &p),
            Err(CallbackUrlError::Scheme(_))
        ));
        assert!(matches!(
            CallbackUrl::parse("/relative", &p),
            Err(CallbackUrlError::Malformed(_))
        ));
        assert!(matches!(
            CallbackUrl::parse("https://u:p@example.com/", &p),
            Err(CallbackUrlError::Credentials)
        ));
    }

    #[test]
    fn https_only_unless_allowed() {
        let strict = NetworkPolicy::default();
        assert!(CallbackUrl::parse("https://partner.example.com/hooks", &strict).is_ok());
        let err = CallbackUrl::parse("http://partner.example.com/hooks", &strict).unwrap_err();
        assert_eq!(err, CallbackUrlError::PlainHttp);
        assert!(err.to_string().contains("ICON_CALLBACK_ALLOW_HTTP"));
        let relaxed = strict.allowing_http(true);
        assert!(CallbackUrl::parse("http://partner.example.com/hooks", &relaxed).is_ok());
    }

    #[test]
    fn loggable_form_is_scheme_host_and_port_only() {
        let p = loopback_allowed();
        let u = CallbackUrl::parse(
            "https://hooks.example.com:8443/cb/SECRET?token=SECRET#f",
            &p,
        )
        .unwrap();
        assert_eq!(u.loggable(), "https://hooks.example.com:8443");
        assert_eq!(loggable("http://[::1]/x?token=SECRET"), "http://[::1]");
        assert_eq!(
            loggable("https://user:SECRET@example.com/"),
            "https://example.com"
        );
        assert_eq!(loggable("not a url SECRET"), "<unparseable URL>");
    }
}
