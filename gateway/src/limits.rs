//! Rate limits (GCRA, via `governor`) per API key and per cluster, and a cap on a cluster's
//! requests in flight. Values come from the route record, or the gateway's defaults.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use contract::ids::KeyId;
use contract::route::RateLimits;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use moka::sync::Cache;

use crate::config::GatekeeperConfig;

/// One clock for every limiter: making a clock calibrates it, which costs microseconds.
static CLOCK: LazyLock<DefaultClock> = LazyLock::new(DefaultClock::default);

/// The limits one cluster gets, defaults filled in.
#[derive(Debug, Clone, Copy)]
pub struct Effective {
    pub key: Quota,
    pub cluster: Quota,
    pub max_in_flight: u32,
}

fn quota(rps: u32, burst: u32) -> Quota {
    let rps = NonZeroU32::new(rps.max(1)).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(rps).allow_burst(burst)
}

pub fn effective(route: &RateLimits, defaults: &GatekeeperConfig) -> Effective {
    Effective {
        key: quota(
            route.key_rps.unwrap_or(defaults.key_rps),
            route.key_burst.unwrap_or(defaults.key_burst),
        ),
        cluster: quota(
            route.cluster_rps.unwrap_or(defaults.cluster_rps),
            route.cluster_burst.unwrap_or(defaults.cluster_burst),
        ),
        max_in_flight: route.max_in_flight.unwrap_or(defaults.max_in_flight).max(1),
    }
}

/// One cluster's limiter and in-flight count; lives in its route.
pub struct ClusterLimits {
    pub effective: Effective,
    limiter: DefaultDirectRateLimiter,
    in_flight: AtomicU32,
}

impl ClusterLimits {
    pub fn new(effective: Effective) -> Self {
        Self {
            limiter: RateLimiter::direct_with_clock(effective.cluster, CLOCK.clone()),
            effective,
            in_flight: AtomicU32::new(0),
        }
    }

    /// `Err(seconds to wait)` when the cluster is over its rate.
    pub fn check_rate(&self) -> Result<(), u64> {
        self.limiter
            .check()
            .map_err(|not_until| retry_after(not_until.wait_time_from(CLOCK.now())))
    }

    /// Takes an in-flight slot, or `None` when the cluster has too many requests in flight.
    pub fn enter(self: &Arc<Self>) -> Option<InFlight> {
        let before = self.in_flight.fetch_add(1, Ordering::AcqRel);
        if before >= self.effective.max_in_flight {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(InFlight(self.clone()))
    }
}

/// An in-flight slot, given back when dropped.
pub struct InFlight(Arc<ClusterLimits>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

fn retry_after(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

/// Per-key limiters, made on a key's first request and forgotten when idle. Each remembers
/// the quota it was made for, so a key whose cluster's limits changed gets the new quota on
/// its next request rather than the one it had at first use.
pub struct KeyLimits {
    by_key: Cache<KeyId, Arc<(Quota, DefaultDirectRateLimiter)>>,
}

impl Default for KeyLimits {
    fn default() -> Self {
        Self {
            by_key: Cache::builder()
                .max_capacity(1_000_000)
                .time_to_idle(Duration::from_secs(600))
                .build(),
        }
    }
}

impl KeyLimits {
    pub fn check(&self, key: KeyId, quota: Quota) -> Result<(), u64> {
        let made = || Arc::new((quota, RateLimiter::direct_with_clock(quota, CLOCK.clone())));
        let mut entry = self.by_key.get_with(key, made);
        if entry.0 != quota {
            entry = made();
            self.by_key.insert(key, entry.clone());
        }
        entry
            .1
            .check()
            .map_err(|not_until| retry_after(not_until.wait_time_from(CLOCK.now())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_the_rate_holds() {
        let limits = Arc::new(ClusterLimits::new(Effective {
            key: quota(1, 1),
            cluster: quota(1, 3),
            max_in_flight: 2,
        }));
        for _ in 0..3 {
            assert!(limits.check_rate().is_ok());
        }
        assert_eq!(
            limits.check_rate(),
            Err(1),
            "the fourth within a second waits about a second"
        );
        let a = limits.enter().unwrap();
        let _b = limits.enter().unwrap();
        assert!(
            limits.enter().is_none(),
            "a third request in flight is refused"
        );
        drop(a);
        assert!(
            limits.enter().is_some(),
            "a finished request frees its slot"
        );
        let keys = KeyLimits::default();
        let k = KeyId::new();
        assert!(keys.check(k, quota(1, 1)).is_ok());
        assert!(keys.check(k, quota(1, 1)).is_err());
        assert!(
            keys.check(KeyId::new(), quota(1, 1)).is_ok(),
            "keys are limited separately"
        );
        // The cluster's limits were raised: the key gets them now, not at its next start.
        assert!(keys.check(k, quota(100, 100)).is_ok());
        assert!(keys.check(k, quota(100, 100)).is_ok());
    }
}
