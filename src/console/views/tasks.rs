//! The tasks table: virtualised (only the visible rows are built), sortable, filterable.

use super::super::app::{App, Focus};
use super::super::theme::task_glyph;
use super::pane;
use crate::model::{age, short_id};
use ratatui::layout::{Constraint, Rect};
use ratatui::style::Modifier;
use ratatui::text::Span;
use ratatui::widgets::{Cell, Row, Table};
use ratatui::Frame;

pub fn draw(frame: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let rows = app.rows();
    let selected = app.selected_index();
    let visible = area.height.saturating_sub(3) as usize;
    // What the workflow column gets: the width less the borders, the fixed columns and the
    // spacing. A reference too long for it is fitted, and shown whole below when selected.
    let workflow_width = usize::from(area.width).saturating_sub(2 + 9 + 13 + 5 + 3 + 10 + 5 * 2);
    let mut tooltip: Option<String> = None;
    // Keep the selection in view: scroll by pages so rows do not jump on every move.
    let offset = selected.checked_div(visible).map_or(0, |page| page * visible);
    let body: Vec<Row> = rows
        .iter()
        .enumerate()
        .skip(offset)
        .take(visible)
        .map(|(i, task)| {
            let colour = t.task(task.state);
            let health = task.health();
            let health_colour = match health {
                "blocked" => t.step(crate::model::StepState::Error),
                "recovering" => t.step(crate::model::StepState::WaitingForRetry),
                _ => t.muted,
            };
            // A marked task: `✓` and the start of its short id, in the accent colour.
            let id_cell = super::id_cell(app, &task.id);
            let reference = task.workflow_ref();
            let shown = super::fit_workflow(&reference, workflow_width);
            if i == selected && shown != reference {
                tooltip = Some(format!("{} {reference}", short_id(&task.id)));
            }
            let row = Row::new(vec![
                Cell::from(id_cell),
                Cell::from(shown),
                Cell::from(Span::styled(
                    format!("{} {}", task_glyph(task.state), task.state),
                    t.base().fg(colour),
                )),
                Cell::from(format!("{}/{}", task.done_steps(), task.steps.len())),
                Cell::from(age(app.now, task.created_at)),
                Cell::from(Span::styled(health.to_string(), t.base().fg(health_colour))),
            ])
            .style(t.base());
            if i == selected && app.focus == Focus::Main {
                row.style(t.selected())
            } else {
                row
            }
        })
        .collect();
    let arrow = if app.reverse { "▲" } else { "▼" };
    let mut title = format!(
        "tasks {}/{} · sort {} {arrow}",
        rows.len(),
        app.vm.len(),
        app.sort.label()
    );
    if let Some(ns) = &app.task_filter.namespace {
        title.push_str(&format!(" · ns {ns}"));
    }
    if let Some(state) = app.task_filter.state {
        title.push_str(&format!(" · state {state}"));
    }
    if let Some(since) = app.task_filter.since {
        title.push_str(&format!(" · since {}", crate::model::age(app.now, since)));
    }
    match &app.search {
        Some(search) => {
            title.push_str(&format!(" · search “{}”", search.words));
            if search.loading {
                title.push_str(" · searching the store…");
            } else if let Some(e) = &search.error {
                title.push_str(&format!(" · failed: {e}"));
            } else {
                title.push_str(&match search.next {
                    Some(_) => format!(" · first {} found in the store · more ↓", search.found.len()),
                    None => format!(" · {} found in the store", search.found.len()),
                });
            }
        }
        None if !app.task_filter.text.is_empty() => {
            title.push_str(&format!(" · /{} (Enter: search the store)", app.task_filter.text));
        }
        None => {}
    }
    if !app.marked.is_empty() {
        title.push_str(&format!(" · {} marked (r, c act on them)", app.marked.len()));
    }
    if app.loading_older {
        title.push_str(" · loading older…");
    } else if app.vm.more_older && app.search.is_none() {
        title.push_str(" · older below ↓");
    }
    let header = Row::new(["ID", "WORKFLOW", "STATE", "STEPS", "AGE", "HEALTH"])
        .style(t.base().fg(t.accent).add_modifier(Modifier::BOLD));
    let table = Table::new(
        body,
        [
            Constraint::Length(9),
            Constraint::Fill(1),
            Constraint::Length(13),
            Constraint::Length(5),
            Constraint::Length(3),
            Constraint::Length(10),
        ],
    )
    .header(header)
    .column_spacing(2)
    .block({
        let block = pane(
            app,
            super::fit(&title, usize::from(area.width).saturating_sub(6)),
            app.focus == Focus::Main,
        );
        match tooltip {
            Some(full) => block.title_bottom(Span::styled(
                format!(
                    " {} ",
                    super::fit(&full, usize::from(area.width).saturating_sub(6))
                ),
                t.base().fg(t.accent),
            )),
            None => block,
        }
    });
    frame.render_widget(table, area);
    if rows.is_empty() {
        let hint = if app.search.as_ref().is_some_and(|s| !s.loading) {
            "the store holds no task matching every word — Esc clears the search"
        } else if app.search.is_some() {
            "searching the store…"
        } else if app.vm.is_empty() && app.read_only {
            "no tasks yet"
        } else if app.vm.is_empty() {
            "no tasks yet — press n to start one"
        } else {
            "no task matches the filters — Esc clears them"
        };
        let inner = Rect::new(area.x + 2, area.y + 2, area.width.saturating_sub(4), 1);
        frame.render_widget(
            ratatui::widgets::Paragraph::new(Span::styled(
                super::fit(hint, usize::from(inner.width)),
                t.muted(),
            )),
            inner,
        );
    }
}
