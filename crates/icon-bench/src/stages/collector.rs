//! The span collector: a keep-alive HTTP/1.1 server on a loopback address that takes ICON's
//! span exports (`POST /v1/traces`, OTLP/HTTP with JSON bodies, as `ICON_OTLP_ENDPOINT` makes
//! the services send them), answers each at once and keeps the spans for the stage breakdown.
//!
//! It answers `{}` with 200 (an `ExportTraceServiceResponse` with nothing rejected), 415 to a
//! protobuf body (ICON sends JSON; this keeps the dependency tree free of a protobuf decoder)
//! and 400 to a body it cannot read, counting both so that the report can say spans were lost.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::otlp::{self, Span};

/// The span that closes last in each service of a checkout's trace: once a trace has all three,
/// its spans are in (a service exports a parent's children no later than the parent).
pub const CLOSING_SPANS: [(&str, &str, Option<&str>); 3] = [
    ("icon-gateway", "request", None),
    (
        "icon-checkout-worker",
        "message",
        Some("checkout.requested"),
    ),
    ("icon-notifier", "message", Some("checkout.finished")),
];
const ALL_CLOSED: u8 = 0b111;

/// The largest export body read; the SDK's batches (512 spans by default) are far smaller.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// What the collector was sent, for the report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Received {
    /// `POST /v1/traces` requests read.
    pub exports: usize,
    pub spans: usize,
    pub bytes: usize,
    /// Bodies refused: protobuf (415) or unreadable JSON (400).
    pub refused: usize,
}

#[derive(Default)]
struct Held {
    spans: Vec<Span>,
    received: Received,
    /// Per trace id, which of [`CLOSING_SPANS`] arrived (one bit each).
    closed: HashMap<String, u8>,
}

/// The spans received since the last [`Spans::restart`]; shared with the run.
#[derive(Default)]
pub struct Spans {
    held: Mutex<Held>,
    arrived: Notify,
}

impl Spans {
    /// Forgets what arrived so far: a measured phase keeps only what arrives during it (the
    /// set-up's own exports, if any, are not its business).
    pub fn restart(&self) {
        *self.lock() = Held::default();
    }

    pub fn received(&self) -> Received {
        self.lock().received
    }

    /// Every span received since the last restart.
    pub fn snapshot(&self) -> Vec<Span> {
        self.lock().spans.clone()
    }

    /// Waits until every trace in `expected` has its closing span from each service, or
    /// `deadline`. Returns how many have not.
    pub async fn wait_for(&self, expected: &[String], deadline: Duration) -> usize {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let missing = {
                let held = self.lock();
                expected
                    .iter()
                    .filter(|t| held.closed.get(*t) != Some(&ALL_CLOSED))
                    .count()
            };
            if missing == 0 {
                return 0;
            }
            if tokio::time::timeout_at(until, self.arrived.notified())
                .await
                .is_err()
            {
                return missing;
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn add(&self, body_len: usize, spans: Vec<Span>) {
        {
            let mut guard = self.lock();
            let held = &mut *guard;
            held.received.exports += 1;
            held.received.bytes += body_len;
            held.received.spans += spans.len();
            for s in &spans {
                if let Some(bit) = closing_bit(s) {
                    *held.closed.entry(s.trace_id.clone()).or_insert(0) |= bit;
                }
            }
            held.spans.extend(spans);
        }
        self.arrived.notify_one();
    }

    fn refuse(&self, body_len: usize) {
        let mut held = self.lock();
        held.received.refused += 1;
        held.received.bytes += body_len;
    }
}

fn closing_bit(s: &Span) -> Option<u8> {
    CLOSING_SPANS
        .iter()
        .position(|(service, name, queue)| {
            s.service == *service && s.name == *name && s.queue.as_deref() == *queue
        })
        .map(|i| 1 << i)
}

pub struct Collector {
    pub addr: SocketAddr,
    pub spans: Arc<Spans>,
}

/// Binds `bind` (a loopback address: the arguments refuse any other) and serves until
/// `shutdown` is cancelled.
pub async fn start(bind: SocketAddr, shutdown: CancellationToken) -> std::io::Result<Collector> {
    let listener = TcpListener::bind(bind).await?;
    let addr = listener.local_addr()?;
    let spans = Arc::new(Spans::default());
    let served = spans.clone();
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(_) => continue,
                },
            };
            let spans = served.clone();
            let conn_shutdown = shutdown.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| handle(spans.clone(), req));
                let conn = http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service);
                tokio::select! {
                    _ = conn => {}
                    _ = conn_shutdown.cancelled() => {}
                }
            });
        }
    });
    Ok(Collector { addr, spans })
}

async fn handle(
    spans: Arc<Spans>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != http::Method::POST || req.uri().path() != "/v1/traces" {
        return Ok(answer(StatusCode::NOT_FOUND, ""));
    }
    let json = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.starts_with("application/json"));
    let body = match http_body_util::Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            spans.refuse(0);
            return Ok(answer(StatusCode::PAYLOAD_TOO_LARGE, ""));
        }
    };
    if !json {
        spans.refuse(body.len());
        return Ok(answer(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "icon-bench reads OTLP/HTTP JSON only",
        ));
    }
    match otlp::parse(&body) {
        Ok(parsed) => {
            spans.add(body.len(), parsed);
            Ok(answer(StatusCode::OK, "{}"))
        }
        Err(e) => {
            spans.refuse(body.len());
            Ok(answer(StatusCode::BAD_REQUEST, &e.to_string()))
        }
    }
}

fn answer(code: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_owned())));
    *r.status_mut() = code;
    if body.starts_with('{') {
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    async fn post(addr: SocketAddr, content_type: &str, body: &str) -> String {
        let req = format!(
            "POST /v1/traces HTTP/1.1\r\nhost: x\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    fn span(trace: &str, service: &str, name: &str, queue: Option<&str>) -> String {
        let attrs = queue.map_or(String::new(), |q| {
            format!(r#","attributes":[{{"key":"queue","value":{{"stringValue":"{q}"}}}}]"#)
        });
        format!(
            r#"{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"{service}"}}}}]}},"scopeSpans":[{{"spans":[{{"traceId":"{trace}","spanId":"00f067aa0ba902b7","name":"{name}","startTimeUnixNano":"1","endTimeUnixNano":"2"{attrs}}}]}}]}}"#
        )
    }

    /// Exports are read and counted, protobuf and garbage refused and counted apart, and a trace
    /// counts as in once each service's closing span arrived, in whatever order.
    #[tokio::test]
    async fn takes_json_exports_refuses_the_rest_and_knows_when_a_trace_is_in() {
        let shutdown = CancellationToken::new();
        let c = start(([127, 0, 0, 1], 0).into(), shutdown.clone())
            .await
            .unwrap();
        let t = "4bf92f3577b34da6a3ce929d0e0e4736".to_string();
        let first = format!(
            r#"{{"resourceSpans":[{},{}]}}"#,
            span(&t, "icon-notifier", "message", Some("checkout.finished")),
            span(&t, "icon-gateway", "request", None)
        );
        let head = post(c.addr, "application/json", &first).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.ends_with("{}"), "{head}");
        // The worker's `message` is still out: not in yet.
        assert_eq!(
            c.spans
                .wait_for(std::slice::from_ref(&t), Duration::from_millis(50))
                .await,
            1
        );
        let refused = post(c.addr, "application/x-protobuf", "\x0a\x00").await;
        assert!(refused.starts_with("HTTP/1.1 415"), "{refused}");
        let garbage = "{\"resourceSpans\":7}";
        let bad = post(c.addr, "application/json", garbage).await;
        assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");

        let second = format!(
            r#"{{"resourceSpans":[{}]}}"#,
            span(
                &t,
                "icon-checkout-worker",
                "message",
                Some("checkout.requested")
            )
        );
        post(c.addr, "application/json", &second).await;
        assert_eq!(
            c.spans
                .wait_for(std::slice::from_ref(&t), Duration::from_secs(30))
                .await,
            0
        );
        let r = c.spans.received();
        assert_eq!((r.exports, r.spans, r.refused), (2, 3, 2));
        assert_eq!(r.bytes, first.len() + second.len() + 2 + garbage.len());
        assert_eq!(c.spans.snapshot().len(), 3);
        c.spans.restart();
        assert_eq!(c.spans.received(), Received::default());
        assert!(c.spans.snapshot().is_empty());
        shutdown.cancel();
    }
}
