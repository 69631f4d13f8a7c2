//! The persistent escrow mock: the contract's behaviour over its own PostgreSQL tables
//! (`mock_escrow_accounts`, `mock_escrow_transactions`, migration V18).
//!
//! - idempotent by (account, nonce): a repeated call returns the first call's transaction; the
//!   same nonce with another kind or amount is [`EscrowError::NonceReused`];
//! - balances never go negative: an overdraft is refused and nothing is recorded (the contract
//!   would abort the transaction);
//! - every call is its own transaction on the mock's own pool, committed independently of the
//!   caller's transactions — like a remote chain, which is what makes the caller's
//!   intent-first protocol necessary and testable.

use std::sync::atomic::{AtomicU32, Ordering};

use deadpool_postgres::Pool;
use sha2::{Digest, Sha256};
use suiftly_billing::escrow::EscrowFuture;
use suiftly_billing::{Escrow, EscrowError, EscrowTx, TxKind};

/// The digest the mock gives a movement: stable for (account, kind, nonce).
pub fn mock_digest(account: i32, kind: TxKind, nonce: &str) -> String {
    let mut h = Sha256::new();
    h.update(format!("{account}:{}:{nonce}", kind.as_str()).as_bytes());
    format!("0x{}", hex::encode(h.finalize()))
}

fn unavailable(e: impl std::fmt::Display) -> EscrowError {
    EscrowError::Unavailable(e.to_string())
}

fn parse_kind(s: &str) -> Result<TxKind, EscrowError> {
    match s {
        "deposit" => Ok(TxKind::Deposit),
        "withdraw" => Ok(TxKind::Withdraw),
        "charge" => Ok(TxKind::Charge),
        other => Err(unavailable(format!("unknown kind {other:?} in the mock"))),
    }
}

/// The escrow mock over PostgreSQL.
pub struct PgMockEscrow {
    pool: Pool,
    /// Test hook: the next n calls that move money lose their reply after committing (the
    /// caller sees `Unavailable`, as after a network timeout).
    lose_replies: AtomicU32,
}

impl PgMockEscrow {
    pub fn new(pool: Pool) -> PgMockEscrow {
        PgMockEscrow {
            pool,
            lose_replies: AtomicU32::new(0),
        }
    }

    /// The next `n` successful movements commit but answer `Unavailable`.
    pub fn lose_next_replies(&self, n: u32) {
        self.lose_replies.store(n, Ordering::SeqCst);
    }

    async fn apply(
        &self,
        account: i32,
        kind: TxKind,
        amount_cents: i64,
        nonce: &str,
    ) -> Result<EscrowTx, EscrowError> {
        if amount_cents <= 0 {
            return Err(EscrowError::InvalidAmount);
        }
        let client = self.pool.get().await.map_err(unavailable)?;
        let digest = mock_digest(account, kind, nonce);
        let r = client
            .query_one(
                "SELECT outcome, digest, kind, amount_cents, balance_after_cents
                 FROM mock_escrow_apply($1, $2, $3, $4, $5)",
                &[&account, &kind.as_str(), &amount_cents, &nonce, &digest],
            )
            .await
            .map_err(unavailable)?;
        let outcome: &str = r.get(0);
        let balance_after: i64 = r.get(4);
        match outcome {
            "found" => {
                let found = EscrowTx {
                    digest: r.get(1),
                    kind: parse_kind(r.get(2))?,
                    account,
                    amount_cents: r.get(3),
                    balance_after_cents: balance_after,
                    nonce: nonce.to_string(),
                };
                return if found.kind == kind && found.amount_cents == amount_cents {
                    Ok(found)
                } else {
                    Err(EscrowError::NonceReused)
                };
            }
            "insufficient" => {
                return Err(EscrowError::InsufficientFunds {
                    balance_cents: balance_after,
                    requested_cents: amount_cents,
                });
            }
            _ => {}
        }
        let after = balance_after;
        if self
            .lose_replies
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(unavailable("reply lost (test hook)"));
        }
        Ok(EscrowTx {
            digest,
            kind,
            account,
            amount_cents,
            balance_after_cents: after,
            nonce: nonce.to_string(),
        })
    }

    async fn balance_of(&self, account: i32) -> Result<i64, EscrowError> {
        let client = self.pool.get().await.map_err(unavailable)?;
        Ok(client
            .query_opt(
                "SELECT balance_cents FROM mock_escrow_accounts WHERE account = $1",
                &[&account],
            )
            .await
            .map_err(unavailable)?
            .map(|r| r.get(0))
            .unwrap_or(0))
    }

    async fn history_of(&self, account: i32) -> Result<Vec<EscrowTx>, EscrowError> {
        let client = self.pool.get().await.map_err(unavailable)?;
        let rows = client
            .query(
                "SELECT digest, kind, amount_cents, balance_after_cents, nonce FROM mock_escrow_transactions
                 WHERE account = $1 ORDER BY created_at, digest",
                &[&account],
            )
            .await
            .map_err(unavailable)?;
        rows.iter()
            .map(|r| {
                Ok(EscrowTx {
                    digest: r.get(0),
                    kind: parse_kind(r.get(1))?,
                    account,
                    amount_cents: r.get(2),
                    balance_after_cents: r.get(3),
                    nonce: r.get(4),
                })
            })
            .collect()
    }
}

impl Escrow for PgMockEscrow {
    fn balance(&self, account: i32) -> EscrowFuture<'_, i64> {
        Box::pin(self.balance_of(account))
    }

    fn deposit<'a>(
        &'a self,
        account: i32,
        amount_cents: i64,
        nonce: &'a str,
    ) -> EscrowFuture<'a, EscrowTx> {
        Box::pin(self.apply(account, TxKind::Deposit, amount_cents, nonce))
    }

    fn withdraw<'a>(
        &'a self,
        account: i32,
        amount_cents: i64,
        nonce: &'a str,
    ) -> EscrowFuture<'a, EscrowTx> {
        Box::pin(self.apply(account, TxKind::Withdraw, amount_cents, nonce))
    }

    fn charge<'a>(
        &'a self,
        account: i32,
        amount_cents: i64,
        nonce: &'a str,
    ) -> EscrowFuture<'a, EscrowTx> {
        Box::pin(self.apply(account, TxKind::Charge, amount_cents, nonce))
    }

    fn history(&self, account: i32) -> EscrowFuture<'_, Vec<EscrowTx>> {
        Box::pin(self.history_of(account))
    }
}
