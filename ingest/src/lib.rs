//! Ingest stage: sockets → parser → Arrow batches → binary COPY into PostgreSQL.
//!
//! Layout:
//! - [`batch`]: builds [`batch::WriteBatch`]es (Arrow rows + rejected lines).
//! - [`copy`]: PostgreSQL binary COPY encoding straight from Arrow columns.
//! - [`recv`]: `recvmmsg` batched receive into one reusable buffer.
//! - [`framing`]: RFC 6587 syslog-over-TCP framing (sans-IO).
//! - [`listener`]: UDP / unix-datagram listener tasks with allowlists.
//! - [`tcp`]: syslog-over-TCP listener (HAProxy `ring` forwarding).
//! - [`replay`]: captured lines through the same path, without a socket.
//! - [`spooled`]: the zero-loss path through the disk spool (accept, consume, commit position).
//! - [`writer`]: one transaction per batch, retries, partition upkeep.
//! - [`db`]: migrations and hourly partitions.
//! - [`timescale`]: the hypertable's start-up check and its retention policy from configuration.
//! - [`metrics`]: kernel drop sampling.
//!
//! This crate knows tokio and PostgreSQL; it does not know DataFusion, axum or billing.

pub mod batch;
pub mod copy;
pub mod db;
pub mod framing;
pub mod health;
pub mod listener;
pub mod metrics;
pub mod recv;
pub mod replay;
pub mod spooled;
pub mod tcp;
pub mod timescale;
pub mod writer;
