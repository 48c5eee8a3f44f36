-- Two holes that could place a second order at a retailer (issue 16, items 1 and 2).
--
-- `in_doubt_at`: when ICON last sent an order's key and the answer (a 409, a timeout, a dropped
-- connection) left a request with that key possibly still in progress at the retailer. A
-- lookup's 404 means "not placed" only once ICON_RETAILER_NOT_PLACED_AFTER has passed since;
-- before that the request may still be working and the order appear a moment later. Nullable,
-- no default: adding it rewrites nothing.
ALTER TABLE checkout_orders ADD COLUMN in_doubt_at timestamptz;

-- The submission (0008's 20-argument form, replaced in place): a re-sent key goes to the
-- earlier order's own `order_url`, not the retailer's current one, and carries its
-- `in_doubt_at`. Only the orders' INSERT changes.
CREATE OR REPLACE FUNCTION icon_create_checkout(
    p_id uuid, p_cart bigint, p_owner text, p_resource_url text, p_push boolean,
    p_callback_id uuid, p_callback_url text, p_email_id uuid, p_email text,
    p_idem_key text, p_idem_request text, p_idem_status integer, p_idem_body text,
    p_message_id uuid, p_message_type text, p_exchange text, p_routing_key text, p_body bytea,
    p_publish_grace_secs double precision, p_traceparent text)
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

    INSERT INTO checkouts (id, cart_id, owner, status, resource_url, push_notification)
    VALUES (p_id, p_cart, p_owner, 'queued', p_resource_url, p_push);
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
           CASE WHEN prev.status IN ('rejected', 'failed') OR prev.status IS NULL
                THEN t.u ELSE prev.order_url END,
           'pending',
           CASE WHEN prev.status IN ('rejected', 'failed') OR prev.status IS NULL
                THEN p_id::text || ':' || t.r ELSE prev.idempotency_key END,
           CASE WHEN prev.status IN ('rejected', 'failed') OR prev.status IS NULL
                THEN p_id ELSE prev.key_checkout_id END,
           CASE WHEN prev.status IN ('rejected', 'failed') OR prev.status IS NULL
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
