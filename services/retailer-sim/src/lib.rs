//! A fake retailer for local runs, demos, tests and benchmarks: it speaks the retailer order
//! protocol ICON's checkout worker uses, with outcomes chosen by SKU prefix, and offers a sink
//! that records callbacks from ICON's notifier.
//!
//! - [`settings`]: [`SimSettings`], read once from the environment.
//! - [`orders`]: placing orders, `POST /orders` and `POST /{retailer}/orders`.
//! - [`behaviour`]: which outcome a SKU prefix asks for.
//! - [`book`]: what was done per idempotency key (one order at most, one request at work at a
//!   time) and the log of order requests, `GET /requests`.
//! - [`lookup`]: the status lookup by key, `GET /orders?idempotency_key=K` and
//!   `GET /{retailer}/orders?idempotency_key=K`, and its log, `GET /lookups`.
//! - [`sink`]: `POST /sink/{name}` and `GET /sink/{name}`.
//! - This module: [`serve`], which wires the routes into an actix-web server, and `GET /healthz`.
//!
//! Everything is kept in memory (bounded, see [`book::MAX_RECORDED_ORDERS`],
//! [`lookup::MAX_RECORDED_LOOKUPS`] and [`sink::MAX_RECORDED_PER_SINK`]) and lost on restart: the
//! simulator is a test double, not a store. Its error bodies are `{"reason": ...}` because that
//! is the retailer protocol, not ICON's own problem+json.
//!
//! The logs are served at single-segment paths (`/requests`, `/lookups`) so they can never be
//! taken for a retailer's `/{retailer}/orders`, nor hide one: a retailer may be called
//! `requests`. `/sink/orders` is the sink named `orders`, though, so `sink` cannot be used as a
//! retailer name.

pub mod behaviour;
pub mod book;
pub mod lookup;
pub mod orders;
pub mod settings;
pub mod sink;

pub use settings::SimSettings;

use actix_web::error::InternalError;
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpResponse, HttpServer};
use std::future::Future;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long in-flight requests may take to finish once shutdown starts. Slow and hanging
/// requests end at once on cancellation, so this only bounds a stuck client.
const SHUTDOWN_TIMEOUT_SECS: u64 = 5;

/// State shared by every worker.
pub(crate) struct Sim {
    /// Per-key state and the request log, under one lock (see [`book`]).
    orders: Mutex<book::OrderBook>,
    lookups: Mutex<lookup::LookupLog>,
    sinks: Mutex<sink::Sinks>,
    slow_delay: Duration,
    /// Lets `slow-` and `hang-` requests end as soon as shutdown starts instead of holding the
    /// graceful stop for its whole timeout.
    shutdown: CancellationToken,
}

/// Starts serving on an already-bound listener; the returned future runs the server until
/// `shutdown` is cancelled.
///
/// Taking a bound listener lets tests bind `127.0.0.1:0` and learn the port before serving. The
/// server starts when the future is first polled (e.g. by `tokio::spawn`), so this function needs
/// no runtime; the future resolves once the server has stopped after `shutdown` is cancelled.
pub fn serve(
    listener: std::net::TcpListener,
    settings: SimSettings,
    shutdown: CancellationToken,
) -> std::io::Result<impl Future<Output = std::io::Result<()>> + Send + 'static> {
    let sim = web::Data::new(Sim {
        orders: Mutex::default(),
        lookups: Mutex::default(),
        sinks: Mutex::default(),
        slow_delay: settings.slow_delay,
        shutdown: shutdown.clone(),
    });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(sim.clone())
            .app_data(web::QueryConfig::default().error_handler(|err, _req| {
                let response = reason(StatusCode::BAD_REQUEST, format!("bad query: {err}"));
                InternalError::from_response(err, response).into()
            }))
            .configure(routes)
    })
    .listen(listener)?
    // Two workers: enough for a benchmark to not be limited by one thread, few enough that
    // tests starting many simulators stay light. State is shared, so which one answers is
    // irrelevant.
    .workers(2)
    // Signals belong to `main`, which turns them into a cancellation; the server must not
    // react to them on its own (and must not in tests).
    .disable_signals()
    .shutdown_timeout(SHUTDOWN_TIMEOUT_SECS)
    .run();
    let handle = server.handle();
    Ok(async move {
        // Spawned on first poll rather than in `serve`, so `serve` works outside a runtime.
        let stopper = tokio::spawn(async move {
            shutdown.cancelled().await;
            tracing::info!("shutting down the retailer simulator");
            handle.stop(true).await;
        });
        let result = server.await;
        stopper.abort();
        result
    })
}

fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/healthz").route(web::get().to(healthz)))
        .service(
            resource("/orders")
                .route(web::post().to(orders::create))
                .route(web::get().to(lookup::lookup)),
        )
        .service(resource("/requests").route(web::get().to(book::list)))
        .service(resource("/lookups").route(web::get().to(lookup::list)))
        // Before `/{retailer}/orders`, so `/sink/orders` is a sink (see the crate docs).
        .service(
            resource("/sink/{name}")
                .route(web::post().to(sink::deliver))
                .route(web::get().to(sink::list)),
        )
        .service(
            resource("/{retailer}/orders")
                .route(web::post().to(orders::create_for))
                .route(web::get().to(lookup::lookup_for)),
        )
        .default_service(web::to(not_found));
}

/// A resource whose wrong-method answer is a `{"reason": ...}` like every other error, rather
/// than actix's empty 405.
fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

async fn not_found() -> HttpResponse {
    reason(StatusCode::NOT_FOUND, "no such endpoint")
}

async fn method_not_allowed() -> HttpResponse {
    reason(StatusCode::METHOD_NOT_ALLOWED, "method not allowed here")
}

/// A `{"reason": ...}` answer, the retailer protocol's error body.
pub(crate) fn reason(status: StatusCode, reason: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status).json(serde_json::json!({"reason": reason.into()}))
}

/// Locks shared state, carrying on past a poisoned lock: every update is a single push or
/// insert, so a panic elsewhere cannot leave the data half-written, and refusing every later
/// request would turn one bug into an outage of the whole simulator.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
