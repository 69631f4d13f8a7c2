//! The live tail: what metering has not settled yet, per customer, and the settled events,
//! fanned out to customers' `GET /stats/live` streams and to the stats endpoints' open bucket.
//!
//! One [`LiveHub`] per API process. It is fed [`HubUpdate`]s, either
//! - in the process that meters, by the composition root from the aggregator
//!   ([`LiveHub::ingest_state`] with `Aggregator::live_state()` when it changed,
//!   [`LiveHub::ingest_settled`] with each `SettledWindow`), or
//! - in an API replica, from the metering process's internal stream (`GET /internal/live` on
//!   its admin port), which carries the same [`HubUpdate`]s as JSON: a replica's hub applies
//!   exactly what the metering hub applied ([`LiveHub::apply`]).
//!
//! Fan-out: one bounded `broadcast` per customer with a stream open (capacity
//! [`LiveOptions::channel_capacity`]). Full-policy **drop oldest for the slow stream**: the
//! hub never waits for a client. A stream that lagged re-reads the settled events it missed
//! from PostgreSQL (`settlement_minutes`, by sequence) and takes the next provisional update,
//! so lagging costs a query, never a wrong number. Provisional updates are sent at most once
//! per [`LiveOptions::provisional_interval`] per customer (later changes are coalesced into
//! the next one); settled events are never delayed or coalesced.
//!
//! Event payloads are serialized once per customer, not once per stream.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use suiftly_billing::ServiceType;
use suiftly_model::{LiveState, MinuteKey, Numbers, SettledWindow};
use tokio::sync::broadcast;

/// Limits of the live tail.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    /// Concurrent `/stats/live` streams one customer may hold; one more is refused (429
    /// `stream_limit_reached`).
    pub max_streams_per_customer: usize,
    /// A comment line at least this often keeps idle streams open through proxies (HAProxy's
    /// `timeout client`/`timeout server` apply to SSE in HTTP mode).
    pub keepalive: Duration,
    /// At most one provisional update per customer per interval.
    pub provisional_interval: Duration,
    /// A stream ends after this long (the client reconnects with its `Last-Event-ID` and a
    /// fresh access token, so a revoked session does not keep a stream for ever).
    pub max_stream_duration: Duration,
    /// Events buffered per customer for its slowest stream before it is told it lagged.
    pub channel_capacity: usize,
    /// The internal feed's buffer (replicas); a replica that falls behind gets a full state.
    pub feed_capacity: usize,
}

impl Default for LiveOptions {
    fn default() -> Self {
        LiveOptions {
            max_streams_per_customer: 5,
            keepalive: Duration::from_secs(15),
            provisional_interval: Duration::from_secs(1),
            max_stream_duration: Duration::from_secs(15 * 60),
            channel_capacity: 64,
            feed_capacity: 1024,
        }
    }
}

/// One row of the wire format (internal feed and events' rows share the numbers).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WireRow {
    /// Minutes since the epoch.
    pub m: i64,
    pub c: i32,
    pub s: i16,
    pub n: i16,
    /// requests, billable, dropped, success, client errors, server errors, 2xx, 3xx, 4xx,
    /// 5xx, total bytes, billable bytes, response time sum.
    pub v: [i64; 13],
    pub lo: Option<i32>,
    pub hi: Option<i32>,
}

impl From<&(MinuteKey, Numbers)> for WireRow {
    fn from((k, n): &(MinuteKey, Numbers)) -> WireRow {
        WireRow {
            m: k.minute,
            c: k.customer_id,
            s: k.service_type,
            n: k.network,
            v: [
                n.requests,
                n.billable_requests,
                n.dropped_requests,
                n.success,
                n.client_errors,
                n.server_errors,
                n.status_2xx,
                n.status_3xx,
                n.status_4xx,
                n.status_5xx,
                n.total_bytes,
                n.billable_bytes,
                n.response_time_sum_ms,
            ],
            lo: n.min_response_time_ms,
            hi: n.max_response_time_ms,
        }
    }
}

impl From<&WireRow> for (MinuteKey, Numbers) {
    fn from(w: &WireRow) -> (MinuteKey, Numbers) {
        let v = w.v;
        (
            MinuteKey {
                minute: w.m,
                customer_id: w.c,
                service_type: w.s,
                network: w.n,
            },
            Numbers {
                requests: v[0],
                billable_requests: v[1],
                dropped_requests: v[2],
                success: v[3],
                client_errors: v[4],
                server_errors: v[5],
                status_2xx: v[6],
                status_3xx: v[7],
                status_4xx: v[8],
                status_5xx: v[9],
                total_bytes: v[10],
                billable_bytes: v[11],
                response_time_sum_ms: v[12],
                min_response_time_ms: w.lo,
                max_response_time_ms: w.hi,
            },
        )
    }
}

/// One customer's unsettled rows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CustomerRows {
    pub customer_id: i32,
    /// Open minutes and pending late deltas (in no committed settlement).
    pub rows: Vec<WireRow>,
    /// Rows of the settlement being committed (`inflight_seq`).
    pub inflight: Vec<WireRow>,
}

/// A change of the hub's state: what the metering process's hub applied, in order. The
/// internal feed carries these as JSON (one per SSE event).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HubUpdate {
    /// The unsettled state moved. `reset`: the full state (customers not listed have no
    /// unsettled rows); otherwise only the customers whose rows changed, each in full.
    Live {
        reset: bool,
        committed_seq: u64,
        /// Minutes since the epoch.
        settled_before: i64,
        inflight_seq: Option<u64>,
        customers: Vec<CustomerRows>,
    },
    /// Settlement `seq` committed; `rows` is what it added, for every customer.
    Settled {
        seq: u64,
        settled_before: i64,
        rows: Vec<WireRow>,
    },
}

/// A customer stream's event, serialized once for every stream of that customer.
#[derive(Debug, Clone)]
pub struct CustomerEvent {
    /// SSE event name: `provisional` or `settled`.
    pub kind: &'static str,
    /// The settlement sequence (`settled` only): the SSE event id.
    pub seq: Option<u64>,
    pub data: Arc<str>,
}

/// What the stats endpoints need of one customer: the unsettled rows with the sequence
/// numbers that say which of them the database already holds.
#[derive(Debug, Clone, Default)]
pub struct CustomerView {
    pub state: LiveState,
    /// Whether the hub has heard from metering at all (a replica before its first update,
    /// or after losing the feed, has not).
    pub connected: bool,
}

#[derive(Debug, Default)]
struct Sub {
    tx: Option<broadcast::Sender<Arc<CustomerEvent>>>,
    streams: usize,
    last_provisional: Option<Instant>,
    pending: bool,
}

#[derive(Debug, Default)]
struct State {
    connected: bool,
    committed_seq: u64,
    settled_before: i64,
    inflight_seq: Option<u64>,
    /// Last settled event fanned out (not the live state's `committed_seq`: the two sources
    /// arrive independently).
    last_settled_seq: u64,
    customers: HashMap<i32, CustomerRows>,
    subs: HashMap<i32, Sub>,
}

/// Why a stream could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{limit} live streams are already open")]
pub struct StreamLimit {
    pub limit: usize,
}

/// See the module doc.
pub struct LiveHub {
    opts: LiveOptions,
    state: Mutex<State>,
    feed: broadcast::Sender<Arc<HubUpdate>>,
}

/// An open customer stream's registration: receives that customer's events; unregisters on
/// drop.
pub struct Subscription {
    pub rx: broadcast::Receiver<Arc<CustomerEvent>>,
    /// The last settled event fanned out before this subscription: events after it arrive on
    /// `rx`.
    pub last_settled_seq: u64,
    /// The customer's unsettled rows now (the stream's first provisional event).
    pub provisional: Arc<CustomerEvent>,
    hub: Arc<LiveHub>,
    customer_id: i32,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut st = self.hub.lock();
        if let Some(sub) = st.subs.get_mut(&self.customer_id) {
            sub.streams -= 1;
            if sub.streams == 0 {
                st.subs.remove(&self.customer_id);
            }
        }
        metrics::gauge!("suiftly_api_live_streams").decrement(1.0);
    }
}

fn rows_of(c: &CustomerRows) -> impl Iterator<Item = (MinuteKey, Numbers)> + '_ {
    c.rows
        .iter()
        .chain(c.inflight.iter())
        .map(<(MinuteKey, Numbers)>::from)
}

/// Network names of SPEC §3.
pub fn network_name(n: i16) -> &'static str {
    match n {
        0 => "testnet",
        1 => "mainnet",
        2 => "devnet",
        3 => "localnet",
        _ => "unknown",
    }
}

pub fn parse_network(s: &str) -> Option<i16> {
    (0..4).find(|n| network_name(*n) == s)
}

pub fn service_name(s: i16) -> &'static str {
    ServiceType::from_i16(s).map_or("unknown", |t| t.as_str())
}

pub fn minute_time(minute: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(minute * 60, 0).unwrap_or_default()
}

/// The JSON of one customer-facing row (events and documented in the OpenAPI document as
/// `LiveRow`).
pub fn row_json(k: &MinuteKey, n: &Numbers) -> Value {
    json!({
        "minute": minute_time(k.minute),
        "service": service_name(k.service_type),
        "network": network_name(k.network),
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
        "total_bytes": n.total_bytes,
        "billable_bytes": n.billable_bytes,
        "response_time_sum_ms": n.response_time_sum_ms,
        "avg_response_time_ms": n.avg_response_time_ms(),
        "min_response_time_ms": n.min_response_time_ms,
        "max_response_time_ms": n.max_response_time_ms,
    })
}

/// Rows merged per (minute, service, network) and sorted: a customer's event rows.
fn merged(rows: impl Iterator<Item = (MinuteKey, Numbers)>) -> Vec<Value> {
    let mut m: BTreeMap<MinuteKey, Numbers> = BTreeMap::new();
    for (k, n) in rows {
        m.entry(k).or_default().merge(&n);
    }
    m.iter().map(|(k, n)| row_json(k, n)).collect()
}

/// A `settled` event's payload.
pub fn settled_event(
    seq: u64,
    settled_before: i64,
    rows: impl Iterator<Item = (MinuteKey, Numbers)>,
) -> CustomerEvent {
    let data = json!({
        "seq": seq,
        "settled_before": minute_time(settled_before),
        "rows": merged(rows),
    });
    CustomerEvent {
        kind: "settled",
        seq: Some(seq),
        data: data.to_string().into(),
    }
}

fn provisional_event(
    settled_before: i64,
    rows: impl Iterator<Item = (MinuteKey, Numbers)>,
) -> CustomerEvent {
    let data = json!({
        "settled_before": minute_time(settled_before),
        "rows": merged(rows),
    });
    CustomerEvent {
        kind: "provisional",
        seq: None,
        data: data.to_string().into(),
    }
}

impl LiveHub {
    pub fn new(opts: LiveOptions) -> Arc<LiveHub> {
        let (feed, _) = broadcast::channel(opts.feed_capacity.max(1));
        Arc::new(LiveHub {
            opts,
            state: Mutex::new(State::default()),
            feed,
        })
    }

    pub fn options(&self) -> &LiveOptions {
        &self.opts
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("live hub lock poisoned")
    }

    /// Metering side: the aggregator's unsettled state (taken because it changed). Only the
    /// customers whose rows differ from what the hub holds travel on.
    pub fn ingest_state(&self, s: LiveState) {
        let mut by: HashMap<i32, CustomerRows> = HashMap::new();
        for r in &s.rows {
            let c = by.entry(r.0.customer_id).or_insert_with(|| CustomerRows {
                customer_id: r.0.customer_id,
                ..CustomerRows::default()
            });
            c.rows.push(WireRow::from(r));
        }
        if let Some((_, rows)) = &s.inflight {
            for r in rows {
                let c = by.entry(r.0.customer_id).or_insert_with(|| CustomerRows {
                    customer_id: r.0.customer_id,
                    ..CustomerRows::default()
                });
                c.inflight.push(WireRow::from(r));
            }
        }
        let update = {
            let st = self.lock();
            let mut changed: Vec<CustomerRows> = by
                .iter()
                .filter(|(id, c)| st.customers.get(id) != Some(c))
                .map(|(_, c)| c.clone())
                .collect();
            changed.extend(
                st.customers
                    .keys()
                    .filter(|id| !by.contains_key(id))
                    .map(|id| CustomerRows {
                        customer_id: *id,
                        ..CustomerRows::default()
                    }),
            );
            let seqs_same = st.connected
                && st.committed_seq == s.committed_seq
                && st.inflight_seq == s.inflight.as_ref().map(|(q, _)| *q)
                && st.settled_before == s.settled_before;
            if changed.is_empty() && seqs_same {
                return;
            }
            HubUpdate::Live {
                reset: false,
                committed_seq: s.committed_seq,
                settled_before: s.settled_before,
                inflight_seq: s.inflight.as_ref().map(|(q, _)| *q),
                customers: changed,
            }
        };
        self.apply(update);
    }

    /// Metering side: a settlement committed.
    pub fn ingest_settled(&self, w: &SettledWindow) {
        self.apply(HubUpdate::Settled {
            seq: w.seq,
            settled_before: w.settled_before_us.div_euclid(60_000_000),
            rows: w.minutes.iter().map(WireRow::from).collect(),
        });
    }

    /// Forgets the unsettled state (a replica that lost its feed): the stats endpoints then
    /// read the settled tables only, and streams get no provisional updates until the feed
    /// is back.
    pub fn disconnect(&self) {
        let mut st = self.lock();
        st.connected = false;
        let ids: Vec<i32> = st.customers.keys().copied().collect();
        st.customers.clear();
        st.inflight_seq = None;
        for id in ids {
            if let Some(sub) = st.subs.get_mut(&id) {
                sub.pending = true;
            }
        }
    }

    /// Applies one update (in order); replicas call this with what the internal feed carries.
    pub fn apply(&self, u: HubUpdate) {
        let now = Instant::now();
        let mut st = self.lock();
        match &u {
            HubUpdate::Live {
                reset,
                committed_seq,
                settled_before,
                inflight_seq,
                customers,
            } => {
                st.connected = true;
                st.committed_seq = *committed_seq;
                st.settled_before = *settled_before;
                st.inflight_seq = *inflight_seq;
                let mut touched: Vec<i32> = Vec::with_capacity(customers.len());
                if *reset {
                    touched.extend(st.customers.keys().copied());
                    st.customers.clear();
                }
                for c in customers {
                    touched.push(c.customer_id);
                    if c.rows.is_empty() && c.inflight.is_empty() {
                        st.customers.remove(&c.customer_id);
                    } else {
                        st.customers.insert(c.customer_id, c.clone());
                    }
                }
                for id in touched {
                    if let Some(sub) = st.subs.get_mut(&id) {
                        sub.pending = true;
                    }
                }
            }
            HubUpdate::Settled {
                seq,
                settled_before,
                rows,
            } => {
                if *seq > st.last_settled_seq {
                    st.last_settled_seq = *seq;
                    // The in-flight rows are now in the database: drop them here too, so a
                    // provisional update never repeats what a settled event carried.
                    if st.inflight_seq == Some(*seq) {
                        st.inflight_seq = None;
                        st.committed_seq = *seq;
                        st.settled_before = *settled_before;
                        for c in st.customers.values_mut() {
                            c.inflight.clear();
                        }
                        st.customers
                            .retain(|_, c| !(c.rows.is_empty() && c.inflight.is_empty()));
                    }
                    let mut per: HashMap<i32, Vec<(MinuteKey, Numbers)>> = HashMap::new();
                    for r in rows {
                        if st.subs.contains_key(&r.c) {
                            per.entry(r.c).or_default().push(r.into());
                        }
                    }
                    let sb = *settled_before;
                    for (id, sub) in st.subs.iter_mut() {
                        let ev =
                            settled_event(*seq, sb, per.remove(id).unwrap_or_default().into_iter());
                        if let Some(tx) = &sub.tx {
                            let _ = tx.send(Arc::new(ev));
                        }
                        // Clients drop their provisional view on a settled event; send the
                        // remaining unsettled rows again (within the rate limit).
                        sub.pending = true;
                    }
                }
            }
        }
        self.flush_locked(&mut st, now);
        let _ = self.feed.send(Arc::new(u));
    }

    /// Sends the provisional updates that waited for their customer's interval.
    pub fn flush_pending(&self) {
        let now = Instant::now();
        let mut st = self.lock();
        self.flush_locked(&mut st, now);
    }

    fn flush_locked(&self, st: &mut State, now: Instant) {
        let State {
            subs,
            customers,
            settled_before,
            ..
        } = st;
        for (id, sub) in subs.iter_mut() {
            if !sub.pending {
                continue;
            }
            if let Some(t) = sub.last_provisional
                && now.duration_since(t) < self.opts.provisional_interval
            {
                continue;
            }
            sub.pending = false;
            sub.last_provisional = Some(now);
            let ev = match customers.get(id) {
                Some(c) => provisional_event(*settled_before, rows_of(c)),
                None => provisional_event(*settled_before, std::iter::empty()),
            };
            if let Some(tx) = &sub.tx {
                let _ = tx.send(Arc::new(ev));
            }
        }
    }

    /// Opens a stream for `customer_id` (see [`LiveOptions::max_streams_per_customer`]).
    pub fn subscribe(self: &Arc<Self>, customer_id: i32) -> Result<Subscription, StreamLimit> {
        let mut st = self.lock();
        let cap = self.opts.channel_capacity.max(1);
        let limit = self.opts.max_streams_per_customer;
        let last_settled_seq = st.last_settled_seq;
        let settled_before = st.settled_before;
        let provisional = Arc::new(match st.customers.get(&customer_id) {
            Some(c) => provisional_event(settled_before, rows_of(c)),
            None => provisional_event(settled_before, std::iter::empty()),
        });
        let sub = st.subs.entry(customer_id).or_default();
        if sub.streams >= limit {
            return Err(StreamLimit { limit });
        }
        sub.streams += 1;
        let rx = sub
            .tx
            .get_or_insert_with(|| broadcast::channel(cap).0)
            .subscribe();
        metrics::gauge!("suiftly_api_live_streams").increment(1.0);
        Ok(Subscription {
            rx,
            last_settled_seq,
            provisional,
            hub: self.clone(),
            customer_id,
        })
    }

    /// Open streams of one customer.
    pub fn streams(&self, customer_id: i32) -> usize {
        self.lock().subs.get(&customer_id).map_or(0, |s| s.streams)
    }

    /// The last settled event fanned out.
    pub fn last_settled_seq(&self) -> u64 {
        self.lock().last_settled_seq
    }

    /// One customer's unsettled rows and the sequence numbers they are relative to.
    pub fn view(&self, customer_id: i32) -> CustomerView {
        let st = self.lock();
        let (rows, inflight) = match st.customers.get(&customer_id) {
            Some(c) => (
                c.rows.iter().map(<(MinuteKey, Numbers)>::from).collect(),
                c.inflight
                    .iter()
                    .map(<(MinuteKey, Numbers)>::from)
                    .collect(),
            ),
            None => (Vec::new(), Vec::new()),
        };
        CustomerView {
            connected: st.connected,
            state: LiveState {
                committed_seq: st.committed_seq,
                settled_before: st.settled_before,
                rows,
                inflight: st.inflight_seq.map(|s| (s, inflight)),
            },
        }
    }

    /// The internal feed (replicas): the full state now, then every update after it.
    pub fn follow(&self) -> (HubUpdate, broadcast::Receiver<Arc<HubUpdate>>) {
        let st = self.lock();
        let rx = self.feed.subscribe();
        let mut customers: Vec<CustomerRows> = st.customers.values().cloned().collect();
        customers.sort_by_key(|c| c.customer_id);
        (
            HubUpdate::Live {
                reset: true,
                committed_seq: st.committed_seq,
                settled_before: st.settled_before,
                inflight_seq: st.inflight_seq,
                customers,
            },
            rx,
        )
    }
}

/// A sans-IO decoder of `text/event-stream` (the replica's feed client and the tests): feed
/// bytes, take complete events. Comment lines (keep-alives) are counted, not returned.
#[derive(Debug, Default)]
pub struct SseDecoder {
    buf: Vec<u8>,
    event: Option<String>,
    id: Option<String>,
    data: Vec<String>,
    /// Comment lines seen (`: keep-alive`).
    pub comments: u64,
}

/// One decoded server-sent event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// `message` when the stream named none.
    pub event: String,
    pub id: Option<String>,
    pub data: String,
}

impl SseDecoder {
    pub fn push(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(nl) = self.buf.iter().position(|b| *b == b'\n') {
            let mut line: Vec<u8> = self.buf.drain(..=nl).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8_lossy(&line).into_owned();
            if line.is_empty() {
                if !self.data.is_empty() || self.event.is_some() {
                    out.push(SseEvent {
                        event: self.event.take().unwrap_or_else(|| "message".into()),
                        id: self.id.take(),
                        data: std::mem::take(&mut self.data).join("\n"),
                    });
                }
                continue;
            }
            if line.starts_with(':') {
                self.comments += 1;
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f.to_string(), v.strip_prefix(' ').unwrap_or(v).to_string()),
                None => (line.clone(), String::new()),
            };
            match field.as_str() {
                "event" => self.event = Some(value),
                "id" => self.id = Some(value),
                "data" => self.data.push(value),
                _ => {}
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: i32, minute: i64) -> MinuteKey {
        MinuteKey {
            minute,
            customer_id: c,
            service_type: 2,
            network: 1,
        }
    }

    fn n(requests: i64) -> Numbers {
        Numbers::from_group(1, 200, requests, 10 * requests, requests, 1, 1)
    }

    fn opts() -> LiveOptions {
        LiveOptions {
            provisional_interval: Duration::ZERO,
            ..LiveOptions::default()
        }
    }

    fn event(rx: &mut broadcast::Receiver<Arc<CustomerEvent>>) -> Option<(String, Value)> {
        rx.try_recv()
            .ok()
            .map(|e| (e.kind.to_string(), serde_json::from_str(&e.data).unwrap()))
    }

    #[test]
    fn a_customer_sees_only_its_rows_and_settled_rows_leave_the_provisional_view() {
        let hub = LiveHub::new(opts());
        let mut a = hub.subscribe(7).unwrap();
        let mut b = hub.subscribe(8).unwrap();
        hub.ingest_state(LiveState {
            committed_seq: 3,
            settled_before: 100,
            rows: vec![(key(7, 100), n(2)), (key(8, 100), n(5))],
            inflight: None,
        });
        let (k, v) = event(&mut a.rx).unwrap();
        assert_eq!(k, "provisional");
        assert_eq!(v["rows"].as_array().unwrap().len(), 1);
        assert_eq!(v["rows"][0]["requests"], 2);
        let (_, v) = event(&mut b.rx).unwrap();
        assert_eq!(v["rows"][0]["requests"], 5);
        // The minute moves in flight, then settles.
        hub.ingest_state(LiveState {
            committed_seq: 3,
            settled_before: 100,
            rows: vec![],
            inflight: Some((4, vec![(key(7, 100), n(2)), (key(8, 100), n(5))])),
        });
        // Same rows, now in flight: a provisional update with the same numbers.
        let (_, v) = event(&mut a.rx).unwrap();
        assert_eq!(v["rows"][0]["requests"], 2);
        hub.ingest_settled(&SettledWindow {
            seq: 4,
            settled_before_us: 101 * 60_000_000,
            newly_settled_us: (0, 0),
            completed_hours_us: vec![],
            usage: vec![],
            late_requests: 0,
            minutes: vec![(key(7, 100), n(2)), (key(8, 100), n(5))],
        });
        let (k, v) = event(&mut a.rx).unwrap();
        assert_eq!(k, "settled");
        assert_eq!(v["seq"], 4);
        assert_eq!(v["rows"][0]["requests"], 2);
        assert_eq!(
            v["rows"].as_array().unwrap().len(),
            1,
            "only customer 7's row"
        );
        let (k, v) = event(&mut a.rx).unwrap();
        assert_eq!(k, "provisional");
        assert!(v["rows"].as_array().unwrap().is_empty());
        assert!(hub.view(7).state.rows_beyond(4).unwrap().is_empty());
        // A settled event for nobody we know still reaches every stream (ids stay dense).
        hub.ingest_settled(&SettledWindow {
            seq: 5,
            settled_before_us: 102 * 60_000_000,
            newly_settled_us: (0, 0),
            completed_hours_us: vec![],
            usage: vec![],
            late_requests: 0,
            minutes: vec![(key(9, 101), n(1))],
        });
        while let Some((k, v)) = event(&mut b.rx) {
            if k == "settled" && v["seq"] == 5 {
                assert!(v["rows"].as_array().unwrap().is_empty());
                return;
            }
        }
        panic!("no settled event 5");
    }

    #[test]
    fn provisional_updates_are_rate_limited_per_customer() {
        let hub = LiveHub::new(LiveOptions {
            provisional_interval: Duration::from_secs(3600),
            ..LiveOptions::default()
        });
        let mut a = hub.subscribe(7).unwrap();
        for i in 1..=10 {
            hub.ingest_state(LiveState {
                committed_seq: 0,
                settled_before: 0,
                rows: vec![(key(7, 100), n(i))],
                inflight: None,
            });
        }
        let (_, v) = event(&mut a.rx).unwrap();
        assert_eq!(v["rows"][0]["requests"], 1);
        assert!(
            event(&mut a.rx).is_none(),
            "coalesced until the interval passes"
        );
        // The view is always current.
        assert_eq!(hub.view(7).state.rows[0].1.requests, 10);
    }

    #[test]
    fn the_cap_counts_open_streams_of_one_customer() {
        let hub = LiveHub::new(LiveOptions {
            max_streams_per_customer: 2,
            ..opts()
        });
        let s1 = hub.subscribe(7).unwrap();
        let _s2 = hub.subscribe(7).unwrap();
        assert_eq!(hub.subscribe(7).err(), Some(StreamLimit { limit: 2 }));
        let _other = hub.subscribe(8).unwrap();
        drop(s1);
        assert_eq!(hub.streams(7), 1);
        hub.subscribe(7).unwrap();
    }

    #[test]
    fn a_replica_applying_the_feed_holds_the_same_state() {
        let hub = LiveHub::new(opts());
        let replica = LiveHub::new(opts());
        hub.ingest_state(LiveState {
            committed_seq: 1,
            settled_before: 50,
            rows: vec![(key(7, 100), n(2))],
            inflight: None,
        });
        let (full, mut rx) = hub.follow();
        let wire = serde_json::to_string(&full).unwrap();
        replica.apply(serde_json::from_str(&wire).unwrap());
        hub.ingest_state(LiveState {
            committed_seq: 1,
            settled_before: 50,
            rows: vec![(key(7, 100), n(3)), (key(8, 100), n(1))],
            inflight: Some((2, vec![(key(9, 99), n(4))])),
        });
        while let Ok(u) = rx.try_recv() {
            let wire = serde_json::to_string(&*u).unwrap();
            replica.apply(serde_json::from_str(&wire).unwrap());
        }
        for c in [7, 8, 9, 10] {
            let (a, b) = (hub.view(c), replica.view(c));
            assert_eq!(a.state, b.state, "customer {c}");
        }
    }

    #[test]
    fn sse_decoder_splits_events_and_counts_comments() {
        let mut d = SseDecoder::default();
        let mut ev = d.push(b": keep-alive\n\nevent: settled\nid: 4\ndata: {\"a\"");
        assert!(ev.is_empty());
        ev.extend(d.push(b":1}\n\ndata: x\r\n\r\n"));
        assert_eq!(d.comments, 1);
        assert_eq!(
            ev,
            vec![
                SseEvent {
                    event: "settled".into(),
                    id: Some("4".into()),
                    data: "{\"a\":1}".into()
                },
                SseEvent {
                    event: "message".into(),
                    id: None,
                    data: "x".into()
                }
            ]
        );
    }
}
