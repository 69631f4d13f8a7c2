//! The COPY writer: commits each [`WriteBatch`] in one transaction.
//!
//! Rows go in with one binary COPY encoded straight from the Arrow columns; rejected lines of
//! the same batch go into `haproxy_rejected_lines` in the same transaction, so the counters
//! and the tables can be compared exactly. A failed batch is retried (capped exponential
//! backoff, reconnecting as needed) until it commits or `abort` fires: the writer never skips
//! a batch, so upstream blocks instead (see the channel policy in [`crate::listener`]).
//!
//! A batch carries an id recorded in `ingest_batch_log` in the same transaction, so a retry
//! after a lost COMMIT reply finds the id and does not insert the rows twice. Errors the
//! database would repeat for the same rows (SQLSTATE classes 22 and 23) are not retried
//! forever: the batch is bisected and the refused rows are stored as rejected `db_rejected`.
//!
//! [`Writer::write_with_retry`] says what happened as a [`WriteOutcome`]: committed (with the
//! rows the database refused, which downstream consumers must leave out too), aborted, or a
//! spool position conflict.
//!
//! Several writers (`storage.writers`, spool on) each hold a [`Writer`] with its own
//! connection; a shared [`CommitGate`] makes their commits advance the spool position in
//! spool order while their COPYs run in parallel.
//!
//! Durability: a batch is durable once its transaction commits. With the spool off, batches
//! still in the channel or in a listener's builder when the process is killed are lost; the
//! disk spool closes that gap.

use std::collections::BTreeSet;
use std::time::{Duration, Instant, UNIX_EPOCH};

use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMicrosecondType;
use bytes::BytesMut;
use futures_util::SinkExt;
use metrics::{counter, gauge, histogram};
pub use suiftly_migrations::connect;
use suiftly_model::Backoff;
use tokio::sync::mpsc;
use tokio_postgres::Client;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::batch::{RejectReason, RejectedLine, WriteBatch};
use crate::copy::{encode_batch, render_row};
use suiftly_model::schema::copy_raw_statement;
use suiftly_model::time::{US_PER_HOUR, now_us};

use crate::db::{self, Storage};

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Db(#[from] db::DbError),
    #[error(transparent)]
    Encode(#[from] crate::copy::EncodeError),
    #[error("write attempt timed out")]
    Timeout,
    #[error("spool position conflict: batch starts at {expected}, the database says {found:?}")]
    PositionConflict { expected: u64, found: Option<i64> },
    /// The batch before this one did not commit within the gate's wait: this attempt was
    /// rolled back (releasing its locks) and waits for its turn outside a transaction.
    #[error("the previous batch did not commit within {0:?}")]
    OutOfTurn(Duration),
}

/// Orders the commits of spooled batches written by several writers at once.
///
/// Each writer COPYs its batch in its own transaction in parallel with the others, then waits
/// here until the committed spool position has reached its batch's start, and only then
/// advances `ingest_positions` (`... WHERE position = start`) and commits. So the position in
/// the database is always the end of a contiguous prefix of the spool: after any crash the
/// batches past it were never committed (each needed its predecessor's commit first), and the
/// consumer resumes exactly there, as with one writer.
///
/// A writer holds its transaction open while it waits; if its turn does not come within
/// `wait` it rolls back (a predecessor creating a partition needs the table lock a waiting
/// transaction holds) and waits for its turn outside a transaction before trying again.
#[derive(Clone, Debug)]
pub struct CommitGate {
    committed: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
    wait: Duration,
}

impl CommitGate {
    /// `position`: the committed spool position the consumer resumes from.
    pub fn new(position: u64, wait: Duration) -> Self {
        Self {
            committed: std::sync::Arc::new(tokio::sync::watch::Sender::new(position)),
            wait,
        }
    }

    /// The committed spool position as the writers know it.
    pub fn position(&self) -> u64 {
        *self.committed.borrow()
    }

    /// Waits until every batch before `start` has committed; false after `wait` without it.
    pub async fn turn(&self, start: u64) -> bool {
        let mut rx = self.committed.subscribe();
        tokio::time::timeout(self.wait, rx.wait_for(|p| *p >= start))
            .await
            .is_ok()
    }

    /// Waits for the turn of the batch at `start` without a bound.
    pub async fn turn_unbounded(&self, start: u64) {
        let mut rx = self.committed.subscribe();
        // The sender lives in `self`: `wait_for` cannot see it closed.
        let _ = rx.wait_for(|p| *p >= start).await;
    }

    /// The batch `[start, end)` has committed: the next one may.
    pub fn committed(&self, end: u64) {
        self.committed.send_if_modified(|p| {
            let moved = *p < end;
            if moved {
                *p = end;
            }
            moved
        });
    }
}

/// The `ingest_positions` row of the default ingestor's COPY writer (see
/// [`crate::ingestor::copy_consumer`]).
pub const COPY_CONSUMER: &str = "copy";

/// What the writer did, returned when it stops.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterStats {
    pub batches: u64,
    pub rows: u64,
    pub rejected: u64,
    pub retries: u64,
    /// Rows the database refused permanently, stored as rejected `db_rejected`.
    pub db_rejected: u64,
    /// Retries that found their batch already committed (the commit reply had been lost).
    pub already_committed: u64,
    /// Lines given up on because `abort` fired while they were uncommitted.
    pub lost: u64,
    /// Attempts rolled back because the previous batch was slow to commit (several writers).
    pub out_of_turn: u64,
}

impl WriterStats {
    /// Adds another writer's counts (the consumer reports its writers as one).
    pub fn add(&mut self, o: &WriterStats) {
        self.batches += o.batches;
        self.rows += o.rows;
        self.rejected += o.rejected;
        self.retries += o.retries;
        self.db_rejected += o.db_rejected;
        self.already_committed += o.already_committed;
        self.lost += o.lost;
        self.out_of_turn += o.out_of_turn;
    }
}

/// Connection settings and retry bounds.
#[derive(Clone, Debug)]
pub struct WriterConfig {
    /// libpq-style connection string or URL.
    pub conninfo: String,
    pub max_backoff: Duration,
    /// One attempt (partitions + COPY + commit) taking longer than this is abandoned and the
    /// connection replaced: a half-open TCP connection would otherwise hang the writer for
    /// the kernel's keepalive time.
    pub write_timeout: Duration,
    /// This ingestor's id (`[ingest] id`): keys its spool position and batch ids.
    pub ingestor: String,
}

impl WriterConfig {
    pub fn new(conninfo: impl Into<String>) -> Self {
        Self {
            conninfo: conninfo.into(),
            max_backoff: Duration::from_secs(5),
            write_timeout: Duration::from_secs(60),
            ingestor: crate::ingestor::DEFAULT_ID.to_owned(),
        }
    }
}

pub struct Writer {
    cfg: WriterConfig,
    client: Option<Client>,
    storage: Option<Storage>,
    /// `None` until loaded from the catalog; cleared after any failed attempt because another
    /// process (maintenance) may have dropped or created partitions meanwhile.
    known_partitions: Option<BTreeSet<i64>>,
    copy_stmt: String,
    buf: BytesMut,
    /// The `ingest_positions` row this writer advances.
    consumer: String,
    /// Batch ids: a per-process random base plus a counter (see [`Writer::write`]), unique
    /// per ingestor (`ingest_batch_log` is keyed by both).
    batch_id_base: i64,
    batch_seq: i64,
    health: Option<std::sync::Arc<crate::health::Health>>,
    /// With several writers: commits of spooled batches in spool order.
    gate: Option<CommitGate>,
    pub stats: WriterStats,
}

/// What [`Writer::write_with_retry`] did with a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The batch is in the database (committed now, or found committed by an earlier attempt
    /// whose reply was lost). `refused` (sorted row indices) were refused permanently and
    /// stored as rejected `db_rejected` instead: downstream consumers leave them out too.
    Committed { refused: Vec<usize> },
    /// `abort` fired before the batch committed: it is not stored.
    Aborted,
    /// The spool position in the database is not where the batch starts (another ingestor on
    /// the same spool?): nothing was written, and retrying cannot help.
    PositionConflict,
}

impl WriteOutcome {
    pub fn is_committed(&self) -> bool {
        matches!(self, WriteOutcome::Committed { .. })
    }
}

/// Outcome of one successful attempt.
#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    Committed,
    /// The batch id was already in `ingest_batch_log`: an earlier attempt committed and only
    /// its reply was lost.
    AlreadyCommitted,
}

/// Errors the database will repeat for the same rows (data exceptions, constraint
/// violations): retrying cannot help, isolating the rows can.
fn is_permanent(e: &WriteError) -> bool {
    match e {
        WriteError::Postgres(pe) => pe.code().is_some_and(|c| {
            let c = c.code();
            c.starts_with("22") || c.starts_with("23")
        }),
        WriteError::Encode(_) => true,
        WriteError::Db(_)
        | WriteError::Timeout
        | WriteError::PositionConflict { .. }
        | WriteError::OutOfTurn(_) => false,
    }
}

fn random_base() -> i64 {
    // 8 bytes from the OS; the counter in `next_batch_id` makes ids unique in-process.
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        b = (now_us() as u64 ^ ((std::process::id() as u64) << 40)).to_le_bytes();
    }
    i64::from_le_bytes(b) & !0xffff_ffff
}

/// Moves this ingestor's COPY consumer position (`consumer`) from `start` to `end` inside `tx`: `None` when it
/// moved, `AlreadyCommitted` when it is already at `end` (an earlier attempt committed and
/// only its reply was lost), a conflict otherwise.
async fn advance_position(
    tx: &tokio_postgres::Transaction<'_>,
    consumer: &str,
    start: u64,
    end: u64,
) -> Result<Option<Written>, WriteError> {
    let n = tx
        .execute(
            "UPDATE ingest_positions SET position = $1, updated_at = now() \
             WHERE consumer = $2 AND position = $3",
            &[&(end as i64), &consumer, &(start as i64)],
        )
        .await?;
    if n == 1 {
        return Ok(None);
    }
    let found: Option<i64> = tx
        .query_opt(
            "SELECT position FROM ingest_positions WHERE consumer = $1",
            &[&consumer],
        )
        .await?
        .map(|r| r.get(0));
    if found == Some(end as i64) {
        return Ok(Some(Written::AlreadyCommitted));
    }
    Err(WriteError::PositionConflict {
        expected: start,
        found,
    })
}

impl Writer {
    pub fn new(cfg: WriterConfig) -> Self {
        Self {
            consumer: crate::ingestor::copy_consumer(&cfg.ingestor),
            cfg,
            client: None,
            storage: None,
            known_partitions: None,
            copy_stmt: copy_raw_statement(),
            buf: BytesMut::with_capacity(1 << 20),
            batch_id_base: random_base(),
            batch_seq: 0,
            health: None,
            gate: None,
            stats: WriterStats::default(),
        }
    }

    /// The `ingest_positions` row this writer advances (per ingestor).
    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// Commits spooled batches in spool order with the other writers sharing `gate`.
    pub fn with_gate(mut self, gate: CommitGate) -> Self {
        self.gate = Some(gate);
        self
    }

    /// Reports degradation and retries to the health endpoint too.
    pub fn with_health(mut self, health: std::sync::Arc<crate::health::Health>) -> Self {
        self.health = Some(health);
        self
    }

    /// Capped exponential backoff between attempts: 50 ms doubling to `max_backoff`.
    fn retry_backoff(&self) -> Backoff {
        Backoff::new(Duration::from_millis(50), self.cfg.max_backoff)
    }

    fn next_batch_id(&mut self) -> i64 {
        self.batch_seq += 1;
        self.batch_id_base.wrapping_add(self.batch_seq)
    }

    async fn client(&mut self) -> Result<&mut Client, WriteError> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            // `connect` sets lock_timeout: partition DDL must not queue behind a long query
            // and block every COPY after it.
            let c = connect(&self.cfg.conninfo).await?;
            self.storage = Some(db::storage(&c).await?);
            self.known_partitions = None;
            self.client = Some(c);
        }
        Ok(self.client.as_mut().expect("just set"))
    }

    /// Consumes batches until every sender is gone (orderly shutdown) or `abort` fires.
    pub async fn run(
        mut self,
        mut rx: mpsc::Receiver<WriteBatch>,
        abort: CancellationToken,
    ) -> WriterStats {
        while let Some(batch) = rx.recv().await {
            gauge!("suiftly_ingest_channel_depth", "channel" => "batches").set(rx.len() as f64);
            if !self.write_with_retry(&batch, &abort).await.is_committed() {
                let mut lost = batch.len() as u64;
                rx.close();
                while let Ok(b) = rx.try_recv() {
                    lost += b.len() as u64;
                }
                self.stats.lost += lost;
                counter!("suiftly_ingest_lines_lost_total").increment(lost);
                error!(lost_lines = lost, "writer aborted with uncommitted batches");
                break;
            }
        }
        info!(stats = ?self.stats, "writer stopped");
        self.stats
    }

    /// One attempt under the write timeout, abandoned (None) when `abort` fires.
    async fn attempt(
        &mut self,
        batch: &WriteBatch,
        id: i64,
        refused: &[usize],
        abort: &CancellationToken,
    ) -> Option<Result<Written, WriteError>> {
        let limit = self.cfg.write_timeout;
        let r = tokio::select! {
            _ = abort.cancelled() => return None,
            r = tokio::time::timeout(limit, self.write(batch, id, refused)) => r,
        };
        Some(match r {
            Ok(r) => r,
            Err(_) => {
                warn!(
                    timeout_s = limit.as_secs(),
                    "batch write timed out; replacing the connection"
                );
                self.client = None;
                Err(WriteError::Timeout)
            }
        })
    }

    /// Counts a failed attempt and sleeps the backoff; false when `abort` fired meanwhile.
    async fn backoff(
        &mut self,
        e: &WriteError,
        backoff: &mut Backoff,
        rows: usize,
        abort: &CancellationToken,
    ) -> bool {
        let delay = backoff.next_delay();
        self.stats.retries += 1;
        counter!("suiftly_ingest_write_retries_total").increment(1);
        gauge!("suiftly_ingest_degraded").set(1.0);
        if let Some(h) = &self.health {
            h.add_retry();
            h.set_degraded(true);
        }
        warn!(error = %e, backoff_ms = delay.as_millis() as u64, rows, "batch write failed; retrying");
        // The catalog may have changed (maintenance), and a broken connection is replaced.
        self.known_partitions = None;
        if self.client.as_ref().is_some_and(|c| c.is_closed()) {
            self.client = None;
        }
        tokio::select! {
            _ = abort.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }

    /// Writes one batch until it commits or `abort` fires. Transient errors
    /// (connection, timeout, locks) are retried with capped backoff. An error the database
    /// repeats for the same rows (seen twice, the partition cache reloaded in between) makes
    /// the writer find the refused rows with rolled-back probe transactions; the batch is then
    /// committed without them, and they are stored as rejected `db_rejected` in the same
    /// transaction — one bad row never stalls ingest and the batch stays atomic.
    pub async fn write_with_retry(
        &mut self,
        batch: &WriteBatch,
        abort: &CancellationToken,
    ) -> WriteOutcome {
        let id = self.next_batch_id();
        let mut backoff = self.retry_backoff();
        let mut permanent = 0;
        let mut refused: Vec<usize> = Vec::new();
        loop {
            match self.attempt(batch, id, &refused, abort).await {
                None => return WriteOutcome::Aborted,
                Some(Ok(w)) => {
                    if let (Some(g), Some((_, end))) = (&self.gate, batch.spool) {
                        g.committed(end);
                    }
                    gauge!("suiftly_ingest_degraded").set(0.0);
                    if let Some(h) = &self.health {
                        h.set_degraded(false);
                    }
                    if w == Written::AlreadyCommitted {
                        self.stats.already_committed += 1;
                        warn!(
                            batch_id = id,
                            "batch found already committed; not writing it twice"
                        );
                    }
                    if !refused.is_empty() && w == Written::Committed {
                        self.stats.db_rejected += refused.len() as u64;
                        counter!("suiftly_ingest_lines_rejected_total", "reason" => RejectReason::DbRejected.as_str())
                            .increment(refused.len() as u64);
                    }
                    return WriteOutcome::Committed { refused };
                }
                Some(Err(WriteError::OutOfTurn(waited))) => {
                    // Not a failure: wait for the turn with no transaction open, then redo.
                    self.stats.out_of_turn += 1;
                    counter!("suiftly_ingest_writer_out_of_turn_total").increment(1);
                    debug!(
                        waited_ms = waited.as_millis() as u64,
                        "previous batch slow to commit; rolled back to wait outside a transaction"
                    );
                    let (Some(gate), Some((start, _))) = (self.gate.clone(), batch.spool) else {
                        unreachable!("only a gated spooled batch waits for its turn")
                    };
                    tokio::select! {
                        _ = abort.cancelled() => return WriteOutcome::Aborted,
                        _ = gate.turn_unbounded(start) => {}
                    }
                }
                Some(Err(e @ WriteError::PositionConflict { .. })) => {
                    error!(error = %e, "spool position conflict: is another ingestor writing from the same spool?");
                    return WriteOutcome::PositionConflict;
                }
                Some(Err(e)) => {
                    if is_permanent(&e) && refused.is_empty() && batch.rows.num_rows() > 0 {
                        permanent += 1;
                        if permanent >= 2 {
                            warn!(error = %e, rows = batch.rows.num_rows(),
                                "database refuses this batch; probing for the refused rows");
                            match self.find_refused(batch, abort).await {
                                None => return WriteOutcome::Aborted,
                                Some(r) => {
                                    refused = r;
                                    continue;
                                }
                            }
                        }
                    }
                    if !self
                        .backoff(&e, &mut backoff, batch.rows.num_rows(), abort)
                        .await
                    {
                        return WriteOutcome::Aborted;
                    }
                }
            }
        }
    }

    /// Bisects the batch with probe transactions that are always rolled back; returns the
    /// indices of the rows the database refuses (None when `abort` fired).
    async fn find_refused(
        &mut self,
        batch: &WriteBatch,
        abort: &CancellationToken,
    ) -> Option<Vec<usize>> {
        let mut stack = vec![(0usize, batch.rows.num_rows())];
        let mut refused = Vec::new();
        let mut backoff = self.retry_backoff();
        while let Some((off, len)) = stack.pop() {
            if abort.is_cancelled() {
                return None;
            }
            match self.probe(&batch.rows.slice(off, len)).await {
                Ok(()) => {}
                Err(e) if is_permanent(&e) => {
                    if len == 1 {
                        warn!(error = %e, row = off, "row refused by the database");
                        refused.push(off);
                    } else {
                        stack.push((off + len / 2, len - len / 2));
                        stack.push((off, len / 2));
                    }
                }
                Err(e) => {
                    stack.push((off, len));
                    if !self.backoff(&e, &mut backoff, len, abort).await {
                        return None;
                    }
                }
            }
        }
        refused.sort_unstable();
        Some(refused)
    }

    /// COPYs `rows` in a transaction that is rolled back: does the database take them?
    async fn probe(&mut self, rows: &RecordBatch) -> Result<(), WriteError> {
        let probe = WriteBatch {
            rows: rows.clone(),
            rejected: Vec::new(),
            spool: None,
        };
        self.ensure_partitions_for(&probe).await?;
        self.buf.clear();
        encode_batch(rows, &mut self.buf)?;
        let payload = self.buf.split().freeze();
        let stmt = self.copy_stmt.clone();
        let client = self.client().await?;
        let tx = client.transaction().await?;
        let sink = tx.copy_in::<_, bytes::Bytes>(stmt.as_str()).await?;
        futures_util::pin_mut!(sink);
        sink.send(payload).await?;
        sink.finish().await?;
        tx.rollback().await?;
        Ok(())
    }

    /// Writes one batch in one transaction, leaving out the rows at `refused` (sorted), which
    /// are stored as rejected `db_rejected` instead.
    ///
    /// Exactly once: a spooled batch advances `ingest_positions` from its start to its end in
    /// the same transaction (`WHERE position = start`); other batches record their id in
    /// `ingest_batch_log`. Either way a retry after a lost COMMIT reply finds its mark and
    /// writes nothing twice. With a [`CommitGate`] (several writers) the position is advanced
    /// after the COPY, once the batch before has committed.
    pub async fn write(
        &mut self,
        batch: &WriteBatch,
        batch_id: i64,
        refused: &[usize],
    ) -> Result<Written, WriteError> {
        let started = Instant::now();
        let rows = batch.rows.num_rows();
        self.ensure_partitions_for(batch).await?;
        // Contiguous runs of rows to store.
        let mut runs = Vec::new();
        let mut from = 0;
        for &r in refused {
            if r > from {
                runs.push((from, r - from));
            }
            from = r + 1;
        }
        if rows > from {
            runs.push((from, rows - from));
        }
        let mut payloads = Vec::with_capacity(runs.len());
        for (off, len) in &runs {
            self.buf.clear();
            encode_batch(&batch.rows.slice(*off, *len), &mut self.buf)?;
            payloads.push(self.buf.split().freeze());
        }
        let mut rejected: Vec<RejectedLine> = Vec::new();
        for &r in refused {
            rejected.push(RejectedLine {
                received_at_us: now_us(),
                listener: "writer".into(),
                source_addr: None,
                reason: RejectReason::DbRejected,
                error_offset: None,
                raw: render_row(&batch.rows, r).into_bytes(),
            });
        }
        let stored_rows = rows - refused.len();
        let stmt = self.copy_stmt.clone();
        let (consumer, ingestor) = (self.consumer.clone(), self.cfg.ingestor.clone());
        let gate = self.gate.clone();
        let client = self.client().await?;
        let tx = client.transaction().await?;
        match (batch.spool, &gate) {
            // One writer: advance first, so a conflict is found before the COPY.
            (Some((start, end)), None) => {
                if let Some(w) = advance_position(&tx, &consumer, start, end).await? {
                    return Ok(w);
                }
            }
            // Several: COPY in parallel, advance in spool order (below).
            (Some(_), Some(_)) => {}
            (None, _) => {
                if let Err(e) = tx
                    .execute(
                        "INSERT INTO ingest_batch_log (ingestor, batch_id, rows, rejected) VALUES ($4, $1, $2, $3)",
                        &[&batch_id, &(stored_rows as i32), &((batch.rejected.len() + rejected.len()) as i32), &ingestor],
                    )
                    .await
                {
                    if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) {
                        return Ok(Written::AlreadyCommitted);
                    }
                    return Err(e.into());
                }
            }
        }
        for payload in payloads {
            let sink = tx.copy_in::<_, bytes::Bytes>(stmt.as_str()).await?;
            futures_util::pin_mut!(sink);
            sink.send(payload).await?;
            sink.finish().await?;
        }
        let all_rejected = batch.rejected.iter().chain(rejected.iter());
        if !batch.rejected.is_empty() || !rejected.is_empty() {
            let sink = tx
                .copy_in(
                    "COPY haproxy_rejected_lines (received_at, listener, source_addr, reason, error_offset, raw) \
                     FROM STDIN (FORMAT binary)",
                )
                .await?;
            let w = BinaryCopyInWriter::new(
                sink,
                &[
                    Type::TIMESTAMPTZ,
                    Type::TEXT,
                    Type::TEXT,
                    Type::TEXT,
                    Type::INT4,
                    Type::BYTEA,
                ],
            );
            futures_util::pin_mut!(w);
            for r in all_rejected {
                let at = UNIX_EPOCH + Duration::from_micros(r.received_at_us.max(0) as u64);
                w.as_mut()
                    .write(&[
                        &at as &(dyn tokio_postgres::types::ToSql + Sync),
                        &&*r.listener,
                        &r.source_addr,
                        &r.reason.as_str(),
                        &r.error_offset,
                        &r.raw,
                    ])
                    .await?;
            }
            w.finish().await?;
        }
        if let (Some((start, end)), Some(gate)) = (batch.spool, &gate) {
            // Dropping `tx` on the way out rolls it back.
            if !gate.turn(start).await {
                return Err(WriteError::OutOfTurn(gate.wait));
            }
            if let Some(w) = advance_position(&tx, &consumer, start, end).await? {
                return Ok(w);
            }
        }
        tx.commit().await?;
        let n_rejected = batch.rejected.len() + rejected.len();
        let elapsed = started.elapsed();
        histogram!("suiftly_ingest_copy_seconds").record(elapsed.as_secs_f64());
        counter!("suiftly_ingest_rows_copied_total").increment(stored_rows as u64);
        counter!("suiftly_ingest_rejected_stored_total").increment(n_rejected as u64);
        counter!("suiftly_ingest_batches_total").increment(1);
        self.stats.batches += 1;
        self.stats.rows += stored_rows as u64;
        self.stats.rejected += n_rejected as u64;
        debug!(
            rows = stored_rows,
            rejected = n_rejected,
            ms = elapsed.as_millis() as u64,
            "batch committed"
        );
        Ok(Written::Committed)
    }

    /// Native partitioning has no default partition (a populated default partition would block
    /// creating the matching hourly partition later), so every hour a batch touches must exist
    /// before the COPY. Listeners only let through rows inside the retention window.
    async fn ensure_partitions_for(&mut self, batch: &WriteBatch) -> Result<(), WriteError> {
        if batch.rows.num_rows() == 0 {
            return Ok(());
        }
        self.client().await?;
        if self.storage == Some(Storage::Timescale) {
            return Ok(());
        }
        let client = self.client.as_ref().expect("connected above");
        if self.known_partitions.is_none() {
            self.known_partitions = Some(db::existing_partitions(client).await?);
        }
        let known = self.known_partitions.as_mut().expect("loaded above");
        let ts = batch
            .rows
            .column(0)
            .as_primitive::<TimestampMicrosecondType>();
        let mut missing = BTreeSet::new();
        for v in ts.values().iter() {
            let h = v.div_euclid(US_PER_HOUR);
            if !known.contains(&h) {
                missing.insert(h);
            }
        }
        if !missing.is_empty() {
            db::ensure_partitions(client, missing.iter().copied()).await?;
            known.extend(missing);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use futures_util::StreamExt;
    use futures_util::stream::FuturesOrdered;

    use super::*;

    const LONG: Duration = Duration::from_secs(600);

    #[tokio::test]
    async fn the_batch_at_the_committed_position_has_its_turn_at_once() {
        let g = CommitGate::new(100, LONG);
        assert!(g.turn(100).await);
        // A batch already behind the position (found committed on a retry) is not held.
        assert!(g.turn(40).await);
    }

    #[tokio::test]
    async fn a_later_batch_waits_for_the_one_before_and_gives_up_after_the_wait() {
        let g = CommitGate::new(0, Duration::from_millis(20));
        assert!(!g.turn(10).await, "nothing before 10 committed");
        let g = CommitGate::new(0, LONG);
        let waiter = tokio::spawn({
            let g = g.clone();
            async move { g.turn(10).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        g.committed(10);
        assert!(waiter.await.unwrap());
    }

    #[tokio::test]
    async fn the_position_never_moves_back() {
        let g = CommitGate::new(0, LONG);
        g.committed(30);
        g.committed(20);
        assert_eq!(g.position(), 30);
    }

    /// Several writers with random COPY times: commits happen in spool order, each exactly
    /// once, and the results come back in the order the batches were handed out (the
    /// consumer's `FuturesOrdered`), whatever order the writers finish their COPYs in.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn parallel_writers_commit_and_report_in_spool_order() {
        // Batch k spans [10k, 10k + 10); short gate waits force the out-of-turn path too.
        let g = CommitGate::new(0, Duration::from_millis(3));
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut in_flight = FuturesOrdered::new();
        for k in 0..200u64 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let copy = Duration::from_micros(seed % 5_000);
            let (g, log) = (g.clone(), log.clone());
            in_flight.push_back(tokio::spawn(async move {
                let (start, end) = (10 * k, 10 * k + 10);
                tokio::time::sleep(copy).await;
                while !g.turn(start).await {
                    g.turn_unbounded(start).await;
                }
                assert_eq!(g.position(), start, "the batch before has committed");
                log.lock().unwrap().push(start);
                g.committed(end);
                start
            }));
            // At most 4 in flight, like 4 writers.
            if in_flight.len() == 4 {
                let s = in_flight.next().await.unwrap().unwrap();
                assert_eq!(s, 10 * (k - 3));
            }
        }
        let rest: Vec<u64> = in_flight.map(|r| r.unwrap()).collect().await;
        assert_eq!(rest, vec![1970, 1980, 1990]);
        let want: Vec<u64> = (0..200).map(|k| 10 * k).collect();
        assert_eq!(*log.lock().unwrap(), want);
        assert_eq!(g.position(), 2000);
    }
}
