//! The one place that parses YAML. Everything else asks for a typed document and gets an
//! error that names the file, line and column.

use serde::de::DeserializeOwned;
use std::fmt;

/// A YAML syntax or shape error in a named file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub file: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl fmt::Display for YamlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(col)) => write!(f, "{}:{line}:{col}: {}", self.file, self.message),
            _ => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for YamlError {}

/// The largest document parsed: 1 MiB.
pub const MAX_BYTES: usize = 1 << 20;
/// The deepest nesting of flow collections (`[…]`, `{…}`) accepted: 32. Deeper flow nesting
/// is never needed by a workflow, and the YAML parser's cost grows with its square.
pub const MAX_FLOW_DEPTH: usize = 32;

/// Parses `text` (read from `file`) into `T`. A leading byte-order mark is ignored.
///
/// Errors: syntax and shape errors with line and column; a document over [`MAX_BYTES`] or
/// with flow collections nested deeper than [`MAX_FLOW_DEPTH`].
pub fn parse<T: DeserializeOwned>(file: &str, text: &str) -> Result<T, YamlError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    check_shape(file, text)?;
    serde_yaml::from_str(text).map_err(|err| {
        let location = err.location();
        let mut message = err.to_string();
        // serde_yaml appends the location in prose; we print it as file:line:col instead.
        if let Some(at) = message.rfind(" at line ") {
            message.truncate(at);
        }
        YamlError {
            file: file.to_string(),
            line: location.as_ref().map(|l| l.line()),
            column: location.as_ref().map(|l| l.column()),
            message,
        }
    })
}

/// Refuses what would make the parser slow before parsing: size and flow nesting, found in
/// one pass that skips quoted strings and comments.
fn check_shape(file: &str, text: &str) -> Result<(), YamlError> {
    let fail = |line: usize, column: usize, message: String| YamlError {
        file: file.to_string(),
        line: (line > 0).then_some(line),
        column: (column > 0).then_some(column),
        message,
    };
    if text.len() > MAX_BYTES {
        return Err(fail(
            0,
            0,
            format!(
                "the document is {} bytes; at most {MAX_BYTES} are accepted",
                text.len()
            ),
        ));
    }
    let (mut depth, mut line, mut column) = (0usize, 1usize, 0usize);
    let mut quote: Option<char> = None;
    let mut comment = false;
    let mut previous = '\n';
    for c in text.chars() {
        column += 1;
        if c == '\n' {
            // Comments end with the line; quoted scalars may span lines.
            line += 1;
            column = 0;
            comment = false;
        } else if let (false, Some(q)) = (comment, quote) {
            if c == q {
                quote = None;
            }
        } else if !comment {
            match c {
                '#' if previous.is_whitespace() => comment = true,
                '"' | '\'' if previous.is_whitespace() || "[{,:".contains(previous) => quote = Some(c),
                '[' | '{' => {
                    depth += 1;
                    if depth > MAX_FLOW_DEPTH {
                        return Err(fail(
                            line,
                            column,
                            format!("collections nested deeper than {MAX_FLOW_DEPTH} levels"),
                        ));
                    }
                }
                ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        previous = c;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        name: String,
    }

    #[test]
    fn a_byte_order_mark_is_ignored() {
        let doc: Doc = parse("a.yaml", "\u{feff}name: x\n").unwrap();
        assert_eq!(doc.name, "x");
    }

    #[test]
    fn deep_flow_nesting_and_huge_documents_are_refused_before_parsing() {
        let deep = format!("name: {}{}\n", "[".repeat(40_000), "]".repeat(40_000));
        let err = parse::<Doc>("a.yaml", &deep).unwrap_err();
        assert_eq!((err.line, err.column), (Some(1), Some(39)));
        assert!(err.message.contains("nested deeper than 32"), "{err}");
        // Brackets in quotes and comments are text, not nesting.
        let quoted = format!("name: \"{}\" # {}\n", "[".repeat(100), "{".repeat(100));
        assert_eq!(parse::<Doc>("a.yaml", &quoted).unwrap().name, "[".repeat(100));
        let huge = format!("name: {}\n", "x".repeat(MAX_BYTES));
        assert!(parse::<Doc>("a.yaml", &huge)
            .unwrap_err()
            .message
            .contains("bytes; at most"));
    }

    #[test]
    fn errors_carry_file_line_and_column() {
        let err = parse::<Doc>("a.yaml", "name: x\nextra: 1\n").unwrap_err();
        assert_eq!(err.line, Some(2));
        assert!(
            err.to_string().starts_with("a.yaml:2:1: unknown field `extra`"),
            "{err}"
        );
    }
}
