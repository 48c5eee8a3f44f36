//! The device registry: which push tokens each shopper registered, on which platform.
//!
//! A token identifies one app install, so it belongs to one user at a time: registering it
//! again from another user moves it (the latest sign-in on the device wins). Each user keeps at
//! most a bounded number of devices; registering one more drops the least recently registered,
//! so a client that registers a fresh token on every start cannot grow the table without bound.

use crate::{error::corrupt, Conn, GenericClient, StoreError};
use chrono::{DateTime, Utc};
use icon_domain::{CheckoutId, DeviceToken, Platform, UserId};

#[derive(Debug, Clone)]
pub struct Device {
    pub token: DeviceToken,
    pub owner: String,
    pub platform: Platform,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn from_row(r: &tokio_postgres::Row) -> Result<Device, StoreError> {
    Ok(Device {
        token: DeviceToken::parse(r.get::<_, String>("token")).map_err(corrupt)?,
        owner: r.get("owner"),
        platform: Platform::parse(r.get("platform")).map_err(corrupt)?,
        created_at: r.get("created_at"),
        updated_at: r.get("updated_at"),
    })
}

/// What [`register`] did.
#[derive(Debug, Clone)]
pub struct Registered {
    pub device: Device,
    /// The token was not registered to this user before (new, or moved from another user).
    pub created: bool,
    /// Devices of this user dropped to stay within the limit, oldest first.
    pub dropped: u64,
}

/// Registers `token` for `owner` (moving it from any other user) and keeps the user's newest
/// `max_per_user` devices.
#[tracing::instrument(name = "store.register_device", skip_all, fields(user = %owner, platform = %platform))]
pub async fn register(
    conn: &mut Conn,
    owner: &UserId,
    token: &DeviceToken,
    platform: Platform,
    max_per_user: u32,
) -> Result<Registered, StoreError> {
    let tx = conn.transaction().await?;
    let stmt = tx
        .prepare_cached(
            "SELECT owner FROM devices WHERE token_hash = sha256($1::text::bytea) FOR UPDATE",
        )
        .await?;
    let before: Option<String> = tx
        .query_opt(&stmt, &[&token.as_str()])
        .await?
        .map(|r| r.get(0));
    let stmt = tx
        .prepare_cached(
            "INSERT INTO devices (token, owner, platform) VALUES ($1, $2, $3)
             ON CONFLICT (token_hash) DO UPDATE
               SET owner = excluded.owner, platform = excluded.platform, updated_at = now(),
                   created_at = CASE WHEN devices.owner = excluded.owner
                                     THEN devices.created_at ELSE now() END
             RETURNING *",
        )
        .await?;
    let row = tx
        .query_one(
            &stmt,
            &[&token.as_str(), &owner.as_str(), &platform.as_str()],
        )
        .await?;
    let device = from_row(&row)?;
    let stmt = tx
        .prepare_cached(
            "DELETE FROM devices WHERE owner = $1 AND token_hash IN (
                 SELECT token_hash FROM devices WHERE owner = $1
                 ORDER BY updated_at DESC, created_at DESC OFFSET $2)",
        )
        .await?;
    let dropped = tx
        .execute(&stmt, &[&owner.as_str(), &i64::from(max_per_user)])
        .await?;
    tx.commit().await?;
    Ok(Registered {
        device,
        created: before.as_deref() != Some(owner.as_str()),
        dropped,
    })
}

/// Removes `owner`'s registration of `token`; false if it had none (another user's
/// registration of the same token is left alone).
pub async fn remove(
    db: &impl GenericClient,
    owner: &UserId,
    token: &DeviceToken,
) -> Result<bool, StoreError> {
    let stmt = db
        .prepare_cached(
            "DELETE FROM devices WHERE token_hash = sha256($1::text::bytea) AND owner = $2",
        )
        .await?;
    Ok(db
        .execute(&stmt, &[&token.as_str(), &owner.as_str()])
        .await?
        == 1)
}

/// `owner`'s devices, most recently registered first.
pub async fn list(db: &impl GenericClient, owner: &UserId) -> Result<Vec<Device>, StoreError> {
    let stmt = db
        .prepare_cached("SELECT * FROM devices WHERE owner = $1 ORDER BY updated_at DESC")
        .await?;
    db.query(&stmt, &[&owner.as_str()])
        .await?
        .iter()
        .map(from_row)
        .collect()
}

/// The registration of `token`, whoever holds it.
pub async fn get(db: &impl GenericClient, token: &str) -> Result<Option<Device>, StoreError> {
    let stmt = db
        .prepare_cached("SELECT * FROM devices WHERE token_hash = sha256($1::text::bytea)")
        .await?;
    db.query_opt(&stmt, &[&token])
        .await?
        .map(|r| from_row(&r))
        .transpose()
}

/// The device a push of `checkout` goes to, if `token` is still registered to the checkout's
/// owner: a device unregistered since, or moved to another user, must not get this shopper's
/// outcome.
pub async fn for_push(
    db: &impl GenericClient,
    token: &str,
    checkout: CheckoutId,
) -> Result<Option<Device>, StoreError> {
    let stmt = db
        .prepare_cached(
            "SELECT d.* FROM devices d JOIN checkouts c ON c.owner = d.owner
             WHERE d.token_hash = sha256($1::text::bytea) AND c.id = $2",
        )
        .await?;
    db.query_opt(&stmt, &[&token, &checkout.as_uuid()])
        .await?
        .map(|r| from_row(&r))
        .transpose()
}

/// Forgets a token FCM said is dead, unless it was registered again (by anyone) after `since`:
/// a fresh registration of the same token is the app telling us it works again.
pub async fn forget_dead(
    db: &impl GenericClient,
    token: &str,
    since: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let stmt = db
        .prepare_cached(
            "DELETE FROM devices WHERE token_hash = sha256($1::text::bytea) AND updated_at <= $2",
        )
        .await?;
    Ok(db.execute(&stmt, &[&token, &since]).await? == 1)
}
