//! W3C trace context at the edge: every request runs in a span that names its trace, taken
//! from the client's `traceparent` header or started here, and that context is what the
//! request's outbox rows carry on (through `icon_runtime::trace`) to the worker, the retailers,
//! the notifier and the callback.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use icon_runtime::trace::{self, TraceParent, TRACEPARENT};
use tracing::Instrument;

/// Probes and scrapes: polled every few seconds by machines, about no checkout; a trace each
/// would only bury the real ones in the collector.
const UNTRACED: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// Middleware (`from_fn`): runs the rest of the request inside its trace. A malformed
/// `traceparent` is ignored, as the W3C spec asks, and a new trace starts.
pub async fn propagate(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if UNTRACED.contains(&req.path()) {
        return next.call(req).await;
    }
    let incoming = req.headers().get(TRACEPARENT).and_then(|v| v.to_str().ok());
    let context = TraceParent::from_header_or_new(incoming);
    // The route pattern, not the path: a path can hold a secret (a push device's token in
    // `/me/devices/{token}`), and logs must never show one.
    let route = crate::metrics::RoutePattern::of(&req).0;
    let span = tracing::info_span!(
        "request",
        method = %req.method(),
        route = %route,
        trace_id = %context.trace_id_hex(),
    );
    icon_runtime::telemetry::set_remote_parent(&span, &context);
    trace::scope(context, next.call(req).instrument(span)).await
}
