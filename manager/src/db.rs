//! The manager's connection pool.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("invalid connection string: {0}")]
    Conninfo(#[from] tokio_postgres::Error),
    #[error("building the pool: {0}")]
    Build(#[from] deadpool_postgres::BuildError),
}

/// A pool whose sessions end a transaction left idle for `idle_in_transaction` (a leader
/// frozen inside a fenced transaction must not hold the lease row's share lock for long: the
/// server ends its session and a standby can take over), with UTC as the session time zone.
pub fn pool(conninfo: &str, size: usize, idle_in_transaction: Duration) -> Result<Pool, PoolError> {
    let mut pg: tokio_postgres::Config = conninfo.parse()?;
    let ms = idle_in_transaction.as_millis().max(1);
    pg.options(format!(
        "-c idle_in_transaction_session_timeout={ms} -c TimeZone=UTC -c lock_timeout=30000"
    ));
    let mgr = Manager::from_config(
        pg,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Ok(Pool::builder(mgr)
        .max_size(size.max(2))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(30)))
        .create_timeout(Some(Duration::from_secs(10)))
        .build()?)
}
