//! Webhook signing secrets, one per owner (the `owner` of carts and checkouts): created on first
//! use, by whichever of the gateway (`GET /webhook-secret`) and the notifier (a callback due
//! before the owner ever asked) comes first; rotated by the gateway, after which the previous
//! secret still signs until the grace ends.
//!
//! Rows hold secrets sealed with [`SecretsKey`] (see [`crate::secrets`]); this module seals and
//! opens them, so no caller ever handles ciphertext or writes a plaintext.

use crate::secrets::{SecretsKey, SigningSecrets, WebhookSecret};
use crate::{GenericClient, StoreError};
use chrono::{DateTime, Utc};
use icon_domain::UserId;

/// An owner's secret as the owner sees it.
#[derive(Debug, Clone)]
pub struct OwnerSecret {
    pub secret: WebhookSecret,
    pub created_at: DateTime<Utc>,
    /// After a rotation: until when the previous secret still signs callbacks too.
    pub previous_until: Option<DateTime<Utc>>,
}

/// What the notifier reads with a claimed callback attempt, still sealed: the owner, and its
/// secrets as stored (`current` is `None` while the owner has none yet; `previous` only while
/// its grace lasts). Opened with [`SealedSecrets::open`] right before signing.
#[derive(Clone)]
pub struct SealedSecrets {
    pub owner: String,
    pub current: Option<Vec<u8>>,
    pub previous: Option<Vec<u8>>,
}

impl std::fmt::Debug for SealedSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedSecrets")
            .field("owner", &self.owner)
            .field("current", &self.current.as_ref().map(|_| "***"))
            .field("previous", &self.previous.as_ref().map(|_| "***"))
            .finish()
    }
}

impl SealedSecrets {
    /// The secrets to sign with; `None` when the owner has no secret yet (see
    /// [`get_or_create`]).
    pub fn open(&self, key: &SecretsKey) -> Result<Option<SigningSecrets>, StoreError> {
        let Some(current) = &self.current else {
            return Ok(None);
        };
        let open = |sealed: &[u8]| key.open(&self.owner, sealed).map_err(crate::error::corrupt);
        Ok(Some(SigningSecrets {
            current: open(current)?,
            previous: self.previous.as_deref().map(open).transpose()?,
        }))
    }

    /// From the columns `signer` (the owner; NULL for rows that are not callbacks),
    /// `secret_current` and `secret_previous` of a claim statement.
    pub(crate) fn from_claim_row(r: &tokio_postgres::Row) -> Option<Self> {
        let owner: Option<String> = r.get("signer");
        owner.map(|owner| Self {
            owner,
            current: r.get("secret_current"),
            previous: r.get("secret_previous"),
        })
    }
}

/// The join that claim statements add for callbacks: the owner of the claimed row `c`'s
/// checkout and its secrets, as the columns [`SealedSecrets::from_claim_row`] reads. Two
/// primary-key lookups per callback (6 buffer hits with 20,000 checkouts, on top of the 21 the
/// claim of a callback and an e-mail takes), none for other channels: their NULL key ends the
/// index scan before it starts, where `ON c.channel = 'callback' AND ...` would still probe.
pub(crate) const CLAIM_JOIN: &str = "LEFT JOIN checkouts k
         ON k.id = CASE WHEN c.channel = 'callback' THEN c.checkout_id END
     LEFT JOIN webhook_secrets s ON s.owner = k.owner";

/// The columns [`CLAIM_JOIN`] yields.
pub(crate) const CLAIM_COLUMNS: &str = "k.owner AS signer, s.current AS secret_current,
     CASE WHEN s.previous_until > now() THEN s.previous END AS secret_previous";

/// `owner`'s secret, created now if it has none. Concurrent first uses agree on one secret:
/// the insert that loses the race reads the winner's.
#[tracing::instrument(name = "store.webhook_secret", skip_all, fields(owner = %owner))]
pub async fn get_or_create(
    db: &impl GenericClient,
    key: &SecretsKey,
    owner: &UserId,
) -> Result<OwnerSecret, StoreError> {
    let select = db
        .prepare_cached(
            "SELECT current, created_at,
                    CASE WHEN previous_until > now() THEN previous_until END AS previous_until
             FROM webhook_secrets WHERE owner = $1",
        )
        .await?;
    let insert = db
        .prepare_cached(
            "INSERT INTO webhook_secrets (owner, current) VALUES ($1, $2)
             ON CONFLICT (owner) DO NOTHING
             RETURNING current, created_at, previous_until",
        )
        .await?;
    // Read, else insert, else (another inserted meanwhile) read again in a fresh snapshot.
    for _ in 0..2 {
        if let Some(row) = db.query_opt(&select, &[&owner.as_str()]).await? {
            return from_row(key, owner, &row);
        }
        let sealed = key.seal(owner.as_str(), &WebhookSecret::generate());
        if let Some(row) = db.query_opt(&insert, &[&owner.as_str(), &sealed]).await? {
            tracing::info!("webhook secret created");
            return from_row(key, owner, &row);
        }
    }
    Err(StoreError::Corrupt(
        "a webhook secret was neither found nor created".into(),
    ))
}

/// Replaces `owner`'s secret with a new one (creating it if there was none); the one it
/// replaces still signs for `grace`. Only one previous secret is kept: rotating again within
/// the grace drops the oldest at once.
#[tracing::instrument(name = "store.rotate_webhook_secret", skip_all, fields(owner = %owner))]
pub async fn rotate(
    db: &impl GenericClient,
    key: &SecretsKey,
    owner: &UserId,
    grace: std::time::Duration,
) -> Result<OwnerSecret, StoreError> {
    let stmt = db
        .prepare_cached(
            "INSERT INTO webhook_secrets (owner, current) VALUES ($1, $2)
             ON CONFLICT (owner) DO UPDATE
             SET previous = webhook_secrets.current,
                 previous_until = now() + make_interval(secs => $3),
                 current = EXCLUDED.current, rotated_at = now()
             RETURNING current, created_at, previous_until",
        )
        .await?;
    let sealed = key.seal(owner.as_str(), &WebhookSecret::generate());
    let row = db
        .query_one(&stmt, &[&owner.as_str(), &sealed, &grace.as_secs_f64()])
        .await?;
    tracing::info!("webhook secret rotated");
    from_row(key, owner, &row)
}

fn from_row(
    key: &SecretsKey,
    owner: &UserId,
    row: &tokio_postgres::Row,
) -> Result<OwnerSecret, StoreError> {
    let sealed: Vec<u8> = row.get("current");
    Ok(OwnerSecret {
        secret: key
            .open(owner.as_str(), &sealed)
            .map_err(crate::error::corrupt)?,
        created_at: row.get("created_at"),
        previous_until: row.get("previous_until"),
    })
}
