//! The one error type of the spool.

use std::io;
use std::path::{Path, PathBuf};

use crate::Position;

/// What is wrong with the bytes where a record should start.
///
/// At the tail of the active segment on open this is the signature of a torn write and the tail
/// is cut; anywhere a reader reads (below the published end) it is corruption.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum RecordDefect {
    /// Fewer bytes than a record frame header.
    #[error("short record header")]
    ShortHeader,
    /// The frame does not start with the record magic.
    #[error("bad record magic")]
    BadMagic,
    /// The length field is below the fixed body size or above the maximum record size.
    #[error("bad record length")]
    BadLength,
    /// The file ends before the body the length field announces.
    #[error("short record payload")]
    ShortPayload,
    /// The CRC32C over frame header and body does not match.
    #[error("bad record checksum")]
    BadCrc,
    /// Checksum matches but the body does not decode (unknown address kind, address past the
    /// body): written by a newer or broken writer.
    #[error("undecodable record body")]
    BadBody,
}

/// What is wrong with a segment file's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum HeaderDefect {
    #[error("file shorter than the segment header")]
    Short,
    #[error("bad segment magic")]
    BadMagic,
    #[error("bad segment header checksum")]
    BadCrc,
    #[error("unsupported segment format version {0}")]
    UnsupportedVersion(u16),
    #[error("base position in header differs from the file name")]
    BaseMismatch,
}

/// Errors of every spool operation.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// An operating-system call failed. After an I/O error the writer is poisoned: what reached
    /// the disk is unknown (a failed fsync may have dropped dirty pages), so it must be reopened,
    /// which re-scans and cuts the tail.
    #[error("spool {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Appending would grow the spool past `max_total_bytes`. Nothing of the record or batch
    /// was written. The caller stops reading its sockets until [`SpoolWriter::gc`] frees space.
    ///
    /// [`SpoolWriter::gc`]: crate::SpoolWriter::gc
    #[error("spool full: {used_bytes} bytes used, {needed_bytes} more needed, limit {limit_bytes}")]
    Full {
        used_bytes: u64,
        needed_bytes: u64,
        limit_bytes: u64,
    },
    /// The payload exceeds [`MAX_PAYLOAD_BYTES`](crate::MAX_PAYLOAD_BYTES).
    #[error("record payload of {len} bytes exceeds the maximum of {max}")]
    RecordTooLarge { len: usize, max: usize },
    /// A record below the published end (or in a sealed segment) is damaged. Never skipped:
    /// the data a consumer would silently lose is accepted data.
    #[error("corrupt record at position {position} in segment {segment}: {defect}")]
    Corrupt {
        segment: Position,
        position: Position,
        defect: RecordDefect,
    },
    /// A segment file's header is damaged or of an unknown version.
    #[error("segment {path}: {defect}")]
    BadSegmentHeader { path: PathBuf, defect: HeaderDefect },
    /// The segment files do not form one contiguous stream (a sealed segment is shorter or
    /// longer than the next segment's base implies, or a segment the end says exists is
    /// missing). Seen after a machine crash with `FsyncPolicy::Never`, or manual deletion.
    #[error("spool inconsistent at position {position}: {detail}")]
    Inconsistent {
        position: Position,
        detail: &'static str,
    },
    /// The requested position was removed by garbage collection.
    #[error("position {requested} was removed; oldest retained is {oldest}")]
    PositionGone {
        requested: Position,
        oldest: Position,
    },
    /// The requested position lies past the published end of the spool.
    #[error("position {requested} is past the spool end {end}")]
    PositionBeyondEnd { requested: Position, end: Position },
    /// Another writer holds the spool directory's lock.
    #[error("spool directory {0} is locked by another writer")]
    Locked(PathBuf),
    /// An earlier I/O error left the writer in an unknown state; reopen it.
    #[error("spool writer is poisoned by an earlier i/o error; reopen it")]
    Poisoned,
    /// The configuration cannot work.
    #[error("invalid spool config: {0}")]
    InvalidConfig(&'static str),
    /// Consumer names are 1–64 characters of `[a-z0-9_-]`.
    #[error("invalid consumer name {0:?}")]
    InvalidConsumerName(String),
    /// `set_committed` for a name never registered.
    #[error("unknown consumer {0:?}")]
    UnknownConsumer(String),
    /// A consumer's committed position may only grow.
    #[error("consumer {name:?} would move back from {committed} to {requested}")]
    ConsumerRegressed {
        name: String,
        committed: Position,
        requested: Position,
    },
    /// The consumer state file does not parse or its checksum does not match.
    #[error("consumer state file {path}: {detail}")]
    BadConsumerFile { path: PathBuf, detail: &'static str },
}

/// Maps an `io::Error` to [`SpoolError::Io`]; the path is copied only when an error happens.
pub(crate) fn io_err<'p>(
    op: &'static str,
    path: &'p Path,
) -> impl FnOnce(io::Error) -> SpoolError + 'p {
    move |source| SpoolError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}
