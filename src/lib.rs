//! `suiftly`: the composition root and the subcommands of the one binary.
//!
//! A library so tests and benches can start the pipeline in-process with sockets they bound
//! themselves ([`pipeline::Pipeline::start`] with [`pipeline::Sockets`]); `src/main.rs` only
//! parses the command line. This crate owns configuration ([`config`]), the embedded
//! PostgreSQL default ([`database`]), the stage list and its shutdown order ([`pipeline`],
//! [`stage`]), the process's endpoints ([`servers`]) and signal handling ([`signals`]); the
//! stages themselves live in the workspace crates (`ingest`, `aggregate`, …), which know
//! nothing of each other's wiring.
//!
//! Layout:
//! - [`pipeline`]: the composition root (`suiftly run`, and the demo and tests through it).
//! - [`stage`]: the stage list — start in order, stop in reverse, every task tracked.
//! - [`servers`]: `/metrics`, `/health` + `/admin/sql`, pgwire; the metrics recorder.
//! - [`live_feed`]: the live tail between the aggregator and the API (in-process, and the
//!   internal feed API replicas follow).
//! - [`config`], [`database`], [`signals`], [`activation`] (sockets passed by systemd).
//! - subcommands: [`demo`], [`loadgen`], [`replay`], [`admin_sql`] (`sql`, `audit`),
//!   [`api_cmd`] (`api`), [`manager_cmd`] (`manager`, `audit billing`), [`check_config`]
//!   (`check-config`).

pub mod activation;
pub mod admin_sql;
pub mod api_cmd;
pub mod check_config;
pub mod config;
pub mod database;
pub mod demo;
pub mod live_feed;
pub mod loadgen;
pub mod manager_cmd;
pub mod pipeline;
pub mod replay;
pub mod servers;
pub mod signals;
pub mod stage;
