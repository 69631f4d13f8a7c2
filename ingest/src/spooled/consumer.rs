//! The consumer: spool → decode → batch → one transaction with the rows, the rejected lines
//! and the new position; then the committed rows to metering.

use std::sync::Arc;
use std::time::Duration;

use arrow_array::RecordBatch;
use metrics::gauge;
use suiftly_model::{Backoff, Committed};
use suiftly_parser::Parser;
use suiftly_spool::Position;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::{SpoolHandle, SpooledError, decode_record};
use crate::decode::{DecodeStats, Decoder};
use crate::listener::BatchLimits;
use crate::writer::{WriteOutcome, Writer, WriterStats};

/// What the consumer did, returned when it stops.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConsumerStats {
    pub writer: WriterStats,
    /// By listener index: what that listener's spooled messages became.
    pub decoded: Vec<DecodeStats>,
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

/// Reads (or creates) the committed position of the COPY writer whose `ingest_positions` row
/// is `consumer` ([`crate::ingestor::copy_consumer`]).
pub async fn committed_position(
    conninfo: &str,
    spool: &SpoolHandle,
    consumer: &str,
) -> Result<u64, SpooledError> {
    let c = crate::writer::connect(conninfo).await?;
    let oldest = spool.oldest_position().0;
    c.execute(
        "INSERT INTO ingest_positions (consumer, position) VALUES ($1, $2) ON CONFLICT (consumer) DO NOTHING",
        &[&consumer, &(oldest as i64)],
    )
    .await?;
    let committed: i64 = c
        .query_one(
            "SELECT position FROM ingest_positions WHERE consumer = $1",
            &[&consumer],
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
) -> Result<ConsumerStats, SpooledError> {
    // The database may be down at start-up too: accepting continues meanwhile, so wait.
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let mut pos = loop {
        match committed_position(&conninfo, &spool, writer.consumer()).await {
            Ok(p) => break p,
            Err(SpooledError::Postgres(e)) => {
                let delay = backoff.next_delay();
                warn!(error = %e, backoff_ms = delay.as_millis() as u64,
                    "cannot read the committed spool position yet; retrying");
                gauge!("suiftly_ingest_degraded").set(1.0);
                spool.health.set_degraded(true);
                tokio::select! {
                    _ = abort.cancelled() => return Err(SpooledError::WriterAborted),
                    _ = tokio::time::sleep(delay) => {}
                }
            }
            Err(e) => return Err(e),
        }
    };
    info!(
        position = pos,
        "consumer resuming from the committed spool position"
    );
    let mut reader = spool.reader(Position(pos))?;
    let mut d = Decoder::new(parsers, limits);
    // When the oldest line of the batch being built was read (its age closes the batch).
    let mut first_at: Option<Instant> = None;
    let max_age = limits.max_age;
    let mut end = pos;
    let mut last_gc = Instant::now();
    loop {
        // Read what is durable, up to one batch.
        while !d.full() {
            let Some(r) = reader.next_record()? else {
                break;
            };
            decode_record(&mut d, &r);
            first_at.get_or_insert_with(Instant::now);
            end = r.next_position.0;
        }
        let deadline = first_at.map(|t| t + max_age);
        let caught_up = end >= spool.durable_end().0;
        let stopping = listeners_done.is_cancelled() && caught_up;
        let due = deadline.is_some_and(|d| Instant::now() >= d);
        if end > pos && (d.full() || due || stopping || caught_up && deadline.is_none()) {
            first_at = None;
            let mut batch = d.take();
            batch.spool = Some((pos, end));
            let refused = match writer.write_with_retry(&batch, &abort).await {
                WriteOutcome::Committed { refused } => refused,
                WriteOutcome::Aborted => return Err(SpooledError::WriterAborted),
                WriteOutcome::PositionConflict => {
                    return Err(SpooledError::PositionConflict { start: pos });
                }
            };
            if let Some(t) = &tap {
                let c = Committed {
                    rows: without_rows(&batch.rows, &refused),
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
            let wake = deadline.unwrap_or(soon).min(soon);
            tokio::select! {
                _ = abort.cancelled() => return Err(SpooledError::WriterAborted),
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }
    spool.gc(Position(pos))?;
    info!(position = pos, stats = ?writer.stats, "consumer stopped");
    Ok(ConsumerStats {
        writer: writer.stats,
        decoded: d.stats().to_vec(),
    })
}
