//! The writer's failure paths against a real PostgreSQL: a row the database refuses, a retry
//! after a lost COMMIT reply, and a database that goes away and comes back.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::*;
use suiftly_ingest::batch::{RawBatchBuilder, WriteBatch};
use suiftly_ingest::listener::BatchLimits;
use suiftly_ingest::writer::{COPY_CONSUMER, CommitGate, Writer, WriterConfig, Written};
use suiftly_parser::{Framing, Parser, PayloadFormat, SourceConfig};
use tokio_util::sync::CancellationToken;

fn sf1(ts_ms: i64, status: u16, customer: u32) -> String {
    format!(
        "sf1 {}.{:03} fe 1 17 2 2 {customer} - 0 - 1 - 10.0.0.1 {status} 1 0 0 0 0 0 1 -- /x",
        ts_ms / 1000,
        ts_ms % 1000
    )
}

fn batch_of(lines: &[String]) -> WriteBatch {
    let p = Parser::new(SourceConfig {
        framing: Framing::Raw,
        payload: PayloadFormat::Suiftly,
        server_id: None,
        frontends: Default::default(),
        default_frontend: None,
        accept_date_utc_offset_secs: 0,
    });
    let mut b = RawBatchBuilder::with_capacity(lines.len());
    for l in lines {
        b.append(&p.parse(l.as_bytes()).unwrap());
    }
    b.finish()
}

async fn count(conninfo: &str, sql: &str) -> i64 {
    let c = suiftly_ingest::writer::connect(conninfo).await.unwrap();
    c.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_row_is_isolated_and_the_rest_commits() {
    let (_pg, conninfo) = database().await;
    let c = suiftly_ingest::writer::connect(&conninfo).await.unwrap();
    // A constraint the test controls stands in for any row PostgreSQL refuses permanently.
    c.batch_execute(
        "ALTER TABLE haproxy_raw_logs ADD CONSTRAINT no_599 CHECK (status_code <> 599)",
    )
    .await
    .unwrap();
    let base = now_ms() - 5_000;
    let lines: Vec<String> = (0..37)
        .map(|i| sf1(base + i, if i == 23 { 599 } else { 200 }, 100 + i as u32))
        .collect();
    let mut w = Writer::new(WriterConfig {
        max_backoff: Duration::from_millis(100),
        ..WriterConfig::new(&conninfo)
    });
    assert!(
        w.write_with_retry(&batch_of(&lines), &CancellationToken::new())
            .await
            .is_committed()
    );
    assert_eq!(w.stats.db_rejected, 1);
    assert_eq!(w.stats.rows, 36);
    assert_eq!(
        count(&conninfo, "SELECT count(*) FROM haproxy_raw_logs").await,
        36
    );
    let r = c
        .query_one("SELECT reason, raw FROM haproxy_rejected_lines", &[])
        .await
        .unwrap();
    assert_eq!(r.get::<_, &str>(0), "db_rejected");
    let raw = String::from_utf8(r.get::<_, Vec<u8>>(1)).unwrap();
    assert!(
        raw.contains("customer_id=123") && raw.contains("status_code=599"),
        "{raw}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_batch_whose_commit_went_through_is_not_stored_twice() {
    let (_pg, conninfo) = database().await;
    let lines: Vec<String> = (0..10).map(|i| sf1(now_ms() - 1_000 + i, 200, 7)).collect();
    let batch = batch_of(&lines);
    let mut w = Writer::new(WriterConfig::new(&conninfo));
    // The same batch id twice is what a retry after a lost COMMIT reply looks like.
    assert_eq!(w.write(&batch, 42, &[]).await.unwrap(), Written::Committed);
    assert_eq!(
        w.write(&batch, 42, &[]).await.unwrap(),
        Written::AlreadyCommitted
    );
    assert_eq!(
        count(&conninfo, "SELECT count(*) FROM haproxy_raw_logs").await,
        10
    );
    assert_eq!(w.write(&batch, 43, &[]).await.unwrap(), Written::Committed);
    assert_eq!(
        count(&conninfo, "SELECT count(*) FROM haproxy_raw_logs").await,
        20
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_received_during_a_database_outage_are_stored_when_it_returns() {
    let (mut pg, conninfo) = database().await;
    let (running, addr) = listen(
        "[listener]\nname = \"outage\"\nkind = \"udp\"\naddress = \"127.0.0.1:0\"\npayload = \"sf1\"\n",
        &conninfo,
        BatchLimits {
            max_rows: 50,
            ..BatchLimits::default()
        },
    );
    let addr = addr.unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let base = now_ms() - 10_000;
    for i in 0..100 {
        sock.send_to(sf1(base + i, 200, 1).as_bytes(), addr)
            .unwrap();
    }
    wait_for_lines(&conninfo, 100).await;
    tokio::task::block_in_place(|| pg.stop()).unwrap();
    for i in 100..400 {
        sock.send_to(sf1(base + i, 200, 1).as_bytes(), addr)
            .unwrap();
    }
    // Let the writer fail and back off a few times.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    tokio::task::block_in_place(|| pg.start_again()).unwrap();
    wait_for_lines(&conninfo, 400).await;
    let (l, w) = running.stop().await;
    assert_eq!(l.parsed, 400);
    assert_eq!(w.rows, 400);
    assert!(w.retries >= 1, "the outage made the writer retry");
    assert_eq!(
        count(&conninfo, "SELECT count(*) FROM haproxy_raw_logs").await,
        400
    );
    assert_eq!(
        count(
            &conninfo,
            "SELECT count(DISTINCT \"timestamp\") FROM haproxy_raw_logs"
        )
        .await,
        400
    );
}

/// Backends of this database holding a transaction open while idle (a gated writer that has
/// COPYed its batch and waits for its turn).
async fn idle_in_transaction(conninfo: &str) -> i64 {
    count(
        conninfo,
        "SELECT count(*) FROM pg_stat_activity \
         WHERE datname = current_database() AND state = 'idle in transaction'",
    )
    .await
}

/// Waits (bounded) until `idle_in_transaction` is `want`.
async fn wait_idle_in_transaction(conninfo: &str, want: i64) {
    let t0 = std::time::Instant::now();
    while idle_in_transaction(conninfo).await != want {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "waiting for {want} idle transactions"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Two spooled batches `[0, 10)` and `[10, 20)` of 10 and 5 rows, position row at 0.
async fn two_spooled_batches(conninfo: &str) -> (WriteBatch, WriteBatch) {
    let c = suiftly_ingest::writer::connect(conninfo).await.unwrap();
    c.execute(
        "INSERT INTO ingest_positions (consumer, position) VALUES ($1, 0)",
        &[&COPY_CONSUMER],
    )
    .await
    .unwrap();
    let base = now_ms() - 2_000;
    let mut first = batch_of(&(0..10).map(|i| sf1(base + i, 200, 1)).collect::<Vec<_>>());
    first.spool = Some((0, 10));
    let mut second = batch_of(&(0..5).map(|i| sf1(base + i, 200, 2)).collect::<Vec<_>>());
    second.spool = Some((10, 20));
    (first, second)
}

async fn position(conninfo: &str) -> i64 {
    count(
        conninfo,
        "SELECT position FROM ingest_positions WHERE consumer = 'copy'",
    )
    .await
}

/// `storage.writers > 1`: two writers share a `CommitGate`. The later batch is handed out
/// first: it COPYs and then waits for its turn with its transaction open (nothing visible,
/// the position unmoved); it commits only after the earlier batch did, so the position moves
/// 0 → 10 → 20 and never over a gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gated_writers_commit_spooled_batches_in_spool_order() {
    let (_pg, conninfo) = database().await;
    let (first, second) = two_spooled_batches(&conninfo).await;
    let gate = CommitGate::new(0, Duration::from_secs(600));
    let mut later = Writer::new(WriterConfig::new(&conninfo)).with_gate(gate.clone());
    let task = tokio::spawn(async move {
        let o = later
            .write_with_retry(&second, &CancellationToken::new())
            .await;
        (o, later.stats)
    });
    wait_idle_in_transaction(&conninfo, 1).await;
    assert_eq!(position(&conninfo).await, 0);
    assert_eq!(
        count(&conninfo, "SELECT count(*) FROM haproxy_raw_logs").await,
        0,
        "the later batch is not visible before its turn"
    );
    let mut earlier = Writer::new(WriterConfig::new(&conninfo)).with_gate(gate.clone());
    assert!(
        earlier
            .write_with_retry(&first, &CancellationToken::new())
            .await
            .is_committed()
    );
    let (o, stats) = task.await.unwrap();
    assert!(o.is_committed());
    assert_eq!(stats.out_of_turn, 0);
    assert_eq!(position(&conninfo).await, 20);
    assert_eq!(gate.position(), 20);
    assert_eq!(
        count(&conninfo, "SELECT count(*) FROM haproxy_raw_logs").await,
        15
    );
}

/// A writer whose turn does not come within the gate's wait rolls its transaction back (so an
/// earlier batch never waits on its locks), waits for its turn outside a transaction and then
/// writes its batch once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_out_of_turn_rolls_back_and_writes_once_after_its_turn() {
    let (_pg, conninfo) = database().await;
    let (first, second) = two_spooled_batches(&conninfo).await;
    let gate = CommitGate::new(0, Duration::from_millis(50));
    let rollbacks = "SELECT xact_rollback FROM pg_stat_database WHERE datname = current_database()";
    let before = count(&conninfo, rollbacks).await;
    let mut later = Writer::new(WriterConfig::new(&conninfo)).with_gate(gate.clone());
    let task = tokio::spawn(async move {
        let o = later
            .write_with_retry(&second, &CancellationToken::new())
            .await;
        (o, later.stats)
    });
    // Its COPY done and its transaction rolled back after the wait (the statistics are
    // flushed a little later; the bound only turns a hang into a failure).
    let t0 = std::time::Instant::now();
    while count(&conninfo, rollbacks).await <= before {
        assert!(t0.elapsed() < Duration::from_secs(60), "no rollback seen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(idle_in_transaction(&conninfo).await, 0);
    let mut earlier = Writer::new(WriterConfig::new(&conninfo)).with_gate(gate.clone());
    assert!(
        earlier
            .write_with_retry(&first, &CancellationToken::new())
            .await
            .is_committed()
    );
    let (o, stats) = task.await.unwrap();
    assert!(o.is_committed());
    assert!(stats.out_of_turn >= 1, "{stats:?}");
    assert_eq!(stats.batches, 1);
    assert_eq!(position(&conninfo).await, 20);
    assert_eq!(
        count(&conninfo, "SELECT count(*) FROM haproxy_raw_logs").await,
        15
    );
}
