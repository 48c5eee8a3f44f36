//! Push targets: a device's registration token and platform, and a shopper's e-mail address.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The most devices one user keeps registered; registering another drops the oldest.
pub const DEFAULT_MAX_DEVICES_PER_USER: u32 = 10;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DeviceError {
    #[error("must be 1 to 4096 characters")]
    TokenLength,
    #[error("may hold only letters, digits and `-`, `_`, `:`, `.`")]
    TokenCharacters,
    #[error("must be one of `android`, `ios`, `web`")]
    Platform,
    #[error("must be an e-mail address of at most 254 characters, like shopper@example.com")]
    Email,
}

/// A registration token as FCM issues it: 1 to 4,096 characters of letters, digits and `-_:.`.
/// The character set keeps tokens safe in a URL path, a log line and a SQL hash expression.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct DeviceToken(String);

impl DeviceToken {
    pub const MAX_LEN: usize = 4096;

    pub fn parse(s: impl Into<String>) -> Result<Self, DeviceError> {
        let s = s.into();
        if s.is_empty() || s.len() > Self::MAX_LEN {
            return Err(DeviceError::TokenLength);
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b':' | b'.'))
        {
            return Err(DeviceError::TokenCharacters);
        }
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A short, stable form for logs: tokens are credentials of a sort and long.
    pub fn redacted(&self) -> String {
        let head: String = self.0.chars().take(8).collect();
        format!("{head}…({} chars)", self.0.len())
    }
}

impl fmt::Display for DeviceToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The platform a device runs on; it decides the platform-specific part of a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Platform {
    Android,
    Ios,
    Web,
}

impl Platform {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Android => "android",
            Self::Ios => "ios",
            Self::Web => "web",
        }
    }

    pub fn parse(s: &str) -> Result<Self, DeviceError> {
        match s {
            "android" => Ok(Self::Android),
            "ios" => Ok(Self::Ios),
            "web" => Ok(Self::Web),
            _ => Err(DeviceError::Platform),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An e-mail address from a token's `email` claim. Checked only as far as an SMTP envelope
/// needs (one `@`, no spaces or control characters, RFC 5321's length), since the identity
/// provider vouches for the rest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn parse(s: impl Into<String>) -> Result<Self, DeviceError> {
        let s = s.into();
        let ok = s.len() <= 254
            && !s
                .chars()
                .any(|c| c.is_control() || c.is_whitespace() || "<>\",;".contains(c))
            && matches!(s.split_once('@'), Some((local, domain))
                if !local.is_empty() && !domain.is_empty() && !domain.contains('@'));
        if ok {
            Ok(Self(s))
        } else {
            Err(DeviceError::Email)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        assert!(DeviceToken::parse("fcm-token:APA91b_x.y").is_ok());
        assert!(DeviceToken::parse("a".repeat(4096)).is_ok());
        assert_eq!(
            DeviceToken::parse("a".repeat(4097)),
            Err(DeviceError::TokenLength)
        );
        assert_eq!(DeviceToken::parse(""), Err(DeviceError::TokenLength));
        for bad in ["a b", "a/b", "a\\b", "é", "a\0", "a%2F"] {
            assert_eq!(
                DeviceToken::parse(bad),
                Err(DeviceError::TokenCharacters),
                "{bad}"
            );
        }
        let t = DeviceToken::parse("abcdefghijklmnop").unwrap();
        assert_eq!(t.redacted(), "abcdefgh…(16 chars)");
    }

    #[test]
    fn platforms() {
        for p in ["android", "ios", "web"] {
            assert_eq!(Platform::parse(p).unwrap().as_str(), p);
        }
        assert_eq!(Platform::parse("Android"), Err(DeviceError::Platform));
    }

    #[test]
    fn emails() {
        assert!(EmailAddress::parse("ana@example.com").is_ok());
        for bad in [
            "",
            "ana",
            "@example.com",
            "ana@",
            "a b@example.com",
            "a@b@c",
            "<a@b>",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad}");
        }
        assert!(EmailAddress::parse(format!("{}@x.io", "a".repeat(250))).is_err());
    }
}
