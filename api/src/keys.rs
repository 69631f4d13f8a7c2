//! API keys of the caller: list (masked), create within the included + bought limit,
//! regenerate (revoke + issue in one transaction), revoke. Every statement is scoped by
//! customer_id: another customer's key id is indistinguishable from a missing one (404).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::Deserialize;
use serde_json::{Value, json};
use suiftly_billing::{ServiceConfig, ServiceType};
use suiftly_vault::at_rest::KeyBinding;
use suiftly_vault::{Access, Metadata, Network, ServiceLetter, Source};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::services::parse_service;
use crate::{AppState, JsonBody, QueryParams};

fn letter(service: ServiceType) -> ServiceLetter {
    match service {
        ServiceType::Seal => ServiceLetter::Seal,
        ServiceType::Grpc => ServiceLetter::Grpc,
        _ => ServiceLetter::Graphql,
    }
}

fn preview(key: &str) -> String {
    format!("{}…{}", &key[..6], &key[key.len() - 4..])
}

const COLUMNS: &str =
    "key_id, service_type, key_preview, fingerprint, key_version, seal_network, seal_access,
                       seal_source, proc_group, is_active, created_at, revoked_at";

fn key_json(r: &tokio_postgres::Row) -> Value {
    let service = ServiceType::from_i16(r.get(1))
        .map(|s| s.as_str())
        .unwrap_or("unknown");
    json!({
        "key_id": r.get::<_, i64>(0),
        "service": service,
        "preview": r.get::<_, String>(2),
        "fingerprint": r.get::<_, i64>(3),
        "key_version": r.get::<_, i16>(4),
        "network": if r.get::<_, i16>(5) == 1 { "mainnet" } else { "testnet" },
        "access": if r.get::<_, i16>(6) == 1 { "permission" } else { "open" },
        "source": if r.get::<_, i16>(7) == 1 { "imported" } else { "derived" },
        "proc_group": r.get::<_, i16>(8),
        "is_active": r.get::<_, bool>(9),
        "created_at": r.get::<_, DateTime<Utc>>(10),
        "revoked_at": r.get::<_, Option<DateTime<Utc>>>(11),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub service: Option<String>,
    #[serde(default)]
    pub include_revoked: bool,
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(q): QueryParams<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let service = q.service.as_deref().map(parse_service).transpose()?;
    let client = state.pool.get().await?;
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM api_keys
                 WHERE customer_id = $1 AND ($2::smallint IS NULL OR service_type = $2) AND (is_active OR $3)
                 ORDER BY key_id"
            ),
            &[&caller.customer_id, &service.map(|s| s as i16), &q.include_revoked],
        )
        .await?;
    Ok(Json(
        json!({ "keys": rows.iter().map(key_json).collect::<Vec<_>>() }),
    ))
}

#[derive(Deserialize, Clone, Copy, Default)]
#[serde(rename_all = "lowercase")]
pub enum NetworkName {
    #[default]
    Mainnet,
    Testnet,
}

#[derive(Deserialize, Clone, Copy, Default)]
#[serde(rename_all = "lowercase")]
pub enum AccessName {
    #[default]
    Open,
    Permission,
}

#[derive(Deserialize, Clone, Copy, Default)]
#[serde(rename_all = "lowercase")]
pub enum SourceName {
    #[default]
    Derived,
    Imported,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    pub service: String,
    #[serde(default)]
    pub network: NetworkName,
    #[serde(default)]
    pub access: AccessName,
    #[serde(default)]
    pub source: SourceName,
    #[serde(default)]
    pub proc_group: u8,
}

/// Encodes, encrypts and stores a new key; returns its JSON with the full key (shown once).
async fn insert_key(
    state: &AppState,
    client: &impl GenericClient,
    customer_id: i32,
    service: ServiceType,
    meta: Metadata,
) -> Result<Value, ApiError> {
    let bits = meta
        .to_bits()
        .map_err(|e| ApiError::InvalidRequest(e.to_string()))?;
    let key = state
        .codec
        .encode(letter(service), customer_id as u32, &meta)
        .map_err(ApiError::internal)?;
    let fp = suiftly_vault::apikey::fingerprint(&key).map_err(ApiError::internal)? as i64;
    // The ciphertext is bound to its row (key id, customer): take the id first so it can be
    // authenticated as associated data.
    let key_id: i64 = client
        .query_one(
            "SELECT nextval(pg_get_serial_sequence('api_keys', 'key_id'))",
            &[],
        )
        .await?
        .get(0);
    let sealed = state
        .cipher
        .seal(
            key.as_bytes(),
            KeyBinding {
                key_id,
                customer_id,
            },
        )
        .map_err(ApiError::internal)?;
    let decoded = Metadata::from_bits(bits);
    let row = client
        .query_one(
            &format!(
                "INSERT INTO api_keys (key_id, customer_id, service_type, fingerprint, encrypted_key, key_preview,
                     key_version, seal_network, seal_access, seal_source, proc_group, created_at)
                 OVERRIDING SYSTEM VALUE
                 VALUES ($12, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                 RETURNING {COLUMNS}"
            ),
            &[
                &customer_id,
                &(service as i16),
                &fp,
                &sealed,
                &preview(&key),
                &(decoded.version as i16),
                &i16::from(decoded.network == Network::Mainnet),
                &i16::from(decoded.access == Access::Permission),
                &i16::from(decoded.source == Source::Imported),
                &(decoded.proc_group as i16),
                &state.clock.now(),
                &key_id,
            ],
        )
        .await?;
    let mut out = key_json(&row);
    out["api_key"] = Value::String(key);
    Ok(out)
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(req): JsonBody<CreateKey>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let service = parse_service(&req.service)?;
    if req.proc_group > 7 {
        return Err(ApiError::InvalidRequest("proc_group must be 0..=7".into()));
    }
    let meta = Metadata::new(
        match req.network {
            NetworkName::Mainnet => Network::Mainnet,
            NetworkName::Testnet => Network::Testnet,
        },
        match req.access {
            AccessName::Open => Access::Open,
            AccessName::Permission => Access::Permission,
        },
        match req.source {
            SourceName::Derived => Source::Derived,
            SourceName::Imported => Source::Imported,
        },
        req.proc_group,
    );
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    // The service row lock serializes concurrent creates against the limit.
    let config: Value = tx
        .query_opt(
            "SELECT config FROM service_instances WHERE customer_id = $1 AND service_type = $2 FOR UPDATE",
            &[&caller.customer_id, &(service as i16)],
        )
        .await?
        .ok_or(ApiError::NotFound("service"))?
        .get(0);
    let config: ServiceConfig = serde_json::from_value(config).map_err(ApiError::internal)?;
    let limit = config.api_key_limit(&state.config.prices);
    let active: i64 = tx
        .query_one(
            "SELECT count(*) FROM api_keys WHERE customer_id = $1 AND service_type = $2 AND is_active",
            &[&caller.customer_id, &(service as i16)],
        )
        .await?
        .get(0);
    if active >= limit as i64 {
        return Err(ApiError::KeyLimitReached { limit });
    }
    let out = insert_key(&state, &tx, caller.customer_id, service, meta).await?;
    crate::billing::notify(&tx, "key", caller.customer_id).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(out)))
}

fn key_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>()
        .map_err(|_| ApiError::InvalidRequest("key_id must be an integer".into()))
}

pub async fn regenerate(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let id = key_id(&raw)?;
    let now = state.clock.now();
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            "UPDATE api_keys SET is_active = false, revoked_at = $3
             WHERE key_id = $1 AND customer_id = $2 AND is_active
             RETURNING service_type, key_version, seal_network, seal_access, seal_source, proc_group",
            &[&id, &caller.customer_id, &now],
        )
        .await?
        .ok_or(ApiError::NotFound("api key"))?;
    let service =
        ServiceType::from_i16(row.get(0)).ok_or_else(|| ApiError::internal("bad service_type"))?;
    let meta = Metadata {
        version: row.get::<_, i16>(1) as u8,
        network: if row.get::<_, i16>(2) == 1 {
            Network::Mainnet
        } else {
            Network::Testnet
        },
        access: if row.get::<_, i16>(3) == 1 {
            Access::Permission
        } else {
            Access::Open
        },
        source: if row.get::<_, i16>(4) == 1 {
            Source::Imported
        } else {
            Source::Derived
        },
        proc_group: row.get::<_, i16>(5) as u8,
    };
    let mut out = insert_key(&state, &tx, caller.customer_id, service, meta).await?;
    crate::billing::notify(&tx, "key", caller.customer_id).await?;
    tx.commit().await?;
    out["replaces_key_id"] = json!(id);
    Ok((StatusCode::CREATED, Json(out)))
}

pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = key_id(&raw)?;
    let client = state.pool.get().await?;
    let n = client
        .execute(
            "UPDATE api_keys SET is_active = false, revoked_at = $3 WHERE key_id = $1 AND customer_id = $2 AND is_active",
            &[&id, &caller.customer_id, &state.clock.now()],
        )
        .await?;
    if n == 0 {
        return Err(ApiError::NotFound("api key"));
    }
    crate::billing::notify(&client, "key", caller.customer_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
