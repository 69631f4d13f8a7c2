//! The caller's Seal keys (SPEC §5): list, create (derived by the key server at a fresh
//! derivation index) or import (the customer's public key and private key encrypted to the key
//! server), delete, and the Sui packages each key serves.
//!
//! Pricing (BILLING.md §1): one Seal key and three packages per key are included; each further
//! key and package is bought (`extra_seal_keys`, `extra_packages` in the service's config).
//! Packages are pooled per service: `packages − 3 × keys` beyond zero must be bought. Every
//! change that would need more than what is bought buys it in the same transaction, and
//! that is a cost-adding step: it runs the balance and monthly-limit check under the
//! customer row lock (when the service is enabled; a disabled service is checked at enable,
//! at its full price), exactly as a configuration change does. Nothing is sold back by a
//! delete: lowering what is bought is a configuration change (a downgrade, next month).
//!
//! Deleting a key can add cost too — its three included packages go with it while the
//! other keys' packages stay — and is checked the same way.
//!
//! The derived public key: the key server computes it from its master seed and the index. The
//! API has no access to that seed; [`derived_public_key`] is a deterministic stand-in (96
//! bytes, the size of a compressed BLS12-381 G2 point) until the key server reports the real
//! one — see docs/API.md ("Seal keys").

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use base64::Engine;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use suiftly_billing::{
    MoneyState, PriceList, ServiceConfig, ServiceType, check_spend, monthly_price_cents,
};

use crate::auth::Caller;
use crate::db::lock_money;
use crate::error::ApiError;
use crate::{AppState, JsonBody};

/// Longest accepted encrypted private key (bytes, decoded).
pub const MAX_ENCRYPTED_KEY_BYTES: usize = 1024;
/// Packages one key may list (whatever is bought).
pub const MAX_PACKAGES_PER_KEY: usize = 100;

const COLUMNS: &str = "seal_key_id, name, source, network, public_key, derivation_index, \
    package_ids, is_active, created_at, revoked_at";

fn key_json(r: &tokio_postgres::Row) -> Value {
    json!({
        "seal_key_id": r.get::<_, i64>(0),
        "name": r.get::<_, String>(1),
        "source": r.get::<_, String>(2),
        "network": if r.get::<_, i16>(3) == 1 { "mainnet" } else { "testnet" },
        "public_key": r.get::<_, String>(4),
        "derivation_index": r.get::<_, Option<i32>>(5),
        "packages": r.get::<_, Value>(6),
        "is_active": r.get::<_, bool>(7),
        "created_at": r.get::<_, DateTime<Utc>>(8),
        "revoked_at": r.get::<_, Option<DateTime<Utc>>>(9),
    })
}

/// The stand-in for the key server's derived public key (see the module doc): 96 bytes as
/// 192 hex characters, a function of the deployment's secret and the index.
pub fn derived_public_key(secret: &[u8; 32], index: i32) -> String {
    let mut out = String::with_capacity(192);
    for block in 0u8..3 {
        let mut h = Sha256::new();
        h.update(b"suiftly/seal-derived-public-key/v1");
        h.update(secret);
        h.update(index.to_be_bytes());
        h.update([block]);
        out.push_str(&hex::encode(h.finalize()));
    }
    out
}

/// `0x` + 64 hex digits, normalized to lower case.
pub fn parse_package_id(s: &str) -> Result<String, ApiError> {
    let hex_part = s
        .strip_prefix("0x")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| {
            ApiError::InvalidRequest("package_id must be 0x followed by 64 hex digits".into())
        })?;
    Ok(format!("0x{}", hex_part.to_ascii_lowercase()))
}

/// What the caller's Seal service allows and uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub keys: u32,
    pub packages: u32,
}

/// Extras needed for `u` (BILLING.md §1).
pub fn needed_extras(prices: &PriceList, u: Usage) -> (u32, u32) {
    let keys = u.keys.saturating_sub(prices.included_seal_keys);
    let packages = u
        .packages
        .saturating_sub(prices.included_packages_per_seal_key * u.keys);
    (keys, packages)
}

fn allowance_json(prices: &PriceList, config: &ServiceConfig, u: Usage) -> Value {
    json!({
        "active_keys": u.keys,
        "included_keys": prices.included_seal_keys,
        "purchased_keys": config.extra_seal_keys,
        "packages": u.packages,
        "included_packages_per_key": prices.included_packages_per_seal_key,
        "purchased_packages": config.extra_packages,
        "extra_key_usd_cents_per_month": prices.extra_seal_key_cents,
        "extra_package_usd_cents_per_month": prices.extra_package_cents,
    })
}

/// The caller's seal service row, locked.
struct SealService {
    enabled: bool,
    /// The configuration in force.
    config: ServiceConfig,
    /// A downgrade scheduled for the 1st of next month (issue 11), if any.
    pending: Option<ServiceConfig>,
}

async fn lock_service(
    client: &impl GenericClient,
    customer_id: i32,
) -> Result<SealService, ApiError> {
    let row = client
        .query_opt(
            "SELECT is_enabled, config, pending_config FROM service_instances \
             WHERE customer_id = $1 AND service_type = $2 FOR UPDATE",
            &[&customer_id, &(ServiceType::Seal as i16)],
        )
        .await?
        .ok_or(ApiError::NotFound("seal service"))?;
    let config: ServiceConfig = serde_json::from_value(row.get(1)).map_err(ApiError::internal)?;
    let pending = row
        .get::<_, Option<Value>>(2)
        .map(serde_json::from_value::<ServiceConfig>)
        .transpose()
        .map_err(ApiError::internal)?;
    Ok(SealService {
        enabled: row.get(0),
        config,
        pending,
    })
}

async fn usage(client: &impl GenericClient, customer_id: i32) -> Result<Usage, ApiError> {
    let r = client
        .query_one(
            "SELECT count(*), COALESCE(sum(jsonb_array_length(package_ids)), 0)::bigint \
             FROM seal_keys WHERE customer_id = $1 AND is_active",
            &[&customer_id],
        )
        .await?;
    Ok(Usage {
        keys: r.get::<_, i64>(0) as u32,
        packages: r.get::<_, i64>(1) as u32,
    })
}

/// Buys what `after` needs beyond what the service has, spend-checked (see the module doc).
/// Returns the configuration in force afterwards.
///
/// A purchase is a change of the service: it appends the state after it to the service
/// journal (`service_events`, BILLING.md §2) in this transaction, from which billing derives
/// the fee lines, and notifies the manager so the extra is charged at once. A scheduled
/// downgrade keeps at least what is in use: its extras are raised alike.
async fn ensure_bought(
    state: &AppState,
    client: &impl GenericClient,
    customer_id: i32,
    money: &MoneyState,
    svc: SealService,
    after: Usage,
) -> Result<ServiceConfig, ApiError> {
    let prices = &state.config.prices;
    let (keys, packages) = needed_extras(prices, after);
    let config = svc.config;
    if keys <= config.extra_seal_keys && packages <= config.extra_packages {
        return Ok(config);
    }
    let raise = |mut c: ServiceConfig| {
        c.extra_seal_keys = c.extra_seal_keys.max(keys);
        c.extra_packages = c.extra_packages.max(packages);
        c
    };
    let next = raise(config);
    let pending = svc.pending.map(raise);
    let old = monthly_price_cents(prices, ServiceType::Seal, &config)
        .map_err(|e| ApiError::InvalidConfig(e.to_string()))?;
    let new = monthly_price_cents(prices, ServiceType::Seal, &next)
        .map_err(|e| ApiError::InvalidConfig(e.to_string()))?;
    if svc.enabled {
        check_spend(money, new - old)?;
    }
    let now = state.clock.now();
    let next_json = serde_json::to_value(next).map_err(ApiError::internal)?;
    let pending_json = pending
        .map(serde_json::to_value)
        .transpose()
        .map_err(ApiError::internal)?;
    client
        .execute(
            "UPDATE service_instances SET config = $3, pending_config = $4, updated_at = $5 \
             WHERE customer_id = $1 AND service_type = $2",
            &[
                &customer_id,
                &(ServiceType::Seal as i16),
                &next_json,
                &pending_json,
                &now,
            ],
        )
        .await?;
    client
        .execute(
            "INSERT INTO service_events (customer_id, service_type, at, is_enabled, config, pending_config, source) \
             VALUES ($1, $2, $3, $4, $5, $6, 'api')",
            &[
                &customer_id,
                &(ServiceType::Seal as i16),
                &now,
                &svc.enabled,
                &next_json,
                &pending_json,
            ],
        )
        .await?;
    crate::billing::notify(client, "service", customer_id).await?;
    metrics::counter!("suiftly_api_seal_extras_bought_total").increment(1);
    Ok(next)
}

pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let client = state.pool.get().await?;
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM seal_keys WHERE customer_id = $1 AND is_active \
                 ORDER BY seal_key_id"
            ),
            &[&caller.customer_id],
        )
        .await?;
    let config: Option<ServiceConfig> = client
        .query_opt(
            "SELECT config FROM service_instances WHERE customer_id = $1 AND service_type = $2",
            &[&caller.customer_id, &(ServiceType::Seal as i16)],
        )
        .await?
        .map(|r| serde_json::from_value(r.get(0)))
        .transpose()
        .map_err(ApiError::internal)?;
    let u = usage(&client, caller.customer_id).await?;
    Ok(Json(json!({
        "seal_keys": rows.iter().map(key_json).collect::<Vec<_>>(),
        "allowance": allowance_json(
            &state.config.prices,
            &config.unwrap_or_else(ServiceConfig::starter),
            u,
        ),
    })))
}

#[derive(Deserialize, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SealSource {
    #[default]
    Derived,
    Imported,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSealKey {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub network: crate::keys::NetworkName,
    #[serde(default)]
    pub source: SealSource,
    /// Imported only: the BLS12-381 G2 public key, 96 bytes as hex.
    pub public_key: Option<String>,
    /// Imported only: the private key encrypted to the key server, base64.
    pub encrypted_private_key: Option<String>,
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(req): JsonBody<CreateSealKey>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    if req.name.chars().count() > 64 || req.name.chars().any(char::is_control) {
        return Err(ApiError::InvalidRequest(
            "name: at most 64 characters, no control characters".into(),
        ));
    }
    let imported = match req.source {
        SealSource::Derived => {
            if req.public_key.is_some() || req.encrypted_private_key.is_some() {
                return Err(ApiError::InvalidRequest(
                    "a derived key takes no public_key or encrypted_private_key".into(),
                ));
            }
            None
        }
        SealSource::Imported => {
            let pk = req
                .public_key
                .as_deref()
                .map(str::trim)
                .map(|p| p.strip_prefix("0x").unwrap_or(p).to_ascii_lowercase())
                .filter(|p| p.len() == 192 && p.bytes().all(|b| b.is_ascii_hexdigit()))
                .ok_or_else(|| {
                    ApiError::InvalidRequest(
                        "public_key: 96 bytes (a compressed BLS12-381 G2 point) as 192 hex digits"
                            .into(),
                    )
                })?;
            let enc = req
                .encrypted_private_key
                .as_deref()
                .and_then(|e| {
                    base64::engine::general_purpose::STANDARD
                        .decode(e.trim())
                        .ok()
                })
                .filter(|b| !b.is_empty() && b.len() <= MAX_ENCRYPTED_KEY_BYTES)
                .ok_or_else(|| {
                    ApiError::InvalidRequest(format!(
                        "encrypted_private_key: base64, 1 to {MAX_ENCRYPTED_KEY_BYTES} bytes"
                    ))
                })?;
            Some((pk, enc))
        }
    };
    let network: i16 = match req.network {
        crate::keys::NetworkName::Mainnet => 1,
        crate::keys::NetworkName::Testnet => 0,
    };
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    let money = lock_money(&tx, caller.customer_id).await?;
    let svc = lock_service(&tx, caller.customer_id).await?;
    let mut u = usage(&tx, caller.customer_id).await?;
    u.keys += 1;
    let config = ensure_bought(&state, &tx, caller.customer_id, &money, svc, u).await?;
    let instance: i64 = tx
        .query_one(
            "SELECT instance_id FROM service_instances WHERE customer_id = $1 AND service_type = $2",
            &[&caller.customer_id, &(ServiceType::Seal as i16)],
        )
        .await?
        .get(0);
    let now = state.clock.now();
    let row = match imported {
        None => {
            let index: i32 = tx
                .query_one("SELECT nextval('seal_derivation_index')::integer", &[])
                .await?
                .get(0);
            let pk = derived_public_key(state.config.api_key_secret.expose(), index);
            tx.query_one(
                &format!(
                    "INSERT INTO seal_keys (customer_id, instance_id, public_key, derivation_index, \
                        name, source, network, created_at) \
                     VALUES ($1, $2, $3, $4, $5, 'derived', $6, $7) RETURNING {COLUMNS}"
                ),
                &[
                    &caller.customer_id,
                    &instance,
                    &pk,
                    &index,
                    &req.name,
                    &network,
                    &now,
                ],
            )
            .await?
        }
        Some((pk, enc)) => {
            let taken = tx
                .query_opt("SELECT 1 FROM seal_keys WHERE public_key = $1", &[&pk])
                .await?
                .is_some();
            if taken {
                return Err(ApiError::InvalidRequest(
                    "this public key is already registered".into(),
                ));
            }
            tx.query_one(
                &format!(
                    "INSERT INTO seal_keys (customer_id, instance_id, public_key, encrypted_private_key, \
                        name, source, network, created_at) \
                     VALUES ($1, $2, $3, $4, $5, 'imported', $6, $7) RETURNING {COLUMNS}"
                ),
                &[
                    &caller.customer_id,
                    &instance,
                    &pk,
                    &enc,
                    &req.name,
                    &network,
                    &now,
                ],
            )
            .await?
        }
    };
    let mut out = key_json(&row);
    out["allowance"] = allowance_json(&state.config.prices, &config, u);
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(out)))
}

fn id(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>()
        .map_err(|_| ApiError::InvalidRequest("seal_key_id must be an integer".into()))
}

/// Locks one active key of the caller: its packages.
async fn lock_key(
    client: &impl GenericClient,
    customer_id: i32,
    key: i64,
) -> Result<Vec<String>, ApiError> {
    let row = client
        .query_opt(
            "SELECT package_ids FROM seal_keys \
             WHERE seal_key_id = $1 AND customer_id = $2 AND is_active FOR UPDATE",
            &[&key, &customer_id],
        )
        .await?
        .ok_or(ApiError::NotFound("seal key"))?;
    serde_json::from_value(row.get(0)).map_err(ApiError::internal)
}

pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
) -> Result<StatusCode, ApiError> {
    let key = id(&raw)?;
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    let money = lock_money(&tx, caller.customer_id).await?;
    let svc = lock_service(&tx, caller.customer_id).await?;
    let packages = lock_key(&tx, caller.customer_id, key).await?;
    let mut u = usage(&tx, caller.customer_id).await?;
    u.keys -= 1;
    u.packages -= packages.len() as u32;
    ensure_bought(&state, &tx, caller.customer_id, &money, svc, u).await?;
    tx.execute(
        "UPDATE seal_keys SET is_active = false, revoked_at = $3 \
         WHERE seal_key_id = $1 AND customer_id = $2",
        &[&key, &caller.customer_id, &state.clock.now()],
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn packages(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let key = id(&raw)?;
    let client = state.pool.get().await?;
    let row = client
        .query_opt(
            "SELECT package_ids FROM seal_keys WHERE seal_key_id = $1 AND customer_id = $2 AND is_active",
            &[&key, &caller.customer_id],
        )
        .await?
        .ok_or(ApiError::NotFound("seal key"))?;
    Ok(Json(
        json!({ "seal_key_id": key, "packages": row.get::<_, Value>(0) }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddPackage {
    pub package_id: String,
}

pub async fn add_package(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
    JsonBody(req): JsonBody<AddPackage>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let key = id(&raw)?;
    let pkg = parse_package_id(&req.package_id)?;
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    let money = lock_money(&tx, caller.customer_id).await?;
    let svc = lock_service(&tx, caller.customer_id).await?;
    let mut list = lock_key(&tx, caller.customer_id, key).await?;
    if list.contains(&pkg) {
        return Err(ApiError::InvalidRequest(
            "this package is already on the key".into(),
        ));
    }
    if list.len() >= MAX_PACKAGES_PER_KEY {
        return Err(ApiError::InvalidRequest(format!(
            "a key serves at most {MAX_PACKAGES_PER_KEY} packages"
        )));
    }
    let mut u = usage(&tx, caller.customer_id).await?;
    u.packages += 1;
    ensure_bought(&state, &tx, caller.customer_id, &money, svc, u).await?;
    list.push(pkg);
    tx.execute(
        "UPDATE seal_keys SET package_ids = $3 WHERE seal_key_id = $1 AND customer_id = $2",
        &[&key, &caller.customer_id, &json!(list)],
    )
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "seal_key_id": key, "packages": list })),
    ))
}

pub async fn remove_package(
    State(state): State<AppState>,
    caller: Caller,
    Path((raw, package)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let key = id(&raw)?;
    let pkg = parse_package_id(&package)?;
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    let mut list = lock_key(&tx, caller.customer_id, key).await?;
    let before = list.len();
    list.retain(|p| *p != pkg);
    if list.len() == before {
        return Err(ApiError::NotFound("package"));
    }
    tx.execute(
        "UPDATE seal_keys SET package_ids = $3 WHERE seal_key_id = $1 AND customer_id = $2",
        &[&key, &caller.customer_id, &json!(list)],
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Refuses a configuration that buys fewer Seal keys or packages than are in use (called by
/// the configuration change of the seal service, like the API-key check there).
pub async fn check_config_covers_use(
    client: &impl GenericClient,
    prices: &PriceList,
    customer_id: i32,
    config: &ServiceConfig,
) -> Result<(), ApiError> {
    let u = usage(client, customer_id).await?;
    let (keys, packages) = needed_extras(prices, u);
    if config.extra_seal_keys < keys || config.extra_packages < packages {
        return Err(ApiError::InvalidConfig(format!(
            "{} seal keys with {} packages are active: they need {keys} extra keys and {packages} extra packages; delete keys or packages first",
            u.keys, u.packages
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extras_follow_billing_rules() {
        let p = PriceList::default();
        let n = |keys, packages| needed_extras(&p, Usage { keys, packages });
        assert_eq!(n(0, 0), (0, 0));
        assert_eq!(n(1, 3), (0, 0));
        assert_eq!(n(1, 4), (0, 1));
        assert_eq!(n(2, 6), (1, 0), "3 packages per key, pooled");
        assert_eq!(n(3, 10), (2, 1));
    }

    #[test]
    fn package_ids_are_normalized_and_checked() {
        let id = format!("0x{}", "AB".repeat(32));
        assert_eq!(
            parse_package_id(&id).unwrap(),
            format!("0x{}", "ab".repeat(32))
        );
        for bad in [
            "0x12",
            "ab".repeat(32).as_str(),
            &format!("0x{}", "g".repeat(64)),
        ] {
            assert!(parse_package_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn derived_public_keys_are_distinct_and_stable() {
        let s = [7u8; 32];
        let a = derived_public_key(&s, 0);
        assert_eq!(a.len(), 192);
        assert_eq!(a, derived_public_key(&s, 0));
        assert_ne!(a, derived_public_key(&s, 1));
        assert_ne!(a, derived_public_key(&[8u8; 32], 0));
    }
}
