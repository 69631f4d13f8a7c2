//! `suiftly api` as an operator runs it: embedded PostgreSQL, /health, SIGTERM; and the
//! production guards refusing to start.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::free_port;

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

#[test]
fn api_serves_and_stops_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_suiftly"))
        .arg("api")
        .env_remove("DATABASE_URL")
        .env("SUIFTLY_DATA_DIR", &data)
        .env("SUIFTLY_API_LISTEN", format!("127.0.0.1:{port}"))
        .env("MOCK_AUTH", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let health = loop {
        if let Some(r) = http_get(port, "/health") {
            break r;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "api did not come up"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.contains(r#""database":"ok""#));
    let doc = http_get(port, "/openapi.json").unwrap();
    assert!(doc.contains(r#""/services/{service}/quote""#));
    assert!(data.join("postgres").join("postmaster.pid").exists());
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(
        !data.join("postgres").join("postmaster.pid").exists(),
        "embedded postgresql stopped"
    );
}

#[test]
fn production_mode_refuses_mock_auth_and_missing_secrets() {
    let run = |envs: &[(&str, &str)]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_suiftly"));
        c.arg("api")
            .env_remove("DATABASE_URL")
            .env_remove("MOCK_AUTH")
            .env_remove("SUIFTLY_JWT_SECRET")
            .env_remove("SUIFTLY_API_KEY_SECRET")
            .env_remove("SUIFTLY_KEY_ENCRYPTION_KEY")
            .env("SUIFTLY_DATA_DIR", "/nonexistent/never-created")
            .env("SUIFTLY_API_PRODUCTION", "true");
        for (k, v) in envs {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let good = [
        (
            "SUIFTLY_JWT_SECRET",
            "0123456789abcdef0123456789abcdef-prod",
        ),
        (
            "SUIFTLY_API_KEY_SECRET",
            "1111111111111111111111111111111111111111111111111111111111111111",
        ),
        (
            "SUIFTLY_KEY_ENCRYPTION_KEY",
            "2222222222222222222222222222222222222222222222222222222222222222",
        ),
    ];
    let mut with_mock = good.to_vec();
    with_mock.push(("MOCK_AUTH", "true"));
    assert!(run(&with_mock).contains("MOCK_AUTH is refused in production mode"));
    assert!(run(&[]).contains("SUIFTLY_JWT_SECRET must be set in production mode"));
    let mut dev_secret = good.to_vec();
    dev_secret[1].1 = suiftly_vault::DEV_SECRET_HEX;
    assert!(run(&dev_secret).contains("SUIFTLY_API_KEY_SECRET"));
    // The mock escrow would let a deposit create money: refused unless the network is a test
    // network named explicitly (then start-up goes on, and fails later on the data dir).
    assert!(run(&good).contains("the mock escrow is refused in production mode"));
    let mut mainnet = good.to_vec();
    mainnet.push(("SUIFTLY_ESCROW_NETWORK", "mainnet"));
    assert!(run(&mainnet).contains("the mock escrow is refused in production mode"));
    // (An unreachable external database, so that nothing is started.)
    let mut testnet = good.to_vec();
    testnet.push(("SUIFTLY_ESCROW_NETWORK", "testnet"));
    testnet.push((
        "DATABASE_URL",
        "host=/nonexistent/socket port=1 user=x dbname=x",
    ));
    let out = run(&testnet);
    assert!(
        !out.contains("escrow") && out.contains("postgresql"),
        "{out}"
    );
}
