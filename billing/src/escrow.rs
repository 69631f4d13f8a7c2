//! The on-chain escrow boundary and an in-process mock (for unit tests; the persistent mock
//! that survives restarts is `suiftly_escrow::PgMockEscrow`) that behaves like the contract:
//! balances never go negative, every movement has a transaction digest, and a repeated nonce
//! returns the original transaction instead of moving money twice.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use serde::Serialize;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TxKind {
    Deposit,
    Withdraw,
    Charge,
}

impl TxKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TxKind::Deposit => "deposit",
            TxKind::Withdraw => "withdraw",
            TxKind::Charge => "charge",
        }
    }
}

/// One settled escrow movement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EscrowTx {
    pub digest: String,
    pub kind: TxKind,
    pub account: i32,
    pub amount_cents: i64,
    pub balance_after_cents: i64,
    pub nonce: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EscrowError {
    #[error("escrow balance {balance_cents} cents cannot cover {requested_cents} cents")]
    InsufficientFunds {
        balance_cents: i64,
        requested_cents: i64,
    },
    #[error("amount must be positive")]
    InvalidAmount,
    #[error("nonce already used for a different transaction")]
    NonceReused,
    #[error("escrow unavailable: {0}")]
    Unavailable(String),
}

pub type EscrowFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, EscrowError>> + Send + 'a>>;

/// The escrow contract as the rest of the system sees it. Object-safe so the API can hold an
/// `Arc<dyn Escrow>` and swap the mock for the Sui client.
pub trait Escrow: Send + Sync {
    fn balance(&self, account: i32) -> EscrowFuture<'_, i64>;
    fn deposit<'a>(
        &'a self,
        account: i32,
        amount_cents: i64,
        nonce: &'a str,
    ) -> EscrowFuture<'a, EscrowTx>;
    fn withdraw<'a>(
        &'a self,
        account: i32,
        amount_cents: i64,
        nonce: &'a str,
    ) -> EscrowFuture<'a, EscrowTx>;
    fn charge<'a>(
        &'a self,
        account: i32,
        amount_cents: i64,
        nonce: &'a str,
    ) -> EscrowFuture<'a, EscrowTx>;
    /// Every movement of `account` the contract recorded (the audit compares it with the
    /// ledger and the invoices).
    fn history(&self, account: i32) -> EscrowFuture<'_, Vec<EscrowTx>>;
}

#[derive(Default)]
struct MockState {
    balances: HashMap<i32, i64>,
    by_nonce: HashMap<(i32, String), EscrowTx>,
}

/// In-process escrow. Digests are `0x` + SHA-256(account, kind, nonce): stable across retries.
#[derive(Default)]
pub struct MockEscrow {
    state: Mutex<MockState>,
}

impl MockEscrow {
    pub fn new() -> MockEscrow {
        MockEscrow::default()
    }

    pub fn balance_now(&self, account: i32) -> i64 {
        let s = self.state.lock().expect("mock escrow lock");
        s.balances.get(&account).copied().unwrap_or(0)
    }

    fn apply(
        &self,
        account: i32,
        kind: TxKind,
        amount_cents: i64,
        nonce: &str,
    ) -> Result<EscrowTx, EscrowError> {
        if amount_cents <= 0 {
            return Err(EscrowError::InvalidAmount);
        }
        let mut s = self.state.lock().expect("mock escrow lock");
        if let Some(tx) = s.by_nonce.get(&(account, nonce.to_string())) {
            return if tx.kind == kind && tx.amount_cents == amount_cents {
                Ok(tx.clone())
            } else {
                Err(EscrowError::NonceReused)
            };
        }
        let balance = s.balances.get(&account).copied().unwrap_or(0);
        let after = match kind {
            TxKind::Deposit => balance
                .checked_add(amount_cents)
                .ok_or(EscrowError::InvalidAmount)?,
            TxKind::Withdraw | TxKind::Charge => {
                if balance < amount_cents {
                    return Err(EscrowError::InsufficientFunds {
                        balance_cents: balance,
                        requested_cents: amount_cents,
                    });
                }
                balance - amount_cents
            }
        };
        let mut h = Sha256::new();
        h.update(account.to_be_bytes());
        h.update(kind.as_str().as_bytes());
        h.update(nonce.as_bytes());
        let tx = EscrowTx {
            digest: format!("0x{}", hex::encode(h.finalize())),
            kind,
            account,
            amount_cents,
            balance_after_cents: after,
            nonce: nonce.to_string(),
        };
        s.balances.insert(account, after);
        s.by_nonce.insert((account, nonce.to_string()), tx.clone());
        Ok(tx)
    }
}

impl Escrow for MockEscrow {
    fn balance(&self, account: i32) -> EscrowFuture<'_, i64> {
        let b = self.balance_now(account);
        Box::pin(async move { Ok(b) })
    }

    fn deposit<'a>(
        &'a self,
        account: i32,
        amount_cents: i64,
        nonce: &'a str,
    ) -> EscrowFuture<'a, EscrowTx> {
        let r = self.apply(account, TxKind::Deposit, amount_cents, nonce);
        Box::pin(async move { r })
    }

    fn withdraw<'a>(
        &'a self,
        account: i32,
        amount_cents: i64,
        nonce: &'a str,
    ) -> EscrowFuture<'a, EscrowTx> {
        let r = self.apply(account, TxKind::Withdraw, amount_cents, nonce);
        Box::pin(async move { r })
    }

    fn charge<'a>(
        &'a self,
        account: i32,
        amount_cents: i64,
        nonce: &'a str,
    ) -> EscrowFuture<'a, EscrowTx> {
        let r = self.apply(account, TxKind::Charge, amount_cents, nonce);
        Box::pin(async move { r })
    }

    fn history(&self, account: i32) -> EscrowFuture<'_, Vec<EscrowTx>> {
        let s = self.state.lock().expect("mock escrow lock");
        let mut txs: Vec<EscrowTx> = s
            .by_nonce
            .iter()
            .filter(|((a, _), _)| *a == account)
            .map(|(_, tx)| tx.clone())
            .collect();
        txs.sort_by(|a, b| a.digest.cmp(&b.digest));
        Box::pin(async move { Ok(txs) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn deposit_withdraw_charge_and_idempotency() {
        let e = MockEscrow::new();
        let d = e.deposit(7, 10_000, "n1").await.unwrap();
        assert_eq!(d.balance_after_cents, 10_000);
        assert!(d.digest.starts_with("0x") && d.digest.len() == 66);
        // Same nonce: same transaction, no second deposit.
        assert_eq!(e.deposit(7, 10_000, "n1").await.unwrap(), d);
        assert_eq!(e.balance(7).await.unwrap(), 10_000);
        // Same nonce, different amount: refused.
        assert_eq!(
            e.deposit(7, 5, "n1").await.unwrap_err(),
            EscrowError::NonceReused
        );
        let c = e.charge(7, 2_500, "c1").await.unwrap();
        assert_eq!(c.balance_after_cents, 7_500);
        assert_ne!(c.digest, d.digest);
        assert_eq!(
            e.withdraw(7, 8_000, "w1").await.unwrap_err(),
            EscrowError::InsufficientFunds {
                balance_cents: 7_500,
                requested_cents: 8_000
            }
        );
        assert_eq!(
            e.withdraw(7, 7_500, "w1")
                .await
                .unwrap()
                .balance_after_cents,
            0
        );
        assert_eq!(
            e.charge(7, 0, "c2").await.unwrap_err(),
            EscrowError::InvalidAmount
        );
        // Accounts are separate; nonces are per account.
        assert_eq!(e.balance(8).await.unwrap(), 0);
        assert_eq!(e.deposit(8, 1, "n1").await.unwrap().balance_after_cents, 1);
    }
}
