//! The engine's query side: every read a client makes (task listings, one task with its
//! history, the approvals inbox, health counts, the event stream) goes through here, and the
//! read authorization is applied here, once. The CLI, the console and the HTTP API all call
//! these functions (through `client::Client`), so they agree on what each operator sees.
//! Reads go to the store; they never wait on the orchestrator.

use super::clock::Clock;
use super::command::EngineError;
use super::events::Event;
use super::stream::EventStream;
use crate::auth::{Coordinator, Identity, Request};
use crate::model::{ApprovalRequest, StepState, Task, TaskState, Timestamp, Transition};
use crate::store::{Listing, Store};
use crate::workflow::Catalog;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::Arc;

/// The most tasks one page of a listing holds.
pub const MAX_PAGE: usize = 1000;

/// The most bytes of tasks (as JSON) one page holds; a page has at least one task.
pub const MAX_PAGE_BYTES: usize = 8 << 20;

/// Which tasks a listing shows (all that are readable when every field is `None`).
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    pub namespace: Option<String>,
    pub state: Option<TaskState>,
    /// `NS/NAME` (every version) or `NS/NAME@VERSION`.
    pub workflow: Option<String>,
    /// Only tasks created at or after this time (ms since the Unix epoch).
    pub since: Option<Timestamp>,
    /// Words that must all match (`engine::search`): ids, workflows, states, namespaces,
    /// ticket, customer, order or correlation ids.
    pub search: Option<String>,
}

/// A step waiting for a person's decision, as the approvals inbox lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PendingApproval {
    /// The task's full id.
    pub task: String,
    /// `namespace/name@version`.
    pub workflow: String,
    pub step: String,
    pub request: ApprovalRequest,
    /// Milliseconds since the Unix epoch.
    pub requested_at: Timestamp,
    /// Milliseconds since the Unix epoch; the request cannot be decided after it.
    pub expires_at: Timestamp,
}

/// `/health/status`, in post 05's shape: checks (the store, the engine loop, the work the
/// caller may read, the handlers) and the engine's performance figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Status {
    /// `healthy`, or `unhealthy` when a check failed.
    pub status: String,
    pub checks: StatusChecks,
    pub performance: crate::telemetry::metrics::Performance,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StatusChecks {
    /// `ok`, or why the store cannot be written.
    pub database: String,
    /// `ok`, or `stopped` once the engine loop has ended.
    pub engine: String,
    pub task_processing: TaskProcessing,
    pub step_handlers: StepHandlers,
}

/// Counts over the tasks the caller may read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskProcessing {
    /// Tasks in progress.
    pub active_tasks: usize,
    /// Tasks waiting to start.
    pub pending_tasks: usize,
    /// Tasks that went into error within the last hour.
    pub failed_tasks_last_hour: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StepHandlers {
    /// Handler names the engine can run.
    pub registered_handlers: Vec<String>,
    /// Namespaces of the loaded workflows.
    pub namespaces: Vec<String>,
}

/// Audit entries read per window when listing the journal backwards.
const AUDIT_WINDOW: u64 = 2_000;
/// Most journal entries one audit listing scans.
const AUDIT_SCAN: u64 = 200_000;

/// The read side of one engine.
#[derive(Clone)]
pub struct Query {
    store: Arc<dyn Store>,
    catalog: Arc<Catalog>,
    coordinator: Coordinator,
    clock: Clock,
    handlers: Arc<Vec<String>>,
    metrics: Arc<crate::telemetry::Metrics>,
    /// Whether the engine loop still runs.
    alive: Arc<dyn Fn() -> bool + Send + Sync>,
    /// Reveals sealed personal data to readers with `pii:read` (`None`: nothing is sealed).
    vault: Option<Arc<crate::privacy::Vault>>,
}

impl Query {
    pub(super) fn new(
        store: Arc<dyn Store>,
        catalog: Arc<Catalog>,
        clock: Clock,
        handlers: Vec<String>,
        metrics: Arc<crate::telemetry::Metrics>,
        alive: Arc<dyn Fn() -> bool + Send + Sync>,
        vault: Option<Arc<crate::privacy::Vault>>,
    ) -> Self {
        let coordinator = Coordinator::new(catalog.clone()).with_clock(Arc::new(move || clock.now()));
        Query {
            store,
            catalog,
            coordinator,
            clock,
            handlers: Arc::new(handlers),
            metrics,
            alive,
            vault,
        }
    }

    /// Whether the engine can take work: its loop runs and its store takes a write.
    pub async fn ready(&self) -> Result<(), String> {
        if !(self.alive)() {
            return Err("the engine has stopped".into());
        }
        self.store.check_writable().await.map_err(|e| e.to_string())
    }

    pub fn coordinator(&self) -> &Coordinator {
        &self.coordinator
    }

    /// How `who` sees personal data: in clear with `pii:read`, else `[REDACTED]`.
    pub fn pii_access(&self, who: &Identity) -> crate::privacy::Access {
        if self.coordinator.may_read_pii(who) {
            crate::privacy::Access::Reveal
        } else {
            crate::privacy::Access::Redact
        }
    }

    /// Audit journal entries matching `query`, newest first, at most `query.limit` (default
    /// 200, at most 1000), read backwards from the head in windows and never more than
    /// `AUDIT_SCAN` entries for one request. Needs `audit:read`; each entry's detail is
    /// revealed as `who` may see personal data.
    pub async fn audit(
        &self,
        who: &Identity,
        query: &crate::client::AuditQuery,
    ) -> Result<Vec<crate::audit::AuditEntry>, EngineError> {
        self.coordinator.check_global(who, "audit:read")?;
        let limit = query.limit.unwrap_or(200);
        if !(1..=1000).contains(&limit) {
            return Err(EngineError::Invalid {
                field: "limit".into(),
                message: format!("{limit} is not between 1 and 1000"),
            });
        }
        let (head, _) = self.store.audit_head().await?;
        let mut out = Vec::new();
        let mut end = head;
        while end > 0 && out.len() < limit && head - end < AUDIT_SCAN {
            let start = end.saturating_sub(AUDIT_WINDOW);
            let page = self.store.audit_after(start, AUDIT_WINDOW as usize).await?;
            let mut matched: Vec<crate::audit::AuditEntry> = page
                .into_iter()
                .flatten()
                .filter(|e| e.seq > start && e.seq <= end && query.matches(e))
                .collect();
            matched.reverse();
            out.extend(matched);
            end = start;
        }
        out.truncate(limit);
        if let Some(vault) = &self.vault {
            let access = self.pii_access(who);
            for e in &mut out {
                vault.reveal_text(&mut e.record.detail, access).await?;
            }
        }
        Ok(out)
    }

    /// `task` as `who` may see it (`crate::privacy`).
    pub async fn reveal_task(&self, who: &Identity, task: &mut Task) -> Result<(), EngineError> {
        if let Some(vault) = &self.vault {
            vault.reveal_task(task, self.pii_access(who)).await?;
        }
        Ok(())
    }

    /// The vault revealing sealed data (`None` when the engine seals nothing).
    pub fn vault(&self) -> Option<&Arc<crate::privacy::Vault>> {
        self.vault.as_ref()
    }

    /// One page of the tasks `who` may read that match `filter`, newest first, starting
    /// after the task id `after` (the previous page's last); with the id to pass as `after`
    /// for the next page when there may be more. `limit` is capped at `MAX_PAGE`. Reads one
    /// of the store's indexes, never the whole history.
    ///
    /// Errors: `Denied` for an expired identity; `Invalid` for an unknown namespace or a bad
    /// workflow reference.
    pub async fn tasks(
        &self,
        who: &Identity,
        filter: &TaskFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Task>, Option<String>), EngineError> {
        self.coordinator.authenticate(who)?;
        if let Some(ns) = &filter.namespace {
            self.check_namespace(ns)?;
        }
        let workflow = match &filter.workflow {
            Some(w) => {
                let m = WorkflowMatch::parse(w)?;
                let known = self
                    .catalog
                    .iter()
                    .any(|wf| wf.template.namespace == m.namespace && wf.template.name == m.name);
                if !known {
                    return Err(EngineError::Invalid {
                        field: "workflow".into(),
                        message: format!(
                            "`{}/{}` is not a workflow here (see GET /v1/workflows or `taskdeck workflows`)",
                            crate::model::clip(&m.namespace, 64),
                            crate::model::clip(&m.name, 64)
                        ),
                    });
                }
                Some(m)
            }
            None => None,
        };
        let limit = limit.clamp(1, MAX_PAGE);
        if let Some(since) = filter.since.filter(|s| *s < 0) {
            return Err(EngineError::Invalid {
                field: "since".into(),
                message: format!(
                    "{since} is before 1970: `since` is milliseconds since the Unix epoch, 0 or more"
                ),
            });
        }
        // A cursor is the last task id of the page before; anything else would list from an
        // arbitrary place.
        if let Some(after) = after {
            if uuid::Uuid::try_parse(after).is_err() {
                return Err(EngineError::Invalid {
                    field: "cursor".into(),
                    message: format!(
                        "`{}` is not a cursor a listing printed; start again without it",
                        crate::model::clip(after, 64)
                    ),
                });
            }
        }
        let words = match filter.search.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            Some(text) => {
                let workflows: Vec<(String, String)> = self
                    .catalog
                    .iter()
                    .map(|w| (w.template.namespace.clone(), w.template.name.clone()))
                    .collect();
                super::search::parse(text, &self.namespaces(), &workflows).map_err(|message| {
                    EngineError::Invalid {
                        field: "search".into(),
                        message,
                    }
                })?
            }
            None => super::search::Words::default(),
        };
        // Words narrow the filters; words that contradict them (or each other) match nothing.
        let state = words.state.or(filter.state);
        let namespace = words.namespace.clone().or_else(|| filter.namespace.clone());
        if words.contradiction
            || filter.state.is_some_and(|s| Some(s) != state)
            || filter
                .namespace
                .as_ref()
                .is_some_and(|n| Some(n) != namespace.as_ref())
        {
            return Ok((Vec::new(), None));
        }
        let vault = self.vault.as_deref();
        let hashes: Vec<String> = words
            .values
            .iter()
            .map(|v| super::search::hash(vault, v))
            .collect();
        // A personal field finds a task only for a reader who may see it in clear (the store
        // reads that index for them only).
        let personal = self.coordinator.may_read_pii(who);
        let accept = |t: &Task| {
            workflow.as_ref().is_none_or(|w| w.matches(t))
                && words.version.as_ref().is_none_or(|v| &t.version == v)
                && (words.workflows.is_empty()
                    || words
                        .workflows
                        .iter()
                        .any(|(ns, name)| &t.namespace == ns && &t.name == name))
                && self.coordinator.may_read(who, t)
        };
        // One word that reads as (the end of) a task id finds that task.
        if let ([word], None) = (words.values.as_slice(), after) {
            if super::search::may_be_id(word) {
                // The filters a listing would apply, then what every search accepts.
                let by_id = |t: &Task| {
                    state.is_none_or(|s| t.state == s)
                        && namespace.as_ref().is_none_or(|n| &t.namespace == n)
                        && filter.since.is_none_or(|s| t.created_at >= s)
                        && accept(t)
                };
                let mut found = self.store.find_tasks(word, &by_id, limit).await?;
                if !found.is_empty() {
                    found.sort_by(|a, b| b.id.cmp(&a.id));
                    for t in &mut found {
                        self.reveal_task(who, t).await?;
                    }
                    return Ok((found, None));
                }
            }
        }
        let single_workflow = match (&workflow, words.workflows.as_slice()) {
            (Some(w), _) => Some((w.namespace.clone(), w.name.clone())),
            (None, [only]) => Some(only.clone()),
            _ => None,
        };
        let listing = Listing {
            namespace,
            state,
            workflow: single_workflow,
            before: after.map(str::to_string),
            since: filter.since,
            headers_only: false,
            terms: hashes.clone(),
            personal,
        };
        // One more than asked says whether another page exists.
        let mut tasks = self.store.list(&listing, &accept, limit + 1).await?;
        // A page also ends at `MAX_PAGE_BYTES` of tasks (contexts can be a MiB each).
        let mut bytes = 0usize;
        let fits = tasks
            .iter()
            .position(|t| {
                bytes = bytes.saturating_add(serde_json::to_vec(t).map_or(usize::MAX, |b| b.len()));
                bytes > MAX_PAGE_BYTES
            })
            .map_or(tasks.len(), |at| at.max(1));
        let limit = limit.min(fits);
        let next = if tasks.len() > limit {
            tasks.truncate(limit);
            tasks.last().map(|t| t.id.clone())
        } else {
            None
        };
        for t in &mut tasks {
            self.reveal_task(who, t).await?;
        }
        Ok((tasks, next))
    }

    /// A namespace the catalog knows, or `Invalid` listing the ones it does.
    pub fn check_namespace(&self, namespace: &str) -> Result<(), EngineError> {
        let known = self.namespaces();
        if known.iter().any(|n| n == namespace) {
            return Ok(());
        }
        Err(EngineError::Invalid {
            field: "namespace".into(),
            message: format!(
                "`{namespace}` is not a namespace here; namespaces are: {}",
                known.join(", ")
            ),
        })
    }

    fn namespaces(&self) -> Vec<String> {
        let mut known: Vec<String> = self
            .catalog
            .iter()
            .map(|w| w.template.namespace.clone())
            .collect();
        known.dedup();
        known
    }

    /// The task `text` names (full id, prefix or short id) with its transitions, if `who` may
    /// read it; another team's task is "not found".
    pub async fn task(&self, who: &Identity, text: &str) -> Result<(Task, Vec<Transition>), EngineError> {
        let mut task = super::lookup::find_readable(&*self.store, &self.coordinator, who, text).await?;
        let mut transitions = self.store.transitions(&task.id).await?;
        self.reveal_task(who, &mut task).await?;
        if let Some(vault) = &self.vault {
            vault
                .reveal_transitions(&mut transitions, self.pii_access(who))
                .await?;
        }
        Ok((task, transitions))
    }

    /// The steps waiting for a decision in tasks `who` may read, oldest task first. A request
    /// past its deadline can no longer be decided, so it is not listed.
    pub async fn approvals(&self, who: &Identity) -> Result<Vec<PendingApproval>, EngineError> {
        self.coordinator.authenticate(who)?;
        let now = self.clock.now();
        let mut waiting = Vec::new();
        let mut ids: Vec<String> = self
            .store
            .waiting_for_decision()
            .await?
            .into_iter()
            .map(|w| w.task_id)
            .collect();
        ids.dedup();
        for id in ids {
            let Some(mut task) = self.store.task(&id).await? else {
                continue;
            };
            if !self.coordinator.may_read(who, &task) {
                continue;
            }
            self.reveal_task(who, &mut task).await?;
            for step in task
                .steps
                .iter()
                .filter(|s| s.state == StepState::AwaitingApproval)
            {
                if let Some(a) = step.approval.as_ref().filter(|a| a.expires_at > now) {
                    waiting.push(PendingApproval {
                        task: task.id.clone(),
                        workflow: task.workflow_ref(),
                        step: step.name.clone(),
                        request: a.request.clone(),
                        requested_at: a.requested_at,
                        expires_at: a.expires_at,
                    });
                }
            }
        }
        Ok(waiting)
    }

    /// Health counts over the tasks `who` may read.
    pub async fn status(&self, who: &Identity) -> Result<Status, EngineError> {
        self.coordinator.check_global(who, "tasker.health:read")?;
        let hour_ago = self.clock.now().saturating_sub(3_600_000);
        let count =
            async |state: TaskState, keep: &(dyn Fn(&Task) -> bool + Sync)| -> Result<usize, EngineError> {
                let listing = Listing {
                    state: Some(state),
                    headers_only: true,
                    ..Listing::default()
                };
                let accept = |t: &Task| keep(t) && self.coordinator.may_read(who, t);
                Ok(self.store.list(&listing, &accept, usize::MAX).await?.len())
            };
        let active = count(TaskState::InProgress, &|_| true).await?;
        let pending = count(TaskState::Pending, &|_| true).await?;
        let failed = count(TaskState::Error, &|t| t.updated_at >= hour_ago).await?;
        let database = match self.store.check_writable().await {
            Ok(()) => "ok".to_string(),
            Err(e) => e.to_string(),
        };
        let engine = if (self.alive)() { "ok" } else { "stopped" };
        let healthy = database == "ok" && engine == "ok";
        Ok(Status {
            status: if healthy { "healthy" } else { "unhealthy" }.into(),
            checks: StatusChecks {
                database,
                engine: engine.into(),
                task_processing: TaskProcessing {
                    active_tasks: active,
                    pending_tasks: pending,
                    failed_tasks_last_hour: failed,
                },
                step_handlers: StepHandlers {
                    registered_handlers: self.handlers.to_vec(),
                    namespaces: self.namespaces(),
                },
            },
            performance: self.metrics.performance(),
        })
    }

    /// The last ten minutes of each namespace `who` may read (every namespace of the catalog,
    /// active or not): throughput, errors and p95 attempt time per 10-second slice, SLA
    /// compliance, revenue, the slowest steps and the latest signals. What the console's
    /// `:metrics` view draws; `/metrics` (every namespace) stays for admins and scrapers.
    ///
    /// Errors: `Denied` for an expired identity or a monitor token.
    pub fn metrics_summary(
        &self,
        who: &Identity,
    ) -> Result<crate::telemetry::recent::MetricsSummary, EngineError> {
        self.coordinator.authenticate(who)?;
        // A namespace's figures need the whole namespace: a grant for one of its workflows
        // reads that workflow's tasks, not the namespace's revenue.
        let readable = |namespace: &str| {
            self.coordinator
                .check(
                    who,
                    Request::Read {
                        namespace,
                        workflow: None,
                    },
                )
                .is_ok()
        };
        Ok(self
            .metrics
            .summary(self.clock.now(), &self.namespaces(), &readable))
    }

    /// How many tasks in `state` `who` may read: from the store's index when `who` reads
    /// everything, else over the headers of that state's tasks.
    pub async fn count(&self, who: &Identity, state: TaskState) -> Result<u64, EngineError> {
        self.coordinator.authenticate(who)?;
        if self.coordinator.may_read_all(who) {
            return Ok(self.store.count(state).await?);
        }
        let listing = Listing {
            state: Some(state),
            headers_only: true,
            ..Listing::default()
        };
        let accept = |t: &Task| self.coordinator.may_read(who, t);
        let n = self.store.list(&listing, &accept, usize::MAX).await?.len();
        Ok(u64::try_from(n).unwrap_or(u64::MAX))
    }

    /// The newest event's sequence number (0 when none): where a stream "from now" starts.
    pub async fn newest_event(&self) -> Result<u64, EngineError> {
        Ok(self.store.last_event_seq().await?)
    }

    /// The events `who` may read, after the sequence number `after` (`None`: from now).
    pub async fn events(
        &self,
        who: &Identity,
        live: tokio::sync::broadcast::Receiver<Arc<Event>>,
        after: Option<u64>,
    ) -> Result<ReadableEvents, EngineError> {
        self.coordinator.authenticate(who)?;
        if let Some(after) = after {
            let head = self.store.last_event_seq().await?;
            if after > head {
                return Err(EngineError::Invalid {
                    field: "after".into(),
                    message: format!(
                        "event {after} has not happened: the newest is {head} (a sequence number from another store, or one restored from an older backup?); start again from 0 or from now"
                    ),
                });
            }
        }
        Ok(ReadableEvents {
            stream: EventStream::new(self.store.clone(), live, after).await?,
            who: who.clone(),
            query: self.clone(),
            visible: HashSet::new(),
            hidden: HashSet::new(),
        })
    }
}

/// A workflow filter: `NS/NAME` or `NS/NAME@VERSION`.
struct WorkflowMatch {
    namespace: String,
    name: String,
    version: Option<String>,
}

impl WorkflowMatch {
    fn parse(text: &str) -> Result<Self, EngineError> {
        let (path, version) = match text.split_once('@') {
            Some((p, v)) => (p, Some(v.to_string())),
            None => (text, None),
        };
        if version
            .as_deref()
            .is_some_and(|v| semver::Version::parse(v).is_err())
        {
            return Err(EngineError::Invalid {
                field: "workflow".into(),
                message: format!(
                    "`{}` is not NAMESPACE/NAME@MAJOR.MINOR.PATCH",
                    crate::model::clip(text, 80)
                ),
            });
        }
        match path.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() => Ok(WorkflowMatch {
                namespace: ns.into(),
                name: name.into(),
                version,
            }),
            _ => Err(EngineError::Invalid {
                field: "workflow".into(),
                message: format!("`{text}` is not NAMESPACE/NAME or NAMESPACE/NAME@VERSION"),
            }),
        }
    }

    fn matches(&self, t: &Task) -> bool {
        t.namespace == self.namespace
            && t.name == self.name
            && self.version.as_ref().is_none_or(|v| &t.version == v)
    }
}

/// Tracked per subscription: which tasks' events this reader may see, so each task is read
/// from the store at most once for it. Bounded: past this many, the caches start over.
const CLASSIFIED_MAX: usize = 100_000;

/// An event subscription showing only what one identity may read.
pub struct ReadableEvents {
    stream: EventStream,
    who: Identity,
    query: Query,
    visible: HashSet<String>,
    hidden: HashSet<String>,
}

impl ReadableEvents {
    /// The next readable event; `None` once the engine has stopped. Fails with `Denied` once
    /// the identity has expired (a long-lived stream does not outlive its token).
    pub async fn next(&mut self) -> Result<Option<Event>, EngineError> {
        loop {
            let Some(event) = self.stream.next().await? else {
                return Ok(None);
            };
            // A long-lived stream does not outlive its token: that is an authentication failure.
            if let Err(d) = self.query.coordinator.authenticate(&self.who) {
                return Err(EngineError::Unauthenticated(d.0));
            }
            if self.admits(&event).await? {
                let mut event = event;
                if let Some(vault) = &self.query.vault {
                    vault
                        .reveal_event(&mut event, self.query.pii_access(&self.who))
                        .await?;
                }
                return Ok(Some(event));
            }
        }
    }

    /// The last sequence number this subscription has passed (read or skipped).
    pub fn last_seq(&self) -> u64 {
        self.stream.last_seq()
    }

    async fn admits(&mut self, event: &Event) -> Result<bool, EngineError> {
        // `namespace/name@version`.
        let (namespace, rest) = event.workflow.split_once('/').unwrap_or(("", ""));
        let workflow = rest.split('@').next().unwrap_or("");
        let coordinator = &self.query.coordinator;
        let read = Request::Read {
            namespace,
            workflow: Some(workflow),
        };
        if coordinator.check(&self.who, read).is_ok() {
            return Ok(true);
        }
        // Another namespace's task may still be readable (a child the reader's team asked
        // for): decided from the task, once per task.
        if self.visible.contains(&event.task_id) {
            return Ok(true);
        }
        if self.hidden.contains(&event.task_id) {
            return Ok(false);
        }
        if self.visible.len() + self.hidden.len() >= CLASSIFIED_MAX {
            self.visible.clear();
            self.hidden.clear();
        }
        let readable = self
            .query
            .store
            .task(&event.task_id)
            .await?
            .is_some_and(|t| coordinator.may_read(&self.who, &t));
        if readable {
            self.visible.insert(event.task_id.clone());
        } else {
            self.hidden.insert(event.task_id.clone());
        }
        Ok(readable)
    }
}
