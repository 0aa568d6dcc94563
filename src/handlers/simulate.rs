//! `simulate`: a configurable stand-in for real work, for demos, tests and benchmarks.
//!
//! `handler_config` keys: `sleep_ms`, `fail_times` (fail the first N attempts), `error`
//! (`retryable` | `permanent`), `error_code`, `retry_after_seconds`, `output` (an object merged
//! into the results). The results also record the attempt and the idempotency key.

use super::{StepHandler, StepInput};
use crate::model::StepError;
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::Duration;

pub struct Simulate;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    sleep_ms: u64,
    #[serde(default)]
    fail_times: u32,
    #[serde(default)]
    error: ErrorKind,
    #[serde(default)]
    error_code: Option<String>,
    #[serde(default)]
    retry_after_seconds: Option<f64>,
    #[serde(default)]
    output: Option<Value>,
}

#[derive(Debug, Deserialize, Default, PartialEq)]
#[serde(rename_all = "snake_case")]
enum ErrorKind {
    #[default]
    Retryable,
    Permanent,
}

#[async_trait]
impl StepHandler for Simulate {
    async fn call(&self, input: StepInput) -> Result<Value, StepError> {
        // Phase 1: validate inputs. A bad config cannot get better by retrying.
        let config: Config = if input.handler_config.is_null() {
            Config::default()
        } else {
            serde_json::from_value(input.handler_config.clone())
                .map_err(|e| StepError::permanent("INVALID_HANDLER_CONFIG", format!("simulate: {e}")))?
        };
        // Phase 2: "call the service".
        if config.sleep_ms > 0 {
            tokio::time::sleep(Duration::from_millis(config.sleep_ms)).await;
        }
        // Phase 3: classify.
        if input.attempt <= config.fail_times {
            let message = format!(
                "simulated failure on attempt {} (configured to fail the first {})",
                input.attempt, config.fail_times
            );
            return Err(match config.error {
                ErrorKind::Permanent => StepError::Permanent {
                    code: config.error_code.unwrap_or_else(|| "SIMULATED_FAILURE".into()),
                    message,
                },
                ErrorKind::Retryable => StepError::Retryable {
                    message,
                    code: config.error_code,
                    retry_after: config.retry_after_seconds.and_then(crate::model::seconds),
                },
            });
        }
        // Phase 4: shape the result.
        let mut results = json!({
            "step": input.step,
            "attempt": input.attempt,
            "idempotency_key": input.idempotency_key,
        });
        if let (Some(Value::Object(extra)), Value::Object(out)) = (config.output, &mut results) {
            out.extend(extra);
        }
        Ok(results)
    }
}
