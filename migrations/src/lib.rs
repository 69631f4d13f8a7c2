//! The schema: every `V<n>__<name>.sql` file in this directory, applied in order by refinery,
//! and [`connect`], the one way a stage opens a connection to it.
//!
//! A crate of its own so that each stage (ingest, aggregate, api) can apply the same schema in
//! its tests without depending on another stage. Versions so far: V1–V3 ingest, V4 metering,
//! V10–V12 the customer domain (built in parallel, hence the gap), V13 ledger and usage
//! constraints (security review). A new migration takes the
//! next number after the highest one: refinery refuses to apply a lower version to a database
//! that already has a higher one.

use tokio_postgres::{Client, NoTls};
use tracing::{info, warn};

mod embedded {
    refinery::embed_migrations!(".");
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("migration failed: {0}")]
    Refinery(#[from] refinery::Error),
    #[error("migration failed: postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
}

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

/// Applies every pending migration; returns the versions applied now. Waits for locks as long
/// as it takes (a migration must not fail half-way because a query held a table).
pub async fn migrate(client: &mut Client) -> Result<Vec<i32>, MigrateError> {
    client.batch_execute("SET lock_timeout = 0").await?;
    let report = embedded::migrations::runner().run_async(client).await?;
    let applied: Vec<i32> = report
        .applied_migrations()
        .iter()
        .map(|m| m.version())
        .collect();
    info!(applied = ?applied, "migrations applied");
    Ok(applied)
}
