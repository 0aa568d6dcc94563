//! The records the engine keeps and the store persists: task snapshots and transitions.

use super::{StepState, TaskState, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;

/// Retry policy of one step. `limit` is the maximum number of attempts, the first included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorInfo {
    /// `retryable`, `permanent` or `timeout`.
    pub kind: String,
    pub code: Option<String>,
    pub message: String,
}

/// A step's request for a human decision (an approval gate).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApprovalRequest {
    pub summary: String,
    /// In the workflow's unit (cents for refunds).
    pub amount: Option<i64>,
    pub ticket: Option<String>,
    pub customer: Option<String>,
    pub policy_notes: Option<String>,
    /// `amount`, sealed at rest for the task's data subject (`crate::privacy`); a reader
    /// without `pii:read` finds `[REDACTED]` here and no `amount`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_amount: Option<String>,
    /// Who asked (the task's initiator); they may not approve it themselves.
    pub requester: String,
    /// The role a decider needs in the task's namespace.
    pub required_role: String,
    /// No decision within this time expires the request (a permanent error).
    pub timeout_seconds: u64,
}

/// A step's wait for a task it created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChildWait {
    pub task_id: String,
    /// What the handler reported when it delegated; the step's results add the child's
    /// outcome to it.
    pub results: Value,
}

/// How a person answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Decision {
    pub approved: bool,
    pub by: String,
    pub at: Timestamp,
    /// The approval note, or the denial's reason.
    pub note: Option<String>,
    pub approval_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Approval {
    pub request: ApprovalRequest,
    pub requested_at: Timestamp,
    pub expires_at: Timestamp,
    pub decision: Option<Decision>,
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
    /// Not a failure: the step pauses until a person approves or denies the request.
    #[error("awaiting approval: {}", .0.summary)]
    AwaitApproval(Box<ApprovalRequest>),
    /// Not a failure: the step created task `task_id` to do its work and waits for it. On the
    /// child's completion the step completes with `results` plus the child's outcome; on its
    /// failure the step fails with the child's error.
    #[error("waiting on child task {task_id}")]
    AwaitChild { task_id: String, results: Value },
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
            StepError::AwaitApproval(request) => ErrorInfo {
                kind: "approval".into(),
                code: None,
                message: request.summary.clone(),
            },
            StepError::AwaitChild { task_id, .. } => ErrorInfo {
                kind: "child".into(),
                code: None,
                message: format!("waiting on child task {task_id}"),
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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
    /// The approval gate's request and decision, for steps that asked a person.
    #[serde(default)]
    pub approval: Option<Approval>,
    /// The task this step created and waits for (delegation), with the results its handler
    /// gave when it delegated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child: Option<ChildWait>,
    /// Attempts in a row cut short by a crash or kill of the engine. They do not count
    /// against `retry.limit`; past `MAX_INTERRUPTIONS` (100) the step fails (a step that kills the
    /// engine every time must not loop for ever). Reset when an attempt ends.
    #[serde(default)]
    pub interruptions: u32,
}

/// What changes in a step as it runs (everything of `Step` but its definition): what a
/// transition carries and what the store keeps per step, so a change writes bytes in
/// proportion to the step, never to the task. Absent fields are `null`/0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StepStatus {
    pub state: StepState,
    #[serde(default)]
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub budget_start: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<ErrorInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child: Option<ChildWait>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub interruptions: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Step {
    /// The step's changing part.
    pub fn status(&self) -> StepStatus {
        StepStatus {
            state: self.state,
            attempts: self.attempts,
            budget_start: self.budget_start,
            results: self.results.clone(),
            last_error: self.last_error.clone(),
            next_attempt_at: self.next_attempt_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            approval: self.approval.clone(),
            child: self.child.clone(),
            interruptions: self.interruptions,
        }
    }

    /// Replaces the step's changing part.
    pub fn set_status(&mut self, s: StepStatus) {
        self.state = s.state;
        self.attempts = s.attempts;
        self.budget_start = s.budget_start;
        self.results = s.results;
        self.last_error = s.last_error;
        self.next_attempt_at = s.next_attempt_at;
        self.started_at = s.started_at;
        self.finished_at = s.finished_at;
        self.approval = s.approval;
        self.child = s.child;
        self.interruptions = s.interruptions;
    }
}

/// Attempts in a row a step may lose to engine crashes before it fails with
/// `INTERRUPTED_REPEATEDLY`.
pub const MAX_INTERRUPTIONS: u32 = 100;

impl Step {
    /// A pending step that has never run, with Tasker's default retry policy.
    pub fn new(name: &str, handler: &str, depends_on: Vec<String>) -> Step {
        Step {
            name: name.to_string(),
            handler: handler.to_string(),
            depends_on,
            retry: RetryPolicy::default(),
            timeout_ms: None,
            handler_config: Value::Object(Default::default()),
            state: StepState::Pending,
            attempts: 0,
            budget_start: 0,
            results: None,
            last_error: None,
            next_attempt_at: None,
            idempotency_key: String::new(),
            started_at: None,
            finished_at: None,
            approval: None,
            child: None,
            interruptions: 0,
        }
    }

    /// Whether a person denied this step's approval request (an expired request was never
    /// decided, so it is not a denial).
    pub fn was_denied(&self) -> bool {
        self.approval
            .as_ref()
            .and_then(|a| a.decision.as_ref())
            .is_some_and(|d| !d.approved)
    }

    /// Attempts counted against `retry.limit`.
    pub fn attempts_used(&self) -> u32 {
        self.attempts.saturating_sub(self.budget_start)
    }
}

/// A task: one run of a workflow template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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
    /// The task that created this one (cross-namespace delegation).
    #[serde(default)]
    pub parent: Option<String>,
    /// Traces one request across teams (`cs-…` when customer success delegates).
    #[serde(default)]
    pub correlation_id: Option<String>,
    /// The idempotency key of the step that created this task: a re-run of that step finds
    /// this task instead of creating another.
    #[serde(default)]
    pub origin_key: Option<String>,
    /// The W3C trace context (`traceparent`) the task was created under: a delegated child's
    /// points at the parent's step attempt, so its spans join the parent's trace
    /// (`telemetry::traces`). `None` for a root task (its trace id is its own id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// The highest classification of the fields its context holds, from its workflow's
    /// schema (`workflow::classification`; post 06), fixed at submit.
    #[serde(default)]
    pub classification: crate::workflow::classification::Classification,
    /// The sequence number of the last transition this snapshot includes. A store replays
    /// later transitions of the log over it, so a snapshot that a crash left behind the log
    /// never hides what the log says happened.
    #[serde(default)]
    pub seq: u64,
    /// Keyed hashes of the values of its indexed context fields (`engine::search`), fixed at
    /// submit and kept with its header, so a ticket or customer id finds the task without
    /// the value being stored in clear. `p:` marks a personal field's. Internal: never sent.
    #[serde(skip)]
    #[schema(ignore)]
    pub search_terms: Vec<String>,
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

    /// Brings the task up to date with one transition of its log (a no-op for a transition
    /// the snapshot already includes). A step transition carries the step as it stood
    /// afterwards; one written by an older version carries only the new state.
    pub fn apply(&mut self, t: &Transition) {
        if t.task_id != self.id || t.seq <= self.seq {
            return;
        }
        self.seq = t.seq;
        self.updated_at = self.updated_at.max(t.at);
        match &t.subject {
            Subject::Task => {
                if let Ok(state) = t.to.parse() {
                    self.state = state;
                }
            }
            Subject::Step(name) => {
                let Some(index) = self.step_index(name) else {
                    return;
                };
                match &t.step {
                    Some(after) => self.steps[index].set_status((**after).clone()),
                    None => {
                        if let Ok(state) = t.to.parse() {
                            self.steps[index].state = state;
                        }
                    }
                }
            }
        }
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", content = "step", rename_all = "snake_case")]
pub enum Subject {
    Task,
    Step(String),
}

/// One entry of the append-only transition log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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
    /// For a step transition: the step's status after it (results, error, deadlines,
    /// approval), so that replaying the log restores everything a step record would.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<Box<StepStatus>>,
}
