//! What a task can do next, derived from its steps' states (Tasker's readiness rules, with
//! backoff expressed as the `waiting_for_retry` state instead of a timestamp comparison).

use super::{StepState, Task};

/// Where a task stands, in the order Tasker's finalizer checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutionStatus {
    /// Some step can start now.
    HasReadySteps,
    /// Nothing can start, but a step is running, backing off or waiting on a task it created.
    Processing,
    /// Nothing runs or backs off: the task waits on a person's decision.
    AwaitingDecision,
    /// A step is in error and nothing else can run.
    BlockedByFailures,
    AllComplete,
    /// Cancelled steps (or a task with no work left) that is neither complete nor failed.
    Stalled,
}

impl Task {
    /// Indices of the steps that may start now: pending, with every parent complete/resolved.
    pub fn ready_steps(&self) -> Vec<usize> {
        (0..self.steps.len()).filter(|&i| self.is_ready(i)).collect()
    }

    pub fn is_ready(&self, index: usize) -> bool {
        let step = &self.steps[index];
        step.state == StepState::Pending
            && step
                .depends_on
                .iter()
                .all(|parent| self.step(parent).is_some_and(|p| p.state.satisfies_dependency()))
    }

    pub fn execution_status(&self) -> ExecutionStatus {
        if self.steps.iter().any(|s| s.state == StepState::Pending) && !self.ready_steps().is_empty() {
            return ExecutionStatus::HasReadySteps;
        }
        if self.steps.iter().any(|s| {
            matches!(
                s.state,
                StepState::InProgress | StepState::WaitingForRetry | StepState::WaitingForChild
            )
        }) {
            return ExecutionStatus::Processing;
        }
        if self.steps.iter().any(|s| s.state == StepState::AwaitingApproval) {
            return ExecutionStatus::AwaitingDecision;
        }
        if self.steps.iter().any(|s| s.state == StepState::Error) {
            return ExecutionStatus::BlockedByFailures;
        }
        if self.steps.iter().all(|s| s.state.satisfies_dependency()) {
            return ExecutionStatus::AllComplete;
        }
        ExecutionStatus::Stalled
    }

    /// Tasker's health word: `healthy` (no failures), `recovering` (failures, but retries or
    /// other work remain), `blocked` (failed and nothing can run).
    pub fn health(&self) -> &'static str {
        let failing = self
            .steps
            .iter()
            .any(|s| matches!(s.state, StepState::Error | StepState::WaitingForRetry));
        match (failing, self.execution_status()) {
            (false, _) => "healthy",
            (true, ExecutionStatus::BlockedByFailures) => "blocked",
            (true, _) => "recovering",
        }
    }
}
