//! The records the engine keeps and the store persists: task snapshots and transitions.

use super::{StepState, TaskState, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;

/// Retry policy of one step. `limit` is the maximum number of attempts, the first included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    pub retryable: bool,
    pub limit: u32,
    pub backoff_base_ms: u64,
    pub max_backoff_ms: u64,
}

impl Default for RetryPolicy {
    /// Tasker's defaults: retryable, 3 attempts, 1 s doubling to at most 300 s.
    fn default() -> Self {
        RetryPolicy {
            retryable: true,
            limit: 3,
            backoff_base_ms: 1_000,
            max_backoff_ms: 300_000,
        }
    }
}

/// Why a step failed, as shown to operators and stored with the transition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    /// `retryable`, `permanent` or `timeout`.
    pub kind: String,
    pub code: Option<String>,
    pub message: String,
}

/// What a handler returns when it does not succeed (design.md, principle 5).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StepError {
    /// Never retried automatically.
    #[error("{message} ({code})")]
    Permanent { code: String, message: String },
    /// Retried with backoff while attempts remain; `retry_after` is the service's own wish.
    #[error("{message}")]
    Retryable {
        message: String,
        code: Option<String>,
        retry_after: Option<Duration>,
    },
}

impl StepError {
    pub fn permanent(code: impl Into<String>, message: impl Into<String>) -> Self {
        StepError::Permanent {
            code: code.into(),
            message: message.into(),
        }
    }

    pub fn retryable(message: impl Into<String>) -> Self {
        StepError::Retryable {
            message: message.into(),
            code: None,
            retry_after: None,
        }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self, StepError::Retryable { .. })
    }

    pub fn info(&self) -> ErrorInfo {
        match self {
            StepError::Permanent { code, message } => ErrorInfo {
                kind: "permanent".into(),
                code: Some(code.clone()),
                message: message.clone(),
            },
            StepError::Retryable { message, code, .. } => ErrorInfo {
                kind: if code.as_deref() == Some("TIMEOUT") {
                    "timeout".into()
                } else {
                    "retryable".into()
                },
                code: code.clone(),
                message: message.clone(),
            },
        }
    }
}

/// One step of a task, with the template fields copied in at submit time so that a running
/// task keeps its version's definition whatever happens to the YAML later.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub name: String,
    pub handler: String,
    pub depends_on: Vec<String>,
    pub retry: RetryPolicy,
    pub timeout_ms: Option<u64>,
    pub handler_config: Value,
    pub state: StepState,
    /// Attempts started so far, over the step's whole life (the attempt number).
    pub attempts: u32,
    /// `attempts` when an operator last gave the step a fresh budget; the retry limit counts
    /// attempts since then.
    #[serde(default)]
    pub budget_start: u32,
    pub results: Option<Value>,
    pub last_error: Option<ErrorInfo>,
    pub next_attempt_at: Option<Timestamp>,
    /// Stable across attempts and restarts: `<task id>/<step name>`.
    pub idempotency_key: String,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
}

impl Step {
    /// Attempts counted against `retry.limit`.
    pub fn attempts_used(&self) -> u32 {
        self.attempts.saturating_sub(self.budget_start)
    }
}

/// A task: one run of a workflow template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub id: String,
    pub namespace: String,
    pub name: String,
    pub version: String,
    pub state: TaskState,
    pub context: Value,
    pub initiator: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub steps: Vec<Step>,
}

impl Task {
    pub fn workflow_ref(&self) -> String {
        format!("{}/{}@{}", self.namespace, self.name, self.version)
    }

    pub fn step(&self, name: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.name == name)
    }

    pub fn step_index(&self, name: &str) -> Option<usize> {
        self.steps.iter().position(|s| s.name == name)
    }

    /// Number of steps that are complete or resolved.
    pub fn done_steps(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| s.state.satisfies_dependency())
            .count()
    }
}

/// What a transition happened to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "step", rename_all = "snake_case")]
pub enum Subject {
    Task,
    Step(String),
}

/// One entry of the append-only transition log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    /// Engine-wide sequence number, increasing in the order transitions were made.
    pub seq: u64,
    pub task_id: String,
    pub at: Timestamp,
    pub actor: String,
    pub subject: Subject,
    /// `None` for the creation of a task.
    pub from: Option<String>,
    pub to: String,
    pub attempt: u32,
    pub reason: Option<String>,
    pub error: Option<ErrorInfo>,
}
