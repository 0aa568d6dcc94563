//! What the step pane and the inspectors show, as lines: a step's state, links to its task's
//! parent and children, its approval, its attempts (start, duration, outcome, error), its
//! inputs (the task context and the results of the steps it depends on), its full results and
//! its whole transition history. Pure functions of a task and its stored log, so the keys (which
//! line is a link) and the drawing agree, and tests need no terminal.

use super::app::App;
use super::theme::{step_glyph, task_glyph, Theme};
use crate::model::{format_timestamp, short_id, StepState, Subject, Task, Timestamp, Transition};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};

/// One line of the step pane; `link` is the task Enter opens on it.
#[derive(Debug, Clone)]
pub struct PaneLine {
    pub line: Line<'static>,
    pub link: Option<String>,
}

impl PaneLine {
    fn text(line: Line<'static>) -> Self {
        PaneLine { line, link: None }
    }
}

/// One attempt of a step, from its transitions: when it started, how long it ran (ms, `None`
/// while it runs), how it ended (the state it went to) and the error it ended with.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub number: u32,
    pub started_at: Timestamp,
    pub duration_ms: Option<u64>,
    pub outcome: Option<String>,
    pub error: Option<String>,
}

/// The attempts of step `step` in `log` (a task's transitions in order): each `→ in_progress`
/// starts one; the step's next transition ends it.
pub fn attempts(log: &[Transition], step: &str) -> Vec<Attempt> {
    let mut out: Vec<Attempt> = Vec::new();
    for tr in log
        .iter()
        .filter(|tr| matches!(&tr.subject, Subject::Step(s) if s == step))
    {
        if let Some(open) = out.last_mut().filter(|a| a.outcome.is_none()) {
            open.duration_ms = Some(u64::try_from(tr.at.saturating_sub(open.started_at)).unwrap_or(0));
            open.outcome = Some(tr.to.clone());
            open.error = tr
                .error
                .as_ref()
                .map(|e| format!("{} {}: {}", e.kind, e.code.as_deref().unwrap_or(""), e.message));
        }
        if tr.to == StepState::InProgress.to_string() {
            out.push(Attempt {
                number: tr.attempt,
                started_at: tr.at,
                duration_ms: None,
                outcome: None,
                error: None,
            });
        }
    }
    out
}

/// `retry in 3.4s, attempt 3/5` for a step waiting out its backoff.
pub fn countdown(task: &Task, index: usize, now: Timestamp) -> Option<String> {
    let step = task.steps.get(index)?;
    let at = step.next_attempt_at?;
    if step.state != StepState::WaitingForRetry {
        return None;
    }
    let left = crate::model::millis_until(now, at) as f64 / 1000.0;
    Some(format!(
        "retry in {left:.1}s, attempt {}/{}",
        step.attempts_used() + 1,
        step.retry.limit
    ))
}

/// `12:04:31`: the time of day of a timestamp (UTC, as every time the console shows).
pub fn clock(at: Timestamp) -> String {
    let text = format_timestamp(at);
    text.get(11..19).unwrap_or(&text).to_string()
}

/// A duration in ms as `340ms`, `2.4s` or `3m 5s`.
pub fn duration(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms}ms"),
        1000..=59_999 => format!("{:.1}s", ms as f64 / 1000.0),
        _ => crate::model::countdown(ms),
    }
}

/// One line of a task's history: `12:04:31  step charge  pending → in_progress  #1  engine  why`.
pub fn history_line(tr: &Transition) -> String {
    let subject = match &tr.subject {
        Subject::Task => "task".to_string(),
        Subject::Step(s) => format!("step {s}"),
    };
    let mut line = format!(
        "{}  {subject}  {} → {}  #{}  {}",
        clock(tr.at),
        tr.from.as_deref().unwrap_or("new"),
        tr.to,
        tr.attempt,
        tr.actor
    );
    if let Some(reason) = &tr.reason {
        line.push_str(&format!("  {reason}"));
    }
    if let Some(e) = &tr.error {
        line.push_str(&format!(
            "  [{} {}] {}",
            e.kind,
            e.code.as_deref().unwrap_or(""),
            e.message
        ));
    }
    line
}

/// Most lines of one input (a context, a parent's results) the pane draws each frame; `i`
/// shows a whole context. A step's own results are drawn whole.
pub const MAX_INPUT_LINES: usize = 200;

fn json_lines(value: &serde_json::Value, indent: &str) -> Vec<PaneLine> {
    json_lines_at_most(value, indent, usize::MAX, "")
}

/// At most `max` lines of `value`, then how many more and where they are (`whole`).
fn json_lines_at_most(value: &serde_json::Value, indent: &str, max: usize, whole: &str) -> Vec<PaneLine> {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    let mut lines: Vec<PaneLine> = text
        .lines()
        .take(max)
        .map(|l| PaneLine::text(Line::from(format!("{indent}{l}"))))
        .collect();
    let more = text.lines().count().saturating_sub(max);
    if more > 0 {
        lines.push(PaneLine::text(Line::from(format!(
            "{indent}… {more} more lines ({whole})"
        ))));
    }
    lines
}

fn section(t: &Theme, title: &str) -> PaneLine {
    PaneLine::text(Line::from(Span::styled(
        title.to_string(),
        t.base().fg(t.accent).add_modifier(Modifier::BOLD),
    )))
}

/// Every line of the step pane for step `i` of `task`; `log` is the task's stored transitions
/// when the console holds them.
pub fn step_lines(app: &App, task: &Task, i: usize, log: Option<&[Transition]>) -> Vec<PaneLine> {
    let t = &app.theme;
    let Some(step) = task.steps.get(i) else {
        return Vec::new();
    };
    let label = |s: &str| Span::styled(format!("{s:<9}"), t.muted());
    let link_style = t.base().fg(t.accent).add_modifier(Modifier::UNDERLINED);
    let mut lines = Vec::new();
    if let Some(parent) = &task.parent {
        let workflow = app
            .vm
            .task(parent)
            .map(|p| format!(" {}", p.workflow_ref()))
            .unwrap_or_default();
        lines.push(PaneLine {
            line: Line::from(vec![
                label("parent"),
                Span::styled(format!("task {}{workflow}", short_id(parent)), link_style),
            ]),
            link: Some(parent.clone()),
        });
    }
    for child in app.vm.children(&task.id) {
        lines.push(PaneLine {
            line: Line::from(vec![
                label("child"),
                Span::styled(
                    format!(
                        "task {} {} {} {}",
                        short_id(&child.id),
                        child.workflow_ref(),
                        task_glyph(child.state),
                        child.state
                    ),
                    link_style,
                ),
            ]),
            link: Some(child.id.clone()),
        });
    }
    lines.push(PaneLine::text(Line::from(vec![
        label("state"),
        Span::styled(
            format!("{} {}", step_glyph(step.state), step.state),
            t.base().fg(t.step(step.state)).add_modifier(Modifier::BOLD),
        ),
    ])));
    lines.push(PaneLine::text(Line::from(vec![
        label("attempts"),
        Span::raw(format!("{}/{}", step.attempts_used(), step.retry.limit)),
    ])));
    lines.push(PaneLine::text(Line::from(vec![
        label("handler"),
        Span::raw(step.handler.clone()),
    ])));
    if !step.depends_on.is_empty() {
        lines.push(PaneLine::text(Line::from(vec![
            label("after"),
            Span::raw(step.depends_on.join(", ")),
        ])));
    }
    approval_lines(app, task, i, &mut lines);
    if let Some(c) = &step.child {
        let waiting = step.state == StepState::WaitingForChild;
        let state = app
            .vm
            .task(&c.task_id)
            .map(|t| format!(" {} {}", task_glyph(t.state), t.state))
            .unwrap_or_default();
        lines.push(PaneLine {
            line: Line::from(vec![
                label(if waiting { "waiting" } else { "child" }),
                Span::styled(
                    format!(
                        "{}on child task {}{state}",
                        if waiting { "" } else { "ran " },
                        short_id(&c.task_id)
                    ),
                    link_style.fg(t.step(StepState::WaitingForChild)),
                ),
            ]),
            link: Some(c.task_id.clone()),
        });
    }
    if let Some(text) = countdown(task, i, app.now) {
        lines.push(PaneLine::text(Line::from(vec![
            label("next"),
            Span::styled(
                text,
                t.base()
                    .fg(t.step(StepState::WaitingForRetry))
                    .add_modifier(Modifier::BOLD),
            ),
        ])));
    }
    if let Some(e) = &step.last_error {
        let style = t.base().fg(t.step(StepState::Error));
        lines.push(PaneLine::text(Line::from(vec![
            label("error"),
            Span::styled(format!("{} {}", e.kind, e.code.as_deref().unwrap_or("")), style),
        ])));
        lines.push(PaneLine::text(Line::from(Span::styled(
            format!("  {}", e.message),
            style,
        ))));
    }
    let log = log.unwrap_or(&[]);
    let tried = attempts(log, &step.name);
    if !tried.is_empty() {
        lines.push(section(t, "attempts"));
        for a in &tried {
            let outcome = a.outcome.clone().unwrap_or_else(|| "running".into());
            let took = a.duration_ms.map_or_else(|| "…".to_string(), duration);
            let colour = StepState::ALL
                .iter()
                .find(|s| s.to_string() == outcome)
                .map_or(t.text, |s| t.step(*s));
            lines.push(PaneLine::text(Line::from(vec![
                Span::styled(format!("  #{:<3}{} ", a.number, clock(a.started_at)), t.muted()),
                Span::raw(format!("{took:>7} ")),
                Span::styled(outcome, t.base().fg(colour)),
            ])));
            if let Some(e) = &a.error {
                lines.push(PaneLine::text(Line::from(Span::styled(
                    format!("       {e}"),
                    t.base().fg(t.step(StepState::Error)),
                ))));
            }
        }
    }
    if let Some(results) = &step.results {
        lines.push(section(t, "results"));
        lines.extend(json_lines(results, "  "));
    }
    lines.push(section(t, "inputs"));
    lines.push(PaneLine::text(Line::from(Span::styled("  context", t.muted()))));
    lines.extend(json_lines_at_most(
        &task.context,
        "  ",
        MAX_INPUT_LINES,
        "i shows the whole context",
    ));
    for dep in &step.depends_on {
        if let Some(results) = task.step(dep).and_then(|s| s.results.as_ref()) {
            lines.push(PaneLine::text(Line::from(Span::styled(
                format!("  results of {dep}"),
                t.muted(),
            ))));
            lines.extend(json_lines_at_most(
                results,
                "  ",
                MAX_INPUT_LINES,
                "select that step for all of them",
            ));
        }
    }
    let history: Vec<&Transition> = log
        .iter()
        .filter(|tr| matches!(&tr.subject, Subject::Step(s) if *s == step.name))
        .collect();
    if !history.is_empty() {
        lines.push(section(t, "history"));
        for tr in history {
            let mut spans = vec![
                Span::styled(format!("  {} ", clock(tr.at)), t.muted()),
                Span::raw(format!("{} → {}", tr.from.as_deref().unwrap_or("new"), tr.to)),
                Span::styled(format!("  {}", tr.actor), t.muted()),
            ];
            if let Some(reason) = &tr.reason {
                spans.push(Span::styled(format!("  {reason}"), t.muted()));
            }
            lines.push(PaneLine::text(Line::from(spans)));
        }
    }
    lines
}

fn approval_lines(app: &App, task: &Task, i: usize, lines: &mut Vec<PaneLine>) {
    let t = &app.theme;
    let label = |s: &str| Span::styled(format!("{s:<9}"), t.muted());
    let Some(a) = &task.steps[i].approval else {
        return;
    };
    let waiting = task.steps[i].state == StepState::AwaitingApproval;
    let colour = t.step(StepState::AwaitingApproval);
    let mut push = |spans: Vec<Span<'static>>| lines.push(PaneLine::text(Line::from(spans)));
    push(vec![
        label("approval"),
        Span::styled(
            if waiting {
                "waiting for a person"
            } else {
                "decided"
            },
            t.base().fg(colour).add_modifier(Modifier::BOLD),
        ),
    ]);
    push(vec![label("request"), Span::raw(a.request.summary.clone())]);
    // A reader without `pii:read` gets the sealed amount's `[REDACTED]` instead.
    if let Some(amount) = a
        .request
        .amount
        .map(crate::model::money)
        .or_else(|| a.request.sealed_amount.clone())
    {
        push(vec![label("amount"), Span::raw(amount)]);
    }
    push(vec![
        label("asked by"),
        Span::raw(format!(
            "{} · needs {}",
            a.request.requester, a.request.required_role
        )),
    ]);
    if let Some(notes) = &a.request.policy_notes {
        push(vec![label("policy"), Span::styled(notes.clone(), t.muted())]);
    }
    if waiting {
        let left = crate::model::millis_until(app.now, a.expires_at);
        push(vec![
            label("expires"),
            Span::styled(
                format!("in {}", crate::model::countdown(left)),
                t.base().fg(colour),
            ),
        ]);
        let can = match app.may_decide(task, i) {
            Ok(()) if app.read_only => "read-only: decisions are off".to_string(),
            Ok(()) => "press a to approve, d to deny".to_string(),
            Err(why) => why,
        };
        push(vec![label("you"), Span::styled(can, t.muted())]);
    }
    if let Some(d) = &a.decision {
        let verdict = if d.approved { "approved" } else { "denied" };
        push(vec![
            label(verdict),
            Span::raw(format!("by {} {}", d.by, d.note.clone().unwrap_or_default())),
        ]);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_large_input_is_drawn_in_part_and_says_where_the_rest_is() {
        let value: serde_json::Value = (0..500).map(|n| serde_json::json!(n)).collect();
        let lines = super::json_lines_at_most(&value, "  ", 10, "i shows the whole context");
        assert_eq!(lines.len(), 11);
        assert_eq!(
            lines[10].line.to_string(),
            "  … 492 more lines (i shows the whole context)"
        );
        assert_eq!(
            super::json_lines(&value, "").len(),
            502,
            "results are drawn whole"
        );
    }
}
