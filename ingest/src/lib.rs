//! Ingest stage: sockets → parser → Arrow batches → binary COPY into PostgreSQL.
//!
//! Layout:
//! - [`decode`]: the synchronous parse-and-reject core (one message → a row or a rejected
//!   line), shared by every path that turns messages into rows.
//! - [`batch`]: builds [`batch::WriteBatch`]es (Arrow rows + rejected lines).
//! - [`copy`]: PostgreSQL binary COPY encoding straight from Arrow columns.
//! - [`recv`]: `recvmmsg` batched receive into one reusable buffer.
//! - [`framing`]: RFC 6587 syslog-over-TCP framing (sans-IO).
//! - [`listener`]: one listener per transport (UDP, unix datagram, TCP): config, binding,
//!   receive loops, the allowlist.
//! - [`sink`]: where listeners hand messages ([`sink::BatchSink`] with the spool off).
//! - [`backfill`]: captured lines through the same path, without a socket (`suiftly replay`).
//! - [`spooled`]: the zero-loss path through the disk spool (accept, consume, commit position).
//! - [`writer`]: one transaction per batch, retries, partition upkeep.
//! - [`db`]: migrations and hourly partitions.
//! - [`timescale`]: the hypertable's start-up check and its retention policy from configuration.
//! - [`health`]: what `/health` reports (writer, consumer and spool update it).
//! - [`metrics`]: kernel drop sampling.
//!
//! This crate knows tokio and PostgreSQL; it does not know DataFusion, axum or billing.

pub mod backfill;
pub mod batch;
pub mod copy;
pub mod db;
pub mod decode;
pub mod framing;
pub mod health;
pub mod ingestor;
pub mod listener;
pub mod metrics;
pub mod recv;
pub mod sink;
pub mod spooled;
pub mod timescale;
pub mod writer;
