//! Group commit in the notifier: the first attempts of checkouts that finish together are
//! claimed in one statement, and attempts that finish together are recorded in one statement;
//! each keeps its own verdict.

use chrono::Utc;
use icon_domain::{CheckoutId, NotificationId, NotificationState};
use icon_store::notifications::{self, claim_first_attempts, record_attempts, RecordAttempt};
use icon_testkit::{Options, Receiver, Sim, TestApp};
use std::time::Duration;
use uuid::Uuid;

/// Two checkouts completed, each with a callback, and no notifier running: their notifications
/// wait for a first attempt. The simulator and the receiver are returned to keep them up.
async fn two_finished_checkouts() -> (TestApp, Sim, Receiver, Vec<CheckoutId>) {
    let app = TestApp::spawn_with(Options {
        start_notifier: false,
        ..Options::default()
    })
    .await;
    let sim = Sim::start().await;
    app.register_retailer("acme", &sim.order_url("acme")).await;
    let receiver = Receiver::start(vec![], None).await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let cart = app.cart_with("alice", &[("acme", "dress")]).await;
        let reply = app.checkout("alice", cart, Some(&receiver.url)).await;
        assert_eq!(reply.status, 202, "{reply:?}");
        let id = reply.json["checkout_id"].as_str().unwrap().to_owned();
        app.wait_for_checkout("alice", &id, "completed", |c| c["status"] == "completed")
            .await;
        ids.push(CheckoutId::from_uuid(id.parse().unwrap()));
    }
    (app, sim, receiver, ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_recorded_together_each_keep_their_claims_verdict() {
    let (app, _sim, _receiver, _ids) = two_finished_checkouts().await;
    // Both first attempts are claimed, as a notifier claims them before calling out.
    let db = app.env.db().await;
    let claimed = db
        .query(
            "UPDATE notifications SET attempts = 1, claim = gen_random_uuid(),
                    claimed_until = now() + interval '1 minute', first_attempt_at = now()
             RETURNING id, claim",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    let record = |id: Uuid, claim: Uuid| RecordAttempt {
        id: NotificationId::from_uuid(id),
        claim,
        attempt: 1,
        started_at: Utc::now(),
        duration_ms: 3,
        response_status: Some(200),
        error: None,
        new_state: NotificationState::Delivered,
        next_attempt_at: None,
        parked: false,
    };
    let (kept, lost): (Uuid, Uuid) = (claimed[0].get(0), claimed[1].get(0));
    let batch = [
        record(kept, claimed[0].get(1)),
        // This one's claim was taken over by another copy: its record must be refused.
        record(lost, Uuid::new_v4()),
    ];
    let pool = app.env.pool().await;
    let conn = pool.get().await.unwrap();
    assert_eq!(
        record_attempts(&conn, &batch).await.unwrap(),
        vec![true, false]
    );

    let state = |id: Uuid| {
        let db = &db;
        async move {
            let row = db
                .query_one(
                    "SELECT state, claim IS NOT NULL,
                            (SELECT count(*) FROM notification_attempts WHERE notification_id = $1)
                     FROM notifications WHERE id = $1",
                    &[&id],
                )
                .await
                .unwrap();
            (
                row.get::<_, String>(0),
                row.get::<_, bool>(1),
                row.get::<_, i64>(2),
            )
        }
    };
    assert_eq!(state(kept).await, ("delivered".to_owned(), false, 1));
    assert_eq!(
        state(lost).await,
        ("pending".to_owned(), true, 0),
        "a refused record changes nothing"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_attempts_of_several_checkouts_are_claimed_together_each_once() {
    let (app, _sim, _receiver, ids) = two_finished_checkouts().await;
    let pool = app.env.pool().await;
    let conn = pool.get().await.unwrap();
    let lease = Duration::from_secs(60);
    let found = claim_first_attempts(&conn, &ids, &["callback"], lease)
        .await
        .unwrap();
    // One list per checkout, in order, each with its own callback, claimed as attempt 1.
    assert_eq!(found.len(), 2);
    for (list, id) in found.iter().zip(&ids) {
        assert_eq!(list.len(), 1, "{list:?}");
        let (n, claimed) = &list[0];
        assert_eq!(n.checkout_id, *id);
        assert_eq!(claimed.as_ref().map(|c| c.attempt), Some(1));
    }
    // Claimed already (their lease runs): a second claim gets the rows but no claim.
    let again = claim_first_attempts(&conn, &ids, &["callback"], lease)
        .await
        .unwrap();
    assert!(again
        .iter()
        .all(|list| list.len() == 1 && list[0].1.is_none()));
    app.stop().await;
}

/// The parked gauge's table (`parked_notifications`) is kept by the statements themselves:
/// recording a parked attempt lists it (in the batched statement too), a failed but dropped one
/// (a dead device) is not listed, and a redeliver takes it off in its own transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_attempts_are_listed_until_redelivered() {
    let (app, _sim, _receiver, _ids) = two_finished_checkouts().await;
    let db = app.env.db().await;
    let claimed = db
        .query(
            "UPDATE notifications SET attempts = 1, claim = gen_random_uuid(),
                    claimed_until = now() + interval '1 minute', first_attempt_at = now()
             RETURNING id, claim, checkout_id",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    let record = |row: &tokio_postgres::Row, parked: bool| RecordAttempt {
        id: NotificationId::from_uuid(row.get(0)),
        claim: row.get(1),
        attempt: 1,
        started_at: Utc::now(),
        duration_ms: 3,
        response_status: Some(410),
        error: Some("the receiver answered 410 Gone".into()),
        new_state: NotificationState::Failed,
        next_attempt_at: None,
        parked,
    };
    let batch = [record(&claimed[0], true), record(&claimed[1], false)];
    let pool = app.env.pool().await;
    let mut conn = pool.get().await.unwrap();
    assert_eq!(
        record_attempts(&conn, &batch).await.unwrap(),
        vec![true, true]
    );
    let listed = || {
        let db = &db;
        async move {
            db.query(
                "SELECT notification_id, channel FROM parked_notifications",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get::<_, Uuid>(0), r.get::<_, String>(1)))
            .collect::<Vec<_>>()
        }
    };
    let parked_id: Uuid = claimed[0].get(0);
    assert_eq!(listed().await, vec![(parked_id, "callback".to_owned())]);

    let checkout = CheckoutId::from_uuid(claimed[0].get(2));
    let redelivered = notifications::redeliver(&mut conn, checkout, "callback")
        .await
        .unwrap();
    assert!(
        matches!(redelivered, notifications::Redeliver::Queued(ref q) if q.len() == 1),
        "{redelivered:?}"
    );
    assert_eq!(listed().await, vec![]);
    app.stop().await;
}
