//! Converting existing classic queues to quorum with `icon_broker::migrate`, against the real
//! broker: every message survives (bodies and headers), the bindings come back, a queue with a
//! consumer is refused, and an interrupted run is finished by the next one.

mod support;

use icon_broker::lapin::options::{
    BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use icon_broker::lapin::types::{AMQPValue, FieldTable};
use icon_broker::lapin::BasicProperties;
use icon_broker::migrate::{holding_queue, migrate, MigrateError};
use icon_broker::{QueueType, Topology, DEATH_REASON_HEADER};
use std::collections::BTreeSet;
use std::time::Duration;
use support::Vhost;

fn topology(queue_type: QueueType) -> Topology {
    Topology::new()
        .queue_type(queue_type)
        .work_queue("work")
        .plain_queue("work.parked")
        .delay_tier(Duration::from_secs(1), "work")
        .delay_tier(Duration::from_secs(3600), "work")
}

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// Takes every message of `queue`: (body, death reason header).
async fn drain(vhost: &Vhost, queue: &str) -> Vec<(String, Option<String>)> {
    let conn = vhost.connect().await;
    let ch = conn.create_channel().await.unwrap();
    let mut out = vec![];
    while let Some(m) = ch
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        let reason = m
            .delivery
            .properties
            .headers()
            .as_ref()
            .and_then(|h| h.inner().get(DEATH_REASON_HEADER).cloned())
            .map(|v| match v {
                AMQPValue::LongString(s) => s.to_string(),
                other => format!("{other:?}"),
            });
        out.push((
            String::from_utf8_lossy(&m.delivery.data).into_owned(),
            reason,
        ));
    }
    let _ = conn.close(200, "done".into()).await;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classic_to_quorum_loses_nothing_and_restores_bindings() {
    let vhost = Vhost::create();
    let conn = vhost.connect().await;
    topology(QueueType::Classic).declare(&conn).await.unwrap();
    vhost.publish("work", &ids("work", 20), None).await;
    vhost
        .publish(
            "work.dead",
            &ids("dead", 5),
            Some((DEATH_REASON_HEADER, "unparseable")),
        )
        .await;
    vhost.publish("work.parked", &ids("parked", 3), None).await;
    vhost
        .publish("work.delay.3600000ms", &ids("later", 10), None)
        .await;
    // These expire during or after the migration: they must end up in `work` either way.
    vhost
        .publish("work.delay.1000ms", &ids("soon", 10), None)
        .await;

    let report = migrate(&conn, &topology(QueueType::Quorum))
        .await
        .expect("migrate");
    let converted: BTreeSet<&str> = report.converted.iter().map(|c| c.queue.as_str()).collect();
    assert_eq!(
        converted,
        BTreeSet::from([
            "work",
            "work.dead",
            "work.parked",
            "work.delay.1000ms",
            "work.delay.3600000ms"
        ]),
        "{report:?}"
    );
    assert!(report
        .converted
        .iter()
        .all(|c| c.from == QueueType::Classic && c.to == QueueType::Quorum));
    assert!(
        report.to_string().contains("work: classic -> quorum"),
        "{report}"
    );
    for q in vhost.queues() {
        assert_eq!(q.kind, "quorum", "{q:?}");
        assert!(
            !q.name.ends_with(".migrating"),
            "holding queue left behind: {q:?}"
        );
    }
    // The 1s tier's messages expire into `work` (at least once, now from a quorum tier).
    vhost
        .wait_for_messages("work", 30, Duration::from_secs(20))
        .await;

    // The binding the delete removed is back: publishing through the exchange routes.
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let confirm = ch
        .basic_publish(
            "icon.events".into(),
            "work".into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            b"routed",
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(
        confirm.take_message().is_none(),
        "icon.events -> work binding missing"
    );

    let work: BTreeSet<String> = drain(&vhost, "work")
        .await
        .into_iter()
        .map(|(b, _)| b)
        .collect();
    let mut expected: BTreeSet<String> =
        ids("work", 20).into_iter().chain(ids("soon", 10)).collect();
    expected.insert("routed".into());
    assert_eq!(work, expected);
    let dead = drain(&vhost, "work.dead").await;
    assert_eq!(dead.len(), 5);
    assert!(
        dead.iter()
            .all(|(_, r)| r.as_deref() == Some("unparseable")),
        "{dead:?}"
    );
    assert_eq!(drain(&vhost, "work.parked").await.len(), 3);
    assert_eq!(drain(&vhost, "work.delay.3600000ms").await.len(), 10);

    // Nothing left to do the second time.
    let again = migrate(&conn, &topology(QueueType::Quorum)).await.unwrap();
    assert!(
        again.converted.is_empty() && again.messages_moved == 0,
        "{again:?}"
    );
    let _ = conn.close(200, "done".into()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_with_a_consumer_is_left_alone() {
    let vhost = Vhost::create();
    let conn = vhost.connect().await;
    topology(QueueType::Classic).declare(&conn).await.unwrap();
    vhost.publish("work", &ids("work", 3), None).await;
    let consumer_conn = vhost.connect().await;
    let ch = consumer_conn.create_channel().await.unwrap();
    let _consumer = ch
        .basic_consume(
            "work".into(),
            "still-running".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();

    let err = migrate(&conn, &topology(QueueType::Quorum))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, MigrateError::InUse { queue, consumers: 1 } if queue == "work"),
        "{err:?}"
    );
    assert!(err.to_string().contains("stop the services"), "{err}");
    // Untouched: still classic, and no holding queue was made.
    assert_eq!(vhost.queue("work").unwrap().kind, "classic");
    assert!(vhost.queue(&holding_queue("work")).is_none());

    // Once the consumer is gone (its unacked messages return), the migration goes through.
    let _ = consumer_conn.close(200, "stopped".into()).await;
    migrate(&conn, &topology(QueueType::Quorum))
        .await
        .expect("migrate");
    assert_eq!(vhost.queue("work").unwrap().kind, "quorum");
    assert_eq!(vhost.messages("work").await, 3);
    let _ = conn.close(200, "done".into()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_run_is_finished_and_foreign_queues_are_left_alone() {
    let vhost = Vhost::create();
    let conn = vhost.connect().await;
    // As a run interrupted after the delete and re-declaration would leave it: the messages
    // still wait in the holding queue.
    topology(QueueType::Quorum).declare(&conn).await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    ch.queue_declare(
        holding_queue("work").as_str().into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        args,
    )
    .await
    .unwrap();
    vhost
        .publish(&holding_queue("work"), &ids("held", 4), None)
        .await;
    // A queue someone declared by hand with other arguments.
    let mut foreign = FieldTable::default();
    foreign.insert("x-max-length".into(), AMQPValue::LongLongInt(100));
    ch.queue_declare(
        "other".into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        foreign,
    )
    .await
    .unwrap();
    vhost.publish("other", &ids("other", 2), None).await;

    let with_other = topology(QueueType::Quorum).plain_queue("other");
    let report = migrate(&conn, &with_other).await.expect("migrate");
    assert!(report.converted.is_empty(), "{report:?}");
    assert_eq!(report.messages_moved, 4);
    assert_eq!(report.unknown, vec!["other".to_owned()]);
    assert!(vhost.queue(&holding_queue("work")).is_none());
    assert_eq!(vhost.messages("work").await, 4);
    assert_eq!(vhost.queue("other").unwrap().kind, "classic");
    assert_eq!(vhost.messages("other").await, 2);
    let _ = conn.close(200, "done".into()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_to_classic_for_a_broker_that_needs_it() {
    let vhost = Vhost::create();
    let conn = vhost.connect().await;
    topology(QueueType::Quorum).declare(&conn).await.unwrap();
    vhost.publish("work", &ids("work", 7), None).await;
    vhost
        .publish("work.delay.3600000ms", &ids("later", 2), None)
        .await;

    let report = migrate(&conn, &topology(QueueType::Classic))
        .await
        .expect("migrate");
    assert_eq!(report.converted.len(), 5, "{report:?}");
    assert_eq!(report.messages_moved, 9);
    // The connection survived: quorum queues were deleted without conditional flags.
    assert!(conn.status().connected());
    for q in vhost.queues() {
        assert_eq!(q.kind, "classic", "{q:?}");
    }
    assert_eq!(vhost.messages("work").await, 7);
    assert_eq!(vhost.messages("work.delay.3600000ms").await, 2);
    let _ = conn.close(200, "done".into()).await;
}
