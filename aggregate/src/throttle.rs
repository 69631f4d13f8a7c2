//! Back-off for failed operator-token guesses (SCRAM on the PostgreSQL port, Bearer on
//! `POST /admin/sql`), one budget per client address shared by both front-ends.
//!
//! The first [`ThrottleConfig::free_failures`] failures cost nothing; each further one blocks
//! the address for twice as long as the previous, from [`ThrottleConfig::base`] up to
//! [`ThrottleConfig::max`]. A blocked address is refused before any password work is done.
//! An address that stays quiet for [`ThrottleConfig::forget_after`] starts over. IPv6
//! addresses are grouped by /64 (one host usually owns the whole prefix), IPv4 by address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThrottleConfig {
    pub free_failures: u32,
    pub base: Duration,
    pub max: Duration,
    pub forget_after: Duration,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            free_failures: 3,
            base: Duration::from_secs(1),
            max: Duration::from_secs(300),
            forget_after: Duration::from_secs(900),
        }
    }
}

/// The key an address is throttled (and rate-limited) under: IPv4 as is, IPv6 by /64;
/// IPv4-mapped IPv6 addresses count as their IPv4 address.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    blocked_until: Instant,
    last: Instant,
}

/// Entries beyond this many are pruned of the forgotten ones.
const PRUNE_ABOVE: usize = 10_000;

#[derive(Debug, Default)]
pub struct AuthThrottle {
    cfg: ThrottleConfig,
    entries: Mutex<HashMap<IpAddr, Entry>>,
}

impl AuthThrottle {
    pub fn new(cfg: ThrottleConfig) -> Self {
        Self {
            cfg,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(wait)` while `ip` is blocked.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let map = self.entries.lock().expect("throttle lock");
        match map.get(&client_key(ip)) {
            Some(e) if e.blocked_until > now => Err(e.blocked_until - now),
            _ => Ok(()),
        }
    }

    /// Records a failed attempt from `ip`.
    pub fn failed(&self, ip: IpAddr, now: Instant) {
        let mut map = self.entries.lock().expect("throttle lock");
        if map.len() > PRUNE_ABOVE {
            let forget = self.cfg.forget_after;
            map.retain(|_, e| {
                now.saturating_duration_since(e.last) < forget && e.blocked_until > now
            });
        }
        let e = map.entry(client_key(ip)).or_insert(Entry {
            failures: 0,
            blocked_until: now,
            last: now,
        });
        if now.saturating_duration_since(e.last) >= self.cfg.forget_after {
            e.failures = 0;
        }
        e.failures = e.failures.saturating_add(1);
        e.last = now;
        if e.failures > self.cfg.free_failures {
            let doublings = (e.failures - self.cfg.free_failures - 1).min(20);
            let wait = self
                .cfg
                .base
                .saturating_mul(1 << doublings)
                .min(self.cfg.max);
            e.blocked_until = now + wait;
        }
        metrics::counter!("suiftly_operator_auth_failures_total").increment(1);
    }

    /// A successful login clears the address's record.
    pub fn succeeded(&self, ip: IpAddr) {
        self.entries
            .lock()
            .expect("throttle lock")
            .remove(&client_key(ip));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backs_off_after_the_free_failures_and_forgets() {
        let t = AuthThrottle::new(ThrottleConfig {
            free_failures: 2,
            base: Duration::from_secs(1),
            max: Duration::from_secs(8),
            forget_after: Duration::from_secs(60),
        });
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t0 = Instant::now();
        t.failed(ip, t0);
        t.failed(ip, t0);
        assert!(t.check(ip, t0).is_ok(), "two free failures");
        t.failed(ip, t0);
        assert_eq!(t.check(ip, t0), Err(Duration::from_secs(1)));
        assert!(t.check(ip, t0 + Duration::from_secs(1)).is_ok());
        t.failed(ip, t0 + Duration::from_secs(1));
        assert_eq!(
            t.check(ip, t0 + Duration::from_secs(1)),
            Err(Duration::from_secs(2))
        );
        for i in 0..10 {
            t.failed(ip, t0 + Duration::from_secs(2 + i));
        }
        assert_eq!(
            t.check(ip, t0 + Duration::from_secs(11)),
            Err(Duration::from_secs(8)),
            "capped at max"
        );
        assert!(
            t.check("192.0.2.2".parse().unwrap(), t0).is_ok(),
            "per address"
        );
        // Quiet for forget_after: starts over with free failures.
        let later = t0 + Duration::from_secs(200);
        t.failed(ip, later);
        assert!(t.check(ip, later).is_ok());
        t.succeeded(ip);
        assert!(t.check(ip, later).is_ok());
    }

    #[test]
    fn ipv6_is_grouped_by_64() {
        let t = AuthThrottle::new(ThrottleConfig {
            free_failures: 0,
            ..ThrottleConfig::default()
        });
        let now = Instant::now();
        t.failed("2001:db8:1:2::1".parse().unwrap(), now);
        assert!(
            t.check("2001:db8:1:2:ffff::9".parse().unwrap(), now)
                .is_err()
        );
        assert!(t.check("2001:db8:1:3::1".parse().unwrap(), now).is_ok());
        assert_eq!(
            client_key("::ffff:192.0.2.7".parse().unwrap()),
            "192.0.2.7".parse::<IpAddr>().unwrap()
        );
    }
}
