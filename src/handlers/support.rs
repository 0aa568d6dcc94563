//! What the blog handlers share: reading inputs (phase 1 of the four phases), the per-task
//! fault scenario, and the service call context.

use super::StepInput;
use crate::model::StepError;
use crate::services::{Call, Scenario};
use serde_json::Value;

/// The task's fault scenario, if any. A malformed one is the caller's mistake: permanent.
pub fn scenario(input: &StepInput) -> Result<Option<Scenario>, StepError> {
    Scenario::from_context(&input.context).map_err(|e| StepError::permanent("INVALID_SCENARIO", e))
}

pub fn call<'a>(input: &'a StepInput, scenario: &'a Option<Scenario>) -> Call<'a> {
    Call {
        task_id: &input.task_id,
        key: &input.idempotency_key,
        scenario: scenario.as_ref(),
    }
}

/// A value at a JSON path (`a.b.c`) that must be present and non-null.
pub fn require<'a>(root: &'a Value, path: &str, code: &str) -> Result<&'a Value, StepError> {
    let mut at = root;
    for part in path.split('.') {
        at = at.get(part).unwrap_or(&Value::Null);
    }
    if at.is_null() {
        Err(StepError::permanent(code, format!("`{path}` is required")))
    } else {
        Ok(at)
    }
}

/// A non-empty string at `path`.
pub fn require_str<'a>(root: &'a Value, path: &str, code: &str) -> Result<&'a str, StepError> {
    match require(root, path, code)?.as_str() {
        Some(s) if !s.trim().is_empty() => Ok(s),
        _ => Err(StepError::permanent(
            code,
            format!("`{path}` must be a non-empty string"),
        )),
    }
}

/// The results of an earlier step, which this step cannot work without.
pub fn upstream<'a>(input: &'a StepInput, step: &str, code: &str) -> Result<&'a Value, StepError> {
    input
        .result_of(step)
        .ok_or_else(|| StepError::permanent(code, format!("results of `{step}` are missing")))
}

/// A refund amount in cents at `context.refund_amount`: a positive whole number, written as an
/// integer or as a float without a fraction (`12000.0` is 12000, as JSON Schema's `integer`
/// says), within i64. Money never defaults to 0: a gate deciding on 0 cents would let any
/// amount through without a person.
pub fn amount_cents(context: &Value) -> Result<i64, StepError> {
    let value = require(context, "refund_amount", "MISSING_REQUIRED_FIELDS")?;
    let whole = value.as_i64().or_else(|| {
        value
            .as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 1.0 && *f <= 9.0e15)
            // Checked just above: a whole number well inside i64.
            .map(|f| f as i64)
    });
    whole.filter(|a| *a > 0).ok_or_else(|| {
        StepError::permanent(
            "INVALID_REFUND_AMOUNT",
            format!("refund_amount must be a positive whole number of cents, got {value}"),
        )
    })
}

/// Money in cents, so that totals add up exactly.
pub fn cents(amount: f64) -> i64 {
    (amount * 100.0).round() as i64
}

pub fn dollars(cents: i64) -> f64 {
    cents as f64 / 100.0
}

tokio::task_local! {
    /// The clock of the engine running the current step.
    static CLOCK: crate::engine::Clock;
}

/// Runs `f` (a step attempt) with `clock` as the time every handler and service reads.
pub async fn with_clock<F: std::future::Future>(clock: crate::engine::Clock, f: F) -> F::Output {
    CLOCK.scope(clock, f).await
}

/// Now, on the engine's clock when a step runs (so a run on a virtual clock stamps virtual
/// times: `taskdeck screencast`), else the system's.
pub fn now_utc() -> chrono::DateTime<chrono::Utc> {
    CLOCK
        .try_with(|c| c.now())
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .unwrap_or_else(chrono::Utc::now)
}

/// `now_utc()` as RFC 3339 with milliseconds.
pub fn now() -> String {
    now_utc().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A retryable error carrying the service's retry-after (or `default_after` seconds).
pub fn retry_later(
    code: &str,
    message: String,
    retry_after: Option<std::time::Duration>,
    default_after: Option<u64>,
) -> StepError {
    StepError::Retryable {
        message,
        code: Some(code.to_string()),
        retry_after: retry_after.or(default_after.map(std::time::Duration::from_secs)),
    }
}
