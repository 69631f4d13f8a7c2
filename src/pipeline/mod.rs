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
//! | `ingestor` | holds this ingestor's id lock (`[ingest] id`; a second live process with the id is refused at start) | cancel: the lock is released after every stage that writes has stopped |
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

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use metrics_exporter_prometheus::PrometheusHandle;
use suiftly_aggregate::service::Aggregator;
use suiftly_ingest::db;
use suiftly_ingest::health::Health;
use suiftly_ingest::listener;
use suiftly_ingest::spooled::{self, SpoolHandle};
use suiftly_ingest::writer::Writer;
use suiftly_parser::Parser;
use tokio::net::TcpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::database::Database;
pub use crate::servers::SqlEndpoint;
use crate::servers::{self, install_recorder};
use crate::signals::Signals;
use crate::stage::{OnFailure, ShutdownReport, Stage, StageOutput, Stages};

mod sockets;
mod storing;

use sockets::listen;
pub use sockets::{Sockets, bind_tcp};
use storing::{Storing, aggregator_stage, consumer_stage, prepare_metering, spool_stage};

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
    // ingestor: this process's id, refused while another live process holds it.
    let id = cfg.ingest.id.clone();
    let lock = suiftly_ingest::ingestor::acquire(conninfo, &id).await?;
    info!(id, "ingestor id taken");
    let ingestor = stages.stage("ingestor", OnFailure::KeepRunning);
    let (c, stop) = (conninfo.to_owned(), ingestor.stop_token());
    ingestor.spawn(async move {
        suiftly_ingest::ingestor::hold(c, id, lock, stop).await;
        Ok(StageOutput::Nothing)
    });
    stages.push(ingestor);

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
            let w = Writer::new(cfg.writer_config(conninfo))
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
