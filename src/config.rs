//! The `suiftly` configuration file (TOML) and its environment overrides.
//!
//! One struct per section, each owning its defaults (one `Default` impl, used by serde for
//! every missing key) and its range checks (`validate`, beside it). Every key has a default, so
//! an empty file (or none) runs a loopback-only ingestor with an embedded PostgreSQL. Units are
//! in the key names; closed sets are enums; unknown keys are refused. Environment variables
//! win over the file: [`ENV_OVERRIDES`] is the one list.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde::Deserialize;
use suiftly_escrow::{EscrowKind, Network};
use suiftly_ingest::listener::{BatchLimits, ListenerConfig};

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the embedded PostgreSQL cluster, the spool and the operator token live.
    pub data_dir: PathBuf,
    /// External PostgreSQL; when absent a private cluster is started under `data_dir`.
    pub database_url: Option<String>,
    pub metrics: MetricsSection,
    pub admin: AdminSection,
    pub batch: BatchSection,
    pub storage: StorageSection,
    pub embedded_postgres: EmbeddedPgSection,
    pub spool: SpoolSection,
    pub aggregate: AggregateSection,
    #[serde(rename = "listener")]
    pub listeners: Vec<ListenerConfig>,
    /// `suiftly api`: the customer API (secrets come from the environment only).
    pub api: ApiSection,
    /// The manager (billing cycle, scheduled work), inside `suiftly run` unless disabled, and
    /// `suiftly manager` (docs/BILLING.md).
    pub manager: ManagerSection,
    /// The escrow the API and the manager move money through.
    pub escrow: EscrowSection,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
            database_url: None,
            metrics: MetricsSection::default(),
            admin: AdminSection::default(),
            batch: BatchSection::default(),
            storage: StorageSection::default(),
            embedded_postgres: EmbeddedPgSection::default(),
            spool: SpoolSection::default(),
            aggregate: AggregateSection::default(),
            listeners: vec![ListenerConfig::loopback_udp("udp", "127.0.0.1:5514")],
            api: ApiSection::default(),
            manager: ManagerSection::default(),
            escrow: EscrowSection::default(),
        }
    }
}

/// One environment variable that overrides a configuration key (when set and non-empty).
pub struct EnvOverride {
    pub var: &'static str,
    pub key: &'static str,
    apply: fn(&mut Config, String) -> Result<()>,
}

/// Every environment override, in one place (README and `suiftly.example.toml` list the same).
/// Secrets (`SUIFTLY_OPERATOR_TOKEN`, the API's keys) are read where they are used and never
/// stored in the configuration; `SUIFTLY_CONFIG` names the file itself.
pub static ENV_OVERRIDES: &[EnvOverride] = &[
    EnvOverride {
        var: "DATABASE_URL",
        key: "database_url",
        apply: |c, v| {
            c.database_url = Some(v);
            Ok(())
        },
    },
    EnvOverride {
        var: "SUIFTLY_DATA_DIR",
        key: "data_dir",
        apply: |c, v| {
            c.data_dir = v.into();
            Ok(())
        },
    },
    EnvOverride {
        var: "SUIFTLY_METRICS_LISTEN",
        key: "metrics.listen",
        apply: |c, v| {
            c.metrics.listen = v;
            Ok(())
        },
    },
    EnvOverride {
        var: "SUIFTLY_ADMIN_LISTEN",
        key: "admin.listen",
        apply: |c, v| {
            c.admin.listen = v;
            Ok(())
        },
    },
    EnvOverride {
        var: "SUIFTLY_PGWIRE_LISTEN",
        key: "admin.pgwire_listen",
        apply: |c, v| {
            c.admin.pgwire_listen = Some(v);
            Ok(())
        },
    },
    EnvOverride {
        var: "SUIFTLY_API_LISTEN",
        key: "api.listen",
        apply: |c, v| {
            c.api.listen = v;
            Ok(())
        },
    },
    EnvOverride {
        var: "SUIFTLY_API_METRICS_LISTEN",
        key: "api.metrics_listen",
        apply: |c, v| {
            c.api.metrics_listen = v;
            Ok(())
        },
    },
    EnvOverride {
        var: "SUIFTLY_DASHBOARD_DIR",
        key: "api.dashboard_dir",
        apply: |c, v| {
            c.api.dashboard_dir = v.into();
            Ok(())
        },
    },
    EnvOverride {
        var: "SUIFTLY_API_PRODUCTION",
        key: "api.production",
        apply: |c, v| {
            c.api.production = matches!(v.as_str(), "1" | "true" | "yes");
            Ok(())
        },
    },
    EnvOverride {
        var: "SUIFTLY_MANAGER_CYCLE_INTERVAL_MS",
        key: "manager.cycle_interval_ms",
        apply: |c, v| {
            c.manager.cycle_interval_ms = v.parse()?;
            Ok(())
        },
    },
    EnvOverride {
        var: "SUIFTLY_MANAGER_LEASE_MS",
        key: "manager.lease_ms",
        apply: |c, v| {
            c.manager.lease_ms = v.parse()?;
            Ok(())
        },
    },
    EnvOverride {
        var: "SUIFTLY_MANAGER_RENEW_INTERVAL_MS",
        key: "manager.renew_interval_ms",
        apply: |c, v| {
            c.manager.renew_interval_ms = v.parse()?;
            Ok(())
        },
    },
    EnvOverride {
        var: "SUIFTLY_MANAGER_IDLE_IN_TRANSACTION_MS",
        key: "manager.idle_in_transaction_ms",
        apply: |c, v| {
            c.manager.idle_in_transaction_ms = v.parse()?;
            Ok(())
        },
    },
    EnvOverride {
        var: "SUIFTLY_MANAGER_PENDING_INTENT_AGE_MS",
        key: "manager.pending_intent_age_ms",
        apply: |c, v| {
            c.manager.pending_intent_age_ms = v.parse()?;
            Ok(())
        },
    },
    EnvOverride {
        var: "SUIFTLY_MANAGER_USAGE_THRESHOLD_CENTS",
        key: "manager.usage_threshold_cents",
        apply: |c, v| {
            c.manager.usage_threshold_cents = v.parse()?;
            Ok(())
        },
    },
    EnvOverride {
        var: "SUIFTLY_MANAGER_BATCH_SIZE",
        key: "manager.batch_size",
        apply: |c, v| {
            c.manager.batch_size = v.parse()?;
            Ok(())
        },
    },
    EnvOverride {
        var: "SUIFTLY_MANAGER_CLOCK_LATENESS_MS",
        key: "manager.clock_lateness_ms",
        apply: |c, v| {
            c.manager.clock_lateness_ms = v.parse()?;
            Ok(())
        },
    },
    EnvOverride {
        var: "SUIFTLY_MANAGER_WATERMARK",
        key: "manager.watermark",
        apply: |c, v| {
            c.manager.watermark = match v.as_str() {
                "metering" => WatermarkKind::Metering,
                "clock" => WatermarkKind::Clock,
                other => anyhow::bail!("must be metering or clock, not {other:?}"),
            };
            Ok(())
        },
    },
    EnvOverride {
        var: "SUIFTLY_MANAGER_ADMIN_LISTEN",
        key: "manager.admin_listen",
        apply: |c, v| {
            c.manager.admin_listen = v;
            Ok(())
        },
    },
    EnvOverride {
        var: "SUIFTLY_ESCROW_NETWORK",
        key: "escrow.network",
        apply: |c, v| {
            c.escrow.network = Some(match v.as_str() {
                "mainnet" => Network::Mainnet,
                "testnet" => Network::Testnet,
                "devnet" => Network::Devnet,
                "localnet" => Network::Localnet,
                other => {
                    anyhow::bail!("must be mainnet, testnet, devnet or localnet, not {other:?}")
                }
            });
            Ok(())
        },
    },
];

fn socket_addr(v: &str, key: &str) -> Result<std::net::SocketAddr> {
    v.parse()
        .map_err(|_| anyhow::anyhow!("{key} {v:?} is not ip:port"))
}

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

/// Streaming metering (issue 4). Needs the spool: after a restart the aggregator re-reads the
/// spool from its committed position.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AggregateSection {
    pub enabled: bool,
    /// A minute settles once the watermark is this far past its end.
    pub allowed_lateness_ms: u64,
    /// When the input is caught up, the watermark is at least `now - idle_lag_ms`.
    pub idle_lag_ms: u64,
    pub settle_interval_ms: u64,
    /// Committed batches queued between the COPY consumer and the aggregator (block when full).
    pub input_capacity: usize,
    /// Settled-window messages a subscriber may lag behind before it is told it lagged.
    pub subscriber_capacity: usize,
}

impl Default for AggregateSection {
    fn default() -> Self {
        Self {
            enabled: true,
            allowed_lateness_ms: 30_000,
            idle_lag_ms: 5_000,
            settle_interval_ms: 1_000,
            input_capacity: 16,
            subscriber_capacity: 64,
        }
    }
}

impl AggregateSection {
    pub fn validate(&self) -> Result<()> {
        ensure!(
            self.allowed_lateness_ms <= 24 * 3600 * 1000 && self.idle_lag_ms <= 3600 * 1000,
            "aggregate.allowed_lateness_ms must be at most a day and aggregate.idle_lag_ms at most an hour"
        );
        ensure!(
            (10..=60_000).contains(&self.settle_interval_ms),
            "aggregate.settle_interval_ms must be within 10..=60000"
        );
        ensure!(
            (1..=10_000).contains(&self.input_capacity)
                && (1..=100_000).contains(&self.subscriber_capacity),
            "aggregate.input_capacity must be within 1..=10000 and subscriber_capacity within 1..=100000"
        );
        Ok(())
    }

    /// The aggregator's runtime settings.
    pub fn aggregator_config(&self) -> suiftly_aggregate::service::AggregatorConfig {
        suiftly_aggregate::service::AggregatorConfig {
            window: suiftly_aggregate::window::WindowConfig {
                allowed_lateness_us: self.allowed_lateness_ms as i64 * 1000,
                idle_lag_us: self.idle_lag_ms as i64 * 1000,
            },
            settle_interval: Duration::from_millis(self.settle_interval_ms),
            subscriber_capacity: self.subscriber_capacity,
            max_backoff: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatchSection {
    pub max_rows: usize,
    pub max_age_ms: u64,
    /// Batches waiting for the COPY writer before listeners block (spool off).
    pub channel_capacity: usize,
    /// Reject rows more than this far ahead of the receive clock.
    pub max_future_secs: u64,
}

impl Default for BatchSection {
    fn default() -> Self {
        Self {
            max_rows: 5_000,
            max_age_ms: 200,
            channel_capacity: 8,
            max_future_secs: 3_600,
        }
    }
}

impl BatchSection {
    pub fn validate(&self) -> Result<()> {
        ensure!(
            (1..=1_000_000).contains(&self.max_rows),
            "batch.max_rows must be within 1..=1000000"
        );
        ensure!(
            (1..=60_000).contains(&self.max_age_ms),
            "batch.max_age_ms must be within 1..=60000"
        );
        ensure!(
            (1..=10_000).contains(&self.channel_capacity),
            "batch.channel_capacity must be within 1..=10000"
        );
        ensure!(
            self.max_future_secs <= 30 * 24 * 3600,
            "batch.max_future_secs must be at most 30 days"
        );
        Ok(())
    }
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSection {
    /// Raw rows are kept this long (partitions dropped after); rows older on arrival are
    /// rejected verbatim as `timestamp_out_of_range`.
    pub retention_hours: u64,
    pub partitions_ahead_hours: i64,
    pub maintenance_interval_secs: u64,
}

impl Default for StorageSection {
    fn default() -> Self {
        Self {
            retention_hours: 168,
            partitions_ahead_hours: 6,
            maintenance_interval_secs: 300,
        }
    }
}

impl StorageSection {
    pub fn validate(&self) -> Result<()> {
        ensure!(
            (1..=24 * 365 * 10).contains(&self.retention_hours),
            "storage.retention_hours must be within 1..=87600"
        );
        ensure!(
            (0..=24 * 31).contains(&self.partitions_ahead_hours),
            "storage.partitions_ahead_hours must be within 0..=744"
        );
        ensure!(
            self.maintenance_interval_secs >= 1,
            "storage.maintenance_interval_secs must be at least 1"
        );
        Ok(())
    }

    pub fn retention(&self) -> Duration {
        Duration::from_secs(self.retention_hours * 3600)
    }

    pub fn maintenance_interval(&self) -> Duration {
        Duration::from_secs(self.maintenance_interval_secs.max(1))
    }
}

/// When the spool forces appended records to disk.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FsyncMode {
    /// Every receive batch (survives a machine crash; one fdatasync per receive call).
    EveryBatch,
    /// Every `fsync_interval_ms`, by the syncer task (a machine crash loses at most that).
    Interval,
    /// Never (survives kill -9, not a machine crash).
    Never,
}

/// The disk spool: a line is accepted once it is in the spool, and stored exactly once.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpoolSection {
    /// Off: listeners hand parsed batches straight to the writer (lines in memory are lost on
    /// a crash). On by default.
    pub enabled: bool,
    /// Default `<data_dir>/spool`.
    pub dir: Option<PathBuf>,
    pub fsync: FsyncMode,
    pub fsync_interval_ms: u64,
    pub segment_bytes: u64,
    /// When the spool holds this much unstored data, listeners stop reading their sockets.
    pub max_bytes: u64,
}

impl Default for SpoolSection {
    fn default() -> Self {
        Self {
            enabled: true,
            dir: None,
            fsync: FsyncMode::Interval,
            fsync_interval_ms: 100,
            segment_bytes: 64 << 20,
            max_bytes: 4 << 30,
        }
    }
}

impl SpoolSection {
    pub fn validate(&self) -> Result<()> {
        ensure!(
            self.segment_bytes >= 1 << 16,
            "spool.segment_bytes must be at least 65536"
        );
        ensure!(
            self.max_bytes >= 2 * self.segment_bytes.max(2 << 20),
            "spool.max_bytes must be at least twice spool.segment_bytes (and at least 4 MiB)"
        );
        Ok(())
    }

    /// The spool crate's settings.
    pub fn spool_config(&self) -> suiftly_spool::SpoolConfig {
        use suiftly_spool::FsyncPolicy;
        suiftly_spool::SpoolConfig {
            segment_bytes: self.segment_bytes,
            max_total_bytes: self.max_bytes,
            fsync: match self.fsync {
                FsyncMode::EveryBatch => FsyncPolicy::EveryBatch,
                FsyncMode::Interval => FsyncPolicy::IntervalMs(self.fsync_interval_ms.max(1)),
                FsyncMode::Never => FsyncPolicy::Never,
            },
        }
    }

    /// How often the syncer task fsyncs (`None` unless `fsync = "interval"`).
    pub fn sync_interval(&self) -> Option<Duration> {
        (self.fsync == FsyncMode::Interval)
            .then(|| Duration::from_millis(self.fsync_interval_ms.max(1)))
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbeddedPgSection {
    /// Port for the private cluster's socket name; a free one is picked when absent.
    pub port: Option<u16>,
    /// Turn off only for throwaway data.
    pub fsync_off: bool,
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiSection {
    pub listen: String,
    /// Browser origin of the dashboard, allowed by CORS with credentials.
    pub dashboard_origin: String,
    /// Production mode: refuses MOCK_AUTH and the development secrets; Secure cookies.
    pub production: bool,
    pub max_body_bytes: usize,
    pub request_timeout_ms: u64,
    pub ip_requests_per_second: u32,
    pub ip_burst: u32,
    pub customer_requests_per_second: u32,
    pub customer_burst: u32,
    pub db_pool_size: usize,
    /// A request head must be complete within this long of its first byte (slowloris).
    pub header_read_timeout_ms: u64,
    /// A connection with no request in flight and no traffic for this long is closed.
    pub idle_timeout_ms: u64,
    /// Open connections at most; beyond it new ones wait in the kernel's backlog.
    pub max_connections: usize,
    /// Prometheus `/metrics` of `suiftly api` (not served on the public `listen` port).
    pub metrics_listen: String,
    /// The dashboard's build output, served under `/app/` (env `SUIFTLY_DASHBOARD_DIR`); when
    /// it holds no `index.html` the API runs without the dashboard (a warning says how to build it).
    pub dashboard_dir: PathBuf,
    /// `suiftly run` serves the API (and the dashboard) itself, on `listen`, with the live
    /// tail straight from its aggregator: the single-machine default. Off: run API replicas
    /// with `suiftly api` (and `[api.live] source`).
    pub in_run: bool,
    /// `[api.live]`: the live tail (`/stats/live`, the stats' open bucket).
    pub live: ApiLiveSection,
}

impl Default for ApiSection {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9470".into(),
            dashboard_origin: "http://localhost:5173".into(),
            production: false,
            max_body_bytes: 16 * 1024,
            request_timeout_ms: 10_000,
            ip_requests_per_second: 50,
            ip_burst: 100,
            customer_requests_per_second: 20,
            customer_burst: 60,
            db_pool_size: 16,
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 5_000,
            max_connections: 1024,
            metrics_listen: "127.0.0.1:9471".into(),
            dashboard_dir: PathBuf::from("webapp/dist"),
            in_run: true,
            live: ApiLiveSection::default(),
        }
    }
}

impl ApiSection {
    pub fn validate(&self) -> Result<()> {
        ensure!(
            (1024..=16 << 20).contains(&self.max_body_bytes),
            "api.max_body_bytes must be within 1024..=16777216"
        );
        ensure!(
            (100..=300_000).contains(&self.request_timeout_ms),
            "api.request_timeout_ms must be within 100..=300000"
        );
        ensure!(
            (1..=1000).contains(&self.db_pool_size),
            "api.db_pool_size must be within 1..=1000"
        );
        ensure!(
            (100..=300_000).contains(&self.header_read_timeout_ms)
                && (100..=3_600_000).contains(&self.idle_timeout_ms)
                && (1..=1_000_000).contains(&self.max_connections),
            "api.header_read_timeout_ms must be within 100..=300000, idle_timeout_ms within 100..=3600000, max_connections within 1..=1000000"
        );
        self.live.validate()
    }
}

/// `[api.live]`: the live tail (issue 13; see `live_feed`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiLiveSection {
    /// Concurrent `/stats/live` streams per customer.
    pub max_streams_per_customer: usize,
    /// Keep-alive comment interval (below HAProxy's `timeout client` / `timeout server`).
    pub keepalive_ms: u64,
    /// At most one provisional update per customer per interval.
    pub provisional_interval_ms: u64,
    /// A stream ends after this long (the client reconnects with `Last-Event-ID`).
    pub max_stream_secs: u64,
    /// `suiftly api` only: the metering process's admin endpoint, e.g.
    /// `http://10.0.0.5:9465`; its internal feed (`/internal/live`, operator token) is this
    /// replica's live tail. Unset: the replica serves the settled tables only and no
    /// `/stats/live`.
    pub source: Option<String>,
}

impl Default for ApiLiveSection {
    fn default() -> Self {
        Self {
            max_streams_per_customer: 5,
            keepalive_ms: 15_000,
            provisional_interval_ms: 1_000,
            max_stream_secs: 900,
            source: None,
        }
    }
}

impl ApiLiveSection {
    pub fn validate(&self) -> Result<()> {
        ensure!(
            (1..=1000).contains(&self.max_streams_per_customer),
            "api.live.max_streams_per_customer must be within 1..=1000"
        );
        ensure!(
            (100..=120_000).contains(&self.keepalive_ms),
            "api.live.keepalive_ms must be within 100..=120000"
        );
        ensure!(
            self.provisional_interval_ms <= 60_000,
            "api.live.provisional_interval_ms must be at most 60000"
        );
        ensure!(
            (1..=86_400).contains(&self.max_stream_secs),
            "api.live.max_stream_secs must be within 1..=86400"
        );
        if let Some(s) = &self.source {
            ensure!(
                s.starts_with("http://"),
                "api.live.source must be an http:// URL of the metering process's admin endpoint"
            );
        }
        Ok(())
    }

    /// The hub's options.
    pub fn options(&self) -> suiftly_api::live::LiveOptions {
        suiftly_api::live::LiveOptions {
            max_streams_per_customer: self.max_streams_per_customer,
            keepalive: Duration::from_millis(self.keepalive_ms),
            provisional_interval: Duration::from_millis(self.provisional_interval_ms),
            max_stream_duration: Duration::from_secs(self.max_stream_secs),
            ..suiftly_api::live::LiveOptions::default()
        }
    }
}

/// The manager: the billing cycle and scheduled work under one fenced leader (docs/BILLING.md).
/// `enabled` runs it inside `suiftly run`; `suiftly manager` runs it on its own whatever
/// `enabled` says.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ManagerSection {
    pub enabled: bool,
    /// The periodic cycle (settle → bill → vault → partitions → housekeeping).
    pub cycle_interval_ms: u64,
    /// How long a leader's lease lasts without renewal (by the database's clock): a standby
    /// takes over within `lease_ms + renew_interval_ms` of a leader's death.
    pub lease_ms: u64,
    pub renew_interval_ms: u64,
    /// The server ends a manager session idle inside a transaction after this long (a frozen
    /// leader releases the lease row's lock). Below `lease_ms`.
    pub idle_in_transaction_ms: u64,
    /// `metering` (aggregate_state.settled_before) or `clock` (the manager's clock minus
    /// `clock_lateness_ms`: deployments without metering, tests).
    pub watermark: WatermarkKind,
    pub clock_lateness_ms: u64,
    /// A month is finalized once the watermark is this far past its end.
    pub finalize_grace_ms: u64,
    /// Usage is charged once this much is due and uncharged (an on-chain charge costs gas).
    pub usage_threshold_cents: i64,
    /// Customers per billing transaction.
    pub batch_size: usize,
    /// Escrow calls in flight at once.
    pub escrow_concurrency: usize,
    /// A pending intent younger than this may still belong to a live request.
    pub pending_intent_age_ms: u64,
    /// Completed API idempotency keys are kept this long.
    pub idempotency_retention_hours: u64,
    pub db_pool_size: usize,
    /// The admin endpoint (`/manager/...`) of `suiftly manager`; inside `suiftly run` the
    /// routes join the process's admin listener.
    pub admin_listen: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WatermarkKind {
    Metering,
    Clock,
}

impl Default for ManagerSection {
    fn default() -> Self {
        Self {
            enabled: true,
            cycle_interval_ms: 300_000,
            lease_ms: 10_000,
            renew_interval_ms: 2_000,
            idle_in_transaction_ms: 3_000,
            watermark: WatermarkKind::Metering,
            clock_lateness_ms: 300_000,
            finalize_grace_ms: 0,
            usage_threshold_cents: 500,
            batch_size: 500,
            escrow_concurrency: 8,
            pending_intent_age_ms: 30_000,
            idempotency_retention_hours: 24 * 30,
            db_pool_size: 4,
            admin_listen: "127.0.0.1:9187".into(),
        }
    }
}

impl ManagerSection {
    pub fn validate(&self) -> Result<()> {
        ensure!(
            (100..=86_400_000).contains(&self.cycle_interval_ms),
            "manager.cycle_interval_ms must be within 100..=86400000"
        );
        ensure!(
            (1_000..=3_600_000).contains(&self.lease_ms),
            "manager.lease_ms must be within 1000..=3600000"
        );
        ensure!(
            self.renew_interval_ms >= 1 && self.renew_interval_ms * 2 <= self.lease_ms,
            "manager.renew_interval_ms must be between 1 and half of lease_ms (a lease must survive one missed renewal)"
        );
        ensure!(
            self.idle_in_transaction_ms >= 1 && self.idle_in_transaction_ms < self.lease_ms,
            "manager.idle_in_transaction_ms must be between 1 and lease_ms"
        );
        ensure!(
            self.clock_lateness_ms <= 7 * 24 * 3600 * 1000
                && self.finalize_grace_ms <= 31 * 24 * 3600 * 1000
                && self.pending_intent_age_ms <= 24 * 3600 * 1000,
            "manager.clock_lateness_ms must be at most a week, finalize_grace_ms at most 31 days, pending_intent_age_ms at most a day"
        );
        ensure!(
            self.usage_threshold_cents >= 0,
            "manager.usage_threshold_cents must not be negative"
        );
        ensure!(
            (1..=100_000).contains(&self.batch_size)
                && (1..=1_000).contains(&self.escrow_concurrency)
                && (2..=1_000).contains(&self.db_pool_size),
            "manager.batch_size must be within 1..=100000, escrow_concurrency within 1..=1000, db_pool_size within 2..=1000"
        );
        ensure!(
            (1..=24 * 3650).contains(&self.idempotency_retention_hours),
            "manager.idempotency_retention_hours must be within 1..=87600"
        );
        socket_addr(&self.admin_listen, "manager.admin_listen")?;
        Ok(())
    }

    pub fn idle_in_transaction(&self) -> Duration {
        Duration::from_millis(self.idle_in_transaction_ms)
    }

    /// The manager's runtime configuration.
    pub fn manager_config(
        &self,
        prices: suiftly_billing::PriceList,
        production: bool,
    ) -> suiftly_manager::ManagerConfig {
        use chrono::TimeDelta;
        let ms = |v: u64| TimeDelta::milliseconds(v as i64);
        suiftly_manager::ManagerConfig {
            cycle_interval: Duration::from_millis(self.cycle_interval_ms),
            lease: Duration::from_millis(self.lease_ms),
            renew_interval: Duration::from_millis(self.renew_interval_ms),
            watermark: match self.watermark {
                WatermarkKind::Metering => suiftly_manager::WatermarkSource::Metering,
                WatermarkKind::Clock => suiftly_manager::WatermarkSource::Clock {
                    lateness: ms(self.clock_lateness_ms),
                },
            },
            billing: suiftly_manager::bill::BillingSettings {
                prices,
                rules: suiftly_billing::Rules {
                    usage_threshold_cents: self.usage_threshold_cents,
                    finalize_grace: ms(self.finalize_grace_ms),
                },
                batch_size: self.batch_size,
                escrow_concurrency: self.escrow_concurrency,
            },
            pending_intent_age: ms(self.pending_intent_age_ms),
            idempotency_retention: TimeDelta::hours(self.idempotency_retention_hours as i64),
            trigger_debounce: Duration::from_millis(100),
            production,
        }
    }
}

/// Which escrow the API and the manager talk to. Production mode (`api.production`) refuses
/// the mock unless `network` names a test network explicitly.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EscrowSection {
    pub kind: EscrowKind,
    /// The Sui network the escrow contract lives on.
    pub network: Option<Network>,
    /// Connections of the mock's own pool.
    pub pool_size: usize,
}

impl Default for EscrowSection {
    fn default() -> Self {
        Self {
            kind: EscrowKind::Mock,
            network: None,
            pool_size: 4,
        }
    }
}

impl EscrowSection {
    /// Range checks; the production guard is [`EscrowSection::check_production`] (run by the
    /// processes that move money, which know whether they run in production mode).
    pub fn validate(&self) -> Result<()> {
        ensure!(
            (1..=1_000).contains(&self.pool_size),
            "escrow.pool_size must be within 1..=1000"
        );
        Ok(())
    }

    pub fn check_production(&self, production: bool) -> Result<()> {
        suiftly_escrow::check_production(self.kind, self.network, production)?;
        Ok(())
    }
}

impl Config {
    /// Reads `path` (if given), applies [`ENV_OVERRIDES`] and validates.
    pub fn load(path: Option<&Path>) -> Result<Config> {
        let mut cfg: Config = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading config {}", p.display()))?;
                toml::from_str(&text).with_context(|| format!("parsing config {}", p.display()))?
            }
            None => Config::default(),
        };
        cfg.apply_env(|var| std::env::var(var).ok())?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Applies every override whose variable `get` returns non-empty.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<()> {
        for o in ENV_OVERRIDES {
            if let Some(v) = get(o.var).filter(|v| !v.is_empty()) {
                (o.apply)(self, v).with_context(|| format!("{} (overrides {})", o.var, o.key))?;
            }
        }
        Ok(())
    }

    /// Every section's range checks, then what spans sections.
    pub fn validate(&self) -> Result<()> {
        self.metrics.validate()?;
        self.batch.validate()?;
        self.storage.validate()?;
        self.spool.validate()?;
        self.aggregate.validate()?;
        self.admin.validate()?;
        self.api.validate()?;
        self.manager.validate()?;
        self.escrow.validate()?;
        ensure!(
            !self.aggregate.enabled || self.spool.enabled,
            "aggregate.enabled needs spool.enabled (metering re-reads the spool after a restart); set aggregate.enabled = false to run without metering"
        );
        ensure!(self.listeners.len() < 0x8000, "too many listeners");
        let mut names = std::collections::HashSet::new();
        for l in &self.listeners {
            l.validate()?;
            ensure!(
                names.insert(&l.name),
                "listener name {:?} is used twice",
                l.name
            );
        }
        Ok(())
    }

    pub fn aggregator_config(&self) -> suiftly_aggregate::service::AggregatorConfig {
        self.aggregate.aggregator_config()
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
        ensure!(
            create,
            "no operator token: set SUIFTLY_OPERATOR_TOKEN or start `suiftly run` once (it writes {})",
            path.display()
        );
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut raw = [0u8; 24];
        getrandom::fill(&mut raw).map_err(|e| anyhow::anyhow!("system randomness: {e}"))?;
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

    pub fn spool_dir(&self) -> PathBuf {
        self.spool
            .dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("spool"))
    }

    pub fn retention(&self) -> Duration {
        self.storage.retention()
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
        assert_eq!(cfg.listeners[0].address(), "127.0.0.1:5514");
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
    fn fsync_is_a_closed_set_and_env_overrides_apply() {
        let cfg: Config = toml::from_str("[spool]\nfsync = \"every_batch\"\n").unwrap();
        assert_eq!(cfg.spool.fsync, FsyncMode::EveryBatch);
        assert_eq!(cfg.spool.sync_interval(), None);
        let e = toml::from_str::<Config>("[spool]\nfsync = \"sometimes\"\n").unwrap_err();
        assert!(e.to_string().contains("every_batch"), "{e}");
        let mut cfg = Config::default();
        cfg.apply_env(|v| match v {
            "SUIFTLY_ADMIN_LISTEN" => Some("127.0.0.1:1".into()),
            "DATABASE_URL" => Some(String::new()),
            _ => None,
        })
        .unwrap();
        assert_eq!(cfg.admin.listen, "127.0.0.1:1");
        assert_eq!(cfg.database_url, None, "empty values are ignored");
        assert!(ENV_OVERRIDES.iter().any(|o| o.var == "SUIFTLY_DATA_DIR"));
    }

    /// The keys a table accepts, from serde's own "unknown field …, expected one of …"
    /// message (every section denies unknown fields), so the list comes from the code.
    fn accepted(prefix: &str) -> Vec<String> {
        let e = toml::from_str::<Config>(&format!("{prefix}zz_probe = 1\n"))
            .expect_err("an unknown key is refused");
        let msg = e.to_string();
        let list = msg
            .split_once("expected ")
            .unwrap_or_else(|| panic!("{prefix}: {msg}"))
            .1;
        list.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    }

    /// Every configuration key, dotted (`spool.max_bytes`, `listener.frontends.<name>.network`).
    pub fn every_key() -> Vec<String> {
        let mut out = Vec::new();
        for k in accepted("") {
            let sub = toml::from_str::<Config>(&format!("[{k}]\nzz_probe = 1\n"));
            let is_table = sub.is_err_and(|e| e.to_string().contains("unknown field"));
            if k == "listener" {
                let l = "[[listener]]\nname = \"x\"\nkind = \"udp\"\naddress = \"127.0.0.1:1\"\n";
                for f in accepted(l) {
                    out.push(format!("listener.{f}"));
                }
                for f in accepted(&format!("{l}[listener.frontends.x]\n")) {
                    out.push(format!("listener.frontends.<name>.{f}"));
                }
            } else if is_table {
                for f in accepted(&format!("[{k}]\n")) {
                    out.push(format!("{k}.{f}"));
                }
            } else {
                out.push(k);
            }
        }
        out
    }

    /// Environment variables the code reads (`env("…")`, `env::var("…")`, clap's
    /// `env = "…"`) in the binary's sources, plus the overrides table.
    pub fn every_env_var() -> Vec<String> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut out: Vec<String> = ENV_OVERRIDES.iter().map(|o| o.var.to_string()).collect();
        for e in std::fs::read_dir(root.join("src")).unwrap() {
            let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
            for pat in ["env(\"", "env::var(\"", "env = \""] {
                for (i, _) in text.match_indices(pat) {
                    let rest = &text[i + pat.len()..];
                    let name = &rest[..rest.find('"').unwrap()];
                    if !name.is_empty()
                        && name.chars().all(|c| c.is_ascii_uppercase() || c == '_')
                        && !out.iter().any(|o| o == name)
                    {
                        out.push(name.to_string());
                    }
                }
            }
        }
        out
    }

    #[test]
    fn every_key_and_env_var_is_in_operations_md() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let ops = std::fs::read_to_string(root.join("docs/OPERATIONS.md")).unwrap();
        let keys = every_key();
        assert!(keys.len() > 60, "{keys:?}");
        assert!(keys.contains(&"spool.max_bytes".to_string()), "{keys:?}");
        assert!(
            keys.contains(&"listener.receive_buffer_bytes".to_string()),
            "{keys:?}"
        );
        let missing: Vec<_> = keys
            .iter()
            .filter(|k| !ops.contains(&format!("`{k}`")))
            .collect();
        assert!(
            missing.is_empty(),
            "docs/OPERATIONS.md lacks keys {missing:?}"
        );
        let vars = every_env_var();
        for v in [
            "SUIFTLY_JWT_SECRET",
            "SUIFTLY_OPERATOR_TOKEN",
            "SUIFTLY_CONFIG",
            "MOCK_AUTH",
        ] {
            assert!(
                vars.iter().any(|x| x == v),
                "{v} not found in the code: {vars:?}"
            );
        }
        let missing: Vec<_> = vars
            .iter()
            .filter(|v| !ops.contains(&format!("`{v}`")))
            .collect();
        assert!(
            missing.is_empty(),
            "docs/OPERATIONS.md lacks variables {missing:?}"
        );
    }

    #[test]
    fn every_env_override_is_documented() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        for doc in ["suiftly.example.toml", "README.md", "docs/OPERATIONS.md"] {
            let text = std::fs::read_to_string(root.join(doc)).unwrap();
            for o in ENV_OVERRIDES {
                assert!(text.contains(o.var), "{doc} does not mention {}", o.var);
            }
        }
    }

    #[test]
    fn manager_defaults_are_valid_and_documented_values() {
        let cfg = Config::default();
        cfg.validate().unwrap();
        let c = cfg
            .manager
            .manager_config(suiftly_billing::PriceList::default(), false);
        assert_eq!(c.cycle_interval, Duration::from_secs(300));
        // A standby takes over within lease + renew ≤ 15 s.
        assert!(c.lease + c.renew_interval <= Duration::from_secs(15));
        assert_eq!(c.billing.rules.usage_threshold_cents, 500);
    }

    #[test]
    fn manager_refuses_leases_that_cannot_survive_a_missed_renewal() {
        for (text, needle) in [
            ("[manager]\nrenew_interval_ms = 6000\n", "renew_interval_ms"),
            (
                "[manager]\nidle_in_transaction_ms = 10000\n",
                "idle_in_transaction_ms",
            ),
            ("[escrow]\npool_size = 0\n", "escrow.pool_size"),
        ] {
            let cfg: Config = toml::from_str(text).unwrap();
            let e = cfg.validate().unwrap_err();
            assert!(format!("{e:#}").contains(needle), "{text}: {e:#}");
        }
    }

    #[test]
    fn manager_and_escrow_env_overrides_apply() {
        let mut cfg = Config::default();
        cfg.apply_env(|v| match v {
            "SUIFTLY_MANAGER_LEASE_MS" => Some("4000".into()),
            "SUIFTLY_MANAGER_WATERMARK" => Some("clock".into()),
            "SUIFTLY_ESCROW_NETWORK" => Some("testnet".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(cfg.manager.lease_ms, 4000);
        assert_eq!(cfg.manager.watermark, WatermarkKind::Clock);
        assert_eq!(cfg.escrow.network, Some(Network::Testnet));
        cfg.escrow.check_production(true).unwrap();
        assert!(Config::default().escrow.check_production(true).is_err());
        let e = Config::default()
            .apply_env(|v| (v == "SUIFTLY_MANAGER_WATERMARK").then(|| "wall".into()))
            .unwrap_err();
        assert!(
            format!("{e:#}").contains("SUIFTLY_MANAGER_WATERMARK"),
            "{e:#}"
        );
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
