//! One benchmark run: set up through the public API, start the clock, drive checkouts, wait for
//! the callbacks, and account for it all.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::{Method, StatusCode};
use serde::Serialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::api::{mint_token, Api};
use crate::args::{Config, Load, SlowShare, Stop};
use crate::dbstats::{self, PerCheckout};
use crate::procs::{self, GroupUsage};
use crate::receiver::{self, Inbox, HANG_PATH};
use crate::stats::{self, Accounting, Outcome, Submission};

/// Carts and retailers are made this many at a time before the clock starts.
const SETUP_CONCURRENCY: usize = 16;

/// Wait before the last `pg_stat_database` reading: a backend's counters reach it only when
/// the backend flushes them, which lags behind its commits.
const STATS_FLUSH_WAIT: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("setup: {0}")]
    Setup(String),
    #[error("callback receiver: cannot listen: {0}")]
    Receiver(#[source] std::io::Error),
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
    /// Unix seconds when the clock started.
    pub started_at: u64,
    pub setup_s: f64,
    /// Clock start to the end of the wait for callbacks: the CPU figures' window.
    pub measured_window_s: f64,
    /// Rate mode: the latest a checkout left after its scheduled instant.
    pub max_schedule_lag_ms: Option<f64>,
    #[serde(flatten)]
    pub accounting: Accounting,
    pub processes: Vec<GroupUsage>,
    /// `--database-url`: the database's counters over the run, per accepted checkout.
    pub database: Option<PerCheckout>,
    /// The first answer body seen for each error status.
    pub error_samples: BTreeMap<String, String>,
    pub notes: Vec<String>,
}

/// Live counts for the progress line.
#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    answered: AtomicU64,
    accepted: AtomicU64,
    errors: AtomicU64,
}

/// What every checkout task shares.
struct Shot {
    api: Api,
    token: String,
    callback_url: String,
    slow_callback_url: String,
    epoch: Instant,
    counters: Counters,
    samples: Mutex<BTreeMap<String, String>>,
}

impl Shot {
    async fn fire(&self, cart_id: i64, slow: bool) -> Submission {
        let url = if slow {
            &self.slow_callback_url
        } else {
            &self.callback_url
        };
        let sent = self.epoch.elapsed();
        self.counters.sent.fetch_add(1, Ordering::Relaxed);
        let reply = self.api.checkout(&self.token, cart_id, url).await;
        let answered = self.epoch.elapsed();
        self.counters.answered.fetch_add(1, Ordering::Relaxed);
        let (outcome, sample) = match reply {
            Ok(r) if r.status == StatusCode::ACCEPTED => {
                match r
                    .json()
                    .and_then(|v| Some(v.get("checkout_id")?.as_str()?.to_string()))
                {
                    Some(id) => (Outcome::Accepted(id), None),
                    None => (Outcome::Status(202), Some(("202".to_string(), r.excerpt()))),
                }
            }
            Ok(r) => (
                Outcome::Status(r.status.as_u16()),
                Some((r.status.as_u16().to_string(), r.excerpt())),
            ),
            Err(e) => (
                Outcome::Transport,
                Some(("transport".to_string(), e.to_string())),
            ),
        };
        if let Outcome::Accepted(_) = outcome {
            self.counters.accepted.fetch_add(1, Ordering::Relaxed);
        } else {
            self.counters.errors.fetch_add(1, Ordering::Relaxed);
        }
        if let Some((key, body)) = sample {
            self.samples
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(key)
                .or_insert(body);
        }
        Submission {
            sent,
            answered,
            outcome,
            slow,
        }
    }
}

pub async fn run(cfg: &Config) -> Result<Summary, RunError> {
    let shutdown = CancellationToken::new();
    let receiver = receiver::start(cfg.callback_bind, shutdown.clone())
        .await
        .map_err(RunError::Receiver)?;
    let callback_url = format!("http://{}:{}/cb", cfg.callback_host, receiver.addr.port());
    let slow_callback_url = format!(
        "http://{}:{}{HANG_PATH}",
        cfg.callback_host,
        receiver.addr.port()
    );
    let api = Api::new(&cfg.gateway);
    let user = format!("bench-{}", uuid::Uuid::new_v4());
    let admin = mint_token(&cfg.jwt_secret, "icon-bench-admin", true)?;
    let token = mint_token(&cfg.jwt_secret, &user, false)?;

    let setup_started = Instant::now();
    preflight(&api, cfg).await?;
    let retailers: Vec<String> = (0..cfg.retailers_per_cart)
        .map(|i| format!("bench-r{i}"))
        .collect();
    register_retailers(&api, cfg, &admin, &retailers).await?;
    let carts = make_carts(&api, &token, &retailers, cfg.carts_needed()).await?;
    let setup_s = setup_started.elapsed().as_secs_f64();
    eprintln!(
        "setup: {} carts of {} retailer(s) in {setup_s:.1} s; callbacks to {callback_url}",
        carts.len(),
        retailers.len()
    );

    let mut notes = Vec::new();
    let db = match &cfg.database {
        Some(url) => match dbstats::Reader::connect(url).await {
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
        },
        None => None,
    };
    let db_start = match &db {
        Some(reader) => db_reading(reader, &mut notes).await,
        None => None,
    };

    let watched = procs::discover(cfg.pids.as_deref());
    let cpu_start = procs::sample(&watched);
    let epoch = Instant::now();
    receiver.inbox.set_epoch(epoch);
    let started_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let shot = Arc::new(Shot {
        api,
        token,
        callback_url: callback_url.clone(),
        slow_callback_url: slow_callback_url.clone(),
        epoch,
        counters: Counters::default(),
        samples: Mutex::new(BTreeMap::new()),
    });
    let progress_stop = CancellationToken::new();
    let progress = tokio::spawn(progress_line(
        shot.clone(),
        receiver.inbox.clone(),
        progress_stop.clone(),
    ));

    let (subs, max_lag) = match cfg.load {
        Load::Rate(rate) => {
            let (subs, lag) = drive_rate(&shot, &carts, rate, cfg.slow_share).await;
            (subs, Some(lag))
        }
        Load::Concurrency(n) => {
            let (subs, ran_out) = drive_concurrency(&shot, &carts, n, cfg.stop).await;
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
    let missing = receiver.inbox.wait_for(&healthy_ids, cfg.settle).await;
    if missing > 0 {
        notes.push(format!(
            "{missing} accepted checkout(s) not called back within --settle {:?} after the last answer",
            cfg.settle
        ));
    }
    let measured_window = epoch.elapsed();
    let cpu_end = procs::sample(&procs::discover(cfg.pids.as_deref()));
    let db_end = match &db {
        Some(reader) => {
            tokio::time::sleep(STATS_FLUSH_WAIT).await;
            db_reading(reader, &mut notes).await
        }
        None => None,
    };
    progress_stop.cancel();
    let _ = progress.await;
    shutdown.cancel();

    let callbacks = receiver.inbox.records();
    let accounting = stats::account(&subs, &callbacks);
    let database = match (&db, db_start, db_end) {
        (Some(reader), Some(start), Some(end)) => {
            notes.push(format!(
                "database figures are pg_stat_database for all of {:?}: other clients count too (ICON's retries of earlier runs' callbacks included), and so does this tool's one reading; they are read at clock start and {} s after the wait for callbacks, as PostgreSQL publishes a backend's counters with a delay (up to ~0.5 s before PostgreSQL 15; from 15 on, a busy backend flushes at most once a second and an idle one may hold its last second's counts for up to 10 s)",
                reader.database,
                STATS_FLUSH_WAIT.as_secs()
            ));
            dbstats::per_checkout(&reader.database, start, end, accounting.accepted)
        }
        _ => None,
    };
    if let Some(slow) = &accounting.slow {
        notes.push(format!(
            "slow checkouts ({} of {} sent) never complete: their callbacks go to {slow_callback_url}, which holds each request until ICON gives up (ICON_CALLBACK_TIMEOUT); they are not counted as missing, and ICON goes on retrying them after this run",
            slow.sent, accounting.sent
        ));
    }
    let processes = procs::usage(
        &cpu_start,
        &cpu_end,
        accounting.completeness.called_back,
        procs::clock_ticks_per_second(),
    );
    let error_samples = shot
        .samples
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    if error_samples.contains_key("422") {
        notes.push(format!(
            "checkouts answered 422: ICON refuses loopback/private callback URLs such as {callback_url} unless ICON_CALLBACK_ALLOW_NETWORKS includes them (scripts/run.sh sets 127.0.0.0/8,::1/128); or pass --callback-host with an address ICON may call"
        ));
    }
    if cfg.pids.is_none() && processes.iter().all(|g| g.group == "icon-bench") {
        notes
            .push("no ICON, PostgreSQL or RabbitMQ process found on this host (use --pids)".into());
    }
    notes.push("peak RSS is each process's lifetime peak (VmHWM), summed per group; PostgreSQL's shared memory is counted once per backend".into());

    Ok(Summary {
        scenario: cfg.scenario.name(),
        load: cfg.load,
        stop: cfg.stop,
        retailers_per_cart: cfg.retailers_per_cart,
        gateway: cfg.gateway.clone(),
        callback_url,
        slow_callback_url: cfg.slow_share.map(|_| slow_callback_url),
        slow_share: cfg.slow_share.map(SlowShare::as_f64),
        user,
        started_at,
        setup_s,
        measured_window_s: measured_window.as_secs_f64(),
        max_schedule_lag_ms: max_lag.map(|d| d.as_secs_f64() * 1000.0),
        accounting,
        processes,
        database,
        error_samples,
        notes,
    })
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

/// Both ends answer before anything is created, so a wrong URL fails fast and clearly.
async fn preflight(api: &Api, cfg: &Config) -> Result<(), RunError> {
    for (what, url) in [
        ("gateway", format!("{}/readyz", cfg.gateway)),
        ("simulator", format!("{}/healthz", cfg.sim)),
    ] {
        match api.call(Method::GET, &url, None, None).await {
            Ok(r) if r.status.is_success() => {}
            Ok(r) => {
                return Err(RunError::Setup(format!(
                    "{what} at {url} answered {}: {}",
                    r.status,
                    r.excerpt()
                )))
            }
            Err(e) => return Err(RunError::Setup(format!("{what} unreachable: {e}"))),
        }
    }
    Ok(())
}

async fn register_retailers(
    api: &Api,
    cfg: &Config,
    admin: &str,
    retailers: &[String],
) -> Result<(), RunError> {
    for r in retailers {
        let body = json!({"name": r, "order_url": format!("{}/{r}/orders", cfg.sim_from_icon)});
        let reply = api
            .call(
                Method::PUT,
                &format!("/retailers/{r}"),
                Some(admin),
                Some(&body),
            )
            .await
            .map_err(|e| RunError::Setup(e.to_string()))?;
        if !reply.status.is_success() {
            return Err(RunError::Setup(format!(
                "PUT /retailers/{r} answered {}: {} (is --jwt-secret ICON's ICON_JWT_SECRET?)",
                reply.status,
                reply.excerpt()
            )));
        }
    }
    Ok(())
}

/// `n` carts, each with one item from every retailer.
async fn make_carts(
    api: &Api,
    token: &str,
    retailers: &[String],
    n: u64,
) -> Result<Vec<i64>, RunError> {
    let next = Arc::new(AtomicU64::new(0));
    let made = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..SETUP_CONCURRENCY {
        let (api, token, retailers) = (api.clone(), token.to_string(), retailers.to_vec());
        let (next, made) = (next.clone(), made.clone());
        tasks.spawn(async move {
            let mut carts = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < n {
                carts.push(make_cart(&api, &token, &retailers).await?);
                let done = made.fetch_add(1, Ordering::Relaxed) + 1;
                if done % 500 == 0 {
                    eprintln!("setup: {done}/{n} carts");
                }
            }
            Ok::<_, RunError>(carts)
        });
    }
    let mut carts = Vec::with_capacity(n as usize);
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(result) => carts.extend(result?),
            Err(e) => return Err(RunError::Setup(format!("cart task: {e}"))),
        }
    }
    Ok(carts)
}

async fn make_cart(api: &Api, token: &str, retailers: &[String]) -> Result<i64, RunError> {
    let setup = |e: String| RunError::Setup(e);
    let reply = api
        .call(Method::POST, "/carts", Some(token), None)
        .await
        .map_err(|e| setup(e.to_string()))?;
    let cart_id = match (reply.status, reply.json()) {
        (StatusCode::CREATED, Some(v)) => v.get("cart_id").and_then(|c| c.as_i64()),
        _ => None,
    }
    .ok_or_else(|| {
        setup(format!(
            "POST /carts answered {}: {}",
            reply.status,
            reply.excerpt()
        ))
    })?;
    for (i, r) in retailers.iter().enumerate() {
        let item = json!({
            "retailer_id": r, "sku": format!("bench-sku-{i}"), "quantity": 1,
            "unit_price": {"amount_minor": 100, "currency": "GBP"}
        });
        let path = format!("/carts/{cart_id}/items");
        let reply = api
            .call(Method::POST, &path, Some(token), Some(&item))
            .await
            .map_err(|e| setup(e.to_string()))?;
        if reply.status != StatusCode::CREATED {
            return Err(setup(format!(
                "POST {path} answered {}: {}",
                reply.status,
                reply.excerpt()
            )));
        }
    }
    Ok(cart_id)
}

/// Open loop: checkout `i` leaves at `i / rate` seconds, in its own task, whatever became of
/// the earlier ones; those `slow` picks get the callback URL that hangs. Returns the submissions
/// and the worst lag behind schedule.
async fn drive_rate(
    shot: &Arc<Shot>,
    carts: &[i64],
    rate: f64,
    slow: Option<SlowShare>,
) -> (Vec<Submission>, Duration) {
    let mut handles = Vec::with_capacity(carts.len());
    let mut max_lag = Duration::ZERO;
    for (i, &cart) in carts.iter().enumerate() {
        let due = shot.epoch + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        max_lag = max_lag.max(Instant::now().saturating_duration_since(due));
        let shot = shot.clone();
        let is_slow = slow.is_some_and(|s| s.picks(i as u64));
        handles.push(tokio::spawn(async move { shot.fire(cart, is_slow).await }));
    }
    let mut subs = Vec::with_capacity(handles.len());
    for h in handles {
        if let Ok(s) = h.await {
            subs.push(s);
        }
    }
    (subs, max_lag)
}

/// Closed loop: `n` tasks, each sending the next checkout as soon as its last one is answered.
/// Returns the submissions and whether the carts ran out before `--duration` did.
async fn drive_concurrency(
    shot: &Arc<Shot>,
    carts: &[i64],
    n: usize,
    stop: Stop,
) -> (Vec<Submission>, bool) {
    let carts: Arc<[i64]> = carts.into();
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = match stop {
        Stop::Duration(d) => Some(shot.epoch + d),
        Stop::Count(_) => None,
    };
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (shot, carts, next) = (shot.clone(), carts.clone(), next.clone());
        tasks.spawn(async move {
            let mut subs = Vec::new();
            loop {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&cart) = carts.get(i) else { break };
                subs.push(shot.fire(cart, false).await);
            }
            subs
        });
    }
    let mut subs = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        if let Ok(s) = joined {
            subs.extend(s);
        }
    }
    subs.sort_by_key(|s| s.sent);
    let ran_out =
        deadline.is_some_and(|d| Instant::now() < d) && next.load(Ordering::Relaxed) >= carts.len();
    (subs, ran_out)
}

/// Once a second on stderr: one line rewritten on a terminal, a line each otherwise.
async fn progress_line(shot: Arc<Shot>, inbox: Arc<Inbox>, stop: CancellationToken) {
    let tty = std::io::stderr().is_terminal();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let c = &shot.counters;
        let sent = c.sent.load(Ordering::Relaxed);
        let line = format!(
            "[{:>4}s] sent {sent}  accepted {}  called back {}  in flight {}  errors {}",
            shot.epoch.elapsed().as_secs(),
            c.accepted.load(Ordering::Relaxed),
            inbox.count(),
            sent - c.answered.load(Ordering::Relaxed),
            c.errors.load(Ordering::Relaxed),
        );
        let mut err = std::io::stderr().lock();
        let _ = if tty {
            write!(err, "\r{line}\x1b[K")
        } else {
            writeln!(err, "{line}")
        };
        let _ = err.flush();
    }
    if tty {
        eprintln!();
    }
}
