//! What the customer sees of metering: per (minute, customer, service, network) numbers with
//! the stats rules of the product applied once, here, for every reader — the live tail, the
//! settled events and the stats endpoints' open bucket.
//!
//! The rules (issue 13, item 1; SPEC §4):
//! - `requests` counts traffic types 1–6 (served and dropped); type 7 (stream delta) and type 8
//!   (stream close) are not requests;
//! - billable = types 1–2; dropped = types 3–6; success, client and server errors are billable
//!   requests with a 2xx, 4xx or ≥ 500 status (a dropped request is neither);
//! - status classes (`status_2xx` …) count every request (types 1–6) by its status;
//! - bytes: `total_bytes` every type but 8, `billable_bytes` types 1, 2 and 7;
//! - response time: over billable requests only, kept as a sum weighted by `repeat`
//!   (the average is `response_time_sum_ms / billable_requests`, exact across merges);
//! - every count is the sum of `repeat`; bytes are already summed over `repeat` by HAProxy and
//!   never multiplied.
//!
//! The SQL side (`aggregate::settle`, the `stats_per_hour` columns of V24 and the
//! `settlement_minutes` table of V23) computes the same columns from the same minute rows; a
//! test against PostgreSQL checks the two agree.

/// The columns of [`Numbers`], in table order (`settlement_minutes`).
pub const NUMBERS_COLUMNS: &str = "requests, billable_requests, dropped_requests, success, \
    client_errors, server_errors, status_2xx, status_3xx, status_4xx, status_5xx, total_bytes, \
    billable_bytes, response_time_sum_ms, min_response_time_ms, max_response_time_ms";

/// [`NUMBERS_COLUMNS`] as SQL aggregates over minute-shaped rows (columns `traffic_type`,
/// `status_code`, `request_count`, `total_bytes`, `response_time_sum_ms`,
/// `min_response_time_ms`, `max_response_time_ms`: `stats_per_min` and the settlement's delta
/// table): the rules above, in SQL, for the settlement and for the stats API's reads.
pub const NUMBERS_SQL: &str = "\
    COALESCE(SUM(request_count) FILTER (WHERE traffic_type BETWEEN 1 AND 6), 0)::bigint, \
    COALESCE(SUM(request_count) FILTER (WHERE traffic_type IN (1, 2)), 0)::bigint, \
    COALESCE(SUM(request_count) FILTER (WHERE traffic_type BETWEEN 3 AND 6), 0)::bigint, \
    COALESCE(SUM(request_count) FILTER (WHERE traffic_type IN (1, 2) AND status_code BETWEEN 200 AND 299), 0)::bigint, \
    COALESCE(SUM(request_count) FILTER (WHERE traffic_type IN (1, 2) AND status_code BETWEEN 400 AND 499), 0)::bigint, \
    COALESCE(SUM(request_count) FILTER (WHERE traffic_type IN (1, 2) AND status_code >= 500), 0)::bigint, \
    COALESCE(SUM(request_count) FILTER (WHERE traffic_type BETWEEN 1 AND 6 AND status_code BETWEEN 200 AND 299), 0)::bigint, \
    COALESCE(SUM(request_count) FILTER (WHERE traffic_type BETWEEN 1 AND 6 AND status_code BETWEEN 300 AND 399), 0)::bigint, \
    COALESCE(SUM(request_count) FILTER (WHERE traffic_type BETWEEN 1 AND 6 AND status_code BETWEEN 400 AND 499), 0)::bigint, \
    COALESCE(SUM(request_count) FILTER (WHERE traffic_type BETWEEN 1 AND 6 AND status_code >= 500), 0)::bigint, \
    COALESCE(SUM(total_bytes) FILTER (WHERE traffic_type <> 8), 0)::bigint, \
    COALESCE(SUM(total_bytes) FILTER (WHERE traffic_type IN (1, 2, 7)), 0)::bigint, \
    COALESCE(SUM(response_time_sum_ms) FILTER (WHERE traffic_type IN (1, 2)), 0)::bigint, \
    MIN(min_response_time_ms) FILTER (WHERE traffic_type IN (1, 2)), \
    MAX(max_response_time_ms) FILTER (WHERE traffic_type IN (1, 2))";

/// Grouping of the customer-facing numbers. `minute` counts minutes since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MinuteKey {
    pub minute: i64,
    pub customer_id: i32,
    pub service_type: i16,
    pub network: i16,
}

/// The numbers of one [`MinuteKey`] (or of any merge of them: an hour, a day, a summary).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Numbers {
    /// Traffic types 1–6.
    pub requests: i64,
    /// Traffic types 1–2.
    pub billable_requests: i64,
    /// Traffic types 3–6.
    pub dropped_requests: i64,
    /// Billable with a 2xx status.
    pub success: i64,
    /// Billable with a 4xx status.
    pub client_errors: i64,
    /// Billable with a status ≥ 500.
    pub server_errors: i64,
    /// Requests (types 1–6) by status class; the rest (1xx, no status) is
    /// `requests − Σ classes`.
    pub status_2xx: i64,
    pub status_3xx: i64,
    pub status_4xx: i64,
    pub status_5xx: i64,
    /// Every type but 8.
    pub total_bytes: i64,
    /// Types 1, 2 and 7.
    pub billable_bytes: i64,
    /// `time_total × repeat` over billable requests.
    pub response_time_sum_ms: i64,
    pub min_response_time_ms: Option<i32>,
    pub max_response_time_ms: Option<i32>,
}

/// Is `tt` billable (guaranteed or burst)?
pub fn is_billable(traffic_type: i16) -> bool {
    matches!(traffic_type, 1 | 2)
}

/// Is `tt` a dropped request (denied, dropped, ip_dropped, unavailable)?
pub fn is_dropped(traffic_type: i16) -> bool {
    (3..=6).contains(&traffic_type)
}

impl Numbers {
    /// The numbers of one minute-shaped group (`stats_per_min` grouping: one traffic type and
    /// one status code), from its sums: `request_count` = Σ repeat, `total_bytes` = Σ bytes,
    /// `rt_sum` = Σ time_total × repeat, `rt_min`/`rt_max` over the group's rows.
    pub fn from_group(
        traffic_type: i16,
        status_code: i16,
        request_count: i64,
        total_bytes: i64,
        rt_sum: i64,
        rt_min: i32,
        rt_max: i32,
    ) -> Numbers {
        let mut n = Numbers::default();
        let billable = is_billable(traffic_type);
        let request = billable || is_dropped(traffic_type);
        if request {
            n.requests = request_count;
            match status_code {
                200..=299 => n.status_2xx = request_count,
                300..=399 => n.status_3xx = request_count,
                400..=499 => n.status_4xx = request_count,
                500.. => n.status_5xx = request_count,
                _ => {}
            }
        }
        if billable {
            n.billable_requests = request_count;
            match status_code {
                200..=299 => n.success = request_count,
                400..=499 => n.client_errors = request_count,
                500.. => n.server_errors = request_count,
                _ => {}
            }
            n.response_time_sum_ms = rt_sum;
            n.min_response_time_ms = Some(rt_min);
            n.max_response_time_ms = Some(rt_max);
        } else if request {
            n.dropped_requests = request_count;
        }
        if traffic_type != 8 {
            n.total_bytes = total_bytes;
        }
        if billable || traffic_type == 7 {
            n.billable_bytes = total_bytes;
        }
        n
    }

    /// Adds `o` (sums add, min and max combine): a commutative monoid with
    /// `Numbers::default()` as identity.
    pub fn merge(&mut self, o: &Numbers) {
        self.requests += o.requests;
        self.billable_requests += o.billable_requests;
        self.dropped_requests += o.dropped_requests;
        self.success += o.success;
        self.client_errors += o.client_errors;
        self.server_errors += o.server_errors;
        self.status_2xx += o.status_2xx;
        self.status_3xx += o.status_3xx;
        self.status_4xx += o.status_4xx;
        self.status_5xx += o.status_5xx;
        self.total_bytes += o.total_bytes;
        self.billable_bytes += o.billable_bytes;
        self.response_time_sum_ms += o.response_time_sum_ms;
        self.min_response_time_ms = match (self.min_response_time_ms, o.min_response_time_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.max_response_time_ms = match (self.max_response_time_ms, o.max_response_time_ms) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }

    /// Requests whose status is in no class (1xx, 0, −1).
    pub fn status_other(&self) -> i64 {
        self.requests - self.status_2xx - self.status_3xx - self.status_4xx - self.status_5xx
    }

    /// Average response time of billable requests, weighted by `repeat`.
    pub fn avg_response_time_ms(&self) -> Option<f64> {
        (self.billable_requests > 0)
            .then(|| self.response_time_sum_ms as f64 / self.billable_requests as f64)
    }

    /// Nothing was counted (no request, no byte).
    pub fn is_empty(&self) -> bool {
        *self == Numbers::default()
    }
}

/// Merges minute-shaped groups into [`Numbers`] per [`MinuteKey`], sorted by key.
/// Each item: key, traffic type, status, request count, bytes, rt sum, rt min, rt max.
pub fn fold_groups<I>(groups: I) -> Vec<(MinuteKey, Numbers)>
where
    I: IntoIterator<Item = (MinuteKey, i16, i16, i64, i64, i64, i32, i32)>,
{
    let mut map: std::collections::BTreeMap<MinuteKey, Numbers> = Default::default();
    for (k, tt, st, n, bytes, rt_sum, rt_min, rt_max) in groups {
        let v = Numbers::from_group(tt, st, n, bytes, rt_sum, rt_min, rt_max);
        map.entry(k).or_default().merge(&v);
    }
    map.into_iter().collect()
}

/// What metering has not settled yet, as customers see it: taken in one step under the
/// aggregator's lock, tagged with the settlement sequence it is relative to, so a reader that
/// also reads the settled tables can tell which rows the database already holds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LiveState {
    /// Sequence of the last committed settlement.
    pub committed_seq: u64,
    /// Minutes before this (minutes since the epoch) are settled, as of `committed_seq`.
    pub settled_before: i64,
    /// Open minutes and pending late deltas: in no committed settlement (nor in `inflight`).
    pub rows: Vec<(MinuteKey, Numbers)>,
    /// The settlement being committed (`committed_seq + 1`), still counted here until its
    /// commit returns; a reader whose database snapshot already has that sequence drops them.
    pub inflight: Option<(u64, Vec<(MinuteKey, Numbers)>)>,
}

impl LiveState {
    /// The highest sequence whose rows are not in [`LiveState::rows`].
    pub fn base_seq(&self) -> u64 {
        self.inflight
            .as_ref()
            .map_or(self.committed_seq, |(s, _)| *s)
    }

    /// Rows to add to a database snapshot taken at settlement `db_seq`, or `None` when the
    /// two cannot be combined exactly (the database moved past this state: read again).
    pub fn rows_beyond(&self, db_seq: u64) -> Option<Vec<(MinuteKey, Numbers)>> {
        let base = self.base_seq();
        if db_seq == base {
            return Some(self.rows.clone());
        }
        match &self.inflight {
            Some((s, rows)) if db_seq + 1 == *s => {
                let mut all = self.rows.clone();
                all.extend(rows.iter().copied());
                Some(all)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(minute: i64) -> MinuteKey {
        MinuteKey {
            minute,
            customer_id: 1,
            service_type: 2,
            network: 1,
        }
    }

    #[test]
    fn the_rules_of_item_one() {
        // tt 1, 200, repeat 3: requests, billable, success, response time.
        let a = Numbers::from_group(1, 200, 3, 300, 30, 10, 10);
        assert_eq!(
            (a.requests, a.billable_requests, a.success, a.status_2xx),
            (3, 3, 3, 3)
        );
        assert_eq!((a.total_bytes, a.billable_bytes), (300, 300));
        assert_eq!(a.avg_response_time_ms(), Some(10.0));
        // tt 7: bytes billed, not a request, no response time.
        let b = Numbers::from_group(7, 200, 5, 1000, 999, 1, 400);
        assert_eq!((b.requests, b.billable_requests, b.status_2xx), (0, 0, 0));
        assert_eq!((b.total_bytes, b.billable_bytes), (1000, 1000));
        assert_eq!(b.response_time_sum_ms, 0);
        assert_eq!(b.min_response_time_ms, None);
        // tt 8: nothing at all.
        assert!(Numbers::from_group(8, 200, 5, 1000, 999, 1, 400).is_empty());
        // tt 3 (denied) 429: a dropped request, neither billable nor an error.
        let d = Numbers::from_group(3, 429, 2, 50, 4, 2, 2);
        assert_eq!(
            (
                d.requests,
                d.dropped_requests,
                d.client_errors,
                d.status_4xx
            ),
            (2, 2, 0, 2)
        );
        assert_eq!((d.total_bytes, d.billable_bytes), (50, 0));
        // tt 2, 503: billable server error.
        let e = Numbers::from_group(2, 503, 1, 0, 7, 7, 7);
        assert_eq!(
            (e.server_errors, e.status_5xx, e.billable_requests),
            (1, 1, 1)
        );
        // status 0 (client gone): a request of no class.
        let z = Numbers::from_group(1, 0, 4, 0, 0, 0, 0);
        assert_eq!(z.status_other(), 4);
        // Weighted averages across merges: (3 × 10 + 1 × 7) / 4.
        let mut m = a;
        m.merge(&e);
        m.merge(&b);
        assert_eq!(m.avg_response_time_ms(), Some(37.0 / 4.0));
        assert_eq!(m.min_response_time_ms, Some(7));
        assert_eq!(m.max_response_time_ms, Some(10));
    }

    #[test]
    fn fold_merges_groups_of_one_key() {
        let rows = fold_groups([
            (key(1), 1, 200, 1, 10, 5, 5, 5),
            (key(1), 2, 404, 2, 20, 8, 4, 4),
            (key(2), 8, 200, 9, 99, 9, 9, 9),
        ]);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].1.billable_requests, 3);
        assert_eq!(rows[0].1.client_errors, 2);
        assert!(rows[1].1.is_empty());
    }

    #[test]
    fn live_rows_combine_with_a_database_snapshot_by_sequence() {
        let n = Numbers::from_group(1, 200, 1, 1, 1, 1, 1);
        let s = LiveState {
            committed_seq: 4,
            settled_before: 0,
            rows: vec![(key(9), n)],
            inflight: Some((5, vec![(key(8), n)])),
        };
        assert_eq!(
            s.rows_beyond(4).unwrap().len(),
            2,
            "database before the in-flight commit"
        );
        assert_eq!(
            s.rows_beyond(5).unwrap().len(),
            1,
            "database has the in-flight commit"
        );
        assert!(s.rows_beyond(6).is_none(), "database moved on: read again");
        assert!(s.rows_beyond(3).is_none());
        let s = LiveState {
            inflight: None,
            ..s
        };
        assert_eq!(s.rows_beyond(4).unwrap().len(), 1);
        assert!(s.rows_beyond(5).is_none());
    }
}
