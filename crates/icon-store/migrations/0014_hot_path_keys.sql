-- Foreign keys on the hot path that earn nothing for their cost (issue 19 §3). Each checked
-- insert runs a referential-integrity query that locks the parent row FOR KEY SHARE; per
-- checkout that was four queries and four row locks. None of these keys can catch anything:
-- - checkouts, carts and notifications are never deleted (nothing in ICON deletes them, so
--   ON DELETE CASCADE never fired either);
-- - a checkout's orders, notifications and idempotency key are inserted by the statement that
--   inserts the checkout (`icon_create_checkout`), which has just locked the cart FOR UPDATE
--   and checked it belongs to the caller;
-- - an attempt is recorded by the statement that updates its notification.
-- Measured with pgbench on `icon_create_checkout` alone (one client, unique carts): 1.37 and
-- 1.46 ms per checkout with the keys, 1.15 and 1.18 ms without (docs/performance.md).
-- The keys off the hot path (order and checkout events, parked notifications, secrets, cart
-- items) stay.
ALTER TABLE checkouts DROP CONSTRAINT IF EXISTS checkouts_cart_id_fkey;
ALTER TABLE checkout_orders DROP CONSTRAINT IF EXISTS checkout_orders_checkout_id_fkey;
ALTER TABLE notifications DROP CONSTRAINT IF EXISTS notifications_checkout_id_fkey;
ALTER TABLE idempotency_keys DROP CONSTRAINT IF EXISTS idempotency_keys_checkout_id_fkey;
ALTER TABLE notification_attempts DROP CONSTRAINT IF EXISTS notification_attempts_notification_id_fkey;
