//! SIGTERM and SIGINT, for every long-running subcommand (`run`, `api`).

use anyhow::{Context, Result};
use tokio::signal::unix::{Signal, SignalKind, signal};

/// Both handlers, registered at construction: a signal that arrives while the process is
/// still starting is kept and acted on once start-up completes, instead of killing the
/// process with an embedded PostgreSQL still running.
pub struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    pub fn new() -> Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate()).context("installing SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing SIGINT handler")?,
        })
    }

    /// The next SIGTERM or SIGINT.
    pub async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}
