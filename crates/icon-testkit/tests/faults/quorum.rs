//! Quorum queues keep a retry hop through a delay tier across a broker restart: persistent
//! messages published (with confirms) into a tier, the broker stopped and started while they
//! wait there, and every one of them arrives in the work queue afterwards.
//!
//! There is no classic variant for contrast: a classic tier loses a message only if the broker
//! fails in the instant between removing an expired message and storing it in the work queue,
//! which a test cannot hit on purpose; a clean restart loses nothing with either type.

use icon_broker::lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use icon_broker::lapin::types::FieldTable;
use icon_broker::lapin::{BasicProperties, Connection};
use icon_broker::{QueueType, Topology};
use icon_testkit::disposable::DisposableRabbit;
use icon_testkit::eventually;
use std::time::Duration;

const WORK: &str = "quorum-fault.work";
const MESSAGES: u32 = 200;
/// Long enough that every message still waits in the tier when the broker goes down, short
/// enough that they come due soon after it is back.
const TIER_DELAY: Duration = Duration::from_secs(15);

async fn connect(url: &str) -> Connection {
    Connection::connect(url, Default::default())
        .await
        .expect("connect to the disposable broker")
}

/// Messages ready in `queue`, or `None` while the broker or the queue is not back yet.
async fn ready(url: &str, queue: &str) -> Option<u32> {
    let conn = tokio::time::timeout(
        Duration::from_secs(2),
        Connection::connect(url, Default::default()),
    )
    .await
    .ok()?
    .ok()?;
    let ch = conn.create_channel().await.ok()?;
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let q = ch
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await
        .ok();
    let _ = conn.close(200, "counted".into()).await;
    q.map(|q| q.message_count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_delay_tier_survives_a_broker_restart() {
    let Some(rabbit) = DisposableRabbit::start().await else {
        println!(
            "SKIPPED quorum_delay_tier_survives_a_broker_restart: rabbitmq-server is not installed here"
        );
        return;
    };
    let url = rabbit.amqp_url("%2f");
    let topology = Topology::new()
        .queue_type(QueueType::Quorum)
        .work_queue(WORK)
        .delay_tier(TIER_DELAY, WORK);
    let tier = icon_contracts::topology::delay_queue_for(WORK, TIER_DELAY);
    let conn = connect(&url).await;
    let declared = topology.declare(&conn).await.expect("declare");
    assert!(declared.mismatched.is_empty());

    let ch = conn.create_channel().await.expect("channel");
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let mut confirms = Vec::new();
    for i in 0..MESSAGES {
        let confirm = ch
            .basic_publish(
                "".into(),
                tier.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                format!("retry-{i}").as_bytes(),
                BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_message_id(format!("retry-{i}").into()),
            )
            .await
            .expect("publish");
        confirms.push(confirm);
    }
    let mut published = 0;
    for c in confirms {
        let c = c.await.expect("confirm");
        assert!(
            c.is_ack() && c.take_message().is_none(),
            "the tier refused a message"
        );
        published += 1;
    }
    let _ = conn.close(200, "published".into()).await;
    assert_eq!(
        ready(&url, &tier).await,
        Some(MESSAGES),
        "all wait in the tier"
    );
    assert_eq!(ready(&url, WORK).await, Some(0), "none is due yet");

    rabbit.down();
    rabbit.up().await;

    eventually(
        "every message to come out of the tier",
        TIER_DELAY + Duration::from_secs(90),
        || async { (ready(&url, &tier).await == Some(0)).then_some(()) },
    )
    .await;
    // At-least-once dead-lettering removes a message from the tier only once the work queue
    // has it; the short wait only covers the count catching up.
    let mut arrived = 0;
    for _ in 0..50 {
        arrived = ready(&url, WORK).await.unwrap_or(0);
        if arrived >= MESSAGES {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let lost = MESSAGES.saturating_sub(arrived);
    let line =
        format!("FAULT quorum-restart: published {published}, arrived {arrived}, lost {lost}");
    println!("{line}");
    icon_testkit::fleet::record(&line);
    assert_eq!(lost, 0, "{line}");
}
