//! Reading settings from the environment.
//!
//! Each service defines its own typed settings struct and builds it from an [`Env`]: a snapshot
//! of the variables taken once at start. Tests build an `Env` from a list instead of mutating the
//! process environment. A bad value yields a [`SettingsError`] that names the variable, the value
//! and what was expected, which `main` prints as its one line before exiting non-zero.

use ipnet::IpNet;
use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
#[error("{var}={value:?} is invalid: {reason}")]
pub struct SettingsError {
    pub var: &'static str,
    pub value: String,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
#[error("{var} must be set: {reason}")]
pub struct MissingSetting {
    pub var: &'static str,
    pub reason: &'static str,
}

/// A snapshot of environment variables.
#[derive(Debug, Clone, Default)]
pub struct Env(HashMap<String, String>);

impl Env {
    /// The process environment, read once.
    pub fn from_process() -> Self {
        Self(std::env::vars().collect())
    }

    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }

    pub fn set(&mut self, var: &str, value: impl Into<String>) {
        self.0.insert(var.to_owned(), value.into());
    }

    /// The raw value, if set and not empty (an empty variable means "use the default", as most
    /// operators expect from `FOO= cmd`).
    pub fn raw(&self, var: &str) -> Option<&str> {
        self.0
            .get(var)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    pub fn string(&self, var: &'static str, default: &str) -> String {
        self.raw(var).unwrap_or(default).to_owned()
    }

    /// Parses `var` with `parse`, or returns `default` when it is unset.
    pub fn parse_with<T>(
        &self,
        var: &'static str,
        default: T,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, SettingsError> {
        match self.raw(var) {
            None => Ok(default),
            Some(value) => parse(value).map_err(|reason| SettingsError {
                var,
                value: value.to_owned(),
                reason,
            }),
        }
    }

    /// Parses `var` with its `FromStr`.
    pub fn parse<T: FromStr>(&self, var: &'static str, default: T) -> Result<T, SettingsError>
    where
        T::Err: std::fmt::Display,
    {
        self.parse_with(var, default, |v| {
            v.trim().parse::<T>().map_err(|e| e.to_string())
        })
    }

    /// A count of at least 1 that fits a `u16` (prefetch limits).
    pub fn positive_u16(&self, var: &'static str, default: u16) -> Result<u16, SettingsError> {
        self.parse_with(var, default, |v| match v.trim().parse::<u16>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err("expected a whole number from 1 to 65535".into()),
        })
    }

    /// An optional `host:port` listen address; unset means none.
    pub fn optional_addr(&self, var: &'static str) -> Result<Option<String>, SettingsError> {
        self.parse_with(var, None, |v| {
            v.trim()
                .parse::<std::net::SocketAddr>()
                .map(|_| Some(v.trim().to_owned()))
                .map_err(|_| "expected host:port such as 0.0.0.0:9090".to_owned())
        })
    }

    pub fn duration(
        &self,
        var: &'static str,
        default: Duration,
    ) -> Result<Duration, SettingsError> {
        self.parse_with(var, default, parse_duration)
    }
}

const DURATION_HINT: &str = "expected a duration such as 250ms, 10s, 1m, 10m or 72h";

/// Parses `250ms`, `10s`, `1m`, `2h`, `3d` (one number and one unit; a bare number is refused,
/// because "10" is ambiguous).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("`{s}` has no unit; {DURATION_HINT}"))?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` does not start with a number; {DURATION_HINT}"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        "d" => Duration::from_secs(n * 86_400),
        _ => return Err(format!("unknown unit `{unit}`; {DURATION_HINT}")),
    };
    Ok(d)
}

/// Parses a comma-separated list of durations, none zero, at least one.
pub fn parse_duration_list(s: &str) -> Result<Vec<Duration>, String> {
    let list = s
        .split(',')
        .map(|part| parse_duration(part.trim()))
        .collect::<Result<Vec<_>, _>>()?;
    if list.is_empty() {
        return Err("expected at least one duration".into());
    }
    if list.iter().any(Duration::is_zero) {
        return Err("a delay of zero would retry in a tight loop; use at least 1ms".into());
    }
    Ok(list)
}

/// Parses a comma-separated list of CIDRs (`127.0.0.0/8, ::1/128`); a bare address is taken as
/// a single host.
pub fn parse_networks(s: &str) -> Result<Vec<IpNet>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<IpNet>()
                .or_else(|_| p.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| format!("`{p}` is not a CIDR such as 127.0.0.0/8 or ::1/128"))
        })
        .collect()
}

/// Parses a switch: `true` or `false` (also `1`/`0`), any case.
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches() {
        assert_eq!(parse_bool(" TRUE "), Ok(true));
        assert_eq!(parse_bool("0"), Ok(false));
        assert!(parse_bool("yes please").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("72h"), Ok(Duration::from_secs(72 * 3600)));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("ten s").is_err());
        assert!(parse_duration("5y").is_err());
        assert_eq!(
            parse_duration_list("10s, 1m,10m").unwrap(),
            vec![
                Duration::from_secs(10),
                Duration::from_secs(60),
                Duration::from_secs(600)
            ]
        );
        assert!(parse_duration_list("10s,0s").is_err());
    }

    #[test]
    fn errors_name_the_variable() {
        let env = Env::from_pairs([("ICON_CALLBACK_TIMEOUT", "soon")]);
        let err = env
            .duration("ICON_CALLBACK_TIMEOUT", Duration::from_secs(10))
            .unwrap_err();
        let line = err.to_string();
        assert!(
            line.starts_with("ICON_CALLBACK_TIMEOUT=\"soon\" is invalid"),
            "{line}"
        );
    }

    #[test]
    fn networks() {
        let nets = parse_networks("127.0.0.0/8, ::1").unwrap();
        assert_eq!(nets.len(), 2);
        assert!(parse_networks("").unwrap().is_empty());
        assert!(parse_networks("10.0.0.0/33").is_err());
    }
}
