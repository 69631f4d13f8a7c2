//! Feeding captured lines through the same parse → batch → writer path as the listeners,
//! for backfills and benchmarks (`suiftly replay`).

use std::io;
use std::sync::Arc;

use suiftly_parser::Parser;
use tokio::sync::mpsc;

use crate::batch::WriteBatch;
use suiftly_model::time::now_us;

use crate::listener::{BatchLimits, Batcher, ListenerStats};
use crate::recv::Source;

/// A listener without a socket: lines go in one by one, batches come out on `tx` with the same
/// bounds and the same rejection rules as live traffic.
pub struct Replayer {
    batcher: Batcher,
}

impl Replayer {
    /// `name` labels the rows' rejected lines and metrics like a listener name.
    pub fn new(
        name: &str,
        parser: Parser,
        limits: BatchLimits,
        tx: mpsc::Sender<WriteBatch>,
    ) -> Self {
        Self {
            batcher: Batcher::new(Arc::from(name), parser, Vec::new(), limits, tx),
        }
    }

    /// One captured line (one datagram), received "now" for the time-window check.
    pub async fn line(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.batcher.admit(bytes, Source::Unix, false, now_us());
        if self.batcher.full() {
            self.batcher.flush().await?;
        }
        Ok(())
    }

    /// Flushes the last partial batch and returns the counts.
    pub async fn finish(mut self) -> io::Result<ListenerStats> {
        self.batcher.flush().await?;
        Ok(self.batcher.stats())
    }
}
