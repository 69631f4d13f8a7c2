//! Settlement into PostgreSQL: one transaction per [`Settlement`] writes the minute rows,
//! rolls up the hours and days that completed, adjusts settled rows for late deltas, merges
//! the settled minutes' billable usage into the hours' `usage_records` rows (as they settle,
//! not when the hour completes), and moves this ingestor's `aggregate_ingestors` row from
//! `prev` to `next` — all or nothing.
//!
//! Several ingestors (one aggregator each) settle into one database. Every settlement first
//! locks the database-wide row `aggregate_state` (id = 1), so settlements commit one at a time:
//! each takes the next database-wide sequence number (the live tail's event id) and moves the
//! database-wide watermark `aggregate_state.settled_before` to the least of the ingestors'
//! (never back). Minute rows are additive upserts, so two ingestors settling the same minute
//! both count. Hours and days roll up from the minute tables only once *every* ingestor has
//! settled them (the database-wide watermark crossed them); a settlement's rows for hours
//! that already rolled up are added to the hour and day rows directly, like late deltas.
//!
//! Roll-ups happen in SQL from the minute tables (for buckets that completed in this
//! transaction) or from the delta rows (for late rows whose hour or day had already
//! completed), with one additive upsert per target table: sums add, min/max take the least /
//! greatest, averages are recomputed from the exact sums and weights.

use std::time::SystemTime;

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Transaction};
use tracing::warn;

use crate::window::{Persisted, Settlement, US_PER_MIN};

#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error(
        "aggregate_ingestors row of ingestor {ingestor:?} is {found:?}, expected {expected:?}: another aggregator is settling for the same ingestor id"
    )]
    Conflict {
        ingestor: String,
        expected: Persisted,
        found: Persisted,
    },
    #[error("aggregate_ingestors has no row for ingestor {0:?} (load_or_init first)")]
    NoState(String),
}

pub use suiftly_model::UsageRow;
pub use suiftly_model::time::{minute_to_time, time_to_us, us_to_time};

/// What a commit did.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// The transaction found `next` already stored (a lost COMMIT reply on an earlier try).
    pub already_committed: bool,
    /// Hours (µs since the epoch) whose rows were written in this commit.
    pub completed_hours: Vec<i64>,
    /// `usage_records` rows inserted or adjusted.
    pub usage: Vec<UsageRow>,
    /// The database-wide sequence number this settlement took (`settlement_log.seq`).
    pub seq: u64,
    /// The database-wide watermark (minutes since the epoch) before and after this settlement:
    /// minutes before `settled_before.1` are settled by every ingestor.
    pub settled_before: (i64, i64),
}

/// The one connection helper (UTC session, lock timeout): see `suiftly_migrations::connect`.
pub use suiftly_migrations::connect;

fn row_to_persisted(r: &tokio_postgres::Row) -> Persisted {
    Persisted {
        applied_through: r.get::<_, i64>(0) as u64,
        restart_position: r.get::<_, i64>(1) as u64,
        settled_before: time_to_us(r.get::<_, SystemTime>(2)).div_euclid(US_PER_MIN),
        settlement_seq: r.get::<_, i64>(3) as u64,
    }
}

const INGESTOR_COLUMNS: &str = "applied_through, restart_position, settled_before, settlement_seq";

/// Loads ingestor `ingestor`'s aggregator state, creating it at `(start, start)` when it has
/// none. A database never metered before gets its database-wide row with minutes before
/// `settled_before` counted as settled; a new ingestor joins at the database-wide watermark.
/// The default ingestor of a database metered before ingestor ids existed (or whose
/// `aggregate_state` row was written by hand, and no ingestor has a row yet) takes that row's
/// positions over: they are its spool's.
pub async fn load_or_init(
    client: &Client,
    ingestor: &str,
    start: u64,
    settled_before: i64,
) -> Result<(Persisted, bool), SettleError> {
    client
        .execute(
            "INSERT INTO aggregate_state (id, applied_through, restart_position, settled_before) \
             VALUES (1, $1, $1, $2) ON CONFLICT (id) DO NOTHING",
            &[&(start as i64), &minute_to_time(settled_before)],
        )
        .await?;
    let n = client
        .execute(
            "INSERT INTO aggregate_ingestors (ingestor, applied_through, restart_position, \
                settled_before, settlement_seq, last_seq) \
             SELECT $1, \
                CASE WHEN adopt THEN a.applied_through ELSE $2 END, \
                CASE WHEN adopt THEN a.restart_position ELSE $2 END, \
                a.settled_before, \
                CASE WHEN adopt THEN a.settlement_seq ELSE 0 END, \
                CASE WHEN adopt THEN a.settlement_seq ELSE 0 END \
             FROM aggregate_state a, \
                LATERAL (SELECT $1 = $3 AND NOT EXISTS (SELECT 1 FROM aggregate_ingestors) AS adopt) x \
             WHERE a.id = 1 \
             ON CONFLICT (ingestor) DO NOTHING",
            &[&ingestor, &(start as i64), &DEFAULT_INGESTOR],
        )
        .await?;
    let r = client
        .query_one(
            &format!("SELECT {INGESTOR_COLUMNS} FROM aggregate_ingestors WHERE ingestor = $1"),
            &[&ingestor],
        )
        .await?;
    Ok((row_to_persisted(&r), n == 1))
}

/// The id of a single-ingestor deployment (`suiftly_ingest::ingestor::DEFAULT_ID`; this crate
/// does not depend on the ingest crate).
pub const DEFAULT_INGESTOR: &str = "default";

/// Moves ingestor `ingestor`'s metering to `position` with minutes before now − lateness
/// settled, when it cannot replay from where it stood (see the caller).
pub async fn reset(
    conninfo: &str,
    ingestor: &str,
    position: u64,
    cfg: &crate::window::WindowConfig,
) -> Result<Persisted, SettleError> {
    let client = connect(conninfo).await?;
    let now = suiftly_model::time::now_us();
    let sb = (now - cfg.allowed_lateness_us).div_euclid(US_PER_MIN);
    let r = client
        .query_one(
            &format!(
                "UPDATE aggregate_ingestors SET applied_through = $1, restart_position = $1, \
                    settled_before = GREATEST(settled_before, $2), updated_at = now() \
                 WHERE ingestor = $3 RETURNING {INGESTOR_COLUMNS}"
            ),
            &[&(position as i64), &minute_to_time(sb), &ingestor],
        )
        .await?;
    Ok(row_to_persisted(&r))
}

pub use suiftly_model::live::{NUMBERS_COLUMNS, NUMBERS_SQL};

/// The `stats_per_hour` columns computed from minute-shaped rows (`stats_per_min`, the delta
/// table, or raw rows shaped alike by the audit).
pub fn stats_hour_select(src: &str, cond: &str) -> String {
    const B: &str = "traffic_type IN (1, 2)";
    // Requests for the status classes (V24): traffic types 1–6 (suiftly_model::live).
    const R: &str = "traffic_type BETWEEN 1 AND 6";
    format!(
        "SELECT date_trunc('hour', bucket) AS bucket, customer_id, service_type, network, \
            COALESCE(SUM(request_count) FILTER (WHERE traffic_type = 1 AND status_code BETWEEN 200 AND 299), 0)::bigint AS guaranteed_success_count, \
            COALESCE(SUM(request_count) FILTER (WHERE traffic_type = 2 AND status_code BETWEEN 200 AND 299), 0)::bigint AS burst_success_count, \
            COALESCE(SUM(request_count) FILTER (WHERE traffic_type BETWEEN 3 AND 6), 0)::bigint AS dropped_count, \
            COALESCE(SUM(request_count) FILTER (WHERE status_code BETWEEN 400 AND 499 AND traffic_type NOT BETWEEN 3 AND 6), 0)::bigint AS client_error_count, \
            COALESCE(SUM(request_count) FILTER (WHERE status_code >= 500 AND traffic_type NOT BETWEEN 3 AND 6), 0)::bigint AS server_error_count, \
            COALESCE(SUM(request_count) FILTER (WHERE {B}), 0)::bigint AS billable_requests, \
            COALESCE(SUM(request_count) FILTER (WHERE status_code BETWEEN 200 AND 299), 0)::bigint AS success_count, \
            (SUM(response_time_sum_ms) FILTER (WHERE {B}))::float8 / NULLIF(SUM(request_count) FILTER (WHERE {B}), 0)::float8 AS avg_response_time_ms, \
            MIN(min_response_time_ms) FILTER (WHERE {B}) AS min_response_time_ms, \
            MAX(max_response_time_ms) FILTER (WHERE {B}) AS max_response_time_ms, \
            COALESCE(SUM(response_time_sum_ms) FILTER (WHERE {B}), 0)::bigint AS response_time_sum_ms, \
            COALESCE(SUM(total_bytes) FILTER (WHERE traffic_type <> 8), 0)::bigint AS total_bytes, \
            COALESCE(SUM(total_bytes) FILTER (WHERE traffic_type IN (1, 2, 7)), 0)::bigint AS billable_bytes, \
            COALESCE(SUM(request_count) FILTER (WHERE {B} AND status_code BETWEEN 400 AND 499), 0)::bigint AS billable_client_error_count, \
            COALESCE(SUM(request_count) FILTER (WHERE {B} AND status_code >= 500), 0)::bigint AS billable_server_error_count, \
            COALESCE(SUM(request_count) FILTER (WHERE {R} AND status_code BETWEEN 200 AND 299), 0)::bigint AS status_2xx_count, \
            COALESCE(SUM(request_count) FILTER (WHERE {R} AND status_code BETWEEN 300 AND 399), 0)::bigint AS status_3xx_count, \
            COALESCE(SUM(request_count) FILTER (WHERE {R} AND status_code BETWEEN 400 AND 499), 0)::bigint AS status_4xx_count, \
            COALESCE(SUM(request_count) FILTER (WHERE {R} AND status_code >= 500), 0)::bigint AS status_5xx_count \
         FROM {src} WHERE {cond} GROUP BY 1, 2, 3, 4"
    )
}

/// `stats_per_hour` from minute-shaped rows, added to what is there.
fn stats_hour_upsert(src: &str, cond: &str) -> String {
    format!(
        "INSERT INTO stats_per_hour AS t (bucket, customer_id, service_type, network, \
            guaranteed_success_count, burst_success_count, dropped_count, client_error_count, \
            server_error_count, billable_requests, success_count, avg_response_time_ms, \
            min_response_time_ms, max_response_time_ms, response_time_sum_ms, total_bytes, billable_bytes, \
            billable_client_error_count, billable_server_error_count, status_2xx_count, status_3xx_count, \
            status_4xx_count, status_5xx_count) \
         {} \
         ON CONFLICT (bucket, customer_id, service_type, network) DO UPDATE SET \
            guaranteed_success_count = t.guaranteed_success_count + EXCLUDED.guaranteed_success_count, \
            burst_success_count = t.burst_success_count + EXCLUDED.burst_success_count, \
            dropped_count = t.dropped_count + EXCLUDED.dropped_count, \
            client_error_count = t.client_error_count + EXCLUDED.client_error_count, \
            server_error_count = t.server_error_count + EXCLUDED.server_error_count, \
            billable_requests = t.billable_requests + EXCLUDED.billable_requests, \
            success_count = t.success_count + EXCLUDED.success_count, \
            response_time_sum_ms = t.response_time_sum_ms + EXCLUDED.response_time_sum_ms, \
            avg_response_time_ms = (t.response_time_sum_ms + EXCLUDED.response_time_sum_ms)::float8 \
                / NULLIF(t.billable_requests + EXCLUDED.billable_requests, 0)::float8, \
            min_response_time_ms = LEAST(t.min_response_time_ms, EXCLUDED.min_response_time_ms), \
            max_response_time_ms = GREATEST(t.max_response_time_ms, EXCLUDED.max_response_time_ms), \
            total_bytes = t.total_bytes + EXCLUDED.total_bytes, \
            billable_bytes = t.billable_bytes + EXCLUDED.billable_bytes, \
            billable_client_error_count = t.billable_client_error_count + EXCLUDED.billable_client_error_count, \
            billable_server_error_count = t.billable_server_error_count + EXCLUDED.billable_server_error_count, \
            status_2xx_count = t.status_2xx_count + EXCLUDED.status_2xx_count, \
            status_3xx_count = t.status_3xx_count + EXCLUDED.status_3xx_count, \
            status_4xx_count = t.status_4xx_count + EXCLUDED.status_4xx_count, \
            status_5xx_count = t.status_5xx_count + EXCLUDED.status_5xx_count",
        stats_hour_select(src, cond)
    )
}

/// The infra columns computed from infra-shaped rows, truncated to `unit`.
pub fn infra_select(unit: &str, src: &str, cond: &str) -> String {
    let avg = |s: &str, w: &str, n: &str| {
        format!("SUM({s})::float8 / NULLIF(SUM({w}), 0)::float8 AS {n}")
    };
    format!(
        "SELECT date_trunc('{unit}', bucket) AS bucket, server_id, service_type, network, backend_id, event_type, \
            status_code, SUM(request_count)::bigint AS request_count, SUM(total_time_sum_ms)::bigint AS total_time_sum_ms, \
            SUM(queue_time_sum_ms)::bigint AS queue_time_sum_ms, SUM(queue_time_weight)::bigint AS queue_time_weight, \
            SUM(connect_time_sum_ms)::bigint AS connect_time_sum_ms, SUM(connect_time_weight)::bigint AS connect_time_weight, \
            SUM(response_time_sum_ms)::bigint AS response_time_sum_ms, SUM(response_time_weight)::bigint AS response_time_weight, \
            {}, {}, {}, {} \
         FROM {src} WHERE {cond} GROUP BY 1, 2, 3, 4, 5, 6, 7",
        avg("total_time_sum_ms", "request_count", "avg_total_time_ms"),
        avg(
            "queue_time_sum_ms",
            "queue_time_weight",
            "avg_queue_time_ms"
        ),
        avg(
            "connect_time_sum_ms",
            "connect_time_weight",
            "avg_connect_time_ms"
        ),
        avg(
            "response_time_sum_ms",
            "response_time_weight",
            "avg_response_time_ms"
        ),
    )
}

/// `infra_per_{min,hour,day}` from infra-shaped rows, added to what is there.
fn infra_upsert(target: &str, unit: &str, src: &str, cond: &str) -> String {
    let avg_t = |s: &str, w: &str| {
        format!("(t.{s} + EXCLUDED.{s})::float8 / NULLIF(t.{w} + EXCLUDED.{w}, 0)::float8")
    };
    format!(
        "INSERT INTO {target} AS t (bucket, server_id, service_type, network, backend_id, event_type, \
            status_code, request_count, total_time_sum_ms, queue_time_sum_ms, queue_time_weight, \
            connect_time_sum_ms, connect_time_weight, response_time_sum_ms, response_time_weight, \
            avg_total_time_ms, avg_queue_time_ms, avg_connect_time_ms, avg_response_time_ms) \
         {} \
         ON CONFLICT ON CONSTRAINT {target}_key DO UPDATE SET \
            request_count = t.request_count + EXCLUDED.request_count, \
            total_time_sum_ms = t.total_time_sum_ms + EXCLUDED.total_time_sum_ms, \
            queue_time_sum_ms = t.queue_time_sum_ms + EXCLUDED.queue_time_sum_ms, \
            queue_time_weight = t.queue_time_weight + EXCLUDED.queue_time_weight, \
            connect_time_sum_ms = t.connect_time_sum_ms + EXCLUDED.connect_time_sum_ms, \
            connect_time_weight = t.connect_time_weight + EXCLUDED.connect_time_weight, \
            response_time_sum_ms = t.response_time_sum_ms + EXCLUDED.response_time_sum_ms, \
            response_time_weight = t.response_time_weight + EXCLUDED.response_time_weight, \
            avg_total_time_ms = {}, avg_queue_time_ms = {}, avg_connect_time_ms = {}, avg_response_time_ms = {}",
        infra_select(unit, src, cond),
        avg_t("total_time_sum_ms", "request_count"),
        avg_t("queue_time_sum_ms", "queue_time_weight"),
        avg_t("connect_time_sum_ms", "connect_time_weight"),
        avg_t("response_time_sum_ms", "response_time_weight"),
    )
}

const DELTA_TABLES: &str = "\
    CREATE TEMP TABLE IF NOT EXISTS d_cust ( \
        bucket timestamptz, customer_id integer, service_type smallint, network smallint, \
        traffic_type smallint, status_code smallint, request_count bigint, total_bytes bigint, \
        response_time_sum_ms bigint, min_response_time_ms integer, max_response_time_ms integer \
    ) ON COMMIT DELETE ROWS; \
    CREATE TEMP TABLE IF NOT EXISTS d_infra ( \
        bucket timestamptz, server_id smallint, service_type smallint, network smallint, \
        backend_id smallint, event_type smallint, status_code smallint, request_count bigint, \
        total_time_sum_ms bigint, queue_time_sum_ms bigint, queue_time_weight bigint, \
        connect_time_sum_ms bigint, connect_time_weight bigint, response_time_sum_ms bigint, \
        response_time_weight bigint \
    ) ON COMMIT DELETE ROWS";

async fn load_deltas(tx: &Transaction<'_>, s: &Settlement) -> Result<(), tokio_postgres::Error> {
    let n = s.cust.len();
    let mut bucket = Vec::with_capacity(n);
    let (mut cust, mut svc, mut net, mut tt, mut st) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut cnt, mut bytes, mut rts, mut rmin, mut rmax) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for (k, v) in &s.cust {
        bucket.push(minute_to_time(k.minute));
        cust.push(k.customer_id);
        svc.push(k.service_type);
        net.push(k.network);
        tt.push(k.traffic_type);
        st.push(k.status_code);
        cnt.push(v.request_count);
        bytes.push(v.total_bytes);
        rts.push(v.rt_sum);
        rmin.push(v.rt_min);
        rmax.push(v.rt_max);
    }
    let params: [&(dyn ToSql + Sync); 11] = [
        &bucket, &cust, &svc, &net, &tt, &st, &cnt, &bytes, &rts, &rmin, &rmax,
    ];
    tx.execute(
        "INSERT INTO d_cust SELECT * FROM unnest($1::timestamptz[], $2::int4[], $3::int2[], \
         $4::int2[], $5::int2[], $6::int2[], $7::int8[], $8::int8[], $9::int8[], $10::int4[], $11::int4[])",
        &params,
    )
    .await?;
    let n = s.infra.len();
    let mut bucket = Vec::with_capacity(n);
    let (mut srv, mut svc, mut net, mut be, mut ev, mut st) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::<Option<i16>>::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let mut sums: [Vec<i64>; 8] = Default::default();
    for (k, v) in &s.infra {
        bucket.push(minute_to_time(k.minute));
        srv.push(k.server_id);
        svc.push(k.service_type);
        net.push(k.network);
        be.push(k.backend_id);
        ev.push(k.event_type);
        st.push(k.status_code);
        for (i, x) in v.fields().into_iter().enumerate() {
            sums[i].push(x);
        }
    }
    let params: [&(dyn ToSql + Sync); 15] = [
        &bucket, &srv, &svc, &net, &be, &ev, &st, &sums[0], &sums[1], &sums[2], &sums[3], &sums[4],
        &sums[5], &sums[6], &sums[7],
    ];
    tx.execute(
        "INSERT INTO d_infra SELECT * FROM unnest($1::timestamptz[], $2::int2[], $3::int2[], \
         $4::int2[], $5::int2[], $6::int2[], $7::int2[], $8::int8[], $9::int8[], $10::int8[], \
         $11::int8[], $12::int8[], $13::int8[], $14::int8[], $15::int8[])",
        &params,
    )
    .await?;
    Ok(())
}

use suiftly_model::time::{US_PER_DAY, US_PER_HOUR};

/// Commits one settlement (see the module doc). Safe to call again with the same settlement
/// after an error: it detects that it already committed.
pub async fn commit(
    client: &mut Client,
    ingestor: &str,
    s: &Settlement,
) -> Result<Outcome, SettleError> {
    client.batch_execute(DELTA_TABLES).await?;
    let tx = client.transaction().await?;
    // The database-wide row first: settlements of all ingestors commit one at a time.
    let g = tx
        .query_one(
            "SELECT settled_before, settlement_seq FROM aggregate_state WHERE id = 1 FOR UPDATE",
            &[],
        )
        .await?;
    let g_prev = time_to_us(g.get::<_, SystemTime>(0)).div_euclid(US_PER_MIN);
    let seq = g.get::<_, i64>(1) + 1;
    let r = tx
        .query_opt(
            &format!(
                "SELECT {INGESTOR_COLUMNS}, last_seq FROM aggregate_ingestors \
                 WHERE ingestor = $1 FOR UPDATE"
            ),
            &[&ingestor],
        )
        .await?
        .ok_or_else(|| SettleError::NoState(ingestor.to_owned()))?;
    let found = row_to_persisted(&r);
    if found == s.next {
        warn!(
            ?found,
            "settlement found already committed (lost commit reply)"
        );
        return Ok(Outcome {
            already_committed: true,
            seq: r.get::<_, i64>(4) as u64,
            settled_before: (g_prev, g_prev),
            ..Outcome::default()
        });
    }
    if found != s.prev {
        return Err(SettleError::Conflict {
            ingestor: ingestor.to_owned(),
            expected: s.prev,
            found,
        });
    }
    tx.execute(
        "UPDATE aggregate_ingestors SET applied_through = $1, restart_position = $2, \
            settled_before = $3, settlement_seq = $4, last_seq = $5, updated_at = now() \
         WHERE ingestor = $6",
        &[
            &(s.next.applied_through as i64),
            &(s.next.restart_position as i64),
            &minute_to_time(s.next.settled_before),
            &(s.next.settlement_seq as i64),
            &seq,
            &ingestor,
        ],
    )
    .await?;
    // Minutes before the least of the ingestors' watermarks are settled by all of them.
    let g_next = time_to_us(
        tx.query_one(
            "SELECT GREATEST($1, min(settled_before)) FROM aggregate_ingestors",
            &[&minute_to_time(g_prev)],
        )
        .await?
        .get::<_, SystemTime>(0),
    )
    .div_euclid(US_PER_MIN);
    load_deltas(&tx, s).await?;
    // Hours/days complete = every minute in them settled, by every ingestor.
    let sb_us = g_next * US_PER_MIN;
    let prev_us = g_prev * US_PER_MIN;
    let old_h = us_to_time(prev_us.div_euclid(US_PER_HOUR) * US_PER_HOUR);
    let new_h = us_to_time(sb_us.div_euclid(US_PER_HOUR) * US_PER_HOUR);
    let old_d = us_to_time(prev_us.div_euclid(US_PER_DAY) * US_PER_DAY);
    let new_d = us_to_time(sb_us.div_euclid(US_PER_DAY) * US_PER_DAY);

    // Minutes: newly settled ones and late deltas alike, additively.
    tx.execute(
        "INSERT INTO stats_per_min AS t (bucket, customer_id, service_type, network, traffic_type, \
            status_code, request_count, total_bytes, response_time_sum_ms, min_response_time_ms, \
            max_response_time_ms, avg_response_time_ms) \
         SELECT bucket, customer_id, service_type, network, traffic_type, status_code, request_count, \
            total_bytes, response_time_sum_ms, min_response_time_ms, max_response_time_ms, \
            response_time_sum_ms::float8 / NULLIF(request_count, 0)::float8 FROM d_cust \
         ON CONFLICT (bucket, customer_id, service_type, network, traffic_type, status_code) DO UPDATE SET \
            request_count = t.request_count + EXCLUDED.request_count, \
            total_bytes = t.total_bytes + EXCLUDED.total_bytes, \
            response_time_sum_ms = t.response_time_sum_ms + EXCLUDED.response_time_sum_ms, \
            min_response_time_ms = LEAST(t.min_response_time_ms, EXCLUDED.min_response_time_ms), \
            max_response_time_ms = GREATEST(t.max_response_time_ms, EXCLUDED.max_response_time_ms), \
            avg_response_time_ms = (t.response_time_sum_ms + EXCLUDED.response_time_sum_ms)::float8 \
                / NULLIF(t.request_count + EXCLUDED.request_count, 0)::float8",
        &[],
    )
    .await?;
    tx.execute(
        &infra_upsert("infra_per_min", "minute", "d_infra", "true"),
        &[],
    )
    .await?;

    // Hours: late deltas into hours completed earlier; roll-up of hours completed now.
    tx.execute(&stats_hour_upsert("d_cust", "bucket < $1"), &[&old_h])
        .await?;
    tx.execute(
        &stats_hour_upsert("stats_per_min", "bucket >= $1 AND bucket < $2"),
        &[&old_h, &new_h],
    )
    .await?;
    tx.execute(
        &infra_upsert("infra_per_hour", "hour", "d_infra", "bucket < $1"),
        &[&old_h],
    )
    .await?;
    tx.execute(
        &infra_upsert(
            "infra_per_hour",
            "hour",
            "infra_per_min",
            "bucket >= $1 AND bucket < $2",
        ),
        &[&old_h, &new_h],
    )
    .await?;
    // Days, after the hours they roll up from.
    tx.execute(
        &infra_upsert("infra_per_day", "day", "d_infra", "bucket < $1"),
        &[&old_d],
    )
    .await?;
    tx.execute(
        &infra_upsert(
            "infra_per_day",
            "day",
            "infra_per_hour",
            "bucket >= $1 AND bucket < $2",
        ),
        &[&old_d, &new_d],
    )
    .await?;

    // Usage for billing: everything this settlement adds — its newly settled minutes and the
    // late deltas alike — merged into the hour's row (the uncharged revision, or a new
    // revision when the last one is already charged). An hour's row so grows minute by minute
    // as the minutes settle: billing prices what is settled up to the watermark, not only
    // completed hours (BILLING.md §3, §4; docs/BILLING.md "usage_to").
    let rows = tx
        .query(
            "WITH d AS ( \
                SELECT date_trunc('hour', bucket) AS h, customer_id, service_type, \
                    COALESCE(SUM(request_count) FILTER (WHERE traffic_type IN (1, 2)), 0)::bigint AS req, \
                    COALESCE(SUM(total_bytes) FILTER (WHERE traffic_type IN (1, 2, 7)), 0)::bigint AS byt \
                FROM d_cust GROUP BY 1, 2, 3), \
             target AS ( \
                SELECT d.*, COALESCE((SELECT CASE WHEN u.charged_amount IS NULL THEN u.revision ELSE u.revision + 1 END \
                    FROM usage_records u WHERE u.customer_id = d.customer_id \
                    AND u.service_type = d.service_type AND u.window_start = d.h \
                    ORDER BY u.revision DESC LIMIT 1), 0) AS rev \
                FROM d WHERE req > 0 OR byt > 0) \
             INSERT INTO usage_records AS t (customer_id, service_type, window_start, window_end, \
                revision, request_count, bytes_transferred) \
             SELECT customer_id, service_type, h, h + interval '1 hour', rev, req, byt FROM target \
             ON CONFLICT (customer_id, service_type, window_start, revision) DO UPDATE SET \
                request_count = t.request_count + EXCLUDED.request_count, \
                bytes_transferred = t.bytes_transferred + EXCLUDED.bytes_transferred, \
                updated_at = now() \
             RETURNING customer_id, service_type, window_start, revision, request_count, bytes_transferred",
            &[],
        )
        .await?;
    let usage: Vec<UsageRow> = rows.iter().map(usage_row).collect();

    // The live tail's record of this settlement (V23): its database-wide sequence number and,
    // per (minute, customer, service, network), what it added — replayed to a stream that
    // reconnects.
    tx.execute(
        "INSERT INTO settlement_log (seq, prev_settled_before, settled_before, late_requests) \
         VALUES ($1, $2, $3, $4)",
        &[
            &seq,
            &minute_to_time(g_prev),
            &minute_to_time(g_next),
            &s.late_requests,
        ],
    )
    .await?;
    tx.execute(
        &format!(
            "INSERT INTO settlement_minutes (seq, customer_id, bucket, service_type, network, {NUMBERS_COLUMNS}) \
             SELECT $1, customer_id, bucket, service_type, network, {NUMBERS_SQL} \
             FROM d_cust GROUP BY customer_id, bucket, service_type, network"
        ),
        &[&seq],
    )
    .await?;

    tx.execute(
        "UPDATE aggregate_state SET settled_before = $1, settlement_seq = $2, updated_at = now() \
         WHERE id = 1",
        &[&minute_to_time(g_next), &seq],
    )
    .await?;
    tx.commit().await?;
    let first = prev_us.div_euclid(US_PER_HOUR);
    let last = sb_us.div_euclid(US_PER_HOUR);
    Ok(Outcome {
        already_committed: false,
        completed_hours: (first..last).map(|h| h * US_PER_HOUR).collect(),
        usage,
        seq: seq as u64,
        settled_before: (g_prev, g_next),
    })
}

fn usage_row(r: &tokio_postgres::Row) -> UsageRow {
    UsageRow {
        customer_id: r.get(0),
        service_type: r.get(1),
        window_start_us: time_to_us(r.get(2)),
        revision: r.get(3),
        request_count: r.get(4),
        bytes_transferred: r.get(5),
    }
}

/// Retention (SPEC section 4), counted back from the settled boundary so that a roll-up
/// always finds its minutes even after a long stop.
pub const RETENTION: &[(&str, &str)] = &[
    ("stats_per_min", "24 hours"),
    ("infra_per_min", "24 hours"),
    ("stats_per_hour", "90 days"),
    ("infra_per_hour", "30 days"),
    ("infra_per_day", "2 years"),
];

/// How long the live tail can replay missed settled events (`settlement_log`,
/// `settlement_minutes`): a stream that reconnects later is told to reload (`reset`).
pub const REPLAY_RETENTION: &str = "24 hours";

/// Deletes aggregate rows past retention; returns the number deleted.
pub async fn purge(client: &Client) -> Result<u64, tokio_postgres::Error> {
    let mut n = client
        .execute(
            &format!(
                "DELETE FROM settlement_minutes WHERE seq <= (SELECT max(seq) FROM settlement_log \
                 WHERE committed_at < now() - interval '{REPLAY_RETENTION}')"
            ),
            &[],
        )
        .await?;
    n += client
        .execute(
            &format!(
                "DELETE FROM settlement_log WHERE committed_at < now() - interval '{REPLAY_RETENTION}'"
            ),
            &[],
        )
        .await?;
    for (table, keep) in RETENTION {
        n += client
            .execute(
                &format!(
                    "DELETE FROM {table} WHERE bucket < LEAST(now(), \
                     (SELECT settled_before FROM aggregate_state WHERE id = 1)) - interval '{keep}'"
                ),
                &[],
            )
            .await?;
    }
    Ok(n)
}
