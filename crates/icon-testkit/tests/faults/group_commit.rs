//! The gateway's group commit under SIGKILL (issue 19 §3): checkouts submitted together are
//! stored by one statement and answered after its commit, so a gateway killed with batches in
//! flight has answered 202 only for committed checkouts, and has committed nothing that a
//! client, retrying with its key, does not get back as its own.

use super::{burst, wait_count};
use icon_testkit::fleet::{Fleet, Tally, GATEWAY};
use icon_testkit::{Receiver, Sim, TestEnv};
use std::sync::atomic::AtomicUsize;
use std::sync::Mutex;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gateway_sigkill_with_batches_of_checkouts_in_flight() {
    let env = TestEnv::create().await;
    let sim = Sim::start().await;
    let receiver = Receiver::start(vec![], None).await;
    let fleet = Fleet::start(&env.database_url, &env.amqp_url, &[]).await;
    fleet.register(&sim, "acme").await;
    let accepted = AtomicUsize::new(0);
    let tally = Mutex::new(Tally::default());
    // 32 clients at once keep the gateway's batches full; the kill lands among them.
    let control = async {
        wait_count("load before the SIGKILL", &accepted, 60).await;
        fleet.gateway.kill();
        fleet.gateway.restart(GATEWAY);
        fleet.wait_ready().await;
    };
    let (ids, ()) = tokio::join!(
        burst(
            &fleet,
            240,
            32,
            &[("acme", "a")],
            &receiver.url,
            &accepted,
            &tally
        ),
        control
    );
    let mut t = tally.into_inner().unwrap();
    t.settle(&fleet, &ids, &receiver, &[&sim], Duration::from_secs(120))
        .await;
    t.assert_nothing_lost("gateway SIGKILL with batches in flight", &fleet);
    assert!(
        t.transport_errors > 0,
        "the kill should have cut requests in flight: {t:?}"
    );
    // Every 202 is a committed checkout (settled above), and nothing else was committed: a
    // checkout stored by a batch whose answer the kill cut is the one its client's retry, with
    // the same key, got back.
    let stored = env.count("checkouts").await;
    assert_eq!(
        stored as usize,
        ids.len(),
        "checkouts stored vs. checkouts answered 202"
    );
}
