//! A full run (shopper, partner and admin tokens, a forged token, webhook secrets created and
//! rotated, a push device, callbacks with a secret in their URL, a failed attempt and its
//! retry), then every log line of the three services is searched for every secret the run used.
//! ICON's own crates log at `debug`, the rest at `info` (the default), so a secret in any of
//! ICON's log lines fails the test.
//!
//! A second run gives up on a push (FCM refuses the device for good) and on an e-mail (the SMTP
//! server refuses the address for good), both parked, and searches the logs for the whole
//! device token and address: logs show them only shortened (README, "Logs").

use http::Method;
use icon_gateway::auth::{Claims, JwtKeys};
use icon_testkit::fleet::Fleet;
use icon_testkit::{eventually, Receiver, Scripted, Sim, TestEnv, JWT_SECRET, SECRETS_KEY};
use serde_json::{json, Value};
use std::time::Duration;

const LOG_FILTER: &str = "info,icon_gateway=debug,icon_checkout_worker=debug,icon_notifier=debug,\
    icon_store=debug,icon_broker=debug,icon_outbox=debug,icon_http=debug,icon_runtime=debug";

/// The parts of a secret worth searching for: the whole, and its signature or key material.
fn needles(name: &str, secret: &str) -> Vec<(String, String)> {
    let mut out = vec![(name.to_owned(), secret.to_owned())];
    if let Some(sig) = secret.rsplit('.').next().filter(|_| secret.contains('.')) {
        out.push((format!("{name} (signature)"), sig.to_owned()));
    }
    if let Some(key) = secret.strip_prefix("whsec_") {
        out.push((format!("{name} (key)"), key.to_owned()));
    }
    out
}

async fn ok(fleet: &Fleet, method: Method, path: &str, token: &str, body: Option<Value>) -> Value {
    let r = fleet
        .api
        .send_with(
            method.clone(),
            path,
            Some(token),
            &[],
            body.map(|b| b.to_string()),
        )
        .await;
    assert!(r.status < 300, "{method} {path}: {r:?}");
    r.json
}

/// A cart with one item and its checkout; returns the checkout id.
async fn check_out(fleet: &Fleet, token: &str, callback_url: &str, key: &str) -> String {
    let cart = ok(fleet, Method::POST, "/carts", token, Some(json!({}))).await["cart_id"]
        .as_i64()
        .expect("cart id");
    ok(
        fleet,
        Method::POST,
        &format!("/carts/{cart}/items"),
        token,
        Some(
            json!({"retailer_id": "acme", "sku": "coat-1", "quantity": 1,
                    "unit_price": {"amount_minor": 12000, "currency": "EUR"}}),
        ),
    )
    .await;
    let r = fleet
        .api
        .send_with(
            Method::POST,
            "/cart/checkout/",
            Some(token),
            &[("idempotency-key", key)],
            Some(
                json!({"cart_id": cart, "callback_url": callback_url, "push_notification": true})
                    .to_string(),
            ),
        )
        .await;
    assert_eq!(r.status, 202, "{r:?}");
    r.json["checkout_id"].as_str().expect("id").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_token_or_secret_reaches_the_logs_of_a_full_run() {
    let env = TestEnv::create().await;
    let sim = Sim::start().await;
    // The first attempt fails, so a retry is logged too.
    let receiver = Receiver::start(vec![Scripted::status(500)], None).await;
    let fleet = Fleet::start(
        &env.database_url,
        &env.amqp_url,
        &[("ICON_LOG", LOG_FILTER)],
    )
    .await;
    fleet.register(&sim, "acme").await;

    let keys = JwtKeys::new(JWT_SECRET);
    let hour = Duration::from_secs(3600);
    let shopper = keys
        .mint_with_email("sec-shopper", Some("shopper@example.com"), false, hour)
        .expect("mint");
    let partner = keys
        .mint_claims(&Claims::new("sec-partner", hour).with_scope("partner"))
        .expect("mint");
    let admin = keys.mint("sec-ops", true, hour).expect("mint");
    let forged = JwtKeys::new("another-secret-of-at-least-32-bytes!")
        .mint("sec-shopper", true, hour)
        .expect("mint");

    ok(&fleet, Method::GET, "/retailers", &admin, None).await;
    // The retailer's secret, then rotated: the worker signs its requests with both.
    let mut retailer_secrets = Vec::new();
    for (method, path) in [
        (Method::GET, "/retailers/acme/webhook-secret"),
        (Method::POST, "/retailers/acme/webhook-secret/rotate"),
    ] {
        let secret = ok(&fleet, method, path, &admin, None).await["secret"].clone();
        retailer_secrets.push(secret.as_str().expect("secret").to_owned());
    }
    let r = fleet.api.get("/retailers", Some(&forged)).await;
    assert_eq!(r.status, 401, "{r:?}");
    let first = ok(&fleet, Method::GET, "/webhook-secret", &shopper, None).await["secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    let rotated = ok(
        &fleet,
        Method::POST,
        "/webhook-secret/rotate",
        &shopper,
        None,
    )
    .await["secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    assert_ne!(first, rotated);
    let device = "sec-device-token-7f3a9c1e5b2d4f60";
    ok(
        &fleet,
        Method::PUT,
        &format!("/me/devices/{device}"),
        &shopper,
        Some(json!({"platform": "android"})),
    )
    .await;

    let url_secret = "cb-query-secret-5e1d9a";
    let callback = format!("{}/hooks/icon?token={url_secret}", receiver.url);
    let ids = [
        check_out(&fleet, &shopper, &callback, "sec-shopper-1").await,
        check_out(&fleet, &partner, &callback, "sec-partner-1").await,
    ];
    // The partner never asked for its secret: the notifier created it. Read it now.
    let partner_secret = ok(&fleet, Method::GET, "/webhook-secret", &partner, None).await["secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    let seen = receiver.wait_for(3, Duration::from_secs(60)).await;
    assert!(
        seen.iter().all(|c| c.webhook_signature.is_some()),
        "every callback is signed"
    );
    for (id, token) in ids.iter().zip([&shopper, &partner]) {
        eventually("the checkout to be final", Duration::from_secs(30), || {
            let path = format!("/cart/checkout/{id}");
            let api = fleet.api.clone();
            async move {
                let r = api.get(&path, Some(token)).await;
                (r.json["status"] == "completed").then_some(())
            }
        })
        .await;
    }
    // Stop the services so every line is flushed, then read everything they wrote.
    for s in [&fleet.gateway, &fleet.worker, &fleet.notifier] {
        s.terminate(Duration::from_secs(20));
    }
    let logs = [&fleet.gateway, &fleet.worker, &fleet.notifier]
        .iter()
        .map(|s| (s.name, s.log()))
        .collect::<Vec<_>>();

    // Not vacuous: the run did log, about these very checkouts and their callbacks.
    let all: String = logs.iter().map(|(_, l)| l.as_str()).collect();
    assert!(all.lines().count() > 30, "too few log lines:\n{all}");
    for id in &ids {
        assert!(all.contains(id.as_str()), "no log line names checkout {id}");
    }
    assert!(all.contains("127.0.0.1"), "the callback host is logged");

    let mut secrets = vec![
        ("ICON_JWT_SECRET".to_owned(), JWT_SECRET.to_owned()),
        ("ICON_SECRETS_KEY".to_owned(), SECRETS_KEY.to_owned()),
        (
            "callback URL query secret".to_owned(),
            url_secret.to_owned(),
        ),
        ("device token".to_owned(), device.to_owned()),
    ];
    for (name, secret) in [
        ("shopper token", &shopper),
        ("partner token", &partner),
        ("admin token", &admin),
        ("forged token", &forged),
        ("shopper webhook secret", &first),
        ("shopper rotated webhook secret", &rotated),
        ("partner webhook secret", &partner_secret),
        ("retailer signing secret", &retailer_secrets[0]),
        ("retailer rotated signing secret", &retailer_secrets[1]),
    ] {
        secrets.extend(needles(name, secret));
    }
    let mut leaks = vec![];
    for (service, log) in &logs {
        for (name, secret) in &secrets {
            if let Some(line) = log.lines().find(|l| l.contains(secret.as_str())) {
                leaks.push(format!("{service}: {name} in: {line}"));
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "secrets in the logs:\n{}",
        leaks.join("\n")
    );
}

/// The log of every service of `fleet`, once they have stopped (so every line is flushed).
fn stopped_logs(fleet: &Fleet) -> Vec<(&'static str, String)> {
    for s in [&fleet.gateway, &fleet.worker, &fleet.notifier] {
        s.terminate(Duration::from_secs(20));
    }
    [&fleet.gateway, &fleet.worker, &fleet.notifier]
        .iter()
        .map(|s| (s.name, s.log()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_parked_push_and_a_bounced_email_show_their_targets_only_shortened() {
    let env = TestEnv::create().await;
    let sim = Sim::start().await;
    let credentials = sim.service_account_file().display().to_string();
    let fcm = sim.fcm_endpoint();
    let smtp = sim.smtp_url();
    let fleet = Fleet::start(
        &env.database_url,
        &env.amqp_url,
        &[
            ("ICON_LOG", LOG_FILTER),
            ("ICON_FCM_CREDENTIALS", &credentials),
            ("ICON_FCM_ENDPOINT", &fcm),
            ("ICON_SMTP_URL", &smtp),
        ],
    )
    .await;
    fleet.register(&sim, "acme").await;
    // FCM answers 403 SENDER_ID_MISMATCH for `denied-` tokens, the SMTP sink 550 for `bounce-`
    // recipients: both given up at once, and parked.
    let device = "denied-sec-device-3e8b1f0a9c2d7e45";
    let local_part = "bounce-sec-shopper-8d21c7";
    let address = format!("{local_part}@example.com");
    let shopper = JwtKeys::new(JWT_SECRET)
        .mint_with_email(
            "sec-parked",
            Some(&address),
            false,
            Duration::from_secs(3600),
        )
        .expect("mint");
    ok(
        &fleet,
        Method::PUT,
        &format!("/me/devices/{device}"),
        &shopper,
        Some(json!({"platform": "android"})),
    )
    .await;
    let receiver = Receiver::start(vec![], None).await;
    let id = check_out(&fleet, &shopper, &receiver.url, "sec-parked-1").await;
    let view = eventually(
        "the push and the e-mail given up",
        Duration::from_secs(30),
        || {
            let path = format!("/cart/checkout/{id}");
            let api = fleet.api.clone();
            let token = shopper.clone();
            async move {
                let r = api.get(&path, Some(&token)).await;
                (r.json["push"]["state"] == "failed" && r.json["email"]["state"] == "failed")
                    .then_some(r.json)
            }
        },
    )
    .await;
    assert!(
        view["email"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("550")),
        "{view}"
    );
    eventually("both parked", Duration::from_secs(10), || async {
        (env.queue_len(icon_contracts::topology::PARKED).await == 2).then_some(())
    })
    .await;
    let parked = env.drain_queue(icon_contracts::topology::PARKED).await;
    let logs = stopped_logs(&fleet);

    // Not vacuous: the notifier logged both give-ups.
    let notifier = &logs
        .iter()
        .find(|(s, _)| *s == "notifier")
        .expect("notifier")
        .1;
    let parks: Vec<&str> = notifier
        .lines()
        .filter(|l| l.contains("given up and parked"))
        .collect();
    assert_eq!(parks.len(), 2, "one park line each:\n{notifier}");

    // The whole token and address (and the address's local part) in no line of any service,
    // whatever the case, nor in the parked messages operators read.
    let needles = [
        ("device token", device.to_owned()),
        ("e-mail address", address.clone()),
        ("e-mail local part", local_part.to_owned()),
    ];
    let mut leaks = vec![];
    for (service, log) in &logs {
        for line in log.lines() {
            let lower = line.to_ascii_lowercase();
            for (name, needle) in &needles {
                if lower.contains(needle.as_str()) {
                    leaks.push(format!("{service}: {name} in: {line}"));
                }
            }
        }
    }
    for message in &parked {
        let text = message.to_string().to_ascii_lowercase();
        for (name, needle) in &needles {
            if text.contains(needle.as_str()) {
                leaks.push(format!("parked message: {name} in: {message}"));
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "targets in the logs:\n{}",
        leaks.join("\n")
    );

    // And they showed the targets the way the README says.
    let shortened_token = format!("{}…({} chars)", &device[..8], device.len());
    for shortened in [shortened_token.as_str(), "b***@example.com"] {
        assert!(
            parks.iter().any(|l| l.contains(shortened)),
            "no park line shows `{shortened}`:\n{notifier}"
        );
    }
}
