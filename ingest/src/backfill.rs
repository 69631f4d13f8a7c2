//! Captured lines through the same decode → batch → writer path as a listener, without a
//! socket: backfills and benchmarks (`suiftly replay`).

use std::sync::Arc;

use suiftly_model::time::now_us;
use suiftly_parser::Parser;
use tokio::sync::mpsc;

use crate::batch::WriteBatch;
use crate::listener::{BatchLimits, ListenerStats};
use crate::recv::Source;
use crate::sink::{BatchSink, MessageSink, SinkError};

/// A listener without a socket: lines go in one by one, batches come out on `tx` with the
/// same bounds and the same rejection rules as live traffic.
pub struct Backfill {
    sink: BatchSink,
    lines: u64,
    bytes: u64,
}

impl Backfill {
    /// `name` labels the rejected lines and metrics like a listener name.
    pub fn new(
        name: &str,
        parser: Parser,
        limits: BatchLimits,
        tx: mpsc::Sender<WriteBatch>,
    ) -> Self {
        Self {
            sink: BatchSink::new(Arc::from(name), parser, limits, tx),
            lines: 0,
            bytes: 0,
        }
    }

    /// One captured line (one datagram), received "now" for the time-window check;
    /// `truncated` when it was stored cut (a spool record that arrived truncated).
    pub async fn line(&mut self, bytes: &[u8], truncated: bool) -> Result<(), SinkError> {
        self.lines += 1;
        self.bytes += bytes.len() as u64;
        self.sink.push(bytes, Source::Unix, truncated, now_us());
        if self.sink.full() {
            self.sink.flush().await?;
        }
        Ok(())
    }

    /// Flushes the last partial batch and returns the counts.
    pub async fn finish(mut self) -> Result<ListenerStats, SinkError> {
        self.sink.flush().await?;
        let mut stats = ListenerStats {
            datagrams: self.lines,
            bytes: self.bytes,
            ..ListenerStats::default()
        };
        self.sink.add_stats(&mut stats);
        Ok(stats)
    }
}
