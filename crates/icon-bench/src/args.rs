//! Command-line arguments, parsed once into a typed [`Config`] (hand-parsed: no new dependency).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::stages::{StagesConfig, TraceShare};

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
    backlog       steady twice: a baseline, then again while --backlog N notifications wait
                  in ICON's retry tiers (their callbacks answered 503 Retry-After: 3600 once
                  each); compares end-to-end p50/p99 and shows each group's current RSS
                  before and after the backlog. Its set-up makes N more carts and sends N
                  more checkouts: minutes for 100000

OPTIONS:
    --gateway URL             ICON's gateway [default: http://127.0.0.1:8080]
    --sim URL                 the retailer simulator, as this tool reaches it [default: http://127.0.0.1:8090]
    --sim-from-icon URL       the simulator as ICON reaches it (order URLs) [default: --sim]
    --jwt-secret SECRET       HS256 secret of ICON's tokens [default: env ICON_JWT_SECRET]
    --scenario NAME           steady | max | fan-out | slow-receiver | backlog [default: steady]
    --rate N                  checkouts per second, open loop (steady, fan-out, slow-receiver,
                              backlog)
    --concurrency N           checkouts in flight at most (max, fan-out)
    --duration D              how long to send, e.g. 60s, 2m [default: 60s]; backlog: each phase
    --count N                 send exactly N checkouts instead of --duration; backlog: each phase
    --retailers-per-cart N    retailers bench-r0..r(N-1) in every cart (fan-out only) [default: 3]
    --slow-share F            share of checkouts whose callback hangs, 0 < F < 1, picked evenly
                              by send order (slow-receiver only) [default: 0.1]
    --backlog N               notifications made to wait in ICON's retry tiers before the
                              second phase (backlog only) [default: 100000]
    --carts N                 carts made ahead for --concurrency with --duration [default: 4000]
    --callback-host HOST      host ICON uses to reach the callback receiver [default: 127.0.0.1]
    --callback-bind ADDR      where the callback receiver listens [default: 127.0.0.1:0]
    --settle D                wait this long for missing callbacks after the last answer [default: 60s]
    --pids NAME=PID,...       measure these processes (grouped by NAME) instead of finding them by name
    --database-url URL        postgres://user@host:port/db of ICON's database: report committed
                              transactions, rollbacks and rows inserted/updated/deleted per
                              checkout from pg_stat_database (database-wide: other clients
                              count too); unreachable: said once, the run goes on without them
    --stages                  break each measured checkout's time into stages from the spans
                              ICON exports: listen for OTLP/HTTP JSON at --otlp-listen, and
                              start ICON with ICON_OTLP_ENDPOINT=http://<that address>
                              (scripts/bench.sh --stages does)
    --otlp-listen ADDR        where the span collector listens, a loopback address; implies
                              --stages [default: 127.0.0.1:4318]
    --stages-share F          share of measured checkouts traced, 0 < F <= 1, picked evenly by
                              send order (the traceparent's sampled flag) [default: 1]
    --json PATH               write the summary as JSON
    --html PATH               write a self-contained HTML report
    -h, --help                print this help

Durations are a number and a unit: ms, s, m, h.
ICON refuses loopback callback URLs unless ICON_CALLBACK_ALLOW_NETWORKS includes them
(scripts/run.sh sets 127.0.0.0/8,::1/128).
The backlog stays after the run: ICON retries it until ICON_CALLBACK_GIVE_UP_AFTER (default
72h); start the next run on a fresh database and RabbitMQ vhost (scripts/bench.sh does).
";

/// What to run, as chosen by `--scenario`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    Steady,
    Max,
    FanOut,
    SlowReceiver,
    Backlog,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Steady => "steady",
            Scenario::Max => "max",
            Scenario::FanOut => "fan-out",
            Scenario::SlowReceiver => "slow-receiver",
            Scenario::Backlog => "backlog",
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
    /// `Some` for `backlog` only: how many notifications wait in ICON's retry tiers during its
    /// second phase.
    pub backlog: Option<u64>,
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
    /// `--stages`: the span collector and the share of checkouts traced.
    pub stages: Option<StagesConfig>,
}

impl Config {
    /// How many checkouts to prepare carts for, in one measured phase.
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
    let mut backlog = None;
    let mut database = None;
    let mut carts_cap = 4000;
    let mut callback_host = "127.0.0.1".to_string();
    let mut callback_bind: SocketAddr = ([127, 0, 0, 1], 0).into();
    let mut settle = Duration::from_secs(60);
    let mut pids = None;
    let mut json = None;
    let mut html = None;
    let mut stages = false;
    let mut otlp_listen = None;
    let mut stages_share = None;

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
        if flag == "--stages" {
            stages = true;
            continue;
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
            "--backlog" => backlog = Some(positive("--backlog", &value()?)?),
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
            "--otlp-listen" => otlp_listen = Some(loopback("--otlp-listen", &value()?)?),
            "--stages-share" => stages_share = Some(share("--stages-share", &value()?)?),
            other => return err(format!("unknown argument {other:?} (see --help)")),
        }
    }

    let scenario = match scenario.as_str() {
        "steady" => Scenario::Steady,
        "max" => Scenario::Max,
        "fan-out" => Scenario::FanOut,
        "slow-receiver" => Scenario::SlowReceiver,
        "backlog" => Scenario::Backlog,
        other => {
            return err(format!(
                "--scenario: unknown {other:?} (available: steady, max, fan-out, slow-receiver, backlog)"
            ))
        }
    };
    let load =
        match (scenario, rate, concurrency) {
            (_, Some(_), Some(_)) => return err("--rate and --concurrency exclude each other"),
            (Scenario::Steady | Scenario::SlowReceiver | Scenario::Backlog, _, Some(_)) => {
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
    let backlog = match (scenario, backlog) {
        (Scenario::Backlog, n) => Some(n.unwrap_or(100_000)),
        (_, None) => None,
        (_, Some(_)) => return err("--backlog applies to --scenario backlog only"),
    };
    if retailers_per_cart > 64 {
        return err("--retailers-per-cart: at most 64");
    }
    let stages = match (stages || otlp_listen.is_some(), stages_share) {
        (true, share) => Some(StagesConfig {
            listen: otlp_listen.unwrap_or_else(|| crate::stages::DEFAULT_LISTEN.into()),
            share: share.unwrap_or(TraceShare::ALL),
        }),
        (false, None) => None,
        (false, Some(_)) => return err("--stages-share needs --stages"),
    };
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
        backlog,
        carts_cap,
        callback_host,
        callback_bind,
        settle,
        pids,
        json,
        html,
        database,
        stages,
    })))
}

mod values;

pub use values::duration_arg;
use values::{base_url, database_url, loopback, pid_list, positive, share};

#[cfg(test)]
mod tests;
