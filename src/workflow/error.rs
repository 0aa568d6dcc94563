use std::fmt;

/// A problem with a workflow file: which file, where if known, and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowError {
    pub file: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// The field the problem is in, e.g. `steps[2].depends_on`.
    pub field: Option<String>,
    pub message: String,
}

impl WorkflowError {
    pub fn new(file: &str, field: Option<String>, message: impl Into<String>) -> Self {
        WorkflowError {
            file: file.to_string(),
            line: None,
            column: None,
            field,
            message: message.into(),
        }
    }
}

impl From<crate::yaml::YamlError> for WorkflowError {
    fn from(e: crate::yaml::YamlError) -> Self {
        WorkflowError {
            file: e.file,
            line: e.line,
            column: e.column,
            field: None,
            message: e.message,
        }
    }
}

impl fmt::Display for WorkflowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let (Some(line), Some(col)) = (self.line, self.column) {
            write!(f, ":{line}:{col}")?;
        }
        write!(f, ": ")?;
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for WorkflowError {}

/// Problems resolving a workflow reference or a task context.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error("bad workflow reference `{0}`: expected NAMESPACE/NAME or NAMESPACE/NAME@VERSION")]
    BadReference(String),
    #[error("unknown workflow `{reference}`; available: {available}")]
    Unknown { reference: String, available: String },
    #[error("context does not match the input schema of {workflow}:\n  {}", .violations.join("\n  "))]
    InvalidContext {
        workflow: String,
        violations: Vec<String>,
    },
}
