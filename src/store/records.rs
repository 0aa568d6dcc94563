//! The records every backend writes for a task: its header (everything but its steps and
//! context, rewritten when the task changes) and its plan (the step definitions, written once
//! at creation). Both are JSON.

use crate::model::{RetryPolicy, Step, Task, TaskState, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A task without its steps and context: what listings, filters and read permissions need.
/// Rewritten on every commit that changes the task, so it stays small.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Header {
    pub id: String,
    pub namespace: String,
    pub name: String,
    pub version: String,
    pub state: TaskState,
    pub initiator: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    #[serde(default)]
    pub classification: crate::workflow::classification::Classification,
    /// The last transition this header (and the step records written with it) includes.
    pub seq: u64,
}

impl Header {
    pub fn of(task: &Task) -> Self {
        Header {
            id: task.id.clone(),
            namespace: task.namespace.clone(),
            name: task.name.clone(),
            version: task.version.clone(),
            state: task.state,
            initiator: task.initiator.clone(),
            created_at: task.created_at,
            updated_at: task.updated_at,
            parent: task.parent.clone(),
            correlation_id: task.correlation_id.clone(),
            origin_key: task.origin_key.clone(),
            traceparent: task.traceparent.clone(),
            classification: task.classification,
            seq: task.seq,
        }
    }

    pub fn into_task(self, steps: Vec<Step>, context: Value) -> Task {
        Task {
            id: self.id,
            namespace: self.namespace,
            name: self.name,
            version: self.version,
            state: self.state,
            context,
            initiator: self.initiator,
            created_at: self.created_at,
            updated_at: self.updated_at,
            steps,
            parent: self.parent,
            correlation_id: self.correlation_id,
            origin_key: self.origin_key,
            traceparent: self.traceparent,
            classification: self.classification,
            seq: self.seq,
            search_terms: Vec::new(),
        }
    }
}

/// A step's definition, fixed at submit time (the template's, as the workflow's hook left it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StepDef {
    pub name: String,
    pub handler: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    pub retry: RetryPolicy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "is_empty_object")]
    pub handler_config: Value,
    pub idempotency_key: String,
}

fn is_empty_object(v: &Value) -> bool {
    v.as_object().is_some_and(|m| m.is_empty())
}

impl StepDef {
    pub fn of(step: &Step) -> Self {
        StepDef {
            name: step.name.clone(),
            handler: step.handler.clone(),
            depends_on: step.depends_on.clone(),
            retry: step.retry.clone(),
            timeout_ms: step.timeout_ms,
            handler_config: step.handler_config.clone(),
            idempotency_key: step.idempotency_key.clone(),
        }
    }

    /// The step as defined, before it ever ran.
    pub fn into_step(self) -> Step {
        Step {
            retry: self.retry,
            timeout_ms: self.timeout_ms,
            handler_config: if self.handler_config.is_null() {
                Value::Object(Default::default())
            } else {
                self.handler_config
            },
            idempotency_key: self.idempotency_key,
            ..Step::new(&self.name, &self.handler, self.depends_on)
        }
    }
}
