-- Asynchronous retailers and the order's whole life (issue 17 §2 and §3).

-- Order states: `accepted` (the retailer answered 202 and reports later), and the life after
-- confirmation that retailers report by event. `state_at`: when the retailer says the current
-- state happened (NULL for a state ICON reached itself), so an event that happened earlier is
-- told apart from one that contradicts the state. `tracking` and `refunds` as reported.
-- Nullable columns without defaults: adding them rewrites nothing.
ALTER TABLE checkout_orders DROP CONSTRAINT checkout_orders_status_check;
ALTER TABLE checkout_orders ADD CONSTRAINT checkout_orders_status_check
    CHECK (status IN ('pending', 'accepted', 'confirmed', 'rejected', 'failed', 'unknown',
                      'shipped', 'delivered', 'cancelled', 'refunded'));
ALTER TABLE checkout_orders ADD COLUMN state_at timestamptz;
ALTER TABLE checkout_orders ADD COLUMN tracking jsonb;
ALTER TABLE checkout_orders ADD COLUMN refunds jsonb;
-- A retailer's event names the order by the key ICON sent it. The key is never updated, so
-- the index keeps the orders' updates HOT.
CREATE INDEX checkout_orders_by_key ON checkout_orders (idempotency_key);

-- `order_updates`: the checkout asked for a notification for every change of an order after it
-- finished. `events`: how many such changes it has had; the next is numbered `events + 2`
-- (the checkout's own end is event 1). Neither is indexed: updating them stays HOT.
ALTER TABLE checkouts ADD COLUMN order_updates boolean NOT NULL DEFAULT false;
ALTER TABLE checkouts ADD COLUMN events integer NOT NULL DEFAULT 0;
-- `order_changes`: how many of its orders retailers' events changed while the checkout was open.
-- A pass reads it with its claim and records its end only if it is unchanged: a pass that
-- decided on orders an event changed meanwhile must not finish the checkout on what it saw.
-- Checked on the checkout's own row (under its lock), so no interleaving slips past.
ALTER TABLE checkouts ADD COLUMN order_changes integer NOT NULL DEFAULT 0;

-- Every event a retailer sent that ICON accepted, in the order it was recorded: the history,
-- and the de-duplication of a repeated `webhook-id` (per retailer: ids are the sender's).
-- `effect`: `applied` (it moved the order) or `stale` (older than the order's state, or implied
-- by it). `sequence`: the checkout event it became, when it was announced.
CREATE TABLE order_events (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    retailer_id   text NOT NULL,
    webhook_id    text NOT NULL,
    checkout_id   uuid NOT NULL REFERENCES checkouts (id) ON DELETE CASCADE,
    type          text NOT NULL,
    occurred_at   timestamptz NOT NULL,
    received_at   timestamptz NOT NULL DEFAULT now(),
    effect        text NOT NULL CHECK (effect IN ('applied', 'stale')),
    status_after  text NOT NULL,
    sequence      integer,
    body          jsonb NOT NULL,
    UNIQUE (retailer_id, webhook_id)
);
CREATE INDEX order_events_by_checkout ON order_events (checkout_id, id);

-- A checkout's events after its end (event 1, its end, is the checkout itself): one per change
-- of an order announced to the checkout's channels, numbered without gaps.
CREATE TABLE checkout_events (
    checkout_id  uuid NOT NULL REFERENCES checkouts (id) ON DELETE CASCADE,
    sequence     integer NOT NULL CHECK (sequence >= 2),
    type         text NOT NULL,
    retailer_id  text NOT NULL,
    occurred_at  timestamptz NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (checkout_id, sequence)
);

-- A notification per channel, target and event: `sequence` 1 is the checkout's end, as every
-- notification was before. A constant default adds the column without a rewrite; the index is
-- rebuilt with it.
ALTER TABLE notifications ADD COLUMN sequence integer NOT NULL DEFAULT 1;
DROP INDEX notifications_one_per_target;
CREATE UNIQUE INDEX notifications_one_per_target ON notifications
    (checkout_id, channel, md5(target), sequence);

-- The submission with `order_updates`: 0009's function with one more parameter, a new overload
-- so gateways of the previous release keep calling the 20-argument form during a rolling
-- upgrade. One more change: an earlier order the retailer cancelled (or cancelled and refunded)
-- is done with, like a rejected one, so a new checkout of the cart sends that retailer a new key
-- (the old key with a changed cart would reach the retailer with a different body).
CREATE FUNCTION icon_create_checkout(
    p_id uuid, p_cart bigint, p_owner text, p_resource_url text, p_push boolean,
    p_callback_id uuid, p_callback_url text, p_email_id uuid, p_email text,
    p_idem_key text, p_idem_request text, p_idem_status integer, p_idem_body text,
    p_message_id uuid, p_message_type text, p_exchange text, p_routing_key text, p_body bytea,
    p_publish_grace_secs double precision, p_traceparent text, p_order_updates boolean)
RETURNS TABLE (outcome text, checkout_id uuid, checkout_status text, response_status integer,
               response_body text, outbox_id bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_key record;
    v_live record;
    v_outbox bigint;
BEGIN
    IF p_idem_key IS NOT NULL THEN
        -- The first request with a key holds it until its transaction ends; a concurrent retry
        -- is told to wait instead of blocking.
        IF NOT pg_try_advisory_xact_lock(hashtextextended(p_owner || chr(31) || p_idem_key, 0)) THEN
            RETURN QUERY SELECT 'key_in_progress', NULL::uuid, NULL::text, NULL::int, NULL::text, NULL::bigint;
            RETURN;
        END IF;
        SELECT k.request, k.checkout_id, k.response_status, k.response_body INTO v_key
        FROM idempotency_keys k WHERE k.owner = p_owner AND k.key = p_idem_key;
        IF FOUND THEN
            IF v_key.request <> p_idem_request THEN
                RETURN QUERY SELECT 'key_reused', NULL::uuid, NULL::text, NULL::int, NULL::text, NULL::bigint;
            ELSE
                RETURN QUERY SELECT 'replayed', v_key.checkout_id, NULL::text, v_key.response_status,
                                    v_key.response_body, NULL::bigint;
            END IF;
            RETURN;
        END IF;
    END IF;

    -- The cart row stays locked to the end: items cannot be added meanwhile, and two checkouts
    -- of one cart serialise.
    PERFORM 1 FROM carts WHERE id = p_cart AND owner = p_owner FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'cart_not_found', NULL::uuid, NULL::text, NULL::int, NULL::text, NULL::bigint;
        RETURN;
    END IF;
    SELECT c.id, c.status INTO v_live FROM checkouts c WHERE c.cart_id = p_cart AND c.status <> 'failed';
    IF FOUND THEN
        RETURN QUERY SELECT 'already_checked_out', v_live.id, v_live.status, NULL::int, NULL::text, NULL::bigint;
        RETURN;
    END IF;
    PERFORM 1 FROM cart_items i JOIN retailers r ON r.id = i.retailer_id WHERE i.cart_id = p_cart;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'empty_cart', NULL::uuid, NULL::text, NULL::int, NULL::text, NULL::bigint;
        RETURN;
    END IF;

    INSERT INTO checkouts (id, cart_id, owner, status, resource_url, push_notification,
                           order_updates)
    VALUES (p_id, p_cart, p_owner, 'queued', p_resource_url, p_push, p_order_updates);
    -- One order per retailer. The key belongs to the cart and the retailer: re-send the key of
    -- this cart's latest order at that retailer unless the retailer said it was not placed.
    -- A re-sent key goes to the URL it was first sent to (a new `order_url` is a new place,
    -- where the key would be new: a second order), and keeps the time it was last in doubt.
    -- The cart's earlier checkouts come first (a handful, by `checkouts_by_cart`), then their
    -- order at the retailer by primary key: whatever plan the function's cache settles on, it
    -- never searches orders by retailer alone.
    WITH earlier AS MATERIALIZED (
        SELECT c.id, c.created_at FROM checkouts c WHERE c.cart_id = p_cart AND c.id <> p_id
    )
    INSERT INTO checkout_orders
      (checkout_id, retailer_id, order_url, status, idempotency_key, key_checkout_id,
       in_doubt_at)
    SELECT p_id, t.r,
           CASE WHEN prev.status IN ('rejected', 'failed', 'cancelled', 'refunded') OR prev.status IS NULL
                THEN t.u ELSE prev.order_url END,
           'pending',
           CASE WHEN prev.status IN ('rejected', 'failed', 'cancelled', 'refunded') OR prev.status IS NULL
                THEN p_id::text || ':' || t.r ELSE prev.idempotency_key END,
           CASE WHEN prev.status IN ('rejected', 'failed', 'cancelled', 'refunded') OR prev.status IS NULL
                THEN p_id ELSE prev.key_checkout_id END,
           CASE WHEN prev.status IN ('rejected', 'failed', 'cancelled', 'refunded') OR prev.status IS NULL
                THEN NULL ELSE prev.in_doubt_at END
    FROM (SELECT DISTINCT i.retailer_id AS r, r.order_url AS u
          FROM cart_items i JOIN retailers r ON r.id = i.retailer_id
          WHERE i.cart_id = p_cart) t
    LEFT JOIN LATERAL (
        SELECT o.status, o.idempotency_key, o.key_checkout_id, o.order_url, o.in_doubt_at
        FROM earlier e JOIN checkout_orders o ON o.checkout_id = e.id AND o.retailer_id = t.r
        ORDER BY e.created_at DESC LIMIT 1
    ) prev ON true;

    -- The notifications: the callback, one push per device registered now, the e-mail.
    IF p_callback_url IS NOT NULL THEN
        INSERT INTO notifications (id, checkout_id, channel, target, state)
        VALUES (p_callback_id, p_id, 'callback', p_callback_url, 'pending');
    END IF;
    IF p_push THEN
        INSERT INTO notifications (id, checkout_id, channel, target, state)
        SELECT gen_random_uuid(), p_id, 'push', d.token, 'pending'
        FROM devices d WHERE d.owner = p_owner;
    END IF;
    IF p_email IS NOT NULL THEN
        INSERT INTO notifications (id, checkout_id, channel, target, state)
        VALUES (p_email_id, p_id, 'email', p_email, 'pending');
    END IF;

    INSERT INTO outbox
      (exchange, routing_key, message_id, message_type, checkout_id, body, publish_after,
       traceparent)
    VALUES (p_exchange, p_routing_key, p_message_id, p_message_type, p_id, p_body,
            now() + make_interval(secs => p_publish_grace_secs), p_traceparent)
    RETURNING id INTO v_outbox;

    IF p_idem_key IS NOT NULL THEN
        INSERT INTO idempotency_keys
          (owner, key, request, checkout_id, response_status, response_body)
        VALUES (p_owner, p_idem_key, p_idem_request, p_id, p_idem_status, p_idem_body);
    END IF;

    RETURN QUERY SELECT 'created', p_id, 'queued'::text, NULL::int, NULL::text, v_outbox;
END
$$;
