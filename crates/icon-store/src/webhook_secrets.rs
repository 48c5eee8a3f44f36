//! Webhook signing secrets, one per [`Holder`]: per owner (the `owner` of carts and checkouts,
//! whose callbacks the notifier signs; table `webhook_secrets`) and per retailer (whose requests
//! from the checkout worker are signed; table `retailer_secrets`). Both behave alike: created on
//! first use, by whichever of the gateway (`GET …/webhook-secret`, or a retailer's registration)
//! and the signing service (a call due before anyone asked) comes first; rotated by the gateway,
//! after which the previous secret still signs until the grace ends.
//!
//! Rows hold secrets sealed with [`SecretsKey`] (see [`crate::secrets`]); this module seals and
//! opens them, so no caller ever handles ciphertext or writes a plaintext.

use crate::secrets::{SecretsKey, SigningSecrets, WebhookSecret};
use crate::{GenericClient, StoreError};
use chrono::{DateTime, Utc};
use icon_domain::{RetailerId, UserId};

/// Whose secret.
#[derive(Debug, Clone, Copy)]
pub enum Holder<'a> {
    /// An owner of checkouts: signs their callbacks.
    Owner(&'a UserId),
    /// A retailer: signs ICON's requests to it.
    Retailer(&'a RetailerId),
}

/// The statements of one holder's table.
struct Statements {
    select: &'static str,
    insert: &'static str,
    rotate: &'static str,
}

/// The statements of table `$table` keyed by `$key`; both tables have the same columns.
macro_rules! statements {
    ($table:literal, $key:literal) => {
        Statements {
            select: concat!(
                "SELECT current, created_at,
                        CASE WHEN previous_until > now() THEN previous_until END AS previous_until
                 FROM ", $table, " WHERE ", $key, " = $1"
            ),
            insert: concat!(
                "INSERT INTO ", $table, " (", $key, ", current) VALUES ($1, $2)
                 ON CONFLICT (", $key, ") DO NOTHING
                 RETURNING current, created_at, previous_until"
            ),
            rotate: concat!(
                "INSERT INTO ", $table, " (", $key, ", current) VALUES ($1, $2)
                 ON CONFLICT (", $key, ") DO UPDATE
                 SET previous = ", $table, ".current,
                     previous_until = now() + make_interval(secs => $3),
                     current = EXCLUDED.current, rotated_at = now()
                 RETURNING current, created_at, previous_until"
            ),
        }
    };
}

const OWNER_STATEMENTS: Statements = statements!("webhook_secrets", "owner");
const RETAILER_STATEMENTS: Statements = statements!("retailer_secrets", "retailer_id");

impl Holder<'_> {
    fn statements(&self) -> &'static Statements {
        match self {
            Self::Owner(_) => &OWNER_STATEMENTS,
            Self::Retailer(_) => &RETAILER_STATEMENTS,
        }
    }

    /// The key column's value.
    fn key(&self) -> &str {
        match self {
            Self::Owner(owner) => owner.as_str(),
            Self::Retailer(retailer) => retailer.as_str(),
        }
    }

    /// What a seal is bound to (its associated data): the owner as it is (so rows written
    /// before retailers had secrets still open), NUL then `retailer:<id>` for a retailer. No
    /// owner can be that (owner ids hold no control character), so a shopper whose `sub` is
    /// `retailer:acme` cannot have a row that, copied into `retailer_secrets`, opens as acme's
    /// and lets them forge ICON's requests to acme.
    fn sealed_for(&self) -> String {
        match self {
            Self::Owner(owner) => owner.as_str().to_owned(),
            Self::Retailer(retailer) => retailer_seal_binding(retailer),
        }
    }
}

fn retailer_seal_binding(retailer: &RetailerId) -> String {
    format!("\0retailer:{}", retailer.as_str())
}

/// A holder's secret as the holder sees it.
#[derive(Debug, Clone)]
pub struct OwnerSecret {
    pub secret: WebhookSecret,
    pub created_at: DateTime<Utc>,
    /// After a rotation: until when the previous secret still signs callbacks too.
    pub previous_until: Option<DateTime<Utc>>,
}

/// What the notifier reads with a claimed callback attempt, and the worker with a claimed pass
/// for each order, still sealed: the holder, and its secrets as stored (`current` is `None`
/// while the holder has none yet; `previous` only while its grace lasts). Opened with
/// [`SealedSecrets::open`] right before signing.
#[derive(Clone)]
pub struct SealedSecrets {
    /// What the seals are bound to: a checkout owner as it is, or NUL and `retailer:<id>` (see
    /// [`Holder`]).
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

    /// A retailer's, from the columns [`RETAILER_CLAIM_COLUMNS`] of a pass's claim.
    pub(crate) fn retailer_from_claim_row(retailer: &RetailerId, r: &tokio_postgres::Row) -> Self {
        Self {
            owner: retailer_seal_binding(retailer),
            current: r.get("secret_current"),
            previous: r.get("secret_previous"),
        }
    }

    /// No secret yet (a test's order, say).
    pub fn none(retailer: &RetailerId) -> Self {
        Self {
            owner: retailer_seal_binding(retailer),
            current: None,
            previous: None,
        }
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

/// The join a pass's claim adds for its orders `o`: the retailer's secrets, one primary-key
/// lookup per order in the statement that already reads the orders, so signing costs the worker
/// no round trip of its own.
pub(crate) const RETAILER_CLAIM_JOIN: &str =
    "LEFT JOIN retailer_secrets s ON s.retailer_id = o.retailer_id";

/// The columns [`RETAILER_CLAIM_JOIN`] yields.
pub(crate) const RETAILER_CLAIM_COLUMNS: &str = "s.current AS secret_current,
     CASE WHEN s.previous_until > now() THEN s.previous END AS secret_previous";

/// `holder`'s secret, created now if it has none. Concurrent first uses agree on one secret:
/// the insert that loses the race reads the winner's.
///
/// A retailer's secret needs the retailer registered (a foreign key): ask only for one that is.
#[tracing::instrument(name = "store.webhook_secret", skip_all, fields(holder = ?holder))]
pub async fn get_or_create(
    db: &impl GenericClient,
    key: &SecretsKey,
    holder: Holder<'_>,
) -> Result<OwnerSecret, StoreError> {
    let sql = holder.statements();
    let select = db.prepare_cached(sql.select).await?;
    let insert = db.prepare_cached(sql.insert).await?;
    let id = holder.key();
    // Read, else insert, else (another inserted meanwhile) read again in a fresh snapshot.
    for _ in 0..2 {
        if let Some(row) = db.query_opt(&select, &[&id]).await? {
            return from_row(key, holder, &row);
        }
        let sealed = key.seal(&holder.sealed_for(), &WebhookSecret::generate());
        if let Some(row) = db.query_opt(&insert, &[&id, &sealed]).await? {
            tracing::info!("webhook secret created");
            return from_row(key, holder, &row);
        }
    }
    Err(StoreError::Corrupt(
        "a webhook secret was neither found nor created".into(),
    ))
}

/// Replaces `holder`'s secret with a new one (creating it if there was none); the one it
/// replaces still signs for `grace`. Only one previous secret is kept: rotating again within
/// the grace drops the oldest at once.
#[tracing::instrument(name = "store.rotate_webhook_secret", skip_all, fields(holder = ?holder))]
pub async fn rotate(
    db: &impl GenericClient,
    key: &SecretsKey,
    holder: Holder<'_>,
    grace: std::time::Duration,
) -> Result<OwnerSecret, StoreError> {
    let stmt = db.prepare_cached(holder.statements().rotate).await?;
    let sealed = key.seal(&holder.sealed_for(), &WebhookSecret::generate());
    let row = db
        .query_one(&stmt, &[&holder.key(), &sealed, &grace.as_secs_f64()])
        .await?;
    tracing::info!("webhook secret rotated");
    from_row(key, holder, &row)
}

/// What a retailer's events must be signed with: its current secret, and the previous one while
/// a rotation's grace lasts (either verifies). `None` if the retailer has no secret yet, in
/// which case nothing it sends can verify.
pub async fn retailer_verifying(
    db: &impl GenericClient,
    key: &SecretsKey,
    retailer: &RetailerId,
) -> Result<Option<SigningSecrets>, StoreError> {
    let stmt = db
        .prepare_cached(&format!(
            "SELECT {RETAILER_CLAIM_COLUMNS} FROM retailer_secrets s WHERE s.retailer_id = $1"
        ))
        .await?;
    match db.query_opt(&stmt, &[&retailer.as_str()]).await? {
        Some(row) => SealedSecrets::retailer_from_claim_row(retailer, &row).open(key),
        None => Ok(None),
    }
}

fn from_row(
    key: &SecretsKey,
    holder: Holder<'_>,
    row: &tokio_postgres::Row,
) -> Result<OwnerSecret, StoreError> {
    let sealed: Vec<u8> = row.get("current");
    Ok(OwnerSecret {
        secret: key
            .open(&holder.sealed_for(), &sealed)
            .map_err(crate::error::corrupt)?,
        created_at: row.get("created_at"),
        previous_until: row.get("previous_until"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shopper may call themselves `retailer:acme`; their secret's row still does not open
    /// as the retailer's.
    #[test]
    fn no_owner_seals_as_a_retailer() {
        let acme = RetailerId::parse("acme".to_owned()).unwrap();
        let owner = UserId::parse("retailer:acme").unwrap();
        let (retailer, owner) = (Holder::Retailer(&acme), Holder::Owner(&owner));
        assert_ne!(retailer.sealed_for(), owner.sealed_for());
        assert!(UserId::parse(retailer.sealed_for()).is_err());
        let key = SecretsKey::parse(&"11".repeat(32)).unwrap();
        let sealed = key.seal(&owner.sealed_for(), &WebhookSecret::generate());
        assert!(key.open(&retailer.sealed_for(), &sealed).is_err());
    }
}
