-- The vault HAProxy reads (issue 12, SPEC section 7): every version the vault stage wrote, and
-- what each gateway has applied. The files on disk are the truth HAProxy loads; these rows are
-- the record (operators, metrics, the next sequence number after a wiped directory).

CREATE TABLE vault_versions (
    seq           BIGINT PRIMARY KEY CHECK (seq > 0),
    -- SHA-256 (hex) over the map entries and the CSV: equal hash = nothing changed.
    content_hash  TEXT NOT NULL CHECK (content_hash ~ '^[0-9a-f]{64}$'),
    -- Keys in the map (without the version marker line) and rows in the MA_VAULT CSV.
    entries       INTEGER NOT NULL CHECK (entries >= 0),
    csv_rows      INTEGER NOT NULL CHECK (csv_rows >= 0),
    map_bytes     BIGINT NOT NULL,
    csv_bytes     BIGINT NOT NULL,
    written_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Which process wrote it (host:pid), for two-writer investigations.
    written_by    TEXT NOT NULL
);
CREATE INDEX vault_versions_written_at ON vault_versions (written_at);

-- Per gateway: the last version verified live through its runtime API, and the failures since.
CREATE TABLE vault_gateways (
    gateway               TEXT PRIMARY KEY,
    endpoint              TEXT NOT NULL,
    applied_seq           BIGINT,
    applied_hash          TEXT,
    -- HAProxy's own map version (`show map` curr_ver) after the commit.
    haproxy_version       BIGINT,
    applied_at            TIMESTAMPTZ,
    last_attempt_at       TIMESTAMPTZ,
    last_error            TEXT,
    consecutive_failures  INTEGER NOT NULL DEFAULT 0,
    total_failures        BIGINT NOT NULL DEFAULT 0
);
