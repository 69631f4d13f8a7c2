//! The composition root: which stages run, in which order they start, and therefore (reversed)
//! in which order they stop. [`Pipeline::start`] is the one place that wires stages together;
//! `suiftly run`, `suiftly demo` and the in-process tests all call it with sockets they bound
//! themselves ([`Sockets`]).
//!
//! The stage list, in start order (spool on, the default):
//!
//! | stage | tasks | stop |
//! |---|---|---|
//! | `database` | — | stops the embedded PostgreSQL (nothing for `DATABASE_URL`) |
//! | `upkeep` | partition maintenance, kernel-drop sampler, metrics-recorder upkeep | cancel |
//! | `live` | the live tail: aggregator → [`suiftly_api::live::LiveHub`] (with metering) | cancel, after the API and the admin feed |
//! | `pgwire` | operator SQL over the PostgreSQL protocol (when configured) | sessions end |
//! | `manager` | billing cycle and scheduled work under one fenced leader (`[manager] enabled`, on by default); its routes join `admin` | finishes the customer being processed, releases the lease |
//! | `admin` | `GET /health`, `POST /admin/sql`, `GET /internal/live` (API replicas) | graceful: feed streams end, in-flight requests complete |
//! | `api` | the customer API and dashboard (`[api] in_run`, the default) | live streams end, then graceful |
//! | `metrics` | `GET /metrics` (listens last: reaching it means start-up is complete) | graceful |
//! | `aggregator` | metering, the spool gc-floor follower | ends once the consumer closed its input: settles what is due |
//! | `consumer` | spool → COPY (+ position), hands committed batches to the aggregator | told the listeners are done: stores everything durable, then ends |
//! | `spool` | interval fsync, backlog gauges | final sync: everything accepted is durable |
//! | `listeners` | one task per `[[listener]]` | stop reading, drain what the kernel queued (≤ 2 s), append |
//!
//! With `[spool] enabled = false`, `writer` (fed by the listeners over a bounded channel)
//! takes the place of `aggregator`, `consumer` and `spool`.
//!
//! Stopping runs the list backwards and waits for each stage's tasks before the next
//! ([`crate::stage::Stages::stop`]), so the servers have finished before the embedded
//! PostgreSQL stops. A failed listener, consumer or writer stops the process (in that order);
//! a failed aggregator or endpoint is logged with its stage name and the others go on (the
//! consumer keeps storing and metering resumes from its committed position at the next
//! start); either makes the exit status an error.
//!
//! **Adding a stage** (the vault writer): write a function that spawns
//! its tasks on a [`Stage`] (`stages.stage("vault", OnFailure::KeepRunning)`, then
//! `stage.spawn(…)` with `stage.stop_token()`), and push it in [`Pipeline::start`] after the
//! stages it reads from (e.g. after `aggregator`, whose [`Aggregator::subscribe`] it takes) —
//! one entry; it is then stopped before them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use futures_util::future::BoxFuture;
use metrics_exporter_prometheus::PrometheusHandle;
use suiftly_aggregate::service::{self as metering, AggregateError, Aggregator, Recovery};
use suiftly_ingest::db;
use suiftly_ingest::health::Health;
use suiftly_ingest::listener::{self, BoundListener};
use suiftly_ingest::spooled::{self, SpoolHandle};
use suiftly_ingest::writer::{Writer, WriterConfig};
use suiftly_parser::Parser;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::database::Database;
pub use crate::servers::SqlEndpoint;
use crate::servers::{self, install_recorder};
use crate::signals::Signals;
use crate::stage::{OnFailure, ShutdownReport, Stage, StageOutput, Stages};

/// Every socket the pipeline serves, bound before it starts (tests and the demo bind port 0
/// and read the addresses back). The endpoints' TCP sockets are bound but not yet listening:
/// each starts listening when its stage starts, so a connection to `/metrics` succeeds only
/// once start-up (migrations, spool recovery, metering state) is done — the signal the test
/// harness and operators' scripts wait for.
pub struct Sockets {
    /// One per `[[listener]]`, in configuration order (the index is the spool's listener
    /// index).
    pub listeners: Vec<BoundListener>,
    pub pgwire: Option<TcpSocket>,
    pub admin: Option<TcpSocket>,
    pub metrics: Option<TcpSocket>,
    /// The customer API (`[api] in_run`, the single-machine default).
    pub api: Option<TcpSocket>,
}

/// A TCP socket bound to `listen` (not listening yet).
pub fn bind_tcp(listen: &str, what: &str) -> Result<TcpSocket> {
    let addr: SocketAddr = listen
        .parse()
        .with_context(|| format!("{what} {listen:?} is not ip:port"))?;
    let s = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .with_context(|| format!("creating the {what} socket"))?;
    s.set_reuseaddr(true)?;
    s.bind(addr)
        .with_context(|| format!("binding {what} on {addr}"))?;
    Ok(s)
}

fn listen(s: TcpSocket) -> Result<TcpListener> {
    s.listen(1024).context("listen(2)")
}

impl Sockets {
    /// Binds every socket `cfg` names: the listeners, then the endpoints. A listener whose
    /// socket the service manager passed (systemd socket activation, [`crate::activation`])
    /// adopts it instead of binding.
    pub fn bind(cfg: &Config) -> Result<Sockets> {
        let mut passed: Vec<Option<std::os::fd::OwnedFd>> = Vec::new();
        let mut names = Vec::new();
        for (fd, name) in crate::activation::take()? {
            passed.push(Some(fd));
            names.push(name);
        }
        let mut s = Self::listeners_inheriting(cfg, passed, names)?;
        if let Some(l) = &cfg.admin.pgwire_listen {
            s.pgwire = Some(bind_tcp(l, "admin.pgwire_listen")?);
        }
        s.admin = Some(bind_tcp(&cfg.admin.listen, "admin.listen")?);
        s.metrics = Some(bind_tcp(&cfg.metrics.listen, "metrics.listen")?);
        if cfg.api.in_run {
            s.api = Some(bind_tcp(&cfg.api.listen, "api.listen")?);
        }
        Ok(s)
    }

    /// Only the listeners: no endpoints (the demo, tests).
    pub fn listeners(cfg: &Config) -> Result<Sockets> {
        Self::listeners_inheriting(cfg, Vec::new(), Vec::new())
    }

    /// The listeners, adopting the passed sockets (`names[i]` is `passed[i]`'s
    /// `LISTEN_FDNAMES` entry) and binding the rest.
    fn listeners_inheriting(
        cfg: &Config,
        mut passed: Vec<Option<std::os::fd::OwnedFd>>,
        names: Vec<Option<String>>,
    ) -> Result<Sockets> {
        let described: Vec<crate::activation::Passed> = names
            .into_iter()
            .enumerate()
            .map(|(i, name)| crate::activation::Passed {
                fd: crate::activation::LISTEN_FDS_START + i as i32,
                name,
            })
            .collect();
        let wanted: Vec<&str> = cfg.listeners.iter().map(|l| l.name.as_str()).collect();
        let slots = crate::activation::assign(&wanted, &described)?;
        let listeners = cfg
            .listeners
            .iter()
            .zip(slots)
            .map(|(l, slot)| match slot.and_then(|i| passed[i].take()) {
                Some(fd) => listener::inherit::adopt(l, fd),
                None => listener::bind(l),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Sockets {
            listeners,
            pgwire: None,
            admin: None,
            metrics: None,
            api: None,
        })
    }

    /// (listener name, UDP/TCP address, unix path) as bound.
    pub fn addresses(&self) -> Vec<(String, Option<SocketAddr>, Option<PathBuf>)> {
        self.listeners
            .iter()
            .map(|b| {
                (
                    b.name.to_string(),
                    b.local_addr(),
                    b.unix_path().map(|p| p.to_path_buf()),
                )
            })
            .collect()
    }
}

/// Where accepted lines go before the COPY writer: the two modes as one type.
enum Storing {
    /// The disk spool, read by the consumer; metering (optional) replays it after a restart.
    Spooled {
        spool: SpoolHandle,
        metering: Option<Metering>,
    },
    /// Listeners parse and hand batches to the writer over a bounded channel.
    Direct,
}

/// The metering stage, prepared (state loaded, replay range known) but not yet running.
struct Metering {
    handle: Aggregator,
    task: BoxFuture<'static, Result<(), AggregateError>>,
    tap: spooled::Tap,
}

/// The running stages.
pub struct Pipeline {
    stages: Stages,
    abort: CancellationToken,
    /// What `/health` reports.
    pub health: Arc<Health>,
    /// The metering stage's handle (spool on and `[aggregate] enabled`): live windows and
    /// the settled-window subscription later stages take.
    pub aggregator: Option<Aggregator>,
}

impl Pipeline {
    /// Migrates `db`, then starts every stage in order (see the module doc). On an error the
    /// stages already started are stopped again, the database last.
    pub async fn start(
        cfg: &Config,
        db: Database,
        sockets: Sockets,
        recorder: Option<PrometheusHandle>,
    ) -> Result<Pipeline> {
        let mut stages = Stages::default();
        let conninfo = db.conninfo.clone();
        let migrated = db.migrate().await;
        stages.push(database_stage(&stages, db));
        if let Err(e) = migrated {
            stages.stop().await;
            return Err(e);
        }
        let abort = CancellationToken::new();
        match start_stages(cfg, &conninfo, &mut stages, sockets, recorder, &abort).await {
            Ok((health, aggregator)) => Ok(Pipeline {
                stages,
                abort,
                health,
                aggregator,
            }),
            Err(e) => {
                error!(error = %format!("{e:#}"), "start-up failed; stopping what was started");
                stages.stop().await;
                Err(e)
            }
        }
    }

    /// Stage names in start order.
    pub fn stage_names(&self) -> Vec<&'static str> {
        self.stages.names()
    }

    /// Fire to abandon a writer that is still retrying (the second signal): what was not
    /// stored stays in the spool (or is counted lost without it).
    pub fn abort_token(&self) -> CancellationToken {
        self.abort.clone()
    }

    /// Resolves when a stage whose failure stops the process has failed.
    pub fn fatal(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.stages.fatal()
    }

    /// Stops every stage in reverse start order and reports what each did.
    pub async fn stop(self) -> ShutdownReport {
        let report = self.stages.stop().await;
        info!(order = ?report.order, "every stage stopped");
        report
    }
}

/// The database stage: already open and migrated; stopping it stops the embedded cluster.
fn database_stage(stages: &Stages, db: Database) -> Stage {
    let cluster = db.cluster;
    stages
        .stage("database", OnFailure::StopProcess)
        .after_stop(move || async move {
            if let Some(mut c) = cluster {
                tokio::task::spawn_blocking(move || c.stop())
                    .await
                    .context("stopping the embedded postgresql")??;
                info!("embedded postgresql stopped");
            }
            Ok(())
        })
}

/// Every stage after the database, in start order.
async fn start_stages(
    cfg: &Config,
    conninfo: &str,
    stages: &mut Stages,
    sockets: Sockets,
    recorder: Option<PrometheusHandle>,
    abort: &CancellationToken,
) -> Result<(Arc<Health>, Option<Aggregator>)> {
    // upkeep
    let (made, dropped) = db::maintain_once(
        conninfo,
        cfg.retention(),
        cfg.storage.partitions_ahead_hours,
    )
    .await?;
    info!(ensured = made, dropped, "partitions ready");
    let upkeep = stages.stage("upkeep", OnFailure::KeepRunning);
    let (c, retention, ahead) = (
        conninfo.to_owned(),
        cfg.retention(),
        cfg.storage.partitions_ahead_hours,
    );
    let every = cfg.storage.maintenance_interval();
    let stop = upkeep.stop_token();
    upkeep.spawn(async move {
        db::run_maintenance(c, retention, ahead, every, stop).await;
        Ok(StageOutput::Nothing)
    });
    let stop = upkeep.stop_token();
    upkeep.spawn(async move {
        suiftly_ingest::metrics::run_kernel_drop_sampler(Duration::from_secs(5), stop).await;
        Ok(StageOutput::Nothing)
    });
    if let Some(h) = recorder.clone() {
        let stop = upkeep.stop_token();
        upkeep.spawn(async move {
            servers::recorder_upkeep(h, stop).await;
            Ok(StageOutput::Nothing)
        });
    }
    stages.push(upkeep);

    // What the endpoints and the storing stages share.
    let storing = if cfg.spool.enabled {
        let dir = cfg.spool_dir();
        let scfg = cfg.spool.spool_config();
        let spool = tokio::task::block_in_place(|| SpoolHandle::open(&dir, scfg))
            .with_context(|| format!("opening the spool at {}", dir.display()))?;
        let metering = if cfg.aggregate.enabled {
            Some(prepare_metering(cfg, conninfo, &spool, abort).await?)
        } else {
            None
        };
        Storing::Spooled { spool, metering }
    } else {
        Storing::Direct
    };
    let (health, aggregator) = match &storing {
        Storing::Spooled { spool, metering } => (
            spool.health.clone(),
            metering.as_ref().map(|m| m.handle.clone()),
        ),
        Storing::Direct => (Arc::new(Health::default()), None),
    };

    // pgwire, admin, metrics. Everything that needs the database at start-up is done by
    // now; `/metrics` starts listening last, so reaching it means start-up is complete.
    let Sockets {
        listeners,
        pgwire,
        admin,
        metrics,
        api,
    } = sockets;
    // The live tail (issue 13): fed from the aggregator, read by the API stage and by API
    // replicas through the admin endpoint's internal feed. Stopped after both.
    let hub = match &aggregator {
        Some(agg) => {
            let hub = suiftly_api::live::LiveHub::new(cfg.api.live.options());
            let s = stages.stage("live", OnFailure::KeepRunning);
            let (stop, agg, h) = (s.stop_token(), agg.clone(), hub.clone());
            s.spawn(async move {
                crate::live_feed::feed_from_aggregator(agg, h, stop).await;
                Ok(StageOutput::Nothing)
            });
            stages.push(s);
            Some(hub)
        }
        None => None,
    };
    let sql = if admin.is_some() || pgwire.is_some() {
        match suiftly_aggregate::sql::context_with_limits(
            aggregator.clone(),
            conninfo,
            cfg.admin.sql_limits(),
        )
        .await
        {
            Ok(ctx) => Some(Arc::new(SqlEndpoint {
                ctx,
                token: cfg.operator_token(true)?,
                throttle: Default::default(),
            })),
            Err(e) => {
                error!(error = %e, "operator SQL unavailable");
                None
            }
        }
    } else {
        None
    };
    if let Some(l) = pgwire {
        // A configured port that cannot be served is a start-up error, not a warning: the
        // operator asked for it.
        let sql = sql.clone().context("admin.pgwire_listen is set but the operator SQL context could not be built (see the error above)")?;
        suiftly_aggregate::pgwire::prepare_context(&sql.ctx)?;
        let s = stages.stage("pgwire", OnFailure::KeepRunning);
        let (stop, max, l) = (s.stop_token(), cfg.admin.pgwire_max_connections, listen(l)?);
        s.spawn(async move {
            servers::serve_pgwire(l, sql, max, stop).await?;
            Ok(StageOutput::Nothing)
        });
        stages.push(s);
    }
    // The manager (billing, scheduled work): it reads what the storing stages committed, so
    // it needs nothing of them at start; its admin routes join the admin endpoint.
    let manager_routes = if cfg.manager.enabled {
        let (s, routes) = crate::manager_cmd::stage(stages, cfg, conninfo)?;
        stages.push(s);
        Some(routes)
    } else {
        None
    };
    if let Some(l) = admin {
        let s = stages.stage("admin", OnFailure::KeepRunning);
        let (stop, health, l) = (s.stop_token(), health.clone(), listen(l)?);
        let feed = match &hub {
            Some(h) => Some(Arc::new(crate::live_feed::InternalFeed {
                hub: h.clone(),
                token: cfg.operator_token(true)?,
                stop: stop.clone(),
            })),
            None => None,
        };
        s.spawn(async move {
            servers::serve_admin(l, health, sql, manager_routes, feed, stop).await?;
            Ok(StageOutput::Nothing)
        });
        stages.push(s);
    }
    if let Some(l) = api {
        stages.push(api_stage(stages, cfg, conninfo, l, recorder.clone(), hub.clone()).await?);
    }
    if let Some(l) = metrics {
        let h = recorder.context("a metrics socket needs the metrics recorder")?;
        let s = stages.stage("metrics", OnFailure::KeepRunning);
        let (stop, l) = (s.stop_token(), listen(l)?);
        s.spawn(async move {
            servers::serve_metrics(l, h, stop).await?;
            Ok(StageOutput::Nothing)
        });
        stages.push(s);
    }

    // The storing stages, then the listeners that feed them.
    let listener_stage = stages.stage("listeners", OnFailure::StopProcess);
    let shutdown = listener_stage.stop_token();
    match storing {
        Storing::Spooled { spool, metering } => {
            let tap = match metering {
                Some(m) => {
                    stages.push(aggregator_stage(stages, m.handle, m.task, &spool));
                    Some(m.tap)
                }
                None => None,
            };
            stages.push(consumer_stage(stages, cfg, conninfo, &spool, tap, abort)?);
            stages.push(spool_stage(stages, cfg, &spool));
            for (index, b) in listeners.into_iter().enumerate() {
                let run = spooled::run_listener(b, index as u16, spool.clone(), shutdown.clone());
                listener_stage.spawn(async move {
                    let stats = run.await?;
                    Ok(StageOutput::Listener { index, stats })
                });
            }
        }
        Storing::Direct => {
            let (tx, rx) = mpsc::channel(cfg.batch.channel_capacity.max(1));
            let s = stages.stage("writer", OnFailure::StopProcess);
            let w = Writer::new(WriterConfig::new(conninfo))
                .with_health(health.clone())
                .run(rx, abort.clone());
            s.spawn(async move { Ok(StageOutput::Writer(w.await)) });
            stages.push(s);
            for (index, (b, lc)) in listeners.into_iter().zip(&cfg.listeners).enumerate() {
                let parser = Parser::new(lc.source_config()?);
                let run = listener::run(b, parser, cfg.limits(), tx.clone(), shutdown.clone());
                listener_stage.spawn(async move {
                    let stats = run.await?;
                    Ok(StageOutput::Listener { index, stats })
                });
            }
        }
    }
    stages.push(listener_stage);
    Ok((health, aggregator))
}

/// The customer API (and the dashboard) inside this process, with the live tail straight from
/// the aggregator. Stopping it ends open live streams first, then drains requests.
async fn api_stage(
    stages: &Stages,
    cfg: &Config,
    conninfo: &str,
    socket: TcpSocket,
    recorder: Option<PrometheusHandle>,
    hub: Option<Arc<suiftly_api::live::LiveHub>>,
) -> Result<Stage> {
    let render = recorder.map(|h| Arc::new(move || h.render()) as suiftly_api::MetricsRender);
    let api_cfg = crate::api_cmd::api_config(&cfg.api)?;
    let state = crate::api_cmd::build_state(cfg, api_cfg, conninfo, render, hub).await?;
    let l = listen(socket)?;
    let addr = l.local_addr()?;
    info!(%addr, dashboard = state.config.dashboard_dir.is_some(), "customer api at http://{addr}/ (dashboard under /app/)");
    let s = stages.stage("api", OnFailure::KeepRunning);
    let stop = s.stop_token();
    s.spawn(async move {
        suiftly_api::run(l, state, async move { stop.cancelled().await })
            .await
            .context("customer api")?;
        Ok(StageOutput::Nothing)
    });
    Ok(s)
}

/// Each listener's parser, by listener index (the spool records which listener a line came
/// through; the consumer and the aggregator's replay parse it with that listener's settings).
fn parsers(cfg: &Config) -> Result<Vec<(Arc<str>, Parser)>> {
    cfg.listeners
        .iter()
        .map(|l| {
            Ok((
                Arc::<str>::from(l.name.as_str()),
                Parser::new(l.source_config()?),
            ))
        })
        .collect()
}

/// Loads the metering stage's committed state, keeps the spool it still needs and prepares
/// the replay of the unsettled part; the task runs once the stage is pushed.
async fn prepare_metering(
    cfg: &Config,
    conninfo: &str,
    spool: &SpoolHandle,
    abort: &CancellationToken,
) -> Result<Metering> {
    let acfg = cfg.aggregator_config();
    let copy_pos = spooled::committed_position(conninfo, spool).await?;
    let mut persisted = metering::load_state(conninfo, copy_pos, &acfg.window).await?;
    let oldest = spool.oldest_position().0;
    if persisted.restart_position < oldest || persisted.applied_through > copy_pos {
        // Metering was off while the spool was freed (or the spool was replaced): what it did
        // not see cannot be replayed. Resume at the current position; `suiftly audit` shows
        // the gap.
        error!(
            ?persisted,
            copy_pos,
            oldest,
            "metering cannot replay from its committed position; resuming at the current ingest position (run `suiftly audit` to see the gap)"
        );
        persisted = suiftly_aggregate::settle::reset(conninfo, copy_pos, &acfg.window).await?;
    }
    spool.set_gc_floor(persisted.restart_position);
    // The aggregator's recovery input: the spool from its restart position, parsed by the
    // listeners' parsers exactly as the consumer parsed it.
    let replay = if persisted.restart_position < copy_pos {
        let batches = spooled::SpoolBatches::new(
            spool,
            persisted.restart_position,
            parsers(cfg)?,
            cfg.limits(),
        )?;
        Some(Box::new(batches) as Box<dyn suiftly_model::CommittedSource>)
    } else {
        None
    };
    info!(?persisted, replay_to = copy_pos, "metering resumes");
    let (tap, rx) = mpsc::channel(cfg.aggregate.input_capacity);
    let sp = spool.clone();
    let caught_up = Arc::new(move |pos: u64| pos >= sp.durable_end().0);
    let (handle, task) = metering::start(
        acfg,
        conninfo.to_owned(),
        Recovery {
            persisted,
            replay_to: copy_pos,
            replay,
        },
        rx,
        caught_up,
        abort.clone(),
    );
    Ok(Metering {
        handle,
        task: Box::pin(task),
        tap,
    })
}

/// The aggregator and the follower that moves the spool's gc floor after each settlement
/// (the spool keeps what the aggregator would replay after a crash).
fn aggregator_stage(
    stages: &Stages,
    handle: Aggregator,
    task: BoxFuture<'static, Result<(), AggregateError>>,
    spool: &SpoolHandle,
) -> Stage {
    let s = stages.stage("aggregator", OnFailure::KeepRunning);
    s.spawn(async move {
        match task.await {
            Ok(()) => {}
            Err(AggregateError::Aborted) => {
                warn!("aggregator aborted before its last settlement; it resumes from its committed position at the next start")
            }
            Err(e) => return Err(e.into()),
        }
        Ok(StageOutput::Nothing)
    });
    let (mut settled, sp, stop) = (handle.subscribe(), spool.clone(), s.stop_token());
    s.spawn(async move {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                r = settled.recv() => match r {
                    Ok(_) | Err(RecvError::Lagged(_)) => sp.set_gc_floor(handle.persisted().restart_position),
                    Err(RecvError::Closed) => break,
                },
            }
        }
        Ok(StageOutput::Nothing)
    });
    s
}

/// The COPY consumer: its stop token is "the listeners are done and the spool is synced".
fn consumer_stage(
    stages: &Stages,
    cfg: &Config,
    conninfo: &str,
    spool: &SpoolHandle,
    tap: Option<spooled::Tap>,
    abort: &CancellationToken,
) -> Result<Stage> {
    let s = stages.stage("consumer", OnFailure::StopProcess);
    let run = spooled::run_consumer(
        spool.clone(),
        Writer::new(WriterConfig::new(conninfo)).with_health(spool.health.clone()),
        conninfo.to_owned(),
        parsers(cfg)?,
        cfg.limits(),
        s.stop_token(),
        abort.clone(),
        tap,
    );
    let outputs = s.outputs();
    s.spawn(async move {
        let stats = run.await?;
        outputs.record(StageOutput::Decoded(stats.decoded));
        Ok(StageOutput::Writer(stats.writer))
    });
    Ok(s)
}

/// Interval fsyncs while running; on stop, one final sync so everything accepted is durable
/// (and visible to the consumer) before the consumer is told to finish.
fn spool_stage(stages: &Stages, cfg: &Config, spool: &SpoolHandle) -> Stage {
    let s = stages.stage("spool", OnFailure::StopProcess);
    let run = spooled::run_syncer(spool.clone(), cfg.spool.sync_interval(), s.stop_token());
    s.spawn(async move {
        run.await;
        Ok(StageOutput::Nothing)
    });
    let sp = spool.clone();
    s.after_stop(move || async move {
        tokio::task::spawn_blocking(move || sp.sync())
            .await
            .context("final spool sync")??;
        info!("spool synced: the consumer stores what it holds");
        Ok(())
    })
}

/// `suiftly run`: start, wait for SIGTERM/ctrl-c (or a stage failure), stop in order.
pub async fn run_until_signal(cfg: Config) -> Result<()> {
    let mut signals = Signals::new()?;
    // Before anything starts: a weak or exposed operator token is a start-up error.
    cfg.operator_token(true)?;
    let prom = install_recorder()?;
    let db = tokio::task::block_in_place(|| Database::open(&cfg))?;
    let sockets = Sockets::bind(&cfg)?;
    for (name, addr, path) in sockets.addresses() {
        info!(listener = %name, addr = ?addr, path = ?path, "listening");
    }
    let pipeline = Pipeline::start(&cfg, db, sockets, Some(prom)).await?;
    tokio::select! {
        _ = signals.recv() => info!("shutdown requested; signal again to abort uncommitted batches"),
        _ = pipeline.fatal() => error!("a stage failed; shutting down"),
    }
    let abort = pipeline.abort_token();
    let stop = pipeline.stop();
    tokio::pin!(stop);
    let report = loop {
        tokio::select! {
            r = &mut stop => break r,
            _ = signals.recv(), if !abort.is_cancelled() => {
                warn!("second signal: aborting writer retries");
                abort.cancel();
            }
        }
    };
    let writer = report.writer().unwrap_or_default();
    info!(listeners = ?report.listeners(), ?writer, "ingest stopped");
    anyhow::ensure!(
        writer.lost == 0,
        "{} received lines were not committed (aborted)",
        writer.lost
    );
    if !report.failures.is_empty() {
        let all: Vec<String> = report.failures.iter().map(|f| f.to_string()).collect();
        anyhow::bail!("{}", all.join("; "));
    }
    Ok(())
}
