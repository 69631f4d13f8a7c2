//! Settlement, audit, subscription and operator SQL against a real PostgreSQL (a throwaway
//! cluster; the test fails if it cannot start one).

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use suiftly_ingest::batch::WriteBatch;
use suiftly_ingest::writer::{Writer, WriterConfig};
use suiftly_model::Committed;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::partial::tests::rows_to_batch;
use crate::service::{self, AggregatorConfig, Recovery};
use crate::window::tests::{Row, arb_row};
use crate::window::{Persisted, WindowConfig};
use suiftly_model::time::{US_PER_HOUR, US_PER_MIN};

async fn store(w: &mut Writer, rows: &[Row]) {
    let batch = WriteBatch {
        rows: rows_to_batch(rows),
        rejected: Vec::new(),
        spool: None,
    };
    assert!(
        w.write_with_retry(&batch, &CancellationToken::new())
            .await
            .is_committed()
    );
}

/// Stores each chunk, then hands it to the aggregator as the next committed spool position
/// (what the COPY consumer does in production).
async fn feed<'a>(
    w: &mut Writer,
    tx: &mpsc::Sender<Committed>,
    chunks: impl Iterator<Item = &'a [Row]>,
    pos: &mut u64,
) {
    for chunk in chunks {
        store(w, chunk).await;
        tx.send(Committed {
            rows: rows_to_batch(chunk),
            start: *pos,
            end: *pos + 1,
        })
        .await
        .unwrap();
        *pos += 1;
    }
}

async fn wait_settled(agg: &service::Aggregator, at_least_pos: u64) {
    for _ in 0..400 {
        let p = agg.persisted();
        if p.applied_through >= at_least_pos && agg.live().1.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("aggregator did not settle: {:?}", agg.persisted());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settles_exactly_with_late_rows_and_audits_clean() {
    let pg = pgcluster::PgCluster::temporary().expect("a PostgreSQL test cluster must start");
    let conninfo = pg.connection_string();
    let mut c = crate::settle::connect(&conninfo).await.unwrap();
    suiftly_migrations::migrate(&mut c).await.unwrap();

    // Rows over the last three complete hours (out of order within batches).
    let now = suiftly_model::time::now_us();
    let base = (now - 3 * US_PER_HOUR).div_euclid(US_PER_HOUR) * US_PER_HOUR;
    let mut runner = TestRunner::deterministic();
    let rows: Vec<Row> = prop::collection::vec(arb_row(base, 170), 3000)
        .new_tree(&mut runner)
        .unwrap()
        .current();
    let (early, late) = rows.split_at(2000);
    // The first part arrives roughly in time order (shuffled within each batch), so hours
    // complete through the roll-up path; the rest arrives late.
    let mut early = early.to_vec();
    early.sort_by_key(|r| r.ts_us);

    let mut w = Writer::new(WriterConfig::new(&conninfo));
    let (tx, rx) = mpsc::channel(4);
    // Not "caught up" while the first part streams: the watermark follows the event times.
    let up = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let cfg = AggregatorConfig {
        ingestor: "default".into(),
        window: WindowConfig {
            allowed_lateness_us: 1_000_000,
            idle_lag_us: 0,
        },
        settle_interval: Duration::from_millis(50),
        subscriber_capacity: 64,
        max_backoff: Duration::from_millis(200),
    };
    // Metering starts with nothing settled before the test's first hour.
    let start_minute = base / US_PER_MIN;
    crate::settle::load_or_init(&c, "default", 0, start_minute)
        .await
        .unwrap();
    let persisted = service::load_state(&conninfo, "default", 0, &cfg.window)
        .await
        .unwrap();
    assert_eq!(
        persisted,
        Persisted {
            applied_through: 0,
            restart_position: 0,
            settled_before: start_minute,
            settlement_seq: 0,
        }
    );
    let (agg, task) = service::start(
        cfg,
        conninfo.clone(),
        Recovery {
            persisted,
            replay_to: 0,
            replay: None,
        },
        rx,
        {
            let up = up.clone();
            Arc::new(move |_| up.load(std::sync::atomic::Ordering::Relaxed))
        },
        CancellationToken::new(),
    );
    let mut sub = agg.subscribe();
    let task = tokio::spawn(task);

    // First part in 5 batches; everything is in the past, so it all settles.
    let mut pos = 0u64;
    feed(&mut w, &tx, early.chunks(400), &mut pos).await;
    up.store(true, std::sync::atomic::Ordering::Relaxed);
    wait_settled(&agg, pos).await;
    let mut hours = 0;
    let mut usage = 0;
    while let Ok(m) = sub.try_recv() {
        hours += m.completed_hours_us.len();
        usage += m.usage.len();
    }
    assert!(
        hours >= 3 && usage >= 3,
        "hours {hours}, usage rows {usage}"
    );
    // Billing charged every usage row so far: late usage must go to a new revision.
    c.execute("UPDATE usage_records SET charged_amount = 1", &[])
        .await
        .unwrap();

    // The rest arrives late: every minute and hour it touches has already settled.
    feed(&mut w, &tx, late.chunks(250), &mut pos).await;
    wait_settled(&agg, pos).await;
    let revs: i64 = c
        .query_one(
            "SELECT count(*) FROM usage_records WHERE revision > 0 AND charged_amount IS NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        revs > 0,
        "late usage for charged hours lands in new revisions"
    );

    // Operator SQL over the same state: settled totals equal what was sent, a write is refused.
    let ctx = crate::sql::context(Some(agg.clone()), &conninfo)
        .await
        .unwrap();
    let total: i64 = rows.iter().map(|r| r.repeat as i64).sum();
    let b = crate::sql::query(
        &ctx,
        "SELECT (SELECT sum(request_count) FROM infra_per_min) + \
                (SELECT coalesce(sum(request_count), 0) FROM live_infra_per_min) AS n",
    )
    .await
    .unwrap();
    let got = b[0]
        .column(0)
        .as_any()
        .downcast_ref::<arrow_array::Int64Array>()
        .unwrap()
        .value(0);
    assert_eq!(got, total);
    let raw = crate::sql::query(&ctx, "SELECT count(*) FROM haproxy_raw_logs").await;
    assert!(
        matches!(&raw, Err(crate::sql::SqlError::Query(m)) if m.contains("needs a time range")),
        "{raw:?}"
    );
    let ok = crate::sql::query(
        &ctx,
        "SELECT count(*) AS n FROM haproxy_raw_logs WHERE timestamp >= now() - interval '1 day' AND timestamp < now()",
    )
    .await
    .unwrap();
    assert_eq!(ok[0].num_rows(), 1);
    let w = crate::sql::query(
        &ctx,
        "INSERT INTO stats_per_min SELECT * FROM stats_per_min",
    )
    .await;
    assert!(matches!(w, Err(crate::sql::SqlError::ReadOnly(_))), "{w:?}");
    let w = crate::sql::query(&ctx, "CREATE TABLE x AS SELECT 1").await;
    assert!(matches!(w, Err(crate::sql::SqlError::ReadOnly(_))), "{w:?}");

    // The audit recomputes everything from the raw rows: zero differences.
    let report = crate::audit::audit(
        &c,
        crate::settle::us_to_time(base - US_PER_HOUR),
        crate::settle::us_to_time(now + US_PER_HOUR),
    )
    .await
    .unwrap();
    for t in &report.tables {
        assert_eq!(t.differences, 0, "{}: {:?}", t.table, t.examples);
    }
    let by = |n: &str| {
        report
            .tables
            .iter()
            .find(|t| t.table == n)
            .unwrap()
            .compared
    };
    assert!(by("stats_per_min") > 100 && by("stats_per_hour") > 3 && by("usage_records") > 3);

    // A tampered settled row is reported.
    c.execute(
        "UPDATE stats_per_hour SET billable_requests = billable_requests + 1 \
         WHERE ctid = (SELECT ctid FROM stats_per_hour LIMIT 1)",
        &[],
    )
    .await
    .unwrap();
    let report = crate::audit::audit(
        &c,
        crate::settle::us_to_time(base - US_PER_HOUR),
        crate::settle::us_to_time(now + US_PER_HOUR),
    )
    .await
    .unwrap();
    assert_eq!(report.differences(), 1);

    drop(tx);
    task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subscriber_is_told_it_lagged() {
    let pg = pgcluster::PgCluster::temporary().expect("a PostgreSQL test cluster must start");
    let conninfo = pg.connection_string();
    let mut c = crate::settle::connect(&conninfo).await.unwrap();
    suiftly_migrations::migrate(&mut c).await.unwrap();
    let now = suiftly_model::time::now_us();
    let start_minute = (now - 30 * US_PER_MIN).div_euclid(US_PER_MIN);
    crate::settle::load_or_init(&c, "default", 0, start_minute)
        .await
        .unwrap();
    let cfg = AggregatorConfig {
        ingestor: "default".into(),
        window: WindowConfig {
            allowed_lateness_us: 0,
            idle_lag_us: 0,
        },
        settle_interval: Duration::from_millis(20),
        subscriber_capacity: 1,
        max_backoff: Duration::from_millis(100),
    };
    let persisted = service::load_state(&conninfo, "default", 0, &cfg.window)
        .await
        .unwrap();
    let (tx, rx) = mpsc::channel(4);
    let (agg, task) = service::start(
        cfg,
        conninfo,
        Recovery {
            persisted,
            replay_to: 0,
            replay: None,
        },
        rx,
        Arc::new(|_| true),
        CancellationToken::new(),
    );
    let mut sub = agg.subscribe();
    let task = tokio::spawn(task);
    // Several settlements (the clock-driven watermark settles a minute at a time as rows for
    // old minutes arrive late), none read meanwhile.
    let mut runner = TestRunner::deterministic();
    for i in 0..5u64 {
        let rows: Vec<Row> =
            prop::collection::vec(arb_row(start_minute * US_PER_MIN - 10 * US_PER_MIN, 5), 20)
                .new_tree(&mut runner)
                .unwrap()
                .current();
        tx.send(Committed {
            rows: rows_to_batch(&rows),
            start: i,
            end: i + 1,
        })
        .await
        .unwrap();
        wait_settled(&agg, i + 1).await;
    }
    match sub.recv().await {
        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => assert!(n >= 1),
        other => panic!("expected Lagged, got {other:?}"),
    }
    drop(tx);
    task.await.unwrap().unwrap();
}

/// The PostgreSQL-protocol front-end: SCRAM with the operator token, both query protocols,
/// every write refused (and the shared context left intact), `pg_catalog` for client tools,
/// the session limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgwire_serves_the_operator_context_read_only() {
    use tokio_postgres::error::SqlState;

    let pg = pgcluster::PgCluster::temporary().expect("a PostgreSQL test cluster must start");
    let conninfo = pg.connection_string();
    let mut c = crate::settle::connect(&conninfo).await.unwrap();
    suiftly_migrations::migrate(&mut c).await.unwrap();
    c.batch_execute(
        "INSERT INTO usage_records (customer_id, service_type, window_start, window_end, request_count, bytes_transferred) \
         SELECT 7 + (h % 2), 1, ts, ts + interval '1 hour', 100 * h, 1000 * h \
         FROM generate_series(1, 10) h, LATERAL (SELECT date_trunc('hour', now()) - h * interval '1 hour' AS ts) t",
    )
    .await
    .unwrap();
    // customer 7: h = 2,4,6,8,10 → 3000 requests; customer 8: h = 1,3,5,7,9 → 2500.

    let ctx = crate::sql::context(None, &conninfo).await.unwrap();
    crate::pgwire::prepare_context(&ctx).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let stop = CancellationToken::new();
    let server = tokio::spawn(crate::pgwire::serve(
        listener,
        ctx,
        crate::pgwire::PgWireOptions {
            token: "s3cret-operator-token".into(),
            max_connections: 2,
            throttle: Default::default(),
        },
        stop.clone(),
    ));
    let connect = |password: &str| {
        let conn = format!(
            "host=127.0.0.1 port={port} user=operator dbname=suiftly password={password} sslmode=disable"
        );
        async move {
            let (client, connection) =
                tokio_postgres::connect(&conn, tokio_postgres::NoTls).await?;
            tokio::spawn(connection);
            Ok::<_, tokio_postgres::Error>(client)
        }
    };

    // Wrong password: refused during the SCRAM exchange.
    let bad = connect("wrong").await;
    assert!(bad.is_err(), "a wrong token must not log in");

    let client = connect("s3cret-operator-token").await.unwrap();
    // Extended protocol with a typed parameter.
    let row = client
        .query_one(
            "SELECT sum(request_count) AS n FROM usage_records WHERE customer_id = $1",
            &[&7i32],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>("n"), 3000);
    // Simple protocol (psql's), grouped.
    let msgs = client
        .simple_query(
            "SELECT customer_id, sum(request_count) AS n FROM usage_records GROUP BY customer_id ORDER BY customer_id",
        )
        .await
        .unwrap();
    let rows: Vec<(String, String)> = msgs
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                Some((r.get(0).unwrap().to_owned(), r.get(1).unwrap().to_owned()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        rows,
        vec![("7".into(), "3000".into()), ("8".into(), "2500".into())]
    );
    // The raw logs still need a time range.
    let e = client
        .simple_query("SELECT count(*) FROM haproxy_raw_logs")
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("time range") || format!("{e:?}").contains("time range"),
        "{e:?}"
    );

    // Writes are refused with SQLSTATE 25006, over both protocols.
    for sql in [
        "INSERT INTO usage_records (customer_id) VALUES (1)",
        "DELETE FROM usage_records",
        "CREATE TABLE x AS SELECT 1",
        "DROP TABLE usage_records",
        "SET datafusion.execution.batch_size = 1",
    ] {
        let e = client.simple_query(sql).await.unwrap_err();
        assert_eq!(
            e.code(),
            Some(&SqlState::READ_ONLY_SQL_TRANSACTION),
            "{sql}: {e:?}"
        );
        if !sql.starts_with("SET") {
            let e = client.execute(sql, &[]).await.unwrap_err();
            assert_eq!(
                e.code(),
                Some(&SqlState::READ_ONLY_SQL_TRANSACTION),
                "{sql} (extended): {e:?}"
            );
        }
    }
    // …and the shared context is intact: the table is still there, with its rows.
    let row = client
        .query_one("SELECT count(*) AS n FROM usage_records", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>("n"), 10);
    // Client chatter is answered.
    client
        .simple_query("SET application_name = 'test'")
        .await
        .unwrap();
    client.simple_query("BEGIN").await.unwrap();
    client.simple_query("COMMIT").await.unwrap();
    // pg_catalog (what psql's \d and schema browsers read) lists our tables.
    let msgs = client
        .simple_query("SELECT relname FROM pg_catalog.pg_class WHERE relname = 'usage_records'")
        .await
        .unwrap();
    assert!(
        msgs.iter()
            .any(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_))),
        "pg_class must list usage_records"
    );

    // Session limit: two are open (client + this one), a third is closed at once.
    let second = connect("s3cret-operator-token").await.unwrap();
    let third = connect("s3cret-operator-token").await;
    assert!(third.is_err(), "a third session must be refused");
    drop(second);

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the server stops when asked")
        .unwrap();
    assert!(
        client.simple_query("SELECT 1").await.is_err(),
        "sessions end with the server"
    );
}

/// Issue 15 item 4: a strict `<` upper bound with a sub-microsecond part was floored to the
/// microsecond before it was pushed to PostgreSQL, so the row at exactly that microsecond was
/// dropped although it satisfies the bound. Every operator must keep the rows DataFusion's
/// own filter keeps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_down_time_bounds_keep_the_boundary_rows() {
    let pg = pgcluster::PgCluster::temporary().expect("a PostgreSQL test cluster must start");
    let conninfo = pg.connection_string();
    let mut c = crate::settle::connect(&conninfo).await.unwrap();
    suiftly_migrations::migrate(&mut c).await.unwrap();
    // One row at exactly 2026-11-26T00:00:00.000001Z.
    c.batch_execute(
        "INSERT INTO usage_records (customer_id, service_type, window_start, window_end, request_count, bytes_transferred) \
         VALUES (7, 1, '2026-11-26T00:00:00.000001Z', '2026-11-26T01:00:00Z', 1, 1)",
    )
    .await
    .unwrap();
    let ctx = crate::sql::context(None, &conninfo).await.unwrap();
    let count = |sql: String| {
        let ctx = &ctx;
        async move {
            let b = crate::sql::query(ctx, &sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            b[0].column(0)
                .as_any()
                .downcast_ref::<arrow_array::Int64Array>()
                .unwrap()
                .value(0)
        }
    };
    // The same predicates over the same instant held in memory (no pushdown): what
    // DataFusion's own filter keeps.
    let mem = "(SELECT arrow_cast('2026-11-26T00:00:00.000001Z', 'Timestamp(Microsecond, Some(\"UTC\"))') AS window_start)";
    let lits = [
        "arrow_cast('{t}', 'Timestamp(Nanosecond, Some(\"UTC\"))')",
        "arrow_cast('{t}', 'Timestamp(Nanosecond, None)')",
        "to_timestamp('{t}')",
        "to_timestamp_nanos('{t}')",
        "'{t}'",
        "TIMESTAMP '{t}'",
        "CAST('{t}' AS TIMESTAMP)",
    ];
    let instants = [
        "2026-11-26T00:00:00.0000005Z",
        "2026-11-26T00:00:00.000001Z",
        "2026-11-26T00:00:00.0000015Z",
        "2026-11-26T00:00:00.0000019Z",
    ];
    let mut checked = 0;
    for lit in lits {
        for t in instants {
            let l = lit.replace("{t}", t);
            for op in ["<", "<=", ">", ">=", "="] {
                for cond in [
                    format!("window_start {op} {l}"),
                    format!("{l} {op} window_start"),
                ] {
                    let want = count(format!("SELECT count(*) AS n FROM {mem} WHERE {cond}")).await;
                    let got = count(format!(
                        "SELECT count(*) AS n FROM usage_records WHERE {cond}"
                    ))
                    .await;
                    assert_eq!(got, want, "pushed down vs in memory: {cond}");
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, lits.len() * instants.len() * 10);
}

/// The live tail's side of settlement (issue 13): every commit gets the next sequence number,
/// its `SettledWindow` carries what it added as customers see it, `settlement_minutes` holds
/// the same rows (the SQL rules equal the Rust rules of `suiftly_model::live`), and the V24
/// columns of `stats_per_hour` agree with the same rules per hour; the unsettled part read
/// through `live_state` equals the brute-force fold of the rows not yet settled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settled_events_and_customer_numbers_follow_the_rules() {
    use std::collections::BTreeMap;
    use suiftly_model::{MinuteKey, Numbers};

    let pg = pgcluster::PgCluster::temporary().expect("a PostgreSQL test cluster must start");
    let conninfo = pg.connection_string();
    let mut c = crate::settle::connect(&conninfo).await.unwrap();
    suiftly_migrations::migrate(&mut c).await.unwrap();
    let now = suiftly_model::time::now_us();
    let base = (now - 3 * US_PER_HOUR).div_euclid(US_PER_HOUR) * US_PER_HOUR;
    let mut runner = TestRunner::deterministic();
    let mut rows: Vec<Row> = prop::collection::vec(arb_row(base, 150), 1500)
        .new_tree(&mut runner)
        .unwrap()
        .current();
    rows.sort_by_key(|r| r.ts_us);
    let cfg = AggregatorConfig {
        ingestor: "default".into(),
        window: WindowConfig {
            allowed_lateness_us: 1_000_000,
            idle_lag_us: 0,
        },
        settle_interval: Duration::from_millis(30),
        subscriber_capacity: 100_000,
        max_backoff: Duration::from_millis(200),
    };
    crate::settle::load_or_init(&c, "default", 0, base / US_PER_MIN)
        .await
        .unwrap();
    let persisted = service::load_state(&conninfo, "default", 0, &cfg.window)
        .await
        .unwrap();
    let mut w = Writer::new(WriterConfig::new(&conninfo));
    let (tx, rx) = mpsc::channel(4);
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
    let mut sub = agg.subscribe();
    let task = tokio::spawn(task);
    // Chunk by chunk, each settled before the next: the later chunks are late rows for
    // settled minutes (deltas), so there are several settlements whatever the timing.
    let mut pos = 0u64;
    for chunk in rows.chunks(300) {
        feed(&mut w, &tx, std::iter::once(chunk), &mut pos).await;
        wait_settled(&agg, pos).await;
    }

    // Sequence numbers: 1, 2, 3, … with a settlement_log row each.
    let mut from_messages: BTreeMap<MinuteKey, Numbers> = BTreeMap::new();
    let mut seqs = Vec::new();
    while let Ok(m) = sub.try_recv() {
        seqs.push(m.seq);
        for (k, v) in &m.minutes {
            from_messages.entry(*k).or_default().merge(v);
        }
    }
    assert!(seqs.len() >= 5, "{seqs:?}");
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    let logged: Vec<i64> = c
        .query("SELECT seq FROM settlement_log ORDER BY seq", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(logged, (1..=seqs.len() as i64).collect::<Vec<_>>());
    assert_eq!(agg.persisted().settlement_seq, seqs.len() as u64);

    // What the messages carried = the brute-force fold of every row (Rust rules).
    let expect: BTreeMap<MinuteKey, Numbers> =
        crate::live::customer_minutes(&crate::window::tests::brute_force(&rows).cust)
            .into_iter()
            .collect();
    assert_eq!(from_messages, expect);

    // settlement_minutes (SQL rules) = the same.
    let db = c
        .query(
            &format!(
                "SELECT customer_id, (extract(epoch FROM bucket) / 60)::bigint, service_type, network, \
                 {} FROM settlement_minutes",
                suiftly_model::live::NUMBERS_COLUMNS
            ),
            &[],
        )
        .await
        .unwrap();
    let mut from_db: BTreeMap<MinuteKey, Numbers> = BTreeMap::new();
    for r in &db {
        let k = MinuteKey {
            customer_id: r.get(0),
            minute: r.get(1),
            service_type: r.get(2),
            network: r.get(3),
        };
        let n = Numbers {
            requests: r.get(4),
            billable_requests: r.get(5),
            dropped_requests: r.get(6),
            success: r.get(7),
            client_errors: r.get(8),
            server_errors: r.get(9),
            status_2xx: r.get(10),
            status_3xx: r.get(11),
            status_4xx: r.get(12),
            status_5xx: r.get(13),
            total_bytes: r.get(14),
            billable_bytes: r.get(15),
            response_time_sum_ms: r.get(16),
            min_response_time_ms: r.get(17),
            max_response_time_ms: r.get(18),
        };
        from_db.entry(k).or_default().merge(&n);
    }
    assert_eq!(from_db, expect);

    // stats_per_hour's V24 columns per completed hour = the Rust rules rolled up to hours.
    let mut hourly: BTreeMap<(i64, i32, i16, i16), Numbers> = BTreeMap::new();
    for (k, v) in &expect {
        let hour = k.minute.div_euclid(60) * 60;
        hourly
            .entry((hour, k.customer_id, k.service_type, k.network))
            .or_default()
            .merge(v);
    }
    let settled_hour = agg.persisted().settled_before.div_euclid(60) * 60;
    let db = c
        .query(
            "SELECT (extract(epoch FROM bucket) / 60)::bigint, customer_id, service_type, network, \
                billable_requests + dropped_count, billable_requests, dropped_count, \
                guaranteed_success_count + burst_success_count, billable_client_error_count, \
                billable_server_error_count, status_2xx_count, status_3xx_count, status_4xx_count, \
                status_5xx_count, total_bytes, billable_bytes, response_time_sum_ms, \
                min_response_time_ms, max_response_time_ms FROM stats_per_hour",
            &[],
        )
        .await
        .unwrap();
    let mut compared = 0;
    for r in &db {
        let key = (r.get::<_, i64>(0), r.get(1), r.get(2), r.get(3));
        assert!(key.0 < settled_hour);
        let got = Numbers {
            requests: r.get(4),
            billable_requests: r.get(5),
            dropped_requests: r.get(6),
            success: r.get(7),
            client_errors: r.get(8),
            server_errors: r.get(9),
            status_2xx: r.get(10),
            status_3xx: r.get(11),
            status_4xx: r.get(12),
            status_5xx: r.get(13),
            total_bytes: r.get(14),
            billable_bytes: r.get(15),
            response_time_sum_ms: r.get(16),
            min_response_time_ms: r.get(17),
            max_response_time_ms: r.get(18),
        };
        assert_eq!(Some(&got), hourly.get(&key), "{key:?}");
        compared += 1;
    }
    assert_eq!(
        compared,
        hourly.keys().filter(|k| k.0 < settled_hour).count()
    );
    assert!(compared > 10);

    // Rows five minutes ahead stay open (the watermark never runs ahead of the clock):
    // live_state shows exactly them, relative to the last committed sequence.
    let ahead = now + 5 * US_PER_MIN;
    let live_rows: Vec<Row> = prop::collection::vec(arb_row(ahead, 1), 200)
        .new_tree(&mut runner)
        .unwrap()
        .current();
    feed(&mut w, &tx, std::iter::once(&live_rows[..]), &mut pos).await;
    for _ in 0..400 {
        if agg.input_position() == pos {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let st = agg.live_state();
    let expect_live =
        crate::live::customer_minutes(&crate::window::tests::brute_force(&live_rows).cust);
    assert!(!expect_live.is_empty());
    assert_eq!(st.rows, expect_live);
    // A settlement may be moving an empty minute at this instant: it carries none of them.
    assert!(st.inflight.as_ref().is_none_or(|(_, r)| r.is_empty()));
    assert!(st.committed_seq <= agg.persisted().settlement_seq);
    assert_eq!(st.rows_beyond(st.base_seq()), Some(expect_live));
    drop(tx);
    task.await.unwrap().unwrap();
}
