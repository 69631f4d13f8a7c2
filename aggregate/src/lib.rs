//! Metering stage: streaming usage aggregates over the rows the ingest stage committed.
//!
//! Layout:
//! - [`window`]: sans-IO window state — merge partials, watermark, settlement, replay rule.
//! - [`partial`]: one DataFusion GROUP BY per batch and grouping → [`window::Partials`].
//! - [`settle`]: the settlement transaction (minute rows, hour/day roll-ups, late
//!   adjustments, `usage_records`, `aggregate_state`) and retention.
//! - [`service`]: the async shell (replay, input, settlement tick) and the settled-window
//!   subscription for billing and the vault.
//! - [`sql`]: the operator `SessionContext` (live windows, settled tables, raw logs).
//! - [`live`]: the customer-facing view of the windows (the live tail's rows).
//! - [`policy`]: what operator SQL may run (one rule for HTTP and the PostgreSQL port).
//! - [`guard`]: the bounds every operator query runs under (memory, result size, time).
//! - [`throttle`]: back-off for failed operator-token guesses, shared by both front-ends.
//! - [`audit`]: recomputation from `haproxy_raw_logs` and comparison with the settled tables.
//! - [`pgwire`]: the same operator context over the PostgreSQL wire protocol (read-only,
//!   SCRAM with the operator token).
//!
//! Only this crate knows DataFusion. It knows nothing of axum or billing; its one socket is
//! the PostgreSQL-protocol front-end of the operator context, which is DataFusion-specific.

pub mod audit;
pub mod guard;
pub mod live;
pub mod partial;
pub mod pgwire;
pub mod policy;
pub mod service;
pub mod settle;
pub mod sql;
pub mod throttle;
pub mod window;

#[cfg(test)]
mod tests_pg;
