//! Rate limiting by token bucket: each key (a client IP, a token subject) has `burst`
//! tokens, refilled at `per_second`; a request takes one or is refused with the time until
//! the next. In-process by default; shared through Redis when several gateway instances
//! must enforce one limit, with the bucket updated atomically by a script that reads
//! Redis's own clock, so the instances' clocks do not matter.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many requests a key may make.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: f64,
}

/// Allowed, or refused with how long until a token is back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    Allowed,
    Limited { retry_after: Duration },
}

#[derive(Debug)]
pub enum Limiter {
    Local(LocalBuckets),
    Redis(RedisBuckets),
}

impl Limiter {
    pub async fn check(&self, key: &str, rate: Rate) -> Decision {
        match self {
            Limiter::Local(l) => l.check(key, rate, Instant::now()),
            Limiter::Redis(r) => r.check(key, rate).await,
        }
    }
}

/// Buckets in this process's memory. Full buckets are forgotten now and then, so a flood
/// of distinct keys cannot grow the map without bound.
#[derive(Debug, Default)]
pub struct LocalBuckets {
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

const FORGET_ABOVE: usize = 100_000;

impl LocalBuckets {
    pub fn check(&self, key: &str, rate: Rate, now: Instant) -> Decision {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() > FORGET_ABOVE {
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate.per_second < rate.burst
            });
        }
        let (tokens, at) = buckets.entry(key.to_owned()).or_insert((rate.burst, now));
        let refilled =
            (*tokens + now.duration_since(*at).as_secs_f64() * rate.per_second).min(rate.burst);
        *at = now;
        if refilled >= 1.0 {
            *tokens = refilled - 1.0;
            Decision::Allowed
        } else {
            *tokens = refilled;
            Decision::Limited {
                retry_after: Duration::from_secs_f64((1.0 - refilled) / rate.per_second),
            }
        }
    }
}

/// `KEYS[1]`: the bucket; `ARGV`: tokens per second, burst. Returns `{allowed, wait_ms}`.
const SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(b[1]) or burst
local at = tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate / 1000)
local allowed, wait = 0, 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait = math.ceil((1 - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return {allowed, wait}
";

/// Buckets in Redis, shared by every instance that names the same server and prefix.
pub struct RedisBuckets {
    connection: redis::aio::ConnectionManager,
    script: redis::Script,
    prefix: String,
}

impl std::fmt::Debug for RedisBuckets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBuckets")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisBuckets {
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let connection = redis::aio::ConnectionManager::new(client).await?;
        Ok(Self {
            connection,
            script: redis::Script::new(SCRIPT),
            prefix: prefix.to_owned(),
        })
    }

    /// When Redis cannot answer, the request is let through (and counted): a rate limiter
    /// must not turn a Redis outage into an outage of the hub.
    async fn check(&self, key: &str, rate: Rate) -> Decision {
        let mut connection = self.connection.clone();
        let answer: Result<(i64, i64), _> = self
            .script
            .key(format!("{}ratelimit:{key}", self.prefix))
            .arg(rate.per_second)
            .arg(rate.burst)
            .invoke_async(&mut connection)
            .await;
        match answer {
            Ok((1, _)) => Decision::Allowed,
            Ok((_, wait_ms)) => Decision::Limited {
                retry_after: Duration::from_millis(wait_ms.max(1) as u64),
            },
            Err(e) => {
                metrics::counter!("meditrack_rate_limit_errors_total").increment(1);
                tracing::warn!(error = %e, "rate limiter unavailable; request allowed");
                Decision::Allowed
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_refills_at_its_rate() {
        let buckets = LocalBuckets::default();
        let rate = Rate {
            per_second: 2.0,
            burst: 3.0,
        };
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(buckets.check("ip:1", rate, t0), Decision::Allowed);
        }
        let Decision::Limited { retry_after } = buckets.check("ip:1", rate, t0) else {
            panic!("the fourth request in the same instant is limited");
        };
        assert!(
            (retry_after.as_secs_f64() - 0.5).abs() < 0.01,
            "{retry_after:?}"
        );
        assert_eq!(
            buckets.check("ip:2", rate, t0),
            Decision::Allowed,
            "keys are apart"
        );
        let later = t0 + Duration::from_millis(500);
        assert_eq!(buckets.check("ip:1", rate, later), Decision::Allowed);
        assert!(matches!(
            buckets.check("ip:1", rate, later),
            Decision::Limited { .. }
        ));
    }
}
