//! Personal data at rest (post 06; `../shared/reference/tasker-blog-facts.md` §8): the
//! fields a workflow marks PII (`x-pii`) or `restricted`, and every copy handlers make of
//! their values, are stored sealed (AES-256-GCM, `envelope`) under a key of the person they
//! are about — the data subject, named by the fields marked `x-data-subject` (the customer's
//! email or id), else the task itself. Each subject's key is stored wrapped by the master
//! key (`master`), which never enters the store.
//!
//! The engine holds plaintext in memory (handlers need it) and seals what it commits and
//! publishes (`Sealer`); reads reveal per reader (`Vault::reveal_*`): decrypted for an
//! identity with `pii:read`, `[REDACTED]` for everyone else, `[ERASED]` once the subject's
//! key is shredded (GDPR erasure), in the store, old events, archives and audit entries
//! alike — none of which is rewritten, so the audit chain still verifies.

pub mod envelope;
pub mod erasure;
pub mod master;
pub mod seal;
mod vault;
pub mod walk;

pub use master::{KeySource, MasterKey, MASTER_KEY_ENV, MASTER_KEY_FILE};
pub use seal::Sealer;
pub use vault::{Access, Vault};

use crate::model::Timestamp;
use serde::{Deserialize, Serialize};

/// What a reader without `pii:read` sees in place of a personal value.
pub const REDACTED: &str = "[REDACTED]";
/// What every reader sees in place of an erased subject's values.
pub const ERASED: &str = "[ERASED]";

/// A data subject as stored: its id, its data key wrapped by the master key (`None` once
/// erased: crypto-shredded), and the tombstone of its erasure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectRecord {
    /// 32 hex digits, random; never derived from the person's data.
    pub id: String,
    /// Milliseconds since the Unix epoch.
    pub created_at: Timestamp,
    /// base64url of nonce ‖ AES-256-GCM(master, data key); `None` after erasure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrapped_key: Option<String>,
    /// When the key was shredded (ms since the Unix epoch), and by whom.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erased_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erased_by: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    #[error("cannot use the master key {path}: {cause}")]
    Key { path: String, cause: String },
    #[error("the master key {path} does not open this store's data keys: it is not the key this store's personal data was sealed with; restore the right key file (or set {env})", env = MASTER_KEY_ENV)]
    Mismatch { path: String },
    #[error("this store holds sealed personal data but its master key {path} is missing; restore it (no new key is made: the data would stay unreadable)")]
    Missing { path: String },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("cannot seal personal data: {0}")]
    Seal(String),
}
