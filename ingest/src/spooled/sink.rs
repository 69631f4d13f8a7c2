//! A listener's sink with the spool on: messages are appended, not parsed.
//!
//! Full-policy: when the spool is at its size limit, a listener stops reading its socket and
//! retries every [`FULL_RETRY`] (`suiftly_spool_full` is 1 meanwhile and
//! `suiftly_spool_full_wait_ms_total` counts the time); the kernel buffer then absorbs and,
//! past it, drops (counted by the kernel). Accepted data is never dropped to make room.
//!
//! In-memory hold: while another task holds the spool (the interval fsync), a sink keeps up to
//! [`PENDING_CAP`] messages in memory and goes on reading its socket rather than letting the
//! kernel buffer overflow; they are accepted (durable under the fsync policy) only once
//! appended. A crash loses what is held there, exactly as it would lose what is still in the
//! kernel buffer.

use std::sync::Arc;
use std::time::Duration;

use metrics::{counter, gauge};
use suiftly_spool::{EncodedBatch, Record, SpoolError};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::{FULL_RETRY, SpoolHandle, listener_field};
use crate::listener::{BoundListener, ListenerError, ListenerStats, run_with};
use crate::recv::Source;
use crate::sink::{MessageSink, SinkError};

/// Records a spool sink holds before it appends (one receive batch is usually smaller).
const SINK_RECORDS: usize = 512;
/// Records a spool sink may hold in memory while the spool is busy fsyncing, before it waits.
pub const PENDING_CAP: usize = 65_536;

pub struct SpoolSink {
    name: Arc<str>,
    index: u16,
    spool: SpoolHandle,
    /// Held messages, already framed for the spool (checksummed as they arrive, outside the
    /// spool lock; appended without another copy).
    pending: EncodedBatch,
    accepted: u64,
    commits: u64,
    shutdown: CancellationToken,
    // Registered once: a labelled lookup per datagram costs more than the append.
    c_accepted: metrics::Counter,
}

impl SpoolSink {
    pub fn new(
        name: Arc<str>,
        index: u16,
        spool: SpoolHandle,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            c_accepted: counter!("suiftly_spool_accepted_total"),
            name,
            index,
            spool,
            pending: EncodedBatch::with_capacity(SINK_RECORDS, SINK_RECORDS * 512),
            accepted: 0,
            commits: 0,
            shutdown,
        }
    }

    fn appended(&mut self) {
        self.c_accepted.increment(self.pending.len() as u64);
        self.accepted += self.pending.len() as u64;
        self.commits += 1;
        self.pending.clear();
    }
}

impl MessageSink for SpoolSink {
    fn push(&mut self, bytes: &[u8], source: Source, truncated: bool, received_at_us: i64) {
        let payload = &bytes[..bytes.len().min(suiftly_spool::MAX_PAYLOAD_BYTES)];
        self.pending
            .push(&Record {
                received_at_us,
                listener: listener_field(self.index, truncated),
                source: match source {
                    Source::Inet(a) => Some(a),
                    Source::Unix | Source::Unknown => None,
                },
                payload,
            })
            .expect("the payload was cut to MAX_PAYLOAD_BYTES above");
    }

    fn full(&self) -> bool {
        self.pending.len() >= SINK_RECORDS
    }

    fn deadline(&self) -> Option<Instant> {
        // Messages held while the spool was busy are retried soon even if the socket is quiet.
        (!self.pending.is_empty()).then(|| Instant::now() + Duration::from_millis(2))
    }

    fn flush_after_receive(&self) -> bool {
        true
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let mut waited = false;
        // While the spool is busy (an fsync in progress), keep up to PENDING_CAP messages in
        // memory and go on reading; they are accepted once appended.
        if self.pending.len() < PENDING_CAP && !self.shutdown.is_cancelled() {
            match self.spool.try_append_commit_encoded(&self.pending) {
                Ok(true) => {
                    self.appended();
                    return Ok(());
                }
                Ok(false) => return Ok(()),
                Err(SpoolError::Full { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        loop {
            match self.spool.append_commit_encoded(&self.pending) {
                Ok(()) => break,
                Err(SpoolError::Full { .. }) => {
                    if !waited {
                        warn!(listener = %self.name, "spool full: not reading the socket until space is freed");
                        waited = true;
                    }
                    gauge!("suiftly_spool_full").set(1.0);
                    self.spool.health.set_spool_full(true);
                    counter!("suiftly_spool_full_wait_ms_total")
                        .increment(FULL_RETRY.as_millis() as u64);
                    if self.shutdown.is_cancelled() {
                        // Never accepted: counted so the operator sees them.
                        counter!("suiftly_spool_not_accepted_total")
                            .increment(self.pending.len() as u64);
                        error!(
                            lines = self.pending.len(),
                            "spool full at shutdown: lines not accepted"
                        );
                        self.pending.clear();
                        return Ok(());
                    }
                    tokio::time::sleep(FULL_RETRY).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        if waited {
            gauge!("suiftly_spool_full").set(0.0);
            self.spool.health.set_spool_full(false);
            info!(listener = %self.name, waited_ms = started.elapsed().as_millis() as u64,
                "spool has room again; reading resumes");
        }
        self.appended();
        Ok(())
    }

    fn add_stats(&self, stats: &mut ListenerStats) {
        stats.accepted += self.accepted;
        stats.batches += self.commits;
    }
}

/// Runs listener `index` with a sink that appends to the spool.
pub async fn run_listener(
    listener: BoundListener,
    index: u16,
    spool: SpoolHandle,
    shutdown: CancellationToken,
) -> Result<ListenerStats, ListenerError> {
    let sink = SpoolSink::new(listener.name.clone(), index, spool, shutdown.clone());
    run_with(listener, sink, shutdown).await
}
