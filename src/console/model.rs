//! The console's view model: what the screens show, kept up to date incrementally from task
//! snapshots and events that the feeder delivers. Rendering reads only this; it never waits on
//! the engine or the store.

use crate::engine::Event;
use crate::model::{StepState, Task, TaskState, Timestamp, Transition};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

/// How many events the events pane keeps.
pub const EVENT_HISTORY: usize = 2_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortKey {
    #[default]
    Age,
    Workflow,
    State,
    Progress,
    Health,
}

impl SortKey {
    pub fn next(self) -> SortKey {
        match self {
            SortKey::Age => SortKey::Workflow,
            SortKey::Workflow => SortKey::State,
            SortKey::State => SortKey::Progress,
            SortKey::Progress => SortKey::Health,
            SortKey::Health => SortKey::Age,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            SortKey::Age => "age",
            SortKey::Workflow => "workflow",
            SortKey::State => "state",
            SortKey::Progress => "progress",
            SortKey::Health => "health",
        }
    }
}

/// Which tasks the table shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskFilter {
    /// Words that must all match a task's id, workflow, state, health or an indexed context
    /// field it shows (ticket, customer, order or correlation id).
    pub text: String,
    pub state: Option<TaskState>,
    pub namespace: Option<String>,
    /// Only tasks created at or after this time (`:since 2h`; ms since the Unix epoch).
    pub since: Option<Timestamp>,
}

impl TaskFilter {
    pub fn matches(&self, task: &Task) -> bool {
        if self.state.is_some_and(|s| s != task.state) {
            return false;
        }
        if self.namespace.as_ref().is_some_and(|ns| ns != &task.namespace) {
            return false;
        }
        if self.since.is_some_and(|s| task.created_at < s) {
            return false;
        }
        let workflow = task.workflow_ref().to_lowercase();
        self.text.split_whitespace().all(|word| {
            let needle = word.to_lowercase();
            task.id.contains(&needle)
                || workflow.contains(&needle)
                || task.state.as_str().contains(&needle)
                || task.health().contains(&needle)
                || task
                    .correlation_id
                    .as_ref()
                    .is_some_and(|c| c.to_lowercase().contains(&needle))
                || crate::engine::search::INDEXED_FIELDS
                    .iter()
                    .any(|f| match &task.context[*f] {
                        serde_json::Value::String(s) => s.to_lowercase().contains(&needle),
                        serde_json::Value::Number(n) => n.to_string() == needle,
                        _ => false,
                    })
        })
    }
}

/// Engine-wide counts for the header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub running: usize,
    pub waiting_for_retry: usize,
    pub awaiting_approval: usize,
}

impl Counts {
    fn of(task: &Task) -> Counts {
        let mut c = Counts::default();
        for s in &task.steps {
            match s.state {
                StepState::InProgress => c.running += 1,
                StepState::WaitingForRetry => c.waiting_for_retry += 1,
                StepState::AwaitingApproval => c.awaiting_approval += 1,
                _ => {}
            }
        }
        c
    }

    fn add(&mut self, other: Counts, sign: isize) {
        let apply = |a: &mut usize, b: usize| *a = (*a as isize + sign * b as isize).max(0) as usize;
        apply(&mut self.running, other.running);
        apply(&mut self.waiting_for_retry, other.waiting_for_retry);
        apply(&mut self.awaiting_approval, other.awaiting_approval);
    }
}

/// One workflow of the catalog, for the namespaces pane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowEntry {
    pub namespace: String,
    pub name: String,
    pub versions: Vec<String>,
}

#[derive(Default)]
pub struct ViewModel {
    tasks: HashMap<String, Arc<Task>>,
    /// Task ids oldest first (UUIDv7 ids sort by creation time).
    ids: Vec<String>,
    counts: Counts,
    /// Task counts by state, per namespace.
    by_namespace: BTreeMap<String, [usize; 6]>,
    /// Tasks in error, with when they failed, for "failed in the last hour".
    failed: HashMap<String, Timestamp>,
    /// Tasks with a step waiting for a person, for the approvals inbox.
    awaiting: std::collections::BTreeSet<String>,
    /// Parent id → the ids of the tasks it created that are held, in id (creation) order.
    children: HashMap<String, std::collections::BTreeSet<String>>,
    pub events: VecDeque<Arc<Event>>,
    /// The transition log of the task the operator is looking at.
    pub transitions: Option<(String, Vec<Transition>)>,
    pub workflows: Vec<WorkflowEntry>,
    /// Bumped on every change to tasks, so views can cache what they derive.
    pub generation: u64,
    /// The store holds tasks older than the oldest loaded (moving down past the last row
    /// loads the next page).
    pub more_older: bool,
}

/// The most finished tasks the console holds; past it the oldest are let go (the store keeps
/// them, and paging or a search brings them back), so a console left open all day stays small.
pub const MAX_FINISHED_HELD: usize = 5_000;

fn state_index(state: TaskState) -> usize {
    TaskState::ALL.iter().position(|s| *s == state).unwrap_or(0)
}

impl ViewModel {
    pub fn new(workflows: Vec<WorkflowEntry>) -> Self {
        let mut vm = ViewModel {
            workflows,
            ..ViewModel::default()
        };
        for w in &vm.workflows {
            vm.by_namespace.entry(w.namespace.clone()).or_default();
        }
        vm
    }

    /// Adds or replaces a task snapshot, adjusting the counts by the difference.
    pub fn upsert(&mut self, task: Task) {
        self.generation += 1;
        if let Some(old) = self.tasks.get(&task.id) {
            if old.updated_at > task.updated_at {
                return; // an older snapshot arriving late
            }
            self.counts.add(Counts::of(old), -1);
            if let Some(c) = self.by_namespace.get_mut(&old.namespace) {
                c[state_index(old.state)] = c[state_index(old.state)].saturating_sub(1);
            }
        } else {
            // Ids are time-ordered; new tasks almost always go at the end.
            let at = self.ids.partition_point(|id| id.as_str() < task.id.as_str());
            self.ids.insert(at, task.id.clone());
        }
        self.counts.add(Counts::of(&task), 1);
        self.by_namespace.entry(task.namespace.clone()).or_default()[state_index(task.state)] += 1;
        if task.state == TaskState::Error {
            self.failed.insert(task.id.clone(), task.updated_at);
        } else {
            self.failed.remove(&task.id);
        }
        if task.steps.iter().any(|s| s.state == StepState::AwaitingApproval) {
            self.awaiting.insert(task.id.clone());
        } else {
            self.awaiting.remove(&task.id);
        }
        if let Some(parent) = &task.parent {
            self.children
                .entry(parent.clone())
                .or_default()
                .insert(task.id.clone());
        }
        self.tasks.insert(task.id.clone(), Arc::new(task));
        if self.tasks.len() > MAX_FINISHED_HELD + MAX_FINISHED_HELD / 10 {
            self.let_go_of_old_finished();
        }
    }

    /// Drops the oldest finished tasks until at most `MAX_FINISHED_HELD` tasks are held
    /// (unfinished ones and those waiting on a person always stay).
    fn let_go_of_old_finished(&mut self) {
        let mut excess = self.tasks.len().saturating_sub(MAX_FINISHED_HELD);
        let mut gone = std::collections::HashSet::new();
        for id in &self.ids {
            if excess == 0 {
                break;
            }
            let Some(task) = self.tasks.get(id) else { continue };
            if task.state.is_active() || self.awaiting.contains(id) {
                continue;
            }
            gone.insert(id.clone());
            excess -= 1;
        }
        for id in &gone {
            if let Some(old) = self.tasks.remove(id) {
                self.counts.add(Counts::of(&old), -1);
                if let Some(c) = self.by_namespace.get_mut(&old.namespace) {
                    c[state_index(old.state)] = c[state_index(old.state)].saturating_sub(1);
                }
                self.failed.remove(id);
                if let Some(siblings) = old.parent.as_ref().and_then(|p| self.children.get_mut(p)) {
                    siblings.remove(id);
                }
            }
        }
        self.ids.retain(|id| !gone.contains(id));
        self.more_older = true;
        self.generation += 1;
    }

    pub fn push_event(&mut self, event: Arc<Event>) {
        if self.events.len() == EVENT_HISTORY {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    pub fn task(&self, id: &str) -> Option<&Arc<Task>> {
        self.tasks.get(id)
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Tasks with a step waiting for approval.
    pub fn awaiting(&self) -> impl Iterator<Item = &Arc<Task>> {
        self.awaiting.iter().filter_map(|id| self.tasks.get(id))
    }

    /// Tasks that `id` created (delegation).
    pub fn children(&self, id: &str) -> Vec<&Arc<Task>> {
        self.children
            .get(id)
            .into_iter()
            .flatten()
            .filter_map(|c| self.tasks.get(c))
            .collect()
    }

    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// Tasks that failed within the hour before `now`.
    pub fn failed_since(&self, since: Timestamp) -> usize {
        self.failed.values().filter(|at| **at >= since).count()
    }

    /// Task counts by state for a namespace, in `TaskState::ALL` order.
    pub fn namespace_counts(&self, namespace: &str) -> [usize; 6] {
        self.by_namespace.get(namespace).copied().unwrap_or_default()
    }

    pub fn namespaces(&self) -> Vec<String> {
        self.by_namespace.keys().cloned().collect()
    }

    /// The table's rows: filtered and sorted ids. Newest first for `Age`.
    pub fn rows(&self, filter: &TaskFilter, sort: SortKey, reverse: bool) -> Vec<Arc<Task>> {
        let rows: Vec<Arc<Task>> = self
            .ids
            .iter()
            .rev()
            .filter_map(|id| self.tasks.get(id))
            .filter(|t| filter.matches(t))
            .cloned()
            .collect();
        sorted(rows, sort, reverse)
    }
}

/// `rows` (newest first) in the order `sort` and `reverse` ask for.
pub fn sorted(mut rows: Vec<Arc<Task>>, sort: SortKey, reverse: bool) -> Vec<Arc<Task>> {
    match sort {
        SortKey::Age => {}
        SortKey::Workflow => rows.sort_by_key(|t| t.workflow_ref()),
        SortKey::State => rows.sort_by_key(|t| state_index(t.state)),
        SortKey::Progress => rows.sort_by(|a, b| {
            let p = |t: &Task| t.done_steps() as f64 / t.steps.len().max(1) as f64;
            p(a).total_cmp(&p(b))
        }),
        SortKey::Health => rows.sort_by_key(|t| match t.health() {
            "blocked" => 0,
            "recovering" => 1,
            _ => 2,
        }),
    }
    if reverse {
        rows.reverse();
    }
    rows
}

/// Task records for the console's unit tests.
#[cfg(test)]
pub(crate) mod tests_support {
    use crate::model::{Task, TaskState};

    pub fn task(id: &str, ns: &str, state: TaskState) -> Task {
        super::tests::task(id, ns, state, &[], 0)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::Step;
    use serde_json::json;

    pub fn task(id: &str, ns: &str, state: TaskState, steps: &[StepState], at: Timestamp) -> Task {
        Task {
            id: id.into(),
            namespace: ns.into(),
            name: "wf".into(),
            version: "1.0.0".into(),
            state,
            context: json!({}),
            initiator: "t".into(),
            parent: None,
            correlation_id: None,
            origin_key: None,
            traceparent: None,
            classification: Default::default(),
            seq: 0,
            search_terms: Vec::new(),
            created_at: at,
            updated_at: at,
            steps: steps
                .iter()
                .enumerate()
                .map(|(i, s)| Step {
                    state: *s,
                    ..Step::new(&format!("s{i}"), "simulate", vec![])
                })
                .collect(),
        }
    }

    #[test]
    fn a_long_session_holds_a_bounded_number_of_finished_tasks() {
        let mut vm = ViewModel::default();
        vm.upsert(task(
            "0-running",
            "ns",
            TaskState::InProgress,
            &[StepState::InProgress],
            0,
        ));
        for i in 0..MAX_FINISHED_HELD * 2 {
            vm.upsert(task(
                &format!("{i:08}"),
                "ns",
                TaskState::Complete,
                &[StepState::Complete],
                i as i64,
            ));
        }
        assert!(
            vm.len() <= MAX_FINISHED_HELD + MAX_FINISHED_HELD / 10,
            "{}",
            vm.len()
        );
        assert!(vm.task("0-running").is_some(), "unfinished work always stays");
        assert!(
            vm.task(&format!("{:08}", MAX_FINISHED_HELD * 2 - 1)).is_some(),
            "the newest stay"
        );
        assert!(vm.task("00000000").is_none(), "the oldest went");
        assert!(vm.more_older, "and the store can page them back");
        let held: usize = vm.namespace_counts("ns").iter().sum();
        assert_eq!(held, vm.len(), "counts follow what is held");
    }

    #[test]
    fn counts_follow_snapshots_incrementally() {
        let mut vm = ViewModel::default();
        vm.upsert(task(
            "a",
            "ns",
            TaskState::InProgress,
            &[StepState::InProgress, StepState::WaitingForRetry],
            1,
        ));
        vm.upsert(task(
            "b",
            "ns",
            TaskState::InProgress,
            &[StepState::InProgress],
            2,
        ));
        assert_eq!(
            vm.counts(),
            Counts {
                running: 2,
                waiting_for_retry: 1,
                awaiting_approval: 0
            }
        );
        vm.upsert(task(
            "a",
            "ns",
            TaskState::Error,
            &[StepState::Complete, StepState::Error],
            3,
        ));
        assert_eq!(
            vm.counts(),
            Counts {
                running: 1,
                waiting_for_retry: 0,
                awaiting_approval: 0
            }
        );
        assert_eq!(vm.namespace_counts("ns"), [0, 1, 0, 1, 0, 0]);
        assert_eq!(vm.failed_since(0), 1);
        assert_eq!(vm.failed_since(4), 0);
        // A late, older snapshot does not roll the task back.
        vm.upsert(task(
            "a",
            "ns",
            TaskState::InProgress,
            &[StepState::InProgress, StepState::Pending],
            2,
        ));
        assert_eq!(vm.task("a").unwrap().state, TaskState::Error);
    }

    #[test]
    fn rows_are_newest_first_filtered_and_sorted() {
        let mut vm = ViewModel::default();
        vm.upsert(task("01", "shop", TaskState::Complete, &[StepState::Complete], 1));
        vm.upsert(task("03", "data", TaskState::Error, &[StepState::Error], 3));
        vm.upsert(task(
            "02",
            "shop",
            TaskState::InProgress,
            &[StepState::InProgress],
            2,
        ));
        let ids = |rows: Vec<Arc<Task>>| rows.iter().map(|t| t.id.clone()).collect::<Vec<_>>();
        assert_eq!(
            ids(vm.rows(&TaskFilter::default(), SortKey::Age, false)),
            ["03", "02", "01"]
        );
        let shop = TaskFilter {
            namespace: Some("shop".into()),
            ..TaskFilter::default()
        };
        assert_eq!(ids(vm.rows(&shop, SortKey::Age, false)), ["02", "01"]);
        let failed = TaskFilter {
            state: Some(TaskState::Error),
            ..TaskFilter::default()
        };
        assert_eq!(ids(vm.rows(&failed, SortKey::Age, false)), ["03"]);
        let text = TaskFilter {
            text: "blocked".into(),
            ..TaskFilter::default()
        };
        assert_eq!(ids(vm.rows(&text, SortKey::Age, false)), ["03"]);
        assert_eq!(
            ids(vm.rows(&TaskFilter::default(), SortKey::Health, false)),
            ["03", "02", "01"]
        );
        assert_eq!(
            ids(vm.rows(&TaskFilter::default(), SortKey::Age, true)),
            ["01", "02", "03"]
        );
    }

    #[test]
    fn the_event_history_is_bounded() {
        let mut vm = ViewModel::default();
        for seq in 0..(EVENT_HISTORY as u64 + 5) {
            vm.push_event(Arc::new(Event {
                seq,
                at: 0,
                name: "step.completed".into(),
                task_id: "t".into(),
                workflow: "w".into(),
                step: None,
                custom: false,
                payload: json!({}),
            }));
        }
        assert_eq!(vm.events.len(), EVENT_HISTORY);
        assert_eq!(vm.events.front().unwrap().seq, 5);
    }
}
