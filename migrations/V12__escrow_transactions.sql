-- Customer domain (issue 5): every escrow movement, once (the digest is unique).

CREATE TABLE escrow_transactions (
    tx_id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id          INTEGER NOT NULL REFERENCES customers (customer_id) ON DELETE CASCADE,
    tx_digest            TEXT NOT NULL UNIQUE,
    kind                 TEXT NOT NULL CHECK (kind IN ('deposit', 'withdraw', 'charge')),
    amount_usd_cents     BIGINT NOT NULL CHECK (amount_usd_cents > 0),
    balance_after_cents  BIGINT NOT NULL,
    nonce                TEXT NOT NULL,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (customer_id, nonce, kind)
);
CREATE INDEX escrow_transactions_customer ON escrow_transactions (customer_id, created_at);
