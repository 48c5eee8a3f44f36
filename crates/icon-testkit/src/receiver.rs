//! A partner's callback receiver: a real HTTP server on 127.0.0.1 that records every request
//! and answers from a script (then 200), so tests can make it fail, throttle or vanish.

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// One scripted answer.
#[derive(Debug, Clone, Copy)]
pub struct Scripted {
    pub status: u16,
    pub retry_after: Option<u64>,
}

impl Scripted {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            retry_after: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Recorded {
    pub at: Instant,
    pub webhook_id: Option<String>,
    pub webhook_timestamp: Option<String>,
    pub webhook_signature: Option<String>,
    pub content_type: Option<String>,
    /// The W3C trace context the sender passed on.
    pub traceparent: Option<String>,
    pub body: Value,
    /// The body exactly as received, which is what a signature covers.
    pub raw_body: bytes::Bytes,
    pub answered: u16,
}

#[derive(Default)]
struct Inner {
    script: VecDeque<Scripted>,
    default: Option<Scripted>,
    seen: Vec<Recorded>,
    /// How long each answer takes, so tests can kill a notifier mid-request.
    delay: Duration,
}

pub struct Receiver {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    shutdown: CancellationToken,
}

async fn receive(
    req: HttpRequest,
    body: web::Bytes,
    inner: web::Data<Mutex<Inner>>,
) -> HttpResponse {
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let delay = match inner.lock() {
        Ok(g) => g.delay,
        Err(p) => p.into_inner().delay,
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut inner = match inner.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    let reply = inner
        .script
        .pop_front()
        .or(inner.default)
        .unwrap_or(Scripted::status(200));
    inner.seen.push(Recorded {
        at: Instant::now(),
        webhook_id: header("webhook-id"),
        webhook_timestamp: header("webhook-timestamp"),
        webhook_signature: header("webhook-signature"),
        content_type: header("content-type"),
        traceparent: header("traceparent"),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        raw_body: body.clone(),
        answered: reply.status,
    });
    let mut resp = HttpResponse::build(
        actix_web::http::StatusCode::from_u16(reply.status)
            .unwrap_or(actix_web::http::StatusCode::OK),
    );
    if let Some(s) = reply.retry_after {
        resp.insert_header(("Retry-After", s.to_string()));
    }
    resp.finish()
}

impl Receiver {
    /// Starts a receiver that answers `script` in order, then `then` (200 if `None`) forever.
    pub async fn start(script: Vec<Scripted>, then: Option<Scripted>) -> Self {
        Self::start_on(0, script, then, Duration::ZERO).await
    }

    /// Starts on a given loopback port (0: any), answering each request after `delay`.
    pub async fn start_on(
        port: u16,
        script: Vec<Scripted>,
        then: Option<Scripted>,
        delay: Duration,
    ) -> Self {
        let inner = Arc::new(Mutex::new(Inner {
            script: script.into(),
            default: then,
            seen: vec![],
            delay,
        }));
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind receiver");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let data = web::Data::from(inner.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(receive))
        })
        .workers(1)
        .max_connection_rate(1024)
        .disable_signals()
        .listen(listener)
        .expect("listen")
        .run();
        let handle = server.handle();
        let shutdown = CancellationToken::new();
        let s = shutdown.clone();
        tokio::spawn(server);
        tokio::spawn(async move {
            s.cancelled().await;
            handle.stop(false).await;
        });
        Self {
            url,
            inner,
            shutdown,
        }
    }

    /// Everything received so far.
    pub fn seen(&self) -> Vec<Recorded> {
        match self.inner.lock() {
            Ok(g) => g.seen.clone(),
            Err(p) => p.into_inner().seen.clone(),
        }
    }

    /// Waits until at least `n` requests arrived.
    pub async fn wait_for(&self, n: usize, deadline: Duration) -> Vec<Recorded> {
        crate::eventually(
            &format!("{n} callback(s) at {}", self.url),
            deadline,
            || async {
                let seen = self.seen();
                (seen.len() >= n).then_some(seen)
            },
        )
        .await
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
