-- Customer domain (issue 5): customers and their login state. Money is BIGINT USD cents.

CREATE TABLE customers (
    customer_id                      INTEGER PRIMARY KEY CHECK (customer_id > 0),
    wallet_address                   TEXT NOT NULL UNIQUE
                                     CHECK (wallet_address ~ '^0x[0-9a-f]{64}$'),
    escrow_contract_id               TEXT,
    max_monthly_usd_cents            BIGINT NOT NULL DEFAULT 200000
                                     CHECK (max_monthly_usd_cents BETWEEN 10000 AND 5000000),
    current_balance_usd_cents        BIGINT NOT NULL DEFAULT 0 CHECK (current_balance_usd_cents >= 0),
    current_month_charged_usd_cents  BIGINT NOT NULL DEFAULT 0 CHECK (current_month_charged_usd_cents >= 0),
    last_month_charged_usd_cents     BIGINT NOT NULL DEFAULT 0 CHECK (last_month_charged_usd_cents >= 0),
    current_month_start              DATE NOT NULL DEFAULT date_trunc('month', now())::date,
    status                           TEXT NOT NULL DEFAULT 'active'
                                     CHECK (status IN ('active', 'suspended', 'closed')),
    created_at                       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at                       TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Login challenges: single use, valid 10 minutes (expires_at is computed by the API's clock).
CREATE TABLE auth_nonces (
    nonce           TEXT PRIMARY KEY,
    wallet_address  TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    expires_at      TIMESTAMPTZ NOT NULL,
    used_at         TIMESTAMPTZ
);
CREATE INDEX auth_nonces_wallet ON auth_nonces (wallet_address, expires_at) WHERE used_at IS NULL;
-- Expired nonces are deleted on every connect (anyone can ask for nonces; rows must not pile up).
CREATE INDEX auth_nonces_expiry ON auth_nonces (expires_at);

-- Refresh tokens are stored as SHA-256 hashes only, so a database leak yields no sessions.
CREATE TABLE refresh_tokens (
    token_hash   BYTEA PRIMARY KEY,
    customer_id  INTEGER NOT NULL REFERENCES customers (customer_id) ON DELETE CASCADE,
    created_at   TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ NOT NULL,
    revoked_at   TIMESTAMPTZ
);
CREATE INDEX refresh_tokens_customer ON refresh_tokens (customer_id);
