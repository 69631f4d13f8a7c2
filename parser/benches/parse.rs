//! Parser throughput per format: lines/s (`Throughput::Elements`) and bytes/s
//! (`Throughput::Bytes`) on one core.
//!
//! Input comes from the HAProxy captures in `fixtures/haproxy/<framing>-<payload>.log` (one
//! datagram per line) when present, otherwise from embedded synthetic lines; the benchmark id
//! says which (`fixture` / `synthetic`). Only lines that parse are measured, so a rejected
//! truncated fixture line does not make a format look faster than it is.
//!
//! Run: `cargo bench -p suiftly-parser --bench parse -- --warm-up-time 1 --measurement-time 3`
//! (it lives in the parser crate so that this builds only the parser, not the whole workspace).

use std::collections::HashMap;
use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use suiftly_parser::{Framing, FrontendMapping, Parser, PayloadFormat, SourceConfig};

const SYNTH_SF1: &[&str] = &[
    "sf1 1764122457.123 fe_grpc_mainnet 1 17 2 2 12345 00000000000000ff 16801928 8449 1 0 203.0.113.9 200 5120 0 0 1 3 4 1 -- /sui.rpc.v2.LedgerService/GetObject",
    "sf1 1764122457.124 fe_grpc_mainnet - - - - - - - - - - 2001:db8::7 401 215 0 -1 -1 -1 0 - PR /sui.rpc.v2.TransactionExecutionService/ExecuteTransaction",
    "sf1 1764122457.125 fe_seal 1 17 1 2 42 0000000000000a01 -8801928 1 1 - 198.51.100.4 503 217 0 0 -1 -1 3001 0 sQ /v1/fetch_key",
];
const SYNTH_HTTP: &[&str] = &[
    "203.0.113.9:45678 [26/Nov/2026:02:10:57.123] fe_grpc_mainnet~ be_grpc/srv1 0/0/1/3/4 200 5120 - - ---- 10/5/1/0/0 0/0 \"POST /sui.rpc.v2.LedgerService/GetObject HTTP/2.0\"",
    "::1:45678 [26/Nov/2026:02:10:57.124] fe_grpc_mainnet be_grpc/<NOSRV> -1/-1/-1/-1/0 400 187 - - PR-- 1/1/0/0/0 0/0 \"<BADREQ>\"",
    "198.51.100.4:5500 [26/Nov/2026:02:10:57.125] fe_seal~ be_seal/srv2 0/0/0/12/13 200 912 - - ---- 12/6/2/1/0 0/0 {seal.example|Mozilla/5.0 (X11; Linux)} {application/json} \"GET https://seal.example/v1/fetch_key?id=1 HTTP/2.0\"",
];
const SYNTH_TCP: &[&str] = &[
    "203.0.113.9:45678 [26/Nov/2026:02:10:57.123] fe_tcp be_tcp/srv1 0/1/1500 4096 -- 3/2/1/1/0 0/0",
    "198.51.100.4:5500 [26/Nov/2026:02:10:57.125] fe_tcp be_tcp/<NOSRV> -1/-1/3001 0 sQ 3/2/1/0/0 0/0",
];
const LOCAL: &str = "<134>Nov 26 02:10:57 haproxy[1234]: ";
const RFC5424: &str = "<134>1 2026-11-26T02:10:57.123456+00:00 gw1 haproxy 1234 - - ";

fn parser(framing: Framing, payload: PayloadFormat) -> Parser {
    let fe = |service_type, network, fe_type| FrontendMapping {
        service_type,
        network,
        fe_type,
    };
    Parser::new(SourceConfig {
        framing,
        payload,
        server_id: Some(0x21),
        frontends: HashMap::from([
            ("fe_grpc_mainnet".to_owned(), fe(2, 1, 2)),
            ("fe_seal".to_owned(), fe(1, 1, 2)),
            ("fe_tcp".to_owned(), fe(5, 1, 1)),
        ]),
        // Fixture frontends are named after the capture's scenarios.
        default_frontend: Some(fe(2, 1, 2)),
        accept_date_utc_offset_secs: 0,
    })
}

/// Datagrams from `fixtures/haproxy/<file>`, or the synthetic lines behind `header`.
fn load(file: &str, header: &str, synthetic: &[&str]) -> (Vec<Vec<u8>>, &'static str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/haproxy")
        .join(file);
    match std::fs::read(&path) {
        Ok(data) => {
            let lines = data
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .map(<[u8]>::to_vec)
                .collect();
            (lines, "fixture")
        }
        Err(_) => {
            let lines = synthetic
                .iter()
                .map(|l| format!("{header}{l}").into_bytes())
                .collect();
            (lines, "synthetic")
        }
    }
}

fn bench_format(
    c: &mut Criterion,
    group: &str,
    file: &str,
    framing: Framing,
    payload: PayloadFormat,
    header: &str,
    synthetic: &[&str],
) {
    let p = parser(framing, payload);
    let (all, source) = load(file, header, synthetic);
    let lines: Vec<Vec<u8>> = all.into_iter().filter(|l| p.parse(l).is_ok()).collect();
    assert!(!lines.is_empty(), "no parseable lines for {group}");
    let n = lines.len() as u64;
    let bytes: u64 = lines.iter().map(|l| l.len() as u64).sum();
    eprintln!(
        "{group}: {n} {source} lines, {:.0} bytes/line",
        bytes as f64 / n as f64
    );

    let mut g = c.benchmark_group(group);
    let run = |b: &mut criterion::Bencher<'_>| {
        b.iter(|| {
            for l in &lines {
                let _ = black_box(p.parse(black_box(l)));
            }
        })
    };
    g.throughput(Throughput::Elements(n));
    g.bench_function(format!("lines/{source}"), run);
    g.throughput(Throughput::Bytes(bytes));
    g.bench_function(format!("bytes/{source}"), run);
    // Same-session baseline: touch every byte once (count the field separators). The parse
    // figure is reported as a ratio to this floor, which cancels much of the machine noise.
    g.throughput(Throughput::Elements(n));
    g.bench_function("baseline/count_spaces", |b| {
        b.iter(|| {
            let mut spaces = 0usize;
            for l in &lines {
                spaces += black_box(l).iter().filter(|&&c| c == b' ').count();
            }
            black_box(spaces)
        })
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    use Framing::{Local, Rfc5424};
    use PayloadFormat::{HttpLog, Suiftly, TcpLog};
    bench_format(
        c,
        "local-sf1",
        "local-sf1.log",
        Local,
        Suiftly,
        LOCAL,
        SYNTH_SF1,
    );
    bench_format(
        c,
        "local-httplog",
        "local-httplog.log",
        Local,
        HttpLog,
        LOCAL,
        SYNTH_HTTP,
    );
    bench_format(
        c,
        "local-tcplog",
        "local-tcplog.log",
        Local,
        TcpLog,
        LOCAL,
        SYNTH_TCP,
    );
    bench_format(
        c,
        "rfc5424-sf1",
        "rfc5424-sf1.log",
        Rfc5424,
        Suiftly,
        RFC5424,
        SYNTH_SF1,
    );
    // Auto-detection of framing and payload on the same lines, for comparison.
    bench_format(
        c,
        "auto-httplog",
        "local-httplog.log",
        Framing::Auto,
        PayloadFormat::Auto,
        LOCAL,
        SYNTH_HTTP,
    );
}

criterion_group!(parse, benches);
criterion_main!(parse);
