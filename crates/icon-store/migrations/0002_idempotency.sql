-- Idempotent checkout submission (draft-ietf-httpapi-idempotency-key-header): the first
-- successful response to a (user, key) is kept and replayed for retries with the same body.
CREATE TABLE idempotency_keys (
    owner            text NOT NULL,
    key              text NOT NULL,
    request          text NOT NULL,        -- the canonical JSON body of the first request
    checkout_id      uuid NOT NULL REFERENCES checkouts (id) ON DELETE CASCADE,
    response_status  integer NOT NULL,
    response_body    text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (owner, key)
);
CREATE INDEX idempotency_keys_age ON idempotency_keys (created_at);
