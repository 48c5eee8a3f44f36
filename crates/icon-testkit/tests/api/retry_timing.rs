//! Retries are made when the schedule says (issue 16, item 8): each within 5% or 200 ms of its
//! time, in one hop of a delay tier when the wait is one of the schedule's own delays.

use icon_testkit::{Options, Receiver, Scripted, Sim, TestApp};
use std::time::Duration;

/// Added to the promised slack (5% or 200 ms) for what a test machine running other tests at
/// once adds between one attempt and the next (recording the attempt, publishing the retry):
/// quiet, the gaps are 3.07, 7.01 and 7.01 s; before the fix one was 11.3 s, and a 5 s
/// `Retry-After` came at 6 s. Which tier a wait takes is pinned exactly by the unit tests of
/// `icon_runtime::tiers`.
const LOADED_MACHINE: Duration = Duration::from_millis(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_retries_follow_the_schedule_without_extra_hops() {
    // Before the fix the remaining wait, measured a moment after the retry time was set, always
    // picked the tier below: the gaps were 3.0, 11.3 and 9.1 s instead of 3, 7 and 7.
    let app = TestApp::spawn_with(Options {
        retry_schedule: "3s,7s".into(),
        ..Options::default()
    })
    .await;
    let sim = Sim::start().await;
    app.register_retailer("acme", &sim.order_url("acme")).await;
    let receiver = Receiver::start(vec![], Some(Scripted::status(500))).await;
    let cart = app.cart_with("alice", &[("acme", "dress")]).await;
    let r = app.checkout("alice", cart, Some(&receiver.url)).await;
    assert_eq!(r.status, 202, "{r:?}");
    let attempts = receiver.wait_for(4, Duration::from_secs(40)).await;
    let gaps: Vec<Duration> = attempts.windows(2).map(|w| w[1].at - w[0].at).collect();
    for (gap, scheduled) in gaps.iter().zip([3.0, 7.0, 7.0]) {
        let scheduled = Duration::from_secs_f64(scheduled);
        let allowed = icon_runtime::tiers::slack(scheduled) + LOADED_MACHINE;
        let off = gap.abs_diff(scheduled);
        assert!(
            off <= allowed,
            "gap {gap:?} for a scheduled {scheduled:?} (allowed ±{allowed:?}); all gaps {gaps:?}"
        );
    }
    println!("callback retry gaps with ICON_CALLBACK_RETRY_SCHEDULE=3s,7s: {gaps:?}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_between_the_tiers_is_kept_to_within_the_slack() {
    // `Retry-After: 5` with tiers of 3 s and 7 s: the 3 s tier, then 2 s that no tier fits.
    // Before, those 2 s took the 3 s tier again and the retry came a second late (6 s).
    let app = TestApp::spawn_with(Options {
        retry_schedule: "3s,7s".into(),
        ..Options::default()
    })
    .await;
    let sim = Sim::start().await;
    app.register_retailer("acme", &sim.order_url("acme")).await;
    let busy = Scripted {
        retry_after: Some(5),
        ..Scripted::status(503)
    };
    let receiver = Receiver::start(vec![busy], Some(Scripted::status(200))).await;
    let cart = app.cart_with("alice", &[("acme", "dress")]).await;
    let r = app.checkout("alice", cart, Some(&receiver.url)).await;
    assert_eq!(r.status, 202, "{r:?}");
    let attempts = receiver.wait_for(2, Duration::from_secs(30)).await;
    let gap = attempts[1].at - attempts[0].at;
    let scheduled = Duration::from_secs(5);
    let allowed = icon_runtime::tiers::slack(scheduled) + LOADED_MACHINE;
    assert!(
        gap.abs_diff(scheduled) <= allowed,
        "the retry asked for in 5 s came after {gap:?} (allowed ±{allowed:?})"
    );
    println!("callback retry after Retry-After: 5 with tiers 3s,7s: {gap:?}");
    app.stop().await;
}
