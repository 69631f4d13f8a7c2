//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;

use suiftly_spool::{
    DurableEnd, FsyncPolicy, OwnedRecord, Position, SpoolConfig, SpoolReader, SpoolWriter,
};

/// Smallest total size the config accepts with small segments.
pub const MIN_TOTAL: u64 = 2 * (32 + 12 + 11 + 26 + (1 << 20));

pub fn small_cfg(segment_bytes: u64) -> SpoolConfig {
    SpoolConfig {
        segment_bytes,
        max_total_bytes: 1 << 30,
        fsync: FsyncPolicy::Never,
    }
}

pub fn rec(i: u64, len: usize) -> OwnedRecord {
    let source: Option<SocketAddr> = match i % 4 {
        0 => None,
        1 => Some(
            format!("10.0.{}.{}:{}", i % 251, i % 13, 1000 + i % 50000)
                .parse()
                .unwrap(),
        ),
        2 => Some(format!("[2001:db8::{:x}]:514", i % 65536).parse().unwrap()),
        _ => Some(format!("[fe80::1%{}]:9", 1 + i % 7).parse().unwrap()),
    };
    OwnedRecord {
        received_at_us: 1_700_000_000_000_000 + i as i64,
        listener: (i % 5) as u16,
        source,
        payload: (0..len).map(|j| (i as usize * 31 + j) as u8).collect(),
    }
}

/// Everything from `from` to `end`, with positions.
pub fn read_all(
    dir: &Path,
    from: Position,
    end: Position,
) -> Vec<(Position, OwnedRecord, Position)> {
    let mut r = SpoolReader::open(dir, from, DurableEnd::fixed(end)).unwrap();
    let mut out = Vec::new();
    while let Some(x) = r.next_owned().unwrap() {
        out.push(x);
    }
    assert_eq!(r.position(), end);
    out
}

pub fn read_writer(w: &SpoolWriter, from: Position) -> Vec<(Position, OwnedRecord, Position)> {
    let mut r = w.reader(from).unwrap();
    let mut out = Vec::new();
    while let Some(x) = r.next_owned().unwrap() {
        out.push(x);
    }
    out
}
