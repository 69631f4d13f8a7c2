//! `[api]` and `[api.live]`: the customer API.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, ensure};
use serde::Deserialize;

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
