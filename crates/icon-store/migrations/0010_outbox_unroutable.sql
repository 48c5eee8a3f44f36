-- Outbox rows RabbitMQ could not route to any queue (a queue deleted under them, say): a relay
-- sets such a row aside instead of reconnecting in a loop. It stays in the table (nothing is
-- lost), counted in `icon_outbox_unroutable` and `/readyz`, and is retried with a growing
-- `publish_after`, so it never holds back the rows published with it. NULL: routable so far.
ALTER TABLE outbox ADD COLUMN unroutable_since timestamptz;
