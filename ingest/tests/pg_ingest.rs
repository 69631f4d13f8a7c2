//! Datagrams over real sockets into a real PostgreSQL, compared column by column.

mod common;

use std::net::{IpAddr, UdpSocket};
use std::time::Duration;

use common::*;
use suiftly_ingest::listener::{self, BatchLimits};

/// What one sf1 line should become.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    ts_ms: i64,
    customer_id: Option<i32>,
    path_prefix: Option<String>,
    config_hex: Option<i64>,
    network: i16,
    server_id: i16,
    service_type: i16,
    api_key_fp: i64,
    fe_type: i16,
    traffic_type: i16,
    event_type: i16,
    client_ip: IpAddr,
    key_metadata: Option<i16>,
    status_code: i16,
    bytes_sent: i64,
    time_total: i32,
    time_request: Option<i32>,
    time_queue: Option<i32>,
    time_connect: Option<i32>,
    time_response: Option<i32>,
    backend_id: Option<i16>,
    termination_state: Option<String>,
    repeat: i32,
}

/// Builds a varied set of lines (authenticated, denied, IPv6, -1 timers, NOSRV-like, long
/// path) with their expected rows.
fn cases(base_ms: i64) -> Vec<(String, Row)> {
    let mut out = Vec::new();
    for i in 0..40i64 {
        let ts_ms = base_ms + i * 7;
        let authed = i % 4 != 3;
        let v6 = i % 5 == 0;
        let aborted = i % 9 == 4;
        let ip: IpAddr = if v6 {
            format!("2001:db8::{:x}", i + 1).parse().unwrap()
        } else {
            format!("203.0.113.{}", i + 1).parse().unwrap()
        };
        let status: i16 = if !authed {
            401
        } else if i % 7 == 0 {
            503
        } else {
            200
        };
        let cid = authed.then_some(1000 + i as i32);
        let path = format!("/v{i}/sui.rpc.LedgerService/GetObject");
        let line = format!(
            "<134>Nov 26 02:10:57 haproxy[77]: sf1 {}.{:03} fe_grpc 1 17 2 2 {} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {}",
            ts_ms / 1000,
            ts_ms % 1000,
            cid.map_or("-".into(), |c| c.to_string()),
            if authed {
                format!("{:016x}", 0xdead_beef_0000_0000u64 + i as u64)
            } else {
                "-".into()
            },
            if authed {
                (-(i + 1)).to_string()
            } else {
                "-".into()
            },
            if authed {
                (40_000 + i).to_string()
            } else {
                "-".into()
            },
            if authed { "1" } else { "3" },
            if authed { "-" } else { "10" },
            ip,
            status,
            if aborted {
                format!("+{}", 100 + i)
            } else {
                (100 + i).to_string()
            },
            if aborted {
                "-1".to_string()
            } else {
                "0".to_string()
            },
            if aborted { "-1" } else { "0" },
            if aborted || !authed { "-1" } else { "1" },
            if aborted || !authed {
                "-1".to_string()
            } else {
                (i + 2).to_string()
            },
            10 + i,
            if authed { "1" } else { "-" },
            if aborted { "CR" } else { "--" },
            path,
        );
        let expected_event = if !authed {
            10
        } else if status == 503 {
            52
        } else {
            0
        };
        out.push((
            line,
            Row {
                ts_ms,
                customer_id: cid,
                path_prefix: Some(path[1..].chars().take(10).collect()),
                config_hex: authed.then_some((0xdead_beef_0000_0000u64 + i as u64) as i64),
                network: 1,
                server_id: 17,
                service_type: 2,
                api_key_fp: if authed { -(i + 1) } else { 0 },
                fe_type: 2,
                traffic_type: if authed { 1 } else { 3 },
                event_type: expected_event,
                client_ip: ip,
                key_metadata: authed.then_some((40_000 + i) as u16 as i16),
                status_code: status,
                bytes_sent: 100 + i,
                time_total: 10 + i as i32,
                time_request: (!aborted).then_some(0),
                time_queue: (!aborted).then_some(0),
                time_connect: (!aborted && authed).then_some(1),
                time_response: (!aborted && authed).then_some(i as i32 + 2),
                backend_id: Some(if authed { 1 } else { 0 }),
                termination_state: Some(if aborted { "CR" } else { "--" }.into()),
                repeat: 1,
            },
        ));
    }
    out
}

async fn stored_rows(conninfo: &str) -> Vec<Row> {
    let client = suiftly_ingest::writer::connect(conninfo).await.unwrap();
    client
        .query(
            "SELECT (extract(epoch from \"timestamp\") * 1000)::bigint, customer_id, path_prefix, config_hex, \
             network, server_id, service_type, api_key_fp, fe_type, traffic_type, event_type, \
             host(client_ip), key_metadata, status_code, bytes_sent, time_total, time_request, \
             time_queue, time_connect, time_response, backend_id, termination_state, repeat \
             FROM haproxy_raw_logs ORDER BY \"timestamp\"",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| Row {
            ts_ms: r.get(0),
            customer_id: r.get(1),
            path_prefix: r.get(2),
            config_hex: r.get(3),
            network: r.get(4),
            server_id: r.get(5),
            service_type: r.get(6),
            api_key_fp: r.get(7),
            fe_type: r.get(8),
            traffic_type: r.get(9),
            event_type: r.get(10),
            client_ip: r.get::<_, String>(11).parse().unwrap(),
            key_metadata: r.get(12),
            status_code: r.get(13),
            bytes_sent: r.get(14),
            time_total: r.get(15),
            time_request: r.get(16),
            time_queue: r.get(17),
            time_connect: r.get(18),
            time_response: r.get(19),
            backend_id: r.get(20),
            termination_state: r.get(21),
            repeat: r.get(22),
        })
        .collect()
}

fn assert_rows_equal(got: &[Row], want: &[Row]) {
    assert_eq!(got.len(), want.len(), "row count");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g, w, "row {i} differs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_datagrams_become_exact_rows() {
    let (_pg, conninfo) = database().await;
    let cfg = listener_config(
        "[listener]\nname = \"udp-test\"\nkind = \"udp\"\naddress = \"127.0.0.1:0\"\nframing = \"local\"\npayload = \"sf1\"\n",
    );
    let bound = listener::bind(&cfg).unwrap();
    let addr = bound.local_addr().unwrap();
    // Small batches so several transactions are exercised.
    let limits = BatchLimits {
        max_rows: 7,
        ..BatchLimits::default()
    };
    let running = start(&cfg, bound, &conninfo, limits);
    let cases = cases(now_ms() - 60_000);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    for (line, _) in &cases {
        sock.send_to(line.as_bytes(), addr).unwrap();
    }
    // Wait until the listener has seen every datagram, then stop in order.
    wait_for_lines(&conninfo, cases.len()).await;
    let (l, w) = running.stop().await;
    assert_eq!(l.datagrams, cases.len() as u64);
    assert_eq!(l.parsed, cases.len() as u64);
    assert_eq!(l.rejected, 0);
    assert_eq!(w.rows, cases.len() as u64);
    assert!(
        w.batches >= 6,
        "max_rows = 7 gives several batches, got {}",
        w.batches
    );
    let want: Vec<Row> = cases.into_iter().map(|c| c.1).collect();
    assert_rows_equal(&stored_rows(&conninfo).await, &want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_datagrams_become_exact_rows() {
    let (_pg, conninfo) = database().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ingest.sock");
    let (running, _) = listen(
        &format!(
            "[listener]\nname = \"unix-test\"\nkind = \"unix\"\naddress = \"{}\"\n",
            path.display()
        ),
        &conninfo,
        BatchLimits::default(),
    );
    let cases = cases(now_ms() - 30_000);
    let sock = std::os::unix::net::UnixDatagram::unbound().unwrap();
    for (line, _) in &cases {
        // The default max_dgram_qlen is small: retry when the queue is momentarily full.
        loop {
            match sock.send_to(line.as_bytes(), &path) {
                Ok(_) => break,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                Err(e) => panic!("{e}"),
            }
        }
    }
    wait_for_lines(&conninfo, cases.len()).await;
    let (l, w) = running.stop().await;
    assert_eq!(l.parsed, cases.len() as u64);
    assert_eq!(w.rows, cases.len() as u64);
    let want: Vec<Row> = cases.into_iter().map(|c| c.1).collect();
    assert_rows_equal(&stored_rows(&conninfo).await, &want);
    assert!(!path.exists(), "socket file removed on stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn senders_outside_the_allowlist_are_dropped_and_counted() {
    let (_pg, conninfo) = database().await;
    let (running, addr) = listen(
        "[listener]\nname = \"allow-test\"\nkind = \"udp\"\naddress = \"127.0.0.1:0\"\nallow = [\"10.0.0.0/8\"]\n",
        &conninfo,
        BatchLimits::default(),
    );
    let addr = addr.unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (line, _) = &cases(now_ms())[0];
    for _ in 0..5 {
        sock.send_to(line.as_bytes(), addr).unwrap();
    }
    // No rows can appear; the stop drains the socket, so all five are seen by then.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (l, w) = running.stop().await;
    assert_eq!(l.datagrams, 5);
    assert_eq!(l.denied, 5);
    assert_eq!(l.parsed, 0);
    assert_eq!(w.rows + w.rejected, 0);
    assert!(stored_rows(&conninfo).await.is_empty());
}

/// Native storage: the ingestor's maintenance creates hourly partitions ahead and drops those
/// past retention. On a hypertable (the timescaledb pass of the matrix) that upkeep is off and
/// retention is TimescaleDB's policy, set from the configured retention instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_are_created_ahead_and_dropped_past_retention() {
    let (_pg, conninfo) = database().await;
    let client = suiftly_ingest::writer::connect(&conninfo).await.unwrap();
    if storage_mode() == "timescaledb" {
        return hypertable_upkeep_is_retention_from_configuration(&conninfo).await;
    }
    assert_eq!(
        suiftly_ingest::db::storage(&client).await.unwrap(),
        suiftly_ingest::db::Storage::Native
    );
    let (made, dropped) =
        suiftly_ingest::db::maintain_once(&conninfo, Duration::from_secs(7 * 24 * 3600), 6)
            .await
            .unwrap();
    assert_eq!((made, dropped), (8, 0), "this hour - 1 ..= this hour + 6");
    let hours = suiftly_ingest::db::existing_partitions(&client)
        .await
        .unwrap();
    assert_eq!(hours.len(), 8);
    // An old partition (8 days ago) is dropped by the next pass.
    let old = now_ms() * 1000 / suiftly_ingest::db::US_PER_HOUR - 8 * 24;
    suiftly_ingest::db::ensure_partitions(&client, [old])
        .await
        .unwrap();
    let (_, dropped) =
        suiftly_ingest::db::maintain_once(&conninfo, Duration::from_secs(7 * 24 * 3600), 6)
            .await
            .unwrap();
    assert_eq!(dropped, 1);
    assert!(
        !suiftly_ingest::db::existing_partitions(&client)
            .await
            .unwrap()
            .contains(&old)
    );
}

/// The storage-mode matrix is real: with `SUIFTLY_TEST_STORAGE=timescaledb` migration V1 took
/// the hypertable branch and V26 configured it; without, native partitions (also where
/// TimescaleDB is installed but not preloaded, as on a developer's machine).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_follows_the_test_matrix() {
    let (_pg, conninfo) = database().await;
    let client = suiftly_ingest::writer::connect(&conninfo).await.unwrap();
    let info = suiftly_ingest::timescale::check(&client).await.unwrap();
    let partitioned: bool = client
        .query_one(
            "SELECT relkind = 'p' FROM pg_class WHERE relname = 'haproxy_raw_logs'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    if storage_mode() == "timescaledb" {
        assert_eq!(info.storage, suiftly_ingest::db::Storage::Timescale);
        assert!(info.preloaded && info.extension.is_some(), "{info:?}");
        assert!(!partitioned);
        let row = client
            .query_one(
                "SELECT d.time_interval = interval '1 hour', \
                        (SELECT string_agg(attname::text, ',' ORDER BY segmentby_column_index) \
                           FROM timescaledb_information.compression_settings \
                          WHERE hypertable_name = 'haproxy_raw_logs' AND segmentby_column_index IS NOT NULL), \
                        (SELECT (config->>'compress_after')::interval = interval '6 hours' \
                           FROM timescaledb_information.jobs \
                          WHERE proc_name = 'policy_compression' AND hypertable_name = 'haproxy_raw_logs') \
                 FROM timescaledb_information.dimensions d WHERE d.hypertable_name = 'haproxy_raw_logs'",
                &[],
            )
            .await
            .unwrap();
        assert!(row.get::<_, bool>(0), "1-hour chunks");
        assert_eq!(
            row.get::<_, Option<String>>(1).as_deref(),
            Some("server_id,service_type,network")
        );
        assert_eq!(
            row.get::<_, Option<bool>>(2),
            Some(true),
            "compression after 6 h"
        );
    } else {
        assert_eq!(info.storage, suiftly_ingest::db::Storage::Native);
        assert!(!info.preloaded, "{info:?}");
        assert!(partitioned);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_senders_lose_nothing() {
    let (_pg, conninfo) = database().await;
    let cfg = listener_config(
        "[listener]\nname = \"many\"\nkind = \"udp\"\naddress = \"127.0.0.1:0\"\nframing = \"local\"\npayload = \"sf1\"\n",
    );
    let bound = listener::bind(&cfg).unwrap();
    let addr = bound.local_addr().unwrap();
    // Root may exceed net.core.rmem_max with SO_RCVBUFFORCE; others get what the sysctl allows.
    if unsafe { libc::geteuid() } == 0 {
        assert!(
            bound.effective_rcvbuf >= 8 * 1024 * 1024,
            "8 MiB granted to root, got {}",
            bound.effective_rcvbuf
        );
    }
    let running = start(
        &cfg,
        bound,
        &conninfo,
        BatchLimits {
            max_rows: 500,
            ..BatchLimits::default()
        },
    );
    let senders = 8;
    let per_sender = 1_000;
    let base = now_ms() - 10_000;
    let threads: Vec<_> = (0..senders)
        .map(|s| {
            std::thread::spawn(move || {
                let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
                for i in 0..per_sender {
                    let ts = base + i as i64;
                    let line = format!(
                        "<134>Nov 26 02:10:57 haproxy[1]: sf1 {}.{:03} fe 1 17 2 2 {} - {i} - 1 - 10.0.{s}.1 200 10 0 0 1 2 3 1 -- /s{s}",
                        ts / 1000,
                        ts % 1000,
                        s + 1,
                    );
                    sock.send_to(line.as_bytes(), addr).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    wait_for_lines(&conninfo, senders * per_sender).await;
    let (l, w) = running.stop().await;
    assert_eq!(l.parsed as usize, senders * per_sender);
    assert_eq!(w.rows as usize, senders * per_sender);
    let client = suiftly_ingest::writer::connect(&conninfo).await.unwrap();
    // Each sender's lines arrived exactly once: distinct fingerprints 0..per_sender per customer.
    let rows = client
        .query(
            "SELECT customer_id, count(*), count(DISTINCT api_key_fp) FROM haproxy_raw_logs GROUP BY 1 ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), senders);
    for (s, r) in rows.iter().enumerate() {
        assert_eq!(r.get::<_, Option<i32>>(0), Some(s as i32 + 1));
        assert_eq!(r.get::<_, i64>(1), per_sender as i64);
        assert_eq!(r.get::<_, i64>(2), per_sender as i64);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_frames_become_exact_rows_with_either_framing() {
    use tokio::io::AsyncWriteExt;
    let (_pg, conninfo) = database().await;
    let (running, addr) = listen(
        "[listener]\nname = \"tcp-test\"\nkind = \"tcp\"\naddress = \"127.0.0.1:0\"\nmax_datagram_bytes = 2000\n",
        &conninfo,
        BatchLimits {
            max_rows: 9,
            ..BatchLimits::default()
        },
    );
    let addr = addr.unwrap();
    let cases = cases(now_ms() - 20_000);
    // Two connections: one octet-counted (RFC 6587 §3.4.1), one LF-terminated (what HAProxy
    // 2.6 rings send), each written in awkward chunk sizes.
    let (first, second) = cases.split_at(cases.len() / 2);
    let mut stream: Vec<u8> = Vec::new();
    for (line, _) in first {
        stream.extend_from_slice(format!("{} {line}", line.len()).as_bytes());
    }
    // An oversized frame (3000 > 2000 bytes) is cut, stored as truncated, and the stream goes on.
    let big = format!("<134>1 {}", "x".repeat(2993));
    stream.extend_from_slice(format!("{} {big}", big.len()).as_bytes());
    let mut a = tokio::net::TcpStream::connect(addr).await.unwrap();
    for chunk in stream.chunks(37) {
        a.write_all(chunk).await.unwrap();
    }
    let mut b = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut lf: Vec<u8> = Vec::new();
    for (line, _) in second {
        lf.extend_from_slice(line.as_bytes());
        lf.push(b'\n');
    }
    for chunk in lf.chunks(101) {
        b.write_all(chunk).await.unwrap();
    }
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
    wait_for_lines(&conninfo, cases.len() + 1).await;
    let (l, w) = running.stop().await;
    assert_eq!(l.parsed, cases.len() as u64);
    assert_eq!(w.rows, cases.len() as u64);
    assert_eq!(w.rejected, 1, "the oversized frame");
    let want: Vec<Row> = cases.into_iter().map(|c| c.1).collect();
    assert_rows_equal(&stored_rows(&conninfo).await, &want);
    let client = suiftly_ingest::writer::connect(&conninfo).await.unwrap();
    let r = client
        .query_one(
            "SELECT reason, length(raw) FROM haproxy_rejected_lines",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(r.get::<_, &str>(0), "truncated_datagram");
    assert_eq!(r.get::<_, i32>(1), 2000);
}

/// Retention policies on the hypertable, as (drop_after in hours, schedule in minutes).
async fn retention_policies(client: &tokio_postgres::Client) -> Vec<(f64, f64)> {
    client
        .query(
            "SELECT (extract(epoch FROM (config->>'drop_after')::interval) / 3600)::float8, \
                    (extract(epoch FROM schedule_interval) / 60)::float8 \
             FROM timescaledb_information.jobs \
             WHERE proc_name = 'policy_retention' AND hypertable_name = 'haproxy_raw_logs'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

async fn hypertable_upkeep_is_retention_from_configuration(conninfo: &str) {
    use suiftly_ingest::timescale::{RetentionPolicy, apply_retention};
    let mut client = suiftly_ingest::writer::connect(conninfo).await.unwrap();
    // V1 left its hard-coded 7 days; the first pass sets the configured 48 hours.
    let (made, dropped) =
        suiftly_ingest::db::maintain_once(conninfo, Duration::from_secs(48 * 3600), 6)
            .await
            .unwrap();
    assert_eq!(
        (made, dropped),
        (0, 0),
        "no partition upkeep on a hypertable"
    );
    assert_eq!(retention_policies(&client).await, vec![(48.0, 60.0)]);
    assert_eq!(
        apply_retention(&mut client, Duration::from_secs(48 * 3600))
            .await
            .unwrap(),
        RetentionPolicy::Unchanged
    );
    // A row 3 days old (older than 48 h, inside V1's 7 days) and one from now.
    let old_us = now_ms() * 1000 - 72 * suiftly_ingest::db::US_PER_HOUR;
    for ts in [old_us, now_ms() * 1000] {
        client
            .execute(
                "INSERT INTO haproxy_raw_logs (\"timestamp\", network, server_id, service_type, api_key_fp, \
                 fe_type, traffic_type, event_type, client_ip, status_code, bytes_sent, time_total) \
                 VALUES (to_timestamp($1::float8 / 1e6), 1, 1, 1, 0, 1, 1, 1, '10.0.0.1', 200, 1, 1)",
                &[&(ts as f64)],
            )
            .await
            .unwrap();
    }
    // Still no native partition: the chunks are TimescaleDB's.
    assert!(
        suiftly_ingest::db::existing_partitions(&client)
            .await
            .unwrap()
            .is_empty()
    );
    let native: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_class WHERE relname LIKE 'haproxy\\_raw\\_logs\\_p%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(native, 0);
    // The policy job, run by hand, drops the old chunk and keeps the current one.
    let job: i32 = client
        .query_one(
            "SELECT job_id FROM timescaledb_information.jobs \
             WHERE proc_name = 'policy_retention' AND hypertable_name = 'haproxy_raw_logs'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    client
        .batch_execute(&format!("CALL run_job({job})"))
        .await
        .unwrap();
    let left: Vec<i64> = client
        .query(
            "SELECT (extract(epoch FROM \"timestamp\") * 1e6)::int8 FROM haproxy_raw_logs",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(left.len(), 1, "the 3-day-old row is gone, the new one kept");
    assert!(left[0] > old_us);
    // A longer configured retention replaces the policy (one job, 10 days).
    assert_eq!(
        apply_retention(&mut client, Duration::from_secs(240 * 3600))
            .await
            .unwrap(),
        RetentionPolicy::Set
    );
    assert_eq!(retention_policies(&client).await, vec![(240.0, 60.0)]);
}

/// Two ingestors starting at once on a fresh database: one applies the migrations, the other
/// waits on the migration lock and finds nothing left (refinery alone would run V1 twice and
/// fail half-way). In the timescaledb pass V1's hypertable branch is among them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_migrations_at_once_apply_each_version_once() {
    let cluster = tokio::task::spawn_blocking(pgcluster::PgCluster::temporary)
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("cannot start the test postgresql: {e}"));
    let conninfo = cluster.connection_string();
    let mut a = suiftly_ingest::writer::connect(&conninfo).await.unwrap();
    let mut b = suiftly_ingest::writer::connect(&conninfo).await.unwrap();
    let (ra, rb) = tokio::join!(
        suiftly_ingest::db::migrate(&mut a),
        suiftly_ingest::db::migrate(&mut b)
    );
    let (mut ra, rb) = (ra.unwrap(), rb.unwrap());
    assert!(
        ra.is_empty() || rb.is_empty(),
        "one of them applied everything: {ra:?} / {rb:?}"
    );
    ra.extend(rb);
    assert!(ra.contains(&1) && ra.contains(&26), "{ra:?}");
    let mut dedup = ra.clone();
    dedup.dedup();
    assert_eq!(dedup, ra, "each version applied once");
    let storage = suiftly_ingest::timescale::check(&a).await.unwrap();
    eprintln!("storage: {storage}");
}
