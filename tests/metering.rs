//! Metering against the real binary and a real PostgreSQL: SIGKILL during load, restart,
//! `suiftly audit` finds zero differences; operator SQL through the CLI and the HTTP endpoint.

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pgcluster::PgCluster;

mod common;
use common::{Suiftly, http, now_ms};

/// Ports above the kernel's ephemeral range, apart from the other test binaries' ranges.
fn port_for(slot: u16) -> u16 {
    common::port_for(61_000, 200, slot)
}

/// The binary under test plus the ports the test talks to directly.
struct Run {
    s: Suiftly,
    pgwire_port: u16,
    udp_port: u16,
}

impl std::ops::Deref for Run {
    type Target = Suiftly;
    fn deref(&self) -> &Suiftly {
        &self.s
    }
}

impl std::ops::DerefMut for Run {
    fn deref_mut(&mut self) -> &mut Suiftly {
        &mut self.s
    }
}

impl Run {
    fn new(dir: &Path, pg: &PgCluster, slot: u16) -> Run {
        let (udp_port, metrics_port, admin_port) = (
            port_for(3 * slot),
            port_for(3 * slot + 1),
            port_for(3 * slot + 2),
        );
        let pgwire_port = port_for(10 + slot);
        let cfg = dir.join("suiftly.toml");
        std::fs::write(
            &cfg,
            format!(
                "data_dir = \"{}\"\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n\
                 [admin]\nlisten = \"127.0.0.1:{admin_port}\"\npgwire_listen = \"127.0.0.1:{pgwire_port}\"\n\
                 [batch]\nmax_rows = 500\nmax_age_ms = 50\n\
                 [aggregate]\nallowed_lateness_ms = 1000\nidle_lag_ms = 500\nsettle_interval_ms = 100\n\
                 [[listener]]\nname = \"u\"\nkind = \"udp\"\naddress = \"127.0.0.1:{udp_port}\"\nframing = \"raw\"\npayload = \"sf1\"\n",
                dir.join("data").display()
            ),
        )
        .unwrap();
        Run {
            s: Suiftly::new(cfg, pg.connection_string(), metrics_port, admin_port),
            pgwire_port,
            udp_port,
        }
    }
}

/// xorshift: reproducible variety without a dependency.
fn rnd(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

/// One sf1 line: customers 1–5 or none, every traffic type, a few statuses, and a timestamp
/// either fresh (open minute) or 60–180 s old (its minute settles at once, so more of it is
/// late), i.e. out of order.
fn line(seed: &mut u64) -> String {
    let now = now_ms();
    let ts = if rnd(seed) % 10 < 3 {
        now - rnd(seed) % 3_000
    } else {
        now - 60_000 - rnd(seed) % 120_000
    };
    let cust = match rnd(seed) % 6 {
        0 => "-".to_string(),
        c => c.to_string(),
    };
    let svc = 1 + rnd(seed) % 3;
    let tt = 1 + rnd(seed) % 8;
    let status = [200, 200, 204, 404, 429, 500, 503][(rnd(seed) % 7) as usize];
    let bytes = rnd(seed) % 5000;
    let tw = if rnd(seed).is_multiple_of(4) {
        "-1".to_string()
    } else {
        (rnd(seed) % 5).to_string()
    };
    let ta = rnd(seed) % 900;
    let be = rnd(seed) % 3;
    format!(
        "sf1 {}.{:03} fe 1 17 {svc} 2 {cust} - 0 - {tt} 0 10.1.2.3 {status} {bytes} 0 {tw} 1 2 {ta} {be} -- /v1",
        ts / 1000,
        ts % 1000
    )
}

fn sender(
    port: u16,
    rate: u64,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    seed: u64,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let t0 = Instant::now();
        let mut seed = seed | 1;
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let due = (t0.elapsed().as_secs_f64() * rate as f64) as u64;
            while n < due {
                let _ = s.send_to(line(&mut seed).as_bytes(), ("127.0.0.1", port));
                n += 1;
            }
            sent.store(n, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(2));
        }
    })
}

/// The newest installed psql (Debian keeps one per major version).
fn psql() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL client binaries under /usr/lib/postgresql")
        .filter_map(|e| Some(e.ok()?.path().join("bin/psql")))
        .filter(|p| p.exists())
        .collect();
    found.sort_by_key(|p| {
        p.iter()
            .nth(4)
            .and_then(|v| v.to_str()?.parse::<u32>().ok())
            .unwrap_or(0)
    });
    found.pop().expect("psql must be installed")
}

/// psql against the operator SQL port (PostgreSQL protocol): unaligned, tuples only.
fn psql_operator(port: u16, password: &str, sql: &str) -> std::process::Output {
    Command::new(psql())
        .args([
            "-X",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            &format!("host=127.0.0.1 port={port} user=operator dbname=suiftly sslmode=disable"),
            "-c",
            sql,
        ])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .unwrap()
}

fn query_i64(conninfo: &str, sql: &str) -> i64 {
    let out = Command::new(psql())
        .args(["-X", "-At", "-d", conninfo, "-c", sql])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

#[test]
fn sigkill_during_load_then_audit_finds_zero_differences() {
    let pg = PgCluster::temporary().expect("a PostgreSQL test cluster must start");
    let dir = tempfile::tempdir().unwrap();
    let mut run = Run::new(dir.path(), &pg, 0);
    run.start();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let t = sender(run.udp_port, 2_000, stop.clone(), sent.clone(), 0x5eed);
    let mut seed = 77u64;
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(1500 + rnd(&mut seed) % 2500));
        run.kill9();
        std::thread::sleep(Duration::from_millis(200));
        run.start();
    }
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    t.join().unwrap();
    let last_sent_ms = now_ms();
    // Every minute with data settles about a minute after the last line (lateness 1 s).
    let t0 = Instant::now();
    loop {
        let sb = query_i64(
            &run.conninfo,
            "SELECT (extract(epoch FROM settled_before) * 1000)::bigint FROM aggregate_state",
        );
        if sb as u64 > last_sent_ms + 1000 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "metering did not settle"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let late = run.metric("suiftly_aggregate_late_requests_total");
    run.stop();
    let raw = query_i64(&run.conninfo, "SELECT count(*) FROM haproxy_raw_logs");
    let metered = query_i64(
        &run.conninfo,
        "SELECT sum(request_count) FROM infra_per_min",
    );
    assert!(
        raw > 5_000,
        "only {raw} rows stored of {} sent",
        sent.load(Ordering::Relaxed)
    );
    assert_eq!(metered, raw, "every stored row metered exactly once");
    let usage = query_i64(
        &run.conninfo,
        "SELECT sum(request_count) FROM usage_records",
    );
    let billable = query_i64(
        &run.conninfo,
        "SELECT count(*) FROM haproxy_raw_logs WHERE customer_id IS NOT NULL AND traffic_type IN (1, 2) \
         AND timestamp < date_trunc('hour', (SELECT settled_before FROM aggregate_state))",
    );
    assert_eq!(
        usage, billable,
        "usage_records = billable rows of complete hours"
    );
    println!(
        "sent {}, stored {raw}, late requests in the last run {late}",
        sent.load(Ordering::Relaxed)
    );

    let out = run.command(&["audit", "--from", "-2h", "--to", "now"]);
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "audit reported differences");
    assert!(text.contains(", 0 differences"), "{text}");
    let compared: i64 = text
        .lines()
        .find_map(|l| l.strip_prefix("audit: ")?.split(' ').next()?.parse().ok())
        .expect("summary line");
    assert!(compared > 100, "{text}");

    // The audit is not a rubber stamp: a changed settled row is reported (exit status 1).
    query_i64(
        &run.conninfo,
        "UPDATE stats_per_min SET request_count = request_count + 1 \
         WHERE ctid = (SELECT ctid FROM stats_per_min LIMIT 1) RETURNING 1",
    );
    let out = run.command(&["audit", "--from", "-2h", "--to", "now"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(", 1 differences"));
}

#[test]
fn operator_sql_over_cli_and_http_with_token_read_only_and_live_join() {
    let pg = PgCluster::temporary().expect("a PostgreSQL test cluster must start");
    let dir = tempfile::tempdir().unwrap();
    let mut run = Run::new(dir.path(), &pg, 1);
    run.start();
    // Lines with a customer: 200 old (settle at once) and 100 fresh (stay live).
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let now = now_ms();
    for i in 0..300u64 {
        let ts = if i < 200 {
            now - 90_000 - i * 100
        } else {
            now - i
        };
        let l = format!(
            "sf1 {}.{:03} fe 1 17 2 2 7 - 0 - 1 0 10.1.2.3 200 10 0 0 1 2 5 1 -- /v1",
            ts / 1000,
            ts % 1000
        );
        s.send_to(l.as_bytes(), ("127.0.0.1", run.udp_port))
            .unwrap();
    }
    let token = std::fs::read_to_string(dir.path().join("data/operator-token")).unwrap();
    let join = "SELECT coalesce(s.n, 0) AS settled, coalesce(l.n, 0) AS live FROM \
        (SELECT customer_id, sum(request_count) AS n FROM stats_per_min GROUP BY customer_id) s \
        FULL JOIN (SELECT customer_id, sum(request_count) AS n FROM live_stats_per_min GROUP BY customer_id) l \
        ON s.customer_id = l.customer_id";
    let body = serde_json::json!({ "sql": join, "format": "json" }).to_string();
    let t0 = Instant::now();
    let (settled, live) = loop {
        let (code, text) = http(
            run.admin_port,
            "POST",
            "/admin/sql",
            Some(&token),
            Some(&body),
        );
        assert_eq!(code, 200, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let (a, b) = v
            .as_array()
            .and_then(|r| r.first())
            .map(|r| {
                (
                    r["settled"].as_i64().unwrap_or(0),
                    r["live"].as_i64().unwrap_or(0),
                )
            })
            .unwrap_or((0, 0));
        if a + b == 300 && a >= 200 {
            break (a, b);
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "rows not visible: {text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        live > 0,
        "fresh lines are live ({settled} settled, {live} live)"
    );

    // psql over the PostgreSQL protocol: the same join (live + settled), SCRAM with the
    // operator token; a wrong token and a write are refused; `\dt` lists the tables.
    let out = psql_operator(run.pgwire_port, token.trim(), join);
    assert!(
        out.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let nums: Vec<i64> = String::from_utf8_lossy(&out.stdout)
        .trim()
        .split('|')
        .map(|x| x.parse().unwrap())
        .collect();
    assert_eq!(nums.iter().sum::<i64>(), 300, "{nums:?}");
    let out = psql_operator(run.pgwire_port, "wrong", "SELECT 1");
    assert!(!out.status.success(), "a wrong token must not log in");
    let out = psql_operator(run.pgwire_port, token.trim(), "DROP TABLE stats_per_min");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("read-only"), "{err}");
    let out = psql_operator(run.pgwire_port, token.trim(), "\\dt");
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success()
            && listing.contains("live_stats_per_min")
            && listing.contains("usage_records"),
        "{listing}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The CLI: same query, CSV and table output.
    let out = run.command(&[
        "sql",
        "--format",
        "csv",
        "--url",
        &format!("http://127.0.0.1:{}", run.admin_port),
        join,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = String::from_utf8_lossy(&out.stdout);
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("settled,live"));
    let nums: Vec<i64> = lines
        .next()
        .unwrap()
        .split(',')
        .map(|x| x.parse().unwrap())
        .collect();
    assert_eq!(nums.iter().sum::<i64>(), 300);
    let out = run.command(&[
        "sql",
        "--url",
        &format!("http://127.0.0.1:{}", run.admin_port),
        "SELECT count(*) AS n FROM haproxy_raw_logs WHERE timestamp >= now() - interval '1 hour' AND timestamp < now() + interval '1 hour'",
    ]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && table.contains("+--") && table.contains("| 300 |"),
        "{table}"
    );
    // A write through the CLI fails with the server's message.
    let out = run.command(&[
        "sql",
        "--url",
        &format!("http://127.0.0.1:{}", run.admin_port),
        "DROP TABLE stats_per_min",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("403"));

    // HTTP error branches: JSON bodies with stable codes.
    let q = |sql: &str| serde_json::json!({ "sql": sql }).to_string();
    let (code, text) = http(
        run.admin_port,
        "POST",
        "/admin/sql",
        None,
        Some(&q("SELECT 1")),
    );
    assert_eq!(code, 401, "{text}");
    assert!(text.contains("\"code\":\"unauthorized\""));
    let (code, _) = http(
        run.admin_port,
        "POST",
        "/admin/sql",
        Some("wrong"),
        Some(&q("SELECT 1")),
    );
    assert_eq!(code, 401);
    let (code, text) = http(
        run.admin_port,
        "POST",
        "/admin/sql",
        Some(&token),
        Some(&q("INSERT INTO stats_per_min SELECT * FROM stats_per_min")),
    );
    assert_eq!(code, 403, "{text}");
    assert!(text.contains("\"code\":\"read_only\""));
    let (code, text) = http(
        run.admin_port,
        "POST",
        "/admin/sql",
        Some(&token),
        Some(&q("SELECT count(*) FROM haproxy_raw_logs")),
    );
    assert_eq!(code, 400);
    assert!(text.contains("needs a time range"), "{text}");
    let (code, text) = http(
        run.admin_port,
        "POST",
        "/admin/sql",
        Some(&token),
        Some(&q("SELEC nonsense")),
    );
    assert_eq!(code, 400);
    assert!(text.contains("\"code\":\"sql_error\""));
    let (code, _) = http(
        run.admin_port,
        "POST",
        "/admin/sql",
        Some(&token),
        Some("not json"),
    );
    assert_eq!(code, 400);
    // The database still holds every row once.
    assert_eq!(
        query_i64(&run.conninfo, "SELECT count(*) FROM haproxy_raw_logs"),
        300
    );
    run.stop();
}
