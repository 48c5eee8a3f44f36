//! The metric families, grouped by the service that feeds them. Names and labels are the
//! contract in `docs/metrics.md`; counters get their `_total` suffix from the encoder.

use crate::{register, seconds_buckets};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use std::sync::atomic::AtomicU64;
use std::sync::LazyLock;

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn histograms<L: Clone + std::hash::Hash + Eq>() -> Histograms<L> {
    Family::new_with_constructor(|| Histogram::new(seconds_buckets()))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The matched route pattern (`/cart/checkout/{checkout_id}`), or `unmatched`.
    pub route: String,
    pub method: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
    pub method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RetailerCallLabels {
    pub retailer: String,
    pub step: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RetailerStepLabels {
    pub retailer: String,
    pub step: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptLabels {
    pub channel: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabels {
    pub channel: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RetryLabels {
    pub channel: &'static str,
    /// The delay tier's name (`5s`, `1m`): a handful per deployment.
    pub tier: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    /// One of ICON's few queue names.
    pub queue: String,
}

/// What the gateway feeds.
pub struct Gateway {
    pub requests: Family<RequestLabels, Counter>,
    pub request_duration: Histograms<RouteLabels>,
    pub checkouts_accepted: Counter,
    /// Statements that stored submitted checkouts, each its own transaction (group commit).
    pub checkout_batches: Counter,
}

pub fn gateway() -> &'static Gateway {
    static IT: LazyLock<Gateway> = LazyLock::new(|| {
        let it = Gateway {
            requests: Family::default(),
            request_duration: histograms(),
            checkouts_accepted: Counter::default(),
            checkout_batches: Counter::default(),
        };
        register(|r| {
            r.register(
                "icon_http_requests",
                "HTTP requests answered, by route pattern, method and status",
                it.requests.clone(),
            );
            r.register(
                "icon_http_request_duration_seconds",
                "Time to answer an HTTP request, by route pattern and method",
                it.request_duration.clone(),
            );
            r.register(
                "icon_checkouts_accepted",
                "Checkouts answered with 202 (new ones; idempotent replays are not counted)",
                it.checkouts_accepted.clone(),
            );
            r.register(
                "icon_checkout_batches",
                "Transactions that stored submitted checkouts, each one statement for all the \
                 checkouts submitted at that moment (group commit): icon_checkouts_accepted over \
                 this is the checkouts per commit",
                it.checkout_batches.clone(),
            );
        });
        it
    });
    &IT
}

/// What the checkout worker feeds.
pub struct Worker {
    pub checkouts_finished: Family<StatusLabels, Counter>,
    pub accept_to_final: Histograms<StatusLabels>,
    pub retailer_calls: Family<RetailerCallLabels, Counter>,
    pub retailer_call_duration: Histograms<RetailerStepLabels>,
    pub orders_unknown: Gauge,
}

pub fn worker() -> &'static Worker {
    static IT: LazyLock<Worker> = LazyLock::new(|| {
        let it = Worker {
            checkouts_finished: Family::default(),
            accept_to_final: histograms(),
            retailer_calls: Family::default(),
            retailer_call_duration: histograms(),
            orders_unknown: Gauge::default(),
        };
        register(|r| {
            r.register(
                "icon_checkouts_finished",
                "Checkouts that reached a final status",
                it.checkouts_finished.clone(),
            );
            r.register(
                "icon_checkout_accept_to_final_seconds",
                "From the 202 to the final status",
                it.accept_to_final.clone(),
            );
            r.register(
                "icon_retailer_calls",
                "Calls to retailers, by retailer, step (place, lookup) and outcome",
                it.retailer_calls.clone(),
            );
            r.register(
                "icon_retailer_call_duration_seconds",
                "Time a retailer took to answer, by retailer and step",
                it.retailer_call_duration.clone(),
            );
            r.register(
                "icon_orders_unknown",
                "Orders whose outcome is unknown, waiting to settle by status lookups",
                it.orders_unknown.clone(),
            );
        });
        it
    });
    &IT
}

/// What the notifier feeds.
pub struct Notifier {
    pub attempts: Family<AttemptLabels, Counter>,
    pub finish_to_delivered: Histograms<ChannelLabels>,
    pub retries: Family<RetryLabels, Counter>,
    pub parked: Family<ChannelLabels, Gauge>,
    pub push_sends: Family<OutcomeLabels, Counter>,
    pub in_flight: Family<ChannelLabels, Gauge>,
}

pub fn notifier() -> &'static Notifier {
    static IT: LazyLock<Notifier> = LazyLock::new(|| {
        let it = Notifier {
            attempts: Family::default(),
            finish_to_delivered: histograms(),
            retries: Family::default(),
            parked: Family::default(),
            push_sends: Family::default(),
            in_flight: Family::default(),
        };
        register(|r| {
            r.register(
                "icon_notification_attempts",
                "Notification attempts, by channel (callback, push, email) and outcome",
                it.attempts.clone(),
            );
            r.register(
                "icon_notification_finish_to_delivered_seconds",
                "From the checkout's final status to the notification's delivery",
                it.finish_to_delivered.clone(),
            );
            r.register(
                "icon_notification_retries",
                "Notifications sent to a delay tier to be tried again, by channel and tier",
                it.retries.clone(),
            );
            r.register(
                "icon_notifications_parked",
                "Notifications given up on, waiting for a redeliver, by channel",
                it.parked.clone(),
            );
            r.register(
                "icon_push_sends",
                "FCM sends, one per device, by outcome",
                it.push_sends.clone(),
            );
            r.register(
                "icon_deliveries_in_flight",
                "Notification attempts under way, by channel",
                it.in_flight.clone(),
            );
        });
        it
    });
    &IT
}

/// What a service with an outbox relay feeds (gateway, worker).
pub struct Outbox {
    pub backlog: Gauge,
    pub oldest_age_seconds: Gauge<f64, AtomicU64>,
    /// Rows set aside because RabbitMQ could not route them (part of the backlog).
    pub unroutable: Gauge,
}

pub fn outbox() -> &'static Outbox {
    static IT: LazyLock<Outbox> = LazyLock::new(|| {
        let it = Outbox {
            backlog: Gauge::default(),
            oldest_age_seconds: Gauge::default(),
            unroutable: Gauge::default(),
        };
        register(|r| {
            r.register(
                "icon_outbox_backlog",
                "Outbox rows written and not yet published",
                it.backlog.clone(),
            );
            r.register(
                "icon_outbox_oldest_age_seconds",
                "Age of the oldest unpublished outbox row (0 when none)",
                it.oldest_age_seconds.clone(),
            );
            r.register(
                "icon_outbox_unroutable",
                "Outbox rows RabbitMQ could not route to any queue, set aside and retried with backoff",
                it.unroutable.clone(),
            );
        });
        it
    });
    &IT
}

/// Messages ready in the queues a service consumes (worker, notifier).
pub fn queues() -> &'static Family<QueueLabels, Gauge> {
    static IT: LazyLock<Family<QueueLabels, Gauge>> = LazyLock::new(|| {
        let it = Family::default();
        register(|r| {
            r.register(
                "icon_queue_messages",
                "Messages ready in a queue this service consumes",
                Family::clone(&it),
            )
        });
        it
    });
    &IT
}

/// 1 while the service is ready (as `/readyz` says), 0 otherwise.
pub fn ready() -> &'static Gauge {
    static IT: LazyLock<Gauge> = LazyLock::new(|| {
        let it = Gauge::default();
        register(|r| {
            r.register(
                "icon_ready",
                "1 while the service is ready to work (as /readyz), else 0",
                it.clone(),
            )
        });
        it
    });
    &IT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_render_under_their_contract_names() {
        gateway()
            .requests
            .get_or_create(&RequestLabels {
                route: "/cart/checkout/".into(),
                method: "POST".into(),
                status: 202,
            })
            .inc();
        worker()
            .accept_to_final
            .get_or_create(&StatusLabels {
                status: "completed",
            })
            .observe(0.004);
        notifier()
            .attempts
            .get_or_create(&AttemptLabels {
                channel: "callback",
                outcome: "delivered",
            })
            .inc_by(2);
        outbox().oldest_age_seconds.set(1.5);
        queues()
            .get_or_create(&QueueLabels {
                queue: "checkout.requested".into(),
            })
            .set(7);
        ready().set(1);
        let text = crate::render();
        for line in [
            "icon_http_requests_total{route=\"/cart/checkout/\",method=\"POST\",status=\"202\"} 1",
            "icon_checkout_accept_to_final_seconds_bucket{le=\"0.004\",status=\"completed\"} 1",
            "icon_notification_attempts_total{channel=\"callback\",outcome=\"delivered\"} 2",
            "icon_outbox_oldest_age_seconds 1.5",
            "icon_queue_messages{queue=\"checkout.requested\"} 7",
            "icon_ready 1",
            "# TYPE icon_checkout_accept_to_final_seconds histogram",
            "# TYPE icon_checkouts_accepted counter",
            "# TYPE icon_checkout_batches counter",
        ] {
            assert!(text.contains(line), "missing `{line}` in:\n{text}");
        }
    }
}
