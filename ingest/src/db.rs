//! Schema migrations and hourly partition upkeep (the writer creates the partitions a batch
//! needs; [`run_maintenance`] keeps them ahead of time and drops expired ones).

use std::collections::BTreeSet;
use std::time::Duration;

use suiftly_migrations::connect;
use suiftly_model::time::now_us;
use tokio_util::sync::CancellationToken;

// Calendar arithmetic is the parser's (one implementation, cross-checked against chrono).
use suiftly_parser::{civil_from_days, days_from_civil};
use tokio_postgres::Client;
use tracing::{debug, info, warn};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Migrate(#[from] suiftly_migrations::MigrateError),
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("unknown raw_logs_storage setting {0:?}")]
    UnknownStorage(String),
    #[error(
        "haproxy_raw_logs is a timescaledb hypertable, but this postgresql server does not preload timescaledb (shared_preload_libraries = {preload:?}); install timescaledb for this postgresql version, add it to shared_preload_libraries and restart postgresql (README, \"TimescaleDB\")"
    )]
    TimescaledbNotLoaded { preload: String },
}

/// How `haproxy_raw_logs` is partitioned, as decided by the first migration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    /// TimescaleDB hypertable: chunking, compression and retention are the extension's job.
    Timescale,
    /// Native range partitions per hour, kept by [`ensure_partitions`] and
    /// [`drop_expired_partitions`].
    Native,
}

/// Applies every pending migration under `migrations/`; returns the applied versions.
pub async fn migrate(client: &mut Client) -> Result<Vec<i32>, DbError> {
    Ok(suiftly_migrations::migrate(client).await?)
}

pub async fn storage(client: &Client) -> Result<Storage, DbError> {
    let row = client
        .query_one(
            "SELECT value FROM suiftly_settings WHERE key = 'raw_logs_storage'",
            &[],
        )
        .await?;
    match row.get::<_, &str>(0) {
        "timescaledb" => Ok(Storage::Timescale),
        "native" => Ok(Storage::Native),
        other => Err(DbError::UnknownStorage(other.to_owned())),
    }
}

pub use suiftly_model::time::US_PER_HOUR;

/// Partition name for the hour starting at `hour` (hours since the Unix epoch), e.g.
/// `haproxy_raw_logs_p2026112602`.
pub fn partition_name(hour: i64) -> String {
    let (y, m, d) = civil_from_days(hour.div_euclid(24));
    let h = hour.rem_euclid(24);
    format!("haproxy_raw_logs_p{y:04}{m:02}{d:02}{h:02}")
}

fn hour_literal(hour: i64) -> String {
    let (y, m, d) = civil_from_days(hour.div_euclid(24));
    format!("{y:04}-{m:02}-{d:02} {:02}:00:00+00", hour.rem_euclid(24))
}

/// Hours (since the epoch) that have a partition now.
pub async fn existing_partitions(client: &Client) -> Result<BTreeSet<i64>, DbError> {
    let rows = client
        .query(
            "SELECT c.relname FROM pg_inherits i \
             JOIN pg_class c ON c.oid = i.inhrelid \
             JOIN pg_class p ON p.oid = i.inhparent \
             WHERE p.relname = 'haproxy_raw_logs'",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .filter_map(|r| parse_partition_name(r.get::<_, &str>(0)))
        .collect())
}

/// Inverse of [`partition_name`].
pub fn parse_partition_name(name: &str) -> Option<i64> {
    let digits = name.strip_prefix("haproxy_raw_logs_p")?;
    if digits.len() != 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let y: i32 = digits[0..4].parse().ok()?;
    let m: u32 = digits[4..6].parse().ok()?;
    let d: u32 = digits[6..8].parse().ok()?;
    let h: i64 = digits[8..10].parse().ok()?;
    Some(days_from_civil(y, m, d) * 24 + h)
}

/// Creates the hourly partitions in `hours` that do not exist yet. Idempotent and safe to
/// race with another ingestor (`IF NOT EXISTS`; a concurrent creation error is retried as a
/// no-op by the caller's next pass).
pub async fn ensure_partitions(
    client: &Client,
    hours: impl IntoIterator<Item = i64>,
) -> Result<usize, DbError> {
    let mut created = 0;
    for hour in hours {
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS {} PARTITION OF haproxy_raw_logs \
             FOR VALUES FROM ('{}') TO ('{}')",
            partition_name(hour),
            hour_literal(hour),
            hour_literal(hour + 1)
        );
        client.batch_execute(&sql).await?;
        debug!(partition = %partition_name(hour), "partition ensured");
        created += 1;
    }
    Ok(created)
}

/// Drops partitions whose hour ended before `cutoff_us`; returns the names dropped.
pub async fn drop_expired_partitions(
    client: &Client,
    cutoff_us: i64,
) -> Result<Vec<String>, DbError> {
    let mut dropped = Vec::new();
    for hour in existing_partitions(client).await? {
        if (hour + 1) * US_PER_HOUR <= cutoff_us {
            let name = partition_name(hour);
            client
                .batch_execute(&format!("DROP TABLE IF EXISTS {name}"))
                .await?;
            info!(partition = %name, "expired partition dropped");
            dropped.push(name);
        }
    }
    Ok(dropped)
}

/// Keeps native partitions ahead of time and drops expired ones, every `interval`.
pub async fn run_maintenance(
    conninfo: String,
    retention: Duration,
    ahead_hours: i64,
    interval: Duration,
    shutdown: CancellationToken,
) {
    loop {
        if let Err(e) = maintain_once(&conninfo, retention, ahead_hours).await {
            warn!(error = %e, "partition maintenance failed; will retry");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// One maintenance pass; returns (partitions ensured, partitions dropped).
pub async fn maintain_once(
    conninfo: &str,
    retention: Duration,
    ahead_hours: i64,
) -> Result<(usize, usize), DbError> {
    let mut client = connect(conninfo).await?;
    // Batch ids only need to outlive the retries of their batch.
    client
        .execute(
            "DELETE FROM ingest_batch_log WHERE committed_at < now() - interval '1 day'",
            &[],
        )
        .await?;
    if storage(&client).await? == Storage::Timescale {
        // Chunks are TimescaleDB's; only the retention policy follows the configuration.
        crate::timescale::apply_retention(&mut client, retention).await?;
        return Ok((0, 0));
    }
    let now = now_us();
    let this_hour = now.div_euclid(US_PER_HOUR);
    let made = ensure_partitions(&client, (this_hour - 1)..=(this_hour + ahead_hours)).await?;
    let dropped = drop_expired_partitions(&client, now - retention.as_micros() as i64).await?;
    Ok((made, dropped.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names_round_trip() {
        // 2026-11-26 02:00 UTC
        let hour = 1_795_658_400 / 3600;
        assert_eq!(partition_name(hour), "haproxy_raw_logs_p2026112602");
        assert_eq!(
            parse_partition_name("haproxy_raw_logs_p2026112602"),
            Some(hour)
        );
        assert_eq!(hour_literal(hour), "2026-11-26 02:00:00+00");
        for h in [-5i64, 0, 1, 400_000, 500_123] {
            assert_eq!(parse_partition_name(&partition_name(h)), Some(h));
        }
        assert_eq!(parse_partition_name("haproxy_raw_logs_pX"), None);
        assert_eq!(parse_partition_name("other"), None);
    }
}
