//! The async shell: the lease task, the cycle loop, `LISTEN/NOTIFY` triggers, per-task status.
//!
//! ```text
//!   lease task ──watch<Option<Fence>>──▶ cycle loop ◀──mpsc<Trigger> (cap 64)── LISTEN task
//!   (renew every renew_interval,            │                                   admin trigger
//!    release on stop)                       ├─ settle   (pending intents, same nonce)
//!                                           ├─ bill     (bill::bill)
//!                                           ├─ vault    (slot: issue 12)
//!                                           ├─ partitions (slot: the binary's upkeep)
//!                                           └─ housekeeping
//! ```
//!
//! Channels: the trigger channel is bounded (64) with full-policy **drop the new trigger**: a
//! full channel already holds triggers that will run a cycle, and the periodic cycle is the
//! backstop, so nothing is lost but a redundant wake-up (counted). The leader state is a
//! `watch` (latest value wins).
//!
//! Every step is idempotent whoever runs it, so two leaders for a moment (a lease that expired
//! while its holder was busy) cost nothing; and every leader-only write is fenced.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use deadpool_postgres::Pool;
use futures_util::StreamExt;
use serde::Serialize;
use serde_json::{Value, json};
use suiftly_billing::Escrow;
use tokio::sync::{mpsc, watch};
use tokio_postgres::{AsyncMessage, NoTls};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::bill::{self, BillingSettings, Ctx};
use crate::clock::ManagerClock;
use crate::lease::{self, Fence, LeaseState};

/// The channel the API notifies (`pg_notify('suiftly_manager', json)`).
pub const CHANNEL: &str = "suiftly_manager";

/// Where billing's finalization watermark comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatermarkSource {
    /// `aggregate_state.settled_before` (the default): a month is finalized once metering has
    /// settled every minute of it.
    Metering,
    /// The manager's clock minus `lateness`: deployments without metering, and tests that jump
    /// the clock past traffic that has already settled.
    Clock { lateness: TimeDelta },
}

#[derive(Debug, Clone)]
pub struct ManagerConfig {
    pub cycle_interval: Duration,
    pub lease: Duration,
    pub renew_interval: Duration,
    pub watermark: WatermarkSource,
    pub billing: BillingSettings,
    /// A pending intent younger than this may still be in the hands of a live request.
    pub pending_intent_age: TimeDelta,
    /// Completed idempotency keys are kept this long.
    pub idempotency_retention: TimeDelta,
    /// Triggers arriving within this window are served by one cycle.
    pub trigger_debounce: Duration,
    pub production: bool,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        ManagerConfig {
            cycle_interval: Duration::from_secs(300),
            lease: Duration::from_secs(10),
            renew_interval: Duration::from_secs(2),
            watermark: WatermarkSource::Metering,
            billing: BillingSettings::default(),
            pending_intent_age: TimeDelta::seconds(30),
            idempotency_retention: TimeDelta::days(30),
            trigger_debounce: Duration::from_millis(100),
            production: false,
        }
    }
}

/// Which customers a cycle looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    All,
    /// After a notification: bill only these (the periodic cycle covers everyone).
    Customers(BTreeSet<i32>),
}

impl Scope {
    fn merge(self, other: Scope) -> Scope {
        match (self, other) {
            (Scope::Customers(mut a), Scope::Customers(b)) => {
                a.extend(b);
                Scope::Customers(a)
            }
            _ => Scope::All,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    pub scope: Scope,
    pub reason: String,
}

/// What a task sees.
pub struct TaskCtx<'a> {
    pub pool: &'a Pool,
    pub escrow: &'a dyn Escrow,
    pub fence: &'a Fence,
    pub now: DateTime<Utc>,
    pub watermark: Option<DateTime<Utc>>,
    pub scope: &'a Scope,
    pub cancel: &'a CancellationToken,
    pub config: &'a ManagerConfig,
}

pub type TaskFuture<'a> = Pin<Box<dyn Future<Output = Result<Value, String>> + Send + 'a>>;

/// A step of the cycle. The vault (issue 12) and the raw-log partition upkeep plug in here.
pub trait Task: Send + Sync {
    fn name(&self) -> &'static str;
    /// Whether a notification-triggered (scoped) cycle runs it too.
    fn on_trigger(&self) -> bool {
        false
    }
    fn run<'a>(&'a self, ctx: &'a TaskCtx<'a>) -> TaskFuture<'a>;
}

struct Settle;
impl Task for Settle {
    fn name(&self) -> &'static str {
        "settle"
    }
    fn on_trigger(&self) -> bool {
        true
    }
    fn run<'a>(&'a self, ctx: &'a TaskCtx<'a>) -> TaskFuture<'a> {
        Box::pin(async move {
            let r = bill::settle_pending(&bill_ctx(ctx), ctx.config.pending_intent_age)
                .await
                .map_err(|e| e.to_string())?;
            Ok(serde_json::to_value(r).expect("plain struct"))
        })
    }
}

struct Bill;
impl Task for Bill {
    fn name(&self) -> &'static str {
        "bill"
    }
    fn on_trigger(&self) -> bool {
        true
    }
    fn run<'a>(&'a self, ctx: &'a TaskCtx<'a>) -> TaskFuture<'a> {
        Box::pin(async move {
            let only: Option<Vec<i32>> = match ctx.scope {
                Scope::All => None,
                Scope::Customers(c) => Some(c.iter().copied().collect()),
            };
            let r = bill::bill(&ctx.config.billing, &bill_ctx(ctx), only.as_deref())
                .await
                .map_err(|e| e.to_string())?;
            Ok(serde_json::to_value(r).expect("plain struct"))
        })
    }
}

struct Housekeeping;
impl Task for Housekeeping {
    fn name(&self) -> &'static str {
        "housekeeping"
    }
    fn run<'a>(&'a self, ctx: &'a TaskCtx<'a>) -> TaskFuture<'a> {
        Box::pin(async move {
            let mut client = ctx.pool.get().await.map_err(|e| e.to_string())?;
            let tx = client.transaction().await.map_err(|e| e.to_string())?;
            ctx.fence.check(&tx).await.map_err(|e| e.to_string())?;
            let keep = ctx.config.idempotency_retention.num_milliseconds() as f64;
            let keys = tx
                .execute(
                    "DELETE FROM api_idempotency
                     WHERE completed_at < now() - $1 * interval '1 millisecond'",
                    &[&keep],
                )
                .await
                .map_err(|e| e.to_string())?;
            tx.commit().await.map_err(|e| e.to_string())?;
            Ok(json!({ "idempotency_keys_deleted": keys }))
        })
    }
}

fn bill_ctx<'a>(ctx: &'a TaskCtx<'a>) -> Ctx<'a> {
    Ctx {
        pool: ctx.pool,
        escrow: ctx.escrow,
        fence: ctx.fence,
        now: ctx.now,
        watermark: ctx.watermark,
        cancel: ctx.cancel,
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TaskStatus {
    pub last_started: Option<DateTime<Utc>>,
    pub last_finished: Option<DateTime<Utc>>,
    pub last_duration_ms: Option<u64>,
    pub last_error: Option<String>,
    pub last_report: Option<Value>,
    pub runs: u64,
    pub failures: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Status {
    pub holder: String,
    pub leader: bool,
    pub epoch: Option<i64>,
    /// The epoch and holder of the lease row the last time we looked.
    pub lease_epoch: Option<i64>,
    pub lease_holder: Option<String>,
    pub last_lease_error: Option<String>,
    pub cycles: u64,
    pub last_cycle_started: Option<DateTime<Utc>>,
    pub last_cycle_reason: Option<String>,
    pub tasks: BTreeMap<&'static str, TaskStatus>,
}

struct Shared {
    config: ManagerConfig,
    pool: Pool,
    escrow: Arc<dyn Escrow>,
    clock: ManagerClock,
    holder: String,
    status: Mutex<Status>,
    triggers: mpsc::Sender<Trigger>,
    leader: watch::Receiver<Option<Fence>>,
}

/// Handle for the admin endpoint and the composition root (cheap to clone).
#[derive(Clone)]
pub struct ManagerHandle(Arc<Shared>);

impl ManagerHandle {
    pub fn status(&self) -> Status {
        self.0.status.lock().expect("status lock").clone()
    }

    pub fn clock(&self) -> &ManagerClock {
        &self.0.clock
    }

    pub fn pool(&self) -> &Pool {
        &self.0.pool
    }

    pub fn production(&self) -> bool {
        self.0.config.production
    }

    /// The current term, if this process leads.
    pub fn fence(&self) -> Option<Fence> {
        self.0.leader.borrow().clone()
    }

    /// Asks for a cycle (dropped, and counted, when triggers are already queued).
    pub fn trigger(&self, scope: Scope, reason: &str) -> bool {
        let ok = self
            .0
            .triggers
            .try_send(Trigger {
                scope,
                reason: reason.to_string(),
            })
            .is_ok();
        if !ok {
            metrics::counter!("suiftly_manager_triggers_dropped_total").increment(1);
        }
        ok
    }

    /// Waits until this process leads (tests and tools).
    pub async fn wait_leader(&self, timeout: Duration) -> Option<Fence> {
        let mut rx = self.0.leader.clone();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(f) = rx.borrow_and_update().clone() {
                return Some(f);
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                return None;
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
}

/// Builds the manager. `tasks_between` are run after `bill` and before `housekeeping`, in
/// order (the vault, the partition upkeep). Returns the handle and the future to spawn; the
/// future ends after `shutdown` fires: the cycle in progress finishes its batch, then the lease
/// is released.
pub fn start(
    config: ManagerConfig,
    pool: Pool,
    escrow: Arc<dyn Escrow>,
    listen_conninfo: String,
    tasks_between: Vec<Box<dyn Task>>,
    shutdown: CancellationToken,
) -> (
    ManagerHandle,
    impl Future<Output = Result<(), ManagerError>>,
) {
    let (trig_tx, trig_rx) = mpsc::channel(64);
    let (leader_tx, leader_rx) = watch::channel(None);
    let holder = lease::holder_id();
    let shared = Arc::new(Shared {
        clock: ManagerClock::new(config.production),
        config,
        pool,
        escrow,
        holder: holder.clone(),
        status: Mutex::new(Status {
            holder,
            ..Status::default()
        }),
        triggers: trig_tx,
        leader: leader_rx,
    });
    let mut tasks: Vec<Box<dyn Task>> = vec![Box::new(Settle), Box::new(Bill)];
    tasks.extend(tasks_between);
    tasks.push(Box::new(Housekeeping));
    let handle = ManagerHandle(shared.clone());
    let fut = run(shared, tasks, trig_rx, leader_tx, listen_conninfo, shutdown);
    (handle, fut)
}

async fn run(
    shared: Arc<Shared>,
    tasks: Vec<Box<dyn Task>>,
    mut triggers: mpsc::Receiver<Trigger>,
    leader_tx: watch::Sender<Option<Fence>>,
    listen_conninfo: String,
    shutdown: CancellationToken,
) -> Result<(), ManagerError> {
    // One task: the lease, the listener and the cycle loop are polled together, so dropping
    // this future (a crash, in tests) stops all three, and a stop is ordered: the cycle loop
    // ends first, then the listener, then the lease is released.
    let stop_lease = CancellationToken::new();
    let stop_listen = CancellationToken::new();
    let lease = lease_loop(shared.clone(), leader_tx, stop_lease.clone());
    let listen = listen_loop(
        listen_conninfo,
        shared.triggers.clone(),
        stop_listen.clone(),
    );
    let cycles = async {
        cycle_loop(&shared, &tasks, &mut triggers, &shutdown).await;
        info!("manager stopping: cycle loop ended");
        stop_listen.cancel();
        stop_lease.cancel();
    };
    tokio::join!(lease, listen, cycles);
    Ok(())
}

async fn cycle_loop(
    shared: &Shared,
    tasks: &[Box<dyn Task>],
    triggers: &mut mpsc::Receiver<Trigger>,
    shutdown: &CancellationToken,
) {
    let mut leader = shared.leader.clone();
    let mut next_full = tokio::time::Instant::now();
    loop {
        let is_leader = leader.borrow_and_update().is_some();
        let scope = tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = leader.changed() => {
                // A new term starts with a full cycle (pending intents of the old leader).
                if leader.borrow().is_some() && !is_leader {
                    next_full = tokio::time::Instant::now();
                }
                continue;
            }
            _ = tokio::time::sleep_until(next_full), if is_leader => {
                Trigger { scope: Scope::All, reason: "periodic".into() }
            }
            Some(t) = triggers.recv() => {
                if !is_leader {
                    continue;
                }
                // Serve the triggers that arrive together with one cycle.
                let mut t = t;
                let until = tokio::time::Instant::now() + shared.config.trigger_debounce;
                while let Ok(Some(more)) = tokio::time::timeout_at(until, triggers.recv()).await {
                    t.scope = t.scope.merge(more.scope);
                    t.reason = format!("{}, {}", t.reason, more.reason);
                }
                t
            }
        };
        let Some(fence) = leader.borrow().clone() else {
            continue;
        };
        let full = scope.scope == Scope::All;
        run_cycle(shared, tasks, &fence, &scope, shutdown).await;
        if full {
            next_full = tokio::time::Instant::now() + shared.config.cycle_interval;
        }
    }
}

async fn run_cycle(
    shared: &Shared,
    tasks: &[Box<dyn Task>],
    fence: &Fence,
    trigger: &Trigger,
    cancel: &CancellationToken,
) {
    let cycle_started = Utc::now();
    {
        let mut st = shared.status.lock().expect("status lock");
        st.cycles += 1;
        st.last_cycle_started = Some(cycle_started);
        st.last_cycle_reason = Some(trigger.reason.clone());
    }
    // The clock and the watermark are read once per cycle.
    let (now, watermark) = match prepare(shared).await {
        Ok(v) => v,
        Err(e) => {
            error!(error = %e, "manager cycle: cannot read the clock or the watermark");
            return;
        }
    };
    debug!(epoch = fence.epoch, %now, ?watermark, reason = %trigger.reason, "manager cycle");
    let ctx = TaskCtx {
        pool: &shared.pool,
        escrow: shared.escrow.as_ref(),
        fence,
        now,
        watermark,
        scope: &trigger.scope,
        cancel,
        config: &shared.config,
    };
    for task in tasks {
        if trigger.scope != Scope::All && !task.on_trigger() {
            continue;
        }
        if cancel.is_cancelled() {
            break;
        }
        let name = task.name();
        let started = Instant::now();
        shared
            .status
            .lock()
            .expect("status lock")
            .tasks
            .entry(name)
            .or_default()
            .last_started = Some(Utc::now());
        let r = task.run(&ctx).await;
        let elapsed = started.elapsed();
        metrics::histogram!("suiftly_manager_task_seconds", "task" => name)
            .record(elapsed.as_secs_f64());
        let mut st = shared.status.lock().expect("status lock");
        let ts = st.tasks.entry(name).or_default();
        ts.runs += 1;
        ts.last_finished = Some(Utc::now());
        ts.last_duration_ms = Some(elapsed.as_millis() as u64);
        match r {
            Ok(report) => {
                ts.last_error = None;
                ts.last_report = Some(report);
            }
            Err(e) => {
                ts.failures += 1;
                metrics::counter!("suiftly_manager_task_failures_total", "task" => name)
                    .increment(1);
                warn!(task = name, error = %e, "manager task failed");
                ts.last_error = Some(e);
            }
        }
    }
}

async fn prepare(shared: &Shared) -> Result<(DateTime<Utc>, Option<DateTime<Utc>>), String> {
    let client = shared.pool.get().await.map_err(|e| e.to_string())?;
    shared
        .clock
        .refresh(&**client)
        .await
        .map_err(|e| e.to_string())?;
    let now = shared.clock.now();
    let watermark = match shared.config.watermark {
        WatermarkSource::Metering => bill::metering_watermark(&**client)
            .await
            .map_err(|e| e.to_string())?,
        WatermarkSource::Clock { lateness } => Some(now - lateness),
    };
    Ok((now, watermark))
}

async fn lease_loop(
    shared: Arc<Shared>,
    leader_tx: watch::Sender<Option<Fence>>,
    stop: CancellationToken,
) {
    let mut current: Option<Fence> = None;
    // Our own view of the lease's end: if renewals keep failing (the database is unreachable),
    // we stop acting before the database would let another process take over.
    let mut valid_until = Instant::now();
    loop {
        let attempt_started = Instant::now();
        let r = match shared.pool.get().await {
            Ok(c) => lease::try_acquire(&**c, &shared.holder, shared.config.lease)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let mut st_update: Option<(Option<i64>, Option<String>, Option<String>)> = None;
        match r {
            Ok(LeaseState::Leader { epoch, new_term }) => {
                valid_until = attempt_started + shared.config.lease;
                if new_term || current.as_ref().map(|f| f.epoch) != Some(epoch) {
                    info!(epoch, holder = %shared.holder, "this process is now the manager leader");
                    metrics::gauge!("suiftly_manager_epoch").set(epoch as f64);
                }
                let fence = Fence {
                    epoch,
                    holder: shared.holder.clone(),
                };
                if current.as_ref() != Some(&fence) {
                    current = Some(fence.clone());
                    let _ = leader_tx.send(Some(fence));
                }
                st_update = Some((Some(epoch), Some(shared.holder.clone()), None));
            }
            Ok(LeaseState::Standby { epoch, holder }) => {
                if current.take().is_some() {
                    warn!(epoch, ?holder, "lost the manager lease to another process");
                    let _ = leader_tx.send(None);
                }
                st_update = Some((Some(epoch), holder, None));
            }
            Err(e) => {
                warn!(error = %e, "manager lease: cannot reach the database");
                if current.is_some() && Instant::now() >= valid_until {
                    current = None;
                    let _ = leader_tx.send(None);
                    warn!("manager lease: expired without renewal, stepping down");
                }
                let mut st = shared.status.lock().expect("status lock");
                st.last_lease_error = Some(e);
            }
        }
        if let Some((epoch, holder, err)) = st_update {
            let mut st = shared.status.lock().expect("status lock");
            st.lease_epoch = epoch;
            st.lease_holder = holder;
            st.last_lease_error = err;
            st.leader = current.is_some();
            st.epoch = current.as_ref().map(|f| f.epoch);
        } else {
            let mut st = shared.status.lock().expect("status lock");
            st.leader = current.is_some();
            st.epoch = current.as_ref().map(|f| f.epoch);
        }
        metrics::gauge!("suiftly_manager_leader").set(if current.is_some() { 1.0 } else { 0.0 });
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(shared.config.renew_interval) => {}
        }
    }
    if let Some(f) = current {
        let _ = leader_tx.send(None);
        match shared.pool.get().await {
            Ok(c) => match lease::release(&**c, &f).await {
                Ok(true) => info!(epoch = f.epoch, "manager lease released"),
                Ok(false) => warn!(
                    epoch = f.epoch,
                    "manager lease was no longer ours at release"
                ),
                Err(e) => {
                    warn!(error = %e, "manager lease: release failed (it expires on its own)")
                }
            },
            Err(e) => warn!(error = %e, "manager lease: release failed (it expires on its own)"),
        }
        let mut st = shared.status.lock().expect("status lock");
        st.leader = false;
        st.epoch = None;
    }
}

/// Parses a notification payload: `{"event": "...", "customer_id": N}`; anything else asks for
/// a full cycle.
pub fn parse_notification(payload: &str) -> Trigger {
    let v: Value = serde_json::from_str(payload).unwrap_or(Value::Null);
    let event = v["event"].as_str().unwrap_or("unknown").to_string();
    match v["customer_id"]
        .as_i64()
        .and_then(|c| i32::try_from(c).ok())
    {
        Some(c) => Trigger {
            scope: Scope::Customers([c].into()),
            reason: format!("notify:{event}"),
        },
        None => Trigger {
            scope: Scope::All,
            reason: format!("notify:{event}"),
        },
    }
}

async fn listen_loop(conninfo: String, triggers: mpsc::Sender<Trigger>, stop: CancellationToken) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let connected = tokio_postgres::connect(&conninfo, NoTls).await;
        match connected {
            Ok((client, mut conn)) => {
                let (ntx, mut nrx) = mpsc::unbounded_channel::<AsyncMessage>();
                let driver = tokio::spawn(async move {
                    let mut stream = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
                    while let Some(m) = stream.next().await {
                        match m {
                            Ok(msg) => {
                                if ntx.send(msg).is_err() {
                                    break;
                                }
                            }
                            Err(e) => {
                                debug!(error = %e, "manager listen connection ended");
                                break;
                            }
                        }
                    }
                });
                if let Err(e) = client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
                    warn!(error = %e, "manager: LISTEN failed");
                } else {
                    backoff = Duration::from_millis(200);
                    // Notifications sent while we were not listening are lost: catch up.
                    let _ = triggers.try_send(Trigger {
                        scope: Scope::All,
                        reason: "listen (re)connected".into(),
                    });
                    loop {
                        tokio::select! {
                            _ = stop.cancelled() => { driver.abort(); return; }
                            m = nrx.recv() => match m {
                                Some(AsyncMessage::Notification(n)) => {
                                    let t = parse_notification(n.payload());
                                    if triggers.try_send(t).is_err() {
                                        metrics::counter!("suiftly_manager_triggers_dropped_total").increment(1);
                                    }
                                }
                                Some(_) => {}
                                None => break,
                            }
                        }
                    }
                }
                driver.abort();
            }
            Err(e) => warn!(error = %e, "manager: cannot connect for LISTEN"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_scope_the_cycle() {
        let t = parse_notification(r#"{"event":"deposit","customer_id":42}"#);
        assert_eq!(t.scope, Scope::Customers([42].into()));
        assert_eq!(t.reason, "notify:deposit");
        assert_eq!(parse_notification("garbage").scope, Scope::All);
        let a = Scope::Customers([1].into()).merge(Scope::Customers([2].into()));
        assert_eq!(a, Scope::Customers([1, 2].into()));
        assert_eq!(a.merge(Scope::All), Scope::All);
    }
}
