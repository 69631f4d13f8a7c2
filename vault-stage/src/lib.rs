//! The vault stage: the async shell around the sans-IO `suiftly-vault` crate.
//!
//! One [`VaultStage::run_once`] is one regeneration:
//!
//! ```text
//! PostgreSQL ──load (customers, services, keys)──▶ decrypt ─▶ build ─▶ write files ─▶ record
//!   (async queries)                                └──── spawn_blocking ─────┘      version
//!                                                                                     │
//!            vault_gateways ◀── record ◀── push_all (spawn_blocking, a thread per gateway)
//! ```
//!
//! File first, runtime second: a gateway is only ever pushed a version that is already durable
//! in the live file, so a reload (which loads the file) never rolls HAProxy back. Every cycle
//! pushes to every gateway; one that already has the version costs one `get map` and one
//! `show map`, and one that was restarted on an older file, or was unreachable, catches up.
//! [`VaultStage::retry_failed`] re-pushes to gateways whose last push failed, between cycles.
//!
//! The manager calls this; it does not know about the manager (no leader, no clock of its own:
//! the caller passes `now`).

pub mod config;
pub mod db;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use tokio_postgres::GenericClient;
use tracing::{info, warn};

use suiftly_vault::runtime::{self, Gateway, PushPolicy};
use suiftly_vault::{
    KeyCipher, KeyRecord, MapHeader, RateLimits, VaultFiles, VaultInput, WriteOutcome, build,
};

pub use config::VaultSettings;

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("vault content: {0}")]
    Content(#[from] suiftly_vault::content::ContentError),
    #[error("vault files: {0}")]
    Write(#[from] suiftly_vault::writer::WriteError),
    #[error("reading the live map {path}: {source}")]
    ReadLive {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the live map is invalid: {0}")]
    LiveMap(#[from] suiftly_vault::content::MapFileError),
    #[error("blocking task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// Per-gateway outcome of a push, for the cycle report.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GatewayReport {
    pub gateway: String,
    pub ok: bool,
    pub applied_seq: Option<u64>,
    pub already: bool,
    pub attempts: u32,
    pub elapsed_ms: u64,
    pub chunks: usize,
    pub error: Option<String>,
}

/// What one regeneration did (serialized into the manager's task status).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CycleReport {
    pub seq: u64,
    pub hash: String,
    pub written: bool,
    pub keys: usize,
    pub csv_rows: usize,
    pub map_bytes: Option<u64>,
    pub decrypt_failures: usize,
    pub skipped: usize,
    pub load_ms: u64,
    pub build_write_ms: u64,
    pub gateways: Vec<GatewayReport>,
}

#[derive(Debug, Clone, Default)]
struct GatewayState {
    applied: Option<(u64, String)>,
    failing: bool,
}

pub struct VaultStage {
    files: VaultFiles,
    cipher: Arc<KeyCipher>,
    limits: RateLimits,
    revoked_retention: TimeDelta,
    gateways: Vec<Gateway>,
    policy: PushPolicy,
    writer_id: String,
    state: Mutex<BTreeMap<String, GatewayState>>,
    /// Serializes regenerations and retries (a trigger and a retry tick may race).
    running: tokio::sync::Mutex<()>,
}

impl VaultStage {
    /// `tier_rps`: the guaranteed rates per region of starter, pro and enterprise (the price
    /// list's); `cipher` opens `api_keys.encrypted_key`.
    pub fn new(settings: &VaultSettings, tier_rps: [u32; 3], cipher: KeyCipher) -> VaultStage {
        VaultStage {
            files: VaultFiles::new(settings.dir.clone(), settings.keep_versions.max(1))
                .with_names(&settings.map_file, &settings.csv_file),
            cipher: Arc::new(cipher),
            limits: RateLimits {
                starter_rps: tier_rps[0],
                pro_rps: tier_rps[1],
                enterprise_rps: tier_rps[2],
                burst_ceiling_percent: settings.burst_ceiling_percent,
                gateways_per_region: settings.gateways_per_region.max(1),
            },
            revoked_retention: settings.revoked_retention,
            gateways: settings.gateways.clone(),
            policy: settings.policy,
            writer_id: format!(
                "{}:{}",
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map(|h| h.trim().to_string())
                    .unwrap_or_else(|_| "unknown".into()),
                std::process::id()
            ),
            state: Mutex::new(BTreeMap::new()),
            running: tokio::sync::Mutex::new(()),
        }
    }

    /// Whether a gateway's last push failed (what [`VaultStage::retry_failed`] retries).
    pub fn failing_gateways(&self) -> usize {
        self.state
            .lock()
            .expect("not poisoned")
            .values()
            .filter(|s| s.failing)
            .count()
    }

    pub fn files(&self) -> &VaultFiles {
        &self.files
    }

    /// Regenerates from PostgreSQL, writes a new version if the content changed, records it,
    /// and pushes the live version to every gateway.
    pub async fn run_once(
        &self,
        client: &impl GenericClient,
        now: DateTime<Utc>,
    ) -> Result<CycleReport, StageError> {
        let _one = self.running.lock().await;
        let t0 = Instant::now();
        let snap = db::load(client, now - self.revoked_retention).await?;
        let min_seq = db::max_seq(client).await? + 1;
        let load_ms = t0.elapsed().as_millis() as u64;

        let t1 = Instant::now();
        let (files, cipher, limits) = (self.files.clone(), self.cipher.clone(), self.limits);
        let skipped_rows = snap.skipped_rows;
        let (content, outcome, decrypt_failures) = tokio::task::spawn_blocking(move || {
            let (input, failures) = decrypt(snap, &cipher);
            let content = build(&input, &limits)?;
            let outcome = files.write(&content, min_seq)?;
            Ok::<_, StageError>((content, outcome, failures))
        })
        .await??;
        let build_write_ms = t1.elapsed().as_millis() as u64;

        let seq = outcome.seq();
        let map_bytes = match outcome {
            WriteOutcome::Written {
                map_bytes,
                csv_bytes,
                ..
            } => {
                db::record_version(
                    client,
                    &db::VersionRecord {
                        seq,
                        content_hash: content.hash_hex(),
                        entries: content.keys() as u64,
                        csv_rows: content.csv_rows() as u64,
                        map_bytes,
                        csv_bytes,
                        written_by: self.writer_id.clone(),
                    },
                )
                .await?;
                metrics::counter!("suiftly_vault_writes_total").increment(1);
                info!(
                    seq,
                    keys = content.keys(),
                    csv_rows = content.csv_rows(),
                    map_bytes,
                    "vault version written"
                );
                Some(map_bytes)
            }
            WriteOutcome::Unchanged { .. } => {
                metrics::counter!("suiftly_vault_unchanged_total").increment(1);
                None
            }
        };
        metrics::gauge!("suiftly_vault_seq").set(seq as f64);
        metrics::gauge!("suiftly_vault_keys").set(content.keys() as f64);
        metrics::gauge!("suiftly_vault_csv_rows").set(content.csv_rows() as f64);
        metrics::gauge!("suiftly_vault_decrypt_failures").set(decrypt_failures as f64);
        metrics::histogram!("suiftly_vault_build_write_seconds")
            .record(build_write_ms as f64 / 1e3);
        let skipped = content.stats.malformed_keys + content.stats.duplicate_keys + skipped_rows;
        if decrypt_failures > 0 || skipped > 0 {
            warn!(
                decrypt_failures,
                skipped, "vault: keys left out of the map (refused as unknown)"
            );
        }

        let gateways = self.push(client, self.gateways.clone()).await?;
        Ok(CycleReport {
            seq,
            hash: content.hash_hex(),
            written: map_bytes.is_some(),
            keys: content.keys(),
            csv_rows: content.csv_rows(),
            map_bytes,
            decrypt_failures,
            skipped,
            load_ms,
            build_write_ms,
            gateways,
        })
    }

    /// Pushes the live version again to the gateways whose last push failed. Cheap when none
    /// did; meant to be called every `retry_interval_ms`.
    pub async fn retry_failed(
        &self,
        client: &impl GenericClient,
    ) -> Result<Vec<GatewayReport>, StageError> {
        let _one = self.running.lock().await;
        let failing: Vec<Gateway> = {
            let st = self.state.lock().expect("not poisoned");
            self.gateways
                .iter()
                .filter(|g| st.get(&g.name).is_some_and(|s| s.failing))
                .cloned()
                .collect()
        };
        if failing.is_empty() || self.files.current()?.is_none() {
            return Ok(Vec::new());
        }
        self.push(client, failing).await
    }

    async fn push(
        &self,
        client: &impl GenericClient,
        gateways: Vec<Gateway>,
    ) -> Result<Vec<GatewayReport>, StageError> {
        if gateways.is_empty() {
            return Ok(Vec::new());
        }
        let path = self.files.map_path();
        let policy = self.policy;
        let (header, outcomes) = tokio::task::spawn_blocking(move || {
            let text = std::fs::read_to_string(&path)
                .map_err(|source| StageError::ReadLive { path, source })?;
            let header = MapHeader::verify(&text)?;
            Ok::<_, StageError>((header, runtime::push_all(&gateways, &text, &policy)))
        })
        .await??;
        let mut reports = Vec::with_capacity(outcomes.len());
        for o in outcomes {
            let endpoint = self
                .gateways
                .iter()
                .find(|g| g.name == o.gateway)
                .map(|g| g.endpoint.to_string())
                .unwrap_or_default();
            let labels = [("gateway", o.gateway.clone())];
            metrics::histogram!("suiftly_vault_push_seconds", &labels)
                .record(o.elapsed.as_secs_f64());
            let (record, report) = match &o.result {
                Ok(a) => {
                    metrics::gauge!("suiftly_vault_applied_seq", &labels).set(a.seq as f64);
                    metrics::gauge!("suiftly_vault_applied_lag", &labels)
                        .set(header.seq.saturating_sub(a.seq) as f64);
                    if !a.already {
                        info!(gateway = %o.gateway, seq = a.seq, haproxy_version = a.haproxy_version,
                              chunks = a.chunks, elapsed_ms = o.elapsed.as_millis() as u64, "vault pushed");
                    }
                    (
                        db::GatewayRecord::Applied {
                            seq: a.seq,
                            hash: a.hash.clone(),
                            haproxy_version: a.haproxy_version,
                        },
                        GatewayReport {
                            gateway: o.gateway.clone(),
                            ok: true,
                            applied_seq: Some(a.seq),
                            already: a.already,
                            attempts: o.attempts,
                            elapsed_ms: o.elapsed.as_millis() as u64,
                            chunks: a.chunks,
                            error: None,
                        },
                    )
                }
                Err(e) => {
                    metrics::counter!("suiftly_vault_push_failures_total", &labels).increment(1);
                    let applied = self
                        .state
                        .lock()
                        .expect("not poisoned")
                        .get(&o.gateway)
                        .and_then(|s| s.applied.as_ref().map(|a| a.0));
                    metrics::gauge!("suiftly_vault_applied_lag", &labels)
                        .set(header.seq.saturating_sub(applied.unwrap_or(0)) as f64);
                    warn!(gateway = %o.gateway, attempts = o.attempts, error = %e, "vault push failed; will retry");
                    (
                        db::GatewayRecord::Failed {
                            error: e.to_string(),
                        },
                        GatewayReport {
                            gateway: o.gateway.clone(),
                            ok: false,
                            applied_seq: applied,
                            already: false,
                            attempts: o.attempts,
                            elapsed_ms: o.elapsed.as_millis() as u64,
                            chunks: 0,
                            error: Some(e.to_string()),
                        },
                    )
                }
            };
            {
                let mut st = self.state.lock().expect("not poisoned");
                let s = st.entry(o.gateway.clone()).or_default();
                match &o.result {
                    Ok(a) => {
                        s.applied = Some((a.seq, a.hash.clone()));
                        s.failing = false;
                    }
                    Err(_) => s.failing = true,
                }
            }
            db::record_gateway(client, &o.gateway, &endpoint, &record).await?;
            reports.push(report);
        }
        Ok(reports)
    }
}

/// Opens every key; one that does not decrypt (wrong key-encryption key, corrupted row) is
/// left out of the map and counted.
fn decrypt(snap: db::Snapshot, cipher: &KeyCipher) -> (VaultInput, usize) {
    let mut failures = 0;
    let mut keys = Vec::with_capacity(snap.keys.len());
    for k in snap.keys {
        let row = suiftly_vault::at_rest::KeyBinding {
            key_id: k.key_id,
            customer_id: k.customer_id as i32,
        };
        let Some(key) = cipher
            .open(&k.encrypted_key, row)
            .ok()
            .and_then(|p| String::from_utf8(p).ok())
        else {
            failures += 1;
            continue;
        };
        keys.push(KeyRecord {
            customer_id: k.customer_id,
            service_type: k.service_type,
            key,
            encrypted_key: k.encrypted_key,
            fingerprint: k.fingerprint,
            metadata: k.metadata,
            revoked: k.revoked,
        });
    }
    (
        VaultInput {
            customers: snap.customers,
            services: snap.services,
            keys,
        },
        failures,
    )
}
