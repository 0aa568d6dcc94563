//! Request rate limits per identity (a token's subject and team): a steady rate with a burst
//! of twice that; over it, 429 with `Retry-After`.

use super::error::ApiError;
use crate::auth::Identity;
use crate::engine::ErrorKind;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use std::num::NonZeroU32;

pub struct Limits {
    limiter: Option<DefaultKeyedRateLimiter<String>>,
    /// Failed authentications per client address: guessing tokens is throttled too.
    failures: Option<DefaultKeyedRateLimiter<std::net::IpAddr>>,
}

/// Failed authentications allowed per client address per second (bursts of twice that), when
/// limits are on.
pub const FAILURES_PER_SECOND: u32 = 20;

impl Limits {
    /// `per_second` requests per identity per second; 0 turns limits off.
    pub fn new(per_second: u32) -> Self {
        let limiter = NonZeroU32::new(per_second).map(|rate| {
            let burst = NonZeroU32::new(per_second.saturating_mul(2)).unwrap_or(rate);
            DefaultKeyedRateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        let failures = (per_second > 0).then(|| {
            let rate = NonZeroU32::new(FAILURES_PER_SECOND).unwrap_or(NonZeroU32::MIN);
            let burst = NonZeroU32::new(FAILURES_PER_SECOND * 2).unwrap_or(rate);
            DefaultKeyedRateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        Limits { limiter, failures }
    }

    /// Counts a failed authentication from `from`: the failure itself (401) while under the
    /// limit, 429 over it.
    pub fn failed(&self, from: Option<std::net::IpAddr>, failure: ApiError) -> ApiError {
        let (Some(limiter), Some(ip)) = (&self.failures, from) else {
            return failure;
        };
        if limiter.len() > 10_000 {
            limiter.retain_recent();
        }
        match limiter.check_key(&ip) {
            Ok(()) => failure,
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                let mut e = ApiError::new(
                    ErrorKind::RateLimited,
                    format!(
                        "too many failed authentications from {ip}; retry in {} ms",
                        wait.as_millis()
                    ),
                );
                e.retry_after_seconds = Some(wait.as_secs().max(1));
                e
            }
        }
    }

    /// Counts one request of `who`; refuses it when over the limit.
    pub fn admit(&self, who: &Identity) -> Result<(), ApiError> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        // Identities come from signed tokens, so the map stays small; still, forget idle
        // ones now and then.
        if limiter.len() > 10_000 {
            limiter.retain_recent();
        }
        limiter
            .check_key(&format!("{}/{}", who.team, who.sub))
            .map_err(|not_until| {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                let mut e = ApiError::new(
                    ErrorKind::RateLimited,
                    format!(
                        "{} is over the rate limit of this server; retry in {} ms",
                        who.describe(),
                        wait.as_millis()
                    ),
                );
                e.retry_after_seconds = Some(wait.as_secs().max(1));
                e
            })
    }
}

/// The most event streams one identity may hold open at once; more is 429. Each stream holds
/// a subscription to the engine's broadcast, so an unbounded number would be unbounded work.
pub const MAX_STREAMS_PER_IDENTITY: usize = 32;

/// Open event streams per identity.
#[derive(Default)]
pub struct Streams {
    open: std::sync::Mutex<std::collections::HashMap<String, usize>>,
}

/// Counts one open stream until dropped.
pub struct StreamGuard {
    streams: std::sync::Arc<Streams>,
    key: String,
}

impl Streams {
    pub fn open(self: &std::sync::Arc<Self>, who: &Identity) -> Result<StreamGuard, ApiError> {
        let key = format!("{}/{}", who.team, who.sub);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(key.clone()).or_default();
        if *count >= MAX_STREAMS_PER_IDENTITY {
            let mut e = ApiError::new(
                ErrorKind::RateLimited,
                format!(
                    "{} already has {MAX_STREAMS_PER_IDENTITY} event streams open; close one first",
                    who.describe()
                ),
            );
            e.retry_after_seconds = Some(1);
            return Err(e);
        }
        *count += 1;
        Ok(StreamGuard {
            streams: self.clone(),
            key,
        })
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let mut open = self.streams.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}
