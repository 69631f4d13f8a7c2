//! Arrow batch building and binary COPY encoding over the captured fixtures.
//!
//! `cargo bench --bench ingest` — rows/s for building a 5,000-row RecordBatch from parsed
//! lines, MB/s of COPY encoding, and the whole CPU path (parse + build + encode) per line.

use std::hint::black_box;
use std::path::Path;

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use suiftly_ingest::batch::RawBatchBuilder;
use suiftly_ingest::copy::encode_batch;
use suiftly_parser::{Framing, Parser, PayloadFormat, SourceConfig};

const ROWS: usize = 5_000;

fn lines(file: &str) -> Vec<Vec<u8>> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/haproxy")
        .join(file);
    let data = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    data.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| l.to_vec())
        .collect()
}

fn parser() -> Parser {
    Parser::new(SourceConfig {
        framing: Framing::Auto,
        payload: PayloadFormat::Auto,
        server_id: Some(17),
        frontends: Default::default(),
        default_frontend: Some(suiftly_parser::FrontendMapping {
            service_type: 2,
            network: 1,
            fe_type: 2,
        }),
        accept_date_utc_offset_secs: 0,
    })
}

fn bench(c: &mut Criterion) {
    let p = parser();
    // Lines that parse, repeated up to one full batch.
    let mut good: Vec<Vec<u8>> = lines("local-sf1.log")
        .into_iter()
        .filter(|l| p.parse(l).is_ok())
        .collect();
    assert!(!good.is_empty());
    let base = good.clone();
    while good.len() < ROWS {
        good.extend(base.iter().cloned());
    }
    good.truncate(ROWS);
    let bytes_in: usize = good.iter().map(|l| l.len()).sum();

    let mut g = c.benchmark_group("arrow_build");
    g.throughput(Throughput::Elements(ROWS as u64));
    g.bench_function("sf1_5000_rows", |b| {
        let recs: Vec<_> = good.iter().map(|l| p.parse(l).unwrap()).collect();
        let mut builder = RawBatchBuilder::with_capacity(ROWS);
        b.iter(|| {
            for r in &recs {
                builder.append(r);
            }
            black_box(builder.finish())
        })
    });
    g.finish();

    let mut builder = RawBatchBuilder::with_capacity(ROWS);
    for l in &good {
        builder.append(&p.parse(l).unwrap());
    }
    let batch = builder.finish();
    let mut out = BytesMut::new();
    encode_batch(&batch.rows, &mut out).unwrap();
    let encoded = out.len();
    let mut g = c.benchmark_group("copy_encode");
    g.throughput(Throughput::Bytes(encoded as u64));
    g.bench_function("sf1_5000_rows", |b| {
        let mut out = BytesMut::with_capacity(encoded);
        b.iter(|| {
            out.clear();
            encode_batch(black_box(&batch.rows), &mut out).unwrap();
            black_box(out.len())
        })
    });
    g.finish();

    let mut g = c.benchmark_group("parse_build_encode");
    g.throughput(Throughput::Elements(ROWS as u64));
    g.bench_function(format!("sf1_5000_lines_{bytes_in}B"), |b| {
        let mut builder = RawBatchBuilder::with_capacity(ROWS);
        let mut out = BytesMut::with_capacity(encoded);
        b.iter(|| {
            for l in &good {
                builder.append(&p.parse(l).unwrap());
            }
            let batch = builder.finish();
            out.clear();
            encode_batch(&batch.rows, &mut out).unwrap();
            black_box(out.len())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
