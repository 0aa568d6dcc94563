//! The audit journal in sled (see `crate::audit`): tree `audit`, big-endian sequence number →
//! the entry as JSON; `meta` holds the latest signed checkpoint. A commit journals its
//! transitions right after logging them (step 3 of the commit order), so a crash that keeps
//! the transitions but not their entries leaves the tasks in `active`, and `settle` journals
//! the transitions past the last one journaled. Nothing here removes an entry: retention
//! removes tasks, never the journal.

use super::{encode, SledStore};
use crate::audit::{AuditEntry, AuditRecord, Checkpoint, GENESIS};
use crate::model::{Task, Transition};
use crate::store::StoreError;

const CHECKPOINT: &[u8] = b"audit_checkpoint";

/// The journal's head: the last entry's place and hash, and the last transition journaled.
#[derive(Debug, Clone)]
pub(super) struct Head {
    pub seq: u64,
    pub hash: String,
    pub transition: u64,
}

impl SledStore {
    /// Reads the head from the journal's end (at open).
    pub(super) fn read_audit_head(audit: &sled::Tree) -> Result<Head, StoreError> {
        let mut head = Head {
            seq: 0,
            hash: GENESIS.to_string(),
            transition: 0,
        };
        let mut found_last = false;
        for item in audit.iter().rev() {
            let (k, bytes) = item?;
            let entry: AuditEntry = Self::decode(&k, &bytes)?;
            if !found_last {
                head.seq = entry.seq;
                head.hash = entry.hash.clone();
                found_last = true;
            }
            if let Some(t) = entry.record.transition {
                head.transition = t;
                break;
            }
        }
        Ok(head)
    }

    /// Chains `records` after the head and writes them (not synced: the caller's commit is).
    pub(super) fn journal(&self, records: Vec<AuditRecord>) -> Result<Vec<AuditEntry>, StoreError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let mut head = self.audit_head.lock().unwrap_or_else(|e| e.into_inner());
        let mut written = Vec::with_capacity(records.len());
        let (mut seq, mut hash, mut transition) = (head.seq, head.hash.clone(), head.transition);
        for record in records {
            seq += 1;
            if let Some(t) = record.transition {
                transition = transition.max(t);
            }
            let entry = AuditEntry::chain(seq, record, &hash);
            self.audit
                .insert(seq.to_be_bytes(), encode("audit entry", &entry)?)?;
            hash = entry.hash.clone();
            written.push(entry);
        }
        // Only once every entry is written: a failed insert leaves the head where the journal
        // ends (the next append overwrites the partial tail's places, which nothing has read).
        *head = Head {
            seq,
            hash,
            transition,
        };
        Ok(written)
    }

    /// The entries of `transitions` (of `tasks`), in transition order.
    pub(super) fn journal_transitions(
        &self,
        transitions: &[Transition],
        tasks: &[&Task],
    ) -> Result<(), StoreError> {
        if transitions.is_empty() {
            return Ok(());
        }
        let mut ordered: Vec<&Transition> = transitions.iter().collect();
        ordered.sort_by_key(|t| t.seq);
        let records = ordered
            .into_iter()
            .filter_map(|t| {
                let task = tasks.iter().find(|task| task.id == t.task_id)?;
                Some(AuditRecord::of_transition(t, task))
            })
            .collect();
        self.journal(records)?;
        Ok(())
    }

    /// After a crash: journals the transitions of `tasks` (read from the log) that come after
    /// the last one journaled, in order.
    pub(super) fn journal_missed(&self, tasks: &[Task]) -> Result<usize, StoreError> {
        let after = self
            .audit_head
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .transition;
        let mut missed: Vec<(Transition, &Task)> = Vec::new();
        for task in tasks {
            for t in self.transitions_now(&task.id)? {
                if t.seq > after {
                    missed.push((t, task));
                }
            }
        }
        missed.sort_by_key(|(t, _)| t.seq);
        let records: Vec<AuditRecord> = missed
            .iter()
            .map(|(t, task)| AuditRecord::of_transition(t, task))
            .collect();
        let n = records.len();
        self.journal(records)?;
        Ok(n)
    }

    pub(super) fn audit_after_now(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<crate::audit::verify::Stored>, StoreError> {
        let mut out = Vec::new();
        for item in self
            .audit
            .range(after.saturating_add(1).to_be_bytes()..)
            .take(limit)
        {
            let (k, bytes) = item?;
            // A key that is not 8 bytes is itself a sign of tampering: report it in place.
            let place = <[u8; 8]>::try_from(k.as_ref()).map_or(u64::MAX, u64::from_be_bytes);
            let entry = serde_json::from_slice::<AuditEntry>(&bytes).map_err(|e| e.to_string());
            out.push((place, entry));
        }
        Ok(out)
    }

    pub(super) fn audit_checkpoint_now(&self) -> Result<Option<Checkpoint>, StoreError> {
        match self.meta.get(CHECKPOINT)? {
            Some(bytes) => Ok(Some(Self::decode(CHECKPOINT, &bytes)?)),
            None => Ok(None),
        }
    }

    pub(super) fn put_audit_checkpoint_now(&self, checkpoint: &Checkpoint) -> Result<(), StoreError> {
        self.meta
            .insert(CHECKPOINT, encode("audit checkpoint", checkpoint)?)?;
        self.sync()
    }

    pub(super) fn audit_head_now(&self) -> (u64, String) {
        let head = self.audit_head.lock().unwrap_or_else(|e| e.into_inner());
        (head.seq, head.hash.clone())
    }
}
