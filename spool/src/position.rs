//! Positions in the spool and the published end that readers may read up to.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A global byte offset into the spool's record stream.
///
/// Position `p` counts every record byte ever appended before the record that starts at `p`;
/// segment headers do not count. Positions are monotonic, stable across restarts and across
/// segment removal, so a consumer can store one (as a PostgreSQL `bigint`: it stays below
/// `i64::MAX` for the first 9.2 EB) and resume from it. Only positions the spool returned (a
/// record's position or next position) are record boundaries; reading from any other offset is
/// reported as corruption.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position(pub u64);

impl Position {
    /// The position of the very first record of a fresh spool.
    pub const ZERO: Position = Position(0);

    /// The raw byte offset.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The position as a PostgreSQL `bigint`, `None` past `i64::MAX`.
    pub fn to_i64(self) -> Option<i64> {
        i64::try_from(self.0).ok()
    }

    /// A position read back from a PostgreSQL `bigint`; `None` when negative.
    pub fn from_i64(v: i64) -> Option<Position> {
        u64::try_from(v).ok().map(Position)
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The end of the spool that readers may read up to, published by the one [`SpoolWriter`].
///
/// The writer stores a new value (release) only after the bytes below it are written to the
/// operating system *and* as durable as the [`FsyncPolicy`] promises (fsynced for `EveryBatch`
/// and `IntervalMs`, merely written for `Never`). A reader loads it (acquire) and never reads a
/// byte at or past it. So a consumer never commits a position that a machine crash could take
/// back, and a reader in another thread never sees a half-written record. Values only grow.
///
/// Every [`SpoolWriter::open`] makes a new handle: readers made from an earlier writer's handle
/// stop at that writer's last end, so reopen them (at their position) after reopening the writer.
///
/// [`SpoolWriter`]: crate::SpoolWriter
/// [`SpoolWriter::open`]: crate::SpoolWriter::open
/// [`FsyncPolicy`]: crate::FsyncPolicy
#[derive(Clone, Debug)]
pub struct DurableEnd(Arc<AtomicU64>);

impl DurableEnd {
    /// A fixed end, for readers of a spool no writer is appending to (tools, tests).
    pub fn fixed(end: Position) -> DurableEnd {
        DurableEnd(Arc::new(AtomicU64::new(end.0)))
    }

    /// The current published end.
    pub fn load(&self) -> Position {
        Position(self.0.load(Ordering::Acquire))
    }

    pub(crate) fn publish(&self, end: Position) {
        self.0.fetch_max(end.0, Ordering::AcqRel);
    }
}
