//! Retry delays: `min(max, base * 2^(attempt-1))` with ±10% jitter (Tasker's schedule:
//! 1 s, 2 s, 4 s, … capped at 300 s), unless the service asked for a delay (`retry_after`),
//! which wins, capped at the maximum.

use crate::model::RetryPolicy;
use std::time::Duration;

pub const JITTER: f64 = 0.1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackoffKind {
    Exponential,
    ServerRequested,
}

impl BackoffKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackoffKind::Exponential => "exponential",
            BackoffKind::ServerRequested => "server_requested",
        }
    }
}

/// Delay before the attempt after `failed_attempt` (1-based). `jitter` is a number in
/// [-1, 1] supplied by the caller, so this function stays pure.
pub fn delay(
    policy: &RetryPolicy,
    failed_attempt: u32,
    retry_after: Option<Duration>,
    jitter: f64,
) -> (Duration, BackoffKind) {
    let max = policy.max_backoff_ms;
    if let Some(wish) = retry_after {
        let ms = u64::try_from(wish.as_millis()).unwrap_or(u64::MAX).min(max);
        return (Duration::from_millis(ms), BackoffKind::ServerRequested);
    }
    let exponent = failed_attempt.saturating_sub(1).min(62);
    let base = policy.backoff_base_ms.saturating_mul(1u64 << exponent).min(max);
    let jittered = base as f64 * (1.0 + JITTER * jitter.clamp(-1.0, 1.0));
    // A float-to-integer `as` saturates (and maps NaN to 0): no wrap.
    let ms = (jittered.round() as u64).min(max);
    (Duration::from_millis(ms), BackoffKind::Exponential)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy::default()
    }

    #[test]
    fn doubles_from_one_second_and_caps_at_300() {
        let ms: Vec<u64> = (1..=10)
            .map(|a| delay(&policy(), a, None, 0.0).0.as_millis() as u64)
            .collect();
        assert_eq!(
            ms,
            [1000, 2000, 4000, 8000, 16000, 32000, 64000, 128000, 256000, 300000]
        );
        assert_eq!(delay(&policy(), 40, None, 0.0).0, Duration::from_secs(300));
    }

    #[test]
    fn jitter_stays_within_ten_percent_and_under_the_cap() {
        assert_eq!(delay(&policy(), 2, None, 1.0).0, Duration::from_millis(2200));
        assert_eq!(delay(&policy(), 2, None, -1.0).0, Duration::from_millis(1800));
        assert_eq!(delay(&policy(), 12, None, 1.0).0, Duration::from_secs(300));
    }

    #[test]
    fn retry_after_wins_but_is_capped() {
        let (d, kind) = delay(&policy(), 1, Some(Duration::from_secs(7)), 1.0);
        assert_eq!((d, kind), (Duration::from_secs(7), BackoffKind::ServerRequested));
        let (d, _) = delay(&policy(), 1, Some(Duration::from_secs(3600)), 0.0);
        assert_eq!(d, Duration::from_secs(300));
    }
}
