//! The caller's usage statistics: a 24-hour summary and time series of traffic, billable
//! usage, bandwidth and response time, filterable by service and network.
//!
//! Where the numbers come from (SPEC §4: fresh to about a minute, counts exact):
//! - completed hours: `stats_per_hour` (SPEC's columns plus V24's);
//! - minutes of the hour still settling: `stats_per_min` (settled minutes not rolled up yet);
//! - what is not settled: the live windows ([`crate::live::LiveHub::view`]).
//!
//! The two settled reads run in one `REPEATABLE READ` snapshot that also reads
//! `aggregate_state.settlement_seq`; the live rows are tagged with the settlement sequence they
//! are relative to, so each row is counted exactly once ([`LiveState::rows_beyond`]) — when the
//! two cannot be combined (a settlement committed in between), the read is repeated.
//!
//! Rules (`suiftly_model::live`): requests are traffic types 1–6, billable 1–2, dropped 3–6;
//! type 7 bytes are billed but are not requests; type 8 counts nowhere; `repeat` counts
//! requests and never multiplies bytes; a row belongs to the bucket its timestamp falls in
//! (12:00:00 opens a bucket, 11:59:59.999 closes the previous one); averages over several
//! buckets are weighted (sum of `time_total × repeat` over billable requests).
//!
//! Buckets are UTC hours or days. A bucket is `partial` while metering has not settled all of
//! it (its end is after `aggregate_state.settled_before`); completed buckets are always listed
//! (zero when empty), a partial one only when it has data — so an empty current hour is no
//! point at all.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use deadpool_postgres::GenericClient;
use serde::Deserialize;
use serde_json::{Value, json};
use suiftly_billing::ServiceType;
use suiftly_model::live::NUMBERS_SQL;
use suiftly_model::{LiveState, MinuteKey, Numbers};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::live::{network_name, parse_network};
use crate::{AppState, QueryParams};

const US_PER_MIN: i64 = 60_000_000;
const US_PER_HOUR: i64 = 3_600_000_000;
const US_PER_DAY: i64 = 24 * US_PER_HOUR;

/// Query of the series endpoints.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeriesQuery {
    /// `24h` (default), `7d` or `30d`, ending with the current bucket.
    pub range: Option<String>,
    /// `hour` or `day`; default hour for 24h, day otherwise.
    pub interval: Option<String>,
    /// A billing period `YYYY-MM` (UTC month) instead of a range: the graph of an invoice.
    pub period: Option<String>,
    pub service: Option<String>,
    pub network: Option<String>,
}

/// Query of the summary.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SummaryQuery {
    pub service: Option<String>,
    pub network: Option<String>,
}

/// The buckets asked for: `[from, to)` in steps of `unit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub unit_us: i64,
    pub from_us: i64,
    pub to_us: i64,
}

#[derive(Debug, Clone, Copy)]
pub struct Filter {
    pub service: Option<i16>,
    pub network: Option<i16>,
}

fn floor_to(us: i64, unit: i64) -> i64 {
    us.div_euclid(unit) * unit
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::InvalidRequest(msg.into())
}

fn filter(service: &Option<String>, network: &Option<String>) -> Result<Filter, ApiError> {
    let service = match service.as_deref() {
        None | Some("") => None,
        Some(s) => {
            Some(ServiceType::parse(s).ok_or_else(|| bad(format!("unknown service {s:?}")))? as i16)
        }
    };
    let network = match network.as_deref() {
        None | Some("") => None,
        Some(n) => Some(parse_network(n).ok_or_else(|| {
            bad(format!(
                "network must be mainnet, testnet, devnet or localnet, not {n:?}"
            ))
        })?),
    };
    Ok(Filter { service, network })
}

/// The window of a series query at `now_us` (µs since the epoch) and its labels.
pub fn window(q: &SeriesQuery, now_us: i64) -> Result<(Window, String, &'static str), ApiError> {
    let unit_us = match q.interval.as_deref() {
        Some("hour") => Some(US_PER_HOUR),
        Some("day") => Some(US_PER_DAY),
        None | Some("") => None,
        Some(o) => return Err(bad(format!("interval must be hour or day, not {o:?}"))),
    };
    if let Some(p) = q.period.as_deref().filter(|p| !p.is_empty()) {
        if q.range.is_some() {
            return Err(bad("give range or period, not both"));
        }
        let first = NaiveDate::parse_from_str(&format!("{p}-01"), "%Y-%m-%d")
            .map_err(|_| bad(format!("period must be YYYY-MM, not {p:?}")))?;
        let next = if first.month() == 12 {
            NaiveDate::from_ymd_opt(first.year() + 1, 1, 1)
        } else {
            NaiveDate::from_ymd_opt(first.year(), first.month() + 1, 1)
        }
        .ok_or_else(|| bad("period out of range"))?;
        let us = |d: NaiveDate| {
            d.and_hms_opt(0, 0, 0)
                .expect("midnight")
                .and_utc()
                .timestamp_micros()
        };
        let unit_us = unit_us.unwrap_or(US_PER_DAY);
        return Ok((
            Window {
                unit_us,
                from_us: us(first),
                to_us: us(next),
            },
            p.to_string(),
            if unit_us == US_PER_HOUR {
                "hour"
            } else {
                "day"
            },
        ));
    }
    let range = q.range.as_deref().unwrap_or("24h");
    let (span, default_unit) = match range {
        "24h" => (US_PER_DAY, US_PER_HOUR),
        "7d" => (7 * US_PER_DAY, US_PER_DAY),
        "30d" => (30 * US_PER_DAY, US_PER_DAY),
        o => return Err(bad(format!("range must be 24h, 7d or 30d, not {o:?}"))),
    };
    let unit_us = unit_us.unwrap_or(default_unit);
    let to_us = floor_to(now_us, unit_us) + unit_us;
    Ok((
        Window {
            unit_us,
            from_us: to_us - span,
            to_us,
        },
        range.to_string(),
        if unit_us == US_PER_HOUR {
            "hour"
        } else {
            "day"
        },
    ))
}

/// What the settled tables say about one customer's window, in one snapshot.
#[derive(Debug, Default)]
pub struct Settled {
    /// `aggregate_state.settlement_seq` of the snapshot (0 when metering never ran).
    pub seq: u64,
    /// Minutes before this are settled (µs).
    pub settled_before_us: i64,
    /// Per bucket start (µs).
    pub buckets: BTreeMap<i64, Numbers>,
}

fn opt_i32(r: &tokio_postgres::Row, i: usize) -> Option<i32> {
    r.get::<_, Option<i32>>(i)
}

async fn read_settled(
    client: &mut deadpool_postgres::Object,
    customer_id: i32,
    f: Filter,
    w: Window,
) -> Result<Settled, ApiError> {
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let st = tx
        .query_opt(
            "SELECT settlement_seq, (extract(epoch FROM settled_before) * 1000000)::bigint \
             FROM aggregate_state WHERE id = 1",
            &[],
        )
        .await?;
    let (seq, settled_before_us) = match st {
        Some(r) => (r.get::<_, i64>(0) as u64, r.get::<_, i64>(1)),
        // Never metered: nothing is settled, every bucket is partial.
        None => (0, i64::MIN / 2),
    };
    let hour_cut = floor_to(settled_before_us, US_PER_HOUR).clamp(w.from_us, w.to_us);
    let mut buckets: BTreeMap<i64, Numbers> = BTreeMap::new();
    let t =
        |us: i64| DateTime::<Utc>::from_timestamp_micros(us).unwrap_or(DateTime::<Utc>::MIN_UTC);
    // Completed hours.
    if hour_cut > w.from_us {
        let rows = tx
            .query(
                "SELECT (extract(epoch FROM bucket) * 1000000)::bigint, \
                    SUM(billable_requests + dropped_count)::bigint, SUM(billable_requests)::bigint, \
                    SUM(dropped_count)::bigint, SUM(guaranteed_success_count + burst_success_count)::bigint, \
                    SUM(billable_client_error_count)::bigint, SUM(billable_server_error_count)::bigint, \
                    SUM(status_2xx_count)::bigint, SUM(status_3xx_count)::bigint, \
                    SUM(status_4xx_count)::bigint, SUM(status_5xx_count)::bigint, \
                    SUM(total_bytes)::bigint, SUM(billable_bytes)::bigint, \
                    SUM(response_time_sum_ms)::bigint, MIN(min_response_time_ms), MAX(max_response_time_ms) \
                 FROM stats_per_hour \
                 WHERE customer_id = $1 AND bucket >= $2 AND bucket < $3 \
                   AND ($4::smallint IS NULL OR service_type = $4) \
                   AND ($5::smallint IS NULL OR network = $5) \
                 GROUP BY bucket",
                &[
                    &customer_id,
                    &t(w.from_us),
                    &t(hour_cut),
                    &f.service,
                    &f.network,
                ],
            )
            .await?;
        for r in &rows {
            let n = Numbers {
                requests: r.get(1),
                billable_requests: r.get(2),
                dropped_requests: r.get(3),
                success: r.get(4),
                client_errors: r.get(5),
                server_errors: r.get(6),
                status_2xx: r.get(7),
                status_3xx: r.get(8),
                status_4xx: r.get(9),
                status_5xx: r.get(10),
                total_bytes: r.get(11),
                billable_bytes: r.get(12),
                response_time_sum_ms: r.get(13),
                min_response_time_ms: opt_i32(r, 14),
                max_response_time_ms: opt_i32(r, 15),
            };
            buckets
                .entry(floor_to(r.get(0), w.unit_us))
                .or_default()
                .merge(&n);
        }
    }
    // Settled minutes of hours not rolled up yet.
    if hour_cut < w.to_us {
        let rows = tx
            .query(
                &format!(
                    "SELECT (extract(epoch FROM bucket) * 1000000)::bigint, {NUMBERS_SQL} \
                     FROM stats_per_min \
                     WHERE customer_id = $1 AND bucket >= $2 AND bucket < $3 \
                       AND ($4::smallint IS NULL OR service_type = $4) \
                       AND ($5::smallint IS NULL OR network = $5) \
                     GROUP BY bucket"
                ),
                &[
                    &customer_id,
                    &t(hour_cut),
                    &t(w.to_us),
                    &f.service,
                    &f.network,
                ],
            )
            .await?;
        for r in &rows {
            let n = Numbers {
                requests: r.get(1),
                billable_requests: r.get(2),
                dropped_requests: r.get(3),
                success: r.get(4),
                client_errors: r.get(5),
                server_errors: r.get(6),
                status_2xx: r.get(7),
                status_3xx: r.get(8),
                status_4xx: r.get(9),
                status_5xx: r.get(10),
                total_bytes: r.get(11),
                billable_bytes: r.get(12),
                response_time_sum_ms: r.get(13),
                min_response_time_ms: opt_i32(r, 14),
                max_response_time_ms: opt_i32(r, 15),
            };
            buckets
                .entry(floor_to(r.get(0), w.unit_us))
                .or_default()
                .merge(&n);
        }
    }
    tx.commit().await?;
    Ok(Settled {
        seq,
        settled_before_us,
        buckets,
    })
}

fn keep(k: &MinuteKey, f: Filter) -> bool {
    f.service.is_none_or(|s| s == k.service_type) && f.network.is_none_or(|n| n == k.network)
}

/// Settled buckets plus the live rows the snapshot does not hold yet.
pub async fn buckets(
    state: &AppState,
    customer_id: i32,
    f: Filter,
    w: Window,
) -> Result<Settled, ApiError> {
    let mut client = state.pool.get().await?;
    let mut attempt = 0;
    loop {
        let mut s = read_settled(&mut client, customer_id, f, w).await?;
        let Some(hub) = &state.live else {
            return Ok(s);
        };
        let view = hub.hub.view(customer_id);
        if !view.connected {
            return Ok(s);
        }
        let rows = match view.state.rows_beyond(s.seq) {
            Some(rows) => rows,
            None if attempt < 5 => {
                // A settlement committed between the two reads: read again.
                attempt += 1;
                metrics::counter!("suiftly_api_stats_reread_total").increment(1);
                tokio::time::sleep(Duration::from_millis(20 * attempt)).await;
                continue;
            }
            None => fallback_rows(&view.state, s.settled_before_us),
        };
        for (k, n) in rows {
            let us = k.minute * US_PER_MIN;
            if keep(&k, f) && us >= w.from_us && us < w.to_us {
                s.buckets
                    .entry(floor_to(us, w.unit_us))
                    .or_default()
                    .merge(&n);
            }
        }
        return Ok(s);
    }
}

/// When the live state and the database cannot be matched by sequence (a replica whose feed
/// is behind), the minutes the database has not settled are still exact; only late deltas
/// still pending for settled minutes are left out until the next read.
fn fallback_rows(s: &LiveState, settled_before_us: i64) -> Vec<(MinuteKey, Numbers)> {
    metrics::counter!("suiftly_api_stats_live_fallback_total").increment(1);
    s.rows
        .iter()
        .chain(s.inflight.iter().flat_map(|(_, r)| r.iter()))
        .filter(|(k, _)| k.minute * US_PER_MIN >= settled_before_us)
        .copied()
        .collect()
}

/// One point of a series.
#[derive(Debug, Clone)]
pub struct Point {
    pub start_us: i64,
    pub partial: bool,
    pub n: Numbers,
}

/// The points of `w`: completed buckets always, partial ones only with data.
pub fn points(s: &Settled, w: Window) -> Vec<Point> {
    let mut out = Vec::new();
    let mut b = w.from_us;
    while b < w.to_us {
        let n = s.buckets.get(&b).copied().unwrap_or_default();
        let partial = b + w.unit_us > s.settled_before_us;
        if !partial || !n.is_empty() {
            out.push(Point {
                start_us: b,
                partial,
                n,
            });
        }
        b += w.unit_us;
    }
    out
}

fn time(us: i64) -> Value {
    json!(DateTime::<Utc>::from_timestamp_micros(us).unwrap_or(DateTime::<Utc>::MIN_UTC))
}

/// Which fields a series carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Traffic,
    Usage,
    Bandwidth,
    ResponseTime,
}

fn point_json(kind: Kind, p: &Point) -> Value {
    let n = &p.n;
    let mut v = json!({ "start": time(p.start_us), "partial": p.partial });
    let o = v.as_object_mut().expect("object");
    let mut put = |k: &str, x: Value| {
        o.insert(k.into(), x);
    };
    match kind {
        Kind::Traffic => {
            put("requests", json!(n.requests));
            put("billable_requests", json!(n.billable_requests));
            put("dropped_requests", json!(n.dropped_requests));
            put("success", json!(n.success));
            put("client_errors", json!(n.client_errors));
            put("server_errors", json!(n.server_errors));
            put("status_2xx", json!(n.status_2xx));
            put("status_3xx", json!(n.status_3xx));
            put("status_4xx", json!(n.status_4xx));
            put("status_5xx", json!(n.status_5xx));
            put("status_other", json!(n.status_other()));
        }
        Kind::Usage => {
            put("billable_requests", json!(n.billable_requests));
            put("billable_bytes", json!(n.billable_bytes));
        }
        Kind::Bandwidth => {
            put("total_bytes", json!(n.total_bytes));
            put("billable_bytes", json!(n.billable_bytes));
        }
        Kind::ResponseTime => {
            put("billable_requests", json!(n.billable_requests));
            put("avg_response_time_ms", json!(n.avg_response_time_ms()));
            put("min_response_time_ms", json!(n.min_response_time_ms));
            put("max_response_time_ms", json!(n.max_response_time_ms));
        }
    }
    v
}

async fn series(
    state: AppState,
    caller: Caller,
    q: SeriesQuery,
    kind: Kind,
) -> Result<Json<Value>, ApiError> {
    let f = filter(&q.service, &q.network)?;
    let now_us = state.clock.now().timestamp_micros();
    let (w, label, interval) = window(&q, now_us)?;
    let s = buckets(&state, caller.customer_id, f, w).await?;
    let pts = points(&s, w);
    Ok(Json(json!({
        "range": if q.period.is_some() { Value::Null } else { json!(label) },
        "period": if q.period.is_some() { json!(label) } else { Value::Null },
        "interval": interval,
        "from": time(w.from_us),
        "to": time(w.to_us),
        "service": f.service.map(crate::live::service_name),
        "network": f.network.map(network_name),
        "settled_before": time(s.settled_before_us.max(0)),
        "points": pts.iter().map(|p| point_json(kind, p)).collect::<Vec<_>>(),
    })))
}

pub async fn traffic(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(q): QueryParams<SeriesQuery>,
) -> Result<Json<Value>, ApiError> {
    series(state, caller, q, Kind::Traffic).await
}

pub async fn usage(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(q): QueryParams<SeriesQuery>,
) -> Result<Json<Value>, ApiError> {
    series(state, caller, q, Kind::Usage).await
}

pub async fn bandwidth(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(q): QueryParams<SeriesQuery>,
) -> Result<Json<Value>, ApiError> {
    series(state, caller, q, Kind::Bandwidth).await
}

pub async fn response_time(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(q): QueryParams<SeriesQuery>,
) -> Result<Json<Value>, ApiError> {
    series(state, caller, q, Kind::ResponseTime).await
}

/// The last 24 hours (the current UTC hour and the 23 before it): the sum of the 24h series.
pub async fn summary(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(q): QueryParams<SummaryQuery>,
) -> Result<Json<Value>, ApiError> {
    let f = filter(&q.service, &q.network)?;
    let now_us = state.clock.now().timestamp_micros();
    let (w, _, _) = window(
        &SeriesQuery {
            range: None,
            interval: None,
            period: None,
            service: None,
            network: None,
        },
        now_us,
    )?;
    let s = buckets(&state, caller.customer_id, f, w).await?;
    let pts = points(&s, w);
    let mut n = Numbers::default();
    for p in &pts {
        n.merge(&p.n);
    }
    Ok(Json(json!({
        "from": time(w.from_us),
        "to": time(w.to_us),
        "partial": pts.iter().any(|p| p.partial),
        "service": f.service.map(crate::live::service_name),
        "network": f.network.map(network_name),
        "settled_before": time(s.settled_before_us.max(0)),
        "requests": n.requests,
        "billable_requests": n.billable_requests,
        "dropped_requests": n.dropped_requests,
        "success": n.success,
        "client_errors": n.client_errors,
        "server_errors": n.server_errors,
        "status_2xx": n.status_2xx,
        "status_3xx": n.status_3xx,
        "status_4xx": n.status_4xx,
        "status_5xx": n.status_5xx,
        "status_other": n.status_other(),
        "total_bytes": n.total_bytes,
        "billable_bytes": n.billable_bytes,
        "avg_response_time_ms": n.avg_response_time_ms(),
        "min_response_time_ms": n.min_response_time_ms,
        "max_response_time_ms": n.max_response_time_ms,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(range: Option<&str>, interval: Option<&str>, period: Option<&str>) -> SeriesQuery {
        SeriesQuery {
            range: range.map(Into::into),
            interval: interval.map(Into::into),
            period: period.map(Into::into),
            service: None,
            network: None,
        }
    }

    #[test]
    fn windows_end_with_the_current_bucket() {
        // 2026-11-26 12:34:56 UTC
        let now = 1_795_696_496_000_000i64;
        let (w, _, i) = window(&q(None, None, None), now).unwrap();
        assert_eq!(i, "hour");
        assert_eq!(w.to_us, floor_to(now, US_PER_HOUR) + US_PER_HOUR);
        assert_eq!((w.to_us - w.from_us) / w.unit_us, 24);
        let (w, _, i) = window(&q(Some("7d"), None, None), now).unwrap();
        assert_eq!((i, (w.to_us - w.from_us) / w.unit_us), ("day", 7));
        let (w, _, _) = window(&q(Some("7d"), Some("hour"), None), now).unwrap();
        assert_eq!((w.to_us - w.from_us) / w.unit_us, 168);
        let (w, _, _) = window(&q(Some("30d"), None, None), now).unwrap();
        assert_eq!((w.to_us - w.from_us) / w.unit_us, 30);
        let (w, l, _) = window(&q(None, None, Some("2026-02")), now).unwrap();
        assert_eq!(l, "2026-02");
        assert_eq!((w.to_us - w.from_us) / w.unit_us, 28);
        let (w, _, _) = window(&q(None, None, Some("2026-12")), now).unwrap();
        assert_eq!((w.to_us - w.from_us) / w.unit_us, 31);
        for bad in [
            q(Some("1y"), None, None),
            q(None, Some("week"), None),
            q(None, None, Some("2026-13")),
            q(Some("24h"), None, Some("2026-01")),
        ] {
            assert!(window(&bad, now).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_empty_partial_bucket_is_no_point() {
        let w = Window {
            unit_us: US_PER_HOUR,
            from_us: 0,
            to_us: 3 * US_PER_HOUR,
        };
        let mut s = Settled {
            seq: 1,
            settled_before_us: US_PER_HOUR + 30 * US_PER_MIN,
            buckets: BTreeMap::new(),
        };
        // Hour 0 complete (listed although empty), hours 1 and 2 partial and empty.
        let p = points(&s, w);
        assert_eq!(p.len(), 1);
        assert!(!p[0].partial);
        s.buckets
            .insert(US_PER_HOUR, Numbers::from_group(1, 200, 1, 1, 1, 1, 1));
        let p = points(&s, w);
        assert_eq!(p.len(), 2);
        assert!(p[1].partial);
    }
}
