//! Finding a task by what an operator knows about it: a ticket, customer, order or
//! correlation id, its id, workflow or state — several words at once, all of which must match.
//!
//! The values of the indexed context fields (`INDEXED_FIELDS`) become search terms at
//! submit: keyed hashes (under the master key's lookup key when personal data is sealed, so the
//! store never holds a customer id in clear, even in an index), kept in the task's header and
//! its index. A query hashes its words the same way and reads the index: a ticket among
//! 100,000 tasks costs one index range, not a scan. A personal field's term (`p:`) only finds
//! the task for a reader with `pii:read`; others could otherwise confirm who a task is about.

use crate::model::{TaskState, Timestamp};
use crate::privacy::Vault;
use crate::workflow::classification::Field;
use serde_json::Value;

/// The context fields a task can be found by (top level, strings or integers), and the task's
/// own correlation id.
pub const INDEXED_FIELDS: [&str; 4] = ["ticket_id", "customer_id", "order_id", "correlation_id"];

/// Most words in one search.
pub const MAX_WORDS: usize = 8;

/// Longest word, in characters.
pub const MAX_WORD: usize = 128;

/// The hash of a stored term (without its `p:` mark).
pub fn hash_of(term: &str) -> &str {
    term.strip_prefix("p:").unwrap_or(term)
}

/// The term hash of `value`: 32 hex characters of HMAC-SHA256 under the vault's lookup key,
/// or of SHA-256 when nothing is sealed (the values are then stored in clear anyway). Case and
/// surrounding spaces do not count.
pub fn hash(vault: Option<&Vault>, value: &str) -> String {
    let normalized = format!("search:{}", value.trim().to_lowercase());
    let full = match vault {
        Some(v) => v.alias_hash(&normalized),
        None => {
            use sha2::Digest;
            crate::audit::entry::hex(&sha2::Sha256::digest(normalized.as_bytes()))
        }
    };
    full.chars().take(32).collect()
}

/// The search terms of a new task: one per indexed field present in `context` (`p:`-marked
/// when its workflow marks the field personal), and its correlation id's.
pub fn terms_of(
    vault: Option<&Vault>,
    fields: &[Field],
    context: &Value,
    correlation_id: Option<&str>,
) -> Vec<String> {
    let mut terms = Vec::new();
    for name in INDEXED_FIELDS {
        let value = match context.get(name) {
            Some(Value::String(s)) if !s.trim().is_empty() && s.chars().count() <= MAX_WORD => s.clone(),
            Some(Value::Number(n)) if n.is_i64() || n.is_u64() => n.to_string(),
            _ => continue,
        };
        let personal = fields.iter().any(|f| f.path == name && f.pii.is_some());
        let h = hash(vault, &value);
        terms.push(if personal { format!("p:{h}") } else { h });
    }
    if let Some(c) = correlation_id.filter(|c| !c.is_empty()) {
        let h = hash(vault, c);
        if !terms.iter().any(|t| hash_of(t) == h) {
            terms.push(h);
        }
    }
    terms.sort();
    terms.dedup();
    terms
}

/// What a search's words asked for, once each is understood.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Words {
    /// A word that names a state.
    pub state: Option<TaskState>,
    /// A word that names a namespace.
    pub namespace: Option<String>,
    /// Workflows a word named (`NS/NAME`, or a bare `NAME` several namespaces may have).
    pub workflows: Vec<(String, String)>,
    /// The version a workflow word named (`NAME@1.3.0`).
    pub version: Option<String>,
    /// Everything else: ids, ticket, customer, order or correlation ids.
    pub values: Vec<String>,
    /// Two words contradict each other (two states): nothing can match.
    pub contradiction: bool,
}

/// Reads `text` word by word: a state, a namespace or a workflow the catalog knows, else a
/// value to look up. `namespaces` and `workflows` (namespace, name) are the catalog's.
///
/// Errors: more than `MAX_WORDS` words, or a word longer than `MAX_WORD` characters.
pub fn parse(text: &str, namespaces: &[String], workflows: &[(String, String)]) -> Result<Words, String> {
    let mut words = Words::default();
    let all: Vec<&str> = text.split_whitespace().collect();
    if all.len() > MAX_WORDS {
        return Err(format!("{} words: a search takes at most {MAX_WORDS}", all.len()));
    }
    for word in all {
        if word.chars().count() > MAX_WORD {
            return Err(format!(
                "`{}` is longer than {MAX_WORD} characters",
                crate::model::clip(word, 24)
            ));
        }
        let lower = word.to_lowercase();
        if let Some(state) = TaskState::ALL.iter().find(|s| s.as_str() == lower) {
            if words.state.is_some_and(|s| s != *state) {
                words.contradiction = true;
            }
            words.state = Some(*state);
            continue;
        }
        if namespaces.iter().any(|n| n.to_lowercase() == lower) {
            if words
                .namespace
                .as_ref()
                .is_some_and(|n| n.to_lowercase() != lower)
            {
                words.contradiction = true;
            }
            words.namespace = namespaces.iter().find(|n| n.to_lowercase() == lower).cloned();
            continue;
        }
        let (reference, version) = match lower.split_once('@') {
            Some((r, v)) => (r, Some(v)),
            None => (lower.as_str(), None),
        };
        let named: Vec<(String, String)> = workflows
            .iter()
            .filter(|(ns, name)| {
                let name = name.to_lowercase();
                reference == name || reference == format!("{}/{name}", ns.to_lowercase())
            })
            .cloned()
            .collect();
        if !named.is_empty() {
            if let Some(v) = version {
                if words.version.as_ref().is_some_and(|old| old != v) {
                    words.contradiction = true;
                }
                words.version = Some(v.to_string());
            }
            if words.workflows.is_empty() {
                words.workflows = named;
            } else {
                words.workflows.retain(|w| named.contains(w));
                words.contradiction |= words.workflows.is_empty();
            }
            continue;
        }
        words.values.push(word.to_string());
    }
    Ok(words)
}

/// Whether `word` could be (part of) a task id: hex digits and dashes, 4 or more.
pub fn may_be_id(word: &str) -> bool {
    word.len() >= 4 && word.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

/// Since when, from `2h`, `30m`, `7d`, `90s` or `1w` before `now` (ms since the epoch).
///
/// Errors: anything else, or an amount over 10 years.
pub fn since(text: &str, now: Timestamp) -> Result<Timestamp, String> {
    let text = text.trim();
    let (amount, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let amount: i64 = amount.parse().map_err(|_| {
        format!(
            "`{}`: expected an age like 30m, 2h, 7d or 1w",
            crate::model::clip(text, 24)
        )
    })?;
    let unit_ms: i64 = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 604_800_000,
        _ => {
            return Err(format!(
                "`{}`: the unit is s, m, h, d or w (30m, 2h, 7d, 1w)",
                crate::model::clip(text, 24)
            ))
        }
    };
    let ms = amount.saturating_mul(unit_ms);
    if ms > 10 * 365 * 86_400_000 {
        return Err(format!("`{text}` is more than 10 years"));
    }
    Ok(now.saturating_sub(ms).max(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_states_namespaces_workflows_or_values() {
        let namespaces = vec!["payments".to_string(), "customer_success".to_string()];
        let workflows = vec![
            ("payments".to_string(), "process_refund".to_string()),
            ("customer_success".to_string(), "process_refund".to_string()),
        ];
        let w = parse("ERROR process_refund TICKET-9 payments", &namespaces, &workflows).unwrap();
        assert_eq!(w.state, Some(TaskState::Error));
        assert_eq!(w.namespace.as_deref(), Some("payments"));
        assert_eq!(w.workflows.len(), 2, "a bare name is every namespace's");
        assert_eq!(w.values, vec!["TICKET-9"]);
        let w = parse("customer_success/process_refund@1.3.0", &namespaces, &workflows).unwrap();
        assert_eq!(w.workflows, vec![workflows[1].clone()]);
        assert_eq!(w.version.as_deref(), Some("1.3.0"));
        assert!(
            parse(
                "process_refund@1.3.0 process_refund@2.1.0",
                &namespaces,
                &workflows
            )
            .unwrap()
            .contradiction
        );
        assert!(
            parse("error complete", &namespaces, &workflows)
                .unwrap()
                .contradiction
        );
        assert!(parse(&"a ".repeat(9), &namespaces, &workflows).is_err());
        assert!(parse(&"a".repeat(129), &namespaces, &workflows).is_err());
    }

    #[test]
    fn terms_hash_values_mark_personal_ones_and_ignore_case() {
        let fields = vec![Field {
            path: "customer_id".into(),
            level: crate::workflow::classification::Classification::Confidential,
            pii: Some(crate::workflow::classification::Pii::Identifier),
            subject: false,
        }];
        let context = serde_json::json!({ "ticket_id": "TICKET-1", "customer_id": "CUST-9", "order_id": 42, "other": "x" });
        let terms = terms_of(None, &fields, &context, Some("cs-1"));
        assert_eq!(terms.len(), 4, "{terms:?}");
        assert!(terms.contains(&hash(None, "ticket-1")));
        assert!(terms.contains(&format!("p:{}", hash(None, "CUST-9"))));
        assert!(terms.contains(&hash(None, "42")));
        assert!(!terms.iter().any(|t| t.contains("TICKET")), "never in clear");
    }

    #[test]
    fn ages_are_read_and_refused_with_a_reason() {
        assert_eq!(since("2h", 10_000_000), Ok(10_000_000 - 7_200_000));
        assert_eq!(since("1w", 0), Ok(0), "saturates at the epoch");
        assert!(since("2y", 0).unwrap_err().contains("unit"));
        assert!(since("h", 0).is_err());
        assert!(since("99999999999999w", 0).is_err());
    }
}
