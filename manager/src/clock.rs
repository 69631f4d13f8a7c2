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
        self.store(client, offset_ms_to(to, Utc::now())).await
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

/// The offset, in whole milliseconds, that makes a clock reading `now` read `to`. Rounded up, so
/// the clock never reads earlier than the value set (truncating toward zero made a read-back
/// 50 µs before it).
fn offset_ms_to(to: DateTime<Utc>, now: DateTime<Utc>) -> i64 {
    let d = to - now;
    let ms = d.num_milliseconds();
    if TimeDelta::milliseconds(ms) < d {
        ms + 1
    } else {
        ms
    }
}

#[cfg(test)]
mod offset_tests {
    use super::*;

    #[test]
    fn a_set_clock_never_reads_before_the_value_set() {
        let to: DateTime<Utc> = "2027-01-01T00:00:00Z".parse().unwrap();
        for now_us in [0i64, 1, 999, 1_000, 1_001, 54_000, -1, -999, -1_000, -1_001] {
            for base in [to - TimeDelta::days(40), to + TimeDelta::days(3)] {
                let now = base + TimeDelta::microseconds(now_us);
                let read = now + TimeDelta::milliseconds(offset_ms_to(to, now));
                assert!(read >= to, "now {now}: reads {read}");
                assert!(
                    read - to < TimeDelta::milliseconds(1),
                    "now {now}: reads {read}"
                );
            }
        }
    }
}
