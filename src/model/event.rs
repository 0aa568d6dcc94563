//! Engine events: typed lifecycle events with Tasker's names, plus custom events that
//! handlers publish. Each is stored with the transitions of its commit under a durable,
//! per-store sequence number, so a subscriber that reconnects resumes where it stopped.

use super::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Event names (Tasker's vocabulary where it has one).
pub mod names {
    pub const TASK_CREATED: &str = "task.created";
    pub const TASK_STARTED: &str = "task.started";
    pub const TASK_COMPLETED: &str = "task.completed";
    pub const TASK_FAILED: &str = "task.failed";
    pub const TASK_CANCELLED: &str = "task.cancelled";
    pub const TASK_RETRY_REQUESTED: &str = "task.retry_requested";
    pub const TASK_RESOLVED_MANUALLY: &str = "task.resolved_manually";
    pub const STEP_EXECUTION_REQUESTED: &str = "step.execution_requested";
    pub const STEP_COMPLETED: &str = "step.completed";
    pub const STEP_FAILED: &str = "step.failed";
    pub const STEP_RETRY_SCHEDULED: &str = "step.retry_scheduled";
    pub const STEP_RETRY_REQUESTED: &str = "step.retry_requested";
    pub const STEP_RECOVERED: &str = "step.recovered";
    pub const STEP_AWAITING_APPROVAL: &str = "step.awaiting_approval";
    pub const STEP_WAITING_FOR_CHILD: &str = "step.waiting_for_child";
    pub const STEP_CANCELLED: &str = "step.cancelled";
    pub const STEP_RESOLVED_MANUALLY: &str = "step.resolved_manually";
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Event {
    /// The store's event sequence number: increases by one per event, durable across
    /// restarts, so a client resumes a stream after the last number it saw
    /// (`GET /v1/events?after=SEQ`).
    pub seq: u64,
    pub at: Timestamp,
    pub name: String,
    pub task_id: String,
    /// `namespace/name@version`.
    pub workflow: String,
    pub step: Option<String>,
    /// True for events published by handlers rather than by the engine.
    pub custom: bool,
    pub payload: Value,
}

/// Seconds as people read them: `850ms`, `15.0s`.
fn seconds(s: f64) -> String {
    if s < 1.0 {
        format!("{:.0}ms", s * 1000.0)
    } else {
        format!("{s:.1}s")
    }
}

impl Event {
    /// One line for people: time, short task id, name, workflow and step, and the detail
    /// that matters for this kind of event.
    pub fn line(&self) -> String {
        let time = super::format_timestamp(self.at);
        let time = time.get(11..23).unwrap_or(&time);
        let subject = match &self.step {
            Some(step) => format!("{} {}", self.workflow, step),
            None => self.workflow.clone(),
        };
        let p = &self.payload;
        let detail = match self.name.as_str() {
            names::STEP_FAILED => format!(
                "{} {}",
                p["error"]["kind"].as_str().unwrap_or(""),
                p["error"]["message"].as_str().unwrap_or("")
            ),
            names::STEP_RETRY_SCHEDULED => format!(
                "attempt {} in {:.1}s ({})",
                p["next_attempt"],
                p["delay_ms"].as_u64().unwrap_or(0) as f64 / 1000.0,
                p["backoff_type"].as_str().unwrap_or("")
            ),
            "business.performance.bottleneck" if !self.custom => format!(
                "{} > {} ({:.1}× slower, attempt {})",
                seconds(p["duration_seconds"].as_f64().unwrap_or(0.0)),
                seconds(p["threshold_seconds"].as_f64().unwrap_or(0.0)),
                p["degradation_factor"].as_f64().unwrap_or(0.0),
                p["attempt"]
            ),
            "performance.sla.violation" if !self.custom => format!(
                "took {:.1}s, SLA {}s",
                p["duration_seconds"].as_f64().unwrap_or(0.0),
                p["sla_seconds"]
            ),
            "business.inventory.failure" if !self.custom => format!(
                "CRITICAL oversell risk ({})",
                p["error_type"].as_str().unwrap_or("other")
            ),
            _ if self.custom => p.to_string(),
            _ => p["reason"].as_str().unwrap_or("").to_string(),
        };
        format!(
            "{time} {} {:<26} {subject} {detail}",
            super::short_id(&self.task_id),
            self.name
        )
        .trim_end()
        .to_string()
    }
}
