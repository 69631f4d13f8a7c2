//! The environment overrides: one table, applied over the file before validation.

use anyhow::{Context, Result};
use suiftly_escrow::Network;

use super::{Config, WatermarkKind};

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
        var: "SUIFTLY_INGEST_ID",
        key: "ingest.id",
        apply: |c, v| {
            c.ingest.id = v;
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
        var: "SUIFTLY_STORAGE_WRITERS",
        key: "storage.writers",
        apply: |c, v| {
            c.storage.writers = v.parse()?;
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
        var: "SUIFTLY_VAULT_ENABLED",
        key: "vault.enabled",
        apply: |c, v| {
            c.vault.enabled = match v.as_str() {
                "1" | "true" | "yes" => true,
                "0" | "false" | "no" => false,
                other => anyhow::bail!("must be true or false, not {other:?}"),
            };
            Ok(())
        },
    },
    EnvOverride {
        var: "SUIFTLY_VAULT_DIR",
        key: "vault.dir",
        apply: |c, v| {
            c.vault.dir = Some(v.into());
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

impl Config {
    /// Applies every override whose variable `get` returns non-empty.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<()> {
        for o in ENV_OVERRIDES {
            if let Some(v) = get(o.var).filter(|v| !v.is_empty()) {
                (o.apply)(self, v).with_context(|| format!("{} (overrides {})", o.var, o.key))?;
            }
        }
        Ok(())
    }
}
