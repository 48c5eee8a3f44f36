//! TLS to PostgreSQL and RabbitMQ, against the real local servers behind test-only TLS
//! terminators (`icon_testkit::tls_proxy`): the whole system over `verify-full` and `amqps://`,
//! and the refusals (another CA, another name, no TLS at all).

use icon_broker::lapin::uri::AMQPUri;
use icon_broker::lapin::ConnectionProperties;
use icon_broker::AmqpUrl;
use icon_store::DatabaseUrl;
use icon_testkit::tls_proxy::{TestCa, TlsTerminator};
use icon_testkit::{eventually, Options, Receiver, Sim, TestApp, TestEnv};
use std::net::{SocketAddr, ToSocketAddrs};
use std::str::FromStr;
use std::time::Duration;

/// Where the test's PostgreSQL really is, and the user to connect as.
fn postgres_of(env: &TestEnv) -> (SocketAddr, String) {
    let config = tokio_postgres::Config::from_str(&env.database_url).expect("test database URL");
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        #[allow(unreachable_patterns)]
        _ => panic!("the TLS tests need PostgreSQL over TCP"),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let addr = (host.as_str(), port)
        .to_socket_addrs()
        .expect("resolve")
        .next()
        .expect("an address");
    (addr, config.get_user().unwrap_or("postgres").to_owned())
}

/// Where the test's RabbitMQ really is, and the credentials.
fn rabbitmq_of(env: &TestEnv) -> (SocketAddr, String, String) {
    let uri: AMQPUri = env.amqp_url.parse().expect("test AMQP URL");
    let addr = (uri.authority.host.as_str(), uri.authority.port)
        .to_socket_addrs()
        .expect("resolve")
        .next()
        .expect("an address");
    let user = uri.authority.userinfo;
    (addr, user.username, user.password)
}

fn database_url(env: &TestEnv, port: u16, query: &str) -> String {
    let (_, user) = postgres_of(env);
    format!("postgres://{user}@127.0.0.1:{port}/{}?{query}", env.name)
}

fn amqps_url(env: &TestEnv, port: u16, ca: &TestCa) -> String {
    let (_, user, password) = rabbitmq_of(env);
    format!(
        "amqps://{user}:{password}@127.0.0.1:{port}/{}?cacertfile={}",
        env.name,
        ca.ca_file().display()
    )
}

async fn select_one(url: &DatabaseUrl) -> Result<(), String> {
    let (client, connection) = url
        .connect()
        .await
        .map_err(|e| icon_store::pool::source_chain(&e))?;
    tokio::spawn(connection);
    client
        .simple_query("SELECT 1")
        .await
        .map(|_| ())
        .map_err(|e| icon_store::pool::source_chain(&e))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkout_completes_with_every_connection_over_verified_tls() {
    let env = TestEnv::create().await;
    let ca = TestCa::new("servers");
    let server = ca.server_config(&["localhost", "127.0.0.1"]);
    let (pg, _) = postgres_of(&env);
    let (rabbit, _, _) = rabbitmq_of(&env);
    let pg_tls = TlsTerminator::postgres(server.clone(), pg).await;
    let amqp_tls = TlsTerminator::amqp(server, rabbit).await;
    let db_url = database_url(
        &env,
        pg_tls.port(),
        &format!("sslmode=verify-full&sslrootcert={}", ca.ca_file().display()),
    );
    let amqp_url = amqps_url(&env, amqp_tls.port(), &ca);

    let app = TestApp::spawn_on(
        env,
        Options {
            extra: vec![("ICON_DATABASE_URL", db_url), ("ICON_AMQP_URL", amqp_url)],
            ..Options::default()
        },
    )
    .await;
    let sim = Sim::start().await;
    app.register_retailer("acme", &sim.order_url("acme")).await;
    let cart = app.cart_with("alice", &[("acme", "dress-1")]).await;
    let receiver = Receiver::start(vec![], None).await;
    let r = app.checkout("alice", cart, Some(&receiver.url)).await;
    assert_eq!(r.status, 202, "{r:?}");
    let id = r.json["checkout_id"]
        .as_str()
        .expect("checkout_id")
        .to_owned();

    // The worker (RabbitMQ, PostgreSQL) placed the order, the notifier delivered the callback:
    // every hop went through the terminators, which take nothing but TLS.
    let seen = receiver.wait_for(1, Duration::from_secs(30)).await;
    assert_eq!(seen[0].body["status"], "completed");
    let view = app
        .wait_for_checkout("alice", &id, "callback delivered", |c| {
            c["callback"]["state"] == "delivered"
        })
        .await;
    assert_eq!(view["status"], "completed");
    assert_eq!(sim.orders().await.len(), 1);

    // The outbox relays' LISTEN connections are on this database too, and the only way to it
    // for the services was through the terminator, which takes nothing but TLS.
    let db = app.env.db().await;
    eventually(
        "an outbox LISTEN connection",
        Duration::from_secs(10),
        || async {
            let listening: i64 = db
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = $1 AND query LIKE 'LISTEN%'",
                    &[&app.env.name],
                )
                .await
                .expect("pg_stat_activity")
                .get(0);
            (listening >= 1).then_some(())
        },
    )
    .await;

    // Three services with a pool each, plus the relays' LISTEN connections; on the broker the
    // gateway's relay, the worker's consumer and the notifier's consumer at least.
    assert!(
        pg_tls.sessions() >= 3,
        "PostgreSQL TLS sessions: {}",
        pg_tls.sessions()
    );
    assert!(
        amqp_tls.sessions() >= 3,
        "RabbitMQ TLS sessions: {}",
        amqp_tls.sessions()
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_refuses_a_certificate_from_another_ca() {
    let env = TestEnv::create().await;
    let (ours, theirs) = (TestCa::new("ours"), TestCa::new("an impostor's"));
    let impostor = theirs.server_config(&["localhost", "127.0.0.1"]);
    let (pg, _) = postgres_of(&env);
    let (rabbit, _, _) = rabbitmq_of(&env);
    let pg_tls = TlsTerminator::postgres(impostor.clone(), pg).await;
    let amqp_tls = TlsTerminator::amqp(impostor, rabbit).await;

    for mode in ["verify-full", "verify-ca"] {
        let url = DatabaseUrl::parse(&database_url(
            &env,
            pg_tls.port(),
            &format!("sslmode={mode}&sslrootcert={}", ours.ca_file().display()),
        ))
        .expect("valid URL");
        let err = select_one(&url)
            .await
            .expect_err("an unknown CA is refused");
        assert!(
            err.contains("invalid peer certificate") && err.contains("UnknownIssuer"),
            "{mode}: {err}"
        );
    }
    assert_eq!(pg_tls.sessions(), 0, "no session with an unverified server");

    // `require` alone encrypts without checking who answers, as libpq does: it connects.
    let unchecked = DatabaseUrl::parse(&database_url(&env, pg_tls.port(), "sslmode=require"))
        .expect("valid URL");
    select_one(&unchecked)
        .await
        .expect("require without sslrootcert accepts any certificate");
    assert_eq!(pg_tls.sessions(), 1);

    let url = AmqpUrl::parse(&amqps_url(&env, amqp_tls.port(), &ours)).expect("valid URL");
    let err = url
        .connect(ConnectionProperties::default())
        .await
        .expect_err("an unknown CA is refused")
        .to_string();
    assert!(
        err.contains("invalid peer certificate") && err.contains("UnknownIssuer"),
        "{err}"
    );
    assert_eq!(amqp_tls.sessions(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_checks_the_name_and_verify_ca_does_not() {
    let env = TestEnv::create().await;
    let ca = TestCa::new("servers");
    let (pg, _) = postgres_of(&env);
    let elsewhere = TlsTerminator::postgres(ca.server_config(&["db.example.com"]), pg).await;
    let url = |mode: &str| {
        DatabaseUrl::parse(&database_url(
            &env,
            elsewhere.port(),
            &format!("sslmode={mode}&sslrootcert={}", ca.ca_file().display()),
        ))
        .expect("valid URL")
    };

    let err = select_one(&url("verify-full"))
        .await
        .expect_err("a certificate for another host is refused");
    assert!(err.contains("certificate not valid for name"), "{err}");
    select_one(&url("verify-ca"))
        .await
        .expect("verify-ca trusts the chain whatever the name");
    // `require` with a root certificate checks the chain too, like libpq.
    select_one(&url("require"))
        .await
        .expect("require with sslrootcert");
    assert_eq!(elsewhere.sessions(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_refuses_a_server_without_tls_and_prefer_falls_back() {
    let env = TestEnv::create().await;
    let (pg, _) = postgres_of(&env);
    let plain = TlsTerminator::postgres_without_tls(pg).await;

    let required = DatabaseUrl::parse(&database_url(&env, plain.port(), "sslmode=require"))
        .expect("valid URL");
    let err = select_one(&required)
        .await
        .expect_err("no TLS, no connection");
    assert!(err.contains("server does not support TLS"), "{err}");

    let preferred =
        DatabaseUrl::parse(&database_url(&env, plain.port(), "sslmode=prefer")).expect("valid URL");
    select_one(&preferred)
        .await
        .expect("prefer connects in the clear when the server has no TLS");
}

#[test]
fn a_missing_ca_file_stops_the_start_naming_the_variable() {
    let vars = icon_runtime::Env::from_pairs([
        ("ICON_JWT_SECRET", icon_testkit::JWT_SECRET.to_owned()),
        (
            "ICON_DATABASE_URL",
            "postgres://icon:s3cret@db:5432/icon?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem"
                .to_owned(),
        ),
    ]);
    let Err(err) = icon_gateway::GatewaySettings::from_env(&vars) else {
        panic!("no CA file, no start");
    };
    let err = err.to_string();
    assert!(err.starts_with("ICON_DATABASE_URL="), "{err}");
    assert!(err.contains("sslrootcert=/nonexistent/ca.pem"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");

    let vars = icon_runtime::Env::from_pairs([
        ("ICON_JWT_SECRET", icon_testkit::JWT_SECRET.to_owned()),
        (
            "ICON_AMQP_URL",
            "amqps://icon:s3cret@rabbit:5671/%2f?cacertfile=/nonexistent/ca.pem".to_owned(),
        ),
    ]);
    let Err(err) = icon_checkout_worker::WorkerSettings::from_env(&vars) else {
        panic!("no CA file, no start");
    };
    let err = err.to_string();
    assert!(err.starts_with("ICON_AMQP_URL="), "{err}");
    assert!(err.contains("cacertfile=/nonexistent/ca.pem"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
}
