//! A fake retailer for local runs, demos, tests and benchmarks: it speaks the retailer order
//! protocol ICON's checkout worker uses, with outcomes chosen by SKU prefix, and offers a sink
//! that records callbacks from ICON's notifier. It also plays the third parties behind the
//! notifier's other channels: Firebase Cloud Messaging (HTTP v1) with the OAuth2 token endpoint
//! a service account uses, and an SMTP server, each with outcomes chosen by device token or
//! recipient prefix.
//!
//! Retailers come in two kinds. A synchronous one answers an order with its outcome. An
//! asynchronous one (`async-` SKUs) answers 202 accepted and reports later, by signed events to
//! ICON's `POST /retailers/{retailer_id}/events` (issue 17 §2): the simulator sends those on
//! its own schedule, and on demand for tests of ICON's side. Cancellations ICON asks for
//! (issue 18) are answered either way too, chosen by prefixes of their own (`nocancel-`,
//! `cancel-async-`...).
//!
//! - [`settings`]: [`SimSettings`], read once from the environment.
//! - [`orders`]: placing orders, `POST /orders` and `POST /{retailer}/orders`.
//! - [`behaviour`]: which outcome a SKU prefix asks for, of an order and of its cancellation.
//! - [`book`]: what was done per idempotency key (one order at most, one request at work at a
//!   time, where an `async-` order stands) and the log of order requests, `GET /requests`.
//! - [`lookup`]: the status lookup by key, `GET /orders?idempotency_key=K` and
//!   `GET /{retailer}/orders?idempotency_key=K`, and its log, `GET /lookups`.
//! - [`cancellations`]: cancelling orders, `POST /orders/cancellations` and
//!   `POST /{retailer}/orders/cancellations`, and their log, `GET /cancellations`.
//! - [`signing`]: verifying ICON's signatures on all three, with the secrets told by
//!   `PUT /_sim/retailers/{retailer}/secret` (which also sign the events).
//! - [`lifecycle`]: what an `async-` order, or a cancellation answered 202, reports after its
//!   202, and when.
//! - [`events`]: sending events to ICON (signed, retried like a retailer would) and their log,
//!   `GET /events`.
//! - [`events_api`]: events on demand, `POST /_sim/retailers/{retailer}/events`.
//! - [`sink`]: `POST /sink/{name}` and `GET /sink/{name}`.
//! - [`fcm`]: `POST /oauth2/token`, `POST /v1/projects/{project_id}/messages:send`, and
//!   `GET /fcm/grants`, `GET /fcm/messages`, `POST /fcm/revoke`.
//! - [`smtp`]: the SMTP sink on its own listener, and `GET /mail`.
//! - `recent` and [`base64`]: bounded logs and the one decoder the above need.
//! - This module: [`serve`], which wires the routes into an actix-web server and runs the SMTP
//!   sink beside it, and `GET /healthz`.
//!
//! Everything is kept in memory (bounded, see [`book::MAX_RECORDED_ORDERS`],
//! [`lookup::MAX_RECORDED_LOOKUPS`], [`cancellations::MAX_RECORDED_CANCELLATIONS`],
//! [`events::MAX_RECORDED_EVENTS`],
//! [`sink::MAX_RECORDED_PER_SINK`], [`fcm::MAX_RECORDED_GRANTS`], [`fcm::MAX_RECORDED_SENDS`]
//! and [`smtp::MAX_RECORDED_MAILS`]) and lost on restart: the simulator is a test double, not a
//! store. Its own error bodies are `{"reason": ...}` because that is the retailer protocol, not
//! ICON's own problem+json; the Google endpoints answer in Google's shapes instead, since those
//! are what the notifier must handle; its own test API, `POST /_sim/retailers/{retailer}/events`,
//! answers problem+json.
//!
//! The logs are served at single-segment paths (`/requests`, `/lookups`, `/cancellations`,
//! `/events`, `/mail`) so they can never be taken for a retailer's `/{retailer}/orders`, nor
//! hide one: a retailer may be called `requests`. A retailer's cancellations are one segment
//! deeper, `/{retailer}/orders/cancellations`, so `cancellations` is a usable name too. The FCM
//! paths (`/oauth2/token`, `/fcm/grants`, `/fcm/messages`, `/fcm/revoke`,
//! `/v1/projects/{project_id}/messages:send`) never end in `/orders`, so `oauth2`, `fcm` and `v1`
//! remain usable retailer names too. `/sink/orders` is the sink named `orders`, though, so `sink`
//! is the one name that cannot be used as a retailer.

pub mod base64;
pub mod behaviour;
pub mod book;
pub mod cancellations;
pub mod events;
pub mod events_api;
pub mod fcm;
pub mod lifecycle;
pub mod lookup;
pub mod orders;
pub(crate) mod recent;
pub mod settings;
pub mod signing;
pub mod sink;
pub mod smtp;

pub use settings::SimSettings;

use actix_web::error::InternalError;
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpResponse, HttpServer};
use std::future::Future;
use std::net::TcpListener;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
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
    cancellations: Mutex<cancellations::CancellationLog>,
    /// The retailers' secrets it verifies requests and signs events with.
    secrets: signing::Secrets,
    /// Sending events to ICON, and their log.
    events: events::Events,
    sinks: Mutex<sink::Sinks>,
    fcm: fcm::Fcm,
    /// Shared with the SMTP sink's sessions, which run outside actix.
    mailbox: Arc<smtp::Mailbox>,
    slow_delay: Duration,
    /// Lets `slow-` and `hang-` requests end as soon as shutdown starts instead of holding the
    /// graceful stop for its whole timeout.
    shutdown: CancellationToken,
}

/// The sockets the simulator serves, bound by the caller.
///
/// A `TcpListener` alone converts into `Listeners` without an SMTP sink, so a caller that only
/// needs the retailer side passes just that.
#[derive(Debug)]
pub struct Listeners {
    /// HTTP: the retailer protocol, the sink, the fake FCM and the logs.
    pub http: TcpListener,
    /// The SMTP sink, if wanted.
    pub smtp: Option<TcpListener>,
}

impl From<TcpListener> for Listeners {
    fn from(http: TcpListener) -> Self {
        Self { http, smtp: None }
    }
}

/// Starts serving on already-bound listeners; the returned future runs the HTTP server (and the
/// SMTP sink, if given a listener) until `shutdown` is cancelled.
///
/// Taking bound listeners lets tests bind `127.0.0.1:0` and learn the ports before serving. The
/// servers start when the future is first polled (e.g. by `tokio::spawn`), so this function needs
/// no runtime; the future resolves once both have stopped after `shutdown` is cancelled.
pub fn serve(
    listeners: impl Into<Listeners>,
    settings: SimSettings,
    shutdown: CancellationToken,
) -> std::io::Result<impl Future<Output = std::io::Result<()>> + Send + 'static> {
    let Listeners { http, smtp } = listeners.into();
    if let Some(smtp) = &smtp {
        // Required by tokio's `from_std`, which must wait for a runtime (see below).
        smtp.set_nonblocking(true)?;
    }
    let mailbox = Arc::new(smtp::Mailbox::default());
    let sim = web::Data::new(Sim {
        orders: Mutex::default(),
        lookups: Mutex::default(),
        cancellations: Mutex::default(),
        secrets: signing::Secrets::default(),
        events: events::Events::new(settings.icon_url, settings.async_delay)
            .map_err(std::io::Error::other)?,
        sinks: Mutex::default(),
        fcm: fcm::Fcm::new(settings.fcm_public_key, settings.fcm_token_ttl),
        mailbox: Arc::clone(&mailbox),
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
    .listen(http)?
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
        // An error here drops the HTTP server unpolled, so it never started.
        let smtp = smtp.map(tokio::net::TcpListener::from_std).transpose()?;
        let smtp = smtp.map(|l| tokio::spawn(smtp::run(l, mailbox, shutdown.clone())));
        let stopper = tokio::spawn(async move {
            shutdown.cancelled().await;
            tracing::info!("shutting down the retailer simulator");
            handle.stop(true).await;
        });
        let result = server.await;
        stopper.abort();
        if let Some(smtp) = smtp {
            smtp.await.map_err(std::io::Error::other)?;
        }
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
        .service(resource("/orders/cancellations").route(web::post().to(cancellations::cancel)))
        .service(resource("/requests").route(web::get().to(book::list)))
        .service(resource("/lookups").route(web::get().to(lookup::list)))
        .service(resource("/cancellations").route(web::get().to(cancellations::list)))
        .service(resource("/events").route(web::get().to(events::list)))
        .service(resource("/mail").route(web::get().to(smtp::list)))
        // Neither ends in `/orders`, so `_sim` stays a usable retailer name too.
        .service(
            resource("/_sim/retailers/{retailer}/secret")
                .route(web::put().to(signing::put))
                .route(web::delete().to(signing::delete)),
        )
        .service(
            resource("/_sim/retailers/{retailer}/events").route(web::post().to(events_api::send)),
        )
        // Google's paths, and the fake FCM's logs: none ends in `/orders` (see the crate docs).
        .service(resource("/oauth2/token").route(web::post().to(fcm::oauth::token)))
        .service(
            resource("/v1/projects/{project_id}/messages:send")
                .route(web::post().to(fcm::send::send)),
        )
        .service(resource("/fcm/grants").route(web::get().to(fcm::oauth::list)))
        .service(resource("/fcm/messages").route(web::get().to(fcm::send::list)))
        .service(resource("/fcm/revoke").route(web::post().to(fcm::send::revoke)))
        // Before `/{retailer}/orders`, so `/sink/orders` is a sink (see the crate docs).
        .service(
            resource("/sink/{name}")
                .route(web::post().to(sink::deliver))
                .route(web::get().to(sink::list)),
        )
        // Beside the catch-all `/{retailer}/orders`, before it; the two never match one path
        // (three segments against two), so only the cancellation's own route can take it.
        .service(
            resource("/{retailer}/orders/cancellations")
                .route(web::post().to(cancellations::cancel_for)),
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
