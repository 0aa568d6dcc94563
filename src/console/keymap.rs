//! The one table of what keys and commands do. Key handling, the help overlay, the key bar
//! and command completion all read it, so none of them can forget a key or a command.

use crossterm::event::KeyCode;

/// Where the keys are typed: the focused pane, and for the main pane what it shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    TasksTable,
    TaskView,
    Inbox,
    Namespaces,
    Events,
    /// The `:metrics` view (its slowest-steps table).
    Metrics,
    /// The `:audit` view (the journal, newest first).
    Audit,
    /// The open task's step pane, focused with Tab.
    StepPane,
    /// A text shown over the console: a payload, a context, a history.
    Viewer,
}

/// Every place, for tests and for help.
pub const PLACES: [Place; 9] = [
    Place::TasksTable,
    Place::TaskView,
    Place::Inbox,
    Place::Namespaces,
    Place::Events,
    Place::Metrics,
    Place::Audit,
    Place::StepPane,
    Place::Viewer,
];

/// What a key asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAction {
    Help,
    CommandLine,
    Filter,
    NextPane,
    PreviousPane,
    Down,
    Up,
    PageDown,
    PageUp,
    First,
    Last,
    Open,
    ShowNamespace,
    /// Open the task of the selected step's slowest attempt (`:metrics`).
    OpenSlowest,
    /// Open the task the selected journal entry is about (`:audit`).
    OpenAuditTask,
    /// Read the journal again (`:audit`).
    Refresh,
    /// Mark or unmark the selected task (`r` and `c` then act on every marked task).
    Mark,
    /// Show the selected event's payload (events pane).
    ShowPayload,
    /// Show only the selected event's task's events, or all again (events pane).
    FollowTask,
    /// Show the task's context (`i`).
    ShowContext,
    /// Show the task's whole stored history (`h`).
    ShowHistory,
    /// Open the task a link names: the step pane's parent or child line, or the selected
    /// step's child task in the graph.
    OpenLink,
    Back,
    NewTask,
    Retry,
    /// Start the selected step now instead of after its backoff.
    RetryNow,
    Cancel,
    Approve,
    Deny,
    SortNext,
    SortReverse,
    StateFilter,
    Quit,
}

impl KeyAction {
    /// Whether the action changes something (a task, a decision): hidden and refused in
    /// read-only mode.
    pub fn mutates(self) -> bool {
        matches!(
            self,
            KeyAction::NewTask
                | KeyAction::Retry
                | KeyAction::RetryNow
                | KeyAction::Cancel
                | KeyAction::Approve
                | KeyAction::Deny
        )
    }
}

/// One binding: its keys, where it applies (empty: everywhere), what it does, how the key bar
/// names it (if it shows there) and what help says.
pub struct Binding {
    pub keys: &'static [KeyCode],
    pub label: &'static str,
    pub places: &'static [Place],
    pub action: KeyAction,
    pub bar: Option<&'static str>,
    pub help: &'static str,
}

use KeyAction as A;
use Place as P;

/// Where a task is at hand: the table, the open task (graph or step pane) and the inbox.
const ALL_MAIN: &[Place] = &[P::TasksTable, P::TaskView, P::StepPane, P::Inbox];

pub const BINDINGS: &[Binding] = &[
    Binding {
        keys: &[KeyCode::Char('?')],
        label: "?",
        places: &[],
        action: A::Help,
        bar: Some("help"),
        help: "help (this list)",
    },
    Binding {
        keys: &[KeyCode::Char(':')],
        label: ":",
        places: &[],
        action: A::CommandLine,
        bar: Some("command"),
        help: "command line (Tab completes)",
    },
    Binding {
        keys: &[KeyCode::Char('/')],
        label: "/",
        places: &[],
        action: A::Filter,
        bar: Some("filter"),
        help: "filter the focused pane; in the tasks table Enter then searches the whole store (ids, workflows, states, ticket, customer, order, correlation ids; all words must match)",
    },
    Binding {
        keys: &[KeyCode::Char('n')],
        label: "n",
        places: &[],
        action: A::NewTask,
        bar: Some("new"),
        help: "new task",
    },
    Binding {
        keys: &[KeyCode::Char('r')],
        label: "r",
        places: ALL_MAIN,
        action: A::Retry,
        bar: Some("retry"),
        help: "retry the failed task",
    },
    Binding {
        keys: &[KeyCode::Char('a')],
        label: "a",
        places: &[P::TaskView, P::StepPane, P::Inbox],
        action: A::Approve,
        bar: Some("approve"),
        help: "approve the selected request (optional note, asks first)",
    },
    Binding {
        keys: &[KeyCode::Char('d')],
        label: "d",
        places: &[P::TaskView, P::StepPane, P::Inbox],
        action: A::Deny,
        bar: Some("deny"),
        help: "deny the selected request (reason required, asks first)",
    },
    Binding {
        keys: &[KeyCode::Char(' ')],
        label: "Space",
        places: &[P::TasksTable, P::Inbox],
        action: A::Mark,
        bar: Some("mark"),
        help: "mark or unmark the task (request); r and c (a and d in the inbox) then act on every marked one",
    },
    Binding {
        keys: &[KeyCode::Char('i')],
        label: "i",
        places: &[P::TasksTable, P::TaskView, P::Inbox, P::StepPane],
        action: A::ShowContext,
        bar: Some("context"),
        help: "show the task's context (fields you may not read are [REDACTED])",
    },
    Binding {
        keys: &[KeyCode::Char('h')],
        label: "h",
        places: &[P::TasksTable, P::TaskView, P::Inbox, P::StepPane],
        action: A::ShowHistory,
        bar: Some("history"),
        help: "show the task's whole history from the store (/ filters it)",
    },
    Binding {
        keys: &[KeyCode::Enter],
        label: "Enter",
        places: &[P::TaskView],
        action: A::OpenLink,
        bar: Some("child"),
        help: "open the selected step's child task (Esc comes back)",
    },
    Binding {
        keys: &[KeyCode::Enter],
        label: "Enter",
        places: &[P::StepPane],
        action: A::OpenLink,
        bar: Some("open link"),
        help: "open the parent or child task on the cursor's line (Esc comes back)",
    },
    Binding {
        keys: &[KeyCode::Char('R')],
        label: "R",
        places: &[P::TaskView, P::StepPane],
        action: A::RetryNow,
        bar: Some("now"),
        help: "start the selected step now, not after its backoff",
    },
    Binding {
        keys: &[KeyCode::Char('c')],
        label: "c",
        places: ALL_MAIN,
        action: A::Cancel,
        bar: Some("cancel"),
        help: "cancel the task (asks first)",
    },
    Binding {
        keys: &[KeyCode::Enter],
        label: "Enter",
        places: &[P::TasksTable, P::Inbox],
        action: A::Open,
        bar: Some("open"),
        help: "open the task",
    },
    Binding {
        keys: &[KeyCode::Enter],
        label: "Enter",
        places: &[P::Metrics],
        action: A::OpenSlowest,
        bar: Some("open"),
        help: "open the slowest task of the selected step",
    },
    Binding {
        keys: &[KeyCode::Enter],
        label: "Enter",
        places: &[P::Audit],
        action: A::OpenAuditTask,
        bar: Some("open"),
        help: "open the task the selected entry is about",
    },
    Binding {
        keys: &[KeyCode::Enter],
        label: "Enter",
        places: &[P::Events],
        action: A::ShowPayload,
        bar: Some("payload"),
        help: "show the selected event's payload",
    },
    Binding {
        keys: &[KeyCode::Char('f')],
        label: "f",
        places: &[P::Events],
        action: A::FollowTask,
        bar: Some("follow"),
        help: "follow the selected event's task (again: every task)",
    },
    Binding {
        keys: &[KeyCode::Char('r')],
        label: "r",
        places: &[P::Audit],
        action: A::Refresh,
        bar: Some("refresh"),
        help: "read the journal again",
    },
    Binding {
        keys: &[KeyCode::Enter],
        label: "Enter",
        places: &[P::Namespaces],
        action: A::ShowNamespace,
        bar: Some("show"),
        help: "show the namespace's tasks",
    },
    Binding {
        keys: &[KeyCode::Char('s')],
        label: "s",
        places: &[P::TasksTable],
        action: A::SortNext,
        bar: Some("sort"),
        help: "sort by the next column",
    },
    Binding {
        keys: &[KeyCode::Char('S')],
        label: "S",
        places: &[P::TasksTable],
        action: A::SortReverse,
        bar: None,
        help: "reverse the order",
    },
    Binding {
        keys: &[KeyCode::Char('f')],
        label: "f",
        places: &[P::TasksTable],
        action: A::StateFilter,
        bar: Some("state"),
        help: "filter by the next state",
    },
    Binding {
        keys: &[KeyCode::Tab],
        label: "Tab",
        places: &[],
        action: A::NextPane,
        bar: Some("pane"),
        help: "next pane",
    },
    Binding {
        keys: &[KeyCode::BackTab],
        label: "S-Tab",
        places: &[],
        action: A::PreviousPane,
        bar: None,
        help: "previous pane",
    },
    Binding {
        keys: &[KeyCode::Char('j'), KeyCode::Down],
        label: "j ↓",
        places: &[],
        action: A::Down,
        bar: None,
        help: "move down (in a task: next step)",
    },
    Binding {
        keys: &[KeyCode::Char('k'), KeyCode::Up],
        label: "k ↑",
        places: &[],
        action: A::Up,
        bar: None,
        help: "move up",
    },
    Binding {
        keys: &[KeyCode::PageDown],
        label: "PgDn",
        places: &[],
        action: A::PageDown,
        bar: None,
        help: "ten down",
    },
    Binding {
        keys: &[KeyCode::PageUp],
        label: "PgUp",
        places: &[],
        action: A::PageUp,
        bar: None,
        help: "ten up",
    },
    Binding {
        keys: &[KeyCode::Char('g'), KeyCode::Home],
        label: "g Home",
        places: &[],
        action: A::First,
        bar: None,
        help: "first",
    },
    Binding {
        keys: &[KeyCode::Char('G'), KeyCode::End],
        label: "G End",
        places: &[],
        action: A::Last,
        bar: None,
        help: "last",
    },
    Binding {
        keys: &[KeyCode::Esc],
        label: "Esc",
        places: &[P::TasksTable],
        action: A::Back,
        bar: None,
        help: "clear filters",
    },
    Binding {
        keys: &[KeyCode::Esc],
        label: "Esc",
        places: &[P::TaskView, P::Inbox, P::Metrics, P::Audit],
        action: A::Back,
        bar: Some("back"),
        help: "back: to the task a link came from, the view that opened it, or the tasks",
    },
    Binding {
        keys: &[KeyCode::Esc],
        label: "Esc",
        places: &[P::Namespaces, P::Events, P::StepPane],
        action: A::Back,
        bar: Some("back"),
        help: "back to the main pane",
    },
    Binding {
        keys: &[KeyCode::Esc, KeyCode::Enter],
        label: "Esc Enter",
        places: &[P::Viewer],
        action: A::Back,
        bar: Some("close"),
        help: "close",
    },
    Binding {
        keys: &[KeyCode::Char('q')],
        label: "q Ctrl-C",
        places: &[],
        action: A::Quit,
        bar: Some("quit"),
        help: "quit",
    },
];

/// The binding of `code` at `place`, if any.
pub fn lookup(code: KeyCode, place: Place) -> Option<&'static Binding> {
    BINDINGS
        .iter()
        .find(|b| b.keys.contains(&code) && (b.places.is_empty() || b.places.contains(&place)))
}

/// The bindings that apply at `place`, in the table's order.
pub fn at(place: Place) -> impl Iterator<Item = &'static Binding> {
    BINDINGS
        .iter()
        .filter(move |b| b.places.is_empty() || b.places.contains(&place))
}

/// What a text viewer (payload, context, history) obeys; other keys do nothing there.
pub const VIEWER_ACTIONS: &[KeyAction] = &[
    A::Back,
    A::Filter,
    A::Down,
    A::Up,
    A::PageDown,
    A::PageUp,
    A::First,
    A::Last,
    A::Quit,
];

/// The bindings a console shows and obeys at `place`: without the mutating ones when
/// `read_only`.
pub fn usable(place: Place, read_only: bool) -> impl Iterator<Item = &'static Binding> {
    at(place).filter(move |b| !(read_only && b.action.mutates()))
}

/// A `:` command: its name, what it takes, what it does.
pub struct CommandSpec {
    pub name: &'static str,
    pub args: &'static str,
    pub help: &'static str,
    /// Changes something: hidden and refused in read-only mode.
    pub mutates: bool,
}

pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "tasks",
        args: "",
        help: "the tasks table",
        mutates: false,
    },
    CommandSpec {
        name: "approvals",
        args: "",
        help: "requests waiting for a decision",
        mutates: false,
    },
    CommandSpec {
        name: "metrics",
        args: "",
        help: "the last 10 minutes per namespace, slowest steps",
        mutates: false,
    },
    CommandSpec {
        name: "audit",
        args: "[actor:NAME] [task:ID] [action:PREFIX]",
        help: "the audit journal, newest first, filtered",
        mutates: false,
    },
    CommandSpec {
        name: "events",
        args: "",
        help: "focus the event stream",
        mutates: false,
    },
    CommandSpec {
        name: "ns",
        args: "NS",
        help: "one namespace's tasks, or all",
        mutates: false,
    },
    CommandSpec {
        name: "state",
        args: "STATE",
        help: "tasks in one state, or all",
        mutates: false,
    },
    CommandSpec {
        name: "since",
        args: "AGE",
        help: "tasks created within 30m, 2h, 7d… (or all); combines with :state, :ns and /",
        mutates: false,
    },
    CommandSpec {
        name: "sort",
        args: "COLUMN",
        help: "by age|workflow|state|progress|health",
        mutates: false,
    },
    CommandSpec {
        name: "submit",
        args: "NS/NAME",
        help: "new task of a workflow",
        mutates: true,
    },
    CommandSpec {
        name: "theme",
        args: "NAME",
        help: "switch the theme",
        mutates: false,
    },
    CommandSpec {
        name: "quit",
        args: "",
        help: "quit (also :q)",
        mutates: false,
    },
];

/// The command names, for completion and error messages.
pub fn command_names() -> Vec<&'static str> {
    COMMANDS.iter().map(|c| c.name).collect()
}

/// The commands a console offers: without the mutating ones when `read_only`.
pub fn usable_commands(read_only: bool) -> impl Iterator<Item = &'static CommandSpec> {
    COMMANDS.iter().filter(move |c| !(read_only && c.mutates))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_place_has_help_quit_and_back_or_open() {
        for place in PLACES {
            let actions: Vec<KeyAction> = at(place).map(|b| b.action).collect();
            assert!(
                actions.contains(&A::Help) && actions.contains(&A::Quit),
                "{place:?}"
            );
        }
        assert_eq!(
            lookup(KeyCode::Enter, P::Namespaces).unwrap().action,
            A::ShowNamespace
        );
        assert_eq!(lookup(KeyCode::Enter, P::Inbox).unwrap().action, A::Open);
        assert!(lookup(KeyCode::Char('a'), P::TasksTable).is_none());
    }

    #[test]
    fn no_key_means_two_things_in_one_place() {
        for place in PLACES {
            let mut seen = Vec::new();
            for b in at(place) {
                for k in b.keys {
                    assert!(!seen.contains(k), "{k:?} twice at {place:?}");
                    seen.push(*k);
                }
            }
        }
    }

    #[test]
    fn approvals_is_a_command() {
        assert!(command_names().contains(&"approvals"));
    }
}
