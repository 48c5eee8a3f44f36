//! Issue 16 §9: quorum work queues declare the delivery limit ICON relies on
//! (`DELIVERY_LIMIT`) instead of taking the broker's default (none on 3.x, 20 on 4.x), and a
//! work queue ICON declared before that keeps working as it is.

mod support;

use icon_broker::lapin::options::QueueDeclareOptions;
use icon_broker::lapin::types::{AMQPValue, FieldTable};
use icon_broker::{Topology, DELIVERY_LIMIT};
use std::time::Duration;
use support::Vhost;

fn topology() -> Topology {
    Topology::new()
        .work_queue("work")
        .plain_queue("work.parked")
        .delay_tier(Duration::from_secs(3600), "work")
}

#[tokio::test]
async fn a_quorum_work_queue_declares_its_delivery_limit_and_only_it_does() {
    let vhost = Vhost::create();
    let conn = vhost.connect().await;
    topology().declare(&conn).await.expect("declare");
    let work = vhost.queue("work").expect("work");
    assert_eq!(
        work.arg("x-delivery-limit"),
        Some(DELIVERY_LIMIT.to_string()),
        "{work:?}"
    );
    for other in ["work.dead", "work.parked", "work.delay.3600000ms"] {
        let q = vhost.queue(other).expect(other);
        assert_eq!(q.arg("x-delivery-limit"), None, "{q:?}");
    }
    let _ = conn.close(200, "done".into()).await;
}

#[tokio::test]
async fn a_work_queue_declared_before_the_limit_is_kept_and_the_rest_is_declared() {
    let vhost = Vhost::create();
    let conn = vhost.connect().await;
    // `work` as ICON declared it before: quorum, dead-lettering at least once, no limit.
    let ch = conn.create_channel().await.expect("channel");
    let mut args = FieldTable::default();
    for (k, v) in [
        ("x-queue-type", "quorum"),
        ("x-dead-letter-exchange", ""),
        ("x-dead-letter-routing-key", "work.dead"),
        ("x-dead-letter-strategy", "at-least-once"),
        ("x-overflow", "reject-publish"),
    ] {
        args.insert(k.into(), AMQPValue::LongString(v.into()));
    }
    ch.queue_declare(
        "work".into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        args,
    )
    .await
    .expect("declare the old work queue");
    vhost.publish("work", &["kept".to_owned()], None).await;

    let declared = topology().declare(&conn).await.expect("declare");
    assert!(declared.mismatched.is_empty(), "{:?}", declared.mismatched);
    let work = vhost.queue("work").expect("work");
    assert_eq!(work.kind, "quorum");
    assert_eq!(
        work.arg("x-delivery-limit"),
        None,
        "kept as it was: {work:?}"
    );
    assert_eq!(vhost.messages("work").await, 1, "nothing moved or lost");
    // Everything declared after it is there: the declaration went on.
    assert!(vhost.queue("work.delay.3600000ms").is_some());
    assert!(vhost.queue("work.parked").is_some());
    let _ = conn.close(200, "done".into()).await;
}
