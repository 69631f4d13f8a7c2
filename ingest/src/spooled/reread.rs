//! The spool read again from a position, decoded exactly as the consumer decoded it: the
//! aggregator's recovery input after a restart (parsing is deterministic — the time-window
//! check uses each record's receive time — so the rows are the rows the consumer stored).

use std::sync::Arc;

use suiftly_model::{Committed, CommittedSource, SourceError};
use suiftly_parser::Parser;
use suiftly_spool::{Position, SpoolReader};

use super::{SpoolHandle, SpooledError, decode_record};
use crate::decode::Decoder;
use crate::listener::BatchLimits;

/// Batches of the spool from a position on, with the listeners' parsers.
pub struct SpoolBatches {
    reader: SpoolReader,
    decoder: Decoder,
    pos: u64,
}

impl SpoolBatches {
    pub fn new(
        spool: &SpoolHandle,
        from: u64,
        parsers: Vec<(Arc<str>, Parser)>,
        limits: BatchLimits,
    ) -> Result<Self, SpooledError> {
        Ok(Self {
            reader: spool.reader(Position(from))?,
            // These lines were counted when they were stored.
            decoder: Decoder::new(parsers, limits).without_metrics(),
            pos: from,
        })
    }

    /// The next batch (at most `max_rows` lines) of records in `[pos, limit)`; `None` once
    /// `limit` is reached. `limit` must be a record boundary (a committed position).
    pub fn next_batch(&mut self, limit: u64) -> Result<Option<Committed>, SpooledError> {
        let start = self.pos;
        while self.pos < limit && !self.decoder.full() {
            let Some(r) = self.reader.next_record()? else {
                break;
            };
            decode_record(&mut self.decoder, &r);
            self.pos = r.next_position.0;
        }
        if self.pos == start {
            return Ok(None);
        }
        let batch = self.decoder.take();
        Ok(Some(Committed {
            rows: batch.rows,
            start,
            end: self.pos,
        }))
    }

    pub fn position(&self) -> u64 {
        self.pos
    }
}

/// The aggregator's recovery input (the binary hands it over as a `CommittedSource`).
impl CommittedSource for SpoolBatches {
    fn next_batch(&mut self, limit: u64) -> Result<Option<Committed>, SourceError> {
        SpoolBatches::next_batch(self, limit).map_err(Into::into)
    }

    fn position(&self) -> u64 {
        SpoolBatches::position(self)
    }
}
