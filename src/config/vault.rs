//! `[vault]` and `[[vault.gateway]]`: the key map and the gateways it is pushed to.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, ensure};
use serde::Deserialize;

/// The vault step of the manager (issue 12): PostgreSQL → `map_file` + `csv_file` in `dir`
/// (atomic, versioned) → pushed to every `[[vault.gateway]]` over its runtime API.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VaultSection {
    /// Off: the manager has no vault step.
    pub enabled: bool,
    /// Directory of the live files (default `<data_dir>/vault`); the gateways' HAProxy reads
    /// the map from here (or from a copy at the path `gateway.map` names) at start and reload.
    pub dir: Option<PathBuf>,
    pub map_file: String,
    pub csv_file: String,
    /// Older versions kept in `<dir>/versions/`.
    pub keep_versions: usize,
    /// Revoked keys stay in the map this long so HAProxy can say "revoked" (event 31) rather
    /// than "unknown" (event 11).
    pub revoked_retention_days: u32,
    /// The burst add-on serves up to this percentage of the tier's guaranteed rate.
    pub burst_ceiling_percent: u32,
    /// Each gateway of a region enforces `ceil(rate / gateways_per_region)`.
    pub gateways_per_region: u32,
    /// Connect/read/write timeout of each runtime-API operation.
    pub push_timeout_ms: u64,
    pub push_attempts: u32,
    pub push_backoff_ms: u64,
    /// Gateways whose push failed are retried this often between cycles.
    pub retry_interval_ms: u64,
    #[serde(rename = "gateway")]
    pub gateways: Vec<VaultGatewaySection>,
}

/// One `[[vault.gateway]]`: an HAProxy whose runtime API receives every version.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultGatewaySection {
    /// Label in metrics (`gateway="..."`), logs and `vault_gateways`.
    pub name: String,
    /// The runtime API: `unix:<path>` or `tcp:<host>:<port>`.
    pub socket: String,
    /// The vault map's path as that HAProxy's configuration names it (or `#<id>`).
    pub map: String,
}

impl Default for VaultSection {
    fn default() -> Self {
        Self {
            enabled: true,
            dir: None,
            map_file: "suiftly-keys.map".into(),
            csv_file: "ma_vault.csv".into(),
            keep_versions: 10,
            revoked_retention_days: 30,
            burst_ceiling_percent: 200,
            gateways_per_region: 1,
            push_timeout_ms: 5_000,
            push_attempts: 3,
            push_backoff_ms: 200,
            retry_interval_ms: 5_000,
            gateways: Vec::new(),
        }
    }
}

impl VaultSection {
    pub fn validate(&self) -> Result<()> {
        ensure!(
            (1..=10_000).contains(&self.keep_versions),
            "vault.keep_versions must be within 1..=10000"
        );
        ensure!(
            self.revoked_retention_days <= 3650,
            "vault.revoked_retention_days must be at most 3650"
        );
        ensure!(
            (100..=1_000).contains(&self.burst_ceiling_percent),
            "vault.burst_ceiling_percent must be within 100..=1000"
        );
        ensure!(
            (1..=1_000).contains(&self.gateways_per_region),
            "vault.gateways_per_region must be within 1..=1000"
        );
        ensure!(
            (10..=300_000).contains(&self.push_timeout_ms)
                && (1..=100).contains(&self.push_attempts)
                && self.push_backoff_ms <= 60_000
                && (100..=3_600_000).contains(&self.retry_interval_ms),
            "vault.push_timeout_ms must be within 10..=300000, push_attempts within 1..=100, push_backoff_ms at most 60000, retry_interval_ms within 100..=3600000"
        );
        let plain = |f: &str| !f.is_empty() && !f.contains('/') && f != "." && f != "..";
        ensure!(
            plain(&self.map_file) && plain(&self.csv_file) && self.map_file != self.csv_file,
            "vault.map_file and vault.csv_file must be two distinct file names (no directory)"
        );
        let mut names = std::collections::BTreeSet::new();
        for g in &self.gateways {
            ensure!(
                !g.name.is_empty() && names.insert(g.name.as_str()),
                "vault.gateway names must be non-empty and unique ({:?})",
                g.name
            );
            g.socket
                .parse::<suiftly_vault::runtime::Endpoint>()
                .map_err(|e| anyhow::anyhow!("vault.gateway {:?}: socket: {e}", g.name))?;
            ensure!(
                g.map.starts_with('/') || g.map.starts_with('#'),
                "vault.gateway {:?}: map must be the absolute path in that haproxy's config (or #<id>)",
                g.name
            );
        }
        Ok(())
    }

    /// The vault directory: `dir`, else `<data_dir>/vault`.
    pub fn dir(&self, data_dir: &Path) -> PathBuf {
        self.dir.clone().unwrap_or_else(|| data_dir.join("vault"))
    }

    pub fn retry_interval(&self) -> Duration {
        Duration::from_millis(self.retry_interval_ms)
    }

    /// The vault stage's settings (after [`VaultSection::validate`]).
    pub fn stage_settings(&self, data_dir: &Path) -> suiftly_vault_stage::VaultSettings {
        suiftly_vault_stage::VaultSettings {
            dir: self.dir(data_dir),
            map_file: self.map_file.clone(),
            csv_file: self.csv_file.clone(),
            keep_versions: self.keep_versions,
            revoked_retention: chrono::TimeDelta::days(i64::from(self.revoked_retention_days)),
            burst_ceiling_percent: self.burst_ceiling_percent,
            gateways_per_region: self.gateways_per_region,
            gateways: self
                .gateways
                .iter()
                .map(|g| suiftly_vault::runtime::Gateway {
                    name: g.name.clone(),
                    endpoint: g.socket.parse().expect("validated"),
                    map: g.map.clone(),
                })
                .collect(),
            policy: suiftly_vault::runtime::PushPolicy {
                io_timeout: Duration::from_millis(self.push_timeout_ms),
                attempts: self.push_attempts,
                backoff: Duration::from_millis(self.push_backoff_ms),
            },
        }
    }
}
