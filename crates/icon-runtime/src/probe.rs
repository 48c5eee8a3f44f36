//! Health probes and metrics for the services that have no HTTP API of their own (worker,
//! notifier), so Docker health checks, Kubernetes probes and Prometheus can ask them too:
//! `GET /healthz` (the process serves), `GET /readyz` (it can do its work: 200, else 503) and
//! `GET /metrics` (Prometheus text, `docs/metrics.md`). A few fixed answers over plain HTTP/1.1
//! need no web framework; anything else gets 404.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Says whether the service is ready, with a short JSON reason.
pub type ReadyCheck =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = (bool, String)> + Send>> + Send + Sync>;

/// Brings gauges up to date just before `/metrics` answers (counts read from the database):
/// sampled when scraped, so nothing polls between scrapes.
pub type Sample = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Binds `addr` (if set) and serves the probes there until `shutdown`, in the background.
pub async fn start(
    addr: Option<&str>,
    ready: ReadyCheck,
    sample: Option<Sample>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    if let Some(addr) = addr {
        let listener = TcpListener::bind(addr).await?;
        tokio::spawn(serve(listener, ready, sample, shutdown));
    }
    Ok(())
}

/// Serves the probes on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    ready: ReadyCheck,
    sample: Option<Sample>,
    shutdown: CancellationToken,
) {
    loop {
        let (mut stream, _) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(s) => s,
                Err(_) => continue,
            },
        };
        let ready = ready.clone();
        let sample = sample.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let n = match tokio::time::timeout(
                std::time::Duration::from_secs(2),
                stream.read(&mut buf),
            )
            .await
            {
                Ok(Ok(n)) => n,
                _ => return,
            };
            let request = String::from_utf8_lossy(&buf[..n]);
            let path = request.split_whitespace().nth(1).unwrap_or("");
            let mut content_type = "application/json";
            let (status, body) = match path {
                "/healthz" => ("200 OK", r#"{"status":"ok"}"#.to_owned()),
                "/metrics" => {
                    let (ok, _) = ready().await;
                    icon_metrics::ready().set(i64::from(ok));
                    if let Some(sample) = &sample {
                        sample().await;
                    }
                    content_type = icon_metrics::CONTENT_TYPE;
                    ("200 OK", icon_metrics::render())
                }
                "/readyz" => {
                    let (ok, detail) = ready().await;
                    if ok {
                        ("200 OK", detail)
                    } else {
                        ("503 Service Unavailable", detail)
                    }
                }
                _ => ("404 Not Found", r#"{"status":"not_found"}"#.to_owned()),
            };
            let response = format!(
                "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn answers_health_and_readiness() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let f = flag.clone();
        let check: ReadyCheck = Arc::new(move || {
            let ok = f.load(std::sync::atomic::Ordering::Relaxed);
            Box::pin(async move { (ok, format!("{{\"ready\":{ok}}}")) })
        });
        let shutdown = CancellationToken::new();
        tokio::spawn(serve(listener, check, None, shutdown.clone()));
        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        let r = get(addr, "/readyz").await;
        assert!(
            r.starts_with("HTTP/1.1 503") && r.ends_with("{\"ready\":false}"),
            "{r}"
        );
        flag.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));
        assert!(get(addr, "/nope").await.starts_with("HTTP/1.1 404"));
        let m = get(addr, "/metrics").await;
        assert!(
            m.starts_with("HTTP/1.1 200") && m.contains("\nicon_ready 1\n"),
            "{m}"
        );
        shutdown.cancel();
    }
}
