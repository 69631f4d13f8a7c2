-- The escrow mock's own state (the chain, in tests and on test networks): it survives
-- restarts, is idempotent by (account, nonce) and refuses overdraft. Written only by the mock
-- through its own connections, committed independently of the manager's and the API's
-- transactions, like a remote contract.
CREATE TABLE mock_escrow_accounts (
    account        INTEGER PRIMARY KEY,
    balance_cents  BIGINT NOT NULL CHECK (balance_cents >= 0),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE mock_escrow_transactions (
    digest               TEXT PRIMARY KEY,
    account              INTEGER NOT NULL REFERENCES mock_escrow_accounts (account),
    kind                 TEXT NOT NULL CHECK (kind IN ('deposit', 'withdraw', 'charge')),
    amount_cents         BIGINT NOT NULL CHECK (amount_cents > 0),
    balance_after_cents  BIGINT NOT NULL CHECK (balance_after_cents >= 0),
    nonce                TEXT NOT NULL,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (account, nonce)
);

-- The in-memory mock it replaces was re-seeded from the stored balances at every start.
INSERT INTO mock_escrow_accounts (account, balance_cents)
SELECT customer_id, current_balance_usd_cents FROM customers WHERE current_balance_usd_cents > 0;
INSERT INTO mock_escrow_transactions (digest, account, kind, amount_cents, balance_after_cents, nonce)
SELECT '0x' || encode(sha256(convert_to(customer_id::text || ':deposit:migration-seed', 'UTF8')), 'hex'),
       customer_id, 'deposit', current_balance_usd_cents, current_balance_usd_cents, 'migration-seed'
FROM customers WHERE current_balance_usd_cents > 0;
