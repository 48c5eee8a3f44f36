//! The simulator's settings, read once from the environment.

use icon_runtime::{Env, SettingsError};
use std::net::SocketAddr;
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
    /// `ICON_LOG`: the tracing filter, as for every ICON binary.
    pub log: String,
}

impl SimSettings {
    pub const DEFAULT_ADDR: &'static str = "127.0.0.1:8090";
    pub const DEFAULT_SLOW_DELAY: Duration = Duration::from_secs(2);

    /// Reads and checks every setting, so a typo stops the start with a line naming the variable
    /// rather than surfacing later as a confusing bind error.
    pub fn from_env(env: &Env) -> Result<Self, SettingsError> {
        let addr = env.parse_with("ICON_SIM_ADDR", Self::DEFAULT_ADDR.to_owned(), |v| {
            // An IP literal only: a host name would need a DNS lookup at start, and the
            // simulator has no business listening on whatever a name resolves to.
            v.trim()
                .parse::<SocketAddr>()
                .map(|a| a.to_string())
                .map_err(|_| {
                    "expected an IP address and port such as 127.0.0.1:8090, 0.0.0.0:8090 or \
                     [::1]:0"
                        .to_owned()
                })
        })?;
        Ok(Self {
            addr,
            slow_delay: env.duration("ICON_SIM_SLOW_DELAY", Self::DEFAULT_SLOW_DELAY)?,
            log: env.string("ICON_LOG", "info"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let s = SimSettings::from_env(&Env::default()).expect("defaults are valid");
        assert_eq!(s.addr, "127.0.0.1:8090");
        assert_eq!(s.slow_delay, Duration::from_secs(2));
        assert_eq!(s.log, "info");
    }

    #[test]
    fn reads_each_variable() {
        let env = Env::from_pairs([
            ("ICON_SIM_ADDR", "[::1]:0"),
            ("ICON_SIM_SLOW_DELAY", "250ms"),
            ("ICON_LOG", "debug"),
        ]);
        let s = SimSettings::from_env(&env).expect("valid");
        assert_eq!(s.addr, "[::1]:0");
        assert_eq!(s.slow_delay, Duration::from_millis(250));
        assert_eq!(s.log, "debug");
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
    }
}
