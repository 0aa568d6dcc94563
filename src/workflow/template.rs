//! Validated workflow templates, built from parsed documents.

use super::document::{StepDoc, WorkflowDoc};
use super::{dag, WorkflowError};
use crate::model::RetryPolicy;
use semver::Version;
use serde_json::Value;
use std::collections::HashMap;

/// The largest values a workflow file may give, so that no configured number can overflow a
/// deadline or keep a step waiting for ever. `validate` names the field and the limit.
pub mod limits {
    /// `retry.limit` / `default_retry_limit`: at most 100 attempts.
    pub const MAX_ATTEMPTS: u32 = 100;
    /// `retry.backoff_base_ms`: at most one day.
    pub const MAX_BACKOFF_BASE_MS: u64 = 86_400_000;
    /// `retry.max_backoff_ms`: at most seven days.
    pub const MAX_BACKOFF_MS: u64 = 7 * 86_400_000;
    /// `timeout_seconds`: at least a millisecond (a shorter one would time out at once).
    pub const MIN_TIMEOUT_SECONDS: f64 = 0.001;
    /// `timeout_seconds`: at most one day.
    pub const MAX_TIMEOUT_SECONDS: f64 = 86_400.0;
}

#[derive(Debug, Clone)]
pub struct StepTemplate {
    pub name: String,
    pub handler: String,
    pub description: Option<String>,
    pub depends_on: Vec<String>,
    pub retry: RetryPolicy,
    pub timeout_ms: Option<u64>,
    pub handler_config: Value,
}

#[derive(Debug, Clone)]
pub struct Template {
    pub namespace: String,
    pub name: String,
    pub version: Version,
    pub description: Option<String>,
    pub input_schema: Option<Value>,
    pub sample_context: Option<Value>,
    pub custom_events: Vec<String>,
    /// The workflow's `handler_config`: business metrics and monitoring (post 05).
    pub handler_config: super::handler_config::HandlerConfig,
    /// The input schema's classified fields (`x-data-classification`, `x-pii`; post 06).
    pub classified: Vec<super::classification::Field>,
    pub steps: Vec<StepTemplate>,
    /// The file it came from, for error messages.
    pub source: String,
}

impl Template {
    pub fn reference(&self) -> String {
        format!("{}/{}@{}", self.namespace, self.name, self.version)
    }

    /// Parses and validates one workflow file. `is_handler` says whether a handler name is
    /// registered. Returns every problem found, not only the first.
    pub fn parse(
        file: &str,
        text: &str,
        is_handler: &dyn Fn(&str) -> bool,
    ) -> Result<Template, Vec<WorkflowError>> {
        let unknown = super::keys::unknown_keys(file, text, false);
        if !unknown.is_empty() {
            return Err(unknown);
        }
        let doc: WorkflowDoc = crate::yaml::parse(file, text).map_err(|e| vec![e.into()])?;
        from_doc(file, doc, is_handler)
    }
}

fn from_doc(
    file: &str,
    doc: WorkflowDoc,
    is_handler: &dyn Fn(&str) -> bool,
) -> Result<Template, Vec<WorkflowError>> {
    let mut errors = Vec::new();
    let err = |field: String, msg: String| WorkflowError::new(file, Some(field), msg);

    for (field, value) in [("namespace", &doc.namespace), ("name", &doc.name)] {
        if !is_identifier(value) {
            errors.push(err(
                field.into(),
                format!("`{value}` is not a valid {field}: expected letters, digits, `_` or `-`"),
            ));
        }
    }
    let version_text = doc.version.text();
    let version = match Version::parse(&version_text) {
        Ok(v) => Some(v),
        Err(e) => {
            errors.push(err(
                "version".into(),
                format!("`{version_text}` is not a semantic version (expected MAJOR.MINOR.PATCH, e.g. 1.0.0): {e}"),
            ));
            None
        }
    };
    if let Some(schema) = &doc.input_schema {
        if let Err(e) = jsonschema::validator_for(schema) {
            // Where in the author's schema (the instance the meta-schema checked), not where
            // in the meta-schema.
            let path = super::catalog::json_path(e.instance_path().as_str());
            let at = path.strip_prefix('$').unwrap_or(&path);
            let field = if at.is_empty() {
                "input_schema".to_string()
            } else {
                format!("input_schema{at}")
            };
            errors.push(err(field, format!("invalid JSON Schema: {e}")));
        }
    }
    if doc.steps.is_empty() {
        errors.push(err("steps".into(), "a workflow needs at least one step".into()));
    }
    let handler_config = match &doc.handler_config {
        Some(value) => super::handler_config::HandlerConfig::parse(value).unwrap_or_else(|e| {
            errors.push(err("handler_config".into(), e));
            Default::default()
        }),
        None => Default::default(),
    };
    let classified = match doc.input_schema.as_ref().map(super::classification::fields_of) {
        Some(Ok(fields)) => fields,
        Some(Err(mistakes)) => {
            for (at, message) in mistakes {
                errors.push(err(format!("input_schema.{at}"), message));
            }
            Vec::new()
        }
        None => Vec::new(),
    };
    // A threshold for a step the workflow does not have is a typo that would never fire.
    for step in handler_config
        .monitoring
        .iter()
        .flat_map(|m| m.bottleneck_seconds.keys())
    {
        if step != "default" && !doc.steps.iter().any(|s| &s.name == step) {
            errors.push(err(
                format!("handler_config.monitoring.bottleneck_seconds.{step}"),
                format!("`{step}` is not a step of this workflow (expected a step name or `default`)"),
            ));
        }
    }
    // Copied into every task: deeper than the store can read back would lose the task.
    let too_deep = |v: &Value| crate::model::json_depth(v) > crate::model::MAX_JSON_DEPTH;
    for (field, value) in [
        ("input_schema", &doc.input_schema),
        ("sample_context", &doc.sample_context),
    ] {
        if value.as_ref().is_some_and(too_deep) {
            errors.push(err(
                field.into(),
                format!("nested deeper than {} levels", crate::model::MAX_JSON_DEPTH),
            ));
        }
    }

    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, step) in doc.steps.iter().enumerate() {
        if let Some(first) = index.insert(step.name.as_str(), i) {
            index.insert(step.name.as_str(), first);
            errors.push(err(
                format!("steps[{i}].name"),
                format!("duplicate step name `{}` (also steps[{first}])", step.name),
            ));
        }
    }

    let mut edges = Vec::new();
    let mut steps = Vec::with_capacity(doc.steps.len());
    let known: Vec<&str> = doc.steps.iter().map(|s| s.name.as_str()).collect();
    let mut hints: HashMap<&str, String> = HashMap::new();
    for (i, step) in doc.steps.iter().enumerate() {
        let at = |field: &str| format!("steps[{i}] ({}).{field}", step.name);
        if !is_identifier(&step.name) {
            errors.push(err(
                format!("steps[{i}].name"),
                format!(
                    "`{}` is not a valid step name: expected letters, digits, `_` or `-`",
                    step.name
                ),
            ));
        }
        if step.handler_config.as_ref().is_some_and(too_deep) {
            errors.push(err(
                at("handler_config"),
                format!("nested deeper than {} levels", crate::model::MAX_JSON_DEPTH),
            ));
        }
        if !is_handler(&step.handler) {
            errors.push(err(
                at("handler"),
                format!("unregistered handler `{}`", step.handler),
            ));
        }
        for dep in &step.depends_on {
            match index.get(dep.as_str()) {
                Some(&parent) => edges.push((parent, i)),
                None => {
                    let hint = hints.entry(dep.as_str()).or_insert_with(|| {
                        match super::keys::did_you_mean(dep, &known) {
                            Some(s) => format!("did you mean `{s}`?"),
                            // Bounded: 10,000 steps must not print every name per error.
                            None => format!("steps are: {}", super::keys::listing(&known, 10)),
                        }
                    });
                    errors.push(err(
                        at("depends_on"),
                        format!("depends on unknown step `{dep}`; {hint}"),
                    ));
                }
            }
        }
        match step_template(step) {
            Ok(t) => steps.push(t),
            Err((field, msg)) => errors.push(err(at(field), msg)),
        }
        if let Some(t) = step.timeout_seconds {
            if !((limits::MIN_TIMEOUT_SECONDS..=limits::MAX_TIMEOUT_SECONDS).contains(&t)) {
                errors.push(err(
                    at("timeout_seconds"),
                    format!(
                        "expected a number of seconds from {} to {} (one day), got {t:?}",
                        limits::MIN_TIMEOUT_SECONDS,
                        limits::MAX_TIMEOUT_SECONDS
                    ),
                ));
            }
        }
    }
    if let Some(cycle) = dag::find_cycle(doc.steps.len(), &edges) {
        let names: Vec<&str> = cycle.iter().map(|&i| doc.steps[i].name.as_str()).collect();
        errors.push(err(
            "steps".into(),
            format!("dependency cycle: {}", names.join(" -> ")),
        ));
    }

    match version {
        Some(version) if errors.is_empty() => Ok(Template {
            namespace: doc.namespace,
            name: doc.name,
            version,
            description: doc.description,
            input_schema: doc.input_schema,
            sample_context: doc.sample_context,
            custom_events: doc.custom_events.iter().map(|e| e.name().to_string()).collect(),
            handler_config,
            classified,
            steps,
            source: file.to_string(),
        }),
        _ => Err(errors),
    }
}

/// The step's template, or the field at fault and what was expected.
fn step_template(step: &StepDoc) -> Result<StepTemplate, (&'static str, String)> {
    let defaults = RetryPolicy::default();
    let retry = step.retry.as_ref();
    if retry.is_some() && (step.default_retryable.is_some() || step.default_retry_limit.is_some()) {
        return Err((
            "retry",
            "give either `retry` or Tasker's `default_retryable`/`default_retry_limit`, not both".into(),
        ));
    }
    let policy = RetryPolicy {
        retryable: retry
            .and_then(|r| r.retryable)
            .or(step.default_retryable)
            .unwrap_or(defaults.retryable),
        limit: retry
            .and_then(|r| r.limit)
            .or(step.default_retry_limit)
            .unwrap_or(defaults.limit),
        backoff_base_ms: retry
            .and_then(|r| r.backoff_base_ms)
            .unwrap_or(defaults.backoff_base_ms),
        max_backoff_ms: retry
            .and_then(|r| r.max_backoff_ms)
            .unwrap_or(defaults.max_backoff_ms),
    };
    let limit_field = if step.default_retry_limit.is_some() {
        "default_retry_limit"
    } else {
        "retry.limit"
    };
    if policy.limit == 0 || policy.limit > limits::MAX_ATTEMPTS {
        return Err((
            limit_field,
            format!(
                "the maximum number of attempts must be between 1 and {}, got {}",
                limits::MAX_ATTEMPTS,
                policy.limit
            ),
        ));
    }
    if policy.backoff_base_ms > limits::MAX_BACKOFF_BASE_MS {
        return Err((
            "retry.backoff_base_ms",
            format!(
                "expected at most {} ms (one day), got {}",
                limits::MAX_BACKOFF_BASE_MS,
                policy.backoff_base_ms
            ),
        ));
    }
    if policy.max_backoff_ms > limits::MAX_BACKOFF_MS {
        return Err((
            "retry.max_backoff_ms",
            format!(
                "expected at most {} ms (seven days), got {}",
                limits::MAX_BACKOFF_MS,
                policy.max_backoff_ms
            ),
        ));
    }
    if policy.max_backoff_ms < policy.backoff_base_ms {
        return Err((
            "retry",
            format!(
                "max_backoff_ms ({}) is below backoff_base_ms ({})",
                policy.max_backoff_ms, policy.backoff_base_ms
            ),
        ));
    }
    Ok(StepTemplate {
        name: step.name.clone(),
        handler: step.handler.clone(),
        description: step.description.clone(),
        depends_on: step.depends_on.clone(),
        retry: policy,
        timeout_ms: step
            .timeout_seconds
            .filter(|t| (limits::MIN_TIMEOUT_SECONDS..=limits::MAX_TIMEOUT_SECONDS).contains(t))
            // Checked above: at most 86,400,000 ms, exact in a u64.
            .map(|t| (t * 1000.0) as u64),
        handler_config: step
            .handler_config
            .clone()
            .unwrap_or(Value::Object(Default::default())),
    })
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}
