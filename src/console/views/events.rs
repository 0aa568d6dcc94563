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
    let width = usize::from(area.width.saturating_sub(2));
    let mut tooltip: Option<String> = None;
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
            let line = e.line();
            let shown = super::fit(&line, width);
            if focused && i == selected && shown != line {
                // The part the row could not show, below the pane.
                let rest: String = line.chars().skip(width.saturating_sub(12)).collect();
                tooltip = Some(format!("…{rest}"));
            }
            Line::from(Span::styled(shown, style))
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
    let mut block = pane(app, super::fit(&title, width.saturating_sub(4)), focused);
    if let Some(rest) = tooltip {
        block = block.title_bottom(Span::styled(
            format!(" {} ", super::fit(&rest, width.saturating_sub(4))),
            t.base().fg(t.accent),
        ));
    }
    frame.render_widget(Paragraph::new(lines).block(block), area);
}
