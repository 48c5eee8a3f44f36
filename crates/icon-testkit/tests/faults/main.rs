//! The fault suite: ICON's promise under crashes, restarts and outages, asserted from outside
//! (the API, the callback receiver, the retailer's request log). Each test prints a `FAULT`
//! line: accepted, completed, callbacks, duplicates, lost (must be 0) and retailer orders placed
//! twice (must be 0).
//!
//! The services run as processes (`target/debug/icon-*`). Tests that stop RabbitMQ or
//! PostgreSQL start a disposable node or cluster of their own and never touch the shared ones.
//! `scale_out` runs several replicas of each consumer as processes too, without a fault.

use futures_util::{stream, StreamExt};
use icon_contracts::topology::PARKED;
use icon_testkit::disposable::{DisposablePostgres, DisposableRabbit};
use icon_testkit::fleet::{Fleet, Tally, GATEWAY, NOTIFIER, WORKER};
use icon_testkit::{eventually, Receiver, Sim, TestEnv};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

mod cancellations;
mod delivery_limit;
mod group_commit;
mod order_events;
mod push;
mod quorum;
mod scale_out;
mod unroutable;

/// Submits checkouts `0..n` with `concurrency` at once; counts acceptances in `accepted`.
async fn burst(
    fleet: &Fleet,
    n: usize,
    concurrency: usize,
    skus: &[(&str, &str)],
    callback: &str,
    accepted: &AtomicUsize,
    tally: &Mutex<Tally>,
) -> Vec<String> {
    stream::iter(0..n)
        .map(|i| async move {
            let id = fleet.submit(i, skus, callback, tally).await;
            accepted.fetch_add(1, Ordering::SeqCst);
            id
        })
        .buffer_unordered(concurrency)
        .collect()
        .await
}

async fn wait_count(what: &str, counter: &AtomicUsize, at_least: usize) {
    eventually(what, Duration::from_secs(120), || async {
        (counter.load(Ordering::SeqCst) >= at_least).then_some(())
    })
    .await
}

/// Waits until the gateway's `/readyz` says the database is down.
async fn readyz_says_database_down(fleet: &Fleet) {
    eventually(
        "/readyz to say the database is down",
        Duration::from_secs(30),
        || async {
            match fleet
                .api
                .try_send(http::Method::GET, "/readyz", None, &[], None)
                .await
            {
                Ok(r) if r.status == 503 && r.json["database"] == "down" => Some(()),
                _ => None,
            }
        },
    )
    .await
}

async fn two_retailers(fleet: &Fleet, sim: &Sim) {
    fleet.register(sim, "acme").await;
    fleet.register(sim, "globex").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn worker_sigkill_while_retailer_calls_are_in_flight() {
    let env = TestEnv::create().await;
    let sim = Sim::start().await; // slow- SKUs take 300ms
    let receiver = Receiver::start(vec![], None).await;
    let fleet = Fleet::start(&env.database_url, &env.amqp_url, &[]).await;
    two_retailers(&fleet, &sim).await;
    let accepted = AtomicUsize::new(0);
    let tally = Mutex::new(Tally::default());
    let control = async {
        // Orders are answered after 300ms: with 10 requests seen, others are mid-call.
        eventually(
            "retailer calls in flight",
            Duration::from_secs(30),
            || async { (sim.orders().await.len() >= 10).then_some(()) },
        )
        .await;
        fleet.worker.kill();
        fleet.worker.restart(WORKER);
    };
    let skus = [("acme", "slow-a"), ("globex", "slow-b")];
    let (ids, ()) = tokio::join!(
        burst(&fleet, 60, 10, &skus, &receiver.url, &accepted, &tally),
        control
    );
    let mut t = tally.into_inner().unwrap();
    t.settle(&fleet, &ids, &receiver, &[&sim], Duration::from_secs(120))
        .await;
    t.assert_nothing_lost("worker SIGKILL", &fleet);
    assert!(
        t.resent_orders > 0,
        "the kill should have cut calls in flight: {t:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn notifier_sigkill_while_callbacks_are_in_flight() {
    let env = TestEnv::create().await;
    let sim = Sim::start().await;
    // Each callback takes 200ms to answer, so some are in flight when the notifier dies.
    let receiver = Receiver::start_on(0, vec![], None, Duration::from_millis(200)).await;
    let fleet = Fleet::start(&env.database_url, &env.amqp_url, &[]).await;
    two_retailers(&fleet, &sim).await;
    let accepted = AtomicUsize::new(0);
    let tally = Mutex::new(Tally::default());
    let control = async {
        receiver.wait_for(5, Duration::from_secs(30)).await;
        fleet.notifier.kill();
        fleet.notifier.restart(NOTIFIER);
    };
    let skus = [("acme", "a"), ("globex", "b")];
    let (ids, ()) = tokio::join!(
        burst(&fleet, 60, 10, &skus, &receiver.url, &accepted, &tally),
        control
    );
    let mut t = tally.into_inner().unwrap();
    t.settle(&fleet, &ids, &receiver, &[&sim], Duration::from_secs(120))
        .await;
    t.assert_nothing_lost("notifier SIGKILL", &fleet);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rabbitmq_stopped_during_a_burst() {
    let Some(rabbit) = DisposableRabbit::start().await else {
        println!("SKIPPED rabbitmq_stopped_during_a_burst: rabbitmq-server is not installed here");
        return;
    };
    let env = TestEnv::create().await;
    let sim = Sim::start().await;
    let receiver = Receiver::start(vec![], None).await;
    let fleet = Fleet::start(&env.database_url, &rabbit.amqp_url("%2f"), &[]).await;
    two_retailers(&fleet, &sim).await;
    let accepted = AtomicUsize::new(0);
    let tally = Mutex::new(Tally::default());
    let accepted_while_down = AtomicUsize::new(0);
    let control = async {
        wait_count("50 accepted", &accepted, 50).await;
        rabbit.down();
        eventually(
            "/readyz to say the broker is down",
            Duration::from_secs(30),
            || async {
                match fleet
                    .api
                    .try_send(http::Method::GET, "/readyz", None, &[], None)
                    .await
                {
                    Ok(r) if r.status == 503 && r.json["broker"] == "down" => Some(()),
                    _ => None,
                }
            },
        )
        .await;
        let at_down = accepted.load(Ordering::SeqCst);
        wait_count(
            "20 more accepted while the broker is down",
            &accepted,
            at_down + 20,
        )
        .await;
        accepted_while_down.store(accepted.load(Ordering::SeqCst) - at_down, Ordering::SeqCst);
        rabbit.up().await;
    };
    let (ids, ()) = tokio::join!(
        burst(
            &fleet,
            300,
            20,
            &[("acme", "a"), ("globex", "b")],
            &receiver.url,
            &accepted,
            &tally
        ),
        control
    );
    let mut t = tally.into_inner().unwrap();
    t.settle(&fleet, &ids, &receiver, &[&sim], Duration::from_secs(180))
        .await;
    let line = format!(
        "FAULT RabbitMQ stopped: checkouts accepted while the broker was down={}",
        accepted_while_down.load(Ordering::SeqCst)
    );
    println!("{line}");
    icon_testkit::fleet::record(&line);
    t.assert_nothing_lost("RabbitMQ stopped and restarted", &fleet);
    assert!(accepted_while_down.load(Ordering::SeqCst) >= 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_stopped_during_a_burst() {
    let Some(pg) = DisposablePostgres::start() else {
        println!("SKIPPED postgres_stopped_during_a_burst: PostgreSQL server binaries are not installed here");
        return;
    };
    let env = TestEnv::create().await; // for its vhost
    let sim = Sim::start().await;
    let receiver = Receiver::start(vec![], None).await;
    let fleet = Fleet::start(&pg.url("icon"), &env.amqp_url, &[]).await;
    two_retailers(&fleet, &sim).await;
    let accepted = AtomicUsize::new(0);
    let tally = Mutex::new(Tally::default());
    let control = async {
        wait_count("50 accepted", &accepted, 50).await;
        pg.down();
        readyz_says_database_down(&fleet).await;
        eventually(
            "submissions to be refused with 503",
            Duration::from_secs(30),
            || async { (tally.lock().unwrap().unavailable >= 5).then_some(()) },
        )
        .await;
        pg.up();
    };
    let (ids, ()) = tokio::join!(
        burst(
            &fleet,
            300,
            20,
            &[("acme", "a"), ("globex", "b")],
            &receiver.url,
            &accepted,
            &tally
        ),
        control
    );
    let mut t = tally.into_inner().unwrap();
    t.settle(&fleet, &ids, &receiver, &[&sim], Duration::from_secs(180))
        .await;
    t.assert_nothing_lost("PostgreSQL stopped and restarted", &fleet);
    assert!(
        t.unavailable > 0 && t.unavailable == t.unavailable_with_retry_after,
        "{t:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn receiver_down_for_several_tiers_then_back_or_never() {
    let env = TestEnv::create().await;
    let sim = Sim::start().await;
    let fleet = Fleet::start(
        &env.database_url,
        &env.amqp_url,
        &[
            ("ICON_CALLBACK_RETRY_SCHEDULE", "100ms,200ms,400ms"),
            ("ICON_CALLBACK_GIVE_UP_AFTER", "3s"),
        ],
    )
    .await;
    two_retailers(&fleet, &sim).await;
    // A port with nobody listening: connection refused until the receiver comes up there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/hook");
    let tally = Mutex::new(Tally::default());
    let mut ids = vec![];
    for i in 0..5 {
        ids.push(fleet.submit(i, &[("acme", "a")], &url, &tally).await);
    }
    // Down for at least three attempts (three tiers) each.
    for id in &ids {
        eventually("three failed attempts", Duration::from_secs(30), || async {
            fleet
                .checkout(id)
                .await
                .filter(|c| c["callback"]["attempts"].as_i64().unwrap_or(0) >= 3)
        })
        .await;
    }
    let receiver = Receiver::start_on(port, vec![], None, Duration::ZERO).await;
    let mut t = tally.into_inner().unwrap();
    t.settle(&fleet, &ids, &receiver, &[&sim], Duration::from_secs(30))
        .await;
    t.assert_nothing_lost("receiver down for several tiers, then back", &fleet);
    drop(receiver);

    // One that never comes back: parked after ICON_CALLBACK_GIVE_UP_AFTER, then redelivered.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/hook");
    let tally = Mutex::new(Tally::default());
    let id = fleet.submit(9, &[("globex", "b")], &url, &tally).await;
    let mut t = tally.into_inner().unwrap();
    let failed = eventually(
        "the callback to be given up",
        Duration::from_secs(30),
        || async {
            fleet
                .checkout(&id)
                .await
                .filter(|c| c["callback"]["state"] == "failed")
        },
    )
    .await;
    let attempts_before = failed["callback"]["attempts"].as_i64().unwrap();
    let parked = env.drain_queue(PARKED).await;
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert_eq!(parked[0]["data"]["checkout_id"], id.as_str());
    let receiver = Receiver::start_on(port, vec![], None, Duration::ZERO).await;
    let token = icon_gateway::auth::JwtKeys::new(icon_testkit::JWT_SECRET)
        .mint("shopper", false, Duration::from_secs(60))
        .unwrap();
    let r = fleet
        .api
        .post(
            &format!("/cart/checkout/{id}/callback/redeliver"),
            Some(&token),
            &serde_json::json!({}),
        )
        .await;
    assert_eq!(r.status, 202, "{r:?}");
    t.settle(
        &fleet,
        std::slice::from_ref(&id),
        &receiver,
        &[&sim],
        Duration::from_secs(30),
    )
    .await;
    t.assert_nothing_lost("receiver never back: parked, then redelivered", &fleet);
    let after = fleet.checkout(&id).await.unwrap();
    assert_eq!(after["callback"]["state"], "delivered");
    assert_eq!(
        after["callback"]["attempts"].as_i64().unwrap(),
        attempts_before + 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_each_service_under_load() {
    let env = TestEnv::create().await;
    let sim = Sim::start().await;
    let receiver = Receiver::start(vec![], None).await;
    let fleet = Fleet::start(&env.database_url, &env.amqp_url, &[]).await;
    two_retailers(&fleet, &sim).await;
    let accepted = AtomicUsize::new(0);
    let tally = Mutex::new(Tally::default());

    // While a burst runs, each service in turn gets SIGTERM, must exit 0, and is started again.
    let control = async {
        for (i, (service, binary)) in [
            (&fleet.worker, WORKER),
            (&fleet.notifier, NOTIFIER),
            (&fleet.gateway, GATEWAY),
        ]
        .into_iter()
        .enumerate()
        {
            wait_count("load before the next SIGTERM", &accepted, 20 * (i + 1)).await;
            let status = tokio::task::block_in_place(|| service.terminate(Duration::from_secs(30)))
                .unwrap_or_else(|| panic!("{} did not exit within 30 s of SIGTERM", service.name));
            println!("{}: SIGTERM under load -> {status}", service.name);
            assert!(
                status.success(),
                "{} exited with {status} after SIGTERM",
                service.name
            );
            service.restart(binary);
        }
        fleet.wait_ready().await;
    };
    let (ids, ()) = tokio::join!(
        burst(
            &fleet,
            120,
            10,
            &[("acme", "slow-a"), ("globex", "b")],
            &receiver.url,
            &accepted,
            &tally
        ),
        control
    );
    let mut t = tally.into_inner().unwrap();
    t.settle(&fleet, &ids, &receiver, &[&sim], Duration::from_secs(120))
        .await;
    t.assert_nothing_lost("SIGTERM each service under load", &fleet);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bad_setting_stops_each_binary_with_one_line_naming_it() {
    use icon_testkit::process::binary;
    for (bin, var, value) in [
        (GATEWAY, "ICON_HTTP_ADDR", "localhost"),
        (GATEWAY, "ICON_JWT_SECRET", ""),
        (WORKER, "ICON_RETAILER_TIMEOUT", "ten"),
        (NOTIFIER, "ICON_CALLBACK_RETRY_SCHEDULE", "10s,soon"),
        (NOTIFIER, "ICON_CALLBACK_ALLOW_NETWORKS", "10.0.0.0/33"),
        (GATEWAY, "ICON_SECRETS_KEY", "not-32-bytes"),
        (NOTIFIER, "ICON_SECRETS_KEY", ""),
        ("icon-retailer-sim", "ICON_SIM_ADDR", "nowhere"),
    ] {
        let out = std::process::Command::new(binary(bin))
            .env_clear()
            .env("ICON_JWT_SECRET", icon_testkit::JWT_SECRET)
            .env("ICON_SECRETS_KEY", icon_testkit::SECRETS_KEY)
            .env(var, value)
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bin} {var}={value}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(
            stderr.contains(var),
            "{bin}: the line names {var}: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn services_wait_for_postgres_and_rabbitmq_at_start() {
    let (Some(pg), Some(rabbit)) = (DisposablePostgres::start(), DisposableRabbit::start().await)
    else {
        println!("SKIPPED services_wait_for_postgres_and_rabbitmq_at_start: no local PostgreSQL/RabbitMQ server binaries");
        return;
    };
    pg.down();
    rabbit.down();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let probe_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = std::env::temp_dir().join(format!("icon-wait-{port}"));
    std::fs::create_dir_all(&dir).unwrap();
    let env: std::collections::HashMap<String, String> = [
        ("ICON_DATABASE_URL", pg.url("icon")),
        ("ICON_AMQP_URL", rabbit.amqp_url("%2f")),
        ("ICON_HTTP_ADDR", format!("127.0.0.1:{port}")),
        ("ICON_JWT_SECRET", icon_testkit::JWT_SECRET.to_owned()),
        ("ICON_SECRETS_KEY", icon_testkit::SECRETS_KEY.to_owned()),
        ("ICON_PROBE_ADDR", format!("127.0.0.1:{probe_port}")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    use icon_testkit::process::Service;
    let gateway = Service::start("gateway", GATEWAY, &env, &dir);
    let worker = Service::start("worker", WORKER, &env, &dir);
    for s in [&gateway, &worker] {
        s.wait_for_log(
            "PostgreSQL is not reachable yet",
            0,
            Duration::from_secs(20),
        )
        .await;
    }
    pg.up();
    for s in [&gateway, &worker] {
        s.wait_for_log("RabbitMQ is not reachable yet", 0, Duration::from_secs(30))
            .await;
    }
    rabbit.up().await;
    worker
        .wait_for_log("consuming", 0, Duration::from_secs(30))
        .await;
    let api = icon_testkit::Api::new(&format!("http://127.0.0.1:{port}"));
    eventually(
        "the gateway to be ready",
        Duration::from_secs(30),
        || async {
            match api
                .try_send(http::Method::GET, "/readyz", None, &[], None)
                .await
            {
                Ok(r) if r.status == 200 => Some(()),
                _ => None,
            }
        },
    )
    .await;
    drop((gateway, worker));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `icon-gateway migrate` (a deployment's migrations Job) applies every migration with nothing
/// but `ICON_DATABASE_URL`, exits 0, and a second run finds nothing to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_migrate_applies_the_schema_and_exits() {
    use icon_testkit::process::binary;
    let env = TestEnv::create().await;
    for run in 0..2 {
        let out = std::process::Command::new(binary(GATEWAY))
            .arg("migrate")
            .env_clear()
            .env("ICON_DATABASE_URL", &env.database_url)
            .output()
            .expect("run");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("schema is up to date"),
            "run {run}: {out:?}"
        );
    }
    let (db, conn) = tokio_postgres::connect(&env.database_url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    let applied: i64 = db
        .query_one("SELECT count(*) FROM schema_migrations", &[])
        .await
        .expect("migrations")
        .get(0);
    let files = std::fs::read_dir(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../icon-store/migrations"
    ))
    .expect("migrations folder")
    .count() as i64;
    assert_eq!(applied, files, "every migration applied once");
}
