//! What the worker tells Prometheus (`docs/metrics.md`): retailer calls with their outcome and
//! latency, and checkouts reaching their final status with the time since their 202.

use crate::retailer::{LookupAnswer, PlaceAnswer};
use icon_domain::{CheckoutId, CheckoutStatus, RetailerId};
use icon_metrics::{RetailerCallLabels, RetailerStepLabels, StatusLabels};
use icon_runtime::probe::Sample;
use icon_store::{gauges, Pool};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

/// Registers the worker's families and the series of every final status, so dashboards show
/// zeros (and `rate()` has a start) before the first checkout ends.
pub fn register() {
    let m = icon_metrics::worker();
    for status in [
        CheckoutStatus::Completed,
        CheckoutStatus::PartiallyCompleted,
        CheckoutStatus::Failed,
    ] {
        let labels = StatusLabels {
            status: status.as_str(),
        };
        m.checkouts_finished.get_or_create(&labels).inc_by(0);
    }
    icon_metrics::outbox();
    icon_metrics::ready();
}

/// Reads the worker's gauges from the database when `/metrics` is scraped.
pub fn sampler(pool: Arc<OnceLock<Pool>>) -> Sample {
    Arc::new(move || {
        let pool = pool.get().cloned();
        Box::pin(async move {
            let Some(pool) = pool else { return };
            let Ok(db) = pool.get().await else { return };
            if let Ok(n) = gauges::unknown_orders_settling(&db).await {
                icon_metrics::worker().orders_unknown.set(n);
            }
            icon_outbox::sample_metrics(&db).await;
        })
    })
}

/// The word a place answer is counted under.
pub fn place_outcome(answer: &PlaceAnswer) -> &'static str {
    match answer {
        PlaceAnswer::Confirmed { .. } | PlaceAnswer::Accepted { .. } => "accepted",
        PlaceAnswer::NotPlaced { .. } => "rejected",
        PlaceAnswer::Unsure { .. } => "unknown",
    }
}

/// The word a lookup answer is counted under.
pub fn lookup_outcome(answer: &LookupAnswer) -> &'static str {
    match answer {
        LookupAnswer::Placed { status, .. }
            if matches!(
                status.as_str(),
                "rejected" | "cancelled" | "canceled" | "failed"
            ) =>
        {
            "rejected"
        }
        // Still waiting for the retailer's word: no outcome yet.
        LookupAnswer::Placed { status, .. } if status == "accepted" => "unknown",
        LookupAnswer::Placed { .. } => "accepted",
        LookupAnswer::NotPlaced => "rejected",
        LookupAnswer::Unsure { .. } => "unknown",
    }
}

/// One call to a retailer: `step` is `place` or `lookup`.
pub fn retailer_call(
    retailer: &RetailerId,
    step: &'static str,
    outcome: &'static str,
    took: Duration,
) {
    let m = icon_metrics::worker();
    m.retailer_calls
        .get_or_create(&RetailerCallLabels {
            retailer: retailer.to_string(),
            step,
            outcome,
        })
        .inc();
    m.retailer_call_duration
        .get_or_create(&RetailerStepLabels {
            retailer: retailer.to_string(),
            step,
        })
        .observe(took.as_secs_f64());
}

/// A checkout reached `status`.
pub fn finished(id: CheckoutId, status: CheckoutStatus) {
    let m = icon_metrics::worker();
    let labels = StatusLabels {
        status: status.as_str(),
    };
    m.checkouts_finished.get_or_create(&labels).inc();
    if let Some(took) = id
        .accepted_at()
        .and_then(|at| SystemTime::now().duration_since(at).ok())
    {
        m.accept_to_final
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }
}
