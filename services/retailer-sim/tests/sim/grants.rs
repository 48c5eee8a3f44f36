//! The fake FCM's OAuth2 token endpoint, `/oauth2/token`, and its log, `/fcm/grants`.

use crate::helpers::{claims, grant, grant_with, service_account, sign, TestSim};
use hyper::StatusCode;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

#[tokio::test]
async fn a_grant_signed_with_the_demo_key_gets_a_token() {
    let sim = TestSim::start().await;
    let reply = grant(&sim, &sign(&claims(&sim))).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.body["token_type"], "Bearer");
    assert_eq!(reply.body["expires_in"], 3600);
    let token = reply.body["access_token"].as_str().expect("a token");
    assert!(token.starts_with("sim-at-"), "{token}");
    assert_eq!(reply.headers["cache-control"], "no-store");

    let grants = sim.log("/fcm/grants").await;
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0]["ok"], true);
    assert_eq!(grants[0]["iss"], service_account()["client_email"]);
    assert_eq!(grants[0]["access_token"], token);
    assert_eq!(grants[0]["reason"], Value::Null);
    assert!(grants[0]["received_at"].is_string());
}

#[tokio::test]
async fn bad_grants_are_refused_with_the_reason() {
    let sim = TestSim::start().await;
    let now = chrono::Utc::now().timestamp();
    let edited = |edit: &dyn Fn(&mut Value)| {
        let mut claims = claims(&sim);
        edit(&mut claims);
        sign(&claims)
    };
    let tampered = {
        // Another payload under the first one's signature.
        let good = sign(&claims(&sim));
        let other = edited(&|c| c["iss"] = json!("intruder@evil.test"));
        let [_, payload, _]: [&str; 3] = other
            .split('.')
            .collect::<Vec<_>>()
            .try_into()
            .expect("3 parts");
        let parts: Vec<&str> = good.split('.').collect();
        format!("{}.{payload}.{}", parts[0], parts[2])
    };
    let hs256 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(&sim),
        &EncodingKey::from_secret(b"a shared secret"),
    )
    .expect("signed");
    let expired = format!("s ago (exp {})", now - 3600);
    let cases = [
        (tampered, "signature does not match"),
        (
            edited(&|c| c["aud"] = json!("https://oauth2.googleapis.com/token")),
            "aud https://oauth2.googleapis.com/token is not this token endpoint",
        ),
        (
            edited(&|c| c["scope"] = json!("https://www.googleapis.com/auth/cloud-platform")),
            "does not include https://www.googleapis.com/auth/firebase.messaging",
        ),
        (
            edited(&|c| {
                c["iat"] = json!(now - 7200);
                c["exp"] = json!(now - 3600);
            }),
            // Not the seconds since: a second may tick between signing and checking.
            expired.as_str(),
        ),
        (
            // From the claims' own `iat`, not this test's clock: a second may tick between.
            edited(&|c| c["exp"] = json!(c["iat"].as_i64().unwrap_or(now) + 7200)),
            "exp - iat is 7200s",
        ),
        (hs256, "alg HS256 is not accepted: use RS256"),
    ];
    for (assertion, why) in &cases {
        let reply = grant(&sim, assertion).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{why}: {reply:?}");
        assert_eq!(reply.body["error"], "invalid_grant", "{why}");
        let description = reply.body["error_description"]
            .as_str()
            .expect("a description");
        assert!(
            description.contains(why),
            "{description:?} should say {why:?}"
        );
    }

    let wrong_type = grant_with(&sim, "client_credentials", &sign(&claims(&sim))).await;
    assert_eq!(wrong_type.status, StatusCode::BAD_REQUEST);
    assert_eq!(wrong_type.body["error"], "unsupported_grant_type");

    let grants = sim.log("/fcm/grants").await;
    assert_eq!(grants.len(), cases.len() + 1);
    for (record, (_, why)) in grants.iter().zip(&cases) {
        assert_eq!(record["ok"], false);
        assert!(
            record["reason"].as_str().expect("a reason").contains(why),
            "{record}"
        );
        assert_eq!(record["access_token"], Value::Null);
    }
    // Who asked is recorded even when refused (as claimed, for the tampered one).
    assert_eq!(grants[0]["iss"], "intruder@evil.test");
    assert_eq!(grants[1]["iss"], service_account()["client_email"]);
}
