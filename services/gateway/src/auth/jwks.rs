//! RS256 and ES256 tokens from an identity provider, checked against its JWK set
//! (`ICON_JWT_JWKS_URL`).
//!
//! The keys are cached in memory. A token whose `kid` is not in the cache triggers a fetch, as
//! a provider that rotated its key starts signing with one ICON has not seen; but fetches are
//! at least `ICON_JWT_JWKS_MIN_REFRESH` apart, and concurrent misses wait for one fetch, so a
//! flood of made-up `kid`s costs the provider one request per window. The set is also fetched
//! again when it is older than `ICON_JWT_JWKS_MAX_AGE`, and a key the freshly fetched set
//! lacks is refused at once, the request that caused the fetch included: a key the provider
//! withdrew (leaked, say) stops working within that age. Only a failed fetch keeps the old
//! keys, since they are then still the latest the provider published.
//!
//! Each key is bound to one algorithm, from its own JWK: RSA keys verify RS256 only, P-256
//! keys ES256 only, and a JWK whose `alg` says otherwise (or whose `use` is not `sig`) is
//! ignored. A token whose header names another algorithm than its key's is refused, which
//! closes the classic confusions (`alg: none`, HS256 "signed" with the public key).

use super::{claims::Claims, reject, LEEWAY_SECS};
use crate::auth::settings::JwksSettings;
use crate::problem::ApiError;
use icon_http::HttpClient;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// The most a fetch of the set may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

struct Key {
    alg: Algorithm,
    key: DecodingKey,
}

/// The keys as last fetched.
#[derive(Default)]
struct KeySet {
    keys: HashMap<String, Arc<Key>>,
    fetched: Option<Instant>,
}

pub struct Jwks {
    settings: JwksSettings,
    client: HttpClient,
    validation: Validation,
    current: RwLock<Arc<KeySet>>,
    /// When the last fetch was attempted; held while fetching, so misses share one fetch.
    last_attempt: tokio::sync::Mutex<Option<Instant>>,
}

impl Jwks {
    pub fn new(settings: JwksSettings) -> Result<Self, icon_http::TlsError> {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        validation.set_issuer(&[&settings.issuer]);
        validation.set_audience(&[&settings.audience]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        Ok(Self {
            // No network policy: the provider is chosen by the operator, not by callers.
            client: HttpClient::new(None, FETCH_TIMEOUT)?,
            settings,
            validation,
            current: RwLock::default(),
            last_attempt: tokio::sync::Mutex::new(None),
        })
    }

    pub(super) async fn verify(&self, token: &str, header: &Header) -> Result<Claims, ApiError> {
        let kid = header.kid.as_deref().ok_or_else(|| {
            ApiError::unauthorized("the token's header must name its signing key (`kid`)")
        })?;
        let key = self.key(kid).await.ok_or_else(|| {
            ApiError::unauthorized(
                "the token's `kid` is not a signing key of the identity provider; get a new token",
            )
        })?;
        if key.alg != header.alg {
            return Err(ApiError::unauthorized(format!(
                "the token's signing key allows only {:?}",
                key.alg
            )));
        }
        let mut validation = self.validation.clone();
        validation.algorithms = vec![key.alg];
        jsonwebtoken::decode::<Claims>(token, &key.key, &validation)
            .map(|d| d.claims)
            .map_err(|e| {
                reject(
                    &e,
                    "the token's signature does not match the provider's key",
                )
            })
    }

    fn snapshot(&self) -> Arc<KeySet> {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The key named `kid` in the latest fetched set, fetching the set if it is unknown or the
    /// set is stale. A key is only ever taken from the set as it stands after any refresh, so
    /// one the provider withdrew is never used again once ICON has seen the set without it.
    async fn key(&self, kid: &str) -> Option<Arc<Key>> {
        let seen = self.snapshot();
        let stale = seen
            .fetched
            .is_none_or(|t| t.elapsed() >= self.settings.max_age);
        match seen.keys.get(kid) {
            Some(key) if !stale => return Some(key.clone()),
            // Known but stale: refresh only if nobody else is, and never wait for one in
            // flight (until it lands, the cached set is still the latest fetched).
            Some(_) => {
                if let Ok(last) = self.last_attempt.try_lock() {
                    self.refresh(last, &seen).await;
                }
                return self.snapshot().keys.get(kid).cloned();
            }
            None => {}
        }
        let last = self.last_attempt.lock().await;
        self.refresh(last, &seen).await;
        self.snapshot().keys.get(kid).cloned()
    }

    /// Fetches the set unless another task did since `seen` was taken, or the last attempt is
    /// younger than the min-refresh window.
    async fn refresh(
        &self,
        mut last: tokio::sync::MutexGuard<'_, Option<Instant>>,
        seen: &Arc<KeySet>,
    ) {
        if !Arc::ptr_eq(&self.snapshot(), seen) {
            return;
        }
        if last.is_some_and(|t| t.elapsed() < self.settings.min_refresh) {
            return;
        }
        *last = Some(Instant::now());
        match self.fetch().await {
            Ok(keys) => {
                tracing::info!(keys = keys.len(), "fetched the identity provider's keys");
                let fresh = Arc::new(KeySet {
                    keys,
                    fetched: Some(Instant::now()),
                });
                *self
                    .current
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = fresh;
            }
            // The old keys stay: a provider that is briefly down must not log everybody out.
            Err(why) => tracing::warn!(
                url = %self.settings.url,
                "cannot fetch the identity provider's keys: {why}; keeping the cached ones"
            ),
        }
    }

    async fn fetch(&self) -> Result<HashMap<String, Arc<Key>>, String> {
        let resp = self
            .client
            .get(&self.settings.url, &[])
            .await
            .map_err(|e| e.to_string())?;
        if !resp.is_success() {
            return Err(format!("HTTP {}", resp.status));
        }
        let set: JwkSet =
            serde_json::from_slice(&resp.body).map_err(|e| format!("not a JWK set: {e}"))?;
        Ok(set
            .keys
            .iter()
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                let key = usable(jwk)?;
                Some((kid, Arc::new(key)))
            })
            .collect())
    }
}

/// The key with the one algorithm it may verify, or `None` for keys ICON does not use.
fn usable(jwk: &Jwk) -> Option<Key> {
    use jsonwebtoken::jwk::PublicKeyUse;
    if jwk
        .common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != PublicKeyUse::Signature)
    {
        return None;
    }
    let (alg, declared) = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => (Algorithm::RS256, KeyAlgorithm::RS256),
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            (Algorithm::ES256, KeyAlgorithm::ES256)
        }
        _ => return None,
    };
    if jwk.common.key_algorithm.is_some_and(|a| a != declared) {
        return None;
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(Key { alg, key })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwk(v: serde_json::Value) -> Jwk {
        serde_json::from_value(v).unwrap()
    }

    const EC: &str = r#"{"kty":"EC","crv":"P-256","kid":"e",
        "x":"zjub8y7m_QcMImoyMZ_-gwD722CvijqRJZ25DLhTgeE",
        "y":"DI84uRqwgh0J5w8ezD_n2Dc2g77vH5iusX-rSpnaKWo"}"#;

    #[test]
    fn each_key_verifies_one_algorithm() {
        let mut ec: serde_json::Value = serde_json::from_str(EC).unwrap();
        assert_eq!(usable(&jwk(ec.clone())).unwrap().alg, Algorithm::ES256);
        ec["alg"] = "ES384".into();
        assert!(
            usable(&jwk(ec.clone())).is_none(),
            "alg contradicts the curve"
        );
        ec["alg"] = "ES256".into();
        ec["use"] = "enc".into();
        assert!(
            usable(&jwk(ec)).is_none(),
            "an encryption key signs nothing"
        );
        let oct = jwk(serde_json::json!({"kty": "oct", "kid": "h", "k": "c2VjcmV0"}));
        assert!(
            usable(&oct).is_none(),
            "symmetric keys from a JWKS are never trusted"
        );
    }
}
