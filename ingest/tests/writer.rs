//! The writer's failure paths against a real PostgreSQL: a row the database refuses, a retry
//! after a lost COMMIT reply, and a database that goes away and comes back.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::*;
use suiftly_ingest::batch::{RawBatchBuilder, WriteBatch};
use suiftly_ingest::listener::BatchLimits;
use suiftly_ingest::writer::{Writer, WriterConfig, Written};
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
