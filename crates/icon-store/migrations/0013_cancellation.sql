-- Cancellation and checkouts that are all or nothing (issue 18).

-- Order states: `cancelling` while ICON's cancellation is at the retailer, `cancel_refused`
-- when the retailer will not cancel (the order remains placed).
ALTER TABLE checkout_orders DROP CONSTRAINT checkout_orders_status_check;
ALTER TABLE checkout_orders ADD CONSTRAINT checkout_orders_status_check
    CHECK (status IN ('pending', 'accepted', 'confirmed', 'rejected', 'failed', 'unknown',
                      'shipped', 'delivered', 'cancelled', 'refunded', 'cancelling',
                      'cancel_refused'));
-- `cancel_requested_at`: when the order was asked to be cancelled (a `DELETE`, or the
-- `all_or_nothing` policy), and why (`cancel_reason`, sent to the retailer). Set once: a
-- repeated request changes nothing, so each order is cancelled at most once.
-- `cancel_attempts`: cancellation requests sent without a definite answer. Nullable columns and
-- a constant default: adding them rewrites nothing.
ALTER TABLE checkout_orders ADD COLUMN cancel_requested_at timestamptz;
ALTER TABLE checkout_orders ADD COLUMN cancel_reason text;
ALTER TABLE checkout_orders ADD COLUMN cancel_attempts integer NOT NULL DEFAULT 0;

-- Checkout states: `cancelling` while a cancellation is under way, then `cancelled` (nothing
-- remains placed) or `partially_cancelled` (something does).
ALTER TABLE checkouts DROP CONSTRAINT checkouts_status_check;
ALTER TABLE checkouts ADD CONSTRAINT checkouts_status_check
    CHECK (status IN ('queued', 'processing', 'completed', 'partially_completed', 'failed',
                      'cancelling', 'cancelled', 'partially_cancelled'));
ALTER TABLE checkouts ADD COLUMN policy text NOT NULL DEFAULT 'best_effort'
    CHECK (policy IN ('best_effort', 'all_or_nothing'));
-- A checkout that had ended and is reopened by a cancellation keeps its first end here: it is
-- event 1 (its type and time), and the cancellation's end is announced as a later event. NULL
-- while the checkout never ended before its current state.
ALTER TABLE checkouts ADD COLUMN ended_status text;
ALTER TABLE checkouts ADD COLUMN ended_at timestamptz;

-- A cancelled checkout frees its cart as a failed one does: nothing of it remains placed.
DROP INDEX checkouts_one_live_per_cart;
CREATE UNIQUE INDEX checkouts_one_live_per_cart ON checkouts (cart_id)
    WHERE status NOT IN ('failed', 'cancelled');
-- The sweeper looks for checkouts that stopped moving, cancelling ones included.
DROP INDEX checkouts_unfinished;
CREATE INDEX checkouts_unfinished ON checkouts (updated_at)
    WHERE status IN ('queued', 'processing', 'cancelling');

-- The cancellation's end is a checkout event about no one order.
ALTER TABLE checkout_events ALTER COLUMN retailer_id DROP NOT NULL;

-- The submission with its `policy`: 0012's function with one more parameter, a new overload so
-- gateways of the previous release keep calling the 21-argument form during a rolling upgrade.
-- One more change: a cancelled checkout frees the cart, as a failed one does.
CREATE FUNCTION icon_create_checkout(
    p_id uuid, p_cart bigint, p_owner text, p_resource_url text, p_push boolean,
    p_callback_id uuid, p_callback_url text, p_email_id uuid, p_email text,
    p_idem_key text, p_idem_request text, p_idem_status integer, p_idem_body text,
    p_message_id uuid, p_message_type text, p_exchange text, p_routing_key text, p_body bytea,
    p_publish_grace_secs double precision, p_traceparent text, p_order_updates boolean,
    p_policy text)
RETURNS TABLE (outcome text, checkout_id uuid, checkout_status text, response_status integer,
               response_body text, outbox_id bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_key record;
    v_live record;
    v_outbox bigint;
BEGIN
    IF p_idem_key IS NOT NULL THEN
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

    PERFORM 1 FROM carts WHERE id = p_cart AND owner = p_owner FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'cart_not_found', NULL::uuid, NULL::text, NULL::int, NULL::text, NULL::bigint;
        RETURN;
    END IF;
    SELECT c.id, c.status INTO v_live FROM checkouts c
    WHERE c.cart_id = p_cart AND c.status NOT IN ('failed', 'cancelled');
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
                           order_updates, policy)
    VALUES (p_id, p_cart, p_owner, 'queued', p_resource_url, p_push, p_order_updates, p_policy);
    -- As in 0012: a new key only where the retailer's earlier order is not placed (rejected,
    -- failed) or undone (cancelled, refunded); else the earlier key, to the URL it went to.
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
