//! More than one ingestor into one database (issue 17): three `suiftly run` processes with
//! their own `[ingest] id`, spool and socket, one PostgreSQL. Each one's accepted lines are
//! stored exactly once across SIGKILLs of another, metering counts every ingestor's rows once
//! (two aggregators settling the same minutes both count; hours roll up once every ingestor
//! has settled them), `suiftly audit` finds no difference; and a second live process with an
//! id already in use is refused at start while the first goes on, the id free again the
//! moment its holder is killed.
//!
//! Lines carry a per-ingestor sequence number (key fingerprint) and the ingestor's number as
//! their server id, so the test reads each ingestor's rows apart with a plain client.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pgcluster::PgCluster;

mod common;
mod witness;
use common::{Suiftly, now_ms};
use witness::{
    SpoolTail, UnixSender, assert_stored_exactly, block_on, check_period, clock_seed, connect,
    read_spool, rnd,
};

/// Ports above the kernel's ephemeral range, apart from the other test binaries' ranges.
fn port_for(slot: u16) -> u16 {
    common::port_for(63_000, 100, slot)
}

const HOUR_MS: u64 = 3_600_000;
const WINDOW: u64 = 256;

/// One ingestor's files and process.
struct Node {
    id: &'static str,
    /// Its lines' server id.
    sid: i16,
    dir: PathBuf,
    sock: PathBuf,
    run: Suiftly,
}

impl Node {
    fn new(base: &Path, pg: &PgCluster, slot: u16, id: &'static str, sid: i16) -> Node {
        let dir = base.join(id);
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("ingest.sock");
        let (mport, aport) = (port_for(2 * slot), port_for(2 * slot + 1));
        let run = Suiftly::new(
            dir.join("suiftly.toml"),
            pg.connection_string(),
            mport,
            aport,
        );
        let n = Node {
            id,
            sid,
            dir,
            sock,
            run,
        };
        n.configure(true);
        n
    }

    /// Writes the config: metering on or off.
    fn configure(&self, metering: bool) {
        std::fs::write(
            &self.run.cfg,
            format!(
                "data_dir = \"{}\"\n[ingest]\nid = \"{}\"\n[metrics]\nlisten = \"127.0.0.1:{}\"\n\
                 [batch]\nmax_rows = 500\nmax_age_ms = 50\n\
                 [aggregate]\nenabled = {metering}\nallowed_lateness_ms = 1000\nidle_lag_ms = 500\nsettle_interval_ms = 100\n\
                 [manager]\nenabled = false\n\
                 [[listener]]\nname = \"u\"\nframing = \"raw\"\npayload = \"sf1\"\n\
                 kind = \"unix\"\naddress = \"{}\"\n",
                self.dir.join("data").display(),
                self.id,
                self.run.metrics_port,
                self.sock.display()
            ),
        )
        .unwrap();
    }

    fn spool_dir(&self) -> PathBuf {
        self.dir.join("data").join("spool")
    }
}

/// Line `seq` of the ingestor whose lines carry server id `sid` (reproducible from both):
/// customers 1–5 or none, every traffic type, a few statuses, and a timestamp anywhere from
/// `from_ms` to just before the current minute. The key fingerprint carries `seq`.
fn line(seq: u64, sid: i16, from_ms: u64) -> String {
    let mut seed = (seq ^ ((sid as u64) << 40)).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
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
    let ta = rnd(seed) % 900;
    format!(
        "sf1 {}.{:03} fe 1 {sid} {svc} 2 {cust} - {seq} - {tt} 0 10.1.2.3 {status} {bytes} 0 1 1 2 {ta} 1 -- /v1",
        ts / 1000,
        ts % 1000
    )
}

fn query_i64(conninfo: &str, sql: &str, sid: Option<i16>) -> i64 {
    block_on(async {
        let c = connect(conninfo).await;
        let r = match sid {
            Some(s) => c.query_one(sql, &[&s]).await,
            None => c.query_one(sql, &[]).await,
        };
        r.unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get::<_, Option<i64>>(0)
            .unwrap_or(0)
    })
}

/// Sequence number → how many rows of `haproxy_raw_logs` from server `sid` carry it.
fn stored_of(conninfo: &str, sid: i16) -> BTreeMap<i64, u32> {
    block_on(async {
        let c = connect(conninfo).await;
        let mut m = BTreeMap::new();
        for r in c
            .query(
                "SELECT api_key_fp FROM haproxy_raw_logs WHERE server_id = $1",
                &[&sid],
            )
            .await
            .unwrap()
        {
            *m.entry(r.get::<_, i64>(0)).or_insert(0) += 1;
        }
        m
    })
}

/// Three ingestors, SIGKILLs of one of them under load (first with its metering off, then
/// on), the others loaded throughout. Then, for each ingestor: the spool holds every line sent
/// but the newest few at each kill, and PostgreSQL holds exactly those, once; its rows are all
/// metered (infra rows by server id); usage equals the billable raw rows; the database-wide
/// settlement sequence has no gap or repeat; `suiftly audit` finds zero differences.
///
/// Metering of this database settled everything before three whole hours ago, and `gw-b`
/// replays its first run (metering off) from its spool when metering comes on: its first
/// settlement then closes those three hours from open windows, after `gw-a` and `gw-c` have
/// settled their minutes of them — so the hours roll up from minutes of all three ingestors.
#[test]
fn three_ingestors_one_killed_during_load_store_and_meter_exactly_once() {
    let pg = PgCluster::temporary().expect("a PostgreSQL test cluster must start");
    let tmp = tempfile::tempdir().unwrap();
    let conninfo = pg.connection_string();
    let mut nodes = [
        Node::new(tmp.path(), &pg, 0, "gw-a", 1),
        Node::new(tmp.path(), &pg, 1, "gw-b", 2),
        Node::new(tmp.path(), &pg, 2, "gw-c", 3),
    ];
    let out = nodes[0].run.command(&["migrate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let now = now_ms();
    let from_ms = now - now % HOUR_MS - 3 * HOUR_MS;
    block_on(async {
        let c = connect(&conninfo).await;
        c.execute(
            "INSERT INTO aggregate_state (id, applied_through, restart_position, settled_before) \
             VALUES (1, 0, 0, to_timestamp($1::float8 / 1000))",
            &[&(from_ms as f64)],
        )
        .await
        .unwrap();
        // gw-b's metering starts at the beginning of its spool (its first run has it off).
        c.execute(
            "INSERT INTO aggregate_ingestors (ingestor, applied_through, restart_position, settled_before) \
             VALUES ('gw-b', 0, 0, to_timestamp($1::float8 / 1000))",
            &[&(from_ms as f64)],
        )
        .await
        .unwrap();
    });
    nodes[1].configure(false);
    for n in nodes.iter_mut() {
        n.run.start();
    }
    let mut senders: Vec<UnixSender> = nodes
        .iter()
        .map(|n| {
            let sid = n.sid;
            UnixSender::start(&n.sock, &n.spool_dir(), 1_500, WINDOW, move |seq| {
                line(seq, sid, from_ms)
            })
        })
        .collect();
    let mut seed = clock_seed();
    eprintln!("seed {seed}, traffic from {from_ms} ms");

    // SIGKILL gw-b twice under load: metering off, then on.
    let b = 1;
    let mut spool: Vec<i64> = Vec::new();
    let mut start = 0u64;
    let mut lost = 0u64;
    for round in 0..2 {
        let target = start + 1_500 + rnd(&mut seed) % 2_000;
        senders[b].wait_seen(target, Duration::from_secs(120), "before a kill");
        let paused = senders[b].pause();
        nodes[b].run.kill9();
        let sent = paused.sent();
        paused.restart_window();
        let seqs = read_spool(&nodes[b].spool_dir()).seqs();
        let what = format!("gw-b kill {round}");
        let l = check_period(&spool, &seqs, start, sent, WINDOW, &what);
        eprintln!(
            "{what}: lines {start}..{sent} sent, {} accepted, {l} lost",
            seqs.len() - spool.len()
        );
        lost += l;
        spool = seqs;
        start = sent;
        drop(paused);
        nodes[b].configure(true);
        nodes[b].run.start();
    }
    senders[b].wait_seen(
        start + 1_000,
        Duration::from_secs(120),
        "after the last restart",
    );

    // Stop sending; everything sent is in the spools, then metered.
    let totals: Vec<u64> = senders.iter_mut().map(|s| s.stop()).collect();
    let stopped_ms = now_ms();
    for (n, &total) in nodes.iter().zip(&totals) {
        let mut tail = SpoolTail::new(&n.spool_dir());
        let t0 = Instant::now();
        while tail.poll() < total {
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "{}: the spool shows {} of {total} lines",
                n.id,
                tail.seen
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // Every line's minute ended before the senders stopped: wait until every ingestor has
    // stored and metered all it accepted and the database-wide watermark passed them.
    let t0 = Instant::now();
    loop {
        let behind = query_i64(
            &conninfo,
            "SELECT count(*) FROM ingest_positions p \
             JOIN aggregate_ingestors a ON p.consumer = 'copy@' || a.ingestor \
             WHERE a.applied_through < p.position",
            None,
        );
        let settled = query_i64(
            &conninfo,
            "SELECT (extract(epoch FROM settled_before) * 1000)::bigint FROM aggregate_state",
            None,
        ) as u64;
        let stored = query_i64(&conninfo, "SELECT count(*) FROM haproxy_raw_logs", None) as u64;
        let spooled: u64 = nodes
            .iter()
            .map(|n| read_spool(&n.spool_dir()).payloads.len() as u64)
            .sum();
        if behind == 0 && settled >= stopped_ms - stopped_ms % 60_000 && stored == spooled {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(180),
            "metering did not catch up: {behind} ingestors behind, settled {settled}, stored {stored} of {spooled}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for n in nodes.iter_mut() {
        n.run.stop();
    }

    // Per ingestor: accepted (its spool, read here) = stored, each once; and metered.
    for (i, n) in nodes.iter().enumerate() {
        let end = read_spool(&n.spool_dir());
        if i == b {
            check_period(
                &spool,
                &end.seqs(),
                start,
                totals[i],
                0,
                "gw-b after the graceful stop",
            );
        } else {
            check_period(&[], &end.seqs(), 0, totals[i], 0, n.id);
        }
        let stored = stored_of(&conninfo, n.sid);
        assert_stored_exactly(&end.seqs(), &stored, n.id);
        let lost_here = if i == b { lost } else { 0 };
        assert_eq!(
            stored.len() as u64 + lost_here,
            totals[i],
            "{}: every line sent is stored or was in flight at a kill",
            n.id
        );
        let metered = query_i64(
            &conninfo,
            "SELECT sum(request_count)::bigint FROM infra_per_min WHERE server_id = $1",
            Some(n.sid),
        );
        eprintln!(
            "{}: sent {}, stored {}, metered {metered}",
            n.id,
            totals[i],
            stored.len()
        );
        assert_eq!(
            metered,
            stored.len() as i64,
            "{}: every stored row metered exactly once",
            n.id
        );
    }

    // Usage for billing: all ingestors' billable rows of the settled minutes, once.
    let usage = query_i64(
        &conninfo,
        "SELECT sum(request_count)::bigint FROM usage_records",
        None,
    );
    let billable = query_i64(
        &conninfo,
        "SELECT count(*) FROM haproxy_raw_logs WHERE customer_id IS NOT NULL \
            AND traffic_type IN (1, 2) \
            AND timestamp < (SELECT settled_before FROM aggregate_state)",
        None,
    );
    assert!(billable > 0);
    assert_eq!(usage, billable, "usage_records = billable raw rows");
    // One database-wide settlement sequence: 1..n, each once, and the state row at n.
    let (n_log, max_seq) = (
        query_i64(&conninfo, "SELECT count(*) FROM settlement_log", None),
        query_i64(&conninfo, "SELECT max(seq) FROM settlement_log", None),
    );
    let state_seq = query_i64(
        &conninfo,
        "SELECT settlement_seq FROM aggregate_state",
        None,
    );
    assert_eq!((n_log, max_seq), (state_seq, state_seq));
    let settlers = query_i64(
        &conninfo,
        "SELECT count(*) FROM aggregate_ingestors WHERE settlement_seq > 0",
        None,
    );
    assert_eq!(settlers, 3, "every ingestor settled");

    let out = nodes[0]
        .run
        .command(&["audit", "--from", "-4h", "--to", "now"]);
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "audit reported differences");
    assert!(text.contains(", 0 differences"), "{text}");
    let compared: i64 = text
        .lines()
        .find_map(|l| l.strip_prefix("audit: ")?.split(' ').next()?.parse().ok())
        .expect("summary line");
    assert!(compared > 100, "{text}");
}

/// `suiftly run` with `cfg` and the database, its output captured; waits for it to exit by
/// itself (a refused start) and returns (success, stderr).
fn run_expecting_exit(cfg: &Path, conninfo: &str) -> (bool, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_suiftly"))
        .args(["--config", cfg.to_str().unwrap(), "run"])
        .env("DATABASE_URL", conninfo)
        .env("SUIFTLY_API_LISTEN", "127.0.0.1:0")
        .env("SUIFTLY_ADMIN_LISTEN", "127.0.0.1:0")
        .env_remove("SUIFTLY_OPERATOR_TOKEN")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (status, err) = common::exit_and_stderr(
        &mut child,
        Duration::from_secs(60),
        "a second ingestor with the same id did not exit",
    );
    (status.success(), err)
}

/// A second live process with an id in use is refused at start with a message naming the id,
/// and the first goes on storing; once the first is SIGKILLed its id is free at once (the
/// restarted process takes it, and a duplicate is refused again).
#[test]
fn a_duplicate_ingestor_id_is_refused_at_start_and_free_again_after_a_kill() {
    let pg = PgCluster::temporary().expect("a PostgreSQL test cluster must start");
    let tmp = tempfile::tempdir().unwrap();
    let conninfo = pg.connection_string();
    let mut first = Node::new(tmp.path(), &pg, 3, "gw-a", 1);
    first.run.start();
    // Another machine's ingestor, configured with the same id by mistake.
    let second = Node::new(&tmp.path().join("other"), &pg, 4, "gw-a", 2);
    let (ok, err) = run_expecting_exit(&second.run.cfg, &conninfo);
    eprintln!("{err}");
    assert!(!ok, "the duplicate must exit with an error");
    assert!(
        err.contains("ingestor id \"gw-a\" is already in use"),
        "the refusal names the id: {err}"
    );
    // The first is unaffected: it still takes and stores lines.
    let sid = first.sid;
    let mut tx = UnixSender::start(&first.sock, &first.spool_dir(), 2_000, WINDOW, move |seq| {
        line(seq, sid, now_ms() - 10 * 60_000)
    });
    tx.wait_seen(500, Duration::from_secs(60), "the first ingestor");
    let total = tx.stop();
    let t0 = Instant::now();
    while stored_of(&conninfo, sid).len() < total as usize {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the first ingestor stopped storing"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(first.run.health().0, 200);
    // A different id is welcome meanwhile.
    let mut other = Node::new(&tmp.path().join("third"), &pg, 5, "gw-c", 3);
    other.run.start();
    // SIGKILL: the session (and its lock) ends with the process; the id is free at once for
    // the restarted ingestor. (The other machine's process still could not take it over: the
    // id's spool position belongs to the first one's spool, which that start refuses.)
    first.run.kill9();
    first.run.start();
    assert_eq!(first.run.health().0, 200);
    let (ok, err) = run_expecting_exit(&second.run.cfg, &conninfo);
    assert!(
        !ok && err.contains("ingestor id \"gw-a\" is already in use"),
        "{err}"
    );
    first.run.stop();
    other.run.stop();
}
