//! The binary as a user runs it: the embedded-PostgreSQL default of `suiftly run`, graceful
//! SIGTERM, and `suiftly demo` accounting for every fixture line.

use std::net::UdpSocket;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

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

/// `suiftly run` on its embedded PostgreSQL under `data`, returned once /metrics answers
/// (which means its listeners are bound).
/// Its log (info level) is appended to `data/../run.log`.
fn start_run(cfg: &Path, data: &Path, mport: u16) -> std::process::Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data.with_file_name("run.log"))
        .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_suiftly"))
        .env("SUIFTLY_ADMIN_LISTEN", "127.0.0.1:0")
        .env("SUIFTLY_API_LISTEN", "127.0.0.1:0")
        .args(["--config", cfg.to_str().unwrap(), "run"])
        .env_remove("DATABASE_URL")
        .env("SUIFTLY_DATA_DIR", data)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    // initdb + start + migrations of the embedded cluster: seconds when idle, but over 90 s was
    // seen at load 25 on 2 cores, so the bound is generous (a start-up that never comes still
    // fails).
    wait_until("metrics endpoint", Duration::from_secs(300), || {
        std::net::TcpStream::connect(("127.0.0.1", mport)).is_ok()
    });
    child
}

#[test]
fn run_starts_and_stops_its_embedded_postgres() {
    let tmp = tempfile::tempdir().unwrap();
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mport = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = tmp.path().join("s.toml");
    std::fs::write(
        &cfg,
        format!(
            "[metrics]\nlisten = \"127.0.0.1:{mport}\"\n[embedded_postgres]\nfsync_off = true\n[[listener]]\nname = \"u\"\nkind = \"udp\"\naddress = \"127.0.0.1:{port}\"\n"
        ),
    )
    .unwrap();
    let data = tmp.path().join("data");
    let mut child = start_run(&cfg, &data, mport);
    let conninfo = std::fs::read_to_string(data.join("conninfo")).unwrap();
    assert!(
        data.join("postgres").join("postmaster.pid").exists(),
        "cluster running under data_dir"
    );

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let line = format!(
        "<134>Nov 26 02:10:57 haproxy[1]: sf1 {}.{:03} fe 1 17 2 2 77 - 5 - 1 - 192.0.2.1 200 10 0 0 1 2 3 1 -- /hello/world",
        now / 1000,
        now % 1000
    );
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.send_to(line.as_bytes(), ("127.0.0.1", port)).unwrap();
    // Give the listener a moment to receive it, then stop: the partial batch must be flushed.
    std::thread::sleep(Duration::from_millis(100));
    // SAFETY: kill(2) on our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(
        !data.join("postgres").join("postmaster.pid").exists(),
        "embedded postgresql stopped on exit"
    );

    // Start it again (as an operator would) and read the row back.
    let mut child = start_run(&cfg, &data, mport);
    let conninfo2 = std::fs::read_to_string(data.join("conninfo")).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (customer, path, preload, storage): (Option<i32>, Option<String>, String, String) = rt
        .block_on(async {
            let c = suiftly_ingest::writer::connect(&conninfo2).await.unwrap();
            let r = c
                .query_one("SELECT customer_id, path_prefix FROM haproxy_raw_logs", &[])
                .await
                .unwrap();
            let s = c
                .query_one(
                    "SELECT current_setting('shared_preload_libraries'), \
                     (SELECT value FROM suiftly_settings WHERE key = 'raw_logs_storage')",
                    &[],
                )
                .await
                .unwrap();
            (r.get(0), r.get(1), s.get(0), s.get(1))
        });
    assert_eq!(customer, Some(77));
    assert_eq!(path.as_deref(), Some("hello/worl"));
    // TimescaleDB when installed (and loadable by this server), native otherwise; said at
    // start-up.
    let log = std::fs::read_to_string(data.with_file_name("run.log")).unwrap();
    let ts = pgcluster::timescaledb::installed().unwrap();
    eprintln!("installed: {ts:?}; preload {preload:?}; storage {storage}");
    if ts.is_none() {
        assert_eq!(preload, "");
    }
    assert_eq!(
        storage,
        if preload == "timescaledb" {
            "timescaledb"
        } else {
            "native"
        }
    );
    let said = if storage == "timescaledb" {
        "timescaledb hypertable"
    } else {
        "native hourly partitions"
    };
    assert!(
        log.lines()
            .any(|l| l.contains("raw log storage") && l.contains(said)),
        "start-up log names the storage ({said}):\n{log}"
    );
    assert!(
        log.contains("embedded postgresql ready") && log.contains("timescaledb"),
        "{log}"
    );
    let _ = conninfo;
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
}

/// Where `suiftly demo` rewrites a fixture line's time: the token after `sf1 `, or a stock
/// line's `[dd/Mon/yyyy:…]` accept date.
fn retimed_region(line: &[u8]) -> Option<(usize, usize)> {
    if let Some(p) = line.windows(4).position(|w| w == b"sf1 ") {
        let a = p + 4;
        return Some((a, a + line[a..].iter().position(|&b| b == b' ')?));
    }
    let a = line.windows(4).position(|w| {
        w[0] == b'[' && w[1].is_ascii_digit() && w[2].is_ascii_digit() && w[3] == b'/'
    })? + 1;
    Some((a, a + line[a..].iter().position(|&b| b == b']')?))
}

/// `suiftly demo` into a database the test owns: the test counts the fixture lines itself and
/// reads PostgreSQL itself, so the demo's own "every datagram accounted for" is checked, not
/// trusted. Every fixture datagram is a row or a rejected line, and every hand-written
/// malformed line is among the rejected lines, verbatim (sf1 lines after the timestamp the
/// demo re-times).
#[test]
fn demo_accounts_for_every_fixture_line() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let pg = pgcluster::PgCluster::temporary()
        .unwrap_or_else(|e| panic!("cannot start test postgresql: {e}"));
    let out = Command::new(env!("CARGO_BIN_EXE_suiftly"))
        .env("SUIFTLY_ADMIN_LISTEN", "127.0.0.1:0")
        .args(["demo", "--into-database", &pg.connection_string()])
        .current_dir(root)
        .env_remove("DATABASE_URL")
        .env("SUIFTLY_METRICS_LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fixtures: Vec<Vec<u8>> = {
        let mut files: Vec<_> = std::fs::read_dir(root.join("fixtures/haproxy"))
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        files.sort();
        files
            .iter()
            .flat_map(|p| {
                std::fs::read(p)
                    .unwrap()
                    .split(|&b| b == b'\n')
                    .filter(|l| !l.is_empty())
                    .map(<[u8]>::to_vec)
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (rows, rejected_raw): (i64, Vec<Vec<u8>>) = rt.block_on(async {
        let (c, conn) = tokio_postgres::connect(&pg.connection_string(), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        let rows: i64 = c
            .query_one("SELECT count(*) FROM haproxy_raw_logs", &[])
            .await
            .unwrap()
            .get(0);
        let raw = c
            .query("SELECT raw FROM haproxy_rejected_lines", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        (rows, raw)
    });
    let rejected = rejected_raw.len() as i64;
    assert_eq!(
        rows + rejected,
        fixtures.len() as i64,
        "every fixture datagram is a row or a rejected line ({rows} rows, {rejected} rejected)"
    );
    assert!(rows > 2_500, "{rows}");
    // The per-listener summary (spool on, the default): parsed and rejected are the consumer's
    // counts for that listener's lines, so they add up to what it accepted and, over all
    // listeners, to what is in PostgreSQL (not "parsed 0, rejected 0").
    let summary: Vec<[u64; 3]> = stdout
        .lines()
        .filter(|l| l.starts_with("listener "))
        .map(|l| {
            let num = |key: &str| -> u64 {
                let rest = &l[l.find(key).unwrap_or_else(|| panic!("{key} in {l}")) + key.len()..];
                let end = rest
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(rest.len());
                rest[..end].parse().unwrap()
            };
            let (acc, p, r) = (num("spool "), num("parsed "), num("rejected "));
            assert_eq!(p + r, acc, "{l}");
            [acc, p, r]
        })
        .collect();
    assert!(!summary.is_empty(), "no per-listener summary in:\n{stdout}");
    let total: u64 = summary.iter().map(|s| s[1] + s[2]).sum();
    assert_eq!(total as i64, rows + rejected, "{stdout}");
    assert!(summary.iter().any(|s| s[1] > 0), "{stdout}");
    // The hand-written malformed lines (the first is the empty datagram, which the demo does
    // not send as a fixture line).
    let malformed = std::fs::read(root.join("fixtures/haproxy/malformed.log")).unwrap();
    let mut missing = Vec::new();
    for line in malformed.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        // The demo re-times each line (the sf1 timestamp, or a stock line's accept date):
        // everything else must be stored as sent.
        let (head, tail) = match retimed_region(line) {
            Some((a, b)) => (&line[..a], &line[b..]),
            None => (line, &line[line.len()..]),
        };
        let found = rejected_raw.iter().any(|r| {
            r.len() >= head.len() + tail.len() && r.starts_with(head) && r.ends_with(tail)
        });
        if !found {
            missing.push(String::from_utf8_lossy(line).into_owned());
        }
    }
    assert!(
        missing.is_empty(),
        "malformed lines not stored as rejected: {missing:#?}"
    );
    // The demo's own summary agrees with what the test read.
    assert!(
        stdout.contains(&format!(
            "every datagram accounted for: {rows} rows + {rejected} rejected = {} sent",
            fixtures.len()
        )),
        "{stdout}"
    );
}

#[test]
fn replay_feeds_every_fixture_line_through_the_ingest_path() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let pg = pgcluster::PgCluster::temporary()
        .unwrap_or_else(|e| panic!("cannot start test postgresql: {e}"));
    let out = Command::new(env!("CARGO_BIN_EXE_suiftly"))
        .env("SUIFTLY_ADMIN_LISTEN", "127.0.0.1:0")
        .args([
            "--config",
            "fixtures/haproxy/ingest.toml",
            "replay",
            "--retime",
            "fixtures/haproxy",
        ])
        .current_dir(root)
        .env("DATABASE_URL", pg.connection_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "replay failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: i64 = std::fs::read_dir(root.join("fixtures/haproxy"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
        .map(|e| {
            std::fs::read(e.path())
                .unwrap()
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .count() as i64
        })
        .sum();
    assert!(
        stdout.contains(&format!("replayed {lines} lines")),
        "{stdout}"
    );
    common::storage::expect(&pg.connection_string());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (rows, rejected, malformed): (i64, i64, i64) = rt.block_on(async {
        let c = suiftly_ingest::writer::connect(&pg.connection_string())
            .await
            .unwrap();
        let q = |sql: &'static str| {
            let c = &c;
            async move { c.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) }
        };
        (
            q("SELECT count(*) FROM haproxy_raw_logs").await,
            q("SELECT count(*) FROM haproxy_rejected_lines").await,
            q("SELECT count(*) FROM haproxy_rejected_lines WHERE listener = 'replay:fixtures'")
                .await,
        )
    });
    assert_eq!(
        rows + rejected,
        lines,
        "every line is a row or a rejected line"
    );
    assert_eq!(malformed, rejected);
    // malformed.log alone has 38 bad lines; the short tcplog captures add more.
    assert!(rejected >= 38, "{rejected}");
    assert!(rows > 2_500, "{rows}");
}

#[test]
fn replay_reads_a_spool_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("spool");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    {
        let (mut w, _) =
            suiftly_spool::SpoolWriter::open(&dir, suiftly_spool::SpoolConfig::default()).unwrap();
        for i in 0..250u32 {
            let line = format!(
                "sf1 {}.{:03} fe 1 17 2 2 {} - 0 - 1 - 10.0.0.1 200 1 0 0 0 0 0 1 -- /spool",
                now / 1000,
                now % 1000,
                i + 1
            );
            w.append(&suiftly_spool::Record {
                received_at_us: 0,
                listener: 0,
                source: None,
                payload: line.as_bytes(),
            })
            .unwrap();
        }
        w.close().unwrap();
    }
    let pg = pgcluster::PgCluster::temporary()
        .unwrap_or_else(|e| panic!("cannot start test postgresql: {e}"));
    let cfg = tmp.path().join("s.toml");
    std::fs::write(&cfg, "[[listener]]\nname = \"x\"\nkind = \"udp\"\naddress = \"127.0.0.1:1\"\npayload = \"sf1\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_suiftly"))
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "replay",
            dir.to_str().unwrap(),
        ])
        .env("DATABASE_URL", pg.connection_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("replayed 250 lines"), "{stdout}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let n: i64 = rt.block_on(async {
        let c = suiftly_ingest::writer::connect(&pg.connection_string())
            .await
            .unwrap();
        c.query_one(
            "SELECT count(DISTINCT customer_id) FROM haproxy_raw_logs",
            &[],
        )
        .await
        .unwrap()
        .get(0)
    });
    assert_eq!(n, 250);
}
