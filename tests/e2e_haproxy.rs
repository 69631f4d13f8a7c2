//! End to end: real HTTP requests through a real HAProxy (the shipped docs/haproxy/suiftly.cfg
//! with ports and paths substituted) → sf1 syslog over UDP → the `suiftly run` binary → rows
//! in a real PostgreSQL, checked request by request.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pgcluster::PgCluster;

struct Guard(Child);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn haproxy_binary() -> PathBuf {
    for p in [
        "/usr/sbin/haproxy",
        "/usr/local/sbin/haproxy",
        "/usr/bin/haproxy",
    ] {
        if Path::new(p).exists() {
            return p.into();
        }
    }
    panic!("haproxy not found: install it with `apt-get install haproxy` (.ci/run does)");
}

/// A tiny HTTP/1.1 origin: `/<anything>?status=S&bytes=B&sleep_ms=M` answers status S with a
/// body of B bytes after M ms, then closes.
fn spawn_backend() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { continue };
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match c.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).to_string();
                let target = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                let q: HashMap<String, String> = target
                    .split_once('?')
                    .map(|(_, q)| q)
                    .unwrap_or("")
                    .split('&')
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                let status: u16 = q.get("status").and_then(|s| s.parse().ok()).unwrap_or(200);
                let bytes: usize = q.get("bytes").and_then(|s| s.parse().ok()).unwrap_or(10);
                if let Some(ms) = q.get("sleep_ms").and_then(|s| s.parse().ok()) {
                    std::thread::sleep(Duration::from_millis(ms));
                }
                let body = vec![b'x'; bytes];
                let resp = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: {bytes}\r\nConnection: close\r\n\r\n"
                );
                let _ = c.write_all(resp.as_bytes());
                let _ = c.write_all(&body);
            });
        }
    });
    port
}

/// Sends one request, returns (status, total bytes received).
fn request(port: u16, path: &str, key: Option<&str>) -> (u16, usize) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let key_hdr = key
        .map(|k| format!("X-API-Key: {k}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: test\r\n{key_hdr}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let status = String::from_utf8_lossy(&resp)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, resp.len())
}

struct Key {
    key: &'static str,
    customer_id: i32,
    config_hex: u64,
    fp: i64,
    metadata: u16,
}

/// The config words are layout-1 words (docs/haproxy/FORMAT.md) of active grpc keys, so the
/// shipped config serves them (the key letters do not matter to HAProxy; the word's service
/// type does). `config_words_are_valid` checks them with the vault crate.
const KEYS: &[Key] = &[
    Key {
        key: "SAECAGBCF0GRYR341VCNXN4EDRVTWUIODBYV5",
        customer_id: 12345,
        config_hex: 0x1000_7d00_07d0_0230, // enterprise grpc, 2000 r/s
        fp: 16801928,
        metadata: 10496,
    },
    Key {
        key: "S3253536HAMVI6O65DDGSGZ7BAY4LUEO5WALR",
        customer_id: 2147483647,
        config_hex: 0x1000_3e80_01f4_1220, // pro grpc + burst, 500 / 1000 r/s
        fp: -558375432,
        metadata: 4608,
    },
    Key {
        key: "R7767777GAF3VVOD0HJLLFTR9R3T6CFHE7MUY",
        customer_id: 42,
        config_hex: 0x1000_0640_0064_0210, // starter grpc, 100 r/s
        fp: -4,
        metadata: 10496,
    },
];

#[test]
fn config_words_are_valid() {
    for k in KEYS {
        let w = suiftly_vault::ConfigWord::decode(k.config_hex).unwrap();
        assert_eq!(w.state, suiftly_vault::KeyState::Active);
        assert_eq!(w.service_type, 2, "the shipped frontend is grpc");
        assert!(w.guaranteed_rps >= 100, "36 requests never hit the limit");
    }
}

#[test]
fn http_requests_through_haproxy_become_rows() {
    e2e(Transport::Udp);
}

/// The same through a HAProxy `ring` forwarding over TCP (docs/haproxy/suiftly-ring.cfg).
#[test]
fn http_requests_through_a_haproxy_ring_over_tcp_become_rows() {
    e2e(Transport::RingTcp);
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Transport {
    Udp,
    RingTcp,
}

fn e2e(transport: Transport) {
    let haproxy = haproxy_binary();
    let tmp = tempfile::tempdir().unwrap();
    let pg = PgCluster::temporary().unwrap_or_else(|e| panic!("cannot start test postgresql: {e}"));
    let backend = spawn_backend();
    let fe_port = free_tcp_port();
    let udp_port = if transport == Transport::Udp {
        free_udp_port()
    } else {
        free_tcp_port()
    };
    let metrics_port = free_tcp_port();

    // --- the ingestor, as an operator runs it ---------------------------------------------
    let cfg_path = tmp.path().join("suiftly.toml");
    std::fs::write(
        &cfg_path,
        format!(
            "data_dir = \"{}\"\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n[batch]\nmax_age_ms = 50\n\
             [[listener]]\nname = \"haproxy\"\nkind = \"{kind}\"\naddress = \"127.0.0.1:{udp_port}\"\nframing = \"{framing}\"\npayload = \"sf1\"\n",
            tmp.path().join("data").display(),
            kind = if transport == Transport::Udp { "udp" } else { "tcp" },
            framing = if transport == Transport::Udp { "local" } else { "rfc5424" },
        ),
    )
    .unwrap();
    let suiftly = Command::new(env!("CARGO_BIN_EXE_suiftly"))
        .env("SUIFTLY_ADMIN_LISTEN", "127.0.0.1:0")
        .env("SUIFTLY_API_LISTEN", "127.0.0.1:0")
        .args(["--config", cfg_path.to_str().unwrap(), "run"])
        .env("DATABASE_URL", pg.connection_string())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut suiftly = Guard(suiftly);
    wait_until("suiftly metrics endpoint", Duration::from_secs(60), || {
        TcpStream::connect(("127.0.0.1", metrics_port)).is_ok()
    });

    // --- HAProxy with the shipped snippet ---------------------------------------------------
    let map_path = tmp.path().join("suiftly-keys.map");
    let mut map = String::new();
    for k in KEYS {
        map += &format!(
            "{} {},{:016x},{},{}\n",
            k.key, k.customer_id, k.config_hex, k.fp, k.metadata
        );
    }
    std::fs::write(&map_path, map).unwrap();
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/haproxy/suiftly.cfg"
    ))
    .unwrap();
    let shipped = match transport {
        Transport::Udp => shipped,
        Transport::RingTcp => {
            let ring = std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/docs/haproxy/suiftly-ring.cfg"
            ))
            .unwrap();
            let udp_line = "    log 127.0.0.1:5514 len 65535 format local local0\n";
            assert!(
                shipped.contains(udp_line),
                "the shipped config has the UDP log line"
            );
            shipped.replace(udp_line, "    log ring@suiftly len 65535 local0\n")
                + &ring.replace("127.0.0.1:6514", "127.0.0.1:5514")
        }
    };
    let cfg = shipped
        .replace("127.0.0.1:5514", &format!("127.0.0.1:{udp_port}"))
        .replace("127.0.0.1:8443", &format!("127.0.0.1:{fe_port}"))
        .replace("127.0.0.1:8444", &format!("127.0.0.1:{}", free_tcp_port()))
        .replace("127.0.0.1:8445", &format!("127.0.0.1:{}", free_tcp_port()))
        .replace("/etc/haproxy/suiftly-keys.map", map_path.to_str().unwrap())
        .replace(
            "/run/haproxy/admin.sock",
            tmp.path().join("admin.sock").to_str().unwrap(),
        )
        // Every server of the shipped backend points at the test origin.
        .replace("127.0.0.1:9001", &format!("127.0.0.1:{backend}"))
        .replace("127.0.0.1:9002", &format!("127.0.0.1:{backend}"))
        .replace("127.0.0.1:9003", &format!("127.0.0.1:{backend}"))
        .replace("127.0.0.1:9101", &format!("127.0.0.1:{backend}"));
    assert_ne!(cfg, shipped);
    let hcfg = tmp.path().join("haproxy.cfg");
    std::fs::write(&hcfg, cfg).unwrap();
    let check = Command::new(&haproxy)
        .args(["-c", "-f", hcfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "haproxy -c: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let hp = Command::new(&haproxy)
        .args(["-db", "-f", hcfg.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _hp = Guard(hp);
    wait_until("haproxy frontend", Duration::from_secs(20), || {
        TcpStream::connect(("127.0.0.1", fe_port)).is_ok()
    });

    // --- traffic --------------------------------------------------------------------------
    struct Sent {
        path: String,
        key: Option<usize>,
        unknown_key: bool,
        status: u16,
        received: usize,
        body: usize,
        sleep_ms: u64,
    }
    let mut sent = Vec::new();
    let n = 36;
    for i in 0..n {
        let (key, unknown) = match i % 6 {
            4 => (None, false),
            5 => (None, true),
            k => (Some(k % KEYS.len()), false),
        };
        let status = [200, 200, 404, 500, 200, 200][i % 6];
        let body = 100 + i * 37;
        let sleep_ms = if i % 6 == 1 { 25 } else { 0 };
        // The path prefix (first 10 chars after '/') identifies the request: "r00/status".
        let path = format!("/r{i:02}/x?status={status}&bytes={body}&sleep_ms={sleep_ms}");
        let k = if unknown {
            Some("GZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ")
        } else {
            key.map(|k| KEYS[k].key)
        };
        let (got_status, received) = request(fe_port, &path, k);
        sent.push(Sent {
            path,
            key,
            unknown_key: unknown,
            status: got_status,
            received,
            body,
            sleep_ms,
        });
    }

    // --- wait for the rows, then stop the ingestor gracefully -------------------------------
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let conninfo = pg.connection_string();
    let client = rt
        .block_on(suiftly_ingest::writer::connect(&conninfo))
        .unwrap();
    wait_until("rows in postgresql", Duration::from_secs(30), || {
        let c: i64 = rt
            .block_on(client.query_one("SELECT count(*) FROM haproxy_raw_logs", &[]))
            .map(|r| r.get(0))
            .unwrap_or(0);
        c as usize > n
    });
    // SAFETY: plain kill(2) on our child's pid.
    unsafe { libc::kill(suiftly.0.id() as i32, libc::SIGTERM) };
    let status = suiftly.0.wait().unwrap();
    assert!(status.success(), "suiftly run exited with {status}");

    let rows = rt
        .block_on(client.query(
            "SELECT path_prefix, customer_id, config_hex, api_key_fp, key_metadata, network, server_id, \
             service_type, fe_type, traffic_type, event_type, host(client_ip), status_code, bytes_sent, \
             time_total, time_request, time_queue, time_connect, time_response, backend_id, \
             termination_state, repeat, (extract(epoch from now() - \"timestamp\"))::float8 \
             FROM haproxy_raw_logs",
            &[],
        ))
        .unwrap();
    // The readiness probe above opened one connection and closed it without a request:
    // HAProxy logs that too (no `dontlognull`), and it must be stored, not lost.
    assert_eq!(
        rows.len(),
        n + 1,
        "exactly one row per request plus the probe connection"
    );
    let probe: Vec<_> = rows
        .iter()
        .filter(|r| r.get::<_, Option<String>>(0).is_none())
        .collect();
    assert_eq!(probe.len(), 1, "one row without a path: the probe");
    assert_eq!(probe[0].get::<_, Option<i32>>(1), None);
    assert_eq!(probe[0].get::<_, i16>(9), 3, "unauthenticated -> denied");
    assert_eq!(
        probe[0].get::<_, Option<String>>(20).as_deref(),
        Some("CR"),
        "client closed during request"
    );
    let rows: Vec<_> = rows
        .iter()
        .filter(|r| r.get::<_, Option<String>>(0).is_some())
        .collect();
    let rejected: i64 = rt
        .block_on(client.query_one("SELECT count(*) FROM haproxy_rejected_lines", &[]))
        .unwrap()
        .get(0);
    assert_eq!(rejected, 0);
    let by_prefix: HashMap<String, &tokio_postgres::Row> =
        rows.iter().map(|r| (r.get::<_, String>(0), *r)).collect();
    assert_eq!(by_prefix.len(), n);
    for (i, s) in sent.iter().enumerate() {
        // `path` excludes the query string.
        let prefix: String = s.path[1..]
            .split('?')
            .next()
            .unwrap()
            .chars()
            .take(10)
            .collect();
        let r = by_prefix
            .get(&prefix)
            .unwrap_or_else(|| panic!("no row for {}", s.path));
        let ctx = format!("request {i} {}", s.path);
        assert_eq!(r.get::<_, i16>(5), 1, "{ctx}: network");
        assert_eq!(r.get::<_, i16>(6), 17, "{ctx}: server_id");
        assert_eq!(r.get::<_, i16>(7), 2, "{ctx}: service_type");
        assert_eq!(r.get::<_, i16>(8), 2, "{ctx}: fe_type");
        assert_eq!(r.get::<_, String>(11), "127.0.0.1", "{ctx}: client_ip");
        assert_eq!(r.get::<_, i16>(12) as u16, s.status, "{ctx}: status");
        assert_eq!(r.get::<_, i32>(21), 1, "{ctx}: repeat");
        let age: f64 = r.get(22);
        assert!(
            (0.0..120.0).contains(&age),
            "{ctx}: timestamp is now-ish, age {age}s"
        );
        let bytes = r.get::<_, i64>(13) as usize;
        let time_total = r.get::<_, i32>(14);
        assert!(time_total >= 0, "{ctx}");
        match s.key {
            Some(k) => {
                let key = &KEYS[k];
                assert_eq!(
                    r.get::<_, Option<i32>>(1),
                    Some(key.customer_id),
                    "{ctx}: customer_id"
                );
                assert_eq!(
                    r.get::<_, Option<i64>>(2),
                    Some(key.config_hex as i64),
                    "{ctx}: config_hex"
                );
                assert_eq!(r.get::<_, i64>(3), key.fp, "{ctx}: api_key_fp");
                assert_eq!(
                    r.get::<_, Option<i16>>(4),
                    Some(key.metadata as i16),
                    "{ctx}: key_metadata"
                );
                assert_eq!(r.get::<_, i16>(9), 1, "{ctx}: traffic_type guaranteed");
                let want_event = if s.status == 500 { 50 } else { 0 };
                assert_eq!(r.get::<_, i16>(10), want_event, "{ctx}: event_type");
                // Proxied: HAProxy counts the origin's response (head + body).
                assert!(
                    bytes > s.body && bytes <= s.received,
                    "{ctx}: bytes {bytes} vs body {} / received {}",
                    s.body,
                    s.received
                );
                assert!(r.get::<_, Option<i32>>(18).is_some(), "{ctx}: Tr present");
                assert!(r.get::<_, Option<i32>>(17).is_some(), "{ctx}: Tc present");
                if s.sleep_ms > 0 {
                    assert!(
                        r.get::<_, Option<i32>>(18).unwrap() >= s.sleep_ms as i32,
                        "{ctx}: Tr covers the origin's delay"
                    );
                    assert!(
                        time_total >= s.sleep_ms as i32,
                        "{ctx}: Ta covers the delay"
                    );
                }
                let backend_id = r.get::<_, Option<i16>>(19).unwrap();
                assert!(
                    (1..=3).contains(&backend_id) || backend_id == 10,
                    "{ctx}: backend_id {backend_id}"
                );
                assert_eq!(
                    r.get::<_, Option<String>>(20).as_deref(),
                    Some("--"),
                    "{ctx}: termination"
                );
            }
            None => {
                assert_eq!(r.get::<_, Option<i32>>(1), None, "{ctx}: no customer");
                assert_eq!(r.get::<_, i64>(3), 0, "{ctx}: no fingerprint");
                assert_eq!(r.get::<_, i16>(9), 3, "{ctx}: denied");
                let (want_status, want_event) = if s.unknown_key { (403, 11) } else { (401, 10) };
                assert_eq!(s.status, want_status, "{ctx}");
                assert_eq!(r.get::<_, i16>(10), want_event, "{ctx}: event_type");
                assert_eq!(r.get::<_, Option<i32>>(18), None, "{ctx}: Tr not reached");
                assert_eq!(r.get::<_, Option<i16>>(19), Some(0), "{ctx}: no server");
                assert!(
                    bytes > 0 && bytes <= s.received,
                    "{ctx}: bytes {bytes} received {}",
                    s.received
                );
                assert_eq!(
                    r.get::<_, Option<String>>(20).as_deref(),
                    Some("PR"),
                    "{ctx}: termination"
                );
            }
        }
    }
    drop(pg);
}

fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !ok() {
        assert!(
            t0.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
