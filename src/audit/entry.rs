//! One audit entry, its canonical encoding and its hash.

use crate::model::{Subject, Task, Timestamp, Transition};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The `prev_hash` of the first entry: 64 zeros.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What a writer records (post 06's entry fields); the journal adds the sequence number and
/// the hashes when it appends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditRecord {
    /// Milliseconds since the Unix epoch.
    pub at: Timestamp,
    /// Who: a person or service (`sub`), `engine`, or `anonymous` for a refused unauthenticated call.
    pub actor: String,
    /// What, as `area.verb`: `task.transition`, `step.transition`, `authz.denied`,
    /// `token.issued`, `token.first_use`, `workflow.loaded`, `gdpr.export`, `key.rotated`, ….
    pub action: String,
    /// On what: `task/ID`, `task/ID/step/NAME`, `workflow/NS/NAME@VERSION`, `token/JTI`, ….
    pub resource: String,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub workflow: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    /// `public`, `internal`, `confidential` or `restricted`.
    pub classification: String,
    #[serde(default)]
    pub correlation_id: Option<String>,
    /// `success` or `denied`.
    pub outcome: String,
    /// A short description: the states of a transition, a reason, why something was refused.
    pub detail: String,
    /// Controls and regimes the entry is evidence for (`SOC2:CC6.1`, `GDPR`, …).
    #[serde(default)]
    pub compliance_tags: Vec<String>,
    /// The sequence number of the transition the entry journals, if it journals one.
    #[serde(default)]
    pub transition: Option<u64>,
}

/// A stored entry: the record, its place in the journal and the chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// 1, 2, 3, … with no gap.
    pub seq: u64,
    #[serde(flatten)]
    pub record: AuditRecord,
    /// The previous entry's `hash` (`GENESIS` for the first), lowercase hex.
    pub prev_hash: String,
    /// SHA-256 of this entry's canonical encoding (every field but `hash`), lowercase hex.
    pub hash: String,
}

/// The hashed form: every field but `hash`, in a fixed order (serde writes struct fields in
/// declaration order and escapes strings one way, so the bytes are canonical).
#[derive(Serialize)]
struct Canonical<'a> {
    seq: u64,
    at: Timestamp,
    actor: &'a str,
    action: &'a str,
    resource: &'a str,
    namespace: Option<&'a str>,
    workflow: Option<&'a str>,
    version: Option<&'a str>,
    classification: &'a str,
    correlation_id: Option<&'a str>,
    outcome: &'a str,
    detail: &'a str,
    compliance_tags: &'a [String],
    transition: Option<u64>,
    prev_hash: &'a str,
}

/// SHA-256 of `seq`, `record` and `prev_hash` in their canonical encoding, lowercase hex.
pub fn hash(seq: u64, record: &AuditRecord, prev_hash: &str) -> String {
    hex(&Sha256::digest(canonical(seq, record, prev_hash)))
}

/// The canonical encoding (every field but `hash`, in a fixed order, as JSON).
fn canonical(seq: u64, record: &AuditRecord, prev_hash: &str) -> Vec<u8> {
    let canonical = Canonical {
        seq,
        at: record.at,
        actor: &record.actor,
        action: &record.action,
        resource: &record.resource,
        namespace: record.namespace.as_deref(),
        workflow: record.workflow.as_deref(),
        version: record.version.as_deref(),
        classification: &record.classification,
        correlation_id: record.correlation_id.as_deref(),
        outcome: &record.outcome,
        detail: &record.detail,
        compliance_tags: &record.compliance_tags,
        transition: record.transition,
        prev_hash,
    };
    // Serializing plain strings and numbers cannot fail.
    serde_json::to_vec(&canonical).unwrap_or_default()
}

/// `record` chained as entry `seq` after `prev_hash`, encoded as stored (the canonical
/// encoding with its `hash` added: one serialization, on the commit path), with its hash.
pub fn sealed_bytes(seq: u64, record: &AuditRecord, prev_hash: &str) -> (Vec<u8>, String) {
    let mut bytes = canonical(seq, record, prev_hash);
    let hash = hex(&Sha256::digest(&bytes));
    // `{…}` → `{…,"hash":"…"}`.
    if bytes.last() == Some(&b'}') {
        bytes.pop();
        bytes.extend_from_slice(b",\"hash\":\"");
        bytes.extend_from_slice(hash.as_bytes());
        bytes.extend_from_slice(b"\"}");
    }
    (bytes, hash)
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

impl AuditEntry {
    /// `record` appended after an entry whose hash is `prev_hash`, as entry `seq`.
    pub fn chain(seq: u64, record: AuditRecord, prev_hash: &str) -> AuditEntry {
        let hash = hash(seq, &record, prev_hash);
        AuditEntry {
            seq,
            record,
            prev_hash: prev_hash.to_string(),
            hash,
        }
    }

    /// Whether `hash` is the hash of the rest of the entry.
    pub fn is_sealed(&self) -> bool {
        hash(self.seq, &self.record, &self.prev_hash) == self.hash
    }
}

impl AuditRecord {
    /// A successful action of `actor` on `resource`, `internal`, with no namespace, workflow,
    /// correlation id, tag or transition: set what applies with struct update syntax.
    pub fn new(
        at: Timestamp,
        actor: impl Into<String>,
        action: &str,
        resource: String,
        detail: String,
    ) -> AuditRecord {
        AuditRecord {
            at,
            actor: actor.into(),
            action: action.into(),
            resource,
            namespace: None,
            workflow: None,
            version: None,
            classification: "internal".into(),
            correlation_id: None,
            outcome: "success".into(),
            detail,
            compliance_tags: Vec::new(),
            transition: None,
        }
    }

    /// The entry of one committed transition of `task`: its actor, the subject and the states.
    pub fn of_transition(t: &Transition, task: &Task) -> AuditRecord {
        let (action, resource) = match &t.subject {
            Subject::Task => ("task.transition", format!("task/{}", t.task_id)),
            Subject::Step(step) => ("step.transition", format!("task/{}/step/{step}", t.task_id)),
        };
        let from = t.from.as_deref().unwrap_or("(new)");
        let mut detail = format!("{from} → {}", t.to);
        if let Some(reason) = t.reason.as_deref().filter(|r| !r.is_empty()) {
            // The journal is kept for ever: a reason quoting an email, a card or a phone
            // number keeps none of them (names in free text cannot be told from words).
            detail.push_str(": ");
            detail.push_str(&crate::telemetry::filter::scrub_text(&crate::model::clip(
                reason, 200,
            )));
        }
        // A person's hand on a task is access evidence; a decision is authorization evidence.
        let mut compliance_tags = Vec::new();
        if t.actor != "engine" {
            compliance_tags.push("SOC2:CC6.1".to_string());
        }
        if t.from.as_deref() == Some("awaiting_approval") && t.actor != "engine" {
            compliance_tags.push("SOC2:CC6.3".to_string());
            compliance_tags.push("approval".to_string());
        }
        // Only as an identifier: the journal never holds personal data in the clear.
        let correlation_id = task
            .correlation_id
            .as_deref()
            .or_else(|| {
                task.context
                    .get("correlation_id")
                    .and_then(serde_json::Value::as_str)
            })
            .and_then(|id| crate::telemetry::filter::safe_id(id, 128))
            .map(str::to_string);
        AuditRecord {
            at: t.at,
            actor: t.actor.clone(),
            action: action.into(),
            resource,
            namespace: Some(task.namespace.clone()),
            workflow: Some(task.name.clone()),
            version: Some(task.version.clone()),
            classification: task.classification.as_str().into(),
            correlation_id,
            outcome: "success".into(),
            detail,
            compliance_tags,
            transition: Some(t.seq),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn record(actor: &str, detail: &str) -> AuditRecord {
        AuditRecord {
            at: 1_000,
            actor: actor.into(),
            action: "task.transition".into(),
            resource: "task/t1".into(),
            namespace: Some("shop".into()),
            workflow: Some("checkout".into()),
            version: Some("1.0.0".into()),
            classification: "internal".into(),
            correlation_id: None,
            outcome: "success".into(),
            detail: detail.into(),
            compliance_tags: vec![],
            transition: None,
        }
    }

    #[test]
    fn the_hash_covers_every_field_and_the_previous_hash() {
        let a = AuditEntry::chain(1, record("ann", "pending → in_progress"), GENESIS);
        assert!(a.is_sealed());
        assert_eq!(a.hash.len(), 64);
        let b = AuditEntry::chain(2, record("ann", "in_progress → complete"), &a.hash);
        assert_eq!(b.prev_hash, a.hash);
        let mut edited = b.clone();
        edited.record.actor = "mallory".into();
        assert!(!edited.is_sealed());
        let mut moved = b.clone();
        moved.seq = 3;
        assert!(!moved.is_sealed());
        let mut relinked = b;
        relinked.prev_hash = GENESIS.into();
        assert!(!relinked.is_sealed());
        // The stored form reads back to the same entry, and is what `sealed_bytes` writes.
        let json = serde_json::to_string(&a).unwrap();
        let back: AuditEntry = serde_json::from_str(&json).unwrap();
        assert_eq!(back, a);
        assert!(back.is_sealed());
        let (bytes, hash) = sealed_bytes(1, &a.record, GENESIS);
        assert_eq!(hash, a.hash);
        assert_eq!(serde_json::from_slice::<AuditEntry>(&bytes).unwrap(), a);
        assert_eq!(hex(&[0x0f, 0xa0]), "0fa0");
    }
}
