//! Issue 16 §9: ICON's behaviour must not depend on the broker's default delivery limit.
//! RabbitMQ 4.x dead-letters a quorum queue's message after 20 deliveries unless told
//! otherwise; a consumer that requeued every 500 ms through a database outage would push its
//! work to `.dead` in about 10 s. This broker (3.10) has no default, so the test gives it that
//! limit as a policy (RabbitMQ applies the lower of a policy's and a queue's own limit), stops
//! PostgreSQL for longer than 20 fixed-pause requeues take, and counts what reached `.dead`.

use crate::{burst, readyz_says_database_down, two_retailers};
use icon_contracts::topology::{dead_letter_queue, CHECKOUT_FINISHED, CHECKOUT_REQUESTED};
use icon_testkit::disposable::DisposablePostgres;
use icon_testkit::fleet::{Fleet, Tally};
use icon_testkit::{Receiver, Sim, TestEnv};
use std::sync::atomic::AtomicUsize;
use std::sync::Mutex;
use std::time::Duration;

/// Longer than 20 deliveries at the old fixed pause (10 s), four times over.
const OUTAGE: Duration = Duration::from_secs(40);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_long_database_outage_dead_letters_nothing_under_rabbitmq_4s_delivery_limit() {
    let Some(pg) = DisposablePostgres::start() else {
        println!("SKIPPED a_long_database_outage_dead_letters_nothing_under_rabbitmq_4s_delivery_limit: PostgreSQL server binaries are not installed here");
        return;
    };
    let env = TestEnv::create().await;
    env.set_policy(
        "rabbitmq-4-default-delivery-limit",
        "^checkout\\.",
        r#"{"delivery-limit":20}"#,
        "queues",
    )
    .await;
    // Orders take 2 s, so checkouts are mid-pass or queued when PostgreSQL stops.
    let sim = Sim::start_with_slow_delay(Duration::from_secs(2)).await;
    let receiver = Receiver::start(vec![], None).await;
    let fleet = Fleet::start(&pg.url("icon"), &env.amqp_url, &[]).await;
    two_retailers(&fleet, &sim).await;
    let accepted = AtomicUsize::new(0);
    let tally = Mutex::new(Tally::default());
    let ids = burst(
        &fleet,
        40,
        10,
        &[("acme", "slow-a"), ("globex", "b")],
        &receiver.url,
        &accepted,
        &tally,
    )
    .await;
    pg.down();
    readyz_says_database_down(&fleet).await;
    tokio::time::sleep(OUTAGE).await;
    pg.up();
    let mut t = tally.into_inner().unwrap();
    t.settle(&fleet, &ids, &receiver, &[&sim], Duration::from_secs(180))
        .await;
    let mut dead = 0;
    for queue in [CHECKOUT_REQUESTED, CHECKOUT_FINISHED] {
        dead += env.queue_len(&dead_letter_queue(queue)).await;
    }
    let line = format!(
        "FAULT PostgreSQL down {}s under a delivery limit of 20: dead-lettered={dead}",
        OUTAGE.as_secs()
    );
    println!("{line}");
    icon_testkit::fleet::record(&line);
    t.assert_nothing_lost("PostgreSQL down under a delivery limit of 20", &fleet);
    assert_eq!(dead, 0, "{line}\n{}", fleet.logs());
}
