//! Backlog drain after a database outage (a measurement, not a test):
//!
//!     cargo bench --bench drain            # LINES=1000000 by default
//!
//! Starts `suiftly run` (release) on a unix-socket listener with the spool on (fsync
//! "interval"), stops its PostgreSQL (fsync on), sends LINES sf1 lines (the unix socket pushes
//! back, so all are accepted into the spool), restarts PostgreSQL and measures the time until
//! every line is stored.

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let lines: u64 = std::env::var("LINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let tmp = tempfile::tempdir().unwrap();
    let mut pg = pgcluster::PgCluster::temporary_with(|o| o.fsync = true).expect("postgresql");
    let sock = tmp.path().join("ingest.sock");
    let mport = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = tmp.path().join("s.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = \"{}\"\n[metrics]\nlisten = \"127.0.0.1:{mport}\"\n[spool]\nfsync = \"interval\"\n\
             [[listener]]\nname = \"unix\"\nkind = \"unix\"\naddress = \"{}\"\nframing = \"raw\"\npayload = \"sf1\"\n",
            tmp.path().join("data").display(),
            sock.display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_suiftly"))
        .env("SUIFTLY_ADMIN_LISTEN", "127.0.0.1:0")
        .env("SUIFTLY_API_LISTEN", "127.0.0.1:0")
        .args(["--config", cfg.to_str().unwrap(), "run"])
        .env("DATABASE_URL", pg.connection_string())
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", mport)).is_err() {
        assert!(t0.elapsed() < Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(20));
    }
    pg.stop().unwrap();
    let s = UnixDatagram::unbound().unwrap();
    let t_send = Instant::now();
    let base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    for i in 0..lines {
        let ms = base + i / 1000;
        let line = format!(
            "sf1 {}.{:03} fe 1 17 2 2 9 - {} - 1 - 10.1.2.3 200 100 0 0 1 2 3 1 -- /drain",
            ms / 1000,
            ms % 1000,
            i as i64 % i32::MAX as i64
        );
        s.send_to(line.as_bytes(), &sock).unwrap();
    }
    let send_secs = t_send.elapsed().as_secs_f64();
    // Let the last appends become durable.
    std::thread::sleep(Duration::from_millis(500));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let t_drain = Instant::now();
    pg.start_again().unwrap();
    let count = || -> u64 {
        rt.block_on(async {
            let Ok(c) = suiftly_ingest::writer::connect(&pg.connection_string()).await else {
                return 0;
            };
            c.query_one("SELECT count(*) FROM haproxy_raw_logs", &[])
                .await
                .map(|r| r.get::<_, i64>(0) as u64)
                .unwrap_or(0)
        })
    };
    loop {
        let n = count();
        if n >= lines {
            break;
        }
        assert!(
            t_drain.elapsed() < Duration::from_secs(600),
            "drain stuck at {n}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let drain = t_drain.elapsed().as_secs_f64();
    println!(
        "drain: {lines} lines accepted during the outage (sent in {send_secs:.1}s); stored {:.1}s after PostgreSQL returned = {:.0} rows/s = {:.1}× real time at 50k lines/s",
        drain,
        lines as f64 / drain,
        (lines as f64 / 50_000.0) / drain
    );
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
}
