//! What only a hypertable has: compression (the policy job run by hand, rows read back
//! unchanged, a late row into a compressed chunk stored and metered once, the audit clean), and
//! the migration run twice, on a native-partitioned database that later gains TimescaleDB, and
//! on a hypertable whose server lost the preload; the native-to-hypertable conversion script.
//!
//! These tests need TimescaleDB installed for the machine's PostgreSQL, so they are ignored by
//! default; the CI's TimescaleDB pass runs them
//! (`SUIFTLY_TEST_STORAGE=timescaledb cargo test --test timescaledb -- --include-ignored`), and
//! there they fail, never skip, when TimescaleDB cannot be used. The rest of the suite runs
//! against a hypertable in that same pass (the storage matrix, `scripts/test-all.sh`).

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use pgcluster::PgCluster;

mod common;
mod witness;
use common::{Suiftly, now_ms};
use witness::{block_on, connect, rnd, stored};

const HOUR_MS: u64 = 3_600_000;

fn port_for(slot: u16) -> u16 {
    common::port_for(30_000, 100, slot)
}

/// A throwaway cluster preloading TimescaleDB, whatever the test run's storage mode.
fn timescale_cluster() -> PgCluster {
    assert_eq!(
        common::storage::mode(),
        "timescaledb",
        "run these in the TimescaleDB pass: SUIFTLY_TEST_STORAGE=timescaledb cargo test --test timescaledb -- --include-ignored"
    );
    PgCluster::temporary_with(|o| {
        o.preload_timescaledb();
    })
    .unwrap_or_else(|e| panic!("a PostgreSQL test cluster with timescaledb must start: {e}"))
}

fn q_i64(conninfo: &str, sql: &str) -> i64 {
    block_on(async {
        connect(conninfo)
            .await
            .query_one(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get(0)
    })
}

fn exec(conninfo: &str, sql: &str) {
    block_on(async {
        connect(conninfo)
            .await
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    })
}

/// Runs the hypertable's `proc` job (`policy_compression`, `policy_retention`) now, as its
/// schedule would.
fn run_policy(conninfo: &str, proc: &str) {
    let job = q_i64(
        conninfo,
        &format!(
            "SELECT job_id::int8 FROM timescaledb_information.jobs \
             WHERE proc_name = '{proc}' AND hypertable_name = 'haproxy_raw_logs'"
        ),
    );
    exec(conninfo, &format!("CALL run_job({job})"));
}

/// (range end in ms, compressed) of every chunk, oldest first.
fn chunks(conninfo: &str) -> Vec<(i64, bool)> {
    block_on(async {
        connect(conninfo)
            .await
            .query(
                "SELECT (extract(epoch FROM range_end) * 1000)::int8, is_compressed \
                 FROM timescaledb_information.chunks \
                 WHERE hypertable_name = 'haproxy_raw_logs' ORDER BY range_start",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    })
}

/// Every column of every raw row folded into a few numbers: equal before and after
/// compression means the rows read back unchanged.
fn fingerprint(conninfo: &str) -> Vec<i64> {
    block_on(async {
        let r = connect(conninfo)
            .await
            .query_one(
                "SELECT count(*), sum(bytes_sent)::int8, sum(api_key_fp)::int8, \
                        sum(time_total)::int8, \
                        sum(hashtext(concat_ws('|', \"timestamp\", customer_id, path_prefix, \
                            config_hex, network, server_id, service_type, api_key_fp, fe_type, \
                            traffic_type, event_type, client_ip, key_metadata, status_code, \
                            bytes_sent, time_total, time_request, time_queue, time_connect, \
                            time_response, backend_id, termination_state, repeat)))::int8 \
                 FROM haproxy_raw_logs",
                &[],
            )
            .await
            .unwrap();
        (0..5).map(|i| r.get::<_, i64>(i)).collect()
    })
}

/// Line `seq` at `ts_ms`: customers 1–5 or none, every traffic type, a few statuses, unset
/// timers; the key fingerprint carries `seq` (what [`stored`] reads back).
fn line(seq: u64, ts_ms: u64) -> String {
    let mut seed = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let seed = &mut seed;
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
        ts_ms / 1000,
        ts_ms % 1000
    )
}

fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !ok() {
        assert!(t0.elapsed() < limit, "timed out after {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn sql_csv(run: &Suiftly, sql: &str) -> String {
    let out = run.command(&[
        "sql",
        "--format",
        "csv",
        "--url",
        &format!("http://127.0.0.1:{}", run.admin_port),
        sql,
    ]);
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn audit_is_clean(run: &Suiftly, what: &str) {
    let out = run.command(&["audit", "--from", "-14h", "--to", "now"]);
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("audit ({what}): {text}");
    assert!(
        out.status.success() && text.contains(", 0 differences"),
        "audit {what}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Five hours of traffic from 12 hours ago (metered on time), half an hour of recent traffic,
/// then the compression policy run by hand: chunks that ended more than 6 hours ago are
/// compressed, the newer ones are not, and every row reads back unchanged, directly and through
/// operator SQL with a time range. A late row into a compressed hour is then stored once and
/// metered once, the audit finds no difference, and recompressing changes nothing.
#[test]
#[ignore = "needs TimescaleDB (see the module doc)"]
fn compressed_chunks_keep_rows_and_take_a_late_row_metered_once() {
    let pg = timescale_cluster();
    let conninfo = pg.connection_string();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("ingest.sock");
    let (metrics_port, admin_port) = (port_for(0), port_for(1));
    let cfg = dir.path().join("suiftly.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = \"{}\"\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n\
             [admin]\nlisten = \"127.0.0.1:{admin_port}\"\n\
             [batch]\nmax_rows = 500\nmax_age_ms = 50\n\
             [aggregate]\nenabled = true\nallowed_lateness_ms = 1000\nidle_lag_ms = 500\nsettle_interval_ms = 100\n\
             [[listener]]\nname = \"u\"\nframing = \"raw\"\npayload = \"sf1\"\nkind = \"unix\"\naddress = \"{}\"\n",
            dir.path().join("data").display(),
            sock.display()
        ),
    )
    .unwrap();
    let mut run = Suiftly::new(cfg, conninfo.clone(), metrics_port, admin_port);
    let out = run.command(&["migrate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Metering settled everything before the traffic starts: the five old hours are metered
    // on time, in order, like a day's traffic would be.
    let now = now_ms();
    let hour = now - now % HOUR_MS;
    let from = hour - 12 * HOUR_MS;
    exec(
        &conninfo,
        &format!(
            "INSERT INTO aggregate_state (id, applied_through, restart_position, settled_before) \
             VALUES (1, 0, 0, to_timestamp({from}::float8 / 1000))"
        ),
    );
    run.start();
    let tx = UnixDatagram::unbound().unwrap();
    let (old, recent) = (3_000u64, 500u64);
    let mut seed = witness::clock_seed();
    let minute_start = now - now % 60_000;
    for seq in 0..old + recent {
        let ts = if seq < old {
            from + rnd(&mut seed) % (5 * HOUR_MS)
        } else {
            // The last half hour, before the current minute (so it can settle).
            minute_start - 2_000 - rnd(&mut seed) % (30 * 60_000)
        };
        tx.send_to(line(seq, ts).as_bytes(), &sock).unwrap();
    }
    let n = (old + recent) as i64;
    wait_for("every line stored", Duration::from_secs(60), || {
        witness::stored_count(&conninfo) == n
    });
    wait_for("every row metered", Duration::from_secs(120), || {
        q_i64(
            &conninfo,
            "SELECT COALESCE(sum(request_count), 0)::int8 FROM infra_per_min",
        ) == n
    });
    let native = q_i64(
        &conninfo,
        "SELECT count(*) FROM pg_class WHERE relname LIKE 'haproxy\\_raw\\_logs\\_p%'",
    );
    assert_eq!(native, 0, "the ingestor made no partitions of its own");
    let before = fingerprint(&conninfo);
    let hours_csv = |run: &Suiftly| {
        sql_csv(
            run,
            "SELECT count(*) AS n FROM haproxy_raw_logs \
             WHERE timestamp >= now() - interval '14 hours' AND timestamp < now() - interval '6 hours'",
        )
    };
    assert_eq!(hours_csv(&run), format!("n\n{old}\n"));

    // The compression policy, run by hand.
    run_policy(&conninfo, "policy_compression");
    let cutoff = now_ms() as i64 - 6 * HOUR_MS as i64;
    let after = chunks(&conninfo);
    eprintln!("chunks (range end ms, compressed): {after:?}");
    assert!(
        after.iter().filter(|c| c.1).count() >= 5,
        "the five old hours are compressed: {after:?}"
    );
    for (end, compressed) in &after {
        // A chunk whose end is within a minute of the cutoff may go either way.
        if (end - cutoff).abs() > 60_000 {
            assert_eq!(*compressed, *end < cutoff, "chunk ending {end}: {after:?}");
        }
    }
    assert!(
        after.iter().any(|c| !c.1),
        "the recent chunk stays row-wise"
    );
    assert_eq!(fingerprint(&conninfo), before, "rows read back unchanged");
    let (seqs, rejected) = stored(&conninfo);
    assert_eq!(rejected, 0);
    assert_eq!(seqs.len() as u64, old + recent);
    assert!(seqs.values().all(|&c| c == 1));
    // Operator SQL pushes the time range down into the compressed chunks.
    assert_eq!(hours_csv(&run), format!("n\n{old}\n"));
    audit_is_clean(&run, "after compression");

    // A late row into a compressed hour.
    let late_seq = old + recent;
    let late_ts = from + 2 * HOUR_MS + 30 * 60_000;
    let late_before = run.metric("suiftly_aggregate_late_requests_total");
    let hour_before = q_i64(
        &conninfo,
        &format!(
            "SELECT sum(request_count)::int8 FROM infra_per_hour \
             WHERE bucket = to_timestamp({}::float8 / 1000)",
            late_ts - late_ts % HOUR_MS
        ),
    );
    tx.send_to(line(late_seq, late_ts).as_bytes(), &sock)
        .unwrap();
    wait_for("the late row stored", Duration::from_secs(60), || {
        witness::stored_count(&conninfo) == n + 1
    });
    wait_for("the late row metered", Duration::from_secs(120), || {
        q_i64(
            &conninfo,
            "SELECT COALESCE(sum(request_count), 0)::int8 FROM infra_per_min",
        ) == n + 1
    });
    let (seqs, _) = stored(&conninfo);
    assert_eq!(seqs.get(&(late_seq as i64)), Some(&1), "stored once");
    assert!(
        run.metric("suiftly_aggregate_late_requests_total") >= late_before + 1.0,
        "counted as late"
    );
    let hour_after = q_i64(
        &conninfo,
        &format!(
            "SELECT sum(request_count)::int8 FROM infra_per_hour \
             WHERE bucket = to_timestamp({}::float8 / 1000)",
            late_ts - late_ts % HOUR_MS
        ),
    );
    assert_eq!(hour_after, hour_before + 1, "metered once into its hour");
    let late_chunk = chunks(&conninfo)
        .into_iter()
        .find(|c| c.0 > late_ts as i64)
        .unwrap();
    assert!(late_chunk.1, "its chunk is still a compressed one");
    audit_is_clean(&run, "after the late row");

    // The next policy run recompresses that chunk; nothing changes but the layout.
    let with_late = fingerprint(&conninfo);
    assert_eq!(with_late[0], n + 1);
    run_policy(&conninfo, "policy_compression");
    assert_eq!(fingerprint(&conninfo), with_late);
    assert_eq!(hours_csv(&run), format!("n\n{}\n", old + 1));
    audit_is_clean(&run, "after recompression");
    run.stop();
}

/// The state of the hypertable V26 manages, as one comparable string.
fn hypertable_state(conninfo: &str) -> String {
    block_on(async {
        let c = connect(conninfo).await;
        let mut s = String::new();
        for sql in [
            "SELECT time_interval::text FROM timescaledb_information.dimensions \
             WHERE hypertable_name = 'haproxy_raw_logs'",
            "SELECT string_agg(attname || ':' || coalesce(segmentby_column_index, 0) || ':' || \
                    coalesce(orderby_column_index, 0) || ':' || coalesce(orderby_asc::text, '-'), ',' \
                    ORDER BY attname) FROM timescaledb_information.compression_settings \
             WHERE hypertable_name = 'haproxy_raw_logs'",
            "SELECT string_agg(job_id || ':' || proc_name || ':' || schedule_interval || ':' || config::text, \
                    ',' ORDER BY job_id) FROM timescaledb_information.jobs \
             WHERE hypertable_name = 'haproxy_raw_logs'",
            "SELECT coalesce(string_agg(indexname, ','), '') FROM pg_indexes \
             WHERE tablename = 'haproxy_raw_logs'",
        ] {
            let v: Option<String> = c.query_one(sql, &[]).await.unwrap().get(0);
            s.push_str(&v.unwrap_or_default());
            s.push('\n');
        }
        s
    })
}

const V26: &str = include_str!("../migrations/V26__hypertable_settings.sql");

/// Migrates with the project's migrations; returns the versions applied.
fn migrate(conninfo: &str) -> Result<Vec<i32>, String> {
    block_on(async {
        let mut c = connect(conninfo).await;
        suiftly_migrations::migrate(&mut c)
            .await
            .map_err(|e| e.to_string())
    })
}

/// Migrates as a release that shipped up to `version` left a database.
fn migrate_to(conninfo: &str, version: i32) {
    block_on(async {
        let mut c = connect(conninfo).await;
        suiftly_migrations::migrate_to(&mut c, version)
            .await
            .unwrap_or_else(|e| panic!("migrate to V{version}: {e}"))
    })
}

/// The project's migration versions from `version` on (what a database at `version - 1` has
/// pending).
fn versions_from(version: i32) -> Vec<i32> {
    suiftly_migrations::versions()
        .into_iter()
        .filter(|v| *v >= version)
        .collect()
}

/// Restarts `pg` with `shared_preload_libraries` set to `preload` (ALTER SYSTEM is read after
/// the settings pgcluster writes).
fn restart_with_preload(pg: &mut PgCluster, preload: &str) {
    exec(
        &pg.connection_string(),
        &format!("ALTER SYSTEM SET shared_preload_libraries = '{preload}'"),
    );
    pg.stop().unwrap();
    pg.start_again().unwrap();
}

fn storage_setting(conninfo: &str) -> String {
    block_on(async {
        connect(conninfo)
            .await
            .query_one(
                "SELECT value FROM suiftly_settings WHERE key = 'raw_logs_storage'",
                &[],
            )
            .await
            .unwrap()
            .get(0)
    })
}

/// V26 on a hypertable run a second time changes nothing (same jobs, same ids); on a
/// native-partitioned database whose server has since started preloading TimescaleDB it leaves
/// the table native with its rows, and ingest goes on; on a hypertable whose server no longer
/// preloads TimescaleDB both the migration and the start-up check refuse, saying what to do.
/// Then the operator's conversion script turns the native table into a hypertable, rows intact.
#[test]
#[ignore = "needs TimescaleDB (see the module doc)"]
fn migration_runs_twice_leaves_native_alone_and_the_script_converts() {
    // 1. A hypertable: V26 again, then the whole migration set again.
    let mut pg = timescale_cluster();
    let conninfo = pg.connection_string();
    assert!(migrate(&conninfo).unwrap().contains(&26));
    assert_eq!(storage_setting(&conninfo), "timescaledb");
    let state = hypertable_state(&conninfo);
    eprintln!("hypertable after V26:\n{state}");
    assert!(state.starts_with("01:00:00\n"), "{state}");
    assert!(
        state.contains("\"compress_after\": \"06:00:00\""),
        "{state}"
    );
    assert!(
        state.ends_with("\n\n"),
        "no index on the raw table: {state}"
    );
    exec(&conninfo, V26);
    assert_eq!(hypertable_state(&conninfo), state, "V26 run twice");
    assert_eq!(migrate(&conninfo).unwrap(), Vec::<i32>::new());

    // 3. (on the same cluster) The server stops preloading TimescaleDB: a database from before
    // V26 is refused by the migration, and the start-up check refuses it too. The database is
    // a second one of this cluster, migrated as a release before V26 left it (refinery never
    // applies a version below the newest applied one, so forgetting V26 in a fully migrated
    // database no longer models that once later versions exist).
    exec(&conninfo, "CREATE DATABASE before_v26");
    let conninfo = pg.connection_string_for("before_v26");
    migrate_to(&conninfo, 25);
    exec(
        &conninfo,
        "INSERT INTO haproxy_raw_logs (\"timestamp\", network, server_id, service_type, api_key_fp, fe_type, traffic_type, event_type, client_ip, status_code, bytes_sent, time_total) VALUES (now(), 1, 1, 1, 7, 1, 1, 1, '10.0.0.1', 200, 1, 1)",
    );
    // (An empty list written by ALTER SYSTEM reads as one empty library name: preload a
    // harmless contrib module instead.)
    restart_with_preload(&mut pg, "auto_explain");
    let err = migrate(&conninfo).unwrap_err();
    assert!(
        err.contains("does not preload it") && err.contains("README"),
        "the migration says what is wrong: {err}"
    );
    let check = block_on(async {
        let c = connect(&conninfo).await;
        suiftly_ingest::timescale::check(&c)
            .await
            .map(|i| i.to_string())
    });
    let msg = check.unwrap_err().to_string();
    assert!(
        msg.contains("shared_preload_libraries") && msg.contains("README"),
        "{msg}"
    );
    // Preloaded again, the pending V26 (and what came after it) applies and the row is still
    // there.
    restart_with_preload(&mut pg, "timescaledb");
    assert_eq!(migrate(&conninfo).unwrap(), versions_from(26));
    assert_eq!(q_i64(&conninfo, "SELECT count(*) FROM haproxy_raw_logs"), 1);
    drop(pg);

    // 2. A native database (created without the preload), from before V26, with rows; then the
    // server preloads TimescaleDB and the pending migration runs.
    let mut pg = PgCluster::temporary_with(|o| o.extra_settings.clear())
        .unwrap_or_else(|e| panic!("a PostgreSQL test cluster must start: {e}"));
    let conninfo = pg.connection_string();
    migrate_to(&conninfo, 25);
    assert_eq!(storage_setting(&conninfo), "native");
    block_on(async {
        suiftly_ingest::db::maintain_once(&conninfo, Duration::from_secs(7 * 24 * 3600), 2)
            .await
            .unwrap()
    });
    for i in 0..10 {
        exec(
            &conninfo,
            &format!(
                "INSERT INTO haproxy_raw_logs (\"timestamp\", network, server_id, service_type, api_key_fp, fe_type, traffic_type, event_type, client_ip, status_code, bytes_sent, time_total) VALUES (now() - interval '{i} minutes', 1, 1, 1, {i}, 1, 1, 1, '10.0.0.1', 200, 1, 1)"
            ),
        );
    }
    let partitions = |c: &str| {
        block_on(async {
            suiftly_ingest::db::existing_partitions(&connect(c).await)
                .await
                .unwrap()
        })
    };
    let parts = partitions(&conninfo);
    restart_with_preload(&mut pg, "timescaledb");
    assert_eq!(migrate(&conninfo).unwrap(), versions_from(26));
    exec(&conninfo, V26);
    assert_eq!(storage_setting(&conninfo), "native");
    assert_eq!(partitions(&conninfo), parts, "partitions untouched");
    assert_eq!(
        q_i64(&conninfo, "SELECT count(*) FROM haproxy_raw_logs"),
        10
    );
    assert_eq!(
        q_i64(
            &conninfo,
            "SELECT count(*) FROM pg_class WHERE relname = 'haproxy_raw_logs' AND relkind = 'p'"
        ),
        1,
        "still a native partitioned table"
    );
    let info = block_on(async {
        suiftly_ingest::timescale::check(&connect(&conninfo).await)
            .await
            .unwrap()
    });
    assert_eq!(info.storage, suiftly_ingest::db::Storage::Native);
    assert!(info.preloaded, "{info:?}");
    assert!(info.to_string().contains("not converted"), "{info}");
    // Ingest goes on the native way: maintenance makes partitions, rows go in.
    let (made, _) = block_on(async {
        suiftly_ingest::db::maintain_once(&conninfo, Duration::from_secs(7 * 24 * 3600), 3)
            .await
            .unwrap()
    });
    assert!(made > 0);
    exec(
        &conninfo,
        "INSERT INTO haproxy_raw_logs (\"timestamp\", network, server_id, service_type, api_key_fp, fe_type, traffic_type, event_type, client_ip, status_code, bytes_sent, time_total) VALUES (now() + interval '2 hours', 1, 1, 1, 99, 1, 1, 1, '10.0.0.1', 200, 1, 1)",
    );
    assert_eq!(
        q_i64(&conninfo, "SELECT count(*) FROM haproxy_raw_logs"),
        11
    );

    // 4. The operator converts it (README): the script moves every row into a hypertable with
    // V26's settings; a second run refuses (nothing to convert) and changes nothing.
    let before = fingerprint(&conninfo);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/convert-to-hypertable.sql");
    let psql = |c: &str| {
        Command::new(psql_bin())
            .args(["-X", "-q", "-d", c, "-f"])
            .arg(&script)
            .output()
            .unwrap()
    };
    let out = psql(&conninfo);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(storage_setting(&conninfo), "timescaledb");
    assert_eq!(fingerprint(&conninfo), before, "every row moved unchanged");
    assert!(partitions(&conninfo).is_empty(), "native partitions gone");
    let converted = hypertable_state(&conninfo);
    assert!(converted.starts_with("01:00:00\n"), "{converted}");
    assert!(
        converted.contains("\"compress_after\": \"06:00:00\"")
            && converted.contains("server_id:1:0")
            && converted.ends_with("\n\n"),
        "{converted}"
    );
    let again = psql(&conninfo);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("nothing to convert"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(fingerprint(&conninfo), before);
    // Ingest goes on the hypertable way: no partitions, retention from configuration.
    let (made, dropped) = block_on(async {
        suiftly_ingest::db::maintain_once(&conninfo, Duration::from_secs(48 * 3600), 3)
            .await
            .unwrap()
    });
    assert_eq!((made, dropped), (0, 0));
    assert!(hypertable_state(&conninfo).contains("\"drop_after\": \"48:00:00\""));
    exec(
        &conninfo,
        "INSERT INTO haproxy_raw_logs (\"timestamp\", network, server_id, service_type, api_key_fp, fe_type, traffic_type, event_type, client_ip, status_code, bytes_sent, time_total) VALUES (now(), 1, 1, 1, 100, 1, 1, 1, '10.0.0.1', 200, 1, 1)",
    );
    assert_eq!(
        q_i64(&conninfo, "SELECT count(*) FROM haproxy_raw_logs"),
        12
    );
}

/// The newest installed psql (Debian keeps one per major version).
fn psql_bin() -> std::path::PathBuf {
    let mut found: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL client binaries under /usr/lib/postgresql")
        .filter_map(|e| Some(e.ok()?.path().join("bin/psql")))
        .filter(|p| p.exists())
        .collect();
    found.sort();
    found.pop().expect("psql must be installed")
}
