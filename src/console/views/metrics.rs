//! `:metrics`: the last ten minutes per namespace (sparklines of throughput, error rate and
//! p95 attempt time; SLA compliance; revenue) over the slowest steps, whose selected row
//! opens the task of its slowest attempt with Enter.

use super::super::app::{App, Focus};
use super::pane;
use crate::model::short_id;
use crate::telemetry::recent::NamespaceSummary;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table};
use ratatui::Frame;

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// `values` as `width` bars, each the group of slices under it merged by `merge`; `scale`
/// is the value of a full bar (`None`: the largest group). An empty group draws a space.
pub fn sparkline(
    values: &[Option<f64>],
    width: usize,
    scale: Option<f64>,
    merge: fn(&[f64]) -> f64,
) -> String {
    let groups = group(values, width, merge);
    let top = scale.unwrap_or_else(|| groups.iter().flatten().copied().fold(0.0, f64::max));
    groups
        .iter()
        .map(|g| match g {
            None => ' ',
            Some(_) if top <= 0.0 => BARS[0],
            Some(v) => {
                let level = ((v / top).clamp(0.0, 1.0) * (BARS.len() - 1) as f64).round() as usize;
                BARS[level.min(BARS.len() - 1)]
            }
        })
        .collect()
}

/// `values` merged into `width` consecutive groups (the last ones hold the remainder).
fn group(values: &[Option<f64>], width: usize, merge: fn(&[f64]) -> f64) -> Vec<Option<f64>> {
    let width = width.clamp(1, values.len().max(1));
    (0..width)
        .map(|i| {
            let (from, to) = (i * values.len() / width, (i + 1) * values.len() / width);
            let present: Vec<f64> = values
                .get(from..to)
                .unwrap_or(&[])
                .iter()
                .flatten()
                .copied()
                .collect();
            (!present.is_empty()).then(|| merge(&present))
        })
        .collect()
}

fn sum(v: &[f64]) -> f64 {
    v.iter().sum()
}

fn mean(v: &[f64]) -> f64 {
    sum(v) / v.len().max(1) as f64
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(0.0, f64::max)
}

/// Whether anything of `n` happened in the window.
fn is_active(n: &NamespaceSummary) -> bool {
    n.completed.iter().chain(&n.failed).any(|c| *c > 0)
        || n.p95_attempt_seconds.iter().any(Option::is_some)
        || !n.signals.is_empty()
}

/// `text` in at most `width` columns, ending in `…` when cut.
pub fn ellipsis(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let kept: String = text.chars().take(width.saturating_sub(1)).collect();
    format!("{kept}…")
}

/// Seconds as people read them: `850ms`, `15.0s`, `4m 10s`.
pub fn seconds(s: f64) -> String {
    if s < 1.0 {
        format!("{:.0}ms", s * 1000.0)
    } else if s < 60.0 {
        format!("{s:.1}s")
    } else {
        let whole = s.round() as u64;
        format!("{}m {}s", whole / 60, whole % 60)
    }
}

/// An amount with thousands separators and cents: `12,340.50`.
pub fn money(v: f64) -> String {
    let cents = (v * 100.0).round();
    let whole = (cents / 100.0).trunc() as u64;
    let digits = whole.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    format!("{out}.{:02}", (cents as u64) % 100)
}

/// The figures of one namespace's last minute (the newest six slices).
struct LastMinute {
    finished: u32,
    error_rate: Option<f64>,
    p95: Option<f64>,
}

fn last_minute(n: &NamespaceSummary) -> LastMinute {
    let tail = |v: &[u32]| v.iter().rev().take(6).sum::<u32>();
    let (done, failed) = (tail(&n.completed), tail(&n.failed));
    let finished = done + failed;
    LastMinute {
        finished,
        error_rate: (finished > 0).then(|| f64::from(failed) / f64::from(finished)),
        p95: n
            .p95_attempt_seconds
            .iter()
            .rev()
            .take(6)
            .flatten()
            .copied()
            .reduce(f64::max),
    }
}

fn namespace_lines(app: &App, n: &NamespaceSummary, width: usize, name_width: usize) -> [Line<'static>; 2] {
    let t = &app.theme;
    let minute = last_minute(n);
    let bad = t.base().fg(t.step(crate::model::StepState::Error));
    let sla = match n.sla_met + n.sla_missed {
        0 => Span::styled("SLA —", t.muted()),
        all => {
            let share = f64::from(n.sla_met) / f64::from(all);
            let style = if n.sla_missed > 0 { bad } else { t.base() };
            Span::styled(format!("SLA {:.0}% ({}/{all})", share * 100.0, n.sla_met), style)
        }
    };
    let revenue = if n.revenue_processed == 0.0 && n.revenue_lost == 0.0 {
        Span::styled("revenue —", t.muted())
    } else {
        Span::styled(
            format!(
                "revenue {} lost {}",
                money(n.revenue_processed),
                money(n.revenue_lost)
            ),
            if n.revenue_lost > 0.0 { bad } else { t.base() },
        )
    };
    let mut first = vec![
        Span::styled(
            format!(" {:<name_width$}  ", n.namespace),
            t.base().fg(t.title).add_modifier(Modifier::BOLD),
        ),
        sla,
        Span::styled("   ", t.base()),
        revenue,
    ];
    let latest = n.signals.iter().max_by_key(|s| s.at);
    if let Some(m) = latest.and_then(|s| {
        super::super::app::Marker::of(
            &s.name,
            &s.workflow,
            s.step.as_deref(),
            s.degradation_factor,
            s.at,
        )
    }) {
        first.push(Span::styled(format!("   ⚠ {}", m.text), bad));
    }
    // Labels and figures take 56 columns ("   tasks/min " 13, " 123456" 7, " errors " 8,
    // " 100% " 6, " p95 attempt " 13, " 4m 10s" 7, and a spare); the sparklines share the rest.
    let spark = (width.saturating_sub(56) / 3).clamp(2, 60);
    let as_f64 = |v: &[u32]| v.iter().map(|x| Some(f64::from(*x))).collect::<Vec<_>>();
    let finished: Vec<Option<f64>> = n
        .completed
        .iter()
        .zip(&n.failed)
        .map(|(c, f)| Some(f64::from(c + f)))
        .collect();
    let failed = as_f64(&n.failed);
    // Error rate per group: failed over finished within it.
    let errors: String = {
        let f = group(&failed, spark, sum);
        let all = group(&finished, spark, sum);
        f.iter()
            .zip(&all)
            .map(|(f, a)| match (f, a) {
                (Some(f), Some(a)) if *a > 0.0 => {
                    let level = ((f / a).clamp(0.0, 1.0) * (BARS.len() - 1) as f64).round() as usize;
                    BARS[level.min(BARS.len() - 1)]
                }
                _ => ' ',
            })
            .collect()
    };
    let per_minute = f64::from(minute.finished);
    let second = vec![
        Span::styled("   tasks/min ", t.muted()),
        Span::styled(sparkline(&finished, spark, None, mean), t.base().fg(t.accent)),
        Span::styled(format!(" {per_minute:<6.0}"), t.base()),
        Span::styled(" errors ", t.muted()),
        Span::styled(errors, bad),
        Span::styled(
            format!(
                " {:<5}",
                minute
                    .error_rate
                    .map_or("—".into(), |r| format!("{:.0}%", r * 100.0))
            ),
            if minute.error_rate.is_some_and(|r| r > 0.1) {
                bad
            } else {
                t.base()
            },
        ),
        Span::styled(" p95 attempt ", t.muted()),
        Span::styled(
            sparkline(&n.p95_attempt_seconds, spark, None, max),
            t.base().fg(t.step(crate::model::StepState::WaitingForRetry)),
        ),
        Span::styled(format!(" {}", minute.p95.map_or("—".into(), seconds)), t.base()),
    ];
    [Line::from(first), Line::from(second)]
}

pub fn draw(frame: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let focused = app.focus == Focus::Main;
    let Some(summary) = &app.summary else {
        let text = match &app.summary_error {
            Some(why) => format!("no metrics from the engine: {why}"),
            None => "reading the engine's metrics…".into(),
        };
        let p = Paragraph::new(Span::styled(text, t.muted())).block(pane(app, "metrics".into(), focused));
        frame.render_widget(p, area);
        return;
    };
    let needle = app.task_filter.text.to_lowercase();
    let namespaces: Vec<&NamespaceSummary> = summary
        .namespaces
        .iter()
        .filter(|n| {
            app.task_filter
                .namespace
                .as_ref()
                .is_none_or(|ns| ns == &n.namespace)
        })
        .filter(|n| {
            needle.is_empty()
                || n.namespace.to_lowercase().contains(&needle)
                || n.slowest_steps.iter().any(|s| {
                    format!("{}/{} {}", n.namespace, s.workflow, s.step)
                        .to_lowercase()
                        .contains(&needle)
                })
        })
        .collect();
    let width = area.width.saturating_sub(2) as usize;
    // Namespaces with nothing in the window share one line: the active ones get the room.
    let (active, quiet): (Vec<&NamespaceSummary>, Vec<&NamespaceSummary>) =
        namespaces.iter().partition(|n| is_active(n));
    let name_width = active
        .iter()
        .map(|n| n.namespace.chars().count())
        .max()
        .unwrap_or(0)
        .min(24);
    let mut lines: Vec<Line> = Vec::new();
    for n in &active {
        lines.extend(namespace_lines(app, n, width, name_width));
    }
    if !quiet.is_empty() {
        let names: Vec<&str> = quiet.iter().map(|n| n.namespace.as_str()).collect();
        lines.push(Line::from(Span::styled(
            ellipsis(&format!(" quiet for 10 min: {}", names.join(", ")), width),
            t.muted(),
        )));
    }
    if namespaces.is_empty() {
        lines.push(Line::from(Span::styled(
            " no namespace you may read matches",
            t.muted(),
        )));
    }
    let rows = app.slow_rows();
    // The namespaces get what they need, up to two thirds; the slowest steps the rest.
    let top_height = (lines.len() as u16 + 2)
        .min(area.height.saturating_mul(2) / 3)
        .max(3);
    let [top, bottom] = Layout::vertical([Constraint::Length(top_height), Constraint::Min(3)]).areas(area);
    // What does not fit is said, never dropped silently.
    let room = top_height.saturating_sub(2) as usize;
    if lines.len() > room && room > 0 {
        let shown_active = room.saturating_sub(1) / 2;
        let hidden: Vec<&str> = active
            .iter()
            .skip(shown_active)
            .chain(quiet.iter())
            .map(|n| n.namespace.as_str())
            .collect();
        lines.truncate(shown_active * 2);
        lines.push(Line::from(Span::styled(
            ellipsis(
                &format!(" +{} more: {} (/ filters)", hidden.len(), hidden.join(", ")),
                width,
            ),
            t.muted(),
        )));
    }
    let title = format!(
        "metrics · last {} min · {} s slices{}",
        summary.slice_seconds as usize * crate::telemetry::recent::SLICES / 60,
        summary.slice_seconds,
        app.summary_error.as_ref().map_or(String::new(), |e| format!(
            " · stale: {}",
            crate::model::clip(e, 40)
        ))
    );
    frame.render_widget(Paragraph::new(lines).block(pane(app, title, false)), top);

    // Fixed columns (and their gaps) take 47; the step and its workflow share the rest, cut
    // with an ellipsis rather than mid-word.
    let text = (bottom.width.saturating_sub(2) as usize)
        .saturating_sub(47)
        .max(8);
    let longest_step = rows
        .iter()
        .map(|(_, s)| s.step.chars().count())
        .max()
        .unwrap_or(4);
    let step_width = longest_step.clamp(4, text / 2);
    let workflow_width = text.saturating_sub(step_width).max(4);
    let visible = bottom.height.saturating_sub(3) as usize;
    let selected = app.selected_slow.min(rows.len().saturating_sub(1));
    let offset = selected.checked_div(visible).map_or(0, |page| page * visible);
    let bad = t.base().fg(t.step(crate::model::StepState::Error));
    let body: Vec<Row> = rows
        .iter()
        .enumerate()
        .skip(offset)
        .take(visible)
        .map(|(i, (ns, s))| {
            let over = s.bottlenecks > 0;
            let row = Row::new(vec![
                Cell::from(Span::styled(if over { "⚠" } else { " " }, bad)),
                Cell::from(Span::styled(
                    ellipsis(&s.step, step_width),
                    if over { bad } else { t.base() },
                )),
                Cell::from(ellipsis(&format!("{ns}/{}", s.workflow), workflow_width)),
                Cell::from(s.attempts.to_string()),
                Cell::from(seconds(s.avg_seconds)),
                Cell::from(Span::styled(
                    seconds(s.max_seconds),
                    if over { bad } else { t.base() },
                )),
                Cell::from(seconds(s.threshold_seconds)),
                Cell::from(s.bottlenecks.to_string()),
                Cell::from(Span::styled(short_id(&s.slowest_task).to_string(), t.muted())),
            ])
            .style(t.base());
            if i == selected && focused {
                row.style(t.selected())
            } else {
                row
            }
        })
        .collect();
    let header = Row::new([
        "", "step", "workflow", "runs", "avg", "max", "limit", "over", "slowest",
    ])
    .style(t.muted().add_modifier(Modifier::BOLD));
    let table = Table::new(
        body,
        [
            Constraint::Length(1),
            Constraint::Length(step_width as u16),
            Constraint::Length(workflow_width as u16),
            Constraint::Length(5),
            Constraint::Length(7),
            Constraint::Length(7),
            Constraint::Length(6),
            Constraint::Length(5),
            Constraint::Length(8),
        ],
    )
    .header(header)
    .block(pane(
        app,
        format!("slowest steps {} · Enter opens the slowest task", rows.len()),
        focused,
    ));
    if rows.is_empty() {
        let p = Paragraph::new(Span::styled(
            " no step attempt ended in the last 10 minutes",
            t.muted(),
        ))
        .block(pane(app, "slowest steps".into(), focused));
        frame.render_widget(p, bottom);
    } else {
        frame.render_widget(table, bottom);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparklines_merge_slices_and_scale_to_the_top() {
        let v: Vec<Option<f64>> = (0..60).map(|i| Some(f64::from(i / 10))).collect();
        let s = sparkline(&v, 6, None, sum);
        assert_eq!(s.chars().count(), 6);
        assert!(s.starts_with('▁') && s.ends_with('█'), "{s}");
        let gaps = vec![None, None, Some(1.0), None];
        assert_eq!(sparkline(&gaps, 4, None, max), "  █ ");
        assert_eq!(sparkline(&[], 10, None, sum), " ");
        assert_eq!(sparkline(&[Some(0.0)], 3, None, sum), "▁");
    }

    #[test]
    fn figures_read_as_people_write_them() {
        assert_eq!(seconds(0.85), "850ms");
        assert_eq!(seconds(15.04), "15.0s");
        assert_eq!(seconds(250.0), "4m 10s");
        assert_eq!(money(12340.5), "12,340.50");
        assert_eq!(money(0.0), "0.00");
        assert_eq!(money(999.999), "1,000.00");
    }
}
