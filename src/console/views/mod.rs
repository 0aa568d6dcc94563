//! Drawing: one function per region, all reading `App` and nothing else.

mod approvals;
mod audit;
mod chrome;
mod events;
mod metrics;
mod namespaces;
mod overlays;
mod task;
mod tasks;

use super::app::{App, Focus, Mode, Screen};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::widgets::Block;
use ratatui::Frame;

/// Below this width the namespaces pane is hidden.
pub const WIDE: u16 = 100;

pub fn draw(frame: &mut Frame, app: &App) {
    let area = frame.area();
    frame.render_widget(Block::default().style(app.theme.base()), area);
    let in_task_view = matches!(app.screen, Screen::Task(_) | Screen::Approvals);
    let events_height = match (area.height, in_task_view) {
        (36.., false) => 9,
        (36.., true) => 6,
        (20.., _) => 5,
        _ => 0,
    };
    let header_height = chrome::header_lines(app, area.width).len() as u16;
    let [header, body, events_area, footer] = Layout::vertical([
        Constraint::Length(header_height),
        Constraint::Min(3),
        Constraint::Length(events_height),
        Constraint::Length(1),
    ])
    .areas(area);
    chrome::header(frame, app, header);
    // A task, the inbox and `:metrics` take the full width.
    let in_task = matches!(
        app.screen,
        Screen::Task(_) | Screen::Approvals | Screen::Metrics | Screen::Audit
    );
    let main = if area.width >= WIDE && !in_task {
        let [ns, main] = Layout::horizontal([Constraint::Length(30), Constraint::Min(20)]).areas(body);
        namespaces::draw(frame, app, ns);
        main
    } else if app.focus == Focus::Namespaces {
        namespaces::draw(frame, app, body);
        Rect::default()
    } else {
        body
    };
    if !main.is_empty() {
        match &app.screen {
            Screen::Tasks => tasks::draw(frame, app, main),
            Screen::Task(id) => {
                let selected = app
                    .vm
                    .task(id)
                    .and_then(|t| super::dag::reading_order(t).get(app.selected_step).copied());
                task::draw(frame, app, id, selected, main)
            }
            Screen::Approvals => approvals::draw(frame, app, main),
            Screen::Metrics => metrics::draw(frame, app, main),
            Screen::Audit => audit::draw(frame, app, main),
        }
    }
    if events_height > 0 {
        events::draw(frame, app, events_area);
    }
    chrome::footer(frame, app, footer);
    match &app.mode {
        Mode::Help { scroll } => overlays::help(frame, app, *scroll, area),
        Mode::Form(form) => overlays::form(frame, app, form, area),
        Mode::Confirm { message, yes, .. } => overlays::confirm(frame, app, message, yes, area),
        Mode::Gone { message } => overlays::gone(frame, app, message, area),
        Mode::Viewer(viewer) => overlays::viewer(frame, app, viewer, area),
        _ => {}
    }
}

/// A bordered pane whose border shows focus.
fn pane<'a>(app: &App, title: String, focused: bool) -> Block<'a> {
    Block::bordered()
        .border_type(ratatui::widgets::BorderType::Rounded)
        .border_style(app.theme.border(focused))
        .title(ratatui::text::Span::styled(
            format!(" {title} "),
            app.theme
                .base()
                .fg(app.theme.title)
                .add_modifier(ratatui::style::Modifier::BOLD),
        ))
        .style(app.theme.base())
}

/// `text` in at most `width` characters: whole if it fits, else cut at the last word or name
/// boundary (space, `/`, `_`, `.`, `@`, `-`) that keeps most of it, and ended with `…`; never
/// cut mid-word when a boundary is near.
pub fn fit(text: &str, width: usize) -> String {
    let chars = text.chars().count();
    if chars <= width {
        return text.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let room = width - 1;
    let head: Vec<char> = text.chars().take(room).collect();
    let boundary = head
        .iter()
        .enumerate()
        .filter(|(_, c)| matches!(c, ' ' | '/' | '_' | '.' | '@' | '-'))
        .map(|(i, c)| if *c == ' ' { i } else { i + 1 })
        .next_back()
        .filter(|i| *i * 5 >= room * 3);
    let keep = boundary.unwrap_or(room);
    let mut out: String = head[..keep].iter().collect::<String>().trim_end().to_string();
    out.push('…');
    out
}

/// A task's short id for a table: `✓` and the id in the accent colour when it is marked.
pub fn id_cell(app: &App, id: &str) -> ratatui::text::Span<'static> {
    let short = crate::model::short_id(id);
    if app.marked.contains(id) {
        ratatui::text::Span::styled(
            format!("✓{short}"),
            app.theme
                .base()
                .fg(app.theme.accent)
                .add_modifier(ratatui::style::Modifier::BOLD),
        )
    } else {
        ratatui::text::Span::styled(short.to_string(), app.theme.muted())
    }
}

/// A workflow reference in `width` characters: whole, else without its version, else fitted.
pub fn fit_workflow(reference: &str, width: usize) -> String {
    if reference.chars().count() <= width {
        return reference.to_string();
    }
    let name = reference.split('@').next().unwrap_or(reference);
    if name.chars().count() <= width {
        return name.to_string();
    }
    fit(name, width)
}

/// A rectangle of `w`×`h` centred in `area` (clipped to it).
fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let (w, h) = (w.min(area.width), h.min(area.height));
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}
