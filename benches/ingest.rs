//! Arrow batch building and binary COPY encoding over the captured fixtures.
//!
//! `cargo bench --bench ingest` — rows/s for building a 5,000-row RecordBatch from parsed
//! lines, MB/s of COPY encoding, and the whole CPU path (parse + build + encode) per line.

use std::hint::black_box;
use std::path::Path;

use bytes::{BufMut, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use suiftly_ingest::batch::RawBatchBuilder;
use suiftly_ingest::copy::encode_batch;
use suiftly_parser::{Framing, Parser, PayloadFormat, SourceConfig};
use tokio_postgres::types::{IsNull, ToSql, Type};

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
    // Same-session baseline: what tokio-postgres' BinaryCopyInWriter does per value (ToSql
    // through a trait object, one length word each), over the same rows.
    let rows: Vec<Vec<Box<dyn ToSql + Sync>>> = good
        .iter()
        .map(|l| {
            let r = p.parse(l).unwrap();
            let v: Vec<Box<dyn ToSql + Sync>> = vec![
                Box::new(
                    std::time::UNIX_EPOCH + std::time::Duration::from_micros(r.timestamp_us as u64),
                ),
                Box::new(r.customer_id),
                Box::new(r.path_prefix.map(str::to_owned)),
                Box::new(r.config_hex),
                Box::new(r.network),
                Box::new(r.server_id),
                Box::new(r.service_type),
                Box::new(r.api_key_fp),
                Box::new(r.fe_type),
                Box::new(r.traffic_type),
                Box::new(r.event_type),
                Box::new(r.client_ip),
                Box::new(r.key_metadata),
                Box::new(r.status_code),
                Box::new(r.bytes_sent),
                Box::new(r.time_total),
                Box::new(r.time_request),
                Box::new(r.time_queue),
                Box::new(r.time_connect),
                Box::new(r.time_response),
                Box::new(r.backend_id),
                Box::new(r.termination_state.map(str::to_owned)),
                Box::new(r.repeat),
            ];
            v
        })
        .collect();
    let types = [
        Type::TIMESTAMPTZ,
        Type::INT4,
        Type::TEXT,
        Type::INT8,
        Type::INT2,
        Type::INT2,
        Type::INT2,
        Type::INT8,
        Type::INT2,
        Type::INT2,
        Type::INT2,
        Type::INET,
        Type::INT2,
        Type::INT2,
        Type::INT8,
        Type::INT4,
        Type::INT4,
        Type::INT4,
        Type::INT4,
        Type::INT4,
        Type::INT2,
        Type::TEXT,
        Type::INT4,
    ];
    g.bench_function("baseline_tosql_per_value", |b| {
        let mut out = BytesMut::with_capacity(encoded);
        b.iter(|| {
            out.clear();
            for row in &rows {
                out.put_i16(types.len() as i16);
                for (v, t) in row.iter().zip(&types) {
                    let at = out.len();
                    out.put_i32(0);
                    match v.to_sql_checked(t, &mut out).unwrap() {
                        IsNull::Yes => out[at..at + 4].copy_from_slice(&(-1i32).to_be_bytes()),
                        IsNull::No => {
                            let len = (out.len() - at - 4) as i32;
                            out[at..at + 4].copy_from_slice(&len.to_be_bytes());
                        }
                    }
                }
            }
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
