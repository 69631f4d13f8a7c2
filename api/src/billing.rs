//! Balance, deposit, withdraw (through the [`suiftly_billing::Escrow`]) and the monthly limit.
//!
//! The escrow moves first, then the transaction is recorded once (unique digest) and the
//! cached balance changes only when the record is new: retrying with the same
//! `idempotency_key` after a failure reconciles instead of double counting.

use axum::Json;
use axum::extract::State;
use chrono::NaiveDate;
use serde::Deserialize;
use serde_json::{Value, json};
use suiftly_billing::{EscrowError, EscrowTx, TxKind};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::{AppState, JsonBody};

pub const MIN_MONTHLY_LIMIT_CENTS: i64 = 10_000;
pub const MAX_MONTHLY_LIMIT_CENTS: i64 = 5_000_000;
/// One movement at most $1,000,000.
pub const MAX_MOVEMENT_CENTS: i64 = 100_000_000;

pub async fn balance(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let client = state.pool.get().await?;
    let row = client
        .query_opt(
            "SELECT current_balance_usd_cents, max_monthly_usd_cents, current_month_charged_usd_cents,
                    last_month_charged_usd_cents, current_month_start
             FROM customers WHERE customer_id = $1",
            &[&caller.customer_id],
        )
        .await?
        .ok_or(ApiError::Unauthorized)?;
    let limit: i64 = row.get(1);
    let charged: i64 = row.get(2);
    Ok(Json(json!({
        "balance_usd_cents": row.get::<_, i64>(0),
        "max_monthly_usd_cents": limit,
        "current_month_charged_usd_cents": charged,
        "last_month_charged_usd_cents": row.get::<_, i64>(3),
        "current_month_start": row.get::<_, NaiveDate>(4).to_string(),
        "remaining_authorization_usd_cents": (limit - charged).max(0),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoveRequest {
    pub amount_usd_cents: i64,
    /// Client-chosen retry key (1–64 characters); a random one is used when absent.
    pub idempotency_key: Option<String>,
}

fn escrow_error(e: EscrowError) -> ApiError {
    match e {
        EscrowError::InsufficientFunds {
            balance_cents,
            requested_cents,
        } => ApiError::InsufficientEscrowFunds {
            balance_usd_cents: balance_cents,
            requested_usd_cents: requested_cents,
        },
        EscrowError::InvalidAmount => {
            ApiError::InvalidRequest("amount_usd_cents must be positive".into())
        }
        EscrowError::NonceReused => ApiError::IdempotencyConflict,
        EscrowError::Unavailable(m) => ApiError::Unavailable(m),
    }
}

async fn movement(
    state: &AppState,
    caller: Caller,
    req: MoveRequest,
    kind: TxKind,
) -> Result<Json<Value>, ApiError> {
    if !(1..=MAX_MOVEMENT_CENTS).contains(&req.amount_usd_cents) {
        return Err(ApiError::InvalidRequest(format!(
            "amount_usd_cents must be within 1..={MAX_MOVEMENT_CENTS}"
        )));
    }
    // Client keys live in their own namespace ("api:") so they can never collide with nonces
    // the system itself uses on the escrow (billing charges, the mock's start-up reseed).
    let nonce = match req.idempotency_key {
        Some(k) if (1..=64).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()) => {
            format!("api:{k}")
        }
        Some(_) => {
            return Err(ApiError::InvalidRequest(
                "idempotency_key must be 1-64 printable ascii characters".into(),
            ));
        }
        None => {
            let mut b = [0u8; 16];
            getrandom::fill(&mut b).map_err(ApiError::internal)?;
            format!("api:{}", hex::encode(b))
        }
    };
    // The customer row lock orders movements of one customer (escrow and cache stay in step).
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    crate::db::lock_money(&tx, caller.customer_id).await?;
    let amount = req.amount_usd_cents;
    let etx: EscrowTx = match kind {
        TxKind::Deposit => {
            state
                .escrow
                .deposit(caller.customer_id, amount, &nonce)
                .await
        }
        TxKind::Withdraw => {
            state
                .escrow
                .withdraw(caller.customer_id, amount, &nonce)
                .await
        }
        TxKind::Charge => {
            state
                .escrow
                .charge(caller.customer_id, amount, &nonce)
                .await
        }
    }
    .map_err(escrow_error)?;
    let inserted = tx
        .execute(
            "INSERT INTO escrow_transactions
                 (customer_id, tx_digest, kind, amount_usd_cents, balance_after_cents, nonce, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            &[
                &caller.customer_id,
                &etx.digest,
                &kind.as_str(),
                &amount,
                &etx.balance_after_cents,
                &nonce,
                &state.clock.now(),
            ],
        )
        .await?;
    let delta = if kind == TxKind::Deposit {
        amount
    } else {
        -amount
    };
    let row = if inserted == 1 {
        tx.query_one(
            "UPDATE customers SET current_balance_usd_cents = current_balance_usd_cents + $2, updated_at = $3
             WHERE customer_id = $1 RETURNING current_balance_usd_cents",
            &[&caller.customer_id, &delta, &state.clock.now()],
        )
        .await?
    } else {
        tx.query_one(
            "SELECT current_balance_usd_cents FROM customers WHERE customer_id = $1",
            &[&caller.customer_id],
        )
        .await?
    };
    tx.commit().await?;
    Ok(Json(json!({
        "tx_digest": etx.digest,
        "kind": kind.as_str(),
        "amount_usd_cents": amount,
        "balance_usd_cents": row.get::<_, i64>(0),
        "replayed": inserted == 0,
    })))
}

pub async fn deposit(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(req): JsonBody<MoveRequest>,
) -> Result<Json<Value>, ApiError> {
    movement(&state, caller, req, TxKind::Deposit).await
}

pub async fn withdraw(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(req): JsonBody<MoveRequest>,
) -> Result<Json<Value>, ApiError> {
    movement(&state, caller, req, TxKind::Withdraw).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitRequest {
    pub max_monthly_usd_cents: i64,
}

pub async fn set_limit(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(req): JsonBody<LimitRequest>,
) -> Result<Json<Value>, ApiError> {
    if !(MIN_MONTHLY_LIMIT_CENTS..=MAX_MONTHLY_LIMIT_CENTS).contains(&req.max_monthly_usd_cents) {
        return Err(ApiError::LimitOutOfRange {
            min_usd_cents: MIN_MONTHLY_LIMIT_CENTS,
            max_usd_cents: MAX_MONTHLY_LIMIT_CENTS,
        });
    }
    let client = state.pool.get().await?;
    client
        .execute(
            "UPDATE customers SET max_monthly_usd_cents = $2, updated_at = $3 WHERE customer_id = $1",
            &[&caller.customer_id, &req.max_monthly_usd_cents, &state.clock.now()],
        )
        .await?;
    drop(client);
    balance(State(state), caller).await
}
