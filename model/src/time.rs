//! Time as every stage counts it: microseconds since the Unix epoch, UTC.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const US_PER_SEC: i64 = 1_000_000;
pub const US_PER_MIN: i64 = 60 * US_PER_SEC;
pub const US_PER_HOUR: i64 = 60 * US_PER_MIN;
pub const US_PER_DAY: i64 = 24 * US_PER_HOUR;

/// The wall clock in µs since the epoch (0 if the clock is before 1970).
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// µs since the epoch (negative before it) as a `SystemTime`.
pub fn us_to_time(us: i64) -> SystemTime {
    if us >= 0 {
        UNIX_EPOCH + Duration::from_micros(us as u64)
    } else {
        UNIX_EPOCH - Duration::from_micros(us.unsigned_abs())
    }
}

/// Inverse of [`us_to_time`].
pub fn time_to_us(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_micros() as i64,
        Err(e) => -(e.duration().as_micros() as i64),
    }
}

/// The start of minute `minute` (minutes since the epoch).
pub fn minute_to_time(minute: i64) -> SystemTime {
    us_to_time(minute * US_PER_MIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_on_both_sides_of_the_epoch() {
        for us in [-90_061_000_001i64, -1, 0, 1, 1_795_658_400_123_456] {
            assert_eq!(time_to_us(us_to_time(us)), us);
        }
        assert_eq!(time_to_us(minute_to_time(3)), 180 * US_PER_SEC);
        assert!(now_us() > 1_700_000_000 * US_PER_SEC);
    }
}
