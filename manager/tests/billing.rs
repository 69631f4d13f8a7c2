//! The billing cycle against a real PostgreSQL, with the mock clock (the cycle's `now`) and the
//! persistent escrow mock.

mod support;

use chrono::{Duration, TimeDelta};
use suiftly_billing::{Escrow, Month, PriceList, ServiceType};
use suiftly_escrow::PgMockEscrow;
use suiftly_manager::audit::audit_billing;
use suiftly_manager::bill::BillingSettings;
use support::*;

const GRPC: i16 = 2;
const SEAL: i16 = 1;

struct Env {
    conninfo: String,
    db: tokio_postgres::Client,
    pool: deadpool_postgres::Pool,
    escrow: PgMockEscrow,
    settings: BillingSettings,
}

async fn env() -> Env {
    let conninfo = fresh_database().await;
    Env {
        conninfo: conninfo.clone(),
        db: connect(&conninfo).await,
        pool: pool(&conninfo, 4),
        escrow: PgMockEscrow::new(pool(&conninfo, 4)),
        settings: BillingSettings::default(),
    }
}

/// Raw log rows for the audit's independent recomputation (one row per request group).
async fn raw_partition(db: &tokio_postgres::Client, month: Month) {
    db.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS raw_{m} PARTITION OF haproxy_raw_logs FOR VALUES FROM ('{a}') TO ('{b}')",
        m = month.to_string().replace('-', "_"),
        a = month.start().to_rfc3339(),
        b = month.end().to_rfc3339()
    ))
    .await
    .unwrap();
}

async fn raw(
    db: &tokio_postgres::Client,
    id: i32,
    service: i16,
    at: chrono::DateTime<chrono::Utc>,
    traffic_type: i16,
    repeat: i32,
    bytes: i64,
) {
    db.execute(
        "INSERT INTO haproxy_raw_logs (timestamp, customer_id, network, server_id, service_type, api_key_fp,
             fe_type, traffic_type, event_type, client_ip, status_code, bytes_sent, time_total, repeat)
         VALUES ($1, $2, 1, 17, $3, 0, 1, $4, 0, '127.0.0.1', 200, $5, 1, $6)",
        &[&at, &id, &service, &traffic_type, &bytes, &repeat],
    )
    .await
    .unwrap();
}

/// BILLING.md §9 through PostgreSQL: grpc pro from 16 Nov, a month of hourly usage settling an
/// hour behind the clock (with late revisions), cycles every 3 hours; the invoice equals the
/// recomputation from usage_records and from the raw logs, and the audit finds nothing.
#[tokio::test]
async fn a_month_of_usage_invoice_equals_recomputation() {
    let e = env().await;
    let nov = Month::new(2026, 11);
    customer_at(&e.db, 11, t(2026, 11, 2, 0), 200_000).await;
    let mut c = connect(&e.conninfo).await;
    deposit(&mut c, &e.escrow, 11, 20_000, "d1").await;
    service(&e.db, 11, GRPC, t(2026, 11, 16, 9), true, "pro", None).await;
    raw_partition(&e.db, nov).await;
    let fence = lead(&e.db, "test").await;

    let mut now = t(2026, 11, 16, 10);
    let r = cycle(&e.pool, &e.escrow, &fence, &e.settings, now, Some(now)).await;
    assert_eq!(r.charged_cents, 2000);
    let (mut total_r, mut total_b) = (0i64, 0i64);
    let mut h = t(2026, 11, 16, 9);
    while h < t(2026, 12, 1, 0) {
        // Every hour: a few request groups of assorted billable and unbillable types.
        let n = h.timestamp() / 3600 % 11;
        let (req, bytes) = (3_400 + n * 7, 10_000_000 + n * 1_234_567);
        usage(&e.db, 11, GRPC, h, req, bytes).await;
        raw(
            &e.db,
            11,
            GRPC,
            h + Duration::minutes(5),
            1,
            (req - 100) as i32,
            bytes - 1000,
        )
        .await;
        raw(&e.db, 11, GRPC, h + Duration::minutes(6), 2, 100, 1000).await;
        raw(&e.db, 11, GRPC, h + Duration::minutes(7), 3, 55, 777).await; // denied: not billable
        total_r += req;
        total_b += bytes;
        h += Duration::hours(1);
        if h.timestamp() % (3 * 3600) == 0 && h < t(2026, 12, 1, 0) {
            now = h + Duration::minutes(1);
            cycle(&e.pool, &e.escrow, &fence, &e.settings, now, Some(h)).await;
        }
    }
    // Late: more requests for an hour that already settled (merged in place), and a new
    // revision after it was billed.
    usage(&e.db, 11, GRPC, t(2026, 11, 20, 3), 1_000, 0).await;
    raw(
        &e.db,
        11,
        GRPC,
        t(2026, 11, 20, 3) + Duration::minutes(50),
        1,
        1_000,
        0,
    )
    .await;
    total_r += 1_000;
    // 1 Dec: rollover; then the watermark passes the month's end: finalized.
    now = t(2026, 12, 1, 0) + Duration::minutes(2);
    cycle(
        &e.pool,
        &e.escrow,
        &fence,
        &e.settings,
        now,
        Some(t(2026, 11, 30, 23)),
    )
    .await;
    let status = one_str(
        &e.db,
        "SELECT status FROM invoices WHERE customer_id = 11 AND month = '2026-11-01'",
    )
    .await;
    assert_eq!(status.as_deref(), Some("draft"));
    now = t(2026, 12, 1, 1);
    cycle(
        &e.pool,
        &e.escrow,
        &fence,
        &e.settings,
        now,
        Some(t(2026, 12, 1, 0)),
    )
    .await;

    let p = PriceList::default();
    let expected = 2000 + p.request_cents(total_r) + p.bandwidth_cents(ServiceType::Grpc, total_b);
    let (st, total, paid): (String, i64, i64) = {
        let r = e
            .db
            .query_one(
                "SELECT status, total_cents, paid_cents FROM invoices WHERE customer_id = 11 AND month = '2026-11-01'",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1), r.get(2))
    };
    assert_eq!((st.as_str(), total, paid), ("paid", expected, expected));
    // Recomputed in SQL from usage_records.
    let sql_total = one_i64(
        &e.db,
        "SELECT (2000 + floor(SUM(request_count) * 100 / 10000) + floor(SUM(bytes_transferred) * 6 / 1073741824))::bigint
         FROM usage_records WHERE customer_id = 11 AND window_start >= '2026-11-01' AND window_start < '2026-12-01'",
    )
    .await;
    assert_eq!(total, sql_total);
    // Usage was charged in steps during the month, not only at the end.
    let usage_lines = one_i64(
        &e.db,
        "SELECT count(*) FROM invoice_lines WHERE kind = 'usage' AND metric = 'requests'",
    )
    .await;
    assert!(usage_lines > 5, "{usage_lines}");
    let charges = one_i64(
        &e.db,
        "SELECT count(*) FROM escrow_transactions WHERE kind = 'charge'",
    )
    .await;
    assert!(charges > 5);
    // December's draft holds December's fee, charged.
    let dec = one_i64(
        &e.db,
        "SELECT paid_cents FROM invoices WHERE customer_id = 11 AND month = '2026-12-01'",
    )
    .await;
    assert_eq!(dec, 4000);
    assert_eq!(
        e.escrow.balance(11).await.unwrap(),
        20_000 - expected - 4000
    );

    let report = audit_billing(&e.db, &e.escrow, &p, nov).await.unwrap();
    assert!(report.ok(), "{report}");
    assert!(
        report.raw_range.is_none(),
        "no aggregate_state: raw logs are not compared"
    );
    // With the metering watermark present, the raw logs are compared too.
    e.db.execute(
        "INSERT INTO aggregate_state (id, applied_through, restart_position, settled_before) VALUES (1, 0, 0, '2026-12-01 05:00+00')",
        &[],
    )
    .await
    .unwrap();
    let report = audit_billing(&e.db, &e.escrow, &p, nov).await.unwrap();
    assert!(report.ok(), "{report}");
    assert_eq!(
        report.raw_range,
        Some((t(2026, 11, 16, 9), t(2026, 12, 1, 0)))
    );
    assert!(report.charges_checked > 5);

    // The audit is not a check that cannot fail: a raw row that usage_records lack, a ledger
    // row lost, a line changed behind its back.
    raw(
        &e.db,
        11,
        GRPC,
        t(2026, 11, 21, 4) + Duration::minutes(1),
        1,
        1,
        0,
    )
    .await;
    let report = audit_billing(&e.db, &e.escrow, &p, nov).await.unwrap();
    assert_eq!(report.differences.len(), 1, "{report}");
    assert_eq!(report.differences[0].check, "usage_vs_raw_logs");
    e.db.batch_execute(
        "ALTER TABLE invoice_lines DISABLE TRIGGER invoice_lines_guard;
         UPDATE invoice_lines SET amount_cents = amount_cents + 1 WHERE line_id = (SELECT min(line_id) FROM invoice_lines WHERE kind = 'usage');
         DELETE FROM escrow_transactions WHERE tx_id = (SELECT max(tx_id) FROM escrow_transactions WHERE kind = 'charge');",
    )
    .await
    .unwrap();
    let report = audit_billing(&e.db, &e.escrow, &p, nov).await.unwrap();
    let checks: std::collections::BTreeSet<&str> =
        report.differences.iter().map(|d| d.check).collect();
    assert!(
        checks.contains("usage_line") && checks.contains("invoice_total"),
        "{report}"
    );
}

#[tokio::test]
async fn rollover_on_the_first() {
    let e = env().await;
    customer_at(&e.db, 21, t(2026, 11, 1, 0), 200_000).await;
    let mut c = connect(&e.conninfo).await;
    deposit(&mut c, &e.escrow, 21, 50_000, "d1").await;
    service(&e.db, 21, SEAL, t(2026, 11, 1, 1), true, "pro", None).await;
    let fence = lead(&e.db, "test").await;
    usage(&e.db, 21, SEAL, t(2026, 11, 10, 0), 100_000, 0).await; // 1000
    cycle(
        &e.pool,
        &e.escrow,
        &fence,
        &e.settings,
        t(2026, 11, 30, 23),
        Some(t(2026, 11, 30, 22)),
    )
    .await;
    let r = e
        .db
        .query_one(
            "SELECT current_month_charged_usd_cents, last_month_charged_usd_cents, current_month_start::text FROM customers WHERE customer_id = 21",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            r.get::<_, i64>(0),
            r.get::<_, i64>(1),
            r.get::<_, String>(2)
        ),
        (5000, 0, "2026-11-01".into())
    );
    // 1 Dec 00:00:30 UTC by the manager's clock.
    let now = t(2026, 12, 1, 0) + Duration::seconds(30);
    cycle(
        &e.pool,
        &e.escrow,
        &fence,
        &e.settings,
        now,
        Some(t(2026, 11, 30, 23)),
    )
    .await;
    let r = e
        .db
        .query_one(
            "SELECT current_month_charged_usd_cents, last_month_charged_usd_cents, current_month_start::text FROM customers WHERE customer_id = 21",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            r.get::<_, i64>(0),
            r.get::<_, i64>(1),
            r.get::<_, String>(2)
        ),
        (4000, 5000, "2026-12-01".into())
    );
    let rows = e
        .db
        .query("SELECT month::text, status, total_cents, paid_cents FROM invoices WHERE customer_id = 21 ORDER BY month", &[])
        .await
        .unwrap();
    let got: Vec<(String, String, i64, i64)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        got,
        [
            ("2026-11-01".into(), "draft".into(), 5000, 5000),
            ("2026-12-01".into(), "draft".into(), 4000, 4000)
        ]
    );
}

#[tokio::test]
async fn a_cycle_run_twice_gives_identical_state() {
    let e = env().await;
    customer_at(&e.db, 31, t(2026, 11, 1, 0), 200_000).await;
    customer_at(&e.db, 32, t(2026, 11, 1, 0), 200_000).await;
    let mut c = connect(&e.conninfo).await;
    deposit(&mut c, &e.escrow, 31, 50_000, "d1").await;
    service(&e.db, 31, GRPC, t(2026, 11, 5, 0), true, "starter", None).await;
    service(&e.db, 32, SEAL, t(2026, 11, 5, 0), true, "pro", None).await; // no money: suspended
    usage(&e.db, 31, GRPC, t(2026, 11, 6, 0), 123_456, 5 << 30).await;
    let fence = lead(&e.db, "test").await;
    let now = t(2026, 12, 1, 3);
    let wm = Some(t(2026, 12, 1, 2));
    cycle(&e.pool, &e.escrow, &fence, &e.settings, now, wm).await;
    let a = snapshot(&e.db).await;
    let r = cycle(&e.pool, &e.escrow, &fence, &e.settings, now, wm).await;
    assert_eq!(snapshot(&e.db).await, a);
    assert_eq!(
        (r.lines_added, r.charges, r.invoices_created, r.finalized),
        (0, 0, 0, 0)
    );
    assert!(
        a.iter().any(|l| l.ends_with("insufficient_balance")),
        "{a:?}"
    );
}

#[tokio::test]
async fn late_usage_after_finalization_is_an_adjustment_on_the_next_invoice() {
    let e = env().await;
    customer_at(&e.db, 41, t(2026, 11, 1, 0), 200_000).await;
    let mut c = connect(&e.conninfo).await;
    deposit(&mut c, &e.escrow, 41, 50_000, "d1").await;
    usage(&e.db, 41, SEAL, t(2026, 11, 30, 22), 10_050, 0).await;
    let fence = lead(&e.db, "test").await;
    cycle(
        &e.pool,
        &e.escrow,
        &fence,
        &e.settings,
        t(2026, 12, 1, 2),
        Some(t(2026, 12, 1, 1)),
    )
    .await;
    assert_eq!(
        one_str(
            &e.db,
            "SELECT status FROM invoices WHERE month = '2026-11-01'"
        )
        .await
        .as_deref(),
        Some("paid")
    );
    // 70 requests of November settle late (a new revision: the first was billed).
    e.db.execute(
        "INSERT INTO usage_records (customer_id, service_type, window_start, window_end, revision, request_count, bytes_transferred)
         VALUES (41, 1, '2026-11-30 22:00+00', '2026-11-30 23:00+00', 1, 70, 0)",
        &[],
    )
    .await
    .unwrap();
    cycle(
        &e.pool,
        &e.escrow,
        &fence,
        &e.settings,
        t(2026, 12, 5, 0),
        Some(t(2026, 12, 4, 23)),
    )
    .await;
    // Below the threshold: waits for December's invoice; November's is never edited.
    assert_eq!(
        one_i64(
            &e.db,
            "SELECT total_cents FROM invoices WHERE month = '2026-11-01'"
        )
        .await,
        100
    );
    let report = audit_billing(
        &e.db,
        &e.escrow,
        &PriceList::default(),
        Month::new(2026, 11),
    )
    .await
    .unwrap();
    assert!(report.ok(), "{report}");
    assert_eq!(report.unbilled_cents.get(&41), Some(&1));
    cycle(
        &e.pool,
        &e.escrow,
        &fence,
        &e.settings,
        t(2027, 1, 1, 2),
        Some(t(2027, 1, 1, 1)),
    )
    .await;
    let r = e
        .db
        .query_one(
            "SELECT l.kind, l.for_month::text, l.amount_cents, l.quantity_before, l.quantity_after, i.status
             FROM invoice_lines l JOIN invoices i USING (invoice_id) WHERE i.month = '2026-12-01'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            r.get::<_, String>(0),
            r.get::<_, String>(1),
            r.get::<_, i64>(2),
            r.get::<_, i64>(3),
            r.get::<_, i64>(4),
            r.get::<_, String>(5)
        ),
        (
            "adjustment".into(),
            "2026-11-01".into(),
            1,
            10_050,
            10_120,
            "paid".into()
        )
    );
    let report = audit_billing(
        &e.db,
        &e.escrow,
        &PriceList::default(),
        Month::new(2026, 11),
    )
    .await
    .unwrap();
    assert!(report.ok() && report.unbilled_cents.is_empty(), "{report}");
}

#[tokio::test]
async fn insufficient_balance_suspends_and_a_deposit_resumes() {
    let e = env().await;
    customer_at(&e.db, 51, t(2026, 12, 1, 0), 200_000).await;
    let mut c = connect(&e.conninfo).await;
    deposit(&mut c, &e.escrow, 51, 1_000, "d1").await;
    service(&e.db, 51, GRPC, t(2026, 12, 1, 1), true, "pro", None).await;
    let fence = lead(&e.db, "test").await;
    let r = cycle(
        &e.pool,
        &e.escrow,
        &fence,
        &e.settings,
        t(2026, 12, 1, 2),
        None,
    )
    .await;
    assert_eq!((r.refused, r.suspended, r.charges), (1, 1, 0));
    let row = e.db.query_one("SELECT status, suspension_reason, suspended_until FROM customers WHERE customer_id = 51", &[]).await.unwrap();
    assert_eq!(
        row.get::<_, String>(0),
        "active",
        "the account stays open: it must be able to deposit"
    );
    assert_eq!(
        row.get::<_, Option<String>>(1).as_deref(),
        Some("insufficient_balance")
    );
    assert_eq!(row.get::<_, Option<chrono::DateTime<chrono::Utc>>>(2), None);
    assert_eq!(
        e.escrow.balance(51).await.unwrap(),
        1_000,
        "no partial charge"
    );
    deposit(&mut c, &e.escrow, 51, 3_000, "d2").await;
    let r = cycle(
        &e.pool,
        &e.escrow,
        &fence,
        &e.settings,
        t(2026, 12, 1, 3),
        None,
    )
    .await;
    assert_eq!((r.charges, r.resumed), (1, 1));
    let row =
        e.db.query_one(
            "SELECT status, suspension_reason FROM customers WHERE customer_id = 51",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, Option<String>>(1)),
        ("active".into(), None)
    );
    assert_eq!(e.escrow.balance(51).await.unwrap(), 0);
}

#[tokio::test]
async fn limit_reached_suspends_until_the_first() {
    let mut e = env().await;
    e.settings.rules.usage_threshold_cents = 0;
    customer_at(&e.db, 61, t(2026, 12, 1, 0), 10_000).await;
    let mut c = connect(&e.conninfo).await;
    deposit(&mut c, &e.escrow, 61, 100_000, "d1").await;
    let fence = lead(&e.db, "test").await;
    usage(&e.db, 61, SEAL, t(2026, 12, 2, 0), 900_000, 0).await;
    cycle(
        &e.pool,
        &e.escrow,
        &fence,
        &e.settings,
        t(2026, 12, 2, 2),
        None,
    )
    .await;
    usage(&e.db, 61, SEAL, t(2026, 12, 3, 0), 200_000, 0).await;
    let r = cycle(
        &e.pool,
        &e.escrow,
        &fence,
        &e.settings,
        t(2026, 12, 20, 0),
        None,
    )
    .await;
    assert_eq!(r.suspended, 1);
    let row = e.db.query_one("SELECT suspension_reason, suspended_until, current_month_charged_usd_cents FROM customers WHERE customer_id = 61", &[]).await.unwrap();
    assert_eq!(
        row.get::<_, Option<String>>(0).as_deref(),
        Some("monthly_limit_reached")
    );
    assert_eq!(
        row.get::<_, Option<chrono::DateTime<chrono::Utc>>>(1),
        Some(t(2027, 1, 1, 0))
    );
    assert_eq!(row.get::<_, i64>(2), 9_000);
    cycle(
        &e.pool,
        &e.escrow,
        &fence,
        &e.settings,
        t(2026, 12, 31, 23),
        None,
    )
    .await;
    assert!(
        one_str(
            &e.db,
            "SELECT suspension_reason FROM customers WHERE customer_id = 61"
        )
        .await
        .is_some()
    );
    // The 1st of next month.
    let r = cycle(
        &e.pool,
        &e.escrow,
        &fence,
        &e.settings,
        t(2027, 1, 1, 0) + Duration::seconds(5),
        None,
    )
    .await;
    assert_eq!(r.resumed, 1);
    let row = e.db.query_one("SELECT suspension_reason, current_month_charged_usd_cents, last_month_charged_usd_cents FROM customers WHERE customer_id = 61", &[]).await.unwrap();
    assert_eq!(
        (
            row.get::<_, Option<String>>(0),
            row.get::<_, i64>(1),
            row.get::<_, i64>(2)
        ),
        (None, 2_000, 9_000)
    );
}

#[tokio::test]
async fn a_lost_escrow_reply_is_completed_once_by_the_next_cycle() {
    let e = env().await;
    customer_at(&e.db, 71, t(2026, 12, 1, 0), 200_000).await;
    let mut c = connect(&e.conninfo).await;
    deposit(&mut c, &e.escrow, 71, 10_000, "d1").await;
    service(&e.db, 71, SEAL, t(2026, 12, 1, 1), true, "pro", None).await;
    let fence = lead(&e.db, "test").await;
    e.escrow.lose_next_replies(1);
    let r = cycle(
        &e.pool,
        &e.escrow,
        &fence,
        &e.settings,
        t(2026, 12, 1, 2),
        None,
    )
    .await;
    assert_eq!((r.charges, r.escrow_unavailable), (0, 1));
    // The escrow took it; the intent is pending; nothing else is charged meanwhile.
    assert_eq!(e.escrow.balance(71).await.unwrap(), 6_000);
    assert_eq!(
        one_i64(
            &e.db,
            "SELECT count(*) FROM escrow_intents WHERE state = 'pending'"
        )
        .await,
        1
    );
    let r = cycle(
        &e.pool,
        &e.escrow,
        &fence,
        &e.settings,
        t(2026, 12, 1, 3),
        None,
    )
    .await;
    assert_eq!(r.charges, 0, "completed by settle, not charged again");
    assert_eq!(e.escrow.balance(71).await.unwrap(), 6_000);
    assert_eq!(
        one_i64(
            &e.db,
            "SELECT current_balance_usd_cents FROM customers WHERE customer_id = 71"
        )
        .await,
        6_000
    );
    assert_eq!(
        one_i64(
            &e.db,
            "SELECT count(*) FROM escrow_transactions WHERE kind = 'charge'"
        )
        .await,
        1
    );
    assert_eq!(
        one_i64(&e.db, "SELECT paid_cents FROM invoices").await,
        4_000
    );
    let report = audit_billing(
        &e.db,
        &e.escrow,
        &PriceList::default(),
        Month::new(2026, 12),
    )
    .await
    .unwrap();
    assert!(report.ok(), "{report}");
}

#[tokio::test]
async fn downgrade_takes_effect_on_the_first() {
    let e = env().await;
    customer_at(&e.db, 81, t(2026, 12, 1, 0), 200_000).await;
    let mut c = connect(&e.conninfo).await;
    deposit(&mut c, &e.escrow, 81, 50_000, "d1").await;
    service(&e.db, 81, GRPC, t(2026, 12, 1, 1), true, "starter", None).await;
    service(&e.db, 81, GRPC, t(2026, 12, 10, 0), true, "pro", None).await;
    service(
        &e.db,
        81,
        GRPC,
        t(2026, 12, 20, 0),
        true,
        "pro",
        Some("starter"),
    )
    .await;
    let fence = lead(&e.db, "test").await;
    cycle(
        &e.pool,
        &e.escrow,
        &fence,
        &e.settings,
        t(2026, 12, 21, 0),
        None,
    )
    .await;
    assert_eq!(
        one_i64(
            &e.db,
            "SELECT paid_cents FROM invoices WHERE month = '2026-12-01'"
        )
        .await,
        2000 + 1419
    );
    assert_eq!(
        one_str(&e.db, "SELECT tier FROM service_instances")
            .await
            .as_deref(),
        Some("pro")
    );
    cycle(
        &e.pool,
        &e.escrow,
        &fence,
        &e.settings,
        t(2027, 1, 1, 0),
        None,
    )
    .await;
    assert_eq!(
        one_str(&e.db, "SELECT tier FROM service_instances")
            .await
            .as_deref(),
        Some("starter")
    );
    assert!(
        one_str(&e.db, "SELECT pending_config::text FROM service_instances")
            .await
            .is_none()
    );
    assert_eq!(
        one_i64(
            &e.db,
            "SELECT paid_cents FROM invoices WHERE month = '2027-01-01'"
        )
        .await,
        2000
    );
    assert_eq!(
        one_i64(
            &e.db,
            "SELECT count(*) FROM service_events WHERE source = 'manager'"
        )
        .await,
        1
    );
    let report = audit_billing(
        &e.db,
        &e.escrow,
        &PriceList::default(),
        Month::new(2026, 12),
    )
    .await
    .unwrap();
    assert!(report.ok(), "{report}");
    let _ = TimeDelta::zero();
}
