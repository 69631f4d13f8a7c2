//! Append throughput of 200-byte records under each fsync policy.
//!
//! `cargo run --release --example append_rate -- [DIR] [SECONDS_PER_POLICY] [BATCH]`
//!
//! DIR defaults to a temporary directory under the current directory (not /tmp, which may be
//! tmpfs and would hide the cost of fsync). A batch is what one receive loop iteration would
//! append before committing.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use suiftly_spool::{FsyncPolicy, Record, SpoolConfig, SpoolWriter};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let base = args
        .get(1)
        .map_or_else(|| std::env::current_dir().unwrap(), Into::into);
    let seconds: f64 = args.get(2).map_or(3.0, |s| s.parse().expect("seconds"));
    let batch: usize = args.get(3).map_or(256, |s| s.parse().expect("batch"));
    let payload = vec![b'x'; 200];
    let source: SocketAddr = "10.1.2.3:51400".parse().unwrap();
    let records: Vec<_> = (0..batch)
        .map(|i| Record {
            received_at_us: 1_700_000_000_000_000 + i as i64,
            listener: 0,
            source: Some(source),
            payload: &payload,
        })
        .collect();

    println!(
        "200-byte payloads, {batch} records per commit, {seconds} s per policy, dir {}",
        base.display()
    );
    for fsync in [
        FsyncPolicy::EveryBatch,
        FsyncPolicy::IntervalMs(10),
        FsyncPolicy::IntervalMs(100),
        FsyncPolicy::Never,
    ] {
        let dir = tempfile::tempdir_in(&base).expect("temp dir");
        let cfg = SpoolConfig {
            segment_bytes: 64 << 20,
            max_total_bytes: 64 << 30,
            fsync,
        };
        let (mut w, _) = SpoolWriter::open(dir.path(), cfg).expect("open");
        let start = Instant::now();
        let mut n = 0u64;
        let mut commits = 0u64;
        while start.elapsed() < Duration::from_secs_f64(seconds) {
            w.append_batch(&records).expect("append");
            w.commit().expect("commit");
            n += records.len() as u64;
            commits += 1;
        }
        let end = w.close().expect("close");
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{:<18} {:>10.0} records/s {:>8.1} MB/s on disk {:>8.0} commits/s",
            format!("{fsync:?}"),
            n as f64 / secs,
            end.0 as f64 / secs / 1e6,
            commits as f64 / secs,
        );
    }
}
