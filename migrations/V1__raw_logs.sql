-- Raw HAProxy log rows (SPEC section 3) and the lines that could not be parsed.
--
-- haproxy_raw_logs has no foreign keys on purpose: an insert must never fail because a
-- customer is unknown. It is partitioned by hour. Where the timescaledb extension is
-- preloaded it becomes a hypertable (1-hour chunks, compression after 6 h, retention 7 days);
-- otherwise it is a native range-partitioned table whose hourly partitions the ingestor
-- creates ahead and drops past retention (see ingest/src/partitions.rs). Which branch ran is
-- recorded in suiftly_settings('raw_logs_storage').

CREATE TABLE IF NOT EXISTS suiftly_settings (
    key   text PRIMARY KEY,
    value text NOT NULL
);

DO $migration$
DECLARE
    columns text := $cols$
        "timestamp"        timestamptz NOT NULL,
        customer_id        integer,
        path_prefix        text,
        config_hex         bigint,
        network            smallint    NOT NULL,
        server_id          smallint    NOT NULL,
        service_type       smallint    NOT NULL,
        api_key_fp         bigint      NOT NULL,
        fe_type            smallint    NOT NULL,
        traffic_type       smallint    NOT NULL,
        event_type         smallint    NOT NULL,
        client_ip          inet        NOT NULL,
        key_metadata       smallint,
        status_code        smallint    NOT NULL,
        bytes_sent         bigint      NOT NULL,
        time_total         integer     NOT NULL,
        time_request       integer,
        time_queue         integer,
        time_connect       integer,
        time_response      integer,
        backend_id         smallint,
        termination_state  text,
        repeat             integer     NOT NULL DEFAULT 1
    $cols$;
    timescale boolean;
BEGIN
    timescale := EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')
        AND current_setting('shared_preload_libraries') LIKE '%timescaledb%';
    IF timescale THEN
        CREATE EXTENSION IF NOT EXISTS timescaledb;
        EXECUTE format('CREATE TABLE haproxy_raw_logs (%s)', columns);
        PERFORM create_hypertable('haproxy_raw_logs', 'timestamp',
                                  chunk_time_interval => interval '1 hour');
        EXECUTE 'ALTER TABLE haproxy_raw_logs SET (timescaledb.compress, '
             || 'timescaledb.compress_segmentby = ''server_id, service_type, network'', '
             || 'timescaledb.compress_orderby = ''"timestamp" DESC'')';
        PERFORM add_compression_policy('haproxy_raw_logs', interval '6 hours');
        PERFORM add_retention_policy('haproxy_raw_logs', interval '7 days');
        INSERT INTO suiftly_settings VALUES ('raw_logs_storage', 'timescaledb');
    ELSE
        EXECUTE format('CREATE TABLE haproxy_raw_logs (%s) PARTITION BY RANGE ("timestamp")',
                       columns);
        INSERT INTO suiftly_settings VALUES ('raw_logs_storage', 'native');
    END IF;
END
$migration$;

-- Lines that could not become rows, kept verbatim with the reason so nothing is lost and an
-- operator can replay them after a parser fix.
CREATE TABLE haproxy_rejected_lines (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at   timestamptz NOT NULL,
    listener      text        NOT NULL,
    source_addr   text,
    reason        text        NOT NULL,
    error_offset  integer,
    raw           bytea       NOT NULL
);
CREATE INDEX haproxy_rejected_lines_received_at ON haproxy_rejected_lines (received_at);
