//! The stages of one real checkout (`testdata/one_checkout.json`: its trace through the
//! gateway, the worker and the notifier as ICON exported it), with this tool's two marks set
//! around it: the POST sent 0.3 ms before the gateway's `request` span starts, the callback
//! received 2 ms after the notifier's `callback` span starts.

use super::*;
use crate::stages::otlp;

const TRACE: &str = "b1dd716da9877b3a5c74e14842efd9f3";
const CHECKOUT: &str = "01a2426c-02e8-70c7-8974-2996aaa686a1";
/// The gateway's `request` span start and the notifier's `callback` span start, in the fixture.
const REQUEST_START: u64 = 1_796_410_704_616_790_346;
const CALLBACK_START: u64 = 1_796_410_704_625_619_240;

fn at(ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns)
}

fn fixture() -> Vec<Span> {
    otlp::parse(include_bytes!("../testdata/one_checkout.json")).unwrap()
}

fn traced(trace: &str, checkout: &str) -> Traced {
    Traced {
        checkout_id: checkout.into(),
        trace_id: trace.into(),
        sent_at: at(REQUEST_START - 300_000),
        answered_at: at(REQUEST_START + 2_500_000),
    }
}

fn callback(checkout: &str, ns: u64) -> CallbackRecord {
    CallbackRecord {
        received: Duration::ZERO,
        received_at: at(ns),
        checkout_id: Some(checkout.into()),
        webhook_id: Some("w".into()),
    }
}

#[test]
fn every_stage_of_a_real_checkout_from_its_spans() {
    let spans = fixture();
    let trace: Vec<&Span> = spans.iter().filter(|s| s.trace_id == TRACE).collect();
    let m = marks(
        &traced(TRACE, CHECKOUT),
        &trace,
        Some(at(CALLBACK_START + 2_000_000)),
    )
    .unwrap();
    let expected = [
        (Stage::ToGateway, 300_000),
        // request start -> POST /cart/checkout/ end (the batched commit inside).
        (Stage::Gateway, 2_398_773),
        (Stage::RequestedQueue, 1_477_093),
        (Stage::WorkerClaim, 1_029_231),
        (Stage::Retailer, 392_814),
        (Stage::WorkerCommit, 838_738),
        (Stage::FinishedQueue, 1_402_586),
        (Stage::NotifierClaim, 1_125_094),
        (Stage::Callback, 2_000_000),
        // The worker between its spans: 95,692 + 34,772 + 34,101 ns.
        (Stage::Unattributed, 164_565),
        (Stage::GatewayAnswer, 7_712),
        (Stage::Record, 1_098_383),
    ];
    for (stage, ns) in expected {
        assert_eq!(m.stage(stage), ns, "{stage:?}");
    }
    assert_eq!(m.end_to_end(), 11_128_894);
    let on_the_way: u64 = PATH
        .iter()
        .chain([&Stage::Unattributed])
        .map(|s| m.stage(*s))
        .sum();
    assert_eq!(on_the_way, m.end_to_end());
}

#[test]
fn the_breakdown_reports_stages_batches_and_what_could_not_be_broken_down() {
    let spans = fixture();
    let traced = [
        traced(TRACE, CHECKOUT),
        // Sent sampled, but none of its spans arrived.
        traced("00000000000000000000000000000001", "lost"),
        // Its spans arrived, its callback did not.
        traced(TRACE, "not-called-back"),
    ];
    let callbacks = [
        callback(CHECKOUT, CALLBACK_START + 2_000_000),
        // A later duplicate does not move the first arrival.
        callback(CHECKOUT, CALLBACK_START + 9_000_000),
    ];
    let b = breakdown(&traced, &callbacks, &spans);
    assert_eq!((b.traced, b.complete), (3, 1));
    assert_eq!(
        b.incomplete,
        BTreeMap::from([
            ("no span of its trace received", 1),
            ("no callback received", 1)
        ])
    );
    let keys: Vec<&str> = b.path.iter().map(|r| r.stage).collect();
    assert_eq!(
        keys,
        [
            "to_gateway",
            "gateway",
            "requested_queue",
            "worker_claim",
            "retailer",
            "worker_commit",
            "finished_queue",
            "notifier_claim",
            "callback",
            "unattributed"
        ]
    );
    let retailer = &b.path[4];
    assert_eq!(retailer.percentiles.count, 1);
    assert!((retailer.percentiles.p50_ms - 0.392814).abs() < 1e-9);
    assert!((retailer.mean_ms - 0.392814).abs() < 1e-9);
    let e2e = b.end_to_end.as_ref().unwrap();
    assert!((e2e.percentiles.p99_ms - 11.128894).abs() < 1e-9);
    let sum: f64 = b.path.iter().map(|r| r.mean_ms).sum();
    assert!((sum - e2e.mean_ms).abs() < 1e-9);
    let beside: Vec<&str> = b.beside.iter().map(|r| r.stage).collect();
    assert_eq!(beside, ["gateway_answer", "record"]);

    let batches: Vec<(&str, usize, i64, f64)> = b
        .batches
        .iter()
        .map(|x| (x.span, x.batches, x.items, x.duration.p50_ms))
        .collect();
    assert_eq!(batches.len(), 3);
    for ((name, n, items, ms), (want, want_ms)) in batches.iter().zip([
        ("store.create_checkouts", 2.039794),
        ("store.claim_first_attempts", 0.964275),
        ("store.record_attempts", 0.84996),
    ]) {
        assert_eq!((*name, *n, *items), (want, 1, 1));
        assert!((ms - want_ms).abs() < 1e-9, "{name}: {ms}");
    }
}

#[test]
fn a_second_delivery_or_a_missing_span_is_named_not_guessed() {
    let spans = fixture();
    let trace: Vec<&Span> = spans.iter().filter(|s| s.trace_id == TRACE).collect();
    let received = Some(at(CALLBACK_START + 2_000_000));
    let t = traced(TRACE, CHECKOUT);

    // A redelivery to the worker: two `message` spans on checkout.requested.
    let mut again = trace
        .iter()
        .find(|s| s.name == "message" && s.service == "icon-checkout-worker")
        .map(|s| (*s).clone())
        .unwrap();
    again.span_id = "00000000000000aa".into();
    let twice: Vec<&Span> = trace.iter().copied().chain([&again]).collect();
    assert_eq!(
        marks(&t, &twice, received),
        Err(Missing::SeveralWorkerDeliveries)
    );

    // The callback span lost (an older notifier has none).
    let without: Vec<&Span> = trace
        .iter()
        .copied()
        .filter(|s| s.name != "callback")
        .collect();
    assert_eq!(marks(&t, &without, received), Err(Missing::CallbackSpan));

    // The retailer call's span lost: the retailer stage is not made up from its neighbours.
    let without: Vec<&Span> = trace
        .iter()
        .copied()
        .filter(|s| s.name != "place")
        .collect();
    assert_eq!(marks(&t, &without, received), Err(Missing::RetailerCall));
    assert_eq!(marks(&t, &[], received), Err(Missing::NoSpans));
}
