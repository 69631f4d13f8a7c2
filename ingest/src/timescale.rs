//! The raw-log table on TimescaleDB: what the start-up reports and refuses, and the retention
//! policy that configuration owns.
//!
//! Migration V1 makes `haproxy_raw_logs` a hypertable when the server preloads TimescaleDB and
//! native hourly partitions otherwise; V26 gives a hypertable its chunking and compression
//! (1-hour chunks, compressed after 6 hours, segmented by server, service and network). What
//! is left to the running ingestor:
//!
//! - [`check`]: which storage this database uses, said once at start-up, and a clear refusal
//!   when the database holds a hypertable that this server cannot use (TimescaleDB not
//!   preloaded: every COPY would fail with an error naming an internal trigger).
//! - [`apply_retention`]: the retention policy follows `storage.retention_hours`. The
//!   migration cannot know configuration, so the ingestor sets the policy at start-up and
//!   re-checks it at every maintenance pass (one query when nothing changed), where native
//!   storage drops its expired partitions instead.
//!
//! On a hypertable the ingestor's own partition upkeep is off: the writer creates no
//! partitions ([`crate::writer`]), maintenance neither creates nor drops any; chunks are
//! TimescaleDB's.

use std::time::Duration;

use tokio_postgres::Client;
use tracing::info;

use crate::db::{self, DbError, Storage};

/// Retention and compression jobs run this often: hourly chunks are dropped within the hour
/// after they expire, as native partitions are by the maintenance pass.
const POLICY_SCHEDULE: &str = "1 hour";

/// What [`check`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageInfo {
    pub storage: Storage,
    /// Version of the `timescaledb` extension created in this database, if any.
    pub extension: Option<String>,
    /// The server preloads TimescaleDB (and offers the extension).
    pub preloaded: bool,
}

impl std::fmt::Display for StorageInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.storage, &self.extension) {
            (Storage::Timescale, v) => write!(
                f,
                "timescaledb hypertable (extension {}): chunks, compression and retention are timescaledb's jobs",
                v.as_deref().unwrap_or("?")
            ),
            (Storage::Native, _) if self.preloaded => write!(
                f,
                "native hourly partitions kept by the ingestor; the server offers timescaledb, but this database was created without it and is not converted (README, \"TimescaleDB\")"
            ),
            (Storage::Native, _) => write!(f, "native hourly partitions kept by the ingestor"),
        }
    }
}

/// Which storage this database uses; refuses a hypertable the server cannot write to.
pub async fn check(client: &Client) -> Result<StorageInfo, DbError> {
    let storage = db::storage(client).await?;
    let row = client
        .query_one(
            "SELECT current_setting('shared_preload_libraries'), \
                    (SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'), \
                    EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')",
            &[],
        )
        .await?;
    let preload: String = row.get(0);
    let extension: Option<String> = row.get(1);
    let available: bool = row.get(2);
    let preloaded = available && preload.split(',').any(|l| l.trim() == "timescaledb");
    if storage == Storage::Timescale && !preloaded {
        return Err(DbError::TimescaledbNotLoaded { preload });
    }
    Ok(StorageInfo {
        storage,
        extension,
        preloaded,
    })
}

/// What [`apply_retention`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetentionPolicy {
    /// Native storage: the maintenance pass drops partitions itself.
    NotHypertable,
    /// The policy already drops chunks after the configured retention.
    Unchanged,
    /// The policy was (re)created with the configured retention.
    Set,
}

/// Makes the hypertable's retention policy drop chunks older than `retention` (whole hours,
/// as `storage.retention_hours` is). Idempotent; several ingestors may run it at once (an
/// advisory lock orders them).
pub async fn apply_retention(
    client: &mut Client,
    retention: Duration,
) -> Result<RetentionPolicy, DbError> {
    if db::storage(client).await? != Storage::Timescale {
        return Ok(RetentionPolicy::NotHypertable);
    }
    let hours = i32::try_from(retention.as_secs().div_ceil(3600)).unwrap_or(i32::MAX);
    let tx = client.transaction().await?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('suiftly raw log retention policy'))",
        &[],
    )
    .await?;
    let current = tx
        .query_opt(
            "SELECT (config->>'drop_after')::interval = make_interval(hours => $1) \
                    AND schedule_interval = $2::text::interval \
             FROM timescaledb_information.jobs \
             WHERE proc_name = 'policy_retention' AND hypertable_name = 'haproxy_raw_logs' \
               AND hypertable_schema = current_schema()",
            &[&hours, &POLICY_SCHEDULE],
        )
        .await?;
    if current.is_some_and(|r| r.get::<_, bool>(0)) {
        tx.commit().await?;
        return Ok(RetentionPolicy::Unchanged);
    }
    tx.execute(
        "SELECT remove_retention_policy('haproxy_raw_logs', if_exists => true)",
        &[],
    )
    .await?;
    tx.execute(
        "SELECT add_retention_policy('haproxy_raw_logs', drop_after => make_interval(hours => $1), \
                                     schedule_interval => $2::text::interval)",
        &[&hours, &POLICY_SCHEDULE],
    )
    .await?;
    tx.commit().await?;
    info!(
        retention_hours = hours,
        "timescaledb retention policy set from storage.retention_hours"
    );
    Ok(RetentionPolicy::Set)
}

/// The hypertable's policies as TimescaleDB reports them: (proc name, config) per job.
pub async fn policies(client: &Client) -> Result<Vec<(String, String)>, DbError> {
    let rows = client
        .query(
            "SELECT proc_name::text, config::text FROM timescaledb_information.jobs \
             WHERE hypertable_name = 'haproxy_raw_logs' AND hypertable_schema = current_schema() \
             ORDER BY proc_name",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}
