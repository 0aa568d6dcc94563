//! The console's state and its response to keys and updates. No terminal, no engine: keys
//! change state and queue `Action`s that the runner carries out, so all of it is testable.

use super::input::{is_typing, LineEdit, TextArea};
use super::keymap::{self, KeyAction, Place};
use super::model::{SortKey, TaskFilter, ViewModel};
use super::theme::Theme;
use crate::engine::Event;
use crate::model::{Task, TaskState, Timestamp, Transition};
use crate::telemetry::recent::{MetricsSummary, SlowStep};
use crate::workflow::{Catalog, Workflow};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use serde_json::Value;
use std::cell::RefCell;
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedSender;

/// What the feeder and the runner tell the app.
#[derive(Debug)]
pub enum Update {
    Tasks(Vec<Task>),
    Event(Arc<Event>),
    Transitions(String, Vec<Transition>),
    Submitted(Box<Task>),
    Notice(String),
    /// The connection to a remote engine came back (`Up`) or was lost (`Down`).
    Link(crate::client::Link),
    /// A page of older tasks arrived (or the first page): whether the store has more.
    Paged {
        more: bool,
    },
    /// The engine's last ten minutes per namespace (for `:metrics` and the header's marker).
    Summary(Box<MetricsSummary>),
    /// The engine did not give a summary (an older server, or a refusal): why.
    SummaryFailed(String),
    /// A page of a store search: the search it answers (`serial`), the tasks, and where the
    /// next page starts.
    Found {
        serial: u64,
        tasks: Vec<Task>,
        next: Option<String>,
    },
    /// A store search failed: why.
    SearchFailed {
        serial: u64,
        why: String,
    },
    /// Journal entries for `:audit`, newest first.
    Audit(Vec<crate::audit::AuditEntry>),
    /// The journal could not be read (no `audit:read`, a lost link): why.
    AuditFailed(String),
}

/// How long a bottleneck, SLA breach or oversell risk lights the header: 5 minutes.
pub const MARKER_MS: Timestamp = 300_000;

/// The latest business signal, for the header.
#[derive(Debug, Clone, PartialEq)]
pub struct Marker {
    pub text: String,
    /// When it was raised (ms since the Unix epoch).
    pub at: Timestamp,
}

impl Marker {
    /// The marker of a signal event or note, by its name; `None` for any other name.
    pub fn of(
        name: &str,
        workflow: &str,
        step: Option<&str>,
        factor: Option<f64>,
        at: Timestamp,
    ) -> Option<Marker> {
        use crate::telemetry::signals as s;
        let text = match name {
            s::BOTTLENECK => format!(
                "bottleneck {}{}",
                crate::model::clip(step.unwrap_or(workflow), 24),
                factor.map_or(String::new(), |f| if f < 1000.0 {
                    format!(" {f:.1}×")
                } else {
                    " >999×".into()
                })
            ),
            s::SLA_VIOLATION => format!("SLA breach {workflow}"),
            s::INVENTORY_FAILURE => format!("oversell risk {}", step.unwrap_or(workflow)),
            _ => return None,
        };
        Some(Marker { text, at })
    }
}

/// What the app asks of the engine; the runner carries it out.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Submit {
        workflow: String,
        context: Value,
    },
    Retry(String),
    /// Retry or cancel every one of these tasks, reporting each one's result.
    RetryMany(Vec<String>),
    CancelMany(Vec<String>),
    /// Approve or deny each of these requests (task, step) with one note, reporting each.
    DecideMany {
        targets: Vec<(String, String)>,
        approve: bool,
        note: Option<String>,
    },
    /// Start a step waiting out its backoff now.
    RetryNow {
        task: String,
        step: String,
    },
    Cancel(String),
    /// Approve or deny a step waiting for approval.
    Decide {
        task: String,
        step: String,
        approve: bool,
        note: Option<String>,
    },
    /// The task whose transition log the detail pane shows.
    Focus(Option<String>),
    /// Load the next page of older tasks from the store.
    Older,
    /// Read one task (and its log) that the console may not hold yet.
    Load(String),
    /// Read the audit journal (`:audit`).
    Audit(crate::client::AuditQuery),
    /// Search the store (`/` then Enter in the tasks table); `serial` names the search.
    Search {
        serial: u64,
        query: crate::client::TaskQuery,
    },
}

/// A search of the whole store (not only the tasks the console holds): its words, the tasks
/// found so far, newest first, and where the next page starts.
#[derive(Debug, Clone, Default)]
pub struct StoreSearch {
    pub words: String,
    pub serial: u64,
    pub found: Vec<Arc<Task>>,
    pub next: Option<String>,
    pub loading: bool,
    pub error: Option<String>,
}

/// Tasks per page of a store search.
pub const SEARCH_PAGE: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    Namespaces,
    Main,
    /// The open task's step pane (Tab from the graph): it scrolls, and Enter follows links.
    Detail,
    Events,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Screen {
    Tasks,
    Task(String),
    /// The approvals inbox.
    Approvals,
    /// The last ten minutes per namespace and the slowest steps.
    Metrics,
    /// The audit journal, newest first (`:audit`).
    Audit,
}

pub struct NewTaskForm {
    pub filter: LineEdit,
    pub picked: usize,
    pub workflow: Option<Arc<Workflow>>,
    pub editor: TextArea,
    pub errors: Vec<String>,
}

pub enum Mode {
    Normal,
    Command(LineEdit),
    Filter(LineEdit),
    /// The keys and commands; `scroll` is the first line shown (the list can be taller than
    /// the terminal: the movement keys scroll it, any other key closes it).
    Help {
        scroll: usize,
    },
    Form(Box<NewTaskForm>),
    /// A yes/no question before a consequential action; `yes` names what `y` does.
    Confirm {
        action: Action,
        message: String,
        yes: String,
    },
    /// A dialog closed under the operator's hands (the request it was about expired or was
    /// decided elsewhere). Swallows keys until Esc or Enter, so text typed for the dialog is
    /// never taken as commands.
    Gone {
        message: String,
    },
    /// A scrollable, filterable text: an event's payload (Enter in the events pane), a
    /// task's context (`i`) or its whole stored history (`h`).
    Viewer(Box<Viewer>),
    /// Typing the one note or reason of a decision on every marked request (the inbox).
    DecideMany {
        /// (task, step) of each request decided.
        targets: Vec<(String, String)>,
        /// Marked requests this operator may not decide, with why (said in the confirmation).
        skipped: Vec<String>,
        approve: bool,
        note: LineEdit,
    },
    /// Typing the note (approve, optional) or reason (deny, required) of a decision.
    Decide {
        task: String,
        step: String,
        approve: bool,
        note: LineEdit,
    },
}

/// Text shown over the console until Esc: scrolled with the movement keys, narrowed with `/`.
#[derive(Debug, Clone, PartialEq)]
pub struct Viewer {
    pub title: String,
    pub lines: Vec<String>,
    /// The first line shown, among those the filter keeps.
    pub scroll: usize,
    /// Only lines containing this (case-insensitive) are shown.
    pub filter: String,
    /// The filter is being typed.
    pub typing: Option<LineEdit>,
}

impl Viewer {
    pub fn new(title: String, text: &str) -> Self {
        Viewer {
            title,
            lines: text.lines().map(str::to_string).collect(),
            scroll: 0,
            filter: String::new(),
            typing: None,
        }
    }

    /// The lines the filter keeps.
    pub fn shown(&self) -> Vec<&str> {
        let needle = self.filter.to_lowercase();
        self.lines
            .iter()
            .filter(|l| needle.is_empty() || l.to_lowercase().contains(&needle))
            .map(String::as_str)
            .collect()
    }
}

/// Fixed facts for the header.
#[derive(Debug, Clone)]
pub struct HeaderInfo {
    pub data_dir: String,
    pub durability: String,
    pub operator: String,
    /// Where the engine is: `api 127.0.0.1:7420` when this console runs it and serves it,
    /// `→ https://host:7420` when connected to another.
    pub endpoint: String,
    /// `--read-only` was given (else read-only mode comes from the identity).
    pub read_only_flag: bool,
}

type RowCache = Option<(u64, TaskFilter, SortKey, bool, Arc<Vec<Arc<Task>>>)>;

pub struct App {
    pub vm: ViewModel,
    pub theme: Theme,
    pub no_color: bool,
    pub info: HeaderInfo,
    pub catalog: Arc<Catalog>,
    pub focus: Focus,
    pub screen: Screen,
    pub mode: Mode,
    pub task_filter: TaskFilter,
    pub event_filter: String,
    /// The store search the tasks table shows, when one was run.
    pub search: Option<StoreSearch>,
    /// Tasks marked with Space: `r` and `c` act on all of them.
    pub marked: std::collections::BTreeSet<String>,
    /// The selected event, counted from the newest (0) among those shown.
    pub selected_event: usize,
    /// Only this task's events are shown (`f` in the events pane).
    pub event_follow: Option<String>,
    pub sort: SortKey,
    pub reverse: bool,
    pub selected_task: Option<String>,
    pub selected_namespace: usize,
    pub selected_step: usize,
    pub selected_approval: usize,
    /// Who operates the console; decides what the keys may do (the engine checks again).
    pub identity: crate::auth::Identity,
    /// Keys and commands that change tasks are hidden and refused (`--read-only`, or a viewer,
    /// who may change nothing anyway); the header says so.
    pub read_only: bool,
    pub now: Timestamp,
    /// Why the connection to a remote engine is down (a banner while it reconnects).
    pub link_down: Option<String>,
    /// A page of older tasks has been asked for and has not arrived.
    pub loading_older: bool,
    pub notice: Option<(String, Timestamp)>,
    /// The engine's latest summary, and why there is none when it failed.
    pub summary: Option<Arc<MetricsSummary>>,
    pub summary_error: Option<String>,
    /// The row of the slowest-steps table the keys act on.
    pub selected_slow: usize,
    /// The journal entries `:audit` shows (`None` until read), why they could not be read,
    /// the filter they were read with and the selected row.
    pub audit: Option<Arc<Vec<crate::audit::AuditEntry>>>,
    pub audit_error: Option<String>,
    pub audit_query: crate::client::AuditQuery,
    pub selected_audit: usize,
    /// The latest business signal (lit in the header for `MARKER_MS`).
    pub marker: Option<Marker>,
    /// Where `Esc` from the open task goes, most recent last: the task a link was followed
    /// from, or the view (`:metrics`, `:audit`) that opened it; empty: the tasks table.
    pub back_to: Vec<Screen>,
    /// The step pane's cursor line (its links open with Enter).
    pub detail_cursor: usize,
    /// `h` asked for this task's history, which is being read from the store.
    history_wanted: Option<String>,
    /// A step to select once its task arrives (opened from `:metrics` before it was held).
    pending_step: Option<(String, String)>,
    pub quit: bool,
    /// Set when something visible changed; the runner redraws and clears it.
    pub dirty: bool,
    actions: UnboundedSender<Action>,
    rows: RefCell<RowCache>,
}

impl App {
    pub fn new(
        vm: ViewModel,
        theme: Theme,
        info: HeaderInfo,
        catalog: Arc<Catalog>,
        actions: UnboundedSender<Action>,
    ) -> Self {
        let no_color = theme.monochrome;
        App {
            vm,
            theme,
            no_color,
            info,
            catalog,
            focus: Focus::Main,
            screen: Screen::Tasks,
            mode: Mode::Normal,
            task_filter: TaskFilter::default(),
            event_filter: String::new(),
            search: None,
            selected_event: 0,
            event_follow: None,
            marked: std::collections::BTreeSet::new(),
            sort: SortKey::Age,
            reverse: false,
            selected_task: None,
            selected_namespace: 0,
            selected_step: 0,
            selected_approval: 0,
            identity: crate::auth::Identity::local("operator"),
            read_only: false,
            now: 0,
            link_down: None,
            loading_older: false,
            notice: None,
            summary: None,
            summary_error: None,
            selected_slow: 0,
            audit: None,
            audit_error: None,
            audit_query: crate::client::AuditQuery::default(),
            selected_audit: 0,
            marker: None,
            back_to: Vec::new(),
            detail_cursor: 0,
            history_wanted: None,
            pending_step: None,
            quit: false,
            dirty: true,
            actions,
            rows: RefCell::new(None),
        }
    }

    /// Read-only when `--read-only` was given, the operator is a viewer (who may change
    /// nothing: the console shows no key that would only be refused), or the theme says so.
    pub fn decide_read_only(&mut self) {
        self.read_only = self.info.read_only_flag
            || self.identity.role == crate::auth::Role::Viewer
            || self.theme.read_only;
    }

    fn act(&self, action: Action) {
        let _ = self.actions.send(action);
    }

    pub fn notify(&mut self, text: impl Into<String>) {
        self.notice = Some((text.into(), self.now));
        self.dirty = true;
    }

    // ----- derived state ----------------------------------------------------------------------

    /// The table's rows, recomputed only when tasks, filter or sort changed.
    pub fn rows(&self) -> Arc<Vec<Arc<Task>>> {
        let mut cache = self.rows.borrow_mut();
        if let Some((generation, filter, sort, reverse, rows)) = cache.as_ref() {
            if *generation == self.vm.generation
                && *filter == self.task_filter
                && *sort == self.sort
                && *reverse == self.reverse
            {
                return rows.clone();
            }
        }
        let rows = Arc::new(match &self.search {
            // Until the store answers (or when it cannot), the held tasks that match.
            Some(search) if search.found.is_empty() && (search.loading || search.error.is_some()) => {
                self.vm.rows(&self.task_filter, self.sort, self.reverse)
            }
            // The store matched the words (on fields this console may not even see): the
            // filters still narrow, and the console's newer copy of a task wins.
            Some(search) => {
                let filter = TaskFilter {
                    text: String::new(),
                    ..self.task_filter.clone()
                };
                let found = search
                    .found
                    .iter()
                    .map(|t| self.vm.task(&t.id).cloned().unwrap_or_else(|| t.clone()))
                    .filter(|t| filter.matches(t))
                    .collect();
                super::model::sorted(found, self.sort, self.reverse)
            }
            None => self.vm.rows(&self.task_filter, self.sort, self.reverse),
        });
        *cache = Some((
            self.vm.generation,
            self.task_filter.clone(),
            self.sort,
            self.reverse,
            rows.clone(),
        ));
        rows
    }

    pub fn selected_index(&self) -> usize {
        let rows = self.rows();
        self.selected_task
            .as_ref()
            .and_then(|id| rows.iter().position(|t| &t.id == id))
            .unwrap_or(0)
    }

    /// The task the operator is acting on: the open one, or the selected row.
    pub fn current_task(&self) -> Option<Arc<Task>> {
        match &self.screen {
            Screen::Task(id) => self.vm.task(id).cloned(),
            Screen::Tasks => self.rows().get(self.selected_index()).cloned(),
            Screen::Approvals => self.current_approval().map(|(t, _)| t),
            Screen::Metrics | Screen::Audit => None,
        }
    }

    /// The events the pane shows, newest first: the bounded history (`EVENT_HISTORY`),
    /// narrowed by `/` and by the task followed.
    pub fn event_rows(&self) -> Vec<Arc<Event>> {
        let filter = self.event_filter.to_lowercase();
        self.vm
            .events
            .iter()
            .rev()
            .filter(|e| self.event_follow.as_ref().is_none_or(|id| &e.task_id == id))
            .filter(|e| filter.is_empty() || e.line().to_lowercase().contains(&filter))
            .cloned()
            .collect()
    }

    fn selected_event(&self) -> Option<Arc<Event>> {
        let rows = self.event_rows();
        rows.get(self.selected_event.min(rows.len().saturating_sub(1)))
            .cloned()
    }

    fn show_payload(&mut self) {
        let Some(e) = self.selected_event() else {
            return self.notify("no event selected");
        };
        let text = serde_json::to_string_pretty(&e.payload).unwrap_or_else(|_| e.payload.to_string());
        self.mode = Mode::Viewer(Box::new(Viewer::new(
            format!("#{} {} · {}", e.seq, e.name, crate::model::short_id(&e.task_id)),
            &text,
        )));
    }

    /// `i`: the current task's context, as the engine gave it to this operator (fields they
    /// may not read are `[REDACTED]`).
    fn show_context(&mut self) {
        let Some(task) = self.current_task() else {
            return self.notify("no task selected");
        };
        let text = serde_json::to_string_pretty(&task.context).unwrap_or_else(|_| task.context.to_string());
        self.mode = Mode::Viewer(Box::new(Viewer::new(
            format!(
                "context of {} · {}",
                crate::model::short_id(&task.id),
                task.workflow_ref()
            ),
            &text,
        )));
    }

    /// `h`: the current task's whole history as stored (every transition, not the bounded
    /// event stream). Read again from the store when it is not the one held.
    fn show_history(&mut self) {
        let Some(task) = self.current_task() else {
            return self.notify("no task selected");
        };
        let held = self
            .vm
            .transitions
            .as_ref()
            .filter(|(id, _)| id == &task.id)
            .map(|(_, log)| log.clone());
        let Some(log) = held else {
            self.history_wanted = Some(task.id.clone());
            self.act(Action::Load(task.id.clone()));
            return self.notify("reading the history from the store…");
        };
        self.open_history(&task, &log);
    }

    fn open_history(&mut self, task: &Task, log: &[Transition]) {
        let text: Vec<String> = log.iter().map(super::inspect::history_line).collect();
        self.mode = Mode::Viewer(Box::new(Viewer::new(
            format!(
                "history of {} · {} · {} transitions",
                crate::model::short_id(&task.id),
                task.workflow_ref(),
                log.len()
            ),
            &text.join("\n"),
        )));
    }

    fn viewer_key(&mut self, mut viewer: Box<Viewer>, key: KeyEvent) {
        if let Some(mut line) = viewer.typing.take() {
            match key.code {
                KeyCode::Enter => {}
                KeyCode::Esc => viewer.filter.clear(),
                _ => {
                    line.edit(&key);
                    viewer.filter = line.text.clone();
                    viewer.typing = Some(line);
                }
            }
            viewer.scroll = 0;
            self.mode = Mode::Viewer(viewer);
            return;
        }
        let shown = viewer.shown().len();
        let scroll = |at: usize, delta: i64| (at as i64 + delta).clamp(0, (shown as i64 - 1).max(0)) as usize;
        let action = keymap::lookup(key.code, Place::Viewer)
            .map(|b| b.action)
            .filter(|a| keymap::VIEWER_ACTIONS.contains(a));
        match action {
            Some(KeyAction::Back) => return,
            Some(KeyAction::Quit) => {
                self.quit = true;
                return;
            }
            Some(KeyAction::Down) => viewer.scroll = scroll(viewer.scroll, 1),
            Some(KeyAction::Up) => viewer.scroll = scroll(viewer.scroll, -1),
            Some(KeyAction::PageDown) => viewer.scroll = scroll(viewer.scroll, 10),
            Some(KeyAction::PageUp) => viewer.scroll = scroll(viewer.scroll, -10),
            Some(KeyAction::First) => viewer.scroll = 0,
            Some(KeyAction::Last) => viewer.scroll = scroll(0, shown as i64),
            Some(KeyAction::Filter) => viewer.typing = Some(LineEdit::with(&viewer.filter)),
            _ => {}
        }
        self.mode = Mode::Viewer(viewer);
    }

    fn follow_task(&mut self) {
        if self.event_follow.take().is_some() {
            self.selected_event = 0;
            return self.notify("events of every task");
        }
        let Some(e) = self.selected_event() else {
            return self.notify("no event selected");
        };
        self.notify(format!(
            "following task {} (f again: every task)",
            crate::model::short_id(&e.task_id)
        ));
        self.event_follow = Some(e.task_id.clone());
        self.selected_event = 0;
    }

    /// The journal entries of `:audit` matching the `/` filter (any field).
    pub fn audit_rows(&self) -> Vec<crate::audit::AuditEntry> {
        let Some(entries) = &self.audit else {
            return Vec::new();
        };
        let needle = self.task_filter.text.to_lowercase();
        entries
            .iter()
            .filter(|e| {
                needle.is_empty()
                    || format!(
                        "{} {} {} {} {}",
                        e.record.actor, e.record.action, e.record.resource, e.record.outcome, e.record.detail
                    )
                    .to_lowercase()
                    .contains(&needle)
            })
            .cloned()
            .collect()
    }

    /// Opens `:audit` with the filter `args` (`actor:NAME task:ID action:PREFIX`), or says
    /// what a term should be.
    fn open_audit(&mut self, args: &str) {
        let mut query = crate::client::AuditQuery::default();
        for term in args.split_whitespace() {
            let slot = match term.split_once(':') {
                Some(("actor", v)) if !v.is_empty() => Some((&mut query.actor, v)),
                Some(("task", v)) if !v.is_empty() => Some((&mut query.task, v)),
                Some(("action", v)) if !v.is_empty() => Some((&mut query.action, v)),
                _ => None,
            };
            match slot {
                Some((Some(_), _)) => {
                    return self.notify(format!(
                        "`{}`: each of actor:, task: and action: is given once",
                        crate::model::clip(term, 40)
                    ))
                }
                Some((slot, v)) => *slot = Some(v.to_string()),
                None => {
                    return self.notify(format!(
                        "`{}`: filter the journal with actor:NAME, task:ID or action:PREFIX",
                        crate::model::clip(term, 40)
                    ))
                }
            }
        }
        self.audit_query = query.clone();
        self.audit = None;
        self.audit_error = None;
        self.selected_audit = 0;
        self.screen = Screen::Audit;
        self.focus = Focus::Main;
        self.act(Action::Audit(query));
    }

    /// Opens the task the selected journal entry is about.
    fn open_audit_task(&mut self) {
        let rows = self.audit_rows();
        let Some(entry) = rows.get(self.selected_audit.min(rows.len().saturating_sub(1))) else {
            return self.notify("no entry selected");
        };
        let Some(id) = entry
            .record
            .resource
            .strip_prefix("task/")
            .map(|rest| rest.split('/').next().unwrap_or(rest).to_string())
        else {
            return self.notify(format!("{} is not about a task", entry.record.resource));
        };
        if self.vm.task(&id).is_none() {
            self.act(Action::Load(id.clone()));
        }
        self.open_task(id);
        self.back_to.push(Screen::Audit);
    }

    /// The slowest-steps table of `:metrics`: every readable namespace's, slowest attempt
    /// first, matching the `/` filter.
    pub fn slow_rows(&self) -> Vec<(String, SlowStep)> {
        let Some(summary) = &self.summary else {
            return Vec::new();
        };
        let needle = self.task_filter.text.to_lowercase();
        let mut rows: Vec<(String, SlowStep)> = summary
            .namespaces
            .iter()
            .flat_map(|n| n.slowest_steps.iter().map(|s| (n.namespace.clone(), s.clone())))
            .filter(|(ns, s)| {
                needle.is_empty()
                    || format!("{ns}/{} {}", s.workflow, s.step)
                        .to_lowercase()
                        .contains(&needle)
            })
            .collect();
        rows.sort_by(|a, b| b.1.max_seconds.total_cmp(&a.1.max_seconds));
        rows
    }

    /// The marker while it is recent.
    pub fn live_marker(&self) -> Option<&Marker> {
        self.marker
            .as_ref()
            .filter(|m| self.now.saturating_sub(m.at) < MARKER_MS)
    }

    fn mark(&mut self, marker: Option<Marker>) {
        if let Some(m) = marker {
            if self.marker.as_ref().is_none_or(|old| m.at >= old.at) {
                self.marker = Some(m);
            }
        }
    }

    fn open_slowest(&mut self) {
        let rows = self.slow_rows();
        let Some((_, step)) = rows.get(self.selected_slow.min(rows.len().saturating_sub(1))) else {
            return self.notify("no step has run in the last 10 minutes");
        };
        let (id, name) = (step.slowest_task.clone(), step.step.clone());
        if self.vm.task(&id).is_none() {
            self.act(Action::Load(id.clone()));
        }
        self.open_task(id.clone());
        self.back_to.push(Screen::Metrics);
        if !self.select_step(&id, &name) {
            self.pending_step = Some((id, name));
        }
    }

    /// Selects the step named `step` of the open task `id`, if the task is held.
    fn select_step(&mut self, id: &str, step: &str) -> bool {
        let Some(task) = self.vm.task(id) else {
            return false;
        };
        let order = super::dag::reading_order(task);
        if let Some(at) = order.iter().position(|i| task.steps[*i].name == step) {
            self.selected_step = at;
        }
        true
    }

    /// Whether a retry countdown is on screen (the runner then ticks 4 times a second).
    pub fn has_countdown(&self) -> bool {
        match &self.screen {
            Screen::Task(id) => self.vm.task(id).is_some_and(|t| {
                t.steps
                    .iter()
                    .any(|s| s.next_attempt_at.is_some_and(|at| at > self.now))
            }),
            Screen::Approvals => !self.approvals().is_empty(),
            Screen::Tasks | Screen::Metrics | Screen::Audit => false,
        }
    }

    pub fn namespaces(&self) -> Vec<String> {
        self.vm.namespaces()
    }

    // ----- updates ----------------------------------------------------------------------------

    pub fn apply(&mut self, update: Update) {
        self.dirty = true;
        match update {
            Update::Tasks(tasks) => {
                for t in tasks {
                    self.vm.upsert(t);
                }
                if let Some((id, step)) = self.pending_step.take() {
                    if self.screen == Screen::Task(id.clone()) && !self.select_step(&id, &step) {
                        self.pending_step = Some((id, step));
                    }
                }
            }
            Update::Event(e) => {
                if !e.custom {
                    let factor = e.payload["degradation_factor"].as_f64();
                    self.mark(Marker::of(&e.name, &e.workflow, e.step.as_deref(), factor, e.at));
                }
                self.vm.push_event(e)
            }
            Update::Summary(summary) => {
                for n in summary.namespaces.iter().flat_map(|n| &n.signals) {
                    self.mark(Marker::of(
                        &n.name,
                        &n.workflow,
                        n.step.as_deref(),
                        n.degradation_factor,
                        n.at,
                    ));
                }
                self.summary = Some(Arc::new(*summary));
                self.summary_error = None;
            }
            Update::SummaryFailed(why) => self.summary_error = Some(why),
            Update::Found { serial, tasks, next } => {
                if let Some(search) = self.search.as_mut().filter(|s| s.serial == serial) {
                    search.found.extend(tasks.into_iter().map(Arc::new));
                    search.next = next;
                    search.loading = false;
                    search.error = None;
                    self.vm.generation += 1;
                }
            }
            Update::SearchFailed { serial, why } => {
                if let Some(search) = self.search.as_mut().filter(|s| s.serial == serial) {
                    search.loading = false;
                    search.error = Some(why.clone());
                    self.notify(format!("search failed: {why}"));
                }
            }
            Update::Audit(entries) => {
                self.audit = Some(Arc::new(entries));
                self.audit_error = None;
            }
            Update::AuditFailed(why) => self.audit_error = Some(why),
            Update::Transitions(id, log) => {
                if self.history_wanted.as_ref() == Some(&id) && matches!(self.mode, Mode::Normal) {
                    self.history_wanted = None;
                    if let Some(task) = self.vm.task(&id).cloned() {
                        self.open_history(&task, &log);
                    }
                }
                self.vm.transitions = Some((id, log));
            }
            Update::Submitted(task) => {
                let id = task.id.clone();
                self.notify(format!(
                    "submitted {} {}",
                    crate::model::short_id(&id),
                    task.workflow_ref()
                ));
                self.vm.upsert(*task);
                self.open_task(id);
            }
            Update::Notice(text) => self.notify(text),
            Update::Paged { more } => {
                self.vm.more_older = more;
                self.loading_older = false;
            }
            Update::Link(crate::client::Link::Up) => self.link_down = None,
            Update::Link(crate::client::Link::Down(why)) => self.link_down = Some(why),
        }
        self.check_dialog();
    }

    /// Closes a decision dialog whose request is no longer waiting (see `Mode::Gone`).
    pub fn check_dialog(&mut self) {
        let (task, step) = match &self.mode {
            Mode::Decide { task, step, .. } => (task, step),
            Mode::Confirm {
                action: Action::Decide { task, step, .. },
                ..
            } => (task, step),
            _ => return,
        };
        let waiting = self.vm.task(task).and_then(|t| t.step(step)).is_some_and(|s| {
            s.state == crate::model::StepState::AwaitingApproval
                && s.approval.as_ref().is_some_and(|a| a.expires_at > self.now)
        });
        if !waiting {
            let message = format!(
                "the request of `{step}` on task {} is no longer waiting (it expired or was decided); nothing was sent — Esc or Enter closes this",
                crate::model::short_id(task)
            );
            self.mode = Mode::Gone { message };
            self.dirty = true;
        }
    }

    fn open_task(&mut self, id: String) {
        self.back_to.clear();
        self.show_task(id);
    }

    /// Opens `id` from the open task (a parent or child link): Esc comes back.
    fn follow_link(&mut self, id: String) {
        let from = self.screen.clone();
        let trail = std::mem::take(&mut self.back_to);
        if self.vm.task(&id).is_none() {
            self.act(Action::Load(id.clone()));
        }
        self.show_task(id);
        self.back_to = trail;
        self.back_to.push(from);
    }

    fn show_task(&mut self, id: String) {
        self.detail_cursor = 0;
        self.pending_step = None;
        self.selected_task = Some(id.clone());
        // Start on the step that needs attention: failing, retrying, waiting or running.
        self.selected_step = self.vm.task(&id).map_or(0, |task| {
            let order = super::dag::reading_order(task);
            let urgency = |i: &usize| match task.steps[*i].state {
                crate::model::StepState::Error => 0,
                crate::model::StepState::WaitingForRetry => 1,
                crate::model::StepState::AwaitingApproval => 2,
                crate::model::StepState::InProgress | crate::model::StepState::WaitingForChild => 3,
                _ => 4,
            };
            let best = order.iter().min_by_key(|i| urgency(i)).filter(|i| urgency(i) < 4);
            best.and_then(|b| order.iter().position(|i| i == b)).unwrap_or(0)
        });
        self.screen = Screen::Task(id.clone());
        self.focus = Focus::Main;
        self.act(Action::Focus(Some(id)));
    }

    // ----- keys -------------------------------------------------------------------------------

    pub fn on_key(&mut self, key: KeyEvent) {
        self.dirty = true;
        if key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL) {
            self.quit = true;
            return;
        }
        self.check_dialog();
        match std::mem::replace(&mut self.mode, Mode::Normal) {
            Mode::Normal => self.normal_key(key),
            Mode::Help { scroll } => {
                let action = keymap::lookup(key.code, Place::Viewer).map(|b| b.action);
                let scroll = match action {
                    Some(KeyAction::Down) => scroll.saturating_add(1),
                    Some(KeyAction::Up) => scroll.saturating_sub(1),
                    Some(KeyAction::PageDown) => scroll.saturating_add(10),
                    Some(KeyAction::PageUp) => scroll.saturating_sub(10),
                    Some(KeyAction::First) => 0,
                    Some(KeyAction::Last) => usize::MAX / 2,
                    _ => return,
                };
                // The view clamps what it shows; keep the number small enough to move back.
                self.mode = Mode::Help {
                    scroll: scroll.min(self.keys().len() + keymap::COMMANDS.len()),
                };
            }
            Mode::Gone { message } => {
                if !matches!(key.code, KeyCode::Esc | KeyCode::Enter) {
                    self.mode = Mode::Gone { message };
                }
            }
            Mode::Viewer(viewer) => self.viewer_key(viewer, key),
            Mode::Command(line) => self.command_key(line, key),
            Mode::Filter(line) => self.filter_key(line, key),
            Mode::Form(form) => self.form_key(form, key),
            Mode::Confirm { action, message, yes } => match key.code {
                KeyCode::Char('y') | KeyCode::Char('Y') if is_typing(&key) => {
                    // Marks stay until the bulk action they chose is confirmed.
                    if matches!(
                        action,
                        Action::RetryMany(_) | Action::CancelMany(_) | Action::DecideMany { .. }
                    ) {
                        self.marked.clear();
                    }
                    self.act(action)
                }
                KeyCode::Char('n') | KeyCode::Esc => self.notify("nothing done"),
                _ => self.mode = Mode::Confirm { action, message, yes },
            },
            Mode::DecideMany {
                targets,
                skipped,
                approve,
                mut note,
            } => match key.code {
                KeyCode::Esc => self.notify("nothing done"),
                KeyCode::Enter => self.confirm_many(targets, skipped, approve, note),
                _ => {
                    note.edit(&key);
                    self.mode = Mode::DecideMany {
                        targets,
                        skipped,
                        approve,
                        note,
                    };
                }
            },
            Mode::Decide {
                task,
                step,
                approve,
                mut note,
            } => match key.code {
                KeyCode::Esc => self.notify("nothing done"),
                KeyCode::Enter => self.confirm_decision(task, step, approve, note),
                _ => {
                    note.edit(&key);
                    self.mode = Mode::Decide {
                        task,
                        step,
                        approve,
                        note,
                    };
                }
            },
        }
    }

    /// One confirmation for every marked request: how many, which (short id and amount), and
    /// those skipped with why.
    fn confirm_many(
        &mut self,
        targets: Vec<(String, String)>,
        skipped: Vec<String>,
        approve: bool,
        note: LineEdit,
    ) {
        let text = note.text.trim().to_string();
        if !approve && text.is_empty() {
            self.notify("a denial needs a reason");
            self.mode = Mode::DecideMany {
                targets,
                skipped,
                approve,
                note,
            };
            return;
        }
        let which: Vec<String> = targets
            .iter()
            .map(|(task, step)| {
                let amount = self
                    .vm
                    .task(task)
                    .and_then(|t| t.step(step).and_then(|s| s.approval.as_ref()))
                    .and_then(|a| {
                        a.request
                            .amount
                            .map(crate::model::money)
                            .or_else(|| a.request.sealed_amount.clone())
                    });
                match amount {
                    Some(a) => format!("{} ({a})", crate::model::short_id(task)),
                    None => crate::model::short_id(task).to_string(),
                }
            })
            .collect();
        let verb = if approve { "Approve" } else { "Deny" };
        let mut message = format!(
            "{verb} {} marked request(s): {}?",
            targets.len(),
            which.join(", ")
        );
        if !skipped.is_empty() {
            message.push_str(&format!(" ({} skipped: {})", skipped.len(), skipped.join("; ")));
        }
        self.mode = Mode::Confirm {
            yes: format!("yes, {} {}", verb.to_lowercase(), targets.len()),
            message,
            action: Action::DecideMany {
                targets,
                approve,
                note: (!text.is_empty()).then_some(text),
            },
        };
    }

    fn confirm_decision(&mut self, task: String, step: String, approve: bool, note: LineEdit) {
        let text = note.text.trim().to_string();
        if !approve && text.is_empty() {
            self.notify("a denial needs a reason");
            self.mode = Mode::Decide {
                task,
                step,
                approve,
                note,
            };
            return;
        }
        let summary = self
            .vm
            .task(&task)
            .and_then(|t| {
                t.step(&step)
                    .and_then(|s| s.approval.as_ref())
                    .map(|a| a.request.summary.clone())
            })
            .unwrap_or_default();
        let (verb, yes) = if approve {
            ("Approve", "yes, approve")
        } else {
            ("Deny", "yes, deny")
        };
        self.mode = Mode::Confirm {
            message: format!("{verb}: {summary}?"),
            yes: yes.into(),
            action: Action::Decide {
                task,
                step,
                approve,
                note: (!text.is_empty()).then_some(text),
            },
        };
    }

    /// Where keys are typed now (see `keymap::Place`).
    pub fn place(&self) -> Place {
        if matches!(self.mode, Mode::Viewer(_)) {
            return Place::Viewer;
        }
        match (self.focus, &self.screen) {
            (Focus::Namespaces, _) => Place::Namespaces,
            (Focus::Events, _) => Place::Events,
            (Focus::Main, Screen::Tasks) => Place::TasksTable,
            (Focus::Main, Screen::Task(_)) => Place::TaskView,
            (Focus::Main, Screen::Approvals) => Place::Inbox,
            (Focus::Main, Screen::Metrics) => Place::Metrics,
            (Focus::Detail, _) => Place::StepPane,
            (Focus::Main, Screen::Audit) => Place::Audit,
        }
    }

    fn normal_key(&mut self, key: KeyEvent) {
        if !is_typing(&key) {
            return;
        }
        let Some(binding) = keymap::lookup(key.code, self.place()) else {
            return;
        };
        if self.read_only && binding.action.mutates() {
            return self.notify(format!(
                "read-only: `{}` ({}) changes tasks and is off{}",
                binding.label,
                binding.help,
                if self.info.read_only_flag {
                    " (--read-only)"
                } else if self.theme.read_only {
                    " (the theme is read-only)"
                } else {
                    " for a viewer"
                }
            ));
        }
        match binding.action {
            KeyAction::Quit => self.quit = true,
            KeyAction::Help => self.mode = Mode::Help { scroll: 0 },
            KeyAction::CommandLine => self.mode = Mode::Command(LineEdit::default()),
            KeyAction::Filter => {
                let current = match self.focus {
                    Focus::Events => self.event_filter.clone(),
                    _ => self.task_filter.text.clone(),
                };
                self.mode = Mode::Filter(LineEdit::with(&current));
            }
            KeyAction::NextPane => self.cycle_focus(true),
            KeyAction::PreviousPane => self.cycle_focus(false),
            KeyAction::Down => self.move_selection(1),
            KeyAction::Up => self.move_selection(-1),
            KeyAction::PageDown => self.move_selection(10),
            KeyAction::PageUp => self.move_selection(-10),
            KeyAction::First => self.move_selection(-1_000_000),
            KeyAction::Last => self.move_selection(1_000_000),
            KeyAction::Open | KeyAction::ShowNamespace => self.enter(),
            KeyAction::OpenSlowest => self.open_slowest(),
            KeyAction::OpenAuditTask => self.open_audit_task(),
            KeyAction::Refresh => self.act(Action::Audit(self.audit_query.clone())),
            KeyAction::ShowPayload => self.show_payload(),
            KeyAction::ShowContext => self.show_context(),
            KeyAction::ShowHistory => self.show_history(),
            KeyAction::OpenLink => self.open_link(),
            KeyAction::Mark => self.toggle_mark(),
            KeyAction::FollowTask => self.follow_task(),
            KeyAction::Back => self.back(),
            KeyAction::NewTask => self.open_form(None),
            KeyAction::Retry => self.retry_current(),
            KeyAction::RetryNow => self.retry_step_now(),
            KeyAction::Cancel => self.cancel_current(),
            KeyAction::Approve => self.start_decision(true),
            KeyAction::Deny => self.start_decision(false),
            KeyAction::SortNext => {
                self.sort = self.sort.next();
                self.notify(format!("sorted by {}", self.sort.label()));
            }
            KeyAction::SortReverse => {
                self.reverse = !self.reverse;
                self.notify(if self.reverse {
                    "order reversed"
                } else {
                    "order restored"
                });
            }
            KeyAction::StateFilter => {
                let next = match self.task_filter.state {
                    None => Some(TaskState::Pending),
                    Some(s) => TaskState::ALL.iter().skip_while(|x| **x != s).nth(1).copied(),
                };
                self.task_filter.state = next;
                self.notify(format!(
                    "state filter: {}",
                    next.map_or("all".to_string(), |s| s.to_string())
                ));
                self.refresh_search();
            }
        }
    }

    /// `R` on the open task's selected step: starts it now if it waits out a backoff.
    fn retry_step_now(&mut self) {
        let Screen::Task(id) = &self.screen else { return };
        let Some(task) = self.vm.task(id).cloned() else {
            return;
        };
        let Some(&i) = super::dag::reading_order(&task).get(self.selected_step) else {
            return;
        };
        let step = &task.steps[i];
        if step.state != crate::model::StepState::WaitingForRetry {
            return self.notify(format!(
                "step {} is {}; R starts a step waiting out its backoff",
                step.name, step.state
            ));
        }
        self.act(Action::RetryNow {
            task: task.id.clone(),
            step: step.name.clone(),
        });
        self.notify(format!("starting {} now", step.name));
    }

    fn toggle_mark(&mut self) {
        let Some(t) = self.current_task() else {
            return self.notify("no task selected");
        };
        if !self.marked.remove(&t.id) {
            self.marked.insert(t.id.clone());
        }
        self.move_selection(1);
    }

    /// The marked tasks the console holds, in id order.
    fn marked_tasks(&self) -> Vec<Arc<Task>> {
        self.marked
            .iter()
            .filter_map(|id| self.vm.task(id).cloned())
            .collect()
    }

    /// `r` or `c` with tasks marked: one confirmation naming how many and which (those that
    /// cannot take the action are named as skipped).
    fn act_on_marked(&mut self, retry: bool) {
        let tasks = self.marked_tasks();
        let (fit, skipped): (Vec<Arc<Task>>, Vec<Arc<Task>>) = tasks.into_iter().partition(|t| {
            if retry {
                t.state == TaskState::Error
            } else {
                !t.state.is_terminal()
            }
        });
        let short = |ts: &[Arc<Task>]| {
            ts.iter()
                .map(|t| crate::model::short_id(&t.id).to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        if fit.is_empty() {
            return self.notify(format!(
                "none of the {} marked task(s) can be {}",
                skipped.len(),
                if retry {
                    "retried (only failed ones)"
                } else {
                    "cancelled (all have ended)"
                }
            ));
        }
        let verb = if retry { "Retry" } else { "Cancel" };
        let mut message = format!("{verb} {} marked task(s): {}?", fit.len(), short(&fit));
        if !skipped.is_empty() {
            message.push_str(&format!(" ({} skipped: {})", skipped.len(), short(&skipped)));
        }
        let ids: Vec<String> = fit.iter().map(|t| t.id.clone()).collect();
        self.mode = Mode::Confirm {
            action: if retry {
                Action::RetryMany(ids)
            } else {
                Action::CancelMany(ids)
            },
            message,
            yes: format!("yes, {} {}", verb.to_lowercase(), fit.len()),
        };
    }

    fn retry_current(&mut self) {
        if !self.marked.is_empty() && self.screen == Screen::Tasks {
            return self.act_on_marked(true);
        }
        match self.current_task() {
            Some(t) if t.state == TaskState::Error => {
                self.act(Action::Retry(t.id.clone()));
                self.notify(format!("retrying {}", crate::model::short_id(&t.id)));
            }
            Some(t) => self.notify(format!(
                "task {} is {}; only a failed task can be retried",
                crate::model::short_id(&t.id),
                t.state
            )),
            None => self.notify("no task selected"),
        }
    }

    fn cancel_current(&mut self) {
        if !self.marked.is_empty() && self.screen == Screen::Tasks {
            return self.act_on_marked(false);
        }
        match self.current_task() {
            Some(t) if !t.state.is_terminal() => {
                self.mode = Mode::Confirm {
                    action: Action::Cancel(t.id.clone()),
                    message: format!(
                        "Cancel task {} ({})?",
                        crate::model::short_id(&t.id),
                        t.workflow_ref()
                    ),
                    yes: "yes, cancel it".into(),
                };
            }
            Some(t) => self.notify(format!(
                "task {} is already {}",
                crate::model::short_id(&t.id),
                t.state
            )),
            None => self.notify("no task selected"),
        }
    }

    /// Steps waiting for approval, oldest request first: `(task, step index)`. A request past
    /// its deadline is not listed: it can no longer be decided (the engine expires it).
    pub fn approvals(&self) -> Vec<(Arc<Task>, usize)> {
        let mut out: Vec<(Arc<Task>, usize)> = self
            .vm
            .awaiting()
            .filter_map(|t| {
                let i = t.steps.iter().position(|s| {
                    s.state == crate::model::StepState::AwaitingApproval
                        && s.approval.as_ref().is_some_and(|a| a.expires_at > self.now)
                })?;
                Some((t.clone(), i))
            })
            .collect();
        out.sort_by_key(|(t, i)| t.steps[*i].approval.as_ref().map_or(0, |a| a.requested_at));
        out
    }

    /// The approval the keys act on: the inbox's selection, or the open task's selected gate.
    pub fn current_approval(&self) -> Option<(Arc<Task>, usize)> {
        match &self.screen {
            Screen::Approvals => self.approvals().get(self.selected_approval).cloned(),
            Screen::Task(id) => {
                let task = self.vm.task(id)?.clone();
                let i = *super::dag::reading_order(&task).get(self.selected_step)?;
                (task.steps[i].state == crate::model::StepState::AwaitingApproval).then_some((task, i))
            }
            Screen::Tasks | Screen::Metrics | Screen::Audit => None,
        }
    }

    /// Whether this console's operator may decide `task`'s request, and if not, why.
    pub fn may_decide(&self, task: &Task, step: usize) -> Result<(), String> {
        let requester = task.steps[step]
            .approval
            .as_ref()
            .map_or("", |a| a.request.requester.as_str());
        crate::auth::Coordinator::new(self.catalog.clone())
            .check(
                &self.identity,
                crate::auth::Request::Decide {
                    namespace: &task.namespace,
                    requester,
                },
            )
            .map_err(|d| d.0)
    }

    fn start_decision(&mut self, approve: bool) {
        if self.screen == Screen::Approvals && !self.marked.is_empty() {
            return self.start_many(approve);
        }
        let Some((task, i)) = self.current_approval() else {
            return self.notify("select a step waiting for approval (:approvals lists them)");
        };
        if let Err(why) = self.may_decide(&task, i) {
            return self.notify(why);
        }
        self.mode = Mode::Decide {
            task: task.id.clone(),
            step: task.steps[i].name.clone(),
            approve,
            note: LineEdit::default(),
        };
    }

    /// `a` or `d` in the inbox with requests marked: one note for all of them.
    fn start_many(&mut self, approve: bool) {
        let mut targets = Vec::new();
        let mut skipped = Vec::new();
        for (task, i) in self.approvals() {
            if !self.marked.contains(&task.id) {
                continue;
            }
            match self.may_decide(&task, i) {
                Ok(()) => targets.push((task.id.clone(), task.steps[i].name.clone())),
                Err(why) => skipped.push(format!(
                    "{}: {}",
                    crate::model::short_id(&task.id),
                    crate::model::clip(&why, 60)
                )),
            }
        }
        if targets.is_empty() {
            return self.notify(if skipped.is_empty() {
                "none of the marked requests is waiting any more".to_string()
            } else {
                format!(
                    "you may decide none of the marked requests: {}",
                    skipped.join("; ")
                )
            });
        }
        self.mode = Mode::DecideMany {
            targets,
            skipped,
            approve,
            note: LineEdit::default(),
        };
    }

    fn cycle_focus(&mut self, forward: bool) {
        // The step pane takes focus only where it is shown: in an open task.
        let order: &[Focus] = if matches!(self.screen, Screen::Task(_)) {
            &[Focus::Namespaces, Focus::Main, Focus::Detail, Focus::Events]
        } else {
            &[Focus::Namespaces, Focus::Main, Focus::Events]
        };
        let n = order.len();
        let at = order.iter().position(|f| *f == self.focus).unwrap_or(1);
        let next = if forward { (at + 1) % n } else { (at + n - 1) % n };
        self.focus = order[next];
    }

    /// The open task's step pane, as drawn: its lines and which of them are links.
    pub fn step_pane(&self) -> Vec<super::inspect::PaneLine> {
        let Screen::Task(id) = &self.screen else {
            return Vec::new();
        };
        let Some(task) = self.vm.task(id) else {
            return Vec::new();
        };
        let Some(&i) = super::dag::reading_order(task).get(self.selected_step) else {
            return Vec::new();
        };
        let log = self
            .vm
            .transitions
            .as_ref()
            .filter(|(tid, _)| tid == id)
            .map(|(_, log)| log.as_slice());
        super::inspect::step_lines(self, task, i, log)
    }

    /// Enter: in the step pane, the link on the cursor's line; in the graph, the selected
    /// step's child task.
    fn open_link(&mut self) {
        let link = if self.focus == Focus::Detail {
            let lines = self.step_pane();
            let at = self.detail_cursor.min(lines.len().saturating_sub(1));
            match lines.get(at).and_then(|l| l.link.clone()) {
                Some(link) => Some(link),
                None => return self.notify("not a link: move to a parent or child line (j/k)"),
            }
        } else {
            let Screen::Task(id) = &self.screen else { return };
            let child = self.vm.task(id).and_then(|task| {
                let i = *super::dag::reading_order(task).get(self.selected_step)?;
                task.steps[i].child.as_ref().map(|c| c.task_id.clone())
            });
            match child {
                Some(c) => Some(c),
                None => {
                    return self.notify("this step has no child task; Tab to the step pane for the links")
                }
            }
        };
        if let Some(id) = link {
            self.follow_link(id);
        }
    }

    fn move_selection(&mut self, delta: i64) {
        let step = |current: usize, len: usize| -> usize {
            if len == 0 {
                return 0;
            }
            (current as i64 + delta).clamp(0, len as i64 - 1) as usize
        };
        match (self.focus, &self.screen) {
            (Focus::Namespaces, _) => {
                let len = self.namespaces().len() + 1; // "all" first
                self.selected_namespace = step(self.selected_namespace, len);
            }
            (Focus::Main, Screen::Tasks) => {
                let rows = self.rows();
                let at = step(self.selected_index(), rows.len());
                self.selected_task = rows.get(at).map(|t| t.id.clone());
                // Moving down past the last row loaded asks the store for older tasks (or
                // the search's next page).
                let at_end = rows.is_empty() || at + 1 >= rows.len();
                if let Some(search) = &self.search {
                    if delta > 0 && at_end && !search.loading {
                        if let Some(cursor) = search.next.clone() {
                            let query = self.search_query(search.words.clone(), Some(cursor));
                            let serial = search.serial;
                            if let Some(s) = self.search.as_mut() {
                                s.loading = true;
                            }
                            self.act(Action::Search { serial, query });
                        }
                    }
                } else if delta > 0 && at_end && self.vm.more_older && !self.loading_older {
                    self.loading_older = true;
                    self.act(Action::Older);
                }
            }
            (Focus::Main, Screen::Task(id)) => {
                let len = self.vm.task(id).map_or(0, |t| t.steps.len());
                let before = self.selected_step;
                self.selected_step = step(self.selected_step, len);
                if before != self.selected_step {
                    self.detail_cursor = 0;
                }
            }
            (Focus::Detail, _) => {
                let len = self.step_pane().len();
                self.detail_cursor = step(self.detail_cursor, len);
            }
            (Focus::Main, Screen::Approvals) => {
                self.selected_approval = step(self.selected_approval, self.approvals().len());
            }
            (Focus::Main, Screen::Metrics) => {
                self.selected_slow = step(self.selected_slow, self.slow_rows().len());
            }
            (Focus::Main, Screen::Audit) => {
                self.selected_audit = step(self.selected_audit, self.audit_rows().len());
            }
            (Focus::Events, _) => {
                // The newest is at the bottom: down goes towards it.
                let len = self.event_rows().len() as i64;
                self.selected_event =
                    (self.selected_event as i64 - delta).clamp(0, (len - 1).max(0)) as usize;
            }
        }
    }

    fn enter(&mut self) {
        match (self.focus, &self.screen) {
            (Focus::Namespaces, _) => {
                let namespaces = self.namespaces();
                self.task_filter.namespace = match self.selected_namespace {
                    0 => None,
                    i => namespaces.get(i - 1).cloned(),
                };
                self.screen = Screen::Tasks;
                self.focus = Focus::Main;
                self.refresh_search();
            }
            (Focus::Main, Screen::Tasks) => {
                if let Some(t) = self.current_task() {
                    // A search result the console does not hold (an old task): read it.
                    if self.vm.task(&t.id).is_none() {
                        self.act(Action::Load(t.id.clone()));
                    }
                    self.open_task(t.id.clone());
                }
            }
            (Focus::Main, Screen::Approvals) => {
                if let Some((t, _)) = self.current_approval() {
                    self.open_task(t.id.clone());
                }
            }
            _ => {}
        }
    }

    fn back(&mut self) {
        if self.focus == Focus::Detail {
            self.focus = Focus::Main;
        } else if let Screen::Task(_) | Screen::Approvals | Screen::Metrics | Screen::Audit = self.screen {
            let previous = match self.screen {
                Screen::Task(_) => self.back_to.pop(),
                _ => None,
            };
            match previous {
                Some(Screen::Task(id)) => {
                    // Back along a followed link: the task it came from, its log read again.
                    let trail = std::mem::take(&mut self.back_to);
                    self.show_task(id);
                    self.back_to = trail;
                }
                Some(screen) => {
                    self.screen = screen;
                    self.act(Action::Focus(None));
                }
                None => {
                    self.screen = Screen::Tasks;
                    self.act(Action::Focus(None));
                }
            }
        } else if self.focus != Focus::Main {
            self.focus = Focus::Main;
        } else if self.task_filter != TaskFilter::default() || self.search.is_some() {
            self.task_filter = TaskFilter::default();
            self.clear_search();
            self.notify("filters and search cleared");
        }
    }

    /// Searches the store for `words` with the table's filters (state, namespace, since).
    fn start_search(&mut self, words: String) {
        let serial = self.search.as_ref().map_or(1, |s| s.serial + 1);
        self.search = Some(StoreSearch {
            words: words.clone(),
            serial,
            loading: true,
            ..StoreSearch::default()
        });
        self.selected_task = None;
        self.vm.generation += 1;
        self.act(Action::Search {
            serial,
            query: self.search_query(words, None),
        });
    }

    fn search_query(&self, words: String, cursor: Option<String>) -> crate::client::TaskQuery {
        crate::client::TaskQuery {
            namespace: self.task_filter.namespace.clone(),
            state: self.task_filter.state,
            since: self.task_filter.since,
            search: Some(words),
            limit: Some(SEARCH_PAGE),
            cursor,
            ..crate::client::TaskQuery::default()
        }
    }

    /// The filters changed: a store search runs again with them.
    fn refresh_search(&mut self) {
        if let Some(words) = self.search.as_ref().map(|s| s.words.clone()) {
            self.start_search(words);
        }
    }

    fn clear_search(&mut self) {
        if self.search.take().is_some() {
            self.vm.generation += 1;
        }
    }

    fn filter_key(&mut self, mut line: LineEdit, key: KeyEvent) {
        match key.code {
            // In the tasks table, Enter searches the whole store for the words.
            KeyCode::Enter if self.place() == Place::TasksTable => {
                let words = line.text.trim().to_string();
                if words.is_empty() {
                    self.clear_search();
                } else {
                    self.start_search(words);
                }
                return;
            }
            KeyCode::Enter => return,
            KeyCode::Esc => {
                line = LineEdit::default();
                if self.focus != Focus::Events {
                    self.clear_search();
                }
            }
            _ => {
                line.edit(&key);
            }
        }
        match self.focus {
            Focus::Events => self.event_filter = line.text.clone(),
            _ => self.task_filter.text = line.text.clone(),
        }
        if key.code != KeyCode::Esc {
            self.mode = Mode::Filter(line);
        }
    }

    /// Completes the command line: the command name, then its argument.
    pub fn complete(&self, line: &str) -> Vec<String> {
        let (cmd, arg) = match line.split_once(' ') {
            None => {
                return keymap::usable_commands(self.read_only)
                    .map(|c| c.name)
                    .filter(|c| c.starts_with(line))
                    .map(|c| c.to_string())
                    .collect()
            }
            Some(parts) => parts,
        };
        let options: Vec<String> = match cmd {
            "ns" => self.namespaces(),
            "theme" => Theme::names(),
            "submit" => self
                .catalog
                .iter()
                .map(|w| format!("{}/{}", w.template.namespace, w.template.name))
                .collect(),
            "state" => std::iter::once("all".to_string())
                .chain(TaskState::ALL.iter().map(|s| s.to_string()))
                .collect(),
            "since" => ["30m", "2h", "1d", "7d", "all"].map(String::from).to_vec(),
            "sort" => ["age", "workflow", "state", "progress", "health"]
                .map(String::from)
                .to_vec(),
            _ => Vec::new(),
        };
        let mut options: Vec<String> = options
            .into_iter()
            .filter(|o| o.starts_with(arg))
            .map(|o| format!("{cmd} {o}"))
            .collect();
        options.dedup();
        options
    }

    fn command_key(&mut self, mut line: LineEdit, key: KeyEvent) {
        match key.code {
            KeyCode::Esc => return,
            KeyCode::Enter => return self.run_command(line.text.trim()),
            KeyCode::Tab => {
                let options = self.complete(&line.text);
                if let Some(first) = options.first() {
                    let prefix = common_prefix(&options);
                    let chosen = if options.len() == 1 {
                        format!("{first} ")
                    } else {
                        prefix
                    };
                    if chosen.len() > line.text.len() {
                        line = LineEdit::with(&chosen);
                    } else {
                        self.notify(options.join("  "));
                    }
                }
            }
            _ => {
                line.edit(&key);
            }
        }
        self.mode = Mode::Command(line);
    }

    pub fn run_command(&mut self, text: &str) {
        let (cmd, arg) = text.split_once(' ').map_or((text, ""), |(c, a)| (c, a.trim()));
        match cmd {
            "q" | "quit" => self.quit = true,
            "tasks" => {
                self.screen = Screen::Tasks;
                self.focus = Focus::Main;
            }
            "events" => self.focus = Focus::Events,
            "audit" => self.open_audit(arg),
            "metrics" => {
                self.screen = Screen::Metrics;
                self.focus = Focus::Main;
                self.selected_slow = 0;
            }
            "approvals" => {
                self.screen = Screen::Approvals;
                self.focus = Focus::Main;
                if let Some((t, _)) = self.approvals().first() {
                    self.act(Action::Focus(Some(t.id.clone())));
                }
            }
            "ns" => {
                if arg.is_empty() || arg == "all" {
                    self.task_filter.namespace = None;
                } else if self.namespaces().iter().any(|n| n == arg) {
                    self.task_filter.namespace = Some(arg.to_string());
                } else {
                    return self.notify(format!(
                        "no namespace `{arg}`; namespaces: {}",
                        self.namespaces().join(", ")
                    ));
                }
                self.screen = Screen::Tasks;
                self.focus = Focus::Main;
                self.refresh_search();
            }
            "since" => {
                if arg.is_empty() || arg == "all" {
                    self.task_filter.since = None;
                } else {
                    match crate::engine::search::since(arg, self.now) {
                        Ok(at) => self.task_filter.since = Some(at),
                        Err(e) => return self.notify(e),
                    }
                }
                self.screen = Screen::Tasks;
                self.focus = Focus::Main;
                self.refresh_search();
            }
            "theme" => match Theme::load(arg) {
                Ok(theme) => {
                    self.theme = if self.no_color {
                        theme.without_colour()
                    } else {
                        theme
                    };
                    self.decide_read_only();
                    self.notify(format!(
                        "theme {arg}{}",
                        if self.theme.read_only { " (read-only)" } else { "" }
                    ));
                }
                Err(e) => self.notify(e.to_string()),
            },
            "submit" if self.read_only => self.notify("read-only: :submit changes tasks and is off"),
            "submit" => match self.catalog.resolve(arg) {
                Ok(w) => self.open_form(Some(w)),
                Err(e) => self.notify(e.to_string()),
            },
            "state" => {
                if arg == "all" || arg.is_empty() {
                    self.task_filter.state = None;
                } else {
                    match arg.parse() {
                        Ok(s) => self.task_filter.state = Some(s),
                        Err(e) => return self.notify(e),
                    }
                }
                self.refresh_search();
            }
            "sort" => match arg {
                "age" => self.sort = SortKey::Age,
                "workflow" => self.sort = SortKey::Workflow,
                "state" => self.sort = SortKey::State,
                "progress" => self.sort = SortKey::Progress,
                "health" => self.sort = SortKey::Health,
                _ => self.notify(format!(
                    "unknown sort `{arg}`; expected age, workflow, state, progress or health"
                )),
            },
            "" => {}
            _ => self.notify(format!(
                "unknown command `{cmd}`; commands: {}",
                keymap::command_names().join(", ")
            )),
        }
    }

    // ----- the new-task form ------------------------------------------------------------------

    fn open_form(&mut self, workflow: Option<Arc<Workflow>>) {
        let mut form = NewTaskForm {
            filter: LineEdit::default(),
            picked: 0,
            workflow: None,
            editor: TextArea::default(),
            errors: Vec::new(),
        };
        if let Some(w) = workflow {
            choose(&mut form, w);
        }
        self.mode = Mode::Form(Box::new(form));
    }

    /// Workflows the form lists for its filter text.
    pub fn form_choices(&self, filter: &str) -> Vec<Arc<Workflow>> {
        self.catalog
            .iter()
            .filter(|w| w.template.reference().contains(filter))
            .cloned()
            .collect()
    }

    fn form_key(&mut self, mut form: Box<NewTaskForm>, key: KeyEvent) {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if form.workflow.is_none() {
            let choices = self.form_choices(&form.filter.text);
            match key.code {
                KeyCode::Esc => return,
                KeyCode::Enter => {
                    if let Some(w) = choices.get(form.picked.min(choices.len().saturating_sub(1))) {
                        choose(&mut form, w.clone());
                    }
                }
                KeyCode::Down => form.picked = (form.picked + 1).min(choices.len().saturating_sub(1)),
                KeyCode::Up => form.picked = form.picked.saturating_sub(1),
                _ => {
                    if form.filter.edit(&key) {
                        form.picked = 0;
                    }
                }
            }
            self.mode = Mode::Form(form);
            return;
        }
        match key.code {
            KeyCode::Esc => {
                form.workflow = None;
            }
            KeyCode::Char('s') if ctrl => {
                validate_form(&mut form);
                if form.errors.is_empty() {
                    let workflow = form
                        .workflow
                        .as_ref()
                        .map(|w| w.template.reference())
                        .unwrap_or_default();
                    let context = serde_json::from_str(&form.editor.text()).unwrap_or(Value::Null);
                    self.act(Action::Submit { workflow, context });
                    return;
                }
            }
            KeyCode::Enter => form.editor.newline(),
            KeyCode::Backspace => form.editor.backspace(),
            KeyCode::Up => form.editor.up(),
            KeyCode::Down => form.editor.down(),
            KeyCode::Left => form.editor.left(),
            KeyCode::Right => form.editor.right(),
            KeyCode::Home => form.editor.home(),
            KeyCode::End => form.editor.end(),
            KeyCode::Delete => form.editor.delete(),
            KeyCode::Tab => {
                form.editor.insert(' ');
                form.editor.insert(' ');
            }
            KeyCode::Char(c) if is_typing(&key) => form.editor.insert(c),
            _ => {}
        }
        validate_form(&mut form);
        self.mode = Mode::Form(form);
    }

    /// The help overlay's keys for where they are typed now: `(keys, what they do)`. From
    /// `keymap`, like the key bar and completion.
    pub fn keys(&self) -> Vec<(String, String)> {
        keymap::usable(self.place(), self.read_only)
            .map(|b| (b.label.to_string(), b.help.to_string()))
            .collect()
    }

    /// The help overlay's `:` commands: `(usage, what it does)`.
    pub fn commands(&self) -> Vec<(String, String)> {
        keymap::usable_commands(self.read_only)
            .map(|c| {
                let usage = if c.args.is_empty() {
                    format!(":{}", c.name)
                } else {
                    format!(":{} {}", c.name, c.args)
                };
                (usage, c.help.to_string())
            })
            .collect()
    }

    /// The key bar: `(key, short name)` of the bindings that show there, for where the keys
    /// are typed now.
    /// Whether `action` can do something for what is selected now: the key bar offers only
    /// those (help lists every key of the place).
    fn applies(&self, action: KeyAction) -> bool {
        use crate::model::StepState;
        let step = || {
            let Screen::Task(id) = &self.screen else {
                return None;
            };
            let task = self.vm.task(id)?;
            let i = *super::dag::reading_order(task).get(self.selected_step)?;
            task.steps.get(i).cloned()
        };
        let marked = !self.marked.is_empty();
        match action {
            KeyAction::RetryNow => step().is_some_and(|s| s.state == StepState::WaitingForRetry),
            KeyAction::OpenLink if self.focus == Focus::Main => step().is_some_and(|s| s.child.is_some()),
            KeyAction::Approve | KeyAction::Deny => {
                (self.screen == Screen::Approvals && marked)
                    || self
                        .current_approval()
                        .is_some_and(|(t, i)| self.may_decide(&t, i).is_ok())
            }
            KeyAction::Retry if self.place() == Place::Audit => true,
            KeyAction::Retry => {
                (self.screen == Screen::Tasks && marked)
                    || self.current_task().is_some_and(|t| t.state == TaskState::Error)
            }
            KeyAction::Cancel => {
                (self.screen == Screen::Tasks && marked)
                    || self.current_task().is_some_and(|t| !t.state.is_terminal())
            }
            _ => true,
        }
    }

    pub fn key_bar(&self) -> Vec<(&'static str, &'static str)> {
        let place = self.place();
        keymap::usable(place, self.read_only)
            .filter(|b| place != Place::Viewer || keymap::VIEWER_ACTIONS.contains(&b.action))
            .filter(|b| self.applies(b.action))
            .filter_map(|b| {
                b.bar
                    .map(|bar| (b.label.split(' ').next().unwrap_or(b.label), bar))
            })
            .collect()
    }
}

fn choose(form: &mut NewTaskForm, workflow: Arc<Workflow>) {
    let sample = workflow
        .template
        .sample_context
        .clone()
        .unwrap_or(Value::Object(Default::default()));
    form.editor = TextArea::new(&serde_json::to_string_pretty(&sample).unwrap_or_else(|_| "{}".into()));
    form.workflow = Some(workflow);
    validate_form(form);
}

/// Parses the editor's JSON and checks it against the workflow's schema.
fn validate_form(form: &mut NewTaskForm) {
    form.errors.clear();
    let Some(workflow) = &form.workflow else { return };
    match serde_json::from_str::<Value>(&form.editor.text()) {
        Err(e) => form.errors.push(format!("not valid JSON: {e}")),
        Ok(context) => {
            if let Err(crate::workflow::CatalogError::InvalidContext { violations, .. }) =
                workflow.validate_context(&context)
            {
                form.errors = violations;
            }
        }
    }
}

fn common_prefix(options: &[String]) -> String {
    let first = &options[0];
    let mut len = first.len();
    for o in &options[1..] {
        len = len.min(first.bytes().zip(o.bytes()).take_while(|(a, b)| a == b).count());
    }
    first[..len].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::Source;
    use tokio::sync::mpsc;

    fn app() -> (App, mpsc::UnboundedReceiver<Action>) {
        // Handlers do not matter to the console: accept every name.
        let catalog = Arc::new(Catalog::load(&[Source::Bundled], &|_| true).unwrap());
        let (tx, rx) = mpsc::unbounded_channel();
        let info = HeaderInfo {
            endpoint: String::new(),
            data_dir: "d".into(),
            durability: "immediate".into(),
            operator: "o".into(),
            read_only_flag: false,
        };
        let vm = ViewModel::new(super::super::workflow_entries(&catalog));
        (App::new(vm, Theme::load("dark").unwrap(), info, catalog, tx), rx)
    }

    fn press(app: &mut App, code: KeyCode) {
        app.on_key(KeyEvent::new(code, KeyModifiers::NONE));
    }

    #[test]
    fn moving_past_the_last_row_asks_for_older_tasks_once() {
        let (mut app, mut actions) = app();
        app.focus = Focus::Main;
        app.apply(Update::Tasks(vec![
            crate::console::model::tests::task("01", "ns", TaskState::Complete, &[], 1),
            crate::console::model::tests::task("02", "ns", TaskState::Complete, &[], 2),
        ]));
        app.apply(Update::Paged { more: true });
        press(&mut app, KeyCode::Down);
        press(&mut app, KeyCode::Down);
        press(&mut app, KeyCode::Down);
        let asked: Vec<Action> = std::iter::from_fn(|| actions.try_recv().ok())
            .filter(|a| *a == Action::Older)
            .collect();
        assert_eq!(asked.len(), 1, "one request until the page arrives");
        app.apply(Update::Paged { more: false });
        press(&mut app, KeyCode::Down);
        assert!(std::iter::from_fn(|| actions.try_recv().ok()).all(|a| a != Action::Older));
    }

    fn entry(seq: u64, actor: &str, action: &str, resource: &str) -> crate::audit::AuditEntry {
        crate::audit::AuditEntry {
            seq,
            record: crate::audit::AuditRecord::new(
                1_000 * seq as i64,
                actor,
                action,
                resource.into(),
                "d".into(),
            ),
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    #[test]
    fn audit_reads_the_journal_with_its_filter_narrows_with_slash_and_opens_an_entrys_task() {
        let (mut app, mut actions) = app();
        app.run_command("audit actor:jane action:step");
        assert_eq!(app.screen, Screen::Audit);
        assert_eq!(app.place(), Place::Audit);
        let asked: Vec<Action> = std::iter::from_fn(|| actions.try_recv().ok()).collect();
        let want = crate::client::AuditQuery {
            actor: Some("jane".into()),
            action: Some("step".into()),
            ..Default::default()
        };
        assert!(asked.contains(&Action::Audit(want.clone())), "{asked:?}");
        app.run_command("audit who:jane");
        assert!(
            app.notice.as_ref().unwrap().0.contains("actor:NAME"),
            "a bad term is explained"
        );
        app.run_command("audit action:authz action:token");
        assert!(
            app.notice.as_ref().unwrap().0.contains("given once"),
            "a term given twice is refused"
        );
        app.apply(Update::Audit(vec![
            entry(
                3,
                "jane",
                "step.transition",
                "task/0193aaaa-0000-7000-8000-000000000001/step/get_manager_approval",
            ),
            entry(2, "jane", "policy.changed", "policy"),
        ]));
        assert_eq!(app.audit_rows().len(), 2);
        press(&mut app, KeyCode::Char('/'));
        for c in "policy".chars() {
            press(&mut app, KeyCode::Char(c));
        }
        press(&mut app, KeyCode::Enter);
        assert_eq!(app.audit_rows().len(), 1, "`/` narrows the rows");
        press(&mut app, KeyCode::Enter);
        assert!(app.notice.as_ref().unwrap().0.contains("not about a task"));
        app.task_filter.text.clear();
        press(&mut app, KeyCode::Char('r'));
        assert!(
            std::iter::from_fn(|| actions.try_recv().ok()).any(|a| a == Action::Audit(want.clone())),
            "r reads again"
        );
        press(&mut app, KeyCode::Enter);
        assert_eq!(
            app.screen,
            Screen::Task("0193aaaa-0000-7000-8000-000000000001".into())
        );
        assert!(std::iter::from_fn(|| actions.try_recv().ok()).any(|a| matches!(a, Action::Load(_))));
        press(&mut app, KeyCode::Esc);
        assert_eq!(app.screen, Screen::Audit, "Esc returns to the journal");
        press(&mut app, KeyCode::Esc);
        assert_eq!(app.screen, Screen::Tasks);
    }

    #[test]
    fn marked_tasks_are_retried_together_after_one_confirmation_naming_them() {
        let (mut app, mut actions) = app();
        use crate::console::model::tests::task;
        app.apply(Update::Tasks(vec![
            task("01", "ns", TaskState::Error, &[], 1),
            task("02", "ns", TaskState::Error, &[], 2),
            task("03", "ns", TaskState::Complete, &[], 3),
        ]));
        app.focus = Focus::Main;
        // Newest first: 03, 02, 01. Mark all three (Space moves down).
        for _ in 0..3 {
            press(&mut app, KeyCode::Char(' '));
        }
        assert_eq!(app.marked.len(), 3);
        press(&mut app, KeyCode::Char('r'));
        match &app.mode {
            Mode::Confirm { message, yes, action } => {
                assert!(message.starts_with("Retry 2 marked task(s)"), "{message}");
                assert!(
                    message.contains("1 skipped"),
                    "the complete one is named as skipped: {message}"
                );
                assert_eq!(yes, "yes, retry 2");
                assert!(matches!(action, Action::RetryMany(ids) if ids.len() == 2));
            }
            _ => panic!("one confirmation for the marked tasks"),
        }
        press(&mut app, KeyCode::Char('y'));
        let asked: Vec<Action> = std::iter::from_fn(|| actions.try_recv().ok()).collect();
        assert!(
            asked
                .iter()
                .any(|a| matches!(a, Action::RetryMany(ids) if ids.len() == 2)),
            "{asked:?}"
        );
        assert!(app.marked.is_empty(), "marks are spent");
        // Space again unmarks.
        press(&mut app, KeyCode::Home);
        press(&mut app, KeyCode::Char(' '));
        press(&mut app, KeyCode::Up);
        press(&mut app, KeyCode::Char(' '));
        assert!(app.marked.is_empty());
    }

    fn transition(task: &str, step: &str, at: Timestamp, from: &str, to: &str, attempt: u32) -> Transition {
        Transition {
            seq: 0,
            task_id: task.into(),
            at,
            actor: "engine".into(),
            subject: crate::model::Subject::Step(step.into()),
            from: Some(from.into()),
            to: to.into(),
            attempt,
            reason: None,
            error: (to == "waiting_for_retry").then(|| crate::model::ErrorInfo {
                kind: "retryable".into(),
                code: Some("GATEWAY_TIMEOUT".into()),
                message: "the gateway did not answer".into(),
            }),
            step: None,
        }
    }

    #[test]
    fn the_step_pane_shows_attempts_inputs_and_history_and_its_links_open_tasks_and_come_back() {
        use crate::model::StepState as S;
        let (mut app, _actions) = app();
        let mut parent = crate::console::model::tests::task(
            "01",
            "customer_success",
            TaskState::InProgress,
            &[S::Complete, S::WaitingForChild],
            0,
        );
        parent.context = serde_json::json!({ "ticket_id": "TICKET-1", "customer_email": "[REDACTED]" });
        parent.steps[1].depends_on = vec![parent.steps[0].name.clone()];
        parent.steps[0].results = Some(serde_json::json!({ "validated": true }));
        let mut child =
            crate::console::model::tests::task("02", "payments", TaskState::InProgress, &[S::InProgress], 0);
        child.parent = Some(parent.id.clone());
        parent.steps[1].child = Some(crate::model::ChildWait {
            task_id: child.id.clone(),
            results: serde_json::json!({}),
        });
        let (pid, cid) = (parent.id.clone(), child.id.clone());
        let delegate = parent.steps[1].name.clone();
        app.apply(Update::Tasks(vec![parent.clone(), child]));
        app.run_command(&format!("state {}", TaskState::InProgress));
        while app.current_task().is_some_and(|t| t.id != pid) {
            press(&mut app, KeyCode::Down);
        }
        press(&mut app, KeyCode::Enter);
        assert_eq!(app.screen, Screen::Task(pid.clone()));
        let log = vec![
            transition(&pid, &delegate, 1_000, "pending", "in_progress", 1),
            transition(&pid, &delegate, 1_400, "in_progress", "waiting_for_retry", 1),
            transition(&pid, &delegate, 3_400, "waiting_for_retry", "in_progress", 2),
            transition(&pid, &delegate, 3_600, "in_progress", "waiting_for_child", 2),
        ];
        app.apply(Update::Transitions(pid.clone(), log));
        // The graph starts on the step that waits; its pane shows everything about it.
        let text: Vec<String> = app.step_pane().iter().map(|l| l.line.to_string()).collect();
        let joined = text.join("\n");
        for expected in [
            "attempts",
            "#1",
            "400ms",
            "waiting_for_retry",
            "retryable GATEWAY_TIMEOUT: the gateway did not answer",
            "#2",
            "inputs",
            "\"ticket_id\": \"TICKET-1\"",
            "\"customer_email\": \"[REDACTED]\"",
            "\"validated\": true",
            "history",
            "waiting_for_retry → in_progress",
        ] {
            assert!(joined.contains(expected), "no `{expected}` in\n{joined}");
        }
        // Enter in the graph follows the step's child; Esc comes back.
        press(&mut app, KeyCode::Enter);
        assert_eq!(app.screen, Screen::Task(cid.clone()));
        press(&mut app, KeyCode::Esc);
        assert_eq!(app.screen, Screen::Task(pid.clone()));
        // Tab focuses the pane; j moves the cursor to a link, Enter opens it.
        press(&mut app, KeyCode::Tab);
        assert_eq!(app.place(), Place::StepPane);
        let links: Vec<usize> = app
            .step_pane()
            .iter()
            .enumerate()
            .filter(|(_, l)| l.link.is_some())
            .map(|(i, _)| i)
            .collect();
        assert!(!links.is_empty());
        press(&mut app, KeyCode::Char('G'));
        press(&mut app, KeyCode::Enter);
        assert!(app.notice.as_ref().unwrap().0.starts_with("not a link"));
        press(&mut app, KeyCode::Char('g'));
        while app.detail_cursor < links[0] {
            press(&mut app, KeyCode::Char('j'));
        }
        press(&mut app, KeyCode::Enter);
        assert_eq!(app.screen, Screen::Task(cid.clone()));
        // The child's pane links back to its parent.
        press(&mut app, KeyCode::Tab);
        assert_eq!(
            app.step_pane()[0].link.as_deref(),
            Some(pid.as_str()),
            "parent first"
        );
        press(&mut app, KeyCode::Enter);
        assert_eq!(app.screen, Screen::Task(pid.clone()));
        // Esc walks the trail back: the child, then the parent, then the tasks (an open task
        // starts with the graph focused).
        assert_eq!(app.place(), Place::TaskView);
        press(&mut app, KeyCode::Tab);
        press(&mut app, KeyCode::Esc);
        assert_eq!(app.place(), Place::TaskView, "Esc first leaves the pane");
        press(&mut app, KeyCode::Esc);
        assert_eq!(app.screen, Screen::Task(cid));
        press(&mut app, KeyCode::Esc);
        assert_eq!(app.screen, Screen::Task(pid.clone()));
        press(&mut app, KeyCode::Esc);
        assert_eq!(app.screen, Screen::Tasks);
    }

    #[test]
    fn i_shows_the_context_and_h_the_whole_history_filtered_with_slash() {
        let (mut app, mut actions) = app();
        let mut task = crate::console::model::tests::task(
            "01",
            "ns",
            TaskState::Error,
            &[crate::model::StepState::Error],
            0,
        );
        task.context = serde_json::json!({ "ticket_id": "TICKET-7", "card": "[REDACTED]" });
        let id = task.id.clone();
        let step = task.steps[0].name.clone();
        app.apply(Update::Tasks(vec![task]));
        press(&mut app, KeyCode::Char('i'));
        match &app.mode {
            Mode::Viewer(v) => {
                assert!(v.title.starts_with("context of"));
                assert!(
                    v.lines.iter().any(|l| l.contains("TICKET-7"))
                        && v.lines.iter().any(|l| l.contains("[REDACTED]"))
                );
            }
            _ => panic!("i shows the context"),
        }
        assert_eq!(app.place(), Place::Viewer);
        assert!(
            app.key_bar().iter().any(|(_, what)| *what == "close"),
            "{:?}",
            app.key_bar()
        );
        press(&mut app, KeyCode::Esc);
        assert!(matches!(app.mode, Mode::Normal));
        // The history is read from the store when not held, then shown.
        press(&mut app, KeyCode::Char('h'));
        let asked: Vec<Action> = std::iter::from_fn(|| actions.try_recv().ok()).collect();
        assert!(asked.contains(&Action::Load(id.clone())), "{asked:?}");
        let log: Vec<Transition> = (0..40u32)
            .map(|n| {
                transition(
                    &id,
                    &step,
                    i64::from(n) * 1000,
                    "pending",
                    if n == 39 { "error" } else { "in_progress" },
                    n,
                )
            })
            .collect();
        app.apply(Update::Transitions(id.clone(), log));
        let Mode::Viewer(v) = &app.mode else {
            panic!("the history opens when it arrives")
        };
        assert_eq!(v.lines.len(), 40, "every transition, not a window");
        press(&mut app, KeyCode::Char('G'));
        let Mode::Viewer(v) = &app.mode else { panic!() };
        assert_eq!(v.scroll, 39);
        press(&mut app, KeyCode::Char('/'));
        typing(&mut app, "→ error");
        press(&mut app, KeyCode::Enter);
        let Mode::Viewer(v) = &app.mode else { panic!() };
        assert_eq!(v.shown().len(), 1, "{:?}", v.shown());
        assert_eq!(v.scroll, 0);
    }

    #[test]
    fn slash_then_enter_searches_the_store_with_the_filters_and_pages_on() {
        let (mut app, mut actions) = app();
        app.now = 10 * 86_400_000;
        let held = crate::console::model::tests::task("01", "ns", TaskState::Complete, &[], 0);
        app.apply(Update::Tasks(vec![held]));
        app.run_command("state error");
        app.run_command("since 2h");
        assert_eq!(app.task_filter.since, Some(10 * 86_400_000 - 7_200_000));
        assert!(app.notice.is_none() || !app.notice.as_ref().unwrap().0.contains("expected"));
        press(&mut app, KeyCode::Char('/'));
        typing(&mut app, "TICKET-9 refund");
        press(&mut app, KeyCode::Enter);
        let asked: Vec<Action> = std::iter::from_fn(|| actions.try_recv().ok()).collect();
        let Some(Action::Search { serial, query }) =
            asked.iter().find(|a| matches!(a, Action::Search { .. })).cloned()
        else {
            panic!("Enter searches the store: {asked:?}")
        };
        assert_eq!(query.search.as_deref(), Some("TICKET-9 refund"));
        assert_eq!(query.state, Some(TaskState::Error));
        assert_eq!(query.since, Some(10 * 86_400_000 - 7_200_000));
        assert!(
            app.rows().is_empty(),
            "the held task matches neither the words nor the filters"
        );
        // A task the console did not hold: found, shown, and the next page asked for when the
        // selection moves past it.
        let mut old = crate::console::model::tests::task("02", "customer_success", TaskState::Error, &[], 0);
        old.created_at = app.now - 3_600_000;
        app.apply(Update::Found {
            serial,
            tasks: vec![old.clone()],
            next: Some("cursor-1".into()),
        });
        assert_eq!(
            app.rows().iter().map(|t| t.id.clone()).collect::<Vec<_>>(),
            vec![old.id.clone()]
        );
        // Opening it reads it from the store (the console did not hold it).
        press(&mut app, KeyCode::Enter);
        let asked: Vec<Action> = std::iter::from_fn(|| actions.try_recv().ok()).collect();
        assert!(asked.contains(&Action::Load(old.id.clone())), "{asked:?}");
        press(&mut app, KeyCode::Esc);
        assert_eq!(app.screen, Screen::Tasks);
        press(&mut app, KeyCode::Down);
        let asked: Vec<Action> = std::iter::from_fn(|| actions.try_recv().ok()).collect();
        assert!(
            asked.iter().any(
                |a| matches!(a, Action::Search { query, .. } if query.cursor.as_deref() == Some("cursor-1"))
            ),
            "{asked:?}"
        );
        // An answer to an older search is ignored; a change of filter searches again.
        app.apply(Update::Found {
            serial: serial + 7,
            tasks: vec![],
            next: None,
        });
        app.run_command("state all");
        let asked: Vec<Action> = std::iter::from_fn(|| actions.try_recv().ok()).collect();
        assert!(asked.iter().any(|a| matches!(a, Action::Search { query, .. } if query.state.is_none() && query.cursor.is_none())), "{asked:?}");
        // Esc clears the search and the filters: the held tasks are back.
        press(&mut app, KeyCode::Esc);
        assert!(app.search.is_none());
        assert_eq!(app.rows().len(), 1);
        app.run_command("since 2y");
        assert!(
            app.notice.as_ref().unwrap().0.contains("unit"),
            "{:?}",
            app.notice
        );
    }

    #[test]
    fn the_table_filter_matches_every_word_against_ids_workflows_and_indexed_fields() {
        let (mut app, _actions) = app();
        let mut refund =
            crate::console::model::tests::task("01", "customer_success", TaskState::Error, &[], 0);
        refund.context = serde_json::json!({ "ticket_id": "TICKET-98765" });
        let other = crate::console::model::tests::task("02", "customer_success", TaskState::Error, &[], 0);
        app.apply(Update::Tasks(vec![refund.clone(), other]));
        press(&mut app, KeyCode::Char('/'));
        typing(&mut app, "98765 error");
        assert_eq!(
            app.rows().iter().map(|t| t.id.clone()).collect::<Vec<_>>(),
            vec![refund.id]
        );
    }

    #[test]
    fn capital_r_starts_a_step_waiting_out_its_backoff_now() {
        let (mut app, mut actions) = app();
        let task = crate::console::model::tests::task(
            "01",
            "ns",
            TaskState::InProgress,
            &[crate::model::StepState::WaitingForRetry],
            1,
        );
        let id = task.id.clone();
        app.apply(Update::Tasks(vec![task]));
        press(&mut app, KeyCode::Enter);
        assert_eq!(app.screen, Screen::Task(id.clone()));
        press(&mut app, KeyCode::Char('R'));
        let asked: Vec<Action> = std::iter::from_fn(|| actions.try_recv().ok()).collect();
        assert!(
            asked
                .iter()
                .any(|a| matches!(a, Action::RetryNow { task, .. } if *task == id)),
            "{asked:?}"
        );
        app.read_only = true;
        press(&mut app, KeyCode::Char('R'));
        assert!(app.notice.as_ref().unwrap().0.starts_with("read-only"));
    }

    #[test]
    fn the_events_pane_scrolls_follows_one_task_and_shows_a_payload() {
        let (mut app, _) = app();
        for (seq, task) in [(1, "a"), (2, "b"), (3, "a"), (4, "b")] {
            app.apply(Update::Event(Arc::new(Event {
                seq,
                at: seq as i64,
                name: "step.completed".into(),
                task_id: format!("{task}0000000-0000-7000-8000-000000000000"),
                workflow: "ns/wf@1.0.0".into(),
                step: Some("s".into()),
                custom: false,
                payload: serde_json::json!({ "n": seq }),
            })));
        }
        app.focus = Focus::Events;
        assert_eq!(app.place(), Place::Events);
        press(&mut app, KeyCode::Up);
        press(&mut app, KeyCode::Enter);
        match &app.mode {
            Mode::Viewer(v) => {
                assert!(v.title.starts_with("#3 step.completed"), "{}", v.title);
                assert!(v.lines.iter().any(|l| l.contains("\"n\": 3")), "{:?}", v.lines);
            }
            _ => panic!("Enter shows the payload"),
        }
        press(&mut app, KeyCode::Esc);
        press(&mut app, KeyCode::Char('f'));
        assert_eq!(app.event_rows().len(), 2, "only task a's events");
        assert!(app.event_rows().iter().all(|e| e.task_id.starts_with('a')));
        press(&mut app, KeyCode::Char('f'));
        assert_eq!(app.event_rows().len(), 4, "every task again");
        press(&mut app, KeyCode::Down);
        press(&mut app, KeyCode::Down);
        assert_eq!(app.selected_event, 0, "down stops at the newest");
    }

    #[test]
    fn read_only_hides_and_refuses_every_key_and_command_that_changes_tasks() {
        let (mut app, mut actions) = app();
        app.read_only = true;
        app.apply(Update::Tasks(vec![crate::console::model::tests::task(
            "01",
            "ns",
            TaskState::Error,
            &[],
            1,
        )]));
        let bar: Vec<&str> = app.key_bar().into_iter().map(|(_, name)| name).collect();
        assert!(
            !bar.contains(&"retry") && !bar.contains(&"new") && !bar.contains(&"cancel"),
            "{bar:?}"
        );
        assert!(bar.contains(&"help") && bar.contains(&"open"), "{bar:?}");
        assert!(app.keys().iter().all(|(k, _)| k != "r" && k != "n" && k != "c"));
        assert!(app
            .commands()
            .iter()
            .all(|(usage, _)| !usage.starts_with(":submit")));
        assert_eq!(app.complete("su"), Vec::<String>::new());
        for key in ['r', 'c', 'n'] {
            press(&mut app, KeyCode::Char(key));
            assert!(matches!(app.mode, Mode::Normal), "{key} opened nothing");
            assert!(
                app.notice.as_ref().unwrap().0.starts_with("read-only"),
                "{key} says why"
            );
        }
        app.run_command("submit demo/release_pipeline");
        assert!(matches!(app.mode, Mode::Normal));
        assert!(std::iter::from_fn(|| actions.try_recv().ok()).all(|a| !matches!(
            a,
            Action::Retry(_) | Action::Cancel(_) | Action::Submit { .. } | Action::Decide { .. }
        )));
        // Reading goes on as before.
        press(&mut app, KeyCode::Enter);
        assert!(matches!(app.screen, Screen::Task(_)));
    }

    #[test]
    fn the_command_line_completes_commands_and_arguments() {
        let (app, _) = app();
        assert_eq!(app.complete("th"), ["theme"]);
        assert_eq!(app.complete("s"), ["state", "since", "sort", "submit"]);
        assert_eq!(app.complete("a"), ["approvals", "audit"]);
        assert_eq!(app.complete("theme l"), ["theme light"]);
        assert_eq!(app.complete("ns eco"), ["ns ecommerce"]);
        assert_eq!(app.complete("submit demo"), ["submit demo/release_pipeline"]);
    }

    #[test]
    fn metrics_opens_the_slowest_task_of_the_selected_step_and_a_signal_lights_the_header() {
        let (mut app, mut actions) = app();
        app.now = 1_000_000;
        let mut recent = crate::telemetry::recent::Recent::default();
        recent.attempt(
            990_000,
            "blog_examples",
            "monitored_checkout",
            "update_inventory",
            "slow-task",
            15_000,
            3.0,
        );
        recent.attempt(
            990_000,
            "blog_examples",
            "monitored_checkout",
            "validate_cart",
            "fast-task",
            20,
            2.0,
        );
        let summary = recent.summary(app.now, &[], &|_| true);
        app.apply(Update::Summary(Box::new(summary)));
        app.run_command("metrics");
        assert_eq!(app.place(), Place::Metrics);
        let rows = app.slow_rows();
        assert_eq!(rows[0].1.step, "update_inventory");
        press(&mut app, KeyCode::Char('j'));
        press(&mut app, KeyCode::Char('k'));
        press(&mut app, KeyCode::Enter);
        assert_eq!(app.screen, Screen::Task("slow-task".into()));
        assert_eq!(actions.try_recv().unwrap(), Action::Load("slow-task".into()));
        // Esc goes back where the task was opened from, then to the tasks.
        press(&mut app, KeyCode::Esc);
        assert_eq!(app.screen, Screen::Metrics);
        press(&mut app, KeyCode::Esc);
        assert_eq!(app.screen, Screen::Tasks);

        // The chosen step is selected in the task, once the task arrives.
        let mut recent = crate::telemetry::recent::Recent::default();
        recent.attempt(990_000, "ns", "wf", "s2", "03", 9_000, 5.0);
        app.apply(Update::Summary(Box::new(recent.summary(app.now, &[], &|_| true))));
        app.run_command("metrics");
        press(&mut app, KeyCode::Enter);
        use crate::model::StepState as S;
        let task = crate::console::model::tests::task(
            "03",
            "ns",
            TaskState::Error,
            &[S::Complete, S::Error, S::Complete],
            1,
        );
        app.apply(Update::Tasks(vec![task]));
        let order = crate::console::dag::reading_order(app.vm.task("03").unwrap());
        assert_eq!(
            app.vm.task("03").unwrap().steps[order[app.selected_step]].name,
            "s2"
        );
        press(&mut app, KeyCode::Esc);

        assert!(app.live_marker().is_none());
        let event = crate::engine::Event {
            seq: 1,
            at: app.now - 1_000,
            name: crate::telemetry::signals::BOTTLENECK.into(),
            task_id: "slow-task".into(),
            workflow: "blog_examples/monitored_checkout@1.0.0".into(),
            step: Some("update_inventory".into()),
            custom: false,
            payload: serde_json::json!({ "degradation_factor": 5.0 }),
        };
        app.apply(Update::Event(Arc::new(event.clone())));
        assert_eq!(
            app.live_marker().unwrap().text,
            "bottleneck update_inventory 5.0×"
        );
        // A handler's own event of that name lights nothing; the marker fades after 5 min.
        app.marker = None;
        app.apply(Update::Event(Arc::new(crate::engine::Event {
            custom: true,
            ..event
        })));
        assert!(app.live_marker().is_none());
        app.mark(Marker::of(
            crate::telemetry::signals::SLA_VIOLATION,
            "wf",
            None,
            None,
            app.now - MARKER_MS,
        ));
        assert!(app.live_marker().is_none());
    }

    #[test]
    fn commands_change_what_is_shown_and_report_mistakes() {
        let (mut app, _) = app();
        app.run_command("ns ecommerce");
        assert_eq!(app.task_filter.namespace.as_deref(), Some("ecommerce"));
        app.run_command("state error");
        assert_eq!(app.task_filter.state, Some(TaskState::Error));
        app.run_command("theme light");
        assert_eq!(app.theme.name, "light");
        app.run_command("theme neon");
        assert!(app.notice.as_ref().unwrap().0.contains("no such theme"));
        app.run_command("frobnicate");
        assert!(app
            .notice
            .as_ref()
            .unwrap()
            .0
            .starts_with("unknown command `frobnicate`"));
        app.run_command("quit");
        assert!(app.quit);
    }

    #[test]
    fn retry_asks_the_engine_only_for_failed_tasks_and_cancel_confirms() {
        let (mut app, mut actions) = app();
        let mut failed = super::super::model::tests_support::task("01", "demo", TaskState::Error);
        failed.steps.clear();
        app.apply(Update::Tasks(vec![failed]));
        press(&mut app, KeyCode::Char('r'));
        assert_eq!(actions.try_recv().unwrap(), Action::Retry("01".into()));
        press(&mut app, KeyCode::Char('c'));
        assert!(matches!(app.mode, Mode::Confirm { .. }));
        press(&mut app, KeyCode::Char('y'));
        assert_eq!(actions.try_recv().unwrap(), Action::Cancel("01".into()));

        let running = super::super::model::tests_support::task("02", "demo", TaskState::InProgress);
        app.apply(Update::Tasks(vec![running]));
        press(&mut app, KeyCode::Char('g'));
        press(&mut app, KeyCode::Char('r'));
        assert!(actions.try_recv().is_err());
        assert!(app
            .notice
            .as_ref()
            .unwrap()
            .0
            .contains("only a failed task can be retried"));
    }

    #[test]
    fn the_form_submits_only_a_valid_context() {
        let (mut app, mut actions) = app();
        press(&mut app, KeyCode::Char('n'));
        for c in "release".chars() {
            press(&mut app, KeyCode::Char(c));
        }
        press(&mut app, KeyCode::Enter);
        let Mode::Form(form) = &mut app.mode else {
            panic!("the form is open")
        };
        form.editor = TextArea::new("{\"service\": \"\"}");
        let ctrl_s = KeyEvent::new(KeyCode::Char('s'), KeyModifiers::CONTROL);
        app.on_key(ctrl_s);
        assert!(actions.try_recv().is_err(), "an invalid context is not submitted");
        let Mode::Form(form) = &mut app.mode else {
            panic!("the form stays open")
        };
        assert!(
            form.errors.iter().any(|e| e.contains("$.git_ref")),
            "{:?}",
            form.errors
        );
        form.editor = TextArea::new("{\"service\": \"api\", \"git_ref\": \"v1\"}");
        app.on_key(ctrl_s);
        match actions.try_recv().unwrap() {
            Action::Submit { workflow, context } => {
                assert_eq!(workflow, "demo/release_pipeline@1.0.0");
                assert_eq!(context["git_ref"], "v1");
            }
            other => panic!("{other:?}"),
        }
    }

    /// A task of the customer-success namespace whose only step waits for approval until
    /// `expires_at`.
    fn awaiting(expires_at: Timestamp) -> Task {
        let mut task = super::super::model::tests::task(
            "01",
            "customer_success",
            TaskState::InProgress,
            &[crate::model::StepState::AwaitingApproval],
            0,
        );
        task.steps[0].approval = Some(crate::model::Approval {
            request: crate::model::ApprovalRequest {
                summary: "Refund $120.00".into(),
                amount: Some(12000),
                ticket: None,
                customer: None,
                policy_notes: None,
                sealed_amount: None,
                requester: "priya".into(),
                required_role: "manager".into(),
                timeout_seconds: 300,
            },
            requested_at: 0,
            expires_at,
            decision: None,
        });
        task
    }

    fn typing(app: &mut App, text: &str) {
        for c in text.chars() {
            press(app, KeyCode::Char(c));
        }
    }

    #[test]
    fn keys_typed_into_a_dialog_that_closed_never_become_commands() {
        let (mut app, mut actions) = app();
        app.identity = crate::auth::Identity::new("jane", "customer_success", crate::auth::Role::Manager);
        app.now = 1_000;
        app.apply(Update::Tasks(vec![awaiting(5_000)]));
        app.run_command("approvals");
        while actions.try_recv().is_ok() {}
        press(&mut app, KeyCode::Char('d'));
        assert!(matches!(app.mode, Mode::Decide { .. }));
        typing(&mut app, "no re");
        // The request expires under the operator's hands...
        app.now = 6_000;
        // ...and the rest of the reason, which holds r, c, q and d, is swallowed.
        typing(&mut app, "ceipt, cannot verify; quit");
        assert!(matches!(app.mode, Mode::Gone { .. }), "the dialog says it closed");
        assert!(app.approvals().is_empty(), "an expired request is not listed");
        assert!(!app.quit);
        assert!(
            actions.try_recv().is_err(),
            "nothing was sent: {:?}",
            actions.try_recv()
        );
        press(&mut app, KeyCode::Esc);
        assert!(matches!(app.mode, Mode::Normal));
    }

    #[test]
    fn marked_requests_are_decided_together_with_one_reason_and_ones_own_are_skipped() {
        let (mut app, mut actions) = app();
        app.identity = crate::auth::Identity::new("jane", "customer_success", crate::auth::Role::Manager);
        app.now = 1_000;
        let mut requests: Vec<Task> = (0..3)
            .map(|n| {
                let mut t = awaiting(500_000);
                t.id = format!("0000000{n}-0000-7000-8000-00000000000{n}");
                t
            })
            .collect();
        // The third is jane's own request: she may not decide it.
        requests[2].steps[0].approval.as_mut().unwrap().request.requester = "jane".into();
        app.apply(Update::Tasks(requests.clone()));
        app.run_command("approvals");
        assert_eq!(app.approvals().len(), 3);
        for _ in 0..3 {
            press(&mut app, KeyCode::Char(' '));
        }
        assert_eq!(app.marked.len(), 3);
        assert!(app.key_bar().iter().any(|(k, _)| *k == "Space"));
        press(&mut app, KeyCode::Char('d'));
        assert!(
            matches!(&app.mode, Mode::DecideMany { targets, skipped, .. } if targets.len() == 2 && skipped.len() == 1)
        );
        press(&mut app, KeyCode::Enter);
        assert_eq!(app.notice.as_ref().unwrap().0, "a denial needs a reason");
        typing(&mut app, "duplicate tickets");
        press(&mut app, KeyCode::Enter);
        let Mode::Confirm { message, yes, .. } = &app.mode else {
            panic!("one confirmation")
        };
        assert!(
            message.starts_with("Deny 2 marked request(s): 00000000 ($120.00), 00000001 ($120.00)?"),
            "{message}"
        );
        assert!(message.contains("1 skipped: 00000002:"), "{message}");
        assert_eq!(yes, "yes, deny 2");
        while actions.try_recv().is_ok() {}
        press(&mut app, KeyCode::Char('y'));
        let sent: Vec<Action> = std::iter::from_fn(|| actions.try_recv().ok()).collect();
        assert_eq!(
            sent,
            vec![Action::DecideMany {
                targets: requests[..2]
                    .iter()
                    .map(|t| (t.id.clone(), t.steps[0].name.clone()))
                    .collect(),
                approve: false,
                note: Some("duplicate tickets".into()),
            }]
        );
        assert!(app.marked.is_empty());
    }

    #[test]
    fn help_scrolls_with_the_movement_keys_and_any_other_key_closes_it() {
        let (mut app, _) = app();
        press(&mut app, KeyCode::Char('?'));
        assert!(matches!(app.mode, Mode::Help { scroll: 0 }));
        press(&mut app, KeyCode::Char('j'));
        press(&mut app, KeyCode::PageDown);
        assert!(matches!(app.mode, Mode::Help { scroll: 11 }));
        press(&mut app, KeyCode::Char('G'));
        let Mode::Help { scroll } = app.mode else { panic!() };
        assert!(
            scroll <= app.keys().len() + keymap::COMMANDS.len(),
            "bounded: {scroll}"
        );
        press(&mut app, KeyCode::Char('g'));
        assert!(matches!(app.mode, Mode::Help { scroll: 0 }));
        press(&mut app, KeyCode::Char('x'));
        assert!(matches!(app.mode, Mode::Normal));
        assert!(!app.quit);
    }

    #[test]
    fn a_read_only_theme_turns_read_only_on_while_it_is_shown() {
        let (mut app, mut actions) = app();
        app.apply(Update::Tasks(vec![crate::console::model::tests::task(
            "01",
            "ns",
            TaskState::Error,
            &[],
            0,
        )]));
        app.run_command("theme presenter");
        assert!(app.read_only);
        assert!(app.notice.as_ref().unwrap().0.ends_with("(read-only)"));
        assert!(
            !app.key_bar().iter().any(|(k, _)| *k == "r"),
            "{:?}",
            app.key_bar()
        );
        press(&mut app, KeyCode::Char('r'));
        assert!(app.notice.as_ref().unwrap().0.contains("the theme is read-only"));
        assert!(std::iter::from_fn(|| actions.try_recv().ok()).all(|a| !matches!(a, Action::Retry(_))));
        app.run_command("theme dark");
        assert!(!app.read_only, "only while the theme is on");
        app.info.read_only_flag = true;
        app.run_command("theme dark");
        assert!(app.read_only, "--read-only holds whatever the theme");
    }

    #[test]
    fn confirmations_say_what_yes_does() {
        let (mut app, _) = app();
        app.identity = crate::auth::Identity::new("jane", "customer_success", crate::auth::Role::Manager);
        app.now = 1_000;
        app.apply(Update::Tasks(vec![awaiting(500_000)]));
        app.run_command("approvals");
        press(&mut app, KeyCode::Char('a'));
        press(&mut app, KeyCode::Enter);
        let Mode::Confirm { yes, message, .. } = &app.mode else {
            panic!("a confirmation")
        };
        assert_eq!(
            (yes.as_str(), message.as_str()),
            ("yes, approve", "Approve: Refund $120.00?")
        );
        press(&mut app, KeyCode::Esc);
        press(&mut app, KeyCode::Char('d'));
        typing(&mut app, "duplicate");
        press(&mut app, KeyCode::Enter);
        let Mode::Confirm { yes, .. } = &app.mode else {
            panic!("a confirmation")
        };
        assert_eq!(yes, "yes, deny");
    }

    #[test]
    fn prompts_take_ctrl_u_and_ctrl_w_as_editing_not_text() {
        let (mut app, _) = app();
        press(&mut app, KeyCode::Char(':'));
        typing(&mut app, "theme light");
        app.on_key(KeyEvent::new(KeyCode::Char('w'), KeyModifiers::CONTROL));
        let Mode::Command(line) = &app.mode else { panic!() };
        assert_eq!(line.text, "theme ");
        app.on_key(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL));
        let Mode::Command(line) = &app.mode else { panic!() };
        assert_eq!(line.text, "");
        press(&mut app, KeyCode::Esc);
        press(&mut app, KeyCode::Char('/'));
        typing(&mut app, "refund");
        app.on_key(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL));
        assert_eq!(app.task_filter.text, "");
    }

    #[test]
    fn help_the_key_bar_and_completion_come_from_the_key_table() {
        let (mut app, _) = app();
        let help: Vec<String> = app.keys().into_iter().map(|(k, _)| k).collect();
        for b in keymap::at(app.place()) {
            assert!(
                help.contains(&b.label.to_string()),
                "{} missing from help",
                b.label
            );
        }
        let commands: Vec<String> = app.commands().into_iter().map(|(c, _)| c).collect();
        assert!(commands.contains(&":approvals".to_string()));
        assert_eq!(app.complete("appr"), ["approvals"]);
        app.run_command("approvals");
        // The bar offers what applies: nothing to decide in an empty inbox...
        let bar: Vec<&str> = app.key_bar().into_iter().map(|(_, what)| what).collect();
        assert!(!bar.contains(&"approve") && !bar.contains(&"sort"), "{bar:?}");
        assert!(
            app.keys().iter().any(|(k, _)| k == "a"),
            "help lists every key of the place"
        );
        // ...approve and deny once a request waits.
        app.now = 1_000;
        app.apply(Update::Tasks(vec![awaiting(500_000)]));
        let bar: Vec<&str> = app.key_bar().into_iter().map(|(_, what)| what).collect();
        assert!(bar.contains(&"approve") && bar.contains(&"deny"), "{bar:?}");
        // Not one's own request: it cannot be decided by who asked.
        let mut own = awaiting(500_000);
        own.steps[0].approval.as_mut().unwrap().request.requester = app.identity.sub.clone();
        app.apply(Update::Tasks(vec![own]));
        let bar: Vec<&str> = app.key_bar().into_iter().map(|(_, what)| what).collect();
        assert!(!bar.contains(&"approve"), "{bar:?}");
    }
}
