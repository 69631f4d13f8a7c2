//! What metering hands the later stages (billing, the vault) after each settlement commit.
//!
//! Every message describes rows already committed in PostgreSQL: a subscriber that missed
//! messages (it lagged, or it was not running) re-reads `usage_records`, which is the truth.

/// A `usage_records` row written or adjusted by a settlement (uncharged: billing charges it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageRow {
    pub customer_id: i32,
    pub service_type: i16,
    /// Start of the hour (µs since the epoch).
    pub window_start_us: i64,
    /// 0 for the first settlement of the hour; late usage for an hour already charged goes
    /// to the next revision, so billing never has to un-charge.
    pub revision: i32,
    pub request_count: i64,
    pub bytes_transferred: i64,
}

/// The typed message downstream stages receive after each settlement commit.
#[derive(Clone, Debug, PartialEq)]
pub struct SettledWindow {
    /// The settlement sequence (`aggregate_state.settlement_seq`): one more per commit, never
    /// reused; the live tail's event id.
    pub seq: u64,
    /// Minutes before this instant (µs since the epoch) are settled.
    pub settled_before_us: i64,
    /// Minutes settled by this commit: `[from, to)` in µs (empty when only late rows moved).
    pub newly_settled_us: (i64, i64),
    /// Hours whose `stats_per_hour` rows were written by this commit (their last minute
    /// settled). `usage_records` do not wait for the hour: see `usage`.
    pub completed_hours_us: Vec<i64>,
    /// `usage_records` rows inserted or adjusted (uncharged; billing re-reads them): the
    /// hours of every minute this commit settled or adjusted.
    pub usage: Vec<UsageRow>,
    /// Requests in this commit that arrived after their minute had settled.
    pub late_requests: i64,
    /// What this commit added, per (minute, customer, service, network), as customers see it
    /// (the `settlement_minutes` rows of `seq`): newly settled minutes and late deltas.
    pub minutes: Vec<(crate::live::MinuteKey, crate::live::Numbers)>,
}
