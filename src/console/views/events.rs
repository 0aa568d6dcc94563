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
    let filter = app.event_filter.to_lowercase();
    let lines: Vec<Line> = app
        .vm
        .events
        .iter()
        .rev()
        .map(|e| (e, e.line()))
        .filter(|(_, text)| filter.is_empty() || text.to_lowercase().contains(&filter))
        .take(visible)
        .map(|(e, text)| {
            let colour = match e.name.as_str() {
                "task.completed" | "step.completed" => t.step(crate::model::StepState::Complete),
                "task.failed" | "step.failed" => t.step(crate::model::StepState::Error),
                "step.retry_scheduled" | "step.retry_requested" => {
                    t.step(crate::model::StepState::WaitingForRetry)
                }
                _ if e.custom => t.title,
                _ => t.text,
            };
            Line::from(Span::styled(text, t.base().fg(colour)))
        })
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let title = if app.event_filter.is_empty() {
        "events".to_string()
    } else {
        format!("events /{}", app.event_filter)
    };
    frame.render_widget(Paragraph::new(lines).block(pane(app, title, focused)), area);
}
