//! The stats endpoints under `wrk` (issue 13; a benchmark, not a test): 10,000 customers ×
//! 30 days settled (`stats_per_hour`: 7.2 M rows, plus the settled minutes of the current
//! hour), `suiftly api` (release) against it, p50/p99 per endpoint.
//!
//! `cargo bench --bench stats_load` (needs `wrk`: `apt-get install wrk`; env CUSTOMERS=10000,
//! DAYS=30, SECS=15, ROUNDS=3, CONNECTIONS=16). Each round runs every endpoint once (in turn, so
//! the shared machine's load spreads over all of them); the table gives the median of the
//! rounds' p50 and p99 and requests/s. Requests pick one of 1,000 customers' tokens at random.
//!
//! The API here has no live source (the open bucket = settled minutes only): the live rows
//! are an in-memory lookup per request; the cost measured is the database reads.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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

/// wrk's "50%" / "99%" latency lines in ms, and Requests/sec.
fn parse_wrk(out: &str) -> (f64, f64, f64, u64) {
    let ms = |v: &str| -> f64 {
        let v = v.trim();
        if let Some(x) = v.strip_suffix("us") {
            x.parse::<f64>().unwrap() / 1000.0
        } else if let Some(x) = v.strip_suffix("ms") {
            x.parse().unwrap()
        } else if let Some(x) = v.strip_suffix('s') {
            x.parse::<f64>().unwrap() * 1000.0
        } else {
            f64::NAN
        }
    };
    let mut p50 = f64::NAN;
    let mut p99 = f64::NAN;
    let mut rps = f64::NAN;
    let mut non2xx = 0;
    for l in out.lines() {
        let t = l.trim();
        if let Some(v) = t.strip_prefix("50%") {
            p50 = ms(v);
        } else if let Some(v) = t.strip_prefix("99%") {
            p99 = ms(v);
        } else if let Some(v) = t.strip_prefix("Requests/sec:") {
            rps = v.trim().parse().unwrap_or(f64::NAN);
        } else if let Some(v) = t.strip_prefix("Non-2xx or 3xx responses:") {
            non2xx = v.trim().parse().unwrap_or(0);
        }
    }
    (p50, p99, rps, non2xx)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let customers = env("CUSTOMERS", 10_000) as i32;
    let days = env("DAYS", 30);
    let secs = env("SECS", 15);
    let rounds = env("ROUNDS", 3);
    let conns = env("CONNECTIONS", 16);
    assert!(
        Command::new("wrk").arg("--version").output().is_ok(),
        "wrk is needed: apt-get install wrk"
    );
    let pg = pgcluster::PgCluster::temporary().expect("a PostgreSQL cluster must start");
    let conninfo = pg.connection_string();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let t0 = Instant::now();
    rt.block_on(async {
        let mut c = suiftly_ingest::writer::connect(&conninfo).await.unwrap();
        suiftly_migrations::migrate(&mut c).await.unwrap();
        c.batch_execute(&format!(
            "SET TIME ZONE 'UTC';
             INSERT INTO aggregate_state (id, applied_through, restart_position, settled_before, settlement_seq)
             VALUES (1, 0, 0, date_trunc('minute', now()) - interval '1 minute', 1);
             INSERT INTO stats_per_hour (bucket, customer_id, service_type, network, guaranteed_success_count,
                 burst_success_count, dropped_count, client_error_count, server_error_count, billable_requests,
                 success_count, avg_response_time_ms, min_response_time_ms, max_response_time_ms,
                 response_time_sum_ms, total_bytes, billable_bytes, billable_client_error_count,
                 billable_server_error_count, status_2xx_count, status_3xx_count, status_4xx_count, status_5xx_count)
             SELECT h, c, 2, 1, 90 + c % 7, 5, 2, 3, 1, 100 + c % 7, 95, 12.5, 1, 80, 1250, 100000, 99000, 3, 1, 95, 0, 5, 1
             FROM generate_series(1, {customers}) c,
                  generate_series(date_trunc('hour', now()) - interval '{days} days',
                                  date_trunc('hour', now()) - interval '1 hour', interval '1 hour') h;
             INSERT INTO stats_per_min (bucket, customer_id, service_type, network, traffic_type, status_code,
                 request_count, total_bytes, avg_response_time_ms, min_response_time_ms, max_response_time_ms,
                 response_time_sum_ms)
             SELECT m, c, 2, 1, 1, 200, 7, 700, 10.0, 10, 10, 70
             FROM generate_series(1, {customers}) c,
                  generate_series(date_trunc('hour', now()), date_trunc('minute', now()) - interval '2 minutes',
                                  interval '1 minute') m;
             ANALYZE;"
        ))
        .await
        .unwrap();
        let n: i64 = c
            .query_one("SELECT count(*) FROM stats_per_hour", &[])
            .await
            .unwrap()
            .get(0);
        println!(
            "seeded {n} stats_per_hour rows ({customers} customers × {days} days) in {:.0} s",
            t0.elapsed().as_secs_f64()
        );
    });
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let cfg = dir.path().join("api.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = \"{}\"\n[api]\nlisten = \"127.0.0.1:{port}\"\nip_requests_per_second = 0\n\
             customer_requests_per_second = 0\ndb_pool_size = 16\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let mut api = Command::new(env!("CARGO_BIN_EXE_suiftly"))
        .args(["--config", cfg.to_str().unwrap(), "api"])
        .env("DATABASE_URL", &conninfo)
        .env("SUIFTLY_JWT_SECRET", live::JWT_SECRET)
        .env_remove("SUIFTLY_API_LISTEN")
        .env("SUIFTLY_API_METRICS_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let t1 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t1.elapsed() < Duration::from_secs(60),
            "suiftly api did not come up"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // 1,000 customers spread over the id range.
    let step = (customers / 1000).max(1);
    let tokens: Vec<String> = rt.block_on(async {
        let mut v = Vec::new();
        for i in 0..1000.min(customers) {
            v.push(live::session(live::JWT_SECRET, &conninfo, 1 + i * step).await);
        }
        v
    });
    let script = dir.path().join("stats.lua");
    std::fs::write(
        &script,
        format!(
            "local tokens = {{ {} }}\n\
             local path = \"/stats/summary\"\n\
             init = function(args) path = args[1] end\n\
             request = function()\n\
               local t = tokens[math.random(#tokens)]\n\
               return wrk.format(\"GET\", path, {{ [\"Authorization\"] = \"Bearer \" .. t }})\n\
             end\n",
            tokens
                .iter()
                .map(|t| format!("\"{t}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    )
    .unwrap();
    let endpoints = [
        "/stats/summary",
        "/stats/traffic?range=24h",
        "/stats/usage?range=7d",
        "/stats/bandwidth?range=30d",
        "/stats/response-time?range=30d&interval=day",
        "/stats/usage?range=30d&interval=hour",
    ];
    let mut results: Vec<Vec<(f64, f64, f64)>> = vec![Vec::new(); endpoints.len()];
    for round in 0..rounds {
        for (i, ep) in endpoints.iter().enumerate() {
            let out = Command::new("wrk")
                .args([
                    "-t2",
                    &format!("-c{conns}"),
                    &format!("-d{secs}s"),
                    "--latency",
                    "-s",
                    script.to_str().unwrap(),
                    &format!("http://127.0.0.1:{port}"),
                    "--",
                    ep,
                ])
                .output()
                .expect("running wrk");
            let text = String::from_utf8_lossy(&out.stdout);
            let (p50, p99, rps, non2xx) = parse_wrk(&text);
            assert_eq!(non2xx, 0, "{ep}: non-2xx responses\n{text}");
            eprintln!("round {round} {ep}: p50 {p50:.2} ms p99 {p99:.2} ms {rps:.0} req/s");
            results[i].push((p50, p99, rps));
        }
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "stats endpoints, {customers} customers × {days} days, wrk -t2 -c{conns} -d{secs}s, median of {rounds} rounds (load average at the end: {})",
        load.trim()
    );
    println!("| endpoint | p50 ms | p99 ms | req/s |");
    println!("|---|---|---|---|");
    for (i, ep) in endpoints.iter().enumerate() {
        let r = &results[i];
        println!(
            "| `{ep}` | {:.2} | {:.2} | {:.0} |",
            median(r.iter().map(|x| x.0).collect()),
            median(r.iter().map(|x| x.1).collect()),
            median(r.iter().map(|x| x.2).collect()),
        );
    }
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(api.id() as i32, libc::SIGTERM) };
    let _ = api.wait();
}
