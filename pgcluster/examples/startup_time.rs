//! Measures how long a temporary cluster takes to start and stop.
//!
//! `cargo run -p pgcluster --example startup_time [N]`; set
//! `PGCLUSTER_NO_TEMPLATE=1` to time a fresh initdb each start, and
//! `PGCLUSTER_TMPDIR=/tmp` to keep the clusters off `/dev/shm`.

use std::time::Instant;

fn main() -> Result<(), pgcluster::Error> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5);
    let mut starts = Vec::new();
    let mut stops = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        let pg = pgcluster::PgCluster::temporary()?;
        starts.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        drop(pg);
        stops.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let show = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!("start ms: {}", show(&starts));
    println!("drop  ms: {}", show(&stops));
    Ok(())
}
