//! Event-time window state: the sans-IO core of metering (no tokio, no PostgreSQL).
//!
//! Input is a stream of per-batch partial aggregates ([`Partials`], one DataFusion GROUP BY
//! per batch, see [`crate::partial`]), each tagged with the spool range `[start, end)` of the
//! records it was computed from. They are merged into per-minute buckets. A minute *settles*
//! when the watermark passes its end plus the allowed lateness; [`WindowState::take_settlement`]
//! hands the settled minutes (and any late deltas for minutes settled earlier) to the caller,
//! which commits them together with the positions in one transaction.
//!
//! Exactly once across crashes rests on two persisted numbers (see [`Persisted`]):
//! - `applied_through`: every record below it is included in every settled minute;
//! - `restart_position`: no record below it contributes to an unsettled minute.
//!
//! After a restart the caller replays the spool from `restart_position`. Contributions of
//! replayed records below `applied_through` to minutes already settled are skipped (they are
//! in the database); everything else is applied. Batches never straddle `applied_through`
//! (the replay reader cuts there), so the rule is decided per batch.
//!
//! Merging is a commutative monoid (sums, min, max), so the result does not depend on how the
//! stream was cut into batches or in which order the partials arrive.

use std::collections::{BTreeMap, HashMap};

/// Microseconds per minute.
pub use suiftly_model::time::US_PER_MIN;

/// Grouping of the customer aggregates (`stats_per_min`); `minute` counts minutes since the
/// Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CustKey {
    pub minute: i64,
    pub customer_id: i32,
    pub service_type: i16,
    pub network: i16,
    pub traffic_type: i16,
    pub status_code: i16,
}

/// What is summed per [`CustKey`]. Response time is `time_total`, weighted by `repeat`:
/// the average is `rt_sum / request_count`, kept as a sum so that merges stay exact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CustAcc {
    pub request_count: i64,
    pub total_bytes: i64,
    pub rt_sum: i64,
    pub rt_min: i32,
    pub rt_max: i32,
}

impl CustAcc {
    pub fn merge(&mut self, o: &CustAcc) {
        self.request_count += o.request_count;
        self.total_bytes += o.total_bytes;
        self.rt_sum += o.rt_sum;
        self.rt_min = self.rt_min.min(o.rt_min);
        self.rt_max = self.rt_max.max(o.rt_max);
    }
}

/// Grouping of the ops aggregates (`infra_per_min`), all rows including NULL customer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InfraKey {
    pub minute: i64,
    pub server_id: i16,
    pub service_type: i16,
    pub network: i16,
    pub backend_id: Option<i16>,
    pub event_type: i16,
    pub status_code: i16,
}

/// Sums per [`InfraKey`]. Queue, connect and response times are NULL when HAProxy did not
/// reach the phase, so each carries its own weight (sum of `repeat` over non-NULL rows).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InfraAcc {
    pub request_count: i64,
    pub total_sum: i64,
    pub queue_sum: i64,
    pub queue_w: i64,
    pub connect_sum: i64,
    pub connect_w: i64,
    pub response_sum: i64,
    pub response_w: i64,
}

impl InfraAcc {
    /// The fields in table-column order: request_count, then total, queue, connect and
    /// response sums with the weights of the NULL-able ones.
    pub fn fields(&self) -> [i64; 8] {
        [
            self.request_count,
            self.total_sum,
            self.queue_sum,
            self.queue_w,
            self.connect_sum,
            self.connect_w,
            self.response_sum,
            self.response_w,
        ]
    }

    pub fn merge(&mut self, o: &InfraAcc) {
        self.request_count += o.request_count;
        self.total_sum += o.total_sum;
        self.queue_sum += o.queue_sum;
        self.queue_w += o.queue_w;
        self.connect_sum += o.connect_sum;
        self.connect_w += o.connect_w;
        self.response_sum += o.response_sum;
        self.response_w += o.response_w;
    }
}

/// Unsettled groups of both kinds (what the live tables show).
pub type LiveRows = (Vec<(CustKey, CustAcc)>, Vec<(InfraKey, InfraAcc)>);

/// The partial aggregate of one input batch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Partials {
    pub cust: Vec<(CustKey, CustAcc)>,
    pub infra: Vec<(InfraKey, InfraAcc)>,
    /// Largest event time in the batch (µs); `i64::MIN` when empty.
    pub max_event_us: i64,
}

/// Adds `(k, v)` into a map with the monoid merge.
pub fn merge_cust(map: &mut HashMap<CustKey, CustAcc>, k: CustKey, v: &CustAcc) {
    map.entry(k).and_modify(|a| a.merge(v)).or_insert(*v);
}

pub fn merge_infra(map: &mut HashMap<InfraKey, InfraAcc>, k: InfraKey, v: &InfraAcc) {
    map.entry(k).and_modify(|a| a.merge(v)).or_insert(*v);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowConfig {
    /// How long after a minute's end rows for it are still expected (µs).
    pub allowed_lateness_us: i64,
    /// When the input is caught up, the watermark is at least `now - idle_lag`, so quiet
    /// periods still settle (µs).
    pub idle_lag_us: i64,
}

impl Default for WindowConfig {
    fn default() -> Self {
        Self {
            allowed_lateness_us: 30_000_000,
            idle_lag_us: 5_000_000,
        }
    }
}

/// What the database remembers between runs (table `aggregate_state`). The default is a
/// fresh start: nothing applied, nothing settled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Persisted {
    pub applied_through: u64,
    pub restart_position: u64,
    /// Minutes below this (minutes since the epoch) are settled.
    pub settled_before: i64,
    /// Sequence number of the last committed settlement (0: none yet); each settlement's
    /// `next` is one more than its `prev` — the live tail's event id.
    pub settlement_seq: u64,
}

#[derive(Debug, Default)]
struct Bucket {
    cust: HashMap<CustKey, CustAcc>,
    infra: HashMap<InfraKey, InfraAcc>,
    /// Smallest spool position of a batch that contributed here.
    min_pos: u64,
}

/// One commit's worth: settled minutes plus late deltas, and the positions to persist.
#[derive(Clone, Debug, PartialEq)]
pub struct Settlement {
    pub prev: Persisted,
    pub next: Persisted,
    /// Minute rows to add (newly settled minutes and late deltas; all `minute < next.settled_before`).
    pub cust: Vec<(CustKey, CustAcc)>,
    pub infra: Vec<(InfraKey, InfraAcc)>,
    /// Requests (sum of `repeat`) among them that arrived after their minute had settled.
    pub late_requests: i64,
}

/// Counts from one [`WindowState::apply`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ApplyStats {
    /// Requests added to still-open minutes.
    pub open: i64,
    /// Requests for already-settled minutes (to be added to the settled rows).
    pub late: i64,
    /// Requests skipped during replay because the database already has them.
    pub skipped: i64,
}

#[derive(Debug)]
pub struct WindowState {
    cfg: WindowConfig,
    open: BTreeMap<i64, Bucket>,
    late: Bucket,
    late_requests: i64,
    persisted: Persisted,
    /// End of the last applied input.
    input_pos: u64,
    max_event_us: i64,
}

impl WindowState {
    /// State after loading `persisted` from the database; the caller replays the spool from
    /// `persisted.restart_position`.
    pub fn restore(cfg: WindowConfig, persisted: Persisted) -> Self {
        Self {
            cfg,
            open: BTreeMap::new(),
            late: Bucket::default(),
            late_requests: 0,
            input_pos: persisted.restart_position,
            persisted,
            max_event_us: i64::MIN,
        }
    }

    pub fn persisted(&self) -> Persisted {
        self.persisted
    }

    pub fn input_position(&self) -> u64 {
        self.input_pos
    }

    /// Minutes with unsettled data.
    pub fn open_minutes(&self) -> usize {
        self.open.len()
    }

    /// Merges one batch's partials, computed from the records in `[start, end)`.
    ///
    /// # Panics
    /// If the batch straddles `applied_through` (the caller must cut replay batches there).
    pub fn apply(&mut self, p: &Partials, start: u64, end: u64) -> ApplyStats {
        let at = self.persisted.applied_through;
        assert!(
            end <= at || start >= at,
            "batch [{start}, {end}) straddles applied_through {at}"
        );
        let replayed = end <= at;
        let settled_before = self.persisted.settled_before;
        let mut st = ApplyStats::default();
        for (k, v) in &p.cust {
            if k.minute < settled_before {
                if !replayed {
                    merge_cust(&mut self.late.cust, *k, v);
                }
            } else {
                let b = self.bucket(k.minute, start);
                merge_cust(&mut b.cust, *k, v);
            }
        }
        // Request counts come from the infra side: it covers every row.
        for (k, v) in &p.infra {
            if k.minute < settled_before {
                if replayed {
                    st.skipped += v.request_count;
                } else {
                    st.late += v.request_count;
                    merge_infra(&mut self.late.infra, *k, v);
                }
            } else {
                st.open += v.request_count;
                let b = self.bucket(k.minute, start);
                merge_infra(&mut b.infra, *k, v);
            }
        }
        self.late_requests += st.late;
        self.input_pos = self.input_pos.max(end);
        self.max_event_us = self.max_event_us.max(p.max_event_us);
        st
    }

    fn bucket(&mut self, minute: i64, start: u64) -> &mut Bucket {
        let b = self.open.entry(minute).or_insert_with(|| Bucket {
            min_pos: start,
            ..Bucket::default()
        });
        b.min_pos = b.min_pos.min(start);
        b
    }

    /// Event-time watermark (µs): the largest event time seen, never ahead of `now`; when the
    /// input is caught up, at least `now - idle_lag` so that quiet periods still settle.
    pub fn watermark(&self, now_us: i64, caught_up: bool) -> i64 {
        let w = self.max_event_us.min(now_us);
        if caught_up {
            w.max(now_us - self.cfg.idle_lag_us)
        } else {
            w
        }
    }

    /// Removes and returns what is due: minutes whose end + allowed lateness the watermark
    /// has passed, and late deltas. `None` when there is nothing to commit.
    ///
    /// Nothing settles while a replay is still below `applied_through`: the minutes that would
    /// settle could still be missing contributions from records the replay has not reached,
    /// which the persisted rule would then skip for ever.
    pub fn take_settlement(&mut self, now_us: i64, caught_up: bool) -> Option<Settlement> {
        let prev = self.persisted;
        if self.input_pos < prev.applied_through {
            return None;
        }
        let w = self.watermark(now_us, caught_up);
        let due = if w == i64::MIN {
            prev.settled_before
        } else {
            (w - self.cfg.allowed_lateness_us).div_euclid(US_PER_MIN)
        };
        let settled_before = prev.settled_before.max(due);
        let late_pending = !self.late.cust.is_empty() || !self.late.infra.is_empty();
        if settled_before == prev.settled_before && !late_pending {
            return None;
        }
        let mut late = std::mem::take(&mut self.late);
        let keep = self.open.split_off(&settled_before);
        let settled = std::mem::replace(&mut self.open, keep);
        for (_, b) in settled {
            for (k, v) in b.cust {
                merge_cust(&mut late.cust, k, &v);
            }
            for (k, v) in b.infra {
                merge_infra(&mut late.infra, k, &v);
            }
        }
        let restart_position = self
            .open
            .values()
            .map(|b| b.min_pos)
            .min()
            .unwrap_or(self.input_pos)
            .min(self.input_pos);
        let next = Persisted {
            applied_through: self.input_pos,
            restart_position,
            settled_before,
            settlement_seq: prev.settlement_seq + 1,
        };
        let mut cust: Vec<_> = late.cust.into_iter().collect();
        let mut infra: Vec<_> = late.infra.into_iter().collect();
        cust.sort_unstable_by_key(|(k, _)| *k);
        infra.sort_unstable_by_key(|(k, _)| *k);
        let late_requests = std::mem::take(&mut self.late_requests);
        // The caller commits or retries this exact settlement; either way the state moves on.
        self.persisted = next;
        Some(Settlement {
            prev,
            next,
            cust,
            infra,
            late_requests,
        })
    }

    /// Everything not yet committed (open minutes and pending late deltas), for live queries.
    pub fn live(&self) -> LiveRows {
        let mut cust = Vec::new();
        let mut infra = Vec::new();
        for b in self.open.values().chain(std::iter::once(&self.late)) {
            cust.extend(b.cust.iter().map(|(k, v)| (*k, *v)));
            infra.extend(b.infra.iter().map(|(k, v)| (*k, *v)));
        }
        (cust, infra)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A raw row reduced to what metering reads.
    #[derive(Clone, Copy, Debug)]
    pub struct Row {
        pub ts_us: i64,
        pub customer_id: Option<i32>,
        pub service_type: i16,
        pub network: i16,
        pub traffic_type: i16,
        pub status_code: i16,
        pub server_id: i16,
        pub backend_id: Option<i16>,
        pub event_type: i16,
        pub bytes: i64,
        pub time_total: i32,
        pub time_queue: Option<i32>,
        pub time_connect: Option<i32>,
        pub time_response: Option<i32>,
        pub repeat: i32,
    }

    /// The brute-force reference: a plain loop over rows.
    pub fn brute_force(rows: &[Row]) -> Partials {
        let mut cust: HashMap<CustKey, CustAcc> = HashMap::new();
        let mut infra: HashMap<InfraKey, InfraAcc> = HashMap::new();
        let mut max_event_us = i64::MIN;
        for r in rows {
            let minute = r.ts_us.div_euclid(US_PER_MIN);
            let rep = r.repeat as i64;
            max_event_us = max_event_us.max(r.ts_us);
            if let Some(c) = r.customer_id {
                let k = CustKey {
                    minute,
                    customer_id: c,
                    service_type: r.service_type,
                    network: r.network,
                    traffic_type: r.traffic_type,
                    status_code: r.status_code,
                };
                merge_cust(
                    &mut cust,
                    k,
                    &CustAcc {
                        request_count: rep,
                        total_bytes: r.bytes,
                        rt_sum: r.time_total as i64 * rep,
                        rt_min: r.time_total,
                        rt_max: r.time_total,
                    },
                );
            }
            let k = InfraKey {
                minute,
                server_id: r.server_id,
                service_type: r.service_type,
                network: r.network,
                backend_id: r.backend_id,
                event_type: r.event_type,
                status_code: r.status_code,
            };
            let t = |v: Option<i32>| (v.map_or(0, |x| x as i64 * rep), v.map_or(0, |_| rep));
            let (qs, qw) = t(r.time_queue);
            let (cs, cw) = t(r.time_connect);
            let (rs, rw) = t(r.time_response);
            merge_infra(
                &mut infra,
                k,
                &InfraAcc {
                    request_count: rep,
                    total_sum: r.time_total as i64 * rep,
                    queue_sum: qs,
                    queue_w: qw,
                    connect_sum: cs,
                    connect_w: cw,
                    response_sum: rs,
                    response_w: rw,
                },
            );
        }
        Partials {
            cust: cust.into_iter().collect(),
            infra: infra.into_iter().collect(),
            max_event_us,
        }
    }

    /// A timer or size: mostly small, sometimes the edge values HAProxy logs (`-1` for a
    /// phase never reached, 0) or very large ones (sums must not overflow or lose precision).
    fn edgy_i32(small: i32) -> impl Strategy<Value = i32> {
        prop_oneof![
            8 => 0..small,
            1 => Just(-1),
            1 => Just(0),
            1 => (i32::MAX / 4)..=i32::MAX,
        ]
    }

    pub fn arb_row(base_us: i64, span_min: i64) -> impl Strategy<Value = Row> {
        (
            (
                0..span_min * US_PER_MIN,
                proptest::option::weighted(0.8, 1..4i32),
            ),
            (
                1..4i16,
                0..2i16,
                1..9i16,
                // 0 and -1: no status (client gone before a response).
                prop::sample::select(vec![200i16, 204, 404, 429, 500, 503, 0, -1, 400, 408]),
            ),
            (
                1..3i16,
                proptest::option::of(0..3i16),
                prop::sample::select(vec![0i16, 11, 52]),
            ),
            (
                // Up to 2^45 bytes (32 TiB) per row: 3,000 rows still sum inside i64.
                prop_oneof![8 => 0..5_000i64, 1 => Just(0i64), 1 => 5_000i64..(1 << 45)],
                edgy_i32(3_000),
            ),
            (
                proptest::option::of(edgy_i32(50)),
                proptest::option::of(edgy_i32(50)),
                proptest::option::of(edgy_i32(900)),
            ),
            1..4i32,
        )
            .prop_map(
                move |((off, c), (s, n, tt, st), (srv, be, ev), (b, tt_ms), (q, cn, rs), rep)| {
                    Row {
                        ts_us: base_us + off,
                        customer_id: c,
                        service_type: s,
                        network: n,
                        traffic_type: tt,
                        status_code: st,
                        server_id: srv,
                        backend_id: be,
                        event_type: ev,
                        bytes: b,
                        time_total: tt_ms,
                        time_queue: q,
                        time_connect: cn,
                        time_response: rs,
                        repeat: rep,
                    }
                },
            )
    }

    fn sorted(mut p: Partials) -> Partials {
        p.cust.sort_unstable_by_key(|(k, _)| *k);
        p.infra.sort_unstable_by_key(|(k, _)| *k);
        p
    }

    /// Merges settlements the way the database does (additive upsert).
    #[derive(Default)]
    struct Db {
        cust: HashMap<CustKey, CustAcc>,
        infra: HashMap<InfraKey, InfraAcc>,
        persisted: Option<Persisted>,
    }

    impl Db {
        fn commit(&mut self, s: &Settlement) {
            if let Some(p) = self.persisted {
                assert_eq!(p, s.prev, "settlement must start where the last one ended");
            }
            for (k, v) in &s.cust {
                assert!(k.minute < s.next.settled_before);
                merge_cust(&mut self.cust, *k, v);
            }
            for (k, v) in &s.infra {
                merge_infra(&mut self.infra, *k, v);
            }
            self.persisted = Some(s.next);
        }
    }

    const BASE: i64 = 1_700_000_000 * 1_000_000 / US_PER_MIN * US_PER_MIN;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Merging the partials of any cut of the stream, in any order, gives the brute-force
        /// aggregate of the whole stream.
        #[test]
        fn merge_is_order_independent(
            rows in prop::collection::vec(arb_row(BASE, 5), 0..200),
            cuts in prop::collection::vec(0usize..200, 0..10),
            seed in any::<u64>(),
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(rows.len())).collect();
            cuts.push(0);
            cuts.push(rows.len());
            cuts.sort_unstable();
            let mut parts: Vec<Partials> =
                cuts.windows(2).map(|w| brute_force(&rows[w[0]..w[1]])).collect();
            // Deterministic shuffle from the seed.
            let mut s = seed | 1;
            for i in (1..parts.len()).rev() {
                s ^= s << 13; s ^= s >> 7; s ^= s << 17;
                parts.swap(i, (s % (i as u64 + 1)) as usize);
            }
            let mut cust = HashMap::new();
            let mut infra = HashMap::new();
            for p in &parts {
                for (k, v) in &p.cust { merge_cust(&mut cust, *k, v); }
                for (k, v) in &p.infra { merge_infra(&mut infra, *k, v); }
            }
            let merged = sorted(Partials { cust: cust.into_iter().collect(), infra: infra.into_iter().collect(), max_event_us: 0 });
            let expect = sorted(Partials { max_event_us: 0, ..brute_force(&rows) });
            prop_assert_eq!(merged, expect);
        }

        /// Out-of-order and late rows, random batches, random settlement times and crashes
        /// (in-memory state dropped, restored from what was committed, spool replayed): what
        /// was committed plus what is still live equals the brute-force aggregate, exactly.
        #[test]
        fn settle_replay_exactly_once(
            rows in prop::collection::vec(arb_row(BASE, 6), 1..150),
            steps in prop::collection::vec((1usize..20, 0i64..40_000_000, any::<bool>(), 0u8..10), 1..40),
            lateness_s in 0i64..90,
        ) {
            let cfg = WindowConfig { allowed_lateness_us: lateness_s * 1_000_000, idle_lag_us: 2_000_000 };
            // Positions: record i occupies [10 i, 10 i + 10).
            let pos = |i: usize| (i as u64) * 10;
            let mut db = Db::default();
            let first = Persisted { applied_through: 0, restart_position: 0, settled_before: i64::MIN / US_PER_MIN, settlement_seq: 0 };
            let mut st = WindowState::restore(cfg, first);
            let mut next = 0usize; // next record to read
            let mut now = BASE;
            let mut steps = steps.into_iter().cycle();
            let mut guard = 0;
            let mut crashes = 0;
            while next < rows.len() || st.open_minutes() > 0 {
                guard += 1;
                prop_assert!(guard < 10_000, "no progress");
                let (n, dt, settle, crash) = steps.next().unwrap();
                now += dt;
                if next < rows.len() {
                    // Replay batches never straddle applied_through.
                    let at = st.persisted().applied_through;
                    let mut end = (next + n).min(rows.len());
                    if pos(next) < at && pos(end) > at {
                        end = (at / 10) as usize;
                    }
                    let p = brute_force(&rows[next..end]);
                    let a = st.apply(&p, pos(next), pos(end));
                    if std::env::var("TRACE").is_ok() { eprintln!("apply [{}, {}) {:?} now={}", pos(next), pos(end), a, now - BASE); }
                    next = end;
                } else {
                    // Input exhausted: let time pass until everything settles.
                    now += 60_000_000;
                }
                let caught_up = next == rows.len();
                if (settle || next == rows.len())
                    && let Some(s) = st.take_settlement(now, caught_up) {
                    if std::env::var("TRACE").is_ok() { eprintln!("commit {:?} -> {:?} cust={} infra={:?}", s.prev, s.next, s.cust.len(), s.infra.iter().map(|(k,v)| (k.minute, v.request_count)).collect::<Vec<_>>()); }
                    db.commit(&s);
                }
                if crash == 0 && crashes < 5 {
                    crashes += 1;
                    if std::env::var("TRACE").is_ok() { eprintln!("crash"); }
                    let p = db.persisted.unwrap_or(first);
                    st = WindowState::restore(cfg, p);
                    next = (p.restart_position / 10) as usize;
                }
            }
            let mut cust = db.cust.clone();
            let mut infra = db.infra.clone();
            let (lc, li) = st.live();
            for (k, v) in &lc { merge_cust(&mut cust, *k, v); }
            for (k, v) in &li { merge_infra(&mut infra, *k, v); }
            let got = sorted(Partials { cust: cust.into_iter().collect(), infra: infra.into_iter().collect(), max_event_us: 0 });
            let expect = sorted(Partials { max_event_us: 0, ..brute_force(&rows) });
            prop_assert_eq!(got, expect);
        }
    }

    #[test]
    fn late_rows_become_deltas_and_restart_position_tracks_open_minutes() {
        let cfg = WindowConfig {
            allowed_lateness_us: 10_000_000,
            idle_lag_us: 1_000_000,
        };
        let p0 = Persisted {
            applied_through: 0,
            restart_position: 0,
            settled_before: BASE / US_PER_MIN,
            settlement_seq: 0,
        };
        let mut st = WindowState::restore(cfg, p0);
        let row = |ts_us| Row {
            ts_us,
            customer_id: Some(7),
            service_type: 2,
            network: 1,
            traffic_type: 1,
            status_code: 200,
            server_id: 1,
            backend_id: Some(1),
            event_type: 0,
            bytes: 100,
            time_total: 5,
            time_queue: None,
            time_connect: Some(1),
            time_response: Some(3),
            repeat: 2,
        };
        // Minute 0 and minute 2 open.
        st.apply(&brute_force(&[row(BASE + 1)]), 0, 10);
        st.apply(&brute_force(&[row(BASE + 2 * US_PER_MIN)]), 10, 20);
        // Watermark at BASE + 2 min: minute 0 is due (ends at +1 min, lateness 10 s).
        let s = st
            .take_settlement(BASE + 2 * US_PER_MIN + 5, false)
            .expect("minute 0 is due");
        assert_eq!(s.next.settled_before, BASE / US_PER_MIN + 1);
        assert_eq!(s.cust.len(), 1);
        assert_eq!(s.cust[0].1.request_count, 2);
        assert_eq!(s.next.restart_position, 10, "minute 2 came from [10, 20)");
        assert_eq!(s.next.applied_through, 20);
        assert_eq!(s.late_requests, 0);
        // A row for minute 0 now is late: a delta, counted.
        let a = st.apply(&brute_force(&[row(BASE + 30)]), 20, 30);
        assert_eq!(a.late, 2);
        let s = st
            .take_settlement(BASE + 2 * US_PER_MIN + 6, false)
            .unwrap();
        assert_eq!(s.late_requests, 2);
        assert_eq!(s.cust[0].0.minute, BASE / US_PER_MIN);
        assert_eq!(s.next.settled_before, BASE / US_PER_MIN + 1);
        // Nothing new: nothing to commit.
        assert!(
            st.take_settlement(BASE + 2 * US_PER_MIN + 7, false)
                .is_none()
        );
        // Replay of [10, 20) after a restart: the settled part is skipped, minute 2 reopens.
        let mut r = WindowState::restore(cfg, s.next);
        let a = r.apply(
            &brute_force(&[row(BASE + 2 * US_PER_MIN), row(BASE + 3)]),
            10,
            30,
        );
        assert_eq!((a.open, a.skipped, a.late), (2, 2, 0));
    }

    #[test]
    fn watermark_never_runs_ahead_of_the_clock() {
        let mut st = WindowState::restore(WindowConfig::default(), Persisted::default());
        let mut p = brute_force(&[]);
        p.max_event_us = 10 * US_PER_MIN;
        st.apply(&p, 0, 1);
        assert_eq!(st.watermark(US_PER_MIN, false), US_PER_MIN);
        assert_eq!(st.watermark(US_PER_MIN, true), US_PER_MIN);
        assert_eq!(
            st.watermark(20 * US_PER_MIN, true),
            20 * US_PER_MIN - 5_000_000
        );
    }
}
