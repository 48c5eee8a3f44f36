//! A notifier SIGKILL while pushes are in flight: every push of every accepted checkout still
//! reaches FCM (the simulator's), and the callbacks beside them are not lost either.

use futures_util::{stream, StreamExt};
use icon_testkit::fleet::{record, Fleet, Tally, NOTIFIER};
use icon_testkit::{eventually, Receiver, Sim, TestEnv};
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::Mutex;
use std::time::Duration;

/// Each `slow-` device takes 300ms to answer, so pushes are mid-call when the notifier dies.
const DEVICES: [(&str, &str); 3] = [
    ("slow-android-1", "android"),
    ("slow-ios-1", "ios"),
    ("web-1", "web"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn notifier_sigkill_during_pushes() {
    let env = TestEnv::create().await;
    let sim = Sim::start().await;
    let receiver = Receiver::start(vec![], None).await;
    let credentials = sim.service_account_file().display().to_string();
    let endpoint = sim.fcm_endpoint();
    let fleet = Fleet::start(
        &env.database_url,
        &env.amqp_url,
        &[
            ("ICON_FCM_CREDENTIALS", &credentials),
            ("ICON_FCM_ENDPOINT", &endpoint),
        ],
    )
    .await;
    fleet.register(&sim, "acme").await;
    for (token, platform) in DEVICES {
        fleet.register_device(token, platform).await;
    }
    let accepted = AtomicUsize::new(0);
    let tally = Mutex::new(Tally::default());
    let control = async {
        eventually("pushes in flight", Duration::from_secs(60), || async {
            (sim.fcm_messages().await.len() >= 6).then_some(())
        })
        .await;
        fleet.notifier.kill();
        fleet.notifier.restart(NOTIFIER);
    };
    let skus = [("acme", "a")];
    let fields = json!({ "callback_url": receiver.url, "push_notification": true });
    // The load of the callback kill test, with push on.
    let submit = stream::iter(0..40)
        .map(|i| {
            let fields = fields.clone();
            let (fleet, tally, accepted) = (&fleet, &tally, &accepted);
            async move {
                let id = fleet.submit_with(i, &skus, fields, tally).await;
                accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                id
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>();
    let (ids, ()) = tokio::join!(submit, control);

    let mut t = tally.into_inner().unwrap();
    t.settle(&fleet, &ids, &receiver, &[&sim], Duration::from_secs(120))
        .await;
    // Every (checkout, device) pair must have had a push FCM accepted.
    let want = ids.len() * DEVICES.len();
    let delivered = || async {
        let mut per_pair: HashMap<(String, String), usize> = HashMap::new();
        for m in sim.fcm_messages().await {
            if m["status"] == 200 {
                let id = m["message"]["data"]["checkout_id"].as_str().unwrap_or("");
                let token = m["token"].as_str().unwrap_or("");
                *per_pair
                    .entry((id.to_owned(), token.to_owned()))
                    .or_default() += 1;
            }
        }
        per_pair
    };
    eventually("every push delivered", Duration::from_secs(120), || async {
        (delivered().await.len() >= want).then_some(())
    })
    .await;
    let per_pair = delivered().await;
    let lost = ids
        .iter()
        .flat_map(|id| {
            DEVICES
                .iter()
                .map(move |(token, _)| (id.clone(), token.to_string()))
        })
        .filter(|pair| !per_pair.contains_key(pair))
        .count();
    let repeated: usize = per_pair.values().map(|n| n - 1).sum();
    let line = format!(
        "FAULT notifier SIGKILL during pushes: checkouts={} pushes_expected={want} pushes_delivered={} lost={lost} repeated_after_kill={repeated} grants={}",
        ids.len(),
        per_pair.len(),
        sim.grants().await.len()
    );
    println!("{line}");
    record(&line);
    assert_eq!(lost, 0, "{line}\n{}", fleet.logs());
    t.assert_nothing_lost("notifier SIGKILL during pushes (callbacks)", &fleet);
}
