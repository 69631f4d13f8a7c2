//! The schema: every `V<n>__<name>.sql` file in this directory, applied in order by refinery,
//! and [`connect`], the one way a stage opens a connection to it.
//!
//! A crate of its own so that each stage (ingest, aggregate, api) can apply the same schema in
//! its tests without depending on another stage. Versions so far: V1–V3 ingest, V4 metering,
//! V10–V12 the customer domain (built in parallel, hence the gap), V13 ledger and usage
//! constraints (security review), V26 the hypertable's settings, V28 per-ingestor
//! state (several ingestors, one database). A new migration takes the
//! next number after the highest one: refinery refuses to apply a lower version to a database
//! that already has a higher one.

use tokio_postgres::{Client, NoTls};
use tracing::{info, warn};

mod embedded {
    refinery::embed_migrations!(".");
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("migration failed: {0}{causes}", causes = causes(.0))]
    Refinery(#[from] refinery::Error),
    /// The checks and the lock around refinery.
    #[error("migration failed: postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// The database holds the TimescaleDB extension, but the server does not preload it: every
    /// DDL statement (even refinery's own bookkeeping) would fail inside the extension.
    #[error(
        "this database uses timescaledb (haproxy_raw_logs is a hypertable), but the postgresql server does not preload it (shared_preload_libraries = {preload:?}); install timescaledb for this postgresql version, set shared_preload_libraries = 'timescaledb' and restart postgresql (README, \"TimescaleDB\")"
    )]
    TimescaledbNotPreloaded { preload: String },
}

/// The error's sources (refinery's own message omits the server's).
fn causes(e: &refinery::Error) -> String {
    let mut out = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Key of the session advisory lock held while migrating.
const MIGRATION_LOCK: i64 = 0x5375_6966_746c_7901; // "Suiftly" + 1

/// Opens a connection (libpq key=value string or URL) with the session settings every stage
/// relies on, its driver task spawned on the current runtime (it ends when the client drops):
/// - `TIME ZONE 'UTC'`: `date_trunc` on `timestamptz` follows the session zone, and every
///   bucket (minutes, hours, partitions) is UTC;
/// - `lock_timeout = '10s'`: DDL (partitions) and upserts must not queue behind a long query
///   and block every write after them; a timed-out statement is retried by its caller.
pub async fn connect(conninfo: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(conninfo, NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            warn!(error = %e, "postgres connection closed");
        }
    });
    client
        .batch_execute("SET TIME ZONE 'UTC'; SET lock_timeout = '10s'")
        .await?;
    Ok(client)
}

/// The versions this build carries, ascending (what a fully migrated database has applied;
/// `suiftly check-config` compares).
pub fn versions() -> Vec<i32> {
    let mut v: Vec<i32> = embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| m.version())
        .collect();
    v.sort_unstable();
    v
}

/// Applies the pending migrations up to and including `version` (upgrade tests: a database as
/// an older release left it). No lock, no checks: tests only.
#[doc(hidden)]
pub async fn migrate_to(client: &mut Client, version: i32) -> Result<(), MigrateError> {
    embedded::migrations::runner()
        .set_target(refinery::Target::Version(version))
        .run_async(client)
        .await?;
    Ok(())
}

/// Applies every pending migration; returns the versions applied now.
///
/// Refinery itself does not lock: two ingestors starting together on a fresh database would
/// both run V1 and one would fail half-way. A session advisory lock makes the second wait and
/// then find nothing left to apply. Waits for locks as long as it takes (a migration must not
/// fail half-way because a query held a table).
pub async fn migrate(client: &mut Client) -> Result<Vec<i32>, MigrateError> {
    client.batch_execute("SET lock_timeout = 0").await?;
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'), \
                    current_setting('shared_preload_libraries')",
            &[],
        )
        .await?;
    let preload: String = row.get(1);
    if row.get::<_, bool>(0) && !preload.split(',').any(|l| l.trim() == "timescaledb") {
        return Err(MigrateError::TimescaledbNotPreloaded { preload });
    }
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let report = embedded::migrations::runner().run_async(client).await;
    // Unlock even after a failure (closing the session would release it too).
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    let report = report?;
    unlocked?;
    let applied: Vec<i32> = report
        .applied_migrations()
        .iter()
        .map(|m| m.version())
        .collect();
    info!(applied = ?applied, "migrations applied");
    Ok(applied)
}
