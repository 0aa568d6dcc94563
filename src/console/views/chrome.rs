//! The header and the footer.

use super::super::app::{App, Mode};
use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

/// The header's lines: one when everything fits, else a second line for who and where.
pub fn header_lines(app: &App, width: u16) -> Vec<Line<'static>> {
    let t = &app.theme;
    let counts = app.vm.counts();
    let failed = app.vm.failed_since(app.now.saturating_sub(3_600_000));
    let clock = crate::model::format_timestamp(app.now);
    let clock = clock.get(11..19).unwrap_or("").to_string();
    let state = |s| t.base().fg(t.step(s));
    use crate::model::StepState as S;
    let brand = Span::styled(
        " taskdeck ",
        t.base()
            .fg(t.background)
            .bg(t.accent)
            .add_modifier(Modifier::BOLD),
    );
    let mut first = vec![
        brand,
        Span::styled("  ", t.base()),
        Span::styled(format!("◐ {} running  ", counts.running), state(S::InProgress)),
        Span::styled(
            format!("↻ {} retrying  ", counts.waiting_for_retry),
            state(S::WaitingForRetry),
        ),
        Span::styled(
            format!("‖ {} approval  ", counts.awaiting_approval),
            state(S::AwaitingApproval),
        ),
        Span::styled(format!("✖ {failed} failed/1h"), state(S::Error)),
    ];
    let marks = (!app.marked.is_empty()).then(|| {
        Span::styled(
            format!("  ✓ {} marked", app.marked.len()),
            t.base().fg(t.accent).add_modifier(Modifier::BOLD),
        )
    });

    let mut context = vec![
        Span::styled(format!("  {}", app.info.operator), t.base()),
        Span::styled(format!("  {}", app.info.durability), t.muted()),
        Span::styled(format!("  {}", app.info.data_dir), t.muted()),
    ];
    if !app.info.endpoint.is_empty() {
        context.push(Span::styled(format!("  {}", app.info.endpoint), t.muted()));
    }
    if app.read_only {
        context.insert(
            1,
            Span::styled("  read-only", t.base().fg(t.accent).add_modifier(Modifier::BOLD)),
        );
    }
    // A business signal in the last minutes (`:metrics` shows where): on the first line when
    // it fits there, else first on the second.
    let marker = app.live_marker().map(|m| {
        Span::styled(
            format!("  ⚠ {}", crate::model::clip(&m.text, 40)),
            state(S::Error).add_modifier(Modifier::BOLD),
        )
    });
    // The marks on the first line when they fit beside the clock, else first on the second.
    let first_width = first.iter().map(|s| s.width()).sum::<usize>() + 12;
    match marks {
        Some(m) if first_width + m.width() <= width as usize => first.push(m),
        Some(m) => context.insert(0, m),
        None => {}
    }
    let first_width = first.iter().map(|s| s.width()).sum::<usize>() + 12;
    match marker {
        Some(m) if first_width + m.width() <= width as usize => first.push(m),
        Some(m) => context.insert(0, m),
        None => {}
    }
    if app.identity.is_expired(app.now) {
        // Every action would be refused: say so before the operator tries one.
        context.insert(
            0,
            Span::styled(
                "  ⚠ token expired: issue a new one (taskdeck token issue)".to_string(),
                t.base().fg(t.step(S::Error)).add_modifier(Modifier::BOLD),
            ),
        );
    }
    if let Some(why) = &app.link_down {
        // Loud, and first on the second line when the header wraps: what is shown is stale.
        context.insert(
            0,
            Span::styled(
                format!("  ⚠ disconnected, reconnecting: {}", crate::model::clip(why, 48)),
                t.base().fg(t.step(S::Error)).add_modifier(Modifier::BOLD),
            ),
        );
    }
    let width = width as usize;
    let clock_span = Span::styled(format!("{clock} "), t.base().add_modifier(Modifier::BOLD));
    let pad = |spans: &[Span], tail: usize| {
        // Two spare columns: some terminals draw a state glyph two cells wide.
        let used: usize = spans.iter().map(|s| s.width()).sum::<usize>() + tail + 2;
        Span::styled(" ".repeat(width.saturating_sub(used)), t.base())
    };
    let all: usize = first.iter().chain(&context).map(|s| s.width()).sum::<usize>() + clock_span.width() + 2;
    if all <= width {
        first.extend(context);
        first.push(pad(&first, clock_span.width()));
        first.push(clock_span);
        return vec![Line::from(first)];
    }
    first.push(pad(&first, clock_span.width()));
    first.push(clock_span);
    let mut second = vec![Span::styled(" ", t.base())];
    second.extend(context.into_iter().map(|s| {
        let text = s.content.trim_start().to_string();
        Span::styled(format!("{text}  "), s.style)
    }));
    vec![Line::from(first), Line::from(second)]
}

pub fn header(frame: &mut Frame, app: &App, area: Rect) {
    let lines = header_lines(app, area.width);
    frame.render_widget(Paragraph::new(lines).style(app.theme.base()), area);
}

pub fn footer(frame: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let line = match &app.mode {
        Mode::Command(l) => Line::from(vec![
            Span::styled(":", t.base().fg(t.accent).add_modifier(Modifier::BOLD)),
            Span::styled(l.text.clone(), t.base()),
            Span::styled("█", t.base().fg(t.accent)),
            Span::styled("   Tab complete · Enter run · Esc cancel", t.muted()),
        ]),
        Mode::Decide { approve, note, .. } => Line::from(vec![
            Span::styled(
                if *approve {
                    "approval note (optional): "
                } else {
                    "reason for the denial (required): "
                },
                t.base().fg(t.accent).add_modifier(Modifier::BOLD),
            ),
            Span::styled(note.text.clone(), t.base()),
            Span::styled("█", t.base().fg(t.accent)),
            Span::styled("   Enter continue · Esc cancel", t.muted()),
        ]),
        Mode::DecideMany {
            approve,
            note,
            targets,
            ..
        } => Line::from(vec![
            Span::styled(
                format!(
                    "{} for all {} marked: ",
                    if *approve {
                        "approval note (optional)"
                    } else {
                        "reason for the denials (required)"
                    },
                    targets.len()
                ),
                t.base().fg(t.accent).add_modifier(Modifier::BOLD),
            ),
            Span::styled(note.text.clone(), t.base()),
            Span::styled("█", t.base().fg(t.accent)),
            Span::styled("   Enter continue · Esc cancel", t.muted()),
        ]),
        Mode::Filter(l) => Line::from(vec![
            Span::styled("/", t.base().fg(t.accent).add_modifier(Modifier::BOLD)),
            Span::styled(l.text.clone(), t.base()),
            Span::styled("█", t.base().fg(t.accent)),
            Span::styled("   Enter keep · Esc clear", t.muted()),
        ]),
        _ => {
            if let Some((text, at)) = &app.notice {
                if app.now.saturating_sub(*at) < 5_000 {
                    let line = Line::from(Span::styled(format!(" {text}"), t.base().fg(t.accent)));
                    frame.render_widget(Paragraph::new(line).style(t.base()), area);
                    return;
                }
            }
            // Whole entries only: one that does not fit is left out, never cut (`?` lists all).
            let mut spans = Vec::new();
            let mut used = 0;
            for (key, what) in app.key_bar() {
                let key = format!(" {key} ");
                let what = format!(" {what} ");
                let width = key.chars().count() + what.chars().count();
                if used + width > usize::from(area.width) {
                    break;
                }
                used += width;
                spans.push(Span::styled(key, t.base().fg(t.background).bg(t.muted)));
                spans.push(Span::styled(what, t.muted()));
            }
            Line::from(spans)
        }
    };
    frame.render_widget(Paragraph::new(line).style(t.base()), area);
}
