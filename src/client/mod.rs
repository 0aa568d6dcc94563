//! One client interface to an engine — its commands, its queries and its event stream — with
//! two implementations: `Local` (the engine runs in this process) and `Http` (another process
//! serves it, `taskdeck serve` or a console that owns the data directory). The console and
//! every CLI command use only this trait, so behaviour, output and exit codes are the same
//! whichever side of a socket the engine is on.

mod connect;
mod http;
mod local;

pub use connect::{connect, discover, discover_holder, local_token, ServerFile, SERVER_FILE};
pub use http::{Credentials, Http, HttpOptions};
pub use local::Local;

use crate::auth::Identity;
use crate::engine::{EngineError, ErrorKind, PendingApproval, Status};
use crate::model::{Event, Task, TaskState, Timestamp, Transition};
use crate::workflow::Catalog;
use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;

/// A failure as clients see it: a kind (which maps to an HTTP status), a message for people,
/// and the request field or resource at fault when there is one. This is the body of every
/// API error (`{"error": …}`), so a remote failure prints exactly as a local one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error, utoipa::ToSchema)]
#[error("{message}")]
pub struct Problem {
    pub kind: ErrorKind,
    pub message: String,
    /// The request field at fault (`context`, `workflow`, `cursor`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl Problem {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Problem {
            kind,
            message: message.into(),
            field: None,
        }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
}

impl From<EngineError> for Problem {
    fn from(e: EngineError) -> Self {
        Problem {
            kind: e.kind(),
            field: e.field().map(str::to_string),
            message: e.to_string(),
        }
    }
}

/// A listing's filter and page (`GET /v1/tasks`).
/// Which audit journal entries to read (`GET /v1/audit`, the console's `:audit`): newest
/// first, all filters together.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only entries of this actor (a person, `engine`, `ip:…` for a refused credential).
    pub actor: Option<String>,
    /// Only entries about the task whose id starts with this.
    pub task: Option<String>,
    /// Only entries whose action starts with this (`authz`, `step.transition`, `gdpr`).
    pub action: Option<String>,
    /// Most entries, 1–1000 (default 200).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

impl AuditQuery {
    /// Whether `entry` passes every filter given.
    pub fn matches(&self, entry: &crate::audit::AuditEntry) -> bool {
        let r = &entry.record;
        self.actor
            .as_deref()
            .is_none_or(|a| r.actor.eq_ignore_ascii_case(a.trim()))
            && self
                .task
                .as_deref()
                .is_none_or(|t| r.resource.starts_with(&format!("task/{}", t.trim())))
            && self
                .action
                .as_deref()
                .is_none_or(|a| r.action.starts_with(a.trim()))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TaskQuery {
    /// Only tasks of this namespace.
    pub namespace: Option<String>,
    /// Only tasks in this state.
    pub state: Option<TaskState>,
    /// Only tasks of this workflow: `NS/NAME` or `NS/NAME@VERSION`.
    #[param(
        pattern = r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+(@(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8}))?$"
    )]
    pub workflow: Option<String>,
    /// Only tasks created at or after this time, in milliseconds since the Unix epoch.
    #[param(minimum = 0)]
    pub since: Option<i64>,
    /// Words that must all match, separated by spaces (at most 8, each at most 128
    /// characters): a task id or its last 8 characters, a workflow (`NAME` or `NS/NAME`), a
    /// state, a namespace, or the value of a ticket, customer, order or correlation id. A
    /// customer id (personal data) finds a task only for a reader with `pii:read`.
    #[param(max_length = 1100)]
    pub search: Option<String>,
    /// Most tasks in the page, 1–1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// Where to continue: the `next_cursor` of the page before (opaque, signed by the server).
    #[param(pattern = r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}$")]
    pub cursor: Option<String>,
}

/// The default page size of a listing.
pub const DEFAULT_PAGE: usize = 100;

/// One page of tasks, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskPage {
    pub tasks: Vec<Task>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// A task with its whole transition log (`GET /v1/tasks/{id}`).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskDetail {
    pub task: Task,
    pub transitions: Vec<Transition>,
}

/// A task to create (`POST /v1/tasks`).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(
    deny_unknown_fields,
    expecting = "a task: {\"workflow\": \"NS/NAME[@VERSION]\", \"context\": {…}}"
)]
pub struct NewTask {
    /// `NS/NAME` (latest version) or `NS/NAME@VERSION`.
    #[schema(
        pattern = r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+(@(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8}))?$"
    )]
    pub workflow: String,
    /// The task context, a JSON object; `{}` when absent.
    #[serde(default = "empty_object", deserialize_with = "object")]
    #[schema(value_type = Object)]
    pub context: Value,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

/// Only a JSON object is a task context.
fn object<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
    let v = Value::deserialize(d)?;
    if v.is_object() {
        Ok(v)
    } else {
        Err(serde::de::Error::custom("a task context is a JSON object ({…})"))
    }
}

/// The most tasks one batch creates.
pub const MAX_BATCH: usize = 1000;

/// One task of a batch: created, or why not.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BatchItem {
    Created(Box<Task>),
    Failed(Problem),
}

/// A workflow in the catalog (`GET /v1/workflows`).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WorkflowInfo {
    pub namespace: String,
    pub name: String,
    pub version: String,
    /// `namespace/name@version`.
    pub reference: String,
    pub description: Option<String>,
    pub steps: usize,
}

/// One file of the catalog, for a remote client to load the same catalog
/// (`GET /v1/workflows/files`).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CatalogFile {
    pub file: String,
    pub text: String,
}

/// Events the client may read, in sequence order, resumable (see `Client::events`).
pub type EventFeed = BoxStream<'static, Result<Event, Problem>>;

/// Whether a remote client's event feed is connected, for a banner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    Up,
    /// Lost, and why; the feed reconnects with backoff.
    Down(String),
}

/// Where a client's engine is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// In this process, over the data directory.
    InProcess,
    /// At this base URL.
    Remote(String),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::InProcess => f.write_str("in-process"),
            Endpoint::Remote(url) => f.write_str(url),
        }
    }
}

/// An engine as the console and the CLI use it, acting as one identity. Every method fails
/// with a `Problem` whose kind says how (`ErrorKind`).
#[async_trait]
pub trait Client: Send + Sync {
    /// Who this client acts as.
    fn identity(&self) -> &Identity;
    fn endpoint(&self) -> Endpoint;
    /// The engine's time, ms since the Unix epoch (for countdowns).
    fn now(&self) -> Timestamp;
    /// The state of the connection to a remote engine (`None`: in-process, always there).
    fn link(&self) -> Option<tokio::sync::watch::Receiver<Link>> {
        None
    }
    /// The engine's workflow catalog (templates, schemas, grants).
    async fn catalog(&self) -> Result<Arc<Catalog>, Problem>;
    async fn tasks(&self, query: &TaskQuery) -> Result<TaskPage, Problem>;
    /// The task `id` names (full id, prefix or short id) with its transitions.
    async fn task(&self, id: &str) -> Result<TaskDetail, Problem>;
    async fn submit(&self, task: NewTask) -> Result<Task, Problem>;
    /// Creates up to `MAX_BATCH` tasks; each succeeds or fails on its own.
    async fn submit_batch(&self, tasks: Vec<NewTask>) -> Result<Vec<BatchItem>, Problem>;
    async fn retry(&self, id: &str, reason: &str) -> Result<Task, Problem>;
    async fn cancel(&self, id: &str, reason: &str) -> Result<Task, Problem>;
    /// Starts a step waiting out its backoff at once (`Engine::retry_now`).
    async fn retry_now(&self, id: &str, step: &str, reason: &str) -> Result<Task, Problem>;
    async fn resolve(&self, id: &str, step: &str, results: Value, reason: &str) -> Result<Task, Problem>;
    /// Approves (`approve`) or denies a step waiting for approval; a denial needs a `note`.
    async fn decide(
        &self,
        id: &str,
        step: &str,
        approve: bool,
        note: Option<String>,
    ) -> Result<Task, Problem>;
    async fn approvals(&self) -> Result<Vec<PendingApproval>, Problem>;
    async fn status(&self) -> Result<Status, Problem>;
    /// The last ten minutes of the namespaces this client may read (`Query::metrics_summary`).
    async fn metrics_summary(&self) -> Result<crate::telemetry::recent::MetricsSummary, Problem>;
    /// Audit journal entries matching `query`, newest first (`audit:read`; personal values
    /// revealed only with `pii:read`).
    async fn audit(&self, query: &AuditQuery) -> Result<Vec<crate::audit::AuditEntry>, Problem>;
    /// The events this client may read with a sequence number above `after` (`None`: from
    /// now on), then live ones. A remote feed reconnects by itself and resumes after the last
    /// event it delivered; it ends (`None`) only when the engine stops for good.
    async fn events(&self, after: Option<u64>) -> Result<EventFeed, Problem>;

    /// Every task matching `query`, all pages.
    async fn all_tasks(&self, query: &TaskQuery) -> Result<Vec<Task>, Problem> {
        let mut query = query.clone();
        query.limit = Some(crate::engine::query::MAX_PAGE);
        let mut out = Vec::new();
        loop {
            let page = self.tasks(&query).await?;
            out.extend(page.tasks);
            match page.next_cursor {
                Some(c) => query.cursor = Some(c),
                None => return Ok(out),
            }
        }
    }

    /// Waits until the task is no longer driven by the engine (complete, error, cancelled) or
    /// waits on a person, calling `progress` with each of its events; returns it then.
    async fn wait_for(
        &self,
        id: &str,
        progress: &mut (dyn for<'e> FnMut(&'e Event) + Send),
    ) -> Result<Task, Problem> {
        use futures::StreamExt;
        // Subscribe first, then read the task: nothing between the two is missed.
        let mut events = self.events(None).await?;
        let mut task = self.task(id).await?.task;
        loop {
            let waits_on_person = task.execution_status() == crate::model::ExecutionStatus::AwaitingDecision;
            if !task.state.is_active() || waits_on_person {
                return Ok(task);
            }
            loop {
                match events.next().await {
                    Some(Ok(e)) if e.task_id == task.id => {
                        progress(&e);
                        if !e.custom {
                            break;
                        }
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(p)) => return Err(p),
                    None => return Err(EngineError::Stopped.into()),
                }
            }
            task = self.task(&task.id).await?.task;
        }
    }
}
