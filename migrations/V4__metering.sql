-- Metering aggregates (SPEC section 4), written only by the aggregator's settlement
-- transaction together with `aggregate_state`, so they are exactly once across restarts.
--
-- Averages are stored for readers and the exact sums (and, for timers that may be NULL, the
-- weights) beside them, so that rows arriving after their window settled are merged exactly:
-- avg = sum / weight, recomputed on every merge.

CREATE TABLE stats_per_min (
    bucket                  timestamptz NOT NULL,
    customer_id             integer     NOT NULL,
    service_type            smallint    NOT NULL,
    network                 smallint    NOT NULL,
    traffic_type            smallint    NOT NULL,
    status_code             smallint    NOT NULL,
    request_count           bigint      NOT NULL,
    total_bytes             bigint      NOT NULL,
    avg_response_time_ms    double precision,
    min_response_time_ms    integer,
    max_response_time_ms    integer,
    response_time_sum_ms    bigint      NOT NULL,
    PRIMARY KEY (bucket, customer_id, service_type, network, traffic_type, status_code)
);

CREATE TABLE stats_per_hour (
    bucket                      timestamptz NOT NULL,
    customer_id                 integer     NOT NULL,
    service_type                smallint    NOT NULL,
    network                     smallint    NOT NULL,
    guaranteed_success_count    bigint      NOT NULL,
    burst_success_count         bigint      NOT NULL,
    dropped_count               bigint      NOT NULL,
    client_error_count          bigint      NOT NULL,
    server_error_count          bigint      NOT NULL,
    billable_requests           bigint      NOT NULL,
    success_count               bigint      NOT NULL,
    avg_response_time_ms        double precision,
    min_response_time_ms        integer,
    max_response_time_ms        integer,
    response_time_sum_ms        bigint      NOT NULL,
    total_bytes                 bigint      NOT NULL,
    billable_bytes              bigint      NOT NULL,
    PRIMARY KEY (bucket, customer_id, service_type, network)
);
CREATE INDEX stats_per_hour_customer ON stats_per_hour (customer_id, bucket);

-- infra_per_min / _hour / _day share one shape.
CREATE TABLE infra_per_min (
    bucket                  timestamptz NOT NULL,
    server_id               smallint    NOT NULL,
    service_type            smallint    NOT NULL,
    network                 smallint    NOT NULL,
    backend_id              smallint,
    event_type              smallint    NOT NULL,
    status_code             smallint    NOT NULL,
    request_count           bigint      NOT NULL,
    avg_total_time_ms       double precision,
    avg_queue_time_ms       double precision,
    avg_connect_time_ms     double precision,
    avg_response_time_ms    double precision,
    total_time_sum_ms       bigint      NOT NULL,
    queue_time_sum_ms       bigint      NOT NULL,
    queue_time_weight       bigint      NOT NULL,
    connect_time_sum_ms     bigint      NOT NULL,
    connect_time_weight     bigint      NOT NULL,
    response_time_sum_ms    bigint      NOT NULL,
    response_time_weight    bigint      NOT NULL,
    CONSTRAINT infra_per_min_key UNIQUE NULLS NOT DISTINCT
        (bucket, server_id, service_type, network, backend_id, event_type, status_code)
);
CREATE TABLE infra_per_hour (LIKE infra_per_min INCLUDING DEFAULTS);
ALTER TABLE infra_per_hour ADD CONSTRAINT infra_per_hour_key UNIQUE NULLS NOT DISTINCT
    (bucket, server_id, service_type, network, backend_id, event_type, status_code);
CREATE TABLE infra_per_day (LIKE infra_per_min INCLUDING DEFAULTS);
ALTER TABLE infra_per_day ADD CONSTRAINT infra_per_day_key UNIQUE NULLS NOT DISTINCT
    (bucket, server_id, service_type, network, backend_id, event_type, status_code);

-- Hourly usage per (customer, service) for billing. A revision > 0 holds usage that arrived
-- after the earlier revision was charged; billing charges every row whose charged_amount is
-- NULL. Money is integer USD cents.
CREATE TABLE usage_records (
    id                  bigserial   PRIMARY KEY,
    customer_id         integer     NOT NULL,
    service_type        smallint    NOT NULL,
    window_start        timestamptz NOT NULL,
    window_end          timestamptz NOT NULL,
    revision            integer     NOT NULL DEFAULT 0,
    request_count       bigint      NOT NULL,
    bytes_transferred   bigint      NOT NULL,
    charged_amount      bigint,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CHECK (window_end > window_start),
    UNIQUE (customer_id, service_type, window_start, revision)
);
CREATE INDEX usage_records_unbilled ON usage_records (window_start) WHERE charged_amount IS NULL;

-- The aggregator's progress: every spool record below applied_through is included in every
-- settled minute; no record below restart_position feeds an unsettled minute; minutes before
-- settled_before are settled (hours and days complete with their last minute).
CREATE TABLE aggregate_state (
    id                  smallint    PRIMARY KEY CHECK (id = 1),
    applied_through     bigint      NOT NULL CHECK (applied_through >= 0),
    restart_position    bigint      NOT NULL CHECK (restart_position >= 0),
    settled_before      timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL DEFAULT now()
);
