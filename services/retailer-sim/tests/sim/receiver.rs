//! A stand-in for ICON's events endpoint on a random loopback port: it records every request
//! and answers 200, or the statuses a test queues, and can hold requests until told to answer
//! (to look at the simulator while an event is in flight).

use crate::helpers::eventually;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::HeaderMap;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use icon_webhooks::{Unverified, WebhookSecret};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{self:?}: {e}"))
    }

    /// Verifies the request as ICON's gateway does.
    pub fn verify(&self, secret: &WebhookSecret) -> Result<(), Unverified> {
        icon_webhooks::verify(
            secret,
            self.header("webhook-id"),
            self.header("webhook-timestamp"),
            self.header("webhook-signature"),
            &self.body,
            chrono::Utc::now().timestamp(),
        )
    }
}

#[derive(Default)]
struct State {
    received: Mutex<Vec<Received>>,
    /// Statuses to answer the next requests with, in order; 200 once empty.
    answers: Mutex<VecDeque<u16>>,
}

pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<State>,
    /// `true` while requests are answered; `false` holds them (recorded, unanswered).
    open: watch::Sender<bool>,
    server: JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Receiver {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("bound address");
        let state = Arc::new(State::default());
        let (open, _) = watch::channel(true);
        let server = tokio::spawn(serve(listener, Arc::clone(&state), open.clone()));
        Self {
            addr,
            state,
            open,
            server,
        }
    }

    /// Answers the next requests with these statuses, then 200 again.
    pub fn answer_next(&self, statuses: &[u16]) {
        self.state
            .answers
            .lock()
            .expect("lock")
            .extend(statuses.iter().copied());
    }

    /// Holds requests from now on, recorded but unanswered, until [`Self::release`].
    pub fn hold(&self) {
        self.open.send_replace(false);
    }

    pub fn release(&self) {
        self.open.send_replace(true);
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().expect("lock").clone()
    }

    /// The requests whose JSON body has this `idempotency_key`, in the order they arrived.
    pub fn for_key(&self, key: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| {
                serde_json::from_slice::<Value>(&r.body)
                    .is_ok_and(|body| body["idempotency_key"] == key)
            })
            .collect()
    }

    /// Waits until `count` requests for `key` have arrived, and returns them.
    pub async fn wait_for(&self, key: &str, count: usize) -> Vec<Received> {
        eventually(&format!("{count} events for {key}"), || async {
            let got = self.for_key(key);
            (got.len() >= count).then_some(got)
        })
        .await
    }
}

async fn serve(listener: tokio::net::TcpListener, state: Arc<State>, open: watch::Sender<bool>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (state, open) = (Arc::clone(&state), open.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                answer(req, Arc::clone(&state), open.subscribe())
            });
            // A connection the simulator drops mid-way is no failure of the receiver's.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(
    req: Request<Incoming>,
    state: Arc<State>,
    mut open: watch::Receiver<bool>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    state.received.lock().expect("lock").push(Received {
        path: parts.uri.path().to_owned(),
        headers: parts.headers,
        body,
    });
    let _ = open.wait_for(|open| *open).await;
    let status = state
        .answers
        .lock()
        .expect("lock")
        .pop_front()
        .unwrap_or(200);
    let body = match status {
        200..=299 => json!({"status": "recorded"}),
        _ => json!({"title": "simulated", "status": status}),
    };
    let response = Response::builder()
        .status(StatusCode::from_u16(status).expect("a status"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a response");
    Ok(response)
}
