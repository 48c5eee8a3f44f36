//! What the gateway tells Prometheus (`docs/metrics.md`): every request by route pattern,
//! method and status with its latency, the checkouts accepted, and the outbox gauges; served at
//! `GET /metrics` on the API port.
//!
//! The route label is the pattern the request matched (`/cart/checkout/{checkout_id}`), never
//! the path, so a client walking random ids cannot grow the series; what matched no route is
//! `unmatched`.

use crate::routes::State;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpResponse};
use icon_metrics::{RequestLabels, RouteLabels};
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Registers the gateway's families, so the first scrape lists them.
pub fn register() {
    icon_metrics::gateway();
    icon_metrics::outbox();
    icon_metrics::ready();
}

/// The route pattern a request matches (`/cart/checkout/{checkout_id}`, or `unmatched`), found
/// once per request by the outermost middleware and kept in the request's extensions for the
/// others (the trace's span): matching it means running the router's patterns again.
#[derive(Debug, Clone)]
pub struct RoutePattern(pub String);

impl RoutePattern {
    /// The request's pattern, as found before, else found now.
    pub fn of(req: &ServiceRequest) -> Self {
        if let Some(found) = req.extensions().get::<Self>() {
            return found.clone();
        }
        Self(
            req.match_pattern()
                .unwrap_or_else(|| "unmatched".to_owned()),
        )
    }
}

/// Middleware: counts and times every request.
pub async fn record(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = method_label(req.method()).to_owned();
    let route = RoutePattern::of(&req);
    req.extensions_mut().insert(route.clone());
    let res = next.call(req).await?;
    let route = route.0;
    let m = icon_metrics::gateway();
    m.requests
        .get_or_create(&RequestLabels {
            route: route.clone(),
            method: method.clone(),
            status: res.status().as_u16(),
        })
        .inc();
    m.request_duration
        .get_or_create(&RouteLabels { route, method })
        .observe(started.elapsed().as_secs_f64());
    Ok(res)
}

/// The method as a label from a closed set: HTTP allows any token as a method, and a label per
/// invented method would let anyone grow the series without bound (300 made-up methods on
/// `/healthz` once added about 6,300).
fn method_label(method: &actix_web::http::Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "OPTIONS" => "OPTIONS",
        "CONNECT" => "CONNECT",
        "TRACE" => "TRACE",
        _ => "other",
    }
}

/// A new checkout was accepted (not an idempotent replay).
pub fn checkout_accepted() {
    icon_metrics::gateway().checkouts_accepted.inc();
}

/// Prometheus metrics.
///
/// The families of `docs/metrics.md` in the Prometheus/OpenMetrics text format, for a
/// Prometheus scrape. Readiness and the outbox are read at scrape time, so nothing polls between
/// scrapes. No label holds an id.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses(
    (status = 200, description = "The gateway's metrics (OpenMetrics text)",
        content_type = "application/openmetrics-text", body = String,
        example = "# TYPE icon_checkouts_accepted counter\nicon_checkouts_accepted_total 42\n# EOF\n"),
))]
pub async fn metrics(state: State) -> HttpResponse {
    // The outbox read doubles as the database check of readiness.
    let db_up = match state.pool.get().await {
        Ok(db) => icon_outbox::sample_metrics(&db).await,
        Err(_) => false,
    };
    let ready = db_up && state.broker_ready.load(Ordering::Relaxed);
    icon_metrics::ready().set(i64::from(ready));
    HttpResponse::Ok()
        .content_type(icon_metrics::CONTENT_TYPE)
        .body(icon_metrics::render())
}
