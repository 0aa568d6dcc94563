//! The in-process client: calls the engine directly. The API server answers each request
//! through one of these (bound to the caller's identity), so local and remote behave alike.

use super::{
    BatchItem, Client, Endpoint, EventFeed, NewTask, Problem, TaskDetail, TaskPage, TaskQuery, DEFAULT_PAGE,
    MAX_BATCH,
};
use crate::auth::Identity;
use crate::engine::{Engine, EngineError, ErrorKind, PendingApproval, Status, SubmitRequest, TaskFilter};
use crate::model::{Task, Timestamp};
use crate::workflow::Catalog;
use async_trait::async_trait;
use serde_json::Value;
use std::sync::Arc;

/// An engine in this process, used as `identity`. Cheap to clone.
#[derive(Clone)]
pub struct Local {
    engine: Arc<Engine>,
    identity: Identity,
}

impl Local {
    pub fn new(engine: Arc<Engine>, identity: Identity) -> Self {
        Local { engine, identity }
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Whether this client's identity holds the global permission `permission` (`audit:read`,
    /// `gdpr:manage`), decided by the coordinator; a refusal is journaled like every other.
    pub async fn authorize(&self, permission: &str, action: &str, resource: &str) -> Result<(), Problem> {
        let decided = self
            .engine
            .query()
            .coordinator()
            .check_global(&self.identity, permission)
            .map_err(|d| EngineError::Denied(d.0));
        self.audited(action, resource.to_string(), decided).await
    }

    fn request(&self, task: NewTask) -> SubmitRequest {
        SubmitRequest::new(task.workflow, task.context, self.identity.clone())
    }

    /// Passes `result` on; a refusal (post 06: every authorization decision that denied
    /// something) is journaled first, with who asked, what and why. Every request of the CLI,
    /// the console and the API comes through here, so no refusal goes unrecorded; a task
    /// another team may not read answers "not found" and is not a refusal.
    async fn audited<T>(
        &self,
        action: &str,
        resource: String,
        result: Result<T, EngineError>,
    ) -> Result<T, Problem> {
        if let Err(e @ (EngineError::Denied(_) | EngineError::Unauthenticated(_))) = &result {
            self.journal_denial(action, resource, e).await;
        }
        Ok(result?)
    }

    async fn journal_denial(&self, action: &str, resource: String, e: &EngineError) {
        let namespace = resource
            .strip_prefix("workflow/")
            .and_then(|r| r.split('/').next())
            .map(str::to_string);
        let control = match e {
            EngineError::Unauthenticated(_) => "SOC2:CC6.2",
            _ => "SOC2:CC6.3",
        };
        let detail = format!(
            "{action}: {}",
            crate::telemetry::filter::scrub_text(&crate::model::clip(&e.to_string(), 300))
        );
        let record = crate::audit::AuditRecord {
            namespace,
            outcome: "denied".into(),
            compliance_tags: vec![control.into()],
            ..crate::audit::AuditRecord::new(
                self.engine.clock().now(),
                self.identity.sub.clone(),
                "authz.denied",
                resource,
                detail,
            )
        };
        if let Err(e) = self.engine.store().append_audit(vec![record]).await {
            tracing::warn!("cannot journal a refused request: {e}");
        }
    }
}

impl Local {
    /// A command's answer (the engine's task, personal values in clear) as this client's
    /// identity may see it: read back through the query side, which reveals per reader;
    /// without the right to read it, its header only.
    async fn for_reader(&self, task: Task) -> Task {
        let query = self.engine.query();
        if query.vault().is_none() || query.coordinator().may_read_pii(&self.identity) {
            return task;
        }
        match query.task(&self.identity, &task.id).await {
            Ok((shown, _)) => shown,
            Err(_) => Task {
                context: Value::Null,
                steps: task
                    .steps
                    .into_iter()
                    .map(|mut s| {
                        s.results = None;
                        s.last_error = None;
                        s.approval = None;
                        s
                    })
                    .collect(),
                ..task
            },
        }
    }
}

#[async_trait]
impl Client for Local {
    fn identity(&self) -> &Identity {
        &self.identity
    }

    fn endpoint(&self) -> Endpoint {
        Endpoint::InProcess
    }

    fn now(&self) -> Timestamp {
        self.engine.clock().now()
    }

    async fn catalog(&self) -> Result<Arc<Catalog>, Problem> {
        Ok(self.engine.catalog().clone())
    }

    async fn tasks(&self, query: &TaskQuery) -> Result<TaskPage, Problem> {
        let filter = TaskFilter {
            namespace: query.namespace.clone(),
            state: query.state,
            workflow: query.workflow.clone(),
            since: query.since,
            search: query.search.clone(),
        };
        let listed = self
            .engine
            .query()
            .tasks(
                &self.identity,
                &filter,
                query.cursor.as_deref(),
                query.limit.unwrap_or(DEFAULT_PAGE),
            )
            .await;
        let (tasks, next) = self.audited("tasks.list", "tasks".into(), listed).await?;
        Ok(TaskPage {
            tasks,
            next_cursor: next,
        })
    }

    async fn task(&self, id: &str) -> Result<TaskDetail, Problem> {
        let read = self.engine.query().task(&self.identity, id).await;
        let (task, transitions) = self.audited("task.read", format!("task/{id}"), read).await?;
        Ok(TaskDetail { task, transitions })
    }

    async fn submit(&self, task: NewTask) -> Result<Task, Problem> {
        let resource = format!("workflow/{}", task.workflow);
        let result = self.engine.submit(self.request(task)).await;
        let task = self.audited("task.submit", resource, result).await?;
        Ok(self.for_reader(task).await)
    }

    async fn submit_batch(&self, tasks: Vec<NewTask>) -> Result<Vec<BatchItem>, Problem> {
        if tasks.len() > MAX_BATCH {
            return Err(Problem::new(
                ErrorKind::Invalid,
                format!("a batch holds at most {MAX_BATCH} tasks, got {}", tasks.len()),
            )
            .with_field("tasks"));
        }
        // Sent together, so the engine stores them in one group (one flush).
        let workflows: Vec<String> = tasks.iter().map(|t| t.workflow.clone()).collect();
        let pending = tasks.into_iter().map(|t| self.engine.submit(self.request(t)));
        let results = futures::future::join_all(pending).await;
        let mut items = Vec::with_capacity(results.len());
        for (r, workflow) in results.into_iter().zip(workflows) {
            items.push(
                match self
                    .audited("task.submit", format!("workflow/{workflow}"), r)
                    .await
                {
                    Ok(task) => BatchItem::Created(Box::new(self.for_reader(task).await)),
                    Err(problem) => BatchItem::Failed(problem),
                },
            );
        }
        Ok(items)
    }

    async fn retry(&self, id: &str, reason: &str) -> Result<Task, Problem> {
        let result = self.engine.retry(id, &self.identity, reason).await;
        let task = self.audited("task.retry", format!("task/{id}"), result).await?;
        Ok(self.for_reader(task).await)
    }

    async fn retry_now(&self, id: &str, step: &str, reason: &str) -> Result<Task, Problem> {
        let result = self.engine.retry_now(id, step, &self.identity, reason).await;
        let task = self
            .audited("step.retry_now", format!("task/{id}/step/{step}"), result)
            .await?;
        Ok(self.for_reader(task).await)
    }

    async fn cancel(&self, id: &str, reason: &str) -> Result<Task, Problem> {
        let result = self.engine.cancel(id, &self.identity, reason).await;
        let task = self.audited("task.cancel", format!("task/{id}"), result).await?;
        Ok(self.for_reader(task).await)
    }

    async fn resolve(&self, id: &str, step: &str, results: Value, reason: &str) -> Result<Task, Problem> {
        let result = self
            .engine
            .resolve(id, step, results, &self.identity, reason)
            .await;
        let task = self
            .audited("step.resolve", format!("task/{id}/step/{step}"), result)
            .await?;
        Ok(self.for_reader(task).await)
    }

    async fn decide(
        &self,
        id: &str,
        step: &str,
        approve: bool,
        note: Option<String>,
    ) -> Result<Task, Problem> {
        let result = self.engine.decide(id, step, approve, &self.identity, note).await;
        let action = if approve { "step.approve" } else { "step.deny" };
        let task = self
            .audited(action, format!("task/{id}/step/{step}"), result)
            .await?;
        Ok(self.for_reader(task).await)
    }

    async fn approvals(&self) -> Result<Vec<PendingApproval>, Problem> {
        let result = self.engine.query().approvals(&self.identity).await;
        self.audited("approvals.read", "approvals".into(), result).await
    }

    async fn status(&self) -> Result<Status, Problem> {
        let result = self.engine.query().status(&self.identity).await;
        self.audited("health.read", "health/status".into(), result).await
    }

    async fn metrics_summary(&self) -> Result<crate::telemetry::recent::MetricsSummary, Problem> {
        let result = self.engine.query().metrics_summary(&self.identity);
        self.audited("metrics.read", "metrics/summary".into(), result)
            .await
    }

    async fn audit(&self, query: &super::AuditQuery) -> Result<Vec<crate::audit::AuditEntry>, Problem> {
        let result = self.engine.query().audit(&self.identity, query).await;
        self.audited("audit.read", "audit".into(), result).await
    }

    async fn events(&self, after: Option<u64>) -> Result<EventFeed, Problem> {
        let opened = self.engine.events(&self.identity, after).await;
        let events = self.audited("events.read", "events".into(), opened).await?;
        // An error (an identity that expired mid-stream) is delivered once and ends the feed.
        Ok(Box::pin(futures::stream::unfold(
            Some(events),
            |events| async move {
                let mut events = events?;
                match events.next().await {
                    Ok(Some(e)) => Some((Ok(e), Some(events))),
                    Ok(None) => None,
                    Err(e) => Some((Err(e.into()), None)),
                }
            },
        )))
    }
}
