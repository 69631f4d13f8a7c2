//! Parser cost in CPU time per line, immune to other processes sharing the cores (criterion
//! measures wall time). Reads this thread's on-CPU nanoseconds from `/proc/thread-self/schedstat`.
//!
//! `cargo run --release -p suiftly-parser --example cputime [fixtures/haproxy/local-sf1.log ...]`

use std::collections::HashMap;

use suiftly_parser::{Framing, FrontendMapping, Parser, PayloadFormat, SourceConfig};

fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let fe = FrontendMapping {
        service_type: 2,
        network: 1,
        fe_type: 2,
    };
    let p = Parser::new(SourceConfig {
        framing: Framing::Auto,
        payload: PayloadFormat::Auto,
        server_id: Some(0x21),
        frontends: HashMap::from([("fe_sf1".to_owned(), fe), ("fe_http0".to_owned(), fe)]),
        default_frontend: Some(fe),
        accept_date_utc_offset_secs: 0,
    });
    for path in std::env::args().skip(1) {
        let data = std::fs::read(&path).expect("read fixture");
        let lines: Vec<&[u8]> = data
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty() && p.parse(l).is_ok())
            .collect();
        let bytes: usize = lines.iter().map(|l| l.len()).sum();
        let total: usize = std::env::var("LINES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2_000_000);
        let rounds = total / lines.len().max(1);
        let start = cpu_ns();
        for _ in 0..rounds {
            for l in &lines {
                let _ = std::hint::black_box(p.parse(std::hint::black_box(l)));
            }
        }
        let ns = (cpu_ns() - start) as f64;
        let n = (rounds * lines.len()) as f64;
        println!(
            "{path}: {:.0} ns/line, {:.2} M lines/s, {:.0} MB/s per CPU-second",
            ns / n,
            n / ns * 1e3,
            (rounds * bytes) as f64 / ns * 1e3
        );
    }
}
