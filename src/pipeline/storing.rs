//! The storing stages: the spool, the COPY consumer and the aggregator (spool on), or the
//! listeners feeding the writer directly (spool off).

use std::sync::Arc;

use anyhow::{Context, Result};
use futures_util::future::BoxFuture;
use suiftly_aggregate::service::{self as metering, AggregateError, Aggregator, Recovery};
use suiftly_ingest::spooled::{self, SpoolHandle};
use suiftly_ingest::writer::Writer;
use suiftly_parser::Parser;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::stage::{OnFailure, Stage, StageOutput, Stages};

/// Where accepted lines go before the COPY writer: the two modes as one type.
pub(super) enum Storing {
    /// The disk spool, read by the consumer; metering (optional) replays it after a restart.
    Spooled {
        spool: SpoolHandle,
        metering: Option<Metering>,
    },
    /// Listeners parse and hand batches to the writer over a bounded channel.
    Direct,
}

/// The metering stage, prepared (state loaded, replay range known) but not yet running.
pub(super) struct Metering {
    pub(super) handle: Aggregator,
    pub(super) task: BoxFuture<'static, Result<(), AggregateError>>,
    pub(super) tap: spooled::Tap,
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
pub(super) async fn prepare_metering(
    cfg: &Config,
    conninfo: &str,
    spool: &SpoolHandle,
    abort: &CancellationToken,
) -> Result<Metering> {
    let acfg = cfg.aggregator_config();
    let consumer = suiftly_ingest::ingestor::copy_consumer(&cfg.ingest.id);
    let copy_pos = spooled::committed_position(conninfo, spool, &consumer).await?;
    let mut persisted =
        metering::load_state(conninfo, &acfg.ingestor, copy_pos, &acfg.window).await?;
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
        persisted =
            suiftly_aggregate::settle::reset(conninfo, &acfg.ingestor, copy_pos, &acfg.window)
                .await?;
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
pub(super) fn aggregator_stage(
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
pub(super) fn consumer_stage(
    stages: &Stages,
    cfg: &Config,
    conninfo: &str,
    spool: &SpoolHandle,
    tap: Option<spooled::Tap>,
    abort: &CancellationToken,
) -> Result<Stage> {
    let s = stages.stage("consumer", OnFailure::StopProcess);
    let writers = (0..cfg.storage.writers)
        .map(|_| Writer::new(cfg.writer_config(conninfo)).with_health(spool.health.clone()))
        .collect();
    let run = spooled::run_consumer(
        spool.clone(),
        writers,
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
pub(super) fn spool_stage(stages: &Stages, cfg: &Config, spool: &SpoolHandle) -> Stage {
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
