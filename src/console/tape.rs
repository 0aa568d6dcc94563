//! Screencast scripts (`.tape` files): what `taskdeck screencast` plays. One command per line,
//! `#` starts a comment; strings are double-quoted JSON strings (`\n`, `\"`, `\u2026`).
//!
//! ```text
//! Set Width 100                 # terminal columns (40–300, default 100)
//! Set Height 30                 # terminal rows (12–120, default 30)
//! Set Theme presenter           # a theme name (default `screencast`; `presenter` is read-only)
//! Set ReadOnly on               # hide and refuse keys that change tasks
//! Set Title "Post 04: …"        # the recording's title
//! Set Start 2026-11-27T09:00:00Z  # the virtual clock's start (default that Black Friday)
//! Console jane manager customer_success   # an operator's console (name, role, team); it
//!                                         # becomes the one shown
//! Switch priya                  # show another console
//! Submit NS/NAME {"json": 1}    # a task, submitted as the shown console's operator
//! Type "TICKET-98765"           # typed, one key every 70 ms
//! Key Enter [3]                 # a key, N times: Enter Esc Tab BackTab Space Up Down Left
//!                               # Right PageUp PageDown Home End Backspace Ctrl-S, or a char
//! Sleep 2s                      # time passes: 250ms, 2s, 5m, 1h
//! WaitFor "approved" [within 2m]  # time passes until the screen shows the text (default 60s)
//! Note "The manager approves"   # a caption above the key bar (and a marker); Note "" ends it
//! Erase "customer@example.com"  # `taskdeck gdpr erase --subject …`, as the shown operator
//! ```

use std::time::Duration;

/// One line of a tape.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Width(u16),
    Height(u16),
    Theme(String),
    ReadOnly(bool),
    Title(String),
    Start(crate::model::Timestamp),
    Console {
        name: String,
        role: crate::auth::Role,
        team: String,
    },
    Switch(String),
    Submit {
        workflow: String,
        context: serde_json::Value,
    },
    Type(String),
    Key {
        key: crossterm::event::KeyEvent,
        times: u32,
    },
    Sleep(Duration),
    WaitFor {
        text: String,
        within: Duration,
    },
    Note(String),
    /// Erase a data subject (an email or id), as `taskdeck gdpr erase` does.
    Erase(String),
}

/// A command with the line it came from (for errors).
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub number: usize,
    pub command: Command,
}

/// The longest a `Sleep` or `WaitFor` may last: a day of virtual time.
pub const MAX_WAIT: Duration = Duration::from_secs(86_400);

/// Reads a tape. Errors name the line and what was expected there (all of them, one per line).
pub fn parse(text: &str) -> Result<Vec<Line>, Vec<String>> {
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let number = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match command(line) {
            Ok(command) => lines.push(Line { number, command }),
            Err(e) => errors.push(format!("line {number}: {e}")),
        }
    }
    if errors.is_empty() {
        Ok(lines)
    } else {
        Err(errors)
    }
}

fn command(line: &str) -> Result<Command, String> {
    let (word, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    let rest = rest.trim();
    match word {
        "Set" => set(rest),
        "Console" => {
            let parts: Vec<&str> = rest.split_whitespace().collect();
            let [name, role, team] = parts.as_slice() else {
                return Err("expected `Console NAME ROLE TEAM` (e.g. `Console jane manager customer_success`)".into());
            };
            crate::auth::token::check_subject(name).map_err(|e| format!("the operator's name: {e}"))?;
            let role: crate::auth::Role = role.parse().map_err(|e| format!("the role: {e}"))?;
            Ok(Command::Console {
                name: name.to_string(),
                role,
                team: team.to_string(),
            })
        }
        "Switch" if !rest.is_empty() && !rest.contains(' ') => Ok(Command::Switch(rest.into())),
        "Switch" => Err("expected `Switch NAME` (a console named by `Console`)".into()),
        "Submit" => {
            let (workflow, json) = rest
                .split_once(char::is_whitespace)
                .ok_or("expected `Submit NS/NAME {…}` (the context as JSON on the same line)")?;
            let context: serde_json::Value =
                serde_json::from_str(json.trim()).map_err(|e| format!("the context is not JSON: {e}"))?;
            if !context.is_object() {
                return Err("the context is a JSON object ({…})".into());
            }
            Ok(Command::Submit {
                workflow: workflow.into(),
                context,
            })
        }
        "Type" => Ok(Command::Type(string(rest)?.0)),
        "Key" => {
            let mut parts = rest.split_whitespace();
            let key = key(parts.next().ok_or("expected `Key NAME [TIMES]`")?)?;
            let times = match parts.next() {
                None => 1,
                Some(n) => n
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=200).contains(n))
                    .ok_or_else(|| format!("`{n}`: expected a count from 1 to 200"))?,
            };
            if parts.next().is_some() {
                return Err("expected `Key NAME [TIMES]`".into());
            }
            Ok(Command::Key { key, times })
        }
        "Sleep" => Ok(Command::Sleep(duration(rest)?)),
        "WaitFor" => {
            let (text, after) = string(rest)?;
            let within = match after.trim() {
                "" => Duration::from_secs(60),
                more => duration(
                    more.strip_prefix("within")
                        .ok_or("after the text: nothing, or `within 2m`")?
                        .trim(),
                )?,
            };
            if text.is_empty() {
                return Err("WaitFor needs some text to wait for".into());
            }
            Ok(Command::WaitFor { text, within })
        }
        "Note" => Ok(Command::Note(string(rest)?.0)),
        "Erase" => Ok(Command::Erase(string(rest)?.0)),
        other => Err(format!(
            "unknown command `{}`; commands: Set, Console, Switch, Submit, Type, Key, Sleep, WaitFor, Note, Erase",
            crate::model::clip(other, 24)
        )),
    }
}

fn set(rest: &str) -> Result<Command, String> {
    let (what, value) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let value = value.trim();
    let number = |low: u16, high: u16| {
        value
            .parse::<u16>()
            .ok()
            .filter(|n| (low..=high).contains(n))
            .ok_or_else(|| format!("`{value}`: expected a number from {low} to {high}"))
    };
    match what {
        "Width" => Ok(Command::Width(number(40, 300)?)),
        "Height" => Ok(Command::Height(number(12, 120)?)),
        "Theme" if !value.is_empty() => Ok(Command::Theme(value.into())),
        "ReadOnly" => match value {
            "on" | "true" => Ok(Command::ReadOnly(true)),
            "off" | "false" => Ok(Command::ReadOnly(false)),
            _ => Err(format!("`{value}`: expected on or off")),
        },
        "Title" => Ok(Command::Title(string(value)?.0)),
        "Start" => chrono::DateTime::parse_from_rfc3339(value)
            .map(|t| Command::Start(t.timestamp_millis()))
            .map_err(|e| format!("`{value}`: expected an RFC 3339 time (2026-11-27T09:00:00Z): {e}")),
        _ => Err(format!(
            "`Set {}`: settings are Width, Height, Theme, ReadOnly, Title and Start",
            crate::model::clip(what, 24)
        )),
    }
}

/// A leading JSON string, and what follows it.
fn string(text: &str) -> Result<(String, &str), String> {
    if !text.starts_with('"') {
        return Err(format!(
            "expected a quoted string, got `{}`",
            crate::model::clip(text, 40)
        ));
    }
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<String>();
    match stream.next() {
        Some(Ok(s)) => Ok((s, &text[stream.byte_offset()..])),
        _ => Err(format!(
            "`{}` is not a complete quoted string",
            crate::model::clip(text, 40)
        )),
    }
}

/// `250ms`, `2s`, `1.5s`, `5m`, `1h`, at most `MAX_WAIT`.
fn duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (amount, unit) = text.split_at(split);
    let amount: f64 = amount
        .parse()
        .map_err(|_| format!("`{text}`: expected a time like 250ms, 2s, 5m or 1h"))?;
    let seconds = match unit {
        "ms" => amount / 1000.0,
        "s" => amount,
        "m" => amount * 60.0,
        "h" => amount * 3600.0,
        _ => return Err(format!("`{text}`: the unit is ms, s, m or h")),
    };
    if !(0.0..=MAX_WAIT.as_secs_f64()).contains(&seconds) {
        return Err(format!("`{text}`: at most a day"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

fn key(name: &str) -> Result<crossterm::event::KeyEvent, String> {
    use crossterm::event::{KeyCode as K, KeyEvent, KeyModifiers as M};
    let plain = |code| Ok(KeyEvent::new(code, M::NONE));
    match name {
        "Enter" => plain(K::Enter),
        "Esc" => plain(K::Esc),
        "Tab" => plain(K::Tab),
        "BackTab" => Ok(KeyEvent::new(K::BackTab, M::SHIFT)),
        "Space" => plain(K::Char(' ')),
        "Up" => plain(K::Up),
        "Down" => plain(K::Down),
        "Left" => plain(K::Left),
        "Right" => plain(K::Right),
        "PageUp" => plain(K::PageUp),
        "PageDown" => plain(K::PageDown),
        "Home" => plain(K::Home),
        "End" => plain(K::End),
        "Backspace" => plain(K::Backspace),
        _ => {
            if let Some(c) = name.strip_prefix("Ctrl-") {
                let mut chars = c.chars();
                if let (Some(c), None) = (chars.next(), chars.next()) {
                    return Ok(KeyEvent::new(K::Char(c.to_ascii_lowercase()), M::CONTROL));
                }
            }
            let mut chars = name.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => plain(K::Char(c)),
                _ => Err(format!(
                    "unknown key `{}`: Enter, Esc, Tab, BackTab, Space, Up, Down, Left, Right, PageUp, PageDown, Home, End, Backspace, Ctrl-X, or one character",
                    crate::model::clip(name, 24)
                )),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tape_reads_every_command_and_names_the_line_of_each_mistake() {
        let tape = "# a comment\nSet Width 120\nSet Theme screencast\nConsole jane manager customer_success\nSubmit ecommerce/process_order {\"a\": 1}\nType \"TICKET-1 \\\"x\\\"\"\nKey Down 3\nKey Ctrl-S\nSleep 1.5s\nWaitFor \"approved\" within 2m\nNote \"\"\nSwitch jane\n";
        let lines = parse(tape).unwrap();
        assert_eq!(lines.len(), 11);
        assert_eq!(lines[0].number, 2);
        assert_eq!(lines[4].command, Command::Type("TICKET-1 \"x\"".into()));
        assert!(matches!(lines[5].command, Command::Key { times: 3, .. }));
        assert_eq!(lines[7].command, Command::Sleep(Duration::from_millis(1500)));
        assert_eq!(
            lines[8].command,
            Command::WaitFor {
                text: "approved".into(),
                within: Duration::from_secs(120)
            }
        );
        let errors = parse("Set Width 9\nKey Hyper\nSleep 2d\nSubmit x/y [1]\nDance\nType unquoted\nConsole jane wizard cs\n").unwrap_err();
        assert_eq!(errors.len(), 7, "{errors:?}");
        for (i, e) in errors.iter().enumerate() {
            assert!(e.starts_with(&format!("line {}:", i + 1)), "{e}");
        }
        assert!(errors[0].contains("40 to 300"));
        assert!(errors[4].contains("unknown command `Dance`"));
    }
}
