//! Rate limiting with GCRA (the generic cell rate algorithm), in process.
//!
//! A limit is `limit` requests per `window`, with bursts up to `limit`. Each key keeps one
//! timestamp, the theoretical arrival time (TAT), so memory is one entry per active key;
//! entries whose TAT has passed carry no information and are swept.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A rate: `limit` requests per `window`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Requests allowed per window (also the burst).
    pub limit: u32,
    /// The window.
    pub window: Duration,
}

/// The outcome of a check, with what the `RateLimit` headers report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// The limit.
    pub limit: u32,
    /// Requests left in the current burst.
    pub remaining: u32,
    /// Time until the burst is fully replenished.
    pub reset: Duration,
    /// When refused: time until one request is allowed.
    pub retry_after: Duration,
}

/// In-process GCRA limiter keyed by string.
#[derive(Debug, Default)]
pub struct Limiter {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    tat: HashMap<String, Instant>,
    checks_since_sweep: u32,
}

impl Limiter {
    /// A limiter with no history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one request for `key` against `rate`, at `now`.
    pub fn check_at(&self, key: &str, rate: Rate, now: Instant) -> Decision {
        let limit = rate.limit.max(1);
        let interval = rate.window / limit;
        let burst = interval * limit;
        // A poisoned lock only means another thread panicked mid-check; the map is intact.
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.checks_since_sweep += 1;
        if state.checks_since_sweep >= 10_000 {
            state.checks_since_sweep = 0;
            state.tat.retain(|_, tat| *tat > now);
        }
        let tat = state
            .tat
            .get(key)
            .copied()
            .filter(|t| *t > now)
            .unwrap_or(now);
        let new_tat = tat + interval;
        let allow_at = new_tat.checked_sub(burst).unwrap_or(now);
        if allow_at > now {
            let reset = tat.saturating_duration_since(now);
            return Decision {
                allowed: false,
                limit,
                remaining: 0,
                reset,
                retry_after: allow_at - now,
            };
        }
        state.tat.insert(key.to_owned(), new_tat);
        let used = new_tat.saturating_duration_since(now);
        let remaining = (burst.saturating_sub(used).as_nanos() / interval.as_nanos().max(1)) as u32;
        Decision {
            allowed: true,
            limit,
            remaining,
            reset: used,
            retry_after: Duration::ZERO,
        }
    }

    /// Counts one request for `key` now.
    pub fn check(&self, key: &str, rate: Rate) -> Decision {
        self.check_at(key, rate, Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_a_burst_then_refuses_until_a_cell_frees() {
        let limiter = Limiter::new();
        let rate = Rate {
            limit: 3,
            window: Duration::from_secs(60),
        };
        let t0 = Instant::now();
        let remaining: Vec<u32> = (0..3)
            .map(|_| limiter.check_at("k", rate, t0).remaining)
            .collect();
        assert_eq!(remaining, vec![2, 1, 0]);
        let refused = limiter.check_at("k", rate, t0);
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after, Duration::from_secs(20));
        assert!(
            !limiter
                .check_at("k", rate, t0 + Duration::from_secs(19))
                .allowed
        );
        assert!(
            limiter
                .check_at("k", rate, t0 + Duration::from_secs(20))
                .allowed
        );
        // Other keys are independent.
        assert!(limiter.check_at("other", rate, t0).allowed);
    }
}
