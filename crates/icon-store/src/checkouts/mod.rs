//! Checkouts as the gateway creates and shows them.
//!
//! - `creation`: storing new checkouts ([`create_many`]), alone or several in one statement
//!   (group commit).

mod creation;
pub use creation::{create_many, Submission};

use crate::idempotency::{IdempotentRequest, StoredResponse};
pub use crate::orders::OrderView;
use crate::outbox::OutboxRow;
use crate::{error::corrupt, notifications, orders, GenericClient, StoreError};
use chrono::{DateTime, Utc};
use icon_domain::{
    CallbackUrl, CartId, CheckoutId, CheckoutPolicy, CheckoutStatus, EmailAddress, UserId,
};

#[derive(Debug, Clone)]
pub struct NewCheckout {
    pub id: CheckoutId,
    pub cart_id: CartId,
    pub owner: UserId,
    pub callback_url: Option<CallbackUrl>,
    pub push_notification: bool,
    /// Notify every change of an order after the checkout finished (issue 17 §3).
    pub order_updates: bool,
    /// What happens when an order is not placed (issue 18).
    pub policy: CheckoutPolicy,
    /// The `email` claim of the shopper's token: the outcome is e-mailed there too.
    pub email: Option<EmailAddress>,
    pub resource_url: String,
    /// Set when the client sent an `Idempotency-Key`.
    pub idempotency: Option<IdempotentRequest>,
}

#[derive(Debug)]
pub enum CreateCheckout {
    /// Stored; the `checkout.requested` row to hand to the relay now.
    Created(OutboxRow),
    CartNotFound,
    EmptyCart,
    /// The cart already has a live checkout: this one.
    AlreadyCheckedOut {
        checkout_id: CheckoutId,
        status: CheckoutStatus,
    },
    /// The same request with the same idempotency key was answered before: this answer.
    Replayed(StoredResponse),
    /// The idempotency key was used with a different body.
    KeyReused,
    /// A request with this idempotency key is still being processed.
    KeyInProgress,
}

#[derive(Debug, Clone)]
pub struct CheckoutView {
    pub id: CheckoutId,
    pub cart_id: CartId,
    pub status: CheckoutStatus,
    pub resource_url: String,
    pub push_notification: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub orders: Vec<OrderView>,
    pub callback: Option<notifications::Notification>,
    /// One per device registered when the checkout was submitted with `push_notification`;
    /// empty when none was (the resource says so).
    pub push: Vec<notifications::Notification>,
    pub email: Option<notifications::Notification>,
    /// Why a `failed` checkout failed when its orders do not say (processing failed
    /// `ICON_WORKER_MAX_DELIVERIES` times).
    pub reason: Option<String>,
    /// Submitted with `order_updates` (issue 17 §3).
    pub order_updates: bool,
    pub policy: CheckoutPolicy,
    /// The checkout's first end, event 1: its status and time. For a checkout a cancellation
    /// reopened, the end it had before; else its status now, if final. `None` while it never
    /// ended.
    pub first_end: Option<(CheckoutStatus, DateTime<Utc>)>,
}

/// [`get`] as of one moment: the checkout, its orders and its notifications are read in one
/// read-only repeatable-read transaction. [`get`]'s statements each see the latest commit, so
/// a poll racing a worker's pass could show the checkout `queued` from before the claim with
/// its orders `accepted` from after the record; a client must never see a state that did not
/// exist.
pub async fn get_snapshot(
    db: &mut crate::Conn,
    id: CheckoutId,
    owner: Option<&UserId>,
) -> Result<Option<CheckoutView>, StoreError> {
    let tx = db
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let view = get(&tx, id, owner).await?;
    tx.commit().await?;
    Ok(view)
}

/// The checkout with its orders and notifications, if it exists and (when `owner` is given) belongs
/// to that user.
pub async fn get(
    db: &impl GenericClient,
    id: CheckoutId,
    owner: Option<&UserId>,
) -> Result<Option<CheckoutView>, StoreError> {
    let stmt = db
        .prepare_cached(
            "SELECT cart_id, owner, status, resource_url, push_notification, created_at, updated_at,
                    reason, order_updates, policy, ended_status, ended_at
             FROM checkouts WHERE id = $1",
        )
        .await?;
    let Some(row) = db.query_opt(&stmt, &[&id.as_uuid()]).await? else {
        return Ok(None);
    };
    if owner.is_some_and(|o| o.as_str() != row.get::<_, &str>("owner")) {
        return Ok(None);
    }
    let mut callback = None;
    let mut email = None;
    let mut push = Vec::new();
    // The notifications of the checkout's end (event 1); those of later events are listed with
    // their events (`events::list`).
    for n in notifications::all_for_checkout(db, id)
        .await?
        .into_iter()
        .filter(|n| n.sequence == 1)
    {
        match n.channel.as_str() {
            "callback" => callback = Some(n),
            "email" => email = Some(n),
            _ => push.push(n),
        }
    }
    let status = CheckoutStatus::parse(row.get("status")).map_err(corrupt)?;
    let updated_at: DateTime<Utc> = row.get("updated_at");
    let first_end = match (
        row.get::<_, Option<&str>>("ended_status"),
        row.get("ended_at"),
    ) {
        (Some(ended), Some(at)) => Some((CheckoutStatus::parse(ended).map_err(corrupt)?, at)),
        _ => status.is_final().then_some((status, updated_at)),
    };
    Ok(Some(CheckoutView {
        id,
        cart_id: CartId::new(row.get("cart_id")),
        status,
        resource_url: row.get("resource_url"),
        push_notification: row.get("push_notification"),
        created_at: row.get("created_at"),
        updated_at,
        orders: orders::list(db, id).await?,
        callback,
        push,
        email,
        reason: row.get("reason"),
        order_updates: row.get("order_updates"),
        policy: CheckoutPolicy::parse(row.get("policy")).map_err(corrupt)?,
        first_end,
    }))
}
