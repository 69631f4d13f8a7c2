//! The parser's error: a `Copy` kind plus the byte offset where the problem was found.
//!
//! Rejections happen on the hot path (a misconfigured sender can make every line bad), so the
//! error never allocates; [`ErrorKind::as_str`] gives a fixed, low-cardinality label for metrics
//! and for the rejection reason stored with the bad line.

use std::fmt;

/// Why a datagram was rejected. A small closed set: adding a variant adds a metrics label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Nothing left after stripping trailing `\n`, `\r` and `\0`, or an empty payload.
    Empty,
    /// `<PRI>` missing, not 1–3 digits, unterminated or above 191.
    BadPriority,
    /// Syslog header does not match the configured (or detected) framing.
    BadHeader,
    /// A date or time (header or payload) that does not parse or is out of range.
    BadTimestamp,
    /// The line ended before a required field, or a `-` field has no configured fallback.
    MissingField,
    /// A numeric field that is not a number or does not fit its column.
    BadInteger,
    /// The client address is neither an IP address nor `unix`.
    BadIp,
    /// A field with the wrong shape (e.g. `backend/server` without `/`, non-UTF-8 flags).
    BadField,
    /// The frontend is not in the mapping and no default mapping is configured.
    UnknownFrontend,
    /// The payload is none of the accepted formats (or not the configured one).
    UnknownFormat,
    /// Bytes after the last field of a format that has a fixed end.
    TrailingData,
}

impl ErrorKind {
    /// Every kind, for pre-registering metrics labels.
    pub const ALL: &[ErrorKind] = &[
        ErrorKind::Empty,
        ErrorKind::BadPriority,
        ErrorKind::BadHeader,
        ErrorKind::BadTimestamp,
        ErrorKind::MissingField,
        ErrorKind::BadInteger,
        ErrorKind::BadIp,
        ErrorKind::BadField,
        ErrorKind::UnknownFrontend,
        ErrorKind::UnknownFormat,
        ErrorKind::TrailingData,
    ];

    /// Stable snake_case name: a metrics label and the stored rejection reason, so never
    /// rename one without migrating the stored values.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Empty => "empty",
            ErrorKind::BadPriority => "bad_priority",
            ErrorKind::BadHeader => "bad_header",
            ErrorKind::BadTimestamp => "bad_timestamp",
            ErrorKind::MissingField => "missing_field",
            ErrorKind::BadInteger => "bad_integer",
            ErrorKind::BadIp => "bad_ip",
            ErrorKind::BadField => "bad_field",
            ErrorKind::UnknownFrontend => "unknown_frontend",
            ErrorKind::UnknownFormat => "unknown_format",
            ErrorKind::TrailingData => "trailing_data",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rejected datagram: what was wrong and where (byte offset into the datagram as received).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub kind: ErrorKind,
    pub offset: u32,
}

impl ParseError {
    /// Builds an error at a `usize` position; datagrams are at most 64 KiB, but arbitrary input
    /// must not panic, so larger offsets saturate.
    #[inline]
    pub(crate) fn at(kind: ErrorKind, offset: usize) -> Self {
        ParseError {
            kind,
            offset: u32::try_from(offset).unwrap_or(u32::MAX),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.kind.as_str(), self.offset)
    }
}

impl std::error::Error for ParseError {}
