//! Namespaces with their workflows, versions and task counts by state.

use super::super::app::{App, Focus};
use super::pane;
use crate::model::TaskState;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

pub fn draw(frame: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let focused = app.focus == Focus::Namespaces;
    let mut lines = Vec::new();
    let selected_style = |i: usize| {
        if focused && app.selected_namespace == i {
            t.selected()
        } else {
            t.base()
        }
    };
    let all_active = app.task_filter.namespace.is_none();
    lines.push(Line::from(Span::styled(
        format!(
            "{} all namespaces ({})",
            if all_active { "▸" } else { " " },
            app.vm.len()
        ),
        selected_style(0),
    )));
    for (i, ns) in app.namespaces().iter().enumerate() {
        let active = app.task_filter.namespace.as_deref() == Some(ns.as_str());
        lines.push(Line::from(Span::styled(
            format!("{} {ns}", if active { "▸" } else { " " }),
            selected_style(i + 1).fg(t.accent),
        )));
        let counts = app.vm.namespace_counts(ns);
        let mut spans = vec![Span::styled("   ", t.base())];
        for (state, n) in TaskState::ALL.iter().zip(counts) {
            if n > 0 {
                spans.push(Span::styled(
                    format!("{} {n} ", super::super::theme::task_glyph(*state)),
                    t.base().fg(t.task(*state)),
                ));
            }
        }
        if spans.len() > 1 {
            lines.push(Line::from(spans));
        }
        for w in app.vm.workflows.iter().filter(|w| &w.namespace == ns) {
            lines.push(Line::from(Span::styled(
                super::fit(
                    &format!("   {} {}", w.name, w.versions.join(" ")),
                    usize::from(area.width).saturating_sub(2),
                ),
                t.muted(),
            )));
        }
    }
    let block = pane(app, "namespaces".into(), focused);
    frame.render_widget(Paragraph::new(lines).block(block), area);
}
