//! The async shell around [`WindowState`]: replay after a restart, then committed batches from
//! the COPY consumer; a settlement tick; the hand-off to downstream stages.
//!
//! Channels:
//! - input (`mpsc`, bounded, from the COPY consumer): full-policy **block** — the consumer
//!   waits (the spool absorbs the backlog); if this task is gone the consumer keeps storing;
//! - output ([`Aggregator::subscribe`], `broadcast`, bounded): full-policy **drop oldest for
//!   the slow subscriber** — settlement never waits for billing or the vault. A subscriber that
//!   falls behind receives `RecvError::Lagged(n)` and must re-read `usage_records` (the
//!   durable truth: every settled window is there before its message is sent).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::{counter, gauge, histogram};
pub use suiftly_model::SettledWindow;
use suiftly_model::time::now_us;
use suiftly_model::{Backoff, Committed, CommittedSource, SourceError};
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::partial::{PartialAggregator, PartialError};
use crate::settle::{self, Outcome, SettleError};
use crate::window::{LiveRows, Persisted, Settlement, US_PER_MIN, WindowConfig, WindowState};

#[derive(Debug, thiserror::Error)]
pub enum AggregateError {
    #[error(transparent)]
    Partial(#[from] PartialError),
    #[error(transparent)]
    Settle(#[from] SettleError),
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("recovery input: {0}")]
    Recovery(SourceError),
    #[error("stopped before the settlement committed")]
    Aborted,
}

#[derive(Clone, Debug)]
pub struct AggregatorConfig {
    /// The ingestor this aggregator meters (`[ingest] id`): its state is that ingestor's
    /// `aggregate_ingestors` row; one aggregator per ingestor.
    pub ingestor: String,
    pub window: WindowConfig,
    pub settle_interval: Duration,
    pub subscriber_capacity: usize,
    pub max_backoff: Duration,
}

impl Default for AggregatorConfig {
    fn default() -> Self {
        Self {
            ingestor: settle::DEFAULT_INGESTOR.to_owned(),
            window: WindowConfig::default(),
            settle_interval: Duration::from_secs(1),
            subscriber_capacity: 64,
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// Cheap handle shared with the SQL layer and subscribers.
#[derive(Clone)]
pub struct Aggregator {
    state: Arc<Mutex<WindowState>>,
    /// The settlement being committed: still shown by [`Aggregator::live`] until the commit
    /// returns, so a minute never disappears from "live + settled" while it moves.
    inflight: Arc<Mutex<Option<Arc<Settlement>>>>,
    /// What the database holds (the last committed settlement's positions).
    committed: Arc<Mutex<Persisted>>,
    settled: broadcast::Sender<Arc<SettledWindow>>,
    /// Bumped whenever the unsettled state changes (a batch applied, a settlement taken or
    /// committed): the live tail polls it instead of copying the windows when nothing moved.
    generation: Arc<AtomicU64>,
}

impl Aggregator {
    /// Everything not yet settled (open minutes and pending late deltas).
    ///
    /// Not a snapshot across tables: a query that also reads the settled tables while a
    /// settlement commits may count the moving minutes twice for that instant.
    pub fn live(&self) -> LiveRows {
        let st = self.lock();
        let (mut cust, mut infra) = st.live();
        // Read under the state lock: a settlement moves rows from the windows to in flight
        // while holding it.
        if let Some(s) = &*self.inflight.lock().expect("inflight lock poisoned") {
            cust.extend(s.cust.iter().copied());
            infra.extend(s.infra.iter().copied());
        }
        (cust, infra)
    }

    /// The unsettled part as customers see it, in one step: open minutes and pending late
    /// deltas, plus the settlement being committed, each tagged with its sequence number
    /// (see [`LiveState::rows_beyond`] for combining it with the settled tables).
    pub fn live_state(&self) -> crate::live::LiveState {
        let st = self.lock();
        let (cust, _) = st.live();
        let inflight = self
            .inflight
            .lock()
            .expect("inflight lock poisoned")
            .as_ref()
            .map(|s| {
                (
                    s.next.settlement_seq,
                    crate::live::customer_minutes(&s.cust),
                )
            });
        // Under the state lock the committed seq is the inflight one's predecessor, or the
        // state's own when nothing is in flight.
        let committed = *self.committed.lock().expect("committed lock poisoned");
        crate::live::LiveState {
            committed_seq: committed.settlement_seq,
            settled_before: committed.settled_before,
            rows: crate::live::customer_minutes(&cust),
            inflight,
        }
    }

    /// Changes whenever [`Aggregator::live_state`] may have changed.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Positions and boundary of the last committed settlement.
    pub fn persisted(&self) -> Persisted {
        *self.committed.lock().expect("committed lock poisoned")
    }

    pub fn input_position(&self) -> u64 {
        self.lock().input_position()
    }

    /// Settled-window messages from now on (see the module doc for the full-policy).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<SettledWindow>> {
        self.settled.subscribe()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WindowState> {
        self.state.lock().expect("window state lock poisoned")
    }
}

/// Where the aggregator resumes: its persisted state, and the already committed batches to
/// re-read before taking new input.
pub struct Recovery {
    pub persisted: Persisted,
    /// Re-read `[persisted.restart_position, replay_to)` before taking input.
    pub replay_to: u64,
    /// The re-read input (the binary passes the spool, parsed as the consumer parsed it);
    /// `None` when there is nothing to re-read.
    pub replay: Option<Box<dyn CommittedSource>>,
}

/// Loads (or creates) ingestor `ingestor`'s aggregator state. `copy_position` is its COPY
/// consumer's committed position: an ingestor never metered before starts metering there.
pub async fn load_state(
    conninfo: &str,
    ingestor: &str,
    copy_position: u64,
    cfg: &WindowConfig,
) -> Result<Persisted, AggregateError> {
    let client = settle::connect(conninfo).await?;
    let now = now_us();
    let settled_before = (now - cfg.allowed_lateness_us).div_euclid(US_PER_MIN);
    let (p, created) =
        settle::load_or_init(&client, ingestor, copy_position, settled_before).await?;
    if created {
        info!(
            position = copy_position,
            "metering starts at the current ingest position"
        );
    }
    Ok(p)
}

/// Creates the handle and the task future. The task ends when `input` is closed (after the
/// COPY consumer stopped) with a final settlement of what is due, or when `abort` fires.
pub fn start(
    cfg: AggregatorConfig,
    conninfo: String,
    recovery: Recovery,
    input: mpsc::Receiver<Committed>,
    caught_up: Arc<dyn Fn(u64) -> bool + Send + Sync>,
    abort: CancellationToken,
) -> (
    Aggregator,
    impl std::future::Future<Output = Result<(), AggregateError>>,
) {
    let state = Arc::new(Mutex::new(WindowState::restore(
        cfg.window,
        recovery.persisted,
    )));
    let (settled, _) = broadcast::channel(cfg.subscriber_capacity.max(1));
    let handle = Aggregator {
        state,
        inflight: Arc::default(),
        committed: Arc::new(Mutex::new(recovery.persisted)),
        settled,
        generation: Arc::default(),
    };
    let task = run(
        handle.clone(),
        cfg,
        conninfo,
        recovery,
        input,
        caught_up,
        abort,
    );
    (handle, task)
}

async fn apply(
    agg: &Aggregator,
    pa: &PartialAggregator,
    c: &Committed,
) -> Result<(), AggregateError> {
    let started = std::time::Instant::now();
    let p = pa.partial(&c.rows).await?;
    let st = agg.lock().apply(&p, c.start, c.end);
    agg.generation.fetch_add(1, Ordering::AcqRel);
    histogram!("suiftly_aggregate_batch_seconds").record(started.elapsed().as_secs_f64());
    counter!("suiftly_aggregate_rows_total").increment(c.rows.num_rows() as u64);
    if st.late > 0 {
        counter!("suiftly_aggregate_late_requests_total").increment(st.late as u64);
    }
    if st.skipped > 0 {
        counter!("suiftly_aggregate_replay_skipped_requests_total").increment(st.skipped as u64);
    }
    Ok(())
}

async fn run(
    agg: Aggregator,
    cfg: AggregatorConfig,
    conninfo: String,
    recovery: Recovery,
    mut input: mpsc::Receiver<Committed>,
    caught_up: Arc<dyn Fn(u64) -> bool + Send + Sync>,
    abort: CancellationToken,
) -> Result<(), AggregateError> {
    let pa = PartialAggregator::new();
    let mut client: Option<tokio_postgres::Client> = None;
    // Replay what the last run had not settled. Batches are cut at applied_through so that
    // the skip rule is decided per batch (see `window`).
    if let Some(mut replay) = recovery.replay {
        let at = recovery.persisted.applied_through;
        let started = Instant::now();
        let mut rows = 0usize;
        loop {
            if abort.is_cancelled() {
                return Err(AggregateError::Aborted);
            }
            let limit = if replay.position() < at {
                at.min(recovery.replay_to)
            } else {
                recovery.replay_to
            };
            let next = tokio::task::block_in_place(|| replay.next_batch(limit))
                .map_err(AggregateError::Recovery)?;
            let Some(c) = next else {
                if limit == recovery.replay_to {
                    break;
                }
                continue;
            };
            rows += c.rows.num_rows();
            apply(&agg, &pa, &c).await?;
        }
        info!(
            from = recovery.persisted.restart_position,
            to = recovery.replay_to,
            rows,
            ms = started.elapsed().as_millis() as u64,
            "metering: replayed the unsettled part of the spool"
        );
    }
    let mut tick = tokio::time::interval(cfg.settle_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_purge = Instant::now() - Duration::from_secs(3600);
    loop {
        tokio::select! {
            biased;
            _ = abort.cancelled() => return Err(AggregateError::Aborted),
            _ = tick.tick() => {
                settle_due(&agg, &cfg, &conninfo, &mut client, &caught_up, &abort).await?;
                if last_purge.elapsed() >= Duration::from_secs(600)
                    && let Some(c) = &client {
                    match settle::purge(c).await {
                        Ok(n) => info!(rows = n, "aggregates past retention removed"),
                        Err(e) => warn!(error = %e, "retention purge failed; retrying later"),
                    }
                    last_purge = Instant::now();
                }
            }
            c = input.recv() => match c {
                Some(c) => apply(&agg, &pa, &c).await?,
                None => break,
            },
        }
        let st = agg.lock();
        gauge!("suiftly_aggregate_open_minutes").set(st.open_minutes() as f64);
    }
    // Input closed (ordered shutdown): settle what is due; open minutes are recovered from
    // the spool at the next start.
    settle_due(&agg, &cfg, &conninfo, &mut client, &caught_up, &abort).await?;
    info!(persisted = ?agg.persisted(), "aggregator stopped");
    Ok(())
}

/// Takes what is due and commits it, retrying the same settlement until it commits (or
/// `abort`), then notifies subscribers.
async fn settle_due(
    agg: &Aggregator,
    cfg: &AggregatorConfig,
    conninfo: &str,
    client: &mut Option<tokio_postgres::Client>,
    caught_up: &Arc<dyn Fn(u64) -> bool + Send + Sync>,
    abort: &CancellationToken,
) -> Result<(), AggregateError> {
    let now = now_us();
    let s = {
        let mut st = agg.lock();
        let up = caught_up(st.input_position());
        let w = st.watermark(now, up);
        if w != i64::MIN {
            gauge!("suiftly_aggregate_watermark_lag_seconds")
                .set(now.saturating_sub(w) as f64 / 1e6);
        }
        let Some(s) = st.take_settlement(now, up) else {
            return Ok(());
        };
        // Still under the state lock: a reader of `live()` sees the moving rows either in the
        // windows or in flight, never in neither.
        let s = Arc::new(s);
        *agg.inflight.lock().expect("inflight lock poisoned") = Some(s.clone());
        s
    };
    agg.generation.fetch_add(1, Ordering::AcqRel);
    let mut backoff = Backoff::new(Duration::from_millis(100), cfg.max_backoff);
    let outcome = loop {
        let started = std::time::Instant::now();
        let r = match client {
            Some(c) => settle::commit(c, &cfg.ingestor, &s).await,
            None => match settle::connect(conninfo).await {
                Ok(c) => settle::commit(client.insert(c), &cfg.ingestor, &s).await,
                Err(e) => Err(e.into()),
            },
        };
        match r {
            Ok(o) => {
                histogram!("suiftly_aggregate_settle_seconds")
                    .record(started.elapsed().as_secs_f64());
                gauge!("suiftly_aggregate_degraded").set(0.0);
                break o;
            }
            Err(e @ SettleError::Conflict { .. }) => {
                error!(error = %e, "settlement conflict");
                return Err(e.into());
            }
            Err(e) => {
                let delay = backoff.next_delay();
                warn!(error = %e, backoff_ms = delay.as_millis() as u64, "settlement failed; retrying");
                gauge!("suiftly_aggregate_degraded").set(1.0);
                counter!("suiftly_aggregate_settle_retries_total").increment(1);
                *client = None;
                tokio::select! {
                    _ = abort.cancelled() => return Err(AggregateError::Aborted),
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    };
    {
        // Under the state lock, so `live_state` sees the commit and the end of the in-flight
        // rows together.
        let _st = agg.lock();
        *agg.committed.lock().expect("committed lock poisoned") = s.next;
        *agg.inflight.lock().expect("inflight lock poisoned") = None;
    }
    agg.generation.fetch_add(1, Ordering::AcqRel);
    notify(agg, &s, outcome);
    Ok(())
}

fn notify(agg: &Aggregator, s: &Settlement, o: Outcome) {
    counter!("suiftly_aggregate_settlements_total").increment(1);
    counter!("suiftly_aggregate_settled_groups_total")
        .increment((s.cust.len() + s.infra.len()) as u64);
    gauge!("suiftly_aggregate_settled_before_seconds").set((s.next.settled_before * 60) as f64);
    // Sequence and watermark are the database's (all ingestors'): with one ingestor they are
    // this aggregator's own.
    let msg = SettledWindow {
        seq: o.seq,
        minutes: crate::live::customer_minutes(&s.cust),
        settled_before_us: o.settled_before.1 * US_PER_MIN,
        newly_settled_us: (
            o.settled_before.0 * US_PER_MIN,
            o.settled_before.1 * US_PER_MIN,
        ),
        completed_hours_us: o.completed_hours,
        usage: o.usage,
        late_requests: s.late_requests,
    };
    // No subscriber is fine: the tables are the truth.
    let _ = agg.settled.send(Arc::new(msg));
}
