//! Shared test harness: a throwaway PostgreSQL cluster, migrations, and a running pipeline.
#![allow(dead_code)]

use std::time::Duration;

use pgcluster::PgCluster;
use suiftly_ingest::batch::WriteBatch;
use suiftly_ingest::listener::{self, BatchLimits, BoundListener, ListenerConfig, ListenerStats};
use suiftly_ingest::writer::{self, Writer, WriterConfig, WriterStats};
use suiftly_parser::Parser;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Starts a private cluster and migrates it. Panics (fails the test loudly) when PostgreSQL
/// cannot be started: these tests never skip. The cluster preloads TimescaleDB when
/// `SUIFTLY_TEST_STORAGE=timescaledb` (the CI storage matrix); the storage the migration chose
/// is printed with the test's output.
pub async fn database() -> (PgCluster, String) {
    let cluster = tokio::task::spawn_blocking(PgCluster::temporary)
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("cannot start the test postgresql: {e}"));
    let conninfo = cluster.connection_string();
    let mut client = writer::connect(&conninfo).await.unwrap();
    suiftly_ingest::db::migrate(&mut client).await.unwrap();
    let storage = suiftly_ingest::timescale::check(&client).await.unwrap();
    eprintln!(
        "storage ({}={:?}): {storage}",
        pgcluster::timescaledb::TEST_STORAGE_ENV,
        storage_mode()
    );
    (cluster, conninfo)
}

/// The storage mode the test run asked for (`native` when unset).
pub fn storage_mode() -> String {
    match std::env::var(pgcluster::timescaledb::TEST_STORAGE_ENV) {
        Ok(v) if !v.trim().is_empty() => v.trim().to_owned(),
        _ => "native".to_owned(),
    }
}

pub fn listener_config(toml_text: &str) -> ListenerConfig {
    #[derive(serde::Deserialize)]
    struct F {
        listener: ListenerConfig,
    }
    toml::from_str::<F>(toml_text).unwrap().listener
}

pub struct Running {
    pub shutdown: CancellationToken,
    pub listener: tokio::task::JoinHandle<Result<ListenerStats, listener::ListenerError>>,
    pub writer: tokio::task::JoinHandle<WriterStats>,
}

impl Running {
    pub async fn stop(self) -> (ListenerStats, WriterStats) {
        self.shutdown.cancel();
        let l = self.listener.await.unwrap().unwrap();
        let w = self.writer.await.unwrap();
        (l, w)
    }
}

pub fn start(
    cfg: &ListenerConfig,
    bound: BoundListener,
    conninfo: &str,
    limits: BatchLimits,
) -> Running {
    let (tx, rx) = mpsc::channel::<WriteBatch>(4);
    let abort = CancellationToken::new();
    let writer = tokio::spawn(
        Writer::new(WriterConfig {
            max_backoff: Duration::from_secs(1),
            ..WriterConfig::new(conninfo)
        })
        .run(rx, abort),
    );
    let shutdown = CancellationToken::new();
    let parser = Parser::new(cfg.source_config().unwrap());
    let listener = tokio::spawn(listener::run(bound, parser, limits, tx, shutdown.clone()));
    Running {
        shutdown,
        listener,
        writer,
    }
}

/// Binds the listener of `toml_text` and starts it with a writer; returns its UDP/TCP address.
pub fn listen(
    toml_text: &str,
    conninfo: &str,
    limits: BatchLimits,
) -> (Running, Option<std::net::SocketAddr>) {
    let cfg = listener_config(toml_text);
    let bound = listener::bind(&cfg).unwrap();
    let addr = bound.local_addr();
    (start(&cfg, bound, conninfo, limits), addr)
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Waits until rows + rejected lines reach `want` (30 s at most), riding out a database that
/// is briefly unreachable (outage tests).
pub async fn wait_for_lines(conninfo: &str, want: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut n = 0;
    loop {
        if let Ok(c) = writer::connect(conninfo).await
            && let Ok(r) = c
                .query_one(
                    "SELECT (SELECT count(*) FROM haproxy_raw_logs) + (SELECT count(*) FROM haproxy_rejected_lines)",
                    &[],
                )
                .await
        {
            n = r.get::<_, i64>(0) as usize;
            if n >= want {
                return;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {n} of {want} lines stored after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
