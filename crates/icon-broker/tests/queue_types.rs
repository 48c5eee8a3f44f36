//! Queue types against the real broker: what `Topology::declare` creates for each type, and what
//! it does when a queue already exists with the other type (keeps it, reports it, keeps working).

mod support;

use icon_broker::lapin::message::Delivery;
use icon_broker::{
    run_consumer, ConsumerSettings, Disposition, Handler, Mismatch, QueueType, Topology,
};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::Vhost;
use tokio_util::sync::CancellationToken;

fn topology(queue_type: QueueType) -> Topology {
    Topology::new()
        .queue_type(queue_type)
        .work_queue("work")
        .plain_queue("work.parked")
        .delay_tier(Duration::from_secs(3600), "work")
}

#[tokio::test]
async fn quorum_is_the_default_and_dead_letters_at_least_once() {
    let vhost = Vhost::create();
    let conn = vhost.connect().await;
    let declared = Topology::new()
        .work_queue("work")
        .plain_queue("work.parked")
        .delay_tier(Duration::from_secs(3600), "work")
        .declare(&conn)
        .await
        .expect("declare");
    assert!(declared.mismatched.is_empty());
    let queues = vhost.queues();
    assert_eq!(queues.len(), 4, "{queues:#?}");
    for q in &queues {
        assert_eq!(q.kind, "quorum", "{q:?}");
    }
    for name in ["work", "work.delay.3600000ms"] {
        let q = vhost.queue(name).unwrap();
        assert_eq!(
            q.arg("x-dead-letter-strategy").as_deref(),
            Some("at-least-once"),
            "{q:?}"
        );
        assert_eq!(
            q.arg("x-overflow").as_deref(),
            Some("reject-publish"),
            "{q:?}"
        );
    }
    let tier = vhost.queue("work.delay.3600000ms").unwrap();
    assert_eq!(tier.arg("x-message-ttl").as_deref(), Some("3600000"));
    assert_eq!(
        tier.arg("x-dead-letter-routing-key").as_deref(),
        Some("work")
    );
    assert_eq!(
        vhost
            .queue("work")
            .unwrap()
            .arg("x-dead-letter-routing-key")
            .as_deref(),
        Some("work.dead")
    );
    // Declaring again is a no-op.
    let again = topology(QueueType::Quorum).declare(&conn).await.unwrap();
    assert!(again.mismatched.is_empty());
    let _ = conn.close(200, "done".into()).await;
}

#[tokio::test]
async fn classic_stays_available_for_older_brokers() {
    let vhost = Vhost::create();
    let conn = vhost.connect().await;
    topology(QueueType::Classic).declare(&conn).await.unwrap();
    for q in vhost.queues() {
        assert_eq!(q.kind, "classic", "{q:?}");
        assert_eq!(q.arg("x-dead-letter-strategy"), None, "{q:?}");
    }
    let _ = conn.close(200, "done".into()).await;
}

struct Count(AtomicUsize);

impl Handler for Count {
    async fn handle(&self, _delivery: &Delivery) -> Disposition {
        self.0.fetch_add(1, Ordering::SeqCst);
        Disposition::Ack
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_classic_queue_is_kept_reported_and_still_consumed() {
    let vhost = Vhost::create();
    let conn = vhost.connect().await;
    topology(QueueType::Classic).declare(&conn).await.unwrap();
    let ids: Vec<String> = (0..5).map(|i| format!("m{i}")).collect();
    vhost.publish("work", &ids, None).await;

    // An upgraded service now wants quorum queues: nothing breaks, nothing is lost.
    let declared = topology(QueueType::Quorum)
        .declare(&conn)
        .await
        .expect("declare");
    let mismatched: Vec<&Mismatch> = declared.mismatched.iter().collect();
    assert_eq!(mismatched.len(), 4, "{mismatched:?}");
    for m in &mismatched {
        assert_eq!(m.wanted, QueueType::Quorum);
        assert_eq!(m.existing, Some(QueueType::Classic), "{m:?}");
    }
    // The connection survived the refused declarations, and the queue still holds everything.
    assert!(conn.status().connected());
    assert_eq!(vhost.queue("work").unwrap().kind, "classic");
    assert_eq!(vhost.messages("work").await, 5);

    // The other way round is detected as well.
    let fresh = Vhost::create();
    let c2 = fresh.connect().await;
    topology(QueueType::Quorum).declare(&c2).await.unwrap();
    let declared = topology(QueueType::Classic).declare(&c2).await.unwrap();
    assert!(declared
        .mismatched
        .iter()
        .all(|m| m.existing == Some(QueueType::Quorum)));
    assert_eq!(declared.mismatched.len(), 4);
    let _ = c2.close(200, "done".into()).await;

    // A consumer configured for quorum consumes the classic queue as before.
    let handler = Arc::new(Count(AtomicUsize::new(0)));
    let shutdown = CancellationToken::new();
    let consumer = tokio::spawn(run_consumer(
        ConsumerSettings {
            amqp_url: vhost.url.clone(),
            name: "queue-types-test".into(),
            queue: "work".into(),
            prefetch: 4,
            grace: Duration::from_secs(2),
        },
        topology(QueueType::Quorum),
        handler.clone(),
        Arc::new(AtomicBool::new(false)),
        shutdown.clone(),
    ));
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    while handler.0.load(Ordering::SeqCst) < 5 {
        assert!(
            tokio::time::Instant::now() < until,
            "the consumer did not get the messages"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    consumer.await.unwrap();
    assert_eq!(vhost.messages("work").await, 0);
    let _ = conn.close(200, "done".into()).await;
}
