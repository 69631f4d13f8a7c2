-- The live tail (issue 13): every settlement commit gets a sequence number, and what it added
-- per (minute, customer, service, network) is kept for a day, so a customer stream that
-- reconnects with `Last-Event-ID: <seq>` is replayed exactly the settled events it missed.
-- Written by the aggregator's settlement transaction only, together with aggregate_state:
-- a sequence number is never reused, and a row exists iff its settlement committed.

ALTER TABLE aggregate_state ADD COLUMN settlement_seq bigint NOT NULL DEFAULT 0
    CHECK (settlement_seq >= 0);

CREATE TABLE settlement_log (
    seq                   bigint      PRIMARY KEY CHECK (seq > 0),
    prev_settled_before   timestamptz NOT NULL,
    settled_before        timestamptz NOT NULL,
    -- Requests in this commit that arrived after their minute had settled.
    late_requests         bigint      NOT NULL,
    committed_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX settlement_log_committed_at ON settlement_log (committed_at);

-- The customer-facing numbers of each settlement (suiftly_model::live::Numbers: the rules of
-- the stats API). A newly settled minute's row holds the minute; a late delta's row holds what
-- it added to a minute settled earlier.
CREATE TABLE settlement_minutes (
    customer_id           integer     NOT NULL,
    seq                   bigint      NOT NULL,
    bucket                timestamptz NOT NULL,
    service_type          smallint    NOT NULL,
    network               smallint    NOT NULL,
    requests              bigint      NOT NULL,
    billable_requests     bigint      NOT NULL,
    dropped_requests      bigint      NOT NULL,
    success               bigint      NOT NULL,
    client_errors         bigint      NOT NULL,
    server_errors         bigint      NOT NULL,
    status_2xx            bigint      NOT NULL,
    status_3xx            bigint      NOT NULL,
    status_4xx            bigint      NOT NULL,
    status_5xx            bigint      NOT NULL,
    total_bytes           bigint      NOT NULL,
    billable_bytes        bigint      NOT NULL,
    response_time_sum_ms  bigint      NOT NULL,
    min_response_time_ms  integer,
    max_response_time_ms  integer,
    PRIMARY KEY (customer_id, seq, bucket, service_type, network)
);
CREATE INDEX settlement_minutes_seq ON settlement_minutes (seq);
