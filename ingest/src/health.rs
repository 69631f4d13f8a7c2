//! Liveness and degradation as the operator's health endpoint reports it.
//!
//! The writer, the spool consumer and the spool sinks update one shared [`Health`]; the
//! binary's admin endpoint serialises a [`HealthSnapshot`] and answers 503 while degraded, so
//! a load balancer or an alert can act on it without parsing metrics.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde::Serialize;

#[derive(Debug, Default)]
pub struct Health {
    degraded: AtomicBool,
    retries: AtomicU64,
    spool_full: AtomicBool,
    spool_bytes: AtomicU64,
    oldest_unwritten_age_ms: AtomicU64,
    committed_position: AtomicU64,
}

/// What `/health` returns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HealthSnapshot {
    /// `ok`, or `degraded` while the database refuses writes or the spool is full.
    pub status: &'static str,
    pub database_writes_failing: bool,
    pub write_retries_total: u64,
    pub spool_full: bool,
    pub spool_bytes: u64,
    pub oldest_unwritten_age_ms: u64,
    pub committed_spool_position: u64,
}

impl Health {
    pub fn set_degraded(&self, on: bool) {
        self.degraded.store(on, Ordering::Relaxed);
    }
    pub fn add_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }
    pub fn set_spool_full(&self, on: bool) {
        self.spool_full.store(on, Ordering::Relaxed);
    }
    pub fn set_spool(&self, bytes: u64, oldest_age_ms: u64, committed: u64) {
        self.spool_bytes.store(bytes, Ordering::Relaxed);
        self.oldest_unwritten_age_ms
            .store(oldest_age_ms, Ordering::Relaxed);
        self.committed_position.store(committed, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HealthSnapshot {
        let failing = self.degraded.load(Ordering::Relaxed);
        let full = self.spool_full.load(Ordering::Relaxed);
        HealthSnapshot {
            status: if failing || full { "degraded" } else { "ok" },
            database_writes_failing: failing,
            write_retries_total: self.retries.load(Ordering::Relaxed),
            spool_full: full,
            spool_bytes: self.spool_bytes.load(Ordering::Relaxed),
            oldest_unwritten_age_ms: self.oldest_unwritten_age_ms.load(Ordering::Relaxed),
            committed_spool_position: self.committed_position.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degraded_while_writes_fail_or_the_spool_is_full() {
        let h = Health::default();
        assert_eq!(h.snapshot().status, "ok");
        h.set_degraded(true);
        h.add_retry();
        assert_eq!(h.snapshot().status, "degraded");
        assert_eq!(h.snapshot().write_retries_total, 1);
        h.set_degraded(false);
        h.set_spool_full(true);
        assert_eq!(h.snapshot().status, "degraded");
        h.set_spool_full(false);
        h.set_spool(10, 20, 30);
        let s = h.snapshot();
        assert_eq!(
            (
                s.status,
                s.spool_bytes,
                s.oldest_unwritten_age_ms,
                s.committed_spool_position
            ),
            ("ok", 10, 20, 30)
        );
    }
}
