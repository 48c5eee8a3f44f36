//! E-mail over SMTP, against the simulator's SMTP sink: the shopper whose token carried an
//! `email` claim gets a well-formed message with the outcome, the orders and the resource link.

use icon_testkit::{Options, Sim, TestApp};
use serde_json::json;

async fn email_app(sim: &Sim, smtp: bool) -> TestApp {
    let extra = if smtp {
        vec![("ICON_SMTP_URL", sim.smtp_url())]
    } else {
        vec![]
    };
    let app = TestApp::spawn_with(Options {
        extra,
        ..Options::default()
    })
    .await;
    app.register_retailer("acme", &sim.order_url("acme")).await;
    app.register_retailer("globex", &sim.order_url("globex"))
        .await;
    app
}

async fn checkout_as(app: &TestApp, token: &str, cart: i64) -> String {
    let r = app
        .api
        .post("/cart/checkout/", Some(token), &json!({ "cart_id": cart }))
        .await;
    assert_eq!(r.status, 202, "{r:?}");
    r.json["checkout_id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outcome_is_emailed_with_text_and_html_parts() {
    let sim = Sim::start().await;
    let app = email_app(&sim, true).await;
    let cart = app
        .cart_with("alice", &[("acme", "dress"), ("globex", "reject-hat")])
        .await;
    let token = app.token_with_email("alice", "alice@example.com");
    let id = checkout_as(&app, &token, cart).await;
    let view = app
        .wait_for_checkout("alice", &id, "e-mail delivered", |c| {
            c["email"]["state"] == "delivered"
        })
        .await;
    assert_eq!(view["status"], "partially_completed");

    let mails = sim.mails().await;
    assert_eq!(mails.len(), 1, "{mails:?}");
    let mail = &mails[0];
    assert_eq!(mail["to"], json!(["alice@example.com"]));
    let subject = mail["subject"].as_str().unwrap();
    assert!(
        subject.starts_with("Part of your order is placed"),
        "{subject}"
    );
    let data = mail["data"].as_str().unwrap();
    let resource = view["resource_url"].as_str().unwrap();
    for needle in [
        "Content-Type: multipart/alternative",
        "Content-Type: text/plain",
        "Content-Type: text/html",
        "acme: confirmed",
        "globex: rejected",
        resource,
        "Message-ID: <",
        "To: alice@example.com",
    ] {
        assert!(unfolded(data).contains(needle), "no `{needle}` in:\n{data}");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_temporary_refusal_is_retried_and_no_email_claim_means_no_email() {
    let sim = Sim::start().await;
    let app = email_app(&sim, true).await;
    let cart = app.cart_with("alice", &[("acme", "dress")]).await;
    let token = app.token_with_email("alice", "busy-alice@example.com");
    let id = checkout_as(&app, &token, cart).await;
    let view = app
        .wait_for_checkout("alice", &id, "e-mail delivered", |c| {
            c["email"]["state"] == "delivered"
        })
        .await;
    assert_eq!(view["email"]["attempts"], 2, "{view}");
    assert_eq!(sim.mails().await.len(), 1);

    // Bob's token has no `email` claim: his checkout has no e-mail at all.
    let bob_cart = app.cart_with("bob", &[("acme", "dress")]).await;
    let bob = checkout_as(&app, &app.token("bob"), bob_cart).await;
    let view = app
        .wait_for_checkout("bob", &bob, "completed", |c| c["status"] == "completed")
        .await;
    assert!(view.get("email").is_none_or(|e| e.is_null()), "{view}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_smtp_the_email_is_recorded_as_not_configured() {
    let sim = Sim::start().await;
    let app = email_app(&sim, false).await;
    let cart = app.cart_with("alice", &[("acme", "dress")]).await;
    let token = app.token_with_email("alice", "alice@example.com");
    let id = checkout_as(&app, &token, cart).await;
    let view = app
        .wait_for_checkout("alice", &id, "not_configured", |c| {
            c["email"]["state"] == "not_configured"
        })
        .await;
    assert!(view["email"]["last_error"]
        .as_str()
        .unwrap()
        .contains("ICON_SMTP_URL"));
    assert!(sim.mails().await.is_empty());
    app.stop().await;
}

/// The raw message with quoted-printable soft line breaks and header folding undone, so a long
/// URL can be searched for.
fn unfolded(data: &str) -> String {
    data.replace("=\r\n", "")
        .replace("\r\n ", " ")
        .replace("=3D", "=")
}
