//! Rate limiting (`ICON_RATE_LIMIT`), with one allowance per client IP and one per token
//! subject, so neither one noisy address nor one token spread over many addresses can crowd
//! out everybody else.
//!
//! - Per IP: [`by_ip`], a middleware in front of every route but the probes, so even requests
//!   that never get past authentication are counted. The IP is the TCP peer: `X-Forwarded-For`
//!   is not trusted, since any client can write it. Behind a reverse proxy every request comes
//!   from the proxy's address, so the operator raises the limit (or turns it `off` and limits
//!   at the proxy). IPv6 clients are keyed by their /64, which one subscriber usually holds
//!   whole: keying by full address would give them 2^64 allowances.
//! - Per subject: [`Limiters::check_subject`], called by the auth extractor once the token is
//!   verified, so a forged token cannot spend someone else's allowance.
//!
//! Over the limit: 429 `rate_limited` with `Retry-After` in whole seconds (at least 1).

use crate::problem::ApiError;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, ResponseError};
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The production default: a shopper's app or a partner's integration rarely needs more than a
/// few requests a second; the burst absorbs a page load.
pub const DEFAULT_RATE_LIMIT: &str = "20/s burst 40";

/// Paths never limited: an orchestrator's probes must not see 429 and restart a healthy pod,
/// and a Prometheus scrape must not leave a gap.
const EXEMPT: &[&str] = &["/healthz", "/readyz", "/metrics"];

/// Every this many checks, keys idle long enough to have a full allowance again are dropped,
/// so the tables stay as small as the set of recently active clients.
const PRUNE_EVERY: u64 = 8192;

/// `ICON_RATE_LIMIT`: `N/s`, `N/m` or `N/h`, optionally `burst B` (default: N), or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit(Option<Quota>);

impl Default for RateLimit {
    fn default() -> Self {
        Self::parse(DEFAULT_RATE_LIMIT).expect("the default parses")
    }
}

impl RateLimit {
    pub fn off() -> Self {
        Self(None)
    }

    pub fn is_off(&self) -> bool {
        self.0.is_none()
    }

    /// Parses `20/s burst 40`, `600/m`, `off`.
    pub fn parse(v: &str) -> Result<Self, String> {
        const HINT: &str = "expected `N/s`, `N/m` or `N/h` with an optional `burst B` (such as \
                            `20/s burst 40`), or `off`";
        let words: Vec<&str> = v.split_whitespace().collect();
        let (rate, burst) = match words.as_slice() {
            ["off"] => return Ok(Self::off()),
            [rate] => (*rate, None),
            [rate, "burst", b] => (*rate, Some(*b)),
            _ => return Err(HINT.into()),
        };
        let (n, unit) = rate.split_once('/').ok_or(HINT)?;
        let n: NonZeroU32 = n.parse().map_err(|_| HINT)?;
        let period = match unit {
            "s" => Duration::from_secs(1),
            "m" | "min" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            _ => return Err(HINT.into()),
        };
        let burst: NonZeroU32 = match burst {
            None => n,
            Some(b) => b.parse().map_err(|_| HINT)?,
        };
        let quota = Quota::with_period(period / n.get())
            .filter(|_| period.as_nanos() >= u128::from(n.get()))
            .ok_or("the rate is too high to measure; use at most 1000000000/s")?;
        Ok(Self(Some(quota.allow_burst(burst))))
    }
}

/// The allowances, shared by every worker thread.
pub struct Limiters {
    limiters: Option<(
        DefaultKeyedRateLimiter<IpAddr>,
        DefaultKeyedRateLimiter<String>,
    )>,
    checks: AtomicU64,
}

impl Limiters {
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limiters: limit.0.map(|q| {
                (
                    DefaultKeyedRateLimiter::keyed(q),
                    DefaultKeyedRateLimiter::keyed(q),
                )
            }),
            checks: AtomicU64::new(0),
        }
    }

    /// Counts one request from `ip`.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), ApiError> {
        let Some((by_ip, _)) = &self.limiters else {
            return Ok(());
        };
        self.prune_now_and_then();
        by_ip.check_key(&client_key(ip)).map_err(|not_until| {
            let wait = not_until.wait_time_from(by_ip.clock().now());
            ApiError::rate_limited(
                wait,
                "too many requests from your address; wait Retry-After seconds",
            )
        })
    }

    /// Counts one request by the token subject `owner` (a verified owner key).
    pub fn check_subject(&self, owner: &str) -> Result<(), ApiError> {
        let Some((_, by_subject)) = &self.limiters else {
            return Ok(());
        };
        by_subject
            .check_key(&owner.to_owned())
            .map_err(|not_until| {
                let wait = not_until.wait_time_from(by_subject.clock().now());
                ApiError::rate_limited(
                    wait,
                    "too many requests with this token's subject; wait Retry-After seconds",
                )
            })
    }

    /// Counts one verified event from `retailer` (`POST /retailers/{id}/events`), in the same
    /// keyed limiter as token subjects under a key no subject can have (a NUL first).
    pub fn check_retailer(&self, retailer: &str) -> Result<(), ApiError> {
        let Some((_, by_subject)) = &self.limiters else {
            return Ok(());
        };
        by_subject
            .check_key(&format!("\0retailer:{retailer}"))
            .map_err(|not_until| {
                let wait = not_until.wait_time_from(by_subject.clock().now());
                ApiError::rate_limited(
                    wait,
                    format!(
                        "too many events from retailer {retailer}; wait Retry-After seconds \
                         and send the event again (the same webhook-id is safe)"
                    ),
                )
            })
    }

    fn prune_now_and_then(&self) {
        if self.checks.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            if let Some((by_ip, by_subject)) = &self.limiters {
                by_ip.retain_recent();
                by_ip.shrink_to_fit();
                by_subject.retain_recent();
                by_subject.shrink_to_fit();
            }
        }
    }
}

/// IPv4 addresses as they are; IPv6 by their /64 (see the module docs). An IPv4-mapped IPv6
/// peer (a dual-stack listener) counts as its IPv4 address.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

/// The per-IP middleware; see the module docs.
pub async fn by_ip(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let limited = match (req.app_data::<web::Data<Limiters>>(), req.peer_addr()) {
        (Some(limiters), Some(peer)) if !EXEMPT.contains(&req.path()) => {
            limiters.check_ip(peer.ip()).err()
        }
        _ => None,
    };
    match limited {
        Some(e) => Ok(req.into_response(e.error_response()).map_into_right_body()),
        None => next.call(req).await.map(|r| r.map_into_left_body()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rates_bursts_and_off() {
        assert!(RateLimit::parse("off").unwrap().is_off());
        let q = RateLimit::parse("20/s burst 40").unwrap().0.unwrap();
        assert_eq!(q.burst_size().get(), 40);
        assert_eq!(q.replenish_interval(), Duration::from_millis(50));
        let q = RateLimit::parse(" 6/m ").unwrap().0.unwrap();
        assert_eq!(q.burst_size().get(), 6);
        assert_eq!(q.replenish_interval(), Duration::from_secs(10));
        for bad in [
            "",
            "20",
            "0/s",
            "20/d",
            "20/s burst",
            "20/s burst 0",
            "fast",
        ] {
            assert!(RateLimit::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            RateLimit::default(),
            RateLimit::parse("20/s burst 40").unwrap()
        );
    }

    #[test]
    fn ipv6_clients_share_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(client_key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn a_spent_allowance_says_how_long_to_wait() {
        let limiters = Limiters::new(RateLimit::parse("1/m burst 2").unwrap());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(limiters.check_ip(ip).is_ok());
        assert!(limiters.check_ip(ip).is_ok());
        let e = limiters.check_ip(ip).unwrap_err();
        assert_eq!(e.status.as_u16(), 429);
        assert!(e.retry_after.is_some_and(|s| (1..=60).contains(&s)));
        // Another address and the subjects have allowances of their own.
        assert!(limiters.check_ip("192.0.2.2".parse().unwrap()).is_ok());
        assert!(limiters.check_subject("alice").is_ok());
        let off = Limiters::new(RateLimit::off());
        for _ in 0..100 {
            assert!(off.check_ip(ip).is_ok());
        }
    }
}
