//! Small text editors: a one-line input (command line, filters, notes) and a multi-line JSON
//! editor, with the editing keys of a shell prompt (readline's Ctrl-A/E/U/W/K, Home, End,
//! Delete). A control chord never inserts its letter.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// Whether a key is plain typing (no Control or Alt held).
pub fn is_typing(key: &KeyEvent) -> bool {
    !key.modifiers
        .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT)
}

/// A single line with a cursor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineEdit {
    pub text: String,
    /// Cursor position in characters.
    pub cursor: usize,
}

impl LineEdit {
    pub fn with(text: &str) -> Self {
        LineEdit {
            text: text.to_string(),
            cursor: text.chars().count(),
        }
    }

    fn byte(&self, chars: usize) -> usize {
        self.text
            .char_indices()
            .nth(chars)
            .map_or(self.text.len(), |(b, _)| b)
    }

    pub fn insert(&mut self, c: char) {
        let at = self.byte(self.cursor);
        self.text.insert(at, c);
        self.cursor += 1;
    }

    pub fn backspace(&mut self) {
        if self.cursor > 0 {
            self.cursor -= 1;
            let at = self.byte(self.cursor);
            self.text.remove(at);
        }
    }

    pub fn left(&mut self) {
        self.cursor = self.cursor.saturating_sub(1);
    }

    pub fn right(&mut self) {
        self.cursor = (self.cursor + 1).min(self.text.chars().count());
    }

    /// Deletes the character under the cursor.
    pub fn delete(&mut self) {
        if self.cursor < self.text.chars().count() {
            let at = self.byte(self.cursor);
            self.text.remove(at);
        }
    }

    /// Deletes from the start of the line to the cursor (Ctrl-U).
    pub fn kill_to_start(&mut self) {
        let at = self.byte(self.cursor);
        self.text.drain(..at);
        self.cursor = 0;
    }

    /// Deletes from the cursor to the end of the line (Ctrl-K).
    pub fn kill_to_end(&mut self) {
        let at = self.byte(self.cursor);
        self.text.truncate(at);
    }

    /// Deletes the word before the cursor, and the spaces after it (Ctrl-W).
    pub fn delete_word(&mut self) {
        let chars: Vec<char> = self.text.chars().collect();
        let mut start = self.cursor.min(chars.len());
        while start > 0 && chars[start - 1].is_whitespace() {
            start -= 1;
        }
        while start > 0 && !chars[start - 1].is_whitespace() {
            start -= 1;
        }
        let (from, to) = (self.byte(start), self.byte(self.cursor));
        self.text.drain(from..to);
        self.cursor = start;
    }

    /// Applies an editing key; false when the key is not one (Enter, Esc, Tab, …), so the
    /// caller decides what it means.
    pub fn edit(&mut self, key: &KeyEvent) -> bool {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Char('a') if ctrl => self.cursor = 0,
            KeyCode::Char('e') if ctrl => self.cursor = self.text.chars().count(),
            KeyCode::Char('u') if ctrl => self.kill_to_start(),
            KeyCode::Char('k') if ctrl => self.kill_to_end(),
            KeyCode::Char('w') if ctrl => self.delete_word(),
            KeyCode::Char('h') if ctrl => self.backspace(),
            KeyCode::Char(c) if is_typing(key) => self.insert(c),
            KeyCode::Backspace => self.backspace(),
            KeyCode::Delete => self.delete(),
            KeyCode::Left => self.left(),
            KeyCode::Right => self.right(),
            KeyCode::Home => self.cursor = 0,
            KeyCode::End => self.cursor = self.text.chars().count(),
            _ => return false,
        }
        true
    }
}

/// A multi-line editor for the new-task form's JSON context.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TextArea {
    pub lines: Vec<String>,
    pub row: usize,
    pub col: usize,
}

impl TextArea {
    pub fn new(text: &str) -> Self {
        let mut lines: Vec<String> = text.lines().map(String::from).collect();
        if lines.is_empty() {
            lines.push(String::new());
        }
        TextArea {
            lines,
            row: 0,
            col: 0,
        }
    }

    pub fn text(&self) -> String {
        self.lines.join("\n")
    }

    fn byte(line: &str, col: usize) -> usize {
        line.char_indices().nth(col).map_or(line.len(), |(b, _)| b)
    }

    fn clamp(&mut self) {
        self.row = self.row.min(self.lines.len() - 1);
        self.col = self.col.min(self.lines[self.row].chars().count());
    }

    pub fn insert(&mut self, c: char) {
        let line = &mut self.lines[self.row];
        let at = Self::byte(line, self.col);
        line.insert(at, c);
        self.col += 1;
    }

    pub fn newline(&mut self) {
        let line = &mut self.lines[self.row];
        let at = Self::byte(line, self.col);
        let rest = line.split_off(at);
        let indent: String = line.chars().take_while(|c| *c == ' ').collect();
        self.lines.insert(self.row + 1, format!("{indent}{rest}"));
        self.row += 1;
        self.col = indent.chars().count();
    }

    pub fn backspace(&mut self) {
        if self.col > 0 {
            self.col -= 1;
            let line = &mut self.lines[self.row];
            let at = Self::byte(line, self.col);
            line.remove(at);
        } else if self.row > 0 {
            let line = self.lines.remove(self.row);
            self.row -= 1;
            self.col = self.lines[self.row].chars().count();
            self.lines[self.row].push_str(&line);
        }
    }

    pub fn up(&mut self) {
        self.row = self.row.saturating_sub(1);
        self.clamp();
    }

    pub fn down(&mut self) {
        self.row += 1;
        self.clamp();
    }

    pub fn left(&mut self) {
        if self.col > 0 {
            self.col -= 1;
        } else if self.row > 0 {
            self.row -= 1;
            self.col = self.lines[self.row].chars().count();
        }
    }

    pub fn home(&mut self) {
        self.col = 0;
    }

    pub fn end(&mut self) {
        self.col = self.lines[self.row].chars().count();
    }

    /// Deletes the character under the cursor, or joins the next line at a line's end.
    pub fn delete(&mut self) {
        let len = self.lines[self.row].chars().count();
        if self.col < len {
            let line = &mut self.lines[self.row];
            let at = Self::byte(line, self.col);
            line.remove(at);
        } else if self.row + 1 < self.lines.len() {
            let next = self.lines.remove(self.row + 1);
            self.lines[self.row].push_str(&next);
        }
    }

    pub fn right(&mut self) {
        if self.col < self.lines[self.row].chars().count() {
            self.col += 1;
        } else if self.row + 1 < self.lines.len() {
            self.row += 1;
            self.col = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn editing_keeps_indentation_and_joins_lines() {
        let mut t = TextArea::new("{\n  \"a\": 1\n}");
        t.down();
        t.col = 8;
        t.insert(',');
        t.newline();
        for c in "\"b\": 2".chars() {
            t.insert(c);
        }
        assert_eq!(t.text(), "{\n  \"a\": 1,\n  \"b\": 2\n}");
        t.col = 0;
        t.backspace();
        assert_eq!(t.lines[1], "  \"a\": 1,  \"b\": 2");
    }

    fn key(code: KeyCode, modifiers: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, modifiers)
    }

    #[test]
    fn prompts_edit_like_a_shell_and_control_chords_never_type_letters() {
        let mut l = LineEdit::with("state error now");
        assert!(l.edit(&key(KeyCode::Char('w'), KeyModifiers::CONTROL)));
        assert_eq!(l.text, "state error ");
        l.edit(&key(KeyCode::Char('w'), KeyModifiers::CONTROL));
        assert_eq!(l.text, "state ");
        l.edit(&key(KeyCode::Home, KeyModifiers::NONE));
        l.edit(&key(KeyCode::Delete, KeyModifiers::NONE));
        assert_eq!(l.text, "tate ");
        l.edit(&key(KeyCode::End, KeyModifiers::NONE));
        l.edit(&key(KeyCode::Char('u'), KeyModifiers::CONTROL));
        assert_eq!((l.text.as_str(), l.cursor), ("", 0));
        l.edit(&key(KeyCode::Char('x'), KeyModifiers::ALT));
        assert_eq!(l.text, "");
        assert!(!l.edit(&key(KeyCode::Enter, KeyModifiers::NONE)));
    }

    #[test]
    fn the_json_editor_has_home_end_and_delete() {
        let mut t = TextArea::new("{\n  \"a\": 1\n}");
        t.down();
        t.end();
        assert_eq!(t.col, 8);
        t.delete(); // joins the next line
        assert_eq!(t.lines[1], "  \"a\": 1}");
        t.home();
        t.delete();
        assert_eq!(t.lines[1], " \"a\": 1}");
    }

    #[test]
    fn line_edit_handles_multibyte_text() {
        let mut l = LineEdit::with("héllo");
        l.left();
        l.backspace();
        assert_eq!(l.text, "hélo");
        l.insert('l');
        assert_eq!(l.text, "héllo");
    }
}
