//! PostgreSQL side of the vault: reading what decides access, recording versions and
//! per-gateway state. Every function takes a `GenericClient`, so the manager can run the
//! recording inside its own (fenced) transaction.

use chrono::{DateTime, Utc};
use suiftly_vault::{
    Access, CustomerRecord, CustomerStatus, Metadata, Network, ServiceRecord, Source, Suspension,
    Tier,
};
use tokio_postgres::GenericClient;

/// One `api_keys` row as the vault needs it; the key is still encrypted.
#[derive(Debug, Clone)]
pub struct KeyRow {
    /// `api_keys.key_id`: with the customer, the associated data the ciphertext is bound to.
    pub key_id: i64,
    pub customer_id: u32,
    pub service_type: u8,
    pub encrypted_key: Vec<u8>,
    pub fingerprint: i32,
    pub metadata: u16,
    pub revoked: bool,
}

/// Everything read in one snapshot (one `REPEATABLE READ` transaction when the caller opens
/// one; the three reads are consistent with each other in any case up to concurrent commits,
/// which the next regeneration picks up).
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub customers: Vec<CustomerRecord>,
    pub services: Vec<ServiceRecord>,
    pub keys: Vec<KeyRow>,
    /// Rows that could not be mapped (unknown tier name, out-of-range ids): skipped, counted.
    pub skipped_rows: usize,
}

/// Reads customers that are not plainly active, every service, active keys and keys revoked
/// after `revoked_since`.
pub async fn load(
    client: &impl GenericClient,
    revoked_since: DateTime<Utc>,
) -> Result<Snapshot, tokio_postgres::Error> {
    let mut snap = Snapshot::default();
    // `to_jsonb(c)->>'suspension_reason'` reads the billing suspension column where the schema
    // has it (issue 11's V14) and NULL where it does not.
    let customers = client
        .query(
            "SELECT c.customer_id, c.status, to_jsonb(c)->>'suspension_reason'
             FROM customers c
             WHERE c.status <> 'active' OR to_jsonb(c)->>'suspension_reason' IS NOT NULL",
            &[],
        )
        .await?;
    for r in customers {
        let id: i32 = r.get(0);
        let status: String = r.get(1);
        let reason: Option<String> = r.get(2);
        let status = match (status.as_str(), reason.as_deref()) {
            ("closed", _) => CustomerStatus::Closed,
            (_, Some("insufficient_balance")) => {
                CustomerStatus::Suspended(Suspension::InsufficientBalance)
            }
            (_, Some("monthly_limit_reached")) => {
                CustomerStatus::Suspended(Suspension::MonthlyLimit)
            }
            (_, Some(_)) | ("suspended", None) => CustomerStatus::Suspended(Suspension::Other),
            _ => CustomerStatus::Active,
        };
        snap.customers.push(CustomerRecord {
            customer_id: id as u32,
            status,
        });
    }
    let services = client
        .query(
            "SELECT customer_id, service_type, COALESCE(config->>'tier', tier),
                    COALESCE((config->>'burst')::boolean, false), is_enabled
             FROM service_instances",
            &[],
        )
        .await?;
    for r in services {
        let tier: String = r.get(2);
        let (Some(tier), Ok(service_type)) = (Tier::parse(&tier), u8::try_from(r.get::<_, i16>(1)))
        else {
            snap.skipped_rows += 1;
            continue;
        };
        snap.services.push(ServiceRecord {
            customer_id: r.get::<_, i32>(0) as u32,
            service_type,
            tier,
            burst: r.get(3),
            enabled: r.get(4),
            suspended: None,
        });
    }
    let keys = client
        .query(
            "SELECT customer_id, service_type, encrypted_key, fingerprint, key_version,
                    seal_network, seal_access, seal_source, proc_group, is_active, key_id
             FROM api_keys
             WHERE is_active OR revoked_at >= $1",
            &[&revoked_since],
        )
        .await?;
    snap.keys.reserve(keys.len());
    for r in keys {
        let meta = Metadata {
            version: r.get::<_, i16>(4) as u8,
            network: if r.get::<_, i16>(5) == 1 {
                Network::Mainnet
            } else {
                Network::Testnet
            },
            access: if r.get::<_, i16>(6) == 1 {
                Access::Permission
            } else {
                Access::Open
            },
            source: if r.get::<_, i16>(7) == 1 {
                Source::Imported
            } else {
                Source::Derived
            },
            proc_group: r.get::<_, i16>(8) as u8,
        };
        let (Ok(metadata), Ok(service_type), Ok(fingerprint)) = (
            meta.to_bits(),
            u8::try_from(r.get::<_, i16>(1)),
            i32::try_from(r.get::<_, i64>(3)),
        ) else {
            snap.skipped_rows += 1;
            continue;
        };
        snap.keys.push(KeyRow {
            key_id: r.get(10),
            customer_id: r.get::<_, i32>(0) as u32,
            service_type,
            encrypted_key: r.get(2),
            fingerprint,
            metadata,
            revoked: !r.get::<_, bool>(9),
        });
    }
    Ok(snap)
}

/// How a Seal key's private key is obtained by the key server (issue 13).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SealMaterial {
    /// Derived from the key server's master seed at this index.
    Derived { derivation_index: u32 },
    /// Brought by the customer: the private key encrypted to the key server (opaque).
    Imported { encrypted_private_key: Vec<u8> },
}

/// One Seal key as the key server's configuration needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealKeyRow {
    pub seal_key_id: i64,
    pub customer_id: u32,
    /// SPEC §3 network (0 testnet, 1 mainnet).
    pub network: u8,
    /// Hex, as the customer's clients configure it.
    pub public_key: String,
    pub material: SealMaterial,
    /// Sui package ids (`0x…`, lower case) the key serves.
    pub packages: Vec<String>,
    /// The customer's seal service is enabled (serve) or not (refuse, as for API keys).
    pub service_enabled: bool,
    pub revoked: bool,
}

/// Active Seal keys and keys deleted after `revoked_since` (so a key server can refuse them
/// as revoked rather than unknown), ordered by id.
pub async fn load_seal_keys(
    client: &impl GenericClient,
    revoked_since: DateTime<Utc>,
) -> Result<Vec<SealKeyRow>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT k.seal_key_id, k.customer_id, k.network, k.public_key, k.derivation_index,
                    k.encrypted_private_key,
                    ARRAY(SELECT jsonb_array_elements_text(k.package_ids)),
                    COALESCE(s.is_enabled, false), NOT k.is_active
             FROM seal_keys k
             LEFT JOIN service_instances s ON s.instance_id = k.instance_id
             WHERE k.is_active OR k.revoked_at >= $1
             ORDER BY k.seal_key_id",
            &[&revoked_since],
        )
        .await?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            let material = match (r.get::<_, Option<i32>>(4), r.get::<_, Option<Vec<u8>>>(5)) {
                (Some(i), None) => SealMaterial::Derived {
                    derivation_index: u32::try_from(i).ok()?,
                },
                (None, Some(b)) => SealMaterial::Imported {
                    encrypted_private_key: b,
                },
                _ => return None,
            };
            Some(SealKeyRow {
                seal_key_id: r.get(0),
                customer_id: r.get::<_, i32>(1) as u32,
                network: r.get::<_, i16>(2) as u8,
                public_key: r.get(3),
                material,
                packages: r.get(6),
                service_enabled: r.get(7),
                revoked: r.get(8),
            })
        })
        .collect())
}

/// The highest recorded sequence number (0 when none).
pub async fn max_seq(client: &impl GenericClient) -> Result<u64, tokio_postgres::Error> {
    let v: i64 = client
        .query_one("SELECT COALESCE(max(seq), 0) FROM vault_versions", &[])
        .await?
        .get(0);
    Ok(v as u64)
}

/// A version as recorded in `vault_versions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRecord {
    pub seq: u64,
    pub content_hash: String,
    pub entries: u64,
    pub csv_rows: u64,
    pub map_bytes: u64,
    pub csv_bytes: u64,
    pub written_by: String,
}

/// Records a written version; a second record of the same seq (a retried cycle) keeps the
/// first. Returns whether a row was inserted.
pub async fn record_version(
    client: &impl GenericClient,
    v: &VersionRecord,
) -> Result<bool, tokio_postgres::Error> {
    let n = client
        .execute(
            "INSERT INTO vault_versions
                 (seq, content_hash, entries, csv_rows, map_bytes, csv_bytes, written_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (seq) DO NOTHING",
            &[
                &(v.seq as i64),
                &v.content_hash,
                &(v.entries as i32),
                &(v.csv_rows as i32),
                &(v.map_bytes as i64),
                &(v.csv_bytes as i64),
                &v.written_by,
            ],
        )
        .await?;
    Ok(n == 1)
}

/// What one push attempt round did to a gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayRecord {
    Applied {
        seq: u64,
        hash: String,
        haproxy_version: u64,
    },
    Failed {
        error: String,
    },
}

pub async fn record_gateway(
    client: &impl GenericClient,
    gateway: &str,
    endpoint: &str,
    rec: &GatewayRecord,
) -> Result<(), tokio_postgres::Error> {
    match rec {
        GatewayRecord::Applied {
            seq,
            hash,
            haproxy_version,
        } => {
            client
                .execute(
                    "INSERT INTO vault_gateways (gateway, endpoint, applied_seq, applied_hash,
                         haproxy_version, applied_at, last_attempt_at)
                     VALUES ($1, $2, $3, $4, $5, now(), now())
                     ON CONFLICT (gateway) DO UPDATE SET endpoint = EXCLUDED.endpoint,
                         applied_seq = EXCLUDED.applied_seq, applied_hash = EXCLUDED.applied_hash,
                         haproxy_version = EXCLUDED.haproxy_version,
                         applied_at = CASE WHEN vault_gateways.applied_seq IS DISTINCT FROM EXCLUDED.applied_seq
                                           THEN now() ELSE vault_gateways.applied_at END,
                         last_attempt_at = now(), last_error = NULL, consecutive_failures = 0",
                    &[
                        &gateway,
                        &endpoint,
                        &(*seq as i64),
                        hash,
                        &(*haproxy_version as i64),
                    ],
                )
                .await?;
        }
        GatewayRecord::Failed { error } => {
            client
                .execute(
                    "INSERT INTO vault_gateways (gateway, endpoint, last_attempt_at, last_error,
                         consecutive_failures, total_failures)
                     VALUES ($1, $2, now(), $3, 1, 1)
                     ON CONFLICT (gateway) DO UPDATE SET endpoint = EXCLUDED.endpoint,
                         last_attempt_at = now(), last_error = EXCLUDED.last_error,
                         consecutive_failures = vault_gateways.consecutive_failures + 1,
                         total_failures = vault_gateways.total_failures + 1",
                    &[&gateway, &endpoint, error],
                )
                .await?;
        }
    }
    Ok(())
}
