//! Callback URLs and the network policy they must pass.
//!
//! A partner-supplied URL is an SSRF vector: without a policy, anyone could make ICON POST into
//! our own network. So loopback, private, link-local and other non-public ranges are refused
//! unless the operator lists them in `ICON_CALLBACK_ALLOW_NETWORKS`. The same [`NetworkPolicy`]
//! is applied twice: here, to IP literals and `localhost` when the checkout is submitted, and by
//! the notifier's resolver to every address a host name resolves to, before any connection is
//! attempted (a name can resolve differently later).

use ipnet::IpNet;
use serde::Serialize;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use url::{Host, Url};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkPolicy {
    allow: Vec<IpNet>,
}

impl NetworkPolicy {
    /// `allow`: networks that may be targeted although they are not public.
    pub fn new(allow: Vec<IpNet>) -> Self {
        Self { allow }
    }

    pub fn allowed_networks(&self) -> &[IpNet] {
        &self.allow
    }

    /// Public addresses are always allowed; any other only if an allowed network contains it.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        if self.allow.iter().any(|net| net.contains(&ip)) {
            return true;
        }
        is_public(ip)
    }
}

fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64.0.0/10 carrier-grade NAT
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0.0/24 protocol assignments
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // 198.18.0.0/15 benchmarking
        || o[0] >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x64 && s[1] == 0xff9b)) // NAT64, could reach private v4
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CallbackUrlError {
    #[error("callback_url is not a valid absolute URL: {0}")]
    Malformed(String),
    #[error("callback_url must use http or https, not `{0}`")]
    Scheme(String),
    #[error("callback_url must not contain a user name or password")]
    Credentials,
    #[error("callback_url is longer than 2048 characters")]
    TooLong,
    #[error(
        "callback_url points to {0}, a loopback, private or reserved address; ICON only calls \
         public addresses unless the operator allows that network in ICON_CALLBACK_ALLOW_NETWORKS"
    )]
    Refused(IpAddr),
}

/// A callback URL that is absolute http(s), carries no credentials, and whose literal address
/// (if it has one) passed the network policy.
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
            "http" | "https" => {}
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
        NetworkPolicy::new(vec!["127.0.0.0/8".parse().unwrap()])
    }

    #[test]
    fn refuses_private_and_loopback_by_default() {
        let p = NetworkPolicy::default();
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
}
