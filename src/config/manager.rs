//! `[manager]` and `[escrow]`: the billing cycle and the escrow it moves money through.

use std::time::Duration;

use anyhow::{Result, ensure};
use serde::Deserialize;
use suiftly_escrow::{EscrowKind, Network};

use super::socket_addr;

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
