//! Metering against the real binary and a real PostgreSQL: SIGKILL during load, restart,
//! accepted = stored = metered, usage = billable raw rows of settled minutes, `suiftly audit`
//! finds zero differences; operator SQL through the CLI and the HTTP endpoint.

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use pgcluster::PgCluster;

mod common;
mod witness;
use common::{Suiftly, http, now_ms};
use witness::{
    SpoolTail, UnixSender, assert_stored_exactly, block_on, check_period, clock_seed, connect,
    read_spool, rnd, stored,
};

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
    /// A UDP listener on `udp_port`, or a unix datagram listener at `unix`; metering on or off.
    fn new(dir: &Path, pg: &PgCluster, slot: u16, unix: Option<&Path>, metering: bool) -> Run {
        let (udp_port, metrics_port, admin_port) = (
            port_for(3 * slot),
            port_for(3 * slot + 1),
            port_for(3 * slot + 2),
        );
        let pgwire_port = port_for(10 + slot);
        let listener = match unix {
            Some(p) => format!("kind = \"unix\"\naddress = \"{}\"\n", p.display()),
            None => format!("kind = \"udp\"\naddress = \"127.0.0.1:{udp_port}\"\n"),
        };
        let cfg = dir.join("suiftly.toml");
        std::fs::write(
            &cfg,
            format!(
                "data_dir = \"{}\"\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n\
                 [admin]\nlisten = \"127.0.0.1:{admin_port}\"\npgwire_listen = \"127.0.0.1:{pgwire_port}\"\n\
                 [batch]\nmax_rows = 500\nmax_age_ms = 50\n\
                 [aggregate]\nenabled = {metering}\nallowed_lateness_ms = 1000\nidle_lag_ms = 500\nsettle_interval_ms = 100\n\
                 [[listener]]\nname = \"u\"\nframing = \"raw\"\npayload = \"sf1\"\n{listener}",
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

const HOUR_MS: u64 = 3_600_000;

/// Line `seq` (reproducible from `seq`): customers 1–5 or none, every traffic type, a few
/// statuses, unset timers, and a timestamp anywhere from `from_ms` (three whole hours back)
/// to just before the current minute, so that complete hours get billed and every minute
/// with data can settle as soon as the sender stops. The key fingerprint carries `seq`.
fn line(seq: u64, from_ms: u64) -> String {
    let mut seed = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let seed = &mut seed;
    let now = now_ms();
    let to = now - now % 60_000 - 2_000;
    let ts = from_ms + rnd(seed) % (to - from_ms);
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
        "sf1 {}.{:03} fe 1 17 {svc} 2 {cust} - {seq} - {tt} 0 10.1.2.3 {status} {bytes} 0 {tw} 1 2 {ta} {be} -- /v1",
        ts / 1000,
        ts % 1000
    )
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

/// One bigint (or NULL) from the database, in UTC.
fn query_opt_i64(conninfo: &str, sql: &str) -> Option<i64> {
    block_on(async {
        let c = connect(conninfo).await;
        c.batch_execute("SET TIME ZONE 'UTC'").await.unwrap();
        c.query_one(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get(0)
    })
}

/// (customer, service, hour start) → (requests, bytes) from a query returning those five
/// columns.
type Usage = BTreeMap<(i32, i16, String), (i64, i64)>;

fn usage_by_hour(conninfo: &str, sql: &str) -> Usage {
    block_on(async {
        let c = connect(conninfo).await;
        c.batch_execute("SET TIME ZONE 'UTC'").await.unwrap();
        c.query(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .iter()
            .map(|r| ((r.get(0), r.get(1), r.get(2)), (r.get(3), r.get(4))))
            .collect()
    })
}

/// Four SIGKILLs under load (a unix datagram socket: the sender knows which lines the
/// ingestor's socket took), the first with metering off, then on. First the accepted set: each kill may lose only the
/// newest lines in flight, and PostgreSQL holds exactly what the spool holds, once. Then
/// metering: every stored row metered once, `usage_records` equal to the billable raw rows of
/// every hour's settled minutes (three complete hours, non-zero), late rows counted, and
/// `suiftly audit` finds no difference (and does find a planted one).
#[test]
fn sigkill_during_load_then_audit_finds_zero_differences() {
    const WINDOW: u64 = 256;
    let pg = PgCluster::temporary().expect("a PostgreSQL test cluster must start");
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("ingest.sock");
    // Metering of this database settled everything before three whole hours ago (the state
    // row is what the aggregator writes on its first start), then was switched off while
    // ingest went on: the first run stores lines spread over those three hours with metering
    // off. When metering is back on it replays them from the spool and its first settlement
    // closes three complete hours from open windows; every line after that is late.
    let mut run = Run::new(dir.path(), &pg, 0, Some(&sock), false);
    let out = run.command(&["migrate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let now = now_ms();
    let from_ms = now - now % HOUR_MS - 3 * HOUR_MS;
    block_on(async {
        connect(&run.conninfo)
            .await
            .execute(
                "INSERT INTO aggregate_state (id, applied_through, restart_position, settled_before) \
                 VALUES (1, 0, 0, to_timestamp($1::float8 / 1000))",
                &[&(from_ms as f64)],
            )
            .await
            .unwrap()
    });
    run.start();
    let spool_dir = dir.path().join("data").join("spool");
    let mut tx = UnixSender::start(&sock, &spool_dir, 2_000, WINDOW, move |seq| {
        line(seq, from_ms)
    });
    let mut seed = clock_seed();
    eprintln!("seed {seed}, traffic from {from_ms} ms");
    let settled_ms = |c: &str| {
        query_opt_i64(
            c,
            "SELECT (extract(epoch FROM settled_before) * 1000)::bigint FROM aggregate_state",
        )
        .expect("aggregate_state") as u64
    };
    let mut spool: Vec<i64> = Vec::new();
    let mut start = 0u64;
    let mut lost = Vec::new();
    let mut late = 0.0;
    for round in 0..4 {
        let target = start + 1_500 + rnd(&mut seed) % 2_500;
        tx.wait_seen(target, Duration::from_secs(60), "before a kill");
        if round == 1 {
            // The first settlement has closed the three hours: what follows is late.
            let t0 = Instant::now();
            while settled_ms(&run.conninfo) < from_ms + 3 * HOUR_MS {
                assert!(t0.elapsed() < Duration::from_secs(60), "nothing settled");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        late += run.metric("suiftly_aggregate_late_requests_total");
        let paused = tx.pause();
        run.kill9();
        let sent = paused.sent();
        paused.restart_window();
        let seqs = read_spool(&spool_dir).seqs();
        let what = format!("kill {round}");
        lost.push(check_period(&spool, &seqs, start, sent, WINDOW, &what));
        eprintln!(
            "{what}: lines {start}..{sent} sent, {} accepted, {} lost",
            seqs.len() - spool.len(),
            lost[round],
        );
        spool = seqs;
        start = sent;
        drop(paused);
        if round == 0 {
            run = Run::new(dir.path(), &pg, 0, Some(&sock), true);
        }
        run.start();
    }
    tx.wait_seen(
        start + 1_500,
        Duration::from_secs(60),
        "after the last restart",
    );
    let total = tx.stop();
    let stopped_ms = now_ms();
    let mut tail = SpoolTail::new(&spool_dir);
    let t0 = Instant::now();
    while tail.poll() < total {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the spool shows {} of {total} lines",
            tail.seen
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Every line's minute ended before the sender stopped: wait until all of them settled.
    let t0 = Instant::now();
    while settled_ms(&run.conninfo) < stopped_ms - stopped_ms % 60_000 {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "metering did not settle"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let last_late = run.metric("suiftly_aggregate_late_requests_total");
    late += last_late;
    run.stop();

    // The accepted set first: the spool (read here) holds every line sent but the newest few
    // at each kill, and PostgreSQL holds exactly those, once.
    let end = read_spool(&spool_dir);
    check_period(
        &spool,
        &end.seqs(),
        start,
        total,
        0,
        "after the graceful stop",
    );
    let (stored, rejected) = stored(&run.conninfo);
    assert_eq!(rejected, 0);
    assert_stored_exactly(&end.seqs(), &stored, "after 4 kills");
    let raw = stored.len() as i64;
    assert_eq!(raw as u64 + lost.iter().sum::<u64>(), total);

    // Then metering: every stored row metered once.
    let metered = query_opt_i64(
        &run.conninfo,
        "SELECT sum(request_count)::bigint FROM infra_per_min",
    );
    assert_eq!(metered, Some(raw), "every stored row metered exactly once");
    // The generator exists to make late rows: after the first settlement every line is late.
    assert!(
        last_late > 0.0,
        "late rows counted in the last run (all runs: {late})"
    );

    // Billing: usage_records per customer, service and hour = the billable raw rows (traffic
    // types 1, 2 for requests; 1, 2, 7 for bytes) of that hour's settled minutes (an hour's
    // row grows as its minutes settle).
    let usage = usage_by_hour(
        &run.conninfo,
        "SELECT customer_id, service_type, to_char(window_start, 'YYYY-MM-DD HH24:MI'), \
            sum(request_count)::bigint, sum(bytes_transferred)::bigint \
         FROM usage_records GROUP BY 1, 2, 3",
    );
    let billable = usage_by_hour(
        &run.conninfo,
        "SELECT customer_id, service_type, to_char(date_trunc('hour', timestamp), 'YYYY-MM-DD HH24:MI'), \
            count(*) FILTER (WHERE traffic_type IN (1, 2)), \
            COALESCE(sum(bytes_sent) FILTER (WHERE traffic_type IN (1, 2, 7)), 0)::bigint \
         FROM haproxy_raw_logs WHERE customer_id IS NOT NULL \
            AND timestamp < (SELECT settled_before FROM aggregate_state) \
         GROUP BY 1, 2, 3 \
         HAVING count(*) FILTER (WHERE traffic_type IN (1, 2)) > 0 \
            OR sum(bytes_sent) FILTER (WHERE traffic_type IN (1, 2, 7)) > 0",
    );
    let hours: std::collections::BTreeSet<&String> = billable.keys().map(|k| &k.2).collect();
    let total_usage = query_opt_i64(
        &run.conninfo,
        "SELECT sum(request_count)::bigint FROM usage_records",
    );
    eprintln!(
        "sent {total}, stored {raw}, lost at kills {lost:?}, late {late}, usage {total_usage:?} \
         over {} (customer, service, hour) groups in hours {hours:?}",
        usage.len()
    );
    assert!(
        hours.len() >= 3,
        "three complete hours of traffic: {hours:?}"
    );
    assert!(
        total_usage.is_some_and(|n| n > 0),
        "usage_records bills something: {total_usage:?}"
    );
    let differ: Vec<_> = billable
        .keys()
        .chain(usage.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|k| usage.get(*k) != billable.get(*k))
        .map(|k| (k, usage.get(k), billable.get(k)))
        .collect();
    assert!(
        differ.is_empty(),
        "usage_records (requests, bytes) differ from the billable raw rows in {} of {} groups, \
         e.g. (group, usage, raw): {}",
        differ.len(),
        billable.len(),
        witness::some(&differ)
    );

    let out = run.command(&["audit", "--from", "-4h", "--to", "now"]);
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
    block_on(async {
        connect(&run.conninfo)
            .await
            .execute(
                "UPDATE stats_per_min SET request_count = request_count + 1 \
                 WHERE ctid = (SELECT ctid FROM stats_per_min LIMIT 1)",
                &[],
            )
            .await
            .unwrap()
    });
    let out = run.command(&["audit", "--from", "-4h", "--to", "now"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(", 1 differences"));
}

#[test]
fn operator_sql_over_cli_and_http_with_token_read_only_and_live_join() {
    let pg = PgCluster::temporary().expect("a PostgreSQL test cluster must start");
    let dir = tempfile::tempdir().unwrap();
    let mut run = Run::new(dir.path(), &pg, 1, None, true);
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
        query_opt_i64(&run.conninfo, "SELECT count(*) FROM haproxy_raw_logs"),
        Some(300)
    );
    run.stop();
}
