//! Parsers of single option values; each error names its option.

use std::net::SocketAddr;
use std::time::Duration;

use super::{err, ArgError};
use crate::stages::TraceShare;

pub(super) fn positive(flag: &str, v: &str) -> Result<u64, ArgError> {
    match v.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => err(format!("{flag}: {v:?} is not a positive whole number")),
    }
}

/// `10ms`, `20s`, `2m`, `1h`.
pub fn duration_arg(flag: &str, v: &str) -> Result<Duration, ArgError> {
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: u64 = match num.parse() {
        Ok(n) => n,
        Err(_) => return err(format!("{flag}: {v:?} is not a duration like 30s")),
    };
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return err(format!("{flag}: {v:?} needs a unit: ms, s, m or h")),
    };
    Ok(d)
}

/// Plain `http://host[:port]`: the client speaks no TLS, and paths are appended to it.
pub(super) fn base_url(flag: &str, v: &str) -> Result<String, ArgError> {
    let trimmed = v.trim_end_matches('/');
    match trimmed.parse::<http::Uri>() {
        Ok(uri) if uri.scheme_str() == Some("http") && uri.host().is_some() => {
            Ok(trimmed.to_string())
        }
        Ok(uri) if uri.scheme_str() == Some("https") => {
            err(format!("{flag}: https is not supported (plain http only)"))
        }
        _ => err(format!(
            "{flag}: {v:?} is not a URL like http://127.0.0.1:8080"
        )),
    }
}

/// A libpq-style URL; the database named in it is the one whose counters are read.
pub(super) fn database_url(v: &str) -> Result<tokio_postgres::Config, ArgError> {
    if !(v.starts_with("postgres://") || v.starts_with("postgresql://")) {
        return err("--database-url: expected a URL like postgres://postgres@127.0.0.1:5432/icon");
    }
    v.parse()
        .or_else(|e| err(format!("--database-url: not a PostgreSQL URL: {e}")))
}

/// `gateway=123,postgres=45,postgres=46`.
pub(super) fn pid_list(v: &str) -> Result<Vec<(String, u32)>, ArgError> {
    v.split(',')
        .filter(|s| !s.is_empty())
        .map(|item| match item.split_once('=') {
            Some((name, pid)) if !name.is_empty() => match pid.parse::<u32>() {
                Ok(p) => Ok((name.to_string(), p)),
                Err(_) => err(format!("--pids: {pid:?} is not a process id")),
            },
            _ => err(format!("--pids: {item:?} is not NAME=PID")),
        })
        .collect()
}

/// `127.0.0.1:4318`, `[::1]:0`: a socket address on loopback only, as the span collector takes
/// whatever is posted to it.
pub(super) fn loopback(flag: &str, v: &str) -> Result<SocketAddr, ArgError> {
    match v.parse::<SocketAddr>() {
        Ok(a) if a.ip().is_loopback() => Ok(a),
        Ok(_) => err(format!(
            "{flag}: {v:?} is not a loopback address (127.0.0.0/8 or ::1)"
        )),
        Err(_) => err(format!(
            "{flag}: {v:?} is not an address like 127.0.0.1:4318"
        )),
    }
}

/// `0.1`, `1`: a share above 0 and at most 1.
pub(super) fn share(flag: &str, v: &str) -> Result<TraceShare, ArgError> {
    match v.parse::<f64>().ok().and_then(TraceShare::new) {
        Some(s) => Ok(s),
        None => err(format!(
            "{flag}: {v:?} is not a share above 0 and at most 1, like 0.1"
        )),
    }
}
