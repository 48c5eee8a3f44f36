//! One benchmark run: set up through the public API, then one measured phase ([`measure`]:
//! start the clock, drive checkouts, wait for the callbacks, account for it all), or, for the
//! `backlog` scenario, the phases of [`crate::backlog`] around two of them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::api::{mint_token, Api};
use crate::args::{Config, Load, Scenario, SlowShare, Stop};
use crate::backlog::compare::BacklogReport;
use crate::dbstats::{self, PerCheckout};
use crate::drive::{self, Shot};
use crate::procs::{self, GroupUsage};
use crate::receiver::{self, Receiver, HANG_PATH};
use crate::setup;
use crate::stages::{self, collector::Collector, StageReport};
use crate::stats::{self, Accounting, Outcome};

/// Wait before the last `pg_stat_database` reading: a backend's counters reach it only when
/// the backend flushes them, which lags behind its commits.
const STATS_FLUSH_WAIT: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("setup: {0}")]
    Setup(String),
    #[error("callback receiver: cannot listen: {0}")]
    Receiver(#[source] std::io::Error),
    #[error("span collector (--stages): cannot listen on {0}: {1}")]
    Collector(std::net::SocketAddr, #[source] std::io::Error),
    #[error("minting a token: {0}")]
    Token(#[from] jsonwebtoken::errors::Error),
}

/// The whole result, as printed and written to `--json`.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub scenario: &'static str,
    pub load: Load,
    pub stop: Stop,
    pub retailers_per_cart: usize,
    pub gateway: String,
    pub callback_url: String,
    /// `slow-receiver`: the URL that hangs, and the share of checkouts given it.
    pub slow_callback_url: Option<String>,
    pub slow_share: Option<f64>,
    pub user: String,
    pub setup_s: f64,
    /// The measured phase; for `backlog`, the second one (with the backlog waiting).
    #[serde(flatten)]
    pub measured: Measured,
    /// `backlog` only: the baseline phase, the backlog and the comparison of the two phases.
    pub backlog: Option<BacklogReport>,
    pub notes: Vec<String>,
}

/// One measured phase: from its clock start to the end of its wait for callbacks.
#[derive(Debug, Serialize)]
pub struct Measured {
    /// Unix seconds when the clock started.
    pub started_at: u64,
    /// Clock start to the end of the wait for callbacks: the CPU figures' window.
    pub measured_window_s: f64,
    /// Rate mode: the latest a checkout left after its scheduled instant.
    pub max_schedule_lag_ms: Option<f64>,
    #[serde(flatten)]
    pub accounting: Accounting,
    pub processes: Vec<GroupUsage>,
    /// `--database-url`: the database's counters over the phase, per accepted checkout.
    pub database: Option<PerCheckout>,
    /// The first answer body seen for each error status.
    pub error_samples: BTreeMap<String, String>,
    /// `--stages`: where the traced checkouts' time went.
    pub stages: Option<StageReport>,
}

/// What a run holds from its start to its end: the client, the tokens, the receiver.
pub struct Bench {
    pub api: Api,
    pub user: String,
    pub token: String,
    admin: String,
    pub receiver: Receiver,
    /// `--stages`: the span collector.
    pub collector: Option<Collector>,
    /// `http://{--callback-host}:{port}`: how ICON reaches the receiver.
    receiver_base: String,
    shutdown: CancellationToken,
}

impl Bench {
    async fn start(cfg: &Config) -> Result<Self, RunError> {
        let shutdown = CancellationToken::new();
        let receiver = receiver::start(cfg.callback_bind, shutdown.clone())
            .await
            .map_err(RunError::Receiver)?;
        let collector = match cfg.stages {
            Some(s) => Some(
                stages::collector::start(s.listen, shutdown.clone())
                    .await
                    .map_err(|e| RunError::Collector(s.listen, e))?,
            ),
            None => None,
        };
        let api = match cfg.stages {
            Some(_) => Api::new(&cfg.gateway).untraced(),
            None => Api::new(&cfg.gateway),
        };
        let user = format!("bench-{}", uuid::Uuid::new_v4());
        Ok(Bench {
            api,
            collector,
            admin: mint_token(&cfg.jwt_secret, "icon-bench-admin", true)?,
            token: mint_token(&cfg.jwt_secret, &user, false)?,
            user,
            receiver_base: format!("http://{}:{}", cfg.callback_host, receiver.addr.port()),
            receiver,
            shutdown,
        })
    }

    /// The callback URL ICON is given for the receiver's `path`.
    pub fn receiver_url(&self, path: &str) -> String {
        format!("{}{path}", self.receiver_base)
    }
}

pub async fn run(cfg: &Config) -> Result<Summary, RunError> {
    let bench = Bench::start(cfg).await?;
    let setup_started = Instant::now();
    setup::preflight(&bench.api, cfg).await?;
    let retailers: Vec<String> = (0..cfg.retailers_per_cart)
        .map(|i| format!("bench-r{i}"))
        .collect();
    setup::register_retailers(&bench.api, cfg, &bench.admin, &retailers).await?;
    let summary = if cfg.scenario == Scenario::Backlog {
        crate::backlog::run(cfg, &bench, &retailers, setup_started).await
    } else {
        one_phase(cfg, &bench, &retailers, setup_started).await
    };
    bench.shutdown.cancel();
    summary
}

async fn one_phase(
    cfg: &Config,
    bench: &Bench,
    retailers: &[String],
    setup_started: Instant,
) -> Result<Summary, RunError> {
    let carts = setup::make_carts(&bench.api, &bench.token, retailers, cfg.carts_needed()).await?;
    let setup_s = setup_started.elapsed().as_secs_f64();
    eprintln!(
        "setup: {} carts of {} retailer(s) in {setup_s:.1} s; callbacks to {}",
        carts.len(),
        retailers.len(),
        bench.receiver_url("/cb")
    );
    let mut notes = Vec::new();
    let db = connect_db(cfg, &mut notes).await;
    let (measured, phase_notes) = measure(cfg, bench, db.as_ref(), &carts).await;
    notes.extend(phase_notes);
    Ok(finish(cfg, bench, setup_s, measured, None, notes))
}

/// The run's summary, with the notes every scenario shares after its own.
pub fn finish(
    cfg: &Config,
    bench: &Bench,
    setup_s: f64,
    measured: Measured,
    backlog: Option<BacklogReport>,
    mut notes: Vec<String>,
) -> Summary {
    let callback_url = bench.receiver_url("/cb");
    let slow_callback_url = bench.receiver_url(HANG_PATH);
    let phases = std::iter::once(&measured).chain(backlog.as_ref().map(|b| &b.baseline));
    if let Some(db) = phases.clone().find_map(|m| m.database.as_ref()) {
        notes.push(format!(
            "database figures are pg_stat_database for all of {:?}: other clients count too (ICON's retries of earlier runs' callbacks included), and so does this tool's one reading; they are read at clock start and {} s after the wait for callbacks, as PostgreSQL publishes a backend's counters with a delay (up to ~0.5 s before PostgreSQL 15; from 15 on, a busy backend flushes at most once a second and an idle one may hold its last second's counts for up to 10 s)",
            db.database,
            STATS_FLUSH_WAIT.as_secs()
        ));
    }
    let a = &measured.accounting;
    if let Some(slow) = &a.slow {
        notes.push(format!(
            "slow checkouts ({} of {} sent) never complete: their callbacks go to {slow_callback_url}, which holds each request until ICON gives up (ICON_CALLBACK_TIMEOUT); they are not counted as missing, and ICON goes on retrying them after this run",
            slow.sent, a.sent
        ));
    }
    let fill_samples = backlog.as_ref().map(|b| &b.fill.error_samples);
    let mut samples = phases.clone().map(|m| &m.error_samples).chain(fill_samples);
    if samples.any(|s| s.contains_key("422")) {
        notes.push(format!(
            "checkouts answered 422: ICON refuses loopback/private callback URLs such as {callback_url} unless ICON_CALLBACK_ALLOW_NETWORKS includes them (scripts/run.sh sets 127.0.0.0/8,::1/128); or pass --callback-host with an address ICON may call"
        ));
    }
    if cfg.pids.is_none() && measured.processes.iter().all(|g| g.group == "icon-bench") {
        notes
            .push("no ICON, PostgreSQL or RabbitMQ process found on this host (use --pids)".into());
    }
    notes.push("peak RSS is each process's lifetime peak (VmHWM), RSS its current resident set (VmRSS) at the end of the window, both summed per group; PostgreSQL's shared memory is counted once per backend".into());

    Summary {
        scenario: cfg.scenario.name(),
        load: cfg.load,
        stop: cfg.stop,
        retailers_per_cart: cfg.retailers_per_cart,
        gateway: cfg.gateway.clone(),
        callback_url,
        slow_callback_url: cfg.slow_share.map(|_| slow_callback_url),
        slow_share: cfg.slow_share.map(SlowShare::as_f64),
        user: bench.user.clone(),
        setup_s,
        measured,
        backlog,
        notes,
    }
}

/// `--database-url`: a reader, or `None` (said once, and noted) when there is none to be had.
pub async fn connect_db(cfg: &Config, notes: &mut Vec<String>) -> Option<dbstats::Reader> {
    let url = cfg.database.as_ref()?;
    match dbstats::Reader::connect(url).await {
        Ok(reader) => Some(reader),
        Err(e) => {
            let msg = format!(
                "--database-url: cannot connect ({}); no database figures",
                with_causes(&e)
            );
            eprintln!("icon-bench: {msg}");
            notes.push(msg);
            None
        }
    }
}

/// One measured phase over `carts`, paced by `--rate` or `--concurrency`, with its callbacks
/// to the receiver's `/cb` (the slow picks' to its hang path). Returns its figures and what it
/// has to say.
pub async fn measure(
    cfg: &Config,
    bench: &Bench,
    db: Option<&dbstats::Reader>,
    carts: &[i64],
) -> (Measured, Vec<String>) {
    let mut notes = Vec::new();
    if let Some(reader) = db {
        if let Err(e) = reader.checkpoint().await {
            notes.push(format!(
                "--database-url: CHECKPOINT before the clock failed ({}): a checkpoint may fall in the measured window",
                with_causes(&e)
            ));
        }
    }
    let db_start = match db {
        Some(reader) => db_reading(reader, &mut notes).await,
        None => None,
    };
    let inbox = bench.receiver.inbox.clone();
    let cpu_start = procs::sample(&procs::discover(cfg.pids.as_deref()));
    if let Some(c) = &bench.collector {
        c.spans.restart();
    }
    let epoch = Instant::now();
    inbox.restart(epoch);
    let started_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let shot = Shot::new(
        bench.api.clone(),
        bench.token.clone(),
        bench.receiver_url("/cb"),
        bench.receiver_url(HANG_PATH),
        epoch,
    );
    let shot = Arc::new(match cfg.stages {
        Some(s) => shot.traced(s.share),
        None => shot,
    });
    let progress_stop = CancellationToken::new();
    let span_watch = bench
        .collector
        .as_ref()
        .map(|c| stages::phase::warn_without_spans(c, progress_stop.clone()));
    let progress = {
        let (shot, inbox) = (shot.clone(), inbox.clone());
        drive::ticker(progress_stop.clone(), move || {
            drive::phase_line(&shot, inbox.count())
        })
    };

    let (subs, max_lag) = match cfg.load {
        Load::Rate(rate) => {
            let (subs, lag) = drive::drive_rate(&shot, carts, rate, cfg.slow_share).await;
            (subs, Some(lag))
        }
        Load::Concurrency(n) => {
            let (subs, ran_out) = drive::drive_concurrency(&shot, carts, n, cfg.stop).await;
            if ran_out {
                notes.push(format!(
                    "all {} carts made ahead were used before --duration ended; sending stopped early (raise --carts)",
                    carts.len()
                ));
            }
            (subs, None)
        }
    };

    // The slow ones never complete: waiting for them would only run out --settle.
    let healthy_ids: Vec<String> = subs
        .iter()
        .filter(|s| !s.slow)
        .filter_map(|s| match &s.outcome {
            Outcome::Accepted(id) => Some(id.clone()),
            _ => None,
        })
        .collect();
    let missing = inbox.wait_for(&healthy_ids, cfg.settle).await;
    if missing > 0 {
        notes.push(format!(
            "{missing} accepted checkout(s) not called back within --settle {:?} after the last answer",
            cfg.settle
        ));
    }
    let measured_window = epoch.elapsed();
    let cpu_end = procs::sample(&procs::discover(cfg.pids.as_deref()));
    let db_end = match db {
        Some(reader) => {
            tokio::time::sleep(STATS_FLUSH_WAIT).await;
            db_reading(reader, &mut notes).await
        }
        None => None,
    };
    progress_stop.cancel();
    let _ = progress.await;
    if let Some(watch) = span_watch {
        let _ = watch.await;
    }
    let stages = match (&bench.collector, cfg.stages) {
        (Some(c), Some(s)) => {
            Some(stages::phase::report(c, s.share, &shot, &inbox.records(), &mut notes).await)
        }
        _ => None,
    };

    let accounting = stats::account(&subs, &inbox.records());
    let database = match (db, db_start, db_end) {
        (Some(reader), Some(start), Some(end)) => {
            dbstats::per_checkout(&reader.database, start, end, accounting.accepted)
        }
        _ => None,
    };
    let processes = procs::usage(
        &cpu_start,
        &cpu_end,
        accounting.completeness.called_back,
        procs::clock_ticks_per_second(),
    );
    let measured = Measured {
        started_at,
        measured_window_s: measured_window.as_secs_f64(),
        max_schedule_lag_ms: max_lag.map(|d| d.as_secs_f64() * 1000.0),
        accounting,
        processes,
        database,
        error_samples: shot.samples(),
        stages,
    };
    (measured, notes)
}

/// An error and its sources, `a: b: c`: tokio-postgres puts the useful part in the source.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}

/// One reading of the database's counters; a failure is noted and the figures are dropped.
async fn db_reading(
    reader: &dbstats::Reader,
    notes: &mut Vec<String>,
) -> Option<dbstats::Counters> {
    match reader.read().await {
        Ok(c) => Some(c),
        Err(e) => {
            let msg = format!(
                "--database-url: reading pg_stat_database failed ({}); no database figures",
                with_causes(&e)
            );
            eprintln!("icon-bench: {msg}");
            notes.push(msg);
            None
        }
    }
}
