-- Push notifications and e-mail: the device registry, one notification per device, and a state
-- for a channel this deployment has not configured.

-- A shopper's devices. A token belongs to one user at a time (the latest to register it).
-- Tokens may be up to 4,096 characters, longer than a B-tree entry may be, so the key is the
-- token's SHA-256; the CHECK keeps the text cast in the hash faithful (no backslashes).
CREATE TABLE devices (
    -- Length apart from the pattern: PostgreSQL regexes allow a repetition count up to 255.
    token       text NOT NULL CHECK (token ~ '^[A-Za-z0-9_:.-]+$' AND length(token) <= 4096),
    token_hash  bytea GENERATED ALWAYS AS (sha256(token::bytea)) STORED PRIMARY KEY,
    owner       text NOT NULL,
    platform    text NOT NULL CHECK (platform IN ('android', 'ios', 'web')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX devices_by_owner ON devices (owner, updated_at DESC);

-- A checkout has one notification per channel and target: one callback, one e-mail, one push
-- per device. One index serves that and every lookup by checkout (md5 keeps long tokens within
-- a B-tree entry; a collision could only refuse an insert, never merge two rows).
ALTER TABLE notifications DROP CONSTRAINT notifications_checkout_id_channel_key;
CREATE UNIQUE INDEX notifications_one_per_target ON notifications (checkout_id, channel, md5(target));

-- `not_configured`: the notifier has no credentials for the channel (FCM, SMTP); final, and
-- redeliverable once it has.
ALTER TABLE notifications DROP CONSTRAINT notifications_state_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_state_check
    CHECK (state IN ('pending', 'retrying', 'delivered', 'failed', 'not_configured'));
