//! One private PostgreSQL per test binary (never skipped: a test fails loudly when the server
//! cannot start) and a fresh migrated database per test.
#![allow(dead_code)]

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use pgcluster::PgCluster;
use tokio_postgres::NoTls;

static CLUSTER: OnceLock<PgCluster> = OnceLock::new();
static NEXT_DB: AtomicUsize = AtomicUsize::new(0);

pub async fn connect(conninfo: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(conninfo, NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test postgresql: {e}"));
    tokio::spawn(conn);
    client
}

/// A fresh, migrated database; returns its conninfo.
pub async fn fresh_database() -> String {
    let cluster = CLUSTER.get_or_init(|| {
        PgCluster::temporary().unwrap_or_else(|e| panic!("cannot start the test postgresql: {e}"))
    });
    let name = format!(
        "manager_{}_{}",
        std::process::id(),
        NEXT_DB.fetch_add(1, Ordering::SeqCst)
    );
    let admin = connect(&cluster.connection_string()).await;
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let conninfo = cluster.connection_string_for(&name);
    let mut client = connect(&conninfo).await;
    suiftly_migrations::migrate(&mut client).await.unwrap();
    conninfo
}

pub fn pool(conninfo: &str, size: usize) -> deadpool_postgres::Pool {
    let pg: tokio_postgres::Config = conninfo.parse().unwrap();
    let mgr = deadpool_postgres::Manager::from_config(
        pg,
        NoTls,
        deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        },
    );
    deadpool_postgres::Pool::builder(mgr)
        .max_size(size)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .unwrap()
}

/// A customer row (money tables reference it).
pub async fn customer(db: &tokio_postgres::Client, id: i32) {
    db.execute(
        "INSERT INTO customers (customer_id, wallet_address) VALUES ($1, '0x' || lpad(to_hex($1::int), 64, '0'))",
        &[&id],
    )
    .await
    .unwrap();
}

use chrono::{DateTime, TimeZone, Utc};
use suiftly_billing::{Escrow, TxKind};
use suiftly_escrow::intent::{self, Outcome};
use suiftly_manager::bill::{self, BillReport, BillingSettings, Ctx};
use suiftly_manager::lease::{self, Fence, LeaseState};
use tokio_util::sync::CancellationToken;

pub fn t(y: i32, mo: u32, d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, 0, 0).unwrap()
}

/// A customer created at `created` with a monthly limit.
pub async fn customer_at(db: &tokio_postgres::Client, id: i32, created: DateTime<Utc>, limit: i64) {
    db.execute(
        "INSERT INTO customers (customer_id, wallet_address, created_at, current_month_start, max_monthly_usd_cents)
         VALUES ($1, '0x' || lpad(to_hex($1::int), 64, '0'), $2, date_trunc('month', $2 AT TIME ZONE 'UTC')::date, $3)",
        &[&id, &created, &limit],
    )
    .await
    .unwrap();
}

/// A deposit through the intent protocol (what the API does).
pub async fn deposit(
    client: &mut tokio_postgres::Client,
    escrow: &dyn Escrow,
    id: i32,
    amount: i64,
    key: &str,
) {
    let tx = client.transaction().await.unwrap();
    let it = intent::insert_movement(&tx, id, TxKind::Deposit, amount, key)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let out = intent::call_escrow(escrow, &it).await.unwrap();
    assert!(matches!(out, Outcome::Succeeded(_)));
    let tx = client.transaction().await.unwrap();
    intent::record_outcome(&tx, &it, &out, Utc::now(), None)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

/// A service change as the API journals it (state after the change).
pub async fn service(
    db: &tokio_postgres::Client,
    id: i32,
    service: i16,
    at: DateTime<Utc>,
    enabled: bool,
    tier: &str,
    pending: Option<&str>,
) {
    let cfg = serde_json::json!({ "tier": tier, "burst": false, "extra_api_keys": 0, "extra_seal_keys": 0, "extra_packages": 0 });
    let pend = pending.map(|p| serde_json::json!({ "tier": p, "burst": false, "extra_api_keys": 0, "extra_seal_keys": 0, "extra_packages": 0 }));
    db.execute(
        "INSERT INTO service_events (customer_id, service_type, at, is_enabled, config, pending_config, source)
         VALUES ($1, $2, $3, $4, $5, $6, 'api')",
        &[&id, &service, &at, &enabled, &cfg, &pend],
    )
    .await
    .unwrap();
    db.execute(
        "INSERT INTO service_instances (customer_id, service_type, tier, is_enabled, config, enabled_at, pending_config, pending_from)
         VALUES ($1, $2, $3, $4, $5, $6, $7, CASE WHEN $7::jsonb IS NULL THEN NULL ELSE (date_trunc('month', $6 AT TIME ZONE 'UTC') + interval '1 month')::date END)
         ON CONFLICT (customer_id, service_type) DO UPDATE SET tier = EXCLUDED.tier, is_enabled = EXCLUDED.is_enabled,
             config = EXCLUDED.config, pending_config = EXCLUDED.pending_config, pending_from = EXCLUDED.pending_from",
        &[&id, &service, &tier, &enabled, &cfg, &at, &pend],
    )
    .await
    .unwrap();
}

/// Settled usage of one hour, merged as the aggregator merges it.
pub async fn usage(
    db: &tokio_postgres::Client,
    id: i32,
    service: i16,
    hour: DateTime<Utc>,
    requests: i64,
    bytes: i64,
) {
    db.execute(
        "INSERT INTO usage_records AS t (customer_id, service_type, window_start, window_end, request_count, bytes_transferred)
         VALUES ($1, $2, $3::timestamptz, $3::timestamptz + interval '1 hour', $4, $5)
         ON CONFLICT (customer_id, service_type, window_start, revision) DO UPDATE
         SET request_count = t.request_count + EXCLUDED.request_count,
             bytes_transferred = t.bytes_transferred + EXCLUDED.bytes_transferred",
        &[&id, &service, &hour, &requests, &bytes],
    )
    .await
    .unwrap();
}

/// Takes the lease for `holder` (expiring whoever held it).
pub async fn lead(db: &tokio_postgres::Client, holder: &str) -> Fence {
    db.execute(
        "UPDATE manager_lease SET lease_until = now() - interval '1 second' WHERE holder IS DISTINCT FROM $1",
        &[&holder],
    )
    .await
    .unwrap();
    match lease::try_acquire(db, holder, std::time::Duration::from_secs(600))
        .await
        .unwrap()
    {
        LeaseState::Leader { epoch, .. } => Fence {
            epoch,
            holder: holder.to_string(),
        },
        other => panic!("{other:?}"),
    }
}

/// One manager cycle's money steps: pending intents, then billing.
pub async fn cycle(
    pool: &deadpool_postgres::Pool,
    escrow: &dyn Escrow,
    fence: &Fence,
    settings: &BillingSettings,
    now: DateTime<Utc>,
    watermark: Option<DateTime<Utc>>,
) -> BillReport {
    let cancel = CancellationToken::new();
    let ctx = Ctx {
        pool,
        escrow,
        fence,
        now,
        watermark,
        cancel: &cancel,
    };
    bill::settle_pending(&ctx, chrono::TimeDelta::zero())
        .await
        .unwrap();
    bill::bill(settings, &ctx, None).await.unwrap()
}

/// Every money table, as text, for "run twice = identical" comparisons.
pub async fn snapshot(db: &tokio_postgres::Client) -> Vec<String> {
    let mut out = Vec::new();
    for q in [
        "SELECT customer_id, current_balance_usd_cents, current_month_charged_usd_cents, last_month_charged_usd_cents, current_month_start::text, suspension_reason FROM customers ORDER BY 1",
        "SELECT invoice_id, customer_id, month::text, status, total_cents, paid_cents, charge_seq FROM invoices ORDER BY 1",
        "SELECT line_id, invoice_id, line_key, amount_cents FROM invoice_lines ORDER BY 1",
        "SELECT intent_id, nonce, state, amount_cents FROM escrow_intents ORDER BY 1",
        "SELECT tx_digest, kind, amount_usd_cents FROM escrow_transactions ORDER BY 1",
        "SELECT account, balance_cents FROM mock_escrow_accounts ORDER BY 1",
        "SELECT customer_id, service_type, month::text, requests, bytes FROM usage_invoiced ORDER BY 1, 2, 3",
    ] {
        for r in db.simple_query(q).await.unwrap() {
            if let tokio_postgres::SimpleQueryMessage::Row(r) = r {
                out.push(
                    (0..r.len())
                        .map(|i| r.get(i).unwrap_or("NULL").to_string())
                        .collect::<Vec<_>>()
                        .join("|"),
                );
            }
        }
        out.push("--".into());
    }
    out
}

pub async fn one_i64(db: &tokio_postgres::Client, sql: &str) -> i64 {
    db.query_one(sql, &[]).await.unwrap().get(0)
}

pub async fn one_str(db: &tokio_postgres::Client, sql: &str) -> Option<String> {
    db.query_one(sql, &[]).await.unwrap().get(0)
}
