//! Malformed datagrams are never dropped: each lands verbatim in haproxy_rejected_lines with
//! its reason, and the per-reason metrics agree with the table. (Own test binary: it installs
//! the process-wide metrics recorder.)

mod common;

use std::collections::HashMap;
use std::net::UdpSocket;

use common::*;
use suiftly_ingest::listener::BatchLimits;

fn counter_values(rendered: &str, name: &str) -> HashMap<String, u64> {
    rendered
        .lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| {
            let (series, v) = l.rsplit_once(' ')?;
            let reason = series
                .split("reason=\"")
                .nth(1)?
                .split('"')
                .next()?
                .to_string();
            Some((reason, v.parse::<f64>().ok()? as u64))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_lines_are_stored_verbatim_with_reason_and_counted() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).unwrap();

    let (_pg, conninfo) = database().await;
    let (running, addr) = listen(
        "[listener]\nname = \"bad\"\nkind = \"udp\"\naddress = \"127.0.0.1:0\"\nmax_datagram_bytes = 4000\nserver_id = 17\n",
        &conninfo,
        BatchLimits::default(),
    );
    let addr = addr.unwrap();

    let fixture = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fixtures/haproxy/malformed.log"
    ))
    .unwrap();
    let mut bad: Vec<Vec<u8>> = fixture
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| l.to_vec())
        .collect();
    assert!(bad.len() >= 35, "fixture has its bad lines");
    // Too big for the 4000-byte receive slot: kept (cut) as truncated_datagram.
    let mut big = b"<134>Nov 26 02:10:57 haproxy[1]: sf1 ".to_vec();
    big.extend(std::iter::repeat_n(b'9', 5000));
    // Valid line, but a week and a day old: outside retention.
    let old_ms = now_ms() - 8 * 24 * 3600 * 1000;
    let stale = format!(
        "sf1 {}.000 fe 1 17 2 2 5 - 0 - 1 - 10.0.0.1 200 1 0 0 0 0 0 1 -- /x",
        old_ms / 1000
    )
    .into_bytes();
    let good = format!(
        "sf1 {}.000 fe 1 17 2 2 5 - 0 - 1 - 10.0.0.1 200 1 0 0 0 0 0 1 -- /x",
        now_ms() / 1000
    )
    .into_bytes();
    // Parses, but PostgreSQL text cannot hold NUL: kept verbatim as invalid_text.
    let nul = format!(
        "sf1 {}.000 fe 1 17 2 2 5 - 0 - 1 - 10.0.0.1 200 1 0 0 0 0 0 1 -- /a\0b",
        now_ms() / 1000
    )
    .into_bytes();
    bad.push(nul);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    for l in &bad {
        sock.send_to(l, addr).unwrap();
    }
    sock.send_to(&big, addr).unwrap();
    sock.send_to(&stale, addr).unwrap();
    sock.send_to(&good, addr).unwrap();
    let total = bad.len() + 3; // + big, stale, good

    let client = suiftly_ingest::writer::connect(&conninfo).await.unwrap();
    wait_for_lines(&conninfo, total).await;
    let (l, w) = running.stop().await;
    assert_eq!(l.datagrams as usize, total);
    if w.rows != 1 {
        let rows = client
            .query(
                "SELECT status_code, path_prefix, host(client_ip) FROM haproxy_raw_logs",
                &[],
            )
            .await
            .unwrap();
        for r in rows {
            eprintln!(
                "unexpected row: {:?} {:?} {:?}",
                r.get::<_, i16>(0),
                r.get::<_, Option<String>>(1),
                r.get::<_, String>(2)
            );
        }
    }
    assert_eq!(w.rows, 1, "only the good line is a row");
    assert_eq!(w.rejected as usize, total - 1);

    let rows = client
        .query("SELECT reason, raw, listener, source_addr, error_offset FROM haproxy_rejected_lines ORDER BY id", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), total - 1);
    // Verbatim: every bad datagram is there byte for byte (the big one cut to the slot).
    let stored: Vec<Vec<u8>> = rows.iter().map(|r| r.get::<_, Vec<u8>>(1)).collect();
    bad.push(big[..4000].to_vec());
    bad.push(stale);
    let mut want = bad.clone();
    want.sort();
    let mut got = stored.clone();
    got.sort();
    assert_eq!(got, want);
    for r in &rows {
        assert_eq!(r.get::<_, &str>(2), "bad");
        assert!(
            r.get::<_, Option<String>>(3)
                .unwrap()
                .starts_with("127.0.0.1:")
        );
        let reason: &str = r.get(0);
        assert!(!reason.is_empty());
        if ![
            "truncated_datagram",
            "timestamp_out_of_range",
            "invalid_text",
        ]
        .contains(&reason)
        {
            assert!(
                r.get::<_, Option<i32>>(4).is_some(),
                "parse errors carry an offset"
            );
        }
    }
    let by_reason: HashMap<String, u64> = {
        let mut m = HashMap::new();
        for r in &rows {
            *m.entry(r.get::<_, String>(0)).or_insert(0) += 1;
        }
        m
    };
    assert_eq!(by_reason.get("truncated_datagram"), Some(&1));
    assert_eq!(by_reason.get("timestamp_out_of_range"), Some(&1));
    assert_eq!(by_reason.get("invalid_text"), Some(&1));
    // The metrics agree with the table, reason by reason.
    let rendered = handle.render();
    let counted = counter_values(&rendered, "suiftly_ingest_lines_rejected_total");
    assert_eq!(counted, by_reason, "metrics:\n{rendered}");
    assert!(
        rendered.contains("suiftly_ingest_rows_copied_total 1"),
        "{rendered}"
    );
}
