//! Metering cost per row: the per-batch DataFusion partial aggregate (both groupings), the
//! merge into the window state, and a same-session baseline (a hand-written HashMap loop over
//! the same Arrow columns, customer grouping only) to put the figures in proportion.
//!
//! `cargo bench -p suiftly-aggregate --bench aggregate`

use std::collections::HashMap;
use std::hint::black_box;
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int16Type, Int32Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use suiftly_aggregate::partial::PartialAggregator;
use suiftly_aggregate::window::{Persisted, WindowConfig, WindowState};
use suiftly_ingest::batch::RawBatchBuilder;
use suiftly_parser::{Framing, Parser, PayloadFormat, SourceConfig};

const ROWS: usize = 5_000;

/// 5,000 rows from the captured sf1 fixture, re-timed over 5 minutes and spread over 50
/// customers so that groups look like production (the fixture alone has few keys).
fn batch() -> RecordBatch {
    let p = Parser::new(SourceConfig {
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
    });
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/haproxy/local-sf1.log");
    let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let lines: Vec<&[u8]> = data
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty() && p.parse(l).is_ok())
        .collect();
    let mut b = RawBatchBuilder::with_capacity(ROWS);
    let t0 = 1_764_000_000_000_000i64;
    for i in 0..ROWS {
        let mut r = p.parse(lines[i % lines.len()]).unwrap();
        r.timestamp_us = t0 + (i as i64 * 7_919 % 300) * 1_000_000;
        if r.customer_id.is_some() {
            r.customer_id = Some(1 + (i as i32 * 31) % 50);
        }
        b.append(&r);
    }
    b.finish().rows
}

type Key = (i64, i32, i16, i16, i16, i16);
type Acc = (i64, i64, i64, i32, i32);

/// The baseline: customer grouping by a plain loop (what DataFusion replaces).
fn hashmap_loop(b: &RecordBatch) -> usize {
    let ts = b.column(0).as_primitive::<TimestampMicrosecondType>();
    let cust = b.column(1).as_primitive::<Int32Type>();
    let net = b.column(4).as_primitive::<Int16Type>();
    let svc = b.column(6).as_primitive::<Int16Type>();
    let tt = b.column(9).as_primitive::<Int16Type>();
    let st = b.column(13).as_primitive::<Int16Type>();
    let bytes = b.column(14).as_primitive::<Int64Type>();
    let tot = b.column(15).as_primitive::<Int32Type>();
    let rep = b.column(22).as_primitive::<Int32Type>();
    let mut m: HashMap<Key, Acc> = HashMap::new();
    for i in 0..b.num_rows() {
        if cust.is_null(i) {
            continue;
        }
        let k = (
            ts.value(i) / 60_000_000,
            cust.value(i),
            svc.value(i),
            net.value(i),
            tt.value(i),
            st.value(i),
        );
        let r = rep.value(i) as i64;
        let e = m.entry(k).or_insert((0, 0, 0, i32::MAX, i32::MIN));
        e.0 += r;
        e.1 += bytes.value(i);
        e.2 += tot.value(i) as i64 * r;
        e.3 = e.3.min(tot.value(i));
        e.4 = e.4.max(tot.value(i));
    }
    m.len()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let b = batch();
    let pa = PartialAggregator::new();
    let p = rt.block_on(pa.partial(&b)).unwrap();
    eprintln!(
        "batch: {} rows → {} customer groups, {} infra groups",
        b.num_rows(),
        p.cust.len(),
        p.infra.len()
    );
    let mut g = c.benchmark_group("aggregate");
    g.throughput(Throughput::Elements(ROWS as u64));
    g.bench_function("datafusion_partial_5000_rows", |bch| {
        bch.iter(|| black_box(rt.block_on(pa.partial(black_box(&b))).unwrap()))
    });
    g.bench_function("merge_into_windows_5000_rows", |bch| {
        let mut st = WindowState::restore(WindowConfig::default(), Persisted::default());
        let mut pos = 0u64;
        bch.iter(|| {
            st.apply(black_box(&p), pos, pos + 1);
            pos += 1;
        })
    });
    g.bench_function("baseline_hashmap_loop_customer_only_5000_rows", |bch| {
        bch.iter(|| black_box(hashmap_loop(black_box(&b))))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
