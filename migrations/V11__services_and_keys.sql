-- Customer domain (issue 5): subscribed services, API keys, Seal keys.

CREATE TABLE service_instances (
    instance_id   BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id   INTEGER NOT NULL REFERENCES customers (customer_id) ON DELETE CASCADE,
    service_type  SMALLINT NOT NULL CHECK (service_type BETWEEN 1 AND 6),
    tier          TEXT NOT NULL CHECK (tier IN ('starter', 'pro', 'enterprise')),
    is_enabled    BOOLEAN NOT NULL DEFAULT false,
    config        JSONB NOT NULL DEFAULT '{}'::jsonb,
    enabled_at    TIMESTAMPTZ,
    disabled_at   TIMESTAMPTZ,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (customer_id, service_type)
);

CREATE TABLE api_keys (
    key_id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id    INTEGER NOT NULL REFERENCES customers (customer_id) ON DELETE CASCADE,
    service_type   SMALLINT NOT NULL CHECK (service_type BETWEEN 1 AND 6),
    -- SPEC section 6: signed i32 stored in a BIGINT.
    fingerprint    BIGINT NOT NULL CHECK (fingerprint BETWEEN -2147483648 AND 2147483647),
    -- AES-256-GCM (nonce ‖ ciphertext ‖ tag) of the full key.
    encrypted_key  BYTEA NOT NULL,
    -- Masked preview for listings (first 6 and last 4 characters).
    key_preview    TEXT NOT NULL,
    key_version    SMALLINT NOT NULL DEFAULT 0 CHECK (key_version BETWEEN 0 AND 3),
    seal_network   SMALLINT NOT NULL CHECK (seal_network IN (0, 1)),
    seal_access    SMALLINT NOT NULL CHECK (seal_access IN (0, 1)),
    seal_source    SMALLINT NOT NULL CHECK (seal_source IN (0, 1)),
    proc_group     SMALLINT NOT NULL CHECK (proc_group BETWEEN 0 AND 7),
    is_active      BOOLEAN NOT NULL DEFAULT true,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at     TIMESTAMPTZ,
    CHECK (is_active = (revoked_at IS NULL))
);
CREATE INDEX api_keys_customer ON api_keys (customer_id, service_type) WHERE is_active;
CREATE INDEX api_keys_fingerprint ON api_keys (fingerprint);

CREATE TABLE seal_keys (
    seal_key_id     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id     INTEGER NOT NULL REFERENCES customers (customer_id) ON DELETE CASCADE,
    instance_id     BIGINT NOT NULL REFERENCES service_instances (instance_id) ON DELETE CASCADE,
    public_key      TEXT NOT NULL UNIQUE,
    derivation_index INTEGER,
    package_ids     JSONB NOT NULL DEFAULT '[]'::jsonb,
    is_active       BOOLEAN NOT NULL DEFAULT true,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at      TIMESTAMPTZ
);
CREATE INDEX seal_keys_customer ON seal_keys (customer_id);
