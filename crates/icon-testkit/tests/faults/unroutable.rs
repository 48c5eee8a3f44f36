//! Issue 16 §3: a message RabbitMQ cannot route (a delay tier deleted while in use, a row for a
//! queue nobody declares) is not a lost connection. The relays keep their connection and
//! readiness, publish every other row once, declare a deleted tier again themselves, and set a
//! row that stays unroutable aside (counted, logged once) until its queue exists.

use crate::{burst, two_retailers};
use icon_testkit::fleet::{Fleet, Tally};
use icon_testkit::{eventually, metrics, Receiver, Sim, TestEnv};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// What every relay logs when it treats a failed publish as a lost connection.
const RECONNECTING: &str = "outbox relay lost RabbitMQ; reconnecting";

/// Polls `/readyz` until `stop`, and says whether it ever reported the broker down.
async fn watch_readiness(fleet: &Fleet, stop: &AtomicBool) -> bool {
    let mut saw_down = false;
    while !stop.load(Ordering::SeqCst) {
        if let Ok(r) = fleet
            .api
            .try_send(http::Method::GET, "/readyz", None, &[], None)
            .await
        {
            saw_down |= r.json["broker"] != "up";
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    saw_down
}

/// A fleet on a fresh database and vhost, with two retailers at the simulator.
async fn started() -> (TestEnv, Sim, Receiver, Fleet) {
    let env = TestEnv::create().await;
    let sim = Sim::start().await;
    let receiver = Receiver::start(vec![], None).await;
    let fleet = Fleet::start(&env.database_url, &env.amqp_url, &[]).await;
    two_retailers(&fleet, &sim).await;
    (env, sim, receiver, fleet)
}

fn all_logs(fleet: &Fleet) -> String {
    [&fleet.gateway, &fleet.worker, &fleet.notifier]
        .iter()
        .map(|s| s.log())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delay_tier_deleted_while_in_use_is_declared_again_and_nothing_waits() {
    let (env, sim, receiver, fleet) = started().await;
    // Every worker tier goes, as an operator tidying "unused" queues might do.
    let tiers: Vec<String> = env
        .queue_names()
        .await
        .into_iter()
        .filter(|q| q.starts_with("checkout.requested.delay."))
        .collect();
    assert!(!tiers.is_empty(), "the worker declares its delay tiers");
    for tier in &tiers {
        env.delete_queue(tier).await;
    }
    let accepted = AtomicUsize::new(0);
    let tally = Mutex::new(Tally::default());
    let stop = AtomicBool::new(false);
    // A flaky- SKU gets a 503 first, so its retry needs a delay tier; the others need none.
    let load = async {
        let plain = burst(
            &fleet,
            100,
            10,
            &[("acme", "a"), ("globex", "b")],
            &receiver.url,
            &accepted,
            &tally,
        );
        let flaky = burst(
            &fleet,
            20,
            4,
            &[("acme", "flaky-a"), ("globex", "b")],
            &receiver.url,
            &accepted,
            &tally,
        );
        let (mut plain, flaky) = tokio::join!(plain, flaky);
        plain.extend(flaky);
        let mut t = tally.lock().unwrap().clone();
        t.settle(&fleet, &plain, &receiver, &[&sim], Duration::from_secs(90))
            .await;
        stop.store(true, Ordering::SeqCst);
        t
    };
    let (t, saw_down) = tokio::join!(load, watch_readiness(&fleet, &stop));
    t.assert_nothing_lost("delay tier deleted while in use", &fleet);
    assert_eq!(t.accepted, 120);
    let logs = all_logs(&fleet);
    assert!(
        !saw_down,
        "/readyz said the broker was down\n{}",
        fleet.logs()
    );
    assert!(
        !logs.contains(RECONNECTING),
        "an unroutable row made a relay reconnect\n{}",
        fleet.logs()
    );
    let now = env.queue_names().await;
    let back: Vec<&String> = tiers.iter().filter(|t| now.contains(t)).collect();
    assert!(
        !back.is_empty(),
        "the tier the retries used was declared again: {tiers:?} vs {now:?}"
    );
    env.outbox_drained().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_row_no_queue_takes_is_set_aside_counted_and_sent_once_its_queue_exists() {
    let (env, sim, receiver, fleet) = started().await;
    // A row for a queue no service declares, due now, with the wake-up the relays listen for.
    const NOWHERE: &str = "operator.deleted.this";
    env.db()
        .await
        .batch_execute(&format!(
            "INSERT INTO outbox (exchange, routing_key, message_id, message_type, checkout_id, body)
             VALUES ('', '{NOWHERE}', gen_random_uuid(), 'test.v1', gen_random_uuid(), '\\x7b7d');
             NOTIFY icon_outbox"
        ))
        .await
        .expect("insert the unroutable row");
    let accepted = AtomicUsize::new(0);
    let tally = Mutex::new(Tally::default());
    let stop = AtomicBool::new(false);
    let load = async {
        let ids = burst(
            &fleet,
            100,
            10,
            &[("acme", "a"), ("globex", "b")],
            &receiver.url,
            &accepted,
            &tally,
        )
        .await;
        let mut t = tally.lock().unwrap().clone();
        t.settle(&fleet, &ids, &receiver, &[&sim], Duration::from_secs(60))
            .await;
        stop.store(true, Ordering::SeqCst);
        t
    };
    let (t, saw_down) = tokio::join!(load, watch_readiness(&fleet, &stop));
    t.assert_nothing_lost("a row no queue takes", &fleet);
    assert!(
        !saw_down,
        "/readyz said the broker was down\n{}",
        fleet.logs()
    );

    // Set aside: counted in /readyz and /metrics, the only row left, logged once.
    let ready = fleet.api.get("/readyz", None).await;
    assert_eq!(ready.status, 200, "{ready:?}");
    assert_eq!(ready.json["broker"], "up", "{ready:?}");
    assert_eq!(ready.json["outbox_unroutable"], 1, "{ready:?}");
    let scraped = fleet.api.get("/metrics", None).await.text;
    assert_eq!(metrics::value(&scraped, "icon_outbox_unroutable"), 1.0);
    // Published rows are deleted in batches (every `CLEANUP_EVERY`) once confirmed: the last
    // ones may still be there as the last callback lands.
    eventually(
        "only the unroutable row waits in the outbox",
        Duration::from_secs(10),
        || async { (env.count("outbox").await == 1).then_some(()) },
    )
    .await;
    let logs = all_logs(&fleet);
    assert!(!logs.contains(RECONNECTING), "{}", fleet.logs());
    let warned: Vec<&str> = logs
        .lines()
        .filter(|l| {
            l.contains("could not be routed to any queue, even after") && l.contains(NOWHERE)
        })
        .collect();
    assert_eq!(
        warned.len(),
        1,
        "logged once, with its routing key: {warned:#?}"
    );

    // The queue appears: the row goes out within the longest backoff, and the count drops.
    {
        use icon_broker::lapin::options::QueueDeclareOptions;
        let conn = env.amqp().await;
        let ch = conn.create_channel().await.expect("channel");
        ch.queue_declare(
            NOWHERE.into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .expect("declare");
        let _ = conn.close(200, "done".into()).await;
    }
    let wait = icon_store::outbox::UNROUTABLE_RETRY_MAX + Duration::from_secs(10);
    eventually("the set-aside row to be published", wait, || async {
        (env.count("outbox").await == 0).then_some(())
    })
    .await;
    assert_eq!(env.queue_len(NOWHERE).await, 1);
    let ready = fleet.api.get("/readyz", None).await;
    assert_eq!(ready.json["outbox_unroutable"], 0, "{ready:?}");
}
