-- The hypertable branch of V1, made complete and safe to run again.
--
-- V1 makes haproxy_raw_logs a TimescaleDB hypertable when the server preloads the extension
-- (native hourly partitions otherwise) and records which in suiftly_settings
-- ('raw_logs_storage'). This migration brings a hypertable to the settings the product relies
-- on, whatever V1 or an operator left behind:
--   - 1-hour chunks (applies to chunks created from now on),
--   - compression segmented by (server_id, service_type, network), ordered by timestamp DESC,
--   - a compression policy compressing chunks older than 6 hours, run every hour.
-- Retention is not set here: `storage.retention_hours` owns it, and the ingestor applies it at
-- start-up and at every maintenance pass (ingest/src/timescale.rs). The hypertable keeps no
-- index (as the native table has none, docs/PERFORMANCE.md): reads are time ranges, and chunk
-- exclusion plus the compressed batches' min/max metadata serve them.
--
-- Each step looks before it changes, so running this body again changes nothing
-- (tests/timescaledb.rs runs it twice). A native-partitioned database is left as it is, also
-- when the server has started preloading TimescaleDB since: converting means rewriting every
-- raw row under an exclusive lock, which an operator schedules (README, "TimescaleDB"). A
-- hypertable on a server that does not preload TimescaleDB is refused with what to do.
DO $migration$
DECLARE
    storage   text;
    preloaded boolean := current_setting('shared_preload_libraries') ~ '(^|,)\s*timescaledb\s*(,|$)';
    segmentby text;
    orderby   text;
    interval_now interval;
    policy    record;
BEGIN
    SELECT value INTO storage FROM suiftly_settings WHERE key = 'raw_logs_storage';
    IF storage IS DISTINCT FROM 'timescaledb' THEN
        IF preloaded THEN
            RAISE NOTICE 'haproxy_raw_logs keeps its native hourly partitions: this database was created before the server preloaded timescaledb, and it is not converted automatically (README, "TimescaleDB", says how)';
        END IF;
        RETURN;
    END IF;
    IF NOT preloaded THEN
        RAISE EXCEPTION 'haproxy_raw_logs is a timescaledb hypertable, but this postgresql server does not preload timescaledb'
            USING HINT = 'install timescaledb for this postgresql version, set shared_preload_libraries = ''timescaledb'' in postgresql.conf and restart postgresql (README, "TimescaleDB")';
    END IF;

    SELECT d.time_interval INTO interval_now
      FROM timescaledb_information.dimensions d
     WHERE d.hypertable_schema = current_schema() AND d.hypertable_name = 'haproxy_raw_logs'
       AND d.column_name = 'timestamp';
    IF interval_now IS DISTINCT FROM interval '1 hour' THEN
        PERFORM set_chunk_time_interval('haproxy_raw_logs', interval '1 hour');
    END IF;

    SELECT string_agg(s.attname::text, ',' ORDER BY s.segmentby_column_index)
             FILTER (WHERE s.segmentby_column_index IS NOT NULL),
           string_agg(s.attname || CASE WHEN s.orderby_asc THEN ' ASC' ELSE ' DESC' END, ','
                      ORDER BY s.orderby_column_index)
             FILTER (WHERE s.orderby_column_index IS NOT NULL)
      INTO segmentby, orderby
      FROM timescaledb_information.compression_settings s
     WHERE s.hypertable_schema = current_schema() AND s.hypertable_name = 'haproxy_raw_logs';
    IF segmentby IS DISTINCT FROM 'server_id,service_type,network'
       OR orderby IS DISTINCT FROM 'timestamp DESC' THEN
        ALTER TABLE haproxy_raw_logs SET (
            timescaledb.compress,
            timescaledb.compress_segmentby = 'server_id, service_type, network',
            timescaledb.compress_orderby = '"timestamp" DESC');
    END IF;

    SELECT j.job_id, (j.config->>'compress_after')::interval AS compress_after,
           j.schedule_interval
      INTO policy
      FROM timescaledb_information.jobs j
     WHERE j.proc_name = 'policy_compression'
       AND j.hypertable_schema = current_schema() AND j.hypertable_name = 'haproxy_raw_logs';
    IF policy.job_id IS NULL
       OR policy.compress_after IS DISTINCT FROM interval '6 hours'
       OR policy.schedule_interval IS DISTINCT FROM interval '1 hour' THEN
        PERFORM remove_compression_policy('haproxy_raw_logs', if_exists => true);
        PERFORM add_compression_policy('haproxy_raw_logs', compress_after => interval '6 hours',
                                       schedule_interval => interval '1 hour');
    END IF;

    -- create_hypertable's default index on "timestamp" DESC (V1 did not opt out of it).
    IF to_regclass('haproxy_raw_logs_timestamp_idx') IS NOT NULL THEN
        DROP INDEX haproxy_raw_logs_timestamp_idx;
    END IF;
END
$migration$;
