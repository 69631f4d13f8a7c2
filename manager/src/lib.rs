//! The manager: scheduled work under one fenced leader across processes (SPEC section 9), and
//! the billing cycle over PostgreSQL (SPEC section 10, docs/BILLING.md).
//!
//! Layout: [`lease`] (leader election with a database-issued epoch; the [`Fence`] every
//! leader-only transaction checks first), [`clock`] (the mockable clock), [`bill`] (the billing
//! cycle: load books under the customer lock, apply the rules of `suiftly-billing`, intents,
//! escrow calls, outcomes; completing pending intents), [`service`] (the lease task, the cycle
//! loop, LISTEN/NOTIFY triggers, per-task status, graceful shutdown), [`admin`] (the admin HTTP
//! router), [`audit`] (`suiftly audit billing`: recompute every invoice line), [`db`] (the pool).
//!
//! It knows tokio, PostgreSQL and axum (the admin router); the rules themselves are sans-IO in
//! `suiftly-billing` and the escrow boundary is in `suiftly-escrow`. It does not know the
//! aggregator: it reads `usage_month_totals` (kept by a trigger on `usage_records`) and the
//! metering watermark from `aggregate_state`.

pub mod admin;
pub mod audit;
pub mod bill;
pub mod clock;
pub mod db;
pub mod lease;
pub mod service;

pub use clock::ManagerClock;
pub use lease::{Fence, FenceError};
pub use service::{
    CHANNEL, ManagerConfig, ManagerHandle, Scope, Task, TaskCtx, TaskFuture, WatermarkSource, start,
};
