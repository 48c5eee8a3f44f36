-- Signed requests to retailers (issue 17 §1): one signing secret per retailer, kept exactly as
-- the owners' secrets of 0006 are (sealed with ICON_SECRETS_KEY, AES-256-GCM, a 12-byte nonce
-- then the ciphertext and its tag), but bound to a NUL and `retailer:<id>` as the associated
-- data, which no owner id can be, so a row copied between the two tables does not open. The
-- gateway creates a retailer's secret when it registers it; a retailer registered before this
-- migration gets its secret on first use (the worker's first call to it, or
-- GET /retailers/{id}/webhook-secret): the database cannot seal, so no row is made here, and the
-- worker never sends a request unsigned.
CREATE TABLE retailer_secrets (
    retailer_id     text PRIMARY KEY REFERENCES retailers (id),
    current         bytea NOT NULL,
    previous        bytea,
    previous_until  timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    rotated_at      timestamptz,
    CHECK ((previous IS NULL) = (previous_until IS NULL))
);
