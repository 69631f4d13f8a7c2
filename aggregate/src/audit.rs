//! `suiftly audit`: recompute the aggregates from `haproxy_raw_logs` in PostgreSQL and compare
//! them with the settled tables, key by key and column by column.
//!
//! Only settled buckets are compared (the range is clipped to `aggregate_state.settled_before`;
//! hours and days only when complete), and minute tables only within their 24-hour retention.
//! The recomputation shapes raw rows like minute rows (`repeat` as the count, `time * repeat`
//! as the sums) and rolls them up with the same column definitions the settlement uses, so a
//! difference means the streaming path (partials, windows, exactly-once) disagrees with the
//! raw rows — which is what the audit is for.

use std::time::SystemTime;

use tokio_postgres::Client;

use crate::settle::{infra_select, stats_hour_select, time_to_us, us_to_time};
use suiftly_model::time::{US_PER_DAY, US_PER_HOUR, US_PER_MIN};

/// One table's comparison.
#[derive(Clone, Debug)]
pub struct TableAudit {
    pub table: &'static str,
    pub from_us: i64,
    pub to_us: i64,
    /// Keys present on either side.
    pub compared: i64,
    pub differences: i64,
    /// Up to 20 differing keys as JSON (`r_*` recomputed, `s_*` settled).
    pub examples: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct AuditReport {
    pub settled_before_us: i64,
    pub tables: Vec<TableAudit>,
}

impl AuditReport {
    pub fn differences(&self) -> i64 {
        self.tables.iter().map(|t| t.differences).sum()
    }
    pub fn compared(&self) -> i64 {
        self.tables.iter().map(|t| t.compared).sum()
    }
}

/// Raw rows shaped like `stats_per_min` rows (customer rows only).
const RAW_CUST: &str = "(SELECT timestamp AS bucket, customer_id, service_type, network, traffic_type, \
    status_code, repeat::bigint AS request_count, bytes_sent AS total_bytes, \
    time_total::bigint * repeat AS response_time_sum_ms, time_total AS min_response_time_ms, \
    time_total AS max_response_time_ms FROM haproxy_raw_logs \
    WHERE timestamp >= $1 AND timestamp < $2 AND customer_id IS NOT NULL) raw";

/// Raw rows shaped like `infra_per_min` rows (all rows).
const RAW_INFRA: &str = "(SELECT timestamp AS bucket, server_id, service_type, network, backend_id, \
    event_type, status_code, repeat::bigint AS request_count, \
    time_total::bigint * repeat AS total_time_sum_ms, \
    COALESCE(time_queue::bigint * repeat, 0) AS queue_time_sum_ms, \
    CASE WHEN time_queue IS NULL THEN 0 ELSE repeat END AS queue_time_weight, \
    COALESCE(time_connect::bigint * repeat, 0) AS connect_time_sum_ms, \
    CASE WHEN time_connect IS NULL THEN 0 ELSE repeat END AS connect_time_weight, \
    COALESCE(time_response::bigint * repeat, 0) AS response_time_sum_ms, \
    CASE WHEN time_response IS NULL THEN 0 ELSE repeat END AS response_time_weight \
    FROM haproxy_raw_logs WHERE timestamp >= $1 AND timestamp < $2) raw";

const INFRA_KEYS: &[&str] = &[
    "bucket",
    "server_id",
    "service_type",
    "network",
    "backend_id",
    "event_type",
    "status_code",
];
const INFRA_INTS: &[&str] = &[
    "request_count",
    "total_time_sum_ms",
    "queue_time_sum_ms",
    "queue_time_weight",
    "connect_time_sum_ms",
    "connect_time_weight",
    "response_time_sum_ms",
    "response_time_weight",
];
const INFRA_FLOATS: &[&str] = &[
    "avg_total_time_ms",
    "avg_queue_time_ms",
    "avg_connect_time_ms",
    "avg_response_time_ms",
];

fn ceil_to(us: i64, unit: i64) -> i64 {
    (us + unit - 1).div_euclid(unit) * unit
}

fn floor_to(us: i64, unit: i64) -> i64 {
    us.div_euclid(unit) * unit
}

/// Full outer join of recomputed (`r`) and settled (`s`) rows on `keys`; counts keys and
/// differences. Keys may be NULL (`backend_id`): they are compared through COALESCE, because
/// PostgreSQL cannot FULL JOIN on IS NOT DISTINCT FROM.
#[allow(clippy::too_many_arguments)]
async fn compare(
    client: &Client,
    table: &'static str,
    keys: &[&str],
    ints: &[&str],
    floats: &[&str],
    r_sql: &str,
    s_sql: &str,
    from_us: i64,
    to_us: i64,
) -> Result<TableAudit, tokio_postgres::Error> {
    let mut audit = TableAudit {
        table,
        from_us,
        to_us,
        compared: 0,
        differences: 0,
        examples: Vec::new(),
    };
    if to_us <= from_us {
        return Ok(audit);
    }
    let on: Vec<String> = keys
        .iter()
        .map(|k| format!("COALESCE(r.{k}, -1) = COALESCE(s.{k}, -1)"))
        .collect();
    let on = on.join(" AND ").replace(
        "COALESCE(r.bucket, -1) = COALESCE(s.bucket, -1)",
        "r.bucket = s.bucket",
    );
    let on = on.replace(
        "COALESCE(r.window_start, -1) = COALESCE(s.window_start, -1)",
        "r.window_start = s.window_start",
    );
    let mut cols: Vec<String> = keys
        .iter()
        .map(|k| format!("COALESCE(r.{k}, s.{k}) AS {k}"))
        .collect();
    let mut diff = Vec::new();
    for m in ints {
        cols.push(format!("r.{m} AS r_{m}, s.{m} AS s_{m}"));
        diff.push(format!("r.{m} IS DISTINCT FROM s.{m}"));
    }
    for m in floats {
        cols.push(format!("r.{m} AS r_{m}, s.{m} AS s_{m}"));
        diff.push(format!(
            "(r.{m} IS NULL) <> (s.{m} IS NULL) OR abs(r.{m} - s.{m}) > 1e-9 * greatest(1, abs(r.{m}))"
        ));
    }
    // A key missing on one side differs.
    diff.push(format!("r.{0} IS NULL OR s.{0} IS NULL", keys[0]));
    let sql = format!(
        "WITH r AS ({r_sql}), s AS ({s_sql}), \
         j AS (SELECT {}, ({}) AS differs FROM r FULL JOIN s ON {on}) \
         SELECT count(*), count(*) FILTER (WHERE differs), \
            (SELECT array_agg(x) FROM (SELECT row_to_json(j)::text AS x FROM j WHERE differs LIMIT 20) e) \
         FROM j",
        cols.join(", "),
        diff.join(" OR ")
    );
    let row = client
        .query_one(&sql, &[&us_to_time(from_us), &us_to_time(to_us)])
        .await?;
    audit.compared = row.get(0);
    audit.differences = row.get(1);
    audit.examples = row.get::<_, Option<Vec<String>>>(2).unwrap_or_default();
    Ok(audit)
}

/// Audits `[from, to)`; see the module doc for the clipping.
pub async fn audit(
    client: &Client,
    from: SystemTime,
    to: SystemTime,
) -> Result<AuditReport, tokio_postgres::Error> {
    let sb: Option<SystemTime> = client
        .query_opt(
            "SELECT settled_before FROM aggregate_state WHERE id = 1",
            &[],
        )
        .await?
        .map(|r| r.get(0));
    let Some(sb) = sb else {
        return Ok(AuditReport {
            settled_before_us: i64::MIN,
            tables: Vec::new(),
        });
    };
    let sb = time_to_us(sb);
    let from = time_to_us(from);
    let to = time_to_us(to).min(sb);
    let now = suiftly_model::time::now_us();
    let mut tables = Vec::new();

    // Minutes (24 h retention, counted back from the settled boundary like the purge does).
    let keep_from = sb.min(now) - 24 * US_PER_HOUR + US_PER_MIN;
    let (mf, mt) = (
        ceil_to(from, US_PER_MIN).max(ceil_to(keep_from, US_PER_MIN)),
        floor_to(to, US_PER_MIN),
    );
    let stats_min_r = format!(
        "SELECT date_trunc('minute', bucket) AS bucket, customer_id, service_type, network, traffic_type, \
            status_code, SUM(request_count)::bigint AS request_count, SUM(total_bytes)::bigint AS total_bytes, \
            SUM(response_time_sum_ms)::bigint AS response_time_sum_ms, MIN(min_response_time_ms) AS min_response_time_ms, \
            MAX(max_response_time_ms) AS max_response_time_ms, \
            SUM(response_time_sum_ms)::float8 / NULLIF(SUM(request_count), 0)::float8 AS avg_response_time_ms \
         FROM {RAW_CUST} GROUP BY 1, 2, 3, 4, 5, 6"
    );
    tables.push(
        compare(
            client,
            "stats_per_min",
            &[
                "bucket",
                "customer_id",
                "service_type",
                "network",
                "traffic_type",
                "status_code",
            ],
            &[
                "request_count",
                "total_bytes",
                "response_time_sum_ms",
                "min_response_time_ms",
                "max_response_time_ms",
            ],
            &["avg_response_time_ms"],
            &stats_min_r,
            "SELECT * FROM stats_per_min WHERE bucket >= $1 AND bucket < $2",
            mf,
            mt,
        )
        .await?,
    );
    tables.push(
        compare(
            client,
            "infra_per_min",
            INFRA_KEYS,
            INFRA_INTS,
            INFRA_FLOATS,
            &infra_select("minute", RAW_INFRA, "true"),
            "SELECT * FROM infra_per_min WHERE bucket >= $1 AND bucket < $2",
            mf,
            mt,
        )
        .await?,
    );
    // Complete hours.
    let (hf, ht) = (ceil_to(from, US_PER_HOUR), floor_to(to, US_PER_HOUR));
    tables.push(
        compare(
            client,
            "stats_per_hour",
            &["bucket", "customer_id", "service_type", "network"],
            &[
                "guaranteed_success_count",
                "burst_success_count",
                "dropped_count",
                "client_error_count",
                "server_error_count",
                "billable_requests",
                "success_count",
                "min_response_time_ms",
                "max_response_time_ms",
                "response_time_sum_ms",
                "total_bytes",
                "billable_bytes",
                "billable_client_error_count",
                "billable_server_error_count",
                "status_2xx_count",
                "status_3xx_count",
                "status_4xx_count",
                "status_5xx_count",
            ],
            &["avg_response_time_ms"],
            &stats_hour_select(RAW_CUST, "true"),
            "SELECT * FROM stats_per_hour WHERE bucket >= $1 AND bucket < $2",
            hf,
            ht,
        )
        .await?,
    );
    tables.push(
        compare(
            client,
            "infra_per_hour",
            INFRA_KEYS,
            INFRA_INTS,
            INFRA_FLOATS,
            &infra_select("hour", RAW_INFRA, "true"),
            "SELECT * FROM infra_per_hour WHERE bucket >= $1 AND bucket < $2",
            hf,
            ht,
        )
        .await?,
    );
    tables.push(
        compare(
            client,
            "usage_records",
            &["window_start", "customer_id", "service_type"],
            &["request_count", "bytes_transferred"],
            &[],
            &format!(
                "SELECT bucket AS window_start, customer_id, service_type, \
                    SUM(billable_requests)::bigint AS request_count, SUM(billable_bytes)::bigint AS bytes_transferred \
                 FROM ({}) h GROUP BY 1, 2, 3 HAVING SUM(billable_requests) > 0 OR SUM(billable_bytes) > 0",
                stats_hour_select(RAW_CUST, "true")
            ),
            "SELECT window_start, customer_id, service_type, SUM(request_count)::bigint AS request_count, \
                SUM(bytes_transferred)::bigint AS bytes_transferred FROM usage_records \
             WHERE window_start >= $1 AND window_start < $2 GROUP BY 1, 2, 3",
            hf,
            ht,
        )
        .await?,
    );
    // Complete days.
    let (df, dt) = (ceil_to(from, US_PER_DAY), floor_to(to, US_PER_DAY));
    tables.push(
        compare(
            client,
            "infra_per_day",
            INFRA_KEYS,
            INFRA_INTS,
            INFRA_FLOATS,
            &infra_select("day", RAW_INFRA, "true"),
            "SELECT * FROM infra_per_day WHERE bucket >= $1 AND bucket < $2",
            df,
            dt,
        )
        .await?,
    );
    Ok(AuditReport {
        settled_before_us: sb,
        tables,
    })
}
