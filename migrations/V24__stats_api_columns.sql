-- The stats API (issue 13) reads completed hours from stats_per_hour. SPEC §4's columns do not
-- separate what the API must: errors of billable requests only (client_error_count and
-- server_error_count also count stream rows, traffic types 7 and 8, which are not requests)
-- and requests by status class. Written by the settlement roll-up with the other columns
-- (aggregate::settle::stats_hour_select) and checked by `suiftly audit`.
--
-- Rows written before this migration have 0 in the new columns; `requests` needs no column
-- (billable_requests + dropped_count, exact).

ALTER TABLE stats_per_hour
    ADD COLUMN billable_client_error_count bigint NOT NULL DEFAULT 0,
    ADD COLUMN billable_server_error_count bigint NOT NULL DEFAULT 0,
    ADD COLUMN status_2xx_count bigint NOT NULL DEFAULT 0,
    ADD COLUMN status_3xx_count bigint NOT NULL DEFAULT 0,
    ADD COLUMN status_4xx_count bigint NOT NULL DEFAULT 0,
    ADD COLUMN status_5xx_count bigint NOT NULL DEFAULT 0;
