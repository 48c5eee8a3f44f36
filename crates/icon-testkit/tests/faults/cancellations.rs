//! Cancellations under faults (issue 18): the worker SIGKILLed and RabbitMQ stopped while
//! cancellations are under way. Half the checkouts are cancelled at once (queued, or with their
//! placement in flight), half after they completed. acme's first cancellation of each order
//! never answers (`cancel-hang-`: it takes effect, the answer is lost), so cancellations are in
//! flight when the fault strikes.
//!
//! Counted from outside, in a `FAULT cancellations` line: every checkout ends `cancelled` with
//! its callback (`cancel_lost`: an order asked to be cancelled that is not, at ICON or at the
//! retailer); `placed_after_cancel`: an order the retailer still has placed at the end;
//! `cancel_keys_wrong`: a cancellation sent with another key than `<order key>:cancel`; and the
//! tally's `lost` and `double_orders`.

use super::*;
use icon_testkit::fleet::record;

const SKUS: [(&str, &str); 2] = [("acme", "cancel-hang-a"), ("globex", "b")];

/// What the cancellation line counts.
#[derive(Debug, Default)]
struct Cancelled {
    checkouts: usize,
    cancel_lost: usize,
    placed_after_cancel: usize,
    cancel_keys_wrong: usize,
    requests: usize,
    retried: usize,
    /// The checkouts that did not end as they should, as the resource showed them last.
    stuck: Vec<String>,
}

/// Submits `n` checkouts; cancels the even ones at once and the odd ones after their first
/// callback. Returns their ids.
async fn submit_and_cancel(
    fleet: &Fleet,
    receiver: &Receiver,
    n: usize,
    accepted: &AtomicUsize,
    tally: &Mutex<Tally>,
) -> Vec<String> {
    stream::iter(0..n)
        .map(|i| async move {
            let id = fleet.submit(i, &SKUS, &receiver.url, tally).await;
            accepted.fetch_add(1, Ordering::SeqCst);
            if i % 2 == 1 {
                eventually(
                    "the checkout's first callback",
                    Duration::from_secs(120),
                    || async {
                        receiver
                            .seen()
                            .iter()
                            .any(|r| r.body["checkout_id"] == id.as_str())
                            .then_some(())
                    },
                )
                .await;
            }
            fleet.cancel(&id, tally).await;
            id
        })
        .buffer_unordered(8)
        .collect()
        .await
}

/// Waits until every checkout is `cancelled` and its cancellation's callback arrived, then
/// counts against the resource, the receiver and the simulator.
async fn settle_cancellations(
    fleet: &Fleet,
    ids: &[String],
    receiver: &Receiver,
    sim: &Sim,
) -> Cancelled {
    let until = tokio::time::Instant::now() + Duration::from_secs(180);
    let mut views = Vec::new();
    for id in ids {
        let view = loop {
            let view = fleet.checkout(id).await;
            let cancelled_callback = receiver.seen().iter().any(|r| {
                r.body["checkout_id"] == id.as_str() && r.body["type"] == "checkout.cancelled"
            });
            match view {
                Some(v) if v["status"] == "cancelled" && cancelled_callback => break Some(v),
                v if tokio::time::Instant::now() >= until => break v,
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        views.push((id, view));
    }
    let requests = sim.cancellations().await;
    let mut c = Cancelled {
        checkouts: ids.len(),
        requests: requests.len(),
        ..Cancelled::default()
    };
    for (id, view) in views {
        let callback = receiver.seen().iter().any(|r| {
            r.body["checkout_id"] == id.as_str() && r.body["type"] == "checkout.cancelled"
        });
        for (retailer, _) in SKUS {
            let key = format!("{id}:{retailer}");
            let at_icon = view.as_ref().is_some_and(|v| {
                v["orders"].as_array().is_some_and(|orders| {
                    orders
                        .iter()
                        .any(|o| o["retailer_id"] == retailer && o["status"] == "cancelled")
                })
            });
            let at_retailer = sim.order_status(retailer, &key).await;
            if !at_icon || !callback {
                c.cancel_lost += 1;
                c.stuck.push(format!(
                    "{key}: callback={callback} resource={}",
                    view.as_ref().map(Value::to_string).unwrap_or_default()
                ));
            }
            if at_retailer.as_deref().is_some_and(|s| s != "cancelled") {
                c.placed_after_cancel += 1;
            }
            let mine: Vec<&Value> = requests
                .iter()
                .filter(|r| r["idempotency_key"] == key.as_str())
                .collect();
            if mine.len() > 1 {
                c.retried += 1;
            }
            c.cancel_keys_wrong += mine
                .iter()
                .filter(|r| r["idempotency_key_header"] != format!("{key}:cancel").as_str())
                .count();
        }
    }
    c
}

fn report(name: &str, c: &Cancelled) -> String {
    let line = format!(
        "FAULT cancellations, {name}: checkouts={} cancel_lost={} placed_after_cancel={} cancel_keys_wrong={} (cancellation requests={}, orders asked more than once={})",
        c.checkouts, c.cancel_lost, c.placed_after_cancel, c.cancel_keys_wrong, c.requests, c.retried
    );
    println!("{line}");
    record(&line);
    line
}

use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn worker_sigkill_during_cancellations() {
    let env = TestEnv::create().await;
    let sim = Sim::start().await;
    let receiver = Receiver::start(vec![], None).await;
    let fleet = Fleet::start(&env.database_url, &env.amqp_url, &[]).await;
    two_retailers(&fleet, &sim).await;
    let accepted = AtomicUsize::new(0);
    let tally = Mutex::new(Tally::default());
    let control = async {
        // acme's first cancellations hang: with 10 received, others are mid-call.
        eventually(
            "cancellations in flight",
            Duration::from_secs(60),
            || async { (sim.cancellations().await.len() >= 10).then_some(()) },
        )
        .await;
        fleet.worker.kill();
        fleet.worker.restart(WORKER);
    };
    let (ids, ()) = tokio::join!(
        submit_and_cancel(&fleet, &receiver, 40, &accepted, &tally),
        control
    );
    let c = settle_cancellations(&fleet, &ids, &receiver, &sim).await;
    let line = report("worker SIGKILL", &c);
    let mut t = tally.into_inner().unwrap();
    t.settle(&fleet, &ids, &receiver, &[&sim], Duration::from_secs(60))
        .await;
    assert!(c.stuck.is_empty(), "{line}\n{}", c.stuck.join("\n"));
    t.assert_nothing_lost("worker SIGKILL during cancellations", &fleet);
    assert!(
        c.cancel_lost == 0 && c.placed_after_cancel == 0 && c.cancel_keys_wrong == 0,
        "{line}\n{}\n{}",
        c.stuck.join("\n"),
        fleet.logs()
    );
    assert!(c.retried > 0, "the lost answers were asked again: {line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rabbitmq_stopped_during_cancellations() {
    let Some(rabbit) = DisposableRabbit::start().await else {
        println!(
            "SKIPPED rabbitmq_stopped_during_cancellations: rabbitmq-server is not installed here"
        );
        return;
    };
    let env = TestEnv::create().await;
    let sim = Sim::start().await;
    let receiver = Receiver::start(vec![], None).await;
    let fleet = Fleet::start(&env.database_url, &rabbit.amqp_url("%2f"), &[]).await;
    two_retailers(&fleet, &sim).await;
    let accepted = AtomicUsize::new(0);
    let tally = Mutex::new(Tally::default());
    let control = async {
        eventually(
            "cancellations under way",
            Duration::from_secs(60),
            || async { (sim.cancellations().await.len() >= 10).then_some(()) },
        )
        .await;
        rabbit.down();
        // The broker is down for a while: DELETEs are still answered (the outbox holds the
        // wake-ups), and nothing moves until it is back.
        tokio::time::sleep(Duration::from_secs(3)).await;
        rabbit.up().await;
    };
    let (ids, ()) = tokio::join!(
        submit_and_cancel(&fleet, &receiver, 40, &accepted, &tally),
        control
    );
    let c = settle_cancellations(&fleet, &ids, &receiver, &sim).await;
    let line = report("RabbitMQ stopped", &c);
    let mut t = tally.into_inner().unwrap();
    t.settle(&fleet, &ids, &receiver, &[&sim], Duration::from_secs(60))
        .await;
    assert!(c.stuck.is_empty(), "{line}\n{}", c.stuck.join("\n"));
    t.assert_nothing_lost("RabbitMQ stopped during cancellations", &fleet);
    assert!(
        c.cancel_lost == 0 && c.placed_after_cancel == 0 && c.cancel_keys_wrong == 0,
        "{line}\n{}",
        fleet.logs()
    );
}
