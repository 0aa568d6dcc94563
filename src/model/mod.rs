//! The vocabulary shared by every layer: tasks, steps, their states, transitions and the
//! pure transition functions. Nothing here does IO, reads a clock or draws a random number.

mod readiness;
mod records;
mod state;

pub use readiness::ExecutionStatus;
pub use records::*;
pub use state::*;

/// Milliseconds since the Unix epoch. Stored deadlines and transition times use it, so that a
/// restart derives countdowns from absolute times (design.md, "time is injected").
pub type Timestamp = i64;

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
