//! A real HAProxy 2.6 gateway for tests: the shipped `docs/haproxy/suiftly.cfg` with ports and
//! paths substituted, its runtime API on a private unix socket, its sf1 lines either sent to a
//! UDP socket the test reads (parsed with the production parser) or to an ingestor.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn haproxy_binary() -> PathBuf {
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

pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !ok() {
        assert!(
            t0.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A tiny HTTP/1.1 origin answering 200 with a 10-byte body to everything.
pub fn spawn_origin() -> u16 {
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
                let _ = c.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\n0123456789",
                );
            });
        }
    });
    port
}

/// One request with an optional `X-API-Key`; returns (status, body).
pub fn request(port: u16, path: &str, key: Option<&str>) -> (u16, String) {
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
    let _ = s.read_to_end(&mut resp);
    let text = String::from_utf8_lossy(&resp).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

pub struct Gateway {
    child: Child,
    pub fe_port: u16,
    pub admin_sock: PathBuf,
    pub cfg_path: PathBuf,
    pub map_path: PathBuf,
    haproxy: PathBuf,
}

impl Gateway {
    /// Writes the shipped config with `map_path` as the vault map, logs to
    /// `127.0.0.1:<log_port>` over UDP, every backend server at `origin`, and starts it.
    pub fn start(dir: &Path, map_path: &Path, log_port: u16, origin: u16) -> Gateway {
        let haproxy = haproxy_binary();
        let shipped = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/docs/haproxy/suiftly.cfg"
        ))
        .unwrap();
        let fe_port = free_tcp_port();
        let admin_sock = dir.join("admin.sock");
        let cfg = shipped
            .replace("127.0.0.1:5514", &format!("127.0.0.1:{log_port}"))
            .replace("127.0.0.1:8443", &format!("127.0.0.1:{fe_port}"))
            .replace("127.0.0.1:8444", &format!("127.0.0.1:{}", free_tcp_port()))
            .replace("127.0.0.1:8445", &format!("127.0.0.1:{}", free_tcp_port()))
            .replace("/etc/haproxy/suiftly-keys.map", map_path.to_str().unwrap())
            .replace("/run/haproxy/admin.sock", admin_sock.to_str().unwrap())
            .replace("127.0.0.1:9001", &format!("127.0.0.1:{origin}"))
            .replace("127.0.0.1:9002", &format!("127.0.0.1:{origin}"))
            .replace("127.0.0.1:9003", &format!("127.0.0.1:{origin}"))
            .replace("127.0.0.1:9101", &format!("127.0.0.1:{origin}"));
        assert!(cfg.contains(admin_sock.to_str().unwrap()), "stats socket");
        let cfg_path = dir.join("haproxy.cfg");
        std::fs::write(&cfg_path, cfg).unwrap();
        let check = Command::new(&haproxy)
            .args(["-c", "-f", cfg_path.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "haproxy -c: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        let mut g = Gateway {
            child: Self::spawn(&haproxy, &cfg_path),
            fe_port,
            admin_sock,
            cfg_path,
            map_path: map_path.to_path_buf(),
            haproxy,
        };
        g.wait_ready();
        g
    }

    fn spawn(haproxy: &Path, cfg: &Path) -> Child {
        Command::new(haproxy)
            .args(["-db", "-f", cfg.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    fn wait_ready(&mut self) {
        let sock = self.admin_sock.clone();
        wait_until("haproxy runtime api", Duration::from_secs(20), || {
            std::os::unix::net::UnixStream::connect(&sock).is_ok()
        });
    }

    /// Stops and starts the process on the same config (what a reload does to the map: it is
    /// loaded from the file again).
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.admin_sock);
        self.child = Self::spawn(&self.haproxy, &self.cfg_path);
        self.wait_ready();
    }

    /// The runtime-API endpoint as the vault stage configures it.
    pub fn endpoint(&self) -> suiftly_vault::runtime::Endpoint {
        suiftly_vault::runtime::Endpoint::Unix(self.admin_sock.clone())
    }

    pub fn vault_gateway(&self, name: &str) -> suiftly_vault::runtime::Gateway {
        suiftly_vault::runtime::Gateway {
            name: name.into(),
            endpoint: self.endpoint(),
            map: self.map_path.to_str().unwrap().into(),
        }
    }

    /// One runtime API command (a fresh session).
    pub fn cli(&self, command: &str) -> String {
        let mut c = suiftly_vault::runtime::RuntimeClient::connect(
            &self.endpoint(),
            Duration::from_secs(5),
        )
        .unwrap();
        c.command(command).unwrap()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a test needs from one logged sf1 line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    pub path_prefix: Option<String>,
    pub customer_id: Option<i32>,
    pub config_hex: Option<i64>,
    pub api_key_fp: i64,
    pub traffic_type: i16,
    pub event_type: i16,
    pub status: i16,
}

/// HAProxy's syslog lines, received on a UDP socket and parsed by the production parser.
pub struct LogSink {
    sock: UdpSocket,
    parser: suiftly_parser::Parser,
    /// Parsed lines by path prefix (each test request uses a unique path).
    pub by_path: HashMap<String, Logged>,
}

impl LogSink {
    pub fn bind() -> LogSink {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        LogSink {
            sock,
            parser: suiftly_parser::Parser::new(suiftly_parser::SourceConfig::default()),
            by_path: HashMap::new(),
        }
    }

    pub fn port(&self) -> u16 {
        self.sock.local_addr().unwrap().port()
    }

    fn drain(&mut self) {
        let mut buf = vec![0u8; 65536];
        while let Ok(n) = self.sock.recv(&mut buf) {
            let rec = self.parser.parse(&buf[..n]).unwrap_or_else(|e| {
                panic!(
                    "unparsable line {:?}: {e:?}",
                    String::from_utf8_lossy(&buf[..n])
                )
            });
            let Some(p) = rec.path_prefix else { continue };
            self.by_path.insert(
                p.to_string(),
                Logged {
                    path_prefix: Some(p.to_string()),
                    customer_id: rec.customer_id,
                    config_hex: rec.config_hex,
                    api_key_fp: rec.api_key_fp,
                    traffic_type: rec.traffic_type,
                    event_type: rec.event_type,
                    status: rec.status_code,
                },
            );
        }
    }

    /// The line of the request whose path prefix is `prefix` (waits for it).
    pub fn line(&mut self, prefix: &str) -> Logged {
        let t0 = Instant::now();
        loop {
            if let Some(l) = self.by_path.get(prefix) {
                return l.clone();
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "no sf1 line for {prefix}"
            );
            self.drain();
        }
    }
}

/// Inserts a grpc key of `customer_id` (made with the development codec secret, metadata
/// 0x2900, `iv`) into `api_keys` as the API writes it: sealed with `kek` and bound to its row
/// (key id, customer). Returns (key id, full key).
pub async fn insert_key(
    client: &tokio_postgres::Client,
    customer_id: i32,
    iv: u32,
    kek: [u8; 32],
) -> (i64, String) {
    use suiftly_vault::{ApiKeyCodec, KeyCipher, Secret, ServiceLetter};
    let key = ApiKeyCodec::new(&Secret::development())
        .encode_with_iv(
            ServiceLetter::Grpc,
            customer_id as u32,
            0x2900,
            iv.to_be_bytes(),
        )
        .unwrap();
    let id: i64 = client
        .query_one(
            "SELECT nextval(pg_get_serial_sequence('api_keys', 'key_id'))",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let sealed = KeyCipher::new(&Secret::from_bytes(kek))
        .seal(
            key.as_bytes(),
            suiftly_vault::at_rest::KeyBinding {
                key_id: id,
                customer_id,
            },
        )
        .unwrap();
    let fp = suiftly_vault::apikey::fingerprint(&key).unwrap() as i64;
    client
        .execute(
            "INSERT INTO api_keys (key_id, customer_id, service_type, fingerprint, encrypted_key, key_preview,
                 seal_network, seal_access, seal_source, proc_group)
             OVERRIDING SYSTEM VALUE
             VALUES ($4, $1, 2, $2, $3, 'x', 1, 0, 1, 1)",
            &[&customer_id, &fp, &sealed, &id],
        )
        .await
        .unwrap();
    (id, key)
}
