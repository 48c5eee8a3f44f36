-- Closing the holes in the delivery guarantee (issue "Never twice, never stuck").

-- Orders: an `unknown` outcome (the retailer may have placed it), settled by status lookup.
ALTER TABLE checkout_orders DROP CONSTRAINT checkout_orders_status_check;
ALTER TABLE checkout_orders ADD CONSTRAINT checkout_orders_status_check
    CHECK (status IN ('pending', 'confirmed', 'rejected', 'failed', 'unknown'));
-- The idempotency key belongs to the cart and the retailer, not to one checkout: a later
-- checkout of the same cart re-sends the earlier key (and the earlier order body's
-- `checkout_id`, `key_checkout_id`) unless the retailer said the earlier order was not placed.
ALTER TABLE checkout_orders ADD COLUMN idempotency_key text;
ALTER TABLE checkout_orders ADD COLUMN key_checkout_id uuid;
UPDATE checkout_orders SET idempotency_key = checkout_id::text || ':' || retailer_id,
                           key_checkout_id = checkout_id;
ALTER TABLE checkout_orders ALTER COLUMN idempotency_key SET NOT NULL;
ALTER TABLE checkout_orders ALTER COLUMN key_checkout_id SET NOT NULL;
-- When the next call for this order is due (a retry, or a status lookup); NULL means now.
ALTER TABLE checkout_orders ADD COLUMN next_attempt_at timestamptz;
-- Set while an `unknown` order is being settled: lookups stop after this instant.
ALTER TABLE checkout_orders ADD COLUMN settle_until timestamptz;
ALTER TABLE checkout_orders ADD COLUMN lookups integer NOT NULL DEFAULT 0;

-- Checkouts: one processing pass at a time. `pass` counts passes; a message names the pass it
-- expects, so a duplicate cannot fork the chain. `claim` and `claimed_until` mark a pass in
-- flight (a crashed one is taken over once its lease ran out). `deliveries` counts passes that
-- started without finishing; past ICON_WORKER_MAX_DELIVERIES the checkout fails with `reason`.
ALTER TABLE checkouts ADD COLUMN pass integer NOT NULL DEFAULT 0;
ALTER TABLE checkouts ADD COLUMN claim uuid;
ALTER TABLE checkouts ADD COLUMN claimed_until timestamptz;
ALTER TABLE checkouts ADD COLUMN next_due_at timestamptz;
ALTER TABLE checkouts ADD COLUMN deliveries integer NOT NULL DEFAULT 0;
ALTER TABLE checkouts ADD COLUMN last_error text;
ALTER TABLE checkouts ADD COLUMN reason text;

-- Notifications: an attempt is claimed before the call goes out (one call per attempt number).
ALTER TABLE notifications ADD COLUMN claim uuid;
ALTER TABLE notifications ADD COLUMN claimed_until timestamptz;

-- Sweepers skip work whose message still waits in the outbox (a broker outage).
CREATE INDEX outbox_checkout ON outbox (checkout_id);
CREATE INDEX checkouts_by_cart ON checkouts (cart_id, created_at);
