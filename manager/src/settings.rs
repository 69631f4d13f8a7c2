//! The `[manager]` configuration section (units in the field names; every field has a default).

use std::time::Duration;

use chrono::TimeDelta;
use serde::Deserialize;
use suiftly_billing::{PriceList, Rules};

use crate::bill::BillingSettings;
use crate::service::{ManagerConfig, WatermarkSource};

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ManagerSettings {
    /// Run the manager inside `suiftly run` (one machine, one process). `suiftly manager` runs
    /// it on its own whatever this says.
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

impl Default for ManagerSettings {
    fn default() -> Self {
        ManagerSettings {
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

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("manager.{field}: {reason}")]
pub struct SettingsError {
    pub field: &'static str,
    pub reason: String,
}

fn bad(field: &'static str, reason: impl Into<String>) -> SettingsError {
    SettingsError {
        field,
        reason: reason.into(),
    }
}

impl ManagerSettings {
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.cycle_interval_ms < 100 {
            return Err(bad("cycle_interval_ms", "at least 100"));
        }
        if self.lease_ms < 1_000 {
            return Err(bad("lease_ms", "at least 1000"));
        }
        if self.renew_interval_ms == 0 || self.renew_interval_ms * 2 > self.lease_ms {
            return Err(bad(
                "renew_interval_ms",
                "between 1 and half of lease_ms (a lease must survive one missed renewal)",
            ));
        }
        if self.idle_in_transaction_ms == 0 || self.idle_in_transaction_ms >= self.lease_ms {
            return Err(bad("idle_in_transaction_ms", "between 1 and lease_ms"));
        }
        if self.usage_threshold_cents < 0 {
            return Err(bad("usage_threshold_cents", "not negative"));
        }
        if self.batch_size == 0 || self.escrow_concurrency == 0 || self.db_pool_size < 2 {
            return Err(bad(
                "batch_size / escrow_concurrency / db_pool_size",
                "at least 1 / 1 / 2",
            ));
        }
        Ok(())
    }

    pub fn idle_in_transaction(&self) -> Duration {
        Duration::from_millis(self.idle_in_transaction_ms)
    }

    /// The runtime configuration.
    pub fn to_config(&self, prices: PriceList, production: bool) -> ManagerConfig {
        let ms = |v: u64| TimeDelta::milliseconds(v as i64);
        ManagerConfig {
            cycle_interval: Duration::from_millis(self.cycle_interval_ms),
            lease: Duration::from_millis(self.lease_ms),
            renew_interval: Duration::from_millis(self.renew_interval_ms),
            watermark: match self.watermark {
                WatermarkKind::Metering => WatermarkSource::Metering,
                WatermarkKind::Clock => WatermarkSource::Clock {
                    lateness: ms(self.clock_lateness_ms),
                },
            },
            billing: BillingSettings {
                prices,
                rules: Rules {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let s = ManagerSettings::default();
        s.validate().unwrap();
        let c = s.to_config(PriceList::default(), false);
        assert_eq!(c.cycle_interval, Duration::from_secs(300));
        // A standby takes over within lease + renew ≤ 15 s.
        assert!(c.lease + c.renew_interval <= Duration::from_secs(15));
        assert_eq!(c.billing.rules.usage_threshold_cents, 500);
    }

    #[test]
    fn refuses_leases_that_cannot_survive_a_missed_renewal() {
        let s = ManagerSettings {
            renew_interval_ms: 6_000,
            ..ManagerSettings::default()
        };
        assert_eq!(s.validate().unwrap_err().field, "renew_interval_ms");
        let s = ManagerSettings {
            idle_in_transaction_ms: 10_000,
            ..ManagerSettings::default()
        };
        assert_eq!(s.validate().unwrap_err().field, "idle_in_transaction_ms");
    }
}
