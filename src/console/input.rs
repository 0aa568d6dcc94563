//! Small text editors: a one-line input (command line, filters) and a multi-line JSON editor.

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
