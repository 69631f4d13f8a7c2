//! Where a listener's socket loop hands the messages it admitted: a [`MessageSink`].
//!
//! Two sinks exist: [`BatchSink`] (spool off) decodes at once and hands batches to the COPY
//! writer over a bounded channel; `spooled::SpoolSink` (the default) appends the raw messages
//! to the disk spool and leaves decoding to the consumer. The socket loops
//! (`listener::datagram`, `listener::tcp`) do not know which one they feed.
//!
//! Full-policy of [`BatchSink`]'s channel: **block**. A listener that cannot hand a batch over
//! stops reading its socket; the kernel buffer then absorbs the burst and, when it overflows,
//! the kernel drops and counts (`/proc/net/snmp` `Udp: RcvbufErrors`, exported by
//! [`crate::metrics::run_kernel_drop_sampler`]). Dropping in user space instead would lose
//! lines we could have kept, and would hide the loss from the kernel counter operators
//! already watch.

use std::future::Future;
use std::sync::Arc;

use metrics::gauge;
use suiftly_parser::Parser;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::batch::WriteBatch;
use crate::decode::Decoder;
use crate::listener::{BatchLimits, ListenerStats};
use crate::recv::Source;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("spool: {0}")]
    Spool(#[from] suiftly_spool::SpoolError),
    #[error("the writer stopped taking batches")]
    WriterGone,
}

/// What a socket task hands its admitted messages to.
pub trait MessageSink: Send {
    /// One message received at `received_at_us` (µs since the epoch).
    fn push(&mut self, bytes: &[u8], source: Source, truncated: bool, received_at_us: i64);
    /// Flush now, before pushing more.
    fn full(&self) -> bool;
    /// When held messages must be flushed at the latest.
    fn deadline(&self) -> Option<Instant>;
    /// Flush once the socket has nothing more queued (after a burst of receive calls; spool:
    /// the burst is the commit unit) rather than only when full or at the deadline.
    fn flush_after_receive(&self) -> bool;
    fn flush(&mut self) -> impl Future<Output = Result<(), SinkError>> + Send;
    /// Adds what the sink did (parsed, rejected, batches, accepted) to the listener's stats.
    fn add_stats(&self, stats: &mut ListenerStats);
}

/// Decode now, batch, and hand batches to the writer (spool off; also `suiftly replay`).
pub struct BatchSink {
    decoder: Decoder,
    tx: mpsc::Sender<WriteBatch>,
    first_at: Option<Instant>,
    batches: u64,
}

impl BatchSink {
    pub fn new(
        name: Arc<str>,
        parser: Parser,
        limits: BatchLimits,
        tx: mpsc::Sender<WriteBatch>,
    ) -> Self {
        Self {
            decoder: Decoder::new(vec![(name, parser)], limits),
            tx,
            first_at: None,
            batches: 0,
        }
    }
}

impl MessageSink for BatchSink {
    fn push(&mut self, bytes: &[u8], source: Source, truncated: bool, received_at_us: i64) {
        self.decoder
            .decode(0, bytes, source, truncated, received_at_us);
        self.first_at.get_or_insert_with(Instant::now);
    }

    fn full(&self) -> bool {
        self.decoder.full()
    }

    fn deadline(&self) -> Option<Instant> {
        self.first_at.map(|t| t + self.decoder.limits().max_age)
    }

    fn flush_after_receive(&self) -> bool {
        false
    }

    /// Block policy: waiting here stops socket reads.
    async fn flush(&mut self) -> Result<(), SinkError> {
        self.first_at = None;
        if self.decoder.is_empty() {
            return Ok(());
        }
        let batch = self.decoder.take();
        self.batches += 1;
        self.tx
            .send(batch)
            .await
            .map_err(|_| SinkError::WriterGone)?;
        gauge!("suiftly_ingest_channel_depth", "channel" => "batches")
            .set((self.tx.max_capacity() - self.tx.capacity()) as f64);
        Ok(())
    }

    fn add_stats(&self, stats: &mut ListenerStats) {
        let d = self.decoder.stats()[0];
        stats.parsed += d.parsed;
        stats.rejected += d.rejected;
        stats.batches += self.batches;
    }
}
