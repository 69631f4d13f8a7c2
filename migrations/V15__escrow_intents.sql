-- Exactly-once money (BILLING.md §8, docs/BILLING.md "Durability"): every escrow call is an
-- intent committed here before the call, with the nonce the escrow deduplicates on; the
-- outcome is committed after it. A pending intent is completed by calling the escrow again
-- with the same nonce.
CREATE TABLE escrow_intents (
    intent_id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id          INTEGER NOT NULL REFERENCES customers (customer_id),
    kind                 TEXT NOT NULL CHECK (kind IN ('deposit', 'withdraw', 'charge')),
    amount_cents         BIGINT NOT NULL CHECK (amount_cents > 0),
    nonce                TEXT NOT NULL,
    -- Charges: what they pay (the invoice and its charge sequence).
    invoice_id           BIGINT REFERENCES invoices (invoice_id),
    charge_seq           INTEGER,
    -- API movements: the client's idempotency key.
    idempotency_key      TEXT,
    state                TEXT NOT NULL DEFAULT 'pending'
                         CHECK (state IN ('pending', 'succeeded', 'refused')),
    -- The escrow's refusal (e.g. insufficient_funds), when refused.
    refusal              TEXT,
    tx_digest            TEXT UNIQUE,
    balance_after_cents  BIGINT,
    -- Leader epoch that committed the intent, and the one that recorded its outcome (manager
    -- writes; NULL for the API's): the fault tests check no write of epoch e follows the
    -- take-over by e + 1.
    epoch                BIGINT,
    completed_epoch      BIGINT,
    attempts             INTEGER NOT NULL DEFAULT 0,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    completed_at         TIMESTAMPTZ,
    UNIQUE (customer_id, nonce),
    UNIQUE (invoice_id, charge_seq),
    CHECK ((kind = 'charge') = (invoice_id IS NOT NULL AND charge_seq IS NOT NULL)),
    CHECK ((state = 'succeeded') = (tx_digest IS NOT NULL)),
    CHECK ((state = 'refused') = (refusal IS NOT NULL)),
    CHECK ((state = 'pending') = (completed_at IS NULL))
);
CREATE INDEX escrow_intents_pending ON escrow_intents (created_at) WHERE state = 'pending';
CREATE INDEX escrow_intents_customer ON escrow_intents (customer_id, created_at);

-- The ledger row of a settled intent names it (and the invoice it paid).
ALTER TABLE escrow_transactions
    ADD COLUMN intent_id  BIGINT UNIQUE REFERENCES escrow_intents (intent_id),
    ADD COLUMN invoice_id BIGINT REFERENCES invoices (invoice_id);

-- Movements recorded before intents existed become settled intents, so their nonces (the
-- clients' idempotency keys) stay taken.
INSERT INTO escrow_intents (customer_id, kind, amount_cents, nonce, state, tx_digest,
                            balance_after_cents, created_at, completed_at)
SELECT customer_id, kind, amount_usd_cents, nonce, 'succeeded', tx_digest, balance_after_cents,
       created_at, created_at
FROM escrow_transactions WHERE kind <> 'charge'
ON CONFLICT (customer_id, nonce) DO NOTHING;
UPDATE escrow_transactions e SET intent_id = i.intent_id
FROM escrow_intents i WHERE i.tx_digest = e.tx_digest;
