//! Tokens, scopes and rate limits, tried from outside: a real identity provider (a JWK set
//! served on 127.0.0.1 by [`Provider`]), shoppers and partners who try each other's resources,
//! and clients that send too much.

mod provider;
mod rate_limit;
mod scopes;

use actix_web::{web, App, HttpResponse, HttpServer};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

pub const ISSUER: &str = "https://idp.icon.test/";
pub const AUDIENCE: &str = "icon-api";

/// The fixture keys (see `fixtures/README.md`): private PEM and public JWK by `kid`.
fn fixture(kid: &str) -> (&'static str, &'static str) {
    match kid {
        "rsa-1" => (
            include_str!("fixtures/rsa-1.pem"),
            include_str!("fixtures/rsa-1.jwk.json"),
        ),
        "rsa-2" => (
            include_str!("fixtures/rsa-2.pem"),
            include_str!("fixtures/rsa-2.jwk.json"),
        ),
        "ec-1" => (
            include_str!("fixtures/ec-1.pem"),
            include_str!("fixtures/ec-1.jwk.json"),
        ),
        other => panic!("no fixture key {other}"),
    }
}

/// An identity provider: serves a JWK set at `url` and counts how often it is fetched.
pub struct Provider {
    pub url: String,
    keys: Arc<Mutex<Vec<Value>>>,
    fetches: Arc<AtomicUsize>,
    handle: actix_web::dev::ServerHandle,
}

impl Provider {
    /// Starts serving the public halves of the fixture keys `kids`.
    pub async fn start(kids: &[&str]) -> Self {
        let keys = Arc::new(Mutex::new(vec![]));
        let fetches = Arc::new(AtomicUsize::new(0));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind provider");
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().unwrap()
        );
        let (k, f) = (keys.clone(), fetches.clone());
        let server = HttpServer::new(move || {
            let (k, f) = (k.clone(), f.clone());
            App::new().route(
                "/.well-known/jwks.json",
                web::get().to(move || {
                    f.fetch_add(1, Ordering::SeqCst);
                    let body = json!({ "keys": *k.lock().unwrap() });
                    async move { HttpResponse::Ok().json(body) }
                }),
            )
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .expect("listen")
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        let provider = Self {
            url,
            keys,
            fetches,
            handle,
        };
        provider.publish(kids);
        provider
    }

    /// Replaces the published set (a key rotation).
    pub fn publish(&self, kids: &[&str]) {
        *self.keys.lock().unwrap() = kids
            .iter()
            .map(|kid| serde_json::from_str(fixture(kid).1).unwrap())
            .collect();
    }

    /// How many times the set was fetched.
    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    /// The gateway settings that trust this provider.
    pub fn settings(&self, min_refresh: &str) -> Vec<(&'static str, String)> {
        vec![
            ("ICON_JWT_JWKS_URL", self.url.clone()),
            ("ICON_JWT_ISSUER", ISSUER.into()),
            ("ICON_JWT_AUDIENCE", AUDIENCE.into()),
            ("ICON_JWT_JWKS_MIN_REFRESH", min_refresh.into()),
        ]
    }

    pub async fn stop(self) {
        self.handle.stop(false).await;
    }
}

/// Claims a token from the provider carries for ICON, valid for an hour.
pub fn claims(sub: &str) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 3600})
}

/// Signs `claims` with the fixture key `kid`, in its algorithm, naming it in the header.
pub fn sign(kid: &str, claims: &Value) -> String {
    sign_as(kid, kid, claims)
}

/// Signs with the fixture key `key` but names `kid` in the header (a lie, or a rotation).
pub fn sign_as(key: &str, kid: &str, claims: &Value) -> String {
    let pem = fixture(key).0.as_bytes();
    let (alg, key) = if key.starts_with("rsa") {
        (Algorithm::RS256, EncodingKey::from_rsa_pem(pem).unwrap())
    } else {
        (Algorithm::ES256, EncodingKey::from_ec_pem(pem).unwrap())
    };
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

/// A JWT with a raw header and payload and `signature` (base64url) as given.
pub fn forge(header: &Value, claims: &Value, signature: &[u8]) -> String {
    let b64 = |b: &[u8]| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    };
    format!(
        "{}.{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes()),
        b64(signature)
    )
}
