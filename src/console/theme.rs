//! Themes: semantic colour slots (background, text, border, accent, and one colour per task
//! and step state), read from `themes/*.yaml` (compiled in) or a file path. `NO_COLOR` turns
//! every colour off; states stay distinguishable by their glyphs.

use crate::model::{StepState, TaskState};
use ratatui::style::{Color, Modifier, Style};
use serde::Deserialize;
use std::str::FromStr;

mod bundled {
    include!(concat!(env!("OUT_DIR"), "/bundled_themes.rs"));
}

#[derive(Debug, Clone, PartialEq)]
pub struct Theme {
    pub name: String,
    pub background: Color,
    pub surface: Color,
    pub text: Color,
    pub muted: Color,
    pub border: Color,
    pub accent: Color,
    pub highlight: Color,
    pub title: Color,
    task: [Color; 6],
    step: [Color; 9],
    /// No colours at all (NO_COLOR): emphasis by bold and reverse video only.
    pub monochrome: bool,
    /// The theme turns read-only mode on (`read_only: true` in its file; `presenter`).
    pub read_only: bool,
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{file}: {message}")]
pub struct ThemeError {
    pub file: String,
    pub message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ThemeDoc {
    name: String,
    background: String,
    surface: String,
    text: String,
    muted: String,
    border: String,
    accent: String,
    highlight: String,
    title: String,
    task: TaskColors,
    step: StepColors,
    /// A theme for showing a console (a screencast, a shared screen) can make it read-only.
    #[serde(default)]
    read_only: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskColors {
    pending: String,
    in_progress: String,
    complete: String,
    error: String,
    cancelled: String,
    resolved_manually: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StepColors {
    pending: String,
    in_progress: String,
    waiting_for_retry: String,
    awaiting_approval: String,
    /// Optional: themes written before delegation waited use `in_progress`'s colour.
    #[serde(default)]
    waiting_for_child: Option<String>,
    complete: String,
    error: String,
    cancelled: String,
    resolved_manually: String,
}

pub const DEFAULT: &str = "dark";

/// The largest theme file read.
pub const MAX_THEME_BYTES: u64 = 64 * 1024;

impl Theme {
    /// A bundled theme by name, or a theme file by path.
    pub fn load(name: &str) -> Result<Theme, ThemeError> {
        if name.ends_with(".yaml") || name.ends_with(".yml") {
            // A regular file of at most 64 KiB: a FIFO or /dev/zero is an error, never a hang
            // of the console or gigabytes read.
            let bytes =
                crate::fsutil::read_named(std::path::Path::new(name), MAX_THEME_BYTES).map_err(|e| {
                    ThemeError {
                        file: name.to_string(),
                        message: format!("cannot read (a regular YAML file of at most 64 KiB): {e}"),
                    }
                })?;
            let text = String::from_utf8(bytes).map_err(|_| ThemeError {
                file: name.to_string(),
                message: "not UTF-8 text".into(),
            })?;
            return Theme::parse(name, &text);
        }
        let found = bundled::FILES
            .iter()
            .find(|(file, _)| std::path::Path::new(file).file_stem().and_then(|s| s.to_str()) == Some(name));
        match found {
            Some((file, text)) => Theme::parse(file, text),
            None => Err(ThemeError {
                file: name.to_string(),
                message: format!("no such theme; available: {}", Theme::names().join(", ")),
            }),
        }
    }

    /// The bundled theme names.
    pub fn names() -> Vec<String> {
        bundled::FILES
            .iter()
            .filter_map(|(f, _)| {
                std::path::Path::new(f)
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .map(String::from)
            })
            .collect()
    }

    pub fn parse(file: &str, text: &str) -> Result<Theme, ThemeError> {
        let doc: ThemeDoc = crate::yaml::parse(file, text).map_err(|e| ThemeError {
            file: file.to_string(),
            message: match (e.line, e.column) {
                (Some(l), Some(c)) => format!("{l}:{c}: {}", e.message),
                _ => e.message,
            },
        })?;
        let colour = |slot: &str, value: &str| {
            Color::from_str(value).map_err(|_| ThemeError {
                file: file.to_string(),
                message: format!(
                    "slot `{slot}`: `{value}` is not a colour (expected #rrggbb, an index 0-255, or a name such as red, lightcyan, gray)"
                ),
            })
        };
        let t = &doc.task;
        let s = &doc.step;
        Ok(Theme {
            name: doc.name.clone(),
            background: colour("background", &doc.background)?,
            surface: colour("surface", &doc.surface)?,
            text: colour("text", &doc.text)?,
            muted: colour("muted", &doc.muted)?,
            border: colour("border", &doc.border)?,
            accent: colour("accent", &doc.accent)?,
            highlight: colour("highlight", &doc.highlight)?,
            title: colour("title", &doc.title)?,
            task: [
                colour("task.pending", &t.pending)?,
                colour("task.in_progress", &t.in_progress)?,
                colour("task.complete", &t.complete)?,
                colour("task.error", &t.error)?,
                colour("task.cancelled", &t.cancelled)?,
                colour("task.resolved_manually", &t.resolved_manually)?,
            ],
            step: [
                colour("step.pending", &s.pending)?,
                colour("step.in_progress", &s.in_progress)?,
                colour("step.waiting_for_retry", &s.waiting_for_retry)?,
                colour("step.awaiting_approval", &s.awaiting_approval)?,
                colour(
                    "step.waiting_for_child",
                    s.waiting_for_child.as_ref().unwrap_or(&s.in_progress),
                )?,
                colour("step.complete", &s.complete)?,
                colour("step.error", &s.error)?,
                colour("step.cancelled", &s.cancelled)?,
                colour("step.resolved_manually", &s.resolved_manually)?,
            ],
            monochrome: false,
            read_only: doc.read_only,
        })
    }

    /// The same theme without colours, for `NO_COLOR`.
    pub fn without_colour(mut self) -> Theme {
        for c in [
            &mut self.background,
            &mut self.surface,
            &mut self.text,
            &mut self.muted,
            &mut self.border,
            &mut self.accent,
            &mut self.highlight,
            &mut self.title,
        ] {
            *c = Color::Reset;
        }
        self.task = [Color::Reset; 6];
        self.step = [Color::Reset; 9];
        self.monochrome = true;
        self
    }

    pub fn task(&self, state: TaskState) -> Color {
        self.task[TaskState::ALL.iter().position(|s| *s == state).unwrap_or(0)]
    }

    pub fn step(&self, state: StepState) -> Color {
        self.step[StepState::ALL.iter().position(|s| *s == state).unwrap_or(0)]
    }

    pub fn base(&self) -> Style {
        Style::default().fg(self.text).bg(self.background)
    }

    pub fn muted(&self) -> Style {
        self.base().fg(self.muted)
    }

    pub fn border(&self, focused: bool) -> Style {
        let s = self.base().fg(if focused { self.accent } else { self.border });
        if focused && self.monochrome {
            s.add_modifier(Modifier::BOLD)
        } else {
            s
        }
    }

    /// The selected row or box.
    pub fn selected(&self) -> Style {
        if self.monochrome {
            Style::default().add_modifier(Modifier::REVERSED)
        } else {
            Style::default().bg(self.highlight).add_modifier(Modifier::BOLD)
        }
    }
}

/// The glyph of a step state, so states read without colour too.
pub fn step_glyph(state: StepState) -> &'static str {
    match state {
        StepState::Pending => "○",
        StepState::InProgress => "◐",
        StepState::WaitingForRetry => "↻",
        StepState::AwaitingApproval => "‖",
        StepState::WaitingForChild => "↳",
        StepState::Complete => "✔",
        StepState::Error => "✖",
        StepState::Cancelled => "⊘",
        StepState::ResolvedManually => "✚",
    }
}

pub fn task_glyph(state: TaskState) -> &'static str {
    match state {
        TaskState::Pending => "○",
        TaskState::InProgress => "◐",
        TaskState::Complete => "✔",
        TaskState::Error => "✖",
        TaskState::Cancelled => "⊘",
        TaskState::ResolvedManually => "✚",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// sRGB of a colour as a terminal shows it: RGB as given, the 16 named colours as xterm's
    /// default palette has them.
    fn rgb(c: Color) -> (u8, u8, u8) {
        match c {
            Color::Rgb(r, g, b) => (r, g, b),
            Color::Black => (0, 0, 0),
            Color::Red => (205, 0, 0),
            Color::Green => (0, 205, 0),
            Color::Yellow => (205, 205, 0),
            Color::Blue => (0, 0, 238),
            Color::Magenta => (205, 0, 205),
            Color::Cyan => (0, 205, 205),
            Color::Gray => (229, 229, 229),
            Color::DarkGray => (127, 127, 127),
            Color::LightRed => (255, 0, 0),
            Color::LightGreen => (0, 255, 0),
            Color::LightYellow => (255, 255, 0),
            Color::LightBlue => (92, 92, 255),
            Color::LightMagenta => (255, 0, 255),
            Color::LightCyan => (0, 255, 255),
            Color::White => (255, 255, 255),
            other => panic!("no fixed RGB for {other:?}"),
        }
    }

    /// WCAG 2's contrast ratio of two colours, 1 to 21.
    fn contrast(a: Color, b: Color) -> f64 {
        let luminance = |c: Color| {
            let (r, g, b) = rgb(c);
            let lin = |v: u8| {
                let s = f64::from(v) / 255.0;
                if s <= 0.03928 {
                    s / 12.92
                } else {
                    ((s + 0.055) / 1.055).powf(2.4)
                }
            };
            0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b)
        };
        let (x, y) = (luminance(a), luminance(b));
        (x.max(y) + 0.05) / (x.min(y) + 0.05)
    }

    #[test]
    fn every_theme_reads_at_4_5_to_1_on_its_background_and_surface() {
        for name in Theme::names() {
            let t = Theme::load(&name).unwrap();
            for (what, fg) in [("text", t.text), ("muted", t.muted)] {
                for (on, bg) in [("background", t.background), ("surface", t.surface)] {
                    let ratio = contrast(fg, bg);
                    assert!(
                        ratio >= 4.5,
                        "{name}: {what} on {on} is {ratio:.2}:1, below 4.5:1"
                    );
                }
            }
        }
    }

    #[test]
    fn every_bundled_theme_loads() {
        for name in ["dark", "light", "high-contrast", "screencast", "presenter"] {
            assert_eq!(Theme::load(name).unwrap().name, name);
        }
    }

    #[test]
    fn a_bad_colour_names_its_slot() {
        let text = bundled::FILES[0].1.replace(
            "error: \"#f7768e\"\n  cancelled: \"#565f89\"\n  resolved_manually: \"#e0af68\"\nstep",
            "error: \"#nothex\"\n  cancelled: \"#565f89\"\n  resolved_manually: \"#e0af68\"\nstep",
        );
        let err = Theme::parse("bad.yaml", &text).unwrap_err().to_string();
        assert!(
            err.starts_with("bad.yaml: slot `task.error`: `#nothex` is not a colour"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_slot_is_named() {
        let err = Theme::parse("t.yaml", "name: x\nbackground: black\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing field `surface`"), "{err}");
        let err = Theme::load("neon").unwrap_err().to_string();
        assert!(err.contains("no such theme; available: "), "{err}");
    }

    #[test]
    fn no_colour_removes_every_colour() {
        let t = Theme::load("dark").unwrap().without_colour();
        assert_eq!(t.step(StepState::Error), Color::Reset);
        assert!(t.monochrome);
    }
}
