//! Every unknown key of a workflow or manifest file at once, each with its line and a "did you
//! mean" for a close match. serde's `deny_unknown_fields` stops at the first; an author fixing
//! a file wants them all.

use super::WorkflowError;
use serde_yaml::Value;

/// Keys of a workflow file, Tasker's names included.
const WORKFLOW: &[&str] = &[
    "namespace",
    "namespace_name",
    "name",
    "version",
    "description",
    "input_schema",
    "schema",
    "sample_context",
    "custom_events",
    "handler_config",
    "steps",
    "step_templates",
];
const STEP: &[&str] = &[
    "name",
    "handler",
    "handler_class",
    "description",
    "depends_on",
    "depends_on_step",
    "depends_on_steps",
    "retry",
    "default_retryable",
    "default_retry_limit",
    "timeout_seconds",
    "handler_config",
];
const RETRY: &[&str] = &[
    "retryable",
    "limit",
    "max_attempts",
    "backoff_base_ms",
    "max_backoff_ms",
];
const MANIFEST: &[&str] = &["namespace", "description", "grants"];
const GRANT: &[&str] = &["workflow", "to", "actions"];

/// The closest of `candidates` to `word`, if it is close enough to be a likely typo (at most
/// three edits, and fewer than half the longer word). Looks at the first 500 candidates only,
/// so that a huge file's errors stay cheap.
pub fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .take(500)
        .map(|c| (strsim::damerau_levenshtein(word, c), *c))
        .filter(|(d, c)| *d <= 3 && 2 * d < word.len().max(c.len()))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// At most `max` names joined with ", ", then how many more.
pub fn listing(names: &[&str], max: usize) -> String {
    let mut out = names.iter().take(max).copied().collect::<Vec<_>>().join(", ");
    if names.len() > max {
        out.push_str(&format!(" … and {} more", names.len() - max));
    }
    out
}

/// Unknown keys of a workflow document (`manifest`: of a namespace manifest). Empty when the
/// text is not a mapping: the typed parse reports that.
pub fn unknown_keys(file: &str, text: &str, manifest: bool) -> Vec<WorkflowError> {
    // Through `yaml::parse`, which refuses pathological documents before parsing them.
    let Ok(doc) = crate::yaml::parse::<Value>(file, text) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    let shape = if manifest {
        Shape {
            top: MANIFEST,
            lists: &["grants"],
            item: GRANT,
            nested: None,
        }
    } else {
        Shape {
            top: WORKFLOW,
            lists: &["steps", "step_templates"],
            item: STEP,
            nested: Some(("retry", RETRY)),
        }
    };
    let Shape {
        top,
        lists: list,
        item,
        nested,
    } = shape;
    check(&doc, top, "", &mut found);
    for key in list {
        if let Some(Value::Sequence(items)) = doc.get(*key) {
            for (i, it) in items.iter().enumerate() {
                let at = format!("{key}[{i}]");
                check(it, item, &at, &mut found);
                if let Some((name, keys)) = nested {
                    if let Some(inner) = it.get(name) {
                        check(inner, keys, &format!("{at}.{name}"), &mut found);
                    }
                }
            }
        }
    }
    let mut from_line = 0;
    found
        .into_iter()
        .map(|(path, key, expected)| {
            let line = line_of(text, &key, from_line);
            if let Some(l) = line {
                from_line = l;
            }
            let hint = match did_you_mean(&key, expected) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!("expected one of {}", expected.join(", ")),
            };
            WorkflowError {
                file: file.to_string(),
                line,
                column: line.and_then(|l| column_of(text, l, &key)),
                field: (!path.is_empty()).then_some(path),
                message: format!("unknown field `{key}`; {hint}"),
            }
        })
        .collect()
}

/// Which keys a kind of file allows: at the top, in each item of its lists, and in one
/// nested mapping of an item.
struct Shape {
    top: &'static [&'static str],
    lists: &'static [&'static str],
    item: &'static [&'static str],
    nested: Option<(&'static str, &'static [&'static str])>,
}

type Found<'a> = Vec<(String, String, &'a [&'a str])>;

fn check<'a>(value: &Value, expected: &'a [&'a str], path: &str, found: &mut Found<'a>) {
    if let Value::Mapping(map) = value {
        for key in map.keys() {
            let name = match key {
                Value::String(s) => s.clone(),
                other => serde_yaml::to_string(other)
                    .unwrap_or_default()
                    .trim()
                    .to_string(),
            };
            if !expected.contains(&name.as_str()) {
                found.push((path.to_string(), name, expected));
            }
        }
    }
}

/// The first line at or after `from` (1-based) where `key` is written as a key.
fn line_of(text: &str, key: &str, from: usize) -> Option<usize> {
    text.lines()
        .enumerate()
        .skip(from.saturating_sub(1))
        .find_map(|(i, l)| {
            let t = l.trim_start().trim_start_matches("- ").trim_start();
            let is_key = t
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with(':'))
                || l.contains(&format!("{{ {key}:"))
                || l.contains(&format!(", {key}:"));
            is_key.then_some(i + 1)
        })
}

fn column_of(text: &str, line: usize, key: &str) -> Option<usize> {
    let l = text.lines().nth(line.checked_sub(1)?)?;
    l.find(key).map(|c| c + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_matches_are_suggested_and_far_ones_are_not() {
        assert_eq!(did_you_mean("depnds_on", STEP), Some("depends_on"));
        assert_eq!(did_you_mean("retries", STEP), Some("retry"));
        assert_eq!(did_you_mean("colour", WORKFLOW), None);
        assert_eq!(listing(&["a", "b", "c"], 2), "a, b … and 1 more");
    }
}
