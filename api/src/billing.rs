//! Billing endpoints: balance, deposit, withdraw, the monthly limit, invoices, the month to
//! date, transactions.
//!
//! Deposits and withdrawals follow the money rule (docs/BILLING.md, "Durability"): the
//! movement is committed as an intent (with the client's idempotency key stored, Stripe-style)
//! *before* the escrow is called, with a nonce the key scopes (`api:<key>`), and the outcome is
//! committed after. The part that moves money runs in its own task, so a client that goes away
//! mid-request cannot cut it in half; a retry with the same key (even after a restart) finds
//! the stored intent and completes it with the same nonce, or returns the stored result. A
//! withdrawal is checked against the database balance (minus debits still in flight) first.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, Utc};
use deadpool_postgres::GenericClient;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use suiftly_billing::{EscrowError, Metric, Month, ServiceType, TxKind};
use suiftly_escrow::intent::{self, Intent, IntentError, IntentState, Outcome};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::{AppState, JsonBody, QueryParams};

pub const MIN_MONTHLY_LIMIT_CENTS: i64 = 10_000;
pub const MAX_MONTHLY_LIMIT_CENTS: i64 = 5_000_000;
/// One movement at most $1,000,000.
pub const MAX_MOVEMENT_CENTS: i64 = 100_000_000;

/// Tells the manager that something of `customer_id` changed (`deposit`, `service`, `key`,
/// `limit`): it bills that customer at once (and rewrites the vault). Delivered at commit, and
/// only if the transaction commits.
pub async fn notify(
    client: &impl GenericClient,
    event: &str,
    customer_id: i32,
) -> Result<(), ApiError> {
    let payload = json!({ "event": event, "customer_id": customer_id }).to_string();
    client
        .execute("SELECT pg_notify('suiftly_manager', $1)", &[&payload])
        .await?;
    Ok(())
}

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
    /// Client-chosen retry key (1–64 printable ASCII characters); a random one is used when
    /// absent (then a retry is a new movement).
    pub idempotency_key: Option<String>,
}

fn refusal_error(intent: &Intent) -> ApiError {
    match intent.refusal.as_deref() {
        Some("insufficient_funds") => ApiError::InsufficientEscrowFunds {
            balance_usd_cents: intent.balance_after_cents.unwrap_or(0),
            requested_usd_cents: intent.amount_cents,
        },
        Some("nonce_reused") => ApiError::IdempotencyConflict,
        _ => ApiError::InvalidRequest("amount_usd_cents must be positive".into()),
    }
}

/// The response of a settled movement (what a replay returns, with `replayed: true`).
fn rendered(intent: &Intent) -> (StatusCode, Value) {
    match intent.state {
        IntentState::Succeeded => (
            StatusCode::OK,
            json!({
                "tx_digest": intent.tx_digest,
                "kind": intent.kind.as_str(),
                "amount_usd_cents": intent.amount_cents,
                "balance_usd_cents": intent.balance_after_cents,
                "replayed": false,
            }),
        ),
        _ => {
            let e = refusal_error(intent);
            (e.status(), e.body())
        }
    }
}

fn replay(status: i16, mut body: Value) -> Response {
    let status = StatusCode::from_u16(status as u16).unwrap_or(StatusCode::OK);
    if status.is_success() {
        body["replayed"] = Value::Bool(true);
    }
    (status, Json(body)).into_response()
}

fn request_hash(op: &str, amount: i64) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(op.as_bytes());
    h.update(b"\0");
    h.update(amount.to_be_bytes());
    h.finalize().to_vec()
}

async fn movement(state: AppState, caller: Caller, req: MoveRequest, kind: TxKind) -> Response {
    match movement_inner(state, caller, req, kind).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn movement_inner(
    state: AppState,
    caller: Caller,
    req: MoveRequest,
    kind: TxKind,
) -> Result<Response, ApiError> {
    if !(1..=MAX_MOVEMENT_CENTS).contains(&req.amount_usd_cents) {
        return Err(ApiError::InvalidRequest(format!(
            "amount_usd_cents must be within 1..={MAX_MOVEMENT_CENTS}"
        )));
    }
    let key = match req.idempotency_key {
        Some(k) if (1..=64).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()) => k,
        Some(_) => {
            return Err(ApiError::InvalidRequest(
                "idempotency_key must be 1-64 printable ascii characters".into(),
            ));
        }
        None => {
            let mut b = [0u8; 16];
            getrandom::fill(&mut b).map_err(ApiError::internal)?;
            format!("auto-{}", hex::encode(b))
        }
    };
    let amount = req.amount_usd_cents;
    let op = format!("POST /billing/{}", kind.as_str());
    let hash = request_hash(&op, amount);
    let customer_id = caller.customer_id;

    // 1. The intent and the key, committed before any money moves. The customer row lock
    // orders this customer's movements and cost checks.
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    let money = crate::db::lock_money(&tx, customer_id).await?;
    let existing = tx
        .query_opt(
            "SELECT operation, request_hash, intent_id, response_status, response_body
             FROM api_idempotency WHERE customer_id = $1 AND idempotency_key = $2 FOR UPDATE",
            &[&customer_id, &key],
        )
        .await?;
    let it = match existing {
        Some(row) => {
            let (stored_op, stored_hash): (String, Vec<u8>) = (row.get(0), row.get(1));
            if stored_op != op || stored_hash != hash {
                return Err(ApiError::IdempotencyConflict);
            }
            if let (Some(status), Some(body)) =
                (row.get::<_, Option<i16>>(3), row.get::<_, Option<Value>>(4))
            {
                tx.commit().await?;
                return Ok(replay(status, body));
            }
            let id: i64 = row
                .get::<_, Option<i64>>(2)
                .ok_or_else(|| ApiError::internal("idempotency key without intent"))?;
            intent::get(&*tx, id)
                .await
                .map_err(ApiError::internal)?
                .ok_or_else(|| ApiError::internal("intent vanished"))?
        }
        None => {
            if kind == TxKind::Withdraw {
                let reserved = intent::reserved_cents(&*tx, customer_id)
                    .await
                    .map_err(ApiError::internal)?;
                let available = money.balance_cents - reserved;
                if available < amount {
                    return Err(ApiError::InsufficientEscrowFunds {
                        balance_usd_cents: available.max(0),
                        requested_usd_cents: amount,
                    });
                }
            }
            let it = match intent::insert_movement(&tx, customer_id, kind, amount, &key).await {
                Ok(it) => it,
                Err(IntentError::NonceTaken { .. }) => return Err(ApiError::IdempotencyConflict),
                Err(e) => return Err(ApiError::internal(e)),
            };
            tx.execute(
                "INSERT INTO api_idempotency (customer_id, idempotency_key, operation, request_hash, intent_id)
                 VALUES ($1, $2, $3, $4, $5)",
                &[&customer_id, &key, &op, &hash, &it.id],
            )
            .await?;
            it
        }
    };
    tx.commit().await?;
    drop(client);
    suiftly_escrow::failpoint::hit("api_after_intent_commit");

    // 2 and 3 in their own task: a cancelled request does not stop them halfway.
    let st = state.clone();
    tokio::spawn(async move { complete(&st, it, &key).await })
        .await
        .map_err(ApiError::internal)?
}

/// Calls the escrow for a committed intent (unless it is settled already), records the
/// outcome and the response under the key, and notifies the manager after a deposit.
async fn complete(state: &AppState, it: Intent, key: &str) -> Result<Response, ApiError> {
    let outcome = if it.state == IntentState::Pending {
        match intent::call_escrow(state.escrow.as_ref(), &it).await {
            Ok(o) => Some(o),
            Err(EscrowError::Unavailable(m)) => {
                return Err(ApiError::Unavailable(format!(
                    "escrow unavailable ({m}); retry with the same idempotency_key"
                )));
            }
            Err(e) => Some(Outcome::from_result(Err(e)).map_err(ApiError::internal)?),
        }
    } else {
        None
    };
    suiftly_escrow::failpoint::hit("api_after_escrow_call");
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    let settled = match &outcome {
        Some(o) => {
            intent::record_outcome(&tx, &it, o, state.clock.now(), None)
                .await
                .map_err(ApiError::internal)?
                .0
        }
        None => it.clone(),
    };
    let (status, body) = rendered(&settled);
    tx.execute(
        "UPDATE api_idempotency SET response_status = $3, response_body = $4, completed_at = now()
         WHERE customer_id = $1 AND idempotency_key = $2 AND completed_at IS NULL",
        &[&it.customer_id, &key, &(status.as_u16() as i16), &body],
    )
    .await?;
    if settled.kind == TxKind::Deposit && settled.state == IntentState::Succeeded {
        notify(&tx, "deposit", it.customer_id).await?;
    }
    tx.commit().await?;
    Ok((status, Json(body)).into_response())
}

pub async fn deposit(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(req): JsonBody<MoveRequest>,
) -> Response {
    movement(state, caller, req, TxKind::Deposit).await
}

pub async fn withdraw(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(req): JsonBody<MoveRequest>,
) -> Response {
    movement(state, caller, req, TxKind::Withdraw).await
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
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    tx.execute(
        "UPDATE customers SET max_monthly_usd_cents = $2, updated_at = $3 WHERE customer_id = $1",
        &[
            &caller.customer_id,
            &req.max_monthly_usd_cents,
            &state.clock.now(),
        ],
    )
    .await?;
    // A raised limit lifts a monthly-limit suspension at once.
    notify(&tx, "limit", caller.customer_id).await?;
    tx.commit().await?;
    drop(client);
    balance(State(state), caller).await
}

fn invoice_json(r: &tokio_postgres::Row) -> Value {
    let total: i64 = r.get(3);
    let paid: i64 = r.get(4);
    let status: String = r.get(2);
    let due = if matches!(status.as_str(), "draft" | "pending" | "failed") {
        (total - paid).max(0)
    } else {
        0
    };
    json!({
        "id": r.get::<_, i64>(0),
        "month": Month::of_date(r.get::<_, NaiveDate>(1)).to_string(),
        "status": status,
        "total_usd_cents": total,
        "paid_usd_cents": paid,
        "due_usd_cents": due,
        "created_at": r.get::<_, DateTime<Utc>>(5),
        "finalized_at": r.get::<_, Option<DateTime<Utc>>>(6),
        "paid_at": r.get::<_, Option<DateTime<Utc>>>(7),
    })
}

const INVOICE_COLUMNS: &str =
    "invoice_id, month, status, total_cents, paid_cents, created_at, finalized_at, paid_at";

/// `GET /billing/invoices`: the caller's invoices, newest month first.
pub async fn invoices(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let client = state.pool.get().await?;
    let rows = client
        .query(
            &format!(
                "SELECT {INVOICE_COLUMNS} FROM invoices WHERE customer_id = $1 ORDER BY month DESC LIMIT 240"
            ),
            &[&caller.customer_id],
        )
        .await?;
    Ok(Json(
        json!({ "invoices": rows.iter().map(invoice_json).collect::<Vec<_>>() }),
    ))
}

/// `GET /billing/invoices/{id}`: one invoice with its lines and the charges that paid it.
/// Another customer's invoice is "not found", exactly like a missing one.
pub async fn invoice(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id: i64 = raw
        .parse()
        .map_err(|_| ApiError::InvalidRequest("invoice id must be an integer".into()))?;
    let client = state.pool.get().await?;
    let row = client
        .query_opt(
            &format!(
                "SELECT {INVOICE_COLUMNS} FROM invoices WHERE invoice_id = $1 AND customer_id = $2"
            ),
            &[&id, &caller.customer_id],
        )
        .await?
        .ok_or(ApiError::NotFound("invoice"))?;
    let mut out = invoice_json(&row);
    let lines = client
        .query(
            "SELECT line_id, kind, service_type, metric, for_month, description, amount_cents,
                    quantity_before, quantity_after, usage_from, usage_to, created_at
             FROM invoice_lines WHERE invoice_id = $1 ORDER BY line_id",
            &[&id],
        )
        .await?;
    out["lines"] = lines
        .iter()
        .map(|l| {
            json!({
                "id": l.get::<_, i64>(0),
                "kind": l.get::<_, String>(1),
                "service": l.get::<_, Option<i16>>(2).and_then(ServiceType::from_i16).map(ServiceType::as_str),
                "metric": l.get::<_, Option<String>>(3),
                "for_month": Month::of_date(l.get::<_, NaiveDate>(4)).to_string(),
                "description": l.get::<_, String>(5),
                "amount_usd_cents": l.get::<_, i64>(6),
                "quantity_before": l.get::<_, Option<i64>>(7),
                "quantity_after": l.get::<_, Option<i64>>(8),
                "usage_from": l.get::<_, Option<DateTime<Utc>>>(9),
                "usage_to": l.get::<_, Option<DateTime<Utc>>>(10),
                "created_at": l.get::<_, DateTime<Utc>>(11),
            })
        })
        .collect();
    let payments = client
        .query(
            "SELECT tx_digest, amount_usd_cents, created_at FROM escrow_transactions
             WHERE invoice_id = $1 AND customer_id = $2 ORDER BY tx_id",
            &[&id, &caller.customer_id],
        )
        .await?;
    out["payments"] = payments
        .iter()
        .map(|p| {
            json!({
                "tx_digest": p.get::<_, String>(0),
                "amount_usd_cents": p.get::<_, i64>(1),
                "at": p.get::<_, DateTime<Utc>>(2),
            })
        })
        .collect();
    Ok(Json(out))
}

/// `GET /billing/current`: the month to date — the draft's lines plus settled usage not on a
/// line yet (priced as the month's total, like the manager does). `usage_source` says which
/// usage is included: settled minutes only (the minutes still open in the aggregator are not).
pub async fn current(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let month = Month::of(state.clock.now());
    let prices = &state.config.prices;
    let client = state.pool.get().await?;
    let inv = client
        .query_opt(
            &format!(
                "SELECT {INVOICE_COLUMNS} FROM invoices WHERE customer_id = $1 AND month = $2"
            ),
            &[&caller.customer_id, &month.first_day()],
        )
        .await?;
    let usage = client
        .query(
            "SELECT t.service_type, t.requests, t.bytes, COALESCE(u.requests, 0), COALESCE(u.bytes, 0)
             FROM usage_month_totals t
             LEFT JOIN usage_invoiced u USING (customer_id, service_type, month)
             WHERE t.customer_id = $1 AND t.month = $2 ORDER BY t.service_type",
            &[&caller.customer_id, &month.first_day()],
        )
        .await?;
    let mut unbilled_total = 0i64;
    let mut services = Vec::new();
    for r in &usage {
        let Some(s) = ServiceType::from_i16(r.get(0)) else {
            continue;
        };
        let (req, bytes, ireq, ibytes): (i64, i64, i64, i64) =
            (r.get(1), r.get(2), r.get(3), r.get(4));
        let unbilled = prices.usage_cents(s, Metric::Requests, req)
            - prices.usage_cents(s, Metric::Requests, ireq)
            + prices.usage_cents(s, Metric::Bandwidth, bytes)
            - prices.usage_cents(s, Metric::Bandwidth, ibytes);
        unbilled_total += unbilled.max(0);
        services.push(json!({
            "service": s.as_str(),
            "requests": req,
            "bytes": bytes,
            "usage_usd_cents": prices.usage_cents(s, Metric::Requests, req) + prices.usage_cents(s, Metric::Bandwidth, bytes),
            "unbilled_usd_cents": unbilled.max(0),
        }));
    }
    let watermark: Option<DateTime<Utc>> = client
        .query_opt(
            "SELECT settled_before FROM aggregate_state WHERE id = 1",
            &[],
        )
        .await?
        .map(|r| r.get(0));
    let (invoice, lines_total) = match &inv {
        Some(r) => (invoice_json(r), r.get::<_, i64>(3)),
        None => (Value::Null, 0),
    };
    Ok(Json(json!({
        "month": month.to_string(),
        "invoice": invoice,
        "invoiced_usd_cents": lines_total,
        "unbilled_usage_usd_cents": unbilled_total,
        "month_to_date_usd_cents": lines_total + unbilled_total,
        "usage": services,
        "usage_source": "settled",
        "settled_before": watermark,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TxQuery {
    pub limit: Option<i64>,
}

/// `GET /billing/transactions`: the ledger (newest first) and movements still in flight.
pub async fn transactions(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(q): QueryParams<TxQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::InvalidRequest(
            "limit must be within 1..=1000".into(),
        ));
    }
    let client = state.pool.get().await?;
    let rows = client
        .query(
            "SELECT tx_digest, kind, amount_usd_cents, balance_after_cents, created_at, invoice_id
             FROM escrow_transactions WHERE customer_id = $1 ORDER BY tx_id DESC LIMIT $2",
            &[&caller.customer_id, &limit],
        )
        .await?;
    let pending = client
        .query(
            "SELECT kind, amount_cents, created_at, invoice_id FROM escrow_intents
             WHERE customer_id = $1 AND state = 'pending' ORDER BY intent_id",
            &[&caller.customer_id],
        )
        .await?;
    Ok(Json(json!({
        "transactions": rows.iter().map(|r| json!({
            "tx_digest": r.get::<_, String>(0),
            "kind": r.get::<_, String>(1),
            "amount_usd_cents": r.get::<_, i64>(2),
            "balance_after_usd_cents": r.get::<_, i64>(3),
            "at": r.get::<_, DateTime<Utc>>(4),
            "invoice_id": r.get::<_, Option<i64>>(5),
        })).collect::<Vec<_>>(),
        "pending": pending.iter().map(|r| json!({
            "kind": r.get::<_, String>(0),
            "amount_usd_cents": r.get::<_, i64>(1),
            "since": r.get::<_, DateTime<Utc>>(2),
            "invoice_id": r.get::<_, Option<i64>>(3),
        })).collect::<Vec<_>>(),
    })))
}
