//! The manager's clock: the system clock plus an offset stored in `manager_clock`, so tests can
//! jump to month boundaries (set / advance) while time keeps flowing, and every manager (and the
//! API in the same process) reads the same time. Refused in production mode.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, TimeDelta, Utc};
use tokio_postgres::GenericClient;

#[derive(Debug, thiserror::Error)]
pub enum ClockError {
    #[error("the mock clock is refused in production mode")]
    Production,
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
}

/// Cheap to clone; all clones share the offset.
#[derive(Debug, Clone)]
pub struct ManagerClock {
    offset_ms: Arc<AtomicI64>,
    production: bool,
}

impl ManagerClock {
    pub fn new(production: bool) -> ManagerClock {
        ManagerClock {
            offset_ms: Arc::new(AtomicI64::new(0)),
            production,
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + TimeDelta::milliseconds(self.offset_ms.load(Ordering::Relaxed))
    }

    pub fn offset(&self) -> TimeDelta {
        TimeDelta::milliseconds(self.offset_ms.load(Ordering::Relaxed))
    }

    /// Reads the stored offset (each cycle starts with it). In production a stored offset is
    /// ignored with an error log: money follows the real clock.
    pub async fn refresh(&self, client: &impl GenericClient) -> Result<(), ClockError> {
        let off: i64 = client
            .query_opt("SELECT offset_ms FROM manager_clock WHERE id = 1", &[])
            .await?
            .map(|r| r.get(0))
            .unwrap_or(0);
        if self.production && off != 0 {
            tracing::error!(
                offset_ms = off,
                "manager_clock has an offset in production mode: ignored"
            );
            return Ok(());
        }
        self.offset_ms.store(off, Ordering::Relaxed);
        Ok(())
    }

    /// Sets the clock to `to` (stored, so every process sees it).
    pub async fn set(
        &self,
        client: &impl GenericClient,
        to: DateTime<Utc>,
    ) -> Result<DateTime<Utc>, ClockError> {
        self.store(client, (to - Utc::now()).num_milliseconds())
            .await
    }

    /// Moves the clock forward (or back) by `by`.
    pub async fn advance(
        &self,
        client: &impl GenericClient,
        by: TimeDelta,
    ) -> Result<DateTime<Utc>, ClockError> {
        let off = self.offset_ms.load(Ordering::Relaxed) + by.num_milliseconds();
        self.store(client, off).await
    }

    async fn store(
        &self,
        client: &impl GenericClient,
        offset_ms: i64,
    ) -> Result<DateTime<Utc>, ClockError> {
        if self.production {
            return Err(ClockError::Production);
        }
        client
            .execute(
                "INSERT INTO manager_clock (id, offset_ms, updated_at) VALUES (1, $1, now())
                 ON CONFLICT (id) DO UPDATE SET offset_ms = EXCLUDED.offset_ms, updated_at = now()",
                &[&offset_ms],
            )
            .await?;
        self.offset_ms.store(offset_ms, Ordering::Relaxed);
        Ok(self.now())
    }
}
