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
}

impl Limits {
    /// `per_second` requests per identity per second; 0 turns limits off.
    pub fn new(per_second: u32) -> Self {
        let limiter = NonZeroU32::new(per_second).map(|rate| {
            let burst = NonZeroU32::new(per_second.saturating_mul(2)).unwrap_or(rate);
            DefaultKeyedRateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        Limits { limiter }
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
