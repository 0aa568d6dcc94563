//! The keys of every sled tree (the records themselves are `store::records`).

use crate::model::{StepState, TaskState, Timestamp};
pub(super) use crate::store::records::{Header, StepDef};

/// Keys. Ids are UUIDv7 text (time-ordered, no NUL); names and namespaces are joined with NUL
/// so that no prefix of one key is another's (readers re-check every filter on the header, so
/// an odd name costs a skipped candidate, never a wrong answer).
pub(super) mod key {
    use super::*;

    pub fn transition(task_id: &str, seq: u64) -> Vec<u8> {
        let mut key = Vec::with_capacity(task_id.len() + 9);
        key.extend_from_slice(task_id.as_bytes());
        key.push(b'/');
        key.extend_from_slice(&seq.to_be_bytes());
        key
    }

    /// Prefix of one task's transitions.
    pub fn transitions_of(task_id: &str) -> Vec<u8> {
        join(&[task_id.as_bytes(), b"/"])
    }

    pub fn step(task_id: &str, name: &str) -> Vec<u8> {
        join(&[task_id.as_bytes(), b"\0", name.as_bytes()])
    }

    /// Prefix of one task's step records.
    pub fn steps_of(task_id: &str) -> Vec<u8> {
        join(&[task_id.as_bytes(), b"\0"])
    }

    pub fn state(state: TaskState) -> Vec<u8> {
        join(&[b"s\0", state.as_str().as_bytes(), b"\0"])
    }

    pub fn namespace(ns: &str) -> Vec<u8> {
        join(&[b"n\0", ns.as_bytes(), b"\0"])
    }

    pub fn namespace_state(ns: &str, state: TaskState) -> Vec<u8> {
        join(&[b"m\0", ns.as_bytes(), b"\0", state.as_str().as_bytes(), b"\0"])
    }

    pub fn workflow(ns: &str, name: &str) -> Vec<u8> {
        join(&[b"w\0", ns.as_bytes(), b"\0", name.as_bytes(), b"\0"])
    }

    /// Prefix of the tasks carrying the search term hash `hash` (`engine::search`).
    pub fn search(hash: &str) -> Vec<u8> {
        join(&[b"x\0", hash.as_bytes(), b"\0"])
    }

    /// Prefix of the tasks carrying the personal search term hash `hash` (a customer id):
    /// apart from the others, so a caller who may not search personal fields never reads it.
    pub fn search_personal(hash: &str) -> Vec<u8> {
        join(&[b"y\0", hash.as_bytes(), b"\0"])
    }

    /// The index key of one of task `id`'s search terms (`p:`-marked: the personal index).
    pub fn search_key(term: &str, id: &str) -> Vec<u8> {
        match term.strip_prefix("p:") {
            Some(hash) => join(&[&search_personal(hash), id.as_bytes()]),
            None => join(&[&search(term), id.as_bytes()]),
        }
    }

    /// One task's search terms, written once at its creation (not in its header, which every
    /// commit rewrites), so its index keys can be found and removed with it.
    pub fn terms_of(id: &str) -> Vec<u8> {
        join(&[b"t\0", id.as_bytes()])
    }

    /// The id reversed, so that a short id (the id's last characters) is a prefix.
    pub fn short(id: &str) -> Vec<u8> {
        let mut key = b"r\0".to_vec();
        key.extend(id.bytes().rev());
        key
    }

    pub const FINISHED: &[u8] = b"f\0";

    /// Finished tasks by the time of their last change (retention's order).
    pub fn finished(at: Timestamp, id: &str) -> Vec<u8> {
        join(&[FINISHED, &at.to_be_bytes(), id.as_bytes()])
    }

    pub const WAITING: &[u8] = b"a\0";

    /// A step awaiting a person's decision.
    pub fn waiting(task_id: &str, step: &str) -> Vec<u8> {
        join(&[WAITING, task_id.as_bytes(), b"\0", step.as_bytes()])
    }

    pub fn waiting_of(task_id: &str) -> Vec<u8> {
        join(&[WAITING, task_id.as_bytes(), b"\0"])
    }

    /// Every index key a task in `header`'s state has (the awaiting-decision keys aside).
    pub fn index_keys(h: &Header) -> Vec<Vec<u8>> {
        let id = h.id.as_bytes();
        let mut keys = vec![
            join(&[&state(h.state), id]),
            join(&[&namespace(&h.namespace), id]),
            join(&[&namespace_state(&h.namespace, h.state), id]),
            join(&[&workflow(&h.namespace, &h.name), id]),
            short(&h.id),
        ];

        if !h.state.is_active() {
            keys.push(finished(h.updated_at, &h.id));
        }
        keys
    }

    pub fn join(parts: &[&[u8]]) -> Vec<u8> {
        let mut key = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
        for p in parts {
            key.extend_from_slice(p);
        }
        key
    }

    /// The smallest key after every key that starts with `prefix`.
    pub fn after_prefix(prefix: &[u8]) -> Vec<u8> {
        let mut end = prefix.to_vec();
        end.push(0xff);
        end
    }
}

/// Whether a step in `state` is waiting for a person (it has an approvals-index key).
pub(super) fn awaits_decision(state: StepState) -> bool {
    state == StepState::AwaitingApproval
}
