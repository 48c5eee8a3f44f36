//! Storing new checkouts: one, or several in one statement and transaction (group commit).

use super::{CreateCheckout, NewCheckout};
use crate::idempotency::StoredResponse;
use crate::outbox::{self, OutboxRow};
use crate::{error::corrupt, GenericClient, StoreError};
use icon_contracts::{topology, CheckoutRequested, Envelope};
use icon_domain::{CheckoutId, CheckoutStatus, NotificationId};

/// A checkout ready to be stored: what the client asked for and the `checkout.requested`
/// message announcing it. The message is written where the request runs, so it carries the
/// request's trace context even when it is stored in a batch with others ([`create_many`]).
#[derive(Debug, Clone)]
pub struct Submission {
    pub new: NewCheckout,
    row: OutboxRow,
}

impl Submission {
    pub fn new(new: NewCheckout) -> Self {
        let message = Envelope::new(CheckoutRequested {
            checkout_id: new.id,
            cart_id: new.cart_id,
        });
        let row = OutboxRow::new(
            topology::EVENTS_EXCHANGE,
            topology::CHECKOUT_REQUESTED,
            &message,
        );
        Self { new, row }
    }
}

/// Creates checkouts, each with its pending orders (one per retailer in the cart), its
/// notifications (the callback, one push per device the user has registered now, the e-mail)
/// and the `checkout.requested` message, all in one transaction: either the client gets its 202
/// and the work is certain to be queued, or nothing happened. The devices are those of
/// submission time, so the rows exist before the checkout can finish and the notifier's sweep
/// covers them. The checks and writes are the SQL function `icon_create_checkout` (migration
/// 0005, with the trace context since 0008, the policy since 0013); each created checkout's
/// message is for the caller to hand to its relay once this returns
/// ([`CreateCheckout::Created`]).
///
/// Several checkouts go in one statement, so in one transaction and one commit
/// (group commit, issue 19): the gateway stores together the checkouts that are ready at the
/// same moment. Each gets the outcome it would have had alone, in the order given: a later one
/// sees what an earlier one wrote (the same cart twice: the second is `AlreadyCheckedOut`; the
/// same idempotency key twice: the second is `Replayed`). The carts are locked in ascending
/// order whatever the order given, so two batches cannot deadlock on each other's carts. An
/// error (a deadlock with some other writer, a lost connection) undoes the whole batch: nothing
/// of it was stored, or, for a lost connection, the outcome of all of it is unknown.
#[tracing::instrument(name = "store.create_checkouts", skip_all, fields(count = batch.len()))]
pub async fn create_many(
    db: &impl GenericClient,
    batch: &[Submission],
) -> Result<Vec<CreateCheckout>, StoreError> {
    // Lock order: by cart; the caller's order is restored from `WITH ORDINALITY` below.
    let mut order: Vec<usize> = (0..batch.len()).collect();
    order.sort_by_key(|&i| batch[i].new.cart_id.get());
    let n = batch.len();
    let mut cols = Columns::with_capacity(n);
    for &i in &order {
        cols.push(&batch[i]);
    }
    let grace = outbox::PUBLISH_GRACE.as_secs_f64();
    let rows = if n == 1 {
        // Alone (as every checkout is at low load): the function called directly, which
        // costs less than unnesting arrays of one. The parameters are numbered as below.
        let stmt = db
            .prepare_cached(
                "SELECT outcome, checkout_id, checkout_status, response_status, response_body,
                        outbox_id
                 FROM icon_create_checkout($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12,
                                           $13, $14, $15, $16, $17, $18, $22, $19, $20, $21)",
            )
            .await?;
        db.query(
            &stmt,
            &[
                &cols.id[0],
                &cols.cart[0],
                &cols.owner[0],
                &cols.resource_url[0],
                &cols.push[0],
                &cols.callback_id[0],
                &cols.callback_url[0],
                &cols.email_id[0],
                &cols.email[0],
                &cols.idem_key[0],
                &cols.idem_request[0],
                &cols.idem_status[0],
                &cols.idem_body[0],
                &cols.message_id[0],
                &cols.message_type[0],
                &cols.exchange[0],
                &cols.routing_key[0],
                &cols.body[0],
                &cols.traceparent[0],
                &cols.order_updates[0],
                &cols.policy[0],
                &grace,
            ],
        )
        .await?
    } else {
        let stmt = db
            .prepare_cached(
                "SELECT r.outcome, r.checkout_id, r.checkout_status, r.response_status,
                        r.response_body, r.outbox_id
                 FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::boolean[],
                             $6::uuid[], $7::text[], $8::uuid[], $9::text[], $10::text[],
                             $11::text[], $12::integer[], $13::text[], $14::uuid[], $15::text[],
                             $16::text[], $17::text[], $18::bytea[], $19::text[],
                             $20::boolean[], $21::text[])
                      WITH ORDINALITY AS a(id, cart, owner, resource_url, push, callback_id,
                                           callback_url, email_id, email, idem_key,
                                           idem_request, idem_status, idem_body, message_id,
                                           message_type, exchange, routing_key, body,
                                           traceparent, order_updates, policy, n)
                 CROSS JOIN LATERAL icon_create_checkout(
                     a.id, a.cart, a.owner, a.resource_url, a.push, a.callback_id,
                     a.callback_url, a.email_id, a.email, a.idem_key, a.idem_request,
                     a.idem_status, a.idem_body, a.message_id, a.message_type, a.exchange,
                     a.routing_key, a.body, $22, a.traceparent, a.order_updates, a.policy) r
                 ORDER BY a.n",
            )
            .await?;
        db.query(
            &stmt,
            &[
                &cols.id,
                &cols.cart,
                &cols.owner,
                &cols.resource_url,
                &cols.push,
                &cols.callback_id,
                &cols.callback_url,
                &cols.email_id,
                &cols.email,
                &cols.idem_key,
                &cols.idem_request,
                &cols.idem_status,
                &cols.idem_body,
                &cols.message_id,
                &cols.message_type,
                &cols.exchange,
                &cols.routing_key,
                &cols.body,
                &cols.traceparent,
                &cols.order_updates,
                &cols.policy,
                &grace,
            ],
        )
        .await?
    };
    if rows.len() != n {
        return Err(corrupt(format!(
            "icon_create_checkout answered {} rows for {n} checkouts",
            rows.len()
        )));
    }
    let mut outcomes: Vec<Option<CreateCheckout>> = (0..n).map(|_| None).collect();
    for (&i, result) in order.iter().zip(&rows) {
        let checkout = || {
            result
                .get::<_, Option<uuid::Uuid>>(1)
                .ok_or_else(|| corrupt("no checkout id"))
        };
        outcomes[i] = Some(match result.get::<_, &str>(0) {
            "created" => {
                let mut row = batch[i].row.clone();
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
        });
    }
    outcomes
        .into_iter()
        .map(|o| o.ok_or_else(|| corrupt("a checkout without an outcome")))
        .collect()
}

/// The arguments of `icon_create_checkout`, one array per parameter, in lock order.
struct Columns<'a> {
    id: Vec<uuid::Uuid>,
    cart: Vec<i64>,
    owner: Vec<&'a str>,
    resource_url: Vec<&'a str>,
    push: Vec<bool>,
    callback_id: Vec<uuid::Uuid>,
    callback_url: Vec<Option<&'a str>>,
    email_id: Vec<uuid::Uuid>,
    email: Vec<Option<&'a str>>,
    idem_key: Vec<Option<&'a str>>,
    idem_request: Vec<Option<&'a str>>,
    idem_status: Vec<Option<i32>>,
    idem_body: Vec<Option<&'a str>>,
    message_id: Vec<uuid::Uuid>,
    message_type: Vec<&'a str>,
    exchange: Vec<&'a str>,
    routing_key: Vec<&'a str>,
    body: Vec<&'a [u8]>,
    traceparent: Vec<Option<&'a str>>,
    order_updates: Vec<bool>,
    policy: Vec<&'static str>,
}

impl<'a> Columns<'a> {
    fn with_capacity(n: usize) -> Self {
        Self {
            id: Vec::with_capacity(n),
            cart: Vec::with_capacity(n),
            owner: Vec::with_capacity(n),
            resource_url: Vec::with_capacity(n),
            push: Vec::with_capacity(n),
            callback_id: Vec::with_capacity(n),
            callback_url: Vec::with_capacity(n),
            email_id: Vec::with_capacity(n),
            email: Vec::with_capacity(n),
            idem_key: Vec::with_capacity(n),
            idem_request: Vec::with_capacity(n),
            idem_status: Vec::with_capacity(n),
            idem_body: Vec::with_capacity(n),
            message_id: Vec::with_capacity(n),
            message_type: Vec::with_capacity(n),
            exchange: Vec::with_capacity(n),
            routing_key: Vec::with_capacity(n),
            body: Vec::with_capacity(n),
            traceparent: Vec::with_capacity(n),
            order_updates: Vec::with_capacity(n),
            policy: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, s: &'a Submission) {
        let (new, row) = (&s.new, &s.row);
        let idem = new.idempotency.as_ref();
        self.id.push(new.id.as_uuid());
        self.cart.push(new.cart_id.get());
        self.owner.push(new.owner.as_str());
        self.resource_url.push(&new.resource_url);
        self.push.push(new.push_notification);
        self.callback_id.push(NotificationId::new().as_uuid());
        self.callback_url
            .push(new.callback_url.as_ref().map(|u| u.as_str()));
        self.email_id.push(NotificationId::new().as_uuid());
        self.email.push(new.email.as_ref().map(|e| e.as_str()));
        self.idem_key.push(idem.map(|i| i.key.as_str()));
        self.idem_request.push(idem.map(|i| i.request.as_str()));
        self.idem_status.push(idem.map(|i| i.response_status));
        self.idem_body.push(idem.map(|i| i.response_body.as_str()));
        self.message_id.push(row.message_id);
        self.message_type.push(&row.message_type);
        self.exchange.push(&row.exchange);
        self.routing_key.push(&row.routing_key);
        self.body.push(&row.body);
        self.traceparent.push(row.traceparent.as_deref());
        self.order_updates.push(new.order_updates);
        self.policy.push(new.policy.as_str());
    }
}
