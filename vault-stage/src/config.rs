//! The `[vault]` configuration section.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use suiftly_vault::runtime::{Endpoint, Gateway, PushPolicy};

/// ```toml
/// [vault]
/// dir = "/etc/haproxy"            # where suiftly-keys.map and ma_vault.csv go live
/// keep_versions = 10
/// revoked_retention_days = 30     # revoked keys stay in the map (refused with event 31)
/// burst_ceiling_percent = 200     # burst add-on: served up to 2x the guaranteed rate
/// gateways_per_region = 1         # each gateway enforces ceil(rate / n)
///
/// [[vault.gateway]]
/// name = "fra-1"
/// socket = "unix:/run/haproxy/admin.sock"   # or "tcp:10.0.0.5:9999"
/// map = "/etc/haproxy/suiftly-keys.map"     # the path as that HAProxy's config names it
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VaultConfig {
    /// Off: the manager's vault step does nothing.
    pub enabled: bool,
    /// Directory of the live files (default: `<data_dir>/vault`, chosen by the binary).
    pub dir: Option<PathBuf>,
    pub map_file: String,
    pub csv_file: String,
    pub keep_versions: usize,
    /// Revoked keys stay in the map this long so HAProxy can say "revoked" (event 31) rather
    /// than "unknown" (event 11); after it they drop out.
    pub revoked_retention_days: u32,
    pub burst_ceiling_percent: u32,
    pub gateways_per_region: u32,
    pub push_timeout_ms: u64,
    pub push_attempts: u32,
    pub push_backoff_ms: u64,
    /// Gateways whose push failed are retried this often between cycles.
    pub retry_interval_ms: u64,
    #[serde(rename = "gateway")]
    pub gateways: Vec<GatewayConfig>,
}

impl Default for VaultConfig {
    fn default() -> Self {
        VaultConfig {
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

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Label of the gateway in metrics (`gateway="..."`), logs and `vault_gateways`.
    pub name: String,
    /// The gateway's runtime API: `unix:<path>` or `tcp:<host>:<port>`.
    pub socket: String,
    /// The vault map's path as the gateway's HAProxy config names it.
    pub map: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("vault.gateway {name:?}: {reason}")]
    Gateway { name: String, reason: String },
    #[error("vault: {0}")]
    Invalid(&'static str),
}

impl VaultConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.keep_versions == 0 {
            return Err(ConfigError::Invalid("keep_versions must be at least 1"));
        }
        if self.burst_ceiling_percent < 100 {
            return Err(ConfigError::Invalid(
                "burst_ceiling_percent must be at least 100",
            ));
        }
        if self.gateways_per_region == 0 {
            return Err(ConfigError::Invalid(
                "gateways_per_region must be at least 1",
            ));
        }
        if self.push_attempts == 0 || self.push_timeout_ms == 0 {
            return Err(ConfigError::Invalid(
                "push_attempts and push_timeout_ms must be positive",
            ));
        }
        if self.map_file.contains('/')
            || self.csv_file.contains('/')
            || self.map_file == self.csv_file
        {
            return Err(ConfigError::Invalid(
                "map_file and csv_file are two distinct file names inside dir",
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        for g in &self.gateways {
            let err = |reason: String| ConfigError::Gateway {
                name: g.name.clone(),
                reason,
            };
            if g.name.is_empty() || !names.insert(g.name.as_str()) {
                return Err(err("names must be non-empty and unique".into()));
            }
            g.socket
                .parse::<Endpoint>()
                .map_err(|e| err(e.to_string()))?;
            if !g.map.starts_with('/') && !g.map.starts_with('#') {
                return Err(err(
                    "map must be the absolute path in that haproxy's config (or #<id>)".into(),
                ));
            }
        }
        Ok(())
    }

    pub fn runtime_gateways(&self) -> Vec<Gateway> {
        self.gateways
            .iter()
            .map(|g| Gateway {
                name: g.name.clone(),
                endpoint: g.socket.parse().expect("validated"),
                map: g.map.clone(),
            })
            .collect()
    }

    pub fn push_policy(&self) -> PushPolicy {
        PushPolicy {
            io_timeout: Duration::from_millis(self.push_timeout_ms),
            attempts: self.push_attempts,
            backoff: Duration::from_millis(self.push_backoff_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_example_parses_and_validates() {
        #[derive(Deserialize)]
        struct Root {
            vault: VaultConfig,
        }
        let doc = include_str!("config.rs");
        let example: String = doc
            .lines()
            .skip_while(|l| !l.starts_with("/// ```toml"))
            .skip(1)
            .take_while(|l| !l.starts_with("/// ```"))
            .map(|l| format!("{}\n", l.trim_start_matches("///").trim_start()))
            .collect();
        let root: Root = toml::from_str(&example).unwrap();
        root.vault.validate().unwrap();
        assert_eq!(root.vault.gateways.len(), 1);
        assert_eq!(root.vault.runtime_gateways()[0].name, "fra-1");
        assert_eq!(root.vault.dir, Some("/etc/haproxy".into()));
    }

    #[test]
    fn refusals() {
        let mut c = VaultConfig::default();
        c.validate().unwrap();
        c.gateways.push(GatewayConfig {
            name: "a".into(),
            socket: "admin.sock".into(),
            map: "/x.map".into(),
        });
        assert!(matches!(c.validate(), Err(ConfigError::Gateway { .. })));
        c.gateways[0].socket = "unix:/run/a.sock".into();
        c.validate().unwrap();
        c.gateways.push(c.gateways[0].clone());
        assert!(c.validate().is_err(), "duplicate name");
        c.gateways.pop();
        c.gateways[0].map = "relative.map".into();
        assert!(c.validate().is_err());
        let c = VaultConfig {
            burst_ceiling_percent: 50,
            ..VaultConfig::default()
        };
        assert!(c.validate().is_err());
        assert!(
            toml::from_str::<VaultConfig>("unknown_field = 1").is_err(),
            "deny_unknown_fields"
        );
    }
}
