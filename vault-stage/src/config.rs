//! What the vault stage runs with. The `[vault]` section of the binary's configuration file
//! (defaults, range checks, environment overrides) lives with the other sections in the
//! composition root (`src/config/vault.rs`) and builds this.

use std::path::PathBuf;
use std::time::Duration;

use chrono::TimeDelta;
use suiftly_vault::runtime::{Gateway, PushPolicy};

#[derive(Debug, Clone)]
pub struct VaultSettings {
    /// Directory of the live files.
    pub dir: PathBuf,
    pub map_file: String,
    pub csv_file: String,
    pub keep_versions: usize,
    /// Revoked keys stay in the map this long so HAProxy can say "revoked" (event 31) rather
    /// than "unknown" (event 11); after it they drop out.
    pub revoked_retention: TimeDelta,
    /// Burst add-on: served up to this percentage of the guaranteed rate.
    pub burst_ceiling_percent: u32,
    /// Each gateway enforces `ceil(rate / gateways_per_region)`.
    pub gateways_per_region: u32,
    pub gateways: Vec<Gateway>,
    pub policy: PushPolicy,
}

impl VaultSettings {
    /// The shipped defaults (the file names `docs/haproxy/suiftly.cfg` uses) in `dir`, without
    /// gateways.
    pub fn new(dir: PathBuf) -> VaultSettings {
        VaultSettings {
            dir,
            map_file: "suiftly-keys.map".into(),
            csv_file: "ma_vault.csv".into(),
            keep_versions: 10,
            revoked_retention: TimeDelta::days(30),
            burst_ceiling_percent: 200,
            gateways_per_region: 1,
            gateways: Vec::new(),
            policy: PushPolicy {
                io_timeout: Duration::from_millis(5_000),
                attempts: 3,
                backoff: Duration::from_millis(200),
            },
        }
    }
}
