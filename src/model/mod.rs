//! The vocabulary shared by every layer: tasks, steps, their states, transitions and the
//! pure transition functions. Nothing here does IO, reads a clock or draws a random number.

// Input never panics the engine: no `unwrap` here outside tests (issue 8).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::panic))]

pub mod event;
mod readiness;
mod records;
mod state;

pub use event::Event;
pub use readiness::ExecutionStatus;
pub use records::*;
pub use state::*;

/// Milliseconds since the Unix epoch. Stored deadlines and transition times use it, so that a
/// restart derives countdowns from absolute times (design.md, "time is injected").
pub type Timestamp = i64;

/// The time `delay` after `now`, saturating at the end of representable time instead of
/// wrapping (a deadline from a huge configured or service-given delay is "never", not "now").
pub fn deadline_after(now: Timestamp, delay: std::time::Duration) -> Timestamp {
    now.saturating_add(Timestamp::try_from(delay.as_millis()).unwrap_or(Timestamp::MAX))
}

/// `text` cut to at most `max` bytes (on a character boundary) with `…` when cut: for echoing
/// input in messages without echoing megabytes.
pub fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Milliseconds from `now` until `at` (0 once it has passed), without overflow.
pub fn millis_until(now: Timestamp, at: Timestamp) -> u64 {
    u64::try_from(at.saturating_sub(now)).unwrap_or(0)
}

/// How long ago `then` was at `now`, for tables: `12s`, `4m`, `3h`, `2d` (`0s` for a time
/// in the future). Never overflows, whatever the stored times.
pub fn age(now: Timestamp, then: Timestamp) -> String {
    let s = millis_until(then, now) / 1000;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86399 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// A countdown in whole seconds as people read it: `59s`, `4m 50s`, `2h 05m`, `3d 4h`
/// (seconds rounded up, so a deadline never reads 0 before it passes).
pub fn countdown(ms: u64) -> String {
    let s = ms.div_ceil(1000);
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {:02}s", s / 60, s % 60),
        3600..=86399 => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86400, (s % 86400) / 3600),
    }
}

/// An amount in cents as dollars for people: `$120.00`, `-$5.25`. Exact for every i64.
pub fn money(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    format!("{sign}${}.{:02}", abs / 100, abs % 100)
}

/// Seconds given as a number (a configuration value, a service's retry-after) as a
/// `Duration`: `None` when negative or not a number, `Duration::MAX` when too large to
/// represent (callers cap it: a backoff at its maximum, a deadline at "never").
pub fn seconds(s: f64) -> Option<std::time::Duration> {
    if s.is_nan() || s < 0.0 {
        return None;
    }
    Some(std::time::Duration::try_from_secs_f64(s).unwrap_or(std::time::Duration::MAX))
}

/// The deepest JSON accepted from people (a task context, results given by hand): 64 levels.
/// The store reads records back with serde_json's 128-level limit, so input must leave room
/// for the records that wrap it.
pub const MAX_JSON_DEPTH: usize = 64;

/// How deeply `value` nests (a scalar is 0, `[1]` is 1), without recursion.
pub fn json_depth(value: &serde_json::Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 0usize)];
    while let Some((v, depth)) = stack.pop() {
        deepest = deepest.max(depth);
        match v {
            serde_json::Value::Array(items) => stack.extend(items.iter().map(|i| (i, depth + 1))),
            serde_json::Value::Object(map) => stack.extend(map.values().map(|i| (i, depth + 1))),
            _ => {}
        }
    }
    deepest
}

/// Formats a timestamp as RFC 3339 with milliseconds, for people and JSON.
pub fn format_timestamp(ms: Timestamp) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}

/// The short id shown in tables: the id's last 8 characters (its start is a timestamp that
/// tasks created close together share). Commands accept it.
pub fn short_id(id: &str) -> &str {
    &id[id.len().saturating_sub(8)..]
}

#[cfg(test)]
mod countdown_tests {
    #[test]
    fn countdowns_read_as_people_say_them() {
        let c = super::countdown;
        assert_eq!(c(0), "0s");
        assert_eq!(c(1), "1s");
        assert_eq!(c(59_000), "59s");
        assert_eq!(c(290_000), "4m 50s");
        assert_eq!(c(3_600_000 + 5 * 60_000), "1h 05m");
        assert_eq!(c(30 * 86_400_000), "30d 0h");
        assert!(!c(u64::MAX).is_empty());
    }
}
