//! Identifiers. Each is a newtype so that a cart id can never be passed where a checkout id is
//! expected, and a retailer slug is validated once.

use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    #[error("retailer_id must be 1 to 64 characters of a-z, 0-9 and '-'")]
    BadRetailerId,
    #[error("the user id (the token's `sub`) must be 1 to 255 characters")]
    BadUserId,
}

/// A checkout. UUIDv7, so ids sort by creation time in indexes and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CheckoutId(Uuid);

impl CheckoutId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
    /// When the checkout was accepted: a UUIDv7 carries its creation time (milliseconds), so
    /// the accept-to-final time needs no read. `None` for an id that is not a v7.
    pub fn accepted_at(&self) -> Option<std::time::SystemTime> {
        let (secs, nanos) = self.0.get_timestamp()?.to_unix();
        Some(std::time::UNIX_EPOCH + std::time::Duration::new(secs, nanos))
    }
}

impl Default for CheckoutId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for CheckoutId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for CheckoutId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// One notification (one channel of one checkout). Its id is the `webhook-id` a receiver sees, so
/// it stays the same across every retry of that notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NotificationId(Uuid);

impl NotificationId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl Default for NotificationId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for NotificationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "msg_{}", self.0.simple())
    }
}

/// A cart: an integer, as partners already hold cart ids as numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CartId(i64);

impl CartId {
    pub fn new(id: i64) -> Self {
        Self(id)
    }
    pub fn get(&self) -> i64 {
        self.0
    }
}

impl fmt::Display for CartId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A retailer's slug, `[a-z0-9-]{1,64}`: it appears in URLs and idempotency keys, so it is kept
/// to characters that need no escaping.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RetailerId(String);

impl RetailerId {
    pub fn parse(s: impl Into<String>) -> Result<Self, IdError> {
        let s = s.into();
        let ok = (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Self(s))
        } else {
            Err(IdError::BadRetailerId)
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for RetailerId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(s)
    }
}

impl From<RetailerId> for String {
    fn from(id: RetailerId) -> Self {
        id.0
    }
}

impl fmt::Display for RetailerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The authenticated user, from the bearer token's `sub`. Carts and checkouts belong to one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserId(String);

impl UserId {
    pub fn parse(s: impl Into<String>) -> Result<Self, IdError> {
        let s = s.into();
        if (1..=255).contains(&s.len()) && !s.chars().any(char::is_control) {
            Ok(Self(s))
        } else {
            Err(IdError::BadUserId)
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retailer_slugs() {
        assert!(RetailerId::parse("acme-1").is_ok());
        assert_eq!(RetailerId::parse(""), Err(IdError::BadRetailerId));
        assert_eq!(RetailerId::parse("Acme"), Err(IdError::BadRetailerId));
        assert_eq!(RetailerId::parse("a/b"), Err(IdError::BadRetailerId));
        assert!(RetailerId::parse("a".repeat(64)).is_ok());
        assert!(RetailerId::parse("a".repeat(65)).is_err());
    }

    #[test]
    fn webhook_ids_are_stable_strings() {
        let id = NotificationId::new();
        assert_eq!(id.to_string(), format!("msg_{}", id.as_uuid().simple()));
    }
}
