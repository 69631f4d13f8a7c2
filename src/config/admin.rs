//! `[metrics]` and `[admin]`: the operator endpoints.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, ensure};
use serde::Deserialize;

use super::socket_addr;

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSection {
    /// Prometheus `/metrics` listen address; loopback by default.
    pub listen: String,
}

impl Default for MetricsSection {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9464".into(),
        }
    }
}

impl MetricsSection {
    pub fn validate(&self) -> Result<()> {
        socket_addr(&self.listen, "metrics.listen").map(drop)
    }
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSection {
    /// `GET /health`: 200 `{"status":"ok",…}`, or 503 while database writes fail or the spool
    /// is full. Loopback by default.
    pub listen: String,
    /// Bearer token for `POST /admin/sql` (and `suiftly sql`); default
    /// `<data_dir>/operator-token`, created with a random token (mode 0600) when missing.
    /// `SUIFTLY_OPERATOR_TOKEN` overrides.
    pub operator_token_file: Option<PathBuf>,
    /// Operator SQL over the PostgreSQL wire protocol (`psql`, Grafana), e.g.
    /// `"127.0.0.1:9466"`. Off unless set: it is one more port to own. The password is the
    /// operator token (SCRAM-SHA-256, so it never crosses the wire); read-only.
    pub pgwire_listen: Option<String>,
    /// Concurrent PostgreSQL-protocol sessions; further connections are closed at once.
    pub pgwire_max_connections: usize,
    /// Memory pool shared by all operator queries (both front-ends); a query that needs more
    /// fails (nothing spills to disk).
    pub sql_memory_limit_bytes: usize,
    /// Rows one operator query may return.
    pub sql_max_result_rows: u64,
    /// Bytes (Arrow in-memory size) one operator query may return.
    pub sql_max_result_bytes: u64,
    /// Wall time one operator statement may run.
    pub sql_statement_timeout_ms: u64,
    /// PostgreSQL connections operator table scans may hold at once.
    pub sql_max_pg_connections: usize,
    /// Longest `haproxy_raw_logs` time range one operator query may scan.
    pub sql_raw_logs_max_range_hours: u64,
}

impl Default for AdminSection {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9465".into(),
            operator_token_file: None,
            pgwire_listen: None,
            pgwire_max_connections: 16,
            sql_memory_limit_bytes: 256 << 20,
            sql_max_result_rows: 1_000_000,
            sql_max_result_bytes: 64 << 20,
            sql_statement_timeout_ms: 60_000,
            sql_max_pg_connections: 4,
            sql_raw_logs_max_range_hours: 24,
        }
    }
}

impl AdminSection {
    pub fn sql_limits(&self) -> suiftly_aggregate::guard::SqlLimits {
        suiftly_aggregate::guard::SqlLimits {
            memory_limit_bytes: self.sql_memory_limit_bytes,
            max_result_rows: self.sql_max_result_rows,
            max_result_bytes: self.sql_max_result_bytes,
            statement_timeout: Duration::from_millis(self.sql_statement_timeout_ms),
            max_pg_connections: self.sql_max_pg_connections,
            raw_logs_max_range: Duration::from_secs(self.sql_raw_logs_max_range_hours * 3600),
        }
    }

    pub fn validate(&self) -> Result<()> {
        socket_addr(&self.listen, "admin.listen")?;
        if let Some(l) = &self.pgwire_listen {
            socket_addr(l, "admin.pgwire_listen")?;
        }
        ensure!(
            (1..=1000).contains(&self.pgwire_max_connections),
            "admin.pgwire_max_connections must be within 1..=1000"
        );
        ensure!(
            (1 << 20..=64 << 30).contains(&self.sql_memory_limit_bytes)
                && (1..=100_000_000).contains(&self.sql_max_result_rows)
                && (1024..=4 << 30).contains(&self.sql_max_result_bytes),
            "admin.sql_memory_limit_bytes must be within 1 MiB..=64 GiB, sql_max_result_rows within 1..=100000000, sql_max_result_bytes within 1024..=4 GiB"
        );
        ensure!(
            (100..=3_600_000).contains(&self.sql_statement_timeout_ms)
                && (1..=64).contains(&self.sql_max_pg_connections)
                && (1..=24 * 366).contains(&self.sql_raw_logs_max_range_hours),
            "admin.sql_statement_timeout_ms must be within 100..=3600000, sql_max_pg_connections within 1..=64, sql_raw_logs_max_range_hours within 1..=8784"
        );
        Ok(())
    }
}
