//! The live DAG: a layered left-to-right layout of a task's steps, boxes joined by
//! box-drawing edges, and a tree for terminals too narrow for it.

use super::theme::{step_glyph, Theme};
use crate::model::{StepState, Task};
use crate::workflow::dag::levels;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use unicode_width::UnicodeWidthStr;

const BOX_HEIGHT: u16 = 5;
const ROW_GAP: u16 = 1;
const COLUMN_GAP: u16 = 4;
const MIN_INNER: u16 = 11;
const MAX_INNER: u16 = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    pub x: u16,
    pub y: u16,
    pub w: u16,
}

/// Where every step goes. Coordinates are relative to the drawing area.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DagLayout {
    pub boxes: Vec<Placed>,
    pub edges: Vec<(usize, usize)>,
    pub width: u16,
    pub height: u16,
    /// For each step with parents, the column of its own vertical channel in the gap before
    /// it, so edges into different steps never share a line.
    pub channels: Vec<u16>,
    /// Step indices in reading order (by column, then top to bottom): what j/k walk.
    pub order: Vec<usize>,
}

fn edges(task: &Task) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for (i, s) in task.steps.iter().enumerate() {
        for dep in &s.depends_on {
            if let Some(p) = task.step_index(dep) {
                out.push((p, i));
            }
        }
    }
    out
}

/// Step indices in reading order for any width (layered order, as the layout would place them).
pub fn reading_order(task: &Task) -> Vec<usize> {
    columns(task).into_iter().flatten().collect()
}

/// Steps grouped by depth, each column ordered to keep edges short (one barycenter pass).
fn columns(task: &Task) -> Vec<Vec<usize>> {
    let n = task.steps.len();
    let edges = edges(task);
    let level = levels(n, &edges).unwrap_or_else(|| vec![0; n]);
    let depth = level.iter().copied().max().map_or(0, |m| m + 1);
    let mut cols: Vec<Vec<usize>> = vec![Vec::new(); depth];
    for (i, l) in level.iter().enumerate() {
        cols[*l].push(i);
    }
    for c in 1..cols.len() {
        let (before, rest) = cols.split_at_mut(c);
        let position = |i: usize| -> f64 {
            let parents: Vec<f64> = edges
                .iter()
                .filter(|(_, child)| *child == i)
                .filter_map(|(p, _)| before.iter().find_map(|col| col.iter().position(|x| x == p)))
                .map(|p| p as f64)
                .collect();
            if parents.is_empty() {
                f64::MAX
            } else {
                parents.iter().sum::<f64>() / parents.len() as f64
            }
        };
        rest[0].sort_by(|a, b| position(*a).total_cmp(&position(*b)).then(a.cmp(b)));
    }
    cols
}

/// The most steps drawn as boxes; larger tasks are drawn as a tree.
const MAX_BOXES: usize = 200;

/// Lays the steps out within `max_width` columns, or `None` when they do not fit even with
/// shortened names (the caller then draws the tree).
pub fn layout(task: &Task, max_width: u16) -> Option<DagLayout> {
    // More boxes than any terminal shows: the tree, and every count below fits a u16.
    if task.steps.len() > MAX_BOXES {
        return None;
    }
    let cols = columns(task);
    let depth = cols.len() as u16;
    if depth == 0 {
        return None;
    }
    let all_edges = edges(task);
    // Each gap holds a stub, one channel per step of the next column that has parents, and
    // the arrow.
    let gaps: Vec<u16> = (1..cols.len())
        .map(|c| {
            let fed = cols[c]
                .iter()
                .filter(|i| all_edges.iter().any(|(_, child)| child == *i))
                .count() as u16;
            (fed + 2).max(COLUMN_GAP)
        })
        .collect();
    let gap_total: u16 = gaps.iter().sum();
    let longest = task
        .steps
        .iter()
        .map(|s| name_width(&s.name) as u16 + 2)
        .max()
        .unwrap_or(0);
    let fit = (max_width.saturating_sub(gap_total) / depth).saturating_sub(2);
    let inner = longest.clamp(MIN_INNER, MAX_INNER).min(fit);
    if inner < MIN_INNER {
        return None;
    }
    let outer = inner + 2;
    let tallest = cols.iter().map(|c| c.len() as u16).max().unwrap_or(1);
    let height = tallest * BOX_HEIGHT + (tallest - 1) * ROW_GAP;
    let mut boxes = vec![Placed { x: 0, y: 0, w: outer }; task.steps.len()];
    let mut channels = vec![0u16; task.steps.len()];
    let mut x = 0u16;
    for (c, col) in cols.iter().enumerate() {
        if c > 0 {
            x += gaps[c - 1];
        }
        let col_height = col.len() as u16 * BOX_HEIGHT + (col.len() as u16).saturating_sub(1) * ROW_GAP;
        let top = (height - col_height) / 2;
        let fed: Vec<usize> = col
            .iter()
            .copied()
            .filter(|i| all_edges.iter().any(|(_, child)| child == i))
            .collect();
        for (r, &i) in col.iter().enumerate() {
            boxes[i] = Placed {
                x,
                y: top + r as u16 * (BOX_HEIGHT + ROW_GAP),
                w: outer,
            };
            if let Some(j) = fed.iter().position(|f| *f == i) {
                channels[i] = x - 1 - (fed.len() - j) as u16;
            }
        }
        x += outer;
    }
    let width = x;
    Some(DagLayout {
        boxes,
        edges: all_edges,
        width,
        height,
        channels,
        order: cols.into_iter().flatten().collect(),
    })
}

const L: u8 = 1;
const R: u8 = 2;
const U: u8 = 4;
const D: u8 = 8;

fn line_char(bits: u8) -> &'static str {
    match bits {
        b if b == L | R || b == L || b == R => "─",
        b if b == U | D || b == U || b == D => "│",
        b if b == R | D => "╭",
        b if b == L | D => "╮",
        b if b == R | U => "╰",
        b if b == L | U => "╯",
        b if b == L | R | D => "┬",
        b if b == L | R | U => "┴",
        b if b == U | D | R => "├",
        b if b == U | D | L => "┤",
        _ => "┼",
    }
}

pub fn short_state(state: StepState) -> &'static str {
    match state {
        StepState::Pending => "pending",
        StepState::InProgress => "running",
        StepState::WaitingForRetry => "retrying",
        StepState::AwaitingApproval => "approval",
        StepState::WaitingForChild => "child",
        StepState::Complete => "done",
        StepState::Error => "failed",
        StepState::Cancelled => "cancelled",
        StepState::ResolvedManually => "resolved",
    }
}

fn pad(text: &str, width: usize) -> String {
    format!("{text}{}", " ".repeat(width.saturating_sub(text.width())))
}

/// The narrowest width at which `wrap_name` shows the whole name.
fn name_width(name: &str) -> usize {
    let full = name.width();
    name.char_indices()
        .filter(|(_, c)| *c == '_')
        .map(|(i, _)| (i + 1).max(full - i - 1))
        .min()
        .unwrap_or(full)
        .min(full)
}

/// Splits a step name over two lines of `width`, at an underscore where possible.
pub fn wrap_name(name: &str, width: usize) -> (String, String) {
    if name.width() <= width {
        return (name.to_string(), String::new());
    }
    // The underscore that leaves the shorter second line while the first still fits.
    let cut = name
        .char_indices()
        .filter(|(i, c)| *c == '_' && *i < width)
        .map(|(i, _)| i + 1)
        .next_back()
        .unwrap_or_else(|| name.char_indices().nth(width).map_or(name.len(), |(i, _)| i));
    (name[..cut].to_string(), fit(&name[cut..], width))
}

/// Truncates to `width` columns with an ellipsis.
pub fn fit(text: &str, width: usize) -> String {
    if text.width() <= width {
        return text.to_string();
    }
    let mut out = String::new();
    for c in text.chars() {
        if out.width() + 1 >= width {
            break;
        }
        out.push(c);
    }
    out.push('…');
    out
}

/// Draws the layout into `area` of `buf`; `selected` is a step index.
pub fn render(
    task: &Task,
    layout: &DagLayout,
    selected: Option<usize>,
    theme: &Theme,
    area: Rect,
    buf: &mut Buffer,
) {
    let (w, h) = (layout.width.min(area.width), layout.height.min(area.height));
    // Edges first, on a canvas of line directions, so crossings and joins merge.
    let mut canvas = vec![(0u8, theme.border); w as usize * h as usize];
    let mut set = |x: u16, y: u16, bits: u8, colour| {
        if x < w && y < h {
            let cell = &mut canvas[y as usize * w as usize + x as usize];
            cell.0 |= bits;
            cell.1 = colour;
        }
    };
    let mut arrows = Vec::new();
    for &(p, c) in &layout.edges {
        let (pb, cb) = (layout.boxes[p], layout.boxes[c]);
        let colour = if task.steps[p].state.satisfies_dependency() {
            theme.step(StepState::Complete)
        } else {
            theme.border
        };
        let (y0, y1) = (pb.y + 1, cb.y + 1);
        let (x0, channel) = (pb.x + pb.w, layout.channels[c]);
        for x in x0..channel {
            set(x, y0, R, colour);
            set(x + 1, y0, L, colour);
        }
        let (top, bottom) = (y0.min(y1), y0.max(y1));
        for y in top..bottom {
            set(channel, y, D, colour);
            set(channel, y + 1, U, colour);
        }
        for x in channel..cb.x.saturating_sub(1) {
            set(x, y1, R, colour);
            set(x + 1, y1, L, colour);
        }
        arrows.push((cb.x.saturating_sub(1), y1, colour));
    }
    for y in 0..h {
        for x in 0..w {
            let (bits, colour) = canvas[y as usize * w as usize + x as usize];
            if bits != 0 {
                buf[(area.x + x, area.y + y)]
                    .set_symbol(line_char(bits))
                    .set_style(theme.base().fg(colour));
            }
        }
    }
    for (x, y, colour) in arrows {
        if x < w && y < h {
            buf[(area.x + x, area.y + y)]
                .set_symbol("▶")
                .set_style(theme.base().fg(colour));
        }
    }
    // Then the boxes.
    for (i, b) in layout.boxes.iter().enumerate() {
        let step = &task.steps[i];
        if b.x + b.w > w || b.y + BOX_HEIGHT > h {
            continue;
        }
        let is_selected = selected == Some(i);
        let colour = theme.step(step.state);
        let mut style = theme.base().fg(colour);
        if is_selected {
            style = style.patch(theme.selected());
        }
        let (x, y) = (area.x + b.x, area.y + b.y);
        let inner = (b.w - 2) as usize;
        let (tl, tr, bl, br, hz, vt) = if is_selected {
            ("┏", "┓", "┗", "┛", "━", "┃")
        } else {
            ("╭", "╮", "╰", "╯", "─", "│")
        };
        let line = |l: &str, fill: &str, r: &str| format!("{l}{}{r}", fill.repeat(inner));
        buf.set_string(x, y, line(tl, hz, tr), style);
        buf.set_string(x, y + BOX_HEIGHT - 1, line(bl, hz, br), style);
        let (first, second) = wrap_name(&step.name, inner - 2);
        let first = format!("{} {first}", step_glyph(step.state));
        let second = format!("  {second}");
        let detail = fit(
            &format!(
                "{}/{} {}",
                step.attempts_used(),
                step.retry.limit,
                short_state(step.state)
            ),
            inner,
        );
        let text_style = if is_selected {
            style.add_modifier(Modifier::BOLD)
        } else {
            style
        };
        buf.set_string(x, y + 1, format!("{vt}{}{vt}", pad(&first, inner)), text_style);
        buf.set_string(x, y + 2, format!("{vt}{}{vt}", pad(&second, inner)), text_style);
        buf.set_string(x, y + 3, format!("{vt}{}{vt}", pad(&detail, inner)), style);
    }
}

/// The narrow-terminal fallback: one line per step in reading order, indented by depth.
pub fn tree_lines(task: &Task, selected: Option<usize>, theme: &Theme, width: u16) -> Vec<Line<'static>> {
    let cols = columns(task);
    let mut lines = Vec::new();
    for (depth, col) in cols.iter().enumerate() {
        for &i in col {
            let step = &task.steps[i];
            let indent = "  ".repeat(depth);
            let branch = if depth == 0 { "" } else { "└▶ " };
            let name = format!("{indent}{branch}{} {}", step_glyph(step.state), step.name);
            let detail = format!(
                " {}/{} {}",
                step.attempts_used(),
                step.retry.limit,
                short_state(step.state)
            );
            let after = if step.depends_on.len() > 1 {
                format!("  ← {}", step.depends_on.join(", "))
            } else {
                String::new()
            };
            let text = fit(&format!("{name}{detail}{after}"), width as usize);
            let mut style = Style::default().fg(theme.step(step.state));
            if selected == Some(i) {
                style = style.patch(theme.selected());
            }
            lines.push(Line::from(Span::styled(text, style)));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Step, TaskState};
    use serde_json::json;

    fn diamond() -> Task {
        let step = |name: &str, deps: &[&str]| {
            Step::new(name, "simulate", deps.iter().map(|d| d.to_string()).collect())
        };
        Task {
            id: "t".into(),
            namespace: "ns".into(),
            name: "wf".into(),
            version: "1.0.0".into(),
            state: TaskState::Pending,
            context: json!({}),
            initiator: "x".into(),
            parent: None,
            correlation_id: None,
            origin_key: None,
            traceparent: None,
            classification: Default::default(),
            seq: 0,
            search_terms: Vec::new(),
            created_at: 0,
            updated_at: 0,
            steps: vec![
                step("root", &[]),
                step("left", &["root"]),
                step("right", &["root"]),
                step("join", &["left", "right"]),
            ],
        }
    }

    #[test]
    fn a_diamond_is_three_columns_with_the_branches_stacked() {
        let l = layout(&diamond(), 200).unwrap();
        let outer = 11 + 2; // names are short: the minimum box
        let at = |x: u16, y: u16| Placed { x, y, w: outer };
        assert_eq!(
            l.boxes,
            [
                at(0, 3),
                at(outer + 4, 0),
                at(outer + 4, 6),
                at(2 * (outer + 4), 3)
            ]
        );
        assert_eq!((l.width, l.height), (3 * outer + 8, 11));
        assert_eq!(l.order, [0, 1, 2, 3]);
    }

    #[test]
    fn too_narrow_falls_back_to_the_tree() {
        assert!(layout(&diamond(), 40).is_none());
        let lines = tree_lines(&diamond(), Some(3), &Theme::load("dark").unwrap(), 60);
        let text: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        assert_eq!(text[0], "○ root 0/3 pending");
        assert_eq!(text[3], "    └▶ ○ join 0/3 pending  ← left, right");
    }

    #[test]
    fn edges_join_with_box_drawing() {
        let task = diamond();
        let l = layout(&task, 200).unwrap();
        let area = Rect::new(0, 0, l.width, l.height);
        let mut buf = Buffer::empty(area);
        render(&task, &l, Some(0), &Theme::load("dark").unwrap(), area, &mut buf);
        let rows: Vec<String> = (0..l.height)
            .map(|y| (0..l.width).map(|x| buf[(x, y)].symbol().to_string()).collect())
            .collect();
        insta::assert_snapshot!(rows.join("\n"));
    }
}
