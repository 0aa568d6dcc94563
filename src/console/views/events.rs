//! The live event stream, newest at the bottom, filterable with `/`.

use super::super::app::{App, Focus};
use super::pane;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

pub fn draw(frame: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let focused = app.focus == Focus::Events;
    let visible = area.height.saturating_sub(2) as usize;
    let rows = app.event_rows();
    let selected = app.selected_event.min(rows.len().saturating_sub(1));
    // Newest at the bottom; scrolled so the selected event stays on screen.
    let skip = selected.saturating_sub(visible.saturating_sub(1));
    let lines: Vec<Line> = rows
        .iter()
        .enumerate()
        .skip(skip)
        .take(visible)
        .map(|(i, e)| {
            let colour = match e.name.as_str() {
                "task.completed" | "step.completed" => t.step(crate::model::StepState::Complete),
                "task.failed" | "step.failed" => t.step(crate::model::StepState::Error),
                "step.retry_scheduled" | "step.retry_requested" => {
                    t.step(crate::model::StepState::WaitingForRetry)
                }
                _ if e.custom => t.title,
                _ => t.text,
            };
            let style = if focused && i == selected {
                t.selected()
            } else {
                t.base().fg(colour)
            };
            Line::from(Span::styled(e.line(), style))
        })
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let mut title = "events".to_string();
    if let Some(id) = &app.event_follow {
        title.push_str(&format!(" · task {}", crate::model::short_id(id)));
    }
    if !app.event_filter.is_empty() {
        title.push_str(&format!(" /{}", app.event_filter));
    }
    if focused && !rows.is_empty() {
        title.push_str(&format!(
            " · {} of {} · Enter payload · f follow",
            selected + 1,
            rows.len()
        ));
    }
    frame.render_widget(Paragraph::new(lines).block(pane(app, title, focused)), area);
}
