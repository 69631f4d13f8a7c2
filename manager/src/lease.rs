//! Leader election with a database-issued epoch (the fencing token).
//!
//! One row, `manager_lease`. Taking over is a single `UPDATE` judged by the database's clock:
//! the row is taken when its lease has expired (or is already ours), and the epoch grows by one
//! whenever the holder changes or a lease lapsed — so the epoch names one uninterrupted term.
//! Renewing an unexpired lease keeps the epoch.
//!
//! Every leader-only transaction starts with [`Fence::check`]: it reads the row `FOR SHARE`
//! and requires our epoch, our holder id and an unexpired lease (by `clock_timestamp()`). The
//! share lock makes a concurrent take-over wait until the transaction ends, so all writes of
//! epoch e commit before epoch e+1 exists, and none after. A leader frozen inside a
//! transaction holds that lock only until PostgreSQL ends its idle session
//! (`idle_in_transaction_session_timeout`, set on every manager connection); a leader frozen
//! between transactions fails its next check. No session state (advisory locks) is involved,
//! so a pooled connection dropped by the server cannot silently release leadership.

use std::time::Duration;

use tokio_postgres::{GenericClient, Transaction};

/// A leader's term: what its transactions must prove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub epoch: i64,
    pub holder: String,
}

#[derive(Debug, thiserror::Error)]
pub enum FenceError {
    #[error(
        "fenced: this process (epoch {ours}) is no longer the leader (the lease row says epoch {theirs}, holder {holder:?}, valid {valid})"
    )]
    Fenced {
        ours: i64,
        theirs: i64,
        holder: Option<String>,
        valid: bool,
    },
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
}

impl FenceError {
    pub fn is_fenced(&self) -> bool {
        matches!(self, FenceError::Fenced { .. })
    }
}

impl Fence {
    /// The first statement of every leader-only transaction.
    pub async fn check(&self, tx: &Transaction<'_>) -> Result<(), FenceError> {
        let r = tx
            .query_one(
                "SELECT epoch, holder, COALESCE(lease_until > clock_timestamp(), false)
                 FROM manager_lease WHERE id = 1 FOR SHARE",
                &[],
            )
            .await?;
        let (theirs, holder, valid): (i64, Option<String>, bool) = (r.get(0), r.get(1), r.get(2));
        if theirs == self.epoch && holder.as_deref() == Some(self.holder.as_str()) && valid {
            Ok(())
        } else {
            metrics::counter!("suiftly_manager_fenced_total").increment(1);
            Err(FenceError::Fenced {
                ours: self.epoch,
                theirs,
                holder,
                valid,
            })
        }
    }
}

/// What the lease row says after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseState {
    /// We hold it with this epoch (`new_term`: just taken, not renewed).
    Leader { epoch: i64, new_term: bool },
    /// Someone else holds an unexpired lease.
    Standby { epoch: i64, holder: Option<String> },
}

/// Takes the lease if it is free, expired or ours; renews it if ours. `lease` is measured by
/// the database's clock.
pub async fn try_acquire(
    client: &impl GenericClient,
    holder: &str,
    lease: Duration,
) -> Result<LeaseState, tokio_postgres::Error> {
    let ms = lease.as_millis() as i64;
    let row = client
        .query_opt(
            "WITH c AS (SELECT clock_timestamp() AS t),
             u AS (
             UPDATE manager_lease l SET
                 epoch = CASE WHEN l.holder = $1 AND l.lease_until > c.t THEN l.epoch ELSE l.epoch + 1 END,
                 acquired_at = CASE WHEN l.holder = $1 AND l.lease_until > c.t THEN l.acquired_at ELSE c.t END,
                 holder = $1,
                 lease_until = c.t + $2 * interval '1 millisecond',
                 renewed_at = c.t
             FROM c
             WHERE l.id = 1
               AND (l.holder IS NULL OR l.lease_until IS NULL OR l.lease_until <= c.t OR l.holder = $1)
             RETURNING l.epoch, l.holder, l.acquired_at, l.acquired_at = l.renewed_at AS new_term),
             term AS (
                 INSERT INTO manager_terms (epoch, holder, acquired_at)
                 SELECT epoch, holder, acquired_at FROM u WHERE new_term
                 ON CONFLICT (epoch) DO NOTHING)
             SELECT epoch, new_term FROM u",
            &[&holder, &(ms as f64)],
        )
        .await?;
    if let Some(r) = row {
        return Ok(LeaseState::Leader {
            epoch: r.get(0),
            new_term: r.get(1),
        });
    }
    let r = client
        .query_one("SELECT epoch, holder FROM manager_lease WHERE id = 1", &[])
        .await?;
    Ok(LeaseState::Standby {
        epoch: r.get(0),
        holder: r.get(1),
    })
}

/// Gives the lease up (graceful shutdown): a standby takes over at its next attempt instead
/// of waiting for the lease to expire. Only our own, current term is released.
pub async fn release(
    client: &impl GenericClient,
    fence: &Fence,
) -> Result<bool, tokio_postgres::Error> {
    let n = client
        .execute(
            "UPDATE manager_lease SET holder = NULL, lease_until = NULL, renewed_at = clock_timestamp()
             WHERE id = 1 AND epoch = $1 AND holder = $2",
            &[&fence.epoch, &fence.holder],
        )
        .await?;
    Ok(n == 1)
}

/// A holder id unique to this process: host, pid and random bits.
pub fn holder_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "host".into());
    let mut b = [0u8; 4];
    let _ = getrandom::fill(&mut b);
    format!("{host}:{}:{}", std::process::id(), hex::encode(b))
}
