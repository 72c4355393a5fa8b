//! Per-user request rate limits: one `governor` GCRA bucket per key.
//!
//! Keys are authenticated users, or client addresses for failed
//! authentications, so guessing tokens is throttled too. A refused request
//! learns how long until the next token, which rampartctl shows.

use std::{num::NonZeroU32, time::Duration};

use governor::{
    Quota, RateLimiter as Gcra,
    clock::{Clock, DefaultClock},
    state::keyed::DefaultKeyedStateStore,
};

/// A keyed token-bucket limiter.
#[derive(Debug)]
pub struct RateLimiter {
    gcra: Gcra<String, DefaultKeyedStateStore<String>, DefaultClock>,
}

/// Beyond this many keys, the idle ones are dropped before a new key is
/// added, so a flood of distinct client addresses cannot grow memory
/// without bound.
const MAX_BUCKETS: usize = 10_000;

impl RateLimiter {
    /// `rate` requests per second sustained, bursts of up to `burst`.
    /// Rates below one per thousand seconds are raised to that.
    #[must_use]
    pub fn new(rate: f64, burst: u32) -> Self {
        let period = Duration::from_secs_f64(1.0 / rate.max(0.001));
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        // `with_period` refuses only a zero period, which 1/rate cannot be
        // for a finite rate; fall back to one per microsecond all the same.
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
            .allow_burst(burst);
        Self {
            gcra: Gcra::keyed(quota),
        }
    }

    /// Takes one token for `key`.
    ///
    /// # Errors
    /// The wait until the next token.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        let key = key.to_owned();
        if self.gcra.len() >= MAX_BUCKETS {
            self.gcra.retain_recent();
        }
        self.gcra
            .check_key(&key)
            .map_err(|not_until| not_until.wait_time_from(self.gcra.clock().now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill_per_key() {
        let l = RateLimiter::new(10.0, 3);
        for _ in 0..3 {
            l.check("alice").unwrap();
        }
        let wait = l.check("alice").unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
        // Another user has its own bucket.
        l.check("bob").unwrap();
        std::thread::sleep(Duration::from_millis(120));
        l.check("alice").unwrap();
    }

    #[test]
    fn idle_keys_are_pruned_at_the_bound() {
        let l = RateLimiter::new(1000.0, 1);
        for i in 0..MAX_BUCKETS {
            l.check(&format!("10.0.{}.{}", i / 256, i % 256)).unwrap();
        }
        std::thread::sleep(Duration::from_millis(5));
        l.check("newcomer").unwrap();
        assert!(l.gcra.len() < MAX_BUCKETS, "{} keys kept", l.gcra.len());
    }
}
