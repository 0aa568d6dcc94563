//! Task and step states and the pure transition functions (design.md, "States").
//!
//! `step_transition` and `task_transition` are the only places that decide whether a change of
//! state is legal; the orchestrator calls them for every change it makes.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    Pending,
    InProgress,
    Complete,
    Error,
    Cancelled,
    ResolvedManually,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    Pending,
    InProgress,
    WaitingForRetry,
    AwaitingApproval,
    /// The step delegated work to another task and waits, durably, for it to end.
    WaitingForChild,
    Complete,
    Error,
    Cancelled,
    ResolvedManually,
}

impl TaskState {
    pub const ALL: [TaskState; 6] = [
        TaskState::Pending,
        TaskState::InProgress,
        TaskState::Complete,
        TaskState::Error,
        TaskState::Cancelled,
        TaskState::ResolvedManually,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::InProgress => "in_progress",
            TaskState::Complete => "complete",
            TaskState::Error => "error",
            TaskState::Cancelled => "cancelled",
            TaskState::ResolvedManually => "resolved_manually",
        }
    }

    /// No event leaves a terminal state.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Complete | TaskState::Cancelled | TaskState::ResolvedManually
        )
    }

    /// States the engine still drives on its own (as opposed to waiting on an operator).
    pub fn is_active(self) -> bool {
        matches!(self, TaskState::Pending | TaskState::InProgress)
    }
}

impl StepState {
    pub const ALL: [StepState; 9] = [
        StepState::Pending,
        StepState::InProgress,
        StepState::WaitingForRetry,
        StepState::AwaitingApproval,
        StepState::WaitingForChild,
        StepState::Complete,
        StepState::Error,
        StepState::Cancelled,
        StepState::ResolvedManually,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StepState::Pending => "pending",
            StepState::InProgress => "in_progress",
            StepState::WaitingForRetry => "waiting_for_retry",
            StepState::AwaitingApproval => "awaiting_approval",
            StepState::WaitingForChild => "waiting_for_child",
            StepState::Complete => "complete",
            StepState::Error => "error",
            StepState::Cancelled => "cancelled",
            StepState::ResolvedManually => "resolved_manually",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            StepState::Complete | StepState::Cancelled | StepState::ResolvedManually
        )
    }

    /// A parent in one of these states lets its children run.
    pub fn satisfies_dependency(self) -> bool {
        matches!(self, StepState::Complete | StepState::ResolvedManually)
    }
}

macro_rules! display_and_parse {
    ($ty:ident, $what:literal) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|state| state.as_str() == s)
                    .ok_or_else(|| {
                        let names: Vec<_> = Self::ALL.iter().map(|s| s.as_str()).collect();
                        format!(
                            "unknown {} state `{}`; expected one of: {}",
                            $what,
                            s,
                            names.join(", ")
                        )
                    })
            }
        }
    };
}
display_and_parse!(TaskState, "task");
display_and_parse!(StepState, "step");

/// What can happen to a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepEvent {
    /// The scheduler hands the step to its handler (a new attempt).
    Start,
    /// The handler returned results.
    Succeed,
    /// The handler failed. `retry` is true when the error is retryable, the step is retryable
    /// and attempts remain; otherwise the step goes to `error`.
    Fail {
        retry: bool,
    },
    /// The backoff deadline passed.
    RetryDue,
    /// The handler asked a person to decide.
    AwaitApproval,
    /// The handler created a task to do its work and waits for it.
    AwaitChild,
    /// The awaited task completed (or was resolved by hand).
    ChildSucceeded,
    /// The awaited task failed or was cancelled.
    ChildFailed,
    Approve,
    /// Denied or expired.
    Deny,
    /// An operator gave the step a fresh attempt budget, or a restart found it interrupted.
    Reset,
    /// An operator supplied results by hand.
    Resolve,
    Cancel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskEvent {
    Start,
    Complete,
    Fail,
    /// An operator retried a task in error.
    Retry,
    /// An operator declared a failed task resolved.
    Resolve,
    Cancel,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("illegal transition: {entity} in state `{from}` cannot take `{event}`")]
pub struct IllegalTransition {
    pub entity: &'static str,
    pub from: String,
    pub event: String,
}

/// The step state machine. Pure: same input, same answer.
pub fn step_transition(from: StepState, event: StepEvent) -> Result<StepState, IllegalTransition> {
    use StepEvent as E;
    use StepState as S;
    let to = match (from, event) {
        (S::Pending, E::Start) => S::InProgress,
        (S::InProgress, E::Succeed) => S::Complete,
        (S::InProgress, E::Fail { retry: true }) => S::WaitingForRetry,
        (S::InProgress, E::Fail { retry: false }) => S::Error,
        (S::InProgress, E::AwaitApproval) => S::AwaitingApproval,
        (S::InProgress, E::AwaitChild) => S::WaitingForChild,
        (S::WaitingForChild, E::ChildSucceeded) => S::Complete,
        (S::WaitingForChild, E::ChildFailed) => S::Error,
        (S::InProgress, E::Reset) => S::Pending,
        (S::WaitingForRetry, E::RetryDue) => S::Pending,
        (S::AwaitingApproval, E::Approve) => S::Complete,
        (S::AwaitingApproval, E::Deny) => S::Error,
        (S::Error, E::Reset) => S::Pending,
        (S::Error | S::Pending, E::Resolve) => S::ResolvedManually,
        (
            S::Pending
            | S::InProgress
            | S::WaitingForRetry
            | S::AwaitingApproval
            | S::WaitingForChild
            | S::Error,
            E::Cancel,
        ) => S::Cancelled,
        _ => {
            return Err(IllegalTransition {
                entity: "step",
                from: from.to_string(),
                event: format!("{event:?}"),
            })
        }
    };
    Ok(to)
}

/// The task state machine. Pure.
pub fn task_transition(from: TaskState, event: TaskEvent) -> Result<TaskState, IllegalTransition> {
    use TaskEvent as E;
    use TaskState as S;
    let to = match (from, event) {
        (S::Pending, E::Start) => S::InProgress,
        (S::InProgress, E::Complete) => S::Complete,
        (S::Pending | S::InProgress, E::Fail) => S::Error,
        (S::Error, E::Retry) => S::Pending,
        (S::Error, E::Resolve) => S::ResolvedManually,
        (S::Pending | S::InProgress | S::Error, E::Cancel) => S::Cancelled,
        _ => {
            return Err(IllegalTransition {
                entity: "task",
                from: from.to_string(),
                event: format!("{event:?}"),
            })
        }
    };
    Ok(to)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn step_event() -> impl Strategy<Value = StepEvent> {
        prop_oneof![
            Just(StepEvent::Start),
            Just(StepEvent::Succeed),
            any::<bool>().prop_map(|retry| StepEvent::Fail { retry }),
            Just(StepEvent::RetryDue),
            Just(StepEvent::AwaitApproval),
            Just(StepEvent::AwaitChild),
            Just(StepEvent::ChildSucceeded),
            Just(StepEvent::ChildFailed),
            Just(StepEvent::Approve),
            Just(StepEvent::Deny),
            Just(StepEvent::Reset),
            Just(StepEvent::Resolve),
            Just(StepEvent::Cancel),
        ]
    }

    fn task_event() -> impl Strategy<Value = TaskEvent> {
        prop_oneof![
            Just(TaskEvent::Start),
            Just(TaskEvent::Complete),
            Just(TaskEvent::Fail),
            Just(TaskEvent::Retry),
            Just(TaskEvent::Resolve),
            Just(TaskEvent::Cancel),
        ]
    }

    /// The legal step edges of design.md, written out independently of `step_transition`.
    fn legal_step_edge(from: StepState, to: StepState) -> bool {
        use StepState::*;
        matches!(
            (from, to),
            (Pending, InProgress)
                | (InProgress, Complete)
                | (InProgress, WaitingForRetry)
                | (InProgress, Error)
                | (InProgress, AwaitingApproval)
                | (InProgress, WaitingForChild)
                | (WaitingForChild, Complete)
                | (WaitingForChild, Error)
                | (InProgress, Pending)
                | (WaitingForRetry, Pending)
                | (AwaitingApproval, Complete)
                | (AwaitingApproval, Error)
                | (Error, Pending)
                | (Error, ResolvedManually)
                | (Pending, ResolvedManually)
        ) || (to == Cancelled && !from.is_terminal())
    }

    fn legal_task_edge(from: TaskState, to: TaskState) -> bool {
        use TaskState::*;
        matches!(
            (from, to),
            (Pending, InProgress)
                | (InProgress, Complete)
                | (Pending, Error)
                | (InProgress, Error)
                | (Error, Pending)
                | (Error, ResolvedManually)
        ) || (to == Cancelled && !from.is_terminal())
    }

    proptest! {
        #[test]
        fn step_sequences_only_take_legal_edges(events in proptest::collection::vec(step_event(), 0..64)) {
            let mut state = StepState::Pending;
            for event in events {
                match step_transition(state, event) {
                    Ok(next) => {
                        prop_assert!(!state.is_terminal(), "left terminal {state} by {event:?}");
                        prop_assert!(legal_step_edge(state, next), "{state} -> {next} by {event:?}");
                        state = next;
                    }
                    Err(err) => prop_assert_eq!(err.from, state.to_string()),
                }
            }
        }

        #[test]
        fn task_sequences_only_take_legal_edges(events in proptest::collection::vec(task_event(), 0..64)) {
            let mut state = TaskState::Pending;
            for event in events {
                if let Ok(next) = task_transition(state, event) {
                    prop_assert!(!state.is_terminal(), "left terminal {state} by {event:?}");
                    prop_assert!(legal_task_edge(state, next), "{state} -> {next} by {event:?}");
                    state = next;
                }
            }
        }

        #[test]
        fn terminal_states_reject_every_event(event in step_event(), tevent in task_event()) {
            for state in StepState::ALL.into_iter().filter(|s| s.is_terminal()) {
                prop_assert!(step_transition(state, event).is_err());
            }
            for state in TaskState::ALL.into_iter().filter(|s| s.is_terminal()) {
                prop_assert!(task_transition(state, tevent).is_err());
            }
        }
    }

    #[test]
    fn permanent_failure_goes_straight_to_error() {
        assert_eq!(
            step_transition(StepState::InProgress, StepEvent::Fail { retry: false }),
            Ok(StepState::Error)
        );
    }

    #[test]
    fn states_parse_from_their_names() {
        for s in StepState::ALL {
            assert_eq!(s.as_str().parse::<StepState>(), Ok(s));
        }
        let err = "done".parse::<TaskState>().unwrap_err();
        assert!(err.contains("expected one of: pending, in_progress"), "{err}");
    }
}
