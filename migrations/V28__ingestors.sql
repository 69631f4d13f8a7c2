-- More than one ingestor per database (issue 17): one ingestor per gateway or region, each
-- with its own spool, all writing into this database. Everything an ingestor remembers
-- between runs becomes per ingestor (`[ingest] id`, default 'default'); the default id maps
-- to the keys a single-ingestor database has today, so it migrates without a change of
-- meaning.

-- The ingestors that ever started here. `lock_key` names the session advisory lock a running
-- ingestor holds on a dedicated connection for its lifetime (pg_try_advisory_lock(classid,
-- lock_key), ingest/src/ingestor.rs): a second live process with the same id is refused at
-- start, and the lock is gone the moment the holder's session ends (exit, SIGKILL, lost
-- connection), so a stopped ingestor's id can be taken again at once.
CREATE TABLE ingestors (
    id          text        PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9._-]{1,63}$'),
    lock_key    integer     GENERATED ALWAYS AS IDENTITY UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    started_at  timestamptz NOT NULL DEFAULT now()
);

-- Spool positions (`ingest_positions`) are already keyed by consumer: the default ingestor
-- keeps `copy`, ingestor `x` uses `copy@x` (no schema change).

-- Batch ids are random per process: keyed with the ingestor, two ingestors never collide.
ALTER TABLE ingest_batch_log ADD COLUMN ingestor text NOT NULL DEFAULT 'default';
ALTER TABLE ingest_batch_log DROP CONSTRAINT ingest_batch_log_pkey;
ALTER TABLE ingest_batch_log ADD PRIMARY KEY (ingestor, batch_id);

-- The aggregator's progress, per ingestor (V4's `aggregate_state` columns of the same names):
-- its spool positions, the minutes it has settled, and its own settlement count
-- (`settlement_seq`, exact lost-commit detection), plus the database-wide sequence number its
-- last settlement took (`last_seq`).
CREATE TABLE aggregate_ingestors (
    ingestor            text        PRIMARY KEY,
    applied_through     bigint      NOT NULL CHECK (applied_through >= 0),
    restart_position    bigint      NOT NULL CHECK (restart_position >= 0),
    settled_before      timestamptz NOT NULL,
    settlement_seq      bigint      NOT NULL DEFAULT 0 CHECK (settlement_seq >= 0),
    last_seq            bigint      NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
INSERT INTO aggregate_ingestors (ingestor, applied_through, restart_position, settled_before,
        settlement_seq, last_seq)
    SELECT 'default', applied_through, restart_position, settled_before, settlement_seq,
        settlement_seq
    FROM aggregate_state WHERE id = 1;

-- `aggregate_state` (id = 1) stays what every reader reads: the database-wide watermark and
-- sequence. `settled_before` is the least of the ingestors' (never moving back): minutes
-- before it are settled by every ingestor. `settlement_seq` numbers every settlement of every
-- ingestor (the live tail's event id); a settlement takes this row's lock first, so
-- settlements commit one at a time, in sequence order. Its applied_through and
-- restart_position are no longer written (the positions live in aggregate_ingestors).
COMMENT ON TABLE aggregate_state IS
    'database-wide metering watermark (min over aggregate_ingestors.settled_before) and settlement sequence';
