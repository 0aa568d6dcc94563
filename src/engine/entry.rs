//! A task the orchestrator drives, with its step graph indexed so that each change costs what
//! it touches: a step's completion visits only its children (a count of unmet parents per
//! step), and the task's execution status comes from counts of steps per state, never from
//! a pass over every step. Without this a 4,000-wide fan-out spent most of its time looking
//! parents up by name on every completion (issue 10).

use crate::handlers::Results;
use crate::model::{ExecutionStatus, StepState, Task, TaskState, Timestamp};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

pub(super) struct Entry {
    /// The task, with its context moved out into `context` (one copy in memory; `snapshot`
    /// puts it back).
    pub task: Task,
    /// The task's context, shared with the handlers it runs.
    pub context: Arc<Value>,
    /// Per step: the indices of its children.
    pub children: Vec<Vec<u32>>,
    /// Per step: parents not yet complete or resolved.
    unmet: Vec<u32>,
    /// Steps per state (`StepState::ALL` order).
    by_state: [u32; StepState::ALL.len()],
    /// Pending steps whose parents are all done.
    ready: u32,
    /// Results of the steps that are complete or resolved: what a starting step reads.
    pub results: Results,
    /// The task's state and last change as last committed (`None` until its first commit).
    pub stored: Option<(TaskState, Timestamp)>,
    /// Seals the task's personal data in what is committed (`None`: it holds none, or the
    /// engine keeps no vault).
    pub sealer: Option<Arc<crate::privacy::Sealer>>,
}

fn slot(state: StepState) -> usize {
    StepState::ALL.iter().position(|s| *s == state).unwrap_or(0)
}

impl Entry {
    pub fn new(mut task: Task) -> Self {
        let context = Arc::new(std::mem::take(&mut task.context));
        let index: HashMap<&str, u32> = task
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.as_str(), i as u32))
            .collect();
        let n = task.steps.len();
        let mut children = vec![Vec::new(); n];
        let mut unmet = vec![0u32; n];
        for (i, step) in task.steps.iter().enumerate() {
            for parent in &step.depends_on {
                if let Some(&p) = index.get(parent.as_str()) {
                    children[p as usize].push(i as u32);
                    if !task.steps[p as usize].state.satisfies_dependency() {
                        unmet[i] += 1;
                    }
                }
            }
        }
        let mut entry = Entry {
            task,
            context,
            children,
            unmet,
            by_state: [0; StepState::ALL.len()],
            ready: 0,
            stored: None,
            sealer: None,
            results: Results::default(),
        };
        for i in 0..n {
            let step = &entry.task.steps[i];
            entry.by_state[slot(step.state)] += 1;
            if let (true, Some(r)) = (step.state.satisfies_dependency(), &step.results) {
                entry.results.insert(&step.name, r.clone());
            }
        }
        entry.ready = (0..n).filter(|&i| entry.is_ready(i)).count() as u32;
        entry
    }

    /// A task read from the store (its state and last change are what is stored).
    pub fn loaded(task: Task, sealer: Option<Arc<crate::privacy::Sealer>>) -> Self {
        let stored = Some((task.state, task.updated_at));
        Entry {
            stored,
            sealer,
            ..Entry::new(task)
        }
    }

    /// The task as a whole (context included), for replies.
    pub fn snapshot(&self) -> Task {
        let mut task = self.task.clone();
        task.context = (*self.context).clone();
        task
    }

    /// Whether step `i` may start now: pending, with every parent complete or resolved.
    pub fn is_ready(&self, i: usize) -> bool {
        self.task.steps[i].state == StepState::Pending && self.unmet[i] == 0
    }

    /// Indices of the steps that may start now.
    pub fn ready_steps(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.task.steps.len()).filter(|&i| self.is_ready(i))
    }

    /// Children of step `i` that became ready (call after `i` completed).
    pub fn ready_children(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        self.children[i]
            .iter()
            .map(|&c| c as usize)
            .filter(|&c| self.is_ready(c))
    }

    /// Moves step `i` to `to`, keeping the counts: the only way a held step's state changes.
    pub fn set_state(&mut self, i: usize, to: StepState) {
        let from = self.task.steps[i].state;
        if from == to {
            return;
        }
        let was_ready = self.is_ready(i);
        self.by_state[slot(from)] -= 1;
        self.by_state[slot(to)] += 1;
        self.task.steps[i].state = to;
        if self.is_ready(i) != was_ready {
            self.adjust_ready(!was_ready);
        }
        let (before, after) = (from.satisfies_dependency(), to.satisfies_dependency());
        if after {
            let step = &self.task.steps[i];
            match &step.results {
                Some(r) => self.results.insert(&step.name, r.clone()),
                None => self.results.remove(&step.name),
            }
        } else if before {
            self.results.remove(&self.task.steps[i].name);
        }
        if before == after {
            return;
        }
        for k in 0..self.children[i].len() {
            let c = self.children[i][k] as usize;
            let was_ready = self.is_ready(c);
            if after {
                self.unmet[c] = self.unmet[c].saturating_sub(1);
            } else {
                self.unmet[c] = self.unmet[c].saturating_add(1);
            }
            if self.is_ready(c) != was_ready {
                self.adjust_ready(!was_ready);
            }
        }
    }

    fn adjust_ready(&mut self, up: bool) {
        if up {
            self.ready += 1;
        } else {
            self.ready = self.ready.saturating_sub(1);
        }
    }

    fn count(&self, state: StepState) -> u32 {
        self.by_state[slot(state)]
    }

    /// Where the task stands (Tasker's finalizer order; see `ExecutionStatus`), from counts.
    pub fn execution_status(&self) -> ExecutionStatus {
        use StepState::*;
        if self.ready > 0 {
            return ExecutionStatus::HasReadySteps;
        }
        if self.count(InProgress) + self.count(WaitingForRetry) + self.count(WaitingForChild) > 0 {
            return ExecutionStatus::Processing;
        }
        if self.count(AwaitingApproval) > 0 {
            return ExecutionStatus::AwaitingDecision;
        }
        if self.count(Error) > 0 {
            return ExecutionStatus::BlockedByFailures;
        }
        if (self.count(Complete) + self.count(ResolvedManually)) as usize == self.task.steps.len() {
            return ExecutionStatus::AllComplete;
        }
        ExecutionStatus::Stalled
    }

    /// Indices of every step downstream of step `i`.
    pub fn descendants(&self, i: usize) -> Vec<usize> {
        let edges = &self.children;
        let mut seen = vec![false; self.task.steps.len()];
        let mut out = Vec::new();
        let mut stack: Vec<u32> = edges[i].clone();
        while let Some(s) = stack.pop() {
            let s = s as usize;
            if std::mem::replace(&mut seen[s], true) {
                continue;
            }
            out.push(s);
            stack.extend(edges[s].iter().copied());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Step;

    fn task(steps: Vec<Step>) -> Task {
        Task {
            id: "t".into(),
            namespace: "ns".into(),
            name: "w".into(),
            version: "1.0.0".into(),
            state: crate::model::TaskState::Pending,
            context: serde_json::json!({"a": 1}),
            initiator: "me".into(),
            created_at: 0,
            updated_at: 0,
            steps,
            parent: None,
            correlation_id: None,
            origin_key: None,
            traceparent: None,
            classification: Default::default(),
            seq: 0,
            search_terms: Vec::new(),
        }
    }

    fn diamond() -> Task {
        task(vec![
            Step::new("a", "h", vec![]),
            Step::new("b", "h", vec!["a".into()]),
            Step::new("c", "h", vec!["a".into()]),
            Step::new("d", "h", vec!["b".into(), "c".into()]),
        ])
    }

    #[test]
    fn counts_agree_with_the_model_through_every_change() {
        let mut e = Entry::new(diamond());
        let check = |e: &Entry| {
            let t = e.snapshot();
            assert_eq!(e.execution_status(), t.execution_status());
            assert_eq!(e.ready_steps().collect::<Vec<_>>(), t.ready_steps());
        };
        check(&e);
        use StepState::*;
        for (i, to) in [
            (0, InProgress),
            (0, Complete),
            (1, InProgress),
            (2, InProgress),
            (1, Complete),
            (2, Error),
            (2, Pending),
            (2, InProgress),
            (2, Complete),
            (3, InProgress),
            (3, WaitingForRetry),
            (3, Pending),
            (0, Pending),
            (0, ResolvedManually),
            (3, InProgress),
            (3, Complete),
        ] {
            e.set_state(i, to);
            check(&e);
        }
        assert_eq!(e.execution_status(), ExecutionStatus::AllComplete);
    }

    #[test]
    fn done_results_are_kept_and_descendants_found() {
        let mut t = diamond();
        for (i, s) in t.steps.iter_mut().enumerate().take(3) {
            s.state = StepState::Complete;
            s.results = Some(serde_json::json!(i));
        }
        let e = Entry::new(t);
        assert_eq!(e.task.context, Value::Null);
        assert_eq!(e.snapshot().context, serde_json::json!({"a": 1}));
        assert_eq!(e.results.to_json(), serde_json::json!({"a": 0, "b": 1, "c": 2}));
        let mut e = e;
        e.set_state(2, StepState::Pending);
        assert_eq!(e.results.to_json(), serde_json::json!({"a": 0, "b": 1}));
        let mut d = e.descendants(0);
        d.sort();
        assert_eq!(d, [1, 2, 3]);
    }
}
