//! The live tail under load (issue 13; a benchmark, not a test): 1,000 concurrent
//! `GET /stats/live` clients (one per customer) while 20,000 lines/s are ingested over UDP,
//! against the real binary (`suiftly run`, the API in-process).
//!
//! `cargo bench --bench live_tail` (env: CLIENTS=1000, RATE=20000, SECS=30, PROBES=10).
//!
//! Measured:
//! - **line → event**: `PROBES` extra customers get only probe lines, one every 1.5 s each
//!   (staggered, so the ≤ 1 update/s per customer rate limit never holds one back); the
//!   latency is from the probe's `sendto` on loopback (the line is received within
//!   microseconds) to its stream delivering the provisional event whose numbers include it
//!   (client rule: settled + latest provisional). It covers the spool's fsync interval, the
//!   batch age, the COPY commit, the aggregator, the live feeder's 100 ms poll and the hub;
//! - **memory per stream**: the server's RSS (`/proc/<pid>/status`) with the clients
//!   connected and idle, minus before, divided by the clients;
//! - events delivered, lines stored vs sent, the server's RSS under load.

use std::collections::HashMap;
use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use suiftly_api::live::SseDecoder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/live/mod.rs"]
mod live;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// One client's view: settled requests so far + the latest provisional requests.
#[derive(Default)]
struct View {
    settled: i64,
    provisional: i64,
}

struct Probe {
    sent: Vec<Instant>,
    delivered: Vec<f64>,
}

async fn client(
    addr: std::net::SocketAddr,
    token: String,
    events: Arc<AtomicU64>,
    probe: Option<Arc<Mutex<Probe>>>,
    stop: Arc<AtomicBool>,
    ready: tokio::sync::mpsc::Sender<()>,
) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET /stats/live HTTP/1.0\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut dec = SseDecoder::default();
    let mut view = View::default();
    let mut buf = vec![0u8; 8192];
    let mut head = true;
    let mut pending: Vec<u8> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let n = match tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf)).await {
            Err(_) => continue,
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => n,
        };
        let mut chunk = &buf[..n];
        if head {
            pending.extend_from_slice(chunk);
            let Some(p) = pending.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            assert!(
                pending.starts_with(b"HTTP/1.1 200") || pending.starts_with(b"HTTP/1.0 200"),
                "{}",
                String::from_utf8_lossy(&pending)
            );
            head = false;
            let _ = ready.send(()).await;
            let rest = pending.split_off(p + 4);
            pending = rest;
            chunk = &pending;
        }
        let evs = dec.push(chunk);
        pending.clear();
        for e in evs {
            events.fetch_add(1, Ordering::Relaxed);
            let Some(p) = &probe else { continue };
            let v: serde_json::Value = serde_json::from_str(&e.data).unwrap_or_default();
            let sum = v["rows"]
                .as_array()
                .map(|r| r.iter().filter_map(|x| x["requests"].as_i64()).sum())
                .unwrap_or(0);
            match e.event.as_str() {
                "settled" => {
                    view.settled += sum;
                    view.provisional = 0;
                }
                "provisional" => view.provisional = sum,
                _ => {}
            }
            let total = (view.settled + view.provisional) as usize;
            let mut p = p.lock().unwrap();
            let now = Instant::now();
            while p.delivered.len() < total.min(p.sent.len()) {
                let i = p.delivered.len();
                let ms = now.duration_since(p.sent[i]).as_secs_f64() * 1e3;
                p.delivered.push(ms);
            }
        }
    }
}

fn main() {
    let clients = env("CLIENTS", 1000) as i32;
    let rate = env("RATE", 20_000);
    let secs = env("SECS", 30);
    let probes = env("PROBES", 10) as i32;
    let pg = pgcluster::PgCluster::temporary().expect("a PostgreSQL cluster must start");
    let dir = tempfile::tempdir().unwrap();
    let (udp, mport, aport, api) = (
        common::free_port(),
        common::free_port(),
        common::free_port(),
        common::free_port(),
    );
    let cfg = dir.path().join("suiftly.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = \"{}\"\n[metrics]\nlisten = \"127.0.0.1:{mport}\"\n[admin]\nlisten = \"127.0.0.1:{aport}\"\n\
             [api]\nlisten = \"127.0.0.1:{api}\"\nip_requests_per_second = 0\ncustomer_requests_per_second = 0\n\
             [[listener]]\nname = \"u\"\nkind = \"udp\"\naddress = \"127.0.0.1:{udp}\"\nframing = \"raw\"\npayload = \"sf1\"\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let mut child: Child = Command::new(env!("CARGO_BIN_EXE_suiftly"))
        .args(["--config", cfg.to_str().unwrap(), "run"])
        .env("DATABASE_URL", pg.connection_string())
        .env("SUIFTLY_JWT_SECRET", live::JWT_SECRET)
        .env_remove("SUIFTLY_OPERATOR_TOKEN")
        .env_remove("SUIFTLY_API_LISTEN")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let pid = child.id();
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", mport)).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "suiftly did not come up"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], api).into();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // Warm up: every customer once, so the server's steady state exists before measuring.
    // A probe customer's warm-up line is its line 0 (excluded from the latencies).
    let warm = Instant::now();
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    for c in 1..=clients + probes {
        let l = live::sf1(now_ms(), c, 2, 1, 1, 200, 100, 5);
        sender.send_to(l.as_bytes(), ("127.0.0.1", udp)).unwrap();
    }
    std::thread::sleep(Duration::from_secs(3));
    let rss_before = rss_kib(pid);
    let events = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let probe_state: HashMap<i32, Arc<Mutex<Probe>>> = (0..probes)
        .map(|i| {
            (
                clients + 1 + i,
                Arc::new(Mutex::new(Probe {
                    sent: vec![warm],
                    delivered: Vec::new(),
                })),
            )
        })
        .collect();
    let tokens: Vec<(i32, String)> = rt.block_on(async {
        let mut v = Vec::new();
        for c in 1..=clients + probes {
            v.push((
                c,
                live::session(live::JWT_SECRET, &pg.connection_string(), c).await,
            ));
        }
        v
    });
    let handles = rt.block_on(async {
        let (rtx, mut rrx) = tokio::sync::mpsc::channel(clients as usize + probes as usize);
        let mut hs = Vec::new();
        for (c, t) in &tokens {
            hs.push(tokio::spawn(client(
                addr,
                t.clone(),
                events.clone(),
                probe_state.get(c).cloned(),
                stop.clone(),
                rtx.clone(),
            )));
        }
        for _ in 0..tokens.len() {
            tokio::time::timeout(Duration::from_secs(120), rrx.recv())
                .await
                .expect("every client connects");
        }
        hs
    });
    std::thread::sleep(Duration::from_secs(3));
    let rss_streams = rss_kib(pid);
    let load_stop = Arc::new(AtomicBool::new(false));
    let sent_lines = Arc::new(AtomicU64::new(0));
    let load = {
        let (load_stop, sent_lines) = (load_stop.clone(), sent_lines.clone());
        std::thread::spawn(move || {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            let t0 = Instant::now();
            let mut n = 0u64;
            while !load_stop.load(Ordering::Relaxed) {
                let due = (t0.elapsed().as_secs_f64() * rate as f64) as u64;
                while n < due {
                    let c = (n % clients as u64) as i32 + 1;
                    let l = live::sf1(now_ms(), c, 2, 1, 1, 200, 100, 5);
                    let _ = s.send_to(l.as_bytes(), ("127.0.0.1", udp));
                    n += 1;
                }
                sent_lines.store(n, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    // Probes: each probe customer every 1.5 s, staggered; the view counts from the warm-up line.
    let start = Instant::now();
    let mut next: Vec<(Instant, i32)> = (0..probes)
        .map(|i| {
            (
                start + Duration::from_millis(1500 * i as u64 / probes.max(1) as u64),
                clients + 1 + i,
            )
        })
        .collect();
    let mut rss_load = 0;
    while start.elapsed() < Duration::from_secs(secs) {
        next.sort();
        let (at, c) = next[0];
        if let Some(d) = at.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
        probe_state[&c].lock().unwrap().sent.push(Instant::now());
        sender
            .send_to(
                live::sf1(now_ms(), c, 2, 1, 1, 200, 100, 5).as_bytes(),
                ("127.0.0.1", udp),
            )
            .unwrap();
        next[0].0 += Duration::from_millis(1500);
        rss_load = rss_load.max(rss_kib(pid));
    }
    load_stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    rt.block_on(async {
        for h in handles {
            let _ = h.await;
        }
    });
    let mut lat: Vec<f64> = probe_state
        .values()
        .flat_map(|p| {
            p.lock()
                .unwrap()
                .delivered
                .iter()
                .skip(1)
                .copied()
                .collect::<Vec<_>>()
        })
        .collect();
    let sent_probes: usize = probe_state
        .values()
        .map(|p| p.lock().unwrap().sent.len().saturating_sub(1))
        .sum();
    let stored: i64 = rt.block_on(async {
        let c = suiftly_ingest::writer::connect(&pg.connection_string())
            .await
            .unwrap();
        c.query_one("SELECT count(*) FROM haproxy_raw_logs", &[])
            .await
            .unwrap()
            .get(0)
    });
    let load_avg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("live tail: {clients} clients + {probes} probe clients, {rate} lines/s for {secs} s");
    println!(
        "  line -> provisional event: n={} (of {sent_probes} probes) p50={:.0} ms p99={:.0} ms max={:.0} ms",
        lat.len(),
        pct(&mut lat, 0.50),
        pct(&mut lat, 0.99),
        pct(&mut lat, 1.0)
    );
    println!(
        "  events delivered to clients: {} ({:.0}/s)",
        events.load(Ordering::Relaxed),
        events.load(Ordering::Relaxed) as f64 / secs as f64
    );
    let sent =
        sent_lines.load(Ordering::Relaxed) as i64 + (clients + probes) as i64 + sent_probes as i64;
    println!(
        "  lines sent {sent}, stored {stored} (lost {})",
        sent - stored
    );
    println!(
        "  server RSS: before streams {} KiB, {} idle streams {} KiB ({:.1} KiB per stream), peak under load {} KiB",
        rss_before,
        clients + probes,
        rss_streams,
        (rss_streams as f64 - rss_before as f64) / (clients + probes) as f64,
        rss_load
    );
    println!("  load average at the end: {}", load_avg.trim());
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let st = child.wait().unwrap();
    println!("  server stopped: {st}");
}
