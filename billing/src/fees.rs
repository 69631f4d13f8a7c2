//! Monthly fees from the service journal (BILLING.md §2).
//!
//! The API appends a [`ServiceEvent`] for every change of a service (enable, disable, new
//! configuration) in the same transaction as the change, carrying the service's state after
//! it: the configuration in force and, for a downgrade, the configuration scheduled for the
//! 1st of next month. The fee lines of a month are then a pure function of that journal and
//! the price list ([`fee_lines`]), with keys that do not depend on when the manager runs: a
//! cycle run late, twice, or by another leader computes the same lines, and the invoice keeps
//! each key once.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};

use crate::calendar::{Month, prorate};
use crate::price::{PriceError, PriceList, ServiceConfig, ServiceType, monthly_price_cents};

/// One change of one service, with the state after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceEvent {
    /// Journal order (ties at the same instant are applied in id order).
    pub id: i64,
    pub service: ServiceType,
    pub at: DateTime<Utc>,
    pub enabled: bool,
    /// The configuration in force from `at`.
    pub config: ServiceConfig,
    /// A downgrade waiting for the 1st of next month (it applies at the first month start
    /// after `at`).
    pub pending: Option<ServiceConfig>,
}

/// Why a fee line exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeeReason {
    /// The full fee of a service enabled when the month started.
    Month,
    /// Enabled during the month: pro-rated from the enabling day.
    Enable,
    /// The price rose during the month (tier, burst, extras): the pro-rated difference.
    Upgrade,
}

impl FeeReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FeeReason::Month => "month",
            FeeReason::Enable => "enable",
            FeeReason::Upgrade => "upgrade",
        }
    }
}

/// A fee line of one month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeeLine {
    /// Unique within the customer's invoice of `month`: `fee:<service>:month` or
    /// `fee:<service>:ev<event id>`.
    pub key: String,
    pub service: ServiceType,
    pub month: Month,
    pub reason: FeeReason,
    pub amount_cents: i64,
    /// The monthly price before and after (what was already covered this month, and now).
    pub covered_before_cents: i64,
    pub monthly_cents: i64,
    /// Day of the change (1 for [`FeeReason::Month`]) and days in the month.
    pub day: u32,
    pub days_in_month: u32,
    pub event_id: Option<i64>,
    pub config: ServiceConfig,
}

impl FeeLine {
    pub fn description(&self) -> String {
        let tier = self.config.tier.as_str();
        match self.reason {
            FeeReason::Month => format!("{} {tier}, {}", self.service.as_str(), self.month),
            FeeReason::Enable => format!(
                "{} {tier}, pro-rated {}/{} from day {}",
                self.service.as_str(),
                self.days_in_month - self.day + 1,
                self.days_in_month,
                self.day
            ),
            FeeReason::Upgrade => format!(
                "{} upgrade to {tier} ({} → {} cents/month), pro-rated {}/{} from day {}",
                self.service.as_str(),
                self.covered_before_cents,
                self.monthly_cents,
                self.days_in_month - self.day + 1,
                self.days_in_month,
                self.day
            ),
        }
    }
}

/// The state of one service at the start of `month`: enabled and the configuration in force
/// (a scheduled downgrade has applied by then). `None` when the service did not exist.
pub fn state_at_month_start(
    events: &[ServiceEvent],
    service: ServiceType,
    month: Month,
) -> Option<(bool, ServiceConfig)> {
    let start = month.start();
    events
        .iter()
        .filter(|e| e.service == service && e.at < start)
        .max_by_key(|e| (e.at, e.id))
        .map(|e| (e.enabled, e.pending.unwrap_or(e.config)))
}

/// Every fee line of `month` for the journal `events` (any order; other months' events are
/// read only for the state at the month's start).
pub fn fee_lines(
    prices: &PriceList,
    events: &[ServiceEvent],
    month: Month,
) -> Result<Vec<FeeLine>, PriceError> {
    let mut by_service: BTreeMap<ServiceType, Vec<&ServiceEvent>> = BTreeMap::new();
    for e in events {
        by_service.entry(e.service).or_default().push(e);
    }
    let days = month.days();
    let mut out = Vec::new();
    for (service, mut evs) in by_service {
        evs.sort_by_key(|e| (e.at, e.id));
        // The monthly price already paid for this month (BILLING.md §2: re-enabling at a tier
        // already paid for charges nothing; a higher one charges the pro-rated difference).
        let mut covered = 0i64;
        let mut enabled = false;
        if let Some((on, config)) = state_at_month_start(events, service, month) {
            enabled = on;
            if on {
                let price = monthly_price_cents(prices, service, &config)?;
                if price > 0 {
                    out.push(FeeLine {
                        key: format!("fee:{}:month", service.as_str()),
                        service,
                        month,
                        reason: FeeReason::Month,
                        amount_cents: price,
                        covered_before_cents: 0,
                        monthly_cents: price,
                        day: 1,
                        days_in_month: days,
                        event_id: None,
                        config,
                    });
                }
                covered = price;
            }
        }
        for e in evs.iter().filter(|e| month.contains(e.at)) {
            if e.enabled {
                let price = monthly_price_cents(prices, service, &e.config)?;
                if price > covered {
                    let amount = prorate(price - covered, month, e.at.day());
                    if amount > 0 {
                        out.push(FeeLine {
                            key: format!("fee:{}:ev{}", service.as_str(), e.id),
                            service,
                            month,
                            reason: if enabled {
                                FeeReason::Upgrade
                            } else {
                                FeeReason::Enable
                            },
                            amount_cents: amount,
                            covered_before_cents: covered,
                            monthly_cents: price,
                            day: e.at.day(),
                            days_in_month: days,
                            event_id: Some(e.id),
                            config: e.config,
                        });
                    }
                    covered = price;
                }
            }
            enabled = e.enabled;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::price::Tier;
    use chrono::TimeZone;

    fn at(y: i32, mo: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, 12, 0, 0).unwrap()
    }

    fn cfg(tier: Tier) -> ServiceConfig {
        ServiceConfig {
            tier,
            ..ServiceConfig::starter()
        }
    }

    fn ev(
        id: i64,
        t: DateTime<Utc>,
        enabled: bool,
        tier: Tier,
        pending: Option<Tier>,
    ) -> ServiceEvent {
        ServiceEvent {
            id,
            service: ServiceType::Grpc,
            at: t,
            enabled,
            config: cfg(tier),
            pending: pending.map(cfg),
        }
    }

    fn amounts(lines: &[FeeLine]) -> Vec<(FeeReason, i64)> {
        lines.iter().map(|l| (l.reason, l.amount_cents)).collect()
    }

    #[test]
    fn billing_md_enable_examples() {
        let p = PriceList::default();
        let e = [ev(1, at(2026, 11, 16), true, Tier::Pro, None)];
        let l = fee_lines(&p, &e, Month::new(2026, 11)).unwrap();
        assert_eq!(amounts(&l), [(FeeReason::Enable, 2000)]);
        assert_eq!(l[0].description(), "grpc pro, pro-rated 15/30 from day 16");
        // December: the full fee on the 1st.
        let l = fee_lines(&p, &e, Month::new(2026, 12)).unwrap();
        assert_eq!(amounts(&l), [(FeeReason::Month, 4000)]);
        assert_eq!(l[0].key, "fee:grpc:month");

        let e = [ev(2, at(2028, 2, 29), true, Tier::Enterprise, None)];
        assert_eq!(
            amounts(&fee_lines(&p, &e, Month::new(2028, 2)).unwrap()),
            [(FeeReason::Enable, 275)]
        );
        let e = [ev(3, at(2027, 1, 31), true, Tier::Starter, None)];
        assert_eq!(
            amounts(&fee_lines(&p, &e, Month::new(2027, 1)).unwrap()),
            [(FeeReason::Enable, 64)]
        );
        // Enabled on the 1st (after midnight): the full fee as an enable line.
        let e = [ev(4, at(2027, 3, 1), true, Tier::Pro, None)];
        assert_eq!(
            amounts(&fee_lines(&p, &e, Month::new(2027, 3)).unwrap()),
            [(FeeReason::Enable, 4000)]
        );
    }

    #[test]
    fn upgrade_then_downgrade_in_one_month() {
        let p = PriceList::default();
        // Starter from November; pro on 10 Dec (upgrade at once); back to starter on 20 Dec
        // (scheduled for 1 Jan: the service stays pro, nothing refunded).
        let e = [
            ev(1, at(2026, 11, 1), true, Tier::Starter, None),
            ev(2, at(2026, 12, 10), true, Tier::Pro, None),
            ev(3, at(2026, 12, 20), true, Tier::Pro, Some(Tier::Starter)),
        ];
        let dec = fee_lines(&p, &e, Month::new(2026, 12)).unwrap();
        assert_eq!(
            amounts(&dec),
            [(FeeReason::Month, 2000), (FeeReason::Upgrade, 1419)]
        );
        assert_eq!(
            dec[1].description(),
            "grpc upgrade to pro (2000 → 4000 cents/month), pro-rated 22/31 from day 10"
        );
        // January: the downgrade has applied first.
        let jan = fee_lines(&p, &e, Month::new(2027, 1)).unwrap();
        assert_eq!(amounts(&jan), [(FeeReason::Month, 2000)]);
        assert_eq!(jan[0].config.tier, Tier::Starter);
    }

    #[test]
    fn disable_and_re_enable_in_one_month() {
        let p = PriceList::default();
        let e = [
            ev(1, at(2026, 11, 20), true, Tier::Pro, None),
            ev(2, at(2026, 12, 5), false, Tier::Pro, None),
            // Same tier again: already paid for December.
            ev(3, at(2026, 12, 8), true, Tier::Pro, None),
            ev(4, at(2026, 12, 9), false, Tier::Pro, None),
            // Higher tier: the pro-rated difference from the day of re-enabling.
            ev(5, at(2026, 12, 10), true, Tier::Enterprise, None),
        ];
        let dec = fee_lines(&p, &e, Month::new(2026, 12)).unwrap();
        assert_eq!(
            amounts(&dec),
            [(FeeReason::Month, 4000), (FeeReason::Enable, 2838)]
        );
        assert_eq!(dec[1].key, "fee:grpc:ev5");
        // Disabled at the end of December: nothing in January.
        let e2 = [
            ev(1, at(2026, 11, 20), true, Tier::Pro, None),
            ev(2, at(2026, 12, 31), false, Tier::Pro, None),
        ];
        assert!(fee_lines(&p, &e2, Month::new(2027, 1)).unwrap().is_empty());
    }

    #[test]
    fn add_ons_raise_the_price_like_an_upgrade() {
        let p = PriceList::default();
        let mut burst = cfg(Tier::Pro);
        burst.burst = true;
        let e = [
            ev(1, at(2026, 11, 1), true, Tier::Pro, None),
            ServiceEvent {
                id: 2,
                service: ServiceType::Grpc,
                at: at(2026, 11, 16),
                enabled: true,
                config: burst,
                pending: None,
            },
        ];
        let nov = fee_lines(&p, &e, Month::new(2026, 11)).unwrap();
        assert_eq!(
            amounts(&nov),
            [(FeeReason::Enable, 4000), (FeeReason::Upgrade, 500)]
        );
        let dec = fee_lines(&p, &e, Month::new(2026, 12)).unwrap();
        assert_eq!(amounts(&dec), [(FeeReason::Month, 5000)]);
    }

    #[test]
    fn lines_do_not_depend_on_event_order_given() {
        let p = PriceList::default();
        let mut e = vec![
            ev(1, at(2026, 11, 1), true, Tier::Starter, None),
            ev(2, at(2026, 12, 10), true, Tier::Pro, None),
            ev(3, at(2026, 12, 20), true, Tier::Enterprise, None),
        ];
        let a = fee_lines(&p, &e, Month::new(2026, 12)).unwrap();
        e.reverse();
        assert_eq!(fee_lines(&p, &e, Month::new(2026, 12)).unwrap(), a);
        assert_eq!(
            amounts(&a),
            [
                (FeeReason::Month, 2000),
                (FeeReason::Upgrade, 1419),
                (FeeReason::Upgrade, 1548)
            ]
        );
    }
}
