//! One task: its live DAG (or tree) and the selected step's detail.

use super::super::app::{App, Focus};
use super::super::dag;
use super::super::theme::{step_glyph, task_glyph};
use super::pane;
use crate::model::{format_timestamp, short_id, StepState, Subject, Task};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};
use ratatui::Frame;

/// The task view; `selected` is a step index.
pub fn draw(frame: &mut Frame, app: &App, id: &str, selected: Option<usize>, area: Rect) {
    let t = &app.theme;
    let Some(task) = app.vm.task(id).cloned() else {
        let p = Paragraph::new(Span::styled("loading…", t.muted())).block(pane(app, "task".into(), true));
        frame.render_widget(p, area);
        return;
    };
    let title = format!(
        "task {} · {} · {} {} · {}",
        short_id(&task.id),
        task.workflow_ref(),
        task_glyph(task.state),
        task.state,
        task.classification
    );
    // Borders (2), margins (2) and a legend line below the graph.
    let detail_width = if area.width >= 110 { 44 } else { area.width / 2 };
    let beside = dag::layout(&task, area.width.saturating_sub(detail_width + 4))
        .filter(|l| l.height + 4 <= area.height);
    let stacked =
        dag::layout(&task, area.width.saturating_sub(4)).filter(|l| l.height + 4 + 8 <= area.height);
    // Beside the detail unless that squeezes names that the full width would show.
    let natural = dag::layout(&task, u16::MAX).map_or(0, |l| l.boxes.first().map_or(0, |b| b.w));
    let box_width = |l: &Option<dag::DagLayout>| l.as_ref().and_then(|l| l.boxes.first()).map_or(0, |b| b.w);
    let beside = if box_width(&beside) < natural && box_width(&stacked) > box_width(&beside) {
        None
    } else {
        beside
    };
    let (graph_area, detail_area, layout) = match (beside, stacked) {
        (Some(l), _) => {
            let [g, d] =
                Layout::horizontal([Constraint::Min(10), Constraint::Length(detail_width)]).areas(area);
            (g, d, Some(l))
        }
        (None, Some(l)) => {
            let [g, d] = Layout::vertical([Constraint::Length(l.height + 4), Constraint::Min(4)]).areas(area);
            (g, d, Some(l))
        }
        (None, None) => {
            let [g, d] =
                Layout::horizontal([Constraint::Min(10), Constraint::Length(detail_width)]).areas(area);
            (g, d, None)
        }
    };
    let block = pane(app, title, app.focus == Focus::Main);
    let inner = block.inner(graph_area);
    frame.render_widget(block, graph_area);
    match layout {
        Some(layout) => {
            let x = inner.x + 1 + (inner.width.saturating_sub(2).saturating_sub(layout.width)) / 2;
            let y = inner.y + (inner.height.saturating_sub(layout.height + 1)) / 2;
            let area = Rect::new(x, y, layout.width, layout.height);
            dag::render(&task, &layout, selected, t, area, frame.buffer_mut());
            legend(
                frame,
                app,
                Rect::new(
                    inner.x + 1,
                    inner.y + inner.height.saturating_sub(1),
                    inner.width.saturating_sub(2),
                    1,
                ),
            );
        }
        None => {
            let lines = dag::tree_lines(&task, selected, t, inner.width.saturating_sub(2));
            frame.render_widget(
                Paragraph::new(lines).style(t.base()),
                inner.inner(ratatui::layout::Margin::new(1, 0)),
            );
        }
    }
    detail(frame, app, &task, selected, detail_area);
}

fn legend(frame: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let spans: Vec<Span> = StepState::ALL
        .iter()
        .map(|s| {
            Span::styled(
                format!("{} {}  ", step_glyph(*s), dag::short_state(*s)),
                t.base().fg(t.step(*s)),
            )
        })
        .collect();
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// `retry in 3.4s, attempt 3/5`.
pub fn countdown(task: &Task, index: usize, now: i64) -> Option<String> {
    let step = &task.steps[index];
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

fn detail(frame: &mut Frame, app: &App, task: &Task, selected: Option<usize>, area: Rect) {
    let t = &app.theme;
    let Some(i) = selected else { return };
    let step = &task.steps[i];
    let label = |s: &str| Span::styled(format!("{s:<9}"), t.muted());
    let mut lines = vec![
        Line::from(vec![
            label("state"),
            Span::styled(
                format!("{} {}", step_glyph(step.state), step.state),
                t.base().fg(t.step(step.state)).add_modifier(Modifier::BOLD),
            ),
        ]),
        Line::from(vec![
            label("attempts"),
            Span::raw(format!("{}/{}", step.attempts_used(), step.retry.limit)),
        ]),
        Line::from(vec![label("handler"), Span::raw(step.handler.clone())]),
    ];
    if !step.depends_on.is_empty() {
        lines.push(Line::from(vec![
            label("after"),
            Span::raw(step.depends_on.join(", ")),
        ]));
    }
    if let Some(a) = &step.approval {
        let waiting = step.state == StepState::AwaitingApproval;
        let colour = t.step(StepState::AwaitingApproval);
        lines.push(Line::from(vec![
            label("approval"),
            Span::styled(
                if waiting {
                    "waiting for a person".to_string()
                } else {
                    "decided".to_string()
                },
                t.base().fg(colour).add_modifier(Modifier::BOLD),
            ),
        ]));
        lines.push(Line::from(vec![
            label("request"),
            Span::raw(a.request.summary.clone()),
        ]));
        // A reader without `pii:read` gets the sealed amount's `[REDACTED]` instead.
        if let Some(amount) = a
            .request
            .amount
            .map(crate::model::money)
            .or_else(|| a.request.sealed_amount.clone())
        {
            lines.push(Line::from(vec![label("amount"), Span::raw(amount)]));
        }
        let who = format!("{} · needs {}", a.request.requester, a.request.required_role);
        lines.push(Line::from(vec![label("asked by"), Span::raw(who)]));
        if let Some(notes) = &a.request.policy_notes {
            lines.push(Line::from(vec![
                label("policy"),
                Span::styled(notes.clone(), t.muted()),
            ]));
        }
        if waiting {
            let left = crate::model::millis_until(app.now, a.expires_at);
            lines.push(Line::from(vec![
                label("expires"),
                Span::styled(
                    format!("in {}", crate::model::countdown(left)),
                    t.base().fg(colour),
                ),
            ]));
            let can = match app.may_decide(task, i) {
                Ok(()) => "press a to approve, d to deny".to_string(),
                Err(why) => why,
            };
            lines.push(Line::from(vec![label("you"), Span::styled(can, t.muted())]));
        }
        if let Some(d) = &a.decision {
            let verdict = if d.approved { "approved" } else { "denied" };
            lines.push(Line::from(vec![
                label(verdict),
                Span::raw(format!("by {} {}", d.by, d.note.clone().unwrap_or_default())),
            ]));
        }
    }
    if let Some(c) = &step.child {
        let waiting = step.state == StepState::WaitingForChild;
        let state = app
            .vm
            .children(&task.id)
            .iter()
            .find(|t| t.id == c.task_id)
            .map(|t| format!("{} {}", task_glyph(t.state), t.state))
            .unwrap_or_default();
        lines.push(Line::from(vec![
            label(if waiting { "waiting" } else { "child" }),
            Span::styled(
                format!(
                    "{}on child task {} {state}",
                    if waiting { "" } else { "ran " },
                    short_id(&c.task_id)
                ),
                t.base()
                    .fg(t.step(StepState::WaitingForChild))
                    .add_modifier(Modifier::BOLD),
            ),
        ]));
    }
    if let Some(text) = countdown(task, i, app.now) {
        lines.push(Line::from(vec![
            label("next"),
            Span::styled(
                text,
                t.base()
                    .fg(t.step(StepState::WaitingForRetry))
                    .add_modifier(Modifier::BOLD),
            ),
        ]));
    }
    if let Some(e) = &step.last_error {
        lines.push(Line::from(vec![
            label("error"),
            Span::styled(
                format!("{} {}", e.kind, e.code.as_deref().unwrap_or("")),
                t.base().fg(t.step(StepState::Error)),
            ),
        ]));
        lines.push(Line::from(Span::styled(
            format!("  {}", e.message),
            t.base().fg(t.step(StepState::Error)),
        )));
    }
    if let Some(results) = &step.results {
        lines.push(Line::from(Span::styled("results", t.base().fg(t.accent))));
        let pretty = serde_json::to_string_pretty(results).unwrap_or_default();
        for l in pretty.lines().take(12) {
            lines.push(Line::from(Span::raw(format!("  {l}"))));
        }
        if pretty.lines().count() > 12 {
            lines.push(Line::from(Span::styled("  …", t.muted())));
        }
    }
    if let Some((id, log)) = &app.vm.transitions {
        if id == &task.id {
            lines.push(Line::from(Span::styled("history", t.base().fg(t.accent))));
            for tr in log
                .iter()
                .filter(|tr| tr.subject == Subject::Step(step.name.clone()))
            {
                let time = format_timestamp(tr.at);
                lines.push(Line::from(vec![
                    Span::styled(format!("  {} ", time.get(11..19).unwrap_or(&time)), t.muted()),
                    Span::raw(format!("{} → {}", tr.from.as_deref().unwrap_or("new"), tr.to)),
                    Span::styled(format!("  {}", tr.actor), t.muted()),
                ]));
            }
        }
    }
    if let Some(parent) = &task.parent {
        lines.insert(
            0,
            Line::from(vec![
                label("parent"),
                Span::styled(format!("task {}", short_id(parent)), t.base().fg(t.accent)),
            ]),
        );
    }
    let children: Vec<String> = app
        .vm
        .children(&task.id)
        .iter()
        .map(|c| format!("{} {}", short_id(&c.id), c.workflow_ref()))
        .collect();
    if !children.is_empty() {
        lines.insert(
            0,
            Line::from(vec![
                label("child"),
                Span::styled(children.join(", "), t.base().fg(t.accent)),
            ]),
        );
    }
    let block = pane(app, format!("step {}", step.name), false);
    frame.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }).block(block),
        area,
    );
}
