//! `[aggregate]`, `[batch]`, `[storage]`, `[spool]` and `[embedded_postgres]`: how accepted
//! lines are held, stored and metered.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, ensure};
use serde::Deserialize;

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
            ingestor: suiftly_ingest::ingestor::DEFAULT_ID.to_owned(),
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

/// `[ingest]`: who this ingestor is among the ingestors writing into one database.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestSection {
    /// This ingestor's id (one per gateway or region): its spool position, batch ids and
    /// metering state are kept under it, and a second live process with the same id is
    /// refused at start. `default` is what a single-ingestor database always used.
    pub id: String,
}

impl Default for IngestSection {
    fn default() -> Self {
        Self {
            id: suiftly_ingest::ingestor::DEFAULT_ID.to_owned(),
        }
    }
}

impl IngestSection {
    pub fn validate(&self) -> Result<()> {
        suiftly_ingest::ingestor::validate_id(&self.id)
            .map_err(|e| anyhow::anyhow!("ingest.id: {e}"))
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
    /// COPY writers in flight (spool on), each on its own connection: their COPYs run in
    /// parallel and their commits advance the spool position in spool order.
    pub writers: usize,
}

impl Default for StorageSection {
    fn default() -> Self {
        Self {
            retention_hours: 168,
            partitions_ahead_hours: 6,
            maintenance_interval_secs: 300,
            writers: 1,
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
        ensure!(
            (1..=64).contains(&self.writers),
            "storage.writers must be within 1..=64"
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
