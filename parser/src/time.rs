//! Calendar arithmetic without a date library: the parser only ever needs "civil date and time
//! in UTC → unix microseconds", which Howard Hinnant's `days_from_civil` does in a handful of
//! integer operations, and pulling chrono into the hot path would buy nothing else.

/// Microseconds in one second.
pub(crate) const US_PER_SEC: i64 = 1_000_000;
const SECS_PER_DAY: i64 = 86_400;

/// Days since 1970-01-01 of the proleptic Gregorian date `y-m-d` (Hinnant's algorithm).
/// Valid for any `m` in 1..=12 and `d` in 1..=31; an impossible day such as Feb 30 rolls over
/// into the next month, which callers reject beforehand when it matters.
pub fn days_from_civil(y: i32, m: u32, d: u32) -> i64 {
    let y = i64::from(y) - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400; // [0, 399]
    let m = i64::from(m);
    let mp = (m + 9) % 12; // March = 0
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`]: `(year, month, day)` of a day number.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    // Both casts are range-checked by construction: d in 1..=31, m in 1..=12.
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

pub(crate) fn is_leap(y: i32) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

pub(crate) fn days_in_month(y: i32, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Unix microseconds of a civil UTC date-time, `None` when any component is out of range.
/// `sec` may be 60 (a leap second as printed by some syslog daemons); it is counted as the
/// first second of the next minute, as POSIX time does.
pub(crate) fn civil_to_us(
    y: i32,
    mo: u32,
    d: u32,
    h: u32,
    mi: u32,
    s: u32,
    us: u32,
) -> Option<i64> {
    if !(1..=12).contains(&mo)
        || d == 0
        || d > days_in_month(y, mo)
        || h > 23
        || mi > 59
        || s > 60
        || us > 999_999
    {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    let secs = days * SECS_PER_DAY + i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(s);
    secs.checked_mul(US_PER_SEC)?.checked_add(i64::from(us))
}

/// Month number (1–12) of an English three-letter abbreviation as syslog and HAProxy print it.
#[inline]
pub(crate) fn month_from_abbr(b: &[u8]) -> Option<u32> {
    Some(match b {
        b"Jan" => 1,
        b"Feb" => 2,
        b"Mar" => 3,
        b"Apr" => 4,
        b"May" => 5,
        b"Jun" => 6,
        b"Jul" => 7,
        b"Aug" => 8,
        b"Sep" => 9,
        b"Oct" => 10,
        b"Nov" => 11,
        b"Dec" => 12,
        _ => return None,
    })
}

/// Year of a year-less RFC3164 `Mmm dd` date received at `now_us`.
///
/// Logs arrive a little after they were written, and a sender's clock may run slightly ahead,
/// so the date is taken to be in the current year unless that puts it more than about a month
/// in the future, in which case it is last year's (Dec 31 logs read on Jan 1). Symmetrically, a
/// Jan 1 date seen on Dec 31 is next year's, because a month-ahead window reaches across New
/// Year. The date is compared at midnight, so the window is measured in whole days.
pub fn infer_rfc3164_year(month: u32, day: u32, now_us: i64) -> i32 {
    const FUTURE_WINDOW_DAYS: i64 = 31;
    let now_day = now_us.div_euclid(US_PER_SEC * SECS_PER_DAY);
    let (now_year, _, _) = civil_from_days(now_day);
    // Clamp so that absurd clocks cannot overflow the i32 year.
    let now_year = i32::try_from(now_year.clamp(-100_000, 100_000)).unwrap_or(1970);
    let month = month.clamp(1, 12);
    let day = day.clamp(1, 31);
    for year in [now_year + 1, now_year, now_year - 1] {
        if days_from_civil(year, month, day) <= now_day + FUTURE_WINDOW_DAYS {
            return year;
        }
    }
    now_year - 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, NaiveDate};

    fn us(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> i64 {
        civil_to_us(y, mo, d, h, mi, s, 0).unwrap()
    }

    #[test]
    fn days_from_civil_matches_chrono() {
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
        let mut date = NaiveDate::from_ymd_opt(1600, 1, 1).unwrap();
        let end = NaiveDate::from_ymd_opt(2500, 1, 1).unwrap();
        while date < end {
            let expect = (date - epoch).num_days();
            assert_eq!(
                days_from_civil(date.year(), date.month(), date.day()),
                expect
            );
            assert_eq!(
                civil_from_days(expect),
                (i64::from(date.year()), date.month(), date.day())
            );
            date = date.succ_opt().unwrap();
        }
    }

    #[test]
    fn civil_to_us_rejects_out_of_range() {
        assert_eq!(civil_to_us(2026, 2, 29, 0, 0, 0, 0), None);
        assert!(civil_to_us(2028, 2, 29, 0, 0, 0, 0).is_some());
        assert_eq!(civil_to_us(2026, 13, 1, 0, 0, 0, 0), None);
        assert_eq!(civil_to_us(2026, 1, 0, 0, 0, 0, 0), None);
        assert_eq!(civil_to_us(2026, 1, 1, 24, 0, 0, 0), None);
        assert_eq!(civil_to_us(2026, 1, 1, 0, 60, 0, 0), None);
        assert_eq!(civil_to_us(2026, 1, 1, 0, 0, 61, 0), None);
        assert_eq!(
            civil_to_us(2026, 11, 26, 2, 10, 57, 123_000),
            Some(1_795_659_057_123_000)
        );
    }

    #[test]
    fn year_inference_same_year() {
        assert_eq!(infer_rfc3164_year(11, 26, us(2026, 11, 26, 2, 11, 0)), 2026);
        // A sender clock a few days fast is still this year.
        assert_eq!(infer_rfc3164_year(11, 30, us(2026, 11, 26, 2, 11, 0)), 2026);
        // A log from months ago (replayed) is this year too.
        assert_eq!(infer_rfc3164_year(3, 1, us(2026, 11, 26, 0, 0, 0)), 2026);
    }

    #[test]
    fn year_inference_new_year() {
        // Dec 31 logs received on Jan 1 belong to the year that just ended.
        assert_eq!(infer_rfc3164_year(12, 31, us(2027, 1, 1, 0, 0, 5)), 2026);
        assert_eq!(infer_rfc3164_year(12, 31, us(2027, 1, 15, 0, 0, 5)), 2026);
        // Jan 1 logs received on Dec 31 23:59 (fast sender clock) belong to the next year.
        assert_eq!(infer_rfc3164_year(1, 1, us(2026, 12, 31, 23, 59, 0)), 2027);
        // Jan 1 logs received on Jan 1 are this year.
        assert_eq!(infer_rfc3164_year(1, 1, us(2027, 1, 1, 0, 0, 1)), 2027);
        // Feb 29 in a leap year.
        assert_eq!(infer_rfc3164_year(2, 29, us(2028, 2, 29, 12, 0, 0)), 2028);
    }

    #[test]
    fn year_inference_never_panics_on_extremes() {
        for now in [i64::MIN, i64::MAX, 0, -1] {
            for (m, d) in [(0, 0), (1, 1), (12, 31), (99, 99)] {
                let _ = infer_rfc3164_year(m, d, now);
            }
        }
    }
}
