//! [`NetworkPolicy`]: what a partner-supplied URL may make ICON connect to.

use super::ranges::{embedded_ipv4, is_public};
use ipnet::IpNet;
use std::net::IpAddr;

/// Which targets ICON may call for outsiders: public addresses (per IANA's registries, see
/// [`super::ranges`]), the networks an operator allows, and whether plain `http` is acceptable.
///
/// The same policy is applied when a callback URL is submitted and again, by the notifier's
/// resolver, to every address a host name resolves to before a connection is attempted.
/// Retailers' order URLs have a policy of their own (`ICON_RETAILER_ALLOW_NETWORKS`,
/// `ICON_RETAILER_ALLOW_HTTP`), applied at registration and by the worker's resolver alike.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkPolicy {
    allow: Vec<IpNet>,
    allow_http: bool,
}

impl NetworkPolicy {
    /// `allow`: networks that may be targeted although they are not public
    /// (`ICON_CALLBACK_ALLOW_NETWORKS`, `ICON_RETAILER_ALLOW_NETWORKS`). Plain http is refused
    /// until [`Self::allowing_http`].
    pub fn new(allow: Vec<IpNet>) -> Self {
        Self {
            allow,
            allow_http: false,
        }
    }

    /// `ICON_CALLBACK_ALLOW_HTTP` (`ICON_RETAILER_ALLOW_HTTP`): accept `http://` callback
    /// (order) URLs, for local demos and tests whose receivers have no certificate. Off in
    /// production, so a callback and its signature, or an order, cannot be read or altered on
    /// the way.
    pub fn allowing_http(mut self, allow_http: bool) -> Self {
        self.allow_http = allow_http;
        self
    }

    pub fn allowed_networks(&self) -> &[IpNet] {
        &self.allow
    }

    pub fn allows_http(&self) -> bool {
        self.allow_http
    }

    /// Whether ICON may connect to `ip`.
    ///
    /// An IPv4-mapped address (`::ffff:a.b.c.d`) is its IPv4 address: that is where the socket
    /// goes. Any other address must be public or in an allowed network, and so must every IPv4
    /// address it embeds (NAT64, 6to4, Teredo, IPv4-compatible): allowing `64:ff9b::/96` for a
    /// NAT64 egress does not open `64:ff9b::10.0.0.1`.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        let itself = self.allow.iter().any(|net| net.contains(&ip)) || is_public(ip);
        itself
            && match ip {
                IpAddr::V6(v6) => embedded_ipv4(v6)
                    .into_iter()
                    .all(|v4| self.permits(IpAddr::V4(v4))),
                IpAddr::V4(_) => true,
            }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused_by_default(addrs: &[&str]) {
        let p = NetworkPolicy::default();
        for a in addrs {
            assert!(!p.permits(a.parse().unwrap()), "{a} should be refused");
        }
    }

    #[test]
    fn issue_classes_are_refused() {
        refused_by_default(&[
            "64:ff9b::808:808",       // NAT64 well-known, even of a public IPv4
            "64:ff9b:1:808:8:800::",  // NAT64 local-use
            "2002:808:808::1",        // 6to4, even of a public IPv4
            "::8.8.8.8",              // IPv4-compatible
            "fec0::1",                // site-local
            "2001:0:4136:e378::1",    // Teredo
            "::ffff:10.0.0.1",        // IPv4-mapped private
            "::ffff:127.0.0.1",       // IPv4-mapped loopback
            "::ffff:169.254.169.254", // IPv4-mapped cloud metadata
        ]);
    }

    #[test]
    fn allowing_an_ipv4_network_allows_its_mapped_form_only() {
        let p = NetworkPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]);
        assert!(p.permits("127.0.0.1".parse().unwrap()));
        assert!(p.permits("::ffff:127.0.0.1".parse().unwrap()));
        // Other embeddings of 127.0.0.1 stay refused: their prefix itself is not allowed.
        for a in ["64:ff9b::7f00:1", "2002:7f00:1::1", "::127.0.0.1", "::1"] {
            assert!(!p.permits(a.parse().unwrap()), "{a}");
        }
    }

    #[test]
    fn an_allowed_translation_prefix_still_checks_the_embedded_ipv4() {
        let p = NetworkPolicy::new(vec!["64:ff9b::/96".parse().unwrap()]);
        assert!(p.permits("64:ff9b::8.8.8.8".parse().unwrap()));
        for a in [
            "64:ff9b::10.0.0.1",
            "64:ff9b::127.0.0.1",
            "64:ff9b::169.254.169.254",
        ] {
            assert!(!p.permits(a.parse().unwrap()), "{a}");
        }
        let p = NetworkPolicy::new(vec!["2002::/16".parse().unwrap()]);
        assert!(p.permits("2002:808:808::1".parse().unwrap()));
        assert!(!p.permits("2002:a00:1::1".parse().unwrap()));
    }

    #[test]
    fn public_addresses_pass() {
        let p = NetworkPolicy::default();
        for a in [
            "8.8.8.8",
            "::ffff:8.8.8.8",
            "2606:4700:4700::1111",
            "192.0.0.9",
        ] {
            assert!(p.permits(a.parse().unwrap()), "{a}");
        }
    }

    #[test]
    fn http_is_off_until_allowed() {
        assert!(!NetworkPolicy::default().allows_http());
        assert!(NetworkPolicy::default().allowing_http(true).allows_http());
    }
}
