//! `AccessTokens`: the OAuth2 access tokens the fake token endpoint has issued, so the fake FCM
//! accepts exactly those, until they expire or are revoked (`POST /fcm/revoke`, which lets a test
//! prove a client renews its token after a 401 instead of giving up).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// How many tokens are kept; past this the oldest are forgotten (their next use gets a 401, as a
/// token Google no longer knows would), so a client that grants far too often stays bounded.
pub const MAX_LIVE_TOKENS: usize = 100_000;

/// Why a bearer token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// No `Authorization: Bearer` header.
    Missing,
    /// Never issued here, or forgotten.
    Unknown,
    Expired,
    Revoked,
}

impl Refused {
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::Missing => "missing",
            Refused::Unknown => "unknown",
            Refused::Expired => "expired",
            Refused::Revoked => "revoked",
        }
    }
}

#[derive(Debug)]
struct Issued {
    expires_at: Instant,
    revoked: bool,
}

/// Tokens issued, oldest first in `order`.
#[derive(Debug, Default)]
pub(crate) struct AccessTokens {
    issued: HashMap<String, Issued>,
    order: VecDeque<String>,
}

impl AccessTokens {
    /// A new random token living `ttl` from `now`. Expired ones are dropped on the way (with a
    /// fixed TTL, issue order is expiry order), so a steady client keeps the table small.
    pub(crate) fn issue(&mut self, ttl: Duration, now: Instant) -> String {
        while let Some(oldest) = self.order.front() {
            let gone = self.issued.get(oldest).is_none_or(|t| t.expires_at <= now);
            if !gone && self.order.len() < MAX_LIVE_TOKENS {
                break;
            }
            if let Some(oldest) = self.order.pop_front() {
                self.issued.remove(&oldest);
            }
        }
        let token = format!("sim-at-{}", uuid::Uuid::new_v4().simple());
        self.issued.insert(
            token.clone(),
            Issued {
                expires_at: now + ttl,
                revoked: false,
            },
        );
        self.order.push_back(token.clone());
        token
    }

    pub(crate) fn check(&self, token: Option<&str>, now: Instant) -> Result<(), Refused> {
        let issued = self
            .issued
            .get(token.ok_or(Refused::Missing)?)
            .ok_or(Refused::Unknown)?;
        if issued.revoked {
            Err(Refused::Revoked)
        } else if issued.expires_at <= now {
            Err(Refused::Expired)
        } else {
            Ok(())
        }
    }

    /// Revokes every token issued so far; tokens issued later are unaffected. Returns how many
    /// were still usable.
    pub(crate) fn revoke_all(&mut self, now: Instant) -> usize {
        let mut usable = 0;
        for token in self.issued.values_mut() {
            if !token.revoked && token.expires_at > now {
                usable += 1;
            }
            token.revoked = true;
        }
        usable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(60);

    #[test]
    fn issued_tokens_work_until_they_expire() {
        let mut tokens = AccessTokens::default();
        let start = Instant::now();
        let token = tokens.issue(TTL, start);
        assert!(token.starts_with("sim-at-"));
        assert_eq!(tokens.check(Some(&token), start), Ok(()));
        assert_eq!(
            tokens.check(Some(&token), start + TTL),
            Err(Refused::Expired)
        );
        assert_eq!(tokens.check(Some("sim-at-x"), start), Err(Refused::Unknown));
        assert_eq!(tokens.check(None, start), Err(Refused::Missing));
        assert_ne!(tokens.issue(TTL, start), token, "tokens are random");
    }

    #[test]
    fn revocation_covers_tokens_issued_so_far_only() {
        let mut tokens = AccessTokens::default();
        let now = Instant::now();
        let before = tokens.issue(TTL, now);
        assert_eq!(tokens.revoke_all(now), 1);
        let after = tokens.issue(TTL, now);
        assert_eq!(tokens.check(Some(&before), now), Err(Refused::Revoked));
        assert_eq!(tokens.check(Some(&after), now), Ok(()));
    }

    #[test]
    fn expired_tokens_are_dropped_when_issuing() {
        let mut tokens = AccessTokens::default();
        let start = Instant::now();
        let old = tokens.issue(TTL, start);
        tokens.issue(TTL, start + TTL);
        assert_eq!(tokens.issued.len(), 1);
        assert_eq!(tokens.check(Some(&old), start), Err(Refused::Unknown));
    }
}
