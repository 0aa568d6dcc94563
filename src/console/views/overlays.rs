//! Pop-ups over the screen: help, the new-task form, confirmations.

use super::super::app::{App, NewTaskForm};
use super::{centered, pane};
use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph, Wrap};
use ratatui::Frame;

/// Keys on the left, `:` commands on the right (below them on a very narrow screen), both
/// from the key table.
pub fn help(frame: &mut Frame, app: &App, scroll: usize, area: Rect) {
    let t = &app.theme;
    let key_style = t.base().fg(t.accent).add_modifier(Modifier::BOLD);
    let entry = |k: &str, what: &str, kw: usize, width: usize| -> Vec<Span<'static>> {
        let what = super::fit(what, width.saturating_sub(kw + 3));
        let pad = width.saturating_sub(kw + 3 + what.chars().count());
        vec![
            Span::styled(format!(" {:<kw$} ", super::fit(k, kw)), key_style),
            Span::styled(format!("{what}{} ", " ".repeat(pad)), t.base()),
        ]
    };
    let keys = app.keys();
    let commands = app.commands();
    let kw = keys.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0);
    let cw = commands.iter().map(|(c, _)| c.chars().count()).max().unwrap_or(0);
    let inner = usize::from(area.width.saturating_sub(4)).min(112);
    let two_columns = inner >= 74;
    let left = if two_columns { inner / 2 } else { inner };
    // A command's arguments take at most half its column; the rest is for what it does.
    let cw = cw.min((if two_columns { inner - left } else { left }) / 2);
    let mut lines: Vec<Line> = Vec::new();
    if two_columns {
        for i in 0..keys.len().max(commands.len()) {
            let mut spans = match keys.get(i) {
                Some((k, w)) => entry(k, w, kw, left),
                None => vec![Span::raw(" ".repeat(left + 1))],
            };
            if let Some((c, w)) = commands.get(i) {
                spans.extend(entry(c, w, cw, inner - left - 1));
            }
            lines.push(Line::from(spans));
        }
    } else {
        lines.extend(keys.iter().map(|(k, w)| Line::from(entry(k, w, kw, left))));
        lines.push(Line::from(""));
        lines.extend(commands.iter().map(|(c, w)| Line::from(entry(c, w, cw, left))));
    }
    let width = u16::try_from(inner + 2).unwrap_or(u16::MAX);
    let height = u16::try_from(lines.len() + 2).unwrap_or(u16::MAX);
    let popup = centered(area, width, height);
    // Taller than the terminal: it scrolls, and the title says so.
    let rows = usize::from(popup.height.saturating_sub(2));
    let top = scroll.min(lines.len().saturating_sub(rows));
    let title = if lines.len() > rows {
        format!(
            "keys {}-{} of {} · j/k scroll · any other key closes",
            top + 1,
            (top + rows).min(lines.len()),
            lines.len()
        )
    } else {
        "keys · any key closes".into()
    };
    let shown: Vec<Line> = lines.into_iter().skip(top).collect();
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(shown).block(pane(
            app,
            super::fit(&title, usize::from(popup.width).saturating_sub(4)),
            true,
        )),
        popup,
    );
}

/// `yes` names what `y` does ("yes, approve"), so the operator reads the consequence.
pub fn confirm(frame: &mut Frame, app: &App, message: &str, yes: &str, area: Rect) {
    let t = &app.theme;
    let lines = vec![
        Line::from(Span::styled(
            message.to_string(),
            t.base().add_modifier(Modifier::BOLD),
        )),
        Line::from(""),
        Line::from(vec![
            Span::styled(
                " y ",
                t.base()
                    .fg(t.background)
                    .bg(t.step(crate::model::StepState::Error)),
            ),
            Span::styled(format!(" {yes}    "), t.base()),
            Span::styled(" n ", t.base().fg(t.background).bg(t.muted)),
            Span::styled(" no", t.base()),
        ]),
    ];
    // Wrapped, never cut: a bulk action names every task it will touch.
    let width = u16::try_from(message.chars().count().saturating_add(6))
        .unwrap_or(u16::MAX)
        .max(44)
        .min(area.width.saturating_sub(4).max(20));
    let text_width = usize::from(width.saturating_sub(4)).max(1);
    let message_rows = message.chars().count().div_ceil(text_width).max(1) + 1;
    let height = u16::try_from(message_rows + 4).unwrap_or(u16::MAX);
    let popup = centered(area, width, height);
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: true })
            .block(pane(app, "confirm".into(), true)),
        popup,
    );
}

pub fn form(frame: &mut Frame, app: &App, form: &NewTaskForm, area: Rect) {
    let t = &app.theme;
    let popup = centered(
        area,
        area.width.saturating_sub(8).min(96),
        area.height.saturating_sub(4),
    );
    frame.render_widget(Clear, popup);
    let Some(workflow) = &form.workflow else {
        let choices = app.form_choices(&form.filter.text);
        let mut lines = vec![
            Line::from(vec![
                Span::styled("workflow: ", t.muted()),
                Span::styled(form.filter.text.clone(), t.base()),
                Span::styled("█", t.base().fg(t.accent)),
            ]),
            Line::from(""),
        ];
        for (i, w) in choices.iter().enumerate() {
            let style = if i == form.picked { t.selected() } else { t.base() };
            let desc = w.template.description.clone().unwrap_or_default();
            lines.push(Line::from(vec![
                Span::styled(format!(" {:<42}", w.template.reference()), style),
                Span::styled(format!(" {desc}"), t.muted()),
            ]));
        }
        lines.push(Line::from(""));
        lines.push(Line::from(Span::styled(
            " type to filter · ↑/↓ choose · Enter edit context · Esc close",
            t.muted(),
        )));
        frame.render_widget(
            Paragraph::new(lines).block(pane(app, "new task".into(), true)),
            popup,
        );
        return;
    };
    let height = popup.height.saturating_sub(4) as usize;
    let errors = form.errors.len().min(6);
    let editor_rows = height.saturating_sub(errors + 2);
    let start = form.editor.row.saturating_sub(editor_rows.saturating_sub(1));
    let mut lines = Vec::new();
    for (n, text) in form.editor.lines.iter().enumerate().skip(start).take(editor_rows) {
        let mut spans = vec![Span::styled(format!("{:>3} ", n + 1), t.muted())];
        if n == form.editor.row {
            let (before, after): (String, String) = {
                let chars: Vec<char> = text.chars().collect();
                let col = form.editor.col.min(chars.len());
                (chars[..col].iter().collect(), chars[col..].iter().collect())
            };
            let mut rest = after.chars();
            let at = rest.next().map_or(" ".to_string(), |c| c.to_string());
            spans.push(Span::styled(before, t.base()));
            spans.push(Span::styled(at, t.base().add_modifier(Modifier::REVERSED)));
            spans.push(Span::styled(rest.collect::<String>(), t.base()));
        } else {
            spans.push(Span::styled(text.clone(), t.base()));
        }
        lines.push(Line::from(spans));
    }
    lines.push(Line::from(""));
    if form.errors.is_empty() {
        lines.push(Line::from(Span::styled(
            " ✔ context matches the input schema — Ctrl-S submits",
            t.base().fg(t.step(crate::model::StepState::Complete)),
        )));
    } else {
        for e in form.errors.iter().take(6) {
            lines.push(Line::from(Span::styled(
                format!(" ✖ {e}"),
                t.base().fg(t.step(crate::model::StepState::Error)),
            )));
        }
    }
    let title = format!(
        "new {} · edit the context (JSON) · Ctrl-S submit · Esc back",
        workflow.template.reference()
    );
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(pane(app, title, true)),
        popup,
    );
}

/// A text over the console (a payload, a context, a history): as many lines as fit from the
/// scroll position, the filter being typed or kept, and where in the text the view is.
pub fn viewer(frame: &mut Frame, app: &App, viewer: &crate::console::app::Viewer, area: Rect) {
    let t = &app.theme;
    let shown = viewer.shown();
    let width = area.width.saturating_sub(8).clamp(20, 110);
    let height = u16::try_from(shown.len())
        .unwrap_or(u16::MAX)
        .saturating_add(3)
        .max(6)
        .min(area.height.saturating_sub(2))
        .max(3);
    let popup = centered(area, width, height);
    let rows = usize::from(height.saturating_sub(3));
    let top = viewer.scroll.min(shown.len().saturating_sub(1));
    let mut lines: Vec<Line> = shown
        .iter()
        .skip(top)
        .take(rows)
        .map(|l| Line::from(Span::styled(l.to_string(), t.base())))
        .collect();
    while lines.len() < rows {
        lines.push(Line::from(""));
    }
    let position = if shown.is_empty() {
        "no line matches".to_string()
    } else {
        format!("{}-{} of {}", top + 1, (top + rows).min(shown.len()), shown.len())
    };
    let status = match &viewer.typing {
        Some(line) => Line::from(vec![
            Span::styled("/", t.base().fg(t.accent).add_modifier(Modifier::BOLD)),
            Span::styled(line.text.clone(), t.base()),
            Span::styled("█", t.base().fg(t.accent)),
            Span::styled(format!("   {position} · Enter keep · Esc clear"), t.muted()),
        ]),
        None if !viewer.filter.is_empty() => Line::from(Span::styled(
            format!(
                "/{} · {position} · j/k scroll · / filter · Esc close",
                viewer.filter
            ),
            t.muted(),
        )),
        None => Line::from(Span::styled(
            format!("{position} · j/k scroll · / filter · Esc close"),
            t.muted(),
        )),
    };
    lines.push(status);
    frame.render_widget(Clear, popup);
    // Long lines wrap (an error message must be readable whole); the scroll counts lines.
    frame.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }).block(pane(
            app,
            super::fit(&viewer.title, usize::from(width).saturating_sub(4)),
            true,
        )),
        popup,
    );
}

/// A dialog that closed by itself: says why, and takes keys until Esc or Enter.
pub fn gone(frame: &mut Frame, app: &App, message: &str, area: Rect) {
    let t = &app.theme;
    let lines = vec![Line::from(Span::styled(
        message.to_string(),
        t.base().add_modifier(Modifier::BOLD),
    ))];
    let popup = centered(area, 64, 5);
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: true })
            .block(pane(app, "closed".into(), true)),
        popup,
    );
}
