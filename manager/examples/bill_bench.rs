//! Benchmark (not a test): billing cycles for N customers with a month of usage.
//!
//! `cargo run --release -p suiftly-manager --example bill_bench -- [customers]` (default
//! 10,000). Starts a private PostgreSQL (pgcluster, fsync on), seeds N customers, each with
//! grpc pro enabled on 15 Oct 2026 and hourly `usage_records` for November up to 30 Nov
//! 11:00 (707 hours, about 2 M requests and 1 GiB each), a balance in the persistent escrow
//! mock, and times:
//! 1. the cycle of 30 Nov 12:00 (October finalized and charged, November's fee and the month's
//!    usage so far charged: two charges per customer),
//! 2. after the last 13 hours of November settle (inserted through the month-totals trigger,
//!    as the aggregator's writes are), the cycle of 1 Dec 01:00 (rollover, November finalized
//!    with its remaining usage, December's draft and fee: two charges per customer),
//! 3. the same cycle again (nothing to do),
//!
//! Then it runs the audit of November. After the seed and after the late hours it runs
//! `VACUUM (ANALYZE)` and `CHECKPOINT`, so the cycles do not share the machine with the
//! autovacuum and checkpoint a bulk load starts.
//!
//! Each step prints its wall time and the CPU time (user + system) it cost this process and
//! the PostgreSQL server (the postmaster and its children, from `/proc`), and the 1-minute load
//! average: on a shared machine the wall time mostly measures the others' load, the CPU time
//! does not.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use pgcluster::PgCluster;
use suiftly_billing::{Month, PriceList};
use suiftly_escrow::PgMockEscrow;
use suiftly_manager::bill::{self, BillingSettings, Ctx};
use suiftly_manager::lease::{self, Fence, LeaseState};
use tokio_postgres::NoTls;
use tokio_util::sync::CancellationToken;

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let n: i32 = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("customers"))
        .unwrap_or(10_000);
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let cluster = PgCluster::temporary_with(|o| o.fsync = true).expect("postgresql");
    let conninfo = cluster.connection_string();
    let postmaster: u32 = std::fs::read_to_string(cluster.data_dir().join("postmaster.pid"))
        .expect("postmaster.pid")
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .expect("postmaster pid");
    let (mut db, conn) = tokio_postgres::connect(&conninfo, NoTls).await.unwrap();
    tokio::spawn(conn);
    suiftly_migrations::migrate(&mut db).await.unwrap();

    let t0 = Instant::now();
    db.batch_execute(&format!(
        "ALTER TABLE usage_records DISABLE TRIGGER usage_records_month_totals;
         INSERT INTO customers (customer_id, wallet_address, created_at, current_month_start,
                                current_balance_usd_cents, max_monthly_usd_cents)
         SELECT i, '0x' || lpad(to_hex(i), 64, '0'), '2026-10-01', '2026-10-01', 1000000, 5000000
         FROM generate_series(1, {n}) i;
         INSERT INTO mock_escrow_accounts (account, balance_cents)
         SELECT i, 1000000 FROM generate_series(1, {n}) i;
         INSERT INTO service_events (customer_id, service_type, at, is_enabled, config, source)
         SELECT i, 2, '2026-10-15 10:00+00', true,
                '{{\"tier\":\"pro\",\"burst\":false,\"extra_api_keys\":0,\"extra_seal_keys\":0,\"extra_packages\":0}}', 'api'
         FROM generate_series(1, {n}) i;
         INSERT INTO usage_records (customer_id, service_type, window_start, window_end, request_count, bytes_transferred)
         SELECT i, 2, h, h + interval '1 hour', 2000 + (i * 7 + extract(hour FROM h)::int * 13) % 1500, 1500000 + i % 1000
         FROM generate_series(1, {n}) i,
              generate_series(timestamptz '2026-11-01 00:00+00', timestamptz '2026-11-30 10:00+00', interval '1 hour') h;
         ALTER TABLE usage_records ENABLE TRIGGER usage_records_month_totals;
         INSERT INTO usage_month_totals (customer_id, service_type, month, requests, bytes)
         SELECT customer_id, service_type, date_trunc('month', window_start AT TIME ZONE 'UTC')::date,
                SUM(request_count), SUM(bytes_transferred)
         FROM usage_records GROUP BY 1, 2, 3;"
    ))
    .await
    .unwrap();
    vacuum_and_checkpoint(&db).await;
    let rows: i64 = db
        .query_one("SELECT count(*) FROM usage_records", &[])
        .await
        .unwrap()
        .get(0);
    println!(
        "seeded {n} customers, {rows} usage_records in {:.1?}",
        t0.elapsed()
    );

    let pool = suiftly_manager::db::pool(&conninfo, 8, Duration::from_secs(30)).unwrap();
    let escrow = Arc::new(PgMockEscrow::new(
        suiftly_manager::db::pool(&conninfo, 8, Duration::from_secs(30)).unwrap(),
    ));
    let LeaseState::Leader { epoch, .. } =
        lease::try_acquire(&db, "bench", Duration::from_secs(3600))
            .await
            .unwrap()
    else {
        panic!("lease")
    };
    let fence = Fence {
        epoch,
        holder: "bench".into(),
    };
    let settings = BillingSettings::default();
    let cancel = CancellationToken::new();
    for (i, (label, now, wm)) in [
        (
            "30 Nov 12:00 (Oct final + Nov so far)",
            Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 30, 11, 0, 0).unwrap(),
        ),
        (
            "1 Dec 01:00 (rollover, Nov final, Dec fee)",
            Utc.with_ymd_and_hms(2026, 12, 1, 1, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(2026, 12, 1, 0, 30, 0).unwrap(),
        ),
        (
            "1 Dec 01:00 again (nothing to do)",
            Utc.with_ymd_and_hms(2026, 12, 1, 1, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(2026, 12, 1, 0, 30, 0).unwrap(),
        ),
    ]
    .into_iter()
    .enumerate()
    {
        if i == 1 {
            let t = Instant::now();
            let late = db
                .execute(
                    &format!(
                        "INSERT INTO usage_records (customer_id, service_type, window_start, window_end, request_count, bytes_transferred)
                         SELECT i, 2, h, h + interval '1 hour', 2000 + (i * 7 + extract(hour FROM h)::int * 13) % 1500, 1500000 + i % 1000
                         FROM generate_series(1, {n}) i,
                              generate_series(timestamptz '2026-11-30 11:00+00', timestamptz '2026-11-30 23:00+00', interval '1 hour') h"
                    ),
                    &[],
                )
                .await
                .unwrap();
            println!(
                "settled the last hours of November: {late} usage_records in {:.1?}",
                t.elapsed()
            );
            vacuum_and_checkpoint(&db).await;
        }
        let ctx = Ctx {
            pool: &pool,
            escrow: escrow.as_ref(),
            fence: &fence,
            now,
            watermark: Some(wm),
            cancel: &cancel,
        };
        let (t, cpu) = (Instant::now(), Cpu::now(postmaster));
        let r = bill::bill(&settings, &ctx, None).await.unwrap();
        println!(
            "cycle {label}: {:.2?} ({}) — {} customers, {} lines, {} finalized, {} charges ({} cents), {} refused",
            t.elapsed(),
            cpu.since(postmaster),
            r.customers,
            r.lines_added,
            r.finalized,
            r.charges,
            r.charged_cents,
            r.refused
        );
    }
    let (t, cpu) = (Instant::now(), Cpu::now(postmaster));
    let report = suiftly_manager::audit::audit_billing(
        &db,
        escrow.as_ref(),
        &PriceList::default(),
        Month::new(2026, 11),
    )
    .await
    .unwrap();
    println!(
        "audit 2026-11: {:.2?} ({}), {} invoices, {} differences",
        t.elapsed(),
        cpu.since(postmaster),
        report.invoices,
        report.differences.len()
    );
    assert!(report.ok(), "{report}");
}

/// The timed steps measure billing, not the autovacuum and checkpoint a bulk load starts
/// (VACUUM cannot run inside the implicit transaction of a multi-statement string).
async fn vacuum_and_checkpoint(db: &tokio_postgres::Client) {
    for sql in ["VACUUM (ANALYZE)", "CHECKPOINT"] {
        db.batch_execute(sql).await.unwrap();
    }
}

/// CPU time (user + system, clock ticks) of this process and of the PostgreSQL server.
struct Cpu {
    bench: u64,
    server: u64,
}

/// USER_HZ: 100 on every Linux architecture this runs on.
const TICKS_PER_SECOND: f64 = 100.0;

impl Cpu {
    fn now(postmaster: u32) -> Cpu {
        // /proc/<pid>/stat after the ")" closing the command name: state, ppid, …, utime
        // (11th), stime (12th).
        fn parse(stat: &str) -> Option<(u32, u32, u64)> {
            let pid = stat.split(' ').next()?.parse().ok()?;
            let f: Vec<&str> = stat[stat.rfind(')')? + 2..].split(' ').collect();
            let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
            Some((pid, f.get(1)?.parse().ok()?, ticks))
        }
        let bench = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| parse(&s))
            .map_or(0, |p| p.2);
        let mut server = 0;
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            if let Some((pid, ppid, ticks)) = std::fs::read_to_string(e.path().join("stat"))
                .ok()
                .and_then(|s| parse(&s))
                && (pid == postmaster || ppid == postmaster)
            {
                server += ticks;
            }
        }
        Cpu { bench, server }
    }

    /// "cpu: bench X s, postgres Y s, load Z" since `self`.
    fn since(&self, postmaster: u32) -> String {
        let now = Cpu::now(postmaster);
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        format!(
            "cpu: bench {:.2} s, postgres {:.2} s; load {}",
            now.bench.saturating_sub(self.bench) as f64 / TICKS_PER_SECOND,
            now.server.saturating_sub(self.server) as f64 / TICKS_PER_SECOND,
            load.split(' ').next().unwrap_or("?")
        )
    }
}
