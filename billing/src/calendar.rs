//! Calendar months in UTC and the pro-rating rule of BILLING.md §2.
//!
//! A [`Month`] is the billing period: invoices, the monthly limit and usage totals are all per
//! calendar month, and "day" is the UTC day.

use std::fmt;

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};

/// A calendar month (UTC). Ordered by time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Month {
    pub year: i32,
    /// 1–12.
    pub month: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a month (expected YYYY-MM): {0:?}")]
pub struct MonthParseError(pub String);

impl Month {
    /// Panics on a month outside 1–12 (a programming error, not input: input goes through
    /// [`Month::parse`] or [`Month::of`]).
    pub fn new(year: i32, month: u32) -> Month {
        assert!((1..=12).contains(&month), "month {month} out of range");
        Month { year, month }
    }

    /// The month an instant falls in.
    pub fn of(t: DateTime<Utc>) -> Month {
        Month::new(t.year(), t.month())
    }

    pub fn of_date(d: NaiveDate) -> Month {
        Month::new(d.year(), d.month())
    }

    /// `YYYY-MM`.
    pub fn parse(s: &str) -> Result<Month, MonthParseError> {
        let err = || MonthParseError(s.to_string());
        let (y, m) = s.split_once('-').ok_or_else(err)?;
        if y.len() != 4 || m.len() != 2 {
            return Err(err());
        }
        let year: i32 = y.parse().map_err(|_| err())?;
        let month: u32 = m.parse().map_err(|_| err())?;
        if !(1..=12).contains(&month) {
            return Err(err());
        }
        Ok(Month { year, month })
    }

    pub fn first_day(self) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.year, self.month, 1).expect("valid month")
    }

    /// 00:00 UTC on the 1st.
    pub fn start(self) -> DateTime<Utc> {
        Utc.from_utc_datetime(&self.first_day().and_hms_opt(0, 0, 0).expect("midnight"))
    }

    /// The start of the next month (exclusive end of this one).
    pub fn end(self) -> DateTime<Utc> {
        self.next().start()
    }

    pub fn next(self) -> Month {
        if self.month == 12 {
            Month::new(self.year + 1, 1)
        } else {
            Month::new(self.year, self.month + 1)
        }
    }

    pub fn prev(self) -> Month {
        if self.month == 1 {
            Month::new(self.year - 1, 12)
        } else {
            Month::new(self.year, self.month - 1)
        }
    }

    /// Days in the month (28–31).
    pub fn days(self) -> u32 {
        (self.next().first_day() - self.first_day()).num_days() as u32
    }

    pub fn contains(self, t: DateTime<Utc>) -> bool {
        Month::of(t) == self
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// BILLING.md §2: the share of a monthly `amount` for enabling (or upgrading) on `day` of
/// `month`, the enabling day included: `floor(amount × (D − day + 1) / D)`. Day 1 is the full
/// amount. Negative amounts are not pro-rated (nothing is refunded): they give 0.
pub fn prorate(amount_cents: i64, month: Month, day: u32) -> i64 {
    let d = month.days() as i64;
    let day = (day as i64).clamp(1, d);
    if amount_cents <= 0 {
        return 0;
    }
    // i128: amount × 31 cannot overflow, whatever the price list says.
    ((amount_cents as i128 * (d - day + 1) as i128) / d as i128) as i64
}

/// [`prorate`] for a change at instant `at` (its UTC day in its own month).
pub fn prorate_at(amount_cents: i64, at: DateTime<Utc>) -> i64 {
    prorate(amount_cents, Month::of(at), at.day())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(y: i32, mo: u32) -> Month {
        Month::new(y, mo)
    }

    #[test]
    fn month_lengths_including_leap_years() {
        assert_eq!(m(2026, 2).days(), 28);
        assert_eq!(m(2028, 2).days(), 29);
        assert_eq!(m(2100, 2).days(), 28);
        assert_eq!(m(2000, 2).days(), 29);
        assert_eq!(m(2026, 11).days(), 30);
        assert_eq!(m(2026, 12).days(), 31);
        assert_eq!(m(2027, 1).days(), 31);
    }

    #[test]
    fn navigation_and_parsing() {
        assert_eq!(m(2026, 12).next(), m(2027, 1));
        assert_eq!(m(2027, 1).prev(), m(2026, 12));
        assert_eq!(m(2026, 11).to_string(), "2026-11");
        assert_eq!(Month::parse("2028-02"), Ok(m(2028, 2)));
        for bad in ["2028-2", "2028-13", "28-02", "2028/02", "", "2028-00"] {
            assert!(Month::parse(bad).is_err(), "{bad}");
        }
        let t = Utc.with_ymd_and_hms(2026, 11, 30, 23, 59, 59).unwrap();
        assert_eq!(Month::of(t), m(2026, 11));
        assert_eq!(
            m(2026, 11).end(),
            Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap()
        );
        assert!(m(2026, 12).contains(m(2026, 11).end()));
    }

    /// Every proration example of BILLING.md §2.
    #[test]
    fn billing_md_proration_examples() {
        // Pro (4000) on 16 Nov 2026 (D = 30).
        assert_eq!(prorate(4000, m(2026, 11), 16), 2000);
        // Enterprise (8000) on 29 Feb 2028 (D = 29).
        assert_eq!(prorate(8000, m(2028, 2), 29), 275);
        // Starter (2000) on 31 Jan 2027 (D = 31).
        assert_eq!(prorate(2000, m(2027, 1), 31), 64);
        // Upgrade starter → pro on 10 Dec 2026: difference 2000 over 22 of 31 days.
        assert_eq!(prorate(2000, m(2026, 12), 10), 1419);
    }

    #[test]
    fn first_and_last_day_in_every_month_length() {
        for (month, d) in [
            (m(2026, 2), 28),
            (m(2028, 2), 29),
            (m(2026, 11), 30),
            (m(2026, 12), 31),
        ] {
            assert_eq!(month.days(), d);
            // On the 1st: the full fee.
            assert_eq!(prorate(4000, month, 1), 4000, "{month}");
            // On the last day: one day's worth, rounded down.
            assert_eq!(prorate(4000, month, d), 4000 / d as i64, "{month}");
        }
        // 28 Feb 2026 is the last day; 28 Feb 2028 is not (one more day to pay).
        assert_eq!(prorate(2900, m(2026, 2), 28), 103);
        assert_eq!(prorate(2900, m(2028, 2), 28), 200);
        assert_eq!(prorate(2900, m(2028, 2), 29), 100);
    }

    #[test]
    fn never_refunds_and_never_exceeds() {
        assert_eq!(prorate(-2000, m(2026, 12), 10), 0);
        assert_eq!(prorate(0, m(2026, 12), 10), 0);
        for day in 1..=31 {
            let p = prorate(8000, m(2026, 12), day);
            assert!((0..=8000).contains(&p));
            if day > 1 {
                assert!(p <= prorate(8000, m(2026, 12), day - 1));
            }
        }
        let at = Utc.with_ymd_and_hms(2028, 2, 29, 23, 0, 0).unwrap();
        assert_eq!(prorate_at(8000, at), 275);
    }
}
