//! What callers (CLI, console, API) ask of the orchestrator, and what can go wrong.

use crate::auth::Identity;
use crate::model::{IllegalTransition, Task};
use crate::store::StoreError;
use crate::workflow::CatalogError;
use serde_json::Value;
use std::time::Duration;
use tokio::sync::oneshot;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("task {task} has no step `{step}`; its steps are: {steps}")]
    NoSuchStep {
        task: String,
        step: String,
        steps: String,
    },
    /// The request conflicts with the state of what it names (a finished task, a step not
    /// waiting for approval, an expired request).
    #[error("{0}")]
    Conflict(String),
    /// A request's `field` is not what the engine accepts.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error(transparent)]
    Illegal(#[from] IllegalTransition),
    #[error("{0}")]
    Denied(String),
    /// The identity's token has expired (during a long-lived request such as an event stream).
    #[error("{0}")]
    Unauthenticated(String),
    #[error("the engine has stopped")]
    Stopped,
    /// Retention could not write its archive (`dir`), so it removed nothing.
    #[error("cannot write the archive in {dir}: {cause}; nothing was removed")]
    Archive { dir: String, cause: String },
    /// Personal data could not be sealed or opened (a missing or wrong master key).
    #[error(transparent)]
    Privacy(crate::privacy::PrivacyError),
}

impl From<crate::privacy::PrivacyError> for EngineError {
    fn from(e: crate::privacy::PrivacyError) -> Self {
        match e {
            crate::privacy::PrivacyError::Store(s) => EngineError::Store(s),
            other => EngineError::Privacy(other),
        }
    }
}

/// What kind of failure an error is: one-to-one with the HTTP status the API answers and the
/// way clients react (design.md, "errors by kind").
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request is malformed (bad JSON, an unknown field, a tampered cursor, an ambiguous
    /// id): 400.
    BadRequest,
    /// No valid credentials (missing, bad or expired token): 401.
    Unauthenticated,
    /// Authenticated, but not allowed: 403.
    Forbidden,
    /// No such task, step or workflow (or one the caller may not read): 404.
    NotFound,
    /// The endpoint does not take this HTTP method: 405.
    MethodNotAllowed,
    /// Conflicts with the current state: 409.
    Conflict,
    /// The body is too large: 413.
    TooLarge,
    /// Well-formed but not acceptable (schema violations, out-of-range values): 422.
    Invalid,
    /// Too many requests: 429.
    RateLimited,
    /// The engine has stopped or the store failed: 503.
    Unavailable,
}

impl EngineError {
    /// `task` has no step named `step` (clipped in the message): lists the steps it has.
    pub fn no_such_step(task: &Task, step: &str) -> Self {
        EngineError::NoSuchStep {
            task: task.id.clone(),
            step: crate::model::clip(step, 128),
            steps: task
                .steps
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }
    }

    /// The kind of this error (see `ErrorKind`).
    pub fn kind(&self) -> ErrorKind {
        use crate::workflow::CatalogError as C;
        match self {
            EngineError::Catalog(C::BadReference(_)) => ErrorKind::Invalid,
            EngineError::Catalog(C::Unknown { .. }) => ErrorKind::NotFound,
            EngineError::Catalog(C::InvalidContext { .. }) => ErrorKind::Invalid,
            EngineError::Store(StoreError::NoSuchTask(_)) => ErrorKind::NotFound,
            EngineError::Store(StoreError::Ambiguous { .. }) => ErrorKind::BadRequest,
            EngineError::Store(_) => ErrorKind::Unavailable,
            EngineError::NoSuchStep { .. } => ErrorKind::NotFound,
            EngineError::Conflict(_) | EngineError::Illegal(_) => ErrorKind::Conflict,
            EngineError::Invalid { .. } => ErrorKind::Invalid,
            EngineError::Denied(_) => ErrorKind::Forbidden,
            EngineError::Unauthenticated(_) => ErrorKind::Unauthenticated,
            EngineError::Stopped | EngineError::Archive { .. } | EngineError::Privacy(_) => {
                ErrorKind::Unavailable
            }
        }
    }

    /// The request field at fault, when one is.
    pub fn field(&self) -> Option<&str> {
        use crate::workflow::CatalogError as C;
        match self {
            EngineError::Invalid { field, .. } => Some(field),
            EngineError::Catalog(C::BadReference(_) | C::Unknown { .. }) => Some("workflow"),
            EngineError::Catalog(C::InvalidContext { .. }) => Some("context"),
            EngineError::NoSuchStep { .. } => Some("step"),
            _ => None,
        }
    }
}

impl From<crate::auth::Denied> for EngineError {
    fn from(d: crate::auth::Denied) -> Self {
        EngineError::Denied(d.0)
    }
}

/// A request to create a task.
#[derive(Debug, Clone)]
pub struct SubmitRequest {
    /// `NS/NAME` or `NS/NAME@VERSION`.
    pub workflow: String,
    pub context: Value,
    /// Who asks; recorded as the task's initiator and on its first transition.
    pub actor: Identity,
    /// The task that delegates this one, if any.
    pub parent: Option<String>,
    pub correlation_id: Option<String>,
    /// Makes the request idempotent: a second request with the same key answers the task the
    /// first one created.
    pub origin_key: Option<String>,
    /// A W3C `traceparent` to continue (a caller's trace); a malformed one is ignored. A
    /// delegated child gets its parent step's, whatever is given here.
    pub traceparent: Option<String>,
}

impl SubmitRequest {
    pub fn new(workflow: impl Into<String>, context: Value, actor: Identity) -> Self {
        SubmitRequest {
            workflow: workflow.into(),
            context,
            actor,
            parent: None,
            correlation_id: None,
            origin_key: None,
            traceparent: None,
        }
    }
}

pub type Reply<T> = oneshot::Sender<Result<T, EngineError>>;

pub(crate) enum Command {
    Submit(SubmitRequest, Reply<Task>),
    /// Steps in error get a fresh attempt budget and go back to pending.
    Retry {
        task: String,
        actor: Identity,
        reason: String,
        reply: Reply<Task>,
    },
    /// Start a step waiting out its backoff now.
    RetryNow {
        task: String,
        step: String,
        actor: Identity,
        reason: String,
        reply: Reply<Task>,
    },
    Cancel {
        task: String,
        actor: Identity,
        reason: String,
        reply: Reply<Task>,
    },
    /// Completes a failed or pending step with results an operator supplies.
    Resolve {
        task: String,
        step: String,
        results: Value,
        actor: Identity,
        reason: String,
        reply: Reply<Task>,
    },
    /// Approves or denies a step waiting for approval.
    Decide {
        task: String,
        step: String,
        approve: bool,
        actor: Identity,
        note: Option<String>,
        reply: Reply<Task>,
    },
    /// Archives and removes (or, dry, lists) the finished tasks a policy lets go.
    Prune {
        policy: super::retention::Retention,
        dry_run: bool,
        reply: Reply<(super::retention::PruneReport, Vec<String>)>,
    },
    /// Answers once no task can make progress without a person.
    WhenIdle(oneshot::Sender<()>),
    /// Stops dispatching, waits up to `grace` for running steps, then stops.
    Shutdown {
        grace: Duration,
        reply: oneshot::Sender<()>,
    },
}
