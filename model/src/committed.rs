//! What the COPY consumer hands downstream after a commit, and the re-read input the
//! aggregator recovers from after a restart.

use arrow_array::RecordBatch;

/// A batch the COPY consumer has committed: exactly the rows now in `haproxy_raw_logs` (rows
/// the database refused are left out), and the spool range `[start, end)` they were read
/// from. Positions are byte offsets in the spool, committed with the rows.
#[derive(Clone, Debug)]
pub struct Committed {
    pub rows: RecordBatch,
    pub start: u64,
    pub end: u64,
}

/// Why a [`CommittedSource`] could not produce its next batch (the producer's own error,
/// boxed: the consumer only reports it).
pub type SourceError = Box<dyn std::error::Error + Send + Sync>;

/// Already committed batches, re-read in position order (the spool read again from the
/// aggregator's restart position, parsed exactly as the consumer parsed it). The aggregator
/// knows only this trait; the binary hands it the spool-backed implementation.
pub trait CommittedSource: Send {
    /// The next batch of records in `[position, limit)`; `None` once `limit` is reached.
    /// `limit` must be a record boundary (a committed position). Blocking I/O: call it off
    /// the async workers.
    fn next_batch(&mut self, limit: u64) -> Result<Option<Committed>, SourceError>;

    /// Where the next batch starts.
    fn position(&self) -> u64;
}
