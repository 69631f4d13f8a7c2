//! The stage list: what the composition root ([`crate::pipeline`]) starts, in order, and stops
//! in reverse.
//!
//! A [`Stage`] is a name, the token that asks its tasks to finish, a [`TaskTracker`] holding
//! every task it spawned, hooks that run once those tasks have ended, and what its failure
//! means for the process ([`OnFailure`]). [`Stages::push`] records a started stage;
//! [`Stages::stop`] stops them last-started first, waits for each stage's tasks before the
//! next, logs each step and returns the order it used, so "servers are stopped before the
//! embedded PostgreSQL" is a property of the list, not of hand-written sequencing.
//!
//! Every task a stage spawns reports its end here: a result becomes a [`StageOutput`] in the
//! shutdown report; an error or a panic becomes a [`StageFailure`] that names the stage.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use suiftly_ingest::decode::DecodeStats;
use suiftly_ingest::listener::ListenerStats;
use suiftly_ingest::writer::WriterStats;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

/// What the failure of one of a stage's tasks does to the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnFailure {
    /// The process stops in order (a listener or the writer: running on with lines silently
    /// missing would be worse than stopping).
    StopProcess,
    /// Logged with the stage's name and reported at exit; the other stages go on (metering:
    /// storing continues and metering resumes from its committed position at the next start;
    /// the admin and metrics endpoints).
    KeepRunning,
}

/// What a stage's task hands back when it ends normally.
#[derive(Clone, Debug, PartialEq)]
pub enum StageOutput {
    Nothing,
    /// Listener `index` (configuration order) stopped.
    Listener {
        index: usize,
        stats: ListenerStats,
    },
    Writer(WriterStats),
    /// The spool consumer's decode counts, by listener index (spool on: listeners only
    /// append, the consumer parses).
    Decoded(Vec<DecodeStats>),
}

/// A task of stage `stage` ended with an error (or panicked).
#[derive(Debug)]
pub struct StageFailure {
    pub stage: &'static str,
    pub error: String,
}

impl std::fmt::Display for StageFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stage {} failed: {}", self.stage, self.error)
    }
}

type Hook = Box<dyn FnOnce() -> BoxFuture<'static, anyhow::Result<()>> + Send>;

/// Shared by every stage of one root: where failures and outputs are recorded.
#[derive(Clone, Default)]
struct Shared {
    failures: Arc<Mutex<Vec<StageFailure>>>,
    outputs: Arc<Mutex<Vec<(&'static str, StageOutput)>>>,
    /// Fires on the first failure of a [`OnFailure::StopProcess`] stage.
    fatal: CancellationToken,
}

/// One entry of the stage list.
pub struct Stage {
    name: &'static str,
    on_failure: OnFailure,
    stop: CancellationToken,
    tasks: TaskTracker,
    after_stop: Vec<Hook>,
    shared: Shared,
}

impl Stage {
    /// The token this stage's tasks watch: it fires when the stage is asked to stop.
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Spawns one of this stage's tasks, tracked until the stage has stopped.
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = anyhow::Result<StageOutput>> + Send + 'static,
    {
        let (name, on_failure, shared) = (self.name, self.on_failure, self.shared.clone());
        self.tasks.spawn(async move {
            let error = match AssertUnwindSafe(task).catch_unwind().await {
                Ok(Ok(out)) => {
                    shared.outputs.lock().expect("outputs").push((name, out));
                    return;
                }
                Ok(Err(e)) => format!("{e:#}"),
                Err(panic) => panic
                    .downcast_ref::<&str>()
                    .map(|s| format!("panicked: {s}"))
                    .or_else(|| {
                        panic
                            .downcast_ref::<String>()
                            .map(|s| format!("panicked: {s}"))
                    })
                    .unwrap_or_else(|| "panicked".into()),
            };
            match on_failure {
                OnFailure::StopProcess => {
                    error!(stage = name, error = %error, "stage failed; the process stops");
                    shared.fatal.cancel();
                }
                OnFailure::KeepRunning => {
                    error!(stage = name, error = %error, "stage failed; the other stages go on")
                }
            }
            shared
                .failures
                .lock()
                .expect("failures")
                .push(StageFailure { stage: name, error });
        });
    }

    /// Where a task records a further output of this stage besides its return value.
    pub fn outputs(&self) -> Outputs {
        Outputs {
            stage: self.name,
            shared: self.shared.clone(),
        }
    }

    /// Runs once this stage's tasks have ended (e.g. the final spool sync, stopping the
    /// embedded PostgreSQL). Hooks run in the order they were added.
    pub fn after_stop<F>(mut self, hook: impl FnOnce() -> F + Send + 'static) -> Self
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        self.after_stop.push(Box::new(move || hook().boxed()));
        self
    }
}

/// Records outputs of one stage (see [`Stage::outputs`]).
#[derive(Clone)]
pub struct Outputs {
    stage: &'static str,
    shared: Shared,
}

impl Outputs {
    pub fn record(&self, out: StageOutput) {
        self.shared
            .outputs
            .lock()
            .expect("outputs")
            .push((self.stage, out));
    }
}

/// What [`Stages::stop`] did.
#[derive(Debug, Default)]
pub struct ShutdownReport {
    /// Stage names in the order they were stopped.
    pub order: Vec<&'static str>,
    /// Each task's output, by stage, in the order the tasks ended.
    pub outputs: Vec<(&'static str, StageOutput)>,
    /// Every failure since start, in the order they happened.
    pub failures: Vec<StageFailure>,
}

impl ShutdownReport {
    /// Each listener's statistics, in configuration order. With the spool on, a listener
    /// only receives and appends; what its lines became (parsed, rejected) is the consumer's
    /// count for that listener, added in here.
    pub fn listeners(&self) -> Vec<ListenerStats> {
        let mut out: Vec<(usize, ListenerStats)> = self
            .outputs
            .iter()
            .filter_map(|(_, o)| match o {
                StageOutput::Listener { index, stats } => Some((*index, *stats)),
                _ => None,
            })
            .collect();
        out.sort_by_key(|(i, _)| *i);
        let decoded = self.outputs.iter().find_map(|(_, o)| match o {
            StageOutput::Decoded(d) => Some(d),
            _ => None,
        });
        out.into_iter()
            .map(|(i, mut s)| {
                if let Some(d) = decoded.and_then(|d| d.get(i)) {
                    s.parsed += d.parsed;
                    s.rejected += d.rejected;
                }
                s
            })
            .collect()
    }

    /// The COPY writer's statistics (the spool consumer, or the direct writer).
    pub fn writer(&self) -> Option<WriterStats> {
        self.outputs.iter().find_map(|(_, o)| match o {
            StageOutput::Writer(s) => Some(*s),
            _ => None,
        })
    }
}

/// The started stages of one composition root, in start order.
#[derive(Default)]
pub struct Stages {
    list: Vec<Stage>,
    shared: Shared,
}

impl Stages {
    /// A stage to fill with tasks and then [`push`](Self::push).
    pub fn stage(&self, name: &'static str, on_failure: OnFailure) -> Stage {
        Stage {
            name,
            on_failure,
            stop: CancellationToken::new(),
            tasks: TaskTracker::new(),
            after_stop: Vec::new(),
            shared: self.shared.clone(),
        }
    }

    /// Records a started stage; it is stopped before every stage pushed earlier.
    pub fn push(&mut self, stage: Stage) {
        info!(
            stage = stage.name,
            tasks = stage.tasks.len(),
            "stage started"
        );
        self.list.push(stage);
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.list.iter().map(|s| s.name).collect()
    }

    /// Resolves with the first failure of a [`OnFailure::StopProcess`] stage.
    pub fn fatal(&self) -> impl Future<Output = ()> + Send + 'static {
        let t = self.shared.fatal.clone();
        async move { t.cancelled().await }
    }

    /// The failures so far (rendered), for callers that must decide before stopping.
    pub fn failures(&self) -> Vec<String> {
        let f = self.shared.failures.lock().expect("failures");
        f.iter().map(|f| f.to_string()).collect()
    }

    /// Stops every stage, last started first: fire its token, wait for all of its tasks,
    /// run its after-stop hooks; then the next. A hook's error is recorded as that stage's
    /// failure and the remaining stages are still stopped.
    pub async fn stop(self) -> ShutdownReport {
        let mut order = Vec::with_capacity(self.list.len());
        for stage in self.list.into_iter().rev() {
            let started = Instant::now();
            info!(stage = stage.name, "stopping stage");
            stage.stop.cancel();
            stage.tasks.close();
            stage.tasks.wait().await;
            for hook in stage.after_stop {
                if let Err(e) = hook().await {
                    warn!(stage = stage.name, error = %format!("{e:#}"), "stage stop step failed");
                    self.shared
                        .failures
                        .lock()
                        .expect("failures")
                        .push(StageFailure {
                            stage: stage.name,
                            error: format!("{e:#}"),
                        });
                }
            }
            info!(
                stage = stage.name,
                ms = started.elapsed().as_millis() as u64,
                "stage stopped"
            );
            order.push(stage.name);
        }
        let outputs = std::mem::take(&mut *self.shared.outputs.lock().expect("outputs"));
        let failures = std::mem::take(&mut *self.shared.failures.lock().expect("failures"));
        ShutdownReport {
            order,
            outputs,
            failures,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stops_in_reverse_and_names_the_failed_stage() {
        let mut stages = Stages::default();
        let log = Arc::new(Mutex::new(Vec::new()));
        for name in ["first", "second", "third"] {
            let s = stages.stage(name, OnFailure::KeepRunning);
            let (stop, log2) = (s.stop_token(), log.clone());
            s.spawn(async move {
                stop.cancelled().await;
                log2.lock().unwrap().push(name);
                Ok(StageOutput::Nothing)
            });
            let log3 = log.clone();
            let s = s.after_stop(move || async move {
                log3.lock().unwrap().push("hook");
                Ok(())
            });
            stages.push(s);
        }
        let bad = stages.stage("bad", OnFailure::StopProcess);
        bad.spawn(async { anyhow::bail!("boom") });
        stages.push(bad);
        tokio::time::timeout(std::time::Duration::from_secs(10), stages.fatal())
            .await
            .expect("the fatal failure is signalled");
        let report = stages.stop().await;
        assert_eq!(report.order, ["bad", "third", "second", "first"]);
        assert_eq!(
            *log.lock().unwrap(),
            ["third", "hook", "second", "hook", "first", "hook"]
        );
        assert_eq!(report.failures.len(), 1);
        assert_eq!(report.failures[0].to_string(), "stage bad failed: boom");
        assert_eq!(report.outputs.len(), 3);
    }

    #[tokio::test]
    async fn a_panic_is_a_named_failure() {
        let mut stages = Stages::default();
        let s = stages.stage("panicky", OnFailure::StopProcess);
        s.spawn(async { panic!("oops") });
        stages.push(s);
        stages.fatal().await;
        let report = stages.stop().await;
        assert_eq!(
            report.failures[0].to_string(),
            "stage panicky failed: panicked: oops"
        );
    }
}
