//! PostgreSQL access: the pool and the customer row helpers shared by handlers.

use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use suiftly_billing::MoneyState;
use tokio_postgres::NoTls;

use crate::error::ApiError;

#[derive(Debug, thiserror::Error)]
pub enum PoolSetupError {
    #[error("invalid connection string: {0}")]
    Conninfo(#[from] tokio_postgres::Error),
    #[error("building the pool: {0}")]
    Build(#[from] deadpool_postgres::BuildError),
}

/// A pool over `conninfo` (libpq key=value or URL). The parsed config carries the database
/// name, so deadpool's "dbname required" pitfall does not apply.
pub fn pool(conninfo: &str, max_size: usize) -> Result<Pool, PoolSetupError> {
    let pg: tokio_postgres::Config = conninfo.parse()?;
    let mgr = Manager::from_config(
        pg,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Ok(Pool::builder(mgr)
        .max_size(max_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(std::time::Duration::from_secs(5)))
        .create_timeout(Some(std::time::Duration::from_secs(5)))
        .build()?)
}

/// Locks the caller's customer row for the rest of the transaction (serializes cost checks)
/// and returns its money state.
pub async fn lock_money(
    client: &impl GenericClient,
    customer_id: i32,
) -> Result<MoneyState, ApiError> {
    let row = client
        .query_opt(
            "SELECT current_balance_usd_cents, max_monthly_usd_cents, current_month_charged_usd_cents
             FROM customers WHERE customer_id = $1 FOR UPDATE",
            &[&customer_id],
        )
        .await?
        .ok_or(ApiError::Unauthorized)?;
    Ok(MoneyState {
        balance_cents: row.get(0),
        max_monthly_cents: row.get(1),
        month_charged_cents: row.get(2),
    })
}
