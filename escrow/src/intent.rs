//! The intent journal (`escrow_intents`, migration V15): every call that moves money is
//! committed as an intent before the escrow is called and settled after it.
//!
//! The protocol, for the manager's charges and the API's deposits and withdrawals alike:
//! 1. in a transaction (holding the customer's row lock, and for the manager the leader
//!    fence), insert the intent with a nonce derived from what it pays ([`insert_charge`],
//!    [`insert_movement`]) and commit;
//! 2. call the escrow with that nonce ([`call_escrow`]);
//! 3. in a new transaction, [`record_outcome`]: the intent's state, the ledger row
//!    (`escrow_transactions`), the cached balance, and for a charge the invoice's paid amount
//!    and `current_month_charged`; commit.
//!
//! A crash or a lost reply anywhere leaves a `pending` intent; whoever finds it
//! ([`pending`]) repeats step 2 with the same nonce — the escrow returns the first call's
//! transaction — and step 3, which changes nothing if another process recorded the outcome
//! first (the intent row is locked and must still be `pending`).

use chrono::{DateTime, Utc};
use suiftly_billing::{Escrow, EscrowError, EscrowTx, Month, TxKind, charge_nonce};
use tokio_postgres::{GenericClient, Row, Transaction};
use tracing::warn;

/// A committed intent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    pub id: i64,
    pub customer_id: i32,
    pub kind: TxKind,
    pub amount_cents: i64,
    pub nonce: String,
    pub invoice_id: Option<i64>,
    pub idempotency_key: Option<String>,
    pub state: IntentState,
    pub refusal: Option<String>,
    pub tx_digest: Option<String>,
    pub balance_after_cents: Option<i64>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntentState {
    Pending,
    Succeeded,
    Refused,
}

impl IntentState {
    pub fn as_str(self) -> &'static str {
        match self {
            IntentState::Pending => "pending",
            IntentState::Succeeded => "succeeded",
            IntentState::Refused => "refused",
        }
    }
}

/// What the escrow answered (an `Unavailable` answer is not an outcome: the intent stays
/// pending and is retried).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Succeeded(EscrowTx),
    /// `code`: `insufficient_funds`, `nonce_reused` or `invalid_amount`.
    Refused {
        code: &'static str,
        error: EscrowError,
    },
}

impl Outcome {
    /// `Err` for `Unavailable` (retry later with the same nonce).
    pub fn from_result(r: Result<EscrowTx, EscrowError>) -> Result<Outcome, EscrowError> {
        match r {
            Ok(tx) => Ok(Outcome::Succeeded(tx)),
            Err(e @ EscrowError::InsufficientFunds { .. }) => Ok(Outcome::Refused {
                code: "insufficient_funds",
                error: e,
            }),
            Err(e @ EscrowError::NonceReused) => Ok(Outcome::Refused {
                code: "nonce_reused",
                error: e,
            }),
            Err(e @ EscrowError::InvalidAmount) => Ok(Outcome::Refused {
                code: "invalid_amount",
                error: e,
            }),
            Err(e @ EscrowError::Unavailable(_)) => Err(e),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IntentError {
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("nonce {nonce:?} is already used by this customer for another movement")]
    NonceTaken { nonce: String },
    #[error("invoice {0} not found")]
    NoInvoice(i64),
    #[error("escrow returned a transaction that does not match intent {intent}: {detail}")]
    Mismatch { intent: i64, detail: String },
}

fn kind_of(s: &str) -> TxKind {
    match s {
        "deposit" => TxKind::Deposit,
        "withdraw" => TxKind::Withdraw,
        _ => TxKind::Charge,
    }
}

fn state_of(s: &str) -> IntentState {
    match s {
        "pending" => IntentState::Pending,
        "succeeded" => IntentState::Succeeded,
        _ => IntentState::Refused,
    }
}

const COLUMNS: &str = "intent_id, customer_id, kind, amount_cents, nonce, invoice_id, idempotency_key, \
                       state, refusal, tx_digest, balance_after_cents, created_at";

fn from_row(r: &Row) -> Intent {
    Intent {
        id: r.get(0),
        customer_id: r.get(1),
        kind: kind_of(r.get(2)),
        amount_cents: r.get(3),
        nonce: r.get(4),
        invoice_id: r.get(5),
        idempotency_key: r.get(6),
        state: state_of(r.get(7)),
        refusal: r.get(8),
        tx_digest: r.get(9),
        balance_after_cents: r.get(10),
        created_at: r.get(11),
    }
}

/// Commits-to-be a charge against `invoice_id` (the customer's invoice of `month`): takes the
/// invoice's next charge sequence and derives the nonce from customer, month and sequence.
/// Run inside the fenced transaction that decided the charge.
pub async fn insert_charge(
    tx: &Transaction<'_>,
    customer_id: i32,
    invoice_id: i64,
    month: Month,
    amount_cents: i64,
    epoch: i64,
    now: DateTime<Utc>,
) -> Result<Intent, IntentError> {
    let seq: i32 = tx
        .query_opt(
            "UPDATE invoices SET charge_seq = charge_seq + 1, updated_at = $2 WHERE invoice_id = $1 RETURNING charge_seq",
            &[&invoice_id, &now],
        )
        .await?
        .ok_or(IntentError::NoInvoice(invoice_id))?
        .get(0);
    let nonce = charge_nonce(customer_id, month, seq);
    let r = tx
        .query_one(
            &format!(
                "INSERT INTO escrow_intents (customer_id, kind, amount_cents, nonce, invoice_id, charge_seq, epoch)
                 VALUES ($1, 'charge', $2, $3, $4, $5, $6) RETURNING {COLUMNS}"
            ),
            &[&customer_id, &amount_cents, &nonce, &invoice_id, &seq, &epoch],
        )
        .await?;
    Ok(from_row(&r))
}

/// One charge to start (see [`insert_charges`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChargeRequest {
    pub customer_id: i32,
    pub invoice_id: i64,
    pub month: Month,
    pub amount_cents: i64,
}

/// [`insert_charge`] for many invoices at once (each at most once): two statements whatever
/// the count. Returns the intents in the order of `reqs`.
pub async fn insert_charges(
    tx: &Transaction<'_>,
    reqs: &[ChargeRequest],
    epoch: i64,
    now: DateTime<Utc>,
) -> Result<Vec<Intent>, IntentError> {
    if reqs.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = reqs.iter().map(|r| r.invoice_id).collect();
    let rows = tx
        .query(
            "UPDATE invoices SET charge_seq = charge_seq + 1, updated_at = $2
             WHERE invoice_id = ANY($1) RETURNING invoice_id, charge_seq",
            &[&ids, &now],
        )
        .await?;
    let seqs: std::collections::HashMap<i64, i32> =
        rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let mut cust = Vec::with_capacity(reqs.len());
    let mut amount = Vec::with_capacity(reqs.len());
    let mut nonce = Vec::with_capacity(reqs.len());
    let mut seq = Vec::with_capacity(reqs.len());
    for r in reqs {
        let s = *seqs
            .get(&r.invoice_id)
            .ok_or(IntentError::NoInvoice(r.invoice_id))?;
        cust.push(r.customer_id);
        amount.push(r.amount_cents);
        nonce.push(charge_nonce(r.customer_id, r.month, s));
        seq.push(s);
    }
    let rows = tx
        .query(
            &format!(
                "INSERT INTO escrow_intents (customer_id, kind, amount_cents, nonce, invoice_id, charge_seq, epoch)
                 SELECT c, 'charge', a, n, i, s, $6
                 FROM unnest($1::int4[], $2::int8[], $3::text[], $4::int8[], $5::int4[]) AS u(c, a, n, i, s)
                 RETURNING {COLUMNS}"
            ),
            &[&cust, &amount, &nonce, &ids, &seq, &epoch],
        )
        .await?;
    let mut by_invoice: std::collections::HashMap<i64, Intent> = rows
        .iter()
        .map(from_row)
        .map(|i| (i.invoice_id.expect("charge"), i))
        .collect();
    Ok(ids
        .iter()
        .map(|id| by_invoice.remove(id).expect("inserted"))
        .collect())
}

/// A deposit or withdrawal asked through the API, its nonce scoped by the client's key
/// (`api:<key>`, a namespace no system nonce uses).
pub async fn insert_movement(
    tx: &Transaction<'_>,
    customer_id: i32,
    kind: TxKind,
    amount_cents: i64,
    idempotency_key: &str,
) -> Result<Intent, IntentError> {
    let nonce = format!("api:{idempotency_key}");
    let r = tx
        .query_opt(
            &format!(
                "INSERT INTO escrow_intents (customer_id, kind, amount_cents, nonce, idempotency_key)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (customer_id, nonce) DO NOTHING RETURNING {COLUMNS}"
            ),
            &[&customer_id, &kind.as_str(), &amount_cents, &nonce, &idempotency_key],
        )
        .await?;
    r.map(|r| from_row(&r))
        .ok_or(IntentError::NonceTaken { nonce })
}

pub async fn get(client: &impl GenericClient, id: i64) -> Result<Option<Intent>, IntentError> {
    Ok(client
        .query_opt(
            &format!("SELECT {COLUMNS} FROM escrow_intents WHERE intent_id = $1"),
            &[&id],
        )
        .await?
        .map(|r| from_row(&r)))
}

/// Pending intents at least `min_age` old by the database's clock (oldest first): left by a
/// crash, a timeout or a leader change, or still in the hands of a live request (hence the
/// age).
pub async fn pending_older_than(
    client: &impl GenericClient,
    min_age: chrono::TimeDelta,
    limit: i64,
) -> Result<Vec<Intent>, IntentError> {
    let ms = min_age.num_milliseconds() as f64;
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM escrow_intents
                 WHERE state = 'pending' AND created_at <= now() - $1 * interval '1 millisecond'
                 ORDER BY created_at, intent_id LIMIT $2"
            ),
            &[&ms, &limit],
        )
        .await?;
    Ok(rows.iter().map(from_row).collect())
}

/// Debits committed as intents and not settled (they may still take money).
pub async fn reserved_cents(
    client: &impl GenericClient,
    customer_id: i32,
) -> Result<i64, IntentError> {
    Ok(client
        .query_one(
            "SELECT COALESCE(SUM(amount_cents), 0)::bigint FROM escrow_intents
             WHERE customer_id = $1 AND state = 'pending' AND kind IN ('withdraw', 'charge')",
            &[&customer_id],
        )
        .await?
        .get(0))
}

/// Step 2: the escrow call with the intent's own nonce.
pub async fn call_escrow(escrow: &dyn Escrow, intent: &Intent) -> Result<Outcome, EscrowError> {
    let (c, a, n) = (
        intent.customer_id,
        intent.amount_cents,
        intent.nonce.as_str(),
    );
    let r = match intent.kind {
        TxKind::Deposit => escrow.deposit(c, a, n).await,
        TxKind::Withdraw => escrow.withdraw(c, a, n).await,
        TxKind::Charge => escrow.charge(c, a, n).await,
    };
    Outcome::from_result(r)
}

/// Step 3, inside the caller's transaction (the manager fences it first). Returns the intent
/// as it stands after, and whether this call recorded it (it was pending) or found it recorded
/// already.
pub async fn record_outcome(
    tx: &Transaction<'_>,
    intent: &Intent,
    outcome: &Outcome,
    now: DateTime<Utc>,
    epoch: Option<i64>,
) -> Result<(Intent, bool), IntentError> {
    let mut v = record_outcomes(tx, &[(intent.clone(), outcome.clone())], now, epoch).await?;
    Ok(v.pop().expect("one in, one out"))
}

/// [`record_outcome`] for many intents in a handful of statements (a billing batch). Each
/// intent appears at most once. `epoch`: the leader's, for a manager write.
pub async fn record_outcomes(
    tx: &Transaction<'_>,
    items: &[(Intent, Outcome)],
    now: DateTime<Utc>,
    epoch: Option<i64>,
) -> Result<Vec<(Intent, bool)>, IntentError> {
    use std::collections::{BTreeMap, HashMap};
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = items.iter().map(|(i, _)| i.id).collect();
    // Lock them; only those still pending are recorded here.
    let pending: std::collections::HashSet<i64> = tx
        .query(
            "SELECT intent_id FROM escrow_intents WHERE intent_id = ANY($1) AND state = 'pending'
             ORDER BY intent_id FOR UPDATE",
            &[&ids],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();

    // Succeeded.
    let (mut s_id, mut s_digest, mut s_after) = (vec![], vec![], vec![]);
    let (mut l_cust, mut l_kind, mut l_amount, mut l_nonce, mut l_inv) =
        (vec![], vec![], vec![], vec![], vec![]);
    // customer → (delta, escrow balance after the last of its movements here, charged)
    let mut per_customer: BTreeMap<i32, (i64, i64, i64)> = BTreeMap::new();
    let mut per_invoice: BTreeMap<i64, i64> = BTreeMap::new();
    // Refused.
    let (mut r_id, mut r_code) = (vec![], vec![]);
    let mut failed_invoices: Vec<i64> = vec![];
    for (intent, outcome) in items {
        if !pending.contains(&intent.id) {
            continue;
        }
        match outcome {
            Outcome::Succeeded(etx) => {
                if etx.kind != intent.kind
                    || etx.amount_cents != intent.amount_cents
                    || etx.account != intent.customer_id
                {
                    return Err(IntentError::Mismatch {
                        intent: intent.id,
                        detail: format!("{etx:?}"),
                    });
                }
                s_id.push(intent.id);
                s_digest.push(etx.digest.clone());
                s_after.push(etx.balance_after_cents);
                l_cust.push(intent.customer_id);
                l_kind.push(intent.kind.as_str());
                l_amount.push(intent.amount_cents);
                l_nonce.push(intent.nonce.clone());
                l_inv.push(intent.invoice_id);
                let (delta, charged) = match intent.kind {
                    TxKind::Deposit => (intent.amount_cents, 0),
                    TxKind::Withdraw => (-intent.amount_cents, 0),
                    TxKind::Charge => (-intent.amount_cents, intent.amount_cents),
                };
                let e = per_customer.entry(intent.customer_id).or_default();
                e.0 += delta;
                e.1 = etx.balance_after_cents;
                e.2 += charged;
                if let Some(inv) = intent.invoice_id {
                    *per_invoice.entry(inv).or_default() += intent.amount_cents;
                }
            }
            Outcome::Refused { code, error } => {
                if *code == "nonce_reused" {
                    warn!(intent = intent.id, nonce = %intent.nonce, "escrow refused a reused nonce");
                }
                r_id.push(intent.id);
                r_code.push(*code);
                if let (Some(inv), EscrowError::InsufficientFunds { .. }) =
                    (intent.invoice_id, error)
                {
                    failed_invoices.push(inv);
                }
            }
        }
    }
    if !s_id.is_empty() {
        tx.execute(
            "UPDATE escrow_intents i SET state = 'succeeded', tx_digest = u.d, balance_after_cents = u.b,
                 completed_at = now(), completed_epoch = $4, attempts = i.attempts + 1
             FROM unnest($1::int8[], $2::text[], $3::int8[]) AS u(id, d, b)
             WHERE i.intent_id = u.id",
            &[&s_id, &s_digest, &s_after, &epoch],
        )
        .await?;
        tx.execute(
            "INSERT INTO escrow_transactions (customer_id, tx_digest, kind, amount_usd_cents,
                 balance_after_cents, nonce, created_at, intent_id, invoice_id)
             SELECT c, d, k, a, b, n, $9, i, inv
             FROM unnest($1::int4[], $2::text[], $3::text[], $4::int8[], $5::int8[], $6::text[],
                         $7::int8[], $8::int8[]) AS u(c, d, k, a, b, n, i, inv)",
            &[
                &l_cust, &s_digest, &l_kind, &l_amount, &s_after, &l_nonce, &s_id, &l_inv, &now,
            ],
        )
        .await?;
        let (mut c_id, mut c_delta, mut c_after, mut c_charged) = (vec![], vec![], vec![], vec![]);
        for (c, (d, a, ch)) in &per_customer {
            c_id.push(*c);
            c_delta.push(*d);
            c_after.push(*a);
            c_charged.push(*ch);
        }
        // The cache follows the ledger by deltas (they commute when outcomes commit out of
        // order); should it ever fall below 0, the escrow's own figure wins.
        tx.execute(
            "UPDATE customers c SET
                 current_balance_usd_cents = CASE WHEN c.current_balance_usd_cents + u.delta >= 0
                     THEN c.current_balance_usd_cents + u.delta ELSE u.after END,
                 current_month_charged_usd_cents = c.current_month_charged_usd_cents + u.charged,
                 updated_at = $5
             FROM unnest($1::int4[], $2::int8[], $3::int8[], $4::int8[]) AS u(id, delta, after, charged)
             WHERE c.customer_id = u.id",
            &[&c_id, &c_delta, &c_after, &c_charged, &now],
        )
        .await?;
        if !per_invoice.is_empty() {
            let (inv, amt): (Vec<i64>, Vec<i64>) = per_invoice.into_iter().unzip();
            tx.execute(
                "UPDATE invoices i SET paid_cents = i.paid_cents + u.a,
                     status = CASE WHEN i.status IN ('pending', 'failed') AND i.paid_cents + u.a >= i.total_cents
                                   THEN 'paid' ELSE i.status END,
                     paid_at = CASE WHEN i.status IN ('pending', 'failed') AND i.paid_cents + u.a >= i.total_cents
                                    THEN $3 ELSE i.paid_at END,
                     updated_at = $3
                 FROM unnest($1::int8[], $2::int8[]) AS u(id, a)
                 WHERE i.invoice_id = u.id",
                &[&inv, &amt, &now],
            )
            .await?;
        }
    }
    if !r_id.is_empty() {
        tx.execute(
            "UPDATE escrow_intents i SET state = 'refused', refusal = u.code, completed_at = now(),
                 completed_epoch = $3, attempts = i.attempts + 1
             FROM unnest($1::int8[], $2::text[]) AS u(id, code) WHERE i.intent_id = u.id",
            &[&r_id, &r_code, &epoch],
        )
        .await?;
        if !failed_invoices.is_empty() {
            tx.execute(
                "UPDATE invoices SET status = 'failed', updated_at = $2
                 WHERE invoice_id = ANY($1) AND status = 'pending'",
                &[&failed_invoices, &now],
            )
            .await?;
        }
    }
    let after: HashMap<i64, Intent> = tx
        .query(
            &format!("SELECT {COLUMNS} FROM escrow_intents WHERE intent_id = ANY($1)"),
            &[&ids],
        )
        .await?
        .iter()
        .map(|r| {
            let i = from_row(r);
            (i.id, i)
        })
        .collect();
    Ok(items
        .iter()
        .map(|(i, _)| {
            (
                after.get(&i.id).cloned().unwrap_or_else(|| i.clone()),
                pending.contains(&i.id),
            )
        })
        .collect())
}
