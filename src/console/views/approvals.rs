//! The approvals inbox: every request waiting for a person, oldest first, with the selected
//! one's task below it.

use super::super::app::{App, Focus};
use super::{pane, task};
use crate::model::age;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Modifier;
use ratatui::text::Span;
use ratatui::widgets::{Cell, Paragraph, Row, Table};
use ratatui::Frame;

pub fn draw(frame: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let approvals = app.approvals();
    // Never `clamp` with a bound from the terminal's size: on a short terminal max < min.
    let rows = u16::try_from(approvals.len())
        .unwrap_or(u16::MAX)
        .saturating_add(3);
    let list_height = rows.min(area.height / 3).max(4).min(area.height);
    let [list, below] = Layout::vertical([Constraint::Length(list_height), Constraint::Min(5)]).areas(area);
    // Under 100 columns the requester (also in the step pane below) gives its room to the
    // workflow. The workflow column: the width less borders, the fixed columns and spacing.
    let requester_width: u16 = if area.width >= 100 { 12 } else { 0 };
    let workflow_width = usize::from(area.width)
        .saturating_sub(2 + 9 + 22 + 10 + usize::from(requester_width) + 4 + 7 + 6 * 2);
    let rows: Vec<Row> = approvals
        .iter()
        .enumerate()
        .map(|(i, (task, step))| {
            let a = task.steps[*step].approval.as_ref();
            let amount = a
                .and_then(|a| {
                    a.request
                        .amount
                        .map(crate::model::money)
                        .or_else(|| a.request.sealed_amount.clone())
                })
                .unwrap_or_default();
            let requester = a.map_or(String::new(), |a| a.request.requester.clone());
            let asked = a.map_or(String::new(), |a| age(app.now, a.requested_at));
            let left = a.map_or(0, |a| crate::model::millis_until(app.now, a.expires_at));
            let id_cell = super::id_cell(app, &task.id);
            let row = Row::new(vec![
                Cell::from(id_cell),
                Cell::from(super::fit_workflow(&task.workflow_ref(), workflow_width)),
                Cell::from(task.steps[*step].name.clone()),
                Cell::from(amount),
                Cell::from(requester),
                Cell::from(asked),
                Cell::from(Span::styled(
                    crate::model::countdown(left),
                    t.base().fg(t.step(crate::model::StepState::AwaitingApproval)),
                )),
            ])
            .style(t.base());
            if i == app.selected_approval {
                row.style(t.selected())
            } else {
                row
            }
        })
        .collect();
    let header = Row::new([
        "TASK",
        "WORKFLOW",
        "STEP",
        "AMOUNT",
        "REQUESTER",
        "AGE",
        "EXPIRES",
    ])
    .style(t.base().fg(t.accent).add_modifier(Modifier::BOLD));
    let table = Table::new(
        rows,
        [
            Constraint::Length(9),
            Constraint::Fill(1),
            Constraint::Length(22),
            Constraint::Length(10),
            Constraint::Length(requester_width),
            Constraint::Length(4),
            Constraint::Length(7),
        ],
    )
    .header(header)
    .column_spacing(2)
    .block(pane(
        app,
        super::fit(
            &format!(
                "approvals ‖ {} waiting{} · you are {}",
                approvals.len(),
                if app.marked.is_empty() {
                    String::new()
                } else {
                    format!(" · {} marked (a, d decide them)", app.marked.len())
                },
                app.identity.describe()
            ),
            usize::from(area.width).saturating_sub(6),
        ),
        app.focus == Focus::Main,
    ));
    frame.render_widget(table, list);
    match approvals.get(app.selected_approval) {
        Some((t, step)) => task::draw(frame, app, &t.id, Some(*step), below),
        None => {
            let hint = Paragraph::new(Span::styled("nothing waits for a decision", t.muted())).block(pane(
                app,
                "task".into(),
                false,
            ));
            frame.render_widget(hint, below);
        }
    }
}
