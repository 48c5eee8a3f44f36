//! `LazyPublisher` shares one connection between concurrent publishes: a message that fails on
//! its own (unroutable) must not take the connection down under the others, and a connection
//! that really broke is replaced.

mod support;

use futures_util::future::join_all;
use icon_broker::{LazyPublisher, OutgoingMessage, PublishError, Topology};
use std::time::Duration;
use support::Vhost;

fn message(routing_key: &str, id: usize) -> OutgoingMessage {
    OutgoingMessage {
        exchange: String::new(),
        routing_key: routing_key.into(),
        message_id: format!("m-{id}"),
        message_type: "test".into(),
        checkout_id: String::new(),
        body: format!("{id}").into_bytes(),
        death_reason: None,
        traceparent: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unroutable_message_leaves_the_shared_connection_alone() {
    let vhost = Vhost::create();
    let publisher = LazyPublisher::new(&vhost.url, "lazy-test", Topology::new().work_queue("work"));
    publisher
        .publish(message("work", 0))
        .await
        .expect("first publish");
    assert_eq!(publisher.connections_opened(), 1);

    // 200 good publishes in flight with one unroutable among them.
    let results = join_all((1..=201).map(|i| {
        let publisher = &publisher;
        async move {
            let key = if i == 100 { "nowhere" } else { "work" };
            (i, publisher.publish(message(key, i)).await)
        }
    }))
    .await;
    for (i, r) in &results {
        if *i == 100 {
            assert!(matches!(r, Err(PublishError::Unroutable(_))), "{r:?}");
        } else {
            assert!(r.is_ok(), "good publish {i} failed: {r:?}");
        }
    }
    publisher
        .publish(message("work", 202))
        .await
        .expect("after");
    assert_eq!(
        publisher.connections_opened(),
        1,
        "the connection was replaced"
    );
    assert_eq!(vhost.messages("work").await, 202);
    publisher.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_connection_is_replaced() {
    let vhost = Vhost::create();
    let publisher = LazyPublisher::new(&vhost.url, "lazy-test", Topology::new().work_queue("work"));
    publisher
        .publish(message("work", 0))
        .await
        .expect("first publish");
    vhost.close_connections();
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut i = 1;
    while let Err(e) = publisher.publish(message("work", i)).await {
        assert!(e.is_broken_connection(), "{e}");
        assert!(
            tokio::time::Instant::now() < until,
            "never reconnected: {e}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        i += 1;
    }
    assert_eq!(publisher.connections_opened(), 2);
    publisher.close().await;
}

/// Issue 16 §3: a queue of the publisher's topology deleted under it (an operator tidying
/// queues) makes the next message unroutable; the publisher declares its topology again, once,
/// and the message goes through, on the same connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_deleted_under_the_publisher_is_declared_again() {
    use icon_broker::lapin::options::QueueDeleteOptions;
    let vhost = Vhost::create();
    let tier = Duration::from_secs(3600);
    let tier_name = icon_contracts::topology::delay_queue_for("work", tier);
    let topology = Topology::new().work_queue("work").delay_tier(tier, "work");
    let publisher = LazyPublisher::new(&vhost.url, "lazy-test", topology);
    publisher
        .publish(message(&tier_name, 0))
        .await
        .expect("first publish");
    let conn = vhost.connect().await;
    let ch = conn.create_channel().await.expect("channel");
    ch.queue_delete(tier_name.as_str().into(), QueueDeleteOptions::default())
        .await
        .expect("delete the tier");
    assert!(vhost.queue(&tier_name).is_none());

    publisher
        .publish(message(&tier_name, 1))
        .await
        .expect("published after declaring the tier again");
    assert_eq!(vhost.messages(&tier_name).await, 1);
    assert_eq!(publisher.connections_opened(), 1, "the connection was kept");
    // A key no declaration covers stays unroutable, and says so.
    let r = publisher.publish(message("nowhere", 2)).await;
    assert!(matches!(r, Err(PublishError::Unroutable(_))), "{r:?}");
    publisher.close().await;
}
