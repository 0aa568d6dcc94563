//! `:audit`: the audit journal, newest first, as the engine gave it for the filter typed
//! (`actor:NAME task:ID action:PREFIX`), narrowed by `/`; Enter opens the task an entry is
//! about. Personal values in details read `[REDACTED]` without `pii:read`.

use super::super::app::{App, Focus};
use super::metrics::ellipsis;
use super::pane;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::Modifier;
use ratatui::text::Span;
use ratatui::widgets::{Cell, Paragraph, Row, Table};
use ratatui::Frame;

pub fn draw(frame: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let q = &app.audit_query;
    let filter: Vec<String> = [("actor", &q.actor), ("task", &q.task), ("action", &q.action)]
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}:{v}")))
        .collect();
    let rows = app.audit_rows();
    let title = format!(
        "audit ‖ {} entr{}{}{}",
        rows.len(),
        if rows.len() == 1 { "y" } else { "ies" },
        if filter.is_empty() {
            String::new()
        } else {
            format!(" · {}", filter.join(" "))
        },
        if app.task_filter.text.is_empty() {
            String::new()
        } else {
            format!(" · /{}", app.task_filter.text)
        },
    );
    let focused = app.focus == Focus::Main;
    let block = pane(app, title, focused);
    if rows.is_empty() {
        let text = match (&app.audit, &app.audit_error) {
            (_, Some(why)) => format!("cannot read the journal: {why}"),
            (None, None) => "reading the journal…".to_string(),
            (Some(_), None) => {
                "no entry matches (:audit actor:NAME task:ID action:PREFIX; r reads again)".to_string()
            }
        };
        frame.render_widget(Paragraph::new(Span::styled(text, t.muted())).block(block), area);
        return;
    }
    // The selected entry in full below the table (details are cut in their column).
    let (area, detail_area) = if area.height >= 12 {
        let [table, below] =
            ratatui::layout::Layout::vertical([Constraint::Min(5), Constraint::Length(5)]).areas(area);
        (table, Some(below))
    } else {
        (area, None)
    };
    let inner = area.width.saturating_sub(2) as usize;
    // Fixed: time 8, seq 6, outcome 7, spacing 6×1; the rest shared by actor, action, resource, detail.
    let rest = inner.saturating_sub(8 + 6 + 7 + 6);
    let actor_w = (rest / 6).clamp(6, 16);
    let action_w = (rest / 5).clamp(8, 20);
    let resource_w = (rest / 4).clamp(8, 28);
    let detail_w = rest.saturating_sub(actor_w + action_w + resource_w).max(4);
    let visible = area.height.saturating_sub(3) as usize;
    let selected = app.selected_audit.min(rows.len().saturating_sub(1));
    let offset = selected.checked_div(visible).map_or(0, |page| page * visible);
    let denied = t.base().fg(t.step(crate::model::StepState::Error));
    let body: Vec<Row> = rows
        .iter()
        .enumerate()
        .skip(offset)
        .take(visible)
        .map(|(i, e)| {
            let r = &e.record;
            let when = chrono::DateTime::from_timestamp_millis(r.at)
                .map(|d| d.format("%H:%M:%S").to_string())
                .unwrap_or_default();
            let style = if r.outcome == "success" { t.base() } else { denied };
            let row = Row::new(vec![
                Cell::from(Span::styled(e.seq.to_string(), t.muted())),
                Cell::from(Span::styled(when, t.muted())),
                Cell::from(ellipsis(&r.actor, actor_w)),
                Cell::from(Span::styled(ellipsis(&r.action, action_w), style)),
                Cell::from(ellipsis(&r.resource, resource_w)),
                Cell::from(Span::styled(ellipsis(&r.outcome, 7), style)),
                Cell::from(ellipsis(&r.detail, detail_w)),
            ])
            .style(t.base());
            if i == selected && focused {
                row.style(t.selected())
            } else {
                row
            }
        })
        .collect();
    let header = Row::new(["seq", "time", "actor", "action", "resource", "outcome", "detail"])
        .style(t.muted().add_modifier(Modifier::BOLD));
    let table = Table::new(
        body,
        [
            Constraint::Length(6),
            Constraint::Length(8),
            Constraint::Length(actor_w as u16),
            Constraint::Length(action_w as u16),
            Constraint::Length(resource_w as u16),
            Constraint::Length(7),
            Constraint::Length(detail_w as u16),
        ],
    )
    .header(header)
    .column_spacing(1)
    .block(block);
    frame.render_widget(table, area);
    if let (Some(below), Some(e)) = (detail_area, rows.get(selected)) {
        let r = &e.record;
        let mut text = vec![ratatui::text::Line::from(vec![
            Span::styled(format!("#{} ", e.seq), t.muted()),
            Span::raw(format!("{} {} {}", r.actor, r.action, r.resource)),
        ])];
        text.push(ratatui::text::Line::from(r.detail.clone()));
        if !r.compliance_tags.is_empty() {
            text.push(ratatui::text::Line::from(Span::styled(
                r.compliance_tags.join(" "),
                t.muted(),
            )));
        }
        let para = Paragraph::new(text)
            .wrap(ratatui::widgets::Wrap { trim: false })
            .block(pane(app, "entry".into(), false));
        frame.render_widget(para, below);
    }
}
