//! Sealing one task's personal data before it is stored: the fields its workflow marks PII
//! or restricted are sealed whole in the context, and every copy of their values that
//! handlers make — in results, errors, approval requests, events, reasons — is sealed where
//! it appears: a string holding a value (4 characters or more) has that part sealed, a string
//! equal to one (any length) is sealed whole, a number equal to a sealed number of 100 or more
//! (or with a fraction) is sealed wherever it is, a smaller one under the sealed field's name
//! (`refund_amount`), and an amount in cents is also found written as money (`120.00` for
//! 12000, as `model::money` writes it in approval summaries).

use super::envelope;
use super::walk::{self, Pass};
use crate::model::{Event, Transition};
use crate::workflow::classification::{Classification, Field};
use aes_gcm::Aes256Gcm;
use serde_json::Value;
use std::sync::Arc;

/// Shortest value found inside longer text: shorter ones ("US", "42") would seal
/// unrelated words. Equal strings are sealed at any length.
pub const MIN_COPY_LEN: usize = 4;

/// Whether a field is sealed at rest: personal data, or restricted.
pub fn sealed(field: &Field) -> bool {
    field.pii.is_some() || field.level == Classification::Restricted
}

/// The values at `path` (`a.b`, `items[].name`) of `context`, by mutable reference.
pub fn at_path<'v>(context: &'v mut Value, path: &str, out: &mut Vec<&'v mut Value>) {
    fn go<'v>(value: &'v mut Value, parts: &[&str], out: &mut Vec<&'v mut Value>) {
        let Some((first, rest)) = parts.split_first() else {
            if !value.is_null() {
                out.push(value);
            }
            return;
        };
        match first.strip_suffix("[]") {
            Some(name) => {
                if let Some(items) = value.get_mut(name).and_then(Value::as_array_mut) {
                    for item in items {
                        go(item, rest, out);
                    }
                }
            }
            None => {
                if let Some(v) = value.get_mut(*first) {
                    go(v, rest, out);
                }
            }
        }
    }
    let parts: Vec<&str> = path.split('.').collect();
    go(context, &parts, out);
}

/// The scalar values a context holds at the sealed fields, as found by `at_path` (objects
/// and arrays at a sealed path count by their scalars).
pub fn personal_values(fields: &[Field], context: &Value) -> Vec<(String, Value)> {
    let mut copy = context.clone();
    let mut out = Vec::new();
    for field in fields.iter().filter(|f| sealed(f)) {
        let name = field
            .path
            .rsplit('.')
            .next()
            .unwrap_or(&field.path)
            .trim_end_matches("[]")
            .to_string();
        let mut found = Vec::new();
        at_path(&mut copy, &field.path, &mut found);
        for v in found {
            walk::scalars(v, None, &mut |_, s| {
                if !s.is_null() {
                    out.push((name.clone(), s.clone()));
                }
            });
        }
    }
    out
}

/// One task's sealing: its subject, the subject's data key and the values to find.
pub struct Sealer {
    pub subject: String,
    cipher: Arc<Aes256Gcm>,
    /// Field paths sealed whole in the context.
    paths: Vec<String>,
    /// Strings to seal wherever they appear, longest first.
    texts: Vec<String>,
    /// Numbers to seal under a field of this name.
    numbers: Vec<(String, serde_json::Number)>,
    /// Numbers distinctive enough to seal wherever they appear.
    distinctive: Vec<serde_json::Number>,
}

impl Sealer {
    /// A sealer for `values` (from `personal_values`, or opened from a stored context).
    pub fn new(
        subject: String,
        cipher: Arc<Aes256Gcm>,
        paths: Vec<String>,
        values: &[(String, Value)],
    ) -> Self {
        let mut texts: Vec<String> = Vec::new();
        let mut numbers = Vec::new();
        let mut distinctive = Vec::new();
        for (name, v) in values {
            match v {
                Value::String(s) if !s.is_empty() => texts.push(s.clone()),
                Value::Number(n) => {
                    numbers.push((name.clone(), n.clone()));
                    let small = n.as_i64().is_some_and(|i| i.unsigned_abs() < 100)
                        || n.as_u64().is_some_and(|u| u < 100);
                    if !small {
                        distinctive.push(n.clone());
                    }
                    // A number copied into text ("refund of 4999") is found as text too, and
                    // an amount in cents as money ("$49.99").
                    let s = n.to_string();
                    if s.len() >= MIN_COPY_LEN {
                        texts.push(s);
                    }
                    if let Some(cents) = n.as_i64().filter(|c| c.unsigned_abs() >= 100) {
                        let abs = cents.unsigned_abs();
                        texts.push(format!("{}.{:02}", abs / 100, abs % 100));
                    }
                }
                _ => {}
            }
        }
        texts.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        texts.dedup();
        Sealer {
            subject,
            cipher,
            paths,
            texts,
            numbers,
            distinctive,
        }
    }

    /// What replaces a personal value: its token, or `[REDACTED]` for a log line.
    fn token(&self, value: &Value, redact: bool) -> String {
        if redact {
            super::REDACTED.to_string()
        } else {
            envelope::seal(&self.cipher, &self.subject, value)
        }
    }

    /// `text` with every copy of a personal value sealed, or `None` when it holds none.
    /// Tokens already in it are kept as they are.
    pub fn seal_text(&self, text: &str) -> Option<String> {
        self.mark_text(text, false)
    }

    fn mark_text(&self, text: &str, redact: bool) -> Option<String> {
        if envelope::has_token(text) {
            let tokens = envelope::tokens(text);
            if !tokens.is_empty() {
                let mut out = String::with_capacity(text.len());
                let mut last = 0;
                let mut changed = false;
                for t in &tokens {
                    let gap = &text[last..t.start];
                    match self.seal_plain(gap, redact) {
                        Some(sealed) => {
                            out.push_str(&sealed);
                            changed = true;
                        }
                        None => out.push_str(gap),
                    }
                    out.push_str(&text[t.start..t.end]);
                    last = t.end;
                }
                match self.seal_plain(&text[last..], redact) {
                    Some(sealed) => {
                        out.push_str(&sealed);
                        changed = true;
                    }
                    None => out.push_str(&text[last..]),
                }
                return changed.then_some(out);
            }
        }
        self.seal_plain(text, redact)
    }

    fn seal_plain(&self, text: &str, redact: bool) -> Option<String> {
        if text.is_empty() {
            return None;
        }
        if self.texts.iter().any(|t| t == text) {
            return Some(self.token(&Value::String(text.to_string()), redact));
        }
        let mut out = String::new();
        let mut rest = text;
        let mut changed = false;
        loop {
            // The earliest copy in what is left (the longest at a tie).
            let next = self
                .texts
                .iter()
                .filter(|t| t.len() >= MIN_COPY_LEN)
                .filter_map(|t| rest.find(t.as_str()).map(|at| (at, t)))
                .min_by(|a, b| a.0.cmp(&b.0).then_with(|| b.1.len().cmp(&a.1.len())));
            let Some((at, found)) = next else { break };
            out.push_str(&rest[..at]);
            out.push_str(&self.token(&Value::String(found.clone()), redact));
            rest = &rest[at + found.len()..];
            changed = true;
        }
        if !changed {
            return None;
        }
        out.push_str(rest);
        Some(out)
    }

    /// The context as stored: sealed fields whole, copies elsewhere found as in results.
    pub fn seal_context(&self, context: &Value) -> Value {
        let mut sealed = context.clone();
        for path in &self.paths {
            let mut whole = Vec::new();
            at_path(&mut sealed, path, &mut whole);
            for v in whole {
                *v = Value::String(self.token(v, false));
            }
        }
        self.value(&mut sealed, false);
        sealed
    }

    pub fn seal_transition(&self, t: &Transition) -> Transition {
        let mut t = t.clone();
        walk::transition(
            &mut t,
            &mut Mode {
                sealer: self,
                redact: false,
            },
        );
        t
    }

    pub fn seal_event(&self, e: &Event) -> Event {
        let mut e = e.clone();
        walk::event(
            &mut e,
            &mut Mode {
                sealer: self,
                redact: false,
            },
        );
        e
    }

    /// `t` for a log line: every personal value `[REDACTED]` (nothing is encrypted).
    pub fn redact_transition(&self, t: &Transition) -> Transition {
        let mut t = t.clone();
        walk::transition(
            &mut t,
            &mut Mode {
                sealer: self,
                redact: true,
            },
        );
        t
    }

    /// `value` (a context, results) for a log line: every personal value `[REDACTED]`,
    /// sealed fields whole.
    pub fn redact_value(&self, value: &Value) -> Value {
        let mut redacted = value.clone();
        for path in &self.paths {
            let mut whole = Vec::new();
            at_path(&mut redacted, path, &mut whole);
            for v in whole {
                *v = Value::String(super::REDACTED.into());
            }
        }
        self.value(&mut redacted, true);
        redacted
    }

    fn value(&self, value: &mut Value, redact: bool) {
        walk::scalars(value, None, &mut |key, v| match v {
            Value::String(s) => {
                if let Some(sealed) = self.mark_text(s, redact) {
                    *s = sealed;
                }
            }
            Value::Number(n)
                if self.distinctive.contains(n)
                    || key.is_some_and(|k| self.numbers.iter().any(|(name, m)| name == k && m == n)) =>
            {
                *v = Value::String(self.token(v, redact));
            }
            _ => {}
        });
    }
}

/// A sealer walking records: sealing (for the store) or redacting (for logs).
struct Mode<'s> {
    sealer: &'s Sealer,
    redact: bool,
}

impl Pass for Mode<'_> {
    fn value(&mut self, value: &mut Value) {
        self.sealer.value(value, self.redact)
    }

    fn text(&mut self, text: &mut String) {
        if let Some(sealed) = self.sealer.mark_text(text, self.redact) {
            *text = sealed;
        }
    }

    fn amount(&mut self, amount: &mut Option<i64>, sealed: &mut Option<String>) {
        if let Some(n) = amount.take() {
            *sealed = Some(self.sealer.token(&Value::from(n), self.redact));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes_gcm::KeyInit;
    use serde_json::json;

    fn sealer(values: &[(String, Value)]) -> Sealer {
        let cipher = Arc::new(Aes256Gcm::new_from_slice(&[1u8; 32]).unwrap());
        Sealer::new(
            envelope::new_subject_id(),
            cipher,
            vec!["customer_email".into(), "refund_amount".into()],
            values,
        )
    }

    #[test]
    fn sealed_fields_and_their_copies_leave_no_plaintext() {
        let values = vec![
            ("customer_email".to_string(), json!("jane@example.com")),
            ("refund_amount".to_string(), json!(4999)),
        ];
        let s = sealer(&values);
        let context = json!({ "customer_email": "jane@example.com", "refund_amount": 4999, "ticket_id": "T-1", "note": "call jane@example.com" });
        let stored = s.seal_context(&context);
        let text = stored.to_string();
        assert!(
            !text.contains("jane@example.com") && !text.contains("4999"),
            "{text}"
        );
        assert_eq!(stored["ticket_id"], "T-1");
        let mut results =
            json!({ "sent_to": "jane@example.com", "refund_amount": 4999, "amount": 4999, "id": "re_1" });
        s.value(&mut results, false);
        assert!(!results["sent_to"].to_string().contains("jane"));
        assert!(
            results["refund_amount"].is_string(),
            "a copy under the field's name is sealed"
        );
        assert!(
            results["amount"].is_string(),
            "a distinctive number is sealed under any name"
        );
        let mut small = json!({ "quantity": 2 });
        s.value(&mut small, false);
        assert_eq!(
            small["quantity"], 2,
            "a small number under another name is left alone"
        );
        let text = s.seal_text("Refund $49.99 on T-1").unwrap();
        assert!(
            !text.contains("49.99"),
            "an amount in cents is found written as money: {text}"
        );
        let text = s.seal_text("refund of 4999 cents").unwrap();
        assert!(
            text.starts_with("refund of {{pii:v1:") && text.ends_with("}} cents") && !text.contains("4999"),
            "{text}"
        );
        assert_eq!(s.seal_text("nothing personal"), None);
    }
}
