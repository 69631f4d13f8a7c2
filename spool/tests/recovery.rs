//! Torn tails are cut on open; damage anywhere a reader reads is a typed error.

mod common;

use std::fs::{self, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use common::{read_all, read_writer, rec, small_cfg};
use suiftly_spool::format::{
    SEGMENT_HEADER_BYTES, encode_segment_header, list_segments, segment_path,
};
use suiftly_spool::{
    DurableEnd, HeaderDefect, OwnedRecord, Position, RecordDefect, SpoolError, SpoolReader,
    SpoolWriter,
};

const N: u64 = 6;

/// Writes N records into a fresh spool and closes it; returns records, their positions and
/// the path and file offset of the last one.
fn write_n(
    dir: &Path,
) -> (
    Vec<OwnedRecord>,
    Vec<Position>,
    std::path::PathBuf,
    u64,
    u64,
) {
    let (mut w, _) = SpoolWriter::open(dir, small_cfg(1 << 20)).unwrap();
    let recs: Vec<_> = (0..N).map(|i| rec(i, 40 + i as usize * 7)).collect();
    let mut positions = Vec::new();
    for r in &recs {
        positions.push(w.append(&r.as_record()).unwrap());
    }
    let end = w.close().unwrap();
    let last = positions[N as usize - 1];
    let path = segment_path(dir, Position::ZERO);
    let offset = SEGMENT_HEADER_BYTES + last.0;
    assert_eq!(
        fs::metadata(&path).unwrap().len(),
        SEGMENT_HEADER_BYTES + end.0
    );
    (recs, positions, path, offset, end.0 - last.0)
}

/// After recovery: N-1 records read back, the next append lands where the cut record was.
fn check_recovered(dir: &Path, recs: &[OwnedRecord], positions: &[Position]) {
    let (mut w, report) = SpoolWriter::open(dir, small_cfg(1 << 20)).unwrap();
    let last = positions[N as usize - 1];
    assert_eq!(report.end, last);
    assert_eq!(report.records_in_active_segment, N - 1);
    let fresh = rec(99, 123);
    assert_eq!(w.append(&fresh.as_record()).unwrap(), last);
    w.commit().unwrap();
    let got = read_writer(&w, Position::ZERO);
    let want: Vec<_> = recs[..N as usize - 1]
        .iter()
        .chain([&fresh])
        .cloned()
        .collect();
    assert_eq!(got.iter().map(|g| g.1.clone()).collect::<Vec<_>>(), want);
    assert_eq!(
        got.iter().map(|g| g.0).collect::<Vec<_>>()[..N as usize - 1],
        positions[..N as usize - 1]
    );
    drop(w);
    // And it stays that way across another reopen.
    let (w, report) = SpoolWriter::open(dir, small_cfg(1 << 20)).unwrap();
    assert_eq!(report.truncated, None);
    assert_eq!(read_writer(&w, Position::ZERO).len(), N as usize);
}

#[test]
fn truncation_at_every_offset_inside_the_last_record_is_cut() {
    let probe = tempfile::tempdir().unwrap();
    let (_, _, _, _, last_len) = write_n(probe.path());
    for cut in 0..last_len {
        let dir = tempfile::tempdir().unwrap();
        let (recs, positions, path, offset, _) = write_n(dir.path());
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(offset + cut)
            .unwrap();
        let (w, report) = SpoolWriter::open(dir.path(), small_cfg(1 << 20)).unwrap();
        match report.truncated {
            None => assert_eq!(cut, 0),
            Some(t) => {
                assert_eq!(t.at, positions[N as usize - 1], "cut {cut}");
                assert_eq!(t.bytes_cut, cut);
                let want = if cut < 12 {
                    RecordDefect::ShortHeader
                } else {
                    RecordDefect::ShortPayload
                };
                assert_eq!(t.reason, want, "cut {cut}");
            }
        }
        drop(w);
        check_recovered(dir.path(), &recs, &positions);
    }
}

#[test]
fn a_flipped_byte_anywhere_in_the_last_record_is_cut() {
    let probe = tempfile::tempdir().unwrap();
    let (_, _, _, _, last_len) = write_n(probe.path());
    for at in 0..last_len {
        let dir = tempfile::tempdir().unwrap();
        let (recs, positions, path, offset, _) = write_n(dir.path());
        let mut bytes = fs::read(&path).unwrap();
        bytes[(offset + at) as usize] ^= 0x20;
        fs::write(&path, &bytes).unwrap();
        let (w, report) = SpoolWriter::open(dir.path(), small_cfg(1 << 20)).unwrap();
        let t = report
            .truncated
            .unwrap_or_else(|| panic!("flip at {at} not detected"));
        assert_eq!(t.at, positions[N as usize - 1]);
        assert_eq!(t.bytes_cut, last_len);
        drop(w);
        check_recovered(dir.path(), &recs, &positions);
    }
}

#[test]
fn zero_filled_tail_after_a_crash_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (_, positions, path, _, last_len) = write_n(dir.path());
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(&[0u8; 4096]).unwrap();
    drop(f);
    let (w, report) = SpoolWriter::open(dir.path(), small_cfg(1 << 20)).unwrap();
    let t = report.truncated.unwrap();
    assert_eq!(t.reason, RecordDefect::BadMagic);
    assert_eq!(t.bytes_cut, 4096);
    assert_eq!(report.end.0, positions[N as usize - 1].0 + last_len);
    assert_eq!(read_writer(&w, Position::ZERO).len(), N as usize);
}

/// Rolls across several segments; returns the writer's end and all positions.
fn write_segments(dir: &Path, count: u64) -> (Vec<OwnedRecord>, Vec<Position>, Position) {
    let (mut w, _) = SpoolWriter::open(dir, small_cfg(2048)).unwrap();
    let recs: Vec<_> = (0..count).map(|i| rec(i, 100)).collect();
    let positions: Vec<_> = recs
        .iter()
        .map(|r| w.append(&r.as_record()).unwrap())
        .collect();
    let end = w.close().unwrap();
    (recs, positions, end)
}

#[test]
fn corrupt_record_in_a_sealed_segment_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let (_, positions, end) = write_segments(dir.path(), 60);
    let bases = list_segments(dir.path()).unwrap();
    assert!(bases.len() >= 3, "{bases:?}");
    // A record in the middle of the second (sealed) segment.
    let victim = *positions
        .iter()
        .find(|p| **p > bases[1] && **p < bases[2])
        .unwrap();
    let victim = positions[positions.iter().position(|p| *p == victim).unwrap() + 1];
    let path = segment_path(dir.path(), bases[1]);
    let mut bytes = fs::read(&path).unwrap();
    bytes[(SEGMENT_HEADER_BYTES + victim.0 - bases[1].0 + 40) as usize] ^= 1;
    fs::write(&path, &bytes).unwrap();

    // The writer opens fine (it only re-scans the active segment) and does not repair it.
    let (w, report) = SpoolWriter::open(dir.path(), small_cfg(2048)).unwrap();
    assert_eq!(report.truncated, None);
    assert_eq!(report.end, end);
    let mut r = w.reader(Position::ZERO).unwrap();
    let mut seen = 0;
    let err = loop {
        match r.next_record() {
            Ok(Some(_)) => seen += 1,
            Ok(None) => panic!("corruption skipped"),
            Err(e) => break e,
        }
    };
    assert_eq!(positions[seen], victim);
    match err {
        SpoolError::Corrupt {
            segment,
            position,
            defect,
        } => {
            assert_eq!(
                (segment, position, defect),
                (bases[1], victim, RecordDefect::BadCrc)
            );
        }
        e => panic!("unexpected {e:?}"),
    }
    // Sticky: the reader reports it again instead of moving on.
    assert!(matches!(r.next_record(), Err(SpoolError::Corrupt { .. })));
    // Starting right after the damage works.
    let after = positions[seen + 1];
    assert_eq!(
        read_all(dir.path(), after, end).len(),
        positions.len() - seen - 1
    );
}

#[test]
fn corrupt_record_below_the_durable_end_of_the_live_segment_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let (mut w, _) = SpoolWriter::open(dir.path(), small_cfg(1 << 20)).unwrap();
    let positions: Vec<_> = (0..5)
        .map(|i| w.append(&rec(i, 50).as_record()).unwrap())
        .collect();
    w.commit().unwrap();
    let path = segment_path(dir.path(), Position::ZERO);
    let mut f = OpenOptions::new().write(true).open(&path).unwrap();
    f.seek(SeekFrom::Start(SEGMENT_HEADER_BYTES + positions[2].0))
        .unwrap();
    f.write_all(b"XXXX").unwrap();
    drop(f);
    let mut r = w.reader(positions[1]).unwrap();
    assert!(r.next_record().unwrap().is_some());
    let e = r.next_record().unwrap_err();
    assert!(
        matches!(e, SpoolError::Corrupt { position, defect: RecordDefect::BadMagic, .. } if position == positions[2]),
        "{e:?}"
    );
}

#[test]
fn reading_from_a_position_inside_a_record_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (_, positions, end) = write_segments(dir.path(), 5);
    let mut r = SpoolReader::open(
        dir.path(),
        Position(positions[1].0 + 3),
        DurableEnd::fixed(end),
    )
    .unwrap();
    assert!(matches!(r.next_record(), Err(SpoolError::Corrupt { .. })));
}

#[test]
fn damaged_sealed_segments_stop_the_writer_from_opening() {
    let dir = tempfile::tempdir().unwrap();
    write_segments(dir.path(), 60);
    let bases = list_segments(dir.path()).unwrap();
    let path = segment_path(dir.path(), bases[1]);
    let good = fs::read(&path).unwrap();

    let mut bad = good.clone();
    bad[20] ^= 1;
    fs::write(&path, &bad).unwrap();
    match SpoolWriter::open(dir.path(), small_cfg(2048)) {
        Err(SpoolError::BadSegmentHeader {
            defect: HeaderDefect::BadCrc,
            ..
        }) => {}
        other => panic!("unexpected {:?}", other.map(|x| x.1)),
    }

    fs::write(&path, &good[..good.len() - 10]).unwrap();
    match SpoolWriter::open(dir.path(), small_cfg(2048)) {
        Err(SpoolError::Inconsistent { position, .. }) => assert_eq!(position, bases[1]),
        other => panic!("unexpected {:?}", other.map(|x| x.1)),
    }
}

#[test]
fn torn_header_of_a_new_segment_is_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let (recs, _, end) = write_segments(dir.path(), 20);
    // Crash right after creating the next segment: only part of its header reached the disk.
    for partial in [0usize, 1, 17, 31] {
        let path = segment_path(dir.path(), end);
        fs::write(&path, &encode_segment_header(end)[..partial]).unwrap();
        let (mut w, report) = SpoolWriter::open(dir.path(), small_cfg(2048)).unwrap();
        assert!(report.header_rewritten);
        assert_eq!(report.end, end);
        let got = read_writer(&w, Position::ZERO);
        assert_eq!(got.iter().map(|g| g.1.clone()).collect::<Vec<_>>(), recs);
        // The rewritten segment is usable.
        let p = w.append(&rec(500, 10).as_record()).unwrap();
        assert_eq!(p, end);
        w.simulate_crash();
        let (w, _) = SpoolWriter::open(dir.path(), small_cfg(2048)).unwrap();
        assert_eq!(
            w.end_position(),
            end,
            "uncommitted append is lost on a crash"
        );
        drop(w);
    }
}

#[test]
fn uncommitted_appends_may_be_lost_committed_ones_never() {
    for (segment_bytes, uncommitted) in [(1 << 20, 10), (4096, 10), (4096, 20_000)] {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, _) = SpoolWriter::open(dir.path(), small_cfg(segment_bytes)).unwrap();
        let committed: Vec<_> = (0..30).map(|i| rec(i, 90)).collect();
        for r in &committed {
            w.append(&r.as_record()).unwrap();
        }
        let end = w.commit().unwrap();
        let pending: Vec<_> = (30..30 + uncommitted).map(|i| rec(i, 90)).collect();
        for r in &pending {
            w.append(&r.as_record()).unwrap();
        }
        w.simulate_crash();
        let (w, report) = SpoolWriter::open(dir.path(), small_cfg(segment_bytes)).unwrap();
        assert!(report.end >= end);
        let got: Vec<_> = read_writer(&w, Position::ZERO)
            .into_iter()
            .map(|g| g.1)
            .collect();
        // Committed records all survive; of the rest, whatever reached the OS (rolls, a full
        // buffer) survives as a whole-record prefix.
        assert_eq!(got[..committed.len()], committed[..]);
        assert_eq!(
            got[committed.len()..],
            pending[..got.len() - committed.len()]
        );
        if segment_bytes == 1 << 20 && uncommitted == 10 {
            assert_eq!(report.end, end, "a small unflushed batch is lost entirely");
        }
        if uncommitted == 20_000 {
            assert!(
                got.len() > committed.len(),
                "full buffers and rolls reach the OS"
            );
        }
    }
}

#[test]
fn a_record_straddling_the_published_end_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (_, positions, _) = write_segments(dir.path(), 5);
    // The writer only ever publishes record boundaries; anything else means corruption.
    let mut r = SpoolReader::open(
        dir.path(),
        positions[1],
        DurableEnd::fixed(Position(positions[2].0 - 1)),
    )
    .unwrap();
    assert!(matches!(
        r.next_record(),
        Err(SpoolError::Corrupt {
            defect: RecordDefect::BadLength,
            ..
        })
    ));
}
