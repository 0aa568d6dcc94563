//! The audit trail (post 06): an append-only journal in which each entry carries the SHA-256
//! of its canonical encoding and of the entry before it, so editing, deleting or reordering
//! any entry breaks the chain; signed checkpoints of the head (Ed25519, a key kept apart from
//! the token key) make a truncated tail visible too.
//!
//! Entries are written by the store in the same durable commit as what they describe (one per
//! transition, with its actor), or appended on their own for what is not a transition
//! (authorization denials, tokens, exports). `verify` walks the journal and reports the first
//! entry that is not what was written, and why.

pub mod checkpoint;
pub mod entry;
pub mod verify;

pub use checkpoint::{Checkpoint, SigningKey};
pub use entry::{AuditEntry, AuditRecord, GENESIS};
pub use verify::{verify, Broken, Finding, Verified};
