//! Checkouts as the gateway creates and shows them.

use crate::idempotency::{IdempotentRequest, StoredResponse};
pub use crate::orders::OrderView;
use crate::outbox::{self, OutboxRow};
use crate::{error::corrupt, notifications, orders, GenericClient, StoreError};
use chrono::{DateTime, Utc};
use icon_contracts::{topology, CheckoutRequested, Envelope};
use icon_domain::{
    CallbackUrl, CartId, CheckoutId, CheckoutPolicy, CheckoutStatus, EmailAddress, NotificationId,
    UserId,
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

/// Creates the checkout, its pending orders (one per retailer in the cart), its notifications
/// (the callback, one push per device the user has registered now, the e-mail) and the
/// `checkout.requested` message, all in one transaction: either the client gets its 202 and the
/// work is certain to be queued, or nothing happened. The devices are those of submission time,
/// so the rows exist before the checkout can finish and the notifier's sweep covers them.
///
/// One round trip: the checks and writes are the SQL function `icon_create_checkout`
/// (migration 0005, with the trace context since 0008), called as one statement. The message is written for the caller to hand to
/// its relay once this returns ([`CreateCheckout::Created`]).
#[tracing::instrument(name = "store.create_checkout", skip_all, fields(checkout_id = %new.id, cart_id = %new.cart_id))]
pub async fn create(
    db: &impl GenericClient,
    new: &NewCheckout,
) -> Result<CreateCheckout, StoreError> {
    let message = Envelope::new(CheckoutRequested {
        checkout_id: new.id,
        cart_id: new.cart_id,
    });
    let mut row = OutboxRow::new(
        topology::EVENTS_EXCHANGE,
        topology::CHECKOUT_REQUESTED,
        &message,
    );
    let stmt = db
        .prepare_cached(
            "SELECT outcome, checkout_id, checkout_status, response_status, response_body,
                    outbox_id
             FROM icon_create_checkout($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,
                                       $14, $15, $16, $17, $18, $19, $20, $21, $22)",
        )
        .await?;
    let idem = new.idempotency.as_ref();
    let result = db
        .query_one(
            &stmt,
            &[
                &new.id.as_uuid(),
                &new.cart_id.get(),
                &new.owner.as_str(),
                &new.resource_url,
                &new.push_notification,
                &NotificationId::new().as_uuid(),
                &new.callback_url.as_ref().map(|u| u.as_str()),
                &NotificationId::new().as_uuid(),
                &new.email.as_ref().map(|e| e.as_str()),
                &idem.map(|i| i.key.as_str()),
                &idem.map(|i| i.request.as_str()),
                &idem.map(|i| i.response_status),
                &idem.map(|i| i.response_body.as_str()),
                &row.message_id,
                &row.message_type,
                &row.exchange,
                &row.routing_key,
                &row.body,
                &outbox::PUBLISH_GRACE.as_secs_f64(),
                &row.traceparent,
                &new.order_updates,
                &new.policy.as_str(),
            ],
        )
        .await?;
    let checkout = || {
        result
            .get::<_, Option<uuid::Uuid>>(1)
            .ok_or_else(|| corrupt("no checkout id"))
    };
    Ok(match result.get::<_, &str>(0) {
        "created" => {
            row.id = result.get(5);
            CreateCheckout::Created(row)
        }
        "replayed" => CreateCheckout::Replayed(StoredResponse {
            checkout_id: checkout()?,
            status: result.get(3),
            body: result.get(4),
        }),
        "key_reused" => CreateCheckout::KeyReused,
        "key_in_progress" => CreateCheckout::KeyInProgress,
        "cart_not_found" => CreateCheckout::CartNotFound,
        "empty_cart" => CreateCheckout::EmptyCart,
        "already_checked_out" => CreateCheckout::AlreadyCheckedOut {
            checkout_id: CheckoutId::from_uuid(checkout()?),
            status: CheckoutStatus::parse(result.get::<_, &str>(2)).map_err(corrupt)?,
        },
        other => return Err(corrupt(format!("icon_create_checkout answered `{other}`"))),
    })
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
