//! Callback URLs on the open internet: https only unless `ICON_CALLBACK_ALLOW_HTTP=true`, at
//! submission and again at delivery; and a secret in a callback URL never reaches the logs or
//! the attempt records. (The address classes the guard refuses are tried in icon-http's
//! `guard_tests`, through a resolver the test controls.)

use icon_contracts::topology::PARKED;
use icon_testkit::{Options, Receiver, Scripted, Sim, TestApp};
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

async fn app_with(opts: Options) -> (TestApp, Sim, i64) {
    let app = TestApp::spawn_with(opts).await;
    let sim = Sim::start().await;
    app.register_retailer("acme", &sim.order_url("acme")).await;
    let cart = app.cart_with("alice", &[("acme", "dress")]).await;
    (app, sim, cart)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_callbacks_are_refused_at_submission_by_default() {
    let (app, _sim, cart) = app_with(Options {
        // Unset, as in production: the test kit's own `true` is removed.
        extra: vec![("ICON_CALLBACK_ALLOW_HTTP", String::new())],
        start_notifier: false,
        ..Options::default()
    })
    .await;
    let r = app
        .checkout("alice", cart, Some("http://127.0.0.1:9/hook"))
        .await;
    assert_eq!(r.status, 422, "{r:?}");
    assert_eq!(r.json["code"], "validation_failed");
    assert_eq!(r.json["errors"][0]["field"], "callback_url");
    let message = r.json["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("https") && message.contains("ICON_CALLBACK_ALLOW_HTTP"),
        "{message}"
    );
    // The same target over https passes the gateway (the network policy allows loopback here).
    let r = app
        .checkout("alice", cart, Some("https://127.0.0.1:9/hook"))
        .await;
    assert_eq!(r.status, 202, "{r:?}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_notifier_refuses_http_when_the_setting_is_off_at_delivery() {
    let (mut app, _sim, cart) = app_with(Options {
        start_notifier: false,
        ..Options::default()
    })
    .await;
    let receiver = Receiver::start(vec![], None).await;
    let r = app.checkout("alice", cart, Some(&receiver.url)).await;
    assert_eq!(r.status, 202, "accepted while http was allowed: {r:?}");
    let id = r.json["checkout_id"].as_str().unwrap().to_owned();

    // The operator turns plain http off before the notifier delivers.
    app.set_var("ICON_CALLBACK_ALLOW_HTTP", "false");
    app.start_notifier();
    let view = app
        .wait_for_checkout("alice", &id, "the callback given up", |c| {
            c["callback"]["state"] == "failed"
        })
        .await;
    assert_eq!(view["callback"]["attempts"], 1);
    let attempts = app
        .api
        .get(
            &format!("/cart/checkout/{id}/attempts"),
            Some(&app.token("alice")),
        )
        .await;
    let error = attempts.json["attempts"][0]["error"].as_str().unwrap();
    assert!(error.contains("ICON_CALLBACK_ALLOW_HTTP"), "{error}");
    assert!(receiver.seen().is_empty(), "nothing was sent over http");
    app.stop().await;
}

/// Everything the services log in this test binary, from the first test that asks for it.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink = buffer.clone();
        let installed = tracing_subscriber::fmt()
            .with_env_filter("info")
            .with_ansi(false)
            .with_writer(move || SharedWriter(sink.clone()))
            .try_init();
        assert!(
            installed.is_ok(),
            "another test installed a global subscriber; logs cannot be captured"
        );
        buffer
    })
    .clone()
}

struct SharedWriter(Arc<Mutex<Vec<u8>>>);

impl Write for SharedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_in_the_callback_url_never_reaches_logs_or_attempts() {
    let logs = captured_logs();
    let (app, _sim, cart) = app_with(Options::default()).await;

    // Userinfo is refused at submission, and the refusal does not echo it.
    let r = app
        .checkout(
            "alice",
            cart,
            Some("https://partner:PW-7f3a9c@hooks.example.com/cb?token=Q-7f3a9c"),
        )
        .await;
    assert_eq!(r.status, 422, "{r:?}");
    assert!(
        !r.text.contains("PW-7f3a9c") && !r.text.contains("Q-7f3a9c"),
        "{}",
        r.text
    );

    // A token in the query is accepted; the receiver answers 410, so the notifier gives up
    // and logs the target of the parked notification.
    let receiver = Receiver::start(vec![], Some(Scripted::status(410))).await;
    let secret = format!("SECRET-{}", uuid::Uuid::new_v4().simple());
    let url = format!("{}/{secret}?token={secret}", receiver.url);
    let r = app.checkout("alice", cart, Some(&url)).await;
    assert_eq!(r.status, 202, "{r:?}");
    let id = r.json["checkout_id"].as_str().unwrap().to_owned();
    app.wait_for_checkout("alice", &id, "the callback given up", |c| {
        c["callback"]["state"] == "failed"
    })
    .await;
    assert_eq!(receiver.seen().len(), 1, "the callback was delivered once");

    let attempts = app
        .api
        .get(
            &format!("/cart/checkout/{id}/attempts"),
            Some(&app.token("alice")),
        )
        .await;
    for a in attempts.json["attempts"].as_array().unwrap() {
        let error = a["error"].as_str().unwrap_or_default();
        assert!(
            !error.contains(&secret),
            "attempt error shows the secret: {error}"
        );
    }

    let host = receiver.url.trim_end_matches("/hook").to_owned();
    let parked_line = icon_testkit::eventually(
        "the parked notification to be logged",
        std::time::Duration::from_secs(10),
        || {
            let logs = logs.clone();
            let host = host.clone();
            async move {
                let text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
                text.lines()
                    .find(|l| l.contains("given up and parked") && l.contains(&host))
                    .map(str::to_owned)
            }
        },
    )
    .await;
    assert!(
        !parked_line.contains("/hook"),
        "no path is logged: {parked_line}"
    );
    let text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(
        !text.contains(&secret),
        "a log line shows the callback URL's secret"
    );
    let parked = app.env.drain_queue(PARKED).await;
    assert_eq!(parked.len(), 1);
    assert_eq!(
        parked[0]["data"]["target"],
        host.as_str(),
        "parked: host only"
    );
    app.stop().await;
}
