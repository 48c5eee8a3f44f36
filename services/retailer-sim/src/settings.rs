//! The simulator's settings, read once from the environment.

use crate::fcm::FcmPublicKey;
use icon_http::Url;
use icon_runtime::{Env, SettingsError};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// Everything the simulator can be told at start.
#[derive(Debug, Clone)]
pub struct SimSettings {
    /// `ICON_SIM_ADDR`: where `main` listens. Loopback by default so a local run is not reachable
    /// from the network; containers set `0.0.0.0:8090`. Port `0` picks a free port, which `main`
    /// logs.
    pub addr: String,
    /// `ICON_SIM_SLOW_DELAY`: how long a `slow-` SKU waits before confirming. Long enough by
    /// default (2s) to sit inside ICON's retailer deadline yet be visible in latency charts.
    pub slow_delay: Duration,
    /// `ICON_SIM_SMTP_ADDR`: where `main` runs the SMTP sink, an IP and port like
    /// `ICON_SIM_ADDR` (default `127.0.0.1:2525`, an unprivileged port so no root is needed), or
    /// `off` (`None`) for no SMTP sink. Containers set `0.0.0.0:2525`.
    pub smtp_addr: Option<String>,
    /// `ICON_SIM_FCM_PUBLIC_KEY`: a PEM file with the RSA public key that signed grants are
    /// checked against, for a service account of one's own. Unset, the demo key embedded at build
    /// time, which matches `deploy/demo/fcm-demo-service-account.json`. Read and parsed at start,
    /// so a wrong path or a non-key stops the start rather than refusing every grant.
    pub fcm_public_key: FcmPublicKey,
    /// `ICON_SIM_FCM_TOKEN_TTL`: how long an issued access token lives (default 1h, Google's).
    /// Short values let a demo show a client renewing its token; at least one second, since the
    /// token response counts in whole seconds.
    pub fcm_token_ttl: Duration,
    /// `ICON_SIM_ICON_URL`: ICON's base URL (the gateway), where events about `async-` orders go
    /// (`{ICON_SIM_ICON_URL}/retailers/{retailer}/events`). Default `http://127.0.0.1:8080`, the
    /// gateway of a local run. The only place the simulator sends events to.
    pub icon_url: Url,
    /// `ICON_SIM_ASYNC_DELAY`: how long an `async-` order waits before each event it reports,
    /// and a `cancel-async-` cancellation before the one it reports (default 2s: long enough
    /// for ICON to have recorded the 202 first, short enough for a demo).
    pub async_delay: Duration,
    /// `ICON_LOG`, `ICON_LOG_FORMAT`, `ICON_OTLP_ENDPOINT`: log filter and format, span export.
    pub log: icon_runtime::telemetry::TelemetrySettings,
}

impl SimSettings {
    pub const DEFAULT_ADDR: &'static str = "127.0.0.1:8090";
    pub const DEFAULT_SLOW_DELAY: Duration = Duration::from_secs(2);
    pub const DEFAULT_SMTP_ADDR: &'static str = "127.0.0.1:2525";
    pub const DEFAULT_FCM_TOKEN_TTL: Duration = Duration::from_secs(3600);
    pub const DEFAULT_ICON_URL: &'static str = "http://127.0.0.1:8080";
    pub const DEFAULT_ASYNC_DELAY: Duration = Duration::from_secs(2);

    /// Reads and checks every setting, so a typo stops the start with a line naming the variable
    /// rather than surfacing later as a confusing bind error.
    pub fn from_env(env: &Env) -> Result<Self, SettingsError> {
        let addr = env.parse_with("ICON_SIM_ADDR", Self::DEFAULT_ADDR.to_owned(), |v| {
            listen_addr(v, 8090)
        })?;
        let smtp_addr = env.parse_with(
            "ICON_SIM_SMTP_ADDR",
            Some(Self::DEFAULT_SMTP_ADDR.to_owned()),
            |v| match v.trim() {
                "off" => Ok(None),
                v => listen_addr(v, 2525)
                    .map(Some)
                    .map_err(|e| format!("{e}, or off")),
            },
        )?;
        let fcm_public_key =
            env.parse_with("ICON_SIM_FCM_PUBLIC_KEY", FcmPublicKey::demo(), |v| {
                FcmPublicKey::from_pem_file(Path::new(v.trim()))
            })?;
        let fcm_token_ttl = env.duration("ICON_SIM_FCM_TOKEN_TTL", Self::DEFAULT_FCM_TOKEN_TTL)?;
        if fcm_token_ttl < Duration::from_secs(1) {
            return Err(SettingsError {
                var: "ICON_SIM_FCM_TOKEN_TTL",
                value: env.string("ICON_SIM_FCM_TOKEN_TTL", ""),
                reason: "must be at least 1s: expires_in counts whole seconds".to_owned(),
            });
        }
        let default_icon_url = base_url(Self::DEFAULT_ICON_URL).expect("the default is valid");
        let icon_url = env.parse_with("ICON_SIM_ICON_URL", default_icon_url, base_url)?;
        Ok(Self {
            addr,
            slow_delay: env.duration("ICON_SIM_SLOW_DELAY", Self::DEFAULT_SLOW_DELAY)?,
            smtp_addr,
            fcm_public_key,
            fcm_token_ttl,
            icon_url,
            async_delay: env.duration("ICON_SIM_ASYNC_DELAY", Self::DEFAULT_ASYNC_DELAY)?,
            log: icon_runtime::telemetry::TelemetrySettings::from_env(env)?,
        })
    }
}

/// An IP literal only: a host name would need a DNS lookup at start, and the simulator has no
/// business listening on whatever a name resolves to.
fn listen_addr(v: &str, port: u16) -> Result<String, String> {
    v.trim()
        .parse::<SocketAddr>()
        .map(|a| a.to_string())
        .map_err(|_| {
            format!(
                "expected an IP address and port such as 127.0.0.1:{port}, 0.0.0.0:{port} or \
                 [::1]:0"
            )
        })
}

/// An http(s) URL with a host, that paths can be appended to: a query or a fragment would end
/// up in the middle of every event URL, so they are refused rather than guessed around.
fn base_url(v: &str) -> Result<Url, String> {
    const HINT: &str = "expected an http(s) URL such as http://127.0.0.1:8080";
    let url = Url::parse(v.trim()).map_err(|e| format!("{e}: {HINT}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(HINT.to_owned());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("{HINT}, without a query or fragment"));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let s = SimSettings::from_env(&Env::default()).expect("defaults are valid");
        assert_eq!(s.addr, "127.0.0.1:8090");
        assert_eq!(s.slow_delay, Duration::from_secs(2));
        assert_eq!(s.smtp_addr.as_deref(), Some("127.0.0.1:2525"));
        assert!(format!("{:?}", s.fcm_public_key).contains("embedded demo key"));
        assert_eq!(s.fcm_token_ttl, Duration::from_secs(3600));
        assert_eq!(s.icon_url.as_str(), "http://127.0.0.1:8080/");
        assert_eq!(s.async_delay, Duration::from_secs(2));
        assert_eq!(s.log.filter, "info");
    }

    #[test]
    fn reads_each_variable() {
        let key =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/demo/fcm-demo-public.pem");
        let env = Env::from_pairs([
            ("ICON_SIM_ADDR", "[::1]:0"),
            ("ICON_SIM_SLOW_DELAY", "250ms"),
            ("ICON_SIM_SMTP_ADDR", "0.0.0.0:25"),
            ("ICON_SIM_FCM_PUBLIC_KEY", key.to_str().expect("UTF-8 path")),
            ("ICON_SIM_FCM_TOKEN_TTL", "90s"),
            ("ICON_SIM_ICON_URL", "https://icon.example/api/"),
            ("ICON_SIM_ASYNC_DELAY", "200ms"),
            ("ICON_LOG", "debug"),
        ]);
        let s = SimSettings::from_env(&env).expect("valid");
        assert_eq!(s.addr, "[::1]:0");
        assert_eq!(s.slow_delay, Duration::from_millis(250));
        assert_eq!(s.smtp_addr.as_deref(), Some("0.0.0.0:25"));
        assert!(format!("{:?}", s.fcm_public_key).contains("fcm-demo-public.pem"));
        assert_eq!(s.fcm_token_ttl, Duration::from_secs(90));
        assert_eq!(s.icon_url.as_str(), "https://icon.example/api/");
        assert_eq!(s.async_delay, Duration::from_millis(200));
        assert_eq!(s.log.filter, "debug");

        let off = Env::from_pairs([("ICON_SIM_SMTP_ADDR", "off")]);
        assert_eq!(SimSettings::from_env(&off).expect("valid").smtp_addr, None);
    }

    #[test]
    fn bad_values_name_the_variable() {
        let err = SimSettings::from_env(&Env::from_pairs([("ICON_SIM_ADDR", "localhost")]))
            .expect_err("not an address");
        assert_eq!(err.var, "ICON_SIM_ADDR");
        assert!(err
            .to_string()
            .starts_with("ICON_SIM_ADDR=\"localhost\" is invalid"));

        let err = SimSettings::from_env(&Env::from_pairs([("ICON_SIM_SLOW_DELAY", "2")]))
            .expect_err("no unit");
        assert_eq!(err.var, "ICON_SIM_SLOW_DELAY");

        for (var, value) in [
            ("ICON_SIM_SMTP_ADDR", "localhost:25"),
            ("ICON_SIM_FCM_PUBLIC_KEY", "/nonexistent.pem"),
            (
                "ICON_SIM_FCM_PUBLIC_KEY",
                concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"),
            ),
            ("ICON_SIM_FCM_TOKEN_TTL", "500ms"),
            ("ICON_SIM_ICON_URL", "127.0.0.1:8080"),
            ("ICON_SIM_ICON_URL", "ftp://127.0.0.1/"),
            ("ICON_SIM_ICON_URL", "http://127.0.0.1:8080/?x=1"),
            ("ICON_SIM_ASYNC_DELAY", "soon"),
        ] {
            let err = SimSettings::from_env(&Env::from_pairs([(var, value)]))
                .expect_err(&format!("{var}={value} accepted"));
            assert_eq!(err.var, var);
        }
    }
}
