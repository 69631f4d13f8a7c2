//! The schema: every `V<n>__<name>.sql` file in this directory, applied in order by refinery.
//!
//! A crate of its own so that each stage (ingest, aggregate, api) can apply the same schema in
//! its tests without depending on another stage. Versions so far: V1–V3 ingest, V4 metering,
//! V10–V12 the customer domain (built in parallel, hence the gap), V13 ledger and usage
//! constraints (security review). A new migration takes the
//! next number after the highest one: refinery refuses to apply a lower version to a database
//! that already has a higher one.

use tokio_postgres::Client;
use tracing::info;

mod embedded {
    refinery::embed_migrations!(".");
}

#[derive(Debug, thiserror::Error)]
#[error("migration failed: {0}")]
pub struct MigrateError(#[from] refinery::Error);

/// Applies every pending migration; returns the versions applied now.
pub async fn migrate(client: &mut Client) -> Result<Vec<i32>, MigrateError> {
    let report = embedded::migrations::runner().run_async(client).await?;
    let applied: Vec<i32> = report
        .applied_migrations()
        .iter()
        .map(|m| m.version())
        .collect();
    info!(applied = ?applied, "migrations applied");
    Ok(applied)
}
