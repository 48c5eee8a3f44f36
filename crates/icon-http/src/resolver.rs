//! Host names to addresses, with the [`NetworkPolicy`] applied before any socket is opened.
//!
//! The lookup itself is pluggable ([`Lookup`]): the system resolver in production, a
//! [`StaticLookup`] in tests that need a name to resolve to the address under test.

use icon_domain::NetworkPolicy;
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::dns::Name;

pub(crate) const POLICY_MARKER: &str = "refused by ICON's network policy";

/// A lookup in progress.
pub type Looking<'a> = Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send + 'a>>;

/// Resolves a host name to addresses. The policy is applied to whatever this returns, so an
/// implementation need not (and should not) filter.
pub trait Lookup: Send + Sync + 'static {
    fn lookup<'a>(&'a self, host: &'a str) -> Looking<'a>;
}

/// The operating system's resolver (`getaddrinfo`, through tokio).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup<'a>(&'a self, host: &'a str) -> Looking<'a> {
        Box::pin(async move {
            Ok(tokio::net::lookup_host((host, 0))
                .await?
                .map(|a| a.ip())
                .collect())
        })
    }
}

/// Fixed answers, for tests: a name resolves to exactly the addresses given; any other name
/// does not resolve.
#[derive(Debug, Clone, Default)]
pub struct StaticLookup(HashMap<String, Vec<IpAddr>>);

impl StaticLookup {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(mut self, host: &str, addrs: impl IntoIterator<Item = IpAddr>) -> Self {
        self.0
            .insert(host.to_ascii_lowercase(), addrs.into_iter().collect());
        self
    }
}

impl Lookup for StaticLookup {
    fn lookup<'a>(&'a self, host: &'a str) -> Looking<'a> {
        let found = self.0.get(&host.to_ascii_lowercase()).cloned();
        Box::pin(async move {
            found.ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::NotFound, format!("{host} is unknown"))
            })
        })
    }
}

/// Resolves host names and removes every address the policy refuses; if none is left the
/// connection fails before any socket is opened. The connector connects only to what this
/// returns, so the checked address is the one connected to.
#[derive(Clone)]
pub struct PolicyResolver {
    policy: Option<NetworkPolicy>,
    lookup: Arc<dyn Lookup>,
    /// Tests only: every address that passed the policy is replaced by this loopback witness,
    /// so a policy bug shows up as a connection to the witness and never as traffic to the
    /// (possibly private) address under test.
    #[cfg(test)]
    pub(crate) divert: Option<IpAddr>,
}

impl PolicyResolver {
    pub fn new(policy: Option<NetworkPolicy>) -> Self {
        Self::with_lookup(policy, Arc::new(SystemLookup))
    }

    pub fn with_lookup(policy: Option<NetworkPolicy>, lookup: Arc<dyn Lookup>) -> Self {
        Self {
            policy,
            lookup,
            #[cfg(test)]
            divert: None,
        }
    }

    /// The addresses of `host` that may be connected to.
    pub async fn resolve(&self, host: &str) -> std::io::Result<Vec<SocketAddr>> {
        let addrs = self.lookup.lookup(host).await?;
        let allowed = match &self.policy {
            None => addrs,
            Some(policy) => {
                let (allowed, refused): (Vec<_>, Vec<_>) =
                    addrs.into_iter().partition(|ip| policy.permits(*ip));
                if allowed.is_empty() {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::PermissionDenied,
                        format!("{host} resolves to {refused:?}, which is {POLICY_MARKER}"),
                    ));
                }
                allowed
            }
        };
        #[cfg(test)]
        let allowed = match self.divert {
            Some(witness) => allowed.iter().map(|_| witness).collect(),
            None => allowed,
        };
        Ok(allowed
            .into_iter()
            .map(|ip| SocketAddr::new(ip, 0))
            .collect())
    }
}

type Resolving =
    Pin<Box<dyn Future<Output = std::io::Result<std::vec::IntoIter<SocketAddr>>> + Send>>;

impl tower_service::Service<Name> for PolicyResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Resolving;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { this.resolve(name.as_str()).await.map(Vec::into_iter) })
    }
}
