//! A push or e-mail being retried when its channel is turned off, or when its give-up deadline
//! passes with no retry due (its message lost): taken up again, it ends visibly (issue 16 §4),
//! and a redelivery sends it once the channel is back.
//!
//! The gateway and the worker run in-process; the notifier runs as a process (it needs
//! `cargo build --bins` first), so that it can be stopped and started again with other settings
//! while the rest keeps running, and so that its log and `/metrics` are its own.

use icon_contracts::topology::{CHECKOUT_FINISHED, PARKED};
use icon_testkit::metrics::{free_port, scrape, value};
use icon_testkit::process::Service;
use icon_testkit::{eventually, Options, Sim, TestApp, SECRETS_KEY};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

/// Long enough that the notifier is stopped before the first retry is due.
const RETRY_SCHEDULE: &str = "5s";

/// Which channels a notifier run has configured.
struct Channels {
    push: bool,
    email: bool,
}

/// The notifier as a process, with its own log file and `/metrics`.
struct Notifier {
    service: Service,
    probe: String,
}

impl Notifier {
    /// Starts `icon-notifier` on `app`'s database and vhost with `channels` pointed at `sim`, and
    /// waits until it serves its probe. `name` names its log file.
    async fn start(
        name: &'static str,
        app: &TestApp,
        sim: &Sim,
        logs: &std::path::Path,
        channels: Channels,
        settings: &[(&str, &str)],
    ) -> Self {
        let probe = format!("127.0.0.1:{}", free_port());
        let mut env: HashMap<String, String> = [
            ("ICON_DATABASE_URL", app.env.database_url.clone()),
            ("ICON_AMQP_URL", app.env.amqp_url.clone()),
            ("ICON_SECRETS_KEY", SECRETS_KEY.into()),
            ("ICON_CALLBACK_ALLOW_NETWORKS", "127.0.0.0/8".into()),
            ("ICON_CALLBACK_ALLOW_HTTP", "true".into()),
            ("ICON_CALLBACK_RETRY_SCHEDULE", RETRY_SCHEDULE.into()),
            ("ICON_CALLBACK_TIMEOUT", "2s".into()),
            ("ICON_FCM_ENDPOINT", sim.fcm_endpoint()),
            ("ICON_PROBE_ADDR", probe.clone()),
            ("ICON_LOG", "info,icon_notifier=debug".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        if channels.push {
            env.insert(
                "ICON_FCM_CREDENTIALS".into(),
                sim.service_account_file().display().to_string(),
            );
        }
        if channels.email {
            env.insert("ICON_SMTP_URL".into(), sim.smtp_url());
        }
        for (k, v) in settings {
            env.insert((*k).to_owned(), (*v).to_owned());
        }
        let service = Service::start(name, icon_testkit::fleet::NOTIFIER, &env, logs);
        let api = icon_testkit::Api::new(&format!("http://{probe}"));
        eventually(
            &format!("{name} to be ready"),
            Duration::from_secs(30),
            || async {
                let r = api
                    .try_send(http::Method::GET, "/readyz", None, &[], None)
                    .await;
                matches!(r, Ok(r) if r.status == 200).then_some(())
            },
        )
        .await;
        Self { service, probe }
    }

    /// SIGTERM, and the log it wrote.
    fn stop(&self) -> String {
        assert!(
            self.service.terminate(Duration::from_secs(20)).is_some(),
            "{} did not stop",
            self.service.name
        );
        self.service.log()
    }
}

/// A temporary folder for the notifier logs, removed on drop (kept and printed on a failure).
struct Logs(PathBuf);

impl Logs {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "icon-channel-off-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).expect("log dir");
        Self(dir)
    }
}

impl Drop for Logs {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for entry in std::fs::read_dir(&self.0).into_iter().flatten().flatten() {
                let log = std::fs::read_to_string(entry.path()).unwrap_or_default();
                eprintln!("----- {} -----\n{log}", entry.path().display());
            }
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// The system without its notifier (the test runs that), a retailer, and a registered device.
async fn app_with_device(sim: &Sim, device: &str) -> TestApp {
    let app = TestApp::spawn_with(Options {
        start_notifier: false,
        retry_schedule: RETRY_SCHEDULE.into(),
        ..Options::default()
    })
    .await;
    app.register_retailer("acme", &sim.order_url("acme")).await;
    let r = app
        .api
        .put(
            &format!("/me/devices/{device}"),
            Some(&app.token("alice")),
            &json!({ "platform": "android" }),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    app
}

/// Alice checks out a cart asking for push, with `token` (which may carry an `email` claim).
async fn checkout_with_push(app: &TestApp, token: &str) -> String {
    let cart = app.cart_with("alice", &[("acme", "dress")]).await;
    let r = app
        .api
        .post(
            "/cart/checkout/",
            Some(token),
            &json!({ "cart_id": cart, "push_notification": true }),
        )
        .await;
    assert_eq!(r.status, 202, "{r:?}");
    r.json["checkout_id"].as_str().expect("id").to_owned()
}

/// The attempts listed on the checkout's `/attempts` for `channel`.
async fn attempts(app: &TestApp, id: &str, channel: &str) -> Vec<Value> {
    let r = app
        .api
        .get(
            &format!("/cart/checkout/{id}/attempts"),
            Some(&app.token("alice")),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    r.json["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .filter(|a| a["channel"] == channel)
        .cloned()
        .collect()
}

/// The statuses the fake FCM answered for `token`, oldest first.
async fn fcm_answers(sim: &Sim, token: &str) -> Vec<Value> {
    sim.fcm_messages()
        .await
        .into_iter()
        .filter(|m| m["token"] == token)
        .map(|m| m["status"].clone())
        .collect()
}

/// The notifier's own count of attempts on `channel`, every outcome.
fn attempts_counted(metrics: &str, channel: &str) -> f64 {
    ["delivered", "failed", "refused", "gone"]
        .iter()
        .map(|outcome| {
            value(
                metrics,
                &format!(
                    "icon_notification_attempts_total{{channel=\"{channel}\",outcome=\"{outcome}\"}}"
                ),
            )
        })
        .sum()
}

async fn redeliver(app: &TestApp, id: &str, channel: &str) -> Value {
    let r = app
        .api
        .post(
            &format!("/cart/checkout/{id}/{channel}/redeliver"),
            Some(&app.token("alice")),
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 202, "{channel} redelivery: {r:?}");
    r.json
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retrying_push_and_email_end_not_configured_when_their_channels_are_turned_off() {
    let logs = Logs::new();
    let sim = Sim::start().await;
    // FCM answers this token 503 once, the SMTP sink this address 451 once: both get retried.
    let device = "down-phone-7c41d2e9a0b3f516";
    let address = "busy-alice@example.com";
    let app = app_with_device(&sim, device).await;
    let on = || Channels {
        push: true,
        email: true,
    };
    let first = Notifier::start("notifier-on", &app, &sim, &logs.0, on(), &[]).await;
    let id = checkout_with_push(&app, &app.token_with_email("alice", address)).await;
    eventually(
        "a failed first attempt on each channel",
        Duration::from_secs(20),
        || async {
            let push = attempts(&app, &id, "push").await;
            let email = attempts(&app, &id, "email").await;
            (push.len() == 1 && email.len() == 1).then_some(())
        },
    )
    .await;
    first.stop();
    let view = app
        .wait_for_checkout("alice", &id, "both retrying", |c| {
            c["push"]["state"] == "pending" && c["email"]["state"] == "retrying"
        })
        .await;
    assert_eq!(view["email"]["attempts"], 1, "{view}");
    assert_eq!(fcm_answers(&sim, device).await, vec![json!(503)]);

    // The operator turns push and e-mail off. The retries, due now, end the two visibly:
    // nothing is sent and nothing stays `retrying`.
    let off = Notifier::start(
        "notifier-off",
        &app,
        &sim,
        &logs.0,
        Channels {
            push: false,
            email: false,
        },
        &[],
    )
    .await;
    let token = app.token("alice");
    let view = eventually(
        "push and e-mail not_configured",
        Duration::from_secs(20),
        || async {
            let r = app
                .api
                .get(&format!("/cart/checkout/{id}"), Some(&token))
                .await;
            (r.json["push"]["state"] == "not_configured"
                && r.json["email"]["state"] == "not_configured")
                .then_some(r.json)
        },
    )
    .await;
    let push_error = view["push"]["last_error"].as_str().unwrap_or_default();
    assert!(push_error.contains("ICON_FCM_CREDENTIALS"), "{view}");
    let detail = view["push"]["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("/push/redeliver"), "{view}");
    let email_error = view["email"]["last_error"].as_str().unwrap_or_default();
    assert!(email_error.contains("ICON_SMTP_URL"), "{view}");
    // Its count of attempts is kept, so the redelivered ones are listed after it.
    assert_eq!(view["email"]["attempts"], 1, "{view}");
    let metrics = scrape(&off.probe).await;
    assert_eq!(attempts_counted(&metrics, "push"), 0.0, "{metrics}");
    assert_eq!(attempts_counted(&metrics, "email"), 0.0, "{metrics}");
    let log = off.stop();
    let ended: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("channel not configured any more"))
        .collect();
    assert_eq!(ended.len(), 2, "one line per notification:\n{log}");
    assert!(
        ended.iter().any(|l| l.contains("down-pho…")) && ended.iter().any(|l| l.contains("b***@")),
        "the targets, shortened:\n{log}"
    );
    assert_eq!(fcm_answers(&sim, device).await, vec![json!(503)]);
    assert!(sim.mails().await.is_empty());

    // Back on: redelivery is accepted (not 409) and both are delivered.
    let back = Notifier::start("notifier-back", &app, &sim, &logs.0, on(), &[]).await;
    let queued = redeliver(&app, &id, "push").await;
    assert_eq!(queued["push"][0]["state"], "pending", "{queued}");
    let queued = redeliver(&app, &id, "email").await;
    assert_eq!(queued["email"]["state"], "pending", "{queued}");
    let view = app
        .wait_for_checkout("alice", &id, "push sent and e-mail delivered", |c| {
            c["push"]["state"] == "sent" && c["email"]["state"] == "delivered"
        })
        .await;
    assert_eq!(view["email"]["attempts"], 2, "{view}");
    assert_eq!(
        fcm_answers(&sim, device).await,
        vec![json!(503), json!(200)]
    );
    let mails = sim.mails().await;
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert_eq!(mails[0]["to"], json!([address]));
    back.stop();
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_taken_up_after_its_give_up_deadline_is_parked_without_a_call() {
    let logs = Logs::new();
    let sim = Sim::start().await;
    let device = "down-phone-2b9e40c7d15a8f36";
    let app = app_with_device(&sim, device).await;
    let push_only = || Channels {
        push: true,
        email: false,
    };
    // The retry after the 503 is due 3 s after the first attempt, long enough for the first
    // notifier to be stopped before (on a loaded machine too); the deadline is 4 s.
    let give_up = [
        ("ICON_CALLBACK_GIVE_UP_AFTER", "4s"),
        ("ICON_CALLBACK_RETRY_SCHEDULE", "3s"),
    ];
    let first = Notifier::start("notifier-1", &app, &sim, &logs.0, push_only(), &give_up).await;
    let id = checkout_with_push(&app, &app.token("alice")).await;
    eventually("the first attempt", Duration::from_secs(20), || async {
        (attempts(&app, &id, "push").await.len() == 1).then_some(())
    })
    .await;
    first.stop();
    // The retry message is lost (a purged queue, say): it is taken out once its tier has
    // passed it back to the work queue, which nothing consumes now.
    eventually(
        "the retry in the work queue",
        Duration::from_secs(20),
        || async { (app.env.queue_len(CHECKOUT_FINISHED).await >= 1).then_some(()) },
    )
    .await;
    app.env.drain_queue(CHECKOUT_FINISHED).await;

    // Long past the deadline, the sweeper queues it again: it is given up at that take-up,
    // parked, and FCM is not called again (it would have said 200 this time).
    let settings = [
        ("ICON_CALLBACK_GIVE_UP_AFTER", "4s"),
        ("ICON_CALLBACK_RETRY_SCHEDULE", "3s"),
        ("ICON_NOTIFIER_STUCK_AFTER", "1s"),
    ];
    let second = Notifier::start("notifier-2", &app, &sim, &logs.0, push_only(), &settings).await;
    let view = app
        .wait_for_checkout("alice", &id, "push given up", |c| {
            c["push"]["state"] == "failed"
        })
        .await;
    let error = view["push"]["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("not delivered within 4s"), "{view}");
    assert!(error.contains("HTTP 503"), "the last answer: {view}");
    eventually("the push parked", Duration::from_secs(10), || async {
        (app.env.queue_len(PARKED).await == 1).then_some(())
    })
    .await;
    let metrics = scrape(&second.probe).await;
    assert_eq!(
        value(&metrics, "icon_notifications_parked{channel=\"push\"}"),
        1.0,
        "{metrics}"
    );
    assert_eq!(attempts_counted(&metrics, "push"), 0.0, "{metrics}");
    assert_eq!(fcm_answers(&sim, device).await, vec![json!(503)]);
    assert_eq!(attempts(&app, &id, "push").await.len(), 1);

    // Redelivered, it starts a new schedule and deadline, and is sent.
    redeliver(&app, &id, "push").await;
    app.wait_for_checkout("alice", &id, "push sent", |c| c["push"]["state"] == "sent")
        .await;
    assert_eq!(
        fcm_answers(&sim, device).await,
        vec![json!(503), json!(200)]
    );
    let log = second.stop();
    assert!(
        log.lines()
            .any(|l| l.contains("given up and parked") && l.contains("down-pho…")),
        "{log}"
    );
    app.stop().await;
}
