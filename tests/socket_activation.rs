//! Restarts of the ingestor under socket activation lose nothing; without it they lose what
//! was sent while no socket existed.
//!
//! `systemd-socket-activate` (Debian's `systemd` package) binds the UDP socket and passes it
//! the way systemd does (`LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`). It execs its command
//! once, so the command here is a small shell loop that plays PID 1's other role: it keeps
//! the passed socket open and starts `suiftly run` again after each exit, with `LISTEN_PID`
//! set to the new process (as systemd does for each start of the service). Between an exit
//! and the next start the test itself sends a burst of lines — the window a restart opens —
//! so the comparison does not depend on timing: under activation the kernel queues the burst
//! in the held socket and the next process stores it; without, nothing holds the port and the
//! burst is gone. A steady sender runs throughout; its loss without activation is printed
//! (the figure docs/OPERATIONS.md quotes), never asserted.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pgcluster::PgCluster;

mod common;
mod witness;
use witness::{UdpSender, some, stored, stored_count, udp_socket_counters};

const RATE: u64 = 1_000;
const BURST: u64 = 500;
const RESTARTS: u64 = 3;
/// Sequence numbers of the bursts sent while the ingestor is down start here.
const BURST_BASE: u64 = 1_000_000;

fn port_for(slot: u16) -> u16 {
    common::port_for(30_000, 130, slot)
}

fn line(seq: u64) -> String {
    let now = common::now_ms();
    format!(
        "sf1 {}.{:03} fe 1 17 2 2 9 - {seq} - 1 - 10.1.2.3 200 100 0 0 1 2 3 1 -- /seq",
        now / 1000,
        now % 1000
    )
}

fn send_burst(port: u16, from: u64) {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for seq in from..from + BURST {
        let t = line(seq);
        s.send_to(t.as_bytes(), ("127.0.0.1", port)).unwrap();
    }
}

fn write_config(dir: &Path, port: u16, mport: u16) -> PathBuf {
    let cfg = dir.join("suiftly.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = \"{}\"\n[metrics]\nlisten = \"127.0.0.1:{mport}\"\n[batch]\nmax_rows = 500\nmax_age_ms = 50\n\
             [[listener]]\nname = \"syslog\"\nkind = \"udp\"\naddress = \"127.0.0.1:{port}\"\n\
             receive_buffer_bytes = 33554432\nframing = \"raw\"\npayload = \"sf1\"\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    cfg
}

fn alive(pid: i32) -> bool {
    // SAFETY: kill(2) with signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !ok() {
        assert!(t0.elapsed() < Duration::from_secs(120), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_metrics(mport: u16) {
    wait_until("the ingestor's /metrics", || {
        std::net::TcpStream::connect(("127.0.0.1", mport)).is_ok()
    });
}

fn tool(name: &str) -> PathBuf {
    for dir in ["/usr/bin", "/bin", "/usr/local/bin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("{name} is not installed: apt-get install systemd (.ci/run installs it)");
}

/// `systemd-socket-activate` holding the socket, with the restart loop under it.
struct Activated {
    child: Child,
    dir: PathBuf,
}

impl Activated {
    fn start(dir: &Path, cfg: &Path, conninfo: &str, port: u16, aport: u16) -> Self {
        // The inner `sh -c` sets LISTEN_PID to its own pid and execs: the protocol's
        // "for this process" check holds for every start, as under systemd.
        let script = dir.join("restart-loop.sh");
        std::fs::write(
            &script,
            r#"while [ ! -e "$D/stop" ]; do
  sh -c 'echo $$ > "$D/pid.tmp"; mv "$D/pid.tmp" "$D/pid"; LISTEN_PID=$$ exec "$BIN" --config "$CFG" run'
  while [ ! -e "$D/go" ] && [ ! -e "$D/stop" ]; do sleep 0.02; done
  rm -f "$D/go"
done
"#,
        )
        .unwrap();
        let env = |k: &str, v: &str| format!("--setenv={k}={v}");
        let child = Command::new(tool("systemd-socket-activate"))
            .arg("--datagram")
            .arg(format!("--listen=127.0.0.1:{port}"))
            .arg("--fdname=syslog")
            .arg(env("D", dir.to_str().unwrap()))
            .arg(env("BIN", env!("CARGO_BIN_EXE_suiftly")))
            .arg(env("CFG", cfg.to_str().unwrap()))
            .arg(env("DATABASE_URL", conninfo))
            .arg(env("SUIFTLY_ADMIN_LISTEN", &format!("127.0.0.1:{aport}")))
            .arg(env("RUST_LOG", "warn"))
            .arg("--")
            .arg("/bin/sh")
            .arg(&script)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        Self {
            child,
            dir: dir.to_path_buf(),
        }
    }

    fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.dir.join("pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// SIGTERM to the running ingestor; returns once it has exited.
    fn stop_ingestor(&mut self) -> i32 {
        let pid = self.pid().expect("an ingestor runs");
        // SAFETY: kill(2) on the ingestor this test started.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        wait_until("the ingestor to exit", || !alive(pid));
        pid
    }

    fn start_again(&self, old: i32, mport: u16) {
        std::fs::write(self.dir.join("go"), "").unwrap();
        wait_until("a new ingestor", || self.pid().is_some_and(|p| p != old));
        wait_metrics(mport);
    }

    fn finish(mut self) {
        std::fs::write(self.dir.join("stop"), "").unwrap();
        self.stop_ingestor();
        let st = self.child.wait().unwrap();
        assert!(st.success(), "the restart loop exited with {st}");
    }
}

impl Drop for Activated {
    fn drop(&mut self) {
        let _ = std::fs::write(self.dir.join("stop"), "");
        if let Some(pid) = self.pid() {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every line sent is stored once: the steady stream and every burst sent while no
/// ingestor ran.
#[test]
fn restarts_under_socket_activation_lose_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let pg = PgCluster::temporary().unwrap_or_else(|e| panic!("cannot start test postgresql: {e}"));
    let (port, mport, aport) = (port_for(0), port_for(1), port_for(2));
    let cfg = write_config(tmp.path(), port, mport);
    let mut act = Activated::start(tmp.path(), &cfg, &pg.connection_string(), port, aport);
    // The first datagram makes systemd-socket-activate exec the loop (it waits for traffic,
    // like a socket unit without `Service=` started); it stays queued and is stored.
    wait_until("systemd-socket-activate to bind", || {
        udp_socket_counters(port).is_some()
    });
    let mut tx = UdpSender::start(port, RATE, line);
    wait_until("the first ingestor", || act.pid().is_some());
    wait_metrics(mport);
    for r in 0..RESTARTS {
        std::thread::sleep(Duration::from_millis(500));
        let old = act.stop_ingestor();
        send_burst(port, BURST_BASE + r * BURST);
        act.start_again(old, mport);
    }
    std::thread::sleep(Duration::from_millis(500));
    let (sent, _) = tx.stop();
    let want = sent + RESTARTS * BURST;
    let conninfo = pg.connection_string();
    let mut n = 0;
    let t0 = Instant::now();
    while n < want {
        n = stored_count(&conninfo) as u64;
        if t0.elapsed() > Duration::from_secs(120) {
            let (rows, rejected) = stored(&conninfo);
            let missing: Vec<i64> = (0..sent as i64)
                .chain((0..RESTARTS * BURST).map(|i| (BURST_BASE + i) as i64))
                .filter(|s| !rows.contains_key(s))
                .collect();
            panic!(
                "{n} of {want} lines stored after 120 s ({rejected} rejected); missing {} (e.g. {}); \
                 kernel counters (queued bytes, drops): {:?}",
                missing.len(),
                some(&missing),
                udp_socket_counters(port)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, drops) = udp_socket_counters(port).expect("the held socket is in /proc/net/udp");
    act.finish();
    let (rows, rejected) = stored(&conninfo);
    assert_eq!(rejected, 0);
    assert_eq!(drops, 0, "the kernel dropped datagrams on the held socket");
    let twice: Vec<_> = rows.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "stored twice: {}", some(twice));
    let expected: Vec<i64> = (0..sent as i64)
        .chain((0..RESTARTS * BURST).map(|i| (BURST_BASE + i) as i64))
        .collect();
    let missing: Vec<_> = expected.iter().filter(|s| !rows.contains_key(s)).collect();
    eprintln!(
        "socket activation: {RESTARTS} restarts, {sent} steady lines + {} sent while down, {} stored, {} missing",
        RESTARTS * BURST,
        rows.len(),
        missing.len()
    );
    assert!(
        missing.is_empty(),
        "lost across restarts: {} (e.g. {})",
        missing.len(),
        some(&missing)
    );
    assert_eq!(rows.len() as u64, want, "stored lines that were never sent");
}

/// The same restarts with the ingestor binding its own socket: every burst sent while it was
/// down is lost (nothing holds the port), nothing is stored twice, and the steady stream's
/// loss is measured and printed.
#[test]
fn restarts_without_socket_activation_lose_what_is_sent_while_down() {
    let tmp = tempfile::tempdir().unwrap();
    let pg = PgCluster::temporary().unwrap_or_else(|e| panic!("cannot start test postgresql: {e}"));
    let (port, mport, aport) = (port_for(3), port_for(4), port_for(5));
    let cfg = write_config(tmp.path(), port, mport);
    let mut ing = common::Suiftly::new(cfg, pg.connection_string(), mport, aport);
    ing.start();
    let mut tx = UdpSender::start(port, RATE, line);
    let mut gaps = Vec::new();
    for r in 0..RESTARTS {
        std::thread::sleep(Duration::from_millis(500));
        let before = tx.sent();
        let t0 = Instant::now();
        ing.stop();
        send_burst(port, BURST_BASE + r * BURST);
        ing.start();
        gaps.push((t0.elapsed(), tx.sent() - before));
    }
    std::thread::sleep(Duration::from_millis(500));
    let (sent, _) = tx.stop();
    let conninfo = pg.connection_string();
    // Bounded wait for what arrived to be stored: until the count stops moving.
    let mut last = -1;
    wait_until("the stored count to settle", || {
        std::thread::sleep(Duration::from_millis(500));
        let n = stored_count(&conninfo);
        std::mem::replace(&mut last, n) == n
    });
    ing.stop();
    let (rows, rejected) = stored(&conninfo);
    assert_eq!(rejected, 0);
    let twice: Vec<_> = rows.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "stored twice: {}", some(twice));
    let bursts_stored = rows.keys().filter(|&&s| s >= BURST_BASE as i64).count();
    assert_eq!(
        bursts_stored, 0,
        "lines sent while no ingestor held the port were stored: something else bound it"
    );
    let steady_stored = rows.keys().filter(|&&s| s < sent as i64).count() as u64;
    assert_eq!(
        steady_stored + bursts_stored as u64,
        rows.len() as u64,
        "stored lines that were never sent"
    );
    let lost = sent - steady_stored;
    eprintln!(
        "without socket activation: {RESTARTS} restarts at {RATE} lines/s; steady stream: {sent} sent, \
         {steady_stored} stored, {lost} lost ({:.1} per restart); bursts sent while down: {} sent, 0 stored; \
         (stop+start time, steady lines sent meanwhile) per restart: {gaps:?}",
        lost as f64 / RESTARTS as f64,
        RESTARTS * BURST
    );
}
