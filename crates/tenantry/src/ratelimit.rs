//! Rate limiting with GCRA (the generic cell rate algorithm): in process by default, in
//! Redis when `REDIS_URL` is set so a limit holds across instances.
//!
//! A limit is `limit` requests per `window`, with bursts up to `limit`. Each key keeps one
//! timestamp, the theoretical arrival time (TAT), so memory is one entry per active key;
//! entries whose TAT has passed carry no information and are swept (in Redis they expire).
//!
//! A request is usually checked against several limits at once (its address, its API key,
//! its organization): [`RateLimiter::check`] decides them together and counts the request
//! against none of them when any refuses, so a refused request costs no other budget.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::db::cache::RedisHandle;

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

impl Rate {
    /// Whether this rate limits anything (`limit` 0 means no limit).
    pub fn is_limited(&self) -> bool {
        self.limit > 0
    }

    /// Time between two requests at the sustained rate, and the burst tolerance.
    fn cells(&self) -> (Duration, Duration) {
        let limit = self.limit.max(1);
        let interval = (self.window / limit).max(Duration::from_micros(1));
        (interval, interval * limit)
    }
}

impl Decision {
    /// The decision to report when `self` and `other` both apply: a refusal over an
    /// allowance (the longer wait of two refusals), else the allowance with less left.
    pub fn stricter(self, other: Decision) -> Decision {
        match (self.allowed, other.allowed) {
            (true, false) => other,
            (false, true) => self,
            (false, false) if other.retry_after > self.retry_after => other,
            (true, true) if other.remaining < self.remaining => other,
            _ => self,
        }
    }
}

/// GCRA for one key: the decision and, when allowed, the key's new TAT (as an offset from
/// `now`). `tat` is the stored TAT as an offset from `now` (zero when none or past).
fn gcra(rate: Rate, tat: Duration) -> (Decision, Option<Duration>) {
    let (interval, burst) = rate.cells();
    let new_tat = tat + interval;
    if new_tat > burst {
        let decision = Decision {
            allowed: false,
            limit: rate.limit,
            remaining: 0,
            reset: tat,
            retry_after: new_tat - burst,
        };
        return (decision, None);
    }
    let remaining = u32::try_from(burst.saturating_sub(new_tat).as_nanos() / interval.as_nanos())
        .unwrap_or(u32::MAX);
    let decision = Decision {
        allowed: true,
        limit: rate.limit,
        remaining,
        reset: new_tat,
        retry_after: Duration::ZERO,
    };
    (decision, Some(new_tat))
}

/// The limiter of a process: in memory, or shared through Redis.
#[derive(Clone)]
pub struct RateLimiter {
    local: Arc<Limiter>,
    redis: Option<(Arc<RedisHandle>, String)>,
    script: Arc<redis::Script>,
    started: Instant,
    last_warning: Arc<std::sync::atomic::AtomicU64>,
    /// Milliseconds after `started` before which Redis is not tried again.
    redis_retry_at: Arc<std::sync::atomic::AtomicU64>,
}

/// How long the limiter stays in process after a Redis failure.
const REDIS_BACKOFF: Duration = Duration::from_secs(5);

/// GCRA over several keys in one atomic step, on Redis' own clock (so instances with
/// skewed clocks agree). ARGV holds (interval, burst) in microseconds per key. Returns
/// `allowed` (1/0) and, per key, its TAT offset and whether it alone would refuse. Nothing
/// is written unless every key allows.
const GCRA_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local out = {1}
local new = {}
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tat < now then tat = now end
  local next_tat = tat + interval
  if next_tat - now > burst then out[1] = 0 end
  new[i] = next_tat
  out[#out + 1] = tat - now
end
if out[1] == 1 then
  for i = 1, #KEYS do
    redis.call('SET', KEYS[i], new[i], 'PX', math.ceil((new[i] - now) / 1000) + 1)
  end
end
return out
";

impl RateLimiter {
    /// An in-process limiter, or one shared through `redis` with keys under `prefix`.
    pub fn new(redis: Option<(Arc<RedisHandle>, String)>) -> Self {
        Self {
            local: Arc::new(Limiter::new()),
            redis,
            script: Arc::new(redis::Script::new(GCRA_LUA)),
            started: Instant::now(),
            last_warning: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            redis_retry_at: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        }
    }

    /// Counts one request against every `(key, rate)` with a limit; returns the decision
    /// to report (`None` when no rate applies). On a Redis failure the in-process limiter
    /// decides (for the next 5 s without trying Redis), so an outage degrades limits to per
    /// instance instead of failing or slowing requests.
    pub async fn check(&self, limits: &[(&str, Rate)]) -> Option<Decision> {
        let limits: Vec<(&str, Rate)> = limits
            .iter()
            .copied()
            .filter(|(_, rate)| rate.is_limited())
            .collect();
        if limits.is_empty() {
            return None;
        }
        if let Some((redis, prefix)) = &self.redis {
            // After a failure Redis is left alone for a while: an unreachable Redis must
            // not add its timeouts to every request.
            let now = whole_units(self.started.elapsed().as_millis());
            if now
                >= self
                    .redis_retry_at
                    .load(std::sync::atomic::Ordering::Relaxed)
            {
                match self.check_redis(redis, prefix, &limits).await {
                    Ok(decision) => return Some(decision),
                    Err(err) => {
                        self.redis_retry_at.store(
                            now + whole_units(REDIS_BACKOFF.as_millis()),
                            std::sync::atomic::Ordering::Relaxed,
                        );
                        self.warn_once_a_minute(&err);
                    }
                }
            }
        }
        Some(self.local.check_many_at(&limits, Instant::now()))
    }

    /// An outage fails every check; one warning a minute says so without flooding logs.
    fn warn_once_a_minute(&self, err: &redis::RedisError) {
        let now = self.started.elapsed().as_secs();
        let last = self.last_warning.load(std::sync::atomic::Ordering::Relaxed);
        if last == 0 || now >= last + 60 {
            self.last_warning
                .store(now.max(1), std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(error = %err, "Redis rate limiter unavailable; limiting in process");
        }
    }

    async fn check_redis(
        &self,
        redis: &RedisHandle,
        prefix: &str,
        limits: &[(&str, Rate)],
    ) -> redis::RedisResult<Decision> {
        let mut invocation = self.script.prepare_invoke();
        for (key, rate) in limits {
            let (interval, burst) = rate.cells();
            invocation
                .key(format!("{prefix}rl:{key}"))
                .arg(whole_units(interval.as_micros()))
                .arg(whole_units(burst.as_micros()));
        }
        let mut conn = redis.connection().await?;
        let out: Vec<i64> = invocation.invoke_async(&mut conn).await?;
        let mut combined: Option<Decision> = None;
        for (i, (_, rate)) in limits.iter().enumerate() {
            let tat = out.get(i + 1).copied().ok_or_else(|| {
                redis::RedisError::from((
                    redis::ErrorKind::TypeError,
                    "rate-limit script answered fewer values than limits",
                ))
            })?;
            let (decision, _) = gcra(*rate, Duration::from_micros(tat.max(0).unsigned_abs()));
            combined = Some(combined.map_or(decision, |c| c.stricter(decision)));
        }
        combined.ok_or_else(|| (redis::ErrorKind::TypeError, "empty limiter reply").into())
    }
}

/// A count of milliseconds or microseconds as the `u64` Redis and atomics take, saturating
/// (`u64` microseconds last 584,000 years).
fn whole_units(n: u128) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// In-process GCRA limiter keyed by string.
#[derive(Debug, Default)]
pub(crate) struct Limiter {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    tat: HashMap<String, Instant>,
    checks_since_sweep: u32,
}

impl Limiter {
    /// A limiter with no history.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Counts one request for `key` against `rate`, at `now`.
    #[cfg(test)]
    fn check_at(&self, key: &str, rate: Rate, now: Instant) -> Decision {
        self.check_many_at(&[(key, rate)], now)
    }

    /// Counts one request against every `(key, rate)` at `now`, or against none of them
    /// when any refuses; returns the decision to report.
    pub(crate) fn check_many_at(&self, limits: &[(&str, Rate)], now: Instant) -> Decision {
        // A poisoned lock only means another thread panicked mid-check; the map is intact.
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.checks_since_sweep += 1;
        if state.checks_since_sweep >= 10_000 {
            state.checks_since_sweep = 0;
            state.tat.retain(|_, tat| *tat > now);
        }
        let mut combined: Option<Decision> = None;
        let mut updates = Vec::with_capacity(limits.len());
        for (key, rate) in limits {
            let tat = state
                .tat
                .get(*key)
                .map_or(Duration::ZERO, |t| t.saturating_duration_since(now));
            let (decision, new_tat) = gcra(*rate, tat);
            updates.push((*key, new_tat));
            combined = Some(combined.map_or(decision, |c| c.stricter(decision)));
        }
        let combined = combined.unwrap_or(Decision {
            allowed: true,
            limit: 0,
            remaining: 0,
            reset: Duration::ZERO,
            retry_after: Duration::ZERO,
        });
        if combined.allowed {
            for (key, new_tat) in updates {
                if let Some(offset) = new_tat {
                    state.tat.insert(key.to_owned(), now + offset);
                }
            }
        }
        combined
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
