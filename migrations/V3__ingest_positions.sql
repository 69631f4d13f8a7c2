-- How far each consumer of the disk spool has committed. The COPY writer advances its row in
-- the same transaction as the rows it stored (`... WHERE position = <batch start>`), so after
-- any crash it resumes exactly where the database says it stopped: no line stored twice, none
-- skipped.
CREATE TABLE ingest_positions (
    consumer    text        PRIMARY KEY,
    position    bigint      NOT NULL CHECK (position >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
