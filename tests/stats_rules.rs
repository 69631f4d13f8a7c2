//! The stats endpoints against a real PostgreSQL, with data settled by the real aggregator
//! (rows stored by the COPY writer and metered by `suiftly_aggregate::service`, exactly what
//! the consumer hands it) plus a live tail (the aggregator's open minutes through the live
//! hub): every rule of issue 13, item 1, with hand-computed expectations, and graph = invoice
//! for a whole billing month (the usage series summed = `usage_records` = what was sent = the
//! usage lines of the invoice the real billing cycle writes for that month, quantities and
//! cents).
//!
//! Rows are built as parser records (not sf1 lines) because HAProxy always logs `repeat` = 1
//! and the `repeat` rule needs rows that stand for several requests.

mod live;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{Datelike, TimeZone, Utc};
use serde_json::Value;
use suiftly_aggregate::service::{self, AggregatorConfig, Recovery};
use suiftly_aggregate::window::WindowConfig;
use suiftly_ingest::batch::{RawBatchBuilder, WriteBatch};
use suiftly_ingest::writer::{WriteOutcome, Writer, WriterConfig};
use suiftly_model::Committed;
use suiftly_parser::LogRecord;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const US_PER_MIN: i64 = 60_000_000;
const US_PER_HOUR: i64 = 3_600_000_000;
const GRPC: i16 = 2;
const GRAPHQL: i16 = 3;
const SEAL: i16 = 1;
const MAINNET: i16 = 1;
const TESTNET: i16 = 0;
const A: i32 = 1001;
const B: i32 = 2002;
/// The customer of the billing month (kept apart so the month's rows stay out of A's windows).
const C: i32 = 3003;

#[allow(clippy::too_many_arguments)]
fn rec(
    ts_us: i64,
    customer: i32,
    service: i16,
    network: i16,
    tt: i16,
    status: i16,
    bytes: i64,
    time_total: i32,
    repeat: i32,
) -> LogRecord<'static> {
    LogRecord {
        timestamp_us: ts_us,
        customer_id: Some(customer),
        path_prefix: Some("v1"),
        config_hex: None,
        network,
        server_id: 17,
        service_type: service,
        api_key_fp: 5,
        fe_type: 2,
        traffic_type: tt,
        event_type: 0,
        client_ip: IpAddr::from([10, 1, 2, 3]),
        key_metadata: None,
        status_code: status,
        bytes_sent: bytes,
        time_total,
        time_request: Some(0),
        time_queue: Some(0),
        time_connect: Some(1),
        time_response: Some(2),
        backend_id: Some(1),
        termination_state: Some("--"),
        repeat,
    }
}

/// Stores rows through the COPY writer and hands them to the aggregator as the next
/// committed spool range (what the consumer does).
struct Feeder {
    w: Writer,
    tx: mpsc::Sender<Committed>,
    pos: u64,
}

impl Feeder {
    async fn send(&mut self, rows: &[LogRecord<'static>]) {
        let mut b = RawBatchBuilder::with_capacity(rows.len());
        for r in rows {
            b.append(r);
        }
        let batch: WriteBatch = b.finish();
        let outcome = self
            .w
            .write_with_retry(&batch, &CancellationToken::new())
            .await;
        assert!(
            matches!(&outcome, WriteOutcome::Committed { refused } if refused.is_empty()),
            "{outcome:?}"
        );
        self.tx
            .send(Committed {
                rows: batch.rows.clone(),
                start: self.pos,
                end: self.pos + 1,
            })
            .await
            .unwrap();
        self.pos += 1;
    }
}

fn i(v: &Value, k: &str) -> i64 {
    v[k].as_i64()
        .unwrap_or_else(|| panic!("{k} missing or not an integer in {v}"))
}

fn point_at(series: &Value, start_us: i64) -> Option<&Value> {
    let want = Utc.timestamp_micros(start_us).unwrap();
    series["points"].as_array().unwrap().iter().find(|p| {
        chrono::DateTime::parse_from_rfc3339(p["start"].as_str().unwrap()).unwrap() == want
    })
}

fn sum(series: &Value, k: &str) -> i64 {
    series["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| i(p, k))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stats_rule_holds_on_settled_data_plus_the_live_tail() {
    let pg = tokio::task::spawn_blocking(pgcluster::PgCluster::temporary)
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("cannot start the test postgresql: {e}"));
    let conninfo = pg.connection_string();
    let mut c = suiftly_aggregate::settle::connect(&conninfo).await.unwrap();
    suiftly_migrations::migrate(&mut c).await.unwrap();

    let now = Utc::now();
    let now_us = now.timestamp_micros();
    let h = now_us.div_euclid(US_PER_HOUR) * US_PER_HOUR;
    // The previous UTC month: the billing period of the graph = invoice check.
    let this_month = Utc
        .with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
        .unwrap();
    let prev_month = if now.month() == 1 {
        Utc.with_ymd_and_hms(now.year() - 1, 12, 1, 0, 0, 0)
    } else {
        Utc.with_ymd_and_hms(now.year(), now.month() - 1, 1, 0, 0, 0)
    }
    .unwrap();
    let period = prev_month.format("%Y-%m").to_string();
    let m0 = prev_month.timestamp_micros();
    let m_days = (this_month - prev_month).num_days();

    // Metering starts before the billing month: everything after settles through the normal
    // path (minutes, hour roll-ups, usage_records); the current minutes stay live for 10
    // minutes (the allowed lateness), which is the test's live tail.
    suiftly_aggregate::settle::load_or_init(&c, "default", 0, m0 / US_PER_MIN)
        .await
        .unwrap();
    let cfg = AggregatorConfig {
        ingestor: "default".into(),
        window: WindowConfig {
            allowed_lateness_us: 10 * US_PER_MIN,
            idle_lag_us: 0,
        },
        settle_interval: Duration::from_millis(50),
        subscriber_capacity: 4096,
        max_backoff: Duration::from_millis(200),
    };
    let persisted = service::load_state(&conninfo, "default", 0, &cfg.window)
        .await
        .unwrap();
    let (tx, rx) = mpsc::channel(8);
    let (agg, task) = service::start(
        cfg,
        conninfo.clone(),
        Recovery {
            persisted,
            replay_to: 0,
            replay: None,
        },
        rx,
        Arc::new(|_| true),
        CancellationToken::new(),
    );
    let task = tokio::spawn(task);
    let hub = suiftly_api::live::LiveHub::new(suiftly_api::live::LiveOptions::default());
    let stop = CancellationToken::new();
    let feeder_task = tokio::spawn(suiftly::live_feed::feed_from_aggregator(
        agg.clone(),
        hub.clone(),
        stop.clone(),
    ));

    // The API on a port of its own, limits off.
    let mut api_cfg = suiftly_api::ApiConfig::development();
    api_cfg.jwt_secret = live::JWT_SECRET.as_bytes().to_vec();
    api_cfg.customer_rate.per_second = 0;
    api_cfg.ip_rate.per_second = 0;
    let state = suiftly_api::AppState::new(
        api_cfg,
        suiftly_api::db::pool(&conninfo, 4).unwrap(),
        Arc::new(suiftly_billing::MockEscrow::new()),
        Arc::new(suiftly_api::clock::SystemClock),
        None,
    )
    .unwrap()
    .with_live(hub.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = listener.local_addr().unwrap();
    let api_stop = CancellationToken::new();
    let server = tokio::spawn({
        let s = api_stop.clone();
        suiftly_api::run(listener, state, async move { s.cancelled().await })
    });
    let (ta, tb, tc) = (
        live::session(live::JWT_SECRET, &conninfo, A).await,
        live::session(live::JWT_SECRET, &conninfo, B).await,
        live::session(live::JWT_SECRET, &conninfo, C).await,
    );

    let mut f = Feeder {
        w: Writer::new(WriterConfig::new(&conninfo)),
        tx,
        pos: 0,
    };

    // ---- Hours H-3 and H-2 (t0 = H-2h is "12:00:00"), customer A.
    let t0 = h - 2 * US_PER_HOUR;
    let at = t0 - 30 * US_PER_MIN;
    f.send(&[
        rec(at, A, GRPC, MAINNET, 1, 200, 300, 10, 3), // repeat 3: 3 requests, 300 bytes
        rec(at, A, GRPC, MAINNET, 2, 404, 50, 30, 1),  // billable client error
        rec(at, A, GRPC, MAINNET, 3, 429, 20, 1, 2),   // dropped: not billable
        rec(at, A, GRPC, MAINNET, 7, 200, 1000, 5000, 1), // stream delta: bytes billed, no request
        rec(at, A, GRPC, MAINNET, 8, 200, 777, 9000, 1), // stream close: nothing
        rec(at, A, GRPC, MAINNET, 2, 503, 0, 100, 1),  // billable server error
        rec(t0 - 1000, A, GRPC, MAINNET, 1, 200, 5, 20, 1), // 11:59:59.999
        rec(t0, A, GRPC, MAINNET, 1, 200, 6, 50, 1),   // 12:00:00.000
        rec(t0 - 20 * US_PER_MIN, A, GRAPHQL, TESTNET, 1, 200, 40, 8, 2),
    ])
    .await;
    // Customer B: one request in H-3 only (its current hour is empty).
    f.send(&[rec(at, B, GRPC, MAINNET, 1, 200, 1, 1, 1)]).await;

    // ---- The billing month, customer C: grpc and seal over several days, every type.
    let mut month_rows = Vec::new();
    let (mut want_req, mut want_bytes) = ([0i64; 4], [0i64; 4]);
    for d in 0..m_days {
        if d % 3 != 0 && d != m_days - 1 {
            continue;
        }
        let day = m0 + d * 24 * US_PER_HOUR;
        for (k, (svc, tt, status, bytes, repeat)) in [
            (GRPC, 1, 200, 1_000_003, 4),
            (GRPC, 2, 200, 70_000, 1),
            (GRPC, 7, 200, 5_000_000, 1),
            (GRPC, 8, 200, 9_999_999, 1),
            (GRPC, 3, 429, 100, 3),
            (SEAL, 1, 200, 300, 25),
            (SEAL, 2, 500, 10, 1),
        ]
        .into_iter()
        .enumerate()
        {
            month_rows.push(rec(
                day + (k as i64 + 1) * 7 * US_PER_MIN + d * 1000,
                C,
                svc,
                MAINNET,
                tt,
                status,
                bytes,
                12,
                repeat,
            ));
            if matches!(tt, 1 | 2) {
                want_req[svc as usize] += repeat as i64;
            }
            if matches!(tt, 1 | 2 | 7) {
                want_bytes[svc as usize] += bytes;
            }
        }
    }
    // Day boundary of the month: 23:59:59.999 of day 1 and 00:00:00.000 of day 2.
    let d2 = m0 + 24 * US_PER_HOUR;
    month_rows.push(rec(d2 - 1000, C, GRPC, MAINNET, 1, 200, 1, 1, 1));
    month_rows.push(rec(d2, C, GRPC, MAINNET, 1, 200, 1, 1, 1));
    want_req[GRPC as usize] += 2;
    want_bytes[GRPC as usize] += 2;
    for chunk in month_rows.chunks(17) {
        f.send(chunk).await;
    }

    // ---- The live tail: the current minute, A only.
    f.send(&[rec(now_us, A, GRPC, MAINNET, 1, 200, 70, 7, 1)])
        .await;

    // Wait until everything older than the lateness has settled and the hub has caught up.
    let due = (now_us - 10 * US_PER_MIN).div_euclid(US_PER_MIN) - 1;
    for _ in 0..1200 {
        let p = agg.persisted();
        if p.applied_through >= f.pos
            && p.settled_before >= due
            && hub.last_settled_seq() >= p.settlement_seq
            && hub
                .view(A)
                .state
                .rows
                .iter()
                .any(|(k, _)| k.minute == now_us / US_PER_MIN)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(agg.persisted().settled_before >= due, "metering settled");

    // Late usage for the month after billing charged it: a new revision, still on the graph.
    c.execute("UPDATE usage_records SET charged_amount = 1", &[])
        .await
        .unwrap();
    // In an hour whose usage is already charged (day 9 has rows in its first hour).
    let late_day = m0 + 9 * 24 * US_PER_HOUR + 30 * US_PER_MIN;
    f.send(&[
        rec(late_day, C, GRPC, MAINNET, 1, 200, 12_345, 3, 7),
        rec(late_day, C, SEAL, MAINNET, 2, 200, 10, 3, 2),
    ])
    .await;
    want_req[GRPC as usize] += 7;
    want_bytes[GRPC as usize] += 12_345;
    want_req[SEAL as usize] += 2;
    want_bytes[SEAL as usize] += 10;
    let mut revisions = 0i64;
    for _ in 0..600 {
        revisions = c
            .query_one("SELECT count(*) FROM usage_records WHERE revision > 0", &[])
            .await
            .unwrap()
            .get(0);
        if revisions >= 2 && hub.last_settled_seq() >= agg.persisted().settlement_seq {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if revisions < 2 {
        let rows = c
            .query(
                "SELECT customer_id, service_type, window_start::text, revision, request_count, charged_amount FROM usage_records ORDER BY 1, 2, 3, 4",
                &[],
            )
            .await
            .unwrap();
        for r in rows {
            eprintln!(
                "{} {} {} rev {} n {} charged {:?}",
                r.get::<_, i32>(0),
                r.get::<_, i16>(1),
                r.get::<_, String>(2),
                r.get::<_, i32>(3),
                r.get::<_, i64>(4),
                r.get::<_, Option<i64>>(5)
            );
        }
        eprintln!("persisted {:?}", agg.persisted());
    }
    assert!(revisions >= 2, "late usage went to new revisions");

    // ======== 24 h traffic, customer A.
    let (code, tr) = live::get_json(api, "/stats/traffic?range=24h", &ta).await;
    assert_eq!(code, 200, "{tr}");
    let h3 = point_at(&tr, h - 3 * US_PER_HOUR).expect("hour H-3");
    assert!(!h3["partial"].as_bool().unwrap());
    // requests: 3 (repeat) + 1 + 2 (dropped) + 1 + 1 (11:59:59.999) + 2 (graphql); types 7
    // and 8 are not requests.
    assert_eq!(i(h3, "requests"), 10, "{h3}");
    assert_eq!(i(h3, "billable_requests"), 8, "{h3}");
    assert_eq!(i(h3, "dropped_requests"), 2);
    assert_eq!(i(h3, "success"), 6);
    assert_eq!(i(h3, "client_errors"), 1);
    assert_eq!(i(h3, "server_errors"), 1);
    assert_eq!(i(h3, "status_2xx"), 6);
    assert_eq!(
        i(h3, "status_4xx"),
        3,
        "a dropped 429 is a request of class 4xx"
    );
    assert_eq!(i(h3, "status_5xx"), 1);
    assert_eq!(i(h3, "status_other"), 0);
    let h2 = point_at(&tr, h - 2 * US_PER_HOUR).expect("hour H-2");
    assert_eq!(
        i(h2, "requests"),
        1,
        "12:00:00.000 opens the next hour: {h2}"
    );
    // The current hour: the live row, marked partial.
    let cur = point_at(&tr, h).expect("the current hour has data");
    assert!(cur["partial"].as_bool().unwrap());
    assert_eq!(i(cur, "requests"), 1, "{cur}");
    // Completed buckets are listed even when empty; partial ones only with data.
    for p in tr["points"].as_array().unwrap() {
        if p["partial"].as_bool().unwrap() {
            assert!(i(p, "requests") > 0, "{p}");
        }
    }
    assert_eq!(sum(&tr, "requests"), 12);

    // ======== Bandwidth: repeat never multiplies bytes; type 7 billed; type 8 nowhere.
    let (_, bw) = live::get_json(api, "/stats/bandwidth?range=24h", &ta).await;
    let p = point_at(&bw, h - 3 * US_PER_HOUR).unwrap();
    assert_eq!(i(p, "total_bytes"), 300 + 50 + 20 + 1000 + 5 + 40, "{p}");
    assert_eq!(i(p, "billable_bytes"), 300 + 50 + 1000 + 5 + 40, "{p}");

    // ======== Response time: billable only (not 5000 of type 7, not 9000 of type 8),
    // weighted by repeat within a bucket and across buckets.
    let (_, rt) = live::get_json(api, "/stats/response-time?range=24h", &ta).await;
    let p = point_at(&rt, h - 3 * US_PER_HOUR).unwrap();
    assert_eq!(
        p["avg_response_time_ms"].as_f64().unwrap(),
        196.0 / 8.0,
        "{p}"
    );
    assert_eq!(
        (i(p, "min_response_time_ms"), i(p, "max_response_time_ms")),
        (8, 100)
    );
    let (_, s) = live::get_json(api, "/stats/summary", &ta).await;
    // (196 + 50 + 7) / (8 + 1 + 1), not the mean of the hourly averages (27.17).
    assert!(
        (s["avg_response_time_ms"].as_f64().unwrap() - 25.3).abs() < 1e-9,
        "{s}"
    );
    assert!(s["partial"].as_bool().unwrap());
    assert_eq!(i(&s, "requests"), 12);
    assert_eq!(i(&s, "billable_requests"), 10);
    assert_eq!(i(&s, "total_bytes"), 1415 + 6 + 70);
    // Daily points weight the same way (the day may split at midnight: compare the weighted
    // total of the 7-day series).
    let (_, rt7) = live::get_json(api, "/stats/response-time?range=7d", &ta).await;
    let (mut w, mut t) = (0i64, 0f64);
    for p in rt7["points"].as_array().unwrap() {
        let n = i(p, "billable_requests");
        if n > 0 {
            w += n;
            t += p["avg_response_time_ms"].as_f64().unwrap() * n as f64;
        }
    }
    assert_eq!(w, 10);
    assert!((t / w as f64 - 25.3).abs() < 1e-9);

    // ======== Filters.
    let (_, g) = live::get_json(api, "/stats/traffic?service=graphql", &ta).await;
    assert_eq!(sum(&g, "requests"), 2);
    let (_, tn) = live::get_json(api, "/stats/traffic?network=testnet", &ta).await;
    assert_eq!(sum(&tn, "requests"), 2);
    let (_, none) = live::get_json(api, "/stats/traffic?service=grpc&network=testnet", &ta).await;
    assert_eq!(sum(&none, "requests"), 0);
    let (code, bad) = live::get_json(api, "/stats/traffic?network=moon", &ta).await;
    assert_eq!(
        (code, bad["error"]["code"].as_str()),
        (400, Some("invalid_request"))
    );

    // ======== Customer B: its own numbers only, and no partial bucket (its current hour is
    // empty).
    let (_, tb_series) = live::get_json(api, "/stats/traffic?range=24h", &tb).await;
    assert_eq!(sum(&tb_series, "requests"), 1);
    let settled_before =
        chrono::DateTime::parse_from_rfc3339(tb_series["settled_before"].as_str().unwrap())
            .unwrap()
            .timestamp_micros();
    let pts = tb_series["points"].as_array().unwrap();
    assert!(
        pts.iter().all(|p| !p["partial"].as_bool().unwrap()),
        "{tb_series}"
    );
    let complete = (0..24)
        .filter(|k| h - (23 - k) * US_PER_HOUR + US_PER_HOUR <= settled_before)
        .count();
    assert_eq!(pts.len(), complete);

    // ======== Graph = invoice: the usage series of the billing month, summed, equals the
    // usage billing reads (usage_records, every revision) and what was sent.
    let mut graph = [(0i64, 0i64); 4];
    for svc in [GRPC, SEAL] {
        let name = if svc == GRPC { "grpc" } else { "seal" };
        let (code, u) = live::get_json(
            api,
            &format!("/stats/usage?period={period}&service={name}"),
            &tc,
        )
        .await;
        assert_eq!(code, 200, "{u}");
        let pts = u["points"].as_array().unwrap();
        assert_eq!(pts.len() as i64, m_days);
        assert!(pts.iter().all(|p| !p["partial"].as_bool().unwrap()));
        let r = c
            .query_one(
                "SELECT COALESCE(SUM(request_count), 0)::bigint, COALESCE(SUM(bytes_transferred), 0)::bigint \
                 FROM usage_records WHERE customer_id = $1 AND service_type = $2 \
                 AND window_start >= $3 AND window_start < $4",
                &[&C, &svc, &prev_month, &this_month],
            )
            .await
            .unwrap();
        let (ur, ub): (i64, i64) = (r.get(0), r.get(1));
        let (gr, gb) = (sum(&u, "billable_requests"), sum(&u, "billable_bytes"));
        assert_eq!((gr, gb), (ur, ub), "{name}: graph = usage_records");
        assert_eq!(
            (gr, gb),
            (want_req[svc as usize], want_bytes[svc as usize]),
            "{name}: graph = what was sent"
        );
        // Priced as billing prices a month (BILLING.md §3): equal quantities, equal money.
        let cents = |r: i64, b: i64| r / 100 + if svc == SEAL { 0 } else { b * 6 / (1 << 30) };
        assert_eq!(cents(gr, gb), cents(ur, ub));
        graph[svc as usize] = (gr, gb);
    }
    // ...and the invoice: the real billing cycle (issue 11's manager, `bill::bill`) bills C's
    // month from what metering settled; its usage lines for the month end at the graph's
    // totals and charge their price. Test prices make every request and KiB cost a cent (the
    // default prices would round this month's small usage to no line at all); threshold 0 puts
    // usage on the draft even when the month cannot be finalized yet (first minutes of a month).
    let prices = suiftly_billing::PriceList {
        request_cents_per_10k: 10_000,
        bandwidth_cents_per_gib: 1 << 20,
        ..Default::default()
    };
    c.execute(
        "UPDATE customers SET created_at = $2, current_month_start = $3 WHERE customer_id = $1",
        &[
            &C,
            &(prev_month - chrono::TimeDelta::days(1)),
            &prev_month.date_naive(),
        ],
    )
    .await
    .unwrap();
    let pool = suiftly_api::db::pool(&conninfo, 2).unwrap();
    let escrow = suiftly_escrow::PgMockEscrow::new(suiftly_api::db::pool(&conninfo, 2).unwrap());
    let epoch =
        match suiftly_manager::lease::try_acquire(&c, "stats-rules", Duration::from_secs(600))
            .await
            .unwrap()
        {
            suiftly_manager::lease::LeaseState::Leader { epoch, .. } => epoch,
            other => panic!("{other:?}"),
        };
    let fence = suiftly_manager::Fence {
        epoch,
        holder: "stats-rules".into(),
    };
    let cancel = CancellationToken::new();
    let watermark = suiftly_manager::bill::metering_watermark(&c).await.unwrap();
    let settings = suiftly_manager::bill::BillingSettings {
        prices: prices.clone(),
        rules: suiftly_billing::Rules {
            usage_threshold_cents: 0,
            ..Default::default()
        },
        ..Default::default()
    };
    let ctx = suiftly_manager::bill::Ctx {
        pool: &pool,
        escrow: &escrow,
        fence: &fence,
        now: Utc::now(),
        watermark,
        cancel: &cancel,
    };
    let report = suiftly_manager::bill::bill(&settings, &ctx, Some(&[C]))
        .await
        .unwrap();
    assert_eq!(report.skipped, 0, "{report:?}");
    let status: String = c
        .query_one(
            "SELECT status FROM invoices WHERE customer_id = $1 AND month = $2",
            &[&C, &prev_month.date_naive()],
        )
        .await
        .unwrap()
        .get(0);
    if watermark.is_some_and(|w| w >= this_month) {
        // Metering has passed the month's end: the invoice is final (nothing on it changes).
        assert_ne!(status, "draft");
    }
    for svc in [GRPC, SEAL] {
        let st = suiftly_billing::ServiceType::from_i16(svc).unwrap();
        let (gr, gb) = graph[svc as usize];
        let rows = c
            .query(
                "SELECT l.metric, MAX(l.quantity_after)::bigint, SUM(l.amount_cents)::bigint \
                 FROM invoice_lines l JOIN invoices i USING (invoice_id) \
                 WHERE i.customer_id = $1 AND l.service_type = $2 AND l.for_month = $3 \
                   AND l.kind IN ('usage', 'adjustment') AND i.month = $3 \
                 GROUP BY l.metric",
                &[&C, &svc, &prev_month.date_naive()],
            )
            .await
            .unwrap();
        let line = |metric: &str| {
            rows.iter()
                .find(|r| r.get::<_, &str>(0) == metric)
                .map(|r| (r.get::<_, i64>(1), r.get::<_, i64>(2)))
        };
        let want_req_cents = prices.usage_cents(st, suiftly_billing::Metric::Requests, gr);
        assert_eq!(
            line("requests"),
            Some((gr, want_req_cents)),
            "{svc}: invoice requests = graph ({status})"
        );
        let want_bw_cents = prices.usage_cents(st, suiftly_billing::Metric::Bandwidth, gb);
        if want_bw_cents == 0 {
            // Seal's bandwidth is free: billing writes no line for it.
            assert_eq!(line("bandwidth"), None, "{svc}");
        } else {
            assert_eq!(
                line("bandwidth"),
                Some((gb, want_bw_cents)),
                "{svc}: invoice bandwidth = graph ({status})"
            );
        }
    }
    // The day boundary: 23:59:59.999 of day 1 and 00:00:00.000 of day 2, once each.
    let (_, u) = live::get_json(
        api,
        &format!("/stats/usage?period={period}&service=grpc"),
        &tc,
    )
    .await;
    let day1 = point_at(&u, m0).unwrap();
    let day2 = point_at(&u, d2).unwrap();
    // Day 0 carries the month rows (d % 3 == 0) and the 23:59:59.999 row; day 1 only 00:00.
    assert_eq!(i(day2, "billable_requests"), 1, "{day2}");
    assert_eq!(i(day1, "billable_requests"), 4 + 1 + 1, "{day1}");

    // ======== Every row exactly once while settlements commit: late rows keep arriving and
    // the summary never counts one twice or loses one.
    let base = i(&s, "requests");
    let mut sent = 0i64;
    for k in 0..20 {
        f.send(&[rec(
            h - 3 * US_PER_HOUR + k * 1000,
            A,
            GRPC,
            MAINNET,
            1,
            200,
            1,
            1,
            1,
        )])
        .await;
        sent += 1;
        let mut n = 0;
        for _ in 0..600 {
            let (_, s) = live::get_json(api, "/stats/summary", &ta).await;
            n = i(&s, "requests");
            assert!(n <= base + sent, "counted twice: {n} > {}", base + sent);
            if n == base + sent {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(n, base + sent, "row {k} never counted");
    }

    api_stop.cancel();
    server.await.unwrap().unwrap();
    stop.cancel();
    feeder_task.await.unwrap();
    drop(f);
    task.await.unwrap().unwrap();
}
