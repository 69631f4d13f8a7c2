//! The consumer: spool → decode → batch → one transaction with the rows, the rejected lines
//! and the new position; then the committed rows to metering.

use std::sync::Arc;
use std::time::Duration;

use arrow_array::RecordBatch;
use futures_util::stream::FuturesOrdered;
use futures_util::{FutureExt, StreamExt};
use metrics::gauge;
use suiftly_model::{Backoff, Committed};
use suiftly_parser::Parser;
use suiftly_spool::Position;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::{SpoolHandle, SpooledError, decode_record};
use crate::batch::WriteBatch;
use crate::decode::{DecodeStats, Decoder};
use crate::listener::BatchLimits;
use crate::writer::{CommitGate, WriteOutcome, Writer, WriterStats};

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

/// How long a writer holding a COPYed batch waits for the batch before it to commit before it
/// rolls back and waits outside a transaction (see [`CommitGate`]). A batch commits in tens of
/// milliseconds; the wait is cut short because an earlier batch may need a lock the waiting
/// transaction holds — TimescaleDB creates a new chunk inside the inserting transaction, and
/// partition DDL needs the table lock — and only this timeout breaks that cycle (measured: a
/// stall of the whole wait at about one run in three with 2 or 4 writers on a fresh chunk).
pub const GATE_WAIT: Duration = Duration::from_millis(500);

/// A batch back from its writer task, with the writer.
struct Done {
    writer: Writer,
    batch: WriteBatch,
    outcome: WriteOutcome,
}

/// The next batch back from the writers, in the order they were handed out (spool order).
async fn next_done(
    in_flight: &mut FuturesOrdered<JoinHandle<Done>>,
    abort: &CancellationToken,
) -> Result<Done, SpooledError> {
    let joined = tokio::select! {
        _ = abort.cancelled() => return Err(SpooledError::WriterAborted),
        r = in_flight.next() => r.expect("only called with batches in flight"),
    };
    joined_done(joined, in_flight.len())
}

/// The oldest batch, if its writer is already done (never waits).
fn ready_done(
    in_flight: &mut FuturesOrdered<JoinHandle<Done>>,
) -> Option<Result<Done, SpooledError>> {
    if in_flight.is_empty() {
        return None;
    }
    let joined = in_flight.next().now_or_never()??;
    Some(joined_done(joined, in_flight.len()))
}

fn joined_done(
    joined: Result<Done, tokio::task::JoinError>,
    in_flight: usize,
) -> Result<Done, SpooledError> {
    gauge!("suiftly_ingest_writers_in_flight").set(in_flight as f64);
    match joined {
        Ok(done) => Ok(done),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(SpooledError::WriterAborted),
    }
}

/// The consumer: spool → parse → batch → COPY + position, until `listeners_done` has fired
/// and everything durable has been stored (or `abort`).
///
/// `writers` (at least one) write batches in parallel, each on its own connection: batch
/// `k` goes to whichever writer is free, and with more than one writer a [`CommitGate`]
/// orders their commits so `ingest_positions` only ever moves over a contiguous prefix of the
/// spool. Batches come back in the order they were handed out (a `FuturesOrdered`), so the
/// tap, the committed position and the gc see them in spool order. Full-policy: when every
/// writer is busy the consumer stops reading the spool until the oldest batch is back (the
/// spool is durable; listeners keep accepting). At most `writers` batches are in flight
/// (`suiftly_ingest_writers_in_flight`), plus the one being built.
#[allow(clippy::too_many_arguments)] // the composition root passes each stage's handle once
pub async fn run_consumer(
    spool: SpoolHandle,
    writers: Vec<Writer>,
    conninfo: String,
    parsers: Vec<(Arc<str>, Parser)>,
    limits: BatchLimits,
    listeners_done: CancellationToken,
    abort: CancellationToken,
    mut tap: Option<Tap>,
) -> Result<ConsumerStats, SpooledError> {
    assert!(!writers.is_empty(), "the consumer needs a writer");
    // The database may be down at start-up too: accepting continues meanwhile, so wait.
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let mut pos = loop {
        match committed_position(&conninfo, &spool, writers[0].consumer()).await {
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
        writers = writers.len(),
        "consumer resuming from the committed spool position"
    );
    gauge!("suiftly_ingest_writers").set(writers.len() as f64);
    // Free writers; with several, they share one gate that orders their commits.
    let mut idle: Vec<Writer> = if writers.len() > 1 {
        let gate = CommitGate::new(pos, GATE_WAIT);
        writers
            .into_iter()
            .map(|w| w.with_gate(gate.clone()))
            .collect()
    } else {
        writers
    };
    let mut in_flight: FuturesOrdered<JoinHandle<Done>> = FuturesOrdered::new();
    let mut reader = spool.reader(Position(pos))?;
    let mut d = Decoder::new(parsers, limits);
    // When the oldest line of the batch being built was read (its age closes the batch).
    let mut first_at: Option<Instant> = None;
    let max_age = limits.max_age;
    // `pos`: committed (every batch before it is back from its writer); `cut`: where the
    // batch being built starts; `end`: how far the spool has been read.
    let mut cut = pos;
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
        // Batches already back (in order): metering and the committed position move on
        // while the spool is still being read.
        while let Some(done) = ready_done(&mut in_flight) {
            pos = committed(done?, pos, &mut tap, &mut idle, &abort).await?;
        }
        if last_gc.elapsed() >= Duration::from_secs(1) {
            spool.gc(Position(pos))?;
            last_gc = Instant::now();
        }
        let deadline = first_at.map(|t| t + max_age);
        let caught_up = end >= spool.durable_end().0;
        let stopping = listeners_done.is_cancelled() && caught_up;
        let due = deadline.is_some_and(|d| Instant::now() >= d);
        if end > cut && (d.full() || due || stopping || caught_up && deadline.is_none()) {
            let Some(mut w) = idle.pop() else {
                // Every writer busy: wait for the oldest batch (full-policy above).
                let done = next_done(&mut in_flight, &abort).await?;
                pos = committed(done, pos, &mut tap, &mut idle, &abort).await?;
                continue;
            };
            first_at = None;
            let mut batch = d.take();
            batch.spool = Some((cut, end));
            cut = end;
            let abort = abort.clone();
            in_flight.push_back(tokio::spawn(async move {
                let outcome = w.write_with_retry(&batch, &abort).await;
                Done {
                    writer: w,
                    batch,
                    outcome,
                }
            }));
            gauge!("suiftly_ingest_writers_in_flight").set(in_flight.len() as f64);
            continue;
        }
        if stopping && end == cut && in_flight.is_empty() {
            break;
        }
        if caught_up {
            // Idle: free consumed segments (a full spool waits on this), then wait for more
            // durable data, the batch deadline, a batch back from a writer, or the stop.
            if last_gc.elapsed() >= Duration::from_millis(200) {
                spool.gc(Position(pos))?;
                last_gc = Instant::now();
            }
            let soon = Instant::now() + Duration::from_millis(5);
            let wake = deadline.unwrap_or(soon).min(soon);
            tokio::select! {
                _ = abort.cancelled() => return Err(SpooledError::WriterAborted),
                _ = tokio::time::sleep_until(wake) => {}
                done = next_done(&mut in_flight, &abort), if !in_flight.is_empty() => {
                    pos = committed(done?, pos, &mut tap, &mut idle, &abort).await?;
                }
            }
        }
    }
    spool.gc(Position(pos))?;
    let mut stats = WriterStats::default();
    for w in &idle {
        stats.add(&w.stats);
    }
    info!(position = pos, ?stats, "consumer stopped");
    Ok(ConsumerStats {
        writer: stats,
        decoded: d.stats().to_vec(),
    })
}

/// A batch is back from its writer: hands its rows to metering and returns the new committed
/// position (the batch's end); the writer is free again.
async fn committed(
    done: Done,
    pos: u64,
    tap: &mut Option<Tap>,
    idle: &mut Vec<Writer>,
    abort: &CancellationToken,
) -> Result<u64, SpooledError> {
    let Done {
        writer,
        batch,
        outcome,
    } = done;
    let (start, end) = batch.spool.expect("the consumer's batches are spooled");
    debug_assert_eq!(start, pos, "batches come back in spool order");
    let refused = match outcome {
        WriteOutcome::Committed { refused } => refused,
        WriteOutcome::Aborted => return Err(SpooledError::WriterAborted),
        WriteOutcome::PositionConflict => return Err(SpooledError::PositionConflict { start }),
    };
    idle.push(writer);
    if let Some(t) = tap {
        let c = Committed {
            rows: without_rows(&batch.rows, &refused),
            start,
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
            *tap = None;
        }
    }
    Ok(end)
}
