//! Google service-account credentials and the OAuth2 access tokens FCM wants.
//!
//! The notifier signs a JWT with the service account's private key (RS256; `iss` = its
//! `client_email`, `aud` = its `token_uri`, scope `firebase.messaging`) and trades it at
//! `token_uri` for a bearer token (RFC 7523's JWT-bearer grant). The token is cached and renewed
//! a few minutes before it expires; the cache sits behind one async lock, so however many pushes
//! run at once, one grant serves them all. A 401 from FCM renews it early, once per token.

use icon_http::{HttpClient, Url};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// The OAuth2 scope FCM HTTP v1 requires.
pub const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// How long a signed grant is valid (Google's maximum).
const ASSERTION_TTL: u64 = 3600;
/// Renew this long before the token expires (or at half its life, if shorter).
const RENEW_MARGIN: Duration = Duration::from_secs(300);

/// The fields of a service-account key file that the notifier uses.
#[derive(Clone, Deserialize)]
pub struct ServiceAccount {
    pub project_id: String,
    pub client_email: String,
    pub private_key: String,
    #[serde(default)]
    pub private_key_id: Option<String>,
    pub token_uri: String,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("project_id", &self.project_id)
            .field("client_email", &self.client_email)
            .field("token_uri", &self.token_uri)
            .finish_non_exhaustive()
    }
}

impl ServiceAccount {
    /// Reads and checks a key file; the error says what is wrong with it (never the key).
    pub fn load(path: &str) -> Result<(Self, EncodingKey, Url), String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
        let account: ServiceAccount = serde_json::from_str(&text).map_err(|e| {
            format!("{path} is not a service-account key file (project_id, client_email, private_key, token_uri): {e}")
        })?;
        let key = EncodingKey::from_rsa_pem(account.private_key.as_bytes())
            .map_err(|e| format!("{path}: private_key is not an RSA key in PEM: {e}"))?;
        let token_uri = Url::parse(&account.token_uri)
            .map_err(|e| format!("{path}: token_uri is not a URL: {e}"))?;
        if account.project_id.is_empty() || account.client_email.is_empty() {
            return Err(format!(
                "{path}: project_id and client_email must not be empty"
            ));
        }
        Ok((account, key, token_uri))
    }
}

#[derive(Serialize)]
struct GrantClaims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// A bearer token and its serial number (to renew only the token a 401 was about).
#[derive(Debug, Clone)]
pub struct AccessToken {
    pub value: String,
    pub serial: u64,
}

struct Cached {
    token: AccessToken,
    renew_at: Instant,
}

#[derive(Debug, thiserror::Error)]
#[error("no FCM access token: {0}")]
pub struct GrantError(pub String);

/// The cached access token and how to get a new one.
pub struct AccessTokens {
    account: ServiceAccount,
    key: EncodingKey,
    token_uri: Url,
    http: HttpClient,
    cache: Mutex<(Option<Cached>, u64)>,
}

impl AccessTokens {
    pub fn new(
        account: ServiceAccount,
        key: EncodingKey,
        token_uri: Url,
        http: HttpClient,
    ) -> Self {
        Self {
            account,
            key,
            token_uri,
            http,
            cache: Mutex::new((None, 0)),
        }
    }

    pub fn project_id(&self) -> &str {
        &self.account.project_id
    }

    /// The current token, granting a new one if there is none or it is about to expire.
    pub async fn get(&self) -> Result<AccessToken, GrantError> {
        let mut cache = self.cache.lock().await;
        if let Some(c) = &cache.0 {
            if Instant::now() < c.renew_at {
                return Ok(c.token.clone());
            }
        }
        self.grant(&mut cache).await
    }

    /// A new token after FCM refused `rejected` (401); if another push renewed it already, that
    /// newer token.
    pub async fn renew(&self, rejected: &AccessToken) -> Result<AccessToken, GrantError> {
        let mut cache = self.cache.lock().await;
        if let Some(c) = &cache.0 {
            if c.token.serial != rejected.serial && Instant::now() < c.renew_at {
                return Ok(c.token.clone());
            }
        }
        self.grant(&mut cache).await
    }

    async fn grant(&self, cache: &mut (Option<Cached>, u64)) -> Result<AccessToken, GrantError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let claims = GrantClaims {
            iss: &self.account.client_email,
            scope: SCOPE,
            aud: &self.account.token_uri,
            iat: now,
            exp: now + ASSERTION_TTL,
        };
        let mut header = Header::new(Algorithm::RS256);
        header.kid = self.account.private_key_id.clone();
        let assertion = jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| GrantError(format!("cannot sign the grant: {e}")))?;
        let asked = Instant::now();
        let resp = self
            .http
            .post_form(
                &self.token_uri,
                &[],
                &[
                    ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                    ("assertion", &assertion),
                ],
            )
            .await
            .map_err(|e| GrantError(format!("token_uri {}: {e}", host(&self.token_uri))))?;
        if !resp.is_success() {
            let body = String::from_utf8_lossy(&resp.body);
            let body: String = body.chars().take(300).collect();
            return Err(GrantError(format!(
                "token_uri {} answered {}: {body}",
                host(&self.token_uri),
                resp.status
            )));
        }
        let parsed: TokenResponse = serde_json::from_slice(&resp.body).map_err(|e| {
            GrantError(format!(
                "token_uri answered 2xx without an access_token: {e}"
            ))
        })?;
        let lifetime = Duration::from_secs(parsed.expires_in.unwrap_or(3600));
        let margin = RENEW_MARGIN.min(lifetime / 2);
        cache.1 += 1;
        let token = AccessToken {
            value: parsed.access_token,
            serial: cache.1,
        };
        tracing::info!(serial = token.serial, expires_in = ?lifetime, "FCM access token granted");
        cache.0 = Some(Cached {
            token: token.clone(),
            renew_at: asked + lifetime - margin,
        });
        Ok(token)
    }
}

fn host(url: &Url) -> String {
    url.host_str().unwrap_or("?").to_owned()
}
