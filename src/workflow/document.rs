//! The shape of a workflow file as written, with Tasker's key names accepted as aliases.
//! These types only describe the file; `template.rs` turns them into validated templates.

use serde::{Deserialize, Deserializer};
use serde_json::Value;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WorkflowDoc {
    #[serde(alias = "namespace_name")]
    pub namespace: String,
    pub name: String,
    pub version: Scalar,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default, alias = "schema")]
    pub input_schema: Option<Value>,
    /// An example context, used by demos and the console's new-task form.
    #[serde(default)]
    pub sample_context: Option<Value>,
    /// Names of custom events the handlers publish (documentation; Tasker's `custom_events`).
    #[serde(default)]
    pub custom_events: Vec<CustomEventDoc>,
    /// The workflow's own configuration (business metrics, monitoring).
    #[serde(default)]
    pub handler_config: Option<Value>,
    #[serde(alias = "step_templates")]
    pub steps: Vec<StepDoc>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum CustomEventDoc {
    Name(String),
    Described {
        name: String,
        #[serde(default)]
        #[allow(dead_code)]
        description: Option<String>,
    },
}

impl CustomEventDoc {
    pub fn name(&self) -> &str {
        match self {
            CustomEventDoc::Name(n) | CustomEventDoc::Described { name: n, .. } => n,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StepDoc {
    pub name: String,
    #[serde(alias = "handler_class")]
    pub handler: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(
        default,
        alias = "depends_on_step",
        alias = "depends_on_steps",
        deserialize_with = "one_or_many"
    )]
    pub depends_on: Vec<String>,
    #[serde(default)]
    pub retry: Option<RetryDoc>,
    #[serde(default)]
    pub default_retryable: Option<bool>,
    #[serde(default)]
    pub default_retry_limit: Option<u32>,
    #[serde(default)]
    pub timeout_seconds: Option<f64>,
    #[serde(default)]
    pub handler_config: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RetryDoc {
    #[serde(default)]
    pub retryable: Option<bool>,
    #[serde(default, alias = "max_attempts")]
    pub limit: Option<u32>,
    #[serde(default)]
    pub backoff_base_ms: Option<u64>,
    #[serde(default)]
    pub max_backoff_ms: Option<u64>,
}

/// A YAML scalar read as text: `version: 1.0` and `version: "1.0.0"` both arrive here, so the
/// semver check can say what is wrong instead of a type error.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Scalar {
    Text(String),
    Int(i64),
    Float(f64),
}

impl Scalar {
    pub fn text(&self) -> String {
        match self {
            Scalar::Text(s) => s.clone(),
            Scalar::Int(i) => i.to_string(),
            // `{:?}` keeps `1.0` as written rather than `1`.
            Scalar::Float(f) => format!("{f:?}"),
        }
    }
}

/// `depends_on_step: a` (Tasker) or `depends_on: [a, b]`.
fn one_or_many<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<OneOrMany>::deserialize(deserializer)? {
        None => Vec::new(),
        Some(OneOrMany::One(s)) => vec![s],
        Some(OneOrMany::Many(v)) => v,
    })
}
