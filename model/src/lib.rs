//! The messages that travel between stages, apart from both ends (as quickwit keeps its
//! pipeline messages in `models/`): a consumer names what it receives without importing its
//! producer.
//!
//! Layout:
//! - [`schema`]: the one definition of a raw-log row (Arrow schema = COPY column list).
//! - [`committed`]: a batch the COPY consumer committed, with its spool range, and
//!   [`CommittedSource`], the re-read input the aggregator recovers from.
//! - [`settled`]: [`SettledWindow`] and [`UsageRow`], what metering hands billing and the
//!   vault after each settlement.
//! - [`live`]: what customers see of metering — per-minute [`Numbers`] with the stats rules,
//!   and [`LiveState`], the unsettled part tagged with its settlement sequence.
//! - [`time`]: the clock and the µs-since-epoch helpers every stage uses.
//! - [`backoff`]: the one capped exponential backoff of every retry loop.
//!
//! Knows Arrow's array and schema types only: no tokio, no PostgreSQL, no DataFusion, so
//! billing and the vault can name these types without pulling in a stage.

pub mod backoff;
pub mod committed;
pub mod live;
pub mod schema;
pub mod settled;
pub mod time;

pub use backoff::Backoff;
pub use committed::{Committed, CommittedSource, SourceError};
pub use live::{LiveState, MinuteKey, Numbers};
pub use settled::{SettledWindow, UsageRow};
