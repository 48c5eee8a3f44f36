//! What a measured phase does for `--stages`: a warning while it runs if no span arrives, and
//! at its end the wait for the traced checkouts' spans and their breakdown.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::collector::Collector;
use super::{StageReport, TraceShare};
use crate::drive::Shot;
use crate::stats::CallbackRecord;

/// The longest wait, after the callbacks, for the traced checkouts' last spans: each service's
/// batch processor exports every 5 s by default (`OTEL_BSP_SCHEDULE_DELAY`), within a 10 s
/// export timeout.
const SPAN_WAIT: Duration = Duration::from_secs(20);

/// With no span received this long into a phase, say so while it runs (the default export
/// interval is 5 s).
const NO_SPANS_WARNING: Duration = Duration::from_secs(12);

/// The collector's base URL, as `ICON_OTLP_ENDPOINT` should name it.
fn endpoint(c: &Collector) -> String {
    format!("http://{}", c.addr)
}

/// Says once, while the phase runs, that no span has arrived after [`NO_SPANS_WARNING`].
pub fn warn_without_spans(c: &Collector, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
    let (spans, endpoint) = (c.spans.clone(), endpoint(c));
    tokio::spawn(async move {
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = tokio::time::sleep(NO_SPANS_WARNING) => {
                if spans.received().exports == 0 {
                    eprintln!(
                        "\nicon-bench: --stages: no spans received in {} s: were ICON's services started with ICON_OTLP_ENDPOINT={endpoint}?",
                        NO_SPANS_WARNING.as_secs()
                    );
                }
            }
        }
    })
}

/// After the callbacks: waits for the traced checkouts' spans (up to [`SPAN_WAIT`]) and breaks
/// their time down.
pub async fn report(
    c: &Collector,
    share: TraceShare,
    shot: &Shot,
    callbacks: &[CallbackRecord],
    notes: &mut Vec<String>,
) -> StageReport {
    let traced = shot.traced_checkouts();
    let called_back: HashSet<&str> = callbacks
        .iter()
        .filter_map(|r| r.checkout_id.as_deref())
        .collect();
    let expected: Vec<String> = traced
        .iter()
        .filter(|t| called_back.contains(t.checkout_id.as_str()))
        .map(|t| t.trace_id.clone())
        .collect();
    eprintln!(
        "stages: waiting up to {} s for the spans of {} traced checkouts ({} spans in so far)",
        SPAN_WAIT.as_secs(),
        expected.len(),
        c.spans.received().spans
    );
    let waiting = Instant::now();
    let not_in = c.spans.wait_for(&expected, SPAN_WAIT).await;
    let waited_s = waiting.elapsed().as_secs_f64();
    let received = c.spans.received();
    let breakdown = super::breakdown::breakdown(&traced, callbacks, &c.spans.snapshot());
    let endpoint = endpoint(c);
    let said = if received.exports == 0 {
        Some(format!(
            "--stages: no spans received at {endpoint}/v1/traces: start ICON's services with ICON_OTLP_ENDPOINT={endpoint} (scripts/bench.sh --stages does), and leave OTEL_TRACES_SAMPLER unset (the default, parent-based, follows this tool's sampled flag)"
        ))
    } else if breakdown.complete == 0 && !traced.is_empty() {
        Some(format!(
            "--stages: {} spans received, but no traced checkout could be broken down (see the reasons under the stage table)",
            received.spans
        ))
    } else if not_in > 0 {
        Some(format!(
            "--stages: {not_in} of {} traced checkouts still lacked a service's last span after {waited_s:.0} s (lost in export: an SDK queue full, OTEL_BSP_MAX_QUEUE_SIZE, or an export that failed); they are counted apart",
            expected.len()
        ))
    } else {
        None
    };
    if let Some(msg) = said {
        eprintln!("icon-bench: {msg}");
        notes.push(msg);
    }
    if received.refused > 0 {
        notes.push(format!(
            "--stages: {} span export(s) refused (not OTLP/HTTP JSON); their spans are missing",
            received.refused
        ));
    }
    StageReport {
        endpoint,
        share: share.as_f64(),
        received,
        waited_s,
        not_in,
        breakdown,
    }
}
