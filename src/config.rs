//! The `suiftly` configuration file (TOML) and its environment overrides.
//!
//! Every field has a default so an empty file (or none) runs a loopback-only ingestor with an
//! embedded PostgreSQL. Units are in the field names. Environment variables win over the file:
//! `DATABASE_URL`, `SUIFTLY_DATA_DIR`, `SUIFTLY_METRICS_LISTEN`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Deserialize;
use suiftly_ingest::listener::{BatchLimits, ListenerConfig};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the embedded PostgreSQL cluster (and later the spool) live.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// External PostgreSQL; when absent a private cluster is started under `data_dir`.
    #[serde(default)]
    pub database_url: Option<String>,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub batch: BatchConfig,
    #[serde(default)]
    pub storage: StorageConfig,
    #[serde(default)]
    pub embedded_postgres: EmbeddedPgConfig,
    #[serde(default)]
    pub spool: SpoolSettings,
    #[serde(default)]
    pub aggregate: AggregateSettings,
    #[serde(default = "default_listeners", rename = "listener")]
    pub listeners: Vec<ListenerConfig>,
    /// `suiftly api`: the customer API (secrets come from the environment only).
    #[serde(default)]
    pub api: ApiSettings,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSettings {
    #[serde(default = "default_api_listen")]
    pub listen: String,
    /// Browser origin of the dashboard, allowed by CORS with credentials.
    #[serde(default = "default_dashboard_origin")]
    pub dashboard_origin: String,
    /// Production mode: refuses MOCK_AUTH and the development secrets; Secure cookies.
    #[serde(default)]
    pub production: bool,
    #[serde(default = "default_api_body")]
    pub max_body_bytes: usize,
    #[serde(default = "default_api_timeout")]
    pub request_timeout_ms: u64,
    #[serde(default = "default_ip_rps")]
    pub ip_requests_per_second: u32,
    #[serde(default = "default_ip_burst")]
    pub ip_burst: u32,
    #[serde(default = "default_customer_rps")]
    pub customer_requests_per_second: u32,
    #[serde(default = "default_customer_burst")]
    pub customer_burst: u32,
    #[serde(default = "default_api_pool")]
    pub db_pool_size: usize,
    /// A request head must be complete within this long of its first byte (slowloris).
    #[serde(default = "default_api_header_timeout")]
    pub header_read_timeout_ms: u64,
    /// A connection with no request in flight and no traffic for this long is closed.
    #[serde(default = "default_api_idle_timeout")]
    pub idle_timeout_ms: u64,
    /// Open connections at most; beyond it new ones wait in the kernel's backlog.
    #[serde(default = "default_api_max_connections")]
    pub max_connections: usize,
    /// Prometheus `/metrics` of `suiftly api` (not served on the public `listen` port).
    #[serde(default = "default_api_metrics_listen")]
    pub metrics_listen: String,
    /// The dashboard's build output, served under `/app/` (env `SUIFTLY_DASHBOARD_DIR`); when
    /// it holds no `index.html` the API runs without the dashboard (a warning says how to build it).
    #[serde(default = "default_dashboard_dir")]
    pub dashboard_dir: PathBuf,
    /// `suiftly run` serves the API (and the dashboard) itself, on `listen`, with the live
    /// tail straight from its aggregator: the single-machine default. Off: run API replicas
    /// with `suiftly api` (and `[api.live] source`).
    #[serde(default = "yes")]
    pub in_run: bool,
    /// The live tail (`/stats/live`, the stats' open bucket).
    #[serde(default)]
    pub live: crate::live_feed::LiveSettings,
}
fn default_api_header_timeout() -> u64 {
    10_000
}
fn default_api_idle_timeout() -> u64 {
    5_000
}
fn default_api_max_connections() -> usize {
    1024
}
fn default_api_metrics_listen() -> String {
    "127.0.0.1:9471".into()
}

impl Default for ApiSettings {
    fn default() -> Self {
        toml::from_str("").expect("every api field has a default")
    }
}

fn default_api_listen() -> String {
    "127.0.0.1:9470".into()
}
fn default_dashboard_origin() -> String {
    "http://localhost:5173".into()
}
fn default_api_body() -> usize {
    16 * 1024
}
fn default_api_timeout() -> u64 {
    10_000
}
fn default_ip_rps() -> u32 {
    50
}
fn default_ip_burst() -> u32 {
    100
}
fn default_customer_rps() -> u32 {
    20
}
fn default_customer_burst() -> u32 {
    60
}
fn default_api_pool() -> usize {
    16
}
fn default_dashboard_dir() -> PathBuf {
    PathBuf::from("webapp/dist")
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}

fn default_listeners() -> Vec<ListenerConfig> {
    toml::from_str::<ListenerFile>(
        r#"
        [[listener]]
        name = "udp"
        kind = "udp"
        address = "127.0.0.1:5514"
        "#,
    )
    .expect("static default listener")
    .listener
}

#[derive(Deserialize)]
struct ListenerFile {
    listener: Vec<ListenerConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Prometheus `/metrics` listen address; loopback by default.
    #[serde(default = "default_metrics_listen")]
    pub listen: String,
}
fn default_metrics_listen() -> String {
    "127.0.0.1:9464".into()
}
impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: default_metrics_listen(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// `GET /health`: 200 `{"status":"ok",…}`, or 503 while database writes fail or the spool
    /// is full. Loopback by default.
    #[serde(default = "default_admin_listen")]
    pub listen: String,
    /// Bearer token for `POST /admin/sql` (and `suiftly sql`); default
    /// `<data_dir>/operator-token`, created with a random token (mode 0600) when missing.
    /// `SUIFTLY_OPERATOR_TOKEN` overrides.
    #[serde(default)]
    pub operator_token_file: Option<PathBuf>,
    /// Operator SQL over the PostgreSQL wire protocol (`psql`, Grafana), e.g.
    /// `"127.0.0.1:9466"`. Off unless set: it is one more port to own. The password is the
    /// operator token (SCRAM-SHA-256, so it never crosses the wire); read-only. Needs
    /// metering (`[aggregate] enabled`). `SUIFTLY_PGWIRE_LISTEN` overrides.
    #[serde(default)]
    pub pgwire_listen: Option<String>,
    /// Concurrent PostgreSQL-protocol sessions; further connections are closed at once.
    #[serde(default = "default_pgwire_max_connections")]
    pub pgwire_max_connections: usize,
    /// Memory pool shared by all operator queries (both front-ends); a query that needs more
    /// fails (nothing spills to disk).
    #[serde(default = "default_sql_memory")]
    pub sql_memory_limit_bytes: usize,
    /// Rows one operator query may return.
    #[serde(default = "default_sql_rows")]
    pub sql_max_result_rows: u64,
    /// Bytes (Arrow in-memory size) one operator query may return.
    #[serde(default = "default_sql_bytes")]
    pub sql_max_result_bytes: u64,
    /// Wall time one operator statement may run.
    #[serde(default = "default_sql_timeout")]
    pub sql_statement_timeout_ms: u64,
    /// PostgreSQL connections operator table scans may hold at once.
    #[serde(default = "default_sql_pg_connections")]
    pub sql_max_pg_connections: usize,
    /// Longest `haproxy_raw_logs` time range one operator query may scan.
    #[serde(default = "default_sql_raw_range")]
    pub sql_raw_logs_max_range_hours: u64,
}
fn default_sql_memory() -> usize {
    256 << 20
}
fn default_sql_rows() -> u64 {
    1_000_000
}
fn default_sql_bytes() -> u64 {
    64 << 20
}
fn default_sql_timeout() -> u64 {
    60_000
}
fn default_sql_pg_connections() -> usize {
    4
}
fn default_sql_raw_range() -> u64 {
    24
}
impl AdminConfig {
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
}
fn default_admin_listen() -> String {
    "127.0.0.1:9465".into()
}
fn default_pgwire_max_connections() -> usize {
    16
}
impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: default_admin_listen(),
            operator_token_file: None,
            pgwire_listen: None,
            pgwire_max_connections: default_pgwire_max_connections(),
            sql_memory_limit_bytes: default_sql_memory(),
            sql_max_result_rows: default_sql_rows(),
            sql_max_result_bytes: default_sql_bytes(),
            sql_statement_timeout_ms: default_sql_timeout(),
            sql_max_pg_connections: default_sql_pg_connections(),
            sql_raw_logs_max_range_hours: default_sql_raw_range(),
        }
    }
}

/// Streaming metering (issue 4). Needs the spool: after a restart the aggregator replays the
/// spool from its committed position.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateSettings {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// A minute settles once the watermark is this far past its end.
    #[serde(default = "default_lateness")]
    pub allowed_lateness_ms: u64,
    /// When the input is caught up, the watermark is at least `now - idle_lag_ms`.
    #[serde(default = "default_idle_lag")]
    pub idle_lag_ms: u64,
    #[serde(default = "default_settle_interval")]
    pub settle_interval_ms: u64,
    /// Committed batches queued between the COPY consumer and the aggregator (block when full).
    #[serde(default = "default_agg_input")]
    pub input_capacity: usize,
    /// Settled-window messages a subscriber may lag behind before it is told it lagged.
    #[serde(default = "default_agg_subscribers")]
    pub subscriber_capacity: usize,
}
fn default_lateness() -> u64 {
    30_000
}
fn default_idle_lag() -> u64 {
    5_000
}
fn default_settle_interval() -> u64 {
    1_000
}
fn default_agg_input() -> usize {
    16
}
fn default_agg_subscribers() -> usize {
    64
}
impl Default for AggregateSettings {
    fn default() -> Self {
        toml::from_str("").expect("empty aggregate section is valid")
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    #[serde(default = "default_max_rows")]
    pub max_rows: usize,
    #[serde(default = "default_max_age_ms")]
    pub max_age_ms: u64,
    /// Batches waiting for the COPY writer before listeners block.
    #[serde(default = "default_channel")]
    pub channel_capacity: usize,
    /// Reject rows more than this far ahead of the receive clock.
    #[serde(default = "default_max_future")]
    pub max_future_secs: u64,
}
fn default_max_rows() -> usize {
    5_000
}
fn default_max_age_ms() -> u64 {
    200
}
fn default_channel() -> usize {
    8
}
fn default_max_future() -> u64 {
    3_600
}
impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_rows: default_max_rows(),
            max_age_ms: default_max_age_ms(),
            channel_capacity: default_channel(),
            max_future_secs: default_max_future(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Raw rows are kept this long (partitions dropped after); rows older on arrival are
    /// rejected verbatim as `timestamp_out_of_range`.
    #[serde(default = "default_retention")]
    pub retention_hours: u64,
    #[serde(default = "default_ahead")]
    pub partitions_ahead_hours: i64,
    #[serde(default = "default_maint")]
    pub maintenance_interval_secs: u64,
}
fn default_retention() -> u64 {
    168
}
fn default_ahead() -> i64 {
    6
}
fn default_maint() -> u64 {
    300
}
impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            retention_hours: default_retention(),
            partitions_ahead_hours: default_ahead(),
            maintenance_interval_secs: default_maint(),
        }
    }
}

/// The disk spool: a line is accepted once it is in the spool, and stored exactly once.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolSettings {
    /// Off: listeners hand parsed batches straight to the writer (lines in memory are lost on
    /// a crash). On by default.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Default `<data_dir>/spool`.
    #[serde(default)]
    pub dir: Option<std::path::PathBuf>,
    /// `every_batch` (fsync every receive batch), `interval` (every `fsync_interval_ms`), or
    /// `never` (survives kill -9, not a machine crash).
    #[serde(default = "default_fsync")]
    pub fsync: String,
    #[serde(default = "default_fsync_interval")]
    pub fsync_interval_ms: u64,
    #[serde(default = "default_segment")]
    pub segment_bytes: u64,
    /// When the spool holds this much unstored data, listeners stop reading their sockets.
    #[serde(default = "default_spool_max")]
    pub max_bytes: u64,
}
fn yes() -> bool {
    true
}
fn default_fsync() -> String {
    "interval".into()
}
fn default_fsync_interval() -> u64 {
    100
}
fn default_segment() -> u64 {
    64 << 20
}
fn default_spool_max() -> u64 {
    4 << 30
}
impl Default for SpoolSettings {
    fn default() -> Self {
        toml::from_str("").expect("defaults")
    }
}

impl SpoolSettings {
    pub fn spool_config(&self) -> Result<suiftly_spool::SpoolConfig> {
        use suiftly_spool::FsyncPolicy;
        let fsync = match self.fsync.as_str() {
            "every_batch" => FsyncPolicy::EveryBatch,
            "interval" => FsyncPolicy::IntervalMs(self.fsync_interval_ms.max(1)),
            "never" => FsyncPolicy::Never,
            other => anyhow::bail!("spool.fsync {other:?}: use every_batch, interval or never"),
        };
        Ok(suiftly_spool::SpoolConfig {
            segment_bytes: self.segment_bytes,
            max_total_bytes: self.max_bytes,
            fsync,
        })
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct EmbeddedPgConfig {
    /// Port for the private cluster's socket name; a free one is picked when absent.
    #[serde(default)]
    pub port: Option<u16>,
    /// Turn off only for throwaway data.
    #[serde(default)]
    pub fsync_off: bool,
}

impl Config {
    /// Reads `path` (if given) and applies environment overrides.
    pub fn load(path: Option<&Path>) -> Result<Config> {
        let mut cfg: Config = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading config {}", p.display()))?;
                toml::from_str(&text).with_context(|| format!("parsing config {}", p.display()))?
            }
            None => toml::from_str("").expect("empty config is valid"),
        };
        if let Ok(url) = std::env::var("DATABASE_URL")
            && !url.is_empty()
        {
            cfg.database_url = Some(url);
        }
        if let Ok(d) = std::env::var("SUIFTLY_DATA_DIR")
            && !d.is_empty()
        {
            cfg.data_dir = d.into();
        }
        if let Ok(m) = std::env::var("SUIFTLY_METRICS_LISTEN")
            && !m.is_empty()
        {
            cfg.metrics.listen = m;
        }
        if let Ok(m) = std::env::var("SUIFTLY_ADMIN_LISTEN")
            && !m.is_empty()
        {
            cfg.admin.listen = m;
        }
        if let Ok(m) = std::env::var("SUIFTLY_PGWIRE_LISTEN")
            && !m.is_empty()
        {
            cfg.admin.pgwire_listen = Some(m);
        }
        if let Ok(m) = std::env::var("SUIFTLY_API_LISTEN")
            && !m.is_empty()
        {
            cfg.api.listen = m;
        }
        if let Ok(m) = std::env::var("SUIFTLY_API_METRICS_LISTEN")
            && !m.is_empty()
        {
            cfg.api.metrics_listen = m;
        }
        if let Ok(d) = std::env::var("SUIFTLY_DASHBOARD_DIR")
            && !d.is_empty()
        {
            cfg.api.dashboard_dir = d.into();
        }
        if let Ok(p) = std::env::var("SUIFTLY_API_PRODUCTION")
            && !p.is_empty()
        {
            cfg.api.production = matches!(p.as_str(), "1" | "true" | "yes");
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Range checks the types cannot express (and that would otherwise overflow later).
    pub fn validate(&self) -> Result<()> {
        let b = &self.batch;
        anyhow::ensure!(
            (1..=1_000_000).contains(&b.max_rows),
            "batch.max_rows must be within 1..=1000000"
        );
        anyhow::ensure!(
            (1..=60_000).contains(&b.max_age_ms),
            "batch.max_age_ms must be within 1..=60000"
        );
        anyhow::ensure!(
            (1..=10_000).contains(&b.channel_capacity),
            "batch.channel_capacity must be within 1..=10000"
        );
        anyhow::ensure!(
            b.max_future_secs <= 30 * 24 * 3600,
            "batch.max_future_secs must be at most 30 days"
        );
        let s = &self.storage;
        anyhow::ensure!(
            (1..=24 * 365 * 10).contains(&s.retention_hours),
            "storage.retention_hours must be within 1..=87600"
        );
        anyhow::ensure!(
            (0..=24 * 31).contains(&s.partitions_ahead_hours),
            "storage.partitions_ahead_hours must be within 0..=744"
        );
        anyhow::ensure!(
            s.maintenance_interval_secs >= 1,
            "storage.maintenance_interval_secs must be at least 1"
        );
        self.spool.spool_config()?;
        anyhow::ensure!(
            self.spool.segment_bytes >= 1 << 16,
            "spool.segment_bytes must be at least 65536"
        );
        anyhow::ensure!(
            self.spool.max_bytes >= 2 * self.spool.segment_bytes.max(2 << 20),
            "spool.max_bytes must be at least twice spool.segment_bytes (and at least 4 MiB)"
        );
        let a = &self.aggregate;
        anyhow::ensure!(
            !a.enabled || self.spool.enabled,
            "aggregate.enabled needs spool.enabled (metering replays the spool after a restart); set aggregate.enabled = false to run without metering"
        );
        anyhow::ensure!(
            a.allowed_lateness_ms <= 24 * 3600 * 1000 && a.idle_lag_ms <= 3600 * 1000,
            "aggregate.allowed_lateness_ms must be at most a day and aggregate.idle_lag_ms at most an hour"
        );
        anyhow::ensure!(
            (10..=60_000).contains(&a.settle_interval_ms),
            "aggregate.settle_interval_ms must be within 10..=60000"
        );
        anyhow::ensure!(
            (1..=10_000).contains(&a.input_capacity)
                && (1..=100_000).contains(&a.subscriber_capacity),
            "aggregate.input_capacity must be within 1..=10000 and subscriber_capacity within 1..=100000"
        );
        if let Some(l) = &self.admin.pgwire_listen {
            l.parse::<std::net::SocketAddr>()
                .map_err(|_| anyhow::anyhow!("admin.pgwire_listen {l:?} is not ip:port"))?;
        }
        anyhow::ensure!(
            (1..=1000).contains(&self.admin.pgwire_max_connections),
            "admin.pgwire_max_connections must be within 1..=1000"
        );
        let ad = &self.admin;
        anyhow::ensure!(
            (1 << 20..=64 << 30).contains(&ad.sql_memory_limit_bytes)
                && (1..=100_000_000).contains(&ad.sql_max_result_rows)
                && (1024..=4 << 30).contains(&ad.sql_max_result_bytes),
            "admin.sql_memory_limit_bytes must be within 1 MiB..=64 GiB, sql_max_result_rows within 1..=100000000, sql_max_result_bytes within 1024..=4 GiB"
        );
        anyhow::ensure!(
            (100..=3_600_000).contains(&ad.sql_statement_timeout_ms)
                && (1..=64).contains(&ad.sql_max_pg_connections)
                && (1..=24 * 366).contains(&ad.sql_raw_logs_max_range_hours),
            "admin.sql_statement_timeout_ms must be within 100..=3600000, sql_max_pg_connections within 1..=64, sql_raw_logs_max_range_hours within 1..=8784"
        );
        let a = &self.api;
        anyhow::ensure!(
            (1024..=16 << 20).contains(&a.max_body_bytes),
            "api.max_body_bytes must be within 1024..=16777216"
        );
        anyhow::ensure!(
            (100..=300_000).contains(&a.request_timeout_ms),
            "api.request_timeout_ms must be within 100..=300000"
        );
        anyhow::ensure!(
            (1..=1000).contains(&a.db_pool_size),
            "api.db_pool_size must be within 1..=1000"
        );
        a.live.validate()?;
        anyhow::ensure!(
            (100..=300_000).contains(&a.header_read_timeout_ms)
                && (100..=3_600_000).contains(&a.idle_timeout_ms)
                && (1..=1_000_000).contains(&a.max_connections),
            "api.header_read_timeout_ms must be within 100..=300000, idle_timeout_ms within 100..=3600000, max_connections within 1..=1000000"
        );
        anyhow::ensure!(self.listeners.len() < 0x8000, "too many listeners");
        let mut names = std::collections::HashSet::new();
        for l in &self.listeners {
            l.validate()?;
            anyhow::ensure!(
                names.insert(&l.name),
                "listener name {:?} is used twice",
                l.name
            );
        }
        Ok(())
    }

    pub fn aggregator_config(&self) -> suiftly_aggregate::service::AggregatorConfig {
        let a = &self.aggregate;
        suiftly_aggregate::service::AggregatorConfig {
            window: suiftly_aggregate::window::WindowConfig {
                allowed_lateness_us: a.allowed_lateness_ms as i64 * 1000,
                idle_lag_us: a.idle_lag_ms as i64 * 1000,
            },
            settle_interval: Duration::from_millis(a.settle_interval_ms),
            subscriber_capacity: a.subscriber_capacity,
            max_backoff: Duration::from_secs(5),
        }
    }

    /// The operator token: `SUIFTLY_OPERATOR_TOKEN`, else the token file; `create` makes the
    /// file with a random token when it is missing (the server), otherwise it is an error
    /// (the CLI).
    pub fn operator_token(&self, create: bool) -> Result<String> {
        if let Ok(t) = std::env::var("SUIFTLY_OPERATOR_TOKEN")
            && !t.is_empty()
        {
            crate::admin_sql::check_operator_token(&t, "SUIFTLY_OPERATOR_TOKEN")?;
            return Ok(t);
        }
        let path = self
            .admin
            .operator_token_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("operator-token"));
        match std::fs::read_to_string(&path) {
            Ok(t) if !t.trim().is_empty() => {
                crate::admin_sql::check_operator_token_file(&path, t.trim())?;
                return Ok(t.trim().to_owned());
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        }
        anyhow::ensure!(
            create,
            "no operator token: set SUIFTLY_OPERATOR_TOKEN or start `suiftly run` once (it writes {})",
            path.display()
        );
        use std::io::{Read, Write};
        use std::os::unix::fs::OpenOptionsExt;
        let mut raw = [0u8; 24];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut raw)?;
        let token: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        f.write_all(token.as_bytes())?;
        tracing::info!(path = %path.display(), "operator token created");
        Ok(token)
    }

    pub fn limits(&self) -> BatchLimits {
        BatchLimits {
            max_rows: self.batch.max_rows.max(1),
            max_age: Duration::from_millis(self.batch.max_age_ms.max(1)),
            max_past: self.retention(),
            max_future: Duration::from_secs(self.batch.max_future_secs),
        }
    }

    pub fn spool_dir(&self) -> std::path::PathBuf {
        self.spool
            .dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("spool"))
    }

    pub fn retention(&self) -> Duration {
        Duration::from_secs(self.storage.retention_hours * 3600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_example_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("suiftly.example.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let cfg: Config = toml::from_str(&text).unwrap();
        assert!(!cfg.listeners.is_empty());
        cfg.validate().unwrap();
    }

    #[test]
    fn empty_config_has_loopback_default() {
        let cfg: Config = toml::from_str("").unwrap();
        assert_eq!(cfg.listeners.len(), 1);
        assert_eq!(cfg.listeners[0].address, "127.0.0.1:5514");
        assert_eq!(cfg.batch.max_rows, 5000);
        assert_eq!(cfg.batch.max_age_ms, 200);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let e = toml::from_str::<Config>("max_rowz = 3").unwrap_err();
        assert!(e.to_string().contains("max_rowz"), "{e}");
    }

    #[test]
    fn out_of_range_values_are_refused() {
        for (text, needle) in [
            ("[batch]\nmax_age_ms = 18446744073709551615\n", "max_age_ms"),
            ("[batch]\nmax_rows = 0\n", "max_rows"),
            (
                "[storage]\nretention_hours = 18446744073709551615\n",
                "retention_hours",
            ),
            (
                "[[listener]]\nname = \"u\"\nkind = \"unix\"\naddress = \"/tmp/x.sock\"\nsocket_mode = 660\n",
                "octal",
            ),
            (
                "[[listener]]\nname = \"a\"\nkind = \"udp\"\naddress = \"127.0.0.1:1\"\n[[listener]]\nname = \"a\"\nkind = \"udp\"\naddress = \"127.0.0.1:2\"\n",
                "twice",
            ),
        ] {
            let cfg: Config = toml::from_str(text).unwrap();
            let e = cfg.validate().unwrap_err();
            assert!(format!("{e:#}").contains(needle), "{text}: {e:#}");
        }
        let cfg: Config = toml::from_str("").unwrap();
        cfg.validate().unwrap();
    }

    #[test]
    fn public_bind_needs_allowlist() {
        let cfg: Config = toml::from_str(
            "[[listener]]\nname = \"pub\"\nkind = \"udp\"\naddress = \"0.0.0.0:5514\"\n",
        )
        .unwrap();
        let e = cfg.listeners[0].effective_allow().unwrap_err();
        assert!(e.to_string().contains("allow"), "{e}");
    }
}
