//! The zero-loss path: sockets → disk spool → consumer → COPY with the spool position.
//!
//! A line is *accepted* once [`SpoolHandle::append_commit`] has returned for it: it is in the
//! spool under the configured fsync policy. The consumer ([`run_consumer`]) reads the spool
//! from the position committed in PostgreSQL (`ingest_positions`), decodes, batches, and
//! commits rows, rejected lines and the new position in one transaction, so every accepted
//! line is stored exactly once across database outages, crashes and restarts. Segments are
//! removed only once the committed position has passed them.
//!
//! Layout:
//! - this module: [`SpoolHandle`] (the one spool writer, shared), [`run_syncer`], and how a
//!   record carries its listener ([`listener_field`], [`decode_record`]);
//! - `sink`: [`SpoolSink`], a listener's sink that appends (full-policy there);
//! - `consumer`: [`run_consumer`], [`committed_position`], the [`Tap`] to metering;
//! - `reread`: [`SpoolBatches`], the spool read again for the aggregator's recovery.

mod consumer;
mod reread;
mod sink;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::{counter, gauge};
pub use suiftly_model::Committed;
use suiftly_model::time::now_us;
use suiftly_spool::{
    DurableEnd, EncodedBatch, Position, Record, RecordRef, SpoolConfig, SpoolError, SpoolReader,
    SpoolWriter,
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

pub use self::consumer::{ConsumerStats, Tap, committed_position, run_consumer, without_rows};
pub use self::reread::SpoolBatches;
pub use self::sink::{SpoolSink, run_listener};
use crate::decode::Decoder;
use crate::recv::Source;

/// High bit of a spooled record's listener index: the datagram arrived cut.
pub const TRUNCATED_FLAG: u16 = 0x8000;
/// How often a listener retries when the spool is full.
pub const FULL_RETRY: Duration = Duration::from_millis(20);

/// A record's `listener` field: the listener index, with [`TRUNCATED_FLAG`] when the message
/// arrived cut.
pub fn listener_field(index: u16, truncated: bool) -> u16 {
    index | if truncated { TRUNCATED_FLAG } else { 0 }
}

/// Inverse of [`listener_field`]: (listener index, truncated).
pub fn split_listener_field(field: u16) -> (usize, bool) {
    (
        (field & !TRUNCATED_FLAG) as usize,
        field & TRUNCATED_FLAG != 0,
    )
}

/// One spooled record into `decoder`, exactly as the listener received it: the consumer and
/// the recovery re-read share this, so both decode a record the same way.
pub fn decode_record(decoder: &mut Decoder, r: &RecordRef<'_>) {
    let (index, truncated) = split_listener_field(r.listener);
    let source = r.source.map_or(Source::Unix, Source::Inet);
    decoder.decode(index, r.payload, source, truncated, r.received_at_us);
}

#[derive(Debug, thiserror::Error)]
pub enum SpooledError {
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error(
        "the database says the spool was consumed up to {committed}, but the spool ends at {end}: it is not the spool this database was fed from (or it lost data); refusing to start"
    )]
    PositionBeyondEnd { committed: u64, end: u64 },
    #[error(
        "the database says the spool was consumed up to {committed}, but the spool's oldest record is at {oldest}: accepted lines were removed before they were stored; refusing to start"
    )]
    PositionGone { committed: u64, oldest: u64 },
    #[error("the writer was aborted before everything accepted was stored (it stays in the spool)")]
    WriterAborted,
    #[error(
        "spool position conflict at {start}: the database's position moved elsewhere (is another ingestor consuming the same spool?)"
    )]
    PositionConflict { start: u64 },
}

/// The one spool writer, shared by every listener (appends are short; the lock is held for
/// one receive batch).
#[derive(Clone)]
pub struct SpoolHandle {
    writer: Arc<Mutex<SpoolWriter>>,
    /// An instant no interval fsync can be due at: listeners commit "as of" it so that under
    /// `FsyncPolicy::IntervalMs` only the syncer task (off the async workers) ever fsyncs and
    /// a listener never stalls its socket on a disk flush. Other policies are unaffected.
    never_due: std::time::Instant,
    durable: DurableEnd,
    dir: std::path::PathBuf,
    pub health: Arc<crate::health::Health>,
    /// Lowest position another consumer (the aggregator) still needs; gc never frees past it.
    gc_floor: Arc<AtomicU64>,
}

impl SpoolHandle {
    /// Opens (and recovers) the spool; logs what recovery cut.
    pub fn open(dir: &std::path::Path, cfg: SpoolConfig) -> Result<SpoolHandle, SpoolError> {
        let never_due = std::time::Instant::now();
        let (w, report) = SpoolWriter::open(dir, cfg)?;
        if let Some(t) = &report.truncated {
            warn!(
                ?t,
                "spool: torn tail cut on open (a crash interrupted a write)"
            );
        }
        info!(dir = %dir.display(), end = report.end.0, segments = report.segments, "spool open");
        let durable = w.durable_end();
        Ok(SpoolHandle {
            never_due,
            writer: Arc::new(Mutex::new(w)),
            durable,
            dir: dir.to_path_buf(),
            health: Arc::default(),
            gc_floor: Arc::new(AtomicU64::new(u64::MAX)),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SpoolWriter> {
        // A panic while holding the lock leaves the writer in an unknown state; the process is
        // going down anyway, so propagate it.
        self.writer.lock().expect("spool writer lock poisoned")
    }

    /// Appends and commits `recs` atomically (all or none).
    pub fn append_commit(&self, recs: &[Record<'_>]) -> Result<(), SpoolError> {
        let mut w = self.lock();
        w.append_batch(recs)?;
        w.commit_at(self.never_due)?;
        Ok(())
    }

    /// Like [`Self::append_commit`], but returns `Ok(false)` instead of waiting while another
    /// task holds the spool (the interval fsync): a listener keeps reading its socket meanwhile
    /// rather than letting the kernel buffer overflow.
    pub fn try_append_commit(&self, recs: &[Record<'_>]) -> Result<bool, SpoolError> {
        let mut w = match self.writer.try_lock() {
            Ok(w) => w,
            Err(std::sync::TryLockError::WouldBlock) => return Ok(false),
            Err(std::sync::TryLockError::Poisoned(_)) => panic!("spool writer lock poisoned"),
        };
        w.append_batch(recs)?;
        w.commit_at(self.never_due)?;
        Ok(true)
    }

    /// [`Self::append_commit`] for records a listener framed outside the lock.
    pub fn append_commit_encoded(&self, batch: &EncodedBatch) -> Result<(), SpoolError> {
        let mut w = self.lock();
        w.append_encoded(batch)?;
        w.commit_at(self.never_due)?;
        Ok(())
    }

    /// [`Self::try_append_commit`] for records a listener framed outside the lock.
    pub fn try_append_commit_encoded(&self, batch: &EncodedBatch) -> Result<bool, SpoolError> {
        let mut w = match self.writer.try_lock() {
            Ok(w) => w,
            Err(std::sync::TryLockError::WouldBlock) => return Ok(false),
            Err(std::sync::TryLockError::Poisoned(_)) => panic!("spool writer lock poisoned"),
        };
        w.append_encoded(batch)?;
        w.commit_at(self.never_due)?;
        Ok(true)
    }

    /// Applies a due interval fsync (publishing the durable end).
    pub fn poll_sync(&self) -> Result<(), SpoolError> {
        self.lock().poll_sync(std::time::Instant::now()).map(|_| ())
    }

    /// Forces everything appended to disk and publishes it to readers.
    pub fn sync(&self) -> Result<(), SpoolError> {
        self.lock().sync().map(|_| ())
    }

    pub fn reader(&self, from: Position) -> Result<SpoolReader, SpoolError> {
        SpoolReader::open(&self.dir, from, self.durable.clone())
    }

    pub fn durable_end(&self) -> Position {
        self.durable.load()
    }

    pub fn oldest_position(&self) -> Position {
        self.lock().oldest_position()
    }

    /// Another consumer (the aggregator) needs everything from `pos` on: segments holding it
    /// are kept even after the COPY consumer has passed them.
    pub fn set_gc_floor(&self, pos: u64) {
        self.gc_floor.store(pos, Ordering::Release);
    }

    /// Removes segments wholly below `committed`, and below the gc floor while the spool is
    /// at most half full. Past half, accepting lines wins over the aggregator's replay window:
    /// the floor is ignored (counted in `suiftly_spool_gc_floor_released_total`); metering
    /// then stays exact unless the process crashes before the held minutes settle, in which
    /// case it resumes at the ingest position and `suiftly audit` shows the gap.
    pub fn gc(&self, committed: Position) -> Result<(), SpoolError> {
        let mut w = self.lock();
        let floor = self.gc_floor.load(Ordering::Acquire);
        let half_full = w.stats().bytes_on_disk > w.config().max_total_bytes / 2;
        let release = floor < committed.0 && half_full;
        let free_below = if release {
            committed
        } else {
            Position(committed.0.min(floor))
        };
        let r = w.gc(free_below)?;
        if release && r.segments_removed > 0 {
            counter!("suiftly_spool_gc_floor_released_total").increment(r.segments_removed as u64);
            warn!(
                floor,
                committed = committed.0,
                "spool over half full: freed segments the aggregator would replay after a crash"
            );
        }
        if r.segments_removed > 0 {
            info!(
                removed = r.segments_removed,
                freed = r.bytes_freed,
                "spool segments removed"
            );
        }
        Self::publish(&w, &self.health, committed);
        Ok(())
    }

    /// Updates the backlog gauges and health from the last committed position (also while
    /// the consumer is stuck retrying during an outage).
    pub fn refresh(&self) {
        let committed = Position(self.health.snapshot().committed_spool_position);
        let w = self.lock();
        Self::publish(&w, &self.health, committed.max(w.oldest_position()));
    }

    fn publish(w: &SpoolWriter, health: &crate::health::Health, committed: Position) {
        let st = w.stats();
        gauge!("suiftly_spool_bytes").set(st.bytes_on_disk as f64);
        gauge!("suiftly_spool_segments").set(st.segments as f64);
        let age_ms = match w.received_at_us_at(committed) {
            Ok(Some(t)) => ((now_us() - t).max(0) / 1000) as u64,
            _ => 0,
        };
        gauge!("suiftly_spool_oldest_unwritten_age_seconds").set(age_ms as f64 / 1000.0);
        health.set_spool(st.bytes_on_disk, age_ms, committed.0);
    }
}

/// Keeps interval fsyncs going (and so the consumer fed) while listeners are quiet (`every`
/// = the fsync interval; `None` for other policies), and refreshes the backlog gauges about
/// once a second.
pub async fn run_syncer(spool: SpoolHandle, every: Option<Duration>, stop: CancellationToken) {
    // Half the interval: the syncer, not a listener's commit, usually finds the fsync due.
    let tick = every
        .map(|d| d / 2)
        .unwrap_or(Duration::from_secs(1))
        .min(Duration::from_secs(1));
    let mut last_refresh = Instant::now();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(tick) => {}
        }
        if every.is_some() {
            // fdatasync blocks: keep it off the async workers that run the listeners.
            let sp = spool.clone();
            match tokio::task::spawn_blocking(move || sp.poll_sync()).await {
                Ok(Err(e)) => error!(error = %e, "spool fsync failed"),
                Err(e) => error!(error = %e, "spool fsync task failed"),
                Ok(Ok(())) => {}
            }
        }
        if last_refresh.elapsed() >= Duration::from_secs(1) {
            spool.refresh();
            last_refresh = Instant::now();
        }
    }
}
