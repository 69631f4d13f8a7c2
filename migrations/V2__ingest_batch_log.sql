-- Ids of committed ingest batches, written in the same transaction as the batch's rows.
-- A writer that lost the reply to its COMMIT retries the batch; finding its id here tells it
-- the batch is already stored, so rows are never inserted twice. Rows older than a day are
-- deleted by partition maintenance (ids only need to outlive their batch's retries).
CREATE TABLE ingest_batch_log (
    batch_id     bigint      PRIMARY KEY,
    committed_at timestamptz NOT NULL DEFAULT now(),
    rows         integer     NOT NULL,
    rejected     integer     NOT NULL
);
CREATE INDEX ingest_batch_log_committed_at ON ingest_batch_log (committed_at);
