//! The composition root: starts the stages in dependency order and stops them in reverse.
//!
//! Start: database (embedded or external) → migrations → partition upkeep → spool (recovered)
//! → consumer/COPY writer → listeners → metrics exporter. Stop (first SIGTERM/ctrl-c):
//! listeners stop reading and append what they hold → the spool is synced → the consumer
//! stores everything durable and exits → upkeep stops → the embedded PostgreSQL is stopped.
//! A second signal aborts the writer's retries; with the spool on, what was not stored stays
//! in the spool and is stored at the next start.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use std::sync::Arc;

use suiftly_aggregate::service::{self as metering, Aggregator, Recovery};
use suiftly_ingest::health::Health;
use suiftly_ingest::listener::{self, ListenerStats};
use suiftly_ingest::spooled::{self, SpoolHandle};
use suiftly_ingest::writer::{self, Writer, WriterConfig, WriterStats};
use suiftly_parser::Parser;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::database::Database;

pub struct Pipeline {
    listeners: Vec<(String, JoinHandle<std::io::Result<ListenerStats>>)>,
    writer: JoinHandle<Result<WriterStats>>,
    /// The metering stage (spool on and `[aggregate] enabled`); its task ends after the
    /// consumer closed its input.
    pub aggregator: Option<Aggregator>,
    aggregator_task: Option<JoinHandle<Result<()>>>,
    /// With the spool on: the spool (synced before the consumer is told to finish), the
    /// consumer's "listeners are done" signal and the interval-fsync task's stop.
    spool: Option<(SpoolHandle, CancellationToken, CancellationToken)>,
    pub shutdown: CancellationToken,
    pub abort: CancellationToken,
    /// What `/health` reports.
    pub health: Arc<Health>,
    /// Fires when a listener task ends with an error.
    pub failed: CancellationToken,
    /// (listener name, UDP/TCP address, unix path) as bound.
    pub bound: Vec<(String, Option<SocketAddr>, Option<PathBuf>)>,
}

impl Pipeline {
    /// Binds every listener and starts the writer (directly fed, or the spool consumer).
    /// Migrations must have run.
    pub async fn start(cfg: &Config, conninfo: &str) -> Result<Pipeline> {
        let shutdown = CancellationToken::new();
        let abort = CancellationToken::new();
        let failed = CancellationToken::new();
        let mut writer = Writer::new(WriterConfig::new(conninfo));
        let mut listeners = Vec::new();
        let mut health = Arc::new(Health::default());
        let mut bound = Vec::new();

        let mut aggregator = None;
        let mut aggregator_task = None;
        let (spool, writer_task, tx) = if cfg.spool.enabled {
            let dir = cfg.spool_dir();
            let scfg = cfg.spool.spool_config()?;
            let spool = tokio::task::block_in_place(|| SpoolHandle::open(&dir, scfg))
                .with_context(|| format!("opening the spool at {}", dir.display()))?;
            let make_parsers = || {
                cfg.listeners
                    .iter()
                    .map(|l| {
                        Ok((
                            Arc::<str>::from(l.name.as_str()),
                            Parser::new(l.source_config()?),
                        ))
                    })
                    .collect::<Result<Vec<_>>>()
            };
            let parsers = make_parsers()?;
            let done = CancellationToken::new();
            let sync_stop = CancellationToken::new();
            let interval = match scfg.fsync {
                suiftly_spool::FsyncPolicy::IntervalMs(ms) => Some(Duration::from_millis(ms)),
                _ => None,
            };
            tokio::spawn(spooled::run_syncer(
                spool.clone(),
                interval,
                sync_stop.clone(),
            ));
            health = spool.health.clone();
            let tap = if cfg.aggregate.enabled {
                let (tx, agg, task) = start_metering(
                    cfg,
                    conninfo,
                    &spool,
                    make_parsers()?,
                    abort.clone(),
                    failed.clone(),
                )
                .await?;
                aggregator = Some(agg);
                aggregator_task = Some(task);
                Some(tx)
            } else {
                None
            };
            let consumer = spooled::run_consumer(
                spool.clone(),
                writer.with_health(spool.health.clone()),
                conninfo.to_owned(),
                parsers,
                cfg.limits(),
                done.clone(),
                abort.clone(),
                tap,
            );
            let failed2 = failed.clone();
            let task = tokio::spawn(async move {
                let r = consumer.await;
                if let Err(e) = &r {
                    error!(error = %e, "spool consumer stopped");
                    failed2.cancel();
                }
                r.map_err(anyhow::Error::from)
            });
            (Some((spool, done, sync_stop)), task, None)
        } else {
            let (tx, rx) = mpsc::channel(cfg.batch.channel_capacity.max(1));
            writer = writer.with_health(health.clone());
            let w = writer.run(rx, abort.clone());
            (None, tokio::spawn(async move { Ok(w.await) }), Some(tx))
        };

        for (i, lc) in cfg.listeners.iter().enumerate() {
            let b = listener::bind(lc)?;
            bound.push((
                lc.name.clone(),
                b.local_addr(),
                b.unix_path().map(|p| p.to_path_buf()),
            ));
            let run: std::pin::Pin<
                Box<dyn std::future::Future<Output = std::io::Result<ListenerStats>> + Send>,
            > = match (&spool, &tx) {
                (Some((sp, _, _)), _) => Box::pin(spooled::run_listener(
                    b,
                    i as u16,
                    sp.clone(),
                    shutdown.clone(),
                )),
                (None, Some(tx)) => {
                    let parser = Parser::new(lc.source_config()?);
                    Box::pin(listener::run(
                        b,
                        parser,
                        cfg.limits(),
                        tx.clone(),
                        shutdown.clone(),
                    ))
                }
                (None, None) => unreachable!("either the spool or the channel"),
            };
            let failed = failed.clone();
            let h = tokio::spawn(async move {
                let r = run.await;
                if r.is_err() {
                    // A listener that dies stops the process: running on with one gateway's
                    // logs silently missing would be worse.
                    failed.cancel();
                }
                r
            });
            listeners.push((lc.name.clone(), h));
        }
        Ok(Pipeline {
            listeners,
            writer: writer_task,
            aggregator,
            aggregator_task,
            spool,
            shutdown,
            abort,
            health,
            failed,
            bound,
        })
    }

    /// Ordered stop; returns what each stage did.
    pub async fn stop(self) -> Result<(Vec<ListenerStats>, WriterStats)> {
        info!("stopping listeners");
        self.shutdown.cancel();
        let mut stats = Vec::new();
        for (name, h) in self.listeners {
            match h.await.context("listener task panicked")? {
                Ok(s) => stats.push(s),
                Err(e) => warn!(listener = %name, error = %e, "listener ended with an error"),
            }
        }
        if let Some((spool, done, sync_stop)) = &self.spool {
            // Publish everything accepted, then let the consumer finish storing it.
            tokio::task::block_in_place(|| spool.sync()).context("final spool sync")?;
            done.cancel();
            info!("listeners stopped; the consumer is storing what the spool holds");
            let w = self.writer.await.context("consumer task panicked")?;
            if let Some(t) = self.aggregator_task {
                info!("consumer stopped; the aggregator settles what is due");
                if let Err(e) = t.await.context("aggregator task panicked")? {
                    warn!(error = %e, "aggregator stopped with an error (it resumes from its committed position at the next start)");
                }
            }
            sync_stop.cancel();
            return Ok((stats, w?));
        }
        info!("listeners stopped; waiting for the writer to commit queued batches");
        let w = self.writer.await.context("writer task panicked")??;
        Ok((stats, w))
    }
}

/// Starts the metering stage: loads its committed state, keeps the spool it still needs,
/// replays the unsettled part, then takes the COPY consumer's committed batches.
async fn start_metering(
    cfg: &Config,
    conninfo: &str,
    spool: &SpoolHandle,
    parsers: Vec<(Arc<str>, Parser)>,
    abort: CancellationToken,
    failed: CancellationToken,
) -> Result<(spooled::Tap, Aggregator, JoinHandle<Result<()>>)> {
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
    let replay = (persisted.restart_position < copy_pos)
        .then(|| {
            spooled::SpoolBatches::new(spool, persisted.restart_position, parsers, cfg.limits())
        })
        .transpose()?;
    info!(?persisted, replay_to = copy_pos, "metering resumes");
    let (tx, rx) = mpsc::channel(cfg.aggregate.input_capacity);
    let sp = spool.clone();
    let caught_up = Arc::new(move |pos: u64| pos >= sp.durable_end().0);
    let (agg, task) = metering::start(
        acfg,
        conninfo.to_owned(),
        Recovery {
            persisted,
            replay_to: copy_pos,
            replay,
        },
        rx,
        caught_up,
        abort,
    );
    // The spool keeps what the aggregator would replay after a crash.
    let mut settled = agg.subscribe();
    let (a2, sp) = (agg.clone(), spool.clone());
    tokio::spawn(async move {
        loop {
            match settled.recv().await {
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    sp.set_gc_floor(a2.persisted().restart_position)
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    let task = tokio::spawn(async move {
        let r = task.await;
        if let Err(e) = &r
            && !matches!(e, suiftly_aggregate::service::AggregateError::Aborted)
        {
            error!(error = %e, "aggregator stopped");
            failed.cancel();
        }
        r.map_err(anyhow::Error::from)
    });
    Ok((tx, agg, task))
}

/// Operator SQL on the admin port.
pub struct SqlEndpoint {
    pub ctx: suiftly_aggregate::sql::Context,
    pub token: String,
    /// Failed-token back-off shared by `POST /admin/sql` and the PostgreSQL port.
    pub throttle: Arc<suiftly_aggregate::throttle::AuthThrottle>,
}

/// Operator SQL over the PostgreSQL wire protocol (see `suiftly_aggregate::pgwire`). A
/// configured port that cannot be served is a start-up error, not a warning: the operator
/// asked for it.
async fn serve_pgwire(
    listen: &str,
    max_connections: usize,
    sql: Option<&SqlEndpoint>,
    stop: &CancellationToken,
) -> Result<()> {
    let sql = sql.context("admin.pgwire_listen is set but the operator SQL context could not be built (see the error above)")?;
    let addr: SocketAddr = listen
        .parse()
        .with_context(|| format!("admin.pgwire_listen {listen:?} is not ip:port"))?;
    if !addr.ip().is_loopback() {
        warn!(%addr, "operator SQL (pgwire) on a non-loopback address: authentication is SCRAM, but queries and results are not encrypted");
    }
    suiftly_aggregate::pgwire::prepare_context(&sql.ctx)?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the PostgreSQL-protocol endpoint on {addr}"))?;
    let bound = listener.local_addr()?;
    info!(addr = %bound, "operator SQL over the PostgreSQL protocol: psql \"host={} port={} user=operator dbname=suiftly\" (password: the operator token)", bound.ip(), bound.port());
    tokio::spawn(suiftly_aggregate::pgwire::serve(
        listener,
        sql.ctx.clone(),
        suiftly_aggregate::pgwire::PgWireOptions {
            token: sql.token.clone(),
            max_connections,
            throttle: sql.throttle.clone(),
        },
        stop.clone(),
    ));
    Ok(())
}

/// The admin endpoint: `GET /health` (JSON; 503 while degraded) and `POST /admin/sql`.
async fn serve_admin(
    listen: &str,
    health: Arc<Health>,
    sql: Option<Arc<SqlEndpoint>>,
    stop: CancellationToken,
) -> Result<()> {
    use axum::{Json, Router, http::StatusCode, routing::get};
    let addr: SocketAddr = listen
        .parse()
        .with_context(|| format!("admin.listen {listen:?} is not ip:port"))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the admin endpoint on {addr}"))?;
    let mut app = Router::new();
    if let Some(sql) = sql {
        app = app.route(
            "/admin/sql",
            axum::routing::post(crate::admin_sql::handler).with_state(sql),
        );
    }
    let app = app.route(
        "/health",
        get(move || {
            let h = health.clone();
            async move {
                let snap = h.snapshot();
                let code = if snap.status == "ok" {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                (code, Json(snap))
            }
        }),
    );
    info!(%addr, "health at http://{addr}/health");
    tokio::spawn(async move {
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        let r = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(e) = r {
            error!(error = %e, "admin endpoint failed");
        }
    });
    Ok(())
}

/// Installs the Prometheus recorder process-wide. Must run before any stage registers its
/// counters: a handle taken before a recorder exists stays a no-op forever.
pub fn install_recorder() -> Result<metrics_exporter_prometheus::PrometheusHandle> {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full("suiftly_ingest_copy_seconds".into()),
            &[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ],
        )?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).context("installing the metrics recorder")?;
    Ok(handle)
}

/// Serves `GET /metrics` (Prometheus text) on `listen`, and keeps the recorder's upkeep going.
async fn serve_metrics(
    listen: &str,
    handle: metrics_exporter_prometheus::PrometheusHandle,
    stop: CancellationToken,
) -> Result<()> {
    use axum::{Router, routing::get};
    let addr: SocketAddr = listen
        .parse()
        .with_context(|| format!("metrics.listen {listen:?} is not ip:port"))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("starting the metrics endpoint on {addr}"))?;
    let upkeep = handle.clone();
    let stop2 = stop.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop2.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(5)) => upkeep.run_upkeep(),
            }
        }
    });
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let h = handle.clone();
            async move { h.render() }
        }),
    );
    info!(%addr, "metrics at http://{addr}/metrics");
    tokio::spawn(async move {
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        let r = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(e) = r {
            error!(error = %e, "metrics endpoint failed");
        }
    });
    Ok(())
}

/// Database + migrations + maintenance, shared by `run` and `demo`.
pub async fn prepare(cfg: &Config, db: &Database, shutdown: &CancellationToken) -> Result<()> {
    db.migrate().await?;
    let (made, dropped) = writer::maintain_once(
        &db.conninfo,
        cfg.retention(),
        cfg.storage.partitions_ahead_hours,
    )
    .await?;
    info!(ensured = made, dropped, "partitions ready");
    tokio::spawn(writer::run_maintenance(
        db.conninfo.clone(),
        cfg.retention(),
        cfg.storage.partitions_ahead_hours,
        Duration::from_secs(cfg.storage.maintenance_interval_secs.max(1)),
        shutdown.clone(),
    ));
    suiftly_ingest::metrics::spawn_kernel_drop_sampler(Duration::from_secs(5), shutdown.clone());
    Ok(())
}

pub async fn run_until_signal(cfg: Config) -> Result<()> {
    // Handlers first: a SIGTERM during start-up must not kill the process with the embedded
    // PostgreSQL still running; it is acted on once start-up completes.
    let mut signals = Signals::new()?;
    // Before anything starts: a weak or exposed operator token is a start-up error.
    let operator_token = cfg.operator_token(true)?;
    let prom = install_recorder()?;
    let db = tokio::task::block_in_place(|| Database::open(&cfg))?;
    let upkeep = CancellationToken::new();
    prepare(&cfg, &db, &upkeep).await?;
    let pipeline = Pipeline::start(&cfg, &db.conninfo).await?;
    for (name, addr, path) in &pipeline.bound {
        info!(listener = %name, addr = ?addr, path = ?path, "listening");
    }
    let sql = match suiftly_aggregate::sql::context_with_limits(
        pipeline.aggregator.clone(),
        &db.conninfo,
        cfg.admin.sql_limits(),
    )
    .await
    {
        Ok(ctx) => Some(Arc::new(SqlEndpoint {
            ctx,
            token: operator_token,
            throttle: Default::default(),
        })),
        Err(e) => {
            error!(error = %e, "operator SQL unavailable");
            None
        }
    };
    if let Some(listen) = &cfg.admin.pgwire_listen {
        let served = serve_pgwire(
            listen,
            cfg.admin.pgwire_max_connections,
            sql.as_deref(),
            &upkeep,
        )
        .await;
        if let Err(e) = served {
            pipeline.stop().await?;
            return Err(e);
        }
    }
    // Last, so that a reachable /metrics also means "listeners are bound".
    let admin = serve_admin(
        &cfg.admin.listen,
        pipeline.health.clone(),
        sql,
        upkeep.clone(),
    )
    .await;
    let served = match admin {
        Ok(()) => serve_metrics(&cfg.metrics.listen, prom, upkeep.clone()).await,
        Err(e) => Err(e),
    };
    if let Err(e) = served {
        pipeline.stop().await?;
        return Err(e);
    }
    let failed = pipeline.failed.clone();
    tokio::select! {
        _ = signals.recv() => info!("shutdown requested; signal again to abort uncommitted batches"),
        _ = failed.cancelled() => error!("a listener failed; shutting down"),
    }
    let abort = pipeline.abort.clone();
    tokio::spawn(async move {
        signals.recv().await;
        warn!("second signal: aborting writer retries");
        abort.cancel();
    });
    let (listeners, writer) = pipeline.stop().await?;
    upkeep.cancel();
    info!(?listeners, ?writer, "ingest stopped");
    if let Some(mut c) = db.cluster {
        tokio::task::block_in_place(|| c.stop())?;
        info!("embedded postgresql stopped");
    }
    anyhow::ensure!(
        writer.lost == 0,
        "{} received lines were not committed (aborted)",
        writer.lost
    );
    anyhow::ensure!(
        !failed.is_cancelled(),
        "a listener failed (see the log above)"
    );
    Ok(())
}

/// SIGTERM and SIGINT, registered at construction.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate()).context("installing SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing SIGINT handler")?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}
