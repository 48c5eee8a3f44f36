-- Signed callbacks (issue "Safe on the open internet"): one webhook signing secret per owner
-- (the `owner` of carts and checkouts), sealed with ICON_SECRETS_KEY (AES-256-GCM: a 12-byte
-- nonce, then the ciphertext and its tag; the owner is the associated data, so a row copied to
-- another owner does not open). After a rotation the previous secret still signs until
-- `previous_until`.
CREATE TABLE webhook_secrets (
    owner           text PRIMARY KEY,
    current         bytea NOT NULL,
    previous        bytea,
    previous_until  timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    rotated_at      timestamptz,
    CHECK ((previous IS NULL) = (previous_until IS NULL))
);
