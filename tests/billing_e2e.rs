//! A month of metered traffic through the real pipeline, billed: `sf1` lines over UDP →
//! `suiftly run` (spool, COPY, the real aggregator settling into `usage_records`, and the
//! manager stage) → invoices and escrow charges; then the clock jumps past the month's end,
//! the month is finalized, and the invoice equals the price recomputed from the raw rows;
//! `suiftly audit billing` compares usage with `haproxy_raw_logs` and finds nothing.
//!
//! Traffic is timestamped in the last completed hours (rows older than the settled boundary are
//! late rows the aggregator merges into completed hours, exactly once), so the test does not
//! wait for an hour to end. Waits are bounded and generous (shared machine).

mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, TimeZone, Timelike, Utc};
use pgcluster::PgCluster;
use tokio_postgres::{Client, NoTls};

async fn connect(conninfo: &str) -> Client {
    let (c, conn) = tokio_postgres::connect(conninfo, NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test postgresql: {e}"));
    tokio::spawn(conn);
    c
}

async fn i64_of(db: &Client, sql: &str) -> i64 {
    db.query_one(sql, &[]).await.unwrap().get(0)
}

fn month_start(t: DateTime<Utc>) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(t.year(), t.month(), 1, 0, 0, 0)
        .unwrap()
}

fn next_month(t: DateTime<Utc>) -> DateTime<Utc> {
    let m = month_start(t);
    if m.month() == 12 {
        Utc.with_ymd_and_hms(m.year() + 1, 1, 1, 0, 0, 0).unwrap()
    } else {
        Utc.with_ymd_and_hms(m.year(), m.month() + 1, 1, 0, 0, 0)
            .unwrap()
    }
}

fn rnd(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

#[tokio::test(flavor = "multi_thread")]
async fn a_month_of_metered_traffic_is_invoiced_as_recomputed_from_raw_logs() {
    let pg = PgCluster::temporary().unwrap_or_else(|e| panic!("cannot start postgresql: {e}"));
    let conninfo = pg.connection_string();
    let db = connect(&conninfo).await;
    let dir = tempfile::tempdir().unwrap();
    let (udp, metrics, admin) = (
        common::free_port(),
        common::free_port(),
        common::free_port(),
    );
    let cfg = dir.path().join("suiftly.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = \"{}\"\n[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n\
             [admin]\nlisten = \"127.0.0.1:{admin}\"\n\
             [batch]\nmax_rows = 500\nmax_age_ms = 50\n\
             [aggregate]\nenabled = true\nallowed_lateness_ms = 1000\nidle_lag_ms = 500\nsettle_interval_ms = 100\n\
             [manager]\nwatermark = \"clock\"\nclock_lateness_ms = 60000\ncycle_interval_ms = 1000\n\
             lease_ms = 3000\nrenew_interval_ms = 500\nidle_in_transaction_ms = 1500\n\
             usage_threshold_cents = 50\npending_intent_age_ms = 0\n\
             [[listener]]\nname = \"u\"\nframing = \"raw\"\npayload = \"sf1\"\nkind = \"udp\"\naddress = \"127.0.0.1:{udp}\"\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let mut s = common::Suiftly::new(cfg, conninfo.clone(), metrics, admin);
    s.start();

    // The last completed hours, within one month.
    let now = Utc::now();
    let hour = Utc
        .with_ymd_and_hms(now.year(), now.month(), now.day(), now.hour(), 0, 0)
        .unwrap();
    let to = hour - chrono::Duration::seconds(60);
    let from = (to - chrono::Duration::hours(3)).max(month_start(to));
    let month = month_start(to);
    let label = format!("{:04}-{:02}", month.year(), month.month());

    // Three customers with 10,000.00 in the escrow and grpc pro from the month's start.
    db.batch_execute(&format!(
        "INSERT INTO customers (customer_id, wallet_address, created_at, current_month_start, current_balance_usd_cents)
         SELECT i, '0x' || lpad(to_hex(i), 64, '0'), '{m}', '{m}', 1000000 FROM generate_series(1, 3) i;
         INSERT INTO mock_escrow_accounts (account, balance_cents) SELECT i, 1000000 FROM generate_series(1, 3) i;
         INSERT INTO mock_escrow_transactions (digest, account, kind, amount_cents, balance_after_cents, nonce)
         SELECT '0xseed' || i, i, 'deposit', 1000000, 1000000, 'api:seed' FROM generate_series(1, 3) i;
         INSERT INTO escrow_intents (customer_id, kind, amount_cents, nonce, state, tx_digest, balance_after_cents, completed_at)
         SELECT i, 'deposit', 1000000, 'api:seed', 'succeeded', '0xseed' || i, 1000000, now() FROM generate_series(1, 3) i;
         INSERT INTO escrow_transactions (customer_id, tx_digest, kind, amount_usd_cents, balance_after_cents, nonce, intent_id)
         SELECT customer_id, tx_digest, 'deposit', amount_cents, balance_after_cents, nonce, intent_id FROM escrow_intents;
         INSERT INTO service_events (customer_id, service_type, at, is_enabled, config, source)
         SELECT i, 2, '{m}', true,
                '{{\"tier\":\"pro\",\"burst\":false,\"extra_api_keys\":0,\"extra_seal_keys\":0,\"extra_packages\":0}}', 'api'
         FROM generate_series(1, 3) i;",
        m = month.to_rfc3339()
    ))
    .await
    .unwrap();

    // Traffic: customers 1–3 (and some unauthenticated lines), every traffic type, grpc.
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (from_ms, to_ms) = (from.timestamp_millis() as u64, to.timestamp_millis() as u64);
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let n = 12_000u64;
    for seq in 0..n {
        let ts = from_ms + rnd(&mut seed) % (to_ms - from_ms);
        let cust = match rnd(&mut seed) % 4 {
            0 => "-".to_string(),
            c => c.to_string(),
        };
        let tt = 1 + rnd(&mut seed) % 8;
        let bytes = rnd(&mut seed) % 400_000;
        let line = format!(
            "sf1 {}.{:03} fe 1 17 2 2 {cust} - {seq} - {tt} 0 10.1.2.3 200 {bytes} 0 0 1 2 30 1 -- /v1",
            ts / 1000,
            ts % 1000
        );
        sock.send_to(line.as_bytes(), ("127.0.0.1", udp)).unwrap();
        if seq % 200 == 199 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    // Stored and metered: usage_month_totals (kept by the trigger on usage_records) equals the
    // billable traffic recomputed from the raw rows.
    let raw_sql = format!(
        "SELECT COALESCE(SUM(repeat) FILTER (WHERE traffic_type IN (1, 2)), 0)::bigint
         FROM haproxy_raw_logs WHERE customer_id IN (1, 2, 3) AND timestamp >= '{}' AND timestamp < '{}'",
        month.to_rfc3339(),
        next_month(month).to_rfc3339()
    );
    let t0 = Instant::now();
    loop {
        let stored = i64_of(&db, "SELECT count(*) FROM haproxy_raw_logs").await;
        let raw = i64_of(&db, &raw_sql).await;
        let metered = i64_of(
            &db,
            "SELECT COALESCE(SUM(requests), 0)::bigint FROM usage_month_totals WHERE customer_id IN (1, 2, 3)",
        )
        .await;
        if stored as u64 >= n * 95 / 100 && raw > 0 && raw == metered {
            // Quiet for a moment: nothing else arrives.
            tokio::time::sleep(Duration::from_secs(2)).await;
            if i64_of(&db, "SELECT count(*) FROM haproxy_raw_logs").await == stored
                && i64_of(&db, &raw_sql).await == raw
            {
                break;
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(240),
            "not metered: stored {stored} of {n}, billable raw {raw}, usage_month_totals {metered}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // The month passes (the manager's clock), the manager finalizes and charges it.
    let after = next_month(month) + chrono::Duration::hours(2);
    db.execute(
        "UPDATE manager_clock SET offset_ms = (extract(epoch FROM $1::timestamptz - now()) * 1000)::bigint",
        &[&after],
    )
    .await
    .unwrap();
    let t0 = Instant::now();
    while i64_of(
        &db,
        &format!(
            "SELECT count(*) FROM invoices WHERE month = '{}' AND status = 'paid'",
            month.date_naive()
        ),
    )
    .await
        < 3
        || i64_of(
            &db,
            "SELECT count(*) FROM escrow_intents WHERE state = 'pending'",
        )
        .await
            > 0
    {
        assert!(
            t0.elapsed() < Duration::from_secs(240),
            "the month was not finalized and paid"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (code, status) = common::http(admin, "GET", "/manager/status", None, None);
    assert_eq!(code, 200, "{status}");
    assert!(status.contains("\"leader\":true"), "{status}");
    s.stop();

    // Each invoice = the fee + the price of the raw rows (never of hourly records).
    for c in 1..=3i32 {
        let r = db
            .query_one(
                &format!(
                    "SELECT COALESCE(SUM(repeat) FILTER (WHERE traffic_type IN (1, 2)), 0)::bigint,
                            COALESCE(SUM(bytes_sent) FILTER (WHERE traffic_type IN (1, 2, 7)), 0)::bigint
                     FROM haproxy_raw_logs WHERE customer_id = $1 AND timestamp >= '{}' AND timestamp < '{}'",
                    month.to_rfc3339(),
                    next_month(month).to_rfc3339()
                ),
                &[&c],
            )
            .await
            .unwrap();
        let (req, bytes): (i64, i64) = (r.get(0), r.get(1));
        let expected = 4000 + req / 100 + bytes * 6 / (1 << 30);
        let (total, paid): (i64, i64) = {
            let r = db
                .query_one(
                    "SELECT total_cents, paid_cents FROM invoices WHERE customer_id = $1 AND month = $2",
                    &[&c, &month.date_naive()],
                )
                .await
                .unwrap();
            (r.get(0), r.get(1))
        };
        assert_eq!((total, paid), (expected, expected), "customer {c}");
    }
    let out = s.command(&["audit", "billing", "--month", &label]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    assert!(out.status.success(), "{text}");
    assert!(text.contains("raw logs compared over"), "{text}");
    assert!(text.contains("0 differences"), "{text}");
}
