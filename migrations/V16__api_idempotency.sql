-- Client idempotency keys with Stripe's semantics: the key is stored (with a hash of the
-- request) once execution starts; a replay with the same request returns the stored result; a
-- replay with different parameters is refused (409). Keys are scoped to the customer.
CREATE TABLE api_idempotency (
    customer_id      INTEGER NOT NULL REFERENCES customers (customer_id),
    idempotency_key  TEXT NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 64),
    -- "POST /billing/deposit", …: a key used on another operation is a conflict too.
    operation        TEXT NOT NULL,
    request_hash     BYTEA NOT NULL,
    intent_id        BIGINT REFERENCES escrow_intents (intent_id),
    response_status  SMALLINT,
    response_body    JSONB,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    completed_at     TIMESTAMPTZ,
    PRIMARY KEY (customer_id, idempotency_key),
    CHECK ((response_status IS NULL) = (completed_at IS NULL))
);
CREATE INDEX api_idempotency_completed ON api_idempotency (completed_at);
