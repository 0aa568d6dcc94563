//! The audit journal in sled (see `crate::audit`): tree `audit`, big-endian sequence number of
//! a block's first entry → the block, a JSON array of the entries one append wrote (one per
//! commit: a single insert, as the events are chunked); `meta` holds the latest signed
//! checkpoint. A commit journals its
//! transitions right after logging them (step 3 of the commit order), so a crash that keeps
//! the transitions but not their entries leaves the tasks in `active`, and `settle` journals
//! the transitions past the last one journaled. Nothing here removes an entry: retention
//! removes tasks, never the journal.

use super::{encode, SledStore};
use crate::audit::verify::Stored;
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
    /// Why the journal's last block cannot be read: nothing is appended to a journal whose
    /// end is damaged (an append would chain from the wrong place, or overwrite the evidence).
    pub damaged: Option<String>,
}

impl SledStore {
    /// Reads the head from the journal's end (at open).
    pub(super) fn read_audit_head(audit: &sled::Tree) -> Result<Head, StoreError> {
        let mut head = Head {
            seq: 0,
            hash: GENESIS.to_string(),
            transition: 0,
            damaged: None,
        };
        let mut found_last = false;
        'blocks: for item in audit.iter().rev() {
            let (k, bytes) = item?;
            let block: Vec<AuditEntry> = match Self::decode(&k, &bytes) {
                Ok(block) => block,
                // The store still opens, so `audit verify` can say what happened.
                Err(e) if !found_last => {
                    head.damaged = Some(e.to_string());
                    return Ok(head);
                }
                Err(_) => continue,
            };
            for entry in block.iter().rev() {
                if !found_last {
                    head.seq = entry.seq;
                    head.hash = entry.hash.clone();
                    found_last = true;
                }
                if let Some(t) = entry.record.transition {
                    head.transition = t;
                    break 'blocks;
                }
            }
        }
        Ok(head)
    }

    /// Chains `records` after the head and writes them (not synced: the caller's commit is).
    /// `keep`: return the entries written (they are built only then).
    pub(super) fn journal(
        &self,
        records: Vec<AuditRecord>,
        keep: bool,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let mut head = self.audit_head.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(why) = &head.damaged {
            return Err(StoreError::Corrupt {
                key: "audit journal".into(),
                cause: format!("its last block is unreadable ({why}); nothing more is journaled until it is looked at: run `taskdeck audit verify`"),
            });
        }
        let first = head.seq;
        let chained = crate::store::chain(records, head.seq, head.hash.clone(), keep)?;
        let mut block =
            Vec::with_capacity(chained.bodies.iter().map(|(_, b)| b.len() + 1).sum::<usize>() + 2);
        block.push(b'[');
        for (_, bytes) in &chained.bodies {
            if block.len() > 1 {
                block.push(b',');
            }
            block.extend_from_slice(bytes);
        }
        block.push(b']');
        // One insert: after a crash the block is all there, or not at all (`chain` checked
        // that the numbers after the head exist).
        self.audit.insert(first.saturating_add(1).to_be_bytes(), block)?;
        *head = Head {
            seq: chained.seq,
            hash: chained.hash,
            transition: head.transition.max(chained.transition),
            damaged: None,
        };
        Ok(chained.written)
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
        self.journal(records, false)?;
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
        self.journal(records, false)?;
        Ok(n)
    }

    /// Entries after sequence number `after`, up to `limit`, in storage order (a block that
    /// cannot be read is reported in place, with its key).
    pub(super) fn audit_after_now(&self, after: u64, limit: usize) -> Result<Vec<Stored>, StoreError> {
        let first = after.saturating_add(1);
        // The block holding `first`; only its earlier entries are skipped (everything after it
        // is returned as stored, for the verifier to judge).
        let start = match self.audit.range(..=first.to_be_bytes()).next_back() {
            Some(item) => item?.0.to_vec(),
            None => first.to_be_bytes().to_vec(),
        };
        let mut out = Vec::new();
        for item in self.audit.range(start.as_slice()..) {
            if out.len() >= limit {
                break;
            }
            let (k, bytes) = item?;
            // A key that is not 8 bytes is itself a sign of tampering: reported in place.
            let key = <[u8; 8]>::try_from(k.as_ref()).map_or(u64::MAX, u64::from_be_bytes);
            match serde_json::from_slice::<Vec<AuditEntry>>(&bytes) {
                Ok(block) if k.as_ref() == start.as_slice() => {
                    out.extend(block.into_iter().filter(|e| e.seq >= first).map(Ok))
                }
                Ok(block) => out.extend(block.into_iter().map(Ok)),
                Err(e) => out.push(Err((key, e.to_string()))),
            }
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

    /// Appends copied entries as they are (see `Store::import_audit`), in blocks of 1,000.
    pub(super) fn import_audit_now(&self, entries: &[AuditEntry]) -> Result<(), StoreError> {
        let mut head = self.audit_head.lock().unwrap_or_else(|e| e.into_inner());
        crate::store::check_follows((head.seq, &head.hash), entries)?;
        for block in entries.chunks(1000) {
            let Some(first) = block.first() else { continue };
            self.audit
                .insert(first.seq.to_be_bytes(), encode("audit entries", &block)?)?;
        }
        if let Some(last) = entries.last() {
            head.seq = last.seq;
            head.hash = last.hash.clone();
            if let Some(t) = entries.iter().filter_map(|e| e.record.transition).max() {
                head.transition = head.transition.max(t);
            }
        }
        Ok(())
    }

    pub(super) fn audit_head_now(&self) -> (u64, String) {
        let head = self.audit_head.lock().unwrap_or_else(|e| e.into_inner());
        (head.seq, head.hash.clone())
    }
}
