//! Crash-safe, append-only disk spool for received syslog datagrams.
//!
//! A line is *accepted* once [`SpoolWriter::commit`] has returned after appending it: from then
//! on it survives `kill -9` (and a machine crash, with an fsync policy other than `Never`), and
//! consumers read it back by [`Position`] until every consumer has committed past it.
//!
//! This crate is synchronous `std::fs` code. It knows nothing of sockets, tokio, PostgreSQL or
//! the log format: the ingest stage appends what it received, the COPY writer reads records
//! back and stores the position it reached in the same transaction as its rows. Consumers'
//! positions live with their data (PostgreSQL), not here: [`SpoolWriter::gc`] is told the
//! lowest position still needed.
//!
//! Layout:
//! - [`writer`]: [`SpoolWriter`] — open with tail recovery, append, commit per
//!   [`FsyncPolicy`], segment roll, [`SpoolError::Full`], [`gc`](SpoolWriter::gc), stats.
//! - [`reader`]: [`SpoolReader`] — records from a position up to the writer's [`DurableEnd`].
//! - [`format`](mod@format): the on-disk encoding below.
//!
//! # Directory
//!
//! ```text
//! <dir>/LOCK                         flock held by the one writer
//! <dir>/00000000000000000000.seg     segment files, named by base position (20 digits)
//! <dir>/00000000000067108832.seg
//! ```
//!
//! # Positions
//!
//! A [`Position`] is a global byte offset over the record stream: record bytes only, segment
//! headers excluded. A segment's *base* is the position of its first record, and the next
//! segment's base is this base plus the segment's record bytes, so the segment file names alone
//! tell where every position lives: position `p` is at file offset `32 + p - base` of the
//! segment with the largest base `<= p`.
//!
//! # Segment header (32 bytes, little-endian)
//!
//! ```text
//!  0               8       10      12              16                              24      28      32
//! +---------------+-------+-------+---------------+-------------------------------+-------+-------+
//! | "SUISPOOL"    | ver=1 | hlen  | flags = 0     | base position u64             | 0     | crc32c|
//! | magic [u8; 8] | u16   | u16=32| u32           |                               | u32   | u32   |
//! +---------------+-------+-------+---------------+-------------------------------+-------+-------+
//!                                                                 crc32c covers bytes 0..28
//! ```
//!
//! # Record frame (12-byte frame header + body, little-endian)
//!
//! ```text
//!  0       4          8          12                 20        22     23          23+a
//! +-------+----------+----------+------------------+---------+------+-----------+-----------+
//! | "SPRC"| body_len | crc32c   | received_at_us   | listener| kind | address   | payload   |
//! | magic | u32      | u32      | i64              | u16     | u8   | a bytes   | rest      |
//! +-------+----------+----------+------------------+---------+------+-----------+-----------+
//!         |<- body_len counts from byte 12 to the end of the payload ----------------------->|
//!  crc32c = CRC32C(bytes 0..8 ++ bytes 12..12+body_len): magic, length and the whole body
//!
//!  kind 0: no address                                         a = 0
//!  kind 4: IPv4 octets [4] + port u16                         a = 6
//!  kind 6: IPv6 octets [16] + port u16                        a = 18
//!  kind 7: IPv6 octets [16] + port u16 + flowinfo u32 + scope_id u32   a = 26
//! ```
//!
//! `body_len` is at least 11 and at most 11 + 26 + [`MAX_PAYLOAD_BYTES`]; a 200-byte payload
//! from an IPv4 source takes 229 bytes on disk.
//!
//! # Recovery
//!
//! Only the active (last) segment can be torn: a segment is flushed, and fsynced unless the
//! policy is `Never`, before the next one is created. On open the writer checks every sealed
//! segment's header and length against the next base, then scans the active segment and cuts
//! it at the first byte that is not a whole valid frame — short header, bad magic, impossible
//! length, short payload, bad checksum — reporting the cut in a [`RecoveryReport`]. Cut bytes
//! were never parsed as data. Readers, in contrast, treat any such damage below the durable end
//! as [`SpoolError::Corrupt`].

mod error;
pub mod format;
mod position;
pub mod reader;
pub mod writer;

use std::net::SocketAddr;

pub use error::{HeaderDefect, RecordDefect, SpoolError};
pub use format::MAX_PAYLOAD_BYTES;
pub use position::{DurableEnd, Position};
pub use reader::{RecordRef, SpoolReader};
pub use writer::{
    EncodedBatch, FsyncPolicy, GcReport, RecoveryReport, SpoolConfig, SpoolStats, SpoolWriter,
    Truncation,
};

/// One received datagram and what the receiver knew about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// Receive time, microseconds since the Unix epoch.
    pub received_at_us: i64,
    /// Index into the configured listener list.
    pub listener: u16,
    /// Sender address; `None` for unix-datagram listeners.
    pub source: Option<SocketAddr>,
    /// The datagram, at most [`MAX_PAYLOAD_BYTES`].
    pub payload: &'a [u8],
}

/// A [`Record`] that owns its payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedRecord {
    pub received_at_us: i64,
    pub listener: u16,
    pub source: Option<SocketAddr>,
    pub payload: Vec<u8>,
}

impl OwnedRecord {
    pub fn as_record(&self) -> Record<'_> {
        Record {
            received_at_us: self.received_at_us,
            listener: self.listener,
            source: self.source,
            payload: &self.payload,
        }
    }
}
