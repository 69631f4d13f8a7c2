//! Which PostgreSQL to use: `DATABASE_URL`, or a private cluster under the data directory.

use anyhow::{Context, Result};
use pgcluster::{ClusterOptions, PgCluster, timescaledb};
use tracing::info;

use crate::config::Config;

/// A connection string plus, for the embedded default, the cluster that must outlive every
/// connection (dropping it stops the server).
pub struct Database {
    pub conninfo: String,
    pub cluster: Option<PgCluster>,
    /// What the embedded default's start did about TimescaleDB (`None` for a database someone
    /// else runs), repeated in the storage line [`Database::migrate`] logs.
    pub timescaledb: Option<timescaledb::Status>,
}

impl Database {
    /// A database someone else runs (`DATABASE_URL`, a test's cluster): nothing to stop.
    pub fn external(conninfo: impl Into<String>) -> Database {
        Database {
            conninfo: conninfo.into(),
            cluster: None,
            timescaledb: None,
        }
    }

    pub fn open(cfg: &Config) -> Result<Database> {
        if let Some(url) = &cfg.database_url {
            return Ok(Database::external(url.clone()));
        }
        std::fs::create_dir_all(&cfg.data_dir)
            .with_context(|| format!("creating data dir {}", cfg.data_dir.display()))?;
        let data_dir = std::fs::canonicalize(&cfg.data_dir)?.join("postgres");
        info!(data_dir = %data_dir.display(), "no DATABASE_URL: starting embedded postgresql");
        // TimescaleDB when it is installed (raw rows then go into a hypertable), plain
        // PostgreSQL with native partitions otherwise; the storage line after migrating says
        // which.
        let (cluster, ts) = PgCluster::start_preferring_timescaledb(ClusterOptions {
            data_dir,
            port: cfg.embedded_postgres.port,
            database: "suiftly".into(),
            fsync: !cfg.embedded_postgres.fsync_off,
            tcp: false,
            extra_settings: Vec::new(),
        })
        .context("starting the embedded postgresql (set DATABASE_URL to use an external one)")?;
        let conninfo = cluster.connection_string();
        // Lets `suiftly loadgen` and operators' psql find the private cluster.
        std::fs::write(cfg.data_dir.join("conninfo"), &conninfo)?;
        info!(%conninfo, timescaledb = %ts, "embedded postgresql ready");
        Ok(Database {
            conninfo,
            cluster: Some(cluster),
            timescaledb: Some(ts),
        })
    }

    /// A temporary cluster (demo) unless DATABASE_URL is set.
    pub fn temporary(cfg: &Config) -> Result<Database> {
        if let Some(url) = &cfg.database_url {
            return Ok(Database::external(url.clone()));
        }
        let cluster = PgCluster::temporary().context("starting a temporary postgresql")?;
        Ok(Database {
            conninfo: cluster.connection_string(),
            cluster: Some(cluster),
            timescaledb: None,
        })
    }

    pub async fn migrate(&self) -> Result<()> {
        let mut client = suiftly_ingest::writer::connect(&self.conninfo)
            .await
            .with_context(|| format!("connecting to postgresql ({})", redact(&self.conninfo)))?;
        let checked = match suiftly_ingest::db::migrate(&mut client).await {
            Ok(_) => suiftly_ingest::timescale::check(&client).await,
            Err(e) => Err(e),
        };
        let storage = match checked {
            Ok(s) => s,
            // The embedded default started without a library it could not load: say why.
            Err(e) => match &self.timescaledb {
                Some(ts @ timescaledb::Status::Unloadable { .. }) => {
                    return Err(anyhow::Error::new(e).context(format!("embedded postgresql: {ts}")));
                }
                _ => return Err(e.into()),
            },
        };
        info!(storage = %storage, "raw log storage");
        Ok(())
    }
}

/// Hides a password in a connection string before it is logged.
pub fn redact(conninfo: &str) -> String {
    if let Some((scheme, rest)) = conninfo.split_once("://")
        && let Some((cred, host)) = rest.split_once('@')
    {
        let user = cred.split(':').next().unwrap_or("");
        return format!("{scheme}://{user}:***@{host}");
    }
    conninfo
        .split_whitespace()
        .map(|kv| {
            if kv.starts_with("password=") {
                "password=***"
            } else {
                kv
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
