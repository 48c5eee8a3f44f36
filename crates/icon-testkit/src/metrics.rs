//! Reading a service's `/metrics` in tests: scrape it, and pick one sample out of the text.
//! Counts are per process and the API tests share one, so tests compare with "at least".

use crate::Api;

/// A free TCP port on 127.0.0.1 (for `ICON_PROBE_ADDR` and the like).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `GET /metrics` at `addr` (host:port); panics unless it answers 200.
pub async fn scrape(addr: &str) -> String {
    let m = Api::new(&format!("http://{addr}"))
        .get("/metrics", None)
        .await;
    assert_eq!(m.status, 200, "{m:?}");
    m.text
}

/// The value of the sample `series` (name and labels exactly as rendered), if present.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// The value of `series`, which must be there.
pub fn value(text: &str, series: &str) -> f64 {
    sample(text, series).unwrap_or_else(|| panic!("no `{series}` in:\n{text}"))
}
