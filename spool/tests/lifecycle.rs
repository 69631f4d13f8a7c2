//! Garbage collection, the full limit, tailing a live spool, fsync policies, the lock.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::{MIN_TOTAL, read_writer, rec, small_cfg};
use suiftly_spool::format::{list_segments, segment_path};
use suiftly_spool::{
    DurableEnd, EncodedBatch, FsyncPolicy, Position, SpoolConfig, SpoolError, SpoolReader,
    SpoolWriter,
};

#[test]
fn gc_deletes_only_wholly_consumed_sealed_segments() {
    let dir = tempfile::tempdir().unwrap();
    let (mut w, _) = SpoolWriter::open(dir.path(), small_cfg(2048)).unwrap();
    let positions: Vec<_> = (0..100)
        .map(|i| w.append(&rec(i, 100).as_record()).unwrap())
        .collect();
    let end = w.commit().unwrap();
    let bases = list_segments(dir.path()).unwrap();
    assert!(bases.len() >= 5);
    assert_eq!(w.stats().segments, bases.len());

    // Nothing consumed: nothing removed.
    assert_eq!(w.gc(Position::ZERO).unwrap().segments_removed, 0);
    // A position inside segment 2 frees segments 0 and 1 only.
    let inside = *positions
        .iter()
        .find(|p| **p > bases[2] && **p < bases[3])
        .unwrap();
    let before = w.stats().bytes_on_disk;
    let report = w.gc(inside).unwrap();
    assert_eq!(report.segments_removed, 2);
    assert_eq!(report.oldest_retained, bases[2]);
    assert_eq!(w.stats().bytes_on_disk, before - report.bytes_freed);
    assert_eq!(list_segments(dir.path()).unwrap(), bases[2..]);
    // Exactly at a segment's base frees everything below it.
    assert_eq!(w.gc(bases[3]).unwrap().segments_removed, 1);
    // Everything consumed: the active segment stays.
    let report = w.gc(end).unwrap();
    assert_eq!(list_segments(dir.path()).unwrap(), [*bases.last().unwrap()]);
    assert_eq!(report.oldest_retained, *bases.last().unwrap());
    assert!(segment_path(dir.path(), *bases.last().unwrap()).exists());
    // A position past the end is a caller bug, reported.
    assert!(matches!(
        w.gc(Position(end.0 + 1)),
        Err(SpoolError::PositionBeyondEnd { .. })
    ));
    // Readers from a removed position get a typed error; from the oldest retained they work.
    assert!(
        matches!(w.reader(inside), Err(SpoolError::PositionGone { oldest, .. }) if oldest == *bases.last().unwrap())
    );
    let tail = read_writer(&w, *bases.last().unwrap());
    assert_eq!(tail.last().unwrap().2, end);
    // Positions are unchanged by gc and by reopening after it.
    drop(w);
    let (w, report) = SpoolWriter::open(dir.path(), small_cfg(2048)).unwrap();
    assert_eq!(report.end, end);
    assert_eq!(read_writer(&w, *bases.last().unwrap()), tail);
}

#[test]
fn full_is_returned_at_the_limit_and_clears_after_gc() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SpoolConfig {
        segment_bytes: 256 * 1024,
        max_total_bytes: MIN_TOTAL,
        fsync: FsyncPolicy::EveryBatch,
    };
    let (mut w, _) = SpoolWriter::open(dir.path(), cfg).unwrap();
    let r = rec(1, 60_000);
    let mut appended = 0;
    let err = loop {
        match w.append(&r.as_record()) {
            Ok(_) => appended += 1,
            Err(e) => break e,
        }
        assert!(appended < 100, "never full");
    };
    let end = w.end_position();
    match err {
        SpoolError::Full {
            used_bytes,
            needed_bytes,
            limit_bytes,
        } => {
            assert_eq!(limit_bytes, MIN_TOTAL);
            assert!(used_bytes + needed_bytes > limit_bytes);
            assert_eq!(used_bytes, w.stats().bytes_on_disk);
            assert!(used_bytes <= limit_bytes);
        }
        e => panic!("unexpected {e:?}"),
    }
    // A batch is all or nothing.
    assert!(matches!(
        w.append_batch(&[rec(2, 10).as_record(), r.as_record()]),
        Err(SpoolError::Full { .. })
    ));
    assert_eq!(w.end_position(), end);
    // So is a batch framed ahead of time.
    let mut enc = EncodedBatch::default();
    enc.push(&rec(3, 10).as_record()).unwrap();
    enc.push(&r.as_record()).unwrap();
    assert!(matches!(
        w.append_encoded(&enc),
        Err(SpoolError::Full { .. })
    ));
    assert_eq!(w.end_position(), end);
    w.commit().unwrap();
    // Bytes on disk really are what the writer counts.
    let on_disk: u64 = list_segments(dir.path())
        .unwrap()
        .iter()
        .map(|b| {
            std::fs::metadata(segment_path(dir.path(), *b))
                .unwrap()
                .len()
        })
        .sum();
    assert_eq!(on_disk, w.stats().bytes_on_disk);

    // Half consumed: some room again.
    let mid = read_writer(&w, Position::ZERO)[appended / 2].0;
    let freed = w.gc(mid).unwrap();
    assert!(freed.segments_removed > 0);
    w.append(&r.as_record()).unwrap();
    // Everything consumed: a whole spool of room except the active segment.
    let end = w.commit().unwrap();
    w.gc(end).unwrap();
    for _ in 0..appended / 2 {
        w.append(&r.as_record()).unwrap();
    }
    w.commit().unwrap();
}

#[test]
fn reader_tails_a_live_spool_in_the_same_thread() {
    let dir = tempfile::tempdir().unwrap();
    let (mut w, _) = SpoolWriter::open(dir.path(), small_cfg(2048)).unwrap();
    let mut reader = w.reader(Position::ZERO).unwrap();
    assert!(reader.next_record().unwrap().is_none());
    let mut next = 0;
    for round in 0..20u64 {
        for i in 0..round {
            w.append(&rec(round * 100 + i, 150).as_record()).unwrap();
        }
        // Appended but not committed: invisible.
        assert!(reader.next_record().unwrap().is_none());
        w.commit().unwrap();
        for i in 0..round {
            let got = reader
                .next_owned()
                .unwrap()
                .expect("committed record visible");
            assert_eq!(got.1, rec(round * 100 + i, 150));
            next += 1;
        }
        assert!(reader.next_record().unwrap().is_none());
        assert_eq!(reader.position(), w.end_position());
    }
    assert!(w.stats().segments > 5, "tailing crossed segment rolls");
    assert_eq!(next, (0..20).sum::<u64>());
}

#[test]
fn reader_tails_a_writer_in_another_thread() {
    let dir = tempfile::tempdir().unwrap();
    let (mut w, _) = SpoolWriter::open(dir.path(), small_cfg(16 * 1024)).unwrap();
    let end = w.durable_end();
    let path = dir.path().to_path_buf();
    const TOTAL: u64 = 20_000;
    let consumer = thread::spawn(move || {
        let mut r = SpoolReader::open(&path, Position::ZERO, end).unwrap();
        let mut n = 0u64;
        let deadline = Instant::now() + Duration::from_secs(60);
        while n < TOTAL {
            match r.next_record().unwrap() {
                Some(got) => {
                    assert_eq!(got.received_at_us, rec(n, 0).received_at_us, "record {n}");
                    assert_eq!(got.payload, &rec(n, (n % 300) as usize).payload[..]);
                    n += 1;
                }
                None => {
                    assert!(Instant::now() < deadline, "reader stalled at {n}");
                    thread::yield_now();
                }
            }
        }
        r.position()
    });
    let mut i = 0;
    while i < TOTAL {
        let batch: Vec<_> = (i..(i + 37).min(TOTAL))
            .map(|j| rec(j, (j % 300) as usize))
            .collect();
        let borrowed: Vec<_> = batch.iter().map(|r| r.as_record()).collect();
        w.append_batch(&borrowed).unwrap();
        w.commit().unwrap();
        i += batch.len() as u64;
    }
    assert_eq!(consumer.join().unwrap(), w.end_position());
}

#[test]
fn durable_end_follows_the_fsync_policy() {
    // EveryBatch and Never: visible at commit.
    for fsync in [FsyncPolicy::EveryBatch, FsyncPolicy::Never] {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, _) = SpoolWriter::open(
            dir.path(),
            SpoolConfig {
                fsync,
                ..small_cfg(4096)
            },
        )
        .unwrap();
        w.append(&rec(1, 10).as_record()).unwrap();
        assert_eq!(w.durable_end().load(), Position::ZERO);
        assert_eq!(w.commit().unwrap(), w.end_position());
        assert_eq!(w.sync_due_at(), None);
    }
    // IntervalMs: visible at the first commit after the interval, or when poll_sync is due.
    let dir = tempfile::tempdir().unwrap();
    let cfg = SpoolConfig {
        fsync: FsyncPolicy::IntervalMs(100),
        ..small_cfg(4096)
    };
    let (mut w, _) = SpoolWriter::open(dir.path(), cfg).unwrap();
    let opened = Instant::now();
    let mut reader = w.reader(Position::ZERO).unwrap();
    w.append(&rec(1, 10).as_record()).unwrap();
    // The writer opened (and synced) less than 100 ms ago in the test clock below.
    let durable = w.commit_at(opened).unwrap();
    assert_eq!(durable, Position::ZERO, "written but not yet fsynced");
    assert!(reader.next_record().unwrap().is_none());
    let due = w.sync_due_at().expect("unsynced data waits");
    assert!(due >= opened);
    assert!(!w.poll_sync(due - Duration::from_millis(1)).unwrap());
    assert!(w.poll_sync(due).unwrap());
    assert_eq!(w.durable_end().load(), w.end_position());
    assert!(reader.next_record().unwrap().is_some());
    assert_eq!(w.sync_due_at(), None);
    // Next batch long after the last sync: the commit itself fsyncs.
    w.append(&rec(2, 10).as_record()).unwrap();
    assert_eq!(
        w.commit_at(due + Duration::from_secs(1)).unwrap(),
        w.end_position()
    );
    // Within the interval again: deferred, and sync() forces it.
    w.append(&rec(3, 10).as_record()).unwrap();
    assert!(w.commit_at(due + Duration::from_millis(1010)).unwrap() < w.end_position());
    assert_eq!(w.sync().unwrap(), w.end_position());
}

#[test]
fn a_second_writer_is_locked_out() {
    let dir = tempfile::tempdir().unwrap();
    let (w, _) = SpoolWriter::open(dir.path(), small_cfg(4096)).unwrap();
    assert!(matches!(
        SpoolWriter::open(dir.path(), small_cfg(4096)),
        Err(SpoolError::Locked(_))
    ));
    drop(w);
    SpoolWriter::open(dir.path(), small_cfg(4096)).unwrap();
}

#[test]
fn invalid_configs_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    for cfg in [
        SpoolConfig {
            segment_bytes: 100,
            ..small_cfg(4096)
        },
        SpoolConfig {
            max_total_bytes: MIN_TOTAL - 1,
            ..small_cfg(4096)
        },
        SpoolConfig {
            segment_bytes: 64 << 20,
            max_total_bytes: 100 << 20,
            ..SpoolConfig::default()
        },
        SpoolConfig {
            fsync: FsyncPolicy::IntervalMs(0),
            ..small_cfg(4096)
        },
    ] {
        assert!(
            matches!(
                SpoolWriter::open(dir.path(), cfg),
                Err(SpoolError::InvalidConfig(_))
            ),
            "{cfg:?}"
        );
    }
    SpoolWriter::open(dir.path(), SpoolConfig::default()).unwrap();
}

#[test]
fn stats_and_oldest_unconsumed_time_drive_metrics_and_gc() {
    let dir = tempfile::tempdir().unwrap();
    let (mut w, _) = SpoolWriter::open(dir.path(), small_cfg(2048)).unwrap();
    // Consumers' positions live with their data (PostgreSQL); the binary passes the lowest
    // one to gc. Two consumers start at the oldest position.
    let start = w.oldest_position();
    let positions: Vec<_> = (0..50)
        .map(|i| w.append(&rec(i, 100).as_record()).unwrap())
        .collect();
    w.commit().unwrap();

    assert_eq!(
        w.received_at_us_at(start).unwrap(),
        Some(rec(0, 0).received_at_us)
    );
    let (copy, aggregate) = (positions[40], positions[20]);
    let min = copy.min(aggregate);
    assert_eq!(min, positions[20]);
    assert_eq!(
        w.received_at_us_at(min).unwrap(),
        Some(rec(20, 0).received_at_us)
    );
    let report = w.gc(min).unwrap();
    assert!(report.oldest_retained <= positions[20]);
    assert!(report.segments_removed > 0);
    // gc kept the segment holding the lowest consumer's position: it still reads back.
    assert_eq!(
        w.received_at_us_at(min).unwrap(),
        Some(rec(20, 0).received_at_us)
    );
    let end = w.end_position();
    assert_eq!(
        w.received_at_us_at(end).unwrap(),
        None,
        "nothing unconsumed at the end"
    );
    let s = w.stats();
    assert_eq!(
        (s.end_position, s.durable_end, s.oldest_position),
        (end, end, report.oldest_retained)
    );
    assert!(matches!(
        SpoolReader::open(dir.path(), Position(end.0 + 1), DurableEnd::fixed(end)),
        Err(SpoolError::PositionBeyondEnd { .. })
    ));
}
