//! A handler that panics must not leak its delivery: against a real vhost, with a prefetch of 1
//! so a single leaked delivery would stall the consumer for good.

mod support;

use icon_broker::lapin::message::Delivery;
use icon_broker::lapin::options::BasicGetOptions;
use icon_broker::lapin::types::AMQPValue;
use icon_broker::{
    run_consumer, ConsumerSettings, Disposition, Handler, Topology, DEATH_REASON_HEADER,
};
use std::collections::BTreeSet;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::Vhost;
use tokio_util::sync::CancellationToken;

/// Panics on `boom-always` every time and on `boom-once` the first time; acks the rest.
#[derive(Default)]
struct Flaky {
    acked: Mutex<BTreeSet<String>>,
}

impl Handler for Flaky {
    async fn handle(&self, delivery: &Delivery) -> Disposition {
        let body = String::from_utf8_lossy(&delivery.data).into_owned();
        if body == "boom-always" || (body == "boom-once" && !delivery.redelivered) {
            panic!("boom: {body}");
        }
        self.acked.lock().unwrap().insert(body);
        Disposition::Ack
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_requeues_once_then_dead_letters_and_the_consumer_goes_on() {
    let vhost = Vhost::create();
    let topology = Topology::new().work_queue("work");
    let conn = vhost.connect().await;
    topology.declare(&conn).await.unwrap();
    let bodies: Vec<String> = ["boom-once", "boom-always", "ok-1", "ok-2"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    vhost.publish("work", &bodies, None).await;

    let handler = Arc::new(Flaky::default());
    let shutdown = CancellationToken::new();
    let consumer = tokio::spawn(run_consumer(
        ConsumerSettings {
            amqp_url: vhost.url.clone(),
            name: "panics-test".into(),
            queue: "work".into(),
            prefetch: 1,
            grace: Duration::from_secs(2),
        },
        topology,
        handler.clone(),
        Arc::new(AtomicBool::new(false)),
        shutdown.clone(),
    ));
    vhost
        .wait_for_messages("work.dead", 1, Duration::from_secs(20))
        .await;
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let acked = handler.acked.lock().unwrap().clone();
        if acked.len() == 3 {
            assert_eq!(
                acked,
                BTreeSet::from(["boom-once".into(), "ok-1".into(), "ok-2".into()])
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "stalled with {acked:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    vhost
        .wait_for_messages("work", 0, Duration::from_secs(5))
        .await;
    shutdown.cancel();
    consumer.await.unwrap();

    let ch = conn.create_channel().await.unwrap();
    let dead = ch
        .basic_get("work.dead".into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("the twice-panicking message");
    assert_eq!(&dead.delivery.data[..], b"boom-always");
    let reason = dead
        .delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(DEATH_REASON_HEADER).cloned());
    match reason {
        Some(AMQPValue::LongString(r)) => {
            let r = r.to_string();
            assert!(
                r.contains("panicked twice") && r.contains("boom: boom-always"),
                "{r}"
            );
        }
        other => panic!("no death reason: {other:?}"),
    }
    let _ = conn.close(200, "done".into()).await;
}
