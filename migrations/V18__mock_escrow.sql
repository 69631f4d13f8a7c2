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

-- One call of the mock, in one statement (one round trip, its own transaction): the account
-- row lock orders calls on an account, including two with the same nonce. Outcomes: 'found'
-- (the nonce's first transaction), 'insufficient' (nothing recorded; balance_after_cents is
-- the balance), 'applied'.
CREATE FUNCTION mock_escrow_apply(p_account INTEGER, p_kind TEXT, p_amount BIGINT, p_nonce TEXT, p_digest TEXT)
RETURNS TABLE (outcome TEXT, digest TEXT, kind TEXT, amount_cents BIGINT, balance_after_cents BIGINT)
LANGUAGE plpgsql AS $$
DECLARE
    bal BIGINT;
    t mock_escrow_transactions%ROWTYPE;
BEGIN
    INSERT INTO mock_escrow_accounts (account, balance_cents) VALUES (p_account, 0)
    ON CONFLICT (account) DO NOTHING;
    SELECT a.balance_cents INTO bal FROM mock_escrow_accounts a WHERE a.account = p_account FOR UPDATE;
    SELECT * INTO t FROM mock_escrow_transactions m WHERE m.account = p_account AND m.nonce = p_nonce;
    IF FOUND THEN
        RETURN QUERY SELECT 'found'::text, t.digest, t.kind, t.amount_cents, t.balance_after_cents;
        RETURN;
    END IF;
    IF p_kind = 'deposit' THEN
        bal := bal + p_amount;
    ELSIF bal < p_amount THEN
        RETURN QUERY SELECT 'insufficient'::text, NULL::text, p_kind, p_amount, bal;
        RETURN;
    ELSE
        bal := bal - p_amount;
    END IF;
    UPDATE mock_escrow_accounts SET balance_cents = bal, updated_at = now() WHERE account = p_account;
    INSERT INTO mock_escrow_transactions (digest, account, kind, amount_cents, balance_after_cents, nonce)
    VALUES (p_digest, p_account, p_kind, p_amount, bal, p_nonce);
    RETURN QUERY SELECT 'applied'::text, p_digest, p_kind, p_amount, bal;
END $$;
