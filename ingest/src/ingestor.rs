//! This ingestor's identity among the ingestors writing into one database (`[ingest] id`, one
//! per gateway or region): what it keys its spool position, batch ids and metering state with,
//! and the lock that refuses a second live process with the same id.
//!
//! The lock is a PostgreSQL session advisory lock, `pg_try_advisory_lock(LOCK_CLASS,
//! lock_key)`, held on a dedicated connection for the process's lifetime; `lock_key` is the
//! id's row in `ingestors` (V28), so two ids never share a lock. A session lock rather than a
//! lease row: PostgreSQL frees it the moment the holder's session ends — a clean exit, a
//! SIGKILL, a crashed machine once its connection is gone — so a stopped ingestor's id can be
//! taken again at once, with no expiry to wait out and no clock involved. The positions'
//! compare-and-set (`WHERE position = start`) keeps storage exactly once even without the
//! lock; the lock turns a configuration mistake (two processes, one id) into a clear refusal
//! at start instead of a stream of position conflicts.

use std::time::Duration;

use suiftly_migrations::connect;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// The id of a single-ingestor deployment: it maps to the keys a database had before ids
/// existed (`ingest_positions` consumer `copy`, the one aggregator's state).
pub const DEFAULT_ID: &str = "default";

/// The advisory lock class of ingestor ids (two-key form, so it cannot meet the migration
/// lock's single 64-bit key).
const LOCK_CLASS: i32 = 0x5346_4944; // "SFID"

/// Tries of the lock, 100 ms apart, before the id is refused as in use.
const ACQUIRE_TRIES: u32 = 30;

#[derive(Debug, thiserror::Error)]
pub enum IngestorError {
    #[error(
        "ingestor id {id:?} is already in use: another live `suiftly run` against this database holds it; give each ingestor its own `[ingest] id` (SUIFTLY_INGEST_ID), or stop the other one"
    )]
    Duplicate { id: String },
    #[error("ingestor id {id:?}: postgres: {source}")]
    Postgres {
        id: String,
        source: tokio_postgres::Error,
    },
}

/// Ids are short and plain (they appear in keys and logs): 1–63 of `A-Z a-z 0-9 . _ -`.
pub fn validate_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 63 {
        return Err(format!("{id:?} must be 1 to 63 characters"));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return Err(format!(
            "{id:?} may only hold letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// The `ingest_positions` row of this ingestor's COPY writer: `copy` for the default id (the
/// key a single-ingestor database already has), `copy@<id>` otherwise.
pub fn copy_consumer(id: &str) -> String {
    if id == DEFAULT_ID {
        crate::writer::COPY_CONSUMER.to_owned()
    } else {
        format!("copy@{id}")
    }
}

/// Takes the id's lock on a new connection; the lock lives as long as the returned client.
pub async fn acquire(conninfo: &str, id: &str) -> Result<Client, IngestorError> {
    let pg = |source| IngestorError::Postgres {
        id: id.to_owned(),
        source,
    };
    let client = connect(conninfo).await.map_err(pg)?;
    client
        .execute(
            "INSERT INTO ingestors (id) VALUES ($1) ON CONFLICT (id) DO NOTHING",
            &[&id],
        )
        .await
        .map_err(pg)?;
    let key: i32 = client
        .query_one("SELECT lock_key FROM ingestors WHERE id = $1", &[&id])
        .await
        .map_err(pg)?
        .get(0);
    // A holder killed a moment ago has a backend that is just seeing its connection close:
    // give it a few seconds to go before calling the id taken.
    let mut tries = 0;
    loop {
        let got: bool = client
            .query_one("SELECT pg_try_advisory_lock($1, $2)", &[&LOCK_CLASS, &key])
            .await
            .map_err(pg)?
            .get(0);
        if got {
            break;
        }
        tries += 1;
        if tries >= ACQUIRE_TRIES {
            return Err(IngestorError::Duplicate { id: id.to_owned() });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    client
        .execute(
            "UPDATE ingestors SET started_at = now() WHERE id = $1",
            &[&id],
        )
        .await
        .map_err(pg)?;
    Ok(client)
}

/// Holds the lock taken by [`acquire`] until `stop` fires (dropping the connection releases
/// it). When the connection is lost (a database restart) the lock is taken again on a new one.
/// Should another process hold the id by then (it started while this one was cut off, or the
/// server has not noticed the old session is gone), this keeps trying and says so: storage
/// stays exactly once either way (the positions' compare-and-set), so stopping would only
/// lose availability.
pub async fn hold(conninfo: String, id: String, mut client: Client, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        if !client.is_closed() {
            continue;
        }
        warn!(
            id,
            "the ingestor id lock's connection closed; taking the lock again"
        );
        loop {
            match acquire(&conninfo, &id).await {
                Ok(c) => {
                    info!(id, "ingestor id lock taken again");
                    client = c;
                    break;
                }
                Err(e @ IngestorError::Duplicate { .. }) => {
                    error!(error = %e, "after a lost database connection another session holds this ingestor id; retrying");
                }
                Err(e) => {
                    warn!(error = %e, "taking the ingestor id lock again failed; retrying");
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_consumer_keys() {
        assert!(validate_id(DEFAULT_ID).is_ok());
        assert!(validate_id("eu-west-1.gw_2").is_ok());
        assert!(validate_id("").is_err());
        assert!(validate_id("a b").is_err());
        assert!(validate_id("x'; drop").is_err());
        assert!(validate_id(&"a".repeat(64)).is_err());
        assert_eq!(copy_consumer(DEFAULT_ID), "copy");
        assert_eq!(copy_consumer("eu1"), "copy@eu1");
    }
}
