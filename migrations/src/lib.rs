//! The schema: every `V<n>__<name>.sql` file in this directory, applied in order by refinery.
//!
//! A crate of its own so that each stage (ingest, aggregate, api) can apply the same schema in
//! its tests without depending on another stage. Versions so far: V1–V3 ingest, V4 metering,
//! V10–V12 the customer domain (built in parallel, hence the gap), V26 the hypertable's
//! settings. A new migration takes the
//! next number after the highest one: refinery refuses to apply a lower version to a database
//! that already has a higher one.

use tokio_postgres::Client;
use tracing::info;

mod embedded {
    refinery::embed_migrations!(".");
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("migration failed: {0}")]
    Refinery(#[from] refinery::Error),
    #[error("migration lock: {0}")]
    Lock(#[from] tokio_postgres::Error),
}

/// Key of the session advisory lock held while migrating.
const MIGRATION_LOCK: i64 = 0x5375_6966_746c_7901; // "Suiftly" + 1

/// Applies every pending migration; returns the versions applied now.
///
/// Refinery itself does not lock: two ingestors starting together on a fresh database would
/// both run V1 and one would fail half-way. A session advisory lock makes the second wait and
/// then find nothing left to apply.
pub async fn migrate(client: &mut Client) -> Result<Vec<i32>, MigrateError> {
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
