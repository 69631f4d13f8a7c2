//! The customer-facing view of the window state (issue 13): [`CustKey`]/[`CustAcc`] groups
//! folded into [`Numbers`] per (minute, customer, service, network) with the stats rules of
//! `suiftly_model::live`. The aggregator hands these to the live tail ([`LiveState`] and
//! `SettledWindow::minutes`); the API never sees traffic types or status codes.

use suiftly_model::live::fold_groups;
pub use suiftly_model::{LiveState, MinuteKey, Numbers};

use crate::window::{CustAcc, CustKey};

/// Folds customer groups into customer-facing rows, sorted by key.
pub fn customer_minutes<'a>(
    rows: impl IntoIterator<Item = &'a (CustKey, CustAcc)>,
) -> Vec<(MinuteKey, Numbers)> {
    fold_groups(rows.into_iter().map(|(k, v)| {
        (
            MinuteKey {
                minute: k.minute,
                customer_id: k.customer_id,
                service_type: k.service_type,
                network: k.network,
            },
            k.traffic_type,
            k.status_code,
            v.request_count,
            v.total_bytes,
            v.rt_sum,
            v.rt_min,
            v.rt_max,
        )
    }))
}
