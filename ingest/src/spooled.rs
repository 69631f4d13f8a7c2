//! The zero-loss path: sockets → disk spool → consumer → COPY with the spool position.
//!
//! A line is *accepted* once [`SpoolHandle::append_commit`] has returned for it: it is in the
//! spool under the configured fsync policy. The [`run_consumer`] task reads the spool from the
//! position committed in PostgreSQL (`ingest_positions`), parses, batches, and commits rows,
//! rejected lines and the new position in one transaction, so every accepted line is stored
//! exactly once across database outages, crashes and restarts. Segments are removed only once
//! the committed position has passed them.
//!
//! Listener side full-policy: when the spool is at its size limit, a listener stops reading
//! its socket and retries every [`FULL_RETRY`] (`suiftly_spool_full` is 1 meanwhile and
//! `suiftly_spool_full_wait_ms_total` counts the time); the kernel buffer then absorbs and, past it,
//! drops (counted by the kernel). Accepted data is never dropped to make room.

use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_array::RecordBatch;
use ipnet::IpNet;
use metrics::{counter, gauge};
pub use suiftly_model::Committed;
use suiftly_model::time::now_us;
use suiftly_model::{CommittedSource, SourceError};
use suiftly_parser::Parser;
use suiftly_spool::{
    DurableEnd, OwnedRecord, Position, Record, SpoolConfig, SpoolError, SpoolReader, SpoolWriter,
};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::listener::{BatchLimits, Batcher, BoundListener, ListenerStats, MessageSink, run_with};
use crate::recv::Source;
use crate::writer::{COPY_CONSUMER, Writer, WriterStats};

/// High bit of a spooled record's listener index: the datagram arrived cut.
pub const TRUNCATED_FLAG: u16 = 0x8000;
/// How often a listener retries when the spool is full.
pub const FULL_RETRY: Duration = Duration::from_millis(20);
/// Records a spool sink holds before it appends (one receive batch is usually smaller).
const SINK_RECORDS: usize = 512;
/// Records a spool sink may hold in memory while the spool is busy fsyncing, before it waits.
const PENDING_CAP: usize = 65_536;

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
    #[error("the writer gave up (aborted or position conflict)")]
    WriterAborted,
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

/// A listener's sink when the spool is on: messages are appended, not parsed.
pub struct SpoolSink {
    name: Arc<str>,
    index: u16,
    allow: Vec<IpNet>,
    spool: SpoolHandle,
    pending: Vec<OwnedRecord>,
    stats: ListenerStats,
    shutdown: CancellationToken,
    // Handles registered once: a labelled lookup per datagram costs more than the append.
    c_datagrams: metrics::Counter,
    c_bytes: metrics::Counter,
    c_denied: metrics::Counter,
    c_accepted: metrics::Counter,
}

impl SpoolSink {
    pub fn new(
        name: Arc<str>,
        index: u16,
        allow: Vec<IpNet>,
        spool: SpoolHandle,
        shutdown: CancellationToken,
    ) -> Self {
        let label = name.to_string();
        Self {
            c_datagrams: counter!("suiftly_ingest_datagrams_total", "listener" => label.clone()),
            c_bytes: counter!("suiftly_ingest_bytes_total", "listener" => label.clone()),
            c_denied: counter!("suiftly_ingest_datagrams_denied_total", "listener" => label),
            c_accepted: counter!("suiftly_spool_accepted_total"),
            name,
            index,
            allow,
            spool,
            pending: Vec::with_capacity(SINK_RECORDS),
            stats: ListenerStats::default(),
            shutdown,
        }
    }
}

impl MessageSink for SpoolSink {
    fn name(&self) -> &Arc<str> {
        &self.name
    }
    fn allows(&self, ip: IpAddr) -> bool {
        self.allow.iter().any(|n| n.contains(&ip))
    }
    fn admit(&mut self, bytes: &[u8], source: Source, truncated: bool, now: i64) {
        self.stats.datagrams += 1;
        self.stats.bytes += bytes.len() as u64;
        self.c_datagrams.increment(1);
        self.c_bytes.increment(bytes.len() as u64);
        let addr = match source {
            Source::Inet(a) => Some(a),
            Source::Unix => None,
        };
        if let Some(ip) = source.ip()
            && !self.allows(ip)
        {
            self.stats.denied += 1;
            self.c_denied.increment(1);
            return;
        }
        let payload = &bytes[..bytes.len().min(suiftly_spool::MAX_PAYLOAD_BYTES)];
        self.pending.push(OwnedRecord {
            received_at_us: now,
            listener: self.index | if truncated { TRUNCATED_FLAG } else { 0 },
            source: addr,
            payload: payload.to_vec(),
        });
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
    async fn flush(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let mut waited = false;
        // While the spool is busy (an fsync in progress), keep up to PENDING_CAP messages in
        // memory and go on reading; they are accepted once appended.
        if self.pending.len() < PENDING_CAP && !self.shutdown.is_cancelled() {
            let recs: Vec<Record<'_>> = self.pending.iter().map(|r| r.as_record()).collect();
            match self.spool.try_append_commit(&recs) {
                Ok(true) => {
                    self.c_accepted.increment(self.pending.len() as u64);
                    self.pending.clear();
                    return Ok(());
                }
                Ok(false) => return Ok(()),
                Err(SpoolError::Full { .. }) => {}
                Err(e) => return Err(io::Error::other(e)),
            }
        }
        loop {
            let recs: Vec<Record<'_>> = self.pending.iter().map(|r| r.as_record()).collect();
            match self.spool.append_commit(&recs) {
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
                Err(e) => return Err(io::Error::other(e)),
            }
        }
        if waited {
            gauge!("suiftly_spool_full").set(0.0);
            self.spool.health.set_spool_full(false);
            info!(listener = %self.name, waited_ms = started.elapsed().as_millis() as u64,
                "spool has room again; reading resumes");
        }
        self.c_accepted.increment(self.pending.len() as u64);
        self.pending.clear();
        Ok(())
    }
    fn stats(&self) -> ListenerStats {
        self.stats
    }
}

/// Where the consumer sends committed batches. Full-policy: **block** — the consumer waits
/// (the spool is durable, so waiting loses nothing; listeners keep accepting into the spool).
/// If the receiver is gone the consumer logs once and goes on storing: the aggregator
/// recovers from its own committed position at the next start (the gc floor keeps the
/// spool it needs).
pub type Tap = mpsc::Sender<Committed>;

/// Leaves the rows at `refused` (sorted indices) out of `rows`.
pub fn without_rows(rows: &RecordBatch, refused: &[usize]) -> RecordBatch {
    if refused.is_empty() {
        return rows.clone();
    }
    let keep: arrow_array::BooleanArray = (0..rows.num_rows())
        .map(|i| Some(refused.binary_search(&i).is_err()))
        .collect();
    arrow_select::filter::filter_record_batch(rows, &keep)
        .expect("a boolean mask of the batch's own length")
}

/// Reads spool records from a position and turns them into row batches with the listeners'
/// parsers, exactly as the consumer did (parsing is deterministic: the time-range check uses
/// each record's receive time). Used by the aggregator to replay after a restart.
pub struct SpoolBatches {
    reader: SpoolReader,
    batcher: Batcher,
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
            batcher: Batcher::with_parsers("replay".into(), parsers, None, limits, None),
            pos: from,
        })
    }

    /// The next batch (at most `max_rows` rows) of records in `[pos, limit)`; `None` once
    /// `limit` is reached. `limit` must be a record boundary (a committed position).
    pub fn next_batch(&mut self, limit: u64) -> Result<Option<Committed>, SpooledError> {
        let start = self.pos;
        while self.pos < limit && !self.batcher.full() {
            let Some(r) = self.reader.next_record()? else {
                break;
            };
            let idx = (r.listener & !TRUNCATED_FLAG) as usize;
            let truncated = r.listener & TRUNCATED_FLAG != 0;
            let source = r.source.map_or(Source::Unix, Source::Inet);
            self.batcher
                .admit_from(idx, r.payload, source, truncated, r.received_at_us);
            self.pos = r.next_position.0;
        }
        if self.pos == start {
            return Ok(None);
        }
        let batch = self.batcher.take();
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

/// The aggregator's recovery input: the spool re-read from its restart position.
impl CommittedSource for SpoolBatches {
    fn next_batch(&mut self, limit: u64) -> Result<Option<Committed>, SourceError> {
        SpoolBatches::next_batch(self, limit).map_err(Into::into)
    }

    fn position(&self) -> u64 {
        SpoolBatches::position(self)
    }
}

/// Runs a listener that appends to the spool.
pub async fn run_listener(
    listener: BoundListener,
    index: u16,
    spool: SpoolHandle,
    shutdown: CancellationToken,
) -> io::Result<ListenerStats> {
    let sink = SpoolSink::new(
        listener.name.clone(),
        index,
        listener.allow().to_vec(),
        spool,
        shutdown.clone(),
    );
    run_with(listener, sink, shutdown).await
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

/// Reads (or creates) the COPY writer's committed position.
pub async fn committed_position(conninfo: &str, spool: &SpoolHandle) -> Result<u64, SpooledError> {
    let c = crate::writer::connect(conninfo).await?;
    let oldest = spool.oldest_position().0;
    c.execute(
        "INSERT INTO ingest_positions (consumer, position) VALUES ($1, $2) ON CONFLICT (consumer) DO NOTHING",
        &[&COPY_CONSUMER, &(oldest as i64)],
    )
    .await?;
    let committed: i64 = c
        .query_one(
            "SELECT position FROM ingest_positions WHERE consumer = $1",
            &[&COPY_CONSUMER],
        )
        .await?
        .get(0);
    let committed = committed as u64;
    let end = spool.durable_end().0;
    if committed > end {
        return Err(SpooledError::PositionBeyondEnd { committed, end });
    }
    if committed < oldest {
        return Err(SpooledError::PositionGone { committed, oldest });
    }
    Ok(committed)
}

/// The consumer: spool → parse → batch → COPY + position, until `listeners_done` has fired
/// and everything durable has been stored (or `abort`).
#[allow(clippy::too_many_arguments)] // the composition root passes each stage's handle once
pub async fn run_consumer(
    spool: SpoolHandle,
    mut writer: Writer,
    conninfo: String,
    parsers: Vec<(Arc<str>, Parser)>,
    limits: BatchLimits,
    listeners_done: CancellationToken,
    abort: CancellationToken,
    mut tap: Option<Tap>,
) -> Result<WriterStats, SpooledError> {
    // The database may be down at start-up too: accepting continues meanwhile, so wait.
    let mut backoff = Duration::from_millis(100);
    let mut pos = loop {
        match committed_position(&conninfo, &spool).await {
            Ok(p) => break p,
            Err(SpooledError::Postgres(e)) => {
                warn!(error = %e, backoff_ms = backoff.as_millis() as u64,
                    "cannot read the committed spool position yet; retrying");
                gauge!("suiftly_ingest_degraded").set(1.0);
                spool.health.set_degraded(true);
                tokio::select! {
                    _ = abort.cancelled() => return Err(SpooledError::WriterAborted),
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e),
        }
    };
    info!(
        position = pos,
        "consumer resuming from the committed spool position"
    );
    let mut reader = spool.reader(Position(pos))?;
    let mut b = Batcher::with_parsers("spool".into(), parsers, None, limits, None);
    let mut end = pos;
    let mut last_gc = Instant::now();
    loop {
        // Read what is durable, up to one batch.
        while !b.full() {
            let Some(r) = reader.next_record()? else {
                break;
            };
            let idx = (r.listener & !TRUNCATED_FLAG) as usize;
            let truncated = r.listener & TRUNCATED_FLAG != 0;
            let source = r.source.map_or(Source::Unix, Source::Inet);
            b.admit_from(idx, r.payload, source, truncated, r.received_at_us);
            end = r.next_position.0;
        }
        let caught_up = end >= spool.durable_end().0;
        let stopping = listeners_done.is_cancelled() && caught_up;
        let due = b.deadline().is_some_and(|d| Instant::now() >= d);
        if end > pos && (b.full() || due || stopping || caught_up && b.deadline().is_none()) {
            let mut batch = b.take();
            batch.spool = Some((pos, end));
            if !writer.write_with_retry(&batch, &abort).await {
                return Err(SpooledError::WriterAborted);
            }
            if let Some(t) = &tap {
                let c = Committed {
                    rows: without_rows(&batch.rows, &writer.last_refused),
                    start: pos,
                    end,
                };
                let sent = tokio::select! {
                    r = t.send(c) => r.is_ok(),
                    _ = abort.cancelled() => return Err(SpooledError::WriterAborted),
                };
                if !sent {
                    error!(
                        "the aggregator is gone: storing goes on, metering resumes from its committed position at the next start"
                    );
                    tap = None;
                }
            }
            pos = end;
            if last_gc.elapsed() >= Duration::from_secs(1) {
                spool.gc(Position(pos))?;
                last_gc = Instant::now();
            }
            continue;
        }
        if stopping && end == pos {
            break;
        }
        if caught_up {
            // Idle: free consumed segments (a full spool waits on this), then wait for more
            // durable data, the batch deadline, or the stop.
            if last_gc.elapsed() >= Duration::from_millis(200) {
                spool.gc(Position(pos))?;
                last_gc = Instant::now();
            }
            let soon = Instant::now() + Duration::from_millis(5);
            let wake = b.deadline().unwrap_or(soon).min(soon);
            tokio::select! {
                _ = abort.cancelled() => return Err(SpooledError::WriterAborted),
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }
    spool.gc(Position(pos))?;
    info!(position = pos, stats = ?writer.stats, "consumer stopped");
    Ok(writer.stats)
}
