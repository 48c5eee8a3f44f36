//! Command-line arguments, parsed once into a typed [`Config`] (hand-parsed: no new dependency).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub const USAGE: &str = "\
icon-bench: drive checkouts through a running ICON and measure it

USAGE:
    icon-bench [OPTIONS]

SCENARIOS (--scenario):
    steady        open loop at a fixed rate (default --rate 20)
    max           a bounded number in flight (default --concurrency 32)
    fan-out       like steady, with carts of --retailers-per-cart retailers (default 3)
    slow-receiver like steady, but a share --slow-share of the checkouts (every 10th for 0.1)
                  get a callback URL on which this tool's receiver never answers; the
                  healthy ones are reported apart from the slow ones
    backlog: not implemented yet

OPTIONS:
    --gateway URL             ICON's gateway [default: http://127.0.0.1:8080]
    --sim URL                 the retailer simulator, as this tool reaches it [default: http://127.0.0.1:8090]
    --sim-from-icon URL       the simulator as ICON reaches it (order URLs) [default: --sim]
    --jwt-secret SECRET       HS256 secret of ICON's tokens [default: env ICON_JWT_SECRET]
    --scenario NAME           steady | max | fan-out | slow-receiver [default: steady]
    --rate N                  checkouts per second, open loop (steady, fan-out)
    --concurrency N           checkouts in flight at most (max, fan-out)
    --duration D              how long to send, e.g. 60s, 2m [default: 60s]
    --count N                 send exactly N checkouts instead of --duration
    --retailers-per-cart N    retailers bench-r0..r(N-1) in every cart (fan-out only) [default: 3]
    --slow-share F            share of checkouts whose callback hangs, 0 < F < 1, picked evenly
                              by send order (slow-receiver only) [default: 0.1]
    --carts N                 carts made ahead for --concurrency with --duration [default: 4000]
    --callback-host HOST      host ICON uses to reach the callback receiver [default: 127.0.0.1]
    --callback-bind ADDR      where the callback receiver listens [default: 127.0.0.1:0]
    --settle D                wait this long for missing callbacks after the last answer [default: 60s]
    --pids NAME=PID,...       measure these processes (grouped by NAME) instead of finding them by name
    --database-url URL        postgres://user@host:port/db of ICON's database: report committed
                              transactions, rollbacks and rows inserted/updated/deleted per
                              checkout from pg_stat_database (database-wide: other clients
                              count too); unreachable: said once, the run goes on without them
    --json PATH               write the summary as JSON
    --html PATH               write a self-contained HTML report
    -h, --help                print this help

Durations are a number and a unit: ms, s, m, h.
ICON refuses loopback callback URLs unless ICON_CALLBACK_ALLOW_NETWORKS includes them
(scripts/run.sh sets 127.0.0.0/8,::1/128).
";

/// What to run, as chosen by `--scenario`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    Steady,
    Max,
    FanOut,
    SlowReceiver,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Steady => "steady",
            Scenario::Max => "max",
            Scenario::FanOut => "fan-out",
            Scenario::SlowReceiver => "slow-receiver",
        }
    }
}

/// How checkouts are paced.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Load {
    /// Checkouts per second, each sent on schedule whatever happened to earlier ones.
    Rate(f64),
    /// At most this many checkouts waiting for their 202 at once.
    Concurrency(usize),
}

/// When sending stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stop {
    #[serde(serialize_with = "ser_secs")]
    Duration(Duration),
    Count(u64),
}

fn ser_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Which checkouts get the callback URL that hangs: a share held in parts per million, so the
/// pick is exact integer arithmetic and the same checkouts are slow in every run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlowShare(u64);

impl SlowShare {
    const WHOLE: u64 = 1_000_000;

    /// `None` unless `0 < share < 1` (at the resolution of one in a million).
    pub fn new(share: f64) -> Option<Self> {
        let ppm = (share * Self::WHOLE as f64).round();
        (share.is_finite() && ppm >= 1.0 && ppm < Self::WHOLE as f64).then_some(Self(ppm as u64))
    }

    pub fn as_f64(self) -> f64 {
        self.0 as f64 / Self::WHOLE as f64
    }

    /// Whether the checkout sent `index`-th (from 0) is slow: the running count of slow ones
    /// steps up by one each time `share * sent` passes a whole number, so 0.1 picks indices
    /// 9, 19, 29, ... and any prefix of the run holds the share, rounded down.
    pub fn picks(self, index: u64) -> bool {
        ((index + 1) * self.0) / Self::WHOLE > (index * self.0) / Self::WHOLE
    }
}

/// Everything a run needs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// Base URL of the gateway, without a trailing slash.
    pub gateway: String,
    /// Base URL of the simulator as this tool reaches it (health check only).
    pub sim: String,
    /// Base URL of the simulator as ICON reaches it: order URLs are `{sim_from_icon}/{R}/orders`.
    pub sim_from_icon: String,
    pub jwt_secret: String,
    pub scenario: Scenario,
    pub load: Load,
    pub stop: Stop,
    pub retailers_per_cart: usize,
    /// `Some` for `slow-receiver` only.
    pub slow_share: Option<SlowShare>,
    /// Upper bound on carts made ahead when the number of checkouts is not known in advance.
    pub carts_cap: u64,
    pub callback_host: String,
    pub callback_bind: SocketAddr,
    pub settle: Duration,
    /// `None`: find ICON, PostgreSQL and RabbitMQ by process name.
    pub pids: Option<Vec<(String, u32)>>,
    pub json: Option<PathBuf>,
    pub html: Option<PathBuf>,
    /// `--database-url`: where to read `pg_stat_database` before and after the run.
    pub database: Option<tokio_postgres::Config>,
}

impl Config {
    /// How many checkouts to prepare carts for.
    pub fn carts_needed(&self) -> u64 {
        match (self.stop, self.load) {
            (Stop::Count(n), _) => n,
            (Stop::Duration(d), Load::Rate(r)) => (r * d.as_secs_f64()).ceil() as u64,
            (Stop::Duration(_), Load::Concurrency(_)) => self.carts_cap,
        }
    }
}

#[derive(Debug)]
pub enum Parsed {
    Run(Box<Config>),
    Help,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct ArgError(String);

fn err<T>(msg: impl Into<String>) -> Result<T, ArgError> {
    Err(ArgError(msg.into()))
}

/// Parses the arguments after the program name. `env_secret` is `ICON_JWT_SECRET`, read by `main`.
pub fn parse<I>(args: I, env_secret: Option<String>) -> Result<Parsed, ArgError>
where
    I: IntoIterator<Item = String>,
{
    let mut gateway = "http://127.0.0.1:8080".to_string();
    let mut sim = "http://127.0.0.1:8090".to_string();
    let mut sim_from_icon = None;
    let mut jwt_secret = env_secret.filter(|s| !s.is_empty());
    let mut scenario = "steady".to_string();
    let mut rate = None;
    let mut concurrency = None;
    let mut duration = None;
    let mut count = None;
    let mut retailers = None;
    let mut slow_share = None;
    let mut database = None;
    let mut carts_cap = 4000;
    let mut callback_host = "127.0.0.1".to_string();
    let mut callback_bind: SocketAddr = ([127, 0, 0, 1], 0).into();
    let mut settle = Duration::from_secs(60);
    let mut pids = None;
    let mut json = None;
    let mut html = None;

    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        // Both `--flag value` and `--flag=value`.
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        if flag == "-h" || flag == "--help" {
            return Ok(Parsed::Help);
        }
        let mut value = || match inline.clone().or_else(|| it.next()) {
            Some(v) => Ok(v),
            None => err(format!("{flag} needs a value")),
        };
        match flag.as_str() {
            "--gateway" => gateway = base_url("--gateway", &value()?)?,
            "--sim" => sim = base_url("--sim", &value()?)?,
            "--sim-from-icon" => sim_from_icon = Some(base_url("--sim-from-icon", &value()?)?),
            "--jwt-secret" => jwt_secret = Some(value()?),
            "--scenario" => scenario = value()?,
            "--rate" => {
                let v = value()?;
                match v.parse::<f64>() {
                    Ok(r) if r.is_finite() && r > 0.0 => rate = Some(r),
                    _ => return err(format!("--rate: {v:?} is not a positive number")),
                }
            }
            "--concurrency" => concurrency = Some(positive("--concurrency", &value()?)? as usize),
            "--duration" => duration = Some(duration_arg("--duration", &value()?)?),
            "--count" => count = Some(positive("--count", &value()?)?),
            "--retailers-per-cart" => {
                retailers = Some(positive("--retailers-per-cart", &value()?)? as usize)
            }
            "--slow-share" => {
                let v = value()?;
                match v.parse::<f64>().ok().and_then(SlowShare::new) {
                    Some(s) => slow_share = Some(s),
                    None => {
                        return err(format!(
                            "--slow-share: {v:?} is not a share between 0 and 1, like 0.1"
                        ))
                    }
                }
            }
            "--database-url" => database = Some(database_url(&value()?)?),
            "--carts" => carts_cap = positive("--carts", &value()?)?,
            "--callback-host" => callback_host = value()?,
            "--callback-bind" => {
                let v = value()?;
                callback_bind = v.parse().or_else(|_| {
                    err(format!(
                        "--callback-bind: {v:?} is not an address like 127.0.0.1:0"
                    ))
                })?;
            }
            "--settle" => settle = duration_arg("--settle", &value()?)?,
            "--pids" => pids = Some(pid_list(&value()?)?),
            "--json" => json = Some(PathBuf::from(value()?)),
            "--html" => html = Some(PathBuf::from(value()?)),
            other => return err(format!("unknown argument {other:?} (see --help)")),
        }
    }

    let scenario = match scenario.as_str() {
        "steady" => Scenario::Steady,
        "max" => Scenario::Max,
        "fan-out" => Scenario::FanOut,
        "slow-receiver" => Scenario::SlowReceiver,
        "backlog" => {
            return err(format!(
                "--scenario {scenario}: not implemented yet (available: steady, max, fan-out, slow-receiver)"
            ))
        }
        other => {
            return err(format!(
                "--scenario: unknown {other:?} (available: steady, max, fan-out, slow-receiver)"
            ))
        }
    };
    let load =
        match (scenario, rate, concurrency) {
            (_, Some(_), Some(_)) => return err("--rate and --concurrency exclude each other"),
            (Scenario::Steady | Scenario::SlowReceiver, _, Some(_)) => {
                return err(format!(
                    "--scenario {} is open loop: use --rate, or --scenario max",
                    scenario.name()
                ))
            }
            (Scenario::Max, Some(_), _) => return err(
                "--scenario max bounds what is in flight: use --concurrency, or --scenario steady",
            ),
            (Scenario::Max, None, c) => Load::Concurrency(c.unwrap_or(32)),
            (_, None, Some(c)) => Load::Concurrency(c),
            (_, r, None) => Load::Rate(r.unwrap_or(20.0)),
        };
    let stop = match (duration, count) {
        (Some(_), Some(_)) => return err("--duration and --count exclude each other"),
        (_, Some(n)) => Stop::Count(n),
        (d, None) => Stop::Duration(d.unwrap_or(Duration::from_secs(60))),
    };
    let retailers_per_cart = match (scenario, retailers) {
        (Scenario::FanOut, r) => r.unwrap_or(3),
        (_, None) => 1,
        (_, Some(_)) => return err("--retailers-per-cart applies to --scenario fan-out only"),
    };
    let slow_share = match (scenario, slow_share) {
        (Scenario::SlowReceiver, s) => Some(s.unwrap_or(SlowShare(SlowShare::WHOLE / 10))),
        (_, None) => None,
        (_, Some(_)) => return err("--slow-share applies to --scenario slow-receiver only"),
    };
    if retailers_per_cart > 64 {
        return err("--retailers-per-cart: at most 64");
    }
    let Some(jwt_secret) = jwt_secret else {
        return err("no JWT secret: pass --jwt-secret or set ICON_JWT_SECRET");
    };
    Ok(Parsed::Run(Box::new(Config {
        sim_from_icon: sim_from_icon.unwrap_or_else(|| sim.clone()),
        gateway,
        sim,
        jwt_secret,
        scenario,
        load,
        stop,
        retailers_per_cart,
        slow_share,
        carts_cap,
        callback_host,
        callback_bind,
        settle,
        pids,
        json,
        html,
        database,
    })))
}

fn positive(flag: &str, v: &str) -> Result<u64, ArgError> {
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
fn base_url(flag: &str, v: &str) -> Result<String, ArgError> {
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
fn database_url(v: &str) -> Result<tokio_postgres::Config, ArgError> {
    if !(v.starts_with("postgres://") || v.starts_with("postgresql://")) {
        return err("--database-url: expected a URL like postgres://postgres@127.0.0.1:5432/icon");
    }
    v.parse()
        .or_else(|e| err(format!("--database-url: not a PostgreSQL URL: {e}")))
}

/// `gateway=123,postgres=45,postgres=46`.
fn pid_list(v: &str) -> Result<Vec<(String, u32)>, ArgError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Config, ArgError> {
        let args = args.iter().map(|s| s.to_string());
        match parse(args, Some("s3cret".into()))? {
            Parsed::Run(c) => Ok(*c),
            Parsed::Help => panic!("unexpected help"),
        }
    }

    #[test]
    fn defaults_are_steady_at_20_per_second_for_60s() {
        let c = run(&[]).unwrap();
        assert_eq!(c.scenario, Scenario::Steady);
        assert_eq!(c.load, Load::Rate(20.0));
        assert_eq!(c.stop, Stop::Duration(Duration::from_secs(60)));
        assert_eq!(c.gateway, "http://127.0.0.1:8080");
        assert_eq!(c.sim_from_icon, "http://127.0.0.1:8090");
        assert_eq!(c.jwt_secret, "s3cret");
        assert_eq!(c.retailers_per_cart, 1);
        assert_eq!(c.carts_needed(), 1200);
    }

    #[test]
    fn max_defaults_to_32_in_flight_and_takes_both_flag_forms() {
        let c = run(&[
            "--scenario",
            "max",
            "--duration=20s",
            "--gateway",
            "http://h:1/",
        ])
        .unwrap();
        assert_eq!(c.load, Load::Concurrency(32));
        assert_eq!(c.stop, Stop::Duration(Duration::from_secs(20)));
        assert_eq!(c.gateway, "http://h:1");
        assert_eq!(c.carts_needed(), 4000);
    }

    #[test]
    fn fan_out_takes_retailers_per_cart_and_count() {
        let c = run(&[
            "--scenario",
            "fan-out",
            "--retailers-per-cart",
            "10",
            "--count",
            "7",
        ])
        .unwrap();
        assert_eq!(c.retailers_per_cart, 10);
        assert_eq!(c.stop, Stop::Count(7));
        assert_eq!(c.carts_needed(), 7);
    }

    #[test]
    fn unimplemented_and_unknown_scenarios_are_refused_by_name() {
        let e = run(&["--scenario", "backlog"]).unwrap_err();
        assert!(e.0.contains("not implemented yet"), "{e}");
        assert!(run(&["--scenario", "nope"])
            .unwrap_err()
            .0
            .contains("unknown"));
    }

    #[test]
    fn contradictions_and_bad_values_are_refused() {
        assert!(run(&["--rate", "5", "--concurrency", "2", "--scenario", "fan-out"]).is_err());
        assert!(run(&["--scenario", "max", "--rate", "5"]).is_err());
        assert!(run(&["--concurrency", "5"]).is_err());
        assert!(run(&["--duration", "5s", "--count", "5"]).is_err());
        assert!(run(&["--rate", "0"]).is_err());
        assert!(run(&["--duration", "5"]).is_err());
        assert!(run(&["--retailers-per-cart", "3"]).is_err());
        assert!(run(&["--gateway", "https://x"]).is_err());
        assert!(run(&["--pids", "gateway"]).is_err());
        assert!(run(&["--bogus"]).is_err());
        assert!(run(&["--json"]).unwrap_err().0.contains("needs a value"));
    }

    #[test]
    fn a_missing_secret_is_named() {
        let e = parse(Vec::<String>::new(), None).unwrap_err();
        assert!(e.0.contains("ICON_JWT_SECRET"));
    }

    #[test]
    fn pids_durations_and_help() {
        let c = run(&[
            "--pids",
            "gateway=1,postgres=2,postgres=3",
            "--settle",
            "250ms",
        ])
        .unwrap();
        assert_eq!(
            c.pids.unwrap(),
            vec![
                ("gateway".into(), 1),
                ("postgres".into(), 2),
                ("postgres".into(), 3)
            ]
        );
        assert_eq!(c.settle, Duration::from_millis(250));
        assert_eq!(duration_arg("x", "2m").unwrap(), Duration::from_secs(120));
        assert!(matches!(
            parse(["--help".to_string()], None),
            Ok(Parsed::Help)
        ));
    }

    #[test]
    fn slow_receiver_is_open_loop_with_a_tenth_slow_by_default() {
        let c = run(&["--scenario", "slow-receiver", "--rate", "5"]).unwrap();
        assert_eq!(c.scenario, Scenario::SlowReceiver);
        assert_eq!(c.load, Load::Rate(5.0));
        assert_eq!(c.slow_share.unwrap().as_f64(), 0.1);
        let c = run(&["--scenario", "slow-receiver", "--slow-share=0.25"]).unwrap();
        assert_eq!(c.slow_share, SlowShare::new(0.25));
        assert_eq!(run(&[]).unwrap().slow_share, None);
        assert!(run(&["--scenario", "slow-receiver", "--concurrency", "4"]).is_err());
        assert!(run(&["--slow-share", "0.1"]).is_err());
        for bad in ["0", "1", "-0.1", "1.5", "NaN", "x"] {
            assert!(
                run(&["--scenario", "slow-receiver", "--slow-share", bad]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_slow_pick_is_every_nth_and_holds_the_share() {
        let tenth = SlowShare::new(0.1).unwrap();
        let picked: Vec<u64> = (0..40).filter(|&i| tenth.picks(i)).collect();
        assert_eq!(picked, vec![9, 19, 29, 39]);
        let third = SlowShare::new(0.3).unwrap();
        for n in [10u64, 100, 1000, 1001] {
            let slow = (0..n).filter(|&i| third.picks(i)).count() as u64;
            assert_eq!(slow, n * 3 / 10, "first {n}");
        }
    }

    #[test]
    fn database_url_is_parsed_at_the_edge() {
        let c = run(&["--database-url", "postgres://postgres@127.0.0.1:5432/icon"]).unwrap();
        assert_eq!(c.database.unwrap().get_dbname(), Some("icon"));
        assert!(run(&[]).unwrap().database.is_none());
        assert!(run(&["--database-url", "mysql://x/y"]).is_err());
        assert!(run(&["--database-url", "icon"]).is_err());
    }
}
