//! Checkouts as the gateway creates and shows them.

use crate::idempotency::{self, Claim, IdempotentRequest, StoredResponse};
pub use crate::orders::OrderView;
use crate::{
    carts, error::corrupt, notifications, orders, outbox, Conn, GenericClient, StoreError,
};
use chrono::{DateTime, Utc};
use icon_contracts::{topology, CheckoutRequested, Envelope};
use icon_domain::{
    CallbackUrl, CartId, CheckoutId, CheckoutStatus, EmailAddress, NotificationId, OrderStatus,
    RetailerId, UserId,
};

#[derive(Debug, Clone)]
pub struct NewCheckout {
    pub id: CheckoutId,
    pub cart_id: CartId,
    pub owner: UserId,
    pub callback_url: Option<CallbackUrl>,
    pub push_notification: bool,
    /// The `email` claim of the shopper's token: the outcome is e-mailed there too.
    pub email: Option<EmailAddress>,
    pub resource_url: String,
    /// Set when the client sent an `Idempotency-Key`.
    pub idempotency: Option<IdempotentRequest>,
}

#[derive(Debug)]
pub enum CreateCheckout {
    Created(Box<CheckoutView>),
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
}

/// Creates the checkout, its pending orders (one per retailer in the cart), its notifications
/// (the callback, one push per device the user has registered now, the e-mail) and the
/// `checkout.requested` message, all in one transaction: either the client gets its 202 and the
/// work is certain to be queued, or nothing happened. The devices are those of submission time,
/// so the rows exist before the checkout can finish and the notifier's sweep covers them.
#[tracing::instrument(name = "store.create_checkout", skip_all, fields(checkout_id = %new.id, cart_id = %new.cart_id))]
pub async fn create(conn: &mut Conn, new: &NewCheckout) -> Result<CreateCheckout, StoreError> {
    let tx = conn.transaction().await?;
    if let Some(idem) = &new.idempotency {
        match idempotency::claim(&tx, new.owner.as_str(), idem).await? {
            Claim::Fresh => {}
            Claim::Replay(stored) => return Ok(CreateCheckout::Replayed(stored)),
            Claim::Mismatch => return Ok(CreateCheckout::KeyReused),
            Claim::InProgress => return Ok(CreateCheckout::KeyInProgress),
        }
    }
    if !carts::lock_owned(&tx, new.cart_id, &new.owner).await? {
        return Ok(CreateCheckout::CartNotFound);
    }
    if let Some((checkout_id, status)) = carts::live_checkout(&tx, new.cart_id).await? {
        return Ok(CreateCheckout::AlreadyCheckedOut {
            checkout_id,
            status,
        });
    }
    let stmt = tx
        .prepare_cached(
            "SELECT DISTINCT i.retailer_id, r.order_url
             FROM cart_items i JOIN retailers r ON r.id = i.retailer_id
             WHERE i.cart_id = $1 ORDER BY i.retailer_id",
        )
        .await?;
    let retailers = tx.query(&stmt, &[&new.cart_id.get()]).await?;
    if retailers.is_empty() {
        return Ok(CreateCheckout::EmptyCart);
    }

    let stmt = tx
        .prepare_cached(
            "INSERT INTO checkouts (id, cart_id, owner, status, resource_url, push_notification)
             VALUES ($1, $2, $3, 'queued', $4, $5) RETURNING created_at, updated_at",
        )
        .await?;
    let row = tx
        .query_one(
            &stmt,
            &[
                &new.id.as_uuid(),
                &new.cart_id.get(),
                &new.owner.as_str(),
                &new.resource_url,
                &new.push_notification,
            ],
        )
        .await?;
    let (created_at, updated_at) = (row.get(0), row.get(1));

    let ids: Vec<String> = retailers.iter().map(|r| r.get(0)).collect();
    let urls: Vec<String> = retailers.iter().map(|r| r.get(1)).collect();
    let stmt = tx
        .prepare_cached(
            // The key belongs to the cart and the retailer: re-send the key of this cart's
            // latest order at that retailer unless the retailer said it was not placed.
            "INSERT INTO checkout_orders
               (checkout_id, retailer_id, order_url, status, idempotency_key, key_checkout_id)
             SELECT $1, t.r, t.u, 'pending',
                    CASE WHEN prev.status IN ('rejected', 'failed') OR prev.status IS NULL
                         THEN $1::text || ':' || t.r ELSE prev.idempotency_key END,
                    CASE WHEN prev.status IN ('rejected', 'failed') OR prev.status IS NULL
                         THEN $1 ELSE prev.key_checkout_id END
             FROM unnest($2::text[], $3::text[]) AS t(r, u)
             LEFT JOIN LATERAL (
                 SELECT o.status, o.idempotency_key, o.key_checkout_id
                 FROM checkout_orders o JOIN checkouts c ON c.id = o.checkout_id
                 WHERE c.cart_id = $4 AND o.retailer_id = t.r AND c.id <> $1
                 ORDER BY c.created_at DESC LIMIT 1
             ) prev ON true",
        )
        .await?;
    tx.execute(&stmt, &[&new.id.as_uuid(), &ids, &urls, &new.cart_id.get()])
        .await?;

    let callback = match &new.callback_url {
        Some(url) => Some(
            notifications::create(&tx, NotificationId::new(), new.id, "callback", url.as_str())
                .await?,
        ),
        None => None,
    };
    let push = if new.push_notification {
        notifications::create_pushes(&tx, new.id, &new.owner).await?
    } else {
        vec![]
    };
    let email = match &new.email {
        Some(address) => Some(
            notifications::create(
                &tx,
                NotificationId::new(),
                new.id,
                "email",
                address.as_str(),
            )
            .await?,
        ),
        None => None,
    };

    let message = Envelope::new(CheckoutRequested {
        checkout_id: new.id,
        cart_id: new.cart_id,
    });
    outbox::enqueue(
        &tx,
        topology::EVENTS_EXCHANGE,
        topology::CHECKOUT_REQUESTED,
        &message,
    )
    .await?;
    if let Some(idem) = &new.idempotency {
        idempotency::save(&tx, new.owner.as_str(), new.id.as_uuid(), idem).await?;
    }
    tx.commit().await?;

    let orders = ids
        .into_iter()
        .map(|id| {
            Ok(OrderView {
                retailer_id: RetailerId::parse(id).map_err(corrupt)?,
                status: OrderStatus::Pending,
                retailer_order_id: None,
                reason: None,
            })
        })
        .collect::<Result<_, StoreError>>()?;
    Ok(CreateCheckout::Created(Box::new(CheckoutView {
        id: new.id,
        cart_id: new.cart_id,
        status: CheckoutStatus::Queued,
        resource_url: new.resource_url.clone(),
        push_notification: new.push_notification,
        created_at,
        updated_at,
        orders,
        callback,
        push,
        email,
        reason: None,
    })))
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
                    reason
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
    for n in notifications::all_for_checkout(db, id).await? {
        match n.channel.as_str() {
            "callback" => callback = Some(n),
            "email" => email = Some(n),
            _ => push.push(n),
        }
    }
    Ok(Some(CheckoutView {
        id,
        cart_id: CartId::new(row.get("cart_id")),
        status: CheckoutStatus::parse(row.get("status")).map_err(corrupt)?,
        resource_url: row.get("resource_url"),
        push_notification: row.get("push_notification"),
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
        orders: orders::list(db, id).await?,
        callback,
        push,
        email,
        reason: row.get("reason"),
    }))
}
