-- The manager (issue 11): one leader across processes.
--
-- The lease row is the fencing token: take-over increments `epoch` with the database's clock
-- (`lease_until < now()`), and every leader-only transaction first reads this row FOR SHARE and
-- checks its own epoch, holder and an unexpired lease, so a deposed or frozen leader cannot
-- commit, and a take-over waits for a leader transaction in progress.
CREATE TABLE manager_lease (
    id           SMALLINT PRIMARY KEY CHECK (id = 1),
    epoch        BIGINT NOT NULL CHECK (epoch >= 0),
    holder       TEXT,
    lease_until  TIMESTAMPTZ,
    acquired_at  TIMESTAMPTZ,
    renewed_at   TIMESTAMPTZ
);
INSERT INTO manager_lease (id, epoch) VALUES (1, 0);

-- Every term, when it began (by the database's clock): who led when.
CREATE TABLE manager_terms (
    epoch        BIGINT PRIMARY KEY,
    holder       TEXT NOT NULL,
    acquired_at  TIMESTAMPTZ NOT NULL
);

-- The mockable clock (tests jump to month boundaries): an offset added to the system clock by
-- every manager (and the API when it runs in the same process). Refused in production mode.
CREATE TABLE manager_clock (
    id          SMALLINT PRIMARY KEY CHECK (id = 1),
    offset_ms   BIGINT NOT NULL DEFAULT 0,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
INSERT INTO manager_clock (id) VALUES (1);
