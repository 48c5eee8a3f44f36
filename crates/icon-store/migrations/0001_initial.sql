-- ICON's first schema: retailers, carts, checkouts with their orders and notifications, and the
-- transactional outbox.

CREATE TABLE retailers (
    id          text PRIMARY KEY CHECK (id ~ '^[a-z0-9-]{1,64}$'),
    name        text NOT NULL,
    order_url   text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE carts (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner       text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE cart_items (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    cart_id       bigint NOT NULL REFERENCES carts (id) ON DELETE CASCADE,
    retailer_id   text NOT NULL REFERENCES retailers (id),
    sku           text NOT NULL,
    quantity      integer NOT NULL CHECK (quantity BETWEEN 1 AND 10000),
    amount_minor  bigint NOT NULL CHECK (amount_minor >= 0),
    currency      char(3) NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cart_items_cart ON cart_items (cart_id, id);

CREATE TABLE checkouts (
    id                 uuid PRIMARY KEY,
    cart_id            bigint NOT NULL REFERENCES carts (id),
    owner              text NOT NULL,
    status             text NOT NULL CHECK (status IN
                         ('queued', 'processing', 'completed', 'partially_completed', 'failed')),
    resource_url       text NOT NULL,
    push_notification  boolean NOT NULL DEFAULT false,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
-- At most one live checkout per cart: a failed checkout frees the cart for another try.
CREATE UNIQUE INDEX checkouts_one_live_per_cart ON checkouts (cart_id) WHERE status <> 'failed';
CREATE INDEX checkouts_unfinished ON checkouts (updated_at) WHERE status IN ('queued', 'processing');

CREATE TABLE checkout_orders (
    checkout_id        uuid NOT NULL REFERENCES checkouts (id) ON DELETE CASCADE,
    retailer_id        text NOT NULL REFERENCES retailers (id),
    order_url          text NOT NULL,
    status             text NOT NULL CHECK (status IN ('pending', 'confirmed', 'rejected', 'failed')),
    retailer_order_id  text,
    reason             text,
    attempts           integer NOT NULL DEFAULT 0,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (checkout_id, retailer_id)
);

-- One row per channel of one checkout (a callback now; pushes later). Its id is the webhook-id.
CREATE TABLE notifications (
    id                    uuid PRIMARY KEY,
    checkout_id           uuid NOT NULL REFERENCES checkouts (id) ON DELETE CASCADE,
    channel               text NOT NULL,
    target                text NOT NULL,
    state                 text NOT NULL CHECK (state IN ('pending', 'retrying', 'delivered', 'failed')),
    attempts              integer NOT NULL DEFAULT 0,
    first_attempt_at      timestamptz,
    last_attempt_at       timestamptz,
    next_attempt_at       timestamptz,
    last_response_status  integer,
    last_error            text,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    UNIQUE (checkout_id, channel)
);

CREATE TABLE notification_attempts (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    notification_id  uuid NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    attempt          integer NOT NULL,
    started_at       timestamptz NOT NULL,
    duration_ms      integer NOT NULL,
    response_status  integer,
    error            text
);
CREATE INDEX notification_attempts_by_notification ON notification_attempts (notification_id, id);

-- Transactional outbox: a message is written in the same transaction as the state change it
-- announces, and a relay publishes it (with publisher confirms) and deletes it afterwards.
CREATE TABLE outbox (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    exchange      text NOT NULL,
    routing_key   text NOT NULL,
    message_id    uuid NOT NULL,
    message_type  text NOT NULL,
    checkout_id   uuid NOT NULL,
    body          bytea NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Messages whose effect a consumer has committed, for de-duplication by message id.
CREATE TABLE processed_messages (
    consumer      text NOT NULL,
    message_id    uuid NOT NULL,
    processed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, message_id)
);
