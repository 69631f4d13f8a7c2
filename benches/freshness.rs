//! Freshness: how long until a line received now is visible through operator SQL (live
//! windows + settled tables), measured end to end against the real binary.
//!
//! `cargo bench --bench freshness` (env: PROBES=200, LOAD=<background lines/s, default 0>).
//! Each probe sends one sf1 line tagged with server id 4093 over UDP, then polls
//! `POST /admin/sql` every 5 ms until the tagged count has grown; the latency includes the
//! spool fsync interval (100 ms), the batch age (200 ms), the COPY commit, the DataFusion
//! partial and the query itself. Prints p50/p90/p99/max.

use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[path = "../tests/common/mod.rs"]
mod common;
use common::{Suiftly, free_port, http};

fn line(server_id: u16) -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    format!(
        "sf1 {}.{:03} fe 1 {server_id} 2 2 7 - 0 - 1 0 10.1.2.3 200 10 0 0 1 2 5 1 -- /v1",
        ms / 1000,
        ms % 1000
    )
}

fn main() {
    // `cargo bench` passes --bench; nothing to filter here.
    let probes: usize = std::env::var("PROBES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let load: u64 = std::env::var("LOAD")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let pg = pgcluster::PgCluster::temporary().expect("a PostgreSQL cluster must start");
    let dir = tempfile::tempdir().unwrap();
    let (udp, mport, aport) = (free_port(), free_port(), free_port());
    let cfg = dir.path().join("suiftly.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = \"{}\"\n[metrics]\nlisten = \"127.0.0.1:{mport}\"\n[admin]\nlisten = \"127.0.0.1:{aport}\"\n\
             [[listener]]\nname = \"u\"\nkind = \"udp\"\naddress = \"127.0.0.1:{udp}\"\nframing = \"raw\"\npayload = \"sf1\"\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let mut suiftly = Suiftly::new(cfg, pg.connection_string(), mport, aport);
    suiftly.start();
    let token = std::fs::read_to_string(dir.path().join("data/operator-token")).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let bg = (load > 0).then(|| {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            let t0 = Instant::now();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let due = (t0.elapsed().as_secs_f64() * load as f64) as u64;
                while n < due {
                    let _ = s.send_to(line(17).as_bytes(), ("127.0.0.1", udp));
                    n += 1;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    });
    let q = serde_json::json!({
        "sql": "SELECT (SELECT coalesce(sum(request_count), 0) FROM live_infra_per_min WHERE server_id = 4093) + \
                (SELECT coalesce(sum(request_count), 0) FROM infra_per_min WHERE server_id = 4093) AS n"
    })
    .to_string();
    let count = || -> i64 {
        let (code, body) = http(aport, "POST", "/admin/sql", Some(&token), Some(&q));
        assert_eq!(code, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v[0]["n"].as_i64().unwrap_or(0)
    };
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut lat = Vec::with_capacity(probes);
    let mut query_ms = Vec::new();
    for k in 0..probes {
        let sent = Instant::now();
        s.send_to(line(4093).as_bytes(), ("127.0.0.1", udp))
            .unwrap();
        loop {
            let q0 = Instant::now();
            let n = count();
            query_ms.push(q0.elapsed().as_secs_f64() * 1e3);
            if n > k as i64 {
                break;
            }
            assert!(
                sent.elapsed() < Duration::from_secs(30),
                "probe {k} never became visible"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        lat.push(sent.elapsed().as_secs_f64() * 1e3);
        // Spread probes over batch phases.
        std::thread::sleep(Duration::from_millis(37));
    }
    stop.store(true, Ordering::Relaxed);
    if let Some(b) = bg {
        b.join().unwrap();
    }
    suiftly.stop();
    lat.sort_by(f64::total_cmp);
    query_ms.sort_by(f64::total_cmp);
    let pct = |v: &[f64], p: f64| v[((v.len() as f64 * p) as usize).min(v.len() - 1)];
    println!(
        "freshness (background load {load} lines/s, {probes} probes): p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms; one SQL poll p50 {:.1} ms",
        pct(&lat, 0.5),
        pct(&lat, 0.9),
        pct(&lat, 0.99),
        lat[lat.len() - 1],
        pct(&query_ms, 0.5)
    );
}
