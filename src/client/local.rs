//! The in-process client: calls the engine directly. The API server answers each request
//! through one of these (bound to the caller's identity), so local and remote behave alike.

use super::{
    BatchItem, Client, Endpoint, EventFeed, NewTask, Problem, TaskDetail, TaskPage, TaskQuery, DEFAULT_PAGE,
    MAX_BATCH,
};
use crate::auth::Identity;
use crate::engine::{Engine, ErrorKind, PendingApproval, Status, SubmitRequest, TaskFilter};
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

    fn request(&self, task: NewTask) -> SubmitRequest {
        SubmitRequest::new(task.workflow, task.context, self.identity.clone())
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
        };
        let (tasks, next) = self
            .engine
            .query()
            .tasks(
                &self.identity,
                &filter,
                query.cursor.as_deref(),
                query.limit.unwrap_or(DEFAULT_PAGE),
            )
            .await?;
        Ok(TaskPage {
            tasks,
            next_cursor: next,
        })
    }

    async fn task(&self, id: &str) -> Result<TaskDetail, Problem> {
        let (task, transitions) = self.engine.query().task(&self.identity, id).await?;
        Ok(TaskDetail { task, transitions })
    }

    async fn submit(&self, task: NewTask) -> Result<Task, Problem> {
        Ok(self.engine.submit(self.request(task)).await?)
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
        let pending = tasks.into_iter().map(|t| self.engine.submit(self.request(t)));
        Ok(futures::future::join_all(pending)
            .await
            .into_iter()
            .map(|r| match r {
                Ok(task) => BatchItem::Created(Box::new(task)),
                Err(e) => BatchItem::Failed(e.into()),
            })
            .collect())
    }

    async fn retry(&self, id: &str, reason: &str) -> Result<Task, Problem> {
        Ok(self.engine.retry(id, &self.identity, reason).await?)
    }

    async fn cancel(&self, id: &str, reason: &str) -> Result<Task, Problem> {
        Ok(self.engine.cancel(id, &self.identity, reason).await?)
    }

    async fn resolve(&self, id: &str, step: &str, results: Value, reason: &str) -> Result<Task, Problem> {
        Ok(self
            .engine
            .resolve(id, step, results, &self.identity, reason)
            .await?)
    }

    async fn decide(
        &self,
        id: &str,
        step: &str,
        approve: bool,
        note: Option<String>,
    ) -> Result<Task, Problem> {
        Ok(self
            .engine
            .decide(id, step, approve, &self.identity, note)
            .await?)
    }

    async fn approvals(&self) -> Result<Vec<PendingApproval>, Problem> {
        Ok(self.engine.query().approvals(&self.identity).await?)
    }

    async fn status(&self) -> Result<Status, Problem> {
        Ok(self.engine.query().status(&self.identity).await?)
    }

    async fn metrics_summary(&self) -> Result<crate::telemetry::recent::MetricsSummary, Problem> {
        Ok(self.engine.query().metrics_summary(&self.identity)?)
    }

    async fn events(&self, after: Option<u64>) -> Result<EventFeed, Problem> {
        let events = self.engine.events(&self.identity, after).await?;
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
