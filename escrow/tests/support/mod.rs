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
        "escrow_{}_{}",
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
