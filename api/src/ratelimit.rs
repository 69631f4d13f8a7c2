//! Token-bucket rate limits keyed by client IP or customer, driven by the injected clock.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

use chrono::{DateTime, Utc};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained requests per second (0 disables the limit).
    pub per_second: u32,
    /// Bucket size: requests allowed at once.
    pub burst: u32,
}

/// Buckets beyond this many keys are pruned (full buckets carry no state worth keeping).
const PRUNE_ABOVE: usize = 10_000;

pub struct RateLimiter<K> {
    limit: RateLimit,
    buckets: Mutex<HashMap<K, (f64, DateTime<Utc>)>>,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    pub fn new(limit: RateLimit) -> RateLimiter<K> {
        RateLimiter {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key` at `now`; false when the bucket is empty.
    pub fn check(&self, key: &K, now: DateTime<Utc>) -> bool {
        if self.limit.per_second == 0 {
            return true;
        }
        let burst = self.limit.burst.max(1) as f64;
        let rate = self.limit.per_second as f64;
        let mut buckets = self.buckets.lock().expect("rate limiter lock");
        if buckets.len() > PRUNE_ABOVE {
            buckets.retain(|_, (tokens, last)| {
                let elapsed = (now - *last).as_seconds_f64().max(0.0);
                *tokens + elapsed * rate < burst
            });
        }
        let (tokens, last) = buckets.entry(key.clone()).or_insert((burst, now));
        let elapsed = (now - *last).as_seconds_f64().max(0.0);
        *tokens = (*tokens + elapsed * rate).min(burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    #[test]
    fn burst_then_refill() {
        let l = RateLimiter::new(RateLimit {
            per_second: 2,
            burst: 3,
        });
        let t = Utc::now();
        assert!(l.check(&1, t) && l.check(&1, t) && l.check(&1, t));
        assert!(!l.check(&1, t));
        assert!(l.check(&2, t), "keys are independent");
        assert!(l.check(&1, t + TimeDelta::milliseconds(500)));
        assert!(!l.check(&1, t + TimeDelta::milliseconds(500)));
        let off = RateLimiter::new(RateLimit {
            per_second: 0,
            burst: 0,
        });
        assert!((0..1000).all(|_| off.check(&1, t)));
    }
}
