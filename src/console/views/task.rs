//! One task: its live DAG (or tree) and the selected step's detail.

use super::super::app::{App, Focus};
use super::super::dag;
use super::super::inspect;
use super::super::theme::{step_glyph, task_glyph};
use super::pane;
use crate::model::{short_id, StepState, Task};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
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
    // A fair share on wide screens: two fifths, between 44 and 100 columns.
    let detail_width = if area.width >= 110 {
        (area.width * 2 / 5).clamp(44, 100)
    } else {
        area.width / 2
    };
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
    let block = pane(
        app,
        super::fit(&title, usize::from(graph_area.width).saturating_sub(4)),
        app.focus == Focus::Main,
    );
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

/// The selected step's pane: every line of `inspect::step_lines`, scrolled so the cursor
/// (when the pane has focus) stays in view; lines are wrapped to the pane, never cut.
fn detail(frame: &mut Frame, app: &App, task: &Task, selected: Option<usize>, area: Rect) {
    let t = &app.theme;
    let Some(i) = selected else { return };
    let log = app
        .vm
        .transitions
        .as_ref()
        .filter(|(id, _)| id == &task.id)
        .map(|(_, log)| log.as_slice());
    let lines = inspect::step_lines(app, task, i, log);
    let focused = app.focus == Focus::Detail;
    let cursor = app.detail_cursor.min(lines.len().saturating_sub(1));
    let title = format!(
        "step {}{}",
        task.steps[i].name,
        if focused {
            " · j/k scroll · Enter opens a link"
        } else {
            ""
        }
    );
    let block = pane(
        app,
        super::fit(&title, usize::from(area.width).saturating_sub(4)),
        focused,
    );
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let width = usize::from(inner.width.max(1));
    // Rows of each line once wrapped, so the cursor's line can be scrolled into view.
    let mut rows: Vec<Line> = Vec::new();
    let mut cursor_rows = (0, 0);
    for (n, pl) in lines.into_iter().enumerate() {
        let start = rows.len();
        let mut line = pl.line;
        if focused && n == cursor {
            line = line.patch_style(t.base().add_modifier(Modifier::REVERSED));
        }
        rows.extend(wrap(line, width));
        if n == cursor {
            cursor_rows = (start, rows.len());
        }
    }
    let height = usize::from(inner.height);
    let top = if focused && cursor_rows.1 > height {
        cursor_rows.1 - height
    } else {
        0
    };
    let more = rows.len().saturating_sub(top + height);
    let visible: Vec<Line> = rows.into_iter().skip(top).take(height).collect();
    frame.render_widget(Paragraph::new(visible).style(t.base()), inner);
    if more > 0 && inner.height > 0 {
        let note = format!(" {more} more ↓ (Tab, then j) ");
        let w = u16::try_from(note.chars().count())
            .unwrap_or(u16::MAX)
            .min(area.width.saturating_sub(2));
        let at = Rect::new(
            area.x + area.width.saturating_sub(w + 1),
            area.y + area.height - 1,
            w,
            1,
        );
        frame.render_widget(Paragraph::new(Span::styled(note, t.muted())), at);
    }
}

/// `line` cut into rows of at most `width` characters, at spaces where it can.
fn wrap(line: Line<'static>, width: usize) -> Vec<Line<'static>> {
    let total: usize = line.spans.iter().map(|s| s.content.chars().count()).sum();
    if total <= width {
        return vec![line];
    }
    let mut out = Vec::new();
    let mut row: Vec<Span<'static>> = Vec::new();
    let mut used = 0;
    for span in line.spans {
        let mut rest: String = span.content.into_owned();
        while !rest.is_empty() {
            let room = width - used;
            let chars = rest.chars().count();
            if chars <= room {
                used += chars;
                row.push(Span::styled(std::mem::take(&mut rest), span.style));
                break;
            }
            // Break at the last space that fits, else after the last `.`, `_`, `/` or `-` of
            // a long name, and only mid-word when a token has none of them.
            let fits: Vec<(usize, char)> = rest.char_indices().take(room + 1).collect();
            let after = |set: &[char]| {
                fits.iter()
                    .filter(|(_, c)| set.contains(c))
                    .map(|(b, c)| if *c == ' ' { *b } else { b + c.len_utf8() })
                    .rfind(|b| *b > 0 && *b < rest.len() && rest[..*b].chars().count() <= room)
            };
            let cut_at = after(&[' '])
                .or_else(|| after(&['.', '_', '/', '-', ',']))
                .unwrap_or_else(|| rest.char_indices().nth(room).map_or(rest.len(), |(b, _)| b));
            let tail = rest.split_off(cut_at);
            if !rest.is_empty() {
                row.push(Span::styled(rest, span.style));
            }
            out.push(Line::from(std::mem::take(&mut row)));
            used = 0;
            rest = tail.trim_start_matches(' ').to_string();
            if rest.is_empty() {
                break;
            }
            // Continuation rows are indented by two to read as one line (when there is room).
            if width > 8 {
                row.push(Span::raw("  "));
                used = 2;
            }
        }
    }
    if !row.is_empty() {
        out.push(Line::from(row));
    }
    out
}
