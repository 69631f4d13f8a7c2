//! Shared harness for the tests (and the freshness bench) that drive the real `suiftly`
//! binary: a child process with start / SIGKILL / graceful stop, its metrics, and a tiny
//! HTTP/1.0 client. Each test binary uses only part of it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub mod storage;

/// Waits up to `bound` for `child` (started with a piped stderr) to exit by itself, as a
/// refused start does; kills it and panics with `what` if it does not. Returns the exit status
/// and what the child wrote to stderr.
pub fn exit_and_stderr(
    child: &mut Child,
    bound: Duration,
    what: &str,
) -> (std::process::ExitStatus, String) {
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if t0.elapsed() > bound {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("stderr piped")
        .read_to_string(&mut err)
        .unwrap();
    (status, err)
}

/// Ports outside the kernel's ephemeral range (32768–60999) where `base` allows, distinct per
/// test (`slot`, < 20) and per test process (pid), so a port picked here cannot be handed to
/// another test's socket between the pick and the child's bind (which made
/// `bind(0)`-then-release flaky). Each test binary passes its own `base` so two binaries
/// running at once cannot pick the same range.
pub fn port_for(base: u16, spread: u32, slot: u16) -> u16 {
    assert!(slot < 20);
    let p = base + (std::process::id() % spread) as u16 * 20 + slot;
    assert!(
        UdpSocket::bind(("127.0.0.1", p)).is_ok(),
        "port {p} is taken"
    );
    assert!(
        std::net::TcpListener::bind(("127.0.0.1", p)).is_ok(),
        "port {p} is taken"
    );
    p
}

/// A port the kernel just handed out (for tests that start one child at a time; the
/// multi-process tests use [`port_for`]).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A tiny HTTP/1.0 client: (status, body).
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("connecting to 127.0.0.1:{port}: {e}"));
    let body = body.unwrap_or("");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let code = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (
        code,
        resp.split("\r\n\r\n").nth(1).unwrap_or("").to_string(),
    )
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// `suiftly run` as a child process against an existing database.
pub struct Suiftly {
    child: Option<Child>,
    pub cfg: PathBuf,
    pub conninfo: String,
    pub metrics_port: u16,
    pub admin_port: u16,
    /// The storage mode was checked against the matrix (once, at the first start).
    storage_checked: bool,
}

impl Suiftly {
    /// Nothing runs until [`start`](Self::start). The admin endpoint is put on `admin_port`
    /// through the environment, so the config file need not name it.
    pub fn new(cfg: PathBuf, conninfo: String, metrics_port: u16, admin_port: u16) -> Self {
        Self {
            child: None,
            cfg,
            conninfo,
            metrics_port,
            admin_port,
            storage_checked: false,
        }
    }

    /// Starts the process and waits until `/metrics` answers (the binary serves it last,
    /// after the listeners are bound).
    pub fn start(&mut self) {
        let child = Command::new(env!("CARGO_BIN_EXE_suiftly"))
            .args(["--config", self.cfg.to_str().unwrap(), "run"])
            .env("DATABASE_URL", &self.conninfo)
            .env("SUIFTLY_API_LISTEN", "127.0.0.1:0")
            .env(
                "SUIFTLY_ADMIN_LISTEN",
                format!("127.0.0.1:{}", self.admin_port),
            )
            .env_remove("SUIFTLY_OPERATOR_TOKEN")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.metrics_port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "suiftly did not come up"
            );
            if let Some(Ok(Some(st))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("suiftly exited during start-up: {st}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if !self.storage_checked {
            storage::expect(&self.conninfo);
            if let Ok(w) = std::env::var("SUIFTLY_STORAGE_WRITERS") {
                // The writer matrix: the child inherits the override (storage.writers).
                eprintln!("SUIFTLY_STORAGE_WRITERS={w}");
            }
            self.storage_checked = true;
        }
    }

    pub fn kill9(&mut self) {
        let mut c = self.child.take().expect("running");
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(c.id() as i32, libc::SIGKILL) };
        c.wait().unwrap();
    }

    /// SIGTERM and wait; the graceful stop must exit 0.
    pub fn stop(&mut self) {
        let mut c = self.child.take().expect("running");
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let st = c.wait().unwrap();
        assert!(st.success(), "graceful stop exited with {st}");
    }

    /// (HTTP status, body) of `GET /health`.
    pub fn health(&self) -> (u16, String) {
        http(self.admin_port, "GET", "/health", None, None)
    }

    pub fn metrics_body(&mut self) -> String {
        if let Err(e) = std::net::TcpStream::connect(("127.0.0.1", self.metrics_port)) {
            let st = self.child.as_mut().map(|c| c.try_wait());
            panic!("metrics endpoint unreachable ({e}); suiftly status: {st:?}");
        }
        http(self.metrics_port, "GET", "/metrics", None, None).1
    }

    /// Sum of every series of metric `name` (all label sets).
    pub fn metric(&mut self, name: &str) -> f64 {
        self.metrics_body()
            .lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|r| r.starts_with(' ') || r.starts_with('{'))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Another `suiftly` subcommand with the same config and database.
    pub fn command(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_suiftly"))
            .arg("--config")
            .arg(&self.cfg)
            .args(args)
            .env("DATABASE_URL", &self.conninfo)
            .env_remove("SUIFTLY_OPERATOR_TOKEN")
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    }
}

impl Drop for Suiftly {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
