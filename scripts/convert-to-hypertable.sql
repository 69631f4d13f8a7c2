-- Converts a database whose haproxy_raw_logs has native hourly partitions into a TimescaleDB
-- hypertable, in one transaction, then applies the hypertable's settings (migration V26, which
-- is safe to run again). Every raw row is rewritten under an exclusive lock: stop `suiftly run`
-- first (HAProxy's lines sent meanwhile are lost unless the senders buffer), and plan for
-- roughly the `\copy` rate of docs/PERFORMANCE.md per row. The server must preload timescaledb.
--
--   psql "$DATABASE_URL" -f scripts/convert-to-hypertable.sql
--
-- The next `suiftly run` logs "timescaledb hypertable" and sets the retention policy from
-- storage.retention_hours. tests/timescaledb.rs runs this file.
\set ON_ERROR_STOP 1
BEGIN;
DO $check$
BEGIN
    IF (SELECT value FROM suiftly_settings WHERE key = 'raw_logs_storage') IS DISTINCT FROM 'native' THEN
        RAISE EXCEPTION 'haproxy_raw_logs is not native-partitioned here: nothing to convert';
    END IF;
    IF current_setting('shared_preload_libraries') !~ '(^|,)\s*timescaledb\s*(,|$)' THEN
        RAISE EXCEPTION 'this postgresql server does not preload timescaledb'
            USING HINT = 'set shared_preload_libraries = ''timescaledb'' and restart postgresql first (README, "Raw-log storage")';
    END IF;
END
$check$;
CREATE EXTENSION IF NOT EXISTS timescaledb;
LOCK TABLE haproxy_raw_logs IN ACCESS EXCLUSIVE MODE;
ALTER TABLE haproxy_raw_logs RENAME TO haproxy_raw_logs_native;
CREATE TABLE haproxy_raw_logs (LIKE haproxy_raw_logs_native INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
SELECT create_hypertable('haproxy_raw_logs', 'timestamp', chunk_time_interval => interval '1 hour',
                         create_default_indexes => false);
INSERT INTO haproxy_raw_logs SELECT * FROM haproxy_raw_logs_native;
DROP TABLE haproxy_raw_logs_native;
UPDATE suiftly_settings SET value = 'timescaledb' WHERE key = 'raw_logs_storage';
\ir ../migrations/V26__hypertable_settings.sql
COMMIT;
