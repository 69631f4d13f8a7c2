//! Services of the caller: list, get, configure, enable, disable, change tier, price quote.
//! Every change that adds cost runs the balance and monthly-limit check (SPEC section 5) inside
//! the transaction that holds the customer row lock, so two concurrent upgrades cannot both
//! pass a check that only one of them fits.
//!
//! Billing (docs/BILLING.md §2): every change appends the service's new state to the journal
//! (`service_events`) in the same transaction, from which the manager derives the fee lines,
//! and notifies the manager so an enable or an upgrade is charged at once. A change that lowers
//! the price of an enabled service is a downgrade: it is scheduled for the 1st of next month
//! (`pending_config`), and the service keeps what was paid for until then.

use axum::Json;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::Deserialize;
use serde_json::{Value, json};
use suiftly_billing::{
    Month, PriceError, ServiceConfig, ServiceType, Tier, check_spend, monthly_price_cents,
};

use crate::auth::Caller;
use crate::db::lock_money;
use crate::error::ApiError;
use crate::{AppState, JsonBody};

/// Parses a path segment: unknown names are 404, reserved ones (ssfn, sealo, platform) a
/// clear "not available".
pub fn parse_service(name: &str) -> Result<ServiceType, ApiError> {
    let t = ServiceType::parse(name).ok_or(ApiError::UnknownService)?;
    if !t.is_sellable() {
        return Err(ApiError::ServiceNotAvailable(t.as_str()));
    }
    Ok(t)
}

fn price_error(e: PriceError) -> ApiError {
    ApiError::InvalidConfig(e.to_string())
}

struct Current {
    enabled: bool,
    /// The configuration in force (a scheduled downgrade whose month has come counts as
    /// applied even before the manager writes it).
    config: ServiceConfig,
}

async fn current(
    client: &impl GenericClient,
    customer_id: i32,
    service: ServiceType,
    lock: bool,
    today: chrono::NaiveDate,
) -> Result<Option<Current>, ApiError> {
    let sql = if lock {
        "SELECT is_enabled, config, pending_config, pending_from FROM service_instances WHERE customer_id = $1 AND service_type = $2 FOR UPDATE"
    } else {
        "SELECT is_enabled, config, pending_config, pending_from FROM service_instances WHERE customer_id = $1 AND service_type = $2"
    };
    let row = client
        .query_opt(sql, &[&customer_id, &(service as i16)])
        .await?;
    row.map(|r| {
        let config: ServiceConfig =
            serde_json::from_value(r.get::<_, Value>(1)).map_err(ApiError::internal)?;
        let pending: Option<ServiceConfig> = r
            .get::<_, Option<Value>>(2)
            .map(serde_json::from_value)
            .transpose()
            .map_err(ApiError::internal)?;
        let from: Option<chrono::NaiveDate> = r.get(3);
        Ok(Current {
            enabled: r.get(0),
            config: match (pending, from) {
                (Some(p), Some(f)) if f <= today => p,
                _ => config,
            },
        })
    })
    .transpose()
}

async fn active_keys(
    client: &impl GenericClient,
    customer_id: i32,
    service: ServiceType,
) -> Result<i64, ApiError> {
    Ok(client
        .query_one(
            "SELECT count(*) FROM api_keys WHERE customer_id = $1 AND service_type = $2 AND is_active",
            &[&customer_id, &(service as i16)],
        )
        .await?
        .get(0))
}

async fn view(
    state: &AppState,
    client: &impl GenericClient,
    customer_id: i32,
    service: Option<ServiceType>,
) -> Result<Vec<Value>, ApiError> {
    let today = state.clock.now().date_naive();
    let rows = client
        .query(
            "SELECT s.service_type, s.is_enabled, s.config, s.enabled_at, s.disabled_at,
                    (SELECT count(*) FROM api_keys k
                     WHERE k.customer_id = s.customer_id AND k.service_type = s.service_type AND k.is_active),
                    s.pending_config, s.pending_from, c.suspension_reason
             FROM service_instances s JOIN customers c USING (customer_id)
             WHERE s.customer_id = $1 AND ($2::smallint IS NULL OR s.service_type = $2)
             ORDER BY s.service_type",
            &[&customer_id, &service.map(|s| s as i16)],
        )
        .await?;
    rows.iter()
        .map(|r| {
            let service = ServiceType::from_i16(r.get(0)).ok_or_else(|| ApiError::internal("bad service_type"))?;
            let mut config: ServiceConfig = serde_json::from_value(r.get(2)).map_err(ApiError::internal)?;
            let mut pending: Option<ServiceConfig> = r
                .get::<_, Option<Value>>(6)
                .map(serde_json::from_value)
                .transpose()
                .map_err(ApiError::internal)?;
            let pending_from: Option<chrono::NaiveDate> = r.get(7);
            if let (Some(p), Some(f)) = (pending, pending_from)
                && f <= today
            {
                config = p;
                pending = None;
            }
            let enabled: bool = r.get(1);
            let reason: Option<String> = r.get(8);
            let prices = &state.config.prices;
            Ok(json!({
                "service": service.as_str(),
                "tier": config.tier.as_str(),
                "is_enabled": r.get::<_, bool>(1),
                "config": config,
                "monthly_price_usd_cents": monthly_price_cents(prices, service, &config).unwrap_or(0),
                "rate_limit_per_region": prices.rate_per_region(config.tier),
                "api_key_limit": config.api_key_limit(prices),
                "active_api_keys": r.get::<_, i64>(5),
                "enabled_at": r.get::<_, Option<DateTime<Utc>>>(3),
                "disabled_at": r.get::<_, Option<DateTime<Utc>>>(4),
                "suspended": enabled && reason.is_some(),
                "suspension_reason": if enabled { reason } else { None },
                "pending_change": pending.map(|p| json!({
                    "config": p,
                    "tier": p.tier.as_str(),
                    "monthly_price_usd_cents": monthly_price_cents(prices, service, &p).unwrap_or(0),
                    "effective": pending_from.map(|d| d.to_string()),
                })),
            }))
        })
        .collect()
}

pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let client = state.pool.get().await?;
    let services = view(&state, &client, caller.customer_id, None).await?;
    let s = client
        .query_opt(
            "SELECT suspension_reason, suspended_at, suspended_until FROM customers WHERE customer_id = $1",
            &[&caller.customer_id],
        )
        .await?
        .ok_or(ApiError::Unauthorized)?;
    let suspension = s.get::<_, Option<String>>(0).map(|reason| {
        json!({
            "reason": reason,
            "since": s.get::<_, Option<DateTime<Utc>>>(1),
            "until": s.get::<_, Option<DateTime<Utc>>>(2),
        })
    });
    Ok(Json(
        json!({ "services": services, "suspension": suspension }),
    ))
}

pub async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let service = parse_service(&name)?;
    let client = state.pool.get().await?;
    view(&state, &client, caller.customer_id, Some(service))
        .await?
        .pop()
        .map(Json)
        .ok_or(ApiError::NotFound("service"))
}

/// What the caller wants next for one service.
enum Change {
    Config(ServiceConfig),
    Enable,
    Disable,
    Tier(Tier),
}

async fn apply(
    state: &AppState,
    caller: Caller,
    service: ServiceType,
    change: Change,
) -> Result<Json<Value>, ApiError> {
    let prices = &state.config.prices;
    let now = state.clock.now();
    let today = now.date_naive();
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    let money = lock_money(&tx, caller.customer_id).await?;
    let cur = current(&tx, caller.customer_id, service, true, today).await?;
    let (was_enabled, old_config) = match &cur {
        Some(c) => (c.enabled, Some(c.config)),
        None => (false, None),
    };
    let (config, enabled) = match change {
        Change::Config(c) => (c, was_enabled),
        Change::Enable => (old_config.unwrap_or_else(ServiceConfig::starter), true),
        Change::Disable => (old_config.ok_or(ApiError::NotFound("service"))?, false),
        Change::Tier(t) => {
            let mut c = old_config.ok_or(ApiError::NotFound("service"))?;
            c.tier = t;
            (c, was_enabled)
        }
    };
    let new_price = monthly_price_cents(prices, service, &config).map_err(price_error)?;
    let old_price = match (was_enabled, old_config) {
        (true, Some(c)) => monthly_price_cents(prices, service, &c).unwrap_or(0),
        _ => 0,
    };
    if enabled {
        check_spend(&money, new_price - old_price)?;
    }
    if service == ServiceType::Seal {
        crate::seal_keys::check_config_covers_use(&tx, prices, caller.customer_id, &config).await?;
    }
    let keys = active_keys(&tx, caller.customer_id, service).await?;
    if (config.api_key_limit(prices) as i64) < keys {
        return Err(ApiError::InvalidConfig(format!(
            "{keys} api keys are active; revoke keys before lowering the limit"
        )));
    }
    // A cheaper configuration of a service that stays enabled waits for the 1st: what was paid
    // for this month stays in force. Anything else applies now and cancels a scheduled change.
    let (in_force, pending) = match old_config {
        Some(old) if was_enabled && enabled && new_price < old_price => (old, Some(config)),
        _ => (config, None),
    };
    let pending_from = pending.map(|_| Month::of(now).next().first_day());
    let enabled_at = (enabled && !was_enabled).then_some(now);
    let disabled_at = (!enabled && was_enabled).then_some(now);
    let cfg_json = serde_json::to_value(in_force).map_err(ApiError::internal)?;
    let pending_json = pending
        .map(serde_json::to_value)
        .transpose()
        .map_err(ApiError::internal)?;
    tx.execute(
        "INSERT INTO service_instances
             (customer_id, service_type, tier, is_enabled, config, enabled_at, disabled_at, created_at, updated_at,
              pending_config, pending_from)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9, $10)
         ON CONFLICT (customer_id, service_type) DO UPDATE SET
             tier = EXCLUDED.tier, is_enabled = EXCLUDED.is_enabled, config = EXCLUDED.config,
             enabled_at = COALESCE(EXCLUDED.enabled_at, service_instances.enabled_at),
             disabled_at = COALESCE(EXCLUDED.disabled_at, service_instances.disabled_at),
             updated_at = EXCLUDED.updated_at,
             pending_config = EXCLUDED.pending_config, pending_from = EXCLUDED.pending_from",
        &[
            &caller.customer_id,
            &(service as i16),
            &in_force.tier.as_str(),
            &enabled,
            &cfg_json,
            &enabled_at,
            &disabled_at,
            &now,
            &pending_json,
            &pending_from,
        ],
    )
    .await?;
    // The journal: the state after the change, for the fee lines.
    tx.execute(
        "INSERT INTO service_events (customer_id, service_type, at, is_enabled, config, pending_config, source)
         VALUES ($1, $2, $3, $4, $5, $6, 'api')",
        &[
            &caller.customer_id,
            &(service as i16),
            &now,
            &enabled,
            &cfg_json,
            &pending_json,
        ],
    )
    .await?;
    crate::billing::notify(&tx, "service", caller.customer_id).await?;
    let out = view(state, &tx, caller.customer_id, Some(service))
        .await?
        .pop();
    tx.commit().await?;
    out.map(Json)
        .ok_or_else(|| ApiError::internal("service row vanished"))
}

pub async fn update_config(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    JsonBody(config): JsonBody<ServiceConfig>,
) -> Result<Json<Value>, ApiError> {
    let service = parse_service(&name)?;
    apply(&state, caller, service, Change::Config(config)).await
}

pub async fn enable(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let service = parse_service(&name)?;
    apply(&state, caller, service, Change::Enable).await
}

pub async fn disable(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let service = parse_service(&name)?;
    apply(&state, caller, service, Change::Disable).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierRequest {
    pub tier: Tier,
}

pub async fn change_tier(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<TierRequest>,
) -> Result<Json<Value>, ApiError> {
    let service = parse_service(&name)?;
    apply(&state, caller, service, Change::Tier(req.tier)).await
}

/// Live price of a proposed configuration and whether the caller could switch to it now.
pub async fn quote(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    JsonBody(config): JsonBody<ServiceConfig>,
) -> Result<Json<Value>, ApiError> {
    let service = parse_service(&name)?;
    let prices = &state.config.prices;
    let monthly = monthly_price_cents(prices, service, &config).map_err(price_error)?;
    let client = state.pool.get().await?;
    let money = {
        let row = client
            .query_opt(
                "SELECT current_balance_usd_cents, max_monthly_usd_cents, current_month_charged_usd_cents
                 FROM customers WHERE customer_id = $1",
                &[&caller.customer_id],
            )
            .await?
            .ok_or(ApiError::Unauthorized)?;
        suiftly_billing::MoneyState {
            balance_cents: row.get(0),
            max_monthly_cents: row.get(1),
            month_charged_cents: row.get(2),
        }
    };
    let cur = current(
        &client,
        caller.customer_id,
        service,
        false,
        state.clock.now().date_naive(),
    )
    .await?;
    let current_monthly = match &cur {
        Some(c) if c.enabled => monthly_price_cents(prices, service, &c.config).unwrap_or(0),
        _ => 0,
    };
    let cost = monthly - current_monthly;
    let refusal = check_spend(&money, cost).err().map(|e| {
        let api = ApiError::Spend(e);
        json!({ "code": api.code(), "message": api.to_string(), "details": e })
    });
    Ok(Json(json!({
        "service": service.as_str(),
        "monthly_usd_cents": monthly,
        "current_monthly_usd_cents": current_monthly,
        "estimated_cost_usd_cents": cost.max(0),
        "rate_limit_per_region": prices.rate_per_region(config.tier),
        "breakdown": {
            "tier_usd_cents": prices.tier_cents(config.tier),
            "burst_usd_cents": if config.burst { prices.burst_monthly_cents } else { 0 },
            "extra_api_keys_usd_cents": config.extra_api_keys as i64 * prices.extra_api_key_cents,
            "extra_seal_keys_usd_cents": config.extra_seal_keys as i64 * prices.extra_seal_key_cents,
            "extra_packages_usd_cents": config.extra_packages as i64 * prices.extra_package_cents,
        },
        "allowed": refusal.is_none(),
        "refusal": refusal,
    })))
}
