//! The vault as a step of the manager's cycle (issue 12).
//!
//! [`VaultTask`] runs after `settle` and `bill` in every periodic cycle and in every cycle a
//! notification starts (`on_trigger`): an API call that changes access (a key created,
//! revoked or regenerated, a service enabled, disabled or re-tiered) and the V21 triggers
//! (the same, plus suspensions by the billing cycle, and operator SQL) notify
//! `suiftly_manager`; the manager folds what arrives within its debounce into one cycle, whose
//! `bill` step suspends or resumes first, then the vault regenerates from the committed state
//! and pushes. [`retry_loop`] re-pushes to gateways whose last push failed, every
//! `vault.retry_interval_ms`, while this process leads; it ends with the manager's stop token.
//!
//! The vault step is not one transaction (a push may take seconds; the manager's sessions are
//! killed when idle inside a transaction): the fence is checked first, so a deposed leader
//! does not start a regeneration; one already running finishes, and what it writes is the
//! state it read (the next leader's cycle writes the state after it, with a higher seq).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use suiftly_billing::PriceList;
use suiftly_manager::{ManagerHandle, Task, TaskCtx, TaskFuture};
use suiftly_vault::KeyCipher;
use suiftly_vault_stage::VaultStage;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::Config;

/// The vault stage of this process, or `None` when `[vault] enabled = false`. The key map is
/// opened with the API's key-encryption key (`SUIFTLY_KEY_ENCRYPTION_KEY`); the tiers' rates
/// are the price list's.
pub fn stage(cfg: &Config, prices: &PriceList) -> Result<Option<Arc<VaultStage>>> {
    if !cfg.vault.enabled {
        return Ok(None);
    }
    let kek = crate::api_cmd::key_encryption_key(cfg.api.production)?;
    let settings = cfg.vault.stage_settings(&cfg.data_dir);
    info!(
        dir = %settings.dir.display(),
        gateways = settings.gateways.len(),
        "vault step enabled"
    );
    Ok(Some(Arc::new(VaultStage::new(
        &settings,
        [
            prices.starter_rate_per_region,
            prices.pro_rate_per_region,
            prices.enterprise_rate_per_region,
        ],
        KeyCipher::new(&kek),
    ))))
}

/// The manager's `vault` step.
pub struct VaultTask(pub Arc<VaultStage>);

impl Task for VaultTask {
    fn name(&self) -> &'static str {
        "vault"
    }

    fn on_trigger(&self) -> bool {
        true
    }

    fn run<'a>(&'a self, ctx: &'a TaskCtx<'a>) -> TaskFuture<'a> {
        Box::pin(async move {
            let mut client = ctx.pool.get().await.map_err(|e| e.to_string())?;
            {
                let tx = client.transaction().await.map_err(|e| e.to_string())?;
                ctx.fence.check(&tx).await.map_err(|e| e.to_string())?;
                tx.commit().await.map_err(|e| e.to_string())?;
            }
            let report = self
                .0
                .run_once(&**client, ctx.now)
                .await
                .map_err(|e| e.to_string())?;
            let failed: Vec<&str> = report
                .gateways
                .iter()
                .filter(|g| !g.ok)
                .map(|g| g.gateway.as_str())
                .collect();
            if !failed.is_empty() {
                warn!(seq = report.seq, gateways = ?failed, "vault: push failed (retried every vault.retry_interval_ms)");
            }
            Ok(serde_json::to_value(report).expect("plain struct"))
        })
    }
}

/// Re-pushes the live version to the gateways whose last push failed, every `interval`, while
/// this process is the leader; ends when `stop` fires.
pub async fn retry_loop(
    stage: Arc<VaultStage>,
    manager: ManagerHandle,
    interval: Duration,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        if stage.failing_gateways() == 0 || manager.fence().is_none() {
            continue;
        }
        let client = match manager.pool().get().await {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "vault retry: no database connection");
                continue;
            }
        };
        metrics::counter!("suiftly_vault_retries_total").increment(1);
        let pushed = tokio::select! {
            _ = stop.cancelled() => return,
            r = stage.retry_failed(&**client) => r,
        };
        match pushed {
            Ok(reports) => {
                for r in reports {
                    if r.ok {
                        info!(gateway = %r.gateway, seq = ?r.applied_seq, "vault retry: gateway caught up");
                    } else {
                        debug!(gateway = %r.gateway, error = ?r.error, "vault retry: still failing");
                    }
                }
            }
            Err(e) => warn!(error = %e, "vault retry failed"),
        }
    }
}
