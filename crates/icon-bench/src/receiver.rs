//! The callback receiver: a keep-alive HTTP/1.1 server that answers 200 at once and records
//! each POST's `checkout_id`, `webhook-id` and the instant its head arrived.
//!
//! A POST to [`HANG_PATH`] is recorded the same way, then never answered: the connection is held
//! until the caller gives up (ICON's `ICON_CALLBACK_TIMEOUT`) or the run ends. Every connection
//! is served by its own task, so a held one does not stall the others.
//!
//! A POST to [`FAIL_PATH`] is answered at once `503` with `Retry-After: 3600`, and only counted
//! (apart from the records above, so it never reads as a healthy callback): the `backlog`
//! scenario sends its backlog there, so that each of its notifications, after one attempt,
//! waits an hour in ICON's retry tiers.

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::stats::CallbackRecord;

/// The path on which the receiver holds requests open without answering.
pub const HANG_PATH: &str = "/hang";

/// The path on which the receiver refuses every callback for a while.
pub const FAIL_PATH: &str = "/fail";

/// The `Retry-After` seconds of a [`FAIL_PATH`] answer: ICON's notifier honours a receiver's
/// `Retry-After` up to an hour (its `MAX_RETRY_AFTER`), so this is the longest wait it grants.
pub const FAIL_RETRY_AFTER_S: u64 = 3600;

/// How many times [`FAIL_PATH`] was hit: each distinct notification (by `webhook-id`) once,
/// and every hit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FailCounts {
    pub distinct: usize,
    pub total: usize,
}

/// What [`FAIL_PATH`] saw.
#[derive(Default)]
struct FailTally {
    total: usize,
    /// `webhook-id`s seen (the `checkout_id` for a POST without one).
    seen: HashSet<String>,
    /// The `checkout_id` of each distinct notification's first hit, in arrival order.
    firsts: Vec<Option<String>>,
    first_at: Option<Instant>,
}

/// What the receiver has recorded; shared with the driver.
pub struct Inbox {
    /// Instants are measured from here (the clock start, set before any checkout is sent).
    epoch: Mutex<Instant>,
    records: Mutex<Vec<CallbackRecord>>,
    count: AtomicUsize,
    arrived: Notify,
    fail: Mutex<FailTally>,
    /// Its own notifier: a waiter on the healthy records must not take a fail hit's permit.
    fail_arrived: Notify,
}

impl Inbox {
    fn new() -> Self {
        Inbox {
            epoch: Mutex::new(Instant::now()),
            records: Mutex::new(Vec::new()),
            count: AtomicUsize::new(0),
            arrived: Notify::new(),
            fail: Mutex::new(FailTally::default()),
            fail_arrived: Notify::new(),
        }
    }

    /// Starts a phase's clock: callbacks are timed from `epoch`, and those recorded so far
    /// are forgotten, so each measured phase accounts for its own. Call it while nobody waits.
    /// What [`FAIL_PATH`] counted is kept.
    pub fn restart(&self, epoch: Instant) {
        let mut records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        *self.epoch.lock().unwrap_or_else(PoisonError::into_inner) = epoch;
        records.clear();
        self.count.store(0, Ordering::Relaxed);
    }

    pub fn fail_counts(&self) -> FailCounts {
        let fail = self.fail.lock().unwrap_or_else(PoisonError::into_inner);
        FailCounts {
            distinct: fail.seen.len(),
            total: fail.total,
        }
    }

    /// When [`FAIL_PATH`] was first hit.
    pub fn first_fail_at(&self) -> Option<Instant> {
        self.fail
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .first_at
    }

    fn record_fail(&self, at: Instant, checkout_id: Option<String>, webhook_id: Option<String>) {
        let mut fail = self.fail.lock().unwrap_or_else(PoisonError::into_inner);
        fail.total += 1;
        fail.first_at.get_or_insert(at);
        if let Some(key) = webhook_id.or_else(|| checkout_id.clone()) {
            if fail.seen.insert(key) {
                fail.firsts.push(checkout_id);
            }
        }
        drop(fail);
        self.fail_arrived.notify_one();
    }

    /// Waits until every id in `expected` has had its first attempt on [`FAIL_PATH`], or
    /// `deadline`. Returns how many have not.
    pub async fn wait_for_fail(&self, expected: &[String], deadline: Duration) -> usize {
        let mut remaining: HashSet<&str> = expected.iter().map(String::as_str).collect();
        let mut cursor = 0;
        let until = tokio::time::Instant::now() + deadline;
        loop {
            {
                let fail = self.fail.lock().unwrap_or_else(PoisonError::into_inner);
                for id in fail.firsts[cursor..].iter().flatten() {
                    remaining.remove(id.as_str());
                }
                cursor = fail.firsts.len();
            }
            if remaining.is_empty() {
                return 0;
            }
            if tokio::time::timeout_at(until, self.fail_arrived.notified())
                .await
                .is_err()
            {
                return remaining.len();
            }
        }
    }

    pub fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    pub fn records(&self) -> Vec<CallbackRecord> {
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn record(
        &self,
        at: Instant,
        at_wall: SystemTime,
        checkout_id: Option<String>,
        webhook_id: Option<String>,
    ) {
        let epoch = *self.epoch.lock().unwrap_or_else(PoisonError::into_inner);
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(CallbackRecord {
                received: at.saturating_duration_since(epoch),
                received_at: at_wall,
                checkout_id,
                webhook_id,
            });
        self.count.fetch_add(1, Ordering::Relaxed);
        self.arrived.notify_one();
    }

    /// Waits until every id in `expected` has been called back, or `deadline`. Returns how
    /// many are still missing.
    pub async fn wait_for(&self, expected: &[String], deadline: Duration) -> usize {
        let mut remaining: HashSet<&str> = expected.iter().map(String::as_str).collect();
        let mut cursor = 0;
        let until = tokio::time::Instant::now() + deadline;
        loop {
            {
                let records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
                for r in &records[cursor..] {
                    if let Some(id) = &r.checkout_id {
                        remaining.remove(id.as_str());
                    }
                }
                cursor = records.len();
            }
            if remaining.is_empty() {
                return 0;
            }
            // `notify_one` keeps a permit, so a callback between the scan and here is not lost.
            if tokio::time::timeout_at(until, self.arrived.notified())
                .await
                .is_err()
            {
                return remaining.len();
            }
        }
    }
}

pub struct Receiver {
    pub addr: SocketAddr,
    pub inbox: Arc<Inbox>,
}

/// Binds `bind` and serves until `shutdown` is cancelled.
pub async fn start(bind: SocketAddr, shutdown: CancellationToken) -> std::io::Result<Receiver> {
    let listener = TcpListener::bind(bind).await?;
    let addr = listener.local_addr()?;
    let inbox = Arc::new(Inbox::new());
    let served = inbox.clone();
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(_) => continue,
                },
            };
            let _ = stream.set_nodelay(true);
            let inbox = served.clone();
            let conn_shutdown = shutdown.clone();
            let held = shutdown.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| handle(inbox.clone(), held.clone(), req));
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
    Ok(Receiver { addr, inbox })
}

async fn handle(
    inbox: Arc<Inbox>,
    shutdown: CancellationToken,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let at = Instant::now();
    let at_wall = SystemTime::now();
    if req.method() != http::Method::POST {
        return Ok(status(StatusCode::METHOD_NOT_ALLOWED));
    }
    let path = req.uri().path().to_string();
    let webhook_id = req
        .headers()
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let checkout_id = match req.into_body().collect().await {
        Ok(body) => serde_json::from_slice::<serde_json::Value>(&body.to_bytes())
            .ok()
            .and_then(|v| v.get("checkout_id")?.as_str().map(str::to_string)),
        Err(_) => None,
    };
    if path == FAIL_PATH {
        inbox.record_fail(at, checkout_id, webhook_id);
        let mut r = status(StatusCode::SERVICE_UNAVAILABLE);
        r.headers_mut()
            .insert(http::header::RETRY_AFTER, FAIL_RETRY_AFTER_S.into());
        return Ok(r);
    }
    inbox.record(at, at_wall, checkout_id, webhook_id);
    if path == HANG_PATH {
        // Never answer. hyper drops this future when the caller closes the connection; the
        // run's end closes what is left.
        shutdown.cancelled().await;
        return Ok(status(StatusCode::SERVICE_UNAVAILABLE));
    }
    Ok(status(StatusCode::OK))
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = code;
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    async fn post(addr: SocketAddr, path: &str, id: &str) -> TcpStream {
        post_with(addr, path, id, None).await
    }

    async fn post_with(addr: SocketAddr, path: &str, id: &str, webhook: Option<&str>) -> TcpStream {
        let body = format!("{{\"checkout_id\":\"{id}\"}}");
        let webhook = webhook.map_or(String::new(), |w| format!("webhook-id: {w}\r\n"));
        let req = format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\n{webhook}content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(req.as_bytes()).await.unwrap();
        s
    }

    /// A held request is recorded and left unanswered, while another connection is answered.
    /// Waits on conditions (the record, the answer), never on a clock.
    #[tokio::test]
    async fn the_hang_path_records_and_holds_without_blocking_others() {
        let shutdown = CancellationToken::new();
        let r = start(([127, 0, 0, 1], 0).into(), shutdown.clone())
            .await
            .unwrap();
        let held = post(r.addr, HANG_PATH, "slow").await;
        assert_eq!(
            r.inbox
                .wait_for(&["slow".to_string()], Duration::from_secs(30))
                .await,
            0
        );

        let mut ok = post(r.addr, "/cb", "fast").await;
        let mut head = [0u8; 12];
        ok.read_exact(&mut head).await.unwrap();
        assert_eq!(&head, b"HTTP/1.1 200");
        assert_eq!(r.inbox.count(), 2);

        // Still nothing on the held connection: a read would block, so try without waiting.
        let mut buf = [0u8; 1];
        assert!(matches!(
            held.try_read(&mut buf),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
        ));
        shutdown.cancel();
    }

    /// The head of one answer, lower-cased (hyper writes header names in lower case anyway).
    async fn head(s: &mut TcpStream) -> String {
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut byte).await.unwrap();
            buf.push(byte[0]);
        }
        String::from_utf8(buf).unwrap().to_lowercase()
    }

    /// `/fail` answers 503 with `Retry-After` at once, and counts each notification once by
    /// `webhook-id` and every hit, none of it as a healthy callback.
    #[tokio::test]
    async fn the_fail_path_answers_503_retry_after_and_counts_apart() {
        let shutdown = CancellationToken::new();
        let r = start(([127, 0, 0, 1], 0).into(), shutdown.clone())
            .await
            .unwrap();
        for (id, webhook) in [("c1", "w1"), ("c1", "w1"), ("c2", "w2")] {
            let mut s = post_with(r.addr, FAIL_PATH, id, Some(webhook)).await;
            let head = head(&mut s).await;
            assert!(head.starts_with("http/1.1 503"), "{head}");
            assert!(head.contains("\r\nretry-after: 3600\r\n"), "{head}");
        }
        assert_eq!(
            r.inbox.fail_counts(),
            FailCounts {
                distinct: 2,
                total: 3
            }
        );
        assert!(r.inbox.first_fail_at().is_some());
        let ids = ["c1".to_string(), "c2".to_string()];
        assert_eq!(
            r.inbox.wait_for_fail(&ids, Duration::from_secs(30)).await,
            0
        );
        // Nothing of it among the healthy records.
        assert_eq!(r.inbox.count(), 0);
        assert!(r.inbox.records().is_empty());

        // A healthy callback is still recorded, and a restart forgets it but not the fails.
        let mut ok = post(r.addr, "/cb", "fast").await;
        assert!(head(&mut ok).await.starts_with("http/1.1 200"));
        assert_eq!(r.inbox.count(), 1);
        r.inbox.restart(Instant::now());
        assert_eq!(r.inbox.count(), 0);
        assert!(r.inbox.records().is_empty());
        assert_eq!(r.inbox.fail_counts().distinct, 2);
        shutdown.cancel();
    }
}
