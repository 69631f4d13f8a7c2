//! Property: whatever is appended and committed — in any batch split, across segment rolls and
//! reopens — reads back exactly, at the positions `append` returned.

mod common;

use std::net::SocketAddr;

use common::{read_all, read_writer, small_cfg};
use proptest::prelude::*;
use suiftly_spool::{
    EncodedBatch, MAX_PAYLOAD_BYTES, OwnedRecord, Position, SpoolError, SpoolWriter,
};

#[derive(Clone, Copy, Debug)]
enum AfterBatch {
    KeepGoing,
    /// `close()` then reopen.
    Reopen,
    /// Committed, then the process dies (no close, no flush in Drop), then reopen.
    CrashAndReopen,
}

fn payload_len() -> impl Strategy<Value = usize> {
    prop_oneof![
        3 => Just(0usize),
        10 => 1usize..300,
        4 => 300usize..3000,
        1 => 60_000usize..=65_535,
    ]
}

fn record() -> impl Strategy<Value = OwnedRecord> {
    (
        any::<i64>(),
        any::<u16>(),
        any::<Option<SocketAddr>>(),
        payload_len(),
        any::<u8>(),
    )
        .prop_map(
            |(received_at_us, listener, source, len, seed)| OwnedRecord {
                received_at_us,
                listener,
                source,
                payload: (0..len).map(|j| seed.wrapping_add((j * 7) as u8)).collect(),
            },
        )
}

#[derive(Clone, Copy, Debug)]
enum Append {
    OneByOne,
    Batch,
    /// The first record with `append` (left in the writer's buffer), the rest framed ahead
    /// in an [`EncodedBatch`] and written straight from it.
    Encoded,
}

fn batches() -> impl Strategy<Value = Vec<(Vec<OwnedRecord>, Append, AfterBatch)>> {
    let after = prop_oneof![
        6 => Just(AfterBatch::KeepGoing),
        1 => Just(AfterBatch::Reopen),
        1 => Just(AfterBatch::CrashAndReopen),
    ];
    let how = prop_oneof![
        Just(Append::OneByOne),
        Just(Append::Batch),
        Just(Append::Encoded)
    ];
    // (records, how they are appended, what happens after the commit)
    prop::collection::vec((prop::collection::vec(record(), 0..40), how, after), 1..12)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn appended_sequence_reads_back_exactly(
        batches in batches(),
        segment_kib in 2u64..64,
        pick in any::<prop::sample::Index>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = small_cfg(segment_kib * 1024);
        let (mut w, report) = SpoolWriter::open(dir.path(), cfg).unwrap();
        prop_assert_eq!(report.end, Position::ZERO);
        let mut expected: Vec<(Position, OwnedRecord)> = Vec::new();
        for (recs, how, after) in batches {
            let start = w.end_position();
            if let (Append::Encoded, Some((head, tail))) = (how, recs.split_first()) {
                let p = w.append(&head.as_record()).unwrap();
                prop_assert_eq!(p, start);
                expected.push((p, head.clone()));
                let mut enc = EncodedBatch::default();
                for rec in tail {
                    enc.push(&rec.as_record()).unwrap();
                }
                prop_assert_eq!(enc.len(), tail.len());
                let range = w.append_encoded(&enc).unwrap();
                prop_assert_eq!(range.end, w.end_position());
                // Positions follow from the frame sizes, across rolls.
                let mut p = range.start;
                for rec in tail {
                    expected.push((p, rec.clone()));
                    p = Position(p.0 + 12 + 11 + addr_len(rec.source) + rec.payload.len() as u64);
                }
                prop_assert_eq!(p, range.end);
            } else if matches!(how, Append::Batch) {
                let borrowed: Vec<_> = recs.iter().map(|r| r.as_record()).collect();
                let range = w.append_batch(&borrowed).unwrap();
                prop_assert_eq!(range.start, start);
                prop_assert_eq!(range.end, w.end_position());
                // Positions inside a batch follow from the frame sizes.
                let mut p = start;
                for rec in &recs {
                    expected.push((p, rec.clone()));
                    p = Position(p.0 + 12 + 11 + addr_len(rec.source) + rec.payload.len() as u64);
                }
                prop_assert_eq!(p, range.end);
            } else {
                for rec in &recs {
                    let p = w.append(&rec.as_record()).unwrap();
                    expected.push((p, rec.clone()));
                }
            }
            let end = w.commit().unwrap();
            prop_assert_eq!(end, w.end_position());
            match after {
                AfterBatch::KeepGoing => {}
                AfterBatch::Reopen => {
                    let end = w.close().unwrap();
                    let (w2, report) = SpoolWriter::open(dir.path(), cfg).unwrap();
                    prop_assert_eq!(report.end, end);
                    prop_assert_eq!(report.truncated, None);
                    w = w2;
                }
                AfterBatch::CrashAndReopen => {
                    let end = w.end_position();
                    w.simulate_crash();
                    let (w2, report) = SpoolWriter::open(dir.path(), cfg).unwrap();
                    prop_assert_eq!(report.end, end);
                    prop_assert_eq!(report.truncated, None);
                    w = w2;
                }
            }
        }
        let got = read_writer(&w, Position::ZERO);
        prop_assert_eq!(got.len(), expected.len());
        for (i, ((gp, grec, gnext), (ep, erec))) in got.iter().zip(&expected).enumerate() {
            prop_assert_eq!(gp, ep, "position of record {}", i);
            prop_assert_eq!(grec, erec, "record {}", i);
            let next = expected.get(i + 1).map_or(w.end_position(), |e| e.0);
            prop_assert_eq!(*gnext, next);
        }
        // Reading from a returned position (first, middle, last, one picked by the strategy)
        // yields exactly the suffix from there: the same records at the same positions.
        let end = w.close().unwrap();
        let n = expected.len();
        let mut starts = vec![0, n / 2, n.saturating_sub(1), pick.index(n.max(1))];
        starts.sort_unstable();
        starts.dedup();
        for i in starts.into_iter().filter(|&i| i < n) {
            let suffix = read_all(dir.path(), expected[i].0, end);
            prop_assert_eq!(suffix.len(), n - i, "records from record {}", i);
            for (j, ((gp, grec, gnext), (ep, erec))) in suffix.iter().zip(&expected[i..]).enumerate() {
                prop_assert_eq!(gp, ep, "position of record {} read from record {}", i + j, i);
                prop_assert_eq!(grec, erec, "record {} read from record {}", i + j, i);
                let next = expected.get(i + j + 1).map_or(end, |e| e.0);
                prop_assert_eq!(*gnext, next);
            }
        }
    }
}

fn addr_len(a: Option<SocketAddr>) -> u64 {
    match a {
        None => 0,
        Some(SocketAddr::V4(_)) => 6,
        Some(SocketAddr::V6(v)) if v.flowinfo() == 0 && v.scope_id() == 0 => 18,
        Some(SocketAddr::V6(_)) => 26,
    }
}

#[test]
fn largest_payload_round_trips_and_larger_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let (mut w, _) = SpoolWriter::open(dir.path(), small_cfg(64 * 1024)).unwrap();
    let small = common::rec(1, 10);
    let big = OwnedRecord {
        payload: vec![0xAB; MAX_PAYLOAD_BYTES],
        ..common::rec(2, 0)
    };
    let too_big = OwnedRecord {
        payload: vec![0; MAX_PAYLOAD_BYTES + 1],
        ..common::rec(3, 0)
    };
    w.append(&small.as_record()).unwrap();
    let p = w.append(&big.as_record()).unwrap();
    let before = w.end_position();
    assert!(matches!(
        w.append(&too_big.as_record()),
        Err(SpoolError::RecordTooLarge { len, max }) if len == MAX_PAYLOAD_BYTES + 1 && max == MAX_PAYLOAD_BYTES
    ));
    assert!(matches!(
        w.append_batch(&[small.as_record(), too_big.as_record()]),
        Err(SpoolError::RecordTooLarge { .. })
    ));
    assert_eq!(
        w.end_position(),
        before,
        "nothing of a rejected batch is written"
    );
    w.append(&small.as_record()).unwrap();
    w.commit().unwrap();
    let got = read_writer(&w, Position::ZERO);
    assert_eq!(got.len(), 3);
    assert_eq!(got[1].0, p);
    assert_eq!(got[1].1, big);
    // The oversized record got a segment of its own.
    assert_eq!(w.stats().segments, 3);
}
